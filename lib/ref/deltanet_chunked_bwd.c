/*
 * deltanet_chunked_bwd.c - reference adjoint of the chunked (WY/UT) form
 * of Gated DeltaNet, as lib/ref/deltanet.c computes it (its comment
 * derives equations (1)-(5) used here). Per chunk of C tokens r = 0..C-1
 * entered with state S0, L = C - 1:
 *
 *   gamma_r = exp(sum_{j<=r} g_j);  dec[r][i] = exp(sum_{i<j<=r} g_j)
 *   (I + A) X = B,  A[r][i] = beta_r dec[r][i] (k_r . k_i) for i < r,
 *                   B_r = [beta_r gamma_r k_r | beta_r v_r],  X = [W | U~]
 *   U   = U~ - W S0                                                   (3)
 *   o_r = gamma_r S0^T q_r + sum_{i<=r} dec[r][i] (q_r . k_i) u_i       (4)
 *   S_C = gamma_L S0 + sum_r dec[L][r] k_r u_r^T                       (5)
 *
 * The adjoint walks the chunks backwards carrying dS = dL/dS_C and, in
 * each chunk, runs the adjoints of (5), (4), (3), the solve and the
 * decays in that order. The solve's adjoint is the transposed system
 * (I + A)^T dB = dX (back substitution), with dA = -dB X^T on the strict
 * lower triangle.
 *
 * Gates: every decay is exp of a range sum of g (<= 0), never a ratio or
 * a difference of cumulative sums, and the adjoint multiplies by these
 * factors instead of dividing: d gamma_r / d g_j = gamma_r (j <= r) and
 * d dec[r][i] / d g_j = dec[r][i] (i < j <= r). No exp of a positive
 * number, no 0 * inf when a gate underflows, so no NaN source.
 *
 * Memory: the state entering each chunk of the longest sequence is kept
 * from a forward sweep, (nchunks + 1) dk dv reals; everything inside a
 * chunk is recomputed from the inputs.
 */
#include "deltanet_bwd.h"

#include <stdlib.h>
#include <string.h>

/* Workspace for one chunk of up to cap tokens (pointers into one block). */
struct dn_cws {
	real *S;      /* [nck + 1][dk][dv] state entering chunk c */
	real *dS;     /* [dk][dv] dL/dS_C carried back, then dL/dS0 */
	real *dS0;    /* [dk][dv] dL/dS0 being accumulated */
	real *q, *k;  /* [cap][dk] prepared q and k */
	real *v;      /* [cap][dv] */
	real *g, *beta, *gamma;  /* [cap] */
	real *dec;    /* [cap][cap] dec[r][i], i <= r */
	real *x;      /* [cap][dk+dv] X = [W | U~] */
	real *u;      /* [cap][dv] U */
	real *dq, *dk;           /* [cap][dk] gradients of prepared q, k */
	real *dx;     /* [cap][dk+dv] dX = [dW | dU], then dB in place */
	real *dbeta, *dgamma, *dg;  /* [cap] */
	real *ddec;   /* [cap][cap] */
	real *block;
};

static lca_status dn_cws_init(struct dn_cws *ws, const lca_params *p,
	int64_t cap, int64_t nck)
{
	int64_t dk = p->dk, dv = p->dv, kv = 0, len = 0;
	real *b;

	if (!dn_add_size(&kv, dk, dv) || !dn_add_size(&len, nck + 3, kv) ||
	    !dn_add_size(&len, cap, 4 * dk + dv) ||
	    !dn_add_size(&len, cap, 2 * (dk + dv) + dv) ||
	    !dn_add_size(&len, cap, 6) || !dn_add_size(&len, cap, 2 * cap))
		return lcai_fail(LCA_ERR_NOMEM,
			"deltanet ref backward: chunk workspace overflows");
	b = malloc((size_t)len * sizeof(*b));
	if (!b)
		return lcai_fail(LCA_ERR_NOMEM,
			"deltanet ref backward: cannot allocate %lld reals",
			(long long)len);
	ws->block = b;
	ws->S = b;      b += (nck + 1) * kv;
	ws->dS = b;     b += kv;
	ws->dS0 = b;    b += kv;
	ws->q = b;      b += cap * dk;
	ws->k = b;      b += cap * dk;
	ws->dq = b;     b += cap * dk;
	ws->dk = b;     b += cap * dk;
	ws->v = b;      b += cap * dv;
	ws->x = b;      b += cap * (dk + dv);
	ws->dx = b;     b += cap * (dk + dv);
	ws->u = b;      b += cap * dv;
	ws->g = b;      b += cap;
	ws->beta = b;   b += cap;
	ws->gamma = b;  b += cap;
	ws->dbeta = b;  b += cap;
	ws->dgamma = b; b += cap;
	ws->dg = b;     b += cap;
	ws->dec = b;    b += cap * cap;
	ws->ddec = b;
	return LCA_OK;
}

