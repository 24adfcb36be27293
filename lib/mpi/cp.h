/*
 * cp.h - context parallelism over a transport (internal to liblcattn_mpi
 * and its tests). The algorithms (cp_attn.c, cp_linear.c) talk only to
 * struct lcai_cp_comm, so the loopback transport (loopback.c: P ranks as
 * threads of one process) runs exactly the code the MPI transport
 * (mpi.c) runs. This layer calls liblcattn's public API only: the core
 * library knows nothing of it.
 */
#ifndef LCA_MPI_CP_H
#define LCA_MPI_CP_H

#include <lcattn.h>

#include <stddef.h>
#include <stdint.h>

/*
 * A transport: rank and size, and two collective operations that every
 * rank calls the same number of times in the same order.
 *   allgather:   send [bytes] from each rank into recv [size][bytes], in
 *                rank order
 *   allmax:      v[0 .. n) (n <= LCAI_CP_MAXW) becomes, element by
 *                element, the largest value any rank holds; it needs no
 *                memory, so a rank that ran out can still vote (a rank
 *                that skipped a collective would leave its peers waiting)
 *   shift_start: send LCAI_CP_NSEG buffers to rank + 1 and receive as
 *                many from rank - 1 (both mod size; 0 bytes: no message
 *                that way), without waiting; shift_wait completes it.
 *                One shift at a time; the buffers stay untouched until
 *                the wait. (Two segments: a block's keys and values,
 *                or a tail of each, travel without packing.)
 * Each returns 0 or -1 (a transport failure). The counters are kept by
 * the wrappers below, so both transports count the same way.
 */
#define LCAI_CP_NSEG 2
#define LCAI_CP_MAXW 4

struct lcai_cp_seg {
	const void *send;
	size_t sbytes;
	void *recv;
	size_t rbytes;
};

struct lcai_cp_comm {
	int rank, size;
	void *impl;
	int (*allgather)(struct lcai_cp_comm *c, const void *send, size_t bytes,
		void *recv);
	int (*allmax)(struct lcai_cp_comm *c, int64_t *v, int n);
	int (*shift_start)(struct lcai_cp_comm *c, const struct lcai_cp_seg *seg);
	int (*shift_wait)(struct lcai_cp_comm *c);
	uint64_t payload_sent;  /* K/V blocks, latents, summaries */
	uint64_t control_sent;  /* agreement headers and statuses */
};

/* Counting wrappers: an allgather of b bytes counts (size - 1) b sent by
 * every rank (what it delivers to the others), an allmax of n words
 * (size - 1) 8 n as the allgather of those words would, a shift its
 * sbytes. */
int lcai_cp_allgather(struct lcai_cp_comm *c, int control, const void *send,
	size_t bytes, void *recv);
int lcai_cp_allmax(struct lcai_cp_comm *c, int control, int64_t *v, int n);
int lcai_cp_shift_start(struct lcai_cp_comm *c, const struct lcai_cp_seg *seg);
int lcai_cp_shift_wait(struct lcai_cp_comm *c);

/* This rank's layout as the caller gave it (lca_mpi_layout of
 * lcattn_mpi.h): kind 0 contiguous, 1 zigzag; T 0 = the sum of the runs
 * (contiguous only); cu NULL = one sequence (nseq then ignored). */
struct lcai_cp_run {
	int64_t start, len;
	int kind;
	int64_t T;
	const int64_t *cu;
	int64_t nseq;
};
#define LCAI_CP_ZIGZAG 1

/*
 * The four forward calls over a transport. Arguments as the lca_mpi_*
 * calls of lcattn_mpi.h. fn names the public call in messages.
 */
lca_status lcai_cp_softmax(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, const struct lcai_cp_run *run, const void *q,
	const void *k, const void *v, void *o, void *lse);
lca_status lcai_cp_mla(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, const struct lcai_cp_run *run, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope, const void *w_uk,
	const void *w_uv, void *o, void *lse);
lca_status lcai_cp_deltanet(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, const struct lcai_cp_run *run, const void *q,
	const void *k, const void *v, const void *g, const void *beta,
	const void *state0, void *o, void *state);
lca_status lcai_cp_lightning(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, const struct lcai_cp_run *run, const void *q,
	const void *k, const void *v, const void *slope, const void *state0,
	void *o, void *state);

/* ---- shared by the algorithms (common.c) ---- */

/* A run of consecutive tokens held by one rank: global tokens
 * [g, g + n), rows [row, row + n) of that rank's buffers. */
struct lcai_cp_span {
	int64_t g, n, row;
};

/* A piece: a run cut at the sequence boundaries (never empty). pos is
 * the position of its first token within sequence seq. */
struct lcai_cp_piece {
	int64_t g, n, row, seq, pos;
	int rank;
};

