/*
 * mla_bwd.c - real-precision reference adjoints of multi-head latent
 * attention (lib/ref/mla.c; DeepSeek-V2 sec. 2.1): the gradients of
 * L = sum(o * dout) with respect to q_nope, q_rope, ckv, k_rope, w_uk and
 * w_uv, once for each forward computation:
 *
 *   naive     reverse the per-head decompression: softmax attention's
 *             adjoint gives dk_h[s] = [dkn ; dkr] and dv_h[s], then
 *               dw_uk[h] += dkn ckv[s]^T,      dckv[s] += w_uk[h]^T dkn
 *               dw_uv[h] += dv_h[s] ckv[s]^T,  dckv[s] += w_uv[h]^T dv_h[s]
 *               dk_rope[s] += rope(dkr, -s)
 *   absorbed  reverse the latent computation: with q_lat = w_uk[h]^T q_nope,
 *             lat = sum_s P_s ckv[s] and o = w_uv[h] lat,
 *               dlat = w_uv[h]^T dout,  dw_uv[h] += dout lat^T,
 *               dq_nope = w_uk[h] dq_lat,  dw_uk[h] += q_nope dq_lat^T
 *
 * Both give the same gradients up to rounding (they differentiate the
 * same function), and so check each other. The softmax row adjoint is
 * shared (rowsoftmax.c: dx = P (dP - <P, dP>)); the adjoint of RoPE is the
 * rotation by the negative angle. dckv and dk_rope sum over heads. A fully
 * masked row (o = 0 whatever the inputs) contributes nothing.
 */
#include "internal.h"
#include "real.h"
#include "rowsoftmax.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARGS const lca_params *p, const int64_t *cu_q, const int64_t *cu_k, \
	int64_t nseq, const real *q_nope, const real *q_rope, const real *ckv, \
	const real *k_rope, const real *w_uk, const real *w_uv, \
	const real *dout, real *dq_nope, real *dq_rope, real *dckv, \
	real *dk_rope, real *dw_uk, real *dw_uv

/* Per-call scratch, sized for the longest sequence. "key" rows are
 * [dn+dr] decompressed keys (naive) or [dr] rotated k_rope (absorbed). */
struct scratch {
	real *key;    /* [tk][key size] keys as the forward scores them */
	real *dkey;   /* [tk][key size] their gradient */
	real *val;    /* naive: [tk][dv] decompressed values */
	real *dval;   /* naive: [tk][dv] their gradient */
	real *q;      /* naive: [dn+dr] q_h; absorbed: [dc] q_lat */
	real *dq;     /* gradient of q */
	real *qr;     /* absorbed: [dr] rotated q_rope */
	real *dqr;    /* absorbed: [dr] its gradient */
	real *lat;    /* absorbed: [dc] weighted latent sum */
	real *dlat;   /* absorbed: [dc] its gradient */
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
	real **m[] = { &sc->key, &sc->dkey, &sc->val, &sc->dval, &sc->q,
		&sc->dq, &sc->qr, &sc->dqr, &sc->lat, &sc->dlat, &sc->w,
		&sc->dw };

	for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
		free(*m[i]);
		*m[i] = NULL;
	}
}

/* Allocate the scratch of one path (absorbed != 0 picks which), all of it
 * before any output is touched, so a failed call writes nothing. */
static lca_status scratch_alloc(const lca_params *p, const int64_t *cu_k,
	int64_t nseq, int absorbed, struct scratch *sc)
{
	const int64_t dqk = p->dn + p->dr;
	const int64_t kd = absorbed ? p->dr : dqk;
	int64_t max_tk = 0, nk, nv;
	int ok;

	memset(sc, 0, sizeof *sc);
	for (int64_t n = 0; n < nseq; n++)
		if (cu_k[n + 1] - cu_k[n] > max_tk)
			max_tk = cu_k[n + 1] - cu_k[n];
	if (!lcai_mul(max_tk, kd, &nk) || !lcai_mul(max_tk, p->dv, &nv))
		return lcai_fail(LCA_ERR_NOMEM,
			"ref mla backward: scratch size overflows");
	sc->key = alloc_reals(nk);
	sc->dkey = alloc_reals(nk);
	sc->w = alloc_reals(max_tk);
	sc->dw = alloc_reals(max_tk);
	ok = sc->key && sc->dkey && sc->w && sc->dw;
	if (absorbed) {
		sc->q = alloc_reals(p->dc);
		sc->dq = alloc_reals(p->dc);
		sc->qr = alloc_reals(p->dr);
		sc->dqr = alloc_reals(p->dr);
		sc->lat = alloc_reals(p->dc);
		sc->dlat = alloc_reals(p->dc);
		ok = ok && sc->q && sc->dq && sc->qr && sc->dqr && sc->lat &&
			sc->dlat;
	} else {
		sc->val = alloc_reals(nv);
		sc->dval = alloc_reals(nv);
		sc->q = alloc_reals(dqk);
		sc->dq = alloc_reals(dqk);
		ok = ok && sc->val && sc->dval && sc->q && sc->dq;
	}
	if (!ok) {
		scratch_free(sc);
		return lcai_fail(LCA_ERR_NOMEM,
			"ref mla backward: no memory for %lld keys",
			(long long)max_tk);
	}
	return LCA_OK;
}

