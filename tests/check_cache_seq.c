/*
 * check_cache_seq.c - per-sequence control of decode caches
 * (lca_cache_reset_seq, retire, admit, truncate, fork, get/set_state,
 * snapshot/restore), on the ref and cpu backends in f64 and f32, for the
 * four mechanisms (_i = variant * NCONF + conf):
 *   - after any per-sequence call the other sequences give the bits of a
 *     cache that never saw it;
 *   - requests admitted into and retired from a pool of slots while others
 *     run (continuous batching) give the bits of a cache each;
 *   - fork then diverge gives the bits of two independent caches;
 *   - truncate then replay, and restore then replay, give the bits of a
 *     cache that never went back;
 *   - set_state then a step gives the forward call's outputs with that
 *     state0, and get_state its final state;
 *   - bad ids, retired slots, the wrong variant, NULL pointers, stale
 *     snapshots and plans with other numbers are refused with a status and
 *     a message, the cache unchanged (compared through lca_cache_save).
 * Bit-for-bit comparisons hold on the cpu backend too: both sides run the
 * same kernels on the same tokens of a sequence.
 *
 * Built three times (Makefile.am): CACHE_STORE 0 gives softmax and mla
 * caches their own buffers (check_cache_seq), 1 a paged pool just large
 * enough for the rig's sequences (check_cache_paged_seq: forks share
 * pages copy-on-write), 2 the same pool with bf16 storage
 * (check_cache_bf16_seq). Every claim above holds in each.
 */
#ifndef CACHE_STORE
#define CACHE_STORE 0
#endif
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

/* ---- a rig: NCASE independent token streams of one mechanism ------------- */

enum { NCASE = 3, TMAX = 80, MAXSEQ = 3 };

struct rig {
	struct mf m[NCASE];   /* case n's tokens; weights, slopes from case 0 */
	lca_plan *plan;
	int64_t orow;         /* output elements per token */
	char what[96];
};

static void rig_init(struct rig *r, int i)
{
	const struct conf *cf = &confs[i % NCONF];
	lca_variant v = mf_variants[i / NCONF];

	for (int n = 0; n < NCASE; n++)
		mf_init(&r->m[n], v, cf->backend, cf->dtype, TMAX);
	r->plan = tu_plan(&r->m[0].p);
	r->orow = r->m[0].p.H * r->m[0].p.dv;
	snprintf(r->what, sizeof r->what, "%s %s", mf_name(v), cf->name);
}

static void rig_free(struct rig *r)
{
	for (int n = 0; n < NCASE; n++)
		mf_free(&r->m[n]);
	lca_plan_destroy(r->plan);
}

static int is_kv(const struct rig *r)
{
	return r->m[0].p.variant == LCA_SOFTMAX || r->m[0].p.variant == LCA_MLA;
}

/* What one slot of a step gets: cnt tokens of case src from token at. */
struct feed {
	int src;
	int64_t at, cnt;
};

/* A step of a cache of nseq slots, slot n fed by f[n]; the outputs of
 * slot n's tokens go to out[n] (at f[n].at rows) when out and out[n] are
 * not NULL. Returns the step's status. */
static lca_status rig_step(const struct rig *r, const lca_plan *plan, lca_cache *c,
	int nseq, const struct feed *f, void *const *out)
{
	const struct mf *m0 = &r->m[0];
	size_t elt = m0->elt;
	const void *x[MF_MAXIN];
	void *in[MF_MAXIN] = { 0 }, *o;
	int64_t cu[MAXSEQ + 1], T = 0;
	lca_status s = LCA_ERR_INTERNAL;

	cu[0] = 0;
	for (int n = 0; n < nseq; n++)
		cu[n + 1] = (T += f[n].cnt);
	for (int i = 0; i < m0->nin; i++) {
		if (m0->perm[i]) {
			x[i] = m0->in[i];
			continue;
		}
		in[i] = mf_alloc_out(m0, T * m0->row[i]);
		for (int n = 0; n < nseq; n++)
			memcpy((char *)in[i] + (size_t)(cu[n] * m0->row[i]) * elt,
				(const char *)r->m[f[n].src].in[i] + (size_t)(f[n].at * m0->row[i]) * elt,
				(size_t)(f[n].cnt * m0->row[i]) * elt);
		x[i] = in[i];
	}
	o = mf_alloc_out(m0, T * r->orow);
	switch (m0->p.variant) {
	case LCA_SOFTMAX:
		s = lca_softmax_step(plan, c, T, x[0], x[1], x[2], cu, o, NULL);
		break;
	case LCA_MLA:
		s = lca_mla_step(plan, c, T, x[0], x[1], x[2], x[3], x[4], x[5], cu, o, NULL);
		break;
	case LCA_DELTANET:
		s = lca_deltanet_step(plan, c, T, x[0], x[1], x[2], x[3], x[4], cu, o);
		break;
	case LCA_LIGHTNING:
		s = lca_lightning_step(plan, c, T, x[0], x[1], x[2], x[3], cu, o);
		break;
	}
	for (int n = 0; n < nseq && s == LCA_OK && out; n++)
		if (out[n])
			memcpy((char *)out[n] + (size_t)(f[n].at * r->orow) * elt,
				(char *)o + (size_t)(cu[n] * r->orow) * elt,
				(size_t)(f[n].cnt * r->orow) * elt);
	for (int i = 0; i < m0->nin; i++)
		free(in[i]);
	free(o);
	return s;
}

