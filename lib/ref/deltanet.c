/*
 * deltanet.c - reference Gated DeltaNet (Qwen3-Next), real precision.
 *
 * The oracle for every other backend: two computations of the same numbers.
 *
 *   recurrent  the gated delta rule token by token (Yang, Kautz, Hatamizadeh,
 *              "Gated Delta Networks: Improving Mamba2 with Delta Rule",
 *              2024, eq. for S_t):
 *                  S = exp(g) S;  u = beta (v - S^T k);  S += k u^T;
 *                  o = S^T q
 *   chunked    the WY/UT chunkwise form (Yang, Wang, Zhang, Shen, Kim,
 *              "Parallelizing Linear Transformers with the Delta Rule over
 *              Sequence Length", 2024, sec. 3.2-3.3, with the gate folded in
 *              as in Gated Delta Networks sec. 3.3); derivation below.
 *
 * Layouts: q, k [T][Hk][dk]; v, o [T][H][dv]; g, beta [T][H];
 * state0, state [nseq][H][dk][dv]. Value head h reads qk head h / (H / Hk).
 * S is kept as [dk][dv], so S^T k is a sum over the rows of S.
 */
#include "internal.h"
#include "real.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Added under the square root of the L2 norm (Qwen3-Next, FLA l2norm). */
#define DN_L2_EPS ((real)1e-6)

/* ---- shared pieces ---------------------------------------------------- */

/*
 * Copy one token's qk-head vectors into qd, kd and prepare them as the
 * recurrence sees them: optional x / sqrt(sum x^2 + eps) for q and k, then
 * q *= scale. Both forms call this so their q and k agree to the bit.
 */
static void dn_prepare_qk(const lca_params *p, const real *qs,
	const real *ks, real *qd, real *kd)
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
			FLOPS(4);
		}
		sq = sqrt(sq + DN_L2_EPS);
		sk = sqrt(sk + DN_L2_EPS);
		FLOPS(4);
		for (i = 0; i < dk; i++) {
			qd[i] /= sq;
			kd[i] /= sk;
			FLOPS(2);
		}
	}
	for (i = 0; i < dk; i++) {
		qd[i] *= (real)p->scale;
		FLOPS(1);
	}
}

/*
 * Load the start state of (sequence n, value head h) into S. This copy is
 * what makes state0 == state safe: state[n][h] is written only after the
 * whole head has run, and no other (n, h) reads that slot.
 */
static void dn_load_state(const lca_params *p, const real *state0,
	int64_t n, int64_t h, real *S)
{
	int64_t len = p->dk * p->dv;

	if (state0)
		memcpy(S, state0 + (n * p->H + h) * len,
			(size_t)len * sizeof(*S));
	else
		memset(S, 0, (size_t)len * sizeof(*S));
}

static void dn_store_state(const lca_params *p, const real *S, int64_t n,
	int64_t h, real *state)
{
	int64_t len = p->dk * p->dv;

	if (state)
		memcpy(state + (n * p->H + h) * len, S,
			(size_t)len * sizeof(*S));
}

/* qk head read by value head h (grouped heads, as GQA). */
static int64_t dn_qk_head(const lca_params *p, int64_t h)
{
	return h / (p->H / p->Hk);
}

/* Longest sequence in cu: bounds the chunk workspace for huge p->chunk. */
static int64_t dn_max_len(const int64_t *cu, int64_t nseq)
{
	int64_t n, m = 0;

	for (n = 0; n < nseq; n++)
		if (cu[n + 1] - cu[n] > m)
			m = cu[n + 1] - cu[n];
	return m;
}

/* *acc += a * b in doubles, or 0 if any step overflows int64_t/size_t. */
static int dn_add_size(int64_t *acc, int64_t a, int64_t b)
{
	int64_t prod;

	if (!lcai_mul(a, b, &prod) || prod > INT64_MAX - *acc)
		return 0;
	*acc += prod;
	return (uint64_t)*acc <= SIZE_MAX / sizeof(real);
}

