/*
 * flash_bwd.h - the backward of the tiled attention engine (flash.h):
 * FlashAttention-2's backward pass (Dao 2023, alg. 2) on a CPU, shared by
 * softmax_bwd.c, which defines it, and mla_bwd.c, which runs MLA's naive
 * form through it.
 *
 * Inputs per task (one sequence and one query head) are the forward's:
 * query rows [a ; b] (b's first rope_dim rotated), a packed kv slot, and
 * the forward's output o and lse (with its rounding residual lse_lo),
 * recomputed by the caller with the forward engine (the API saves no
 * activations). The task then walks its
 * visible key tiles j in order and, for each, the query tiles i that see
 * them, recomputing P_ij = exp(S_ij - lse_i) from the same logits as the
 * forward (bit for bit: flash_tile.h), and
 *   dP = dO V^T,  dS = P .* (dP - D),  D = rowsum(dO .* o),
 *   dV_j += P^T dO,  dK_j += dS^T Q,  dQ_i += dS K_j.
 * dK_j, dV_j stay in a tile-sized accumulator and are stored once per j;
 * dQ stays in the thread's workspace until the task ends. A task is run
 * by one thread in a fixed order, and key gradients are per-task partials
 * that the caller sums over tasks in a fixed order: results are bitwise
 * independent of the thread count. No T x T buffer exists.
 */
#ifndef LCATTN_CPU_FLASH_BWD_H
#define LCATTN_CPU_FLASH_BWD_H

#include "flash.h"

/* One kv slot: tk keys [a ; rope(b)] from k (unscaled) and tk values of
 * dv, packed as rows of dkp and dvp values, zero-padded to whole tiles
 * (lcai_flash_padded(tk) rows). */
struct lcai_flash_bwd_pack {
	struct lcai_flash_src k;
	const void *v;
	int64_t ldv, tk;
	void *kr, *vr;
};

/* One (sequence, query head). Query i sits at position tk - tq + i (as in
 * the forward). o, lse: the forward's output rows (o + i * ldo, dv values;
 * lse[i * ldlse], lse_lo likewise); dout rows likewise. Outputs: dq rows split as the query
 * rows are (dqa: da values, dqb: db values with the rotation undone), and
 * the task's partial key and value gradients dk, dv: every one of the
 * slot's padded rows written ([a ; b] in the rotated domain, dkp apart;
 * values dvp apart). */
struct lcai_flash_bwd_task {
	struct lcai_flash_src q;
	const void *o, *dout, *lse, *lse_lo;
	int64_t ldo, lddo, ldlse;
	const void *kr, *vr;
	int64_t tq, tk;
	void *dqa, *dqb;
	int64_t lddqa, lddqb;
	void *dk, *dv;
};

struct lcai_flash_bwd_ws;
struct lcai_flash_bwd;

struct lcai_flash_bwd_ops {
	void (*pack)(const struct lcai_flash_bwd *b,
		const struct lcai_flash_bwd_pack *job);
	void (*task)(const struct lcai_flash_bwd *b,
		const struct lcai_flash_bwd_task *t, struct lcai_flash_bwd_ws *ws);
	/* Undo the rotation of x[0 .. rope_dim) at position pos (the
	 * adjoint of the rotation: the rotation by -pos), in place. */
	void (*unrotate)(const struct lcai_flash *f, void *x, int64_t pos);
};

/* A call's backward set-up: the forward's (f: rows, RoPE table, scale)
 * plus this engine's padded widths and the longest query run. */
struct lcai_flash_bwd {
	const struct lcai_flash *f;
	const struct lcai_flash_bwd_ops *ops;
	int64_t dkp, dvp;   /* dk, dv padded to whole register blocks */
	int64_t max_tq;
	int nthreads;       /* workspaces allocated (the team's size cap) */
	struct lcai_flash_bwd_ws **ws;
};

/* Set up *b for f (after lcai_flash_init) and allocate one workspace per
 * thread the tasks will use (ntasks caps the team), for query runs of up
 * to max_tq: every allocation the engine makes happens here, before any
 * output is written. LCA_ERR_NOMEM (nothing to free) on failure. */
lca_status lcai_flash_bwd_init(struct lcai_flash_bwd *b,
	const struct lcai_flash *f, int64_t max_tq, int64_t ntasks);
void lcai_flash_bwd_free(struct lcai_flash_bwd *b);

void lcai_flash_bwd_pack_all(const struct lcai_flash_bwd *b,
	const struct lcai_flash_bwd_pack *jobs, int64_t njobs);
/* Run the tasks over the workspaces of lcai_flash_bwd_init; cannot fail. */
void lcai_flash_bwd_run(const struct lcai_flash_bwd *b,
	const struct lcai_flash_bwd_task *tasks, int64_t ntasks);

#endif /* LCATTN_CPU_FLASH_BWD_H */
