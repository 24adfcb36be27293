/*
 * softmax_bwd.c - real-precision reference adjoint of softmax attention
 * (lib/ref/softmax.c): the gradients dq, dk, dv of L = sum(o * dout).
 *
 * Per query row, with q' = rope(q), k'_s = rope(k_s) and the kept keys s,
 *   x_s = scale <q', k'_s>,  P = softmax(x),  o = sum_s P_s v_s
 * so, reverse mode from dout,
 *   dv_s += P_s dout,  dP_s = <dout, v_s>,
 *   dx_s  = P_s (dP_s - sum_r P_r dP_r)        (softmax Jacobian)
 *   dq'  += scale dx_s k'_s,  dk'_s += scale dx_s q',
 * and the adjoint of a rotation is its transpose, the rotation by the
 * negative angle: dq = rope(dq', -pos_q), dk_s = rope(dk'_s, -s). The
 * forward is recomputed row by row (no saved activations) with the same
 * masks, positions and row normalisation as the forward. A fully masked
 * row has o = 0 independent of its inputs: it contributes nothing.
 */
#include "internal.h"
#include "real.h"
#include "rowsoftmax.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Per-call scratch, sized for the longest sequence. */
struct scratch {
	real *kr;     /* [tk][dk] rotated keys of one kv head */
	real *dkr;    /* [tk][dk] their gradient, summed over the group */
	real *qr;     /* [dk] the rotated query */
	real *dqr;    /* [dk] its gradient */
	real *w;      /* [tk] softmax weights of the kept keys */
	real *dw;     /* [tk] dL/dP, then dL/dlogit */
};

static real *alloc_reals(int64_t n)
{
	/* malloc(0) may return NULL; ask for one element so that an empty
	 * scratch is never mistaken for an allocation failure. */
	if (n < 1)
		n = 1;
	if ((uint64_t)n > SIZE_MAX / sizeof(real))
		return NULL;
	return malloc((size_t)n * sizeof(real));
}

static void scratch_free(struct scratch *sc)
{
	free(sc->kr);
	free(sc->dkr);
	free(sc->qr);
	free(sc->dqr);
	free(sc->w);
	free(sc->dw);
}

/* Everything is allocated before any output is touched, so a failed call
 * writes nothing. */
static lca_status scratch_alloc(const lca_params *p, const int64_t *cu_k,
	int64_t nseq, struct scratch *sc)
{
	int64_t max_tk = 0, nkr;

	memset(sc, 0, sizeof *sc);
	for (int64_t n = 0; n < nseq; n++)
		if (cu_k[n + 1] - cu_k[n] > max_tk)
			max_tk = cu_k[n + 1] - cu_k[n];
	if (!lcai_mul(max_tk, p->dk, &nkr))
		return lcai_fail(LCA_ERR_NOMEM,
			"ref softmax backward: key scratch size overflows");
	sc->kr = alloc_reals(nkr);
	sc->dkr = alloc_reals(nkr);
	sc->qr = alloc_reals(p->dk);
	sc->dqr = alloc_reals(p->dk);
	sc->w = alloc_reals(max_tk);
	sc->dw = alloc_reals(max_tk);
	if (!sc->kr || !sc->dkr || !sc->qr || !sc->dqr || !sc->w || !sc->dw) {
		scratch_free(sc);
		return lcai_fail(LCA_ERR_NOMEM,
			"ref softmax backward: no memory for %lld keys",
			(long long)max_tk);
	}
	return LCA_OK;
}

static real dot(const real *a, const real *b, int64_t n)
{
	real acc = 0.0;

	for (int64_t j = 0; j < n; j++)
		acc += a[j] * b[j];
	return acc;
}

/* y += a x */
static void axpy(real a, const real *x, real *y, int64_t n)
{
	for (int64_t j = 0; j < n; j++)
		y[j] += a * x[j];
}

/* Copy the keys of kv head g of one sequence (k points at its first token)
 * into kr and rotate each as at its position s, as the forward does. */
static void rotate_keys(const lca_params *p, const real *k, int64_t tk,
	int64_t g, real *kr)
{
	const int64_t dk = p->dk;

	for (int64_t s = 0; s < tk; s++) {
		real *dst = kr + s * dk;

		memcpy(dst, k + (s * p->Hkv + g) * dk,
			(size_t)dk * sizeof(real));
		ref_rope(dst, p->rope_dim, p->rope_style, p->rope_theta, s);
	}
}

/* The adjoint of one query row at position pq against the tk rotated keys
 * in sc->kr and the values v (key s at v + s * vstride): writes dqrow,
 * adds to sc->dkr and to dv (same layout as v). */