/* ---- recurrent form --------------------------------------------------- */

/*
 * One token of the gated delta rule on S [dk][dv]:
 *   S = exp(g) S;  u = beta (v - S^T k);  S += k u^T;  o = S^T q.
 * u is a dv scratch vector. g <= 0, so exp(g) <= 1 never overflows.
 */
static void dn_token(real *S, const real *q, const real *k,
	const real *v, real g, real beta, int64_t dk, int64_t dv,
	real *u, real *o)
{
	real decay = exp(g);
	int64_t i, j;

	FLOPS(1);
	for (i = 0; i < dk * dv; i++) {
		S[i] *= decay;
		FLOPS(1);
	}
	for (j = 0; j < dv; j++) {
		real sk = 0.0;

		for (i = 0; i < dk; i++) {
			sk += S[i * dv + j] * k[i];
			FLOPS(2);
		}
		u[j] = beta * (v[j] - sk);
		FLOPS(2);
	}
	for (i = 0; i < dk; i++)
		for (j = 0; j < dv; j++) {
			S[i * dv + j] += k[i] * u[j];
			FLOPS(2);
		}
	for (j = 0; j < dv; j++) {
		real acc = 0.0;

		for (i = 0; i < dk; i++) {
			acc += S[i * dv + j] * q[i];
			FLOPS(2);
		}
		o[j] = acc;
	}
}

/* Run tokens t0 .. t1-1 of value head h through S, writing o. */
static void dn_recurrent_head(const lca_params *p, int64_t t0, int64_t t1,
	int64_t h, const real *q, const real *k, const real *v,
	const real *g, const real *beta, real *S, real *work,
	real *o)
{
	int64_t H = p->H, Hk = p->Hk, dk = p->dk, dv = p->dv;
	int64_t hk = dn_qk_head(p, h);
	real *qt = work, *kt = work + dk, *u = work + 2 * dk;
	int64_t t;

	for (t = t0; t < t1; t++) {
		dn_prepare_qk(p, q + (t * Hk + hk) * dk,
			k + (t * Hk + hk) * dk, qt, kt);
		dn_token(S, qt, kt, v + (t * H + h) * dv, g[t * H + h],
			beta[t * H + h], dk, dv, u, o + (t * H + h) * dv);
	}
}

lca_status REF(deltanet_recurrent)(const lca_params *p, const int64_t *cu,
	int64_t nseq, const real *q, const real *k, const real *v,
	const real *g, const real *beta, const real *state0, real *o,
	real *state)
{
	int64_t len = 0, n, h;
	real *S;

	/* S [dk][dv], then q, k [dk] and u [dv] for one token. */
	if (!dn_add_size(&len, p->dk, p->dv) || !dn_add_size(&len, 2, p->dk) ||
	    !dn_add_size(&len, 1, p->dv))
		return lcai_fail(LCA_ERR_NOMEM,
			"deltanet ref: state workspace size overflows");
	S = malloc((size_t)len * sizeof(*S));
	if (!S)
		return lcai_fail(LCA_ERR_NOMEM,
			"deltanet ref: cannot allocate %lld doubles",
			(long long)len);
	for (n = 0; n < nseq; n++) {
		for (h = 0; h < p->H; h++) {
			dn_load_state(p, state0, n, h, S);
			dn_recurrent_head(p, cu[n], cu[n + 1], h, q, k, v, g,
				beta, S, S + p->dk * p->dv, o);
			dn_store_state(p, S, n, h, state);
		}
	}
	free(S);
	return LCA_OK;
}

