/*
 * check_cost.c - lca_plan_cost() against an independent count.
 *
 * The counter below walks the loops of each mechanism's textbook definition
 * (lcattn(7), DESIGN.md "The mechanisms"; the chunked and blockwise forms as
 * lca_plan_cost(3) writes them) one operation at a time: every multiply-add
 * of a product adds 2, every multiplication of a state entry by its decay
 * adds 1, and O(head size) work (exp, normalisation, RoPE, norms, scales,
 * beta) adds nothing, the counting rule of lca_plan_cost(3). It shares no
 * code with lib/core/cost.c: the closed forms there must equal these loops
 * exactly on every small shape, masks and short last chunks included.
 */
#include "lcattn.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>

struct shape {
	int64_t H, Hkv, Hk, dk, dv, dn, dr, dc, window, chunk;
	int causal;
	lca_algo algo;
};

/* Does a query at position i see key j? (bottom-right, causal, window) */
static int sees(const struct shape *s, int64_t i, int64_t j)
{
	if (!s->causal)
		return 1;
	return j <= i && (s->window == 0 || i - j < s->window);
}

/* Softmax and mla: Tq queries at positions Tk - Tq .. Tk - 1. */
static double count_quadratic(lca_variant v, const struct shape *s, int64_t Tq,
	int64_t Tk, int prefill)
{
	double f = 0;

	if (v == LCA_MLA && s->algo == LCA_ALGO_NAIVE && prefill)
		for (int64_t j = 0; j < Tk; j++)  /* decompress every key once */
			for (int64_t h = 0; h < s->H; h++)
				f += 2.0 * s->dc * (s->dn + s->dv);
	for (int64_t i = Tk - Tq; i < Tk; i++)
		for (int64_t h = 0; h < s->H; h++) {
			if (v == LCA_MLA && s->algo != LCA_ALGO_NAIVE)
				f += 2.0 * s->dn * s->dc + 2.0 * s->dc * s->dv;  /* q w_uk, w_uv */
			for (int64_t j = 0; j < Tk; j++) {
				if (!sees(s, i, j))
					continue;
				if (v == LCA_SOFTMAX) {
					for (int64_t d = 0; d < s->dk; d++)
						f += 2;  /* q . k */
					for (int64_t d = 0; d < s->dv; d++)
						f += 2;  /* p v */
				} else if (s->algo == LCA_ALGO_NAIVE) {
					if (!prefill)  /* decode decompresses what it reads */
						f += 2.0 * s->dc * (s->dn + s->dv);
					f += 2.0 * (s->dn + s->dr + s->dv);
				} else {
					f += 2.0 * (s->dc + s->dr) + 2.0 * s->dc;
				}
			}
		}
	return f;
}

/* One token of the recurrence, one value head: the decay, S^T k and the
 * rank-one write (deltanet) or k v^T (lightning), and the read S^T q. */
static double count_token(lca_variant v, const struct shape *s)
{
	double f = 0;

	for (int64_t a = 0; a < s->dk; a++)
		for (int64_t b = 0; b < s->dv; b++) {
			f += 1;          /* S *= decay */
			if (v == LCA_DELTANET)
				f += 2;  /* (S^T k)_b */
			f += 2;          /* S += k (u or v)^T */
			f += 2;          /* o = S^T q */
		}
	return f;
}

/* One chunk of c tokens, one value head, chunked forms. */
static double count_chunk(lca_variant v, const struct shape *s, int64_t c)
{
	double f = 0;

	for (int64_t i = 0; i < c; i++)
		for (int64_t j = 0; j <= i; j++) {
			f += 2.0 * s->dk;          /* tril(Q K^T) */
			f += 2.0 * s->dv;          /* (Q K^T) U or (Q K^T . D) V */
			if (v == LCA_DELTANET)     /* tril(K K^T), T K, T V */
				f += 2.0 * s->dk + 2.0 * (s->dk + s->dv);
		}
	if (v == LCA_DELTANET)  /* forward substitution for (I + A)^-1 */
		for (int64_t i = 0; i < c; i++)
			for (int64_t j = 0; j < i; j++)
				for (int64_t k = j + 1; k < i; k++)
					f += 2;
	for (int64_t i = 0; i < c; i++)
		f += 2.0 * s->dk * s->dv * (v == LCA_DELTANET ? 3 : 2);  /* W S, Q S, K^T U */
	return f + (double)s->dk * s->dv;  /* the state's decay over the chunk */
}

