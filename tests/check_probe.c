/*
 * check_probe.c - the probes against answers known in closed form
 * (lcattn-probes(7)): DeltaNet on orthonormal keys loses nothing, a key
 * written twice loses its first value, Lightning's crosstalk grows as
 * sqrt((T-1)/dk), an undecayed Lightning memory is blind to order while
 * softmax with RoPE never is; each probe against a direct evaluation of
 * its definition; the retrieval of chosen tokens against that of all,
 * on the reference and on the cpu backend.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static lca_probe_params probe_params(lca_variant v, int64_t dk, int64_t dv)
{
	lca_probe_params pp;

	tu_assert_ok(lca_probe_params_init(&pp, v));
	pp.dk = dk;
	pp.dv = dv;
	return pp;
}

/* Orthonormal keys [T][dk] (T <= dk) and random unit-variance values. */
static void orthonormal_tokens(int64_t T, int64_t dk, int64_t dv, double **k, double **v)
{
	*k = tu_alloc(dk * dk);
	*v = tu_alloc(T * dv);
	tu_fill_normal(*k, dk * dk, 1.0);
	tu_orthonormal_rows(*k, dk, dk);
	tu_fill_normal(*v, T * dv, 1.0);
}

static double max_abs(const double *x, int64_t n)
{
	double m = 0;

	for (int64_t i = 0; i < n; i++)
		m = fmax(m, fabs(x[i]));
	return m;
}

/* ---- deltanet ---- */

START_TEST(test_deltanet_orthonormal_keys_lose_nothing)
{
	const int64_t dk = 16, dv = 12, T = 16;
	lca_probe_params pp = probe_params(LCA_DELTANET, dk, dv);
	double *k, *v, ow[16], dec[16], now[16], end[16], err[16];

	orthonormal_tokens(T, dk, dv, &k, &v);
	lca_probe_seq s = { T, k, v, NULL, NULL, NULL };
	tu_assert_ok(lca_probe_overwrite(&pp, &s, ow, dec, now, end));
	tu_assert_ok(lca_probe_retrieval(&pp, &s, err));
	ck_assert_msg(max_abs(ow, T) < 1e-14, "overwrite %.3e", max_abs(ow, T));
	ck_assert_msg(max_abs(now, T) < 1e-14, "error after writing %.3e", max_abs(now, T));
	ck_assert_msg(max_abs(end, T) < 1e-14, "error at the end %.3e", max_abs(end, T));
	ck_assert_msg(max_abs(err, T) < 1e-14, "retrieval %.3e", max_abs(err, T));
	for (int64_t i = 0; i < T; i++)
		ck_assert(dec[i] == 1.0);
	free(k);
	free(v);
}
END_TEST

/* Tokens k0 k1 k2 k1 k3 (orthonormal k's), beta = 1: the second write of
 * k1 replaces the first value entirely and touches nothing else. */
START_TEST(test_deltanet_same_key_twice_overwrites_the_first_value)
{
	const int64_t dk = 8, dv = 6, T = 5, order[5] = { 0, 1, 2, 1, 3 };
	lca_probe_params pp = probe_params(LCA_DELTANET, dk, dv);
	double *basis, *v, *k = tu_alloc(T * dk), ow[5], now[5], end[5];

	orthonormal_tokens(dk, dk, dv, &basis, &v); /* v: dk >= T rows */
	for (int64_t t = 0; t < T; t++)
		memcpy(k + t * dk, basis + order[t] * dk, sizeof(double) * dk);
	lca_probe_seq s = { T, k, v, NULL, NULL, NULL };
	tu_assert_ok(lca_probe_overwrite(&pp, &s, ow, NULL, now, end));
	ck_assert_msg(fabs(ow[1] - 1) < 1e-14, "first write of k1: overwrite %.17g", ow[1]);
	for (int64_t t = 0; t < T; t++) {
		if (t != 1)
			ck_assert_msg(fabs(ow[t]) < 1e-14, "token %lld: overwrite %.3e", (long long)t, ow[t]);
		ck_assert_msg(now[t] < 1e-14, "token %lld: error after writing %.3e", (long long)t, now[t]);
	}
	/* At the end k1 reads the second value: the first is gone. */
	ck_assert_msg(end[3] < 1e-14, "second value of k1: error %.3e", end[3]);
	ck_assert_msg(end[1] > 0.1, "first value of k1 still retrievable (error %.3e)", end[1]);
	free(basis);
	free(v);
	free(k);
}
END_TEST

