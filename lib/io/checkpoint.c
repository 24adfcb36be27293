/*
 * checkpoint.c - decode-cache checkpoints in HDF5 (lcattn-checkpoint(5)).
 *
 * The checkpoint proper is the byte string of lca_cache_save(), stored as
 * the uint8 dataset /cache: it carries its own format version, shapes and
 * checksum, and lca_cache_load() validates all of it, so this layer never
 * has to trust the file. The root attributes and /lengths repeat what the
 * bytes say (decoded from their documented header) for people reading the
 * file with h5py or h5dump; restoring uses /cache alone.
 *
 * Reading trusts nothing: every HDF5 call is checked, the dataset's type
 * and rank are checked, and its size is bounded by the file's before any
 * allocation. Writing is byte-reproducible (no modification times).
 */
#include "checkpoint.h"
#include "h5util.h"
#include "sandbox.h"

#include <hdf5.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Header of the lca_cache_save() bytes, format 1 (lca_cache_save(3)). */
#define SAVED_HEADER 112

/* A dataset may be compressed, but not beyond what deflate can reach:
 * a larger declared size is a forged file, refused before allocating. */
#define MAX_EXPANSION 1100

struct io {
	const char *path;
	char *err;
	size_t errlen;
	int failed;
	lca_status status;
};

/* Record the first failure as "path: message" with its status. */
static int fail(struct io *io, lca_status s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct io *io, lca_status s, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	if (io->failed)
		return -1;
	io->failed = 1;
	io->status = s;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (io->errlen)
		snprintf(io->err, io->errlen, "%s: %s", io->path, msg);
	return -1;
}

/* ---- what the saved bytes say about themselves ---- */

static uint64_t le64(const unsigned char *b)
{
	uint64_t x = 0;

	for (int i = 7; i >= 0; i--)
		x = (x << 8) | b[i];
	return x;
}

static uint32_t le32(const unsigned char *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
		(uint32_t)b[3] << 24;
}

/* Decode the header of bytes that lca_cache_save() just wrote. */
static int describe(struct io *io, const unsigned char *b, size_t n, struct lcio_ckpt_info *info)
{
	static const char *const variants[] = { "softmax", "mla", "deltanet", "lightning" };
	int64_t *dims[8] = { &info->H, &info->Hkv, &info->Hk, &info->dk, &info->dv,
		&info->dn, &info->dr, &info->dc };
	uint32_t v = le32(b + 12), t = le32(b + 16);

	memset(info, 0, sizeof *info);
	info->nseq = (int64_t)le64(b + 32);
	if (n < SAVED_HEADER || v > LCA_LIGHTNING || t > LCA_BF16 || info->nseq < 1 ||
	    (uint64_t)info->nseq > (n - SAVED_HEADER) / 8)
		return fail(io, LCA_ERR_INTERNAL, "lca_cache_save wrote an unexpected header");
	snprintf(info->variant, sizeof info->variant, "%s", variants[v]);
	snprintf(info->dtype, sizeof info->dtype, "%s",
		t == LCA_F64 ? "f64" : t == LCA_F32 ? "f32" : "bf16");
	info->format = le32(b + 8);
	info->capacity = (int64_t)le64(b + 40);
	for (int i = 0; i < 8; i++)
		*dims[i] = (int64_t)le64(b + 48 + 8 * i);
	info->bytes = n;
	if (!(info->lengths = malloc((size_t)info->nseq * sizeof *info->lengths)))
		return fail(io, LCA_ERR_NOMEM, "out of memory");
	for (int64_t i = 0; i < info->nseq; i++)
		info->lengths[i] = (int64_t)le64(b + SAVED_HEADER + 8 * i);
	return 0;
}

void lcio_ckpt_info_free(struct lcio_ckpt_info *info)
{
	if (info) {
		free(info->lengths);
		info->lengths = NULL;
	}
}

/* ---- writing ---- */