/* A step that must succeed. */
static void must_step(const struct rig *r, lca_cache *c, int nseq, const struct feed *f,
	void *const *out)
{
	lca_status s = rig_step(r, r->plan, c, nseq, f, out);

	ck_assert_msg(s == LCA_OK, "%s: step: %s (%s)", r->what, lca_strerror(s),
		lca_last_error());
}

/* A cache of nseq slots of TMAX tokens, stored as CACHE_STORE says. The
 * pool holds every slot's TMAX tokens and one page more (a copy-on-write
 * takes its copy before it lets go of the shared page): never more than
 * the rig needs, so the pool's accounting is exercised too. */
static lca_cache *new_cache(const struct rig *r, int64_t nseq)
{
	lca_cache *c = NULL;
	lca_cache_opts o;
	int64_t per_token, per_seq;

	tu_assert_ok(lca_cache_opts_init(r->plan, &o));
	o.nseq = nseq;
	o.capacity = TMAX;
	if (CACHE_STORE > 0 && is_kv(r)) {
		if (CACHE_STORE == 2)
			o.storage = LCA_BF16;
		tu_assert_ok(lca_plan_cache_cost(r->plan, &per_token, &per_seq));
		if (CACHE_STORE == 2)
			per_token /= (int64_t)r->m[0].elt / 2;
		o.pool_bytes = (size_t)((nseq * ((TMAX + LCA_CACHE_PAGE - 1) / LCA_CACHE_PAGE) + 1) *
			LCA_CACHE_PAGE * per_token);
	}
	tu_assert_ok(lca_cache_create_ex(r->plan, &o, &c));
	return c;
}

/* Output rows [t0, t1) of a and b hold the same bits. */
static void assert_same_rows(const struct rig *r, const void *a, const void *b, int64_t t0,
	int64_t t1, const char *what)
{
	size_t elt = r->m[0].elt, off = (size_t)(t0 * r->orow) * elt;

	ck_assert_msg(memcmp((const char *)a + off, (const char *)b + off,
		(size_t)((t1 - t0) * r->orow) * elt) == 0, "%s: %s: outputs differ",
		r->what, what);
}

static void *outbuf(const struct rig *r)
{
	return mf_alloc_out(&r->m[0], TMAX * r->orow);
}

/* Fail unless the cache's checkpoint is still want[0 .. n). */
static void assert_unchanged(const struct rig *r, const lca_cache *c, const void *want,
	size_t n, const char *after)
{
	size_t m;
	void *now = mf_cache_bytes(c, &m);

	ck_assert_msg(m == n && memcmp(now, want, n) == 0, "%s: the cache changed after %s",
		r->what, after);
	free(now);
}

/* ---- the other sequences do not notice --------------------------------------- */

/* The per-sequence calls, each applied to slot 1 of a 3-slot cache. */
enum { OP_RESET, OP_RETIRE_ADMIT, OP_TRUNCATE_OR_SET, OP_FORK_INTO, OP_FORK_FROM,
	OP_RESTORE, NOP };
static const char *const op_names[NOP] = {
	"reset_seq", "retire then admit", "truncate / set_state", "fork 0 -> 1",
	"fork 1 -> 2 then retire 2", "snapshot, step, restore"
};

static void apply_op(const struct rig *r, lca_cache *c, int op)
{
	int64_t got;
	lca_snapshot *snap = NULL;
	void *st;

	switch (op) {
	case OP_RESET:
		tu_assert_ok(lca_cache_reset_seq(c, 1));
		break;
	case OP_RETIRE_ADMIT:
		tu_assert_ok(lca_cache_retire(c, 1));
		tu_assert_ok(lca_cache_admit(c, &got));
		ck_assert_int_eq(got, 1);
		break;
	case OP_TRUNCATE_OR_SET:
		if (is_kv(r)) {
			tu_assert_ok(lca_cache_truncate(c, 1, 3));
			break;
		}
		st = mf_alloc_out(&r->m[0], r->m[0].naux);
		tu_assert_ok(lca_cache_get_state(c, 0, st));
		tu_assert_ok(lca_cache_set_state(c, 1, st, 7));
		free(st);
		break;
	case OP_FORK_INTO:
		tu_assert_ok(lca_cache_fork(c, 0, 1));
		break;
	case OP_FORK_FROM:
		/* touches slot 2, so the caller compares slot 0 only */
		tu_assert_ok(lca_cache_fork(c, 1, 2));
		tu_assert_ok(lca_cache_retire(c, 2));
		tu_assert_ok(lca_cache_admit(c, &got));
		ck_assert_int_eq(got, 2);
		break;
	case OP_RESTORE: {
		const struct feed f[3] = { { 0, 0, 0 }, { 2, 0, 4 }, { 0, 0, 0 } };

		tu_assert_ok(lca_cache_snapshot(c, 1, &snap));
		must_step(r, c, 3, f, NULL);
		tu_assert_ok(lca_cache_restore(c, 1, snap));
		lca_snapshot_destroy(snap);
		break;
	}
	}
}

