/* mla.c - placeholder until the cpu mla kernel lands. */
#include "internal.h"
lca_status lcai_cpu_mla(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, void *o, void *lse)
{
	(void)p, (void)cu_q, (void)cu_k, (void)nseq, (void)q_nope, (void)q_rope, (void)ckv;
	(void)k_rope, (void)w_uk, (void)w_uv, (void)o, (void)lse;
	return lcai_fail(LCA_ERR_UNSUPPORTED, "cpu mla not built yet");
}
