/*
 * check_lightning.c - Lightning attention (MiniMax-01): the undecayed case
 * as a plain running sum, the blockwise form against the recurrence around
 * the block size, large decay over long sequences, and MiniMax's slopes.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct li {
	int64_t T, H, dk, dv;
	double scale;      /* 0 = default 1 */
	int64_t block;     /* 0 = default 256 */
};

struct li_io {
	double *q, *k, *v, *slope, *state0, *o, *state;
};

static int64_t nstate(const struct li *c)
{
	return c->H * c->dk * c->dv;
}

/* Random inputs; slopes in [0, 1), state0 zero. */
static void io_alloc(const struct li *c, struct li_io *x)
{
	x->q = tu_alloc(c->T * c->H * c->dk);
	x->k = tu_alloc(c->T * c->H * c->dk);
	x->v = tu_alloc(c->T * c->H * c->dv);
	x->slope = tu_alloc(c->H);
	x->state0 = tu_alloc(nstate(c));
	x->o = tu_alloc(c->T * c->H * c->dv);
	x->state = tu_alloc(nstate(c));
	tu_fill_normal(x->q, c->T * c->H * c->dk, 1.0);
	tu_fill_normal(x->k, c->T * c->H * c->dk, 1.0);
	tu_fill_normal(x->v, c->T * c->H * c->dv, 1.0);
	tu_fill_uniform(x->slope, c->H, 0.0, 1.0);
}

static void io_free(struct li_io *x)
{
	free(x->q);
	free(x->k);
	free(x->v);
	free(x->slope);
	free(x->state0);
	free(x->o);
	free(x->state);
}

static void li_run(const struct li *c, lca_algo algo, const struct li_io *x,
	const double *state0, double *o, double *state)
{
	lca_params p = tu_params(LCA_LIGHTNING);
	lca_plan *plan;

	p.algo = algo;
	p.H = c->H;
	p.dk = c->dk;
	p.dv = c->dv;
	p.scale = c->scale;
	if (c->block)
		p.block = c->block;
	plan = tu_plan(&p);
	tu_assert_ok(lca_lightning_forward(plan, c->T, x->q, x->k, x->v, x->slope,
		NULL, 0, state0, o, state));
	lca_plan_destroy(plan);
}

/* S = lambda S + k v^T;  o = scale S^T q, written from the definition. */
static void li_reference(const struct li *c, const struct li_io *x,
	const double *state0, double *o, double *state)
{
	const int64_t dk = c->dk, dv = c->dv;
	double scale = c->scale > 0 ? c->scale : 1.0;
	double *S = tu_alloc(dk * dv);

	for (int64_t h = 0; h < c->H; h++) {
		double lambda = exp(-x->slope[h]);

		for (int64_t j = 0; j < dk * dv; j++)
			S[j] = state0 ? state0[h * dk * dv + j] : 0.0;
		for (int64_t t = 0; t < c->T; t++) {
			const int64_t th = t * c->H + h;
			const double *q = x->q + th * dk, *k = x->k + th * dk, *v = x->v + th * dv;

			for (int64_t a = 0; a < dk; a++)
				for (int64_t b = 0; b < dv; b++)
					S[a * dv + b] = lambda * S[a * dv + b] + k[a] * v[b];
			for (int64_t b = 0; b < dv; b++) {
				double acc = 0;

				for (int64_t a = 0; a < dk; a++)
					acc += S[a * dv + b] * q[a];
				o[(t * c->H + h) * dv + b] = scale * acc;
			}
		}
		memcpy(state + h * dk * dv, S, (size_t)(dk * dv) * sizeof(double));
	}
	free(S);
}

static void check_against_reference(const struct li *c, const struct li_io *x,
	const double *state0, double tol)
{
	int64_t no = c->T * c->H * c->dv, ns = nstate(c);
	double *o = tu_alloc(no), *s = tu_alloc(ns), *lo = tu_alloc(no), *ls = tu_alloc(ns);

	li_reference(c, x, state0, o, s);
	for (int a = 0; a < 2; a++) {
		li_run(c, a ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT, x, state0, lo, ls);
		tu_assert_close(lo, o, no, tol, a ? "blockwise o" : "recurrent o");
		tu_assert_close(ls, s, ns, tol, a ? "blockwise state" : "recurrent state");
	}
	free(o);
	free(s);
	free(lo);
	free(ls);
}

static void check_blockwise_vs_recurrent(const struct li *c, const struct li_io *x,
	const double *state0)
{
	int64_t no = c->T * c->H * c->dv, ns = nstate(c);
	double *o = tu_alloc(no), *s = tu_alloc(ns);

	li_run(c, LCA_ALGO_RECURRENT, x, state0, x->o, x->state);
	li_run(c, LCA_ALGO_CHUNKED, x, state0, o, s);
	ck_assert_msg(tu_all_finite(o, no) && tu_all_finite(s, ns), "blockwise not finite");
	ck_assert_msg(tu_all_finite(x->o, no) && tu_all_finite(x->state, ns),
		"recurrent not finite");
	tu_assert_close(o, x->o, no, 1e-12, "blockwise vs recurrent o");
	tu_assert_close(s, x->state, ns, 1e-12, "blockwise vs recurrent state");
	free(o);
	free(s);
}