/* Two 3-slot caches see the same prefill; A then gets an operation on
 * slot 1 and tokens for it, B neither; slots 0 and 2 (0 only where the
 * operation wrote slot 2) must give the same bits in both. */
START_TEST(test_untouched_sequences_are_bit_identical)
{
	struct rig r;

	rig_init(&r, _i);
	for (int op = 0; op < NOP; op++) {
		lca_cache *a = new_cache(&r, 3), *b = new_cache(&r, 3);
		void *oa[3] = { outbuf(&r), NULL, outbuf(&r) };
		void *ob[3] = { outbuf(&r), NULL, outbuf(&r) };
		const struct feed pre[3] = { { 0, 0, 21 }, { 1, 0, 9 }, { 2, 0, 14 } };
		int64_t at0 = 21, at2 = 14;
		char what[160];

		must_step(&r, a, 3, pre, oa);
		must_step(&r, b, 3, pre, ob);
		apply_op(&r, a, op);
		for (int k = 0; k < 5; k++) {
			int64_t t = k == 2 ? 6 : 1;  /* decode rounds and a chunk */
			struct feed fa[3] = { { 0, at0, t }, { 1, 9 + k, 1 }, { 2, at2, t } };
			struct feed fb[3] = { { 0, at0, t }, { 1, 0, 0 }, { 2, at2, t } };

			must_step(&r, a, 3, fa, oa);
			must_step(&r, b, 3, fb, ob);
			at0 += t;
			at2 += t;
		}
		snprintf(what, sizeof what, "after %s, slot 0", op_names[op]);
		assert_same_rows(&r, oa[0], ob[0], 0, at0, what);
		if (op != OP_FORK_FROM) {
			snprintf(what, sizeof what, "after %s, slot 2", op_names[op]);
			assert_same_rows(&r, oa[2], ob[2], 0, at2, what);
		}
		lca_cache_destroy(a);
		lca_cache_destroy(b);
		for (int n = 0; n < 3; n++) {
			free(oa[n]);
			free(ob[n]);
		}
	}
	rig_free(&r);
}
END_TEST

/* ---- continuous batching ----------------------------------------------------- */

enum { NREQ = 5 };
/* Request r: a prompt then single tokens, case r % NCASE from token 0. */
static const int64_t req_prompt[NREQ] = { 7, 1, 12, 3, 5 }, req_total[NREQ] = { 12, 9, 15, 4, 10 };

/* One request alone in a one-sequence cache, stepped as the pool steps it:
 * the prompt, then one token at a time. */
static void run_alone(const struct rig *r, int q, void *o)
{
	lca_cache *c = new_cache(r, 1);
	void *out[1] = { o };

	for (int64_t t = 0; t < req_total[q];) {
		int64_t n = t == 0 ? req_prompt[q] : 1;
		const struct feed f = { q % NCASE, t, n };

		must_step(r, c, 1, &f, out);
		t += n;
	}
	lca_cache_destroy(c);
}

/* Five requests through a pool of 3 slots: admitted when a slot is free,
 * prefilled in the same step as the others decode, retired when done.
 * Each request's outputs are those of a cache of its own, bit for bit. */
START_TEST(test_continuous_batching_equals_one_cache_per_request)
{
	struct rig r;
	lca_cache *c;
	void *o[NREQ], *alone;
	int owner[3] = { -1, -1, -1 }, next = 0, done = 0;
	int64_t at[NREQ] = { 0 }, slot;

	rig_init(&r, _i);
	c = new_cache(&r, 3);
	for (int n = 0; n < 3; n++)
		tu_assert_ok(lca_cache_retire(c, n));
	for (int q = 0; q < NREQ; q++)
		o[q] = outbuf(&r);
	while (done < NREQ) {
		struct feed f[3];
		void *out[3];

		while (next < NREQ && lca_cache_admit(c, &slot) == LCA_OK)
			owner[slot] = next++;
		for (int n = 0; n < 3; n++) {
			int q = owner[n];

			f[n].src = q < 0 ? 0 : q % NCASE;
			f[n].at = q < 0 ? 0 : at[q];
			f[n].cnt = q < 0 ? 0 : at[q] == 0 ? req_prompt[q] : 1;
			out[n] = q < 0 ? NULL : o[q];
		}
		must_step(&r, c, 3, f, out);
		for (int n = 0; n < 3; n++) {
			int q = owner[n];

			if (q < 0)
				continue;
			at[q] += f[n].cnt;
			if (at[q] == req_total[q]) {
				tu_assert_ok(lca_cache_retire(c, n));
				owner[n] = -1;
				done++;
			}
		}
	}
	alone = outbuf(&r);
	for (int q = 0; q < NREQ; q++) {
		char what[64];

		run_alone(&r, q, alone);
		snprintf(what, sizeof what, "request %d", q);
		assert_same_rows(&r, o[q], alone, 0, req_total[q], what);
		free(o[q]);
	}
	free(alone);
	lca_cache_destroy(c);
	rig_free(&r);
}
END_TEST

