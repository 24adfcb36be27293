/*
 * check_softmax.c - softmax attention against hand-computed cases and a
 * test-side reference written from the definition (explicit mask matrix,
 * RoPE from testutil), plus the structural identities: GQA as repeated kv
 * heads, decode as the last row of prefill, RoPE as a relative rotation.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One softmax configuration: the shapes and options of a call. */
struct sm {
	int64_t Tq, Tk, H, Hkv, dk, dv;
	double scale;              /* 0 = default 1/sqrt(dk) */
	int causal;
	int64_t window;
	int64_t rope_dim;
	lca_rope_style style;
	double theta;              /* 0 = default 10000 */
};

/* Random inputs of a configuration. */
struct sm_io {
	double *q, *k, *v, *o, *lse;
};

static void io_alloc(const struct sm *c, struct sm_io *x, double sd)
{
	x->q = tu_alloc(c->Tq * c->H * c->dk);
	x->k = tu_alloc(c->Tk * c->Hkv * c->dk);
	x->v = tu_alloc(c->Tk * c->Hkv * c->dv);
	x->o = tu_alloc(c->Tq * c->H * c->dv);
	x->lse = tu_alloc(c->Tq * c->H);
	tu_fill_normal(x->q, c->Tq * c->H * c->dk, sd);
	tu_fill_normal(x->k, c->Tk * c->Hkv * c->dk, sd);
	tu_fill_normal(x->v, c->Tk * c->Hkv * c->dv, 1.0);
}

static void io_free(struct sm_io *x)
{
	free(x->q);
	free(x->k);
	free(x->v);
	free(x->o);
	free(x->lse);
}

static lca_params sm_params(const struct sm *c)
{
	lca_params p = tu_params(LCA_SOFTMAX);

	p.H = c->H;
	p.Hkv = c->Hkv;
	p.dk = c->dk;
	p.dv = c->dv;
	p.scale = c->scale;
	p.causal = c->causal;
	p.window = c->window;
	p.rope_dim = c->rope_dim;
	p.rope_style = c->style;
	if (c->theta > 0)
		p.rope_theta = c->theta;
	return p;
}

/* Run the library on x (o and lse are overwritten). */
static void sm_run(const struct sm *c, const double *q, const double *k,
	const double *v, double *o, double *lse)
{
	lca_params p = sm_params(c);
	lca_plan *plan = tu_plan(&p);

	tu_assert_ok(lca_softmax_forward(plan, c->Tq, c->Tk, q, k, v, NULL, 0, o, lse));
	lca_plan_destroy(plan);
}

/* The mask from the definition: query i sits at Tk - Tq + i, key s at s. */
static int sm_keep(const struct sm *c, int64_t i, int64_t s)
{
	int64_t pq = c->Tk - c->Tq + i;

	if (c->causal && s > pq)
		return 0;
	if (c->window > 0 && pq - s >= c->window)
		return 0;
	return 1;
}

/* Test-side reference in double: rotate, score the kept keys, softmax with
 * the maximum subtracted, mix the values. */
static void sm_reference(const struct sm *c, const double *q, const double *k,
	const double *v, double *o, double *lse)
{
	const int64_t group = c->H / c->Hkv;
	double scale = c->scale > 0 ? c->scale : 1.0 / sqrt((double)c->dk);
	double theta = c->theta > 0 ? c->theta : 10000.0;
	double *qr = tu_alloc(c->dk), *kr = tu_alloc(c->Tk * c->dk), *l = tu_alloc(c->Tk);

	for (int64_t h = 0; h < c->H; h++) {
		int64_t g = h / group;

		for (int64_t s = 0; s < c->Tk; s++) {
			memcpy(kr + s * c->dk, k + (s * c->Hkv + g) * c->dk,
				(size_t)c->dk * sizeof(double));
			tu_rope(kr + s * c->dk, c->rope_dim, c->style, theta, s);
		}
		for (int64_t i = 0; i < c->Tq; i++) {
			double *oi = o + (i * c->H + h) * c->dv, m = -INFINITY, sum = 0;

			memcpy(qr, q + (i * c->H + h) * c->dk, (size_t)c->dk * sizeof(double));
			tu_rope(qr, c->rope_dim, c->style, theta, c->Tk - c->Tq + i);
			for (int64_t s = 0; s < c->Tk; s++) {
				double d = 0;

				for (int64_t j = 0; j < c->dk; j++)
					d += qr[j] * kr[s * c->dk + j];
				l[s] = scale * d;
				if (sm_keep(c, i, s) && l[s] > m)
					m = l[s];
			}
			for (int64_t j = 0; j < c->dv; j++)
				oi[j] = 0;
			for (int64_t s = 0; s < c->Tk; s++) {
				double w;

				if (!sm_keep(c, i, s))
					continue;
				w = exp(l[s] - m);
				sum += w;
				for (int64_t j = 0; j < c->dv; j++)
					oi[j] += w * v[(s * c->Hkv + g) * c->dv + j];
			}
			for (int64_t j = 0; sum > 0 && j < c->dv; j++)
				oi[j] /= sum;
			lse[i * c->H + h] = sum > 0 ? m + log(sum) : -INFINITY;
		}
	}
	free(qr);
	free(kr);
	free(l);
}

