/*
 * check_cache_pool.c - what is particular to paged pools and bf16 storage
 * (lca_cache_create_ex), softmax and mla on the ref and cpu backends, f64
 * and f32 (_i = variant * NCONF + conf). The per-sequence calls and the
 * steps over such caches are also covered by check_cache_paged*,
 * check_cache_bf16* (check_cache.c and check_cache_seq.c built on pools).
 *   - a paged cache gives the bits of the same tokens in own buffers, on
 *     page boundaries (63, 64, 65 tokens) and across them;
 *   - a step the pool cannot hold fails with LCA_ERR_CAPACITY and changes
 *     nothing (the checkpoint and the pages in use); retiring a sequence
 *     gives its pages back and the step then succeeds;
 *   - a fork takes no page; the first append to a shared last page copies
 *     it once, and when every holder appends the last one writes in place;
 *   - lca_cache_bytes is the pool: pages x LCA_CACHE_PAGE x per-token bytes
 *     of the storage type (bf16: half of f32, a quarter of f64);
 *   - bf16 storage rounds to nearest, ties to even (read back through a
 *     checkpoint, against rounding done here by arithmetic);
 *   - options that cannot hold are refused with a status and a message.
 */
#include "mechfix.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct conf {
	lca_backend backend;
	lca_dtype dtype;
	const char *name;
};

static const struct conf confs[] = {
	{ LCA_BACKEND_REF, LCA_F64, "ref f64" },
	{ LCA_BACKEND_REF, LCA_F32, "ref f32" },
	{ LCA_BACKEND_CPU, LCA_F64, "cpu f64" },
	{ LCA_BACKEND_CPU, LCA_F32, "cpu f32" },
};
#define NCONF ((int)(sizeof confs / sizeof confs[0]))

enum { TMAX = 200 };

struct rig {
	struct mf m;
	lca_plan *plan;
	int64_t orow, per_token;
	char what[64];
};

/* _i: softmax or mla, then the conf. */
static void rig_init(struct rig *r, int i)
{
	const struct conf *cf = &confs[i % NCONF];
	int64_t per_seq;

	mf_init(&r->m, i / NCONF ? LCA_MLA : LCA_SOFTMAX, cf->backend, cf->dtype, TMAX);
	r->plan = tu_plan(&r->m.p);
	r->orow = r->m.p.H * r->m.p.dv;
	tu_assert_ok(lca_plan_cache_cost(r->plan, &r->per_token, &per_seq));
	snprintf(r->what, sizeof r->what, "%s %s", mf_name(r->m.p.variant), cf->name);
}

static void rig_free(struct rig *r)
{
	mf_free(&r->m);
	lca_plan_destroy(r->plan);
}

/* A cache of nseq sequences; pages > 0: a pool of that many pages. */
static lca_cache *make(const struct rig *r, int64_t nseq, int64_t pages, lca_dtype store)
{
	lca_cache_opts o;
	lca_cache *c = NULL;
	int64_t pt = store == LCA_BF16 ? r->per_token / ((int64_t)r->m.elt / 2) : r->per_token;

	tu_assert_ok(lca_cache_opts_init(r->plan, &o));
	o.nseq = nseq;
	o.capacity = TMAX;
	o.storage = store;
	o.pool_bytes = (size_t)(pages * LCA_CACHE_PAGE * pt);
	tu_assert_ok(lca_cache_create_ex(r->plan, &o, &c));
	return c;
}

static int64_t used(const lca_cache *c)
{
	int64_t u;

	tu_assert_ok(lca_cache_pages(c, &u, NULL));
	return u;
}