static int put_attr(struct io *io, hid_t obj, const char *name, hid_t ftype, hid_t mtype,
	const void *val)
{
	char why[160];

	if (lcio_put_attr(obj, name, ftype, mtype, val, why))
		return fail(io, LCA_ERR_ARG, "cannot write attribute %s (%s)", name, why);
	return 0;
}

static int put_str(struct io *io, hid_t obj, const char *name, const char *s)
{
	char why[160];

	if (lcio_put_str(obj, name, s, why))
		return fail(io, LCA_ERR_ARG, "cannot write attribute %s (%s)", name, why);
	return 0;
}

static int put_i64(struct io *io, hid_t obj, const char *name, int64_t x)
{
	return put_attr(io, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &x);
}

/* A 1-D dataset without modification time. */
static int put_dset(struct io *io, hid_t f, const char *name, hsize_t n, hid_t ftype,
	hid_t mtype, const void *data)
{
	char why[160];
	hid_t pl = H5Pcreate(H5P_DATASET_CREATE), sp = H5Screate_simple(1, &n, NULL), d = -1;
	int r = 0;

	if (pl < 0 || sp < 0 || H5Pset_obj_track_times(pl, 0) < 0 ||
	    (d = H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, pl, H5P_DEFAULT)) < 0 ||
	    H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
		r = fail(io, LCA_ERR_ARG, "cannot write dataset /%s (%s)", name, lcio_h5why(why));
	if (d >= 0)
		H5Dclose(d);
	if (sp >= 0)
		H5Sclose(sp);
	if (pl >= 0)
		H5Pclose(pl);
	return r;
}

static int write_attrs(struct io *io, hid_t f, const struct lcio_ckpt_info *in)
{
	const char *names[8] = { "H", "Hkv", "Hk", "dk", "dv", "dn", "dr", "dc" };
	const int64_t dims[8] = { in->H, in->Hkv, in->Hk, in->dk, in->dv, in->dn, in->dr, in->dc };
	char gen[64];

	snprintf(gen, sizeof gen, "lcattn %s", lca_version());
	if (put_str(io, f, "schema", LCIO_CKPT_SCHEMA) || put_str(io, f, "generator", gen) ||
	    put_str(io, f, "variant", in->variant) || put_str(io, f, "dtype", in->dtype) ||
	    put_i64(io, f, "format", in->format) || put_i64(io, f, "nseq", in->nseq) ||
	    put_i64(io, f, "capacity", in->capacity))
		return -1;
	for (int i = 0; i < 8; i++)
		if (dims[i] && put_i64(io, f, names[i], dims[i]))
			return -1;
	return 0;
}

/* Save the cache into a new buffer *b of *n bytes and describe it. */
static int save(struct io *io, const lca_cache *cache, unsigned char **b, size_t *n,
	struct lcio_ckpt_info *info)
{
	lca_status s;

	*b = NULL;
	if ((s = lca_cache_save(cache, NULL, 0, n)))
		return fail(io, s, "lca_cache_save: %s", lca_last_error());
	if (!(*b = malloc(*n)))
		return fail(io, LCA_ERR_NOMEM, "out of memory for %zu bytes", *n);
	if ((s = lca_cache_save(cache, *b, *n, n)))
		return fail(io, s, "lca_cache_save: %s", lca_last_error());
	return describe(io, *b, *n, info);
}

int lcio_checkpoint_write(const char *path, const lca_cache *cache, char *err, size_t errlen)
{
	struct io io = { path, err, errlen, 0, LCA_OK };
	struct lcio_ckpt_info info = { .lengths = NULL };
	unsigned char *b = NULL;
	char why[160];
	size_t n;
	hid_t f = -1;
	int r;

	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	if (!path || !cache)
		return fail(&io, LCA_ERR_NULL, "%s is NULL", path ? "cache" : "path");
	if ((r = save(&io, cache, &b, &n, &info)) == 0) {
		if ((f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) < 0)
			r = fail(&io, LCA_ERR_ARG, "cannot create the file (%s)", lcio_h5why(why));
		else if (write_attrs(&io, f, &info) ||
			 put_dset(&io, f, "lengths", (hsize_t)info.nseq, H5T_STD_I64LE,
				H5T_NATIVE_INT64, info.lengths) ||
			 put_dset(&io, f, "cache", (hsize_t)n, H5T_STD_U8LE, H5T_NATIVE_UINT8, b))
			r = -1;
	}
	if (f >= 0 && H5Fclose(f) < 0 && r == 0)
		r = fail(&io, LCA_ERR_ARG, "cannot close the file (%s)", lcio_h5why(why));
	if (r && f >= 0)
		unlink(path);
	lcio_ckpt_info_free(&info);
	free(b);
	return r;
}

