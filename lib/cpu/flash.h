/*
 * flash.h - the tiled online-softmax engine of lib/cpu (FlashAttention,
 * Dao et al. 2022, alg. 1), shared by softmax.c, which defines it, and
 * mla.c, which runs MLA as softmax attention over built rows.
 *
 * One attention problem (a "task": one sequence and one query head) sees
 * query rows and key rows that are both [a ; b]: a part of da values used
 * as is and a part of db values whose first rope_dim are rotated at the
 * row's position (softmax: a empty, b = q or k; mla: a = q_nope/q_lat or
 * k_nope/ckv, b = q_rope or k_rope). Logits are scale * <q_row, k_row>.
 *
 * Work flows in two steps:
 *   1. pack: each (sequence, kv head) turns its keys into transposed tiles
 *      [tile][dk][LCAI_FLASH_BK] and its values into rows of dvp values
 *      (dv padded with zeros), all zero-padded to whole tiles: O(T) memory,
 *      read in place by every query head of the group (GQA, MQA, MLA);
 *   2. run: every task is cut into LCAI_FLASH_FWD_BQ-query tiles and the tiles
 *      of all tasks are spread over the OpenMP threads. A tile walks only
 *      the key tiles its causal/window mask can reach, carrying the running
 *      max m, sum l and output per row, so no T x T buffer ever exists.
 *
 * Tensors are of the plan's dtype (float or double) and never converted:
 * the engine is instantiated once per element type (and per x86 vector
 * width) and picked at lcai_flash_init(). A bf16 plan has an instance only
 * where the CPU has the AVX-512 BF16 dot products and the plan no RoPE
 * (flash_bf16.h, lcai_cpu_softmax_bf16dot); it computes in float.
 */
#ifndef LCATTN_CPU_FLASH_H
#define LCATTN_CPU_FLASH_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>

/* Queries per tile and keys per key tile. 64 x 64 keeps the logit tile
 * (16 KiB in float) and the query, key and value tiles of d = 128 within
 * L2 next to each other; measured against 32..128 on the development
 * machine (see softmax.c). The backward (flash_bwd.h) runs square
 * LCAI_FLASH_BQ x LCAI_FLASH_BK tiles. */
#define LCAI_FLASH_BQ 64
#define LCAI_FLASH_BK 64
/* Queries per tile of the forward engine. Each query tile streams the
 * packed keys and values it sees from memory (at T = 16K they outgrow
 * L3), so the rows sharing one pass set the bytes per flop: 128 rows
 * halve that traffic against 64. Causal, H = 8, d = 128, f32, one
 * thread on AMD EPYC Zen 5 (shared), T = 16K: 0.91 of the time of 64
 * rows under LCA_CPU_ISA=avx2 and 0.96 at AVX-512 (two runs each), about
 * even at T = 4K; 96 rows fell in between. The logit tile (32 KiB),
 * query and output tiles (64 KiB each at d = 128) stay in L2. Tile sizes
 * change no bits (every logit and output is one fixed-order sum). */
#define LCAI_FLASH_FWD_BQ 128

/* Rows [a ; b] of one operand: row r is a + r * lda (da values) followed
 * by b + r * ldb (db values); either part may be empty (d = 0, pointer
 * unused). Pointers are to elements of the plan's dtype. */
struct lcai_flash_src {
	const void *a;
	int64_t lda, da;
	const void *b;
	int64_t ldb, db;
};

/* Packing of one (sequence, kv head): tk keys from k, tk values (dv each,
 * row r at v + r * ldv) into kt and vp, each holding
 * lcai_flash_padded(tk) rows. */
struct lcai_flash_pack {
	struct lcai_flash_src k;
	const void *v;
	int64_t ldv, tk;
	void *kt, *vp;
};

/* One (sequence, query head): tq queries against tk keys of a packed kv
 * head; query i sits at position tk - tq + i, key s at s (or where the
 * call's lcai_pos puts them: lcai_flash_init_at). Output row i is
 * o + i * ldo (dv values), lse[i * ldlse] its log-sum-exp (lse may be
 * NULL). */
struct lcai_flash_task {
	struct lcai_flash_src q;
	const void *kt, *vp;
	int64_t tq, tk;
	void *o;
	int64_t ldo;
	void *lse;
	int64_t ldlse;
	/* NULL, or lse's rounding residual (same stride): lse + lse_lo is
	 * m + log l to about twice the element's precision, which the
	 * backward needs where logits are large (P = exp(S - lse), and the
	 * rounding of a float lse of 80 is a relative error of 2.4e-6 in
	 * every weight of its row). */
	void *lse_lo;
};

struct lcai_flash;

/* A per-thread workspace; defined in softmax.c. */
struct lcai_flash_ws;

/* The typed kernels of one instance (element type and vector width). */
struct lcai_flash_ops {
	size_t esize;   /* sizeof an element of the call's tensors */
	size_t wsize;   /* sizeof the element the engine computes in (packed
	                 * values, tiles): esize but for bf16 tensors (float) */
	int64_t kpack;  /* coordinates per packed key element: 2 for bf16 pairs */
	int64_t nc;     /* value columns per register block: dvp is a multiple */
	void (*pack)(const struct lcai_flash *f, const struct lcai_flash_pack *job);
	void (*attend)(const struct lcai_flash *f, const struct lcai_flash_task *t,
		int64_t i0, struct lcai_flash_ws *ws);
};

/* Everything fixed for one call. Filled by lcai_flash_init(), released by
 * lcai_flash_free(); read-only while tasks run. */