/* Step tokens [t0, t0 + cnt[n]) of the case into every sequence n. */
static lca_status step(const struct rig *r, lca_cache *c, int64_t nseq, int64_t t0,
	const int64_t *cnt, void *o)
{
	int64_t cu[8] = { 0 };
	lca_status s;
	void *tmp;
	struct mf m = r->m;

	for (int64_t n = 0; n < nseq; n++)
		cu[n + 1] = cu[n] + cnt[n];
	/* one packed slice of the case: sequence n takes rows cu[n] .. */
	tmp = o ? NULL : mf_alloc_out(&r->m, cu[nseq] * r->orow);
	s = mf_step_cu(&m, r->plan, c, t0, cu[nseq], cu, o ? o : tmp);
	free(tmp);
	return s;
}

/* ---- paged == own buffers ------------------------------------------------------ */

START_TEST(test_paged_cache_gives_the_bits_of_own_buffers)
{
	static const int64_t plan_steps[][3] = {
		{ 63, 64, 65 }, { 1, 1, 1 }, { 0, 1, 1 }, { 70, 1, 0 }, { 1, 1, 1 }, { 1, 2, 3 },
	};
	struct rig r;
	lca_cache *own, *paged;
	void *oa, *ob;
	int64_t t0 = 0;

	rig_init(&r, _i);
	own = make(&r, 3, 0, r.m.p.dtype);
	paged = make(&r, 3, 3 * 4, r.m.p.dtype);
	oa = mf_alloc_out(&r.m, TMAX * r.orow);
	ob = mf_alloc_out(&r.m, TMAX * r.orow);
	for (size_t k = 0; k < sizeof plan_steps / sizeof plan_steps[0]; k++) {
		int64_t T = plan_steps[k][0] + plan_steps[k][1] + plan_steps[k][2];

		tu_assert_ok(step(&r, own, 3, t0, plan_steps[k], oa));
		tu_assert_ok(step(&r, paged, 3, t0, plan_steps[k], ob));
		ck_assert_msg(memcmp(oa, ob, (size_t)(T * r.orow) * r.m.elt) == 0,
			"%s: step %zu: paged outputs differ from own buffers", r.what, k);
		t0 = 7 * (int64_t)k; /* other rows of the case next time */
	}
	lca_cache_destroy(own);
	lca_cache_destroy(paged);
	free(oa);
	free(ob);
	rig_free(&r);
}
END_TEST

/* ---- exhaustion ------------------------------------------------------------------ */

START_TEST(test_exhausted_pool_refuses_and_keeps_everything)
{
	const int64_t fill[2] = { 100, 60 }, more[2] = { 1, 5 };
	struct rig r;
	lca_cache *c;
	size_t n0, n1;
	void *before, *after;
	lca_status s;

	rig_init(&r, _i);
	c = make(&r, 2, 3, r.m.p.dtype); /* 100 + 60 tokens: 2 + 1 pages */
	tu_assert_ok(step(&r, c, 2, 0, fill, NULL));
	ck_assert_int_eq(used(c), 3);
	before = mf_cache_bytes(c, &n0);
	s = step(&r, c, 2, 0, more, NULL); /* sequence 1 needs a fourth page */
	ck_assert_msg(s == LCA_ERR_CAPACITY, "%s: got %s", r.what, lca_strerror(s));
	ck_assert(strstr(lca_last_error(), "pool") != NULL);
	after = mf_cache_bytes(c, &n1);
	ck_assert(n0 == n1 && memcmp(before, after, n0) == 0);
	ck_assert_int_eq(used(c), 3);
	free(after);
	/* sequence 0 fits in its last page: the step without sequence 1 does */
	{
		const int64_t only0[2] = { 1, 0 };

		tu_assert_ok(step(&r, c, 2, 0, only0, NULL));
	}
	tu_assert_ok(lca_cache_retire(c, 0));
	ck_assert_int_eq(used(c), 1);
	{
		const int64_t only1[2] = { 0, 5 };

		tu_assert_ok(step(&r, c, 2, 0, only1, NULL));
	}
	ck_assert_int_eq(used(c), 2);
	free(before);
	lca_cache_destroy(c);
	rig_free(&r);
}
END_TEST

/* ---- copy-on-write ----------------------------------------------------------------- */