/* Gradients are overwritten, never accumulated into: zero them all first
 * (dckv, dk_rope, dw_uk, dw_uv are sums over heads, tokens or both). */
static void zero_grads(const lca_params *p, int64_t Tq, int64_t Tk,
	real *dq_nope, real *dq_rope, real *dckv, real *dk_rope,
	real *dw_uk, real *dw_uv)
{
	const int64_t H = p->H;

	memset(dq_nope, 0, (size_t)(Tq * H * p->dn) * sizeof(real));
	memset(dq_rope, 0, (size_t)(Tq * H * p->dr) * sizeof(real));
	memset(dckv, 0, (size_t)(Tk * p->dc) * sizeof(real));
	memset(dk_rope, 0, (size_t)(Tk * p->dr) * sizeof(real));
	memset(dw_uk, 0, (size_t)(H * p->dn * p->dc) * sizeof(real));
	memset(dw_uv, 0, (size_t)(H * p->dv * p->dc) * sizeof(real));
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

static void zero(real *x, int64_t n)
{
	for (int64_t j = 0; j < n; j++)
		x[j] = 0.0;
}

/* Transpose of ref_rope at position pos: the rotation by -pos. */
static void rope_adjoint(const lca_params *p, real *x, int64_t pos)
{
	ref_rope(x, p->rope_dim, p->rope_style, p->rope_theta, -pos);
}

/* ---- naive ------------------------------------------------------------ */

/* kh[s] = [w_uk[h] ckv[s] ; rope(k_rope[s])], vh[s] = w_uv[h] ckv[s] for
 * the tk keys of a sequence, exactly as mla.c decompresses them. */
static void decompress_head(const lca_params *p, int64_t h, const real *ckv,
	const real *k_rope, int64_t tk, const real *w_uk, const real *w_uv,
	real *kh, real *vh)
{
	const int64_t dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;
	const real *wk = w_uk + h * dn * dc, *wv = w_uv + h * dv * dc;

	for (int64_t s = 0; s < tk; s++) {
		const real *c = ckv + s * dc;
		real *ks = kh + s * (dn + dr);

		for (int64_t j = 0; j < dn; j++)
			ks[j] = dot(wk + j * dc, c, dc);
		memcpy(ks + dn, k_rope + s * dr, (size_t)dr * sizeof(real));
		ref_rope(ks + dn, p->rope_dim, p->rope_style, p->rope_theta, s);
		for (int64_t d = 0; d < dv; d++)
			vh[s * dv + d] = dot(wv + d * dc, c, dc);
	}
}

/* The adjoint of one naive row (softmax attention of q_h against the
 * decompressed head in sc): writes dqn, dqrope of this query and adds to
 * sc->dkey, sc->dval. */
static void naive_row_bwd(const lca_params *p, const real *qn,
	const real *qrope, int64_t pq, int64_t tk, const real *drow,
	struct scratch *sc, real *dqn, real *dqrope)
{
	const int64_t dn = p->dn, dr = p->dr, dqk = dn + dr, dv = p->dv;
	const real scale = (real)p->scale;
	int64_t lo, hi, n;
	real sum;

	REF(key_range)(p, pq, tk, &lo, &hi);
	n = hi - lo;
	if (n <= 0)
		return;
	memcpy(sc->q, qn, (size_t)dn * sizeof(real));
	memcpy(sc->q + dn, qrope, (size_t)dr * sizeof(real));
	ref_rope(sc->q + dn, p->rope_dim, p->rope_style, p->rope_theta, pq);

	for (int64_t s = lo; s < hi; s++)
		sc->w[s - lo] = scale * dot(sc->q, sc->key + s * dqk, dqk);
	REF(row_exp)(sc->w, n, &sum);
	for (int64_t s = lo; s < hi; s++)
		sc->dw[s - lo] = dot(drow, sc->val + s * dv, dv);
	REF(row_exp_bwd)(sc->w, sc->dw, n, sum);

	zero(sc->dq, dqk);
	for (int64_t s = lo; s < hi; s++) {
		const real ds = scale * sc->dw[s - lo];

		axpy(sc->w[s - lo], drow, sc->dval + s * dv, dv);
		axpy(ds, sc->key + s * dqk, sc->dq, dqk);
		axpy(ds, sc->q, sc->dkey + s * dqk, dqk);
	}
	memcpy(dqn, sc->dq, (size_t)dn * sizeof(real));
	rope_adjoint(p, sc->dq + dn, pq);
	memcpy(dqrope, sc->dq + dn, (size_t)dr * sizeof(real));
}

/* Reverse decompress_head: push the head's key and value gradients in sc
 * back onto ckv, k_rope (summed over heads) and the head's weights. */
static void decompress_head_bwd(const lca_params *p, int64_t h,
	const real *ckv, int64_t tk, const real *w_uk, const real *w_uv,
	struct scratch *sc, real *dckv, real *dk_rope, real *dw_uk,
	real *dw_uv)
{
	const int64_t dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;
	const real *wk = w_uk + h * dn * dc, *wv = w_uv + h * dv * dc;
	real *dwk = dw_uk + h * dn * dc, *dwv = dw_uv + h * dv * dc;

	for (int64_t s = 0; s < tk; s++) {
		const real *c = ckv + s * dc;
		real *dks = sc->dkey + s * (dn + dr), *dc_s = dckv + s * dc;
		const real *dvs = sc->dval + s * dv;

		/* k_nope[j] = <w_uk[h][j], c>, v[d] = <w_uv[h][d], c> */
		for (int64_t j = 0; j < dn; j++) {
			axpy(dks[j], c, dwk + j * dc, dc);
			axpy(dks[j], wk + j * dc, dc_s, dc);
		}
		for (int64_t d = 0; d < dv; d++) {
			axpy(dvs[d], c, dwv + d * dc, dc);
			axpy(dvs[d], wv + d * dc, dc_s, dc);
		}
		rope_adjoint(p, dks + dn, s);
		axpy(1.0, dks + dn, dk_rope + s * dr, dr);
	}
}

lca_status REF(mla_naive_bwd)(ARGS)
{
	const int64_t H = p->H, dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;
	struct scratch sc;
	lca_status st = scratch_alloc(p, cu_k, nseq, 0, &sc);

	if (st != LCA_OK)
		return st;
	zero_grads(p, cu_q[nseq], cu_k[nseq], dq_nope, dq_rope, dckv, dk_rope,
		dw_uk, dw_uv);
	for (int64_t n = 0; n < nseq; n++) {
		const int64_t q0 = cu_q[n], tq = cu_q[n + 1] - q0;
		const int64_t k0 = cu_k[n], tk = cu_k[n + 1] - k0;

		for (int64_t h = 0; h < H; h++) {
			decompress_head(p, h, ckv + k0 * dc, k_rope + k0 * dr, tk,
				w_uk, w_uv, sc.key, sc.val);
			zero(sc.dkey, tk * (dn + dr));
			zero(sc.dval, tk * dv);
			for (int64_t i = 0; i < tq; i++) {
				const int64_t t = (q0 + i) * H + h;

				/* bottom-right alignment: last tq of tk */
				naive_row_bwd(p, q_nope + t * dn, q_rope + t * dr,
					tk - tq + i, tk, dout + t * dv, &sc,
					dq_nope + t * dn, dq_rope + t * dr);
			}
			decompress_head_bwd(p, h, ckv + k0 * dc, tk, w_uk, w_uv,
				&sc, dckv + k0 * dc, dk_rope + k0 * dr, dw_uk,
				dw_uv);
		}
	}
	scratch_free(&sc);
	return LCA_OK;
}

/* ---- absorbed --------------------------------------------------------- */

/* Recompute the forward of one absorbed row of head h into sc: q_lat in
 * sc->q, rotated q_rope in sc->qr, the softmax numerators of the n kept
 * keys [lo, lo + n) in sc->w (returned sum) and the latent sum in sc->lat,
 * exactly as mla.c's absorbed_row. */
static real absorbed_row_fwd(const lca_params *p, const real *wk,
	const real *qn, const real *qrope, int64_t pq, const real *ckv,
	int64_t lo, int64_t n, struct scratch *sc)
{
	const int64_t dn = p->dn, dr = p->dr, dc = p->dc;
	const real scale = (real)p->scale;
	real sum;

	zero(sc->q, dc);
	for (int64_t j = 0; j < dn; j++)
		axpy(qn[j], wk + j * dc, sc->q, dc);
	memcpy(sc->qr, qrope, (size_t)dr * sizeof(real));
	ref_rope(sc->qr, p->rope_dim, p->rope_style, p->rope_theta, pq);
	for (int64_t s = lo; s < lo + n; s++)
		sc->w[s - lo] = scale * (dot(sc->q, ckv + s * dc, dc) +
			dot(sc->qr, sc->key + s * dr, dr));
	REF(row_exp)(sc->w, n, &sum);
	REF(row_mix)(sc->w, n, sum, ckv + lo * dc, dc, dc, sc->lat);
	return sum;
}

/* The adjoint of one absorbed row of head h: writes dqn, dqrope, adds to
 * dckv (of the sequence), sc->dkey (rotated k_rope) and the head's
 * weight gradients. */
static void absorbed_row_bwd(const lca_params *p, int64_t h,
	const real *qn, const real *qrope, int64_t pq, int64_t tk,
	const real *ckv, const real *w_uk, const real *w_uv,
	const real *drow, struct scratch *sc, real *dqn, real *dqrope,
	real *dckv, real *dw_uk, real *dw_uv)
{
	const int64_t dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;
	const real *wk = w_uk + h * dn * dc, *wv = w_uv + h * dv * dc;
	real *dwk = dw_uk + h * dn * dc, *dwv = dw_uv + h * dv * dc;
	const real scale = (real)p->scale;
	int64_t lo, hi, n;
	real sum;

	REF(key_range)(p, pq, tk, &lo, &hi);
	n = hi - lo;
	if (n <= 0)
		return;
	sum = absorbed_row_fwd(p, wk, qn, qrope, pq, ckv, lo, n, sc);

	/* o = w_uv[h] lat */
	zero(sc->dlat, dc);
	for (int64_t d = 0; d < dv; d++) {
		axpy(drow[d], wv + d * dc, sc->dlat, dc);
		axpy(drow[d], sc->lat, dwv + d * dc, dc);
	}
	/* lat = sum_s P_s ckv[s] */
	for (int64_t s = lo; s < hi; s++)
		sc->dw[s - lo] = dot(sc->dlat, ckv + s * dc, dc);
	REF(row_exp_bwd)(sc->w, sc->dw, n, sum);

	/* logit_s = scale (<q_lat, ckv[s]> + <rope(q_rope), rope(k_rope[s])>) */
	zero(sc->dq, dc);
	zero(sc->dqr, dr);
	for (int64_t s = lo; s < hi; s++) {
		const real ds = scale * sc->dw[s - lo];

		axpy(sc->w[s - lo], sc->dlat, dckv + s * dc, dc);
		axpy(ds, sc->q, dckv + s * dc, dc);
		axpy(ds, ckv + s * dc, sc->dq, dc);
		axpy(ds, sc->key + s * dr, sc->dqr, dr);
		axpy(ds, sc->qr, sc->dkey + s * dr, dr);
	}
	/* q_lat = w_uk[h]^T q_nope */
	for (int64_t j = 0; j < dn; j++) {
		dqn[j] = dot(wk + j * dc, sc->dq, dc);
		axpy(qn[j], sc->dq, dwk + j * dc, dc);
	}
	rope_adjoint(p, sc->dqr, pq);
	memcpy(dqrope, sc->dqr, (size_t)dr * sizeof(real));
}

lca_status REF(mla_absorbed_bwd)(ARGS)
{
	const int64_t H = p->H, dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;
	struct scratch sc;
	lca_status st = scratch_alloc(p, cu_k, nseq, 1, &sc);

	if (st != LCA_OK)
		return st;
	zero_grads(p, cu_q[nseq], cu_k[nseq], dq_nope, dq_rope, dckv, dk_rope,
		dw_uk, dw_uv);
	for (int64_t n = 0; n < nseq; n++) {
		const int64_t q0 = cu_q[n], tq = cu_q[n + 1] - q0;
		const int64_t k0 = cu_k[n], tk = cu_k[n + 1] - k0;

		/* k_rope is shared by all heads: rotate it once per sequence
		 * and collect its gradient over every head before rotating
		 * that back. */
		for (int64_t s = 0; s < tk; s++) {
			real *dst = sc.key + s * dr;

			memcpy(dst, k_rope + (k0 + s) * dr,
				(size_t)dr * sizeof(real));
			ref_rope(dst, p->rope_dim, p->rope_style,
				p->rope_theta, s);
		}
		zero(sc.dkey, tk * dr);
		for (int64_t h = 0; h < H; h++)
			for (int64_t i = 0; i < tq; i++) {
				const int64_t t = (q0 + i) * H + h;

				absorbed_row_bwd(p, h, q_nope + t * dn,
					q_rope + t * dr, tk - tq + i, tk,
					ckv + k0 * dc, w_uk, w_uv, dout + t * dv,
					&sc, dq_nope + t * dn, dq_rope + t * dr,
					dckv + k0 * dc, dw_uk, dw_uv);
			}
		for (int64_t s = 0; s < tk; s++) {
			rope_adjoint(p, sc.dkey + s * dr, s);
			memcpy(dk_rope + (k0 + s) * dr, sc.dkey + s * dr,
				(size_t)dr * sizeof(real));
		}
	}
	scratch_free(&sc);
	return LCA_OK;
}
