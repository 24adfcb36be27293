/*
 * golden.c - reading and writing golden files (schema lcattn-golden/1,
 * lcattn-golden(5)) with the HDF5 C API.
 *
 * Files come from anywhere (h5py scripts, other projects, a disk that lost
 * its tail), so reading trusts nothing: each HDF5 call is checked, /config
 * sizes are bounded and their products overflow-checked before any
 * allocation, and a dataset is read only after its type and shape matched
 * what /config implies. Errors end as one line in the caller's buffer;
 * HDF5's own error printing is switched off. All of that runs in the
 * confined child of sandbox.c, on a mapped image of the file; this
 * process only decodes the child's reply (take_reply), checking it as
 * strictly as the file.
 *
 * Writing aims at byte-identical files for identical cases: object
 * modification times are off, and nothing else time- or host-dependent
 * is stored.
 */
#include "golden.h"
#include "h5util.h"
#include "sandbox.h"

#include <hdf5.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Longest string attribute we accept ("command" lines included). */
#define MAX_STR ((size_t)1 << 16)

struct io {
	const char *path;
	char *err;
	size_t errlen;
	int failed;
	int own;                /* the failure is ours (memory), not the file's */
	const char *shape_src;  /* where expected shapes come from, for messages */
};

/* Record the first failure as "path: message"; later ones are consequences. */
static int fail(struct io *io, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int fail(struct io *io, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	if (io->failed)
		return -1;
	io->failed = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (io->errlen && io->path)
		snprintf(io->err, io->errlen, "%s: %s", io->path, msg);
	else if (io->errlen)
		snprintf(io->err, io->errlen, "%s", msg);
	return -1;
}

/* Out of memory: a failure of the reader, not a verdict on the file. */
static int nomem(struct io *io, const char *what)
{
	int r = fail(io, "out of memory for %s", what);

	io->own = 1;
	return r;
}

/* HDF5 must never print: we report errors ourselves, one line each. */
static void quiet(void)
{
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* ---- the schema: variants, configuration, tensor layout ---- */

static const char *const variant_names[] = { "softmax", "mla", "deltanet", "lightning" };

const char *lcio_variant_name(lca_variant v)
{
	return (unsigned)v <= LCA_LIGHTNING ? variant_names[v] : NULL;
}

int lcio_variant_parse(const char *s, lca_variant *v)
{
	for (int i = 0; i <= LCA_LIGHTNING; i++)
		if (!strcmp(s, variant_names[i])) {
			*v = (lca_variant)i;
			return 0;
		}
	return -1;
}

enum kind { K_LEN, K_SIZE, K_DIM0, K_REAL, K_FLAG, K_STYLE };
enum { SM = 1, ML = 2, DN = 4, LT = 8, ALL = 15 };

/* Every /config attribute, for which variants it applies and where it
 * lives. K_DIM0 sizes may be 0 (window, rope_dim, and Hkv/Hk = "same as H"). */
static const struct cfg {
	const char *name;
	enum kind kind;
	unsigned variants;
	size_t off;
	int required;
} config[] = {
	{ "Tq", K_LEN, SM | ML, offsetof(struct lcio_case, Tq), 0 },
	{ "Tk", K_LEN, SM | ML, offsetof(struct lcio_case, Tk), 0 },
	{ "T", K_LEN, DN | LT, offsetof(struct lcio_case, Tq), 1 },
	{ "H", K_SIZE, ALL, offsetof(struct lcio_case, p.H), 1 },
	{ "Hkv", K_DIM0, SM, offsetof(struct lcio_case, p.Hkv), 0 },
	{ "Hk", K_DIM0, DN, offsetof(struct lcio_case, p.Hk), 0 },
	{ "dk", K_SIZE, SM | DN | LT, offsetof(struct lcio_case, p.dk), 1 },
	{ "dv", K_SIZE, ALL, offsetof(struct lcio_case, p.dv), 1 },
	{ "dn", K_SIZE, ML, offsetof(struct lcio_case, p.dn), 1 },
	{ "dr", K_SIZE, ML, offsetof(struct lcio_case, p.dr), 1 },
	{ "dc", K_SIZE, ML, offsetof(struct lcio_case, p.dc), 1 },
	{ "scale", K_REAL, ALL, offsetof(struct lcio_case, p.scale), 0 },
	{ "causal", K_FLAG, SM | ML, offsetof(struct lcio_case, p.causal), 0 },
	{ "window", K_DIM0, SM | ML, offsetof(struct lcio_case, p.window), 0 },
	{ "rope_dim", K_DIM0, SM | ML, offsetof(struct lcio_case, p.rope_dim), 0 },
	{ "rope_theta", K_REAL, SM | ML, offsetof(struct lcio_case, p.rope_theta), 0 },
	{ "rope_style", K_STYLE, SM | ML, offsetof(struct lcio_case, p.rope_style), 0 },
	{ "qk_l2norm", K_FLAG, DN, offsetof(struct lcio_case, p.qk_l2norm), 0 },
	{ "chunk", K_LEN, DN, offsetof(struct lcio_case, p.chunk), 0 },
	{ "block", K_LEN, LT, offsetof(struct lcio_case, p.block), 0 },
	{ "nseq", K_LEN, ALL, offsetof(struct lcio_case, nseq), 0 },
};

static unsigned variant_bit(lca_variant v)
{
	return 1u << (unsigned)v;
}

void lcio_case_init(struct lcio_case *c, lca_variant v)
{
	memset(c, 0, sizeof *c);
	lca_params_init(&c->p, v);
	c->nseq = 1;
}

void lcio_case_free(struct lcio_case *c)
{
	for (int i = 0; i < c->nin; i++)
		free(c->in[i].data);
	for (int i = 0; i < c->nout; i++)
		free(c->out[i].data);
	free(c->cu_seqlens);
	free(c->name);
	free(c->generator);
	free(c->command);
	memset(c, 0, sizeof *c);
}

static int bounded(struct io *io, const char *name, int64_t x, int64_t lo, int64_t hi)
{
	if (x < lo || x > hi)
		return fail(io, "/config %s = %lld is out of range [%lld, %lld]", name,
			(long long)x, (long long)lo, (long long)hi);
	return 0;
}

/* Name and shape of one tensor; its element count must stay <= LCIO_MAX_ELEMS,
 * checked factor by factor so that no product can overflow. */
static int shape(struct io *io, struct lcio_tensor *t, const char *name,
	int optional, int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
	int64_t d[4] = { d0, d1, d2, d3 }, n = 1;

	for (int i = 0; i < rank; i++) {
		if (d[i] < 1 || n > LCIO_MAX_ELEMS / d[i])
			return fail(io, "/config makes %s larger than %lld elements",
				name, (long long)LCIO_MAX_ELEMS);
		n *= d[i];
	}
	free(t->data);
	memset(t, 0, sizeof *t);
	t->name = name;
	t->rank = rank;
	memcpy(t->dims, d, sizeof d);
	t->n = n;
	t->optional = optional;
	return 0;
}

/* Every size in bounds, Hkv/Hk resolved ("0 = H") and dividing H. */
static int check_sizes(struct io *io, struct lcio_case *c)
{
	lca_params *p = &c->p;
	unsigned vb = variant_bit(p->variant);

	for (size_t i = 0; i < sizeof config / sizeof config[0]; i++) {
		const struct cfg *f = &config[i];
		int64_t x;

		/* Only K_LEN and K_SIZE fields are int64_t: look before loading. */
		if (!(f->variants & vb) || (f->kind != K_LEN && f->kind != K_SIZE))
			continue;
		memcpy(&x, (const char *)c + f->off, sizeof x);
		if (bounded(io, f->name, x, 1, f->kind == K_LEN ? LCIO_MAX_LEN : LCIO_MAX_SIZE))
			return -1;
	}
	if (p->Hkv == 0)
		p->Hkv = p->H;
	if (p->Hk == 0)
		p->Hk = p->H;
	if (bounded(io, "Hkv", p->Hkv, 1, p->H) || bounded(io, "Hk", p->Hk, 1, p->H) ||
	    bounded(io, "rope_dim", p->rope_dim, LCA_ROPE_FULL, LCIO_MAX_SIZE) ||
	    bounded(io, "window", p->window, 0, INT64_MAX))
		return -1;
	if (p->H % p->Hkv || p->H % p->Hk)
		return fail(io, "/config H = %lld is not a multiple of %s", (long long)p->H,
			p->H % p->Hkv ? "Hkv" : "Hk");
	if (p->variant >= LCA_DELTANET && c->Tk != c->Tq)
		return fail(io, "/config Tk must equal T for %s", lcio_variant_name(p->variant));
	return 0;
}

static int layout_io(struct io *io, struct lcio_case *c)
{
	lca_params *p = &c->p;
	int64_t Tq = c->Tq, Tk = c->Tk, H = p->H, N = c->nseq;
	struct lcio_tensor *in = c->in, *out = c->out;
	int r;

	if (check_sizes(io, c))
		return -1;
	switch (p->variant) {
	case LCA_SOFTMAX:
		c->nin = 3, c->nout = 2;
		r = shape(io, &in[0], "q", 0, 3, Tq, H, p->dk, 1) ||
		    shape(io, &in[1], "k", 0, 3, Tk, p->Hkv, p->dk, 1) ||
		    shape(io, &in[2], "v", 0, 3, Tk, p->Hkv, p->dv, 1) ||
		    shape(io, &out[1], "lse", 0, 2, Tq, H, 1, 1);
		break;
	case LCA_MLA:
		c->nin = 6, c->nout = 2;
		r = shape(io, &in[0], "q_nope", 0, 3, Tq, H, p->dn, 1) ||
		    shape(io, &in[1], "q_rope", 0, 3, Tq, H, p->dr, 1) ||
		    shape(io, &in[2], "ckv", 0, 2, Tk, p->dc, 1, 1) ||
		    shape(io, &in[3], "k_rope", 0, 2, Tk, p->dr, 1, 1) ||
		    shape(io, &in[4], "w_uk", 0, 3, H, p->dn, p->dc, 1) ||
		    shape(io, &in[5], "w_uv", 0, 3, H, p->dv, p->dc, 1) ||
		    shape(io, &out[1], "lse", 0, 2, Tq, H, 1, 1);
		break;
	case LCA_DELTANET:
		c->nin = 6, c->nout = 2;
		r = shape(io, &in[0], "q", 0, 3, Tq, p->Hk, p->dk, 1) ||
		    shape(io, &in[1], "k", 0, 3, Tq, p->Hk, p->dk, 1) ||
		    shape(io, &in[2], "v", 0, 3, Tq, H, p->dv, 1) ||
		    shape(io, &in[3], "g", 0, 2, Tq, H, 1, 1) ||
		    shape(io, &in[4], "beta", 0, 2, Tq, H, 1, 1) ||
		    shape(io, &in[5], "state0", 1, 4, N, H, p->dk, p->dv) ||
		    shape(io, &out[1], "state", 0, 4, N, H, p->dk, p->dv);
		break;
	case LCA_LIGHTNING:
		c->nin = 5, c->nout = 2;
		r = shape(io, &in[0], "q", 0, 3, Tq, H, p->dk, 1) ||
		    shape(io, &in[1], "k", 0, 3, Tq, H, p->dk, 1) ||
		    shape(io, &in[2], "v", 0, 3, Tq, H, p->dv, 1) ||
		    shape(io, &in[3], "slope", 0, 1, H, 1, 1, 1) ||
		    shape(io, &in[4], "state0", 1, 4, N, H, p->dk, p->dv) ||
		    shape(io, &out[1], "state", 0, 4, N, H, p->dk, p->dv);
		break;
	default:
		return fail(io, "unknown variant %d", (int)p->variant);
	}
	return r || shape(io, &out[0], "o", 0, 3, Tq, H, p->dv, 1) ? -1 : 0;
}

int lcio_layout(struct lcio_case *c, char *err, size_t errlen)
{
	struct io io = { .err = err, .errlen = errlen };

	return layout_io(&io, c);
}

int lcio_alloc(struct lcio_case *c, int with_optional, char *err, size_t errlen)
{
	struct io io = { .err = err, .errlen = errlen };

	for (int i = 0; i < c->nin + c->nout; i++) {
		struct lcio_tensor *t = i < c->nin ? &c->in[i] : &c->out[i - c->nin];

		if (t->data || (t->optional && !with_optional))
			continue;
		t->data = calloc((size_t)t->n, sizeof(double));
		if (!t->data)
			return nomem(&io, t->name);
	}
	return 0;
}

struct lcio_tensor *lcio_find(struct lcio_case *c, int output, const char *name)
{
	struct lcio_tensor *t = output ? c->out : c->in;
	int n = output ? c->nout : c->nin;

	for (int i = 0; i < n; i++)
		if (!strcmp(t[i].name, name))
			return &t[i];
	return NULL;
}

/* ---- attributes ---- */

/* One attribute's value, whatever its HDF5 class. */
struct attr {
	int present;
	int is_str, is_int;
	int64_t i;      /* integers (unsigned ones clipped to INT64_MAX) */
	uint64_t u;     /* unsigned view of a non-negative integer */
	double d;       /* numbers */
	char *s;        /* strings, malloc'd */
};

static int read_string(struct io *io, hid_t a, hid_t ft, const char *what, struct attr *v)
{
	hid_t mt = H5Tcopy(H5T_C_S1);
	H5T_cset_t cset = H5Tget_cset(ft);
	int vlen = H5Tis_variable_str(ft) > 0;
	size_t n = H5Tget_size(ft);
	char *tmp = NULL, why[160];
	int r = -1;

	if (!vlen && (n == 0 || n > MAX_STR)) {
		r = fail(io, "%s is an empty or over-long string", what);
	} else if (vlen) {
		if (mt < 0 || cset < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 ||
		    H5Tset_cset(mt, cset) < 0 || H5Aread(a, mt, &tmp) < 0)
			r = fail(io, "cannot read string %s (%s)", what, lcio_h5why(why));
		else if (!(v->s = strdup(tmp ? tmp : "")))
			r = nomem(io, what);
		else
			r = 0;
		H5free_memory(tmp);
	} else if (!(v->s = calloc(n + 1, 1))) {
		r = nomem(io, what);
	} else if (mt < 0 || cset < 0 || H5Tset_size(mt, n + 1) < 0 ||
		   H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0 || H5Tset_cset(mt, cset) < 0 ||
		   H5Aread(a, mt, v->s) < 0) {
		/* One byte more than stored, NUL-terminated: HDF5 converts the
		 * file's padding (null or space) for us. */
		r = fail(io, "cannot read string %s (%s)", what, lcio_h5why(why));
	} else {
		r = 0;
	}
	if (mt >= 0)
		H5Tclose(mt);
	return r;
}

/* A host integer of n bytes (1, 2, 4 or 8) at buf. */
static int64_t host_int(const void *buf, size_t n, int is_signed)
{
	int8_t i8; int16_t i16; int32_t i32; int64_t i64;
	uint8_t u8; uint16_t u16; uint32_t u32;

	switch (n) {
	case 1: memcpy(&i8, buf, 1), memcpy(&u8, buf, 1); return is_signed ? (int64_t)i8 : (int64_t)u8;
	case 2: memcpy(&i16, buf, 2), memcpy(&u16, buf, 2); return is_signed ? (int64_t)i16 : (int64_t)u16;
	case 4: memcpy(&i32, buf, 4), memcpy(&u32, buf, 4); return is_signed ? (int64_t)i32 : (int64_t)u32;
	default: memcpy(&i64, buf, 8); return i64;
	}
}

/* Integers of any size and sign, IEEE floats, and enums over integers
 * (h5py stores numpy booleans as an enum of int8). */
static int read_number(struct io *io, hid_t a, hid_t ft, H5T_class_t cls, const char *what,
	struct attr *v)
{
	char why[160];
	herr_t e;

	if (cls == H5T_FLOAT) {
		if (H5Aread(a, H5T_NATIVE_DOUBLE, &v->d) < 0)
			return fail(io, "cannot read %s (%s)", what, lcio_h5why(why));
		return 0;
	}
	if (cls == H5T_ENUM) {
		hid_t base = H5Tget_super(ft), mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
		H5T_sign_t sg = base < 0 ? H5T_SGN_ERROR : H5Tget_sign(base);
		size_t n = mt < 0 ? 0 : H5Tget_size(mt);
		unsigned char buf[8] = { 0 };
		int r = 0;

		if ((n != 1 && n != 2 && n != 4 && n != 8) || sg == H5T_SGN_ERROR)
			r = fail(io, "%s is an enum of an unusual integer type", what);
		else if (H5Aread(a, mt, buf) < 0)
			r = fail(io, "cannot read enum %s (%s)", what, lcio_h5why(why));
		else
			v->i = host_int(buf, n, sg == H5T_SGN_2);
		if (base >= 0)
			H5Tclose(base);
		if (mt >= 0)
			H5Tclose(mt);
		v->is_int = 1, v->u = (uint64_t)v->i, v->d = (double)v->i;
		return r;
	}
	v->is_int = 1;
	if (H5Tget_sign(ft) == H5T_SGN_NONE) {
		e = H5Aread(a, H5T_NATIVE_UINT64, &v->u);
		v->i = v->u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v->u;
	} else {
		e = H5Aread(a, H5T_NATIVE_INT64, &v->i);
		v->u = (uint64_t)v->i;
	}
	if (e < 0)
		return fail(io, "cannot read %s (%s)", what, lcio_h5why(why));
	v->d = (double)v->i;
	return 0;
}

/* Read attribute name of obj (at path where) into *v; absent is not an
 * error (v->present = 0). Scalar and one-element attributes are accepted. */
static int attr_get(struct io *io, hid_t obj, const char *where, const char *name,
	struct attr *v)
{
	char what[96], why[160];
	hid_t a = -1, ft = -1, sp = -1;
	H5T_class_t cls;
	htri_t e;
	int r = -1;

	memset(v, 0, sizeof *v);
	snprintf(what, sizeof what, "attribute %s of %s", name, where);
	if ((e = H5Aexists(obj, name)) < 0)
		return fail(io, "cannot look up %s (%s)", what, lcio_h5why(why));
	if (!e)
		return 0;
	if ((a = H5Aopen(obj, name, H5P_DEFAULT)) < 0 || (ft = H5Aget_type(a)) < 0 ||
	    (sp = H5Aget_space(a)) < 0) {
		fail(io, "cannot open %s (%s)", what, lcio_h5why(why));
		goto out;
	}
	if (H5Sget_simple_extent_npoints(sp) != 1) {
		fail(io, "%s must hold exactly one value", what);
		goto out;
	}
	v->present = 1;
	cls = H5Tget_class(ft);
	if (cls == H5T_STRING) {
		v->is_str = 1;
		r = read_string(io, a, ft, what, v);
	} else if (cls == H5T_INTEGER || cls == H5T_FLOAT || cls == H5T_ENUM) {
		r = read_number(io, a, ft, cls, what, v);
	} else {
		fail(io, "%s is neither a number nor a string", what);
	}
out:
	if (sp >= 0)
		H5Sclose(sp);
	if (ft >= 0)
		H5Tclose(ft);
	if (a >= 0)
		H5Aclose(a);
	if (r) {
		free(v->s);
		v->s = NULL;
	}
	return r;
}

/* An integer attribute: HDF5 integer, or a float holding an integer. */
static int attr_int(struct io *io, const struct attr *v, const char *name, int64_t *x)
{
	if (v->is_str)
		return fail(io, "/config %s is a string, expected an integer", name);
	if (!v->is_int) {
		if (!(fabs(v->d) <= 0x1p53 && v->d == floor(v->d)))
			return fail(io, "/config %s = %g is not an integer", name, v->d);
		*x = (int64_t)v->d;
		return 0;
	}
	*x = v->i;
	return 0;
}

static int config_one(struct io *io, hid_t g, const struct cfg *f, struct lcio_case *c)
{
	void *dst = (char *)c + f->off;
	struct attr v;
	int64_t x = 0;
	int r = 0;

	if (attr_get(io, g, "/config", f->name, &v))
		return -1;
	if (!v.present) {
		if (f->required)
			return fail(io, "/config has no attribute %s (needed by %s)", f->name,
				lcio_variant_name(c->p.variant));
		return 0;
	}
	switch (f->kind) {
	case K_REAL:
		if (v.is_str || !isfinite(v.d))
			r = fail(io, "/config %s must be a finite number", f->name);
		else
			*(double *)dst = v.d;
		break;
	case K_STYLE:
		if (v.is_str && (!strcmp(v.s, "half") || !strcmp(v.s, "interleaved")))
			*(lca_rope_style *)dst = v.s[0] == 'h' ? LCA_ROPE_HALF : LCA_ROPE_INTERLEAVED;
		else if (!v.is_str && v.is_int && (v.i == 0 || v.i == 1))
			*(lca_rope_style *)dst = v.i ? LCA_ROPE_INTERLEAVED : LCA_ROPE_HALF;
		else
			r = fail(io, "/config rope_style must be \"half\" or \"interleaved\"");
		break;
	case K_FLAG:
		if (!(r = attr_int(io, &v, f->name, &x)) && x != 0 && x != 1)
			r = fail(io, "/config %s = %lld must be 0 or 1", f->name, (long long)x);
		if (!r)
			*(int *)dst = (int)x;
		break;
	default: /* sizes: bounds are checked with the layout */
		if (!(r = attr_int(io, &v, f->name, &x)))
			*(int64_t *)dst = x;
		break;
	}
	free(v.s);
	return r;
}

static int read_config(struct io *io, hid_t f, struct lcio_case *c)
{
	unsigned vb = variant_bit(c->p.variant);
	char why[160];
	hid_t g;
	int r = 0;

	if ((g = H5Gopen2(f, "config", H5P_DEFAULT)) < 0)
		return fail(io, "no group /config (%s)", lcio_h5why(why));
	c->nseq = 0;
	for (size_t i = 0; !r && i < sizeof config / sizeof config[0]; i++)
		if (config[i].variants & vb)
			r = config_one(io, g, &config[i], c);
	if (!r && c->p.variant <= LCA_MLA && (!c->Tq || !c->Tk)) {
		/* Tq = Tk = T is the natural way to write a self-attention case. */
		static const struct cfg t = { "T", K_LEN, SM | ML, offsetof(struct lcio_case, Tq), 1 };
		int64_t Tq = c->Tq, Tk = c->Tk;

		c->Tq = 0;
		if (!(r = config_one(io, g, &t, c))) {
			c->Tk = Tk ? Tk : c->Tq;
			c->Tq = Tq ? Tq : c->Tq;
		}
	} else if (c->p.variant >= LCA_DELTANET) {
		c->Tk = c->Tq;
	}
	H5Gclose(g);
	if (!r) {
		/* Bounds before anything else reads a size; nseq may still be
		 * unknown (0) until cu_seqlens is seen. */
		int64_t ns = c->nseq;

		c->nseq = ns ? ns : 1;
		r = check_sizes(io, c);
		c->nseq = ns;
	}
	return r;
}

/* ---- datasets ---- */

static void dims_str(char *buf, size_t n, int rank, const hsize_t *d64, const int64_t *d)
{
	size_t at = 0;

	at += (size_t)snprintf(buf, n, "[");
	for (int i = 0; i < rank && at < n; i++)
		at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? "," : "",
			d64 ? (long long)d64[i] : (long long)d[i]);
	if (at < n)
		snprintf(buf + at, n - at, "]");
}

/* Open group/name as a dataset of the right class and shape. 0 with *d set,
 * 1 if absent, -1 on error. want_len >= 0: rank 1 and any length (cu_seqlens),
 * the length returned in *len. */
static int dset_open(struct io *io, hid_t grp, const char *gname, const char *name,
	H5T_class_t want, int rank, const int64_t *dims, hid_t *d, int64_t *len)
{
	char why[160], have[96], need[96];
	hsize_t hd[H5S_MAX_RANK];
	hid_t t = -1, sp = -1;
	htri_t e;
	int nd, r = -1;

	if ((e = H5Lexists(grp, name, H5P_DEFAULT)) < 0)
		return fail(io, "cannot look up /%s/%s (%s)", gname, name, lcio_h5why(why));
	if (!e)
		return 1;
	if ((*d = H5Dopen2(grp, name, H5P_DEFAULT)) < 0)
		return fail(io, "/%s/%s is not a readable dataset (%s)", gname, name, lcio_h5why(why));
	if ((t = H5Dget_type(*d)) < 0 || (sp = H5Dget_space(*d)) < 0 ||
	    (nd = H5Sget_simple_extent_ndims(sp)) < 0 || nd > H5S_MAX_RANK ||
	    H5Sget_simple_extent_dims(sp, hd, NULL) < 0) {
		fail(io, "cannot inspect /%s/%s (%s)", gname, name, lcio_h5why(why));
		goto out;
	}
	if (H5Tget_class(t) != want || (want == H5T_FLOAT && H5Tget_size(t) != 8)) {
		fail(io, "/%s/%s must be %s", gname, name,
			want == H5T_FLOAT ? "float64" : "an integer dataset (int64)");
		goto out;
	}
	dims_str(have, sizeof have, nd, hd, NULL);
	if (len) {
		if (nd != 1) {
			fail(io, "/%s/%s has shape %s; expected one dimension", gname, name, have);
			goto out;
		}
		*len = hd[0] > (hsize_t)INT64_MAX ? INT64_MAX : (int64_t)hd[0];
		r = 0;
		goto out;
	}
	r = nd == rank ? 0 : -1;
	for (int i = 0; !r && i < rank; i++)
		r = hd[i] == (hsize_t)dims[i] ? 0 : -1;
	if (r) {
		dims_str(need, sizeof need, rank, NULL, dims);
		fail(io, "/%s/%s has shape %s; %s gives %s", gname, name, have,
			io->shape_src ? io->shape_src : "/config", need);
	}
out:
	if (sp >= 0)
		H5Sclose(sp);
	if (t >= 0)
		H5Tclose(t);
	if (r) {
		H5Dclose(*d);
		*d = -1;
	}
	return r;
}

/* Read one float64 tensor of the layout into a new buffer. */
static int read_tensor(struct io *io, hid_t grp, const char *gname, struct lcio_tensor *t)
{
	char why[160];
	hid_t d;
	int r = dset_open(io, grp, gname, t->name, H5T_FLOAT, t->rank, t->dims, &d, NULL);

	if (r == 1)
		return t->optional ? 0 : fail(io, "missing dataset /%s/%s", gname, t->name);
	if (r)
		return -1;
	if (!(t->data = malloc((size_t)t->n * sizeof(double))))
		r = nomem(io, t->name);
	else if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0)
		r = fail(io, "cannot read /%s/%s (%s)", gname, t->name, lcio_h5why(why));
	H5Dclose(d);
	return r;
}

