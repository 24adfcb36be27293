/*
 * forward.c - the four public forward calls: check the tensor arguments
 * against the plan, then hand them to the plan's backend kernel.
 *
 * Checks run in a fixed order (plan, sizes, cu_seqlens, overflow, NULL
 * pointers, non-finite values, value domains) and nothing is written to
 * any output before all of them pass.
 */
#include "internal.h"

#include <math.h>
#include <string.h>

/* One tensor argument: its name for messages, pointer and element count. */
struct targ {
	const char *name;
	const void *ptr;
	int64_t n;
	int optional;
	int is_state;   /* recurrent state: f32 on the cuda backend */
};

/* Element type of a tensor argument: the plan's dtype, except that the
 * cuda backend keeps recurrent state in f32 whatever the input dtype. */
static lca_dtype targ_dtype(const lca_params *p, const struct targ *a)
{
	return a->is_state && p->backend == LCA_BACKEND_CUDA ? LCA_F32 : p->dtype;
}

static size_t dtype_size(lca_dtype t)
{
	return t == LCA_F64 ? 8 : t == LCA_F32 ? 4 : 2;
}

/* Index of the first non-finite element, or -1. */
static int64_t first_nonfinite(const void *x, int64_t n, lca_dtype t)
{
	for (int64_t i = 0; i < n; i++) {
		int ok;

		if (t == LCA_F64)
			ok = isfinite(((const double *)x)[i]);
		else if (t == LCA_F32)
			ok = isfinite(((const float *)x)[i]);
		else /* bfloat16: exponent all ones is Inf or NaN */
			ok = (((const uint16_t *)x)[i] & 0x7f80u) != 0x7f80u;
		if (!ok)
			return i;
	}
	return -1;
}

/* NULL and non-finite checks over a list of tensor arguments. */
static lca_status check_targs(const char *fn, const lca_params *p,
	const struct targ *a, int na)
{
	for (int i = 0; i < na; i++) {
		if (!a[i].ptr && !a[i].optional)
			return lcai_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, a[i].name);
		if (a[i].n > INT64_MAX / 8 || (uint64_t)a[i].n > SIZE_MAX / dtype_size(targ_dtype(p, &a[i])))
			return lcai_fail(LCA_ERR_OVERFLOW, "%s: %s has too many elements", fn, a[i].name);
	}
	return LCA_OK;
}

/* Non-finite scan of the inputs (outputs are not read). */
static lca_status check_finite(const char *fn, const lca_params *p,
	const struct targ *a, int na)
{
	if (!p->check_finite)
		return LCA_OK;
	for (int i = 0; i < na; i++) {
		int64_t at;

		if (!a[i].ptr)
			continue;
		at = p->backend == LCA_BACKEND_CUDA ?
			lcai_cuda_find(a[i].ptr, a[i].n, targ_dtype(p, &a[i]), 0) :
			first_nonfinite(a[i].ptr, a[i].n, targ_dtype(p, &a[i]));
		if (at == -2)
			return lcai_fail(LCA_ERR_INTERNAL, "%s: CUDA error while scanning %s", fn, a[i].name);
		if (at >= 0)
			return lcai_fail(LCA_ERR_NONFINITE, "%s: %s[%lld] is not finite",
				fn, a[i].name, (long long)at);
	}
	return LCA_OK;
}

/* Element count of a tensor with n dimensions; LCA_ERR_OVERFLOW on wrap. */
static lca_status count(const char *fn, const char *name, int64_t *out,
	int64_t a, int64_t b, int64_t c, int64_t d)
{
	if (!lcai_mul_n(out, 4, a, b, c, d))
		return lcai_fail(LCA_ERR_OVERFLOW, "%s: size of %s overflows", fn, name);
	return LCA_OK;
}

