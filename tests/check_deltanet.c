/*
 * check_deltanet.c - Gated DeltaNet: exact associative recall with
 * orthonormal keys, the plain delta rule written in the test, and the
 * chunked (WY/UT) form against the recurrence on lengths around the chunk
 * size, with extreme gates, beta > 1, an initial state and no L2 norm.
 */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct dn {
	int64_t T, H, Hk, dk, dv;
	double scale;      /* 0 = 1/sqrt(dk) */
	int l2;            /* qk_l2norm */
	int64_t chunk;     /* 0 = default */
};

struct dn_io {
	double *q, *k, *v, *g, *beta, *state0, *o, *state;
};

static int64_t nstate(const struct dn *c)
{
	return c->H * c->dk * c->dv;
}

/* Random inputs: g in [-3, 0], beta in (0, 2), state0 zero. */
static void io_alloc(const struct dn *c, struct dn_io *x)
{
	x->q = tu_alloc(c->T * c->Hk * c->dk);
	x->k = tu_alloc(c->T * c->Hk * c->dk);
	x->v = tu_alloc(c->T * c->H * c->dv);
	x->g = tu_alloc(c->T * c->H);
	x->beta = tu_alloc(c->T * c->H);
	x->state0 = tu_alloc(nstate(c));
	x->o = tu_alloc(c->T * c->H * c->dv);
	x->state = tu_alloc(nstate(c));
	tu_fill_normal(x->q, c->T * c->Hk * c->dk, 1.0);
	tu_fill_normal(x->k, c->T * c->Hk * c->dk, 1.0);
	tu_fill_normal(x->v, c->T * c->H * c->dv, 1.0);
	tu_fill_uniform(x->g, c->T * c->H, -3.0, 0.0);
	tu_fill_uniform(x->beta, c->T * c->H, 1e-3, 2.0);
}

static void io_free(struct dn_io *x)
{
	free(x->q);
	free(x->k);
	free(x->v);
	free(x->g);
	free(x->beta);
	free(x->state0);
	free(x->o);
	free(x->state);
}

/* Library run; state0 NULL means zeros. */
static void dn_run(const struct dn *c, lca_algo algo, const struct dn_io *x,
	const double *state0, double *o, double *state)
{
	lca_params p = tu_params(LCA_DELTANET);
	lca_plan *plan;

	p.algo = algo;
	p.H = c->H;
	p.Hk = c->Hk;
	p.dk = c->dk;
	p.dv = c->dv;
	p.scale = c->scale;
	p.qk_l2norm = c->l2;
	if (c->chunk)
		p.chunk = c->chunk;
	plan = tu_plan(&p);
	tu_assert_ok(lca_deltanet_forward(plan, c->T, x->q, x->k, x->v, x->g, x->beta,
		NULL, 0, state0, o, state));
	lca_plan_destroy(plan);
}

/* x / sqrt(sum x^2 + 1e-6), as Qwen3-Next normalises q and k. */
static void l2norm(double *x, int64_t n)
{
	double s = 0;

	for (int64_t i = 0; i < n; i++)
		s += x[i] * x[i];
	s = sqrt(s + 1e-6);
	for (int64_t i = 0; i < n; i++)
		x[i] /= s;
}

/* The gated delta rule written from its definition, one head at a time:
 *   S = exp(g) S;  u = beta (v - S^T k);  S += k u^T;  o = S^T q. */