/* overwrite and decay against P_i k_i built factor by factor. */
START_TEST(test_deltanet_overwrite_matches_its_definition)
{
	const int64_t dk = 6, dv = 4, T = 30;
	lca_probe_params pp = probe_params(LCA_DELTANET, dk, dv);
	double *k = tu_alloc(T * dk), *v = tu_alloc(T * dv), beta[30], g[30], ow[30], dec[30];

	tu_assert_ok(lca_probe_draw(T, dk, dv, 0.2, 7, k, v));
	tu_fill_uniform(beta, T, 0.0, 2.0);
	tu_fill_uniform(g, T, -0.3, 0.0);
	lca_probe_seq s = { T, k, v, beta, g, NULL };
	tu_assert_ok(lca_probe_overwrite(&pp, &s, ow, dec, NULL, NULL));
	for (int64_t i = 0; i < T; i++) {
		double x[6], sum = 0;

		memcpy(x, k + i * dk, sizeof x);
		for (int64_t j = i + 1; j < T; j++) {
			double d = 0;

			for (int64_t c = 0; c < dk; c++)
				d += k[j * dk + c] * x[c];
			for (int64_t c = 0; c < dk; c++)
				x[c] -= beta[j] * d * k[j * dk + c];
			sum += g[j];
		}
		double want = 1 - sqrt(x[0] * x[0] + x[1] * x[1] + x[2] * x[2] + x[3] * x[3] +
			x[4] * x[4] + x[5] * x[5]);
		ck_assert_msg(fabs(ow[i] - want) < 1e-13, "token %lld: %.17g != %.17g", (long long)i,
			ow[i], want);
		ck_assert_msg(fabs(dec[i] - exp(sum)) < 1e-14 * exp(sum), "decay of token %lld",
			(long long)i);
	}
	free(k);
	free(v);
}
END_TEST

/* ---- lightning ---- */

START_TEST(test_lightning_crosstalk_grows_as_sqrt_of_load)
{
	const int64_t dk = 32, dv = 32, lens[] = { 17, 65, 257 };
	lca_probe_params pp = probe_params(LCA_LIGHTNING, dk, dv);

	for (int l = 0; l < 3; l++) {
		int64_t T = lens[l];
		double *k = tu_alloc(T * dk), *v = tu_alloc(T * dv), *r = tu_alloc(T), mean = 0;
		double want = sqrt((double)(T - 1) / (double)dk);

		for (uint64_t seed = 1; seed <= 8; seed++) {
			tu_assert_ok(lca_probe_draw(T, dk, dv, 0.0, seed, k, v));
			lca_probe_seq s = { T, k, v, NULL, NULL, NULL };
			tu_assert_ok(lca_probe_dilution(&pp, &s, r));
			for (int64_t i = 0; i < T; i++)
				mean += r[i] / (double)(8 * T);
		}
		ck_assert_msg(fabs(mean / want - 1) < 0.2, "T = %lld: crosstalk/signal %.4f, "
			"sqrt((T-1)/dk) = %.4f", (long long)T, mean, want);
		free(k);
		free(v);
		free(r);
	}
}
END_TEST

