/*
 * check_checkpoint.c - decode-cache checkpoints in HDF5 files
 * (lib/io/checkpoint.c, lcattn-checkpoint(5)): a written file describes the
 * cache in readable attributes, reads back into a fresh cache that
 * continues bit for bit, and a damaged, truncated, foreign or missing file
 * is refused with the cache untouched.
 */
#include "testutil.h"
#include "checkpoint.h"

#include <hdf5.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a small model of each variant on the ref backend -------------------- */

#define NSEQ 2
#define CAP 50

static lca_plan *make_plan(lca_variant v, int64_t dv)
{
	lca_params p = tu_params(v);

	p.H = 4;
	p.dv = dv;
	p.dk = 6;
	if (v == LCA_SOFTMAX) {
		p.Hkv = 2;
		p.rope_dim = LCA_ROPE_FULL;
	}
	if (v == LCA_MLA) {
		p.dn = 4;
		p.dr = 4;
		p.dc = 8;
		p.scale = 0.3;
	}
	if (v == LCA_DELTANET)
		p.Hk = 2;
	return tu_plan(&p);
}

/* Inputs of T tokens for any variant: every per-token tensor gets 64
 * values per token (more than any tensor here needs), weights 1024. */
struct inputs {
	double *x[5], *w[2], *o, *lse;
};

static void inputs_make(struct inputs *in, int64_t T)
{
	for (int i = 0; i < 5; i++) {
		in->x[i] = tu_alloc(T * 64);
		tu_fill_normal(in->x[i], T * 64, 1.0);
	}
	tu_fill_uniform(in->x[3], T * 64, -1.0, 0.0);   /* deltanet g */
	tu_fill_uniform(in->x[4], T * 64, 0.05, 1.0);   /* deltanet beta */
	for (int i = 0; i < 2; i++) {
		in->w[i] = tu_alloc(1024);
		tu_fill_normal(in->w[i], 1024, 0.3);
	}
	tu_fill_uniform(in->w[0], 4, 0.0, 0.5);         /* lightning slope */
	in->o = tu_alloc(T * 64);
	in->lse = tu_alloc(T * 64);
}

static void inputs_free(struct inputs *in)
{
	for (int i = 0; i < 5; i++)
		free(in->x[i]);
	free(in->w[0]);
	free(in->w[1]);
	free(in->o);
	free(in->lse);
}

/* One packed step of cnt[0] + cnt[1] fresh tokens. */
static lca_status step(const lca_plan *plan, lca_cache *c, const int64_t cnt[NSEQ],
	struct inputs *in)
{
	lca_params p;
	int64_t cu[NSEQ + 1] = { 0, cnt[0], cnt[0] + cnt[1] }, T = cu[NSEQ];
	double **x = in->x;

	tu_assert_ok(lca_plan_params(plan, &p));
	switch (p.variant) {
	case LCA_SOFTMAX:
		return lca_softmax_step(plan, c, T, x[0], x[1], x[2], cu, in->o, in->lse);
	case LCA_MLA:
		return lca_mla_step(plan, c, T, x[0], x[1], x[2], x[3], in->w[0], in->w[1], cu,
			in->o, in->lse);
	case LCA_DELTANET:
		return lca_deltanet_step(plan, c, T, x[0], x[1], x[2], x[3], x[4], cu, in->o);
	case LCA_LIGHTNING:
		return lca_lightning_step(plan, c, T, x[0], x[1], x[2], in->w[0], cu, in->o);
	}
	return LCA_ERR_INTERNAL;
}

static lca_cache *filled(const lca_plan *plan)
{
	static const int64_t cnt[][NSEQ] = { { 12, 5 }, { 1, 1 }, { 0, 1 } };
	lca_cache *c = NULL;
	struct inputs in;

	tu_assert_ok(lca_cache_create(plan, NSEQ, CAP, &c));
	inputs_make(&in, 20);
	for (size_t s = 0; s < sizeof cnt / sizeof cnt[0]; s++)
		tu_assert_ok(step(plan, c, cnt[s], &in));
	inputs_free(&in);
	return c;
}

static unsigned char *saved(const lca_cache *c, size_t *n)
{
	unsigned char *b;

	tu_assert_ok(lca_cache_save(c, NULL, 0, n));
	b = malloc(*n);
	ck_assert_ptr_nonnull(b);
	tu_assert_ok(lca_cache_save(c, b, *n, n));
	return b;
}

static void temp_path(char *buf, size_t n, const char *tag)
{
	const char *dir = getenv("TMPDIR");

	snprintf(buf, n, "%s/lcattn-ckpt-%ld-%s.h5", dir && *dir ? dir : "/tmp", (long)getpid(),
		tag);
}

/* ---- tests -------------------------------------------------------------- */

static const lca_variant variants[] = { LCA_SOFTMAX, LCA_MLA, LCA_DELTANET, LCA_LIGHTNING };
static const char *const vnames[] = { "softmax", "mla", "deltanet", "lightning" };