struct lcai_flash {
	const lca_params *p;    /* masks, RoPE style and theta, thread cap */
	const struct lcai_flash_ops *ops;
	int64_t da, db, dk;     /* row parts of q and k; dk = da + db */
	int64_t dkp;            /* dk rounded up to a multiple of ops->kpack */
	int64_t dv, dvp;        /* value width, padded to a multiple of ops->nc */
	int64_t rope_dim;       /* rotated leading coordinates of the b part */
	double scale;           /* applied to each tile of <q, k> (flash_tile.h) */
	/* RoPE table [npos + n2][rope_dim/2][cos, sin] (NULL if no RoPE):
	 * rows 0 .. npos-1 for positions pmin .. pmin + npos - 1, then n2
	 * rows for positions p2 .. p2 + n2 - 1 (n2 = 0, p2 = INT64_MAX but
	 * for a call whose queries sit far from its keys: lcai_flash_init_at). */
	double *rope;
	int64_t pmin, npos, p2, n2;
	/* NULL: every sequence bottom-right aligned (query i of a task at
	 * tk - tq + i, key s at s); else one sequence at these positions. */
	const struct lcai_pos *at;
};

/* Position of query 0 of task t minus that of its key 0: what the masks
 * see. */
static inline int64_t lcai_flash_qrel(const struct lcai_flash *f,
	const struct lcai_flash_task *t)
{
	return f->at ? f->at->q - f->at->k : t->tk - t->tq;
}

/* Position of key 0 of every task (RoPE). */
static inline int64_t lcai_flash_kpos(const struct lcai_flash *f)
{
	return f->at ? f->at->k : 0;
}

/* cos and sin of the pairs at position pos (rope_dim values). */
static inline const double *lcai_flash_cs(const struct lcai_flash *f,
	int64_t pos)
{
	int64_t row = pos >= f->p2 ? f->npos + (pos - f->p2) : pos - f->pmin;

	return f->rope + row * f->rope_dim;
}

/* Fill *f for p->dtype with rows [da ; db], values of dv, rope_dim rotated
 * coordinates (0 = none) and logit scale, and tabulate RoPE for every
 * position of the nseq sequences cu_q/cu_k. LCA_ERR_NOMEM on failure
 * (*f then needs no lcai_flash_free). */
lca_status lcai_flash_init(struct lcai_flash *f, const lca_params *p,
	int64_t da, int64_t db, int64_t dv, int64_t rope_dim, double scale,
	const int64_t *cu_q, const int64_t *cu_k, int64_t nseq);
/* The same for one sequence (nseq = 1) at the positions *at, which must
 * outlive f. */
lca_status lcai_flash_init_at(struct lcai_flash *f, const lca_params *p,
	int64_t da, int64_t db, int64_t dv, int64_t rope_dim, double scale,
	const struct lcai_pos *at, int64_t tq, int64_t tk);
void lcai_flash_free(struct lcai_flash *f);

/* Keys of a sequence of tk rounded up to whole key tiles: the rows of its
 * packed kt and vp. */
int64_t lcai_flash_padded(int64_t tk);

/* Offsets of each sequence's packed rows for one kv head: off[n] for
 * n = 0..nseq, off[nseq] the total; 0 if that overflows. */
int lcai_flash_offsets(const int64_t *cu_k, int64_t nseq, int64_t *off);

/* Allocate packed keys and values for nkv kv heads of `rows` rows each:
 * *kt of nkv * rows * dkp elements of esize bytes and *vp of
 * nkv * rows * dvp of wsize. */
lca_status lcai_flash_alloc(const struct lcai_flash *f, int64_t nkv,
	int64_t rows, void **kt, void **vp);

/* Run the packing jobs, then the tasks, in parallel; LCA_ERR_NOMEM if a
 * thread could not get its workspace (outputs then partly written). */
void lcai_flash_pack_all(const struct lcai_flash *f,
	const struct lcai_flash_pack *jobs, int64_t njobs);
lca_status lcai_flash_run(const struct lcai_flash *f,
	const struct lcai_flash_task *tasks, int64_t ntasks);

/* lcai_cpu_softmax and lcai_cpu_mla with lse's rounding residual lse_lo
 * (lcai_flash_task) as well; lse and lse_lo are then required. */
lca_status lcai_cpu_softmax_lse2(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q, const void *k,
	const void *v, void *o, void *lse, void *lse_lo);
lca_status lcai_cpu_mla_lse2(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, void *o, void *lse, void *lse_lo);

/* The computation cpu mla runs for this call: p->algo, or AUTO's pick
 * for its query, key and visible-pair counts (lcai_mla_pick). */
lca_algo lcai_cpu_mla_algo(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq);

/* MLA's absorbed form up to its latent sum, for the backward: lat
 * [Tq][H][dc] = the softmax-weighted sum of ckv rows of each query and
 * head (before w_uv), with lse and lse_lo [Tq][H] as lcai_cpu_mla_lse2. */
lca_status lcai_cpu_mla_latent(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, void *lat, void *lse, void *lse_lo);

/* Whether lcai_cpu_softmax runs the bf16 plan p on its bf16 tensors as
 * they are (flash_bf16.h): the CPU has the AVX-512 BF16 dot products, the
 * ISA cap allows them (lcai_isa_bf16dot) and p has no RoPE. Otherwise
 * lib/cpu/bf16.c widens the tensors and runs the float plan. */
int lcai_cpu_softmax_bf16dot(const lca_params *p);

/* Threads for n independent items under p->nthreads (>= 1). */
int lcai_flash_team(const lca_params *p, int64_t n);

/* Element i of an array of elements of esize bytes. */
static inline const void *lcai_flash_at(const void *base, size_t esize,
	int64_t i)
{
	return (const char *)base + (size_t)i * esize;
}

static inline void *lcai_flash_at_w(void *base, size_t esize, int64_t i)
{
	return (char *)base + (size_t)i * esize;
}

#endif /* LCATTN_CPU_FLASH_H */
