/*
 * lcattn_mpi.h - context parallelism over MPI: the tokens of a batch (one
 * sequence, or a packed batch of sequences) split over the ranks of a
 * communicator, contiguous or zigzag (liblcattn_mpi, pkg-config
 * lcattn_mpi). Built on the pieces of lcattn.h (lca_softmax_partial(3),
 * lca_attn_merge(3), the summaries); liblcattn itself never communicates.
 * See lcattn(7), "Context parallelism", and lca_mpi_layout_zigzag(3).
 *
 * Conventions, beyond those of lcattn.h:
 *   - Collective: every rank of comm makes the same call with a plan of
 *     the same variant, dtype and sizes (masks, window, RoPE and scale
 *     too); backend, algo, chunk, block and nthreads may differ.
 *   - The layout (lca_mpi_layout below) says which tokens of the batch
 *     [0, T) each rank holds: contiguous (rank r one run, the runs in rank
 *     order from token 0 with no gap) or zigzag (2P near-equal chunks,
 *     rank r chunks r and 2P - 1 - r). A rank may hold no token (pointers
 *     may then be NULL), so more ranks than tokens work. Tq = Tk, the
 *     queries being the tokens. With cu_seqlens the batch is packed as in
 *     lcattn.h (positions restart at 0 in each sequence, sequences never
 *     see each other) and a sequence may span ranks; the split is by
 *     token, over the whole packed batch.
 *   - Per-token tensors are the rank's own rows in global order (zigzag:
 *     chunk r's tokens, then chunk 2P - 1 - r's), shaped as in the plain
 *     forward call with T = len; positions (RoPE, masks, windows) are
 *     global. Each rank's outputs are the same rows of the single-process
 *     call, within the tolerance rule (bitwise on one rank).
 *   - Ref and cpu backends, f64 and f32 plans (else LCA_ERR_UNSUPPORTED).
 *   - Every rank returns the same status: ranks that disagree on the plan
 *     or the layout (kind, T, runs that overlap or leave a gap,
 *     cu_seqlens), or one whose local checks or compute fail, make every
 *     rank fail (no rank hangs); outputs are written only when all
 *     succeed. lca_mpi_last_error() gives this thread's detail message.
 *   - Each call works on a duplicate of comm (MPI_Comm_dup) whose error
 *     handler is MPI_ERRORS_RETURN: its messages never mix with the
 *     caller's, and an MPI error inside the call becomes LCA_ERR_INTERNAL
 *     instead of aborting (comm's own handler, MPI_ERRORS_ARE_FATAL by
 *     default, still applies to the duplication itself).
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

/* How the batch's tokens are split over the ranks. */
typedef enum lca_mpi_layout_kind {
	LCA_MPI_CONTIGUOUS = 0, /* rank r: tokens [start, start + len) */
	LCA_MPI_ZIGZAG = 1      /* rank r: chunks r and 2P - 1 - r of 2P, chunk c
	                           being tokens [T c / 2P, T (c + 1) / 2P) */
} lca_mpi_layout_kind;

/*
 * This rank's part of the batch. Zero-initialised fields keep the first
 * release's meaning (one sequence, contiguous runs), so { start, len }
 * still works; every field is read, so a layout set field by field must
 * start zeroed. lca_mpi_layout_contiguous() and lca_mpi_layout_zigzag()
 * fill a balanced layout. Every rank must give the same kind, T,
 * cu_seqlens and nseq.
 */
typedef struct lca_mpi_layout {
	int64_t start;              /* contiguous: first token of this rank's run;
	                               zigzag: first token of chunk r */
	int64_t len;                /* tokens this rank holds (zigzag: of both
	                               chunks): its rows */
	lca_mpi_layout_kind kind;
	int64_t T;                  /* tokens of the batch; contiguous: 0 = the sum
	                               of the ranks' len; zigzag: required */
	const int64_t *cu_seqlens;  /* [nseq + 1] over the whole batch, as in
	                               lcattn.h; NULL = one sequence */
	int64_t nseq;               /* sequences (ignored without cu_seqlens) */
} lca_mpi_layout;

/*
 * Fill *layout for rank of P ranks sharing T tokens: contiguous runs
 * [T rank / P, T (rank + 1) / P), or the zigzag chunks. cu_seqlens is set
 * to NULL (one sequence): set it and nseq afterwards for a packed batch.
 * LCA_ERR_NULL, LCA_ERR_SIZE (T < 0, zigzag T < 1, P < 1, rank outside
 * [0, P)).
 */
LCA_API lca_status lca_mpi_layout_contiguous(int64_t T, int P, int rank,
	lca_mpi_layout *layout);
LCA_API lca_status lca_mpi_layout_zigzag(int64_t T, int P, int rank,
	lca_mpi_layout *layout);

/*
 * Where rank's rows lie in the batch under layout (as P ranks would
 * split it): rows 0 .. n[0] - 1 are tokens g[0] .., the next n[1] rows
 * tokens g[1] ..; *nruns (0, 1 or 2) runs. Zigzag's two chunks are one
 * run where they touch (rank P - 1). Local: no communication.
 */
LCA_API lca_status lca_mpi_layout_runs(const lca_mpi_layout *layout, int P,
	int rank, int64_t g[2], int64_t n[2], int *nruns);

/* What this rank sent during one call. */
typedef struct lca_mpi_stats {
	uint64_t bytes_sent;    /* payload: key/value blocks, latents, summaries */
	uint64_t control_sent;  /* agreement headers and status votes */
} lca_mpi_stats;

/*
 * Softmax attention, ring over the key/value blocks with the lse merge;
 * fully masked blocks are neither computed nor sent.
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
 * Gated DeltaNet: one all-gather of the runs' summaries (one per run,
 * two under zigzag), folded in global order, then each run's chunked
 * forward from the state entering it.
 *   q, k [len][Hk][dk]  v [len][H][dv]  g, beta [len][H]
 *   state0 [N][H][dk][dv] each sequence's initial state, N = nseq with
 *                      cu_seqlens, else 1 (NULL = zeros; given on all
 *                      ranks or on none)
 *   o [len][H][dv]
 *   state [N][H][dk][dv] final states, or NULL: each rank writes those of
 *                      the sequences whose last token it holds (an empty
 *                      sequence's, its state0, where the token after it
 *                      is, or the batch's last token) and leaves the
 *                      others untouched
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

#ifdef __cplusplus
}
#endif

#endif /* LCATTN_MPI_H */
