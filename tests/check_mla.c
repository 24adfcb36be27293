/*
 * check_mla.c - multi-head latent attention: the naive (decompress K, V)
 * and absorbed (fold w_uk into q, w_uv after the latent sum) computations
 * agree on awkward shapes; both equal softmax attention run on the per-head
 * K and V decompressed by the test, and a test-side reference in double.
 *
 * MLA rotates the trailing dr part of q and k while softmax rotates the
 * leading rope_dim coordinates; a dot product does not care about the order
 * of coordinates, so the test feeds softmax [rope part ; nope part].
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mla {
	int64_t Tq, Tk, H, dn, dr, dc, dv;
	double scale;
	int causal;
	int64_t window;
	int64_t rope_dim;          /* LCA_ROPE_FULL = dr */
	lca_rope_style style;
	double theta;              /* 0 = 10000 */
};

struct mla_io {
	double *q_nope, *q_rope, *ckv, *k_rope, *w_uk, *w_uv, *o, *lse;
};

static int64_t rope_dim_of(const struct mla *c)
{
	return c->rope_dim == LCA_ROPE_FULL ? c->dr : c->rope_dim;
}

static double theta_of(const struct mla *c)
{
	return c->theta > 0 ? c->theta : 10000.0;
}

static void io_alloc(const struct mla *c, struct mla_io *x)
{
	x->q_nope = tu_alloc(c->Tq * c->H * c->dn);
	x->q_rope = tu_alloc(c->Tq * c->H * c->dr);
	x->ckv = tu_alloc(c->Tk * c->dc);
	x->k_rope = tu_alloc(c->Tk * c->dr);
	x->w_uk = tu_alloc(c->H * c->dn * c->dc);
	x->w_uv = tu_alloc(c->H * c->dv * c->dc);
	x->o = tu_alloc(c->Tq * c->H * c->dv);
	x->lse = tu_alloc(c->Tq * c->H);
	tu_fill_normal(x->q_nope, c->Tq * c->H * c->dn, 1.0);
	tu_fill_normal(x->q_rope, c->Tq * c->H * c->dr, 1.0);
	tu_fill_normal(x->ckv, c->Tk * c->dc, 1.0);
	tu_fill_normal(x->k_rope, c->Tk * c->dr, 1.0);
	/* weights ~ 1/sqrt(dc): decompressed keys of size ~1 */
	tu_fill_normal(x->w_uk, c->H * c->dn * c->dc, 1.0 / sqrt((double)c->dc));
	tu_fill_normal(x->w_uv, c->H * c->dv * c->dc, 1.0 / sqrt((double)c->dc));
}

static void io_free(struct mla_io *x)
{
	free(x->q_nope);
	free(x->q_rope);
	free(x->ckv);
	free(x->k_rope);
	free(x->w_uk);
	free(x->w_uv);
	free(x->o);
	free(x->lse);
}

/* Plan parameters of c on a backend and dtype. */
static lca_params params_on(const struct mla *c, lca_backend b, lca_dtype t, lca_algo algo)
{
	lca_params p = tu_params(LCA_MLA);

	p.backend = b;
	p.dtype = t;
	p.algo = algo;
	p.H = c->H;
	p.dn = c->dn;
	p.dr = c->dr;
	p.dc = c->dc;
	p.dv = c->dv;
	p.scale = c->scale;
	p.causal = c->causal;
	p.window = c->window;
	p.rope_dim = c->rope_dim;
	p.rope_style = c->style;
	p.rope_theta = theta_of(c);
	return p;
}

/* n doubles as elements of dtype t (a new buffer), and back. */
static void *typed(const double *x, int64_t n, lca_dtype t)
{
	void *y = malloc((size_t)(n > 0 ? n : 1) * (t == LCA_F64 ? 8 : 4));

	ck_assert_ptr_nonnull(y);
	for (int64_t i = 0; i < n; i++) {
		if (t == LCA_F64)
			((double *)y)[i] = x[i];
		else
			((float *)y)[i] = (float)x[i];
	}
	return y;
}

static void untyped(double *x, const void *y, int64_t n, lca_dtype t)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = t == LCA_F64 ? ((const double *)y)[i] : ((const float *)y)[i];
}

/* The inputs of x in dtype t, queries from row q0 and tokens from row 0;
 * o and lse of tq rows. Index order: q_nope q_rope ckv k_rope w_uk w_uv
 * o lse. */