static void row_bwd(const lca_params *p, const real *qrow, int64_t pq,
	int64_t tk, const real *v, int64_t vstride, const real *drow,
	struct scratch *sc, real *dqrow, real *dv)
{
	const int64_t dk = p->dk, dvh = p->dv;
	const real scale = (real)p->scale;
	int64_t lo, hi, n;
	real sum;

	REF(key_range)(p, pq, tk, &lo, &hi);
	n = hi - lo;
	if (n <= 0)
		return;  /* o = 0 whatever the inputs: dq stays 0 */
	memcpy(sc->qr, qrow, (size_t)dk * sizeof(real));
	ref_rope(sc->qr, p->rope_dim, p->rope_style, p->rope_theta, pq);

	/* Recompute the forward's weights exactly as softmax.c does: masked
	 * keys never scored, maximum subtracted before exp (row_exp). */
	for (int64_t s = lo; s < hi; s++)
		sc->w[s - lo] = scale * dot(sc->qr, sc->kr + s * dk, dk);
	REF(row_exp)(sc->w, n, &sum);
	for (int64_t s = lo; s < hi; s++)
		sc->dw[s - lo] = dot(drow, v + s * vstride, dvh);
	REF(row_exp_bwd)(sc->w, sc->dw, n, sum);

	for (int64_t j = 0; j < dk; j++)
		sc->dqr[j] = 0.0;
	for (int64_t s = lo; s < hi; s++) {
		const real ds = scale * sc->dw[s - lo];

		axpy(sc->w[s - lo], drow, dv + s * vstride, dvh);
		axpy(ds, sc->kr + s * dk, sc->dqr, dk);
		axpy(ds, sc->qr, sc->dkr + s * dk, dk);
	}
	/* Transpose of the rotation: rotate back by the negative angle. */
	ref_rope(sc->dqr, p->rope_dim, p->rope_style, p->rope_theta, -pq);
	memcpy(dqrow, sc->dqr, (size_t)dk * sizeof(real));
}

/* All query heads of one sequence (queries from global token q0, keys
 * from k0). The keys of kv head g are rotated once; their gradient
 * collects over the H / Hkv query heads of the group (GQA) before it is
 * rotated back into dk. */
static void seq_bwd(const lca_params *p, int64_t q0, int64_t tq,
	int64_t k0, int64_t tk, const real *q, const real *k, const real *v,
	const real *dout, real *dq, real *dk, real *dv, struct scratch *sc)
{
	const int64_t H = p->H, Hkv = p->Hkv, group = H / Hkv;
	const int64_t dkh = p->dk, dvh = p->dv;

	for (int64_t g = 0; g < Hkv; g++) {
		const int64_t voff = (k0 * Hkv + g) * dvh;

		rotate_keys(p, k + k0 * Hkv * dkh, tk, g, sc->kr);
		for (int64_t j = 0; j < tk * dkh; j++)
			sc->dkr[j] = 0.0;
		for (int64_t h = g * group; h < (g + 1) * group; h++)
			for (int64_t i = 0; i < tq; i++) {
				const int64_t t = (q0 + i) * H + h;

				/* bottom-right alignment: last tq of tk */
				row_bwd(p, q + t * dkh, tk - tq + i, tk,
					v + voff, Hkv * dvh, dout + t * dvh,
					sc, dq + t * dkh, dv + voff);
			}
		for (int64_t s = 0; s < tk; s++) {
			real *d = dk + ((k0 + s) * Hkv + g) * dkh;

			memcpy(d, sc->dkr + s * dkh, (size_t)dkh * sizeof(real));
			ref_rope(d, p->rope_dim, p->rope_style, p->rope_theta,
				-s);
		}
	}
}

lca_status REF(softmax_bwd)(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const real *q, const real *k,
	const real *v, const real *dout, real *dq, real *dk, real *dv)
{
	const int64_t Tq = cu_q[nseq], Tk = cu_k[nseq];
	struct scratch sc;
	lca_status st = scratch_alloc(p, cu_k, nseq, &sc);

	if (st != LCA_OK)
		return st;
	/* Overwritten, never accumulated into: dk and dv are sums over rows
	 * and heads, and rows of fully masked queries keep dq = 0. */
	memset(dq, 0, (size_t)(Tq * p->H * p->dk) * sizeof(real));
	memset(dk, 0, (size_t)(Tk * p->Hkv * p->dk) * sizeof(real));
	memset(dv, 0, (size_t)(Tk * p->Hkv * p->dv) * sizeof(real));
	for (int64_t n = 0; n < nseq; n++)
		seq_bwd(p, cu_q[n], cu_q[n + 1] - cu_q[n], cu_k[n],
			cu_k[n + 1] - cu_k[n], q, k, v, dout, dq, dk, dv, &sc);
	scratch_free(&sc);
	return LCA_OK;
}
