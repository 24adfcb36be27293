/*
 * check_gradflow.c - the gradient-flow probe (tools/gradflow.c,
 * lcattn-probes(7)) against closed forms derived by hand, one per
 * mechanism. With u the unit cotangent of head h's o_{T-1} and d = T-1-t:
 *
 *   lightning (scale 1, lambda = exp(-s_h)): o = sum_t lambda^d <q, k_t> v_t,
 *     so d<u,o>/dv_t = lambda^d <q, k_t> u and d<u,o>/dk_t = lambda^d <u, v_t> q:
 *     ||.||_v = exp(-s_h d) |<q, k_t>|, ||.||_k = exp(-s_h d) |<u, v_t>| ||q||.
 *   softmax (p_t = softmax of scale <R_{T-1} q, R_t k_t>, o = sum p_t v_t):
 *     d<u,o>/dv_t = p_t u, d<u,o>/dk_t = p_t scale <u, v_t - o> R_t^T R_{T-1} q:
 *     ||.||_v = p_t and ||.||_k = p_t scale |<u, v_t - o>| ||q|| <= 2 scale p_t:
 *     the gradient is bounded by the attention weight.
 *   deltanet (S_j = A_j S_{j-1} + beta_j k_j v_j^T, A_j = e^{g_j}(I - beta_j k_j k_j^T),
 *     q and k L2-normalised, q scaled): d<u,o>/dv_t = beta_t <w_t, k_t> u with
 *     w_t = A_{t+1}^T ... A_{T-1}^T q, so ||.||_v = beta_t |<w_t, k_t>|.
 *   mla (head h: k_t = [w_uk ckv_t ; R_t k_rope_t], v_t = w_uv ckv_t, q = [q_nope ;
 *     R_{T-1} q_rope], p_t and o as softmax's): the chain rule through the
 *     decompression gives d<u,o>/dckv_t = p_t (w_uv^T u + scale <u, v_t - o> w_uk^T q_nope)
 *     and ||d<u,o>/dk_rope_t|| = p_t scale |<u, v_t - o>| ||q_rope||. With the
 *     identity decompression (ckv_t the concatenation of every head's k_nope
 *     and v, w_uk[h] and w_uv[h] picking head h's) mla is softmax, and its
 *     two norms are softmax's gradient split into the latent's coordinates
 *     and the rotary key's.
 *
 * The seed is the test seed; the probe's own draws come from it.
 */
#include "testutil.h"
#include "gradflow.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { T = 300, H = 4, DK = 16, DV = 16 };

static const struct gradflow_curve *curve(const char *name)
{
	for (int c = 0; c < gradflow_ncurves; c++)
		if (!strcmp(gradflow_curves[c].name, name))
			return &gradflow_curves[c];
	ck_abort_msg("no curve %s", name);
	return NULL;
}

