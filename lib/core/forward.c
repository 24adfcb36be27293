/*
 * forward.c - the four public forward calls: check the tensor arguments
 * against the plan, then hand them to the plan's backend kernel.
 *
 * Checks run in a fixed order (plan, sizes, cu_seqlens, overflow, NULL
 * pointers, non-finite values, value domains) and nothing is written to
 * any output before all of them pass. The checks themselves live in
 * check.c, shared with the cache step calls.
 */
#include "internal.h"

lca_status lca_softmax_forward(const lca_plan *plan, int64_t Tq, int64_t Tk,
	const void *q, const void *k, const void *v, const int64_t *cu_seqlens,
	int64_t nseq, void *o, void *lse)
{
	static const char fn[] = "lca_softmax_forward";
	int64_t oneq[2], onek[2], n;
	double m[3]; /* max |q|, |k|, |v| */
	const int64_t *cuq, *cuk;
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = lcai_check_attn_call(fn, plan, LCA_SOFTMAX, Tq, Tk, cu_seqlens, nseq,
	    oneq, onek, &cuq, &cuk, &n)))
		return s;
	p = &plan->p;
	struct lcai_targ a[] = {
		{ "q", q, 0, 0, 0 }, { "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 },
		{ "o", o, 0, 0, 0 }, { "lse", lse, 0, 1, 0 },
	};
	if ((s = lcai_count(fn, "q", &a[0].n, Tq, p->H, p->dk, 1)) ||
	    (s = lcai_count(fn, "k", &a[1].n, Tk, p->Hkv, p->dk, 1)) ||
	    (s = lcai_count(fn, "v", &a[2].n, Tk, p->Hkv, p->dv, 1)) ||
	    (s = lcai_count(fn, "o", &a[3].n, Tq, p->H, p->dv, 1)) ||
	    (s = lcai_count(fn, "lse", &a[4].n, Tq, p->H, 1, 1)) ||
	    (s = lcai_check_targs(fn, p, a, 5)) ||
	    (s = lcai_check_overlap(fn, p, a, 3, 5)) || (s = lcai_check_finite(fn, p, a, 3, m)) ||
	    (s = lcai_check_range_softmax(fn, p, m, Tk)))
		return s;
	if (p->backend == LCA_BACKEND_CUDA)
		return lcai_cuda_softmax(p, cuq, cuk, n, q, k, v, o, lse);
	if (p->backend == LCA_BACKEND_CPU)
		return (p->dtype == LCA_BF16 ? lcai_cpu_bf16_softmax : lcai_cpu_softmax)(p,
			cuq, cuk, n, q, k, v, o, lse);
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
	double m[6]; /* max |x| of the inputs, in argument order */
	const int64_t *cuq, *cuk;
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = lcai_check_attn_call(fn, plan, LCA_MLA, Tq, Tk, cu_seqlens, nseq,
	    oneq, onek, &cuq, &cuk, &n)))
		return s;
	p = &plan->p;
	struct lcai_targ a[] = {
		{ "q_nope", q_nope, 0, 0, 0 }, { "q_rope", q_rope, 0, 0, 0 }, { "ckv", ckv, 0, 0, 0 },
		{ "k_rope", k_rope, 0, 0, 0 }, { "w_uk", w_uk, 0, 0, 0 }, { "w_uv", w_uv, 0, 0, 0 },
		{ "o", o, 0, 0, 0 }, { "lse", lse, 0, 1, 0 },
	};
	if ((s = lcai_count(fn, "q_nope", &a[0].n, Tq, p->H, p->dn, 1)) ||
	    (s = lcai_count(fn, "q_rope", &a[1].n, Tq, p->H, p->dr, 1)) ||
	    (s = lcai_count(fn, "ckv", &a[2].n, Tk, p->dc, 1, 1)) ||
	    (s = lcai_count(fn, "k_rope", &a[3].n, Tk, p->dr, 1, 1)) ||
	    (s = lcai_count(fn, "w_uk", &a[4].n, p->H, p->dn, p->dc, 1)) ||
	    (s = lcai_count(fn, "w_uv", &a[5].n, p->H, p->dv, p->dc, 1)) ||
	    (s = lcai_count(fn, "o", &a[6].n, Tq, p->H, p->dv, 1)) ||
	    (s = lcai_count(fn, "lse", &a[7].n, Tq, p->H, 1, 1)) ||
	    (s = lcai_check_targs(fn, p, a, 8)) ||
	    (s = lcai_check_overlap(fn, p, a, 6, 8)) || (s = lcai_check_finite(fn, p, a, 6, m)) ||
	    (s = lcai_check_range_mla(fn, p, m, Tk)))
		return s;
	if (p->backend == LCA_BACKEND_CUDA)
		return lcai_cuda_mla(p, cuq, cuk, n, q_nope, q_rope, ckv, k_rope, w_uk, w_uv, o, lse);
	if (p->backend == LCA_BACKEND_CPU)
		return (p->dtype == LCA_BF16 ? lcai_cpu_bf16_mla : lcai_cpu_mla)(p, cuq, cuk, n,
			q_nope, q_rope, ckv, k_rope, w_uk, w_uv, o, lse);
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
	struct lcai_targ *s0, struct lcai_targ *s1)
{
	lca_status s;