/* ---- fork ------------------------------------------------------------------ */

/* Slot 0 sees P tokens of case 0 and forks into slot 1 (retired, so the
 * fork admits it); slot 0 goes on with case 0, slot 1 with case 1. Each
 * must give the bits of its own one-sequence cache. */
START_TEST(test_fork_then_diverge_equals_two_independent_caches)
{
	struct rig r;
	const int64_t P = 17, K = 12;
	lca_cache *a, *b[2];
	void *oa[2], *ob[2];

	rig_init(&r, _i);
	a = new_cache(&r, 2);
	tu_assert_ok(lca_cache_retire(a, 1));
	for (int n = 0; n < 2; n++) {
		b[n] = new_cache(&r, 1);
		oa[n] = outbuf(&r);
		ob[n] = outbuf(&r);
	}
	{
		const struct feed pa[2] = { { 0, 0, P }, { 0, 0, 0 } }, pb = { 0, 0, P };

		must_step(&r, a, 2, pa, oa);
		must_step(&r, b[0], 1, &pb, &ob[0]);
		must_step(&r, b[1], 1, &pb, &ob[1]);
	}
	tu_assert_ok(lca_cache_fork(a, 0, 1));
	for (int64_t t = P; t < P + K; t += t == P + 3 ? 5 : 1) {
		int64_t n = t == P + 3 ? 5 : 1;
		const struct feed fa[2] = { { 0, t, n }, { 1, t, n } };
		const struct feed f0 = { 0, t, n }, f1 = { 1, t, n };

		must_step(&r, a, 2, fa, oa);
		must_step(&r, b[0], 1, &f0, &ob[0]);
		must_step(&r, b[1], 1, &f1, &ob[1]);
	}
	assert_same_rows(&r, oa[0], ob[0], 0, P + K, "fork: the source");
	assert_same_rows(&r, oa[1], ob[1], P, P + K, "fork: the copy");
	lca_cache_destroy(a);
	for (int n = 0; n < 2; n++) {
		lca_cache_destroy(b[n]);
		free(oa[n]);
		free(ob[n]);
	}
	rig_free(&r);
}
END_TEST

/* ---- going back: truncate and restore ----------------------------------------- */

/* Drafts: tokens of case 2 stepped and then taken back. */
static void draft(const struct rig *r, lca_cache *c, int64_t n)
{
	const struct feed f[2] = { { 2, 30, n }, { 0, 0, 0 } };

	must_step(r, c, 2, f, NULL);
}

/* A: slot 0 steps case 0 from token `from`, n tokens, outputs to o. */
static void real(const struct rig *r, lca_cache *c, int64_t from, int64_t n, void *o)
{
	const struct feed f[2] = { { 0, from, n }, { 1, from, 1 } };
	void *out[2] = { o, NULL };

	must_step(r, c, 2, f, out);
}

/* Truncate to n after drafting, then replay: the bits of a cache that
 * never drafted (softmax, mla); the recurrent caches refuse a truncate. */
START_TEST(test_truncate_then_replay_equals_never_truncated)
{
	struct rig r;
	lca_cache *a, *b;
	void *oa, *ob, *before;
	size_t nb;
	int64_t len;

	rig_init(&r, _i);
	a = new_cache(&r, 2);
	b = new_cache(&r, 2);
	oa = outbuf(&r);
	ob = outbuf(&r);
	real(&r, a, 0, 20, oa);
	real(&r, b, 0, 20, ob);
	if (!is_kv(&r)) {
		before = mf_cache_bytes(a, &nb);
		ck_assert_int_eq(lca_cache_truncate(a, 0, 10), LCA_ERR_UNSUPPORTED);
		ck_assert(tu_msg_names("lca_cache_snapshot"));
		assert_unchanged(&r, a, before, nb, "a refused truncate");
		free(before);
	} else {
		draft(&r, a, 7);                 /* 27 tokens: 20 real, 7 drafts */
		tu_assert_ok(lca_cache_truncate(a, 0, 20));
		real(&r, a, 20, 3, oa);
		draft(&r, a, 2);
		tu_assert_ok(lca_cache_truncate(a, 0, 15)); /* back into the real ones */
		tu_assert_ok(lca_cache_len(a, 0, &len));
		ck_assert_int_eq(len, 15);
		real(&r, a, 15, 8, oa);          /* replay 15 .. 23 */
		for (int64_t t = 23; t < 30; t++)
			real(&r, a, t, 1, oa);
		real(&r, b, 20, 3, ob);
		for (int64_t t = 23; t < 30; t++)
			real(&r, b, t, 1, ob);
		/* the replayed 15 .. 23 came in one step where b took them in two */
		assert_same_rows(&r, oa, ob, 0, 15, "truncate: before the cut");
		assert_same_rows(&r, oa, ob, 23, 30, "truncate then replay");
	}
	lca_cache_destroy(a);
	lca_cache_destroy(b);
	free(oa);
	free(ob);
	rig_free(&r);
}
END_TEST