/* ---- chunked (WY/UT) form ---------------------------------------------
 *
 * Take one chunk of C tokens r = 1..C of one value head, entered with
 * state S0, and let gamma_r = prod_{i<=r} exp(g_i) (so gamma_0 = 1).
 * Unrolling the recurrence by induction on r,
 *
 *   S_r = gamma_r S0 + sum_{i<=r} (gamma_r/gamma_i) k_i u_i^T,           (1)
 *
 * where u_r is the token's pseudo-value. The state u_r sees is
 * exp(g_r) S_{r-1}, which is (1) with the sum stopped at i < r, so
 *
 *   u_r = beta_r v_r - beta_r gamma_r S0^T k_r
 *         - sum_{i<r} beta_r (gamma_r/gamma_i) (k_r . k_i) u_i.
 *
 * In matrix form, with K [C][dk], V [C][dv], U [C][dv] holding the tokens
 * as rows and A[r][i] = beta_r (gamma_r/gamma_i) (k_r . k_i) for i < r,
 *
 *   (I + A) U = diag(beta) V - diag(beta gamma) K S0.                    (2)
 *
 * I + A is unit lower triangular. With Tm = (I + A)^{-1} (the UT transform
 * of the DeltaNet paper, sec. 3.3):
 *
 *   W  = Tm diag(beta gamma) K,   U~ = Tm diag(beta) V,   U = U~ - W S0.   (3)
 *
 * W and U~ depend only on the chunk's own tokens; S0 enters through one
 * matrix product. Reading o_r = S_r^T q_r from (1):
 *
 *   O   = diag(gamma) Q S0 + (Q K^T (.) M) U,  M[r][i] = gamma_r/gamma_i
 *                                               for i <= r, else 0,      (4)
 *   S_C = gamma_C S0 + K^T diag(gamma_C / gamma_i) U.                    (5)
 *
 * Tm is applied by one forward substitution on [diag(beta gamma) K |
 * diag(beta) V] per chunk and head, never formed: the same O(C^2 (dk+dv))
 * work, and row r of the substitution repeats the recurrence's own
 * subtraction, so rounding stays close to it.
 *
 * Numerical trap avoided: gamma_r/gamma_i is NOT exp(G_r - G_i) of
 * cumulative sums G. With g = -1e30 followed by g = -0.1, G_r - G_i
 * cancels catastrophically (-1e30 - (-1e30) = 0 instead of -0.1). Every
 * ratio is exp of the sum of g over the range (i, r] accumulated directly,
 * so every decay factor is exp(<= 0) <= 1 and exact to rounding.
 */

/* Workspace for one chunk of up to cap tokens (pointers into one block). */
struct dn_chunk_ws {
	real *S;      /* [dk][dv] state carried across chunks */
	real *q;      /* [cap][dk] prepared queries */
	real *k;      /* [cap][dk] prepared keys */
	real *v;      /* [cap][dv] values */
	real *g;      /* [cap] gates */
	real *beta;   /* [cap] */
	real *gamma;  /* [cap] gamma_r = exp(sum_{j<=r} g_j) */
	real *dec;    /* [cap][cap] dec[r][i] = gamma_r/gamma_i, i <= r */
	real *x;      /* [cap][dk+dv] W | U~ of (3), then U in the dv part */
	real *block;  /* the single allocation */
};

static lca_status dn_chunk_ws_init(struct dn_chunk_ws *ws,
	const lca_params *p, int64_t cap)
{
	int64_t dk = p->dk, dv = p->dv, len = 0;
	real *b;

	if (!dn_add_size(&len, dk, dv) || !dn_add_size(&len, cap, 2 * dk) ||
	    !dn_add_size(&len, cap, dv) || !dn_add_size(&len, cap, 3) ||
	    !dn_add_size(&len, cap, cap) || !dn_add_size(&len, cap, dk + dv))
		return lcai_fail(LCA_ERR_NOMEM,
			"deltanet ref: chunk workspace size overflows");
	b = malloc((size_t)len * sizeof(*b));
	if (!b)
		return lcai_fail(LCA_ERR_NOMEM,
			"deltanet ref: cannot allocate %lld doubles",
			(long long)len);
	ws->block = b;
	ws->S = b;         b += dk * dv;
	ws->q = b;         b += cap * dk;
	ws->k = b;         b += cap * dk;
	ws->v = b;         b += cap * dv;
	ws->g = b;         b += cap;
	ws->beta = b;      b += cap;
	ws->gamma = b;     b += cap;
	ws->dec = b;       b += cap * cap;
	ws->x = b;
	return LCA_OK;
}