static double count_linear(lca_variant v, const struct shape *s, int64_t T, int chunked)
{
	double f = 0;

	for (int64_t h = 0; h < s->H; h++)
		if (chunked)
			for (int64_t t0 = 0; t0 < T; t0 += s->chunk)
				f += count_chunk(v, s, T - t0 < s->chunk ? T - t0 : s->chunk);
		else
			for (int64_t t = 0; t < T; t++)
				f += count_token(v, s);
	return f;
}

static double count(lca_variant v, const struct shape *s, lca_phase ph, int64_t n)
{
	double f = 0;

	if (v >= LCA_DELTANET) {
		if (ph == LCA_PHASE_PREFILL)
			return count_linear(v, s, n, s->algo == LCA_ALGO_CHUNKED);
		return count_linear(v, s, ph == LCA_PHASE_DECODE ? 1 : n, 0);
	}
	if (ph == LCA_PHASE_PREFILL)
		return count_quadratic(v, s, n, n, 1);
	if (ph == LCA_PHASE_DECODE)
		return count_quadratic(v, s, 1, n, 0);
	for (int64_t c = 1; c <= n; c++)
		f += count_quadratic(v, s, 1, c, 0);
	return f;
}

static lca_plan *make(lca_variant v, const struct shape *s)
{
	lca_params p;
	lca_plan *pl = NULL;

	ck_assert_int_eq(lca_params_init(&p, v), LCA_OK);
	p.H = s->H, p.Hkv = s->Hkv, p.Hk = s->Hk, p.dv = s->dv;
	p.dk = v == LCA_MLA ? 0 : s->dk;
	if (v == LCA_MLA)
		p.dn = s->dn, p.dr = s->dr, p.dc = s->dc, p.scale = 0.5;
	if (v <= LCA_MLA)
		p.causal = s->causal, p.window = s->window;
	p.chunk = p.block = s->chunk;
	p.algo = s->algo;
	ck_assert_msg(lca_plan_create(&p, &pl) == LCA_OK, "%s", lca_last_error());
	return pl;
}

static void compare(lca_variant v, const struct shape *s)
{
	static const int64_t ns[] = { 1, 2, 3, 5, 8, 17, 33 };
	lca_plan *pl = make(v, s);

	for (int ph = LCA_PHASE_PREFILL; ph <= LCA_PHASE_GENERATE; ph++)
		for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
			lca_cost c;
			double want = count(v, s, (lca_phase)ph, ns[i]);

			ck_assert_int_eq(lca_plan_cost(pl, (lca_phase)ph, ns[i], &c), LCA_OK);
			ck_assert_msg(c.flops == want, "variant %d phase %d n %lld: model %.17g, count %.17g",
				(int)v, ph, (long long)ns[i], c.flops, want);
		}
	lca_plan_destroy(pl);
}

START_TEST(softmax_counts)
{
	for (int causal = 0; causal <= 1; causal++)
		for (int64_t w = 0; w <= (causal ? 4 : 0); w += 4) {
			struct shape s = { .H = 4, .Hkv = 2, .dk = 5, .dv = 3, .causal = causal,
				.window = w, .algo = LCA_ALGO_AUTO };

			compare(LCA_SOFTMAX, &s);
		}
}
END_TEST

START_TEST(mla_counts)
{
	for (int a = 0; a < 2; a++)
		for (int64_t w = 0; w <= 3; w += 3) {
			struct shape s = { .H = 3, .dn = 4, .dr = 2, .dc = 6, .dv = 5, .causal = 1,
				.window = w, .algo = a ? LCA_ALGO_NAIVE : LCA_ALGO_ABSORBED };

			compare(LCA_MLA, &s);
		}
}
END_TEST

START_TEST(linear_counts)
{
	for (int v = LCA_DELTANET; v <= LCA_LIGHTNING; v++)
		for (int a = 0; a < 2; a++)
			for (int64_t c = 1; c <= 16; c *= 4) {
				struct shape s = { .H = 4, .Hk = v == LCA_DELTANET ? 2 : 0, .dk = 3,
					.dv = 5, .chunk = c,
					.algo = a ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT };

				compare((lca_variant)v, &s);
			}
}
END_TEST

