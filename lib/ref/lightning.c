/*
 * lightning.c - reference Lightning Attention: the linear attention with a
 * per-head decay used by MiniMax-01 (arXiv:2501.08313), computed as in
 * Qin et al., "Lightning Attention-2" (arXiv:2401.04658, sec. 3, Alg. 1).
 *
 * Per sequence, token t and head h, with lambda = exp(-slope_h) in (0, 1]:
 *
 *	S_t = lambda S_{t-1} + k_t v_t^T	S is [dk][dv]
 *	o_t = scale S_t^T q_t
 *
 * Two computations of the same numbers are offered so that each checks the
 * other: the token-by-token recurrence, and the blockwise form the paper
 * uses on hardware (intra-block (Q K^T . D) V plus an inter-block term
 * through the carried state). Both run in real, one (sequence, head) at a
 * time, in a working copy of the state, so state0 may alias state: the
 * slice state0[n][h] is read in full before state[n][h] is written, and no
 * other slice is touched in between.
 */
#include "internal.h"
#include "real.h"

#include <stdlib.h>
#include <string.h>

/* Shapes and options every helper needs, resolved once per call. */
struct lt_dims {
	int64_t H, dk, dv;
	real scale;
};

static struct lt_dims lt_dims_of(const lca_params *p)
{
	struct lt_dims d;

	d.H = p->H;
	d.dk = p->dk;
	d.dv = p->dv;
	/* The plan resolves scale (> 0); a raw params struct with 0 means
	 * MiniMax's default of no scaling. */
	d.scale = p->scale > 0 ? p->scale : 1.0;
	return d;
}

static real dot(const real *a, const real *b, int64_t n)
{
	real s = 0.0;

	for (int64_t i = 0; i < n; i++) {
		s += a[i] * b[i];
		FLOPS(2);
	}
	return s;
}

/* S = state0[n][h], or zeros when there is no initial state. */
static void state_load(real *S, const real *state0, int64_t n, int64_t h,
	const struct lt_dims *d)
{
	size_t len = (size_t)d->dk * (size_t)d->dv;

	if (state0 == NULL)
		memset(S, 0, len * sizeof *S);
	else
		memcpy(S, state0 + ((size_t)n * d->H + h) * len, len * sizeof *S);
}

static void state_store(real *state, const real *S, int64_t n, int64_t h,
	const struct lt_dims *d)
{
	size_t len = (size_t)d->dk * (size_t)d->dv;

	if (state != NULL)
		memcpy(state + ((size_t)n * d->H + h) * len, S, len * sizeof *S);
}

/* out[j] = a * sum_i S[i][j] q[i]: the read-out S^T q, scaled by a. */
static void state_readout(real *out, const real *S, const real *q,
	real a, const struct lt_dims *d)
{
	for (int64_t j = 0; j < d->dv; j++) {
		real s = 0.0;

		for (int64_t i = 0; i < d->dk; i++) {
			s += S[i * d->dv + j] * q[i];
			FLOPS(2);
		}
		out[j] = a * s;
		FLOPS(1);
	}
}

/* S = decay S + k v^T: one token of the recurrence. */
static void state_update(real *S, real decay, const real *k,
	const real *v, const struct lt_dims *d)
{
	for (int64_t i = 0; i < d->dk; i++)
		for (int64_t j = 0; j < d->dv; j++) {
			S[i * d->dv + j] = decay * S[i * d->dv + j] + k[i] * v[j];
			FLOPS(3);
		}
}

/* S += w k v^T: one token's write into a state whose decay over the whole
 * block was applied at once. */
static void state_add(real *S, real w, const real *k, const real *v,
	const struct lt_dims *d)
{
	for (int64_t i = 0; i < d->dk; i++) {
		real wk = w * k[i];

		FLOPS(1);
		for (int64_t j = 0; j < d->dv; j++) {
			S[i * d->dv + j] += wk * v[j];
			FLOPS(2);
		}
	}
}

/* ---- recurrent form ---------------------------------------------------- */

