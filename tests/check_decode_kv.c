/*
 * check_decode_kv.c - the cpu decode kernels (lib/cpu/decode.c) over the
 * cache layouts of struct lcai_kv: contiguous or paged (LCA_CACHE_PAGE
 * tokens a page, pages in any order), stored in the plan's dtype or in
 * bf16 under an f32 plan.
 *
 * The kernels are internal (hidden in the shared library), so this test
 * links the static archive, as check_cost does, and calls
 * lcai_cpu_softmax_decode / lcai_cpu_mla_decode with a struct lcai_kv it
 * builds itself. What it holds:
 *   - paged equals contiguous bit for bit (f32, f64, bf16 storage): the
 *     blocks never straddle a page, so the same chunks run in the same
 *     order, only their addresses differ;
 *   - contiguous f32/f64 meet the tolerance rule against lib/ref (so the
 *     aligned start of the key range keeps windows right);
 *   - bf16 storage under an f32 plan meets the rule against the reference
 *     run on the bf16-rounded keys and values (f64 for the error, f32 for
 *     the allowance: twice its error, floored at 1e-6);
 *   - the thread count does not change the bits;
 *   - a call of many sequences gives each the bits of a call for it alone;
 *   - which calls the kernels read directly (lcai_cpu_decode_direct).
 */
#include "internal.h"
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One shape: softmax (H, Hkv, dk, dv) or mla (H, dn, dr, dc, dv); rope_dim
 * rd (0 none), its style, a window (0 none). */
struct shape {
	lca_variant v;
	int64_t H, Hkv, dk, dv, dn, dr, dc, rd;
	lca_rope_style style;
	int64_t window;
};

static const struct shape shapes[] = {
	/* GQA, dk != dv, no RoPE */
	{ LCA_SOFTMAX, 8, 2, 64, 48, 0, 0, 0, 0, LCA_ROPE_HALF, 0 },
	/* full RoPE, half style */
	{ LCA_SOFTMAX, 4, 4, 32, 32, 0, 0, 0, 32, LCA_ROPE_HALF, 0 },
	/* partial interleaved RoPE, sizes off the vector width */
	{ LCA_SOFTMAX, 6, 2, 40, 24, 0, 0, 0, 16, LCA_ROPE_INTERLEAVED, 0 },
	/* windows: wider than a block, and a few keys */
	{ LCA_SOFTMAX, 8, 4, 64, 64, 0, 0, 0, 64, LCA_ROPE_HALF, 70 },
	{ LCA_SOFTMAX, 2, 1, 24, 20, 0, 0, 0, 8, LCA_ROPE_INTERLEAVED, 5 },
	/* absorbed mla: full RoPE, partial RoPE, a window */
	{ LCA_MLA, 8, 0, 0, 32, 16, 16, 64, 16, LCA_ROPE_INTERLEAVED, 0 },
	{ LCA_MLA, 8, 0, 0, 24, 24, 16, 72, 8, LCA_ROPE_HALF, 0 },
	{ LCA_MLA, 8, 0, 0, 16, 16, 16, 64, 8, LCA_ROPE_INTERLEAVED, 100 },
	/* value rows whose vectors leave two past the register-blocked
	 * value tiles (pv_many: dc 40 is 2 float32 AVX-512 vectors and a
	 * tail, 5 float64 ones; dv 40 the same for softmax), with head
	 * counts off the 8-row blocks (H 5, 12) and a short RoPE (dr 8) */
	{ LCA_MLA, 5, 0, 0, 24, 16, 8, 40, 8, LCA_ROPE_INTERLEAVED, 0 },
	{ LCA_MLA, 12, 0, 0, 16, 16, 8, 40, 8, LCA_ROPE_HALF, 0 },
	{ LCA_SOFTMAX, 8, 1, 24, 40, 0, 0, 0, 8, LCA_ROPE_INTERLEAVED, 0 },
};
#define NSHAPE ((int)(sizeof shapes / sizeof shapes[0]))