static lca_status check_plan(const char *fn, const lca_plan *plan, lca_variant v)
{
	if (!plan)
		return lcai_fail(LCA_ERR_NULL, "%s: plan is NULL", fn);
	if (plan->p.variant != v)
		return lcai_fail(LCA_ERR_ARG, "%s: the plan is for another variant", fn);
	return LCA_OK;
}

static lca_status check_len(const char *fn, const char *name, int64_t T)
{
	if (T < 1)
		return lcai_fail(LCA_ERR_SIZE, "%s: %s = %lld must be >= 1", fn, name, (long long)T);
	return LCA_OK;
}

/*
 * Validate cu_seqlens (or make the single-sequence {0, T} in one[]) and
 * return in *cu the array kernels should use and in *n the sequence count.
 */
static lca_status resolve_cu(const char *fn, const int64_t *cu_seqlens,
	int64_t nseq, int64_t T, int64_t one[2], const int64_t **cu, int64_t *n)
{
	if (!cu_seqlens) {
		one[0] = 0;
		one[1] = T;
		*cu = one;
		*n = 1;
		return LCA_OK;
	}
	if (nseq < 1)
		return lcai_fail(LCA_ERR_SIZE, "%s: nseq = %lld must be >= 1", fn, (long long)nseq);
	if (cu_seqlens[0] != 0)
		return lcai_fail(LCA_ERR_SIZE, "%s: cu_seqlens[0] = %lld must be 0", fn,
			(long long)cu_seqlens[0]);
	for (int64_t i = 0; i < nseq; i++)
		if (cu_seqlens[i + 1] < cu_seqlens[i])
			return lcai_fail(LCA_ERR_SIZE, "%s: cu_seqlens decreases at index %lld",
				fn, (long long)(i + 1));
	if (cu_seqlens[nseq] != T)
		return lcai_fail(LCA_ERR_SIZE, "%s: cu_seqlens[nseq] = %lld must equal T = %lld",
			fn, (long long)cu_seqlens[nseq], (long long)T);
	*cu = cu_seqlens;
	*n = nseq;
	return LCA_OK;
}

/* Every element of x (n values of the plan's dtype) must satisfy sign * x >= 0. */
static lca_status check_sign(const char *fn, const char *name, const void *x,
	int64_t n, const lca_params *p, int sign, const char *rule)
{
	lca_dtype t = p->dtype;

	if (p->backend == LCA_BACKEND_CUDA) {
		/* sign -1 (x <= 0) fails on x > 0: mode 1; sign 1 fails on x < 0. */
		int64_t at = lcai_cuda_find(x, n, t, sign < 0 ? 1 : -1);

		if (at == -2)
			return lcai_fail(LCA_ERR_INTERNAL, "%s: CUDA error while scanning %s", fn, name);
		if (at >= 0)
			return lcai_fail(LCA_ERR_ARG, "%s: %s[%lld] breaks %s", fn, name,
				(long long)at, rule);
		return LCA_OK;
	}
	for (int64_t i = 0; i < n; i++) {
		double v;

		if (t == LCA_F64)
			v = ((const double *)x)[i];
		else if (t == LCA_F32)
			v = ((const float *)x)[i];
		else { /* bfloat16: the sign bit decides, except for zeros */
			uint16_t b = ((const uint16_t *)x)[i];

			v = (b & 0x7fffu) == 0 ? 0.0 : (b & 0x8000u) ? -1.0 : 1.0;
		}
		if (sign * v < 0)
			return lcai_fail(LCA_ERR_ARG, "%s: %s[%lld] = %g breaks %s", fn, name,
				(long long)i, v, rule);
	}
	return LCA_OK;
}