/* The ratio against the sums of its definition, with decay. */
START_TEST(test_lightning_dilution_matches_its_definition)
{
	const int64_t dk = 5, dv = 3, T = 25;
	lca_probe_params pp = probe_params(LCA_LIGHTNING, dk, dv);
	double *k = tu_alloc(T * dk), *v = tu_alloc(T * dv), r[25];

	pp.slope = 0.07;
	tu_fill_normal(k, T * dk, 1.0);
	tu_fill_normal(v, T * dv, 1.0);
	lca_probe_seq s = { T, k, v, NULL, NULL, NULL };
	tu_assert_ok(lca_probe_dilution(&pp, &s, r));
	for (int64_t i = 0; i < T; i++) {
		double cross[3] = { 0 }, sig = 0, c2 = 0, kk = 0;

		for (int64_t c = 0; c < dk; c++)
			kk += k[i * dk + c] * k[i * dk + c];
		for (int64_t j = 0; j < T; j++) {
			double kij = 0, w = pow(exp(-0.07), (double)(T - 1 - j));

			for (int64_t c = 0; c < dk; c++)
				kij += k[i * dk + c] * k[j * dk + c];
			for (int64_t c = 0; j != i && c < dv; c++)
				cross[c] += w * kij * v[j * dv + c];
		}
		for (int64_t c = 0; c < dv; c++) {
			double sc = pow(exp(-0.07), (double)(T - 1 - i)) * kk * v[i * dv + c];

			sig += sc * sc;
			c2 += cross[c] * cross[c];
		}
		double want = sqrt(c2 / sig);

		ck_assert_msg(fabs(r[i] - want) < 1e-12 * want, "token %lld: %.17g != %.17g",
			(long long)i, r[i], want);
	}
	free(k);
	free(v);
}
END_TEST

/* Small integers: every product and sum of the undecayed state is exact,
 * so a swap changes no bit of the read. */
START_TEST(test_lightning_undecayed_is_blind_to_order)
{
	const int64_t dk = 8, dv = 8, T = 40;
	lca_probe_params pp = probe_params(LCA_LIGHTNING, dk, dv);
	double *k = tu_alloc(T * dk), *v = tu_alloc(T * dv), q[8], sens[39];
	int64_t dist[39];

	for (int64_t i = 0; i < T * dk; i++)
		k[i] = (double)tu_randint(-4, 4), v[i] = (double)tu_randint(-4, 4);
	for (int64_t i = 0; i < dk; i++)
		q[i] = (double)tu_randint(-4, 4);
	q[0] = 5; /* a nonzero read */
	for (int64_t d = 1; d < T; d++)
		dist[d - 1] = d;
	lca_probe_seq s = { T, k, v, NULL, NULL, q };
	tu_assert_ok(lca_probe_position(&pp, &s, T - 1, dist, sens));
	for (int64_t j = 0; j < T - 1; j++)
		ck_assert_msg(sens[j] == 0.0, "d = %lld: sensitivity %.3e", (long long)dist[j], sens[j]);
	/* With decay the newest swaps matter most. */
	pp.slope = 0.1;
	tu_assert_ok(lca_probe_position(&pp, &s, T - 1, dist, sens));
	ck_assert(sens[0] > 0);
	free(k);
	free(v);
}
END_TEST

/* ---- softmax and mla ---- */

START_TEST(test_softmax_with_rope_sees_order_at_every_distance)
{
	const int64_t dk = 32, dv = 16, T = 200;
	lca_probe_params pp = probe_params(LCA_SOFTMAX, dk, dv);
	double *k = tu_alloc(T * dk), *v = tu_alloc(T * dv), sens[199];
	int64_t dist[199];

	tu_assert_ok(lca_probe_draw(T, dk, dv, 0.0, 3, k, v));
	for (int64_t d = 1; d < T; d++)
		dist[d - 1] = d;
	lca_probe_seq s = { T, k, v, NULL, NULL, NULL };
	pp.rope_dim = LCA_ROPE_FULL;
	tu_assert_ok(lca_probe_position(&pp, &s, T - 1, dist, sens));
	for (int64_t j = 0; j < T - 1; j++)
		ck_assert_msg(sens[j] > 1e-6, "d = %lld: sensitivity %.3e", (long long)dist[j], sens[j]);
	/* Without RoPE softmax is a weighted set: only rounding moves. */
	pp.rope_dim = 0;
	tu_assert_ok(lca_probe_position(&pp, &s, T - 1, dist, sens));
	ck_assert_msg(max_abs(sens, T - 1) < 1e-14, "no RoPE: %.3e", max_abs(sens, T - 1));
	free(k);
	free(v);
}
END_TEST

