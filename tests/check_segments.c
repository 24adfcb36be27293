/*
 * check_segments.c - how calls compose. A recurrent sequence split into
 * segments, each started from the previous segment's final state, equals
 * one pass; a packed varlen batch equals a loop of single-sequence calls
 * (for all four variants); state0 and state may share one buffer.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NALGO 2
static const lca_algo rec_algos[NALGO] = { LCA_ALGO_RECURRENT, LCA_ALGO_CHUNKED };

/* ---- the two recurrent variants behind one interface --------------------- */

struct rec {
	lca_variant v;
	int64_t T, H, Hk, dk, dv; /* Hk: deltanet only */
	double *q, *k, *v_, *g, *beta, *slope;
};

static int64_t rec_hk(const struct rec *r)
{
	return r->v == LCA_DELTANET ? r->Hk : r->H;
}

static int64_t rec_nstate(const struct rec *r)
{
	return r->H * r->dk * r->dv;
}

static void rec_alloc(struct rec *r, lca_variant v, int64_t T)
{
	memset(r, 0, sizeof *r);
	r->v = v;
	r->T = T;
	r->H = 4;
	r->Hk = 2;
	r->dk = 5;
	r->dv = 3;
	r->q = tu_alloc(T * rec_hk(r) * r->dk);
	r->k = tu_alloc(T * rec_hk(r) * r->dk);
	r->v_ = tu_alloc(T * r->H * r->dv);
	tu_fill_normal(r->q, T * rec_hk(r) * r->dk, 1.0);
	tu_fill_normal(r->k, T * rec_hk(r) * r->dk, 1.0);
	tu_fill_normal(r->v_, T * r->H * r->dv, 1.0);
	if (v == LCA_DELTANET) {
		r->g = tu_alloc(T * r->H);
		r->beta = tu_alloc(T * r->H);
		tu_fill_uniform(r->g, T * r->H, -2.0, 0.0);
		tu_fill_uniform(r->beta, T * r->H, 1e-3, 2.0);
	} else {
		r->slope = tu_alloc(r->H);
		tu_fill_uniform(r->slope, r->H, 0.0, 0.5);
		r->slope[0] = 0.0; /* one head that never forgets */
	}
}

static void rec_free(struct rec *r)
{
	free(r->q);
	free(r->k);
	free(r->v_);
	free(r->g);
	free(r->beta);
	free(r->slope);
}

static lca_plan *rec_plan(const struct rec *r, lca_algo algo)
{
	lca_params p = tu_params(r->v);

	p.algo = algo;
	p.H = r->H;
	p.Hk = r->v == LCA_DELTANET ? r->Hk : 0;
	p.dk = r->dk;
	p.dv = r->dv;
	return tu_plan(&p);
}

/* Run tokens t0 .. t0+T-1 of r (a sub-batch when cu is given). */
static void rec_call(const struct rec *r, const lca_plan *plan, int64_t t0, int64_t T,
	const int64_t *cu, int64_t nseq, const double *s0, double *o, double *s)
{
	const double *q = r->q + t0 * rec_hk(r) * r->dk, *k = r->k + t0 * rec_hk(r) * r->dk;
	const double *v = r->v_ + t0 * r->H * r->dv;

	if (r->v == LCA_DELTANET)
		tu_assert_ok(lca_deltanet_forward(plan, T, q, k, v, r->g + t0 * r->H,
			r->beta + t0 * r->H, cu, nseq, s0, o, s));
	else
		tu_assert_ok(lca_lightning_forward(plan, T, q, k, v, r->slope, cu, nseq,
			s0, o, s));
}

/*
 * Split r at the points cut[0 .. ncut) (increasing, inside (0, T)) and run
 * the pieces one after the other, each from the state the previous one
 * ended in. o and final state must equal one pass from the same state0.
 */
static void check_split(const struct rec *r, lca_algo algo, const int64_t *cut, int ncut,
	const double *state0)
{
	lca_plan *plan = rec_plan(r, algo);
	int64_t no = r->T * r->H * r->dv, ns = rec_nstate(r);
	double *o1 = tu_alloc(no), *s1 = tu_alloc(ns), *o2 = tu_alloc(no);
	double *carry = tu_copy(state0, ns), *next = tu_alloc(ns);

	rec_call(r, plan, 0, r->T, NULL, 0, state0, o1, s1);
	for (int j = 0; j <= ncut; j++) {
		int64_t a = j ? cut[j - 1] : 0, b = j < ncut ? cut[j] : r->T;

		rec_call(r, plan, a, b - a, NULL, 0, carry, o2 + a * r->H * r->dv, next);
		memcpy(carry, next, (size_t)ns * sizeof(double));
	}
	tu_assert_close(o2, o1, no, 1e-12, "segmented o");
	tu_assert_close(carry, s1, ns, 1e-12, "segmented final state");
	lca_plan_destroy(plan);
	free(o1);
	free(s1);
	free(o2);
	free(carry);
	free(next);
}

