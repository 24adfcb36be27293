/* deltanet_bwd.c - PLACEHOLDER until the reference adjoint lands. */
#include "internal.h"
#include "real.h"

#define ARGS const lca_params *p, const int64_t *cu, int64_t nseq, const real *q, \
	const real *k, const real *v, const real *g, const real *beta, \
	const real *state0, const real *dout, const real *dstate, real *dq, \
	real *dk, real *dv, real *dg, real *dbeta, real *dstate0
#define UNUSED (void)p, (void)cu, (void)nseq, (void)q, (void)k, (void)v, (void)g, \
	(void)beta, (void)state0, (void)dout, (void)dstate, (void)dq, (void)dk, \
	(void)dv, (void)dg, (void)dbeta, (void)dstate0

lca_status REF(deltanet_recurrent_bwd)(ARGS)
{
	UNUSED;
	return lcai_fail(LCA_ERR_UNSUPPORTED, "lca_deltanet_backward: not built yet");
}

lca_status REF(deltanet_chunked_bwd)(ARGS)
{
	UNUSED;
	return lcai_fail(LCA_ERR_UNSUPPORTED, "lca_deltanet_backward: not built yet");
}
