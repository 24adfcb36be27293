/*
 * mla.c - real-precision reference for multi-head latent attention
 * (DeepSeek-V2, sec. 2.1, eqs. 9-19), computed two ways that must agree:
 *
 *   naive     decompress per head  k_h[s] = [w_uk[h] ckv[s] ; rope(k_rope[s])],
 *             v_h[s] = w_uv[h] ckv[s], then plain softmax attention with
 *             q_h = [q_nope ; rope(q_rope)]                         (eqs. 10-19)
 *   absorbed  fold w_uk into the query, q_lat = w_uk[h]^T q_nope, score the
 *             latent cache directly, and apply w_uv once to the weighted
 *             latent sum (the "absorb" remark after eq. 19)
 *
 * Both use the same positions and masks as softmax.c (bottom-right causal
 * alignment, optional window) and the same row normalisation (rowsoftmax.c).
 * The rope part is rotated with p->rope_dim <= dr coordinates.
 */
#include "internal.h"
#include "real.h"
#include "rowsoftmax.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Per-call scratch, sized for the longest sequence. The naive path uses
 * kh, vh, q and logit; the absorbed path kr, q (as q_lat), qr, logit, lat. */
struct scratch {
	real *kh;     /* naive: [tk][dn+dr] decompressed keys of one head */
	real *vh;     /* naive: [tk][dv] decompressed values of one head */
	real *kr;     /* absorbed: [tk][dr] rotated k_rope of the sequence */
	real *q;      /* naive: [dn+dr] q_h; absorbed: [dc] q_lat */
	real *qr;     /* absorbed: [dr] rotated q_rope */
	real *lat;    /* absorbed: [dc] weighted latent sum */
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

static void scratch_free(struct scratch *sc)
{
	free(sc->kh);
	free(sc->vh);
	free(sc->kr);
	free(sc->q);
	free(sc->qr);
	free(sc->lat);
	free(sc->logit);
}

/* Allocate the scratch of one path (absorbed != 0 picks which). Unused
 * members stay NULL. Returns LCA_ERR_NOMEM with everything freed. */
static lca_status scratch_alloc(const lca_params *p, int64_t max_tk,
	int absorbed, struct scratch *sc)
{
	const int64_t dqk = p->dn + p->dr;
	int64_t nk, nv, nr;
	int ok;

	memset(sc, 0, sizeof *sc);
	/* tk * (dn + dr) and tk * dv bound no input tensor: check them. */
	if (!lcai_mul(max_tk, dqk, &nk) || !lcai_mul(max_tk, p->dv, &nv) ||
	    !lcai_mul(max_tk, p->dr, &nr))
		return lcai_fail(LCA_ERR_NOMEM, "ref mla: scratch size overflows");

	sc->logit = alloc_reals(max_tk);
	if (absorbed) {
		sc->kr = alloc_reals(nr);
		sc->q = alloc_reals(p->dc);
		sc->qr = alloc_reals(p->dr);
		sc->lat = alloc_reals(p->dc);
		ok = sc->kr && sc->q && sc->qr && sc->lat;
	} else {
		sc->kh = alloc_reals(nk);
		sc->vh = alloc_reals(nv);
		sc->q = alloc_reals(dqk);
		ok = sc->kh && sc->vh && sc->q;
	}
	if (!ok || !sc->logit) {
		scratch_free(sc);
		return lcai_fail(LCA_ERR_NOMEM, "ref mla: no memory for %lld keys",
			(long long)max_tk);
	}
	return LCA_OK;
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

/* ---- naive: decompress K and V of one head ---------------------------- */

/* kh[s] = [w_uk[h] ckv[s] ; rope(k_rope[s])], vh[s] = w_uv[h] ckv[s] for the
 * tk keys of a sequence (ckv, k_rope point at its first token; key s at
 * position k0 + s). */
static void decompress_head(const lca_params *p, int64_t h, const real *ckv,
	const real *k_rope, int64_t k0, int64_t tk, const real *w_uk,
	const real *w_uv, real *kh, real *vh)
{
	const int64_t dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;
	const real *wk = w_uk + h * dn * dc, *wv = w_uv + h * dv * dc;

	for (int64_t s = 0; s < tk; s++) {
		const real *c = ckv + s * dc;
		real *ks = kh + s * (dn + dr);

		for (int64_t j = 0; j < dn; j++)
			ks[j] = dot(wk + j * dc, c, dc);
		memcpy(ks + dn, k_rope + s * dr, (size_t)dr * sizeof(real));
		ref_rope(ks + dn, p->rope_dim, p->rope_style,
			p->rope_theta, k0 + s);
		for (int64_t d = 0; d < dv; d++)
			vh[s * dv + d] = dot(wv + d * dc, c, dc);
	}
}

/* One query at position pq against the decompressed head in sc (key s at
 * position k0 + s); returns its log-sum-exp and writes orow (o = 0, -inf
 * when every key is masked). */
static real naive_row(const lca_params *p, const real *qn,
	const real *qrope, int64_t pq, int64_t k0, int64_t tk,
	struct scratch *sc, real *orow)
{
	const int64_t dn = p->dn, dr = p->dr, dqk = dn + dr;
	int64_t lo, hi;
	real sum, l;

	memcpy(sc->q, qn, (size_t)dn * sizeof(real));
	memcpy(sc->q + dn, qrope, (size_t)dr * sizeof(real));
	ref_rope(sc->q + dn, p->rope_dim, p->rope_style, p->rope_theta, pq);

	REF(key_range)(p, pq - k0, tk, &lo, &hi);
	for (int64_t s = lo; s < hi; s++) {
		sc->logit[s - lo] = (real)p->scale * dot(sc->q, sc->kh + s * dqk, dqk);
		FLOPS(1);
	}
	l = REF(row_exp)(sc->logit, hi - lo, &sum);
	REF(row_mix)(sc->logit, hi - lo, sum, sc->vh + lo * p->dv, p->dv,
		p->dv, orow);
	return l;
}

/* Longest key run of nseq sequences. */
static int64_t max_len(const int64_t *cu, int64_t nseq)
{
	int64_t m = 0;

	for (int64_t n = 0; n < nseq; n++)
		if (cu[n + 1] - cu[n] > m)
			m = cu[n + 1] - cu[n];
	return m;
}

/* Every head of one sequence: queries from token q0 of the tensors, keys
 * from k0, query i at position at->q + i, key s at at->k + s. */
static void naive_seq(const lca_params *p, const struct lcai_pos *at,
	int64_t q0, int64_t tq, int64_t k0, int64_t tk, const real *q_nope,
	const real *q_rope, const real *ckv, const real *k_rope,
	const real *w_uk, const real *w_uv, real *o, real *lse,
	struct scratch *sc)
{
	const int64_t H = p->H, dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;

	for (int64_t h = 0; h < H; h++) {
		decompress_head(p, h, ckv + k0 * dc, k_rope + k0 * dr, at->k, tk,
			w_uk, w_uv, sc->kh, sc->vh);
		for (int64_t i = 0; i < tq; i++) {
			const int64_t t = (q0 + i) * H + h;
			real l = naive_row(p, q_nope + t * dn, q_rope + t * dr,
				at->q + i, at->k, tk, sc, o + t * dv);

			if (lse)
				lse[t] = l;
		}
	}
}

lca_status REF(mla_naive)(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const real *q_nope,
	const real *q_rope, const real *ckv, const real *k_rope,
	const real *w_uk, const real *w_uv, real *o, real *lse)
{
	struct scratch sc;
	lca_status st = scratch_alloc(p, max_len(cu_k, nseq), 0, &sc);

	if (st != LCA_OK)
		return st;
	for (int64_t n = 0; n < nseq; n++) {
		const int64_t tq = cu_q[n + 1] - cu_q[n], tk = cu_k[n + 1] - cu_k[n];
		/* bottom-right alignment: the queries are the last tq of tk */
		const struct lcai_pos at = { tk - tq, 0 };

		naive_seq(p, &at, cu_q[n], tq, cu_k[n], tk, q_nope, q_rope, ckv,
			k_rope, w_uk, w_uv, o, lse, &sc);
	}
	scratch_free(&sc);
	return LCA_OK;
}

lca_status REF(mla_naive_at)(const lca_params *p, const struct lcai_pos *at,
	int64_t tq, int64_t tk, const real *q_nope, const real *q_rope,
	const real *ckv, const real *k_rope, const real *w_uk,
	const real *w_uv, real *o, real *lse)
{
	struct scratch sc;
	lca_status st = scratch_alloc(p, tk, 0, &sc);

	if (st != LCA_OK)
		return st;
	naive_seq(p, at, 0, tq, 0, tk, q_nope, q_rope, ckv, k_rope, w_uk, w_uv,
		o, lse, &sc);
	scratch_free(&sc);
	return LCA_OK;
}

/* ---- absorbed: attend in the latent space ----------------------------- */

/* One query of head h at position pq against the sequence's latent cache
 * ckv and rotated k_rope (sc->kr). The logit of key s is
 *   scale * (q_lat . ckv[s] + rope(q_rope) . rope(k_rope[s])),
 * q_lat = w_uk[h]^T q_nope, equal to the naive q_h . k_h[s] because
 * q_nope . (w_uk[h] ckv[s]) = (w_uk[h]^T q_nope) . ckv[s]. Likewise
 * sum_s p_s w_uv[h] ckv[s] = w_uv[h] (sum_s p_s ckv[s]). */
static real absorbed_row(const lca_params *p, int64_t h, const real *qn,
	const real *qrope, int64_t pq, int64_t k0, int64_t tk, const real *ckv,
	const real *w_uk, const real *w_uv, struct scratch *sc,
	real *orow)
{
	const int64_t dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;
	const real *wk = w_uk + h * dn * dc, *wv = w_uv + h * dv * dc;
	int64_t lo, hi;
	real sum, l;

	for (int64_t c = 0; c < dc; c++)
		sc->q[c] = 0.0;
	for (int64_t j = 0; j < dn; j++)
		for (int64_t c = 0; c < dc; c++) {
			sc->q[c] += wk[j * dc + c] * qn[j];
			FLOPS(2);
		}
	memcpy(sc->qr, qrope, (size_t)dr * sizeof(real));
	ref_rope(sc->qr, p->rope_dim, p->rope_style, p->rope_theta, pq);

	REF(key_range)(p, pq - k0, tk, &lo, &hi);
	for (int64_t s = lo; s < hi; s++) {
		sc->logit[s - lo] = (real)p->scale * (dot(sc->q, ckv + s * dc, dc) +
			dot(sc->qr, sc->kr + s * dr, dr));
		FLOPS(2);
	}
	l = REF(row_exp)(sc->logit, hi - lo, &sum);
	/* A fully masked row leaves lat = 0, hence o = 0. */
	REF(row_mix)(sc->logit, hi - lo, sum, ckv + lo * dc, dc, dc, sc->lat);
	for (int64_t d = 0; d < dv; d++)
		orow[d] = dot(wv + d * dc, sc->lat, dc);
	return l;
}

/* Every head of one sequence, positions as for naive_seq. */
static void absorbed_seq(const lca_params *p, const struct lcai_pos *at,
	int64_t q0, int64_t tq, int64_t k0, int64_t tk, const real *q_nope,
	const real *q_rope, const real *ckv, const real *k_rope,
	const real *w_uk, const real *w_uv, real *o, real *lse,
	struct scratch *sc)
{
	const int64_t H = p->H, dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;

	/* k_rope is shared by all heads: rotate it once per sequence. */
	for (int64_t s = 0; s < tk; s++) {
		real *dst = sc->kr + s * dr;

		memcpy(dst, k_rope + (k0 + s) * dr, (size_t)dr * sizeof(real));
		ref_rope(dst, p->rope_dim, p->rope_style, p->rope_theta, at->k + s);
	}
	for (int64_t h = 0; h < H; h++)
		for (int64_t i = 0; i < tq; i++) {
			const int64_t t = (q0 + i) * H + h;
			real l = absorbed_row(p, h, q_nope + t * dn, q_rope + t * dr,
				at->q + i, at->k, tk, ckv + k0 * dc, w_uk, w_uv, sc,
				o + t * dv);

			if (lse)
				lse[t] = l;
		}
}

lca_status REF(mla_absorbed)(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const real *q_nope,
	const real *q_rope, const real *ckv, const real *k_rope,
	const real *w_uk, const real *w_uv, real *o, real *lse)
{
	struct scratch sc;
	lca_status st = scratch_alloc(p, max_len(cu_k, nseq), 1, &sc);

	if (st != LCA_OK)
		return st;
	for (int64_t n = 0; n < nseq; n++) {
		const int64_t tq = cu_q[n + 1] - cu_q[n], tk = cu_k[n + 1] - cu_k[n];
		const struct lcai_pos at = { tk - tq, 0 };

		absorbed_seq(p, &at, cu_q[n], tq, cu_k[n], tk, q_nope, q_rope, ckv,
			k_rope, w_uk, w_uv, o, lse, &sc);
	}
	scratch_free(&sc);
	return LCA_OK;
}

lca_status REF(mla_absorbed_at)(const lca_params *p,
	const struct lcai_pos *at, int64_t tq, int64_t tk, const real *q_nope,
	const real *q_rope, const real *ckv, const real *k_rope,
	const real *w_uk, const real *w_uv, real *o, real *lse)
{
	struct scratch sc;
	lca_status st = scratch_alloc(p, tk, 1, &sc);

	if (st != LCA_OK)
		return st;
	absorbed_seq(p, at, 0, tq, 0, tk, q_nope, q_rope, ckv, k_rope, w_uk,
		w_uv, o, lse, &sc);
	scratch_free(&sc);
	return LCA_OK;
}