START_TEST(test_softmax_one_token_is_retrieved_exactly)
{
	lca_probe_params pp = probe_params(LCA_SOFTMAX, 4, 3);
	double k[4] = { 1, 0, 0, 0 }, v[3] = { 0.5, -2, 1 }, err;
	lca_probe_seq s = { 1, k, v, NULL, NULL, NULL };

	tu_assert_ok(lca_probe_retrieval(&pp, &s, &err));
	ck_assert_msg(err < 1e-15, "error %.3e", err);
}
END_TEST

/* A latent as wide as [K V] is no compression: mla reads what softmax
 * reads; a narrow one loses something once the tokens outnumber it. */
START_TEST(test_mla_full_latent_equals_softmax)
{
	const int64_t dk = 8, dv = 8, T = 64;
	lca_probe_params sm = probe_params(LCA_SOFTMAX, dk, dv), ml = probe_params(LCA_MLA, dk, dv);
	double *k = tu_alloc(T * dk), *v = tu_alloc(T * dv), es[64], em[64], mean_s = 0, mean_m = 0;

	tu_assert_ok(lca_probe_draw(T, dk, dv, 0.0, 11, k, v));
	lca_probe_seq s = { T, k, v, NULL, NULL, NULL };
	ml.dc = dk + dv;
	tu_assert_ok(lca_probe_retrieval(&sm, &s, es));
	tu_assert_ok(lca_probe_retrieval(&ml, &s, em));
	for (int64_t i = 0; i < T; i++)
		ck_assert_msg(fabs(es[i] - em[i]) < 1e-12, "token %lld: %.17g != %.17g",
			(long long)i, em[i], es[i]);
	ml.dc = 4;
	tu_assert_ok(lca_probe_retrieval(&ml, &s, em));
	for (int64_t i = 0; i < T; i++)
		mean_s += es[i], mean_m += em[i];
	ck_assert_msg(mean_m > mean_s, "rank-4 latent %.4f not worse than softmax %.4f",
		mean_m / T, mean_s / T);
	free(k);
	free(v);
}
END_TEST

/* ---- retrieval of chosen tokens ---- */

/* Each mechanism with every option the probe offers switched on, odd T
 * across deltanet's 64-token chunks and lightning's 256-token blocks,
 * per-token beta and g. */
#define OF_T 301
#define OF_D 16

struct of_case {
	double *k, *v, *beta, *g;
	lca_probe_seq s;
};

static lca_probe_params of_params(lca_variant var)
{
	lca_probe_params pp = probe_params(var, OF_D, OF_D);

	if (var == LCA_SOFTMAX)
		pp.rope_dim = OF_D;
	if (var == LCA_MLA)
		pp.dr = 4, pp.rope_dim = 4, pp.dc = 6;
	if (var == LCA_LIGHTNING)
		pp.slope = 0.01;
	return pp;
}

static struct of_case of_draw(void)
{
	struct of_case c;

	c.k = tu_alloc(OF_T * OF_D), c.v = tu_alloc(OF_T * OF_D);
	c.beta = tu_alloc(OF_T), c.g = tu_alloc(OF_T);
	tu_assert_ok(lca_probe_draw(OF_T, OF_D, OF_D, 0.2, 5, c.k, c.v));
	tu_fill_uniform(c.beta, OF_T, 0.1, 1.0);
	tu_fill_uniform(c.g, OF_T, -0.05, 0.0);
	c.s = (lca_probe_seq){ OF_T, c.k, c.v, c.beta, c.g, NULL };
	return c;
}

static void of_free(struct of_case *c)
{
	free(c->k), free(c->v), free(c->beta), free(c->g);
}

/* First, last, a repeat and the ends of a chunk and a block. */
static const int64_t of_idx[] = { 0, OF_T - 1, 150, 63, 64, 255, 256, 150, 299 };
#define OF_N ((int64_t)(sizeof of_idx / sizeof of_idx[0]))