static void typed_io(const struct mla *c, const struct mla_io *x, lca_dtype t,
	int64_t q0, int64_t tq, void *y[8])
{
	y[0] = typed(x->q_nope + q0 * c->H * c->dn, tq * c->H * c->dn, t);
	y[1] = typed(x->q_rope + q0 * c->H * c->dr, tq * c->H * c->dr, t);
	y[2] = typed(x->ckv, c->Tk * c->dc, t);
	y[3] = typed(x->k_rope, c->Tk * c->dr, t);
	y[4] = typed(x->w_uk, c->H * c->dn * c->dc, t);
	y[5] = typed(x->w_uv, c->H * c->dv * c->dc, t);
	y[6] = typed(x->o, tq * c->H * c->dv, t);
	y[7] = typed(x->lse, tq * c->H, t);
}

/* Run the library on backend b in dtype t with the given algo; cu may be
 * NULL. Outputs come back as doubles. */
static void mla_run_on(const struct mla *c, lca_backend b, lca_dtype t, lca_algo algo,
	const struct mla_io *x, const int64_t *cu, int64_t nseq, double *o, double *lse)
{
	lca_params p = params_on(c, b, t, algo);
	lca_plan *plan = tu_plan(&p);
	void *y[8];

	typed_io(c, x, t, 0, c->Tq, y);
	tu_assert_ok(lca_mla_forward(plan, c->Tq, c->Tk, y[0], y[1], y[2], y[3], y[4], y[5],
		cu, nseq, y[6], y[7]));
	untyped(o, y[6], c->Tq * c->H * c->dv, t);
	untyped(lse, y[7], c->Tq * c->H, t);
	for (int i = 0; i < 8; i++)
		free(y[i]);
	lca_plan_destroy(plan);
}

/* Run the library (ref backend, f64) with the given algo; cu may be NULL. */
static void mla_run(const struct mla *c, lca_algo algo, const struct mla_io *x,
	const int64_t *cu, int64_t nseq, double *o, double *lse)
{
	mla_run_on(c, LCA_BACKEND_REF, LCA_F64, algo, x, cu, nseq, o, lse);
}

/* y[r] = sum_c w[r][c] x[c] for a [rows][dc] matrix. */
static void matvec(const double *w, const double *x, int64_t rows, int64_t dc, double *y)
{
	for (int64_t r = 0; r < rows; r++) {
		double acc = 0;

		for (int64_t j = 0; j < dc; j++)
			acc += w[r * dc + j] * x[j];
		y[r] = acc;
	}
}

/* k_nope of head h at key s: w_uk[h] ckv[s]. */
static void key_nope(const struct mla *c, const struct mla_io *x, int64_t h, int64_t s,
	double *out)
{
	matvec(x->w_uk + h * c->dn * c->dc, x->ckv + s * c->dc, c->dn, c->dc, out);
}

/* v of head h at key s: w_uv[h] ckv[s]. */
static void value(const struct mla *c, const struct mla_io *x, int64_t h, int64_t s,
	double *out)
{
	matvec(x->w_uv + h * c->dv * c->dc, x->ckv + s * c->dc, c->dv, c->dc, out);
}

static void copy(double *dst, const double *src, int64_t n)
{
	memcpy(dst, src, (size_t)n * sizeof(double));
}

/* Per-head decompressed inputs in softmax layout, rope part first:
 * q' [Tq][H][dr+dn], k' [Tk][H][dr+dn], v' [Tk][H][dv]. */
struct decomp {
	double *q, *k, *v;
};

static void decompress(const struct mla *c, const struct mla_io *x, struct decomp *d)
{
	const int64_t H = c->H, dq = c->dr + c->dn;

	d->q = tu_alloc(c->Tq * H * dq);
	d->k = tu_alloc(c->Tk * H * dq);
	d->v = tu_alloc(c->Tk * H * c->dv);
	for (int64_t i = 0; i < c->Tq; i++)
		for (int64_t h = 0; h < H; h++) {
			double *dst = d->q + (i * H + h) * dq;

			copy(dst, x->q_rope + (i * H + h) * c->dr, c->dr);
			copy(dst + c->dr, x->q_nope + (i * H + h) * c->dn, c->dn);
		}
	for (int64_t s = 0; s < c->Tk; s++)
		for (int64_t h = 0; h < H; h++) {
			double *dst = d->k + (s * H + h) * dq;

			copy(dst, x->k_rope + s * c->dr, c->dr);
			key_nope(c, x, h, s, dst + c->dr);
			value(c, x, h, s, d->v + (s * H + h) * c->dv);
		}
}