/* ---- reading ---- */

/* Read string attribute name (fixed or variable length) into buf. */
static int get_str(struct io *io, hid_t obj, const char *name, char *buf, size_t len)
{
	char why[160], *v = NULL;
	hid_t a = -1, ft = -1, mt = H5Tcopy(H5T_C_S1);
	int r = -1;

	buf[0] = 0;
	/* The memory type takes the file's character set: HDF5 converts
	 * between none of them. */
	if (mt < 0 || (a = H5Aopen(obj, name, H5P_DEFAULT)) < 0 || (ft = H5Aget_type(a)) < 0 ||
	    H5Tget_class(ft) != H5T_STRING || H5Tset_cset(mt, H5Tget_cset(ft)) < 0) {
		fail(io, LCA_ERR_CORRUPT, "no string attribute %s (%s)", name, lcio_h5why(why));
	} else if (H5Tis_variable_str(ft) > 0) {
		if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, &v) < 0)
			fail(io, LCA_ERR_CORRUPT, "cannot read attribute %s (%s)", name, lcio_h5why(why));
		else
			r = snprintf(buf, len, "%s", v ? v : "") >= (int)len ?
				fail(io, LCA_ERR_CORRUPT, "attribute %s is too long", name) : 0;
		H5free_memory(v);
	} else if (H5Tget_size(ft) >= len) {
		fail(io, LCA_ERR_CORRUPT, "attribute %s is too long", name);
	} else if (H5Tset_size(mt, len) < 0 || H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0 ||
		   H5Aread(a, mt, buf) < 0) {
		fail(io, LCA_ERR_CORRUPT, "cannot read attribute %s (%s)", name, lcio_h5why(why));
	} else {
		r = 0;
	}
	if (ft >= 0)
		H5Tclose(ft);
	if (a >= 0)
		H5Aclose(a);
	H5Tclose(mt);
	return r;
}

/* Read integer attribute name; an absent one leaves *x at 0 unless required. */
static int get_i64(struct io *io, hid_t obj, const char *name, int64_t *x, int required)
{
	char why[160];
	htri_t e = H5Aexists(obj, name);
	hid_t a;
	int r = 0;

	*x = 0;
	if (e == 0 && !required)
		return 0;
	if (e <= 0 || (a = H5Aopen(obj, name, H5P_DEFAULT)) < 0)
		return fail(io, LCA_ERR_CORRUPT, "no attribute %s (%s)", name, lcio_h5why(why));
	if (H5Aread(a, H5T_NATIVE_INT64, x) < 0)
		r = fail(io, LCA_ERR_CORRUPT, "attribute %s is not an integer (%s)", name, lcio_h5why(why));
	H5Aclose(a);
	return r;
}

/* Open the file image buf[len] and check its schema attribute. */
static hid_t open_checkpoint(struct io *io, const void *buf, size_t len)
{
	char why[160], schema[64];
	hid_t f;
	int not_hdf5;

	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	if ((f = lcio_open_image(buf, len, why, &not_hdf5)) < 0) {
		if (not_hdf5)
			fail(io, LCA_ERR_CORRUPT, "not an HDF5 file");
		else
			fail(io, LCA_ERR_CORRUPT, "damaged or truncated HDF5 file (%s)", why);
		return -1;
	}
	if (get_str(io, f, "schema", schema, sizeof schema) == 0 &&
	    strcmp(schema, LCIO_CKPT_SCHEMA) != 0)
		fail(io, LCA_ERR_CORRUPT, "schema \"%s\" is not \"%s\"", schema, LCIO_CKPT_SCHEMA);
	if (io->failed) {
		H5Fclose(f);
		return -1;
	}
	return f;
}