START_TEST(test_fork_shares_pages_and_copies_on_write)
{
	const int64_t pre[3] = { 100, 0, 0 };
	struct rig r;
	lca_cache *c;

	rig_init(&r, _i);
	c = make(&r, 3, 8, r.m.p.dtype);
	tu_assert_ok(step(&r, c, 3, 0, pre, NULL));
	ck_assert_int_eq(used(c), 2);
	tu_assert_ok(lca_cache_fork(c, 0, 1));
	tu_assert_ok(lca_cache_fork(c, 0, 2));
	ck_assert_int_eq(used(c), 2); /* three sequences, one prompt stored */
	{
		const int64_t one[3] = { 0, 1, 0 };

		tu_assert_ok(step(&r, c, 3, 100, one, NULL));
	}
	ck_assert_int_eq(used(c), 3); /* 1 copied the shared last page */
	{
		const int64_t both[3] = { 1, 0, 1 };

		tu_assert_ok(step(&r, c, 3, 100, both, NULL));
	}
	/* 0 and 2 held the old last page alone between them: one copies, the
	 * other then writes in place */
	ck_assert_int_eq(used(c), 4);
	{
		const int64_t cross[3] = { 30, 0, 0 };

		tu_assert_ok(step(&r, c, 3, 101, cross, NULL)); /* 131 tokens: 3 pages */
	}
	ck_assert_int_eq(used(c), 5);
	tu_assert_ok(lca_cache_truncate(c, 0, 64));   /* its last two pages go */
	ck_assert_int_eq(used(c), 3);
	tu_assert_ok(lca_cache_reset_seq(c, 1));      /* 1 holds its copy alone */
	ck_assert_int_eq(used(c), 2);
	tu_assert_ok(lca_cache_retire(c, 2));
	ck_assert_int_eq(used(c), 1);                 /* 0's first page */
	tu_assert_ok(lca_cache_reset(c));
	ck_assert_int_eq(used(c), 0);
	lca_cache_destroy(c);
	rig_free(&r);
}
END_TEST

/* A pool filled by forks loads its own checkpoint: the checkpoint holds
 * every sequence's tokens in full (6 pages' worth here), the pool 4 pages,
 * so the load must share the pages whose tokens are equal, as the forks
 * did. The next step then gives the bits of a cache that was never saved,
 * and the shared pages are still copied before a write; a save after the
 * load is the same bytes. Both storages. */
/* Save c, reset it and load the checkpoint back: the load succeeds, the
 * pool then holds `pages` pages in use, and c saves the same bytes again. */
static void reload_in_place(const struct rig *r, lca_cache *c, int bf16, int64_t pages)
{
	size_t need = 0, again = 0;
	unsigned char *a, *b;

	tu_assert_ok(lca_cache_save(c, NULL, 0, &need));
	a = malloc(need);
	b = malloc(need);
	ck_assert(a && b);
	tu_assert_ok(lca_cache_save(c, a, need, &again));
	tu_assert_ok(lca_cache_reset(c));
	ck_assert_msg(lca_cache_load(c, a, need) == LCA_OK, "%s %s: %s", r->what,
		bf16 ? "bf16" : "plain", lca_last_error());
	ck_assert_int_eq(used(c), pages);
	tu_assert_ok(lca_cache_save(c, b, need, &again));
	ck_assert(!memcmp(a, b, need));
	free(a);
	free(b);
}