/* cu[len] rises from 0 to T, and only where Tq = Tk. */
static int cu_check(struct io *io, const struct lcio_case *c, const int64_t *cu,
	int64_t len)
{
	if (c->Tq != c->Tk)
		return fail(io, "/inputs/cu_seqlens needs Tq = Tk in /config");
	for (int64_t i = 0; i < len; i++)
		if ((i == 0 && cu[0] != 0) || (i > 0 && cu[i] < cu[i - 1]) ||
		    (i == len - 1 && cu[i] != c->Tq))
			return fail(io, "/inputs/cu_seqlens must rise from 0 to T = %lld; "
				"bad at entry %lld", (long long)c->Tq, (long long)i);
	return 0;
}

/* cu_seqlens decides nseq, which shapes state0/state: read it first. */
static int read_cu(struct io *io, hid_t in, struct lcio_case *c)
{
	char why[160];
	int64_t len, *cu;
	hid_t d;
	int r = dset_open(io, in, "inputs", "cu_seqlens", H5T_INTEGER, 1, NULL, &d, &len);

	if (r == 1) {
		if (c->nseq > 1)
			return fail(io, "/config nseq = %lld but /inputs has no cu_seqlens",
				(long long)c->nseq);
		c->nseq = 1;
		return 0;
	}
	if (r)
		return -1;
	if (len < 2 || len - 1 > LCIO_MAX_LEN || (c->nseq && c->nseq != len - 1)) {
		H5Dclose(d);
		return fail(io, "/inputs/cu_seqlens has %lld entries; expected nseq + 1 = %lld",
			(long long)len, (long long)(c->nseq ? c->nseq + 1 : 2));
	}
	c->nseq = len - 1;
	if (!(cu = malloc((size_t)len * sizeof *cu)))
		r = nomem(io, "/inputs/cu_seqlens");
	else if (H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, cu) < 0)
		r = fail(io, "cannot read /inputs/cu_seqlens (%s)", lcio_h5why(why));
	else
		r = cu_check(io, c, cu, len);
	H5Dclose(d);
	if (r)
		free(cu);
	else
		c->cu_seqlens = cu;
	return r;
}

