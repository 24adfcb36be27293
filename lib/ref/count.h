/*
 * count.h - the counting build of the double reference (libref_count.la,
 * lib/ref compiled with LCA_REF_COUNT), for tests/check_cost only: C, not
 * part of liblcattn, and kept out of internal.h, which nvcc also reads.
 */
#ifndef LCA_REF_COUNT_H
#define LCA_REF_COUNT_H

#include "internal.h"

/* The double kernels once more, counting their floating-point operations
 * into this thread's lcai_refc_flops (lib/ref/real.h, FLOPS). Built into
 * libref_count.la, which only tests/check_cost links: never in liblcattn. */
extern _Thread_local int64_t lcai_refc_flops;
lca_status lcai_refc_softmax(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const double *q, const double *k,
	const double *v, double *o, double *lse);
lca_status lcai_refc_mla_naive(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const double *q_nope,
	const double *q_rope, const double *ckv, const double *k_rope,
	const double *w_uk, const double *w_uv, double *o, double *lse);
lca_status lcai_refc_mla_absorbed(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const double *q_nope,
	const double *q_rope, const double *ckv, const double *k_rope,
	const double *w_uk, const double *w_uv, double *o, double *lse);
lca_status lcai_refc_deltanet_recurrent(const lca_params *p, const int64_t *cu,
	int64_t nseq, const double *q, const double *k, const double *v,
	const double *g, const double *beta, const double *state0, double *o,
	double *state);
lca_status lcai_refc_deltanet_chunked(const lca_params *p, const int64_t *cu,
	int64_t nseq, const double *q, const double *k, const double *v,
	const double *g, const double *beta, const double *state0, double *o,
	double *state);
lca_status lcai_refc_lightning_recurrent(const lca_params *p, const int64_t *cu,
	int64_t nseq, const double *q, const double *k, const double *v,
	const double *slope, const double *state0, double *o, double *state);
lca_status lcai_refc_lightning_blockwise(const lca_params *p, const int64_t *cu,
	int64_t nseq, const double *q, const double *k, const double *v,
	const double *slope, const double *state0, double *o, double *state);

#endif