static void decomp_free(struct decomp *d)
{
	free(d->q);
	free(d->k);
	free(d->v);
}

/* Softmax attention on the decompressed tensors. */
static void softmax_on(const struct mla *c, const struct decomp *d, double *o, double *lse)
{
	lca_params p = tu_params(LCA_SOFTMAX);
	lca_plan *plan;

	p.H = c->H;
	p.Hkv = c->H;
	p.dk = c->dr + c->dn;
	p.dv = c->dv;
	p.scale = c->scale;
	p.causal = c->causal;
	p.window = c->window;
	p.rope_dim = rope_dim_of(c);
	p.rope_style = c->style;
	p.rope_theta = theta_of(c);
	plan = tu_plan(&p);
	tu_assert_ok(lca_softmax_forward(plan, c->Tq, c->Tk, d->q, d->k, d->v, NULL, 0, o, lse));
	lca_plan_destroy(plan);
}

/* lse arrays agree, -inf included. */
static void assert_lse_close(const double *x, const double *ref, int64_t n, double tol)
{
	for (int64_t t = 0; t < n; t++) {
		if (isinf(ref[t]) && ref[t] < 0) {
			ck_assert_msg(isinf(x[t]) && x[t] < 0, "lse[%lld] = %g, expected -inf",
				(long long)t, x[t]);
			continue;
		}
		ck_assert_msg(fabs(x[t] - ref[t]) <= tol * fmax(1.0, fabs(ref[t])),
			"lse[%lld] = %.17g, expected %.17g", (long long)t, x[t], ref[t]);
	}
}

/* naive and absorbed agree (cu may be NULL: one sequence). */
static void check_naive_vs_absorbed(const struct mla *c, const int64_t *cu, int64_t nseq)
{
	struct mla_io x;
	int64_t no = c->Tq * c->H * c->dv, nl = c->Tq * c->H;
	double *o = tu_alloc(no), *lse = tu_alloc(nl);

	io_alloc(c, &x);
	mla_run(c, LCA_ALGO_NAIVE, &x, cu, nseq, x.o, x.lse);
	mla_run(c, LCA_ALGO_ABSORBED, &x, cu, nseq, o, lse);
	ck_assert(tu_all_finite(x.o, no));
	tu_assert_close(o, x.o, no, 1e-12, "o absorbed vs naive");
	assert_lse_close(lse, x.lse, nl, 1e-12);
	free(o);
	free(lse);
	io_free(&x);
}

/* Both algos equal softmax on the decompressed K, V. */
static void check_against_softmax(const struct mla *c)
{
	static const lca_algo algos[] = { LCA_ALGO_NAIVE, LCA_ALGO_ABSORBED };
	struct mla_io x;
	struct decomp d;
	int64_t no = c->Tq * c->H * c->dv, nl = c->Tq * c->H;
	double *o = tu_alloc(no), *lse = tu_alloc(nl);

	io_alloc(c, &x);
	decompress(c, &x, &d);
	softmax_on(c, &d, o, lse);
	for (int a = 0; a < 2; a++) {
		mla_run(c, algos[a], &x, NULL, 0, x.o, x.lse);
		tu_assert_close(x.o, o, no, 1e-12,
			a ? "o absorbed vs softmax" : "o naive vs softmax");
		assert_lse_close(x.lse, lse, nl, 1e-12);
	}
	decomp_free(&d);
	free(o);
	free(lse);
	io_free(&x);
}

/* ---- a reference written in the test from DeepSeek-V2 sec. 2.1 ---- */

static int keep(const struct mla *c, int64_t pq, int64_t s)
{
	if (c->causal && s > pq)
		return 0;
	return !(c->window > 0 && pq - s >= c->window);
}