/* Everything the ranks must agree on, gathered once per call, and the
 * layout worked out from it (the same on every rank). */
struct lcai_cp_view {
	int P, r;
	lca_params p;             /* the plan's resolved parameters */
	size_t es;                /* element size */
	int64_t T;                /* tokens of the whole batch */
	int64_t nseq;             /* sequences (1 without cu_seqlens) */
	const int64_t *cu;        /* [nseq + 1]: the caller's, or cu1 */
	int64_t cu1[2];
	int user_cu;              /* cu_seqlens given */
	int nr;                   /* run slots a rank has: 1, zigzag 2 */
	int64_t *len;             /* [P] rows each rank holds */
	struct lcai_cp_span *run; /* [P][nr]; n = 0: an unused slot */
	struct lcai_cp_piece *pc; /* all pieces in global order */
	int64_t npc;
	int64_t *rpc, *rpc0;      /* rank j's pieces, row order: pc[rpc[rpc0[j] ..
	                             rpc0[j + 1] - 1]] */
	int has_state0;
};

/* ---- layouts (layout.c) ---- */

/* floor(T c / n) without overflow (0 <= c <= n, n >= 1). */
int64_t lcai_cp_frac(int64_t T, int64_t c, int64_t n);

/* Rank r of P's runs under the zigzag layout of T tokens (chunks r and
 * 2P - 1 - r of 2P; adjacent chunks are one run, empty ones none):
 * returns the number of runs (0..2) in g[], n[]. */
int lcai_cp_zigzag_runs(int64_t T, int P, int r, int64_t g[2], int64_t n[2]);

/* FNV-1a of cu_seqlens, the words the ranks compare. */
int64_t lcai_cp_cu_hash(const int64_t *cu, int64_t nseq);

/* Fill vw's layout (run, pc, rpc) from vw->P, T, nr, cu and the ranks'
 * contiguous starts start[] (unused for zigzag); -1 when out of memory. */
int lcai_cp_view_layout(struct lcai_cp_view *vw, const int64_t *start);

/* The sequence holding token t (cu nondecreasing, cu[0] <= t < cu[nseq]). */
int64_t lcai_cp_seq_of(const int64_t *cu, int64_t nseq, int64_t t);

/*
 * The agreement step: every rank sends its plan's shape, its run, whether
 * it has state0 and the status of its local checks (local); all ranks
 * reach the same verdict from the same gathered bytes, so a disagreement
 * gives a status on every rank and no rank waits for a message that never
 * comes. On success *vw is filled (lcai_cp_view_free() frees it).
 */
lca_status lcai_cp_agree(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, lca_variant variant, const struct lcai_cp_run *run,
	int has_state0, lca_status local, struct lcai_cp_view *vw);
void lcai_cp_view_free(struct lcai_cp_view *vw);

/* A rank's own layout, checked before the exchange (NULL, signs, kind,
 * cu_seqlens[0] = 0 and non-decreasing). */
lca_status lcai_cp_check_run(const char *fn, const struct lcai_cp_run *run);

/* The worst status of all ranks, so that every rank returns the same
 * verdict; a rank that failed keeps its own message, the others name the
 * failed rank (of the largest status code, the lowest such rank). One
 * allmax: no memory needed, so it works after any allocation failure. */
lca_status lcai_cp_all_ok(struct lcai_cp_comm *c, const char *fn, lca_status mine);

/* The word a rank contributes to such a vote (0 when mine is LCA_OK; at
 * least LCAI_CP_FAILED, with the status and the rank in it, when not),
 * and the verdict read back from the allmax of the words. A vote can
 * share an allmax with values below LCAI_CP_FAILED (cp_decode.c: tq). */
#define LCAI_CP_FAILED ((int64_t)1 << 62)
int64_t lcai_cp_vote_word(const struct lcai_cp_comm *c, lca_status mine);
lca_status lcai_cp_vote_read(const char *fn, lca_status mine, int64_t w);

/* The detail message of this thread's last failure (error.c). */
lca_status lcai_cp_fail(lca_status s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void lcai_cp_clear_error(void);
const char *lcai_cp_last_error(void);

/* a * b * c * d in size_t, or 0 with *ovf set. */
size_t lcai_cp_mul(int *ovf, int64_t a, int64_t b, int64_t c, int64_t d);

/* ---- the loopback transport (loopback.c; tests) ---- */

/* Run body(c, arg) on P >= 1 threads, one per simulated rank, each with
 * its own transport; returns 0, or -1 when the threads could not start.
 * c->payload_sent and control_sent are left in comms[r] if comms != NULL. */
int lcai_loop_run(int P, void (*body)(struct lcai_cp_comm *c, void *arg),
	void *arg, struct lcai_cp_comm *comms);

#endif