static void dn_reference(const struct dn *c, const struct dn_io *x,
	const double *state0, double *o, double *state)
{
	const int64_t dk = c->dk, dv = c->dv;
	double scale = c->scale > 0 ? c->scale : 1.0 / sqrt((double)dk);
	double *S = tu_alloc(dk * dv), *qt = tu_alloc(dk), *kt = tu_alloc(dk), *u = tu_alloc(dv);

	for (int64_t h = 0; h < c->H; h++) {
		int64_t hk = h / (c->H / c->Hk);

		for (int64_t j = 0; j < dk * dv; j++)
			S[j] = state0 ? state0[h * dk * dv + j] : 0.0;
		for (int64_t t = 0; t < c->T; t++) {
			double decay = exp(x->g[t * c->H + h]), beta = x->beta[t * c->H + h];

			memcpy(qt, x->q + (t * c->Hk + hk) * dk, (size_t)dk * sizeof(double));
			memcpy(kt, x->k + (t * c->Hk + hk) * dk, (size_t)dk * sizeof(double));
			if (c->l2) {
				l2norm(qt, dk);
				l2norm(kt, dk);
			}
			for (int64_t a = 0; a < dk; a++)
				qt[a] *= scale;
			for (int64_t j = 0; j < dk * dv; j++)
				S[j] *= decay;
			for (int64_t b = 0; b < dv; b++) {
				double pred = 0;

				for (int64_t a = 0; a < dk; a++)
					pred += S[a * dv + b] * kt[a];
				u[b] = beta * (x->v[(t * c->H + h) * dv + b] - pred);
			}
			for (int64_t a = 0; a < dk; a++)
				for (int64_t b = 0; b < dv; b++)
					S[a * dv + b] += kt[a] * u[b];
			for (int64_t b = 0; b < dv; b++) {
				double acc = 0;

				for (int64_t a = 0; a < dk; a++)
					acc += S[a * dv + b] * qt[a];
				o[(t * c->H + h) * dv + b] = acc;
			}
		}
		memcpy(state + h * dk * dv, S, (size_t)(dk * dv) * sizeof(double));
	}
	free(S);
	free(qt);
	free(kt);
	free(u);
}

/* Both library forms against the test's recurrence. */
static void check_against_reference(const struct dn *c, const struct dn_io *x,
	const double *state0, double tol)
{
	int64_t no = c->T * c->H * c->dv, ns = nstate(c);
	double *o = tu_alloc(no), *s = tu_alloc(ns), *lo = tu_alloc(no), *ls = tu_alloc(ns);

	dn_reference(c, x, state0, o, s);
	for (int a = 0; a < 2; a++) {
		dn_run(c, a ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT, x, state0, lo, ls);
		tu_assert_close(lo, o, no, tol, a ? "chunked o" : "recurrent o");
		tu_assert_close(ls, s, ns, tol, a ? "chunked state" : "recurrent state");
	}
	free(o);
	free(s);
	free(lo);
	free(ls);
}

/* The chunked form against the library's recurrence (o and final state). */
static void check_chunked_vs_recurrent(const struct dn *c, const struct dn_io *x,
	const double *state0)
{
	int64_t no = c->T * c->H * c->dv, ns = nstate(c);
	double *o = tu_alloc(no), *s = tu_alloc(ns);

	dn_run(c, LCA_ALGO_RECURRENT, x, state0, x->o, x->state);
	dn_run(c, LCA_ALGO_CHUNKED, x, state0, o, s);
	ck_assert(tu_all_finite(x->o, no) && tu_all_finite(x->state, ns));
	tu_assert_close(o, x->o, no, 1e-12, "chunked vs recurrent o");
	tu_assert_close(s, x->state, ns, 1e-12, "chunked vs recurrent state");
	free(o);
	free(s);
}

/* ---- associative recall ------------------------------------------------- */

/*
 * T orthonormal keys (dk >= T), beta = 1, g = 0: writing key i stores v_i
 * and leaves every other key's slot alone, so after all writes S^T k_i =
 * v_i. Tokens of the second half query with the keys of the first half.
 * keyscale multiplies the keys and queries: with the L2 norm on, a norm of
 * 1e6 makes the 1e-6 under its square root vanish in rounding, so the
 * normalised keys are unit vectors to the last bit.
 */