START_TEST(test_retrieval_of_equals_retrieval_bit_for_bit)
{
	struct of_case c = of_draw();
	double all[OF_T], some[OF_N];

	for (int var = LCA_SOFTMAX; var <= LCA_LIGHTNING; var++) {
		lca_probe_params pp = of_params((lca_variant)var);

		tu_assert_ok(lca_probe_retrieval(&pp, &c.s, all));
		tu_assert_ok(lca_probe_retrieval_of(&pp, &c.s, OF_N, of_idx, some));
		for (int64_t j = 0; j < OF_N; j++)
			ck_assert_msg(!memcmp(&some[j], &all[of_idx[j]], sizeof some[j]),
				"variant %d token %lld: %.17g != %.17g", var, (long long)of_idx[j],
				some[j], all[of_idx[j]]);
	}
	of_free(&c);
}
END_TEST

/* The cpu backend in float64 is within 1e-12 of the reference (the
 * tolerance rule) in every output it reads; an error is the sine of the
 * angle between o and v, which moves by at most about the relative change
 * of o, so the errors agree to 1e-12 absolute, read one by one or all T
 * at once, and against the reference. */
START_TEST(test_retrieval_of_on_the_cpu_backend_matches)
{
	struct of_case c = of_draw();
	double ref[OF_T], all[OF_T], some[OF_N];

	for (int var = LCA_SOFTMAX; var <= LCA_LIGHTNING; var++) {
		lca_probe_params pp = of_params((lca_variant)var);

		tu_assert_ok(lca_probe_retrieval(&pp, &c.s, ref));
		pp.backend = LCA_BACKEND_CPU;
		tu_assert_ok(lca_probe_retrieval(&pp, &c.s, all));
		tu_assert_ok(lca_probe_retrieval_of(&pp, &c.s, OF_N, of_idx, some));
		double rmax = 0;

		for (int64_t j = 0; j < OF_N; j++) {
			double r = ref[of_idx[j]];

			ck_assert_msg(fabs(some[j] - all[of_idx[j]]) <= 1e-12 &&
				fabs(some[j] - r) <= 1e-12,
				"variant %d token %lld: cpu %.17g, cpu all %.17g, ref %.17g", var,
				(long long)of_idx[j], some[j], all[of_idx[j]], r);
			rmax = fmax(rmax, r);
		}
		/* Errors are not all near 0, so the 1e-12 agreement says something.
		 * (One token's can be: the delta rule retrieves its last tokens
		 * almost exactly, 1.9e-4 at token 300 in one draw.) */
		ck_assert_msg(rmax > 1e-3, "variant %d: every error below 1e-3 (%.3g)",
			var, rmax);
	}
	of_free(&c);
}
END_TEST

/* Past 65536 tokens the write runs in several forward calls (its outputs
 * are not kept): on the reference that is the same state, bit for bit, as
 * lca_probe_overwrite's single call that keeps them. */
START_TEST(test_retrieval_of_a_long_write_equals_one_call)
{
	const int64_t T = 65536 + 77, dk = 4, dv = 4, idx[] = { 0, 65535, 65536, T - 1, 40000 };
	lca_probe_params pp = probe_params(LCA_DELTANET, dk, dv);
	double *k = tu_alloc(T * dk), *v = tu_alloc(T * dv), *beta = tu_alloc(T);
	double *g = tu_alloc(T), *end = tu_alloc(T), err[5];

	tu_assert_ok(lca_probe_draw(T, dk, dv, 0.0, 9, k, v));
	tu_fill_uniform(beta, T, 0.0, 1.0);
	tu_fill_uniform(g, T, -1e-4, 0.0);
	lca_probe_seq s = { T, k, v, beta, g, NULL };
	tu_assert_ok(lca_probe_overwrite(&pp, &s, NULL, NULL, NULL, end));
	tu_assert_ok(lca_probe_retrieval_of(&pp, &s, 5, idx, err));
	for (int j = 0; j < 5; j++)
		ck_assert_msg(!memcmp(&err[j], &end[idx[j]], sizeof err[j]), "token %lld: %.17g != %.17g",
			(long long)idx[j], err[j], end[idx[j]]);
	free(k), free(v), free(beta), free(g), free(end);
}
END_TEST

