/*
 * deltanet_bwd.c - reference adjoint of the gated delta rule, token by
 * token (the recurrent form of lib/ref/deltanet.c), and the pieces the
 * chunked adjoint (deltanet_chunked_bwd.c) shares with it.
 *
 * Forward, per token t of one value head (Gated Delta Networks, eq. for
 * S_t), with S' the decayed state:
 *
 *   S' = a S_{t-1} (a = exp(g));  u = beta (v - S'^T k);
 *   S_t = S' + k u^T;  o = S_t^T q.
 *
 * Reverse-mode, carrying dS = dL/dS_t from dstate (zeros if NULL) back to
 * dL/dS_0 = dstate0:
 *
 *   dq  = S_t do;           dS += q do^T                 (o = S_t^T q)
 *   du  = dS^T k;           dk  = dS u                   (S_t = S' + k u^T)
 *   dv  = beta du;          dbeta = du . (v - S'^T k);   dp = -beta du
 *   dS += k dp^T;           dk += S' dp                  (p = S'^T k)
 *   dg  = sum(dS (.) S');   dS_{t-1} = a dS              (S' = a S_{t-1})
 *
 * (dg = a sum(dS (.) S_{t-1}), written with S' to need no division.) q and
 * k above are the prepared ones; dn_prepare_adj carries their gradients
 * through q *= scale and the L2 norm.
 *
 * Memory: the adjoint needs S_{t-1} and S_t at every token in reverse
 * order. The reference stores them, (len + 1) dk dv reals for the longest
 * sequence, rather than recompute them (O(T^2)) or run the recurrence
 * backwards (S_{t-1} = (S_t - k u^T) / a divides by a gate that may
 * underflow to 0).
 */
#include "deltanet_bwd.h"

#include <stdlib.h>
#include <string.h>

/* ---- shared pieces ---------------------------------------------------- */

void dn_prepare(const lca_params *p, const real *qs, const real *ks,
	real *qd, real *kd)
{
	int64_t dk = p->dk;
	int64_t i;

	memcpy(qd, qs, (size_t)dk * sizeof(*qd));
	memcpy(kd, ks, (size_t)dk * sizeof(*kd));
	if (p->qk_l2norm) {
		real sq = 0.0, sk = 0.0;

		for (i = 0; i < dk; i++) {
			sq += qd[i] * qd[i];
			sk += kd[i] * kd[i];
		}
		sq = sqrt(sq + DN_L2_EPS);
		sk = sqrt(sk + DN_L2_EPS);
		for (i = 0; i < dk; i++) {
			qd[i] /= sq;
			kd[i] /= sk;
		}
	}
	for (i = 0; i < dk; i++)
		qd[i] *= (real)p->scale;
}

/*
 * With y = x / n, n = sqrt(x . x + eps): dy_i/dx_j = delta_ij / n
 * - x_i x_j / n^3, so J^T dy = (dy - y (y . dy)) / n. The scale multiplies
 * q after the norm, so dy = scale dxh for q and dxh for k.
 */
void dn_prepare_adj(const lca_params *p, int is_q, const real *x,
	const real *dxh, real *dx)
{
	int64_t dk = p->dk, i;
	real s = is_q ? (real)p->scale : (real)1.0;
	real n, ydy;

	if (!p->qk_l2norm) {
		for (i = 0; i < dk; i++)
			dx[i] += s * dxh[i];
		return;
	}
	n = sqrt(dn_dot(x, x, dk) + DN_L2_EPS);
	ydy = 0.0;
	for (i = 0; i < dk; i++)
		ydy += (x[i] / n) * (s * dxh[i]);
	for (i = 0; i < dk; i++)
		dx[i] += (s * dxh[i] - (x[i] / n) * ydy) / n;
}

