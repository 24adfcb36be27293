/*
 * backward.c - the public backward calls: the forward's argument checks,
 * plus the cotangents and the gradient buffers, then the kernel of the
 * plan's backend, dtype and algo. The reference and the cpu backend have
 * every backward kernel; cuda answers LCA_ERR_UNSUPPORTED rather than run
 * something slower or different under its name.
 */
#include "internal.h"

/* The backends and dtypes without backward kernels yet: cuda, and bf16
 * on the cpu backend. */
static lca_status no_kernel(const char *fn, const lca_params *p)
{
	return lcai_fail(LCA_ERR_UNSUPPORTED, "%s: the %s backend has no %sbackward "
		"kernel yet (the ref backend has, in f64 and f32)", fn,
		p->backend == LCA_BACKEND_CPU ? "cpu" : "cuda",
		p->dtype == LCA_BF16 ? "bf16 " : "");
}

/* Does the cpu backend have backward kernels for p's dtype? (bf16 plans
 * are refused before this is asked.) */
static int cpu_kernel(const lca_params *p)
{
	return p->backend == LCA_BACKEND_CPU && p->dtype != LCA_BF16;
}

/* Inputs a[0 .. nin) are scanned for non-finite values (their max |x|
 * into amax when not NULL, for the forward's range rule); every output
 * must be disjoint from everything else. */
static lca_status check_args(const char *fn, const lca_params *p,
	const struct lcai_targ *a, int nin, int na, double *amax)
{
	lca_status s;

	if ((s = lcai_check_targs(fn, p, a, na)) || (s = lcai_check_overlap(fn, p, a, nin, na)))
		return s;
	return lcai_check_finite(fn, p, a, nin, amax);
}

lca_status lca_softmax_backward(const lca_plan *plan, int64_t Tq, int64_t Tk,
	const void *q, const void *k, const void *v, const int64_t *cu_seqlens,
	int64_t nseq, const void *dout, void *dq, void *dk, void *dv)
{
	static const char fn[] = "lca_softmax_backward";
	int64_t oneq[2], onek[2], n;
	double m[4]; /* max |q|, |k|, |v|, |dout| */
	const int64_t *cuq, *cuk;
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = lcai_check_attn_call(fn, plan, LCA_SOFTMAX, Tq, Tk, cu_seqlens, nseq,
	    oneq, onek, &cuq, &cuk, &n)))
		return s;
	p = &plan->p;
	if (p->dtype == LCA_BF16) /* before the scans: what is bf16 here is undefined */
		return no_kernel(fn, p);
	struct lcai_targ a[] = {
		{ "q", q, 0, 0, 0 }, { "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 },
		{ "dout", dout, 0, 0, 0 },
		{ "dq", dq, 0, 0, 0 }, { "dk", dk, 0, 0, 0 }, { "dv", dv, 0, 0, 0 },
	};
	if ((s = lcai_count(fn, "q", &a[0].n, Tq, p->H, p->dk, 1)) ||
	    (s = lcai_count(fn, "k", &a[1].n, Tk, p->Hkv, p->dk, 1)) ||
	    (s = lcai_count(fn, "v", &a[2].n, Tk, p->Hkv, p->dv, 1)) ||
	    (s = lcai_count(fn, "dout", &a[3].n, Tq, p->H, p->dv, 1)))
		return s;
	a[4].n = a[0].n, a[5].n = a[1].n, a[6].n = a[2].n;
	if ((s = check_args(fn, p, a, 4, 7, m)) || (s = lcai_check_range_softmax(fn, p, m, Tk)))
		return s;
	if (cpu_kernel(p))
		return lcai_cpu_softmax_bwd(p, cuq, cuk, n, q, k, v, dout, dq, dk, dv);
	if (p->backend != LCA_BACKEND_REF)
		return no_kernel(fn, p);
	if (p->dtype == LCA_F32)
		return lcai_ref32_softmax_bwd(p, cuq, cuk, n, q, k, v, dout, dq, dk, dv);
	return lcai_ref_softmax_bwd(p, cuq, cuk, n, q, k, v, dout, dq, dk, dv);
}