/* Gather tokens t0 .. t0+C-1 of value head h, q and k prepared. */
static void dn_chunk_gather(const lca_params *p, int64_t t0, int64_t C,
	int64_t h, const real *q, const real *k, const real *v,
	const real *g, const real *beta, struct dn_chunk_ws *ws)
{
	int64_t H = p->H, Hk = p->Hk, dk = p->dk, dv = p->dv;
	int64_t hk = dn_qk_head(p, h);
	int64_t r, t;

	for (r = 0; r < C; r++) {
		t = t0 + r;
		dn_prepare_qk(p, q + (t * Hk + hk) * dk,
			k + (t * Hk + hk) * dk, ws->q + r * dk, ws->k + r * dk);
		memcpy(ws->v + r * dv, v + (t * H + h) * dv,
			(size_t)dv * sizeof(*ws->v));
		ws->g[r] = g[t * H + h];
		ws->beta[r] = beta[t * H + h];
	}
}

/*
 * Decay ratios of the chunk (0-based r): gamma[r] = exp(sum_{j<=r} g_j) and
 * dec[r][i] = gamma_r/gamma_i = exp(sum_{j=i+1}^{r} g_j) for i <= r. Each
 * range sum is accumulated on its own (see the trap above); O(C^2).
 */
static void dn_chunk_decay(const real *g, int64_t C, real *gamma,
	real *dec)
{
	int64_t r, i;
	real s;

	s = 0.0;
	for (r = 0; r < C; r++) {
		s += g[r];
		gamma[r] = exp(s);
		FLOPS(2);
	}
	for (i = 0; i < C; i++) {
		s = 0.0;
		dec[i * C + i] = 1.0;
		for (r = i + 1; r < C; r++) {
			s += g[r];
			dec[r * C + i] = exp(s);
			FLOPS(2);
		}
	}
}

static real dn_dot(const real *a, const real *b, int64_t n)
{
	real s = 0.0;
	int64_t i;

	for (i = 0; i < n; i++) {
		s += a[i] * b[i];
		FLOPS(2);
	}
	return s;
}

/*
 * Right-hand side of (2) without S0, then Tm applied in place: row r of
 * x = [beta_r gamma_r k_r | beta_r v_r] becomes row r of [W | U~] by
 *   x_r -= sum_{i<r} A[r][i] x_i,  A[r][i] = beta_r dec[r][i] (k_r . k_i),
 * i.e. forward substitution with the unit lower triangular I + A.
 */
static void dn_chunk_solve(const struct dn_chunk_ws *ws, int64_t C,
	int64_t dk, int64_t dv)
{
	int64_t w = dk + dv;
	int64_t r, i, j;

	for (r = 0; r < C; r++) {
		real *xr = ws->x + r * w;
		real bg = ws->beta[r] * ws->gamma[r];

		FLOPS(1);
		for (j = 0; j < dk; j++) {
			xr[j] = bg * ws->k[r * dk + j];
			FLOPS(1);
		}
		for (j = 0; j < dv; j++) {
			xr[dk + j] = ws->beta[r] * ws->v[r * dv + j];
			FLOPS(1);
		}
		for (i = 0; i < r; i++) {
			const real *xi = ws->x + i * w;
			real a = ws->beta[r] * ws->dec[r * C + i] *
				dn_dot(ws->k + r * dk, ws->k + i * dk, dk);

			FLOPS(2);
			for (j = 0; j < w; j++) {
				xr[j] -= a * xi[j];
				FLOPS(2);
			}
		}
	}
}