/* Open the 1-D dataset name of integers of esize bytes; *n its length. */
static hid_t open_vector(struct io *io, hid_t f, const char *name, size_t esize, hsize_t *n)
{
	char why[160];
	hid_t d = H5Dopen2(f, name, H5P_DEFAULT), t = -1, sp = -1;
	int ok = 0;

	if (d < 0 || (t = H5Dget_type(d)) < 0 || (sp = H5Dget_space(d)) < 0)
		fail(io, LCA_ERR_CORRUPT, "no dataset /%s (%s)", name, lcio_h5why(why));
	else if (H5Tget_class(t) != H5T_INTEGER || H5Tget_size(t) != esize ||
		 H5Sget_simple_extent_ndims(sp) != 1 || H5Sget_simple_extent_dims(sp, n, NULL) != 1)
		fail(io, LCA_ERR_CORRUPT, "/%s is not a 1-D dataset of %zu-byte integers", name, esize);
	else
		ok = 1;
	if (t >= 0)
		H5Tclose(t);
	if (sp >= 0)
		H5Sclose(sp);
	if (!ok && d >= 0) {
		H5Dclose(d);
		d = -1;
	}
	return d;
}

static int read_info(struct io *io, hid_t f, struct lcio_ckpt_info *info)
{
	int64_t *dims[8] = { &info->H, &info->Hkv, &info->Hk, &info->dk, &info->dv,
		&info->dn, &info->dr, &info->dc };
	const char *names[8] = { "H", "Hkv", "Hk", "dk", "dv", "dn", "dr", "dc" };
	char why[160];
	hsize_t n;
	hid_t d;

	if (get_str(io, f, "variant", info->variant, sizeof info->variant) ||
	    get_str(io, f, "dtype", info->dtype, sizeof info->dtype) ||
	    get_i64(io, f, "format", &info->format, 1) || get_i64(io, f, "nseq", &info->nseq, 1) ||
	    get_i64(io, f, "capacity", &info->capacity, 1))
		return -1;
	for (int i = 0; i < 8; i++)
		if (get_i64(io, f, names[i], dims[i], 0))
			return -1;
	if ((d = open_vector(io, f, "cache", 1, &n)) < 0)
		return -1;
	H5Dclose(d);
	info->bytes = (size_t)n;
	if ((d = open_vector(io, f, "lengths", 8, &n)) < 0)
		return -1;
	if (info->nseq < 1 || n != (hsize_t)info->nseq)
		fail(io, LCA_ERR_CORRUPT, "/lengths holds %llu values, nseq is %lld",
			(unsigned long long)n, (long long)info->nseq);
	else if (!(info->lengths = malloc((size_t)n * sizeof *info->lengths)))
		fail(io, LCA_ERR_NOMEM, "out of memory");
	else if (H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, info->lengths) < 0)
		fail(io, LCA_ERR_CORRUPT, "cannot read /lengths (%s)", lcio_h5why(why));
	H5Dclose(d);
	return io->failed ? -1 : 0;
}

/* The bytes of /cache, in a new buffer *b of *n bytes. */
static int read_bytes(struct io *io, hid_t f, unsigned char **b, size_t *n)
{
	char why[160];
	hsize_t len;
	hsize_t fsize = 0;
	hid_t d;

	*b = NULL;
	if ((d = open_vector(io, f, "cache", 1, &len)) < 0)
		return -1;
	if (H5Fget_filesize(f, &fsize) < 0 || len == 0 || len > (hsize_t)SIZE_MAX ||
	    len / MAX_EXPANSION > fsize)
		fail(io, LCA_ERR_CORRUPT, "/cache declares %llu bytes in a file of %llu",
			(unsigned long long)len, (unsigned long long)fsize);
	else if (!(*b = malloc((size_t)len)))
		fail(io, LCA_ERR_NOMEM, "out of memory for %llu bytes", (unsigned long long)len);
	else if (H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, *b) < 0)
		fail(io, LCA_ERR_CORRUPT, "cannot read /cache (%s)", lcio_h5why(why));
	H5Dclose(d);
	*n = (size_t)len;
	if (io->failed) {
		free(*b);
		*b = NULL;
		return -1;
	}
	return 0;
}