START_TEST(test_forked_pool_loads_its_own_checkpoint)
{
	const int64_t pre[3] = { 100, 0, 0 }, one[3] = { 0, 1, 0 }, all3[3] = { 1, 1, 1 };
	struct rig r;

	rig_init(&r, _i);
	for (int k = 0; k < 2; k++) {
		lca_dtype store = k ? LCA_BF16 : r.m.p.dtype;
		lca_cache *c = make(&r, 3, 4, store), *ref = make(&r, 3, 4, store);
		lca_cache *both[2] = { c, ref };
		void *o[2];

		for (int i = 0; i < 2; i++) {
			tu_assert_ok(step(&r, both[i], 3, 0, pre, NULL));
			tu_assert_ok(lca_cache_fork(both[i], 0, 1));
			tu_assert_ok(lca_cache_fork(both[i], 0, 2));
			tu_assert_ok(step(&r, both[i], 3, 100, one, NULL));
		}
		ck_assert_int_eq(used(c), 3);
		reload_in_place(&r, c, k, 3); /* page 0 of all three, page 1 of 0 and 2 */
		for (int i = 0; i < 2; i++) {
			o[i] = mf_alloc_out(&r.m, 3 * r.orow);
			tu_assert_ok(step(&r, both[i], 3, 101, all3, o[i]));
		}
		ck_assert_msg(!memcmp(o[0], o[1], (size_t)(3 * r.orow) * (size_t)r.m.elt),
			"%s: the step after the load differs", r.what);
		ck_assert_int_eq(used(c), used(ref));
		for (int i = 0; i < 2; i++) {
			free(o[i]);
			lca_cache_destroy(both[i]);
		}
	}
	rig_free(&r);
}
END_TEST

/* A load shares a first page with an earlier sequence that holds its
 * tokens, all of that page or a prefix of it (a truncated fork): a pool of
 * 3 pages holding 5 sequences (two forks of a 100-token sequence cut to
 * 10 and 64 tokens, a 30-token sequence and its fork) reloads its own
 * checkpoint into its 3 pages, and saves the same bytes again. */
START_TEST(test_truncated_forks_reload_into_their_pages)
{
	const int64_t pre[5] = { 100, 0, 0, 0, 0 }, other[5] = { 0, 0, 0, 30, 0 };
	struct rig r;

	rig_init(&r, _i);
	for (int k = 0; k < 2; k++) {
		lca_dtype store = k ? LCA_BF16 : r.m.p.dtype;
		lca_cache *c = make(&r, 5, 3, store);

		tu_assert_ok(step(&r, c, 5, 0, pre, NULL));
		tu_assert_ok(lca_cache_fork(c, 0, 1));
		tu_assert_ok(lca_cache_truncate(c, 1, 10));
		tu_assert_ok(lca_cache_fork(c, 0, 2));
		tu_assert_ok(lca_cache_truncate(c, 2, 64));
		tu_assert_ok(step(&r, c, 5, 150, other, NULL));
		tu_assert_ok(lca_cache_fork(c, 3, 4));
		ck_assert_int_eq(used(c), 3);
		reload_in_place(&r, c, k, 3);
		lca_cache_destroy(c);
	}
	rig_free(&r);
}
END_TEST

/* ---- bytes ------------------------------------------------------------------------ */

START_TEST(test_cache_bytes_is_the_pool)
{
	struct rig r;
	lca_cache *c;
	size_t b;
	int64_t total;

	rig_init(&r, _i);
	for (int bf = 0; bf < 2; bf++) {
		lca_dtype st = bf ? LCA_BF16 : r.m.p.dtype;
		int64_t pt = bf ? r.per_token / ((int64_t)r.m.elt / 2) : r.per_token;
		const int64_t fill[1] = { 77 };

		c = make(&r, 1, 5, st);
		tu_assert_ok(lca_cache_bytes(c, &b));
		ck_assert_uint_eq(b, (size_t)(5 * LCA_CACHE_PAGE * pt));
		tu_assert_ok(lca_cache_pages(c, NULL, &total));
		ck_assert_int_eq(total, 5);
		tu_assert_ok(step(&r, c, 1, 0, fill, NULL));
		tu_assert_ok(lca_cache_bytes(c, &b));
		ck_assert_uint_eq(b, (size_t)(5 * LCA_CACHE_PAGE * pt));
		ck_assert_int_eq(used(c), 2);
		lca_cache_destroy(c);
	}
	rig_free(&r);
}
END_TEST

