/*
 * cp_decode.h - decode over a sequence-sharded softmax or mla cache
 * (cp_decode.c), over a transport of cp.h: internal to liblcattn_mpi and
 * its tests. Arguments as lca_mpi_softmax_decode(3) and
 * lca_mpi_mla_decode(3); fn names the public call in messages.
 */
#ifndef LCA_MPI_CP_DECODE_H
#define LCA_MPI_CP_DECODE_H

#include "cp.h"

lca_status lcai_cp_softmax_decode(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, const struct lcai_cp_run *run, int64_t tq, const void *q,
	const void *k, const void *v, void *o, void *lse);
lca_status lcai_cp_mla_decode(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, const struct lcai_cp_run *run, int64_t tq,
	const void *q_nope, const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, void *o, void *lse);

#endif