static int read_group(struct io *io, hid_t f, int output, struct lcio_case *c)
{
	const char *gname = output ? "outputs" : "inputs";
	char why[160];
	hid_t g = H5Gopen2(f, gname, H5P_DEFAULT);
	int r = 0;

	if (g < 0)
		return fail(io, "no group /%s (%s)", gname, lcio_h5why(why));
	if (!output)
		r = read_cu(io, g, c) || layout_io(io, c) ? -1 : 0;
	for (int i = 0; !r && i < (output ? c->nout : c->nin); i++)
		r = read_tensor(io, g, gname, output ? &c->out[i] : &c->in[i]);
	H5Gclose(g);
	return r;
}

/* ---- files ---- */

/* Open the file image buf[len] read-only, in place (the file system is
 * never touched: the confined reader may not open files). */
static hid_t open_image(struct io *io, const void *buf, size_t len)
{
	char why[160];
	hid_t f;
	int not_hdf5;

	quiet();
	if ((f = lcio_open_image(buf, len, why, &not_hdf5)) >= 0)
		return f;
	return not_hdf5 ? fail(io, "not an HDF5 file") :
		fail(io, "damaged or truncated HDF5 file (%s)", why);
}

static int root_string(struct io *io, hid_t f, const char *name, char **out, int required)
{
	struct attr v;

	if (attr_get(io, f, "/", name, &v))
		return -1;
	if (v.present && !v.is_str) {
		free(v.s);
		return fail(io, "root attribute %s must be a string", name);
	}
	if (!v.present && required)
		return fail(io, "no root attribute %s: not a %s file", name, LCIO_SCHEMA);
	*out = v.s;
	return 0;
}