/* Cuts for deltanet (chunk 64) and lightning (block 256): inside chunks,
 * on their boundaries, one token in and one token before the end. */
struct cuts {
	int n;
	int64_t at[6];
};

static const struct cuts dn_cuts[] = {
	{ 1, { 1 } }, { 1, { 63 } }, { 1, { 64 } }, { 1, { 65 } }, { 1, { 100 } },
	{ 1, { 199 } }, { 5, { 1, 64, 128, 129, 199 } }, { 3, { 37, 38, 150 } },
};
static const struct cuts li_cuts[] = {
	{ 1, { 1 } }, { 1, { 255 } }, { 1, { 256 } }, { 1, { 257 } }, { 1, { 400 } },
	{ 1, { 599 } }, { 5, { 1, 256, 300, 512, 599 } }, { 2, { 100, 101 } },
};

/* _i: algo index (recurrent, chunked/blockwise). */
START_TEST(test_deltanet_segments_equal_one_pass)
{
	struct rec r;
	double *s0;

	rec_alloc(&r, LCA_DELTANET, 200);
	s0 = tu_alloc(rec_nstate(&r));
	tu_fill_normal(s0, rec_nstate(&r), 1.0);
	for (size_t j = 0; j < sizeof dn_cuts / sizeof dn_cuts[0]; j++)
		check_split(&r, rec_algos[_i], dn_cuts[j].at, dn_cuts[j].n, s0);
	free(s0);
	rec_free(&r);
}
END_TEST

START_TEST(test_lightning_segments_equal_one_pass)
{
	struct rec r;
	double *s0;

	rec_alloc(&r, LCA_LIGHTNING, 600);
	s0 = tu_alloc(rec_nstate(&r));
	tu_fill_normal(s0, rec_nstate(&r), 1.0);
	for (size_t j = 0; j < sizeof li_cuts / sizeof li_cuts[0]; j++)
		check_split(&r, rec_algos[_i], li_cuts[j].at, li_cuts[j].n, s0);
	free(s0);
	rec_free(&r);
}
END_TEST

START_TEST(test_segments_may_switch_algorithm)
{
	/* A prefill with the chunked form, decode with the recurrence. */
	struct rec r;
	lca_plan *pc, *pr;
	int64_t no, ns, cut = 150;
	double *o1, *s1, *o2, *mid, *s2;

	rec_alloc(&r, _i ? LCA_LIGHTNING : LCA_DELTANET, 170);
	no = r.T * r.H * r.dv;
	ns = rec_nstate(&r);
	o1 = tu_alloc(no);
	s1 = tu_alloc(ns);
	o2 = tu_alloc(no);
	mid = tu_alloc(ns);
	s2 = tu_alloc(ns);
	pc = rec_plan(&r, LCA_ALGO_CHUNKED);
	pr = rec_plan(&r, LCA_ALGO_RECURRENT);
	rec_call(&r, pr, 0, r.T, NULL, 0, NULL, o1, s1);
	rec_call(&r, pc, 0, cut, NULL, 0, NULL, o2, mid);
	for (int64_t t = cut; t < r.T; t++) { /* token by token */
		rec_call(&r, pr, t, 1, NULL, 0, mid, o2 + t * r.H * r.dv, s2);
		memcpy(mid, s2, (size_t)ns * sizeof(double));
	}
	tu_assert_close(o2, o1, no, 1e-12, "o");
	tu_assert_close(mid, s1, ns, 1e-12, "state");
	lca_plan_destroy(pc);
	lca_plan_destroy(pr);
	free(o1);
	free(s1);
	free(o2);
	free(mid);
	free(s2);
	rec_free(&r);
}
END_TEST

/* ---- packed varlen batches ----------------------------------------------- */

/* Lengths 1, 70, 33, and a batch with an empty sequence in it. */
static const int64_t cu3[] = { 0, 1, 71, 104 };
static const int64_t cu4_empty[] = { 0, 1, 1, 71, 104 };