lca_status lca_mla_backward(const lca_plan *plan, int64_t Tq, int64_t Tk,
	const void *q_nope, const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, const int64_t *cu_seqlens, int64_t nseq,
	const void *dout, void *dq_nope, void *dq_rope, void *dckv, void *dk_rope,
	void *dw_uk, void *dw_uv)
{
	static const char fn[] = "lca_mla_backward";
	int64_t oneq[2], onek[2], n;
	double m[7]; /* max |x| of the inputs and dout, in argument order */
	const int64_t *cuq, *cuk;
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = lcai_check_attn_call(fn, plan, LCA_MLA, Tq, Tk, cu_seqlens, nseq,
	    oneq, onek, &cuq, &cuk, &n)))
		return s;
	p = &plan->p;
	if (p->dtype == LCA_BF16) /* before the scans: what is bf16 here is undefined */
		return no_kernel(fn, p);
	struct lcai_targ a[] = {
		{ "q_nope", q_nope, 0, 0, 0 }, { "q_rope", q_rope, 0, 0, 0 },
		{ "ckv", ckv, 0, 0, 0 }, { "k_rope", k_rope, 0, 0, 0 },
		{ "w_uk", w_uk, 0, 0, 0 }, { "w_uv", w_uv, 0, 0, 0 }, { "dout", dout, 0, 0, 0 },
		{ "dq_nope", dq_nope, 0, 0, 0 }, { "dq_rope", dq_rope, 0, 0, 0 },
		{ "dckv", dckv, 0, 0, 0 }, { "dk_rope", dk_rope, 0, 0, 0 },
		{ "dw_uk", dw_uk, 0, 0, 0 }, { "dw_uv", dw_uv, 0, 0, 0 },
	};
	if ((s = lcai_count(fn, "q_nope", &a[0].n, Tq, p->H, p->dn, 1)) ||
	    (s = lcai_count(fn, "q_rope", &a[1].n, Tq, p->H, p->dr, 1)) ||
	    (s = lcai_count(fn, "ckv", &a[2].n, Tk, p->dc, 1, 1)) ||
	    (s = lcai_count(fn, "k_rope", &a[3].n, Tk, p->dr, 1, 1)) ||
	    (s = lcai_count(fn, "w_uk", &a[4].n, p->H, p->dn, p->dc, 1)) ||
	    (s = lcai_count(fn, "w_uv", &a[5].n, p->H, p->dv, p->dc, 1)) ||
	    (s = lcai_count(fn, "dout", &a[6].n, Tq, p->H, p->dv, 1)))
		return s;
	for (int i = 0; i < 6; i++)
		a[7 + i].n = a[i].n;
	if ((s = check_args(fn, p, a, 7, 13, m)) || (s = lcai_check_range_mla(fn, p, m, Tk)))
		return s;
	if (cpu_kernel(p))
		return lcai_cpu_mla_bwd(p, cuq, cuk, n, q_nope, q_rope, ckv, k_rope,
			w_uk, w_uv, dout, dq_nope, dq_rope, dckv, dk_rope, dw_uk, dw_uv);
	if (p->backend != LCA_BACKEND_REF)
		return no_kernel(fn, p);
	if (p->dtype == LCA_F32)
		return (p->algo == LCA_ALGO_NAIVE ? lcai_ref32_mla_naive_bwd :
			lcai_ref32_mla_absorbed_bwd)(p, cuq, cuk, n, q_nope, q_rope, ckv,
			k_rope, w_uk, w_uv, dout, dq_nope, dq_rope, dckv, dk_rope, dw_uk, dw_uv);
	return (p->algo == LCA_ALGO_NAIVE ? lcai_ref_mla_naive_bwd :
		lcai_ref_mla_absorbed_bwd)(p, cuq, cuk, n, q_nope, q_rope, ckv, k_rope,
		w_uk, w_uv, dout, dq_nope, dq_rope, dckv, dk_rope, dw_uk, dw_uv);
}