/* schema, variant, case, generator, seed, command. */
static int read_root(struct io *io, hid_t f, struct lcio_case *c, const lca_variant *want)
{
	char *schema = NULL, *variant = NULL;
	lca_variant v = LCA_SOFTMAX;
	struct attr seed;
	int r = -1;

	if (root_string(io, f, "schema", &schema, 1) || root_string(io, f, "variant", &variant, !want))
		goto out;
	if (strcmp(schema, LCIO_SCHEMA)) {
		fail(io, "schema is \"%.40s\", expected \"%s\"", schema, LCIO_SCHEMA);
		goto out;
	}
	if (variant && lcio_variant_parse(variant, &v)) {
		fail(io, "unknown variant \"%.40s\"", variant);
		goto out;
	}
	if (want && variant && v != *want) {
		fail(io, "variant %s does not match the golden file's %s", variant,
			lcio_variant_name(*want));
		goto out;
	}
	lcio_case_init(c, want ? *want : v);
	if (root_string(io, f, "case", &c->name, 0) || root_string(io, f, "generator", &c->generator, 0) ||
	    root_string(io, f, "command", &c->command, 0) || attr_get(io, f, "/", "seed", &seed))
		goto out;
	free(seed.s);
	if (seed.present && !seed.is_int)
		fail(io, "root attribute seed must be an integer");
	c->seed = seed.u, c->has_seed = seed.present;
	r = io->failed ? -1 : 0;
out:
	free(schema);
	free(variant);
	return r;
}