/* One packed call against a loop of single-sequence calls. */
static void check_rec_varlen(lca_variant v, lca_algo algo, const int64_t *cu, int64_t nseq)
{
	struct rec r;
	lca_plan *plan;
	int64_t no, ns;
	double *s0, *o1, *s1, *o2, *s2;

	rec_alloc(&r, v, cu[nseq]);
	plan = rec_plan(&r, algo);
	no = r.T * r.H * r.dv;
	ns = rec_nstate(&r);
	s0 = tu_alloc(nseq * ns);
	tu_fill_normal(s0, nseq * ns, 1.0);
	o1 = tu_alloc(no);
	s1 = tu_alloc(nseq * ns);
	o2 = tu_alloc(no);
	s2 = tu_alloc(nseq * ns);
	rec_call(&r, plan, 0, r.T, cu, nseq, s0, o1, s1);
	for (int64_t n = 0; n < nseq; n++) {
		int64_t a = cu[n], len = cu[n + 1] - cu[n];

		if (len == 0) { /* nothing to run: the state passes through */
			memcpy(s2 + n * ns, s0 + n * ns, (size_t)ns * sizeof(double));
			continue;
		}
		rec_call(&r, plan, a, len, NULL, 0, s0 + n * ns, o2 + a * r.H * r.dv, s2 + n * ns);
	}
	tu_assert_close(o1, o2, no, 1e-12, "packed o");
	tu_assert_close(s1, s2, nseq * ns, 1e-12, "packed final states");
	lca_plan_destroy(plan);
	free(s0);
	free(o1);
	free(s1);
	free(o2);
	free(s2);
	rec_free(&r);
}

START_TEST(test_deltanet_varlen_equals_loop)
{
	check_rec_varlen(LCA_DELTANET, rec_algos[_i], cu3, 3);
}
END_TEST

START_TEST(test_lightning_varlen_equals_loop)
{
	check_rec_varlen(LCA_LIGHTNING, rec_algos[_i], cu3, 3);
}
END_TEST

START_TEST(test_varlen_empty_sequence_passes_state_through)
{
	/* _i: 0, 1 deltanet (recurrent, chunked); 2, 3 lightning. */
	check_rec_varlen(_i < 2 ? LCA_DELTANET : LCA_LIGHTNING, rec_algos[_i % 2],
		cu4_empty, 4);
}
END_TEST

/* softmax: _i 0 causal with RoPE, 1 sliding window, 2 non-causal */
START_TEST(test_softmax_varlen_equals_loop)
{
	const int64_t T = cu3[3], H = 4, Hkv = 2, dk = 6, dv = 5;
	lca_params p = tu_params(LCA_SOFTMAX);
	lca_plan *plan;
	double *q = tu_alloc(T * H * dk), *k = tu_alloc(T * Hkv * dk), *v = tu_alloc(T * Hkv * dv);
	double *o1 = tu_alloc(T * H * dv), *l1 = tu_alloc(T * H);
	double *o2 = tu_alloc(T * H * dv), *l2 = tu_alloc(T * H);

	p.H = H;
	p.Hkv = Hkv;
	p.dk = dk;
	p.dv = dv;
	p.rope_dim = 4;
	p.causal = _i != 2;
	p.window = _i == 1 ? 9 : 0;
	plan = tu_plan(&p);
	tu_fill_normal(q, T * H * dk, 1.0);
	tu_fill_normal(k, T * Hkv * dk, 1.0);
	tu_fill_normal(v, T * Hkv * dv, 1.0);
	tu_assert_ok(lca_softmax_forward(plan, T, T, q, k, v, cu3, 3, o1, l1));
	for (int n = 0; n < 3; n++) {
		int64_t a = cu3[n], len = cu3[n + 1] - a;

		tu_assert_ok(lca_softmax_forward(plan, len, len, q + a * H * dk, k + a * Hkv * dk,
			v + a * Hkv * dv, NULL, 0, o2 + a * H * dv, l2 + a * H));
	}
	tu_assert_close(o1, o2, T * H * dv, 1e-13, "packed o");
	tu_assert_close(l1, l2, T * H, 1e-13, "packed lse");
	lca_plan_destroy(plan);
	free(q);
	free(k);
	free(v);
	free(o1);
	free(l1);
	free(o2);
	free(l2);
}
END_TEST

