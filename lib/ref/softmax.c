/*
 * softmax.c - real-precision reference for softmax attention
 * (Vaswani et al. 2017, eq. 1) with RoPE, grouped-query heads, causal and
 * sliding-window masks over packed sequences. The oracle: written for
 * obvious correctness, not speed.
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
	real *qr;     /* [dk] the rotated query */
	real *logit;  /* [tk] kept logits, then softmax weights */
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

static real dot(const real *a, const real *b, int64_t n)
{
	real acc = 0.0;

	for (int64_t j = 0; j < n; j++) {
		acc += a[j] * b[j];
		FLOPS(2);
	}
	return acc;
}

/* Copy the keys of kv head g of one sequence (k points at its first token)
 * into kr and rotate each as at its position k0 + s. */
static void rotate_keys(const lca_params *p, const real *k, int64_t tk,
	int64_t g, int64_t k0, real *kr)
{
	const int64_t dk = p->dk;

	for (int64_t s = 0; s < tk; s++) {
		real *dst = kr + s * dk;

		memcpy(dst, k + (s * p->Hkv + g) * dk, (size_t)dk * sizeof(real));
		ref_rope(dst, p->rope_dim, p->rope_style, p->rope_theta, k0 + s);
	}
}

/* One query at position pq against the tk rotated keys in sc->kr (key s
 * at position k0 + s) and the values v (key s at v + s * vstride):
 * orow = sum_s p_s v_s over the kept keys, returns the log-sum-exp of the
 * kept logits (o = 0, -inf if none). */
static real attend_row(const lca_params *p, const real *qrow, int64_t pq,
	int64_t k0, int64_t tk, const real *v, int64_t vstride,
	struct scratch *sc, real *orow)
{
	const int64_t dk = p->dk;
	int64_t lo, hi;
	real sum, l;

	memcpy(sc->qr, qrow, (size_t)dk * sizeof(real));
	ref_rope(sc->qr, p->rope_dim, p->rope_style, p->rope_theta, pq);

	/* Masked keys are never scored: they cannot leak into max or sum.
	 * Masks see only the distance pq - (k0 + s). */
	REF(key_range)(p, pq - k0, tk, &lo, &hi);
	for (int64_t s = lo; s < hi; s++) {
		sc->logit[s - lo] = (real)p->scale * dot(sc->qr, sc->kr + s * dk, dk);
		FLOPS(1);
	}
	l = REF(row_exp)(sc->logit, hi - lo, &sum);
	REF(row_mix)(sc->logit, hi - lo, sum, v + lo * vstride, vstride,
		p->dv, orow);
	return l;
}

/* All query heads of the sequence whose queries start at token q0 of the
 * tensors and keys at k0, query i at position at->q + i and key s at
 * at->k + s. Each kv head's keys are rotated once and shared by the
 * H / Hkv query heads that read them. */
static void attend_seq(const lca_params *p, const struct lcai_pos *at,
	int64_t q0, int64_t tq, int64_t k0, int64_t tk, const real *q,
	const real *k, const real *v, real *o, real *lse, struct scratch *sc)
{
	const int64_t H = p->H, Hkv = p->Hkv, group = H / Hkv;
	const int64_t dk = p->dk, dv = p->dv;

	for (int64_t g = 0; g < Hkv; g++) {
		const real *vg = v + (k0 * Hkv + g) * dv;

		rotate_keys(p, k + k0 * Hkv * dk, tk, g, at->k, sc->kr);
		for (int64_t h = g * group; h < (g + 1) * group; h++)
			for (int64_t i = 0; i < tq; i++) {
				const int64_t t = (q0 + i) * H + h;
				real l = attend_row(p, q + t * dk, at->q + i,
					at->k, tk, vg, Hkv * dv, sc, o + t * dv);

				if (lse)
					lse[t] = l;
			}
	}
}

static void scratch_free(struct scratch *sc)
{
	free(sc->logit);
	free(sc->qr);
	free(sc->kr);
}

/* Scratch for sequences of up to max_tk keys; LCA_ERR_NOMEM with
 * everything freed. */
static lca_status scratch_alloc(const lca_params *p, int64_t max_tk,
	struct scratch *sc)
{
	int64_t nkr;

	memset(sc, 0, sizeof *sc);
	/* max_tk * dk cannot exceed the size of k, but check anyway. */
	if (!lcai_mul(max_tk, p->dk, &nkr))
		return lcai_fail(LCA_ERR_NOMEM, "ref softmax: key scratch size overflows");
	sc->kr = alloc_reals(nkr);
	sc->qr = alloc_reals(p->dk);
	sc->logit = alloc_reals(max_tk);
	if (!sc->kr || !sc->qr || !sc->logit) {
		scratch_free(sc);
		return lcai_fail(LCA_ERR_NOMEM, "ref softmax: no memory for %lld keys",
			(long long)max_tk);
	}
	return LCA_OK;
}

lca_status REF(softmax)(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const real *q, const real *k,
	const real *v, real *o, real *lse)
{
	struct scratch sc;
	int64_t max_tk = 0;
	lca_status st;

	for (int64_t n = 0; n < nseq; n++)
		if (cu_k[n + 1] - cu_k[n] > max_tk)
			max_tk = cu_k[n + 1] - cu_k[n];
	if ((st = scratch_alloc(p, max_tk, &sc)) != LCA_OK)
		return st;
	for (int64_t n = 0; n < nseq; n++) {
		const int64_t tq = cu_q[n + 1] - cu_q[n], tk = cu_k[n + 1] - cu_k[n];
		/* bottom-right alignment: the queries are the last tq of tk */
		const struct lcai_pos at = { tk - tq, 0 };

		attend_seq(p, &at, cu_q[n], tq, cu_k[n], tk, q, k, v, o, lse, &sc);
	}
	scratch_free(&sc);
	return LCA_OK;
}

lca_status REF(softmax_at)(const lca_params *p, const struct lcai_pos *at,
	int64_t tq, int64_t tk, const real *q, const real *k, const real *v,
	real *o, real *lse)
{
	struct scratch sc;
	lca_status st;

	if ((st = scratch_alloc(p, tk, &sc)) != LCA_OK)
		return st;
	attend_seq(p, at, 0, tq, 0, tk, q, k, v, o, lse, &sc);
	scratch_free(&sc);
	return LCA_OK;
}