static const int64_t tks[] = { 1, 63, 64, 65, 1000 };
static const int64_t tqs[] = { 1, 3, 16 };
#define NTK 5
#define NTQ 3
#define NCASE (NSHAPE * NTK * NTQ)

/* Inputs in double: the queries (softmax q; mla q_nope, q_rope), the two
 * cache buffers (softmax k, v; mla ckv, k_rope) and mla's weights. */
struct inputs {
	lca_params p;
	int64_t tq, tk, row[2], nq[2], nw[2], no, nl;
	double *q[2], *c[2], *w[2];
};

static lca_params make_params(const struct shape *s, lca_dtype dt, int nthreads)
{
	lca_params p = tu_params(s->v);
	lca_plan *plan;

	p.backend = LCA_BACKEND_CPU;
	p.dtype = dt;
	p.H = s->H;
	p.dv = s->dv;
	p.rope_dim = s->rd;
	p.rope_style = s->style;
	p.causal = 1;
	p.window = s->window;
	p.nthreads = nthreads;
	if (s->v == LCA_SOFTMAX) {
		p.Hkv = s->Hkv;
		p.dk = s->dk;
	} else {
		p.dn = s->dn;
		p.dr = s->dr;
		p.dc = s->dc;
		p.scale = 1.0 / sqrt((double)(s->dn + s->dr));
		p.algo = LCA_ALGO_ABSORBED;
	}
	plan = tu_plan(&p);
	p = ((const struct lca_plan *)plan)->p; /* resolved defaults */
	lca_plan_destroy(plan);
	return p;
}

static void draw(struct inputs *in, const struct shape *s, lca_dtype dt,
	int64_t tq, int64_t tk, int nthreads)
{
	const int64_t H = s->H;

	memset(in, 0, sizeof *in);
	in->p = make_params(s, dt, nthreads);
	in->tq = tq;
	in->tk = tk;
	if (s->v == LCA_SOFTMAX) {
		in->row[0] = s->Hkv * s->dk;
		in->row[1] = s->Hkv * s->dv;
		in->nq[0] = tq * H * s->dk;
	} else {
		in->row[0] = s->dc;
		in->row[1] = s->dr;
		in->nq[0] = tq * H * s->dn;
		in->nq[1] = tq * H * s->dr;
		in->nw[0] = H * s->dn * s->dc;
		in->nw[1] = H * s->dv * s->dc;
	}
	in->no = tq * H * s->dv;
	in->nl = tq * H;
	for (int j = 0; j < 2; j++) {
		in->q[j] = tu_alloc(in->nq[j]);
		tu_fill_normal(in->q[j], in->nq[j], 1.0);
		in->c[j] = tu_alloc(tk * in->row[j]);
		tu_fill_normal(in->c[j], tk * in->row[j], 1.0);
		in->w[j] = tu_alloc(in->nw[j]);
		tu_fill_normal(in->w[j], in->nw[j], 1.0 / sqrt((double)(s->dc + 1)));
	}
}

static void drop(struct inputs *in)
{
	for (int j = 0; j < 2; j++) {
		free(in->q[j]);
		free(in->c[j]);
		free(in->w[j]);
	}
}

/* x rounded to bf16 (to float, then to nearest even of the top 16 bits)
 * as its bits. */