/* ---- the forward chunk, recomputed ------------------------------------ */

/* Tokens t0 .. t0+C-1 of value head h, q and k prepared; decays. */
static void dn_cgather(const lca_params *p, int64_t t0, int64_t C,
	int64_t h, const real *q, const real *k, const real *v,
	const real *g, const real *beta, const struct dn_cws *ws)
{
	int64_t H = p->H, Hk = p->Hk, dk = p->dk, dv = p->dv;
	int64_t hk = dn_qk_head(p, h);
	int64_t r, i, t;
	real s;

	for (r = 0; r < C; r++) {
		t = t0 + r;
		dn_prepare(p, q + (t * Hk + hk) * dk,
			k + (t * Hk + hk) * dk, ws->q + r * dk, ws->k + r * dk);
		memcpy(ws->v + r * dv, v + (t * H + h) * dv,
			(size_t)dv * sizeof(*ws->v));
		ws->g[r] = g[t * H + h];
		ws->beta[r] = beta[t * H + h];
	}
	/* Each range sum accumulated on its own (deltanet.c's trap). */
	s = 0.0;
	for (r = 0; r < C; r++) {
		s += ws->g[r];
		ws->gamma[r] = exp(s);
	}
	for (i = 0; i < C; i++) {
		s = 0.0;
		ws->dec[i * C + i] = 1.0;
		for (r = i + 1; r < C; r++) {
			s += ws->g[r];
			ws->dec[r * C + i] = exp(s);
		}
	}
}

/* A[r][i] of the solve, i < r. */
static real dn_ca(const struct dn_cws *ws, int64_t C, int64_t dk,
	int64_t r, int64_t i)
{
	return ws->beta[r] * ws->dec[r * C + i] *
		dn_dot(ws->k + r * dk, ws->k + i * dk, dk);
}

/* X = (I + A)^{-1} B by forward substitution, then U = U~ - W S0. */
static void dn_csolve(const struct dn_cws *ws, int64_t C, int64_t dk,
	int64_t dv, const real *S0)
{
	int64_t w = dk + dv;
	int64_t r, i, j;

	for (r = 0; r < C; r++) {
		real *xr = ws->x + r * w;
		real bg = ws->beta[r] * ws->gamma[r];

		for (j = 0; j < dk; j++)
			xr[j] = bg * ws->k[r * dk + j];
		for (j = 0; j < dv; j++)
			xr[dk + j] = ws->beta[r] * ws->v[r * dv + j];
		for (i = 0; i < r; i++) {
			real a = dn_ca(ws, C, dk, r, i);

			for (j = 0; j < w; j++)
				xr[j] -= a * ws->x[i * w + j];
		}
		for (j = 0; j < dv; j++) {
			real ws0 = 0.0;

			for (i = 0; i < dk; i++)
				ws0 += xr[i] * S0[i * dv + j];
			ws->u[r * dv + j] = xr[dk + j] - ws0;
		}
	}
}

/* (5): S1 = gamma_L S0 + sum_r dec[L][r] k_r u_r^T. */
static void dn_cadvance(const struct dn_cws *ws, int64_t C, int64_t dk,
	int64_t dv, const real *S0, real *S1)
{
	const real *last = ws->dec + (C - 1) * C;
	int64_t r, i, j;

	for (i = 0; i < dk * dv; i++)
		S1[i] = S0[i] * ws->gamma[C - 1];
	for (r = 0; r < C; r++)
		for (i = 0; i < dk; i++) {
			real c = last[r] * ws->k[r * dk + i];

			for (j = 0; j < dv; j++)
				S1[i * dv + j] += c * ws->u[r * dv + j];
		}
}