static double dot(const double *a, const double *b, int64_t n)
{
	double s = 0;

	for (int64_t i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

/* Relative agreement of the probe's norm with the closed form's;
 * the reference multiplies lambda d times where the closed form takes
 * exp(-s d), so allow d roundings. */
static void close_to(double got, double want, const char *what, int64_t t)
{
	ck_assert_msg(isfinite(got) && fabs(got - want) <= 1e-10 * want + 1e-300,
		"%s at t = %lld: probe %.17g, closed form %.17g", what, (long long)t, got, want);
}

/* ||x|| of n numbers */
static double len(const double *x, int64_t n)
{
	return sqrt(dot(x, x, n));
}

/* sum |a_i b_i|: the size of the terms of a . b */
static double abs_dot(const double *a, const double *b, int64_t n)
{
	double s = 0;

	for (int64_t i = 0; i < n; i++)
		s += fabs(a[i] * b[i]);
	return s;
}

/* The same for want = b |k . w|: a dot product's rounding is relative to
 * the size of its terms, b sum |k_i w_i|, not to its result, which
 * cancels where w turns nearly orthogonal to k (seed 1796680649 gave a
 * relative 1.2e-10 at t = 157 against a bound of 1e-10 of the result). */
static void close_to_dot(double got, double want, double terms, const char *what,
	int64_t t)
{
	ck_assert_msg(isfinite(got) && fabs(got - want) <= 1e-10 * terms + 1e-300,
		"%s at t = %lld: probe %.17g, closed form %.17g (terms %.3g)", what,
		(long long)t, got, want, terms);
}

static void draw_and_pass(struct gradflow_draw *d, const struct gradflow_curve *c,
	double *nv, double *nk)
{
	tu_assert_ok(gradflow_alloc(d, T, H, DK, DV));
	tu_assert_ok(gradflow_fill(d, c, tu_next()));
	tu_assert_ok(gradflow_pass(d, c, nv, nk));
}

static void check_lightning(const char *name)
{
	const struct gradflow_curve *c = curve(name);
	struct gradflow_draw d;
	double *nv = tu_alloc(T * H), *nk = tu_alloc(T * H);

	draw_and_pass(&d, c, nv, nk);
	/* MiniMax's slopes of layer l of 8, H a power of two (DESIGN.md) */
	for (int64_t h = 0; h < H; h++)
		ck_assert_double_eq_tol(d.slope[h], pow(2, -8.0 * (double)(h + 1) / H) *
			(1 - c->layer / 7.0 + 1e-5), 1e-15);
	for (int64_t t = 0; t < T; t++)
		for (int64_t h = 0; h < H; h++) {
			const double *q = d.q + ((T - 1) * H + h) * DK;
			double lam = exp(-d.slope[h] * (double)(T - 1 - t));
			double qk = dot(q, d.k + (t * H + h) * DK, DK);
			double uv = dot(d.u + h * DV, d.v + (t * H + h) * DV, DV);

			close_to_dot(nv[t * H + h], lam * fabs(qk),
				lam * abs_dot(q, d.k + (t * H + h) * DK, DK), "||d<u,o>/dv_t||", t);
			close_to_dot(nk[t * H + h], lam * fabs(uv) * sqrt(dot(q, q, DK)),
				lam * abs_dot(d.u + h * DV, d.v + (t * H + h) * DV, DV) *
				sqrt(dot(q, q, DK)), "||d<u,o>/dk_t||", t);
		}
	gradflow_free(&d);
	free(nv), free(nk);
}

START_TEST(test_lightning_layer0_decays_as_exp_minus_slope_times_distance)
{
	check_lightning("lightning-l0");
}
END_TEST

START_TEST(test_lightning_layer7_decays_as_exp_minus_slope_times_distance)
{
	check_lightning("lightning-l7");
}
END_TEST

/* Head h's attention weights p [T] of the last query and its output o [DV]. */
static void softmax_head(const struct gradflow_draw *d, int64_t h, int rope, double *q,
	double *p, double *o)
{
	const double scale = 1 / sqrt((double)DK);
	double mx = -INFINITY, z = 0, kr[DK];

	memcpy(q, d->q + ((T - 1) * H + h) * DK, DK * sizeof *q);
	if (rope)
		tu_rope(q, DK, LCA_ROPE_HALF, 10000.0, T - 1);
	for (int64_t t = 0; t < T; t++) {
		memcpy(kr, d->k + (t * H + h) * DK, sizeof kr);
		if (rope)
			tu_rope(kr, DK, LCA_ROPE_HALF, 10000.0, t);
		p[t] = scale * dot(q, kr, DK);
		mx = fmax(mx, p[t]);
	}
	for (int64_t t = 0; t < T; t++)
		z += p[t] = exp(p[t] - mx);
	memset(o, 0, DV * sizeof *o);
	for (int64_t t = 0; t < T; t++) {
		p[t] /= z;
		for (int j = 0; j < DV; j++)
			o[j] += p[t] * d->v[(t * H + h) * DV + j];
	}
}

static void check_softmax(const char *name, int rope)
{
	const struct gradflow_curve *c = curve(name);
	const double scale = 1 / sqrt((double)DK);
	struct gradflow_draw d;
	double *nv = tu_alloc(T * H), *nk = tu_alloc(T * H), *p = tu_alloc(T);
	double q[DK], o[DV];

	draw_and_pass(&d, c, nv, nk);
	for (int64_t h = 0; h < H; h++) {
		softmax_head(&d, h, rope, q, p, o);
		for (int64_t t = 0; t < T; t++) {
			const double *u = d.u + h * DV, *v = d.v + (t * H + h) * DV;
			double gk = p[t] * scale * fabs(dot(u, v, DV) - dot(u, o, DV)) *
				sqrt(dot(q, q, DK));

			close_to(nv[t * H + h], p[t], "||d<u,o>/dv_t||", t);
			close_to_dot(nk[t * H + h], gk, p[t] * scale * (abs_dot(u, v, DV) +
				abs_dot(u, o, DV)) * sqrt(dot(q, q, DK)), "||d<u,o>/dk_t||", t);
			/* the bound: ||q|| = ||v_t|| = 1 and ||o|| <= 1 */
			ck_assert(nk[t * H + h] <= 2 * scale * nv[t * H + h] * (1 + 1e-12));
		}
	}
	gradflow_free(&d);
	free(nv), free(nk), free(p);
}

START_TEST(test_softmax_gradient_is_the_attention_weight)
{
	check_softmax("softmax", 0);
}
END_TEST

START_TEST(test_softmax_rope_gradient_is_the_attention_weight)
{
	check_softmax("softmax-rope", 1);
}
END_TEST

static void l2norm(double *x, int64_t n)
{
	double r = sqrt(dot(x, x, n) + 1e-6);

	for (int64_t i = 0; i < n; i++)
		x[i] /= r;
}

static void check_deltanet(const char *name)
{
	const struct gradflow_curve *c = curve(name);
	struct gradflow_draw d;
	double *nv = tu_alloc(T * H), *nk = tu_alloc(T * H);
	double w[DK], k[DK];

	draw_and_pass(&d, c, nv, nk);
	for (int64_t h = 0; h < H; h++) {
		memcpy(w, d.q + ((T - 1) * H + h) * DK, sizeof w);
		l2norm(w, DK);
		for (int i = 0; i < DK; i++)
			w[i] /= sqrt((double)DK);
		for (int64_t t = T - 1; t >= 0; t--) {
			double b = d.beta[t * H + h], kw, want;

			memcpy(k, d.k + (t * H + h) * DK, sizeof k);
			l2norm(k, DK);
			kw = dot(k, w, DK);
			want = b * fabs(kw);
			/* near the bottom of the double range the reference's
			 * products of gates and ours round differently */
			if (want < 1e-290)
				ck_assert(nv[t * H + h] < 1e-280);
			else
				close_to_dot(nv[t * H + h], want, b * abs_dot(k, w, DK),
					"||d<u,o>/dv_t||", t);
			ck_assert(isfinite(nk[t * H + h]));
			/* w <- A_t^T w, to reach the earlier tokens */
			for (int i = 0; i < DK; i++)
				w[i] = exp(d.g[t * H + h]) * (w[i] - b * k[i] * kw);
		}
	}
	gradflow_free(&d);
	free(nv), free(nk);
}

START_TEST(test_deltanet_strong_value_gradient_is_the_carried_query)
{
	check_deltanet("deltanet-strong");
}
END_TEST

START_TEST(test_deltanet_weak_value_gradient_is_the_carried_query)
{
	check_deltanet("deltanet-weak");
}
END_TEST

static void close_rel(double got, double want, double tol, const char *what, int64_t t,
	int64_t h)
{
	ck_assert_msg(isfinite(got) && fabs(got - want) <= tol,
		"%s at t = %lld, head %lld: probe %.17g, want %.17g", what, (long long)t,
		(long long)h, got, want);
}

/* The mla curves with their random decompression and RoPE against the
 * chain rule written out, head by head. */
static void check_mla(const char *name)
{
	const struct gradflow_curve *c = curve(name);
	const double scale = 1 / sqrt((double)DK);
	struct gradflow_draw d;
	double *nv = tu_alloc(T * H), *nk = tu_alloc(T * H), *p = tu_alloc(T), *lg = tu_alloc(T);
	int64_t dr, dc, dn;

	tu_assert_ok(gradflow_mla_shape(c, DK, &dr, &dc));
	ck_assert_int_eq(dr, DK / 4);
	ck_assert_int_eq(dc, DK / c->dc_div);
	dn = DK - dr;
	tu_assert_ok(gradflow_alloc(&d, T, H, DK, DV));
	tu_assert_ok(gradflow_alloc_mla(&d, dr, dc));
	tu_assert_ok(gradflow_fill(&d, c, tu_next()));
	tu_assert_ok(gradflow_pass(&d, c, nv, nk));
	for (int64_t h = 0; h < H; h++) {
		const double *wk = d.w_uk + h * dn * dc, *wv = d.w_uv + h * DV * dc, *u = d.u + h * DV;
		double q[DK], kt[DK], o[DV] = { 0 }, wvu[64], wkq[64], g[64], mx = -INFINITY, z = 0;
		double *v = tu_alloc(T * DV);

		memcpy(q, d.q + ((T - 1) * H + h) * DK, sizeof q);
		tu_rope(q + dn, dr, LCA_ROPE_INTERLEAVED, 10000.0, T - 1);
		for (int64_t t = 0; t < T; t++) {
			for (int64_t i = 0; i < dn; i++)
				kt[i] = dot(wk + i * dc, d.ckv + t * dc, dc);
			memcpy(kt + dn, d.k_rope + t * dr, (size_t)dr * sizeof *kt);
			tu_rope(kt + dn, dr, LCA_ROPE_INTERLEAVED, 10000.0, t);
			for (int64_t j = 0; j < DV; j++)
				v[t * DV + j] = dot(wv + j * dc, d.ckv + t * dc, dc);
			lg[t] = scale * dot(q, kt, DK);
			mx = fmax(mx, lg[t]);
		}
		for (int64_t t = 0; t < T; t++)
			z += p[t] = exp(lg[t] - mx);
		for (int64_t t = 0; t < T; t++) {
			p[t] /= z;
			for (int64_t j = 0; j < DV; j++)
				o[j] += p[t] * v[t * DV + j];
		}
		/* w_uv^T u and w_uk^T q_nope */
		for (int64_t a = 0; a < dc; a++) {
			wvu[a] = wkq[a] = 0;
			for (int64_t j = 0; j < DV; j++)
				wvu[a] += wv[j * dc + a] * u[j];
			for (int64_t i = 0; i < dn; i++)
				wkq[a] += wk[i * dc + a] * q[i];
		}
		for (int64_t t = 0; t < T; t++) {
			double e = scale * (dot(u, v + t * DV, DV) - dot(u, o, DV));

			for (int64_t a = 0; a < dc; a++)
				g[a] = p[t] * (wvu[a] + e * wkq[a]);
			close_rel(nv[t * H + h], len(g, dc), 1e-10 * len(g, dc),
				"||d<u,o>/dckv_t||", t, h);
			close_rel(nk[t * H + h], p[t] * fabs(e) * len(q + dn, dr),
				1e-10 * p[t] * scale, "||d<u,o>/dk_rope_t||", t, h);
		}
		free(v);
	}
	gradflow_free(&d);
	free(nv), free(nk), free(p), free(lg);
}

START_TEST(test_mla_gradient_is_softmax_s_through_the_decompression)
{
	check_mla("mla");
}
END_TEST

START_TEST(test_mla_compressed_gradient_is_softmax_s_through_the_decompression)
{
	check_mla("mla-compressed");
}
END_TEST

/* mla without RoPE whose latent holds every head's non-rotary key and
 * value side by side, w_uk[h] and w_uv[h] reading head h's: the softmax
 * curve, drawn from the same seed with the rotary key coordinates shared
 * by the heads, as mla's are. The probe's two mla norms are then softmax's
 * gradient of (v_t, k_t) split after the first dn key coordinates. */
START_TEST(test_mla_with_identity_decompression_is_the_softmax_curve)
{
	const struct gradflow_curve mla_plain = { "mla-identity", LCA_MLA, 0, GF_GATE_NONE, 0,
		"mla, no RoPE", 1 };
	const int64_t dr = DK / 4, dn = DK - dr, dc = H * (dn + DV);
	struct gradflow_draw s, m;
	double *nv = tu_alloc(T * H), *nk = tu_alloc(T * H);
	uint64_t seed = tu_next();

	tu_assert_ok(gradflow_alloc(&s, T, H, DK, DV));
	tu_assert_ok(gradflow_fill(&s, curve("softmax"), seed));
	for (int64_t t = 0; t < T; t++)
		for (int64_t h = 1; h < H; h++)
			memcpy(s.k + (t * H + h) * DK + dn, s.k + t * H * DK + dn,
				(size_t)dr * sizeof(double));
	tu_assert_ok(gradflow_pass(&s, curve("softmax"), nv, nk));

	tu_assert_ok(gradflow_alloc(&m, T, H, DK, DV));
	tu_assert_ok(gradflow_alloc_mla(&m, dr, dc));
	tu_assert_ok(gradflow_fill(&m, &mla_plain, seed));
	ck_assert_mem_eq(m.q, s.q, (size_t)(T * H * DK) * sizeof(double));
	ck_assert_mem_eq(m.u, s.u, (size_t)(H * DV) * sizeof(double));
	memset(m.w_uk, 0, (size_t)(H * dn * dc) * sizeof(double));
	memset(m.w_uv, 0, (size_t)(H * DV * dc) * sizeof(double));
	for (int64_t h = 0; h < H; h++) {
		for (int64_t i = 0; i < dn; i++)
			m.w_uk[(h * dn + i) * dc + h * (dn + DV) + i] = 1;
		for (int64_t j = 0; j < DV; j++)
			m.w_uv[(h * DV + j) * dc + h * (dn + DV) + dn + j] = 1;
	}
	for (int64_t t = 0; t < T; t++) {
		for (int64_t h = 0; h < H; h++) {
			memcpy(m.ckv + t * dc + h * (dn + DV), s.k + (t * H + h) * DK,
				(size_t)dn * sizeof(double));
			memcpy(m.ckv + t * dc + h * (dn + DV) + dn, s.v + (t * H + h) * DV,
				DV * sizeof(double));
		}
		memcpy(m.k_rope + t * dr, s.k + t * H * DK + dn, (size_t)dr * sizeof(double));
	}
	tu_assert_ok(gradflow_pass(&m, &mla_plain, nv, nk));
	for (int64_t t = 0; t < T; t++)
		for (int64_t h = 0; h < H; h++) {
			const double *gk = s.dkey + (t * H + h) * DK, *gv = s.dval + (t * H + h) * DV;
			double lat = sqrt(dot(gv, gv, DV) + dot(gk, gk, dn));

			close_rel(nv[t * H + h], lat, 1e-10 * lat, "||d<u,o>/dckv_t||", t, h);
			close_rel(nk[t * H + h], len(gk + dn, dr), 1e-10 * lat,
				"||d<u,o>/dk_rope_t||", t, h);
		}
	gradflow_free(&s), gradflow_free(&m);
	free(nv), free(nk);
}
END_TEST

/* gradflow_run is the root mean square of the passes over draws and
 * heads, read at distance d = T - 1 - t. */
START_TEST(test_run_is_the_rms_over_draws_and_heads_at_each_distance)
{
	const struct gradflow_curve *c = curve("lightning-l0");
	const int64_t dist[] = { 0, 1, 7, 100, T - 1 };
	const int nd = (int)(sizeof dist / sizeof dist[0]);
	uint64_t seed = tu_next();
	double gv[5], gk[5], sv[5] = { 0 }, sk[5] = { 0 };
	double *nv = tu_alloc(T * H), *nk = tu_alloc(T * H);
	struct gradflow_draw d;

	tu_assert_ok(gradflow_run(c, T, H, DK, DV, 3, seed, nd, dist, gv, gk));
	tu_assert_ok(gradflow_alloc(&d, T, H, DK, DV));
	for (uint64_t s = 0; s < 3; s++) {
		tu_assert_ok(gradflow_fill(&d, c, seed + s));
		tu_assert_ok(gradflow_pass(&d, c, nv, nk));
		for (int j = 0; j < nd; j++)
			for (int64_t h = 0; h < H; h++) {
				double x = nv[(T - 1 - dist[j]) * H + h], y = nk[(T - 1 - dist[j]) * H + h];

				sv[j] += x * x, sk[j] += y * y;
			}
	}
	for (int j = 0; j < nd; j++) {
		ck_assert_double_eq_tol(gv[j], sqrt(sv[j] / (3 * H)), 1e-14 * gv[j]);
		ck_assert_double_eq_tol(gk[j], sqrt(sk[j] / (3 * H)), 1e-14 * gk[j]);
	}
	gradflow_free(&d);
	free(nv), free(nk);
}
END_TEST

/* Strong gates take the gradient below 1e-150 within a few hundred
 * tokens, where its square underflows: the mean of squares is scaled. */
START_TEST(test_run_keeps_gradients_whose_squares_underflow)
{
	const struct gradflow_curve *c = curve("deltanet-strong");
	const int64_t dist[] = { 300, 350, 399 };
	double gv[3], gk[3];

	tu_assert_ok(gradflow_run(c, 400, H, DK, DV, 2, tu_next(), 3, dist, gv, gk));
	for (int j = 0; j < 3; j++)
		ck_assert_msg(gv[j] > 0 && gk[j] > 0 && gv[j] < 1e-120,
			"d = %lld: grad_v %g, grad_k %g", (long long)dist[j], gv[j], gk[j]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("gradflow");
	TCase *tc = tu_tcase("gradflow");

	tu_init();
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_lightning_layer0_decays_as_exp_minus_slope_times_distance);
	tcase_add_test(tc, test_lightning_layer7_decays_as_exp_minus_slope_times_distance);
	tcase_add_test(tc, test_softmax_gradient_is_the_attention_weight);
	tcase_add_test(tc, test_softmax_rope_gradient_is_the_attention_weight);
	tcase_add_test(tc, test_deltanet_strong_value_gradient_is_the_carried_query);
	tcase_add_test(tc, test_deltanet_weak_value_gradient_is_the_carried_query);
	tcase_add_test(tc, test_mla_gradient_is_softmax_s_through_the_decompression);
	tcase_add_test(tc, test_mla_compressed_gradient_is_softmax_s_through_the_decompression);
	tcase_add_test(tc, test_mla_with_identity_decompression_is_the_softmax_curve);
	tcase_add_test(tc, test_run_is_the_rms_over_draws_and_heads_at_each_distance);
	tcase_add_test(tc, test_run_keeps_gradients_whose_squares_underflow);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