static void reference(const struct mla *c, const struct mla_io *x, double *o, double *lse)
{
	const int64_t r = rope_dim_of(c);
	double *kn = tu_alloc(c->dn), *kr = tu_alloc(c->dr), *qr = tu_alloc(c->dr);
	double *vs = tu_alloc(c->dv), *l = tu_alloc(c->Tk);

	for (int64_t i = 0; i < c->Tq; i++)
		for (int64_t h = 0; h < c->H; h++) {
			int64_t pq = c->Tk - c->Tq + i, t = i * c->H + h;
			double m = -INFINITY, sum = 0;

			copy(qr, x->q_rope + t * c->dr, c->dr);
			tu_rope(qr, r, c->style, theta_of(c), pq);
			for (int64_t s = 0; s < c->Tk; s++) {
				double dot = 0;

				key_nope(c, x, h, s, kn);
				copy(kr, x->k_rope + s * c->dr, c->dr);
				tu_rope(kr, r, c->style, theta_of(c), s);
				for (int64_t j = 0; j < c->dn; j++)
					dot += x->q_nope[t * c->dn + j] * kn[j];
				for (int64_t j = 0; j < c->dr; j++)
					dot += qr[j] * kr[j];
				l[s] = c->scale * dot;
				if (keep(c, pq, s) && l[s] > m)
					m = l[s];
			}
			for (int64_t j = 0; j < c->dv; j++)
				o[t * c->dv + j] = 0;
			for (int64_t s = 0; s < c->Tk; s++) {
				double w;

				if (!keep(c, pq, s))
					continue;
				w = exp(l[s] - m);
				sum += w;
				value(c, x, h, s, vs);
				for (int64_t j = 0; j < c->dv; j++)
					o[t * c->dv + j] += w * vs[j];
			}
			for (int64_t j = 0; sum > 0 && j < c->dv; j++)
				o[t * c->dv + j] /= sum;
			lse[t] = sum > 0 ? m + log(sum) : -INFINITY;
		}
	free(kn);
	free(kr);
	free(qr);
	free(vs);
	free(l);
}

/* ---- tests ----------------------------------------------------------------
 * Shapes are deliberately odd: dn != dv, dc not a power of two, Tq < Tk. */

START_TEST(test_naive_equals_absorbed_causal)
{
	struct mla c = { 5, 11, 3, 5, 4, 7, 6, 0.3, 1, 0, LCA_ROPE_FULL, LCA_ROPE_INTERLEAVED, 0 };

	check_naive_vs_absorbed(&c, NULL, 0);
}
END_TEST

START_TEST(test_naive_equals_absorbed_window_partial_rope_half)
{
	struct mla c = { 9, 13, 2, 3, 6, 11, 5, 0.25, 1, 4, 2, LCA_ROPE_HALF, 0 };

	check_naive_vs_absorbed(&c, NULL, 0);
}
END_TEST

START_TEST(test_naive_equals_absorbed_non_causal)
{
	struct mla c = { 6, 4, 4, 7, 2, 9, 3, 0.4, 0, 0, LCA_ROPE_FULL, LCA_ROPE_INTERLEAVED, 0 };

	check_naive_vs_absorbed(&c, NULL, 0);
}
END_TEST

START_TEST(test_naive_equals_absorbed_with_fully_masked_rows)
{
	/* Tq > Tk causal: the first queries see no key in either form. */
	struct mla c = { 7, 3, 2, 4, 4, 5, 6, 0.5, 1, 0, LCA_ROPE_FULL, LCA_ROPE_HALF, 0 };
	struct mla_io x;

	check_naive_vs_absorbed(&c, NULL, 0);
	io_alloc(&c, &x);
	for (int a = 0; a < 2; a++) {
		mla_run(&c, a ? LCA_ALGO_ABSORBED : LCA_ALGO_NAIVE, &x, NULL, 0, x.o, x.lse);
		for (int64_t t = 0; t < (c.Tq - c.Tk) * c.H; t++) {
			ck_assert(isinf(x.lse[t]) && x.lse[t] < 0);
			for (int64_t j = 0; j < c.dv; j++)
				ck_assert(x.o[t * c.dv + j] == 0.0);
		}
	}
	io_free(&x);
}
END_TEST

START_TEST(test_naive_equals_absorbed_varlen)
{
	/* lengths 1, 8, 5: a one-token sequence, then a window */
	struct mla c = { 14, 14, 3, 5, 4, 6, 7, 0.35, 1, 3, LCA_ROPE_FULL,
		LCA_ROPE_INTERLEAVED, 0 };
	const int64_t cu[] = { 0, 1, 9, 14 };

	check_naive_vs_absorbed(&c, cu, 3);
}
END_TEST