/* One read: a whole file (golden == NULL), a candidate's outputs
 * (golden != NULL), or one metric (metric != NULL). */
struct job {
	const char *path;
	unsigned what;
	const struct lcio_case *golden;
	struct lcio_case *c;
	const char *metric;
	double value;
	int found;         /* the metric: 1 read, 0 absent */
};

static int read_plain(struct io *io, hid_t f, unsigned what, struct lcio_case *c)
{
	int r = read_root(io, f, c, NULL) || read_config(io, f, c);

	if (!r && !(what & LCIO_INPUTS)) {
		/* Without /inputs nothing shows the sequences: nseq from /config. */
		c->nseq = c->nseq ? c->nseq : 1;
		r = layout_io(io, c);
	}
	if (!r && (what & LCIO_INPUTS))
		r = read_group(io, f, 0, c);
	if (!r && (what & LCIO_OUTPUTS))
		r = read_group(io, f, 1, c);
	return r ? -1 : 0;
}

static int read_cand(struct io *io, hid_t f, const struct lcio_case *golden,
	struct lcio_case *cand)
{
	if (read_root(io, f, cand, &golden->p.variant))
		return -1;
	cand->p = golden->p;
	cand->Tq = golden->Tq, cand->Tk = golden->Tk, cand->nseq = golden->nseq;
	io->shape_src = "the golden file's /config";
	return layout_io(io, cand) || read_group(io, f, 1, cand) ? -1 : 0;
}