lca_status lca_deltanet_backward(const lca_plan *plan, int64_t T, const void *q,
	const void *k, const void *v, const void *g, const void *beta,
	const int64_t *cu_seqlens, int64_t nseq, const void *state0, const void *dout,
	const void *dstate, void *dq, void *dk, void *dv, void *dg, void *dbeta,
	void *dstate0)
{
	static const char fn[] = "lca_deltanet_backward";
	int64_t one[2], n;
	const int64_t *cu;
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = lcai_check_linear_call(fn, plan, LCA_DELTANET, T, cu_seqlens, nseq, one,
	    &cu, &n)))
		return s;
	p = &plan->p;
	if (p->dtype == LCA_BF16) /* before the scans: what is bf16 here is undefined */
		return no_kernel(fn, p);
	struct lcai_targ a[] = {
		{ "q", q, 0, 0, 0 }, { "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 },
		{ "g", g, 0, 0, 0 }, { "beta", beta, 0, 0, 0 },
		{ "state0", state0, 0, 1, 0 }, { "dout", dout, 0, 0, 0 },
		{ "dstate", dstate, 0, 1, 0 },
		{ "dq", dq, 0, 0, 0 }, { "dk", dk, 0, 0, 0 }, { "dv", dv, 0, 0, 0 },
		{ "dg", dg, 0, 0, 0 }, { "dbeta", dbeta, 0, 0, 0 },
		{ "dstate0", dstate0, 0, 1, 0 },
	};
	if ((s = lcai_count(fn, "q", &a[0].n, T, p->Hk, p->dk, 1)) ||
	    (s = lcai_count(fn, "k", &a[1].n, T, p->Hk, p->dk, 1)) ||
	    (s = lcai_count(fn, "v", &a[2].n, T, p->H, p->dv, 1)) ||
	    (s = lcai_count(fn, "g", &a[3].n, T, p->H, 1, 1)) ||
	    (s = lcai_count(fn, "beta", &a[4].n, T, p->H, 1, 1)) ||
	    (s = lcai_count(fn, "state0", &a[5].n, n, p->H, p->dk, p->dv)) ||
	    (s = lcai_count(fn, "dout", &a[6].n, T, p->H, p->dv, 1)))
		return s;
	a[7].n = a[5].n;
	for (int i = 0; i < 6; i++)
		a[8 + i].n = a[i].n;
	if ((s = check_args(fn, p, a, 8, 14, NULL)) ||
	    (s = lcai_check_sign(fn, "g", g, a[3].n, p, -1, "g <= 0")))
		return s;
	if (cpu_kernel(p))
		return lcai_cpu_deltanet_bwd(p, cu, n, q, k, v, g, beta, state0,
			dout, dstate, dq, dk, dv, dg, dbeta, dstate0);
	if (p->backend != LCA_BACKEND_REF)
		return no_kernel(fn, p);
	if (p->dtype == LCA_F32)
		return (p->algo == LCA_ALGO_CHUNKED ? lcai_ref32_deltanet_chunked_bwd :
			lcai_ref32_deltanet_recurrent_bwd)(p, cu, n, q, k, v, g, beta, state0,
			dout, dstate, dq, dk, dv, dg, dbeta, dstate0);
	return (p->algo == LCA_ALGO_CHUNKED ? lcai_ref_deltanet_chunked_bwd :
		lcai_ref_deltanet_recurrent_bwd)(p, cu, n, q, k, v, g, beta, state0,
		dout, dstate, dq, dk, dv, dg, dbeta, dstate0);
}

lca_status lca_lightning_backward(const lca_plan *plan, int64_t T, const void *q,
	const void *k, const void *v, const void *slope, const int64_t *cu_seqlens,
	int64_t nseq, const void *state0, const void *dout, const void *dstate,
	void *dq, void *dk, void *dv, void *dstate0)
{
	static const char fn[] = "lca_lightning_backward";
	int64_t one[2], n;
	const int64_t *cu;
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = lcai_check_linear_call(fn, plan, LCA_LIGHTNING, T, cu_seqlens, nseq, one,
	    &cu, &n)))
		return s;
	p = &plan->p;
	if (p->dtype == LCA_BF16) /* before the scans: what is bf16 here is undefined */
		return no_kernel(fn, p);
	struct lcai_targ a[] = {
		{ "q", q, 0, 0, 0 }, { "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 },
		{ "slope", slope, p->H, 0, 0 }, { "state0", state0, 0, 1, 0 },
		{ "dout", dout, 0, 0, 0 }, { "dstate", dstate, 0, 1, 0 },
		{ "dq", dq, 0, 0, 0 }, { "dk", dk, 0, 0, 0 }, { "dv", dv, 0, 0, 0 },
		{ "dstate0", dstate0, 0, 1, 0 },
	};
	if ((s = lcai_count(fn, "q", &a[0].n, T, p->H, p->dk, 1)) ||
	    (s = lcai_count(fn, "k", &a[1].n, T, p->H, p->dk, 1)) ||
	    (s = lcai_count(fn, "v", &a[2].n, T, p->H, p->dv, 1)) ||
	    (s = lcai_count(fn, "state0", &a[4].n, n, p->H, p->dk, p->dv)) ||
	    (s = lcai_count(fn, "dout", &a[5].n, T, p->H, p->dv, 1)))
		return s;
	a[6].n = a[10].n = a[4].n;
	a[7].n = a[0].n, a[8].n = a[1].n, a[9].n = a[2].n;
	if ((s = check_args(fn, p, a, 7, 11, NULL)) ||
	    (s = lcai_check_sign(fn, "slope", slope, p->H, p, 1, "slope >= 0")))
		return s;
	if (cpu_kernel(p))
		return lcai_cpu_lightning_bwd(p, cu, n, q, k, v, slope, state0,
			dout, dstate, dq, dk, dv, dstate0);
	if (p->backend != LCA_BACKEND_REF)
		return no_kernel(fn, p);
	if (p->dtype == LCA_F32)
		return (p->algo == LCA_ALGO_CHUNKED ? lcai_ref32_lightning_blockwise_bwd :
			lcai_ref32_lightning_recurrent_bwd)(p, cu, n, q, k, v, slope, state0,
			dout, dstate, dq, dk, dv, dstate0);
	return (p->algo == LCA_ALGO_CHUNKED ? lcai_ref_lightning_blockwise_bwd :
		lcai_ref_lightning_recurrent_bwd)(p, cu, n, q, k, v, slope, state0,
		dout, dstate, dq, dk, dv, dstate0);
}