lca_status lca_softmax_forward(const lca_plan *plan, int64_t Tq, int64_t Tk,
	const void *q, const void *k, const void *v, const int64_t *cu_seqlens,
	int64_t nseq, void *o, void *lse)
{
	static const char fn[] = "lca_softmax_forward";
	int64_t oneq[2], onek[2], n;
	const int64_t *cuq, *cuk;
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = check_plan(fn, plan, LCA_SOFTMAX)) || (s = check_len(fn, "Tq", Tq)) ||
	    (s = check_len(fn, "Tk", Tk)))
		return s;
	p = &plan->p;
	if (cu_seqlens && Tq != Tk)
		return lcai_fail(LCA_ERR_SIZE, "%s: with cu_seqlens Tq (%lld) must equal Tk (%lld)",
			fn, (long long)Tq, (long long)Tk);
	if ((s = resolve_cu(fn, cu_seqlens, nseq, Tq, oneq, &cuq, &n)) ||
	    (s = resolve_cu(fn, cu_seqlens, nseq, Tk, onek, &cuk, &n)))
		return s;
	struct targ a[] = {
		{ "q", q, 0, 0, 0 }, { "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 },
		{ "o", o, 0, 0, 0 }, { "lse", lse, 0, 1, 0 },
	};
	if ((s = count(fn, "q", &a[0].n, Tq, p->H, p->dk, 1)) ||
	    (s = count(fn, "k", &a[1].n, Tk, p->Hkv, p->dk, 1)) ||
	    (s = count(fn, "v", &a[2].n, Tk, p->Hkv, p->dv, 1)) ||
	    (s = count(fn, "o", &a[3].n, Tq, p->H, p->dv, 1)) ||
	    (s = count(fn, "lse", &a[4].n, Tq, p->H, 1, 1)) ||
	    (s = check_targs(fn, p, a, 5)) || (s = check_finite(fn, p, a, 3)))
		return s;
	if (p->backend == LCA_BACKEND_CUDA)
		return lcai_cuda_softmax(p, cuq, cuk, n, q, k, v, o, lse);
	if (p->backend == LCA_BACKEND_CPU)
		return lcai_cpu_softmax(p, cuq, cuk, n, q, k, v, o, lse);
	if (p->dtype == LCA_F32)
		return lcai_ref32_softmax(p, cuq, cuk, n, q, k, v, o, lse);
	return lcai_ref_softmax(p, cuq, cuk, n, q, k, v, o, lse);
}

