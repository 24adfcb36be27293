/*
 * cost.c - the cost model: FLOPs and bytes of one layer per phase
 * (lca_plan_cost(3) states every formula; keep the two in step).
 *
 * FLOPs are exact: every floating-point add, subtract, multiply, divide,
 * sqrt, exp and log the double reference (lib/ref) executes for the call,
 * 1 each, RoPE as its rotation (6 per pair of coordinates); comparisons,
 * negations and the RoPE angles are not counted. tests/check_cost runs a
 * counting build of the reference (FLOPS in lib/ref/real.h) and holds
 * these formulas to its counts. The leading terms are those of the usual
 * model (2 per multiply-add of the products, 1 per decay of a state entry);
 * the rest (exp and normalisation of softmax rows, RoPE, L2 norms, scales,
 * gates) is what the reference does around them.
 * Everything is computed in double: the counts pass 2^53 only far beyond
 * any context this library can hold, and a ratio is what callers want.
 */
#include "internal.h"

#include <math.h>

/* Keys a query at position i (0-based, causal) sees with window W. */
static double visible(double i, double W)
{
	return W > 0 && W < i + 1 ? W : i + 1;
}

/* sum_{c=1..n} min(c, W): the (query, key) pairs of a causal prefill of n
 * tokens, and the keys read over a generation of n decode steps. */
static double vis_sum(double n, double W)
{
	if (W <= 0 || n <= W)
		return n * (n + 1) / 2;
	return W * (W + 1) / 2 + (n - W) * W;
}

/* Lower-triangular entries of a c x c block, diagonal included. */
static double tri(double c)
{
	return c * (c + 1) / 2;
}

/*
 * Softmax and mla: flops = H (a P + b Q) + c K over P (query, key) pairs
 * kept by the mask, Q queries and K keys handed to the call(s), with
 *   a  per pair and head: the logit, its scale, exp(x - max) and the row
 *      sum (4, mla absorbed 5 for the rope logit's add), the weighted sum;
 *   b  per query and head: RoPE of the query, log and add of the lse, the
 *      division of the output row (mla absorbed: of the latent row, plus
 *      q w_uk and w_uv);
 *   c  per key: RoPE of every key of the cache in every call (the cache
 *      keeps keys unrotated; softmax per kv head, mla once), and mla naive
 *      decompresses every key for every head.
 */
static double quadratic_flops(const lca_params *p, double P, double Q, double K)
{
	double H = (double)p->H, rd = (double)p->rope_dim, a, b, c;
	double dc = (double)p->dc, dn = (double)p->dn, dr = (double)p->dr, dv = (double)p->dv;

	if (p->variant == LCA_SOFTMAX) {
		a = 2 * ((double)p->dk + dv) + 4;
		b = dv + 2 + 3 * rd;
		c = 3 * rd * (double)p->Hkv;
	} else if (p->algo == LCA_ALGO_NAIVE) {
		a = 2 * (dn + dr + dv) + 4;
		b = dv + 2 + 3 * rd;
		c = H * (2 * dc * (dn + dv) + 3 * rd);
	} else {
		a = 2 * (2 * dc + dr) + 5;
		b = 2 * dc * (dn + dv) + dc + 2 + 3 * rd;
		c = 3 * rd;
	}
	return H * (a * P + b * Q) + c * K;
}

/* ---- mla: the cpu backend's AUTO ---------------------------------------
 *
 * Per head, a call with nq queries, nk keys and P visible (query, key)
 * pairs costs, to leading order in multiply-adds, with A = dc (dn + dv):
 *   naive     nk A + P (dn + dr + dv)   every key decompressed (two GEMMs),
 *                                       then attention at dk = dn + dr, dv
 *   absorbed  nq A + P (2 dc + dr)      w_uk folded into every query and
 *                                       w_uv applied to every latent sum,
 *                                       attention at dk = dc + dr, dv = dc
 * The per-pair term of naive is the smaller (dn + dr + dv = 320 against
 * 2 dc + dr = 1088 for DeepSeek's shapes), the per-row term of absorbed
 * (nq < nk). So a prefill (nq = nk) is naive's, 3.4x fewer flops at those
 * shapes, and a decode step (nq = 1) is absorbed's: it reads the latent
 * cache instead of decompressing it. With nq << nk the two meet near
 * nq = A / (2 dc - dn - dv) = 171 queries. AUTO takes the computation with
 * fewer flops by the exact count below (ties: absorbed); the kernels of
 * both are GEMM-like, so flops rank them (the measured prefill ratio at
 * T = 8K was 3x). */

/* Visible (query, key) pairs of tq queries at the last tq of tk positions. */
double lcai_mla_pairs(const lca_params *p, int64_t tq, int64_t tk)
{
	double W = (double)p->window, first = (double)(tk - tq);

	if (!p->causal)
		return (double)tq * (double)tk;
	/* query at position i sees min(i + 1, W) keys (none if i < 0) */
	return vis_sum((double)tk, W) - vis_sum(first > 0 ? first : 0, W);
}