/* Library against the test-side reference on fresh inputs. */
static void check_against_reference(const struct sm *c, double sd, double tol)
{
	struct sm_io x;
	double *o = tu_alloc(c->Tq * c->H * c->dv), *lse = tu_alloc(c->Tq * c->H);

	io_alloc(c, &x, sd);
	sm_run(c, x.q, x.k, x.v, x.o, x.lse);
	sm_reference(c, x.q, x.k, x.v, o, lse);
	tu_assert_close(x.o, o, c->Tq * c->H * c->dv, tol, "o");
	for (int64_t t = 0; t < c->Tq * c->H; t++) {
		if (isinf(lse[t])) {
			ck_assert_msg(isinf(x.lse[t]) && x.lse[t] < 0,
				"lse[%lld] = %g, expected -inf", (long long)t, x.lse[t]);
			continue;
		}
		ck_assert_msg(fabs(x.lse[t] - lse[t]) <= tol * fmax(1.0, fabs(lse[t])),
			"lse[%lld] = %.17g, expected %.17g", (long long)t, x.lse[t], lse[t]);
	}
	io_free(&x);
	free(o);
	free(lse);
}

/* ---- hand-computed cases ------------------------------------------------- */

START_TEST(test_one_query_two_keys_exact_weights)
{
	/* scale 1, dk 1: logits q k_s = 0 and ln 3, so the weights are 1/4
	 * and 3/4 and lse = ln(1 + 3) = ln 4. */
	struct sm c = { 1, 2, 1, 1, 1, 3, 1.0, 1, 0, 0, LCA_ROPE_HALF, 0 };
	double q = tu_uniform(0.5, 2.0), k[2] = { 0.0, log(3.0) / q };
	double v[6], o[3], want[3], lse;

	tu_fill_normal(v, 6, 1.0);
	sm_run(&c, &q, k, v, o, &lse);
	for (int j = 0; j < 3; j++)
		want[j] = 0.25 * v[j] + 0.75 * v[3 + j];
	tu_assert_close(o, want, 3, 1e-15, "o");
	ck_assert_msg(fabs(lse - log(4.0)) <= 1e-15, "lse = %.17g, expected ln 4", lse);
}
END_TEST

START_TEST(test_single_key_returns_its_value_and_logit)
{
	struct sm c = { 1, 1, 3, 1, 5, 4, 0, 1, 0, 0, LCA_ROPE_HALF, 0 };
	struct sm_io x;

	io_alloc(&c, &x, 1.0);
	sm_run(&c, x.q, x.k, x.v, x.o, x.lse);
	for (int64_t h = 0; h < c.H; h++) {
		double d = 0;

		for (int64_t j = 0; j < c.dk; j++)
			d += x.q[h * c.dk + j] * x.k[j];
		d /= sqrt(5.0);
		tu_assert_close(x.o + h * c.dv, x.v, c.dv, 1e-15, "o = v");
		ck_assert_msg(fabs(x.lse[h] - d) <= 1e-15 * fmax(1, fabs(d)),
			"lse = %.17g, expected the logit %.17g", x.lse[h], d);
	}
	io_free(&x);
}
END_TEST