/* ---- bf16 rounding ------------------------------------------------------------------ */

/* Nearest bf16 of x, ties to even, by arithmetic on the binade. */
static double round_bf16(double x)
{
	int e;
	double u, q, rem;

	if (x == 0)
		return x;
	frexp(x, &e);
	u = ldexp(1.0, e - 8);
	q = floor(x / u);
	rem = x / u - q;
	if (rem > 0.5 || (rem == 0.5 && fmod(q, 2.0) != 0))
		q += 1;
	return q * u;
}

static double bf16_value(uint16_t h)
{
	uint32_t b = (uint32_t)h << 16;
	float f;

	memcpy(&f, &b, sizeof f);
	return f;
}

/* Keys with ties both ways and values off the bf16 grid, stored by a step,
 * come back from the checkpoint as the nearest bf16 (ties to even). */
START_TEST(test_bf16_storage_rounds_to_nearest_even)
{
	struct rig r;
	lca_cache *c;
	size_t n, off;
	unsigned char *buf;
	int64_t row0 = 0, row1 = 0, tokens = 3;
	double *x[2];
	void *typed[2], *o;
	const struct mf *m;

	rig_init(&r, _i);
	m = &r.m;
	row0 = m->p.variant == LCA_SOFTMAX ? m->row[1] : m->row[2];
	row1 = m->p.variant == LCA_SOFTMAX ? m->row[2] : m->row[3];
	for (int j = 0; j < 2; j++) {
		int64_t cnt = tokens * (j ? row1 : row0);

		x[j] = tu_alloc(cnt);
		tu_fill_normal(x[j], cnt, 1.0);
		/* float-exact ties: 1 + 2^-8 goes down to 1, 1 + 3 2^-8 up */
		x[j][0] = 1.0 + ldexp(1.0, -8);
		x[j][1] = -(1.0 + 3 * ldexp(1.0, -8));
		x[j][2] = ldexp(1.0 + ldexp(1.0, -8) + ldexp(1.0, -20), -3); /* past a tie */
		if (m->elt == 4)
			for (int64_t i = 0; i < cnt; i++)
				x[j][i] = (float)x[j][i];
		typed[j] = mf_alloc_out(m, cnt);
		for (int64_t i = 0; i < cnt; i++)
			if (m->elt == 8)
				((double *)typed[j])[i] = x[j][i];
			else
				((float *)typed[j])[i] = (float)x[j][i];
	}
	c = make(&r, 1, 2, LCA_BF16);
	o = mf_alloc_out(m, tokens * r.orow);
	{
		struct mf mm = *m;
		void *q0 = mm.in[0];

		/* the case's queries, this test's keys and values */
		if (m->p.variant == LCA_SOFTMAX) {
			mm.in[1] = typed[0];
			mm.in[2] = typed[1];
		} else {
			mm.in[2] = typed[0];
			mm.in[3] = typed[1];
		}
		(void)q0;
		tu_assert_ok(mf_step_cu(&mm, r.plan, c, 0, tokens, NULL, o));
	}
	buf = mf_cache_bytes(c, &n);
	/* format 1: 112-byte header, one length, then buffer 0's rows, then
	 * buffer 1's, little-endian u16 each (lca_cache_save(3)) */
	off = 112 + 8;
	for (int j = 0; j < 2; j++)
		for (int64_t i = 0; i < tokens * (j ? row1 : row0); i++, off += 2) {
			uint16_t h = (uint16_t)(buf[off] | buf[off + 1] << 8);

			ck_assert_msg(bf16_value(h) == round_bf16(x[j][i]),
				"%s: buffer %d element %lld: stored %.9g, nearest bf16 %.9g", r.what,
				j, (long long)i, bf16_value(h), round_bf16(x[j][i]));
		}
	ck_assert_uint_eq(off + 8, n);
	free(buf);
	free(o);
	for (int j = 0; j < 2; j++) {
		free(x[j]);
		free(typed[j]);
	}
	lca_cache_destroy(c);
	rig_free(&r);
}
END_TEST