START_TEST(test_file_describes_the_cache)
{
	lca_plan *plan = make_plan(variants[_i], 5);
	lca_cache *c = filled(plan);
	struct lcio_ckpt_info info;
	char path[256], err[512];
	size_t n;
	unsigned char *b = saved(c, &n);
	lca_params p;

	temp_path(path, sizeof path, "info");
	ck_assert_msg(lcio_checkpoint_write(path, c, err, sizeof err) == 0, "%s", err);
	ck_assert_msg(lcio_checkpoint_info(path, &info, err, sizeof err) == 0, "%s", err);
	tu_assert_ok(lca_plan_params(plan, &p));
	ck_assert_str_eq(info.variant, vnames[_i]);
	ck_assert_str_eq(info.dtype, "f64");
	ck_assert_int_eq(info.format, 1);
	ck_assert_int_eq(info.nseq, NSEQ);
	ck_assert_int_eq(info.capacity, CAP);
	ck_assert_int_eq(info.H, p.H);
	ck_assert_int_eq(info.dv, p.dv);
	ck_assert_int_eq(info.Hkv, p.variant == LCA_SOFTMAX ? p.Hkv : 0);
	ck_assert_int_eq(info.dc, p.variant == LCA_MLA ? p.dc : 0);
	ck_assert_int_eq(info.lengths[0], 13);
	ck_assert_int_eq(info.lengths[1], 7);
	ck_assert_uint_eq(info.bytes, n);
	lcio_ckpt_info_free(&info);
	unlink(path);
	free(b);
	lca_cache_destroy(c);
	lca_plan_destroy(plan);
}
END_TEST

START_TEST(test_file_resumes_bit_for_bit)
{
	lca_plan *plan = make_plan(variants[_i], 5);
	lca_cache *a = filled(plan), *b = NULL;
	char path[256], err[512];
	const int64_t cnt[NSEQ] = { 2, 1 };
	struct inputs in;
	double *oa;
	unsigned char *sa, *sb;
	size_t na, nb;
	lca_status s;

	temp_path(path, sizeof path, "resume");
	ck_assert_msg(lcio_checkpoint_write(path, a, err, sizeof err) == 0, "%s", err);
	tu_assert_ok(lca_cache_create(plan, NSEQ, CAP, &b));
	ck_assert_msg(lcio_checkpoint_read(path, b, &s, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(s, LCA_OK);
	inputs_make(&in, 3);
	tu_assert_ok(step(plan, a, cnt, &in));
	oa = tu_copy(in.o, 3 * 64);
	memset(in.o, 0, 3 * 64 * sizeof(double));
	tu_assert_ok(step(plan, b, cnt, &in));
	ck_assert(memcmp(oa, in.o, 3 * 64 * sizeof(double)) == 0);
	sa = saved(a, &na);
	sb = saved(b, &nb);
	ck_assert(na == nb && memcmp(sa, sb, na) == 0);
	free(sa);
	free(sb);
	free(oa);
	inputs_free(&in);
	unlink(path);
	lca_cache_destroy(a);
	lca_cache_destroy(b);
	lca_plan_destroy(plan);
}
END_TEST

/* Read path into c expecting failure with status want; c must not change. */
static void refused(const char *path, lca_cache *c, lca_status want, const char *what)
{
	char err[512] = "";
	size_t n0, n1;
	unsigned char *before = saved(c, &n0), *after;
	lca_status s = LCA_OK;

	ck_assert_msg(lcio_checkpoint_read(path, c, &s, err, sizeof err) == -1,
		"%s: accepted", what);
	ck_assert_msg(s == want, "%s: status %s, want %s (%s)", what, lca_strerror(s),
		lca_strerror(want), err);
	ck_assert_msg(strstr(err, path) != NULL, "%s: message \"%s\" does not name the file",
		what, err);
	after = saved(c, &n1);
	ck_assert_msg(n0 == n1 && memcmp(before, after, n0) == 0, "%s: the cache changed", what);
	free(before);
	free(after);
}

/* Flip one byte of /cache inside the file, where HDF5 stored it. */
static void flip_in_file(const char *path, size_t at)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d;
	haddr_t off;
	FILE *fp;
	int ch;

	ck_assert(f >= 0);
	d = H5Dopen2(f, "cache", H5P_DEFAULT);
	ck_assert(d >= 0);
	off = H5Dget_offset(d);
	ck_assert(off != HADDR_UNDEF);
	H5Dclose(d);
	H5Fclose(f);
	fp = fopen(path, "r+b");
	ck_assert_ptr_nonnull(fp);
	ck_assert(fseek(fp, (long)(off + at), SEEK_SET) == 0);
	ch = fgetc(fp);
	ck_assert(ch != EOF);
	ck_assert(fseek(fp, (long)(off + at), SEEK_SET) == 0);
	fputc(ch ^ 0x10, fp);
	ck_assert(fclose(fp) == 0);
}

START_TEST(test_damaged_files_are_refused)
{
	lca_plan *plan = make_plan(variants[_i], 5);
	lca_cache *src = filled(plan), *dst = filled(plan);
	char path[256], err[512];
	size_t n;
	unsigned char *b = saved(src, &n);
	FILE *fp;

	temp_path(path, sizeof path, "damaged");
	/* A byte of the header, of a length, of the payload, of the checksum. */
	const size_t at[] = { 13, 112, n / 2, n - 1 };

	for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
		ck_assert_msg(lcio_checkpoint_write(path, src, err, sizeof err) == 0, "%s", err);
		flip_in_file(path, at[i]);
		refused(path, dst, LCA_ERR_CORRUPT, "a flipped byte of /cache");
	}
	/* Cut the file short. */
	ck_assert(lcio_checkpoint_write(path, src, err, sizeof err) == 0);
	ck_assert(truncate(path, 800) == 0);
	refused(path, dst, LCA_ERR_CORRUPT, "a truncated file");
	/* Not HDF5 at all. */
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs("not a checkpoint\n", fp);
	fclose(fp);
	refused(path, dst, LCA_ERR_CORRUPT, "a text file");
	unlink(path);
	refused(path, dst, LCA_ERR_ARG, "a missing file");
	free(b);
	lca_cache_destroy(src);
	lca_cache_destroy(dst);
	lca_plan_destroy(plan);
}
END_TEST