START_TEST(test_matches_softmax_on_decompressed_kv)
{
	struct mla c = { 4, 10, 3, 5, 6, 7, 4, 0.3, 1, 0, LCA_ROPE_FULL, LCA_ROPE_INTERLEAVED, 0 };

	check_against_softmax(&c);
}
END_TEST

START_TEST(test_matches_softmax_with_partial_rope_and_window)
{
	struct mla c = { 8, 12, 2, 3, 6, 5, 9, 0.45, 1, 5, 4, LCA_ROPE_HALF, 777.0 };

	check_against_softmax(&c);
}
END_TEST

START_TEST(test_matches_softmax_without_rope)
{
	struct mla c = { 6, 6, 2, 4, 2, 3, 5, 0.6, 1, 0, 0, LCA_ROPE_INTERLEAVED, 0 };

	check_against_softmax(&c);
}
END_TEST

START_TEST(test_matches_reference_in_double)
{
	struct mla c = { 5, 9, 3, 6, 4, 7, 5, 0.3, 1, 6, LCA_ROPE_FULL, LCA_ROPE_INTERLEAVED, 0 };
	struct mla_io x;
	int64_t no = c.Tq * c.H * c.dv, nl = c.Tq * c.H;
	double *o = tu_alloc(no), *lse = tu_alloc(nl);

	io_alloc(&c, &x);
	reference(&c, &x, o, lse);
	for (int a = 0; a < 2; a++) {
		mla_run(&c, a ? LCA_ALGO_ABSORBED : LCA_ALGO_NAIVE, &x, NULL, 0, x.o, x.lse);
		tu_assert_close(x.o, o, no, 1e-12, a ? "o absorbed" : "o naive");
		assert_lse_close(x.lse, lse, nl, 1e-12);
	}
	free(o);
	free(lse);
	io_free(&x);
}
END_TEST

START_TEST(test_decode_equals_last_row_of_prefill)
{
	struct mla c = { 10, 10, 2, 5, 4, 6, 3, 0.4, 1, 0, LCA_ROPE_FULL, LCA_ROPE_INTERLEAVED, 0 };
	struct mla one = c;
	struct mla_io x, y;
	int64_t last = (c.Tq - 1) * c.H;

	one.Tq = 1;
	io_alloc(&c, &x);
	y = x;
	y.q_nope = x.q_nope + last * c.dn;
	y.q_rope = x.q_rope + last * c.dr;
	y.o = tu_alloc(c.H * c.dv);
	y.lse = tu_alloc(c.H);
	for (int a = 0; a < 2; a++) {
		lca_algo algo = a ? LCA_ALGO_ABSORBED : LCA_ALGO_NAIVE;

		mla_run(&c, algo, &x, NULL, 0, x.o, x.lse);
		mla_run(&one, algo, &y, NULL, 0, y.o, y.lse);
		tu_assert_close(y.o, x.o + last * c.dv, c.H * c.dv, 1e-15, "decode o");
		tu_assert_close(y.lse, x.lse + last, c.H, 1e-15, "decode lse");
	}
	free(y.o);
	free(y.lse);
	io_free(&x);
}
END_TEST

START_TEST(test_scale_multiplies_the_logits)
{
	/* scale 2s on (q_nope, q_rope) equals scale s on (2 q_nope, 2 q_rope):
	 * exact, since doubling is. */
	struct mla c = { 4, 7, 2, 3, 4, 5, 4, 0.7, 1, 0, LCA_ROPE_FULL, LCA_ROPE_HALF, 0 };
	struct mla c2 = c;
	struct mla_io x;
	int64_t no = c.Tq * c.H * c.dv, nl = c.Tq * c.H;
	double *o = tu_alloc(no), *lse = tu_alloc(nl);

	c2.scale = 2 * c.scale;
	io_alloc(&c, &x);
	mla_run(&c2, LCA_ALGO_ABSORBED, &x, NULL, 0, o, lse);
	for (int64_t j = 0; j < c.Tq * c.H * c.dn; j++)
		x.q_nope[j] *= 2;
	for (int64_t j = 0; j < c.Tq * c.H * c.dr; j++)
		x.q_rope[j] *= 2;
	mla_run(&c, LCA_ALGO_ABSORBED, &x, NULL, 0, x.o, x.lse);
	tu_assert_close(x.o, o, no, 1e-14, "o");
	assert_lse_close(x.lse, lse, nl, 1e-14);
	free(o);
	free(lse);
	io_free(&x);
}
END_TEST

