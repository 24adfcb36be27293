/*
 * lightning_bwd.c - reference adjoints of Lightning Attention
 * (lightning.c): the gradients of
 *
 *	L = sum_t o_t . dout_t + sum S_T . dstate
 *
 * with respect to q, k, v and state0 (slopes are constants). Each form of
 * the forward has its own adjoint, so that the two gradients check each
 * other as the two forwards do.
 *
 * Recurrence (per sequence and head, lambda = exp(-slope)):
 *
 *	S_t = lambda S_{t-1} + k_t v_t^T,	o_t = scale S_t^T q_t
 *
 * With G_t = dL/dS_t (through every later token) the chain rule gives
 *
 *	dq_t = scale S_t dout_t		(needs S_t: a forward scan)
 *	G_T  = dstate + scale q_T dout_T^T
 *	G_t  = lambda G_{t+1} + scale q_t dout_t^T	(a reverse scan)
 *	dk_t = G_t v_t,  dv_t = G_t^T k_t,  dstate0 = lambda G_1
 *
 * Gradient buffers are overwritten. Every allocation comes before the
 * first write, so a failed call leaves them untouched.
 */
#include "internal.h"
#include "real.h"

#include <stdlib.h>
#include <string.h>

/* Shapes and options every helper needs, resolved once per call. */
struct lb_dims {
	int64_t H, dk, dv;
	real scale;
};

static struct lb_dims lb_dims_of(const lca_params *p)
{
	struct lb_dims d;

	d.H = p->H;
	d.dk = p->dk;
	d.dv = p->dv;
	/* As in the forward: 0 in a raw params struct means no scaling. */
	d.scale = p->scale > 0 ? p->scale : 1.0;
	return d;
}