/* ---- through the confined reader (sandbox.h) ---- */

/* One read: the description (info != NULL) or the /cache bytes; with
 * allow_raw, a file that is itself lca_cache_save() bytes (raw = 1). */
struct job {
	const char *path;
	struct lcio_ckpt_info *info;
	unsigned char *b;
	size_t n;
	int allow_raw, raw;
	lca_status status;   /* the parent's, for the caller */
};

/* The file is the bytes themselves: they start with their magic. */
static int parse_raw(struct job *j, struct io *io, const void *image, size_t len)
{
	j->raw = 1;
	if (!(j->b = malloc(len)))
		return fail(io, LCA_ERR_NOMEM, "out of memory for %zu bytes", len);
	memcpy(j->b, image, len);
	j->n = len;
	return 0;
}

/* The child's parse (also run in-process by the _image calls). */
static int parse_file(void *arg, void *image, size_t len, char *err, size_t errlen)
{
	struct job *j = arg;
	struct io io = { j->path, err, errlen, 0, LCA_OK };
	hid_t f;

	if (j->allow_raw && !j->info && len >= 8 && memcmp(image, LCIO_RAW_MAGIC, 8) == 0)
		parse_raw(j, &io, image, len);
	else if ((f = open_checkpoint(&io, image, len)) >= 0) {
		if (j->info && read_info(&io, f, j->info))
			lcio_ckpt_info_free(j->info);
		else if (!j->info)
			read_bytes(&io, f, &j->b, &j->n);
		H5Fclose(f);
	}
	j->status = io.status;
	return !io.failed ? LCIO_PARSED :
		io.status == LCA_ERR_NOMEM ? LCIO_OWN_FAULT : LCIO_BAD_FILE;
}

static int send_reply(void *arg, FILE *out)
{
	const struct job *j = arg;
	const struct lcio_ckpt_info *in = j->info;

	if (!in)
		return lcio_wput_i64(out, j->raw) || lcio_wput_i64(out, (int64_t)j->n) ||
			lcio_wput(out, j->b, j->n) ? -1 : 0;
	return lcio_wput(out, in, sizeof *in) ||
	    lcio_wput(out, in->lengths, (size_t)in->nseq * sizeof *in->lengths) ? -1 : 0;
}

/* Decode the child's reply: the reader is as untrusted as the file. */
static int take_reply(void *arg, FILE *in, char *err, size_t errlen)
{
	struct job *j = arg;
	struct io io = { j->path, err, errlen, 0, LCA_OK };
	struct lcio_ckpt_info *info = j->info;
	int64_t n, raw;

	if (!info) {
		if (lcio_wget_i64(in, &raw) || raw < 0 || raw > j->allow_raw ||
		    lcio_wget_i64(in, &n) || n < 1 || (uint64_t)n > SIZE_MAX)
			fail(&io, LCA_ERR_CORRUPT, "the reader's reply is inconsistent");
		else if (!(j->b = malloc((size_t)n)))
			fail(&io, LCA_ERR_NOMEM, "out of memory for %lld bytes", (long long)n);
		else if (lcio_wget(in, j->b, (size_t)n))
			fail(&io, LCA_ERR_CORRUPT, "the reader's reply is short");
		j->n = (size_t)n;
		j->raw = (int)raw;
	} else if (lcio_wget(in, info, sizeof *info) || info->nseq < 1 ||
		   (uint64_t)info->nseq > SIZE_MAX / sizeof *info->lengths ||
		   !memchr(info->variant, 0, sizeof info->variant) ||
		   !memchr(info->dtype, 0, sizeof info->dtype)) {
		info->lengths = NULL;
		fail(&io, LCA_ERR_CORRUPT, "the reader's reply is inconsistent");
	} else if (!(info->lengths = malloc((size_t)info->nseq * sizeof *info->lengths))) {
		fail(&io, LCA_ERR_NOMEM, "out of memory");
	} else if (lcio_wget(in, info->lengths, (size_t)info->nseq * sizeof *info->lengths)) {
		fail(&io, LCA_ERR_CORRUPT, "the reader's reply is short");
	}
	j->status = io.status;
	if (!io.failed)
		return LCIO_PARSED;
	if (info)
		lcio_ckpt_info_free(info);
	free(j->b);
	j->b = NULL;
	return io.status == LCA_ERR_NOMEM ? LCIO_OWN_FAULT : LCIO_BAD_FILE;
}