/* ---- the cpu backend: AUTO's choice and the decode kernels ---- */

/* On the cpu backend AUTO is decided per call (lca_mla_forward(3)): a
 * prefill runs naive, a few queries over a longer context run absorbed,
 * bit for bit the explicit form, and the two forms agree. */
START_TEST(test_cpu_auto_is_naive_for_prefill_and_absorbed_for_decode)
{
	static const lca_algo algos[3] = { LCA_ALGO_AUTO, LCA_ALGO_NAIVE, LCA_ALGO_ABSORBED };
	const struct mla cs[2] = {
		{ 23, 23, 3, 5, 4, 7, 6, 0.3, 1, 0, LCA_ROPE_FULL, LCA_ROPE_INTERLEAVED, 0 },
		{ 2, 40, 3, 5, 4, 7, 6, 0.3, 1, 0, LCA_ROPE_FULL, LCA_ROPE_HALF, 0 },
	};

	for (int k = 0; k < 2; k++) {
		const struct mla *c = &cs[k];
		const int64_t no = c->Tq * c->H * c->dv, nl = c->Tq * c->H;
		const int pick = k == 0 ? 1 : 2;
		lca_params p = params_on(c, LCA_BACKEND_CPU, LCA_F64, LCA_ALGO_AUTO), r;
		lca_plan *plan = tu_plan(&p);
		double *o[3], *l[3];
		struct mla_io x;

		tu_assert_ok(lca_plan_params(plan, &r));
		ck_assert_int_eq(r.algo, LCA_ALGO_AUTO);
		lca_plan_destroy(plan);
		io_alloc(c, &x);
		for (int a = 0; a < 3; a++) {
			o[a] = tu_alloc(no);
			l[a] = tu_alloc(nl);
			mla_run_on(c, LCA_BACKEND_CPU, LCA_F64, algos[a], &x, NULL, 0, o[a], l[a]);
		}
		ck_assert_msg(memcmp(o[0], o[pick], (size_t)no * sizeof(double)) == 0 &&
			memcmp(l[0], l[pick], (size_t)nl * sizeof(double)) == 0,
			"Tq %lld Tk %lld: AUTO is not bit for bit %s", (long long)c->Tq,
			(long long)c->Tk, pick == 1 ? "naive" : "absorbed");
		tu_assert_close(o[1], o[2], no, 1e-12, "o naive vs absorbed");
		assert_lse_close(l[1], l[2], nl, 1e-12);
		for (int a = 0; a < 3; a++) {
			free(o[a]);
			free(l[a]);
		}
		io_free(&x);
	}
}
END_TEST

/* Through a cpu cache of dtype t: Tk - tq tokens in one step, then tq;
 * o and lse of the second step. x holds Tk query rows (c->Tq = Tk). */
static void cpu_cache_run(const struct mla *c, lca_dtype t, int64_t tq,
	const struct mla_io *x, double *o, double *lse)
{
	const size_t es = t == LCA_F64 ? 8 : 4;
	const int64_t n1 = c->Tk - tq, H = c->H;
	const int64_t per[8] = { H * c->dn, H * c->dr, c->dc, c->dr, 0, 0, H * c->dv, H };
	lca_params p = params_on(c, LCA_BACKEND_CPU, t, LCA_ALGO_AUTO);
	lca_plan *plan = tu_plan(&p);
	lca_cache *cache = NULL;
	void *y[8], *z[8];

	typed_io(c, x, t, 0, c->Tk, y);
	for (int i = 0; i < 8; i++)
		z[i] = (char *)y[i] + (size_t)(n1 * per[i]) * es;
	tu_assert_ok(lca_cache_create(plan, 1, c->Tk, &cache));
	tu_assert_ok(lca_mla_step(plan, cache, n1, y[0], y[1], y[2], y[3], y[4], y[5],
		NULL, y[6], y[7]));
	tu_assert_ok(lca_mla_step(plan, cache, tq, z[0], z[1], z[2], z[3], y[4], y[5],
		NULL, z[6], z[7]));
	untyped(o, z[6], tq * H * c->dv, t);
	untyped(lse, z[7], tq * H, t);
	for (int i = 0; i < 8; i++)
		free(y[i]);
	lca_cache_destroy(cache);
	lca_plan_destroy(plan);
}