START_TEST(test_retrieval_of_refuses_bad_indices)
{
	lca_probe_params pp = probe_params(LCA_DELTANET, 4, 4);
	double k[8] = { 1, 0, 0, 0, 0, 1, 0, 0 }, v[8] = { 1, 0, 0, 0, 0, 1, 0, 0 }, err[2];
	int64_t ok[2] = { 1, 0 }, neg[2] = { 0, -1 }, past[2] = { 1, 2 };
	lca_probe_seq s = { 2, k, v, NULL, NULL, NULL };

	ck_assert_int_eq(lca_probe_retrieval_of(&pp, &s, 2, NULL, err), LCA_ERR_NULL);
	ck_assert(tu_msg_names("idx"));
	ck_assert_int_eq(lca_probe_retrieval_of(&pp, &s, 2, ok, NULL), LCA_ERR_NULL);
	ck_assert(tu_msg_names("err"));
	ck_assert_int_eq(lca_probe_retrieval_of(&pp, &s, 0, ok, err), LCA_ERR_SIZE);
	ck_assert_int_eq(lca_probe_retrieval_of(&pp, &s, -1, ok, err), LCA_ERR_SIZE);
	ck_assert_int_eq(lca_probe_retrieval_of(&pp, &s, 2, neg, err), LCA_ERR_ARG);
	ck_assert(tu_msg_names("idx[1] = -1"));
	ck_assert_int_eq(lca_probe_retrieval_of(&pp, &s, 2, past, err), LCA_ERR_ARG);
	ck_assert(tu_msg_names("idx[1] = 2"));
	ck_assert_int_eq(lca_probe_retrieval_of(&pp, NULL, 2, ok, err), LCA_ERR_NULL);
	ck_assert_int_eq(lca_probe_retrieval_of(NULL, &s, 2, ok, err), LCA_ERR_NULL);
	pp.backend = LCA_BACKEND_CUDA;
	ck_assert_int_eq(lca_probe_retrieval_of(&pp, &s, 2, ok, err), LCA_ERR_UNSUPPORTED);
	ck_assert(tu_msg_names("backend"));
	pp.backend = (lca_backend)7;
	ck_assert_int_eq(lca_probe_retrieval(&pp, &s, err), LCA_ERR_UNSUPPORTED);
	/* Orthonormal keys, beta 1: both tokens come back exactly. */
	pp.backend = LCA_BACKEND_REF;
	tu_assert_ok(lca_probe_retrieval_of(&pp, &s, 2, ok, err));
	ck_assert_msg(err[0] < 1e-15 && err[1] < 1e-15, "%.3e %.3e", err[0], err[1]);
}
END_TEST

/* ---- the position probe's shared prefixes ---- */

/* deltanet: the carried-state sweep equals rewriting each swapped
 * sequence from scratch through lca_deltanet_forward. */