/* Exact flops of mla with computation a over P pairs, Q queries, K keys. */
static double mla_flops(const lca_params *p, lca_algo a, double P, double Q, double K)
{
	lca_params q = *p;

	q.algo = a;
	return quadratic_flops(&q, P, Q, K);
}

lca_algo lcai_mla_pick(const lca_params *p, double nq, double nk, double pairs)
{
	if (p->algo != LCA_ALGO_AUTO)
		return p->algo;
	return mla_flops(p, LCA_ALGO_NAIVE, pairs, nq, nk) <
		mla_flops(p, LCA_ALGO_ABSORBED, pairs, nq, nk) ? LCA_ALGO_NAIVE : LCA_ALGO_ABSORBED;
}

/* AUTO's flops of the decode steps at contexts 1 .. n. naive's excess over
 * absorbed in a step grows with the context (per key it decompresses, 2 dc
 * (dn + dv) per head, outweighs the cheaper pair), so naive wins a prefix
 * of the steps, found by stepping (it is empty or ends at context 2 for
 * DeepSeek's shapes); absorbed's closed form sums the rest. */
static double mla_auto_generate(const lca_params *p, double n)
{
	double W = (double)p->window, sum = 0, t = 1;

	for (; t <= n; t++) {
		double P = visible(t - 1, W);

		if (lcai_mla_pick(p, 1, t, P) != LCA_ALGO_NAIVE)
			break;
		sum += mla_flops(p, LCA_ALGO_NAIVE, P, 1, t);
	}
	return sum + mla_flops(p, LCA_ALGO_ABSORBED, vis_sum(n, W) - vis_sum(t - 1, W),
		n - t + 1, tri(n) - tri(t - 1));
}

static void quadratic(const lca_params *p, lca_phase ph, double n, lca_cost *c)
{
	double H = (double)p->H, W = (double)p->window, e = (double)c->bytes;
	/* Sizes are summed as doubles: a plan takes each one up to INT64_MAX,
	 * and their int64 sum would overflow (found by fuzz/fuzz_api). */
	double dk = (double)p->dk, dv = (double)p->dv, dn = (double)p->dn;
	double dr = (double)p->dr, dc = (double)p->dc;
	double pairs, tok, keys, in, out, key, wts = 0;

	if (ph == LCA_PHASE_PREFILL)
		pairs = p->causal ? vis_sum(n, W) : n * n, tok = n, keys = n;
	else if (ph == LCA_PHASE_DECODE)
		pairs = visible(n - 1, W), tok = 1, keys = n;
	else  /* the decode steps at contexts 1 .. n */
		pairs = vis_sum(n, W), tok = n, keys = tri(n);
	if (p->variant == LCA_SOFTMAX) {
		in = H * dk, out = H * dv;
		key = (double)p->Hkv * (dk + dv);
	} else {
		in = H * (dn + dr), out = H * dv;
		key = dc + dr;
		wts = H * dc * (dn + dv);
	}
	c->flops = quadratic_flops(p, pairs, tok, keys);
	if (p->variant == LCA_MLA && p->algo == LCA_ALGO_AUTO)  /* the cpu backend's */
		c->flops = ph == LCA_PHASE_GENERATE ? mla_auto_generate(p, n) :
			mla_flops(p, lcai_mla_pick(p, tok, keys, pairs), pairs, tok, keys);
	if (ph == LCA_PHASE_PREFILL)  /* inputs and outputs once, weights once */
		c->bytes = e * (tok * (in + key + out) + wts);
	else  /* per step: new token in, its key written, visible keys read */
		c->bytes = e * (tok * (in + key + out + wts) + pairs * key);
}

/* Preparing one token's q and k for one value head (deltanet): the
 * optional L2 norms (squares, sums, eps, sqrt, divisions), then q *= scale. */
static double dn_prepare(const lca_params *p)
{
	double dk = (double)p->dk;

	return dk + (p->qk_l2norm ? 6 * dk + 4 : 0);
}

/* Gated DeltaNet, one token of the recurrence and one value head: exp(g),
 * the decay, S^T k, u = beta (v - S^T k), the rank-one write, the read. */
static double dn_token(const lca_params *p)
{
	double dk = (double)p->dk, dv = (double)p->dv;

	return 7 * dk * dv + 2 * dv + 1 + dn_prepare(p);
}

/* Gated DeltaNet, chunked (WY/UT) form, one chunk of c tokens and one
 * value head, as lib/ref/deltanet.c computes it: for each of the
 * c (c - 1) / 2 pairs i < r, A[r][i] (dot and two scalings), its
 * exp-of-sum decay, and the forward-substitution row update over dk + dv;
 * for each of the c (c + 1) / 2 pairs i <= r, the intra-chunk output term;
 * per token the prepared q and k, gamma, the scaled right-hand side, the
 * pseudo-value U~ - W S, the read Q S and the write K^T U (6 dk dv in
 * all); per chunk the decay of S. (I + A)^-1 is never formed. */