/* ---- the recurrence ------------------------------------------------------ */

START_TEST(test_zero_slope_is_a_running_sum)
{
	/* lambda = 1: o_t = scale sum_{s <= t} (q_t . k_s) v_s, summed here
	 * pair by pair, with no state at all. */
	struct li c = { 50, 2, 4, 3, 0.5, 16 };
	struct li_io x;
	int64_t no = c.T * c.H * c.dv, ns = nstate(&c);
	double *o = tu_alloc(no), *s = tu_alloc(ns);

	io_alloc(&c, &x);
	x.slope[0] = x.slope[1] = 0.0;
	for (int64_t h = 0; h < c.H; h++)
		for (int64_t t = 0; t < c.T; t++) {
			const double *qt = x.q + (t * c.H + h) * c.dk;

			for (int64_t r = 0; r <= t; r++) {
				const double *kr = x.k + (r * c.H + h) * c.dk;
				const double *vr = x.v + (r * c.H + h) * c.dv;
				double d = 0;

				for (int64_t a = 0; a < c.dk; a++)
					d += qt[a] * kr[a];
				for (int64_t b = 0; b < c.dv; b++)
					o[(t * c.H + h) * c.dv + b] += c.scale * d * vr[b];
			}
			for (int64_t a = 0; a < c.dk; a++)
				for (int64_t b = 0; b < c.dv; b++) {
					int64_t th = t * c.H + h;

					s[(h * c.dk + a) * c.dv + b] +=
						x.k[th * c.dk + a] * x.v[th * c.dv + b];
				}
		}
	for (int a = 0; a < 2; a++) {
		li_run(&c, a ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT, &x, NULL, x.o, x.state);
		tu_assert_close(x.o, o, no, 1e-12, a ? "blockwise o" : "recurrent o");
		tu_assert_close(x.state, s, ns, 1e-12, a ? "blockwise state" : "recurrent state");
	}
	free(o);
	free(s);
	io_free(&x);
}
END_TEST

START_TEST(test_matches_test_recurrence_with_state0_and_scale)
{
	struct li c = { 120, 3, 5, 4, 0.3, 32 };
	struct li_io x;

	io_alloc(&c, &x);
	tu_fill_normal(x.state0, nstate(&c), 1.0);
	check_against_reference(&c, &x, x.state0, 1e-12);
	io_free(&x);
}
END_TEST

START_TEST(test_default_scale_is_one)
{
	struct li c = { 30, 2, 3, 4, 0, 0 };
	struct li e = c;
	struct li_io x;
	double *o = tu_alloc(c.T * c.H * c.dv), *s = tu_alloc(nstate(&c));

	e.scale = 1.0;
	io_alloc(&c, &x);
	li_run(&c, LCA_ALGO_RECURRENT, &x, NULL, x.o, x.state);
	li_run(&e, LCA_ALGO_RECURRENT, &x, NULL, o, s);
	tu_assert_close(x.o, o, c.T * c.H * c.dv, 0.0, "o");
	free(o);
	free(s);
	io_free(&x);
}
END_TEST

START_TEST(test_state_is_optional)
{
	struct li c = { 40, 2, 3, 4, 0, 16 };
	struct li_io x;
	double *o = tu_alloc(c.T * c.H * c.dv);

	io_alloc(&c, &x);
	for (int a = 0; a < 2; a++) {
		lca_algo algo = a ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT;

		li_run(&c, algo, &x, NULL, x.o, x.state);
		li_run(&c, algo, &x, NULL, o, NULL);
		tu_assert_close(o, x.o, c.T * c.H * c.dv, 0.0, "o without state");
	}
	free(o);
	io_free(&x);
}
END_TEST

/* ---- blockwise against recurrent ----------------------------------------- */

static const int64_t lengths[] = { 1, 255, 256, 257, 600 };

START_TEST(test_blockwise_equals_recurrent)
{
	/* One head without decay, one ordinary, one with a large slope. */
	struct li c = { lengths[_i], 3, 5, 7, 0, 0 };
	struct li_io x;

	io_alloc(&c, &x);
	x.slope[0] = 0.0;
	x.slope[2] = 20.0;
	check_blockwise_vs_recurrent(&c, &x, NULL);
	io_free(&x);
}
END_TEST

START_TEST(test_blockwise_equals_recurrent_for_any_block_size)
{
	static const int64_t blocks[] = { 1, 3, 64, 1000 };
	struct li c = { 300, 2, 4, 3, 0, 0 };
	struct li_io x;

	io_alloc(&c, &x);
	tu_fill_normal(x.state0, nstate(&c), 1.0);
	for (int j = 0; j < 4; j++) {
		c.block = blocks[j];
		check_blockwise_vs_recurrent(&c, &x, x.state0);
	}
	io_free(&x);
}
END_TEST

