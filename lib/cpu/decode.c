/*
 * decode.c - attention of a few new queries over a long cache (one
 * sequence). For now this forwards to the prefill kernels; a key-split
 * kernel replaces it when it lands.
 */
#include "internal.h"

lca_status lcai_cpu_softmax_decode(const lca_params *p, int64_t tq, int64_t tk,
	const void *q, const void *kc, const void *vc, void *o, void *lse)
{
	const int64_t cq[2] = { 0, tq }, ck[2] = { 0, tk };

	return lcai_cpu_softmax(p, cq, ck, 1, q, kc, vc, o, lse);
}

lca_status lcai_cpu_mla_decode(const lca_params *p, int64_t tq, int64_t tk,
	const void *q_nope, const void *q_rope, const void *ckv,
	const void *k_rope, const void *w_uk, const void *w_uv, void *o,
	void *lse)
{
	const int64_t cq[2] = { 0, tq }, ck[2] = { 0, tk };

	return lcai_cpu_mla(p, cq, ck, 1, q_nope, q_rope, ckv, k_rope, w_uk, w_uv, o, lse);
}
