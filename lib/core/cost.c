/*
 * cost.c - the cost model: FLOPs and bytes of one layer per phase
 * (lca_plan_cost(3) states every formula; keep the two in step).
 *
 * Counting rule: every multiply-add of a matrix or vector product whose
 * count is a product of two head sizes, or of a head size and a token
 * count, is 2 flops; every multiplication of a whole dk x dv state by its
 * decay is 1 flop. Work that is O(head size) per token and head (exp and
 * the softmax normalisation, RoPE, L2 norms, scale, beta, gates) is not
 * counted: it is below the counted work by a factor of the other head size.
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

/* Lower-triangular (diagonal included) entries of a c x c block. */
static double tri(double c)
{
	return c * (c + 1) / 2;
}

/* Gated DeltaNet, chunked (WY/UT) form, one chunk of c tokens and one value
 * head, in multiply-adds: A = tril(K K^T) c(c+1)/2 dk; (I + A)^-1 by forward
 * substitution c(c-1)(c-2)/6; W = T K and U = T V c(c+1)/2 (dk + dv);
 * U -= W S c dk dv; tril(Q K^T) c(c+1)/2 dk; (Q K^T) U c(c+1)/2 dv;
 * Q S c dk dv; S += K^T U c dk dv. Plus one decay of S (dk dv flops). */
static double deltanet_chunk(double c, double dk, double dv)
{
	double mac = tri(c) * (3 * dk + 2 * dv) + c * (c - 1) * (c - 2) / 6 +
		3 * c * dk * dv;

	return 2 * mac + dk * dv;
}

/* Lightning, blockwise form, one block of b tokens and one head:
 * tril(Q K^T) b(b+1)/2 dk; (Q K^T . D) V b(b+1)/2 dv; Q S b dk dv;
 * S += (decayed K)^T V b dk dv; plus lambda^b S (dk dv flops). */
static double lightning_block(double b, double dk, double dv)
{
	return 2 * (tri(b) * (dk + dv) + 2 * b * dk * dv) + dk * dv;
}

/* Sum of f over T tokens cut into pieces of n (the last may be short). */
static double pieces(double T, double n, double dk, double dv,
	double (*f)(double, double, double))
{
	double full = floor(T / n), rest = T - full * n;

	return full * f(n, dk, dv) + (rest > 0 ? f(rest, dk, dv) : 0);
}

/* ---- mla: the cpu backend's AUTO ---------------------------------------
 *
 * Per head, a call with nq queries, nk keys and P visible (query, key)
 * pairs costs in multiply-adds, with A = dc (dn + dv):
 *   naive     nk A + P (dn + dr + dv)   every key decompressed once (two
 *                                       GEMMs), then attention at dk =
 *                                       dn + dr, dv
 *   absorbed  nq A + P (2 dc + dr)      w_uk folded into every query and
 *                                       w_uv applied to every latent sum,
 *                                       attention at dk = dc + dr, dv = dc
 * The per-pair term of naive is the smaller (dn + dr + dv = 320 against
 * 2 dc + dr = 1088 for DeepSeek's shapes), the per-row term of absorbed
 * (nq < nk). So a prefill (nq = nk) is naive's, 3.4x fewer flops at those
 * shapes, and a decode step (nq = 1) is absorbed's: it reads the latent
 * cache instead of decompressing it. With nq << nk the two meet near
 * nq = A / (2 dc - dn - dv) = 171 queries. AUTO takes the smaller count;
 * the kernels of both are GEMM-like, so flops rank them (the measured
 * prefill ratio at T = 8K was 3x). */

/* Visible (query, key) pairs of tq queries at the last tq of tk positions. */
double lcai_mla_pairs(const lca_params *p, int64_t tq, int64_t tk)
{
	double W = (double)p->window, first = (double)(tk - tq);

	if (!p->causal)
		return (double)tq * (double)tk;
	/* query at position i sees min(i + 1, W) keys (none if i < 0) */
	return vis_sum((double)tk, W) - vis_sum(first > 0 ? first : 0, W);
}

static double mla_naive_macs(const lca_params *p, double nk, double pairs)
{
	return nk * (double)p->dc * (double)(p->dn + p->dv) +
		pairs * (double)(p->dn + p->dr + p->dv);
}

static double mla_absorbed_macs(const lca_params *p, double nq, double pairs)
{
	return nq * (double)p->dc * (double)(p->dn + p->dv) +
		pairs * (double)(2 * p->dc + p->dr);
}

lca_algo lcai_mla_pick(const lca_params *p, double nq, double nk, double pairs)
{
	if (p->algo != LCA_ALGO_AUTO)
		return p->algo;
	return mla_naive_macs(p, nk, pairs) < mla_absorbed_macs(p, nq, pairs) ?
		LCA_ALGO_NAIVE : LCA_ALGO_ABSORBED;
}

