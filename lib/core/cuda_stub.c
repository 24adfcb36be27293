/*
 * cuda_stub.c - stands in for lib/cuda/ when the library is built without
 * --enable-cuda, so every (operation, backend) pair has an entry: each call
 * says plainly that CUDA is not part of this build.
 */
#include "internal.h"

static lca_status not_built(void)
{
	return lcai_fail(LCA_ERR_UNSUPPORTED,
		"this lcattn was built without CUDA (configure --enable-cuda)");
}

int lcai_cuda_device_count(void)
{
	return 0;
}

lca_status lcai_cuda_alloc(size_t bytes, void **ptr)
{
	(void)bytes, (void)ptr;
	return not_built();
}

void lcai_cuda_free(void *ptr)
{
	(void)ptr;
}

lca_status lcai_cuda_copy(void *dst, const void *src, size_t bytes, lca_copy_kind kind)
{
	(void)dst, (void)src, (void)bytes, (void)kind;
	return not_built();
}

int64_t lcai_cuda_find(const void *x, int64_t n, lca_dtype t, int mode)
{
	(void)x, (void)n, (void)t, (void)mode;
	return -2;
}

int lcai_cuda_maxabs(const void *x, int64_t n, lca_dtype t, double *amax)
{
	(void)x, (void)n, (void)t, (void)amax;
	return -2;
}

lca_status lcai_cuda_softmax(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q, const void *k,
	const void *v, void *o, void *lse)
{
	(void)p, (void)cu_q, (void)cu_k, (void)nseq, (void)q, (void)k, (void)v, (void)o, (void)lse;
	return not_built();
}

lca_status lcai_cuda_mla(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, void *o, void *lse)
{
	(void)p, (void)cu_q, (void)cu_k, (void)nseq, (void)q_nope, (void)q_rope;
	(void)ckv, (void)k_rope, (void)w_uk, (void)w_uv, (void)o, (void)lse;
	return not_built();
}

lca_status lcai_cuda_deltanet(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *g, const void *beta, const void *state0, void *o,
	void *state)
{
	(void)p, (void)cu, (void)nseq, (void)q, (void)k, (void)v, (void)g;
	(void)beta, (void)state0, (void)o, (void)state;
	return not_built();
}

lca_status lcai_cuda_lightning(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *slope, const void *state0, void *o, void *state)
{
	(void)p, (void)cu, (void)nseq, (void)q, (void)k, (void)v, (void)slope;
	(void)state0, (void)o, (void)state;
	return not_built();
}