START_TEST(test_long_sequence_with_large_slopes_stays_finite)
{
	/* lambda^256 underflows for these slopes; lambda^-i overflows: a
	 * blockwise form must only ever form exp of arguments <= 0. */
	struct li c = { 3000, 4, 4, 3, 0, 0 };
	struct li_io x;

	io_alloc(&c, &x);
	x.slope[0] = 30.0;
	x.slope[1] = 700.0;
	x.slope[2] = 1e6;
	x.slope[3] = 1e-3;
	tu_fill_normal(x.state0, nstate(&c), 1.0);
	check_blockwise_vs_recurrent(&c, &x, x.state0);
	check_against_reference(&c, &x, x.state0, 1e-12);
	io_free(&x);
}
END_TEST

/* ---- MiniMax slopes ------------------------------------------------------ */

static void check_slopes(int64_t H, int64_t layer, int64_t L, const double *base,
	double factor)
{
	double *s = tu_alloc(H);

	tu_assert_ok(lca_minimax_slopes(H, layer, L, s));
	for (int64_t h = 0; h < H; h++) {
		double want = base[h] * factor;

		ck_assert_msg(fabs(s[h] - want) <= 4e-16 * want,
			"H %lld layer %lld/%lld: slope[%lld] = %.17g, expected %.17g",
			(long long)H, (long long)layer, (long long)L, (long long)h, s[h], want);
	}
	free(s);
}

START_TEST(test_slopes_power_of_two_heads_single_layer)
{
	double base[8];

	for (int h = 0; h < 8; h++)
		base[h] = ldexp(1.0, -(h + 1)); /* 2^(-8 (h+1) / 8) */
	check_slopes(8, 0, 1, base, 1.0 + 1e-5);
}
END_TEST

START_TEST(test_slopes_first_and_last_layer)
{
	double base[8], base16[16];

	for (int h = 0; h < 8; h++)
		base[h] = ldexp(1.0, -(h + 1));
	check_slopes(8, 0, 4, base, 1.0 + 1e-5);
	check_slopes(8, 3, 4, base, 1e-5);
	check_slopes(8, 1, 4, base, 1.0 - 1.0 / 3.0 + 1e-5);
	for (int h = 0; h < 16; h++)
		base16[h] = pow(2.0, -0.5 * (h + 1)); /* 2^(-8 (h+1) / 16) */
	check_slopes(16, 2, 5, base16, 1.0 - 2.0 / 4.0 + 1e-5);
}
END_TEST

START_TEST(test_slopes_non_power_of_two_heads)
{
	/* ALiBi: the 4 slopes of 4 heads (2^-2, 2^-4, 2^-6, 2^-8), then
	 * slopes 0 and 2 of 8 heads (2^-1, 2^-3). */
	static const double h6[] = { 0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125 };
	/* 8 slopes of 8, then slopes 0, 2, 4, 6 of 16: 2^-0.5, ..., 2^-3.5 */
	static const double h12[] = {
		0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625,
		0.70710678118654752, 0.35355339059327376, 0.17677669529663688,
		0.088388347648318440,
	};
	static const double h3[] = { 0.0625, 0.00390625, 0.25 };
	static const double h1[] = { 0.00390625 };

	check_slopes(6, 0, 1, h6, 1.0 + 1e-5);
	check_slopes(12, 0, 2, h12, 1.0 + 1e-5);
	check_slopes(3, 0, 1, h3, 1.0 + 1e-5);
	check_slopes(1, 0, 1, h1, 1.0 + 1e-5);
}
END_TEST

static Suite *lightning_suite(void)
{
	Suite *s = suite_create("lightning");
	TCase *tc = tu_tcase("definition");

	tcase_add_test(tc, test_zero_slope_is_a_running_sum);
	tcase_add_test(tc, test_matches_test_recurrence_with_state0_and_scale);
	tcase_add_test(tc, test_default_scale_is_one);
	tcase_add_test(tc, test_state_is_optional);
	suite_add_tcase(s, tc);

	tc = tu_tcase("blockwise");
	tcase_add_loop_test(tc, test_blockwise_equals_recurrent, 0,
		(int)(sizeof lengths / sizeof lengths[0]));
	tcase_add_test(tc, test_blockwise_equals_recurrent_for_any_block_size);
	tcase_add_test(tc, test_long_sequence_with_large_slopes_stays_finite);
	suite_add_tcase(s, tc);

	tc = tu_tcase("slopes");
	tcase_add_test(tc, test_slopes_power_of_two_heads_single_layer);
	tcase_add_test(tc, test_slopes_first_and_last_layer);
	tcase_add_test(tc, test_slopes_non_power_of_two_heads);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(lightning_suite());
}