	if ((s = lcai_count(fn, "state0", &s0->n, n, p->H, p->dk, p->dv)))
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
	if ((s = lcai_check_linear_call(fn, plan, LCA_DELTANET, T, cu_seqlens, nseq, one,
	    &cu, &n)))
		return s;
	p = &plan->p;
	struct lcai_targ a[] = {
		{ "q", q, 0, 0, 0 }, { "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 }, { "g", g, 0, 0, 0 },
		{ "beta", beta, 0, 0, 0 }, { "state0", state0, 0, 1, 1 }, { "o", o, 0, 0, 0 },
		{ "state", state, 0, 1, 1 },
	};
	if ((s = lcai_count(fn, "q", &a[0].n, T, p->Hk, p->dk, 1)) ||
	    (s = lcai_count(fn, "k", &a[1].n, T, p->Hk, p->dk, 1)) ||
	    (s = lcai_count(fn, "v", &a[2].n, T, p->H, p->dv, 1)) ||
	    (s = lcai_count(fn, "g", &a[3].n, T, p->H, 1, 1)) ||
	    (s = lcai_count(fn, "beta", &a[4].n, T, p->H, 1, 1)) ||
	    (s = count_state(fn, p, n, &a[5], &a[7])) ||
	    (s = lcai_count(fn, "o", &a[6].n, T, p->H, p->dv, 1)) ||
	    (s = lcai_check_targs(fn, p, a, 8)) ||
	    (s = lcai_check_overlap(fn, p, a, 6, 8)) || (s = lcai_check_finite(fn, p, a, 6, NULL)) ||
	    (s = lcai_check_sign(fn, "g", g, a[3].n, p, -1, "g <= 0")))
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
	if ((s = lcai_check_linear_call(fn, plan, LCA_LIGHTNING, T, cu_seqlens, nseq, one,
	    &cu, &n)))
		return s;
	p = &plan->p;
	struct lcai_targ a[] = {
		{ "q", q, 0, 0, 0 }, { "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 }, { "slope", slope, p->H, 0, 0 },
		{ "state0", state0, 0, 1, 1 }, { "o", o, 0, 0, 0 }, { "state", state, 0, 1, 1 },
	};
	if ((s = lcai_count(fn, "q", &a[0].n, T, p->H, p->dk, 1)) ||
	    (s = lcai_count(fn, "k", &a[1].n, T, p->H, p->dk, 1)) ||
	    (s = lcai_count(fn, "v", &a[2].n, T, p->H, p->dv, 1)) ||
	    (s = count_state(fn, p, n, &a[4], &a[6])) ||
	    (s = lcai_count(fn, "o", &a[5].n, T, p->H, p->dv, 1)) ||
	    (s = lcai_check_targs(fn, p, a, 7)) ||
	    (s = lcai_check_overlap(fn, p, a, 5, 7)) || (s = lcai_check_finite(fn, p, a, 5, NULL)) ||
	    (s = lcai_check_sign(fn, "slope", slope, p->H, p, 1, "slope >= 0")))
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