START_TEST(test_queries_before_first_key_are_fully_masked)
{
	/* Tq > Tk, causal: queries 0 .. Tq-Tk-1 sit at negative positions. */
	struct sm c = { 7, 3, 2, 1, 4, 3, 0, 1, 0, 0, LCA_ROPE_HALF, 0 };
	struct sm_io x;

	io_alloc(&c, &x, 1.0);
	sm_run(&c, x.q, x.k, x.v, x.o, x.lse);
	for (int64_t i = 0; i < c.Tq - c.Tk; i++)
		for (int64_t h = 0; h < c.H; h++) {
			double l = x.lse[i * c.H + h];

			ck_assert_msg(isinf(l) && l < 0, "lse[%lld][%lld] = %g", (long long)i,
				(long long)h, l);
			for (int64_t j = 0; j < c.dv; j++)
				ck_assert(x.o[(i * c.H + h) * c.dv + j] == 0.0);
		}
	for (int64_t t = (c.Tq - c.Tk) * c.H; t < c.Tq * c.H; t++)
		ck_assert(isfinite(x.lse[t]));
	io_free(&x);
	check_against_reference(&c, 1.0, 1e-13);
}
END_TEST

START_TEST(test_large_logits_give_the_argmax_value)
{
	/* Logits of +-1000 (dk 1, scale 1): the winner leads by >= 100, so
	 * every other weight is below e^-100 and o is its value to rounding. */
	struct sm c = { 1, 6, 1, 1, 1, 3, 1.0, 0, 0, 0, LCA_ROPE_HALF, 0 };
	double q = tu_uniform(0.5, 2.0), k[6], v[18], o[3], lse;
	int64_t am = tu_randint(0, 5);

	for (int s = 0; s < 6; s++) {
		double logit = s == am ? 1000.0 : (s % 2 ? -1000.0 : tu_uniform(-1000, 900));

		k[s] = logit / q;
	}
	tu_fill_normal(v, 18, 1.0);
	sm_run(&c, &q, k, v, o, &lse);
	ck_assert(tu_all_finite(o, 3) && isfinite(lse));
	tu_assert_close(o, v + 3 * am, 3, 1e-15, "o = v[argmax]");
	ck_assert_msg(fabs(lse - q * k[am]) <= 1e-12, "lse = %.17g", lse);
}
END_TEST

START_TEST(test_large_negative_logits_do_not_underflow)
{
	/* All logits near -1000: exp() without the maximum subtracted would
	 * give 0/0. The weights are a plain softmax of the differences. */
	struct sm c = { 1, 4, 1, 1, 1, 2, 1.0, 0, 0, 0, LCA_ROPE_HALF, 0 };
	double q = tu_uniform(0.5, 2.0), k[4], l[4], v[8], o[2], want[2] = { 0, 0 };
	double lse, m = -INFINITY, sum = 0;

	for (int s = 0; s < 4; s++) {
		l[s] = -1000.0 + tu_uniform(-2, 2);
		k[s] = l[s] / q;
		l[s] = q * k[s]; /* the logit as the library forms it */
		m = fmax(m, l[s]);
	}
	tu_fill_normal(v, 8, 1.0);
	sm_run(&c, &q, k, v, o, &lse);
	for (int s = 0; s < 4; s++) {
		double w = exp(l[s] - m);

		sum += w;
		want[0] += w * v[2 * s];
		want[1] += w * v[2 * s + 1];
	}
	want[0] /= sum;
	want[1] /= sum;
	tu_assert_close(o, want, 2, 1e-14, "o");
	ck_assert_msg(fabs(lse - (m + log(sum))) <= 1e-12, "lse = %.17g, expected %.17g",
		lse, m + log(sum));
}
END_TEST

START_TEST(test_random_huge_logits_stay_finite)
{
	/* q, k of size ~30: logits of several hundred to thousands. */
	struct sm c = { 9, 13, 2, 2, 8, 5, 0, 1, 0, 0, LCA_ROPE_HALF, 0 };

	check_against_reference(&c, 30.0, 1e-11);
}
END_TEST

/* ---- masks against the explicit mask matrix ------------------------------ */

START_TEST(test_causal_bottom_right_equals_explicit_mask)
{
	struct sm c = { 5, 11, 3, 3, 6, 4, 0, 1, 0, 0, LCA_ROPE_HALF, 0 };

	check_against_reference(&c, 1.0, 1e-13);
}
END_TEST