/* U = U~ - W S0 of (3), written over the U~ part of x. */
static void dn_chunk_pseudo_values(const struct dn_chunk_ws *ws, int64_t C,
	int64_t dk, int64_t dv)
{
	int64_t w = dk + dv;
	int64_t r, i, j;

	for (r = 0; r < C; r++) {
		real *xr = ws->x + r * w;

		for (j = 0; j < dv; j++) {
			real ws0 = 0.0;

			for (i = 0; i < dk; i++) {
				ws0 += xr[i] * ws->S[i * dv + j];
				FLOPS(2);
			}
			xr[dk + j] -= ws0;
			FLOPS(1);
		}
	}
}

/* Output rows (4): o_r = gamma_r S0^T q_r + sum_{i<=r} dec[r][i] (q_r.k_i) u_i,
 * written to token t0 + r of value head h. */
static void dn_chunk_output(const lca_params *p, const struct dn_chunk_ws *ws,
	int64_t C, int64_t t0, int64_t h, real *o)
{
	int64_t H = p->H, dk = p->dk, dv = p->dv, w = dk + dv;
	int64_t r, i, j;

	for (r = 0; r < C; r++) {
		const real *qr = ws->q + r * dk;
		real *orow = o + ((t0 + r) * H + h) * dv;

		for (j = 0; j < dv; j++) {
			real acc = 0.0;

			for (i = 0; i < dk; i++) {
				acc += ws->S[i * dv + j] * qr[i];
				FLOPS(2);
			}
			orow[j] = ws->gamma[r] * acc;
			FLOPS(1);
		}
		for (i = 0; i <= r; i++) {
			const real *ui = ws->x + i * w + dk;
			real c = ws->dec[r * C + i] *
				dn_dot(qr, ws->k + i * dk, dk);

			FLOPS(1);
			for (j = 0; j < dv; j++) {
				orow[j] += c * ui[j];
				FLOPS(2);
			}
		}
	}
}

/* End state (5): S = gamma_C S0 + sum_i dec[C-1][i] k_i u_i^T, in place. */
static void dn_chunk_advance(const struct dn_chunk_ws *ws, int64_t C,
	int64_t dk, int64_t dv)
{
	int64_t w = dk + dv;
	const real *last = ws->dec + (C - 1) * C;
	int64_t r, i, j;

	for (i = 0; i < dk * dv; i++) {
		ws->S[i] *= ws->gamma[C - 1];
		FLOPS(1);
	}
	for (r = 0; r < C; r++) {
		const real *kr = ws->k + r * dk;
		const real *ur = ws->x + r * w + dk;

		for (i = 0; i < dk; i++) {
			real c = last[r] * kr[i];

			FLOPS(1);
			for (j = 0; j < dv; j++) {
				ws->S[i * dv + j] += c * ur[j];
				FLOPS(2);
			}
		}
	}
}

/* One chunk t0 .. t0+C-1 of value head h: ws->S goes from S0 to S_C. */
static void dn_chunk_step(const lca_params *p, int64_t t0, int64_t C,
	int64_t h, const real *q, const real *k, const real *v,
	const real *g, const real *beta, struct dn_chunk_ws *ws,
	real *o)
{
	dn_chunk_gather(p, t0, C, h, q, k, v, g, beta, ws);
	dn_chunk_decay(ws->g, C, ws->gamma, ws->dec);
	dn_chunk_solve(ws, C, p->dk, p->dv);
	dn_chunk_pseudo_values(ws, C, p->dk, p->dv);
	dn_chunk_output(p, ws, C, t0, h, o);
	dn_chunk_advance(ws, C, p->dk, p->dv);
}

lca_status REF(deltanet_chunked)(const lca_params *p, const int64_t *cu,
	int64_t nseq, const real *q, const real *k, const real *v,
	const real *g, const real *beta, const real *state0, real *o,
	real *state)
{
	struct dn_chunk_ws ws = { 0 };
	int64_t cap, n, h, t0, C;
	lca_status st;

	/* No chunk is longer than the longest sequence; >= 1 keeps the
	 * workspace well formed when every sequence is empty. */
	cap = dn_max_len(cu, nseq);
	if (cap > p->chunk)
		cap = p->chunk;
	if (cap < 1)
		cap = 1;
	st = dn_chunk_ws_init(&ws, p, cap);
	if (st != LCA_OK)
		return st;
	for (n = 0; n < nseq; n++) {
		for (h = 0; h < p->H; h++) {
			dn_load_state(p, state0, n, h, ws.S);
			for (t0 = cu[n]; t0 < cu[n + 1]; t0 += C) {
				C = cu[n + 1] - t0;
				if (C > p->chunk)
					C = p->chunk;
				dn_chunk_step(p, t0, C, h, q, k, v, g, beta,
					&ws, o);
			}
			dn_store_state(p, ws.S, n, h, state);
		}
	}
	free(ws.block);
	return LCA_OK;
}