/* ---- refusals --------------------------------------------------------------------- */

START_TEST(test_options_that_cannot_hold_are_refused)
{
	struct rig r;
	lca_cache_opts o;
	lca_cache *c = (lca_cache *)&o;
	lca_plan *lin;
	lca_params p;

	rig_init(&r, _i);
	ck_assert_int_eq(lca_cache_opts_init(NULL, &o), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_opts_init(r.plan, NULL), LCA_ERR_NULL);
	tu_assert_ok(lca_cache_opts_init(r.plan, &o));
	ck_assert_int_eq(o.nseq, 1);
	ck_assert_int_eq(o.storage, r.m.p.dtype);
	ck_assert_int_eq(lca_cache_create_ex(r.plan, &o, &c), LCA_ERR_SIZE); /* capacity 0 */
	ck_assert_ptr_null(c);
	o.capacity = 10;
	ck_assert_int_eq(lca_cache_create_ex(r.plan, NULL, &c), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_create_ex(NULL, &o, &c), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_create_ex(r.plan, &o, NULL), LCA_ERR_NULL);
	o.pool_bytes = (size_t)(LCA_CACHE_PAGE * r.per_token - 1); /* not one page */
	ck_assert_int_eq(lca_cache_create_ex(r.plan, &o, &c), LCA_ERR_SIZE);
	ck_assert(strstr(lca_last_error(), "page") != NULL);
	o.pool_bytes = 0;
	o.storage = r.m.p.dtype == LCA_F64 ? LCA_F32 : LCA_F64;
	ck_assert_int_eq(lca_cache_create_ex(r.plan, &o, &c), LCA_ERR_ARG);
	o.storage = (lca_dtype)7;
	ck_assert_int_eq(lca_cache_create_ex(r.plan, &o, &c), LCA_ERR_ARG);
	/* recurrent caches keep one state per sequence */
	p = tu_params(LCA_DELTANET);
	p.H = p.Hk = 2;
	p.dk = p.dv = 4;
	p.backend = r.m.p.backend;
	p.dtype = r.m.p.dtype;
	lin = tu_plan(&p);
	tu_assert_ok(lca_cache_opts_init(lin, &o));
	o.capacity = 10;
	o.pool_bytes = 1 << 20;
	ck_assert_int_eq(lca_cache_create_ex(lin, &o, &c), LCA_ERR_ARG);
	o.pool_bytes = 0;
	o.storage = LCA_BF16;
	ck_assert_int_eq(lca_cache_create_ex(lin, &o, &c), LCA_ERR_ARG);
	ck_assert_ptr_null(c);
	ck_assert_int_eq(lca_cache_pages(NULL, NULL, NULL), LCA_ERR_NULL);
	lca_plan_destroy(lin);
	rig_free(&r);
}
END_TEST

static Suite *pool_suite(void)
{
	Suite *s = suite_create("cache pools");
	TCase *tc = tu_tcase("pools");
	const int all = 2 * NCONF;

	tcase_add_loop_test(tc, test_paged_cache_gives_the_bits_of_own_buffers, 0, all);
	tcase_add_loop_test(tc, test_exhausted_pool_refuses_and_keeps_everything, 0, all);
	tcase_add_loop_test(tc, test_fork_shares_pages_and_copies_on_write, 0, all);
	tcase_add_loop_test(tc, test_forked_pool_loads_its_own_checkpoint, 0, all);
	tcase_add_loop_test(tc, test_truncated_forks_reload_into_their_pages, 0, all);
	tcase_add_loop_test(tc, test_cache_bytes_is_the_pool, 0, all);
	tcase_add_loop_test(tc, test_bf16_storage_rounds_to_nearest_even, 0, all);
	tcase_add_loop_test(tc, test_options_that_cannot_hold_are_refused, 0, all);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(pool_suite());
}