/* mla: _i 0 naive, 1 absorbed */
START_TEST(test_mla_varlen_equals_loop)
{
	const int64_t T = cu3[3], H = 3, dn = 5, dr = 4, dc = 7, dv = 6;
	lca_params p = tu_params(LCA_MLA);
	lca_plan *plan;
	double *qn = tu_alloc(T * H * dn), *qr = tu_alloc(T * H * dr), *ckv = tu_alloc(T * dc);
	double *kr = tu_alloc(T * dr), *wk = tu_alloc(H * dn * dc), *wv = tu_alloc(H * dv * dc);
	double *o1 = tu_alloc(T * H * dv), *l1 = tu_alloc(T * H);
	double *o2 = tu_alloc(T * H * dv), *l2 = tu_alloc(T * H);

	p.algo = _i ? LCA_ALGO_ABSORBED : LCA_ALGO_NAIVE;
	p.H = H;
	p.dn = dn;
	p.dr = dr;
	p.dc = dc;
	p.dv = dv;
	p.scale = 0.3;
	p.window = 20;
	plan = tu_plan(&p);
	tu_fill_normal(qn, T * H * dn, 1.0);
	tu_fill_normal(qr, T * H * dr, 1.0);
	tu_fill_normal(ckv, T * dc, 1.0);
	tu_fill_normal(kr, T * dr, 1.0);
	tu_fill_normal(wk, H * dn * dc, 0.4);
	tu_fill_normal(wv, H * dv * dc, 0.4);
	tu_assert_ok(lca_mla_forward(plan, T, T, qn, qr, ckv, kr, wk, wv, cu3, 3, o1, l1));
	for (int n = 0; n < 3; n++) {
		int64_t a = cu3[n], len = cu3[n + 1] - a;

		tu_assert_ok(lca_mla_forward(plan, len, len, qn + a * H * dn, qr + a * H * dr,
			ckv + a * dc, kr + a * dr, wk, wv, NULL, 0, o2 + a * H * dv, l2 + a * H));
	}
	tu_assert_close(o1, o2, T * H * dv, 1e-13, "packed o");
	tu_assert_close(l1, l2, T * H, 1e-13, "packed lse");
	lca_plan_destroy(plan);
	free(qn);
	free(qr);
	free(ckv);
	free(kr);
	free(wk);
	free(wv);
	free(o1);
	free(l1);
	free(o2);
	free(l2);
}
END_TEST

/* ---- state0 and state in one buffer -------------------------------------- */

/* _i: variant (0 deltanet, 1 lightning) x algo, as 2 * v + algo. */
START_TEST(test_state0_and_state_may_alias)
{
	lca_variant v = _i < 2 ? LCA_DELTANET : LCA_LIGHTNING;
	struct rec r;
	lca_plan *plan;
	int64_t no, ns, nseq = 3;
	double *s0, *o1, *s1, *o2, *inout;

	rec_alloc(&r, v, cu3[3]);
	plan = rec_plan(&r, rec_algos[_i % 2]);
	no = r.T * r.H * r.dv;
	ns = rec_nstate(&r) * nseq;
	s0 = tu_alloc(ns);
	tu_fill_normal(s0, ns, 1.0);
	o1 = tu_alloc(no);
	s1 = tu_alloc(ns);
	o2 = tu_alloc(no);
	/* one sequence, then a packed batch */
	for (int packed = 0; packed < 2; packed++) {
		int64_t n = packed ? ns : rec_nstate(&r);

		inout = tu_copy(s0, n);
		const int64_t *cu = packed ? cu3 : NULL;

		rec_call(&r, plan, 0, r.T, cu, packed ? nseq : 0, s0, o1, s1);
		rec_call(&r, plan, 0, r.T, cu, packed ? nseq : 0, inout, o2, inout);
		tu_assert_close(o2, o1, no, 0.0, "o with aliased state");
		tu_assert_close(inout, s1, n, 0.0, "aliased final state");
		free(inout);
	}
	lca_plan_destroy(plan);
	free(s0);
	free(o1);
	free(s1);
	free(o2);
	rec_free(&r);
}
END_TEST

static Suite *segments_suite(void)
{
	Suite *s = suite_create("segments");
	TCase *tc = tu_tcase("split");

	tcase_add_loop_test(tc, test_deltanet_segments_equal_one_pass, 0, NALGO);
	tcase_add_loop_test(tc, test_lightning_segments_equal_one_pass, 0, NALGO);
	tcase_add_loop_test(tc, test_segments_may_switch_algorithm, 0, 2);
	suite_add_tcase(s, tc);

	tc = tu_tcase("varlen");
	tcase_add_loop_test(tc, test_softmax_varlen_equals_loop, 0, 3);
	tcase_add_loop_test(tc, test_mla_varlen_equals_loop, 0, 2);
	tcase_add_loop_test(tc, test_deltanet_varlen_equals_loop, 0, NALGO);
	tcase_add_loop_test(tc, test_lightning_varlen_equals_loop, 0, NALGO);
	tcase_add_loop_test(tc, test_varlen_empty_sequence_passes_state_through, 0, 4);
	suite_add_tcase(s, tc);

	tc = tu_tcase("alias");
	tcase_add_loop_test(tc, test_state0_and_state_may_alias, 0, 4);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(segments_suite());
}