static double dn_chunk(const lca_params *p, double c)
{
	double dk = (double)p->dk, dv = (double)p->dv;

	return (c * (c - 1) / 2) * (4 * dk + 2 * dv + 4) + tri(c) * (2 * (dk + dv) + 1) +
		c * (dn_prepare(p) + 3 + 2 * dk + 3 * dv + 6 * dk * dv) + dk * dv;
}

/* Lightning, blockwise form, one block of b tokens and one head: for each
 * of the b (b + 1) / 2 pairs i <= r, (q_r . k_i) lambda^(r-i) v_i; per
 * token the read lambda^r S0^T q_r and its scale, and the write
 * lambda^(b-i) k_i v_i^T (4 dk dv in all); per block lambda^b S. */
static double lt_block(const lca_params *p, double b)
{
	double dk = (double)p->dk, dv = (double)p->dv;

	return tri(b) * (2 * (dk + dv) + 1) + b * (4 * dk * dv + 2 * dv + dk) + dk * dv;
}

/* Sum of f over T tokens cut into pieces of n (the last may be short). */
static double pieces(const lca_params *p, double T, double n,
	double (*f)(const lca_params *, double))
{
	double full = floor(T / n), rest = T - full * n;

	return full * f(p, n) + (rest > 0 ? f(p, rest) : 0);
}

/* One call over T tokens of one sequence (all heads), with the plan's algo:
 * a prefill, or (T = 1) a decode step, which runs the same code. */
static double linear_flops(const lca_params *p, double T)
{
	double H = (double)p->H, dk = (double)p->dk, dv = (double)p->dv, B;

	if (p->variant == LCA_DELTANET)
		return H * (p->algo == LCA_ALGO_CHUNKED ? pieces(p, T, (double)p->chunk, dn_chunk) :
			T * dn_token(p));
	/* lightning: lambda = exp(-slope) once per head, or its powers
	 * lambda^0 .. lambda^min(B, T) (a multiply and an exp each) */
	B = (double)p->block;
	if (p->algo == LCA_ALGO_CHUNKED)
		return H * (pieces(p, T, B, lt_block) + 2 * (fmin(B, T) + 1));
	return H * (T * (5 * dk * dv + dv) + 1);
}

static void linear(const lca_params *p, lca_phase ph, double n, lca_cost *c)
{
	double H = (double)p->H, dk = (double)p->dk, dv = (double)p->dv;
	double e = c->bytes, st = H * dk * dv, io;
	int dn = p->variant == LCA_DELTANET;

	/* q, k (Hk heads for deltanet), v, g and beta in; o out */
	io = dn ? 2 * (double)p->Hk * dk + 2 * H * dv + 2 * H : 2 * H * dk + 2 * H * dv;
	if (ph == LCA_PHASE_PREFILL)
		c->flops = linear_flops(p, n);
	else  /* every step is the layer run on one token */
		c->flops = (ph == LCA_PHASE_DECODE ? 1 : n) * linear_flops(p, 1);
	if (ph == LCA_PHASE_PREFILL)  /* tokens once, final state written once */
		c->bytes = e * (n * io + st + (dn ? 0 : H));
	else if (ph == LCA_PHASE_DECODE)  /* the state is read and written */
		c->bytes = e * (io + 2 * st + (dn ? 0 : H));
	else
		c->bytes = e * n * (io + 2 * st + (dn ? 0 : H));
}

lca_status lca_plan_cost(const lca_plan *plan, lca_phase phase, int64_t n,
	lca_cost *out)
{
	static const char fn[] = "lca_plan_cost";
	int64_t per_token, per_seq;
	lca_cost c;
	lca_status s;

	lcai_clear_error();
	if (!plan || !out)
		return lcai_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, !plan ? "plan" : "out");
	if ((unsigned)phase > LCA_PHASE_GENERATE)
		return lcai_fail(LCA_ERR_ARG, "%s: unknown phase %d", fn, (int)phase);
	if (n < 1)
		return lcai_fail(LCA_ERR_SIZE, "%s: n = %lld, must be >= 1", fn, (long long)n);
	if ((s = lca_plan_cache_cost(plan, &per_token, &per_seq)) != LCA_OK)
		return s;
	lcai_clear_error();
	/* element size of the plan's tensors, carried in c.bytes until used */
	c.bytes = plan->p.dtype == LCA_F64 ? 8 : plan->p.dtype == LCA_F32 ? 4 : 2;
	if (plan->p.variant == LCA_SOFTMAX || plan->p.variant == LCA_MLA)
		quadratic(&plan->p, phase, (double)n, &c);
	else
		linear(&plan->p, phase, (double)n, &c);
	c.state_bytes = (double)per_token * (double)n + (double)per_seq;
	*out = c;
	return LCA_OK;
}