real dn_dot(const real *a, const real *b, int64_t n)
{
	real s = 0.0;
	int64_t i;

	for (i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

int dn_add_size(int64_t *acc, int64_t a, int64_t b)
{
	int64_t prod;

	if (!lcai_mul(a, b, &prod) || prod > INT64_MAX - *acc)
		return 0;
	*acc += prod;
	return (uint64_t)*acc <= SIZE_MAX / sizeof(real);
}

int64_t dn_max_len(const int64_t *cu, int64_t nseq)
{
	int64_t n, m = 0;

	for (n = 0; n < nseq; n++)
		if (cu[n + 1] - cu[n] > m)
			m = cu[n + 1] - cu[n];
	return m;
}

void dn_zero_grads(const lca_params *p, int64_t T, real *dq, real *dk)
{
	size_t len = (size_t)(T * p->Hk * p->dk);

	memset(dq, 0, len * sizeof(*dq));
	memset(dk, 0, len * sizeof(*dk));
}

void dn_read_slices(const lca_params *p, int64_t n, int64_t h,
	const real *state0, const real *dstate, real *S, real *dS)
{
	int64_t kv = p->dk * p->dv, off = (n * p->H + h) * kv;

	if (state0)
		memcpy(S, state0 + off, (size_t)kv * sizeof(*S));
	else
		memset(S, 0, (size_t)kv * sizeof(*S));
	if (dstate)
		memcpy(dS, dstate + off, (size_t)kv * sizeof(*dS));
	else
		memset(dS, 0, (size_t)kv * sizeof(*dS));
}

void dn_write_dstate0(const lca_params *p, int64_t n, int64_t h,
	const real *dS, real *dstate0)
{
	int64_t len = p->dk * p->dv;

	if (dstate0)
		memcpy(dstate0 + (n * p->H + h) * len, dS,
			(size_t)len * sizeof(*dS));
}

/* ---- recurrent adjoint ------------------------------------------------ */

/* Scratch of one (sequence, head): states, dS, S' and token vectors. */
struct dn_rec_ws {
	real *S;     /* [cap + 1][dk][dv]: S[r] is the state after r tokens */
	real *dS;    /* [dk][dv] dL/dS_t, carried backwards */
	real *Sp;    /* [dk][dv] S' = a S_{t-1}, recomputed */
	real *q, *k, *dq, *dk;  /* [dk] prepared q, k and their gradients */
	real *u, *du, *res;     /* [dv] u, dL/du, v - S'^T k */
	real *block;
};

static lca_status dn_rec_ws_init(struct dn_rec_ws *ws, const lca_params *p,
	int64_t cap)
{
	int64_t dk = p->dk, dv = p->dv, kv = 0, len = 0;
	real *b;

	if (!dn_add_size(&kv, dk, dv) || !dn_add_size(&len, cap + 3, kv) ||
	    !dn_add_size(&len, 4, dk) || !dn_add_size(&len, 3, dv))
		return lcai_fail(LCA_ERR_NOMEM,
			"deltanet ref backward: workspace size overflows");
	b = malloc((size_t)len * sizeof(*b));
	if (!b)
		return lcai_fail(LCA_ERR_NOMEM,
			"deltanet ref backward: cannot allocate %lld reals",
			(long long)len);
	ws->block = b;
	ws->S = b;    b += (cap + 1) * kv;
	ws->dS = b;   b += kv;
	ws->Sp = b;   b += kv;
	ws->q = b;    b += dk;
	ws->k = b;    b += dk;
	ws->dq = b;   b += dk;
	ws->dk = b;   b += dk;
	ws->u = b;    b += dv;
	ws->du = b;   b += dv;
	ws->res = b;
	return LCA_OK;
}

/*
 * S' = a S0 and u = beta (v - S'^T k) into ws (res = v - S'^T k), with the
 * forward's dn_token operations in its order. S1, if not NULL, receives
 * S_t = S' + k u^T.
 */
static void dn_rec_token(const struct dn_rec_ws *ws, const real *S0,
	const real *v, real g, real beta, int64_t dk, int64_t dv, real *S1)
{
	real decay = exp(g);
	int64_t i, j;

	for (i = 0; i < dk * dv; i++)
		ws->Sp[i] = S0[i] * decay;
	for (j = 0; j < dv; j++) {
		real sk = 0.0;

		for (i = 0; i < dk; i++)
			sk += ws->Sp[i * dv + j] * ws->k[i];
		ws->res[j] = v[j] - sk;
		ws->u[j] = beta * ws->res[j];
	}
	if (!S1)
		return;
	for (i = 0; i < dk; i++)
		for (j = 0; j < dv; j++)
			S1[i * dv + j] = ws->Sp[i * dv + j] +
				ws->k[i] * ws->u[j];
}

/*
 * The adjoint of one token (header comment), with S0 = S_{t-1} and
 * S1 = S_t: ws->dS goes from dL/dS_t to dL/dS_{t-1}; writes dq, dk of the
 * prepared q, k into ws and returns dv, dg, dbeta through pointers.
 */
static void dn_rec_token_adj(const struct dn_rec_ws *ws, const real *S0,
	const real *S1, const real *v, real g, real beta, const real *dout,
	int64_t dk, int64_t dv, real *dvt, real *dg, real *dbeta)
{
	real *dS = ws->dS;
	real acc;
	int64_t i, j;

	dn_rec_token(ws, S0, v, g, beta, dk, dv, NULL);
	for (i = 0; i < dk; i++) {
		ws->dq[i] = dn_dot(S1 + i * dv, dout, dv);
		for (j = 0; j < dv; j++)
			dS[i * dv + j] += ws->q[i] * dout[j];
		ws->dk[i] = dn_dot(dS + i * dv, ws->u, dv);
	}
	*dbeta = 0.0;
	for (j = 0; j < dv; j++) {
		acc = 0.0;
		for (i = 0; i < dk; i++)
			acc += dS[i * dv + j] * ws->k[i];
		ws->du[j] = acc;
		dvt[j] = beta * acc;
		*dbeta += acc * ws->res[j];
	}
	/* dp = -beta du: the prediction S'^T k feeds u with weight -beta. */
	for (i = 0; i < dk; i++)
		for (j = 0; j < dv; j++) {
			real dp = -beta * ws->du[j];

			dS[i * dv + j] += ws->k[i] * dp;
			ws->dk[i] += ws->Sp[i * dv + j] * dp;
		}
	*dg = 0.0;
	for (i = 0; i < dk * dv; i++) {
		*dg += dS[i] * ws->Sp[i];
		dS[i] *= exp(g);
	}
}

/* Tokens t0 .. t1-1 of value head h: forward storing states, then back. */
static void dn_rec_head(const lca_params *p, int64_t t0, int64_t t1,
	int64_t h, const real *q, const real *k, const real *v,
	const real *g, const real *beta, const real *dout,
	const struct dn_rec_ws *ws, real *dq, real *dk, real *dv, real *dg,
	real *dbeta)
{
	int64_t H = p->H, Hk = p->Hk, d = p->dk, e = p->dv, kv = d * e;
	int64_t hk = dn_qk_head(p, h);
	int64_t t, r, iq, iv;

	for (t = t0; t < t1; t++) {
		r = t - t0;
		iq = (t * Hk + hk) * d;
		iv = t * H + h;
		dn_prepare(p, q + iq, k + iq, ws->q, ws->k);
		dn_rec_token(ws, ws->S + r * kv, v + iv * e, g[iv], beta[iv],
			d, e, ws->S + (r + 1) * kv);
	}
	for (t = t1 - 1; t >= t0; t--) {
		r = t - t0;
		iq = (t * Hk + hk) * d;
		iv = t * H + h;
		dn_prepare(p, q + iq, k + iq, ws->q, ws->k);
		dn_rec_token_adj(ws, ws->S + r * kv, ws->S + (r + 1) * kv,
			v + iv * e, g[iv], beta[iv], dout + iv * e, d, e,
			dv + iv * e, dg + iv, dbeta + iv);
		dn_prepare_adj(p, 1, q + iq, ws->dq, dq + iq);
		dn_prepare_adj(p, 0, k + iq, ws->dk, dk + iq);
	}
}

lca_status REF(deltanet_recurrent_bwd)(const lca_params *p, const int64_t *cu,
	int64_t nseq, const real *q, const real *k, const real *v,
	const real *g, const real *beta, const real *state0, const real *dout,
	const real *dstate, real *dq, real *dk, real *dv, real *dg,
	real *dbeta, real *dstate0)
{
	struct dn_rec_ws ws = { 0 };
	int64_t n, h;
	lca_status st;

	st = dn_rec_ws_init(&ws, p, dn_max_len(cu, nseq));
	if (st != LCA_OK)
		return st;
	dn_zero_grads(p, cu[nseq], dq, dk);
	for (n = 0; n < nseq; n++) {
		for (h = 0; h < p->H; h++) {
			dn_read_slices(p, n, h, state0, dstate, ws.S, ws.dS);
			dn_rec_head(p, cu[n], cu[n + 1], h, q, k, v, g, beta,
				dout, &ws, dq, dk, dv, dg, dbeta);
			dn_write_dstate0(p, n, h, ws.dS, dstate0);
		}
	}
	free(ws.block);
	return LCA_OK;
}