/* Tokens t0 .. t1-1 of head h, state S carried in place. */
static void recurrent_head(const struct lt_dims *d, int64_t h, int64_t t0,
	int64_t t1, real lambda, const real *q, const real *k,
	const real *v, real *S, real *o)
{
	for (int64_t t = t0; t < t1; t++) {
		size_t qk = ((size_t)t * d->H + h) * d->dk;
		size_t vo = ((size_t)t * d->H + h) * d->dv;

		state_update(S, lambda, k + qk, v + vo, d);
		state_readout(o + vo, S, q + qk, d->scale, d);
	}
}

lca_status REF(lightning_recurrent)(const lca_params *p, const int64_t *cu,
	int64_t nseq, const real *q, const real *k, const real *v,
	const real *slope, const real *state0, real *o, real *state)
{
	struct lt_dims d = lt_dims_of(p);
	real *S = malloc((size_t)d.dk * (size_t)d.dv * sizeof *S);

	if (S == NULL)
		return lcai_fail(LCA_ERR_NOMEM, "lightning reference: out of memory for the state");
	for (int64_t n = 0; n < nseq; n++) {
		for (int64_t h = 0; h < d.H; h++) {
			/* slope >= 0 keeps lambda <= 1: S never grows by decay. */
			real lambda = exp(-slope[h]);

			FLOPS(1);

			state_load(S, state0, n, h, &d);
			recurrent_head(&d, h, cu[n], cu[n + 1], lambda, q, k, v,
				S, o);
			state_store(state, S, n, h, &d);
		}
	}
	free(S);
	return LCA_OK;
}

/* ---- blockwise form ---------------------------------------------------- */

/*
 * pw[m] = lambda^m = exp(-slope m) for m = 0 .. mmax. Each power is one
 * exp of an argument <= 0, so it is correct to rounding at any m and
 * underflows gracefully to 0 for large slopes, where repeated
 * multiplication would accumulate m roundings.
 */
static void decay_powers(real *pw, int64_t mmax, real slope)
{
	for (int64_t m = 0; m <= mmax; m++) {
		pw[m] = exp(-slope * (real)m);
		FLOPS(2);
	}
}

/*
 * Outputs of one block of b tokens starting at token t0, state S0 at its
 * start. With local positions r, i = 1 .. b (Lightning Attention-2, Alg. 1):
 *
 *	o_r = scale [ lambda^r S0^T q_r				inter
 *	            + sum_{i <= r} lambda^(r-i) (q_r . k_i) v_i ]	intra
 *
 * i.e. O = Lambda Q S0 + (Q K^T . D) V with Lambda = diag(lambda^r) and
 * D[r][i] = lambda^(r-i) on and below the diagonal, 0 above it. Going
 * through the true state S0 (not per-token prefix sums) keeps every decay
 * exponent a non-negative multiple of -slope: nothing is ever divided by a
 * power of lambda, which would overflow for long blocks or large slopes.
 * Each row of Q K^T . D is formed and applied at once rather than stored
 * as a b x b matrix.
 */
static void block_outputs(const struct lt_dims *d, int64_t h, int64_t t0,
	int64_t b, const real *pw, const real *q, const real *k,
	const real *v, const real *S0, real *o)
{
	for (int64_t r = 1; r <= b; r++) {
		int64_t tr = t0 + r - 1;
		const real *qr = q + ((size_t)tr * d->H + h) * d->dk;
		real *orow = o + ((size_t)tr * d->H + h) * d->dv;

		state_readout(orow, S0, qr, pw[r], d);
		for (int64_t i = 1; i <= r; i++) {
			int64_t ti = t0 + i - 1;
			const real *ki = k + ((size_t)ti * d->H + h) * d->dk;
			const real *vi = v + ((size_t)ti * d->H + h) * d->dv;
			real w = pw[r - i] * dot(qr, ki, d->dk);

			FLOPS(1);
			for (int64_t j = 0; j < d->dv; j++) {
				orow[j] += w * vi[j];
				FLOPS(2);
			}
		}
		for (int64_t j = 0; j < d->dv; j++) {
			orow[j] *= d->scale;
			FLOPS(1);
		}
	}
}

