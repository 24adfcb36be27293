/*
 * lcattn_mpi.h - context parallelism over MPI: one sequence split over the
 * ranks of a communicator, each rank holding one contiguous run of its
 * tokens (liblcattn_mpi, pkg-config lcattn_mpi). Built on the pieces of
 * lcattn.h (lca_softmax_partial(3), lca_attn_merge(3), the summaries);
 * liblcattn itself never communicates. See lcattn(7), "Context
 * parallelism".
 *
 * Conventions, beyond those of lcattn.h:
 *   - Collective: every rank of comm makes the same call with a plan of
 *     the same variant, dtype and sizes (masks, window, RoPE and scale
 *     too); backend, algo, chunk, block and nthreads may differ.
 *   - Rank r holds tokens [start, start + len) of the sequence, the runs
 *     in rank order from 0 with no gap: rank 0 starts at 0 and rank r + 1
 *     where rank r ends. A run may be empty (len = 0, pointers may then
 *     be NULL), so more ranks than tokens work. One sequence per call
 *     (no cu_seqlens); Tq = Tk = T, the queries being the tokens.
 *   - Per-token tensors are the rank's own rows, shaped as in the plain
 *     forward call with T = len; positions (RoPE, masks, windows) are
 *     global. Each rank's outputs are the same rows of the single-process
 *     call, within the tolerance rule (bitwise on one rank).
 *   - Ref and cpu backends, f64 and f32 plans (else LCA_ERR_UNSUPPORTED).
 *   - Every rank returns the same status: ranks that disagree on the plan
 *     or the layout, or one whose local checks or compute fail, make every
 *     rank fail (no rank hangs); outputs are written only when all
 *     succeed. lca_mpi_last_error() gives this thread's detail message.
 *   - Weights shared by all tokens (mla w_uk, w_uv; lightning slope) and
 *     state0 must be the same on every rank (not checked).
 *   - stats (may be NULL) receives the bytes this rank sent
 *     (lca_mpi_softmax_forward(3) gives the formulas).
 */
#ifndef LCATTN_MPI_H
#define LCATTN_MPI_H

#include <lcattn.h>
#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

/* This rank's run: tokens [start, start + len) of the sequence. */
typedef struct lca_mpi_layout {
	int64_t start;
	int64_t len;
} lca_mpi_layout;

/* What this rank sent during one call. */
typedef struct lca_mpi_stats {
	uint64_t bytes_sent;    /* payload: key/value blocks, latents, summaries */
	uint64_t control_sent;  /* agreement headers and status votes */
} lca_mpi_stats;

/*
 * Softmax attention, ring over the key/value blocks with the lse merge.
 *   q [len][H][dk]  k [len][Hkv][dk]  v [len][Hkv][dv]
 *   o [len][H][dv]  lse [len][H] (may be NULL)
 */
LCA_API lca_status lca_mpi_softmax_forward(const lca_plan *plan, MPI_Comm comm,
	const lca_mpi_layout *layout, const void *q, const void *k, const void *v,
	void *o, void *lse, lca_mpi_stats *stats);

/*
 * MLA; the ring carries the latent (ckv and k_rope: dc + dr values per
 * token), never decompressed keys and values.
 *   q_nope [len][H][dn]  q_rope [len][H][dr]  ckv [len][dc]  k_rope [len][dr]
 *   w_uk [H][dn][dc]     w_uv [H][dv][dc]     o [len][H][dv]  lse [len][H] or NULL
 */
LCA_API lca_status lca_mpi_mla_forward(const lca_plan *plan, MPI_Comm comm,
	const lca_mpi_layout *layout, const void *q_nope, const void *q_rope,
	const void *ckv, const void *k_rope, const void *w_uk, const void *w_uv,
	void *o, void *lse, lca_mpi_stats *stats);

/*
 * Gated DeltaNet: one all-gather of the ranks' summaries, folded in rank
 * order, then each rank's chunked forward from its incoming state.
 *   q, k [len][Hk][dk]  v [len][H][dv]  g, beta [len][H]
 *   state0 [H][dk][dv] the sequence's initial state (NULL = zeros; given
 *                      on all ranks or on none)
 *   o [len][H][dv]
 *   state [H][dk][dv]  the final state, written on the last rank only
 *                      (ignored, may be NULL, on the others)
 */
LCA_API lca_status lca_mpi_deltanet_forward(const lca_plan *plan, MPI_Comm comm,
	const lca_mpi_layout *layout, const void *q, const void *k, const void *v,
	const void *g, const void *beta, const void *state0, void *o, void *state,
	lca_mpi_stats *stats);

/*
 * Lightning attention, the same way; slope [H] as for
 * lca_lightning_forward(), the other tensors as above with Hk = H.
 */
LCA_API lca_status lca_mpi_lightning_forward(const lca_plan *plan, MPI_Comm comm,
	const lca_mpi_layout *layout, const void *q, const void *k, const void *v,
	const void *slope, const void *state0, void *o, void *state,
	lca_mpi_stats *stats);

/* Detail message of this thread's last failing lca_mpi_ call ("" if none);
 * valid until this thread's next lca_mpi_ call. */
LCA_API const char *lca_mpi_last_error(void);

/*
 * Decode over a sequence-sharded cache (softmax or mla): layout gives the
 * run of cached keys this rank holds, as above (the new tokens' keys are
 * appended by the caller to the run holding the sequence's last
 * positions, so T = the sum of the runs includes them); every rank passes
 * the same tq new queries, the last tq positions T - tq .. T - 1, and
 * every rank returns the same o and lse (lse may be NULL): the partials
 * over each rank's keys merged in rank order. Payload: one all-gather of
 * tq H (dv + 1) values per rank (lca_mpi_softmax_decode(3)).
 *   q [tq][H][dk]  k [len][Hkv][dk]  v [len][Hkv][dv]
 *   o [tq][H][dv]  lse [tq][H]
 */
LCA_API lca_status lca_mpi_softmax_decode(const lca_plan *plan, MPI_Comm comm,
	const lca_mpi_layout *layout, int64_t tq, const void *q, const void *k,
	const void *v, void *o, void *lse, lca_mpi_stats *stats);

/*
 * The same for mla: the ranks hold runs of the latent cache.
 *   q_nope [tq][H][dn]  q_rope [tq][H][dr]  ckv [len][dc]  k_rope [len][dr]
 *   w_uk [H][dn][dc]    w_uv [H][dv][dc]    o [tq][H][dv]  lse [tq][H] or NULL
 */
LCA_API lca_status lca_mpi_mla_decode(const lca_plan *plan, MPI_Comm comm,
	const lca_mpi_layout *layout, int64_t tq, const void *q_nope, const void *q_rope,
	const void *ckv, const void *k_rope, const void *w_uk, const void *w_uv,
	void *o, void *lse, lca_mpi_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* LCATTN_MPI_H */