/* The cpu decode kernels (a step of up to 16 tokens over a cached
 * context) against the reference, on sizes that take their register
 * blocks: 9 or 36 rows (heads x new tokens) in blocks of 4 or 8 with rows
 * left over, latent rows long enough for the blocked logits (250 values,
 * whole vectors plus a tail), a context of several chunks; with a window
 * too. f64 within 1e-12, f32 within twice the float32 reference's own
 * error (DESIGN.md). */
START_TEST(test_cpu_decode_matches_reference_on_wide_heads)
{
	const struct mla cs[2] = {
		{ 1, 701, 9, 20, 24, 250, 12, 0.2, 1, 0, LCA_ROPE_FULL, LCA_ROPE_INTERLEAVED, 0 },
		{ 4, 701, 9, 20, 24, 250, 12, 0.2, 1, 300, LCA_ROPE_FULL, LCA_ROPE_HALF, 0 },
	};

	for (int k = 0; k < 2; k++) {
		struct mla full = cs[k], last = cs[k];
		const int64_t tq = cs[k].Tq, no = tq * full.H * full.dv, nl = tq * full.H;
		double *o64 = tu_alloc(no), *l64 = tu_alloc(nl), *o32 = tu_alloc(no);
		double *l32 = tu_alloc(nl), *o = tu_alloc(no), *l = tu_alloc(nl);
		struct mla_io x, xl;

		full.Tq = full.Tk;
		io_alloc(&full, &x);
		xl = x;  /* the last tq queries alone, for the references */
		xl.q_nope += (full.Tk - tq) * full.H * full.dn;
		xl.q_rope += (full.Tk - tq) * full.H * full.dr;
		mla_run_on(&last, LCA_BACKEND_REF, LCA_F64, LCA_ALGO_ABSORBED, &xl, NULL, 0, o64, l64);
		mla_run_on(&last, LCA_BACKEND_REF, LCA_F32, LCA_ALGO_ABSORBED, &xl, NULL, 0, o32, l32);
		for (int f32 = 0; f32 < 2; f32++) {
			double tol = f32 ? fmax(2 * tu_relerr(o32, o64, no), 1e-6) : 1e-12;
			double tl = f32 ? fmax(2 * tu_relerr(l32, l64, nl), 1e-6) : 1e-12;

			cpu_cache_run(&full, f32 ? LCA_F32 : LCA_F64, tq, &x, o, l);
			ck_assert(tu_all_finite(o, no) && tu_all_finite(l, nl));
			tu_assert_close(o, o64, no, tol, f32 ? "o cpu f32" : "o cpu f64");
			tu_assert_close(l, l64, nl, tl, f32 ? "lse cpu f32" : "lse cpu f64");
		}
		free(o64), free(l64), free(o32), free(l32), free(o), free(l);
		io_free(&x);
	}
}
END_TEST

static Suite *mla_suite(void)
{
	Suite *s = suite_create("mla");
	TCase *tc = tu_tcase("naive_vs_absorbed");

	tcase_add_test(tc, test_naive_equals_absorbed_causal);
	tcase_add_test(tc, test_naive_equals_absorbed_window_partial_rope_half);
	tcase_add_test(tc, test_naive_equals_absorbed_non_causal);
	tcase_add_test(tc, test_naive_equals_absorbed_with_fully_masked_rows);
	tcase_add_test(tc, test_naive_equals_absorbed_varlen);
	suite_add_tcase(s, tc);

	tc = tu_tcase("definition");
	tcase_add_test(tc, test_matches_softmax_on_decompressed_kv);
	tcase_add_test(tc, test_matches_softmax_with_partial_rope_and_window);
	tcase_add_test(tc, test_matches_softmax_without_rope);
	tcase_add_test(tc, test_matches_reference_in_double);
	tcase_add_test(tc, test_decode_equals_last_row_of_prefill);
	tcase_add_test(tc, test_scale_multiplies_the_logits);
	suite_add_tcase(s, tc);

	tc = tu_tcase("cpu");
	tcase_add_test(tc, test_cpu_auto_is_naive_for_prefill_and_absorbed_for_decode);
	tcase_add_test(tc, test_cpu_decode_matches_reference_on_wide_heads);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(mla_suite());
}