/*
 * State at the end of the block (Lightning Attention-2, Alg. 1):
 *
 *	S_b = lambda^b S0 + sum_{i=1..b} lambda^(b-i) k_i v_i^T
 *
 * computed in place once block_outputs() no longer needs S0.
 */
static void block_state(const struct lt_dims *d, int64_t h, int64_t t0,
	int64_t b, const real *pw, const real *k, const real *v,
	real *S)
{
	size_t len = (size_t)d->dk * (size_t)d->dv;

	for (size_t e = 0; e < len; e++) {
		S[e] *= pw[b];
		FLOPS(1);
	}
	for (int64_t i = 1; i <= b; i++) {
		int64_t ti = t0 + i - 1;

		state_add(S, pw[b - i],
			k + ((size_t)ti * d->H + h) * d->dk,
			v + ((size_t)ti * d->H + h) * d->dv, d);
	}
}

/* Tokens t0 .. t1-1 of head h in blocks of B (the last one short). */
static void blockwise_head(const struct lt_dims *d, int64_t h, int64_t t0,
	int64_t t1, int64_t B, const real *pw, const real *q,
	const real *k, const real *v, real *S, real *o)
{
	for (int64_t s = t0; s < t1; s += B) {
		int64_t b = t1 - s < B ? t1 - s : B;

		block_outputs(d, h, s, b, pw, q, k, v, S, o);
		block_state(d, h, s, b, pw, k, v, S);
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

lca_status REF(lightning_blockwise)(const lca_params *p, const int64_t *cu,
	int64_t nseq, const real *q, const real *k, const real *v,
	const real *slope, const real *state0, real *o, real *state)
{
	struct lt_dims d = lt_dims_of(p);
	int64_t B = p->block > 0 ? p->block : 256;
	int64_t bmax = longest_block(cu, nseq, B);
	real *S = malloc((size_t)d.dk * (size_t)d.dv * sizeof *S);
	real *pw = malloc(((size_t)bmax + 1) * sizeof *pw);

	if (S == NULL || pw == NULL) {
		free(S);
		free(pw);
		return lcai_fail(LCA_ERR_NOMEM, "lightning reference: out of memory for the workspace");
	}
	for (int64_t h = 0; h < d.H; h++) {
		decay_powers(pw, bmax, slope[h]);
		for (int64_t n = 0; n < nseq; n++) {
			state_load(S, state0, n, h, &d);
			blockwise_head(&d, h, cu[n], cu[n + 1], B, pw, q, k, v,
				S, o);
			state_store(state, S, n, h, &d);
		}
	}
	free(S);
	free(pw);
	return LCA_OK;
}

/* ---- range summary (context parallelism) -------------------------------
 *
 * T tokens of one sequence map a state S entering them, per head, to
 *	S_T = lambda^T S + sum_t lambda^(T-1-t) k_t v_t^T,
 * the decay a = lambda^T = exp(-slope T) (one exp, as decay_powers) and
 * the contribution b: the recurrence run from S = 0, token by token.
 */
lca_status REF(lightning_summary)(const lca_params *p, int64_t T,
	const real *k, const real *v, const real *slope, real *a, real *b)
{
	struct lt_dims d = lt_dims_of(p);
	const size_t len = (size_t)d.dk * (size_t)d.dv;

	for (int64_t h = 0; h < d.H; h++) {
		real lambda = exp(-slope[h]), *S = b + (size_t)h * len;

		a[h] = exp(-slope[h] * (real)T);
		memset(S, 0, len * sizeof *S);
		for (int64_t t = 0; t < T; t++)
			state_update(S, lambda, k + ((size_t)t * d.H + h) * d.dk,
				v + ((size_t)t * d.H + h) * d.dv, &d);
	}
	return LCA_OK;
}