static const struct lcio_reader reader = { parse_file, send_reply, take_reply };

/* lcio_sandbox() and the status a caller gets for its outcome. */
static int sandboxed(struct io *io, struct job *j)
{
	int r;

	if (!io->path)
		return fail(io, LCA_ERR_NULL, "path is NULL");
	r = lcio_sandbox(io->path, &reader, j, io->err, io->errlen);
	if (r == LCIO_PARSED)
		return 0;
	io->failed = 1;
	io->status = j->status ? j->status : r == LCIO_NO_FILE ? LCA_ERR_ARG :
		r == LCIO_OWN_FAULT ? LCA_ERR_NOMEM : LCA_ERR_CORRUPT;
	return -1;
}

int lcio_checkpoint_info(const char *path, struct lcio_ckpt_info *info, char *err, size_t errlen)
{
	struct io io = { path, err, errlen, 0, LCA_OK };
	struct job j = { .path = path, .info = info };

	memset(info, 0, sizeof *info);
	return sandboxed(&io, &j);
}

/* Load bytes b[n] into cache; the bytes validate themselves. */
static int load(struct io *io, lca_cache *cache, unsigned char *b, size_t n)
{
	lca_status s;

	if (!io->failed && (s = lca_cache_load(cache, b, n)))
		fail(io, s, "%s", lca_last_error());
	free(b);
	return io->failed ? -1 : 0;
}

int lcio_checkpoint_read(const char *path, lca_cache *cache, lca_status *status, char *err,
	size_t errlen)
{
	struct io io = { path, err, errlen, 0, LCA_OK };
	struct job j = { .path = path };

	if (!cache)
		fail(&io, LCA_ERR_NULL, "cache is NULL");
	else
		sandboxed(&io, &j);
	load(&io, cache, j.b, j.n);
	if (status)
		*status = io.status;
	return io.failed ? -1 : 0;
}

int lcio_checkpoint_bytes(const char *path, unsigned char **b, size_t *n, int *raw,
	lca_status *status, char *err, size_t errlen)
{
	struct io io = { path, err, errlen, 0, LCA_OK };
	struct job j = { .path = path, .allow_raw = 1 };

	*b = NULL;
	*n = 0;
	*raw = 0;
	if (sandboxed(&io, &j) == 0) {
		*b = j.b;
		*n = j.n;
		*raw = j.raw;
	}
	if (status)
		*status = io.status;
	return io.failed ? -1 : 0;
}

int lcio_checkpoint_read_image(const void *buf, size_t len, const char *name,
	lca_cache *cache, lca_status *status, char *err, size_t errlen)
{
	struct io io = { name, err, errlen, 0, LCA_OK };
	struct job j = { .path = name };

	if (!cache)
		fail(&io, LCA_ERR_NULL, "cache is NULL");
	else if (parse_file(&j, (void *)buf, len, err, errlen) != LCIO_PARSED)
		io.failed = 1, io.status = j.status;
	load(&io, cache, j.b, j.n);
	if (status)
		*status = io.status;
	return io.failed ? -1 : 0;
}