static int read_metric(struct io *io, hid_t f, struct job *j)
{
	char why[160];
	hid_t g = -1, d;
	htri_t e;
	int r;

	if ((e = H5Lexists(f, "metrics", H5P_DEFAULT)) < 0)
		r = fail(io, "cannot look up /metrics (%s)", lcio_h5why(why));
	else if (!e)
		r = 1;
	else if ((g = H5Gopen2(f, "metrics", H5P_DEFAULT)) < 0)
		r = fail(io, "/metrics is not a group (%s)", lcio_h5why(why));
	else if ((r = dset_open(io, g, "metrics", j->metric, H5T_FLOAT, 0, NULL, &d,
			NULL)) == 0) {
		if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &j->value) < 0)
			r = fail(io, "cannot read /metrics/%s (%s)", j->metric, lcio_h5why(why));
		H5Dclose(d);
	}
	if (g >= 0)
		H5Gclose(g);
	j->found = r == 0;
	return r < 0 ? -1 : 0;
}

/* The child's parse (sandbox.h); also lcio_read_image() in-process. */
static int parse_file(void *arg, void *image, size_t len, char *err, size_t errlen)
{
	struct job *j = arg;
	struct io io = { .path = j->path, .err = err, .errlen = errlen,
		.shape_src = j->metric ? "the schema (a scalar)" : "/config" };
	hid_t f;
	int r;

	if (j->c)
		memset(j->c, 0, sizeof *j->c);
	if ((f = open_image(&io, image, len)) < 0)
		return LCIO_BAD_FILE;
	if (j->metric)
		r = read_metric(&io, f, j);
	else if (j->golden)
		r = read_cand(&io, f, j->golden, j->c);
	else
		r = read_plain(&io, f, j->what, j->c);
	H5Fclose(f);
	if (r && j->c)
		lcio_case_free(j->c);
	return !r ? LCIO_PARSED : io.own ? LCIO_OWN_FAULT : LCIO_BAD_FILE;
}

/* ---- the reply of the confined reader: what parse() found ---- */

/* A /config field as 8 bytes on the wire (sizes int64, reals double,
 * flags and styles widened to int64). */
static void cfg_get(const struct lcio_case *c, const struct cfg *f, unsigned char v[8])
{
	const char *src = (const char *)c + f->off;
	int64_t x;

	if (f->kind == K_REAL || f->kind == K_LEN || f->kind == K_SIZE || f->kind == K_DIM0) {
		memcpy(v, src, 8);
		return;
	}
	x = f->kind == K_FLAG ? *(const int *)(const void *)src :
		(int64_t)*(const lca_rope_style *)(const void *)src;
	memcpy(v, &x, 8);
}

/* The inverse, refusing what the file reader would have refused; sizes
 * are checked by layout_io() afterwards. */
static int cfg_set(struct lcio_case *c, const struct cfg *f, const unsigned char v[8])
{
	char *dst = (char *)c + f->off;
	int64_t x;
	double d;

	memcpy(&x, v, 8);
	memcpy(&d, v, 8);
	switch (f->kind) {
	case K_REAL:
		if (!isfinite(d))
			return -1;
		*(double *)(void *)dst = d;
		return 0;
	case K_FLAG:
		if (x != 0 && x != 1)
			return -1;
		*(int *)(void *)dst = (int)x;
		return 0;
	case K_STYLE:
		if (x != LCA_ROPE_HALF && x != LCA_ROPE_INTERLEAVED)
			return -1;
		*(lca_rope_style *)(void *)dst = (lca_rope_style)x;
		return 0;
	default:
		memcpy(dst, &x, 8);
		return 0;
	}
}

static int send_tensors(FILE *out, const struct lcio_tensor *t, int n)
{
	for (int i = 0; i < n; i++)
		if (lcio_wput_i64(out, t[i].data != NULL) ||
		    (t[i].data && (lcio_wput_i64(out, t[i].n) ||
		     lcio_wput(out, t[i].data, (size_t)t[i].n * sizeof(double)))))
			return -1;
	return 0;
}

static int send_case(FILE *out, const struct lcio_case *c)
{
	unsigned vb = variant_bit(c->p.variant);
	unsigned char v[8];
	int r = lcio_wput_i64(out, c->p.variant);

	for (size_t i = 0; !r && i < sizeof config / sizeof config[0]; i++)
		if (config[i].variants & vb) {
			cfg_get(c, &config[i], v);
			r = lcio_wput(out, v, 8);
		}
	return r || lcio_wput_i64(out, c->Tq) || lcio_wput_i64(out, c->Tk) ||
	    lcio_wput_i64(out, c->nseq) || lcio_wput_i64(out, c->cu_seqlens != NULL) ||
	    (c->cu_seqlens && lcio_wput(out, c->cu_seqlens,
		(size_t)(c->nseq + 1) * sizeof(int64_t))) ||
	    lcio_wput_str(out, c->name) || lcio_wput_str(out, c->generator) ||
	    lcio_wput_str(out, c->command) || lcio_wput(out, &c->seed, sizeof c->seed) ||
	    lcio_wput_i64(out, c->has_seed) || send_tensors(out, c->in, c->nin) ||
	    send_tensors(out, c->out, c->nout) ? -1 : 0;
}

static int send_reply(void *arg, FILE *out)
{
	struct job *j = arg;

	if (j->metric)
		return lcio_wput_i64(out, j->found) || lcio_wput(out, &j->value, sizeof j->value);
	return send_case(out, j->c);
}

/* A reply that does not hold together: the reader is lcattn's own code, so
 * this is a bug, or a reader subverted by the file. */