/* ---- adjoints, in reverse order of the forward ------------------------ */

/* Of (5), given dS = dL/dS_C: into dS0, dgamma_L, ddec[L][.], dk, dU. */
static void dn_cadvance_adj(const struct dn_cws *ws, int64_t C, int64_t dk,
	int64_t dv, const real *S0)
{
	int64_t L = C - 1, w = dk + dv;
	int64_t r, i, j;

	for (i = 0; i < dk * dv; i++) {
		ws->dS0[i] += ws->gamma[L] * ws->dS[i];
		ws->dgamma[L] += ws->dS[i] * S0[i];
	}
	for (r = 0; r < C; r++) {
		real d = ws->dec[L * C + r], kdu = 0.0;

		for (i = 0; i < dk; i++) {
			/* m_i = (dS u_r)_i feeds dk_r and ddec[L][r]. */
			real m = dn_dot(ws->dS + i * dv, ws->u + r * dv, dv);

			kdu += ws->k[r * dk + i] * m;
			ws->dk[r * dk + i] += d * m;
			for (j = 0; j < dv; j++)
				ws->dx[r * w + dk + j] += d *
					ws->k[r * dk + i] * ws->dS[i * dv + j];
		}
		ws->ddec[L * C + r] += kdu;
	}
}

/* Of (4), the outputs of tokens t0 .. t0+C-1 of value head h. */
static void dn_coutput_adj(const lca_params *p, const struct dn_cws *ws,
	int64_t C, int64_t t0, int64_t h, const real *dout, const real *S0)
{
	int64_t dk = p->dk, dv = p->dv, w = dk + dv;
	int64_t r, i, j;

	for (r = 0; r < C; r++) {
		const real *dor = dout + ((t0 + r) * p->H + h) * dv;
		const real *qr = ws->q + r * dk;
		real gr = ws->gamma[r];

		for (i = 0; i < dk; i++) {
			/* o_r's gamma_r S0^T q_r term. */
			real sd = dn_dot(S0 + i * dv, dor, dv);

			ws->dgamma[r] += qr[i] * sd;
			ws->dq[r * dk + i] += gr * sd;
			for (j = 0; j < dv; j++)
				ws->dS0[i * dv + j] += gr * qr[i] * dor[j];
		}
		for (i = 0; i <= r; i++) {
			real d = ws->dec[r * C + i];
			real qk = dn_dot(qr, ws->k + i * dk, dk);
			real s = dn_dot(dor, ws->u + i * dv, dv);

			for (j = 0; j < dv; j++)
				ws->dx[i * w + dk + j] += d * qk * dor[j];
			ws->ddec[r * C + i] += qk * s;
			for (j = 0; j < dk; j++) {
				ws->dq[r * dk + j] += d * s * ws->k[i * dk + j];
				ws->dk[i * dk + j] += d * s * qr[j];
			}
		}
	}
}

/* Of (3), U = U~ - W S0: dU~ = dU (in place), dW = -dU S0^T,
 * dS0 -= W^T dU. */
static void dn_cpseudo_adj(const struct dn_cws *ws, int64_t C, int64_t dk,
	int64_t dv, const real *S0)
{
	int64_t w = dk + dv;
	int64_t r, i, j;

	for (r = 0; r < C; r++) {
		const real *du = ws->dx + r * w + dk;

		for (i = 0; i < dk; i++) {
			ws->dx[r * w + i] = -dn_dot(du, S0 + i * dv, dv);
			for (j = 0; j < dv; j++)
				ws->dS0[i * dv + j] -= ws->x[r * w + i] * du[j];
		}
	}
}

/*
 * Of the solve (I + A) X = B: dB = (I + A)^{-T} dX by back substitution,
 * in place (dB_r = dX_r - sum_{s>r} A[s][r] dB_s), then dA = -dB X^T and
 * dB pushed into beta, gamma, k and v (dv straight to the output row).
 */