START_TEST(test_non_causal_attends_to_every_key)
{
	struct sm c = { 8, 5, 2, 1, 3, 7, 0.7, 0, 0, 0, LCA_ROPE_HALF, 0 };

	check_against_reference(&c, 1.0, 1e-13);
}
END_TEST

START_TEST(test_window_equals_explicit_mask)
{
	struct sm c = { 9, 14, 2, 1, 5, 3, 0, 1, 4, 0, LCA_ROPE_HALF, 0 };

	check_against_reference(&c, 1.0, 1e-13);
	c.window = 1; /* each query sees only itself */
	check_against_reference(&c, 1.0, 1e-13);
	c.window = 100; /* wider than the sequence: plain causal */
	check_against_reference(&c, 1.0, 1e-13);
}
END_TEST

START_TEST(test_window_with_queries_before_first_key)
{
	struct sm c = { 8, 5, 2, 2, 4, 3, 0, 1, 2, 0, LCA_ROPE_HALF, 0 };

	check_against_reference(&c, 1.0, 1e-13);
}
END_TEST

/* ---- heads and alignment ------------------------------------------------- */

START_TEST(test_gqa_equals_mha_with_repeated_kv_heads)
{
	struct sm g = { 6, 9, 4, 2, 6, 5, 0, 1, 0, 6, LCA_ROPE_HALF, 0 };
	struct sm m = g;
	struct sm_io x;
	double *k4, *v4, *o4 = tu_alloc(g.Tq * g.H * g.dv), *lse4 = tu_alloc(g.Tq * g.H);

	m.Hkv = 4;
	io_alloc(&g, &x, 1.0);
	k4 = tu_alloc(g.Tk * 4 * g.dk);
	v4 = tu_alloc(g.Tk * 4 * g.dv);
	for (int64_t s = 0; s < g.Tk; s++)
		for (int64_t h = 0; h < 4; h++) {
			memcpy(k4 + (s * 4 + h) * g.dk, x.k + (s * 2 + h / 2) * g.dk,
				(size_t)g.dk * sizeof(double));
			memcpy(v4 + (s * 4 + h) * g.dv, x.v + (s * 2 + h / 2) * g.dv,
				(size_t)g.dv * sizeof(double));
		}
	sm_run(&g, x.q, x.k, x.v, x.o, x.lse);
	sm_run(&m, x.q, k4, v4, o4, lse4);
	tu_assert_close(x.o, o4, g.Tq * g.H * g.dv, 1e-15, "o");
	tu_assert_close(x.lse, lse4, g.Tq * g.H, 1e-15, "lse");
	free(k4);
	free(v4);
	free(o4);
	free(lse4);
	io_free(&x);
}
END_TEST

/* Tq = tail queries of a Tk = Tk prefill give its last Tq rows. */
static void check_tail_rows(int64_t tail)
{
	struct sm full = { 12, 12, 2, 1, 6, 4, 0, 1, 5, 4, LCA_ROPE_INTERLEAVED, 0 };
	struct sm part = full;
	struct sm_io x;
	double *o = tu_alloc(tail * full.H * full.dv), *lse = tu_alloc(tail * full.H);
	int64_t skip = full.Tq - tail;

	part.Tq = tail;
	io_alloc(&full, &x, 1.0);
	sm_run(&full, x.q, x.k, x.v, x.o, x.lse);
	sm_run(&part, x.q + skip * full.H * full.dk, x.k, x.v, o, lse);
	tu_assert_close(o, x.o + skip * full.H * full.dv, tail * full.H * full.dv, 1e-15, "o");
	tu_assert_close(lse, x.lse + skip * full.H, tail * full.H, 1e-15, "lse");
	free(o);
	free(lse);
	io_free(&x);
}

START_TEST(test_decode_equals_last_row_of_prefill)
{
	check_tail_rows(1);
}
END_TEST

START_TEST(test_chunked_prefill_equals_tail_rows)
{
	check_tail_rows(5);
}
END_TEST

START_TEST(test_default_scale_is_inv_sqrt_dk)
{
	struct sm c = { 4, 6, 2, 2, 7, 3, 0, 1, 0, 0, LCA_ROPE_HALF, 0 };
	struct sm e = c;
	struct sm_io x;
	double *o = tu_alloc(c.Tq * c.H * c.dv), *lse = tu_alloc(c.Tq * c.H);

	e.scale = 1.0 / sqrt(7.0);
	io_alloc(&c, &x, 1.0);
	sm_run(&c, x.q, x.k, x.v, x.o, x.lse);
	sm_run(&e, x.q, x.k, x.v, o, lse);
	tu_assert_close(x.o, o, c.Tq * c.H * c.dv, 0.0, "o");
	tu_assert_close(x.lse, lse, c.Tq * c.H, 0.0, "lse");
	free(o);
	free(lse);
	io_free(&x);
}
END_TEST