/* AUTO's multiply-adds per head of one decode step at context t. */
static double mla_auto_step(const lca_params *p, double t)
{
	double pairs = visible(t - 1, (double)p->window);

	return fmin(mla_naive_macs(p, t, pairs), mla_absorbed_macs(p, 1, pairs));
}

/* AUTO's multiply-adds per head of a generation of n steps: naive wins a
 * prefix of the steps (its excess (t - 1) A - pairs (2 dc - dn - dv) grows
 * with t, since A > 2 dc - dn - dv), absorbed the rest; the prefix is
 * found by stepping (it ends at t = 2 for DeepSeek's shapes) and the rest
 * is summed in closed form. */
static double mla_auto_generate(const lca_params *p, double n)
{
	double W = (double)p->window, A = (double)p->dc * (double)(p->dn + p->dv);
	double sum = 0, t = 1;

	for (; t <= n; t++) {
		double pairs = visible(t - 1, W);

		if (mla_naive_macs(p, t, pairs) >= mla_absorbed_macs(p, 1, pairs))
			break;
		sum += mla_naive_macs(p, t, pairs);
	}
	if (t <= n)
		sum += (n - t + 1) * A + (vis_sum(n, W) - vis_sum(t - 1, W)) *
			(double)(2 * p->dc + p->dr);
	return sum;
}

/* flops = fixed per token x tokens + per key x keys read (softmax, mla). */
static void quadratic(const lca_params *p, lca_phase ph, double n, lca_cost *c)
{
	double H = (double)p->H, W = (double)p->window, e = (double)c->bytes;
	double pairs, tok, fix, per_key, in, out, key, wts = 0;

	if (ph == LCA_PHASE_PREFILL)
		pairs = p->causal ? vis_sum(n, W) : n * n, tok = n;
	else if (ph == LCA_PHASE_DECODE)
		pairs = visible(n - 1, W), tok = 1;
	else
		pairs = vis_sum(n, W), tok = n;
	if (p->variant == LCA_SOFTMAX) {
		fix = 0;
		per_key = H * (p->dk + p->dv);
		in = H * p->dk, out = H * p->dv;
		key = (double)p->Hkv * (p->dk + p->dv);
	} else if (p->algo == LCA_ALGO_NAIVE) {
		/* decompress every key read (decode) or every key once (prefill) */
		double dec = H * p->dc * (double)(p->dn + p->dv);

		fix = 0;
		per_key = H * (double)(p->dn + p->dr + p->dv) +
			(ph == LCA_PHASE_PREFILL ? 0 : dec);
		if (ph == LCA_PHASE_PREFILL)
			fix = dec;
		in = H * (p->dn + p->dr), out = H * p->dv;
		key = (double)(p->dc + p->dr);
		wts = H * p->dc * (double)(p->dn + p->dv);
	} else {
		/* absorbed: q w_uk, latent logits, latent sum, w_uv per query */
		fix = H * p->dc * (double)(p->dn + p->dv);
		per_key = H * (double)(2 * p->dc + p->dr);
		in = H * (p->dn + p->dr), out = H * p->dv;
		key = (double)(p->dc + p->dr);
		wts = H * p->dc * (double)(p->dn + p->dv);
	}
	c->flops = 2 * (fix * tok + per_key * pairs);
	if (p->variant == LCA_MLA && p->algo == LCA_ALGO_AUTO)
		c->flops = 2 * H * (ph == LCA_PHASE_PREFILL ?
			fmin(mla_naive_macs(p, n, pairs), mla_absorbed_macs(p, n, pairs)) :
			ph == LCA_PHASE_DECODE ? mla_auto_step(p, n) : mla_auto_generate(p, n));
	if (ph == LCA_PHASE_PREFILL)  /* inputs and outputs once, weights once */
		c->bytes = e * (tok * (in + key + out) + wts);
	else  /* per step: new token in, its key written, visible keys read */
		c->bytes = e * (tok * (in + key + out + wts) + pairs * key);
}

static void linear(const lca_params *p, lca_phase ph, double n, lca_cost *c)
{
	double H = (double)p->H, dk = (double)p->dk, dv = (double)p->dv;
	double e = c->bytes, st = H * dk * dv, per_tok, io;
	int dn = p->variant == LCA_DELTANET;

	/* q, k (Hk heads for deltanet), v, g and beta in; o out */
	io = dn ? 2 * (double)p->Hk * dk + 2 * H * dv + 2 * H : 2 * H * dk + 2 * H * dv;
	per_tok = H * (dn ? 7 : 5) * dk * dv;  /* the recurrence, per token */
	if (ph == LCA_PHASE_PREFILL && p->algo == LCA_ALGO_CHUNKED)
		c->flops = H * (dn ? pieces(n, (double)p->chunk, dk, dv, deltanet_chunk) :
			pieces(n, (double)p->block, dk, dv, lightning_block));
	else if (ph == LCA_PHASE_DECODE)
		c->flops = per_tok;
	else
		c->flops = per_tok * n;
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