static int garbled(struct io *io, const char *what)
{
	return fail(io, "the reader's reply is inconsistent at %s "
		"(a bug in lcattn, or a reader subverted by the file)", what);
}

static int take_tensors(struct io *io, FILE *in, struct lcio_tensor *t, int n,
	int required)
{
	int64_t present, len;

	for (int i = 0; i < n; i++) {
		if (lcio_wget_i64(in, &present) || (present != 0 && present != 1) ||
		    (!present && required && !t[i].optional))
			return garbled(io, t[i].name);
		if (!present)
			continue;
		if (lcio_wget_i64(in, &len) || len != t[i].n)
			return garbled(io, t[i].name);
		if (!(t[i].data = malloc((size_t)t[i].n * sizeof(double))))
			return nomem(io, t[i].name);
		if (lcio_wget(in, t[i].data, (size_t)t[i].n * sizeof(double)))
			return garbled(io, t[i].name);
	}
	return 0;
}

static int take_config(struct io *io, FILE *in, struct lcio_case *c, const lca_variant *want)
{
	unsigned char v[8];
	int64_t x;
	unsigned vb;

	if (lcio_wget_i64(in, &x) || x < 0 || x > LCA_LIGHTNING || (want && x != *want))
		return garbled(io, "variant");
	lcio_case_init(c, (lca_variant)x);
	vb = variant_bit(c->p.variant);
	for (size_t i = 0; i < sizeof config / sizeof config[0]; i++)
		if ((config[i].variants & vb) &&
		    (lcio_wget(in, v, 8) || cfg_set(c, &config[i], v)))
			return garbled(io, config[i].name);
	if (lcio_wget_i64(in, &c->Tq) || lcio_wget_i64(in, &c->Tk) ||
	    lcio_wget_i64(in, &c->nseq) || lcio_wget_i64(in, &x) || (x != 0 && x != 1))
		return garbled(io, "the sequences");
	if (!x)
		return 0;
	if (c->nseq < 1 || c->nseq > LCIO_MAX_LEN)
		return garbled(io, "nseq");
	if (!(c->cu_seqlens = malloc((size_t)(c->nseq + 1) * sizeof(int64_t))))
		return nomem(io, "cu_seqlens");
	if (lcio_wget(in, c->cu_seqlens, (size_t)(c->nseq + 1) * sizeof(int64_t)))
		return garbled(io, "cu_seqlens");
	return cu_check(io, c, c->cu_seqlens, c->nseq + 1);
}

static int take_case(struct io *io, FILE *in, struct job *j)
{
	struct lcio_case *c = j->c;
	int64_t has_seed;

	if (take_config(io, in, c, j->golden ? &j->golden->p.variant : NULL))
		return -1;
	if (lcio_wget_str(in, MAX_STR, &c->name) || lcio_wget_str(in, MAX_STR, &c->generator) ||
	    lcio_wget_str(in, MAX_STR, &c->command) ||
	    lcio_wget(in, &c->seed, sizeof c->seed) || lcio_wget_i64(in, &has_seed) ||
	    (has_seed != 0 && has_seed != 1))
		return garbled(io, "the root attributes");
	c->has_seed = (int)has_seed;
	if (j->golden) {
		/* As read_cand(): a candidate is shaped by its golden file. */
		c->p = j->golden->p;
		c->Tq = j->golden->Tq, c->Tk = j->golden->Tk, c->nseq = j->golden->nseq;
		io->shape_src = "the golden file's /config";
	} else if (!c->cu_seqlens && c->nseq != 1 && (j->what & LCIO_INPUTS)) {
		return garbled(io, "nseq");
	}
	return layout_io(io, c) ||
	    take_tensors(io, in, c->in, c->nin, !j->golden && (j->what & LCIO_INPUTS)) ||
	    take_tensors(io, in, c->out, c->nout, j->golden || (j->what & LCIO_OUTPUTS)) ? -1 : 0;
}

static int take_reply(void *arg, FILE *in, char *err, size_t errlen)
{
	struct job *j = arg;
	struct io io = { .path = j->path, .err = err, .errlen = errlen,
		.shape_src = "/config" };
	int64_t found;

	if (j->metric) {
		if (lcio_wget_i64(in, &found) || (found != 0 && found != 1) ||
		    lcio_wget(in, &j->value, sizeof j->value))
			return garbled(&io, "the metric"), LCIO_BAD_FILE;
		j->found = (int)found;
		return LCIO_PARSED;
	}
	memset(j->c, 0, sizeof *j->c);
	if (take_case(&io, in, j)) {
		lcio_case_free(j->c);
		return io.own ? LCIO_OWN_FAULT : LCIO_BAD_FILE;
	}
	return LCIO_PARSED;
}

static const struct lcio_reader reader = { parse_file, send_reply, take_reply };

int lcio_read(const char *path, unsigned what, struct lcio_case *c, char *err, size_t errlen)
{
	struct job j = { .path = path, .what = what, .c = c };

	memset(c, 0, sizeof *c);
	return lcio_sandbox(path, &reader, &j, err, errlen) ? -1 : 0;
}

int lcio_read_candidate(const char *path, const struct lcio_case *golden,
	struct lcio_case *cand, char *err, size_t errlen)
{
	struct job j = { .path = path, .golden = golden, .c = cand };

	memset(cand, 0, sizeof *cand);
	return lcio_sandbox(path, &reader, &j, err, errlen) ? -1 : 0;
}

int lcio_read_metric(const char *path, const char *name, double *value, char *err,
	size_t errlen)
{
	struct job j = { .path = path, .metric = name };

	if (lcio_sandbox(path, &reader, &j, err, errlen))
		return -1;
	*value = j.value;
	return j.found ? 0 : 1;
}

int lcio_read_image(const void *buf, size_t len, const char *name, unsigned what,
	struct lcio_case *c, char *err, size_t errlen)
{
	struct job j = { .path = name, .what = what, .c = c };

	return parse_file(&j, (void *)buf, len, err, errlen) == LCIO_PARSED ? 0 : -1;
}

/* ---- writing ---- */

static int put_attr(struct io *io, hid_t obj, const char *name, hid_t ftype, hid_t mtype,
	const void *val)
{
	char why[160];

	if (lcio_put_attr(obj, name, ftype, mtype, val, why))
		return fail(io, "cannot write attribute %s (%s)", name, why);
	return 0;
}

static int put_str(struct io *io, hid_t obj, const char *name, const char *s)
{
	char why[160];

	if (lcio_put_str(obj, name, s, why))
		return fail(io, "cannot write attribute %s (%s)", name, why);
	return 0;
}

static int put_i64(struct io *io, hid_t obj, const char *name, int64_t x)
{
	return put_attr(io, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &x);
}