/* ---- RoPE ---------------------------------------------------------------- */

START_TEST(test_rope_matches_rotation_formula)
{
	struct sm c = { 6, 10, 2, 1, 8, 3, 0, 1, 0, 8, LCA_ROPE_HALF, 0 };

	check_against_reference(&c, 1.0, 1e-12);
	c.style = LCA_ROPE_INTERLEAVED;
	check_against_reference(&c, 1.0, 1e-12);
}
END_TEST

START_TEST(test_rope_logits_depend_only_on_relative_position)
{
	/* The same three keys and query, once at positions 0..2 and once
	 * shifted by m behind a random prefix: a window of 3 keeps exactly
	 * those keys, and their relative positions are unchanged. The angles
	 * pos * freq round with |pos|, hence 1e-11 rather than 1e-13. */
	struct sm a = { 1, 3, 2, 1, 8, 4, 0, 1, 3, 8, LCA_ROPE_HALF, 0 };
	struct sm b = a, plain = a;
	int64_t m = tu_randint(50, 3000);
	struct sm_io x;
	double *kb, *vb, ob[8], lseb[2], o0[8], lse0[2];

	b.Tk = a.Tk + m;
	io_alloc(&a, &x, 1.0);
	kb = tu_alloc(b.Tk * b.dk);
	vb = tu_alloc(b.Tk * b.dv);
	tu_fill_normal(kb, m * b.dk, 1.0); /* the prefix: masked by the window */
	tu_fill_normal(vb, m * b.dv, 1.0);
	memcpy(kb + m * b.dk, x.k, (size_t)(a.Tk * a.dk) * sizeof(double));
	memcpy(vb + m * b.dv, x.v, (size_t)(a.Tk * a.dv) * sizeof(double));
	sm_run(&a, x.q, x.k, x.v, x.o, x.lse);
	sm_run(&b, x.q, kb, vb, ob, lseb);
	tu_assert_close(ob, x.o, a.H * a.dv, 1e-11, "o shifted");
	tu_assert_close(lseb, x.lse, a.H, 1e-11, "lse shifted");
	/* and the rotation does matter */
	plain.rope_dim = 0;
	sm_run(&plain, x.q, x.k, x.v, o0, lse0);
	ck_assert_msg(tu_relerr(lse0, x.lse, a.H) > 1e-6, "rope changed nothing");
	free(kb);
	free(vb);
	io_free(&x);
}
END_TEST

/* Interleaved pair (2i, 2i+1) is half pair (i, i + r/2): permute. */
static void interleaved_to_half(const double *x, double *y, int64_t rows,
	int64_t d, int64_t r)
{
	for (int64_t t = 0; t < rows; t++) {
		const double *a = x + t * d;
		double *b = y + t * d;

		memcpy(b, a, (size_t)d * sizeof(double));
		for (int64_t i = 0; i < r / 2; i++) {
			b[i] = a[2 * i];
			b[i + r / 2] = a[2 * i + 1];
		}
	}
}

START_TEST(test_rope_half_and_interleaved_differ_by_a_permutation)
{
	struct sm in = { 7, 9, 2, 2, 10, 3, 0, 1, 0, 6, LCA_ROPE_INTERLEAVED, 0 };
	struct sm half = in;
	struct sm_io x;
	double *qh = tu_alloc(in.Tq * in.H * in.dk), *kh = tu_alloc(in.Tk * in.Hkv * in.dk);
	double *o = tu_alloc(in.Tq * in.H * in.dv), *lse = tu_alloc(in.Tq * in.H);

	half.style = LCA_ROPE_HALF;
	io_alloc(&in, &x, 1.0);
	interleaved_to_half(x.q, qh, in.Tq * in.H, in.dk, in.rope_dim);
	interleaved_to_half(x.k, kh, in.Tk * in.Hkv, in.dk, in.rope_dim);
	sm_run(&in, x.q, x.k, x.v, x.o, x.lse);
	sm_run(&half, qh, kh, x.v, o, lse);
	tu_assert_close(o, x.o, in.Tq * in.H * in.dv, 1e-14, "o permuted");
	tu_assert_close(lse, x.lse, in.Tq * in.H, 1e-14, "lse permuted");
	/* without the permutation the styles disagree */
	sm_run(&half, x.q, x.k, x.v, o, lse);
	ck_assert_msg(tu_relerr(lse, x.lse, in.Tq * in.H) > 1e-6, "styles agree unpermuted");
	free(qh);
	free(kh);
	free(o);
	free(lse);
	io_free(&x);
}
END_TEST

