/* mla_bwd.c - PLACEHOLDER until the reference adjoint lands. */
#include "internal.h"
#include "real.h"

#define ARGS const lca_params *p, const int64_t *cu_q, const int64_t *cu_k, \
	int64_t nseq, const real *q_nope, const real *q_rope, const real *ckv, \
	const real *k_rope, const real *w_uk, const real *w_uv, const real *dout, \
	real *dq_nope, real *dq_rope, real *dckv, real *dk_rope, real *dw_uk, real *dw_uv

static lca_status none(void)
{
	return lcai_fail(LCA_ERR_UNSUPPORTED, "lca_mla_backward: not built yet");
}

lca_status REF(mla_naive_bwd)(ARGS)
{
	(void)p, (void)cu_q, (void)cu_k, (void)nseq, (void)q_nope, (void)q_rope, (void)ckv;
	(void)k_rope, (void)w_uk, (void)w_uv, (void)dout, (void)dq_nope, (void)dq_rope;
	(void)dckv, (void)dk_rope, (void)dw_uk, (void)dw_uv;
	return none();
}

lca_status REF(mla_absorbed_bwd)(ARGS)
{
	(void)p, (void)cu_q, (void)cu_k, (void)nseq, (void)q_nope, (void)q_rope, (void)ckv;
	(void)k_rope, (void)w_uk, (void)w_uv, (void)dout, (void)dq_nope, (void)dq_rope;
	(void)dckv, (void)dk_rope, (void)dw_uk, (void)dw_uv;
	return none();
}