START_TEST(test_foreign_files_are_refused)
{
	lca_plan *plan = make_plan(variants[_i], 5);
	lca_plan *other = make_plan(variants[(_i + 1) % 4], 5), *shape = make_plan(variants[_i], 7);
	lca_cache *dst = filled(plan), *c;
	char path[256], err[512];
	hid_t f, sp, a, t;

	temp_path(path, sizeof path, "foreign");
	c = filled(other);
	ck_assert(lcio_checkpoint_write(path, c, err, sizeof err) == 0);
	refused(path, dst, LCA_ERR_CORRUPT, "a checkpoint of another variant");
	lca_cache_destroy(c);
	c = filled(shape);
	ck_assert(lcio_checkpoint_write(path, c, err, sizeof err) == 0);
	refused(path, dst, LCA_ERR_CORRUPT, "a checkpoint of another dv");
	lca_cache_destroy(c);
	/* An HDF5 file of another schema. */
	f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	sp = H5Screate(H5S_SCALAR);
	t = H5Tcopy(H5T_C_S1);
	H5Tset_size(t, 16);
	a = H5Acreate2(f, "schema", t, sp, H5P_DEFAULT, H5P_DEFAULT);
	ck_assert(a >= 0 && H5Awrite(a, t, "lcattn-golden/1") >= 0);
	H5Aclose(a);
	H5Tclose(t);
	H5Sclose(sp);
	H5Fclose(f);
	refused(path, dst, LCA_ERR_CORRUPT, "a file of another schema");
	ck_assert(lcio_checkpoint_info(path, &(struct lcio_ckpt_info){ 0 }, err, sizeof err) == -1);
	unlink(path);
	lca_cache_destroy(dst);
	lca_plan_destroy(plan);
	lca_plan_destroy(other);
	lca_plan_destroy(shape);
}
END_TEST

START_TEST(test_unwritable_path_fails_cleanly)
{
	lca_plan *plan = make_plan(LCA_SOFTMAX, 5);
	lca_cache *c = filled(plan);
	char err[512] = "";
	const char *path = "/nonexistent-lcattn-dir/x.h5";

	ck_assert_int_eq(lcio_checkpoint_write(path, c, err, sizeof err), -1);
	ck_assert_msg(strstr(err, path) != NULL, "message \"%s\"", err);
	ck_assert_int_ne(access(path, F_OK), 0);
	ck_assert_int_eq(lcio_checkpoint_write(NULL, c, err, sizeof err), -1);
	ck_assert_int_eq(lcio_checkpoint_read(path, NULL, NULL, err, sizeof err), -1);
	lca_cache_destroy(c);
	lca_plan_destroy(plan);
}
END_TEST

static Suite *checkpoint_suite(void)
{
	Suite *s = suite_create("checkpoint");
	TCase *tc = tu_tcase("hdf5");

	tcase_add_loop_test(tc, test_file_describes_the_cache, 0, 4);
	tcase_add_loop_test(tc, test_file_resumes_bit_for_bit, 0, 4);
	tcase_add_loop_test(tc, test_damaged_files_are_refused, 0, 4);
	tcase_add_loop_test(tc, test_foreign_files_are_refused, 0, 4);
	tcase_add_test(tc, test_unwritable_path_fails_cleanly);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(checkpoint_suite());
}