static int put_f64(struct io *io, hid_t obj, const char *name, double x)
{
	return put_attr(io, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &x);
}

/* Object creation properties without modification times (reproducible bytes). */
static hid_t untimed(hid_t cls)
{
	hid_t pl = H5Pcreate(cls);

	if (pl >= 0 && H5Pset_obj_track_times(pl, 0) < 0) {
		H5Pclose(pl);
		return -1;
	}
	return pl;
}

static hid_t make_group(struct io *io, hid_t f, const char *name)
{
	char why[160];
	hid_t pl = untimed(H5P_GROUP_CREATE), g = -1;

	if (pl < 0 || (g = H5Gcreate2(f, name, H5P_DEFAULT, pl, H5P_DEFAULT)) < 0)
		fail(io, "cannot create group /%s (%s)", name, lcio_h5why(why));
	if (pl >= 0)
		H5Pclose(pl);
	return g;
}

static int put_dset(struct io *io, hid_t g, const char *name, int rank, const int64_t *dims,
	hid_t ftype, hid_t mtype, const void *data, hid_t *out)
{
	char why[160];
	hsize_t hd[4];
	hid_t pl = untimed(H5P_DATASET_CREATE), sp = -1, d = -1;
	int r = 0;

	for (int i = 0; i < rank; i++)
		hd[i] = (hsize_t)dims[i];
	sp = rank ? H5Screate_simple(rank, hd, NULL) : H5Screate(H5S_SCALAR);
	if (pl < 0 || sp < 0 || (d = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, pl, H5P_DEFAULT)) < 0 ||
	    H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
		r = fail(io, "cannot write dataset %s (%s)", name, lcio_h5why(why));
	if (!r && out)
		*out = d;
	else if (d >= 0)
		H5Dclose(d);
	if (sp >= 0)
		H5Sclose(sp);
	if (pl >= 0)
		H5Pclose(pl);
	return r;
}

static int write_config(struct io *io, hid_t f, const struct lcio_case *c)
{
	static const char *const styles[] = { "half", "interleaved" };
	unsigned vb = variant_bit(c->p.variant);
	hid_t g = make_group(io, f, "config");
	int r = g < 0 ? -1 : 0;

	for (size_t i = 0; !r && i < sizeof config / sizeof config[0]; i++) {
		const struct cfg *k = &config[i];
		const void *src = (const char *)c + k->off;

		if (!(k->variants & vb))
			continue;
		if (c->p.rope_dim == 0 && (k->kind == K_STYLE || !strcmp(k->name, "rope_theta")))
			continue; /* only what applies */
		if (k->kind == K_REAL)
			r = put_f64(io, g, k->name, *(const double *)src);
		else if (k->kind == K_FLAG)
			r = put_i64(io, g, k->name, *(const int *)src);
		else if (k->kind == K_STYLE)
			r = put_str(io, g, k->name, styles[*(const lca_rope_style *)src != LCA_ROPE_HALF]);
		else
			r = put_i64(io, g, k->name, *(const int64_t *)src);
	}
	if (g >= 0)
		H5Gclose(g);
	return r;
}

static int write_tensors(struct io *io, hid_t f, const char *gname, const struct lcio_tensor *t,
	int n, const struct lcio_case *c)
{
	hid_t g = make_group(io, f, gname);
	int r = g < 0 ? -1 : 0;

	if (!r && c && c->cu_seqlens) {
		int64_t len = c->nseq + 1;

		r = put_dset(io, g, "cu_seqlens", 1, &len, H5T_STD_I64LE, H5T_NATIVE_INT64,
			c->cu_seqlens, NULL);
	}
	for (int i = 0; !r && i < n; i++) {
		if (!t[i].data && t[i].optional)
			continue;
		if (!t[i].data)
			r = fail(io, "internal: no data for /%s/%s", gname, t[i].name);
		else
			r = put_dset(io, g, t[i].name, t[i].rank, t[i].dims, H5T_IEEE_F64LE,
				H5T_NATIVE_DOUBLE, t[i].data, NULL);
	}
	if (g >= 0)
		H5Gclose(g);
	return r;
}

static int write_metrics(struct io *io, hid_t f, const struct lcio_case *c)
{
	hid_t g = make_group(io, f, "metrics"), d;
	int r = g < 0 ? -1 : 0;

	for (int i = 0; !r && i < c->nmetric; i++) {
		const struct lcio_metric *m = &c->metric[i];

		r = put_dset(io, g, m->name, 0, NULL, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &m->value, &d);
		if (!r) {
			r = put_str(io, d, "definition", m->definition);
			H5Dclose(d);
		}
	}
	if (g >= 0)
		H5Gclose(g);
	return r;
}

static int write_root(struct io *io, hid_t f, const struct lcio_case *c)
{
	const char *v = lcio_variant_name(c->p.variant);

	if (!v)
		return fail(io, "unknown variant %d", (int)c->p.variant);
	if (put_str(io, f, "schema", LCIO_SCHEMA) || put_str(io, f, "variant", v) ||
	    put_str(io, f, "case", c->name ? c->name : "") ||
	    put_str(io, f, "generator", c->generator ? c->generator : ""))
		return -1;
	if (c->has_seed && put_attr(io, f, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &c->seed))
		return -1;
	return c->command ? put_str(io, f, "command", c->command) : 0;
}

int lcio_write(const char *path, const struct lcio_case *c, unsigned what, char *err, size_t errlen)
{
	struct io io = { .path = path, .err = err, .errlen = errlen };
	char why[160];
	hid_t fcpl, f = -1;
	int r;

	quiet();
	/* The file creation list also governs the root group's times. */
	if ((fcpl = untimed(H5P_FILE_CREATE)) < 0)
		return fail(&io, "HDF5 does not start (%s)", lcio_h5why(why));
	f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
	if (f < 0)
		fail(&io, "cannot create (%s)", lcio_h5why(why));
	H5Pclose(fcpl);
	if (f < 0)
		return -1;
	r = write_root(&io, f, c) || write_config(&io, f, c) ||
	    ((what & LCIO_INPUTS) && write_tensors(&io, f, "inputs", c->in, c->nin, c)) ||
	    ((what & LCIO_OUTPUTS) && write_tensors(&io, f, "outputs", c->out, c->nout, NULL)) ||
	    ((what & LCIO_METRICS) && c->nmetric && write_metrics(&io, f, c));
	if (H5Fclose(f) < 0 && !r)
		r = fail(&io, "cannot finish writing (%s)", lcio_h5why(why));
	if (r)
		remove(path);
	return r ? -1 : 0;
}
