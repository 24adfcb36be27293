/*
 * check_cost.c - lca_plan_cost() against the operations the reference
 * actually executes.
 *
 * libref_count.la is lib/ref compiled once more with LCA_REF_COUNT: each
 * floating-point operation of the double reference adds to this thread's
 * lcai_refc_flops (FLOPS in lib/ref/real.h; what counts is the rule of
 * lca_plan_cost(3)). The tests run that build on small, odd shapes (T = 1,
 * T not a multiple of the chunk or block, dk != dv, GQA, causal and not,
 * windows, partial RoPE) for each phase, and the model's flops must equal
 * the count exactly:
 *   prefill   one call over n tokens, as lca_*_forward makes it;
 *   decode    the call lca_*_step makes for one token at context n
 *             (lib/core/cache.c: cu_q {0, 1} over the n cached keys; the
 *             linear variants run the plan's algo on one token and the
 *             carried state);
 *   generate  the decode steps at contexts 1 .. n, summed.
 * Bytes are a lower bound, not a count, and are not compared here.
 */
#include "internal.h"
#include "../lib/ref/count.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng = 12345;

static double uniform(double lo, double hi)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return lo + (hi - lo) * (double)(rng >> 11) * 0x1p-53;
}

/* n doubles drawn from [lo, hi); counts do not depend on the values, but
 * the reference should see inputs like real ones. */
static double *draw(int64_t n, double lo, double hi)
{
	double *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);

	ck_assert_ptr_nonnull(x);
	for (int64_t i = 0; i < n; i++)
		x[i] = uniform(lo, hi);
	return x;
}

/* Operations of one call of the counting reference for plan parameters p:
 * tq queries over tk keys (softmax, mla) or t = tq tokens (deltanet,
 * lightning, tk unused) of one sequence. */
static int64_t count_call(const lca_params *p, int64_t tq, int64_t tk)
{
	const int64_t H = p->H, cq[2] = { 0, tq }, ck[2] = { 0, tk };
	double *b[10] = { 0 };
	lca_status s = LCA_OK;

	lcai_refc_flops = 0;
	switch (p->variant) {
	case LCA_SOFTMAX:
		b[0] = draw(tq * H * p->dk, -1, 1), b[1] = draw(tk * p->Hkv * p->dk, -1, 1);
		b[2] = draw(tk * p->Hkv * p->dv, -1, 1);
		b[3] = draw(tq * H * p->dv, 0, 0), b[4] = draw(tq * H, 0, 0);
		s = lcai_refc_softmax(p, cq, ck, 1, b[0], b[1], b[2], b[3], b[4]);
		break;
	case LCA_MLA:
		b[0] = draw(tq * H * p->dn, -1, 1), b[1] = draw(tq * H * p->dr, -1, 1);
		b[2] = draw(tk * p->dc, -1, 1), b[3] = draw(tk * p->dr, -1, 1);
		b[4] = draw(H * p->dn * p->dc, -0.5, 0.5), b[5] = draw(H * p->dv * p->dc, -0.5, 0.5);
		b[6] = draw(tq * H * p->dv, 0, 0), b[7] = draw(tq * H, 0, 0);
		s = (p->algo == LCA_ALGO_NAIVE ? lcai_refc_mla_naive : lcai_refc_mla_absorbed)(
			p, cq, ck, 1, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]);
		break;
	case LCA_DELTANET:
		b[0] = draw(tq * p->Hk * p->dk, -1, 1), b[1] = draw(tq * p->Hk * p->dk, -1, 1);
		b[2] = draw(tq * H * p->dv, -1, 1), b[3] = draw(tq * H, -0.2, 0);
		b[4] = draw(tq * H, 0, 1), b[5] = draw(H * p->dk * p->dv, -1, 1);
		b[6] = draw(tq * H * p->dv, 0, 0);
		s = (p->algo == LCA_ALGO_CHUNKED ? lcai_refc_deltanet_chunked :
			lcai_refc_deltanet_recurrent)(p, cq, 1, b[0], b[1], b[2], b[3], b[4],
			b[5], b[6], b[5]);
		break;
	case LCA_LIGHTNING:
		b[0] = draw(tq * H * p->dk, -1, 1), b[1] = draw(tq * H * p->dk, -1, 1);
		b[2] = draw(tq * H * p->dv, -1, 1), b[3] = draw(H, 0.01, 1);
		b[4] = draw(H * p->dk * p->dv, -1, 1), b[5] = draw(tq * H * p->dv, 0, 0);
		s = (p->algo == LCA_ALGO_CHUNKED ? lcai_refc_lightning_blockwise :
			lcai_refc_lightning_recurrent)(p, cq, 1, b[0], b[1], b[2], b[3], b[4],
			b[5], b[4]);
		break;
	}
	ck_assert_int_eq(s, LCA_OK);
	for (int i = 0; i < 10; i++)
		free(b[i]);
	return lcai_refc_flops;
}