lca_status lca_mla_forward(const lca_plan *plan, int64_t Tq, int64_t Tk,
	const void *q_nope, const void *q_rope, const void *ckv,
	const void *k_rope, const void *w_uk, const void *w_uv,
	const int64_t *cu_seqlens, int64_t nseq, void *o, void *lse)
{
	static const char fn[] = "lca_mla_forward";
	int64_t oneq[2], onek[2], n;
	const int64_t *cuq, *cuk;
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = check_plan(fn, plan, LCA_MLA)) || (s = check_len(fn, "Tq", Tq)) ||
	    (s = check_len(fn, "Tk", Tk)))
		return s;
	p = &plan->p;
	if (cu_seqlens && Tq != Tk)
		return lcai_fail(LCA_ERR_SIZE, "%s: with cu_seqlens Tq (%lld) must equal Tk (%lld)",
			fn, (long long)Tq, (long long)Tk);
	if ((s = resolve_cu(fn, cu_seqlens, nseq, Tq, oneq, &cuq, &n)) ||
	    (s = resolve_cu(fn, cu_seqlens, nseq, Tk, onek, &cuk, &n)))
		return s;
	struct targ a[] = {
		{ "q_nope", q_nope, 0, 0, 0 }, { "q_rope", q_rope, 0, 0, 0 }, { "ckv", ckv, 0, 0, 0 },
		{ "k_rope", k_rope, 0, 0, 0 }, { "w_uk", w_uk, 0, 0, 0 }, { "w_uv", w_uv, 0, 0, 0 },
		{ "o", o, 0, 0, 0 }, { "lse", lse, 0, 1, 0 },
	};
	if ((s = count(fn, "q_nope", &a[0].n, Tq, p->H, p->dn, 1)) ||
	    (s = count(fn, "q_rope", &a[1].n, Tq, p->H, p->dr, 1)) ||
	    (s = count(fn, "ckv", &a[2].n, Tk, p->dc, 1, 1)) ||
	    (s = count(fn, "k_rope", &a[3].n, Tk, p->dr, 1, 1)) ||
	    (s = count(fn, "w_uk", &a[4].n, p->H, p->dn, p->dc, 1)) ||
	    (s = count(fn, "w_uv", &a[5].n, p->H, p->dv, p->dc, 1)) ||
	    (s = count(fn, "o", &a[6].n, Tq, p->H, p->dv, 1)) ||
	    (s = count(fn, "lse", &a[7].n, Tq, p->H, 1, 1)) ||
	    (s = check_targs(fn, p, a, 8)) || (s = check_finite(fn, p, a, 6)))
		return s;
	if (p->backend == LCA_BACKEND_CUDA)
		return lcai_cuda_mla(p, cuq, cuk, n, q_nope, q_rope, ckv, k_rope, w_uk, w_uv, o, lse);
	if (p->backend == LCA_BACKEND_CPU)
		return lcai_cpu_mla(p, cuq, cuk, n, q_nope, q_rope, ckv, k_rope, w_uk, w_uv, o, lse);
	if (p->dtype == LCA_F32)
		return p->algo == LCA_ALGO_NAIVE ?
			lcai_ref32_mla_naive(p, cuq, cuk, n, q_nope, q_rope, ckv, k_rope, w_uk, w_uv, o, lse) :
			lcai_ref32_mla_absorbed(p, cuq, cuk, n, q_nope, q_rope, ckv, k_rope, w_uk, w_uv, o, lse);
	if (p->algo == LCA_ALGO_NAIVE)
		return lcai_ref_mla_naive(p, cuq, cuk, n, q_nope, q_rope, ckv, k_rope,
			w_uk, w_uv, o, lse);
	return lcai_ref_mla_absorbed(p, cuq, cuk, n, q_nope, q_rope, ckv, k_rope,
		w_uk, w_uv, o, lse);
}

/* Tensor arguments shared by the two recurrent variants. */
static lca_status count_state(const char *fn, const lca_params *p, int64_t n,
	struct targ *s0, struct targ *s1)
{
	lca_status s;

	if ((s = count(fn, "state0", &s0->n, n, p->H, p->dk, p->dv)))
		return s;
	s1->n = s0->n;
	return LCA_OK;
}

lca_status lca_deltanet_forward(const lca_plan *plan, int64_t T,
	const void *q, const void *k, const void *v, const void *g,
	const void *beta, const int64_t *cu_seqlens, int64_t nseq,
	const void *state0, void *o, void *state)
{
	static const char fn[] = "lca_deltanet_forward";
	int64_t one[2], n;
	const int64_t *cu;
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = check_plan(fn, plan, LCA_DELTANET)) || (s = check_len(fn, "T", T)))
		return s;
	p = &plan->p;
	if ((s = resolve_cu(fn, cu_seqlens, nseq, T, one, &cu, &n)))
		return s;
	struct targ a[] = {
		{ "q", q, 0, 0, 0 }, { "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 }, { "g", g, 0, 0, 0 },
		{ "beta", beta, 0, 0, 0 }, { "state0", state0, 0, 1, 1 }, { "o", o, 0, 0, 0 },
		{ "state", state, 0, 1, 1 },
	};
	if ((s = count(fn, "q", &a[0].n, T, p->Hk, p->dk, 1)) ||
	    (s = count(fn, "k", &a[1].n, T, p->Hk, p->dk, 1)) ||
	    (s = count(fn, "v", &a[2].n, T, p->H, p->dv, 1)) ||
	    (s = count(fn, "g", &a[3].n, T, p->H, 1, 1)) ||
	    (s = count(fn, "beta", &a[4].n, T, p->H, 1, 1)) ||
	    (s = count_state(fn, p, n, &a[5], &a[7])) ||
	    (s = count(fn, "o", &a[6].n, T, p->H, p->dv, 1)) ||
	    (s = check_targs(fn, p, a, 8)) || (s = check_finite(fn, p, a, 6)) ||
	    (s = check_sign(fn, "g", g, a[3].n, p, -1, "g <= 0")))
		return s;
	if (p->backend == LCA_BACKEND_CUDA)
		return lcai_cuda_deltanet(p, cu, n, q, k, v, g, beta, state0, o, state);
	if (p->backend == LCA_BACKEND_CPU)
		return lcai_cpu_deltanet(p, cu, n, q, k, v, g, beta, state0, o, state);
	if (p->dtype == LCA_F32)
		return p->algo == LCA_ALGO_CHUNKED ?
			lcai_ref32_deltanet_chunked(p, cu, n, q, k, v, g, beta, state0, o, state) :
			lcai_ref32_deltanet_recurrent(p, cu, n, q, k, v, g, beta, state0, o, state);
	if (p->algo == LCA_ALGO_CHUNKED)
		return lcai_ref_deltanet_chunked(p, cu, n, q, k, v, g, beta, state0, o, state);
	return lcai_ref_deltanet_recurrent(p, cu, n, q, k, v, g, beta, state0, o, state);
}