START_TEST(test_partial_rope_leaves_other_coordinates_untouched)
{
	/* rope_dim 4 of dk 10 with theta 500 equals no RoPE on inputs whose
	 * first 4 coordinates the test rotated itself. */
	struct sm c = { 5, 8, 3, 1, 10, 4, 0, 1, 0, 4, LCA_ROPE_HALF, 500.0 };
	struct sm none = c;
	struct sm_io x;
	double *qr = tu_alloc(c.Tq * c.H * c.dk), *kr = tu_alloc(c.Tk * c.dk);
	double *o = tu_alloc(c.Tq * c.H * c.dv), *lse = tu_alloc(c.Tq * c.H);

	none.rope_dim = 0;
	io_alloc(&c, &x, 1.0);
	memcpy(qr, x.q, (size_t)(c.Tq * c.H * c.dk) * sizeof(double));
	memcpy(kr, x.k, (size_t)(c.Tk * c.dk) * sizeof(double));
	for (int64_t i = 0; i < c.Tq; i++)
		for (int64_t h = 0; h < c.H; h++)
			tu_rope(qr + (i * c.H + h) * c.dk, 4, c.style, 500.0, c.Tk - c.Tq + i);
	for (int64_t s = 0; s < c.Tk; s++)
		tu_rope(kr + s * c.dk, 4, c.style, 500.0, s);
	sm_run(&c, x.q, x.k, x.v, x.o, x.lse);
	sm_run(&none, qr, kr, x.v, o, lse);
	tu_assert_close(x.o, o, c.Tq * c.H * c.dv, 1e-13, "o");
	tu_assert_close(x.lse, lse, c.Tq * c.H, 1e-13, "lse");
	free(qr);
	free(kr);
	free(o);
	free(lse);
	io_free(&x);
}
END_TEST

static Suite *softmax_suite(void)
{
	Suite *s = suite_create("softmax");
	TCase *tc = tu_tcase("exact");

	tcase_add_test(tc, test_one_query_two_keys_exact_weights);
	tcase_add_test(tc, test_single_key_returns_its_value_and_logit);
	tcase_add_test(tc, test_queries_before_first_key_are_fully_masked);
	tcase_add_test(tc, test_large_logits_give_the_argmax_value);
	tcase_add_test(tc, test_large_negative_logits_do_not_underflow);
	tcase_add_test(tc, test_random_huge_logits_stay_finite);
	suite_add_tcase(s, tc);

	tc = tu_tcase("masks");
	tcase_add_test(tc, test_causal_bottom_right_equals_explicit_mask);
	tcase_add_test(tc, test_non_causal_attends_to_every_key);
	tcase_add_test(tc, test_window_equals_explicit_mask);
	tcase_add_test(tc, test_window_with_queries_before_first_key);
	suite_add_tcase(s, tc);

	tc = tu_tcase("structure");
	tcase_add_test(tc, test_gqa_equals_mha_with_repeated_kv_heads);
	tcase_add_test(tc, test_decode_equals_last_row_of_prefill);
	tcase_add_test(tc, test_chunked_prefill_equals_tail_rows);
	tcase_add_test(tc, test_default_scale_is_inv_sqrt_dk);
	suite_add_tcase(s, tc);

	tc = tu_tcase("rope");
	tcase_add_test(tc, test_rope_matches_rotation_formula);
	tcase_add_test(tc, test_rope_logits_depend_only_on_relative_position);
	tcase_add_test(tc, test_rope_half_and_interleaved_differ_by_a_permutation);
	tcase_add_test(tc, test_partial_rope_leaves_other_coordinates_untouched);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(softmax_suite());
}