static uint16_t bf16_bits(double x)
{
	float f = (float)x;
	uint32_t u;

	memcpy(&u, &f, sizeof u);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

static double bf16_value(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float f;

	memcpy(&f, &u, sizeof f);
	return f;
}

/* n values of x in type t (f64, f32 or bf16 bits), newly allocated. */
static void *typed(const double *x, int64_t n, lca_dtype t)
{
	const size_t es = lcai_dtype_size(t);
	char *y = malloc((size_t)(n > 0 ? n : 1) * es);

	ck_assert_ptr_nonnull(y);
	for (int64_t i = 0; i < n; i++) {
		if (t == LCA_F64) {
			((double *)y)[i] = x[i];
		} else if (t == LCA_F32) {
			((float *)y)[i] = (float)x[i];
		} else {
			((uint16_t *)y)[i] = bf16_bits(x[i]);
		}
	}
	return y;
}

static double *widen(const void *y, int64_t n, lca_dtype t)
{
	double *x = tu_alloc(n);

	for (int64_t i = 0; i < n; i++)
		x[i] = t == LCA_F64 ? ((const double *)y)[i] : ((const float *)y)[i];
	return x;
}

/* A cache of the inputs' tokens stored as t: contiguous buffers, and the
 * same tokens in a pool of pages placed by a shuffled page table, with
 * spare pages and the last page's unused tokens full of NaN. */
struct cache {
	void *buf[2];
	char *pool;
	int32_t *pt;
	struct lcai_kv flat, paged;
};

static void cache_build(struct cache *c, const struct inputs *in, lca_dtype t)
{
	const size_t es = lcai_dtype_size(t);
	const int64_t npg = (in->tk + LCA_CACHE_PAGE - 1) / LCA_CACHE_PAGE;
	const int64_t npool = npg + 3;
	const size_t pb = (size_t)(LCA_CACHE_PAGE * (in->row[0] + in->row[1])) * es;
	int32_t *perm = malloc((size_t)npool * sizeof *perm);

	ck_assert_ptr_nonnull(perm);
	memset(c, 0, sizeof *c);
	for (int j = 0; j < 2; j++)
		c->buf[j] = typed(in->c[j], in->tk * in->row[j], t);
	c->pool = malloc((size_t)npool * pb);
	c->pt = malloc((size_t)npg * sizeof *c->pt);
	ck_assert(c->pool && c->pt);
	memset(c->pool, 0xff, (size_t)npool * pb); /* NaN in every type */
	for (int64_t i = 0; i < npool; i++)
		perm[i] = (int32_t)i;
	for (int64_t i = npool - 1; i > 0; i--) {
		int64_t k = tu_randint(0, i);
		int32_t x = perm[i];

		perm[i] = perm[k];
		perm[k] = x;
	}
	memcpy(c->pt, perm, (size_t)npg * sizeof *c->pt);
	free(perm);
	c->flat = (struct lcai_kv){ t, { in->row[0], in->row[1] },
		{ c->buf[0], c->buf[1] }, NULL, NULL, 0, { 0, 0 } };
	c->paged = (struct lcai_kv){ t, { in->row[0], in->row[1] }, { NULL, NULL },
		c->pool, c->pt, pb,
		{ 0, (size_t)(LCA_CACHE_PAGE * in->row[0]) * es } };
	for (int j = 0; j < 2; j++)
		for (int64_t s = 0; s < in->tk; s++)
			memcpy(c->pool + (size_t)c->pt[s / LCA_CACHE_PAGE] * pb +
				c->paged.off[j] + (size_t)((s % LCA_CACHE_PAGE) * in->row[j]) * es,
				(const char *)c->buf[j] + (size_t)(s * in->row[j]) * es,
				(size_t)in->row[j] * es);
}

static void cache_free(struct cache *c)
{
	free(c->buf[0]);
	free(c->buf[1]);
	free(c->pool);
	free(c->pt);
}

/* Outputs of one decode call in the plan's dtype. */
struct out {
	void *o, *lse;
};

static struct out run(const struct inputs *in, const lca_params *p,
	const struct lcai_kv *kv)
{
	const size_t es = lcai_dtype_size(p->dtype);
	struct out r = { malloc((size_t)in->no * es), malloc((size_t)in->nl * es) };
	void *q0 = typed(in->q[0], in->nq[0], p->dtype);
	void *q1 = typed(in->q[1], in->nq[1], p->dtype);
	void *w0 = typed(in->w[0], in->nw[0], p->dtype);
	void *w1 = typed(in->w[1], in->nw[1], p->dtype);

	ck_assert(r.o && r.lse);
	ck_assert_msg(lcai_cpu_decode_direct(p, in->tq, in->tk, kv),
		"tq %lld tk %lld is not served by the decode kernels",
		(long long)in->tq, (long long)in->tk);
	const struct lcai_dec_seq x = { in->tq, in->tk, *kv, q0, q1, r.o, r.lse };

	if (p->variant == LCA_SOFTMAX)
		tu_assert_ok(lcai_cpu_softmax_decode(p, 1, &x));
	else
		tu_assert_ok(lcai_cpu_mla_decode(p, 1, &x, w0, w1));
	free(q0);
	free(q1);
	free(w0);
	free(w1);
	return r;
}

static void same_bits(const struct inputs *in, const lca_params *p,
	struct out a, struct out b, const char *what)
{
	const size_t es = lcai_dtype_size(p->dtype);

	ck_assert_msg(memcmp(a.o, b.o, (size_t)in->no * es) == 0 &&
		memcmp(a.lse, b.lse, (size_t)in->nl * es) == 0,
		"%s: outputs differ (tq %lld, tk %lld)", what, (long long)in->tq,
		(long long)in->tk);
}

static void out_free(struct out *r)
{
	free(r->o);
	free(r->lse);
}

/* The reference in f64 and in f32 on the given cache buffers (doubles). */
static void reference(const struct inputs *in, const double *c0,
	const double *c1, double *o64, double *l64, double *o32, double *l32)
{
	const int64_t cq[2] = { 0, in->tq }, ck[2] = { 0, in->tk };
	const lca_params *p = &in->p;
	float *f[8];
	float *fo = malloc((size_t)in->no * sizeof *fo);
	float *fl = malloc((size_t)in->nl * sizeof *fl);

	f[0] = typed(in->q[0], in->nq[0], LCA_F32);
	f[1] = typed(in->q[1], in->nq[1], LCA_F32);
	f[2] = typed(c0, in->tk * in->row[0], LCA_F32);
	f[3] = typed(c1, in->tk * in->row[1], LCA_F32);
	f[4] = typed(in->w[0], in->nw[0], LCA_F32);
	f[5] = typed(in->w[1], in->nw[1], LCA_F32);
	ck_assert(fo && fl);
	if (p->variant == LCA_SOFTMAX) {
		tu_assert_ok(lcai_ref_softmax(p, cq, ck, 1, in->q[0], c0, c1, o64, l64));
		tu_assert_ok(lcai_ref32_softmax(p, cq, ck, 1, f[0], f[2], f[3], fo, fl));
	} else {
		tu_assert_ok(lcai_ref_mla_absorbed(p, cq, ck, 1, in->q[0], in->q[1], c0,
			c1, in->w[0], in->w[1], o64, l64));
		tu_assert_ok(lcai_ref32_mla_absorbed(p, cq, ck, 1, f[0], f[1], f[2], f[3],
			f[4], f[5], fo, fl));
	}
	for (int64_t i = 0; i < in->no; i++)
		o32[i] = fo[i];
	for (int64_t i = 0; i < in->nl; i++)
		l32[i] = fl[i];
	for (int j = 0; j < 6; j++)
		free(f[j]);
	free(fo);
	free(fl);
}

/* DESIGN.md's rule: f64 within 1e-12; f32 within twice the error of the
 * reference run in f32, floored at 1e-6. */
static void assert_rule(const struct inputs *in, lca_dtype dt, struct out r,
	const double *c0, const double *c1, const char *what)
{
	double *o64 = tu_alloc(in->no), *l64 = tu_alloc(in->nl);
	double *o32 = tu_alloc(in->no), *l32 = tu_alloc(in->nl);
	double *o = widen(r.o, in->no, dt), *l = widen(r.lse, in->nl, dt);
	double to, tl;

	reference(in, c0, c1, o64, l64, o32, l32);
	if (dt == LCA_F64) {
		to = tl = 1e-12;
	} else {
		to = fmax(2.0 * tu_relerr(o32, o64, in->no), 1e-6);
		tl = fmax(2.0 * tu_relerr(l32, l64, in->nl), 1e-6);
	}
	ck_assert(tu_all_finite(o, in->no) && tu_all_finite(l, in->nl));
	tu_assert_close(o, o64, in->no, to, what);
	tu_assert_close(l, l64, in->nl, tl, what);
	free(o64);
	free(l64);
	free(o32);
	free(l32);
	free(o);
	free(l);
}

/* Case i: shape, tk, tq; 0 when tq > tk (no such decode). */
static int pick(int i, const struct shape **s, int64_t *tq, int64_t *tk)
{
	*s = &shapes[i / (NTK * NTQ)];
	*tk = tks[i / NTQ % NTK];
	*tq = tqs[i % NTQ];
	return *tq <= *tk;
}

/* ---- paged = contiguous, and the rule, in the plan's dtype ---- */

static void paged_equals_flat(int i, lca_dtype dt)
{
	const struct shape *s;
	struct inputs in;
	struct cache c;
	struct out a, b;
	int64_t tq, tk;

	if (!pick(i, &s, &tq, &tk))
		return;
	draw(&in, s, dt, tq, tk, 0);
	cache_build(&c, &in, dt);
	a = run(&in, &in.p, &c.flat);
	b = run(&in, &in.p, &c.paged);
	same_bits(&in, &in.p, a, b, "paged vs contiguous");
	{
		/* the cache as the plan's dtype saw it */
		double *c0 = widen(c.buf[0], tk * in.row[0], dt);
		double *c1 = widen(c.buf[1], tk * in.row[1], dt);

		assert_rule(&in, dt, a, c0, c1, "contiguous vs reference");
		free(c0);
		free(c1);
	}
	out_free(&a);
	out_free(&b);
	cache_free(&c);
	drop(&in);
}

START_TEST(test_f64_paged_is_contiguous_bitwise)
{
	paged_equals_flat(_i, LCA_F64);
}
END_TEST

START_TEST(test_f32_paged_is_contiguous_bitwise)
{
	paged_equals_flat(_i, LCA_F32);
}
END_TEST

/* ---- bf16 storage under an f32 plan ---- */

START_TEST(test_bf16_storage_meets_the_rule)
{
	const struct shape *s;
	struct inputs in;
	struct cache c;
	struct out a, b;
	int64_t tq, tk;
	double *c0, *c1;

	if (!pick(_i, &s, &tq, &tk))
		return;
	draw(&in, s, LCA_F32, tq, tk, 0);
	cache_build(&c, &in, LCA_BF16);
	a = run(&in, &in.p, &c.flat);
	b = run(&in, &in.p, &c.paged);
	same_bits(&in, &in.p, a, b, "bf16 paged vs contiguous");
	c0 = tu_alloc(tk * in.row[0]);
	c1 = tu_alloc(tk * in.row[1]);
	for (int64_t n = 0; n < tk * in.row[0]; n++)
		c0[n] = bf16_value(((const uint16_t *)c.buf[0])[n]);
	for (int64_t n = 0; n < tk * in.row[1]; n++)
		c1[n] = bf16_value(((const uint16_t *)c.buf[1])[n]);
	assert_rule(&in, LCA_F32, a, c0, c1, "bf16 storage vs reference on bf16 inputs");
	free(c0);
	free(c1);
	out_free(&a);
	out_free(&b);
	cache_free(&c);
	drop(&in);
}
END_TEST

/* ---- threads ---- */

static const int64_t thread_tks[] = { 1000, 4099 };

/* Case i over shapes x thread_tks x {1, 16} queries x 3 storages (f64, f32,
 * bf16 under f32), paged: 1 and 2 threads give the same bits. */
START_TEST(test_thread_count_keeps_the_bits)
{
	const struct shape *s = &shapes[_i / 12];
	const int64_t tk = thread_tks[_i / 6 % 2], tq = _i / 3 % 2 ? 16 : 1;
	const int st = _i % 3;
	const lca_dtype dt = st == 0 ? LCA_F64 : LCA_F32;
	const lca_dtype store = st == 2 ? LCA_BF16 : dt;
	struct inputs in;
	struct cache c;
	struct out a, b;
	lca_params p2;

	draw(&in, s, dt, tq, tk, 1);
	p2 = make_params(s, dt, 2);
	cache_build(&c, &in, store);
	a = run(&in, &in.p, &c.paged);
	b = run(&in, &p2, &c.paged);
	same_bits(&in, &in.p, a, b, "1 vs 2 threads");
	out_free(&a);
	out_free(&b);
	cache_free(&c);
	drop(&in);
}
END_TEST

/* ---- a call of many sequences ---- */

static const int64_t many_tq[] = { 1, 16, 3, 1, 17 };
static const int64_t many_tk[] = { 1000, 65, 64, 1, 300 };
#define NMANY 5

/* One decode call over the n sequences x (their outputs where x says),
 * mla's weights w. */
static void call_many(const lca_params *p, int n, const struct lcai_dec_seq *x,
	void *const w[2])
{
	if (p->variant == LCA_SOFTMAX)
		tu_assert_ok(lcai_cpu_softmax_decode(p, n, x));
	else
		tu_assert_ok(lcai_cpu_mla_decode(p, n, x, w[0], w[1]));
}

/* Case i over shapes x 3 storages (f64, f32, bf16 under f32), 2 threads:
 * one call of NMANY sequences of mixed tq and tk, paged and contiguous in
 * turn, gives each sequence the bits of a call for it alone. The last
 * (17 queries, contiguous) goes to the prefill engine inside the same
 * call; under bf16 storage, which that engine does not read, it is left
 * out. */
START_TEST(test_many_sequences_are_each_alone)
{
	const struct shape *s = &shapes[_i / 3];
	const lca_dtype dt = _i % 3 == 0 ? LCA_F64 : LCA_F32;
	const lca_dtype store = _i % 3 == 2 ? LCA_BF16 : dt;
	const int n = store == LCA_BF16 ? NMANY - 1 : NMANY;
	struct inputs in[NMANY];
	struct cache c[NMANY];
	struct out many[NMANY], alone[NMANY];
	struct lcai_dec_seq x[NMANY];
	void *q[NMANY][2], *w[2];

	for (int j = 0; j < n; j++) {
		const size_t es = lcai_dtype_size(dt);

		draw(&in[j], s, dt, many_tq[j], many_tk[j], 2);
		cache_build(&c[j], &in[j], store);
		for (int k = 0; k < 2; k++)
			q[j][k] = typed(in[j].q[k], in[j].nq[k], dt);
		many[j] = (struct out){ malloc((size_t)in[j].no * es),
			malloc((size_t)in[j].nl * es) };
		alone[j] = (struct out){ malloc((size_t)in[j].no * es),
			malloc((size_t)in[j].nl * es) };
		ck_assert(many[j].o && many[j].lse && alone[j].o && alone[j].lse);
		x[j] = (struct lcai_dec_seq){ many_tq[j], many_tk[j],
			j % 2 ? c[j].paged : c[j].flat, q[j][0], q[j][1], many[j].o,
			many[j].lse };
	}
	ck_assert_int_eq(lcai_cpu_decode_direct(&in[0].p, 17, 300, &c[0].flat), 0);
	for (int k = 0; k < 2; k++) /* a layer's weights: the same for all */
		w[k] = typed(in[0].w[k], in[0].nw[k], dt);
	call_many(&in[0].p, n, x, w);
	for (int j = 0; j < n; j++) {
		struct lcai_dec_seq y = x[j];

		y.o = alone[j].o;
		y.lse = alone[j].lse;
		call_many(&in[0].p, 1, &y, w);
		same_bits(&in[j], &in[0].p, many[j], alone[j], "in a call of many vs alone");
		out_free(&many[j]);
		out_free(&alone[j]);
		free(q[j][0]);
		free(q[j][1]);
		cache_free(&c[j]);
		drop(&in[j]);
	}
	free(w[0]);
	free(w[1]);
}
END_TEST

/* ---- which calls are direct ---- */

START_TEST(test_direct_calls)
{
	const lca_params f32 = make_params(&shapes[0], LCA_F32, 0);
	const lca_params f64 = make_params(&shapes[0], LCA_F64, 0);
	const lca_params mla = make_params(&shapes[5], LCA_F32, 0);
	lca_params naive = mla;
	struct lcai_kv kv = { LCA_F32, { 1, 1 }, { NULL, NULL }, NULL, NULL, 0, { 0, 0 } };

	naive.algo = LCA_ALGO_NAIVE;
	ck_assert_int_eq(lcai_cpu_decode_direct(&f32, 1, 100, &kv), 1);
	ck_assert_int_eq(lcai_cpu_decode_direct(&f32, 16, 100, &kv), 1);
	ck_assert_int_eq(lcai_cpu_decode_direct(&f32, 17, 100, &kv), 0);
	ck_assert_int_eq(lcai_cpu_decode_direct(&f32, 5, 4, &kv), 0);
	ck_assert_int_eq(lcai_cpu_decode_direct(&mla, 1, 100, &kv), 1);
	ck_assert_int_eq(lcai_cpu_decode_direct(&naive, 1, 100, &kv), 0);
	kv.store = LCA_BF16;
	ck_assert_int_eq(lcai_cpu_decode_direct(&f32, 1, 100, &kv), 1);
	ck_assert_int_eq(lcai_cpu_decode_direct(&mla, 1, 100, &kv), 1);
	/* no f64 kernels over bf16 storage: the caller gathers */
	ck_assert_int_eq(lcai_cpu_decode_direct(&f64, 1, 100, &kv), 0);
	kv.store = LCA_F64;
	ck_assert_int_eq(lcai_cpu_decode_direct(&f64, 1, 100, &kv), 1);
	ck_assert_int_eq(lcai_cpu_decode_direct(&f32, 1, 100, &kv), 0);
}
END_TEST

/* A call that is not direct over a paged kv fails instead of reading it
 * as contiguous. */
START_TEST(test_paged_prefill_call_fails_cleanly)
{
	struct inputs in;
	struct cache c;
	void *q, *o, *l;

	draw(&in, &shapes[0], LCA_F32, 17, 100, 0);
	cache_build(&c, &in, LCA_F32);
	q = typed(in.q[0], 17 * in.p.H * in.p.dk, LCA_F32);
	o = malloc((size_t)in.no * sizeof(float));
	l = malloc((size_t)in.nl * sizeof(float));
	ck_assert(o && l);
	ck_assert_int_eq(lcai_cpu_decode_direct(&in.p, 17, 100, &c.paged), 0);
	const struct lcai_dec_seq x = { 17, 100, c.paged, q, NULL, o, l };

	ck_assert_int_eq(lcai_cpu_softmax_decode(&in.p, 1, &x), LCA_ERR_INTERNAL);
	free(q);
	free(o);
	free(l);
	cache_free(&c);
	drop(&in);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("decode_kv");
	TCase *tc = tu_tcase("layouts");

	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_f64_paged_is_contiguous_bitwise, 0, NCASE);
	tcase_add_loop_test(tc, test_f32_paged_is_contiguous_bitwise, 0, NCASE);
	tcase_add_loop_test(tc, test_bf16_storage_meets_the_rule, 0, NCASE);
	tcase_add_loop_test(tc, test_thread_count_keeps_the_bits, 0, NSHAPE * 12);
	tcase_add_loop_test(tc, test_many_sequences_are_each_alone, 0, NSHAPE * 3);
	tcase_add_test(tc, test_direct_calls);
	tcase_add_test(tc, test_paged_prefill_call_fails_cleanly);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(suite());
}