static void check_recall(int l2, double keyscale)
{
	struct dn c = { 12, 2, 1, 16, 5, 1.0, l2, 5 };
	struct dn_io x;
	int64_t half = c.T / 2;
	double *unit = tu_alloc(c.T * c.dk), *got = tu_alloc(c.dv);

	io_alloc(&c, &x);
	tu_fill_normal(unit, c.T * c.dk, 1.0);
	tu_orthonormal_rows(unit, c.T, c.dk);
	for (int64_t t = 0; t < c.T; t++)
		for (int64_t a = 0; a < c.dk; a++) {
			x.k[t * c.dk + a] = keyscale * unit[t * c.dk + a];
			if (t >= half)
				x.q[t * c.dk + a] = keyscale * unit[(t - half) * c.dk + a];
		}
	for (int64_t j = 0; j < c.T * c.H; j++) {
		x.g[j] = 0.0;
		x.beta[j] = 1.0;
	}
	for (int algo = 0; algo < 2; algo++) {
		dn_run(&c, algo ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT, &x, NULL, x.o, x.state);
		for (int64_t h = 0; h < c.H; h++)
			for (int64_t i = 0; i < c.T; i++) {
				const double *S = x.state + h * c.dk * c.dv;
				const double *vi = x.v + (i * c.H + h) * c.dv;

				for (int64_t b = 0; b < c.dv; b++) {
					got[b] = 0;
					for (int64_t a = 0; a < c.dk; a++)
						got[b] += S[a * c.dv + b] * unit[i * c.dk + a];
				}
				tu_assert_close(got, vi, c.dv, 1e-12, "S^T k_i = v_i");
				if (i < half) {
					const double *oq = x.o + ((i + half) * c.H + h) * c.dv;

					tu_assert_close(oq, vi, c.dv, 1e-12, "o with q = k_i");
				}
			}
	}
	free(unit);
	free(got);
	io_free(&x);
}

START_TEST(test_orthonormal_keys_recall_values_exactly)
{
	check_recall(1, 1e6);
}
END_TEST

START_TEST(test_orthonormal_keys_recall_without_l2norm)
{
	check_recall(0, 1.0);
}
END_TEST

/* ---- against the rule written in the test -------------------------------- */

START_TEST(test_zero_gate_equals_plain_delta_rule)
{
	struct dn c = { 37, 2, 2, 6, 4, 0, 1, 0 };
	struct dn_io x;

	io_alloc(&c, &x);
	for (int64_t j = 0; j < c.T * c.H; j++)
		x.g[j] = 0.0;
	check_against_reference(&c, &x, NULL, 1e-12);
	io_free(&x);
}
END_TEST

START_TEST(test_gated_rule_equals_test_recurrence)
{
	struct dn c = { 90, 4, 2, 7, 5, 0, 1, 0 };
	struct dn_io x;

	io_alloc(&c, &x);
	check_against_reference(&c, &x, NULL, 1e-12);
	io_free(&x);
}
END_TEST

START_TEST(test_beta_above_one)
{
	struct dn c = { 100, 2, 1, 5, 6, 0, 1, 0 };
	struct dn_io x;

	io_alloc(&c, &x);
	tu_fill_uniform(x.beta, c.T * c.H, 1.0 + 1e-9, 2.0);
	check_against_reference(&c, &x, NULL, 1e-12);
	check_chunked_vs_recurrent(&c, &x, NULL);
	io_free(&x);
}
END_TEST

START_TEST(test_nonzero_initial_state)
{
	struct dn c = { 70, 4, 2, 6, 3, 0, 1, 0 };
	struct dn_io x;

	io_alloc(&c, &x);
	tu_fill_normal(x.state0, nstate(&c), 1.0);
	check_against_reference(&c, &x, x.state0, 1e-12);
	check_chunked_vs_recurrent(&c, &x, x.state0);
	io_free(&x);
}
END_TEST