/* Snapshot, draft, restore, then the real tokens: the bits of a cache that
 * never drafted, for every variant. */
START_TEST(test_restore_then_replay_equals_original)
{
	struct rig r;
	lca_cache *a, *b;
	lca_snapshot *snap = NULL;
	void *oa, *ob;
	int64_t len;

	rig_init(&r, _i);
	a = new_cache(&r, 2);
	b = new_cache(&r, 2);
	oa = outbuf(&r);
	ob = outbuf(&r);
	real(&r, a, 0, 20, oa);
	real(&r, b, 0, 20, ob);
	for (int round = 0; round < 3; round++) {
		int64_t t0 = 20 + 4 * round;

		tu_assert_ok(lca_cache_snapshot(a, 0, &snap));
		draft(&r, a, 3 + round);
		tu_assert_ok(lca_cache_restore(a, 0, snap));
		tu_assert_ok(lca_cache_len(a, 0, &len));
		ck_assert_int_eq(len, t0);
		if (!is_kv(&r)) /* a state snapshot goes back any number of times */
			tu_assert_ok(lca_cache_restore(a, 0, snap));
		lca_snapshot_destroy(snap);
		real(&r, a, t0, 1, oa);          /* the accepted token... */
		real(&r, a, t0 + 1, 3, oa);      /* ...and the next draft, verified */
		real(&r, b, t0, 1, ob);
		real(&r, b, t0 + 1, 3, ob);
	}
	assert_same_rows(&r, oa, ob, 0, 32, "restore then replay");
	lca_cache_destroy(a);
	lca_cache_destroy(b);
	free(oa);
	free(ob);
	rig_free(&r);
}
END_TEST

/* ---- states ----------------------------------------------------------------- */

/* A forward call over case 0's first T tokens from state0; o, state out. */
static void forward_from(const struct rig *r, int64_t T, const void *state0, void *o,
	void *state)
{
	void *const *x = r->m[0].in;

	if (r->m[0].p.variant == LCA_DELTANET)
		tu_assert_ok(lca_deltanet_forward(r->plan, T, x[0], x[1], x[2], x[3], x[4], NULL,
			0, state0, o, state));
	else
		tu_assert_ok(lca_lightning_forward(r->plan, T, x[0], x[1], x[2], x[3], NULL, 0,
			state0, o, state));
}

/* A state to seed, drawn fresh and small enough for any decay. */
static void *draw_state(const struct rig *r)
{
	int64_t n = r->m[0].naux;
	double *d = tu_alloc(n);
	void *s = mf_alloc_out(&r->m[0], n);

	tu_fill_normal(d, n, 0.3);
	for (int64_t i = 0; i < n; i++) {
		if (r->m[0].elt == 8)
			((double *)s)[i] = d[i];
		else
			((float *)s)[i] = (float)d[i];
	}
	free(d);
	return s;
}

/* _i over the deltanet and lightning rigs only. */
static int linear_rig(int i)
{
	return (2 + i / NCONF) * NCONF + i % NCONF;
}

START_TEST(test_set_state_then_step_equals_forward_with_state0)
{
	struct rig r;
	const int64_t T = 40;
	lca_cache *c;
	void *s0, *o, *of, *sf, *sc;
	int64_t len;

	rig_init(&r, linear_rig(_i));
	s0 = draw_state(&r);
	o = outbuf(&r);
	of = outbuf(&r);
	sf = mf_alloc_out(&r.m[0], r.m[0].naux);
	sc = mf_alloc_out(&r.m[0], r.m[0].naux);
	c = new_cache(&r, 2);
	{
		const struct feed f[2] = { { 1, 0, 5 }, { 1, 0, 5 } };

		must_step(&r, c, 2, f, NULL);    /* something to overwrite */
	}
	tu_assert_ok(lca_cache_set_state(c, 1, s0, 11));
	tu_assert_ok(lca_cache_len(c, 1, &len));
	ck_assert_int_eq(len, 11);
	{
		const struct feed f[2] = { { 1, 5, 1 }, { 0, 0, T } };
		void *out[2] = { NULL, o };

		must_step(&r, c, 2, f, out);
	}
	forward_from(&r, T, s0, of, sf);
	assert_same_rows(&r, o, of, 0, T, "set_state then a step");
	tu_assert_ok(lca_cache_get_state(c, 1, sc));
	ck_assert_msg(memcmp(sc, sf, (size_t)r.m[0].naux * r.m[0].elt) == 0,
		"%s: get_state differs from the forward call's final state", r.what);
	lca_cache_destroy(c);
	free(s0);
	free(o);
	free(of);
	free(sf);
	free(sc);
	rig_free(&r);
}
END_TEST