START_TEST(test_position_prefix_sharing_equals_rewriting)
{
	const int64_t dk = 6, dv = 5, T = 30, dist[] = { 29, 1, 7, 7, 15 };
	lca_probe_params pp = probe_params(LCA_DELTANET, dk, dv);
	double *k = tu_alloc(T * dk), *v = tu_alloc(T * dv), beta[30], g[30], sens[5];
	lca_params p = tu_params(LCA_DELTANET);
	lca_plan *plan;

	tu_assert_ok(lca_probe_draw(T, dk, dv, 0.3, 5, k, v));
	tu_fill_uniform(beta, T, 0.2, 1.0);
	tu_fill_uniform(g, T, -0.1, 0.0);
	lca_probe_seq s = { T, k, v, beta, g, NULL };
	tu_assert_ok(lca_probe_position(&pp, &s, 5, dist, sens));
	p.H = 1, p.dk = dk, p.dv = dv, p.qk_l2norm = 0, p.scale = 1;
	plan = tu_plan(&p);
	for (int j = 0; j < 5; j++) {
		double *kk = tu_copy(k, T * dk), *vv = tu_copy(v, T * dv), bb[30], gg[30];
		double *o = tu_alloc(T * dv), ref[5], sw[5], so[5], d2 = 0, r2 = 0;
		int64_t a = T - dist[j] - 1;
		double *St = tu_alloc(dk * dv);

		memcpy(bb, beta, sizeof bb);
		memcpy(gg, g, sizeof gg);
		/* the unswapped read S_T^T k_{T-1} */
		tu_assert_ok(lca_deltanet_forward(plan, T, kk, kk, vv, gg, bb, NULL, 0, NULL, o, St));
		for (int64_t c = 0; c < dv; c++) {
			ref[c] = 0;
			for (int64_t r = 0; r < dk; r++)
				ref[c] += St[r * dv + c] * k[(T - 1) * dk + r];
		}
		for (int64_t c = 0; c < dk; c++) {
			double t = kk[a * dk + c];

			kk[a * dk + c] = kk[(a + 1) * dk + c], kk[(a + 1) * dk + c] = t;
		}
		for (int64_t c = 0; c < dv; c++) {
			double t = vv[a * dv + c];

			vv[a * dv + c] = vv[(a + 1) * dv + c], vv[(a + 1) * dv + c] = t;
		}
		bb[a] = beta[a + 1], bb[a + 1] = beta[a], gg[a] = g[a + 1], gg[a + 1] = g[a];
		tu_assert_ok(lca_deltanet_forward(plan, T, kk, kk, vv, gg, bb, NULL, 0, NULL, o, St));
		for (int64_t c = 0; c < dv; c++) {
			sw[c] = 0;
			for (int64_t r = 0; r < dk; r++)
				sw[c] += St[r * dv + c] * k[(T - 1) * dk + r];
			so[c] = sw[c] - ref[c];
			d2 += so[c] * so[c], r2 += ref[c] * ref[c];
		}
		ck_assert_msg(fabs(sens[j] - sqrt(d2 / r2)) < 1e-12 * sqrt(d2 / r2),
			"d = %lld: %.17g != %.17g", (long long)dist[j], sens[j], sqrt(d2 / r2));
		free(kk), free(vv), free(o), free(St);
	}
	lca_plan_destroy(plan);
	free(k);
	free(v);
}
END_TEST

/* ---- draws and arguments ---- */

START_TEST(test_draw_unit_keys_with_mean_cosine_rho)
{
	const int64_t T = 300, dk = 64, dv = 16;
	double *k = tu_alloc(T * dk), *v = tu_alloc(T * dv), *v2 = tu_alloc(T * dv);

	for (int r = 0; r < 3; r++) {
		double rho = 0.3 * r, sum = 0;

		tu_assert_ok(lca_probe_draw(T, dk, dv, rho, 42, k, v));
		for (int64_t i = 0; i < T; i++) {
			double n2 = 0, w2 = 0;

			for (int64_t c = 0; c < dk; c++)
				n2 += k[i * dk + c] * k[i * dk + c];
			for (int64_t c = 0; c < dv; c++)
				w2 += v[i * dv + c] * v[i * dv + c];
			ck_assert(fabs(n2 - 1) < 1e-14 && fabs(w2 - 1) < 1e-14);
			for (int64_t j = 0; j < i; j++)
				for (int64_t c = 0; c < dk; c++)
					sum += k[i * dk + c] * k[j * dk + c];
		}
		sum /= (double)(T * (T - 1) / 2);
		ck_assert_msg(fabs(sum - rho) < 0.03, "rho %.1f: mean cosine %.4f", rho, sum);
		/* The values do not depend on whether the keys were wanted. */
		tu_assert_ok(lca_probe_draw(T, dk, dv, rho, 42, NULL, v2));
		ck_assert(memcmp(v, v2, sizeof(double) * T * dv) == 0);
	}
	free(k);
	free(v);
	free(v2);
}
END_TEST

