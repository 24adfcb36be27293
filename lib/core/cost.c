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