START_TEST(test_get_state_equals_forward_final_state)
{
	struct rig r;
	const int64_t T = 33;
	lca_cache *c;
	void *of, *sf, *sc;

	rig_init(&r, linear_rig(_i));
	of = outbuf(&r);
	sf = mf_alloc_out(&r.m[0], r.m[0].naux);
	sc = mf_alloc_out(&r.m[0], r.m[0].naux);
	c = new_cache(&r, 1);
	{
		const struct feed f = { 0, 0, T };

		must_step(&r, c, 1, &f, NULL);
	}
	forward_from(&r, T, NULL, of, sf);
	tu_assert_ok(lca_cache_get_state(c, 0, sc));
	ck_assert_msg(memcmp(sc, sf, (size_t)r.m[0].naux * r.m[0].elt) == 0,
		"%s: get_state differs from the forward call's final state", r.what);
	lca_cache_destroy(c);
	free(of);
	free(sf);
	free(sc);
	rig_free(&r);
}
END_TEST

/* ---- slots --------------------------------------------------------------------- */

START_TEST(test_admit_gives_out_retired_slots_lowest_first)
{
	struct rig r;
	lca_cache *c;
	int64_t got = -7, used[2];
	size_t full, freed;

	rig_init(&r, _i);
	c = new_cache(&r, 3);
	{
		const struct feed f[3] = { { 0, 0, 9 }, { 1, 0, 9 }, { 2, 0, 9 } };

		must_step(&r, c, 3, f, NULL);
	}
	ck_assert_int_eq(lca_cache_admit(c, &got), LCA_ERR_CAPACITY);
	ck_assert_int_eq(got, -7);
	tu_assert_ok(lca_cache_bytes(c, &full));
	tu_assert_ok(lca_cache_pages(c, &used[0], NULL));
	tu_assert_ok(lca_cache_retire(c, 2));
	tu_assert_ok(lca_cache_retire(c, 0));
	tu_assert_ok(lca_cache_bytes(c, &freed));
	tu_assert_ok(lca_cache_pages(c, &used[1], NULL));
	if (is_kv(&r) && CACHE_STORE > 0) {
		/* the pool stays allocated; the retired sequences' pages
		 * (one each: 9 tokens) go back to it */
		ck_assert_uint_eq(freed, full);
		ck_assert_int_eq(used[0], 3);
		ck_assert_int_eq(used[1], 1);
	} else if (is_kv(&r)) {
		ck_assert_uint_lt(freed, full);
	} else {
		ck_assert_uint_eq(freed, full); /* the block of states stays */
	}
	tu_assert_ok(lca_cache_admit(c, &got));
	ck_assert_int_eq(got, 0);
	tu_assert_ok(lca_cache_len(c, 0, &got));
	ck_assert_int_eq(got, 0);
	tu_assert_ok(lca_cache_admit(c, &got));
	ck_assert_int_eq(got, 2);
	ck_assert_int_eq(lca_cache_admit(c, &got), LCA_ERR_CAPACITY);
	lca_cache_destroy(c);
	rig_free(&r);
}
END_TEST

/* ---- refusals ------------------------------------------------------------------ */