START_TEST(test_without_l2norm_uses_scale)
{
	/* Keys of norm ~0.7: beta |k|^2 < 2 keeps the rule contracting. */
	struct dn c = { 80, 2, 2, 6, 4, 0.37, 0, 0 };
	struct dn_io x;

	io_alloc(&c, &x);
	tu_fill_normal(x.k, c.T * c.Hk * c.dk, 0.3);
	tu_fill_uniform(x.beta, c.T * c.H, 1e-3, 1.0);
	check_against_reference(&c, &x, NULL, 1e-12);
	io_free(&x);
}
END_TEST

START_TEST(test_default_scale_is_inv_sqrt_dk)
{
	struct dn c = { 20, 2, 1, 9, 4, 0, 1, 0 };
	struct dn e = c;
	struct dn_io x;
	double *o = tu_alloc(c.T * c.H * c.dv), *s = tu_alloc(nstate(&c));

	e.scale = 1.0 / 3.0;
	io_alloc(&c, &x);
	dn_run(&c, LCA_ALGO_RECURRENT, &x, NULL, x.o, x.state);
	dn_run(&e, LCA_ALGO_RECURRENT, &x, NULL, o, s);
	tu_assert_close(x.o, o, c.T * c.H * c.dv, 1e-15, "o");
	free(o);
	free(s);
	io_free(&x);
}
END_TEST

START_TEST(test_grouped_heads_equal_repeated_qk_heads)
{
	struct dn g = { 30, 4, 2, 5, 3, 0, 1, 0 };
	struct dn m = g;
	struct dn_io x, y;

	m.Hk = 4;
	io_alloc(&g, &x);
	io_alloc(&m, &y);
	memcpy(y.v, x.v, (size_t)(g.T * g.H * g.dv) * sizeof(double));
	memcpy(y.g, x.g, (size_t)(g.T * g.H) * sizeof(double));
	memcpy(y.beta, x.beta, (size_t)(g.T * g.H) * sizeof(double));
	for (int64_t t = 0; t < g.T; t++)
		for (int64_t h = 0; h < 4; h++) {
			memcpy(y.q + (t * 4 + h) * g.dk, x.q + (t * 2 + h / 2) * g.dk,
				(size_t)g.dk * sizeof(double));
			memcpy(y.k + (t * 4 + h) * g.dk, x.k + (t * 2 + h / 2) * g.dk,
				(size_t)g.dk * sizeof(double));
		}
	for (int a = 0; a < 2; a++) {
		lca_algo algo = a ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT;

		dn_run(&g, algo, &x, NULL, x.o, x.state);
		dn_run(&m, algo, &y, NULL, y.o, y.state);
		tu_assert_close(x.o, y.o, g.T * g.H * g.dv, 1e-15, "o");
		tu_assert_close(x.state, y.state, nstate(&g), 1e-15, "state");
	}
	io_free(&x);
	io_free(&y);
}
END_TEST

/* ---- chunked against recurrent ------------------------------------------- */

static const int64_t lengths[] = { 1, 63, 64, 65, 200 };

START_TEST(test_chunked_equals_recurrent)
{
	struct dn c = { lengths[_i], 4, 2, 7, 5, 0, 1, 0 };
	struct dn_io x;

	io_alloc(&c, &x);
	check_chunked_vs_recurrent(&c, &x, NULL);
	io_free(&x);
}
END_TEST

START_TEST(test_chunked_equals_recurrent_for_any_chunk_size)
{
	static const int64_t chunks[] = { 1, 2, 7, 16, 300 };
	struct dn c = { 77, 2, 1, 6, 4, 0, 1, 0 };
	struct dn_io x;

	io_alloc(&c, &x);
	for (int j = 0; j < 5; j++) {
		c.chunk = chunks[j];
		check_chunked_vs_recurrent(&c, &x, NULL);
	}
	io_free(&x);
}
END_TEST