/* ---- range summary (context parallelism) -------------------------------
 *
 * One token of the gated delta rule is an affine map of the state:
 *   S' = exp(g) S + beta k (v - exp(g) S^T k)^T
 *      = exp(g) (I - beta k k^T) S + beta k v^T,
 * so T tokens compose to S -> A S + B with A [dk][dk] and B [dk][dv] per
 * value head. A and B follow the rule's own steps: B is the state run
 * from zero, and A the state of dk columns run from the identity with
 * v = 0 (each column of S evolves alone). Written out here rather than
 * through dn_token, which would also form the unused outputs.
 */

/* X = exp(g) X; X += k (beta (y - X^T k))^T for X [dk][n] and y [n], or
 * y = 0 when y is NULL; w holds n values. */
static void dn_affine_step(real *X, int64_t n, const real *k, const real *y,
	real g, real beta, int64_t dk, real *w)
{
	real decay = exp(g);

	FLOPS(1);
	for (int64_t i = 0; i < dk * n; i++) {
		X[i] *= decay;
		FLOPS(1);
	}
	for (int64_t j = 0; j < n; j++) {
		real sk = 0.0;

		for (int64_t i = 0; i < dk; i++) {
			sk += X[i * n + j] * k[i];
			FLOPS(2);
		}
		w[j] = beta * ((y ? y[j] : (real)0.0) - sk);
		FLOPS(2);
	}
	for (int64_t i = 0; i < dk; i++)
		for (int64_t j = 0; j < n; j++) {
			X[i * n + j] += k[i] * w[j];
			FLOPS(2);
		}
}

lca_status REF(deltanet_summary)(const lca_params *p, int64_t T,
	const real *k, const real *v, const real *g, const real *beta,
	real *A, real *B)
{
	const int64_t H = p->H, Hk = p->Hk, dk = p->dk, dv = p->dv;
	int64_t len = 0;
	real *work;

	/* the prepared q and k, and w: dk, dk and max(dk, dv) */
	if (!dn_add_size(&len, 3, dk) || !dn_add_size(&len, 1, dv))
		return lcai_fail(LCA_ERR_NOMEM, "deltanet ref: summary workspace size overflows");
	if (!(work = malloc((size_t)len * sizeof *work)))
		return lcai_fail(LCA_ERR_NOMEM, "deltanet ref: cannot allocate %lld values",
			(long long)len);
	for (int64_t h = 0; h < H; h++) {
		const int64_t hk = dn_qk_head(p, h);
		real *a = A + h * dk * dk, *b = B + h * dk * dv;
		real *qt = work, *kt = work + dk, *w = work + 2 * dk;

		for (int64_t i = 0; i < dk * dk; i++)
			a[i] = (real)(i / dk == i % dk);
		memset(b, 0, (size_t)(dk * dv) * sizeof *b);
		for (int64_t t = 0; t < T; t++) {
			const real *kk = k + (t * Hk + hk) * dk;

			/* q is not used: prepare k alongside a copy of itself */
			dn_prepare_qk(p, kk, kk, qt, kt);
			dn_affine_step(a, dk, kt, NULL, g[t * H + h], beta[t * H + h], dk, w);
			dn_affine_step(b, dv, kt, v + (t * H + h) * dv, g[t * H + h],
				beta[t * H + h], dk, w);
		}
	}
	free(work);
	return LCA_OK;
}