/* The reference's count for phase at n, as the header comment defines it. */
static double count(const lca_params *p, lca_phase ph, int64_t n)
{
	double f = 0;

	if (ph == LCA_PHASE_PREFILL)
		return (double)count_call(p, n, n);
	if (ph == LCA_PHASE_DECODE)
		return (double)count_call(p, 1, n);
	for (int64_t c = 1; c <= n; c++)
		f += (double)count_call(p, 1, c);
	return f;
}

static int compared;  /* (shape, phase, n) triples held equal */

/* Every phase at several n: model == count, exactly. */
static void compare(const lca_params *want)
{
	static const int64_t ns[] = { 1, 2, 4, 5, 7, 12 };
	lca_plan *pl = NULL;
	lca_params p;

	ck_assert_msg(lca_plan_create(want, &pl) == LCA_OK, "%s", lca_last_error());
	ck_assert_int_eq(lca_plan_params(pl, &p), LCA_OK);
	for (int ph = LCA_PHASE_PREFILL; ph <= LCA_PHASE_GENERATE; ph++)
		for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
			lca_cost c;
			double got = count(&p, (lca_phase)ph, ns[i]);

			ck_assert_int_eq(lca_plan_cost(pl, (lca_phase)ph, ns[i], &c), LCA_OK);
			ck_assert_msg(c.flops == got,
				"variant %d algo %d H %lld causal %d window %lld rope %lld phase %d "
				"n %lld: model %.17g, reference executed %.17g", (int)p.variant,
				(int)p.algo, (long long)p.H, p.causal, (long long)p.window,
				(long long)p.rope_dim, ph, (long long)ns[i], c.flops, got);
			compared++;
		}
	lca_plan_destroy(pl);
}

static void report(const char *what)
{
	fprintf(stderr, "check_cost: %s: %d (shape, phase, n) counts equal the model\n", what,
		compared);
}

START_TEST(softmax_counts)
{
	/* GQA with dk != dv, and MQA; partial RoPE; causal, windowed, neither */
	static const int64_t shapes[][5] = { { 4, 2, 6, 3, 4 }, { 3, 1, 5, 7, 0 } };

	for (size_t i = 0; i < 2; i++)
		for (int causal = 0; causal <= 1; causal++)
			for (int64_t w = 0; w <= (causal ? 3 : 0); w += 3) {
				lca_params p;

				ck_assert_int_eq(lca_params_init(&p, LCA_SOFTMAX), LCA_OK);
				p.H = shapes[i][0], p.Hkv = shapes[i][1], p.dk = shapes[i][2];
				p.dv = shapes[i][3], p.rope_dim = shapes[i][4];
				p.causal = causal, p.window = w;
				compare(&p);
			}
	report("softmax");
}
END_TEST