START_TEST(test_extreme_gates_chunked_equals_recurrent)
{
	/* exp(g) underflows to 0 (a full reset), or nearly so, at scattered
	 * tokens and in runs: a chunked form that forms exp of cumulative
	 * sums, or differences of them, without care meets inf - inf. */
	static const double extreme[] = { -1e30, -800.0, -1e300, -60.0, -1e4 };
	struct dn c = { 150, 2, 2, 6, 4, 0, 1, 0 };
	struct dn_io x;

	io_alloc(&c, &x);
	for (int64_t j = 0; j < c.T * c.H; j++)
		if (tu_uniform(0, 1) < 0.15)
			x.g[j] = extreme[tu_randint(0, 4)];
	for (int64_t t = 100; t < 106; t++) /* a run inside one chunk */
		x.g[t * c.H] = -1e30;
	tu_fill_normal(x.state0, nstate(&c), 1.0);
	check_chunked_vs_recurrent(&c, &x, x.state0);
	check_against_reference(&c, &x, x.state0, 1e-12);
	io_free(&x);
}
END_TEST

START_TEST(test_most_negative_gates_chunked_equals_recurrent)
{
	/* g = -DBL_MAX is finite and <= 0, so it is a valid input; two of
	 * them in one chunk sum to -inf. */
	struct dn c = { 70, 1, 1, 4, 3, 0, 1, 16 };
	struct dn_io x;

	io_alloc(&c, &x);
	x.g[3] = -DBL_MAX;
	x.g[5] = -DBL_MAX;
	x.g[40] = -DBL_MAX;
	x.g[41] = -DBL_MAX;
	check_chunked_vs_recurrent(&c, &x, NULL);
	check_against_reference(&c, &x, NULL, 1e-12);
	io_free(&x);
}
END_TEST

START_TEST(test_state_is_optional)
{
	struct dn c = { 40, 2, 1, 5, 3, 0, 1, 16 };
	struct dn_io x;
	double *o = tu_alloc(c.T * c.H * c.dv);

	io_alloc(&c, &x);
	for (int a = 0; a < 2; a++) {
		lca_algo algo = a ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT;

		dn_run(&c, algo, &x, NULL, x.o, x.state);
		dn_run(&c, algo, &x, NULL, o, NULL);
		tu_assert_close(o, x.o, c.T * c.H * c.dv, 0.0, "o without state");
	}
	free(o);
	io_free(&x);
}
END_TEST

static Suite *deltanet_suite(void)
{
	Suite *s = suite_create("deltanet");
	TCase *tc = tu_tcase("recall");

	tcase_add_test(tc, test_orthonormal_keys_recall_values_exactly);
	tcase_add_test(tc, test_orthonormal_keys_recall_without_l2norm);
	suite_add_tcase(s, tc);

	tc = tu_tcase("definition");
	tcase_add_test(tc, test_zero_gate_equals_plain_delta_rule);
	tcase_add_test(tc, test_gated_rule_equals_test_recurrence);
	tcase_add_test(tc, test_beta_above_one);
	tcase_add_test(tc, test_nonzero_initial_state);
	tcase_add_test(tc, test_without_l2norm_uses_scale);
	tcase_add_test(tc, test_default_scale_is_inv_sqrt_dk);
	tcase_add_test(tc, test_grouped_heads_equal_repeated_qk_heads);
	tcase_add_test(tc, test_state_is_optional);
	suite_add_tcase(s, tc);

	tc = tu_tcase("chunked");
	tcase_add_loop_test(tc, test_chunked_equals_recurrent, 0,
		(int)(sizeof lengths / sizeof lengths[0]));
	tcase_add_test(tc, test_chunked_equals_recurrent_for_any_chunk_size);
	tcase_add_test(tc, test_extreme_gates_chunked_equals_recurrent);
	tcase_add_test(tc, test_most_negative_gates_chunked_equals_recurrent);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(deltanet_suite());
}
