/* softmax_bwd.c - PLACEHOLDER until the reference adjoint lands. */
#include "internal.h"
#include "real.h"

lca_status REF(softmax_bwd)(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const real *q, const real *k,
	const real *v, const real *dout, real *dq, real *dk, real *dv)
{
	(void)p, (void)cu_q, (void)cu_k, (void)nseq, (void)q, (void)k, (void)v;
	(void)dout, (void)dq, (void)dk, (void)dv;
	return lcai_fail(LCA_ERR_UNSUPPORTED, "lca_softmax_backward: not built yet");
}