static void dn_csolve_adj(const lca_params *p, const struct dn_cws *ws,
	int64_t C, int64_t t0, int64_t h, real *dv_out)
{
	int64_t dk = p->dk, dv = p->dv, w = dk + dv;
	int64_t r, s, j;

	for (r = C - 1; r >= 0; r--)
		for (s = r + 1; s < C; s++) {
			real a = dn_ca(ws, C, dk, s, r);

			for (j = 0; j < w; j++)
				ws->dx[r * w + j] -= a * ws->dx[s * w + j];
		}
	for (s = 0; s < C; s++)
		for (r = 0; r < s; r++) {
			const real *ks = ws->k + s * dk, *kr = ws->k + r * dk;
			real kk = dn_dot(ks, kr, dk), d = ws->dec[s * C + r];
			real da = -dn_dot(ws->dx + s * w, ws->x + r * w, w);
			real dab = da * ws->beta[s] * d;

			ws->dbeta[s] += da * d * kk;
			ws->ddec[s * C + r] += da * ws->beta[s] * kk;
			for (j = 0; j < dk; j++) {
				ws->dk[s * dk + j] += dab * kr[j];
				ws->dk[r * dk + j] += dab * ks[j];
			}
		}
	for (r = 0; r < C; r++) {
		const real *db = ws->dx + r * w, *kr = ws->k + r * dk;
		real *dvr = dv_out + ((t0 + r) * p->H + h) * dv;
		real kdb = dn_dot(db, kr, dk), bg = ws->beta[r] * ws->gamma[r];

		ws->dbeta[r] += ws->gamma[r] * kdb +
			dn_dot(db + dk, ws->v + r * dv, dv);
		ws->dgamma[r] += ws->beta[r] * kdb;
		for (j = 0; j < dk; j++)
			ws->dk[r * dk + j] += bg * db[j];
		for (j = 0; j < dv; j++)
			dvr[j] = ws->beta[r] * db[dk + j];
	}
}

/*
 * Of the decays: dg_j = sum_{r>=j} dgamma_r gamma_r
 *                     + sum_{i<j<=r} ddec[r][i] dec[r][i],
 * the second sum as, per column i, a running sum over r from the bottom.
 */
static void dn_cdecay_adj(const struct dn_cws *ws, int64_t C)
{
	int64_t r, i;
	real acc;

	acc = 0.0;
	for (r = C - 1; r >= 0; r--) {
		acc += ws->dgamma[r] * ws->gamma[r];
		ws->dg[r] = acc;
	}
	for (i = 0; i < C; i++) {
		acc = 0.0;
		for (r = C - 1; r > i; r--) {
			acc += ws->ddec[r * C + i] * ws->dec[r * C + i];
			ws->dg[r] += acc;
		}
	}
}

/* One chunk t0 .. t0+C-1 of value head h entered with S0: ws->dS goes
 * from dL/dS_C to dL/dS0; writes dv, dg, dbeta and adds into dq, dk. */
