/*
 * cpdec.h - the cases of the sharded-decode tests, shared by the loopback
 * test (check_cp_decode.c) and the mpirun test (mpi_decode.c): a sequence
 * of T tokens drawn as in cpcase.h, its last tq positions as the new
 * queries, the cached keys split over the ranks in one of a few ways, the
 * single-process call, the tolerance rule and the stated bytes.
 */
#ifndef LCATTN_CPDEC_H
#define LCATTN_CPDEC_H

#include "cpcase.h"

/* How the keys are split: near-equal runs; all on the last rank (the
 * others empty); rank 0 one token and the rest near-equal; zigzag (rank r
 * chunks r and 2P - 1 - r of 2P). */
enum { DEC_EVEN, DEC_LAST, DEC_SKEW, DEC_ZIGZAG, DEC_NSPLIT };

void dec_split(int64_t T, int P, int r, int mode, int64_t *start, int64_t *len);

/* A transport's decode call for one rank: in[] in the variant's argument
 * order (queries and weights whole, keys the rank's own rows); zigzag: the
 * layout is zigzag over T tokens, start the first token of chunk r. */
typedef lca_status (*dec_call_fn)(void *ctx, lca_variant v, const lca_plan *plan,
	int zigzag, int64_t T, int64_t start, int64_t len, int64_t tq, const void *const *in,
	void *o, void *lse, uint64_t *bytes, uint64_t *control);

/* Rank r's call, outputs o [tq][H][dv] and lse [tq][H] of its own. */
lca_status dec_rank(const struct cp_data *d, const lca_plan *plan, int P, int r,
	int mode, int64_t tq, dec_call_fn f, void *ctx, void *o, void *lse,
	uint64_t *bytes, uint64_t *control);

/* The single-process call: the last tq queries over all T keys,
 * bottom-right (lca_softmax_forward / lca_mla_forward, Tq = tq, Tk = T). */
lca_status dec_single(const struct cp_data *d, const lca_plan *plan, int64_t tq,
	void *o, void *lse);

/* Against the double reference by the tolerance rule: 0, or 1 and msg. */
int dec_judge(const struct cp_data *d, int64_t tq, const void *o, const void *lse,
	char *msg, size_t size);

/* The payload and control bytes each rank sends (lca_mpi_softmax_decode(3)). */
uint64_t dec_bytes(const struct cp_data *d, int P, int64_t tq);
uint64_t dec_control(int P);

#endif