/* expr must fail with status want, naming name, the cache unchanged. */
#define REFUSED(expr, want, name) do { \
	lca_status s_ = (expr); \
	ck_assert_msg(s_ == (want), "%s: %s gave %s, not %s", r.what, #expr, \
		lca_strerror(s_), lca_strerror(want)); \
	ck_assert_msg(tu_msg_names(name), "%s: %s: message \"%s\" does not name %s", \
		r.what, #expr, lca_last_error(), name); \
	assert_unchanged(&r, c, before, nb, #expr); \
} while (0)

START_TEST(test_bad_calls_are_refused_and_cache_unchanged)
{
	struct rig r, other;
	lca_cache *c, *c2;
	lca_snapshot *snap = NULL, *osnap = NULL, *snap2 = NULL, *none = NULL;
	void *before, *st;
	size_t nb;
	int64_t len;

	rig_init(&r, _i);
	rig_init(&other, (_i / NCONF + 1) % 4 * NCONF + _i % NCONF);
	c = new_cache(&r, 3);
	c2 = new_cache(&r, 3);
	{
		const struct feed f[3] = { { 0, 0, 6 }, { 1, 0, 4 }, { 0, 0, 0 } };

		must_step(&r, c, 3, f, NULL);
		must_step(&r, c2, 3, f, NULL);
	}
	tu_assert_ok(lca_cache_retire(c, 2));
	tu_assert_ok(lca_cache_snapshot(c2, 0, &snap2));
	tu_assert_ok(lca_cache_snapshot(c, 1, &snap));
	{
		lca_cache *oc = new_cache(&other, 1);

		tu_assert_ok(lca_cache_snapshot(oc, 0, &osnap));
		lca_cache_destroy(oc);
	}
	st = mf_alloc_out(&r.m[0], r.m[0].naux);
	before = mf_cache_bytes(c, &nb);

	/* ids out of range, retired slots */
	REFUSED(lca_cache_reset_seq(c, 3), LCA_ERR_ARG, "seq");
	REFUSED(lca_cache_reset_seq(c, -1), LCA_ERR_ARG, "seq");
	REFUSED(lca_cache_reset_seq(c, 2), LCA_ERR_ARG, "retired");
	REFUSED(lca_cache_retire(c, 2), LCA_ERR_ARG, "retired");
	REFUSED(lca_cache_retire(c, 7), LCA_ERR_ARG, "seq");
	REFUSED(lca_cache_len(c, 2, &len), LCA_ERR_ARG, "retired");
	REFUSED(lca_cache_fork(c, 2, 0), LCA_ERR_ARG, "src");
	REFUSED(lca_cache_fork(c, 0, 3), LCA_ERR_ARG, "dst");
	REFUSED(lca_cache_fork(c, 1, 1), LCA_ERR_ARG, "dst");
	REFUSED(lca_cache_snapshot(c, 2, &none), LCA_ERR_ARG, "retired");
	ck_assert_ptr_null(none);
	REFUSED(lca_cache_restore(c, 2, snap), LCA_ERR_ARG, "retired");
	{
		const struct feed f[3] = { { 0, 6, 1 }, { 1, 4, 1 }, { 2, 0, 1 } };

		REFUSED(rig_step(&r, r.plan, c, 3, f, NULL), LCA_ERR_ARG, "retired");
	}
	/* the wrong variant */
	if (is_kv(&r)) {
		REFUSED(lca_cache_get_state(c, 0, st), LCA_ERR_UNSUPPORTED, "state");
		REFUSED(lca_cache_set_state(c, 0, st, 0), LCA_ERR_UNSUPPORTED, "state");
		REFUSED(lca_cache_truncate(c, 0, 7), LCA_ERR_ARG, "n");
		REFUSED(lca_cache_truncate(c, 0, -1), LCA_ERR_ARG, "n");
		/* a kv snapshot is a length of one sequence of one cache */
		REFUSED(lca_cache_restore(c, 0, snap), LCA_ERR_ARG, "sequence");
		REFUSED(lca_cache_restore(c, 0, snap2), LCA_ERR_ARG, "sequence");
	} else {
		REFUSED(lca_cache_truncate(c, 0, 1), LCA_ERR_UNSUPPORTED, "state");
		REFUSED(lca_cache_set_state(c, 0, st, -1), LCA_ERR_ARG, "len");
		REFUSED(lca_cache_set_state(c, 0, st, TMAX + 1), LCA_ERR_ARG, "len");
		if (r.m[0].elt == 8)
			((double *)st)[3] = NAN;
		else
			((float *)st)[3] = NAN;
		REFUSED(lca_cache_set_state(c, 0, st, 0), LCA_ERR_NONFINITE, "state");
	}
	REFUSED(lca_cache_restore(c, 1, osnap), LCA_ERR_ARG, "variant");
	/* NULL pointers */
	REFUSED(lca_cache_admit(c, NULL), LCA_ERR_NULL, "seq");
	REFUSED(lca_cache_snapshot(c, 0, NULL), LCA_ERR_NULL, "snap");
	REFUSED(lca_cache_restore(c, 0, NULL), LCA_ERR_NULL, "snap");
	if (!is_kv(&r)) {
		REFUSED(lca_cache_get_state(c, 0, NULL), LCA_ERR_NULL, "state");
		REFUSED(lca_cache_set_state(c, 0, NULL, 0), LCA_ERR_NULL, "state");
	}
	ck_assert_int_eq(lca_cache_reset_seq(NULL, 0), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_retire(NULL, 0), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_admit(NULL, &len), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_truncate(NULL, 0, 0), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_fork(NULL, 0, 1), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_get_state(NULL, 0, st), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_set_state(NULL, 0, st, 0), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_snapshot(NULL, 0, &none), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_restore(NULL, 0, snap), LCA_ERR_NULL);
	lca_snapshot_destroy(NULL);

	/* a softmax/mla snapshot goes stale once its sequence loses tokens */
	if (is_kv(&r)) {
		tu_assert_ok(lca_cache_truncate(c, 1, 2));
		free(before);
		before = mf_cache_bytes(c, &nb);
		REFUSED(lca_cache_restore(c, 1, snap), LCA_ERR_ARG, "stale");
	}
	lca_snapshot_destroy(snap);
	lca_snapshot_destroy(snap2);
	lca_snapshot_destroy(osnap);
	lca_cache_destroy(c);
	lca_cache_destroy(c2);
	free(before);
	free(st);
	rig_free(&r);
	rig_free(&other);
}
END_TEST

/* A plan whose numbers differ from the cache's is refused, the field named. */
START_TEST(test_step_with_other_numbers_is_refused)
{
	struct rig r;
	lca_cache *c;
	void *before;
	size_t nb;
	const struct feed f[1] = { { 0, 5, 1 } };
	lca_variant v;

	rig_init(&r, _i);
	v = r.m[0].p.variant;
	c = new_cache(&r, 1);
	{
		const struct feed p = { 0, 0, 5 };

		must_step(&r, c, 1, &p, NULL);
	}
	before = mf_cache_bytes(c, &nb);
	for (int k = 0; k < 7; k++) {
		lca_params p = r.m[0].p;
		const char *name = NULL;
		lca_plan *other;

		switch (k) {
		case 0: p.scale = 0.25; name = "scale"; break;
		case 1: if (is_kv(&r)) p.causal = 0, name = "causal"; break;
		case 2: if (is_kv(&r)) p.window = 3, name = "window"; break;
		case 3: if (is_kv(&r)) p.rope_theta = 500000.0, name = "rope_theta"; break;
		case 4:
			if (is_kv(&r))
				p.rope_style = !p.rope_style, name = "rope_style";
			break;
		case 5: if (is_kv(&r)) p.rope_dim = 2, name = "rope_dim"; break;
		case 6: if (v == LCA_DELTANET) p.qk_l2norm = 0, name = "qk_l2norm"; break;
		}
		if (!name)
			continue;
		other = tu_plan(&p);
		REFUSED(rig_step(&r, other, c, 1, f, NULL), LCA_ERR_ARG, name);
		lca_plan_destroy(other);
	}
	{
		/* threads and tiles change no number: accepted */
		lca_params p = r.m[0].p;
		lca_plan *other;

		p.nthreads = 1;
		p.chunk = 16;
		p.block = 32;
		other = tu_plan(&p);
		tu_assert_ok(rig_step(&r, other, c, 1, f, NULL));
		lca_plan_destroy(other);
	}
	lca_cache_destroy(c);
	free(before);
	rig_free(&r);
}
END_TEST

/* A checkpoint keeps no slot states: a retired slot comes back live and
 * empty; the others continue bit for bit. */
START_TEST(test_checkpoint_of_retired_slot_loads_it_empty)
{
	struct rig r;
	lca_cache *c, *d;
	void *b, *oc[2] = { NULL, NULL }, *od[2] = { NULL, NULL };
	size_t nb;
	int64_t len;

	rig_init(&r, _i);
	c = new_cache(&r, 2);
	d = new_cache(&r, 2);
	oc[0] = outbuf(&r);
	od[0] = outbuf(&r);
	{
		const struct feed f[2] = { { 0, 0, 8 }, { 1, 0, 8 } };

		must_step(&r, c, 2, f, NULL);
	}
	tu_assert_ok(lca_cache_retire(c, 1));
	b = mf_cache_bytes(c, &nb);
	tu_assert_ok(lca_cache_load(d, b, nb));
	tu_assert_ok(lca_cache_len(d, 1, &len));
	ck_assert_int_eq(len, 0);
	{
		const struct feed fc[2] = { { 0, 8, 3 }, { 0, 0, 0 } };
		const struct feed fd[2] = { { 0, 8, 3 }, { 2, 0, 2 } };

		must_step(&r, c, 2, fc, oc);
		must_step(&r, d, 2, fd, od);
	}
	assert_same_rows(&r, oc[0], od[0], 8, 11, "after a load");
	lca_cache_destroy(c);
	lca_cache_destroy(d);
	free(b);
	free(oc[0]);
	free(od[0]);
	rig_free(&r);
}
END_TEST

static Suite *cache_seq_suite(void)
{
	Suite *s = suite_create("cache_seq");
	TCase *tc = tu_tcase("sequences");
	const int all = 4 * NCONF, linear = 2 * NCONF;

	tcase_add_loop_test(tc, test_untouched_sequences_are_bit_identical, 0, all);
	tcase_add_loop_test(tc, test_continuous_batching_equals_one_cache_per_request, 0, all);
	tcase_add_loop_test(tc, test_fork_then_diverge_equals_two_independent_caches, 0, all);
	tcase_add_loop_test(tc, test_truncate_then_replay_equals_never_truncated, 0, all);
	tcase_add_loop_test(tc, test_restore_then_replay_equals_original, 0, all);
	tcase_add_loop_test(tc, test_set_state_then_step_equals_forward_with_state0, 0, linear);
	tcase_add_loop_test(tc, test_get_state_equals_forward_final_state, 0, linear);
	tcase_add_loop_test(tc, test_admit_gives_out_retired_slots_lowest_first, 0, all);
	tcase_add_loop_test(tc, test_checkpoint_of_retired_slot_loads_it_empty, 0, all);
	suite_add_tcase(s, tc);

	tc = tu_tcase("refusals");
	tcase_add_loop_test(tc, test_bad_calls_are_refused_and_cache_unchanged, 0, all);
	tcase_add_loop_test(tc, test_step_with_other_numbers_is_refused, 0, all);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(cache_seq_suite());
}