START_TEST(mla_counts)
{
	for (int a = 0; a < 2; a++)
		for (int causal = 0; causal <= 1; causal++)
			for (int64_t w = 0; w <= (causal ? 3 : 0); w += 3) {
				lca_params p;

				ck_assert_int_eq(lca_params_init(&p, LCA_MLA), LCA_OK);
				p.H = 3, p.dn = 4, p.dr = 4, p.dc = 6, p.dv = 5, p.scale = 0.5;
				p.rope_dim = causal ? 2 : LCA_ROPE_FULL;  /* partial and full */
				p.causal = causal, p.window = w;
				p.algo = a ? LCA_ALGO_NAIVE : LCA_ALGO_ABSORBED;
				compare(&p);
			}
	report("mla");
}
END_TEST

START_TEST(deltanet_counts)
{
	static const int64_t chunks[] = { 1, 4, 5 };

	for (int a = 0; a < 2; a++)
		for (size_t c = 0; c < (a ? 3u : 1u); c++)
			for (int l2 = 0; l2 <= 1; l2++) {
				lca_params p;

				ck_assert_int_eq(lca_params_init(&p, LCA_DELTANET), LCA_OK);
				p.H = 4, p.Hk = l2 ? 2 : 4, p.dk = 3, p.dv = 5, p.qk_l2norm = l2;
				p.chunk = chunks[c];
				p.algo = a ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT;
				compare(&p);
			}
	report("deltanet");
}
END_TEST

START_TEST(lightning_counts)
{
	static const int64_t blocks[] = { 1, 4, 5 };

	for (int a = 0; a < 2; a++)
		for (size_t c = 0; c < (a ? 3u : 1u); c++) {
			lca_params p;

			ck_assert_int_eq(lca_params_init(&p, LCA_LIGHTNING), LCA_OK);
			p.H = 4, p.dk = 3, p.dv = 5, p.block = blocks[c];
			p.algo = a ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT;
			compare(&p);
		}
	report("lightning");
}
END_TEST

/* The cpu backend's AUTO for mla decides per call (lca_mla_forward(3)) and
 * is counted per call: the cheaper of the reference's naive and absorbed
 * counts, for a prefill and for each decode step; a generation sums its
 * steps. The second shape (dn = dv = 1, dc = 20) keeps naive cheaper for
 * the first steps of a generation. */
static double count_mla_auto(const lca_params *p, lca_phase ph, int64_t n)
{
	lca_params nv = *p, ab = *p;
	double f = 0;

	nv.algo = LCA_ALGO_NAIVE, ab.algo = LCA_ALGO_ABSORBED;
	if (ph != LCA_PHASE_GENERATE)
		return fmin(count(&nv, ph, n), count(&ab, ph, n));
	for (int64_t c = 1; c <= n; c++)
		f += fmin(count(&nv, LCA_PHASE_DECODE, c), count(&ab, LCA_PHASE_DECODE, c));
	return f;
}

START_TEST(mla_cpu_auto_counts_the_cheaper_form)
{
	static const int64_t ns[] = { 1, 2, 3, 5, 8, 17, 33 };
	static const int64_t shapes[][5] = { { 3, 4, 2, 6, 5 }, { 2, 1, 2, 20, 1 } };
	int naive_steps = 0;

	for (size_t k = 0; k < 2; k++)
		for (int64_t w = 0; w <= 7; w += 7) {
			lca_params p, got;
			lca_plan *pl = NULL;

			ck_assert_int_eq(lca_params_init(&p, LCA_MLA), LCA_OK);
			p.backend = LCA_BACKEND_CPU;
			p.H = shapes[k][0], p.dn = shapes[k][1], p.dr = shapes[k][2];
			p.dc = shapes[k][3], p.dv = shapes[k][4];
			p.scale = 0.5, p.window = w;
			ck_assert_msg(lca_plan_create(&p, &pl) == LCA_OK, "%s", lca_last_error());
			ck_assert_int_eq(lca_plan_params(pl, &got), LCA_OK);
			ck_assert_int_eq(got.algo, LCA_ALGO_AUTO);  /* decided per call */
			for (int ph = LCA_PHASE_PREFILL; ph <= LCA_PHASE_GENERATE; ph++)
				for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
					double want = count_mla_auto(&got, (lca_phase)ph, ns[i]);
					lca_cost c;

					ck_assert_int_eq(lca_plan_cost(pl, (lca_phase)ph, ns[i], &c),
						LCA_OK);
					ck_assert_msg(c.flops == want,
						"shape %zu window %lld phase %d n %lld: model %.17g, count %.17g",
						k, (long long)w, ph, (long long)ns[i], c.flops, want);
				}
			/* the second shape must exercise naive decode steps */
			{
				lca_params nv = got, ab = got;

				nv.algo = LCA_ALGO_NAIVE, ab.algo = LCA_ALGO_ABSORBED;
				naive_steps += count(&nv, LCA_PHASE_DECODE, 2) <
					count(&ab, LCA_PHASE_DECODE, 2);
			}
			lca_plan_destroy(pl);
		}
	ck_assert_msg(naive_steps > 0, "no shape has a decode step where naive is cheaper");
}
END_TEST