START_TEST(test_arguments_are_checked)
{
	lca_probe_params pp = probe_params(LCA_SOFTMAX, 4, 4);
	double k[8] = { 1, 0, 0, 0, 0, 1, 0, 0 }, v[8] = { 0 }, out[2], g[2] = { 0, 0.5 };
	int64_t d = 2;
	lca_probe_seq s = { 2, k, v, NULL, NULL, NULL };

	ck_assert_int_eq(lca_probe_retrieval(NULL, &s, out), LCA_ERR_NULL);
	ck_assert_int_eq(lca_probe_retrieval(&pp, NULL, out), LCA_ERR_NULL);
	ck_assert_int_eq(lca_probe_overwrite(&pp, &s, out, NULL, NULL, NULL), LCA_ERR_ARG);
	ck_assert_int_eq(lca_probe_dilution(&pp, &s, out), LCA_ERR_ARG);
	ck_assert_int_eq(lca_probe_position(&pp, &s, 1, &d, out), LCA_ERR_ARG);
	ck_assert(tu_msg_names("dist"));
	ck_assert_int_eq(lca_probe_draw(2, 4, 4, 1.0, 1, k, v), LCA_ERR_ARG);
	pp.variant = LCA_DELTANET;
	s.g = g;
	ck_assert_int_eq(lca_probe_overwrite(&pp, &s, out, NULL, NULL, NULL), LCA_ERR_ARG);
	s.g = NULL;
	k[3] = NAN;
	ck_assert_int_eq(lca_probe_retrieval(&pp, &s, out), LCA_ERR_NONFINITE);
	k[3] = 0;
	pp.variant = LCA_MLA;
	pp.dr = 4;
	ck_assert_int_eq(lca_probe_retrieval(&pp, &s, out), LCA_ERR_SIZE);
	pp.variant = LCA_LIGHTNING;
	pp.dr = 0;
	pp.rope_dim = 2;
	ck_assert_int_eq(lca_probe_retrieval(&pp, &s, out), LCA_ERR_ARG);
}
END_TEST

static Suite *probe_suite(void)
{
	Suite *s = suite_create("probe");
	TCase *tc = tu_tcase("deltanet");

	tcase_add_test(tc, test_deltanet_orthonormal_keys_lose_nothing);
	tcase_add_test(tc, test_deltanet_same_key_twice_overwrites_the_first_value);
	tcase_add_test(tc, test_deltanet_overwrite_matches_its_definition);
	suite_add_tcase(s, tc);

	tc = tu_tcase("lightning");
	tcase_add_test(tc, test_lightning_crosstalk_grows_as_sqrt_of_load);
	tcase_add_test(tc, test_lightning_dilution_matches_its_definition);
	tcase_add_test(tc, test_lightning_undecayed_is_blind_to_order);
	suite_add_tcase(s, tc);

	tc = tu_tcase("attention");
	tcase_add_test(tc, test_softmax_with_rope_sees_order_at_every_distance);
	tcase_add_test(tc, test_softmax_one_token_is_retrieved_exactly);
	tcase_add_test(tc, test_mla_full_latent_equals_softmax);
	suite_add_tcase(s, tc);

	tc = tu_tcase("retrieval_of");
	tcase_add_test(tc, test_retrieval_of_equals_retrieval_bit_for_bit);
	tcase_add_test(tc, test_retrieval_of_on_the_cpu_backend_matches);
	tcase_add_test(tc, test_retrieval_of_a_long_write_equals_one_call);
	tcase_add_test(tc, test_retrieval_of_refuses_bad_indices);
	suite_add_tcase(s, tc);

	tc = tu_tcase("shared");
	tcase_add_test(tc, test_position_prefix_sharing_equals_rewriting);
	tcase_add_test(tc, test_draw_unit_keys_with_mean_cosine_rho);
	tcase_add_test(tc, test_arguments_are_checked);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(probe_suite());
}