static void dn_cstep_adj(const lca_params *p, int64_t t0, int64_t C,
	int64_t h, const real *q, const real *k, const real *v,
	const real *g, const real *beta, const real *dout,
	const struct dn_cws *ws, const real *S0, real *dq, real *dk,
	real *dv, real *dg, real *dbeta)
{
	int64_t d = p->dk, e = p->dv, kv = d * e;
	int64_t hk = dn_qk_head(p, h), r, t, iq;

	dn_cgather(p, t0, C, h, q, k, v, g, beta, ws);
	dn_csolve(ws, C, d, e, S0);
	memset(ws->dS0, 0, (size_t)kv * sizeof(*ws->dS0));
	memset(ws->dq, 0, (size_t)(C * d) * sizeof(*ws->dq));
	memset(ws->dk, 0, (size_t)(C * d) * sizeof(*ws->dk));
	memset(ws->dx, 0, (size_t)(C * (d + e)) * sizeof(*ws->dx));
	memset(ws->dbeta, 0, (size_t)C * sizeof(*ws->dbeta));
	memset(ws->dgamma, 0, (size_t)C * sizeof(*ws->dgamma));
	memset(ws->ddec, 0, (size_t)(C * C) * sizeof(*ws->ddec));
	dn_cadvance_adj(ws, C, d, e, S0);
	dn_coutput_adj(p, ws, C, t0, h, dout, S0);
	dn_cpseudo_adj(ws, C, d, e, S0);
	dn_csolve_adj(p, ws, C, t0, h, dv);
	dn_cdecay_adj(ws, C);
	for (r = 0; r < C; r++) {
		t = t0 + r;
		iq = (t * p->Hk + hk) * d;
		dn_prepare_adj(p, 1, q + iq, ws->dq + r * d, dq + iq);
		dn_prepare_adj(p, 0, k + iq, ws->dk + r * d, dk + iq);
		dg[t * p->H + h] = ws->dg[r];
		dbeta[t * p->H + h] = ws->dbeta[r];
	}
	memcpy(ws->dS, ws->dS0, (size_t)kv * sizeof(*ws->dS));
}

/* Value head h of sequence t0 .. t1-1: forward sweep keeping the state
 * entering each chunk (ws->S[0] loaded by the caller), then back. */
static void dn_chead_adj(const lca_params *p, int64_t t0, int64_t t1,
	int64_t h, const real *q, const real *k, const real *v,
	const real *g, const real *beta, const real *dout,
	const struct dn_cws *ws, real *dq, real *dk, real *dv, real *dg,
	real *dbeta)
{
	int64_t kv = p->dk * p->dv, c, nc, s, C;

	/* ceil((t1 - t0) / chunk) without overflow for a huge chunk. */
	nc = t1 == t0 ? 0 : (t1 - t0 - 1) / p->chunk + 1;
	for (c = 0; c < nc; c++) {
		s = t0 + c * p->chunk;
		C = t1 - s < p->chunk ? t1 - s : p->chunk;
		dn_cgather(p, s, C, h, q, k, v, g, beta, ws);
		dn_csolve(ws, C, p->dk, p->dv, ws->S + c * kv);
		dn_cadvance(ws, C, p->dk, p->dv, ws->S + c * kv,
			ws->S + (c + 1) * kv);
	}
	for (c = nc - 1; c >= 0; c--) {
		s = t0 + c * p->chunk;
		C = t1 - s < p->chunk ? t1 - s : p->chunk;
		dn_cstep_adj(p, s, C, h, q, k, v, g, beta, dout, ws,
			ws->S + c * kv, dq, dk, dv, dg, dbeta);
	}
}

lca_status REF(deltanet_chunked_bwd)(const lca_params *p, const int64_t *cu,
	int64_t nseq, const real *q, const real *k, const real *v,
	const real *g, const real *beta, const real *state0, const real *dout,
	const real *dstate, real *dq, real *dk, real *dv, real *dg,
	real *dbeta, real *dstate0)
{
	struct dn_cws ws = { 0 };
	int64_t maxlen, cap, nck, n, h;
	lca_status st;

	/* No chunk is longer than the longest sequence; >= 1 keeps the
	 * workspace well formed when every sequence is empty. */
	maxlen = dn_max_len(cu, nseq);
	cap = maxlen < p->chunk ? maxlen : p->chunk;
	if (cap < 1)
		cap = 1;
	nck = (maxlen + cap - 1) / cap;
	st = dn_cws_init(&ws, p, cap, nck);
	if (st != LCA_OK)
		return st;
	dn_zero_grads(p, cu[nseq], dq, dk);
	for (n = 0; n < nseq; n++) {
		for (h = 0; h < p->H; h++) {
			dn_read_slices(p, n, h, state0, dstate, ws.S, ws.dS);
			dn_chead_adj(p, cu[n], cu[n + 1], h, q, k, v, g, beta,
				dout, &ws, dq, dk, dv, dg, dbeta);
			dn_write_dstate0(p, n, h, ws.dS, dstate0);
		}
	}
	free(ws.block);
	return LCA_OK;
}