static real dot(const real *a, const real *b, int64_t n)
{
	real s = 0.0;

	for (int64_t i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

/* Row offsets of token t, head h, in the [T][H][dk] and [T][H][dv]
 * tensors. */
static size_t row_k(const struct lb_dims *d, int64_t t, int64_t h)
{
	return ((size_t)t * d->H + h) * d->dk;
}

static size_t row_v(const struct lb_dims *d, int64_t t, int64_t h)
{
	return ((size_t)t * d->H + h) * d->dv;
}

/* Offset of slice [n][h] of a [N][H][dk][dv] state tensor. */
static size_t slice(const struct lb_dims *d, int64_t n, int64_t h)
{
	return ((size_t)n * d->H + h) * (size_t)d->dk * (size_t)d->dv;
}

/* M = src[n][h], or zeros for an absent tensor (state0, dstate NULL). */
static void slice_load(real *M, const real *src, int64_t n, int64_t h,
	const struct lb_dims *d)
{
	size_t len = (size_t)d->dk * (size_t)d->dv;

	if (src == NULL)
		memset(M, 0, len * sizeof *M);
	else
		memcpy(M, src + slice(d, n, h), len * sizeof *M);
}

static void slice_store(real *dst, const real *M, int64_t n, int64_t h,
	const struct lb_dims *d)
{
	size_t len = (size_t)d->dk * (size_t)d->dv;

	if (dst != NULL)
		memcpy(dst + slice(d, n, h), M, len * sizeof *M);
}

static void scale_all(real *M, real a, const struct lb_dims *d)
{
	size_t len = (size_t)d->dk * (size_t)d->dv;

	for (size_t e = 0; e < len; e++)
		M[e] *= a;
}

/* M += w x y^T for x [dk], y [dv]: a token's write into S, or the
 * read-out's contribution scale q dout^T to G. */
static void outer_add(real *M, real w, const real *x, const real *y,
	const struct lb_dims *d)
{
	for (int64_t i = 0; i < d->dk; i++) {
		real wx = w * x[i];

		for (int64_t j = 0; j < d->dv; j++)
			M[i * d->dv + j] += wx * y[j];
	}
}

/* out[i] = a sum_j M[i][j] y[j]: M y, the adjoint of M^T x in x. */
static void apply(real *out, const real *M, const real *y, real a,
	const struct lb_dims *d)
{
	for (int64_t i = 0; i < d->dk; i++)
		out[i] = a * dot(M + i * d->dv, y, d->dv);
}

/* out[j] = a sum_i M[i][j] x[i]: M^T x, the adjoint of M y in y. */
static void apply_t(real *out, const real *M, const real *x, real a,
	const struct lb_dims *d)
{
	for (int64_t j = 0; j < d->dv; j++) {
		real s = 0.0;

		for (int64_t i = 0; i < d->dk; i++)
			s += M[i * d->dv + j] * x[i];
		out[j] = a * s;
	}
}

/* Both scratch matrices and, for the blockwise form, the decay powers,
 * allocated together before any gradient is written. */
struct lb_work {
	real *S, *G, *pw;
};

static lca_status work_alloc(struct lb_work *w, const struct lb_dims *d,
	int64_t npw)
{
	size_t len = (size_t)d->dk * (size_t)d->dv;

	w->S = malloc(len * sizeof *w->S);
	w->G = malloc(len * sizeof *w->G);
	w->pw = npw > 0 ? malloc((size_t)npw * sizeof *w->pw) : NULL;
	if (w->S == NULL || w->G == NULL || (npw > 0 && w->pw == NULL)) {
		free(w->S);
		free(w->G);
		free(w->pw);
		return lcai_fail(LCA_ERR_NOMEM, "lightning reference backward: out of memory for the workspace");
	}
	return LCA_OK;
}

static void work_free(struct lb_work *w)
{
	free(w->S);
	free(w->G);
	free(w->pw);
}

/* ---- recurrent form ---------------------------------------------------- */

/* dq_t = scale S_t dout_t over tokens t0 .. t1-1, S carried forward. */
static void recurrent_dq(const struct lb_dims *d, int64_t h, int64_t t0,
	int64_t t1, real lambda, const real *k, const real *v,
	const real *dout, real *S, real *dq)
{
	for (int64_t t = t0; t < t1; t++) {
		scale_all(S, lambda, d);
		outer_add(S, 1.0, k + row_k(d, t, h), v + row_v(d, t, h), d);
		apply(dq + row_k(d, t, h), S, dout + row_v(d, t, h), d->scale,
			d);
	}
}

/*
 * The reverse scan: G enters as dL/dS_T (dstate) and leaves as
 * dL/dstate0 = lambda G_1. Token t adds its read-out's gradient
 * scale q_t dout_t^T before its write k_t v_t^T is differentiated.
 */
static void recurrent_dkdv(const struct lb_dims *d, int64_t h, int64_t t0,
	int64_t t1, real lambda, const real *q, const real *k,
	const real *v, const real *dout, real *G, real *dk, real *dv)
{
	for (int64_t t = t1 - 1; t >= t0; t--) {
		outer_add(G, d->scale, q + row_k(d, t, h),
			dout + row_v(d, t, h), d);
		apply(dk + row_k(d, t, h), G, v + row_v(d, t, h), 1.0, d);
		apply_t(dv + row_v(d, t, h), G, k + row_k(d, t, h), 1.0, d);
		scale_all(G, lambda, d);
	}
}

lca_status REF(lightning_recurrent_bwd)(const lca_params *p,
	const int64_t *cu, int64_t nseq, const real *q, const real *k,
	const real *v, const real *slope, const real *state0,
	const real *dout, const real *dstate, real *dq, real *dk, real *dv,
	real *dstate0)
{
	struct lb_dims d = lb_dims_of(p);
	struct lb_work w;
	lca_status s;

	if ((s = work_alloc(&w, &d, 0)))
		return s;
	for (int64_t n = 0; n < nseq; n++) {
		for (int64_t h = 0; h < d.H; h++) {
			real lambda = exp(-slope[h]);

			slice_load(w.S, state0, n, h, &d);
			recurrent_dq(&d, h, cu[n], cu[n + 1], lambda, k, v,
				dout, w.S, dq);
			slice_load(w.G, dstate, n, h, &d);
			recurrent_dkdv(&d, h, cu[n], cu[n + 1], lambda, q, k, v,
				dout, w.G, dk, dv);
			slice_store(dstate0, w.G, n, h, &d);
		}
	}
	work_free(&w);
	return LCA_OK;
}

/* ---- blockwise form ---------------------------------------------------- */

/*
 * The adjoint of lightning.c's blocks. A block of b tokens at t0, local
 * positions r, i = 1 .. b, state S0 entering it, S_b leaving it:
 *
 *	o_r = scale [lambda^r S0^T q_r
 *	             + sum_{i <= r} lambda^(r-i) (q_r . k_i) v_i]
 *	S_b = lambda^b S0 + sum_i lambda^(b-i) k_i v_i^T
 *
 * With G = dL/dS_b (from the later blocks and dstate):
 *
 *	dq_r = scale [lambda^r S0 dout_r
 *	              + sum_{i <= r} lambda^(r-i) (dout_r . v_i) k_i]
 *	dk_i = lambda^(b-i) G v_i
 *	       + scale sum_{r >= i} lambda^(r-i) (dout_r . v_i) q_r
 *	dv_i = lambda^(b-i) G^T k_i
 *	       + scale sum_{r >= i} lambda^(r-i) (q_r . k_i) dout_r
 *	dL/dS0 = lambda^b G + scale sum_r lambda^r q_r dout_r^T
 *
 * So dq needs the states carried forward, as in the forward pass, and dk,
 * dv, dstate0 need G carried backward, block by block from the last. The
 * intra-block decay D[r][i] = lambda^(r-i) is only ever formed where the
 * causal mask keeps it (r >= i), from the table pw[m] = exp(-slope m) with
 * m >= 0: every exponent stays <= 0, nothing overflows for long blocks or
 * large slopes (Lightning Attention-2, sec. 3; lightning.c).
 */

/* pw[m] = lambda^m, one exp per power, exactly as the forward forms it. */
static void decay_powers(real *pw, int64_t mmax, real slope)
{
	for (int64_t m = 0; m <= mmax; m++)
		pw[m] = exp(-slope * (real)m);
}

/* dq of one block, dQ = scale [Lambda dO S0^T + (dO V^T . D) K]: the inter
 * term through S0, then the masked intra term row by row. */
static void block_dq(const struct lb_dims *d, int64_t h, int64_t t0,
	int64_t b, const real *pw, const real *k, const real *v,
	const real *dout, const real *S0, real *dq)
{
	for (int64_t r = 1; r <= b; r++) {
		const real *dor = dout + row_v(d, t0 + r - 1, h);
		real *dqr = dq + row_k(d, t0 + r - 1, h);

		apply(dqr, S0, dor, pw[r], d);
		for (int64_t i = 1; i <= r; i++) {
			const real *ki = k + row_k(d, t0 + i - 1, h);
			const real *vi = v + row_v(d, t0 + i - 1, h);
			real wgt = pw[r - i] * dot(dor, vi, d->dv);

			for (int64_t a = 0; a < d->dk; a++)
				dqr[a] += wgt * ki[a];
		}
		for (int64_t a = 0; a < d->dk; a++)
			dqr[a] *= d->scale;
	}
}

/* dk_i, dv_i of one block: through the state leaving it (G = dL/dS_b),
 * then through the outputs of rows r >= i of the same block. */
static void block_dkdv(const struct lb_dims *d, int64_t h, int64_t t0,
	int64_t b, const real *pw, const real *q, const real *k,
	const real *v, const real *dout, const real *G, real *dk, real *dv)
{
	for (int64_t i = 1; i <= b; i++) {
		const real *ki = k + row_k(d, t0 + i - 1, h);
		const real *vi = v + row_v(d, t0 + i - 1, h);
		real *dki = dk + row_k(d, t0 + i - 1, h);
		real *dvi = dv + row_v(d, t0 + i - 1, h);

		apply(dki, G, vi, pw[b - i], d);
		apply_t(dvi, G, ki, pw[b - i], d);
		for (int64_t r = i; r <= b; r++) {
			const real *qr = q + row_k(d, t0 + r - 1, h);
			const real *dor = dout + row_v(d, t0 + r - 1, h);
			real a = d->scale * pw[r - i];
			real wk = a * dot(dor, vi, d->dv);
			real wv = a * dot(qr, ki, d->dk);

			for (int64_t x = 0; x < d->dk; x++)
				dki[x] += wk * qr[x];
			for (int64_t y = 0; y < d->dv; y++)
				dvi[y] += wv * dor[y];
		}
	}
}

/* G = dL/dS_b becomes dL/dS0: the decay of the whole block, plus every
 * row's inter term lambda^r S0^T q_r read back. */
static void block_dstate(const struct lb_dims *d, int64_t h, int64_t t0,
	int64_t b, const real *pw, const real *q, const real *dout, real *G)
{
	scale_all(G, pw[b], d);
	for (int64_t r = 1; r <= b; r++)
		outer_add(G, d->scale * pw[r], q + row_k(d, t0 + r - 1, h),
			dout + row_v(d, t0 + r - 1, h), d);
}

/* S carried forward through blocks of B (the last one short), as
 * lightning.c's block_state() does, giving each block's dq. */
static void blockwise_dq(const struct lb_dims *d, int64_t h, int64_t t0,
	int64_t t1, int64_t B, const real *pw, const real *k,
	const real *v, const real *dout, real *S, real *dq)
{
	for (int64_t s = t0; s < t1; s += B) {
		int64_t b = t1 - s < B ? t1 - s : B;

		block_dq(d, h, s, b, pw, k, v, dout, S, dq);
		scale_all(S, pw[b], d);
		for (int64_t i = 1; i <= b; i++)
			outer_add(S, pw[b - i], k + row_k(d, s + i - 1, h),
				v + row_v(d, s + i - 1, h), d);
	}
}

/* G carried backward from the last block (starting at a multiple of B
 * after t0) to the first, giving dk, dv and finally dL/dstate0. */
static void blockwise_dkdv(const struct lb_dims *d, int64_t h, int64_t t0,
	int64_t t1, int64_t B, const real *pw, const real *q,
	const real *k, const real *v, const real *dout, real *G, real *dk,
	real *dv)
{
	if (t1 == t0)
		return;
	for (int64_t s = t0 + (t1 - t0 - 1) / B * B; s >= t0; s -= B) {
		int64_t b = t1 - s < B ? t1 - s : B;

		block_dkdv(d, h, s, b, pw, q, k, v, dout, G, dk, dv);
		block_dstate(d, h, s, b, pw, q, dout, G);
	}
}

/* Longest block any sequence actually forms: min(B, longest sequence). */
static int64_t longest_block(const int64_t *cu, int64_t nseq, int64_t B)
{
	int64_t m = 0;

	for (int64_t n = 0; n < nseq; n++)
		if (cu[n + 1] - cu[n] > m)
			m = cu[n + 1] - cu[n];
	return m < B ? m : B;
}

lca_status REF(lightning_blockwise_bwd)(const lca_params *p,
	const int64_t *cu, int64_t nseq, const real *q, const real *k,
	const real *v, const real *slope, const real *state0,
	const real *dout, const real *dstate, real *dq, real *dk, real *dv,
	real *dstate0)
{
	struct lb_dims d = lb_dims_of(p);
	int64_t B = p->block > 0 ? p->block : 256;
	int64_t bmax = longest_block(cu, nseq, B);
	struct lb_work w;
	lca_status s;

	if ((s = work_alloc(&w, &d, bmax + 1)))
		return s;
	for (int64_t h = 0; h < d.H; h++) {
		decay_powers(w.pw, bmax, slope[h]);
		for (int64_t n = 0; n < nseq; n++) {
			slice_load(w.S, state0, n, h, &d);
			blockwise_dq(&d, h, cu[n], cu[n + 1], B, w.pw, k, v,
				dout, w.S, dq);
			slice_load(w.G, dstate, n, h, &d);
			blockwise_dkdv(&d, h, cu[n], cu[n + 1], B, w.pw, q, k,
				v, dout, w.G, dk, dv);
			slice_store(dstate0, w.G, n, h, &d);
		}
	}
	work_free(&w);
	return LCA_OK;
}