/* A generation is the sum of its decode steps, bytes included; state bytes
 * are lca_plan_cache_cost()'s. */
START_TEST(generate_sums_decode)
{
	for (int v = 0; v < 4; v++) {
		lca_params p;
		lca_plan *pl = NULL;
		lca_cost g, d;
		double fl = 0, by = 0;
		int64_t tok, seq;

		ck_assert_int_eq(lca_params_init(&p, (lca_variant)v), LCA_OK);
		p.H = 2, p.Hkv = 1, p.Hk = 1, p.dk = 4, p.dv = 4, p.chunk = p.block = 4;
		if (v == LCA_MLA)
			p.dk = 0, p.dn = 4, p.dr = 2, p.dc = 8, p.scale = 0.5;
		if (v <= LCA_MLA)
			p.window = 5;
		ck_assert_msg(lca_plan_create(&p, &pl) == LCA_OK, "%s", lca_last_error());
		for (int64_t c = 1; c <= 20; c++) {
			ck_assert_int_eq(lca_plan_cost(pl, LCA_PHASE_DECODE, c, &d), LCA_OK);
			fl += d.flops, by += d.bytes;
		}
		ck_assert_int_eq(lca_plan_cost(pl, LCA_PHASE_GENERATE, 20, &g), LCA_OK);
		ck_assert(fabs(g.flops - fl) <= 1e-12 * fl && fabs(g.bytes - by) <= 1e-12 * by);
		ck_assert_int_eq(lca_plan_cache_cost(pl, &tok, &seq), LCA_OK);
		ck_assert(g.state_bytes == (double)(tok * 20 + seq));
		lca_plan_destroy(pl);
	}
}
END_TEST

START_TEST(errors)
{
	lca_params p;
	lca_plan *pl = NULL;
	lca_cost c = { 1, 2, 3 };

	ck_assert_int_eq(lca_params_init(&p, LCA_SOFTMAX), LCA_OK);
	p.H = 2, p.dk = 4, p.dv = 4;
	ck_assert_int_eq(lca_plan_create(&p, &pl), LCA_OK);
	ck_assert_int_eq(lca_plan_cost(NULL, LCA_PHASE_DECODE, 4, &c), LCA_ERR_NULL);
	ck_assert_int_eq(lca_plan_cost(pl, LCA_PHASE_DECODE, 4, NULL), LCA_ERR_NULL);
	ck_assert_int_eq(lca_plan_cost(pl, (lca_phase)7, 4, &c), LCA_ERR_ARG);
	ck_assert_int_eq(lca_plan_cost(pl, LCA_PHASE_DECODE, 0, &c), LCA_ERR_SIZE);
	ck_assert(c.flops == 1 && c.bytes == 2 && c.state_bytes == 3);
	lca_plan_destroy(pl);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cost");
	TCase *tc = tcase_create("cost");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, softmax_counts);
	tcase_add_test(tc, mla_counts);
	tcase_add_test(tc, deltanet_counts);
	tcase_add_test(tc, lightning_counts);
	tcase_add_test(tc, mla_cpu_auto_counts_the_cheaper_form);
	tcase_add_test(tc, generate_sums_decode);
	tcase_add_test(tc, errors);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