lca_status lca_lightning_forward(const lca_plan *plan, int64_t T,
	const void *q, const void *k, const void *v, const void *slope,
	const int64_t *cu_seqlens, int64_t nseq, const void *state0, void *o,
	void *state)
{
	static const char fn[] = "lca_lightning_forward";
	int64_t one[2], n;
	const int64_t *cu;
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = check_plan(fn, plan, LCA_LIGHTNING)) || (s = check_len(fn, "T", T)))
		return s;
	p = &plan->p;
	if ((s = resolve_cu(fn, cu_seqlens, nseq, T, one, &cu, &n)))
		return s;
	struct targ a[] = {
		{ "q", q, 0, 0, 0 }, { "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 }, { "slope", slope, p->H, 0, 0 },
		{ "state0", state0, 0, 1, 1 }, { "o", o, 0, 0, 0 }, { "state", state, 0, 1, 1 },
	};
	if ((s = count(fn, "q", &a[0].n, T, p->H, p->dk, 1)) ||
	    (s = count(fn, "k", &a[1].n, T, p->H, p->dk, 1)) ||
	    (s = count(fn, "v", &a[2].n, T, p->H, p->dv, 1)) ||
	    (s = count_state(fn, p, n, &a[4], &a[6])) ||
	    (s = count(fn, "o", &a[5].n, T, p->H, p->dv, 1)) ||
	    (s = check_targs(fn, p, a, 7)) || (s = check_finite(fn, p, a, 5)) ||
	    (s = check_sign(fn, "slope", slope, p->H, p, 1, "slope >= 0")))
		return s;
	if (p->backend == LCA_BACKEND_CUDA)
		return lcai_cuda_lightning(p, cu, n, q, k, v, slope, state0, o, state);
	if (p->backend == LCA_BACKEND_CPU)
		return lcai_cpu_lightning(p, cu, n, q, k, v, slope, state0, o, state);
	if (p->dtype == LCA_F32)
		return p->algo == LCA_ALGO_CHUNKED ?
			lcai_ref32_lightning_blockwise(p, cu, n, q, k, v, slope, state0, o, state) :
			lcai_ref32_lightning_recurrent(p, cu, n, q, k, v, slope, state0, o, state);
	if (p->algo == LCA_ALGO_CHUNKED)
		return lcai_ref_lightning_blockwise(p, cu, n, q, k, v, slope, state0, o, state);
	return lcai_ref_lightning_recurrent(p, cu, n, q, k, v, slope, state0, o, state);
}