/* The cpu backend's AUTO for mla decides per call (lca_mla_forward(3)) and
 * is counted per call: the cheaper of naive with every key decompressed
 * once and absorbed, for a prefill and for each decode step; a generation
 * sums its steps. The second shape (dn = dv = 1) keeps naive cheaper for
 * the first steps of a generation. */
static double count_mla_auto(const struct shape *s, lca_phase ph, int64_t n)
{
	struct shape nv = *s, ab = *s;
	double f = 0;

	nv.algo = LCA_ALGO_NAIVE, ab.algo = LCA_ALGO_ABSORBED;
	if (ph == LCA_PHASE_PREFILL)
		return fmin(count_quadratic(LCA_MLA, &nv, n, n, 1),
			count_quadratic(LCA_MLA, &ab, n, n, 1));
	for (int64_t c = ph == LCA_PHASE_DECODE ? n : 1; c <= n; c++)
		f += fmin(count_quadratic(LCA_MLA, &nv, 1, c, 1),
			count_quadratic(LCA_MLA, &ab, 1, c, 0));
	return f;
}

START_TEST(mla_cpu_auto_counts_the_cheaper_form)
{
	static const int64_t ns[] = { 1, 2, 3, 5, 8, 17, 33, 60 };
	const struct shape shapes[] = {
		{ .H = 3, .dn = 4, .dr = 2, .dc = 6, .dv = 5, .causal = 1 },
		{ .H = 2, .dn = 1, .dr = 2, .dc = 20, .dv = 1, .causal = 1 },
	};

	for (size_t k = 0; k < 2; k++)
		for (int64_t w = 0; w <= 7; w += 7) {
			struct shape sh = shapes[k];
			lca_params p;
			lca_plan *pl = NULL;

			sh.window = w;
			ck_assert_int_eq(lca_params_init(&p, LCA_MLA), LCA_OK);
			p.backend = LCA_BACKEND_CPU;
			p.H = sh.H, p.dn = sh.dn, p.dr = sh.dr, p.dc = sh.dc, p.dv = sh.dv;
			p.scale = 0.5, p.window = w;
			ck_assert_msg(lca_plan_create(&p, &pl) == LCA_OK, "%s", lca_last_error());
			for (int ph = LCA_PHASE_PREFILL; ph <= LCA_PHASE_GENERATE; ph++)
				for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
					double want = count_mla_auto(&sh, (lca_phase)ph, ns[i]);
					lca_cost c;

					ck_assert_int_eq(lca_plan_cost(pl, (lca_phase)ph, ns[i], &c),
						LCA_OK);
					ck_assert_msg(c.flops == want,
						"shape %zu window %lld phase %d n %lld: model %.17g, count %.17g",
						k, (long long)w, ph, (long long)ns[i], c.flops, want);
				}
			lca_plan_destroy(pl);
		}
}
END_TEST

/* A generation is the sum of its decode steps, bytes included; state bytes
 * are lca_plan_cache_cost()'s. */
START_TEST(generate_sums_decode)
{
	struct shape s = { .H = 2, .Hkv = 1, .Hk = 1, .dk = 4, .dv = 4, .dn = 4, .dr = 2,
		.dc = 8, .causal = 1, .window = 5, .chunk = 4, .algo = LCA_ALGO_AUTO };

	for (int v = 0; v < 4; v++) {
		lca_plan *pl = make((lca_variant)v, &s);
		lca_cost g, d;
		double fl = 0, by = 0;
		int64_t tok, seq;

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
	struct shape s = { .H = 2, .Hkv = 2, .dk = 4, .dv = 4, .causal = 1 };
	lca_plan *pl = make(LCA_SOFTMAX, &s);
	lca_cost c = { 1, 2, 3 };

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
	tcase_add_test(tc, mla_cpu_auto_counts_the_cheaper_form);
	tcase_add_test(tc, linear_counts);
	tcase_add_test(tc, generate_sums_decode);
	tcase_add_test(tc, errors);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
