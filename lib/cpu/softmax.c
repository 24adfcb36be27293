/*
 * softmax.c - softmax attention on the CPU (OpenMP, float32 and float64),
 * and the tiled online-softmax engine of flash.h that mla.c reuses.
 *
 * The engine is FlashAttention's forward pass (Dao et al. 2022, alg. 1) on
 * a CPU: a tile of LCAI_FLASH_FWD_BQ queries walks the key tiles it can see,
 * and for every row keeps the running maximum m, the running sum l of
 * exp(logit - m) and the unnormalised output; when m grows, l and the
 * output are rescaled by exp(m_old - m_new) (<= 1), so every exponent
 * stays <= 0 and no logit of any size overflows. Memory is O(T): packed
 * keys and values plus a few tiles per thread, never a T x T buffer.
 *
 * Work is one item per (sequence, query head, query tile), spread over the
 * OpenMP threads longest-first. Key tiles a tile's causal or window mask
 * cannot reach are never visited; only tiles that straddle a mask edge pay
 * for masking. Every output row is computed by exactly one item in a fixed
 * order, so results are bitwise deterministic for any thread count.
 *
 * GEMMs: the two tile products (S = Q K^T and O += P V) are small register-
 * blocked loops here, not BLAS calls: OpenBLAS (pthreads build) may split
 * products of this size over its own threads, oversubscribing the OpenMP
 * team. Their accumulators stay in registers whatever -O the build uses
 * (unroll pragmas: automake puts the user's -O2 after libcpu's flags) and
 * products are fused multiply-adds (FMA intrinsics per ISA; C11 forbids
 * contracting a * b + c, and lib/cpu is not the oracle). On the
 * development machine (AMD EPYC Zen 4) each product alone runs at
 * 110-117 GFLOP/s per core, above single-threaded sgemm (~97); the whole
 * engine reaches ~0.95 of sgemm at T = 16K (f32, d = 128, one thread).
 * At long T every query tile streams its head's packed keys and values
 * from memory, so each tile prefetches the next operand into L2.
 *
 * Vector width: the typed engine (second half of this file, a template that
 * includes itself) is built per element type for three x86-64 levels,
 * AVX-512 (64-byte vectors), AVX2 with FMA (32) and SSE2 (16, multiply
 * then add), chosen at run time; elsewhere only the 16-byte build exists.
 * A wide build would spill registers badly on a narrower machine, hence
 * one build per width.
 *
 * bf16: where the CPU has AVX-512 BF16 (level avx512bf16), a seventh
 * instance runs bf16 softmax plans without RoPE on their bf16 tensors
 * (flash_bf16.h): keys packed as bf16 pairs, logits by vdpbf16ps, the
 * rest the float AVX-512 code. Causal, H = 8, d = 128 on AMD EPYC Zen 5
 * (2 cores, shared): 0.69-0.75 of the float32 call's time at T = 16K and
 * 0.80-0.83 at 4K, where widening to float copies (lib/cpu/bf16.c,
 * LCA_CPU_ISA=avx512) takes 1.02-1.09 and 1.28-1.47 of it, and half the
 * peak memory; the logit product runs at twice the float rate, P V stays
 * float.
 */
#ifndef FLASH_TEMPLATE

#include "flash.h"
#include "bf16.h"
#include "prof.h"
#include "../ref/rowsoftmax.h" /* lcai_ref_key_range: masks defined once */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Query rows per register block of the tile products (the AVX2 forward
 * blocks its own way: FROWS below). */
#define FLASH_ROWS 4
/* Every buffer and workspace part starts on a cache line. */
#define FLASH_ALIGN 64

struct lcai_flash_ws {
	void *q;        /* [BQ][dk] rotated, scaled queries of the tile */
	void *s;        /* [BQ][BK] logits, then exp(logit - m) */
	void *o;        /* [BQ][dvp] unnormalised output */
	void *m;        /* [BQ] running max */
	void *l;        /* [BQ] running sum, one vector (at most a line) each */
	int64_t lo[LCAI_FLASH_FWD_BQ], hi[LCAI_FLASH_FWD_BQ]; /* visible keys per row */
};

#include "isa.h"
#ifdef LCAI_X86
#define FLASH_X86 1
#endif

/* ---- the typed engine, one instance per (element type, vector width).
 * Each inclusion of the template consumes FT, FI and FN (it undefines
 * them); the width settings stay until undefined here. */

#define FLASH_SELF "softmax.c"
#define FLASH_WANT_BF16 1
#include "flash_instances.h"

int lcai_cpu_softmax_bf16dot(const lca_params *p)
{
#ifdef LCAI_BF16DOT
	return p->dtype == LCA_BF16 && p->rope_dim == 0 && lcai_isa_bf16dot();
#else
	(void)p;
	return 0;
#endif
}

/* The widest build this CPU runs (the check includes OS support for the
 * wide registers); bf16 only where lcai_cpu_softmax_bf16dot allows it
 * (NULL otherwise). */
static const struct lcai_flash_ops *flash_pick(lca_dtype dtype)
{
	const int f32 = dtype == LCA_F32;

	if (dtype == LCA_BF16) {
#ifdef LCAI_BF16DOT
		if (lcai_isa_bf16dot())
			return &ops_bf16_avx512;
#endif
		return NULL;
	}
#ifdef FLASH_X86
	switch (lcai_isa_best()) {
	case LCAI_ISA_AVX512:
		return f32 ? &ops_f32_avx512 : &ops_f64_avx512;
	case LCAI_ISA_AVX2:
		return f32 ? &ops_f32_avx2 : &ops_f64_avx2;
	case LCAI_ISA_SSE:
		break;
	}
#endif
	return f32 ? &ops_f32_sse : &ops_f64_sse;
}

/* ---- the engine: set-up, packing, the parallel tile loop ------------- */

int lcai_flash_team(const lca_params *p, int64_t n)
{
	int64_t t = lcai_cpu_threads(p);

	if (t > n)
		t = n;
	return t < 1 ? 1 : (int)t;
}

/* 64-byte aligned, n >= 0 bytes (at least one line, so 0 is no failure). */
static void *flash_alloc_bytes(int64_t n)
{
	if (n < 0 || (uint64_t)n > SIZE_MAX - FLASH_ALIGN)
		return NULL;
	n = (n + FLASH_ALIGN - 1) / FLASH_ALIGN * FLASH_ALIGN;
	return aligned_alloc(FLASH_ALIGN, n ? (size_t)n : FLASH_ALIGN);
}

/* The positions the RoPE table covers: one run (f->pmin, f->npos), or two
 * when a call's queries sit far from its keys (f->p2, f->n2), so that the
 * table never spans the gap between them. Bottom-right sequences span
 * the keys 0..tk-1 and the queries tk-tq..tk-1 (negative when tq > tk). */
static void flash_rope_span(struct lcai_flash *f, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq)
{
	int64_t lo = 0, hi = 0;

	f->p2 = INT64_MAX;
	f->n2 = 0;
	if (f->at) {
		const int64_t tq = cu_q[1], tk = cu_k[1];
		/* a the run that starts first, b the other */
		int64_t alo = f->at->k, ahi = f->at->k + tk;
		int64_t blo = f->at->q, bhi = f->at->q + tq;

		if (blo < alo) {
			alo = f->at->q, ahi = f->at->q + tq;
			blo = f->at->k, bhi = f->at->k + tk;
		}
		f->pmin = alo;
		if (blo <= ahi) { /* the runs touch: one */
			f->npos = (bhi > ahi ? bhi : ahi) - alo;
		} else {
			f->npos = ahi - alo;
			f->p2 = blo;
			f->n2 = bhi - blo;
		}
		return;
	}
	for (int64_t s = 0; s < nseq; s++) {
		int64_t tq = cu_q[s + 1] - cu_q[s], tk = cu_k[s + 1] - cu_k[s];

		if (tk - tq < lo)
			lo = tk - tq;
		if (tk > hi)
			hi = tk;
	}
	f->pmin = lo;
	f->npos = hi - lo;
}

/* cos and sin of every (position, pair), as lcai_rope_apply computes them,
 * so the f64 path rotates to the reference's bits. */
static lca_status flash_rope_table(struct lcai_flash *f, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq)
{
	const lca_params *p = f->p;
	const int64_t half = f->rope_dim / 2;
	int64_t rows, n;

	flash_rope_span(f, cu_q, cu_k, nseq);
	rows = f->npos + f->n2;
	if (!lcai_mul_n(&n, 3, rows, f->rope_dim, (int64_t)sizeof(double)) ||
	    !(f->rope = flash_alloc_bytes(n)))
		return lcai_fail(LCA_ERR_NOMEM, "cpu attention: no memory for the RoPE table of %lld positions",
			(long long)rows);
	#pragma omp parallel for num_threads(lcai_flash_team(p, rows / 256 + 1))
	for (int64_t i = 0; i < rows; i++) {
		double *cs = f->rope + i * f->rope_dim;
		const int64_t pos = i < f->npos ? f->pmin + i : f->p2 + (i - f->npos);

		for (int64_t j = 0; j < half; j++) {
			double freq = pow(p->rope_theta, -2.0 * (double)j /
				(double)f->rope_dim);
			double ang = (double)pos * freq;

			cs[2 * j] = cos(ang);
			cs[2 * j + 1] = sin(ang);
		}
	}
	return LCA_OK;
}

static lca_status flash_init(struct lcai_flash *f, const lca_params *p,
	int64_t da, int64_t db, int64_t dv, int64_t rope_dim, double scale,
	const int64_t *cu_q, const int64_t *cu_k, int64_t nseq,
	const struct lcai_pos *at)
{
	memset(f, 0, sizeof *f);
	f->p = p;
	f->at = at;
	f->p2 = INT64_MAX;
	f->ops = flash_pick(p->dtype);
	if (!f->ops || (p->dtype == LCA_BF16 && (da > 0 || rope_dim > 0)))
		return lcai_fail(LCA_ERR_UNSUPPORTED, "cpu attention: no bf16 kernel for this "
			"call (the cpu backend takes bf16 in forward calls only)");
	f->da = da;
	f->db = db;
	f->dk = da + db;
	f->dkp = (f->dk + f->ops->kpack - 1) / f->ops->kpack * f->ops->kpack;
	f->dv = dv;
	f->dvp = (dv + f->ops->nc - 1) / f->ops->nc * f->ops->nc;
	f->rope_dim = rope_dim;
	f->scale = scale;
	if (rope_dim > 0)
		return flash_rope_table(f, cu_q, cu_k, nseq);
	return LCA_OK;
}

lca_status lcai_flash_init(struct lcai_flash *f, const lca_params *p,
	int64_t da, int64_t db, int64_t dv, int64_t rope_dim, double scale,
	const int64_t *cu_q, const int64_t *cu_k, int64_t nseq)
{
	return flash_init(f, p, da, db, dv, rope_dim, scale, cu_q, cu_k, nseq,
		NULL);
}

lca_status lcai_flash_init_at(struct lcai_flash *f, const lca_params *p,
	int64_t da, int64_t db, int64_t dv, int64_t rope_dim, double scale,
	const struct lcai_pos *at, int64_t tq, int64_t tk)
{
	const int64_t cu_q[2] = { 0, tq }, cu_k[2] = { 0, tk };

	return flash_init(f, p, da, db, dv, rope_dim, scale, cu_q, cu_k, 1, at);
}

void lcai_flash_free(struct lcai_flash *f)
{
	free(f->rope);
	f->rope = NULL;
}

int64_t lcai_flash_padded(int64_t tk)
{
	return (tk + LCAI_FLASH_BK - 1) / LCAI_FLASH_BK * LCAI_FLASH_BK;
}

int lcai_flash_offsets(const int64_t *cu_k, int64_t nseq, int64_t *off)
{
	off[0] = 0;
	for (int64_t n = 0; n < nseq; n++) {
		int64_t rows = lcai_flash_padded(cu_k[n + 1] - cu_k[n]);

		if (rows > INT64_MAX - off[n])
			return 0;
		off[n + 1] = off[n] + rows;
	}
	return 1;
}

lca_status lcai_flash_alloc(const struct lcai_flash *f, int64_t nkv,
	int64_t rows, void **kt, void **vp)
{
	const int64_t es = (int64_t)f->ops->esize, ws = (int64_t)f->ops->wsize;
	int64_t nk, nv;

	*kt = *vp = NULL;
	if (!lcai_mul_n(&nk, 4, nkv, rows, f->dkp, es) ||
	    !lcai_mul_n(&nv, 4, nkv, rows, f->dvp, ws) ||
	    !(*kt = flash_alloc_bytes(nk)) || !(*vp = flash_alloc_bytes(nv))) {
		free(*kt);
		*kt = NULL;
		return lcai_fail(LCA_ERR_NOMEM, "cpu attention: no memory to pack %lld keys",
			(long long)rows);
	}
	return LCA_OK;
}

void lcai_flash_pack_all(const struct lcai_flash *f,
	const struct lcai_flash_pack *jobs, int64_t njobs)
{
	#pragma omp parallel for schedule(dynamic) num_threads(lcai_flash_team(f->p, njobs))
	for (int64_t j = 0; j < njobs; j++)
		f->ops->pack(f, &jobs[j]);
}

/* One query tile of one task, with the number of key tiles it visits as
 * its cost. */
struct flash_item {
	int64_t task, i0, cost;
};

/* Costliest first, so the last items to start are the short ones; ties in
 * a fixed order. */
static int flash_item_cmp(const void *pa, const void *pb)
{
	const struct flash_item *a = pa, *b = pb;

	if (a->cost != b->cost)
		return a->cost < b->cost ? 1 : -1;
	if (a->task != b->task)
		return a->task < b->task ? -1 : 1;
	return (a->i0 > b->i0) - (a->i0 < b->i0);
}

/* The items of all tasks, sorted; NULL on failure. */
static struct flash_item *flash_items(const struct lcai_flash *f,
	const struct lcai_flash_task *tasks, int64_t ntasks, int64_t *nitems)
{
	const int64_t BQ = LCAI_FLASH_FWD_BQ, BK = LCAI_FLASH_BK;
	struct flash_item *it;
	int64_t n = 0;

	for (int64_t t = 0; t < ntasks; t++)
		n += (tasks[t].tq + BQ - 1) / BQ;
	if ((uint64_t)n > SIZE_MAX / sizeof *it || !(it = malloc(n ? (size_t)n * sizeof *it : 1)))
		return NULL;
	n = 0;
	for (int64_t t = 0; t < ntasks; t++) {
		const int64_t tq = tasks[t].tq, tk = tasks[t].tk;
		const int64_t qrel = lcai_flash_qrel(f, &tasks[t]);

		for (int64_t i0 = 0; i0 < tq; i0 += BQ) {
			int64_t last = i0 + BQ < tq ? i0 + BQ - 1 : tq - 1;
			int64_t lo, hi, l2, h2;

			lcai_ref_key_range(f->p, qrel + i0, tk, &lo, &h2);
			lcai_ref_key_range(f->p, qrel + last, tk, &l2, &hi);
			it[n].task = t;
			it[n].i0 = i0;
			it[n].cost = hi > lo ? (hi + BK - 1) / BK - lo / BK : 0;
			n++;
		}
	}
	qsort(it, (size_t)n, sizeof *it, flash_item_cmp);
	*nitems = n;
	return it;
}

/* A thread's tiles, carved from one aligned block; NULL on failure. */
static struct lcai_flash_ws *flash_ws_new(const struct lcai_flash *f)
{
	const int64_t BQ = LCAI_FLASH_FWD_BQ, es = (int64_t)f->ops->wsize;
	const int64_t line = FLASH_ALIGN;
	int64_t nq = (BQ * f->dkp * es + line - 1) / line * line;
	int64_t ns = BQ * LCAI_FLASH_BK * es;
	int64_t no = (BQ * f->dvp * es + line - 1) / line * line;
	int64_t nm = (BQ * es + line - 1) / line * line, nl = BQ * line;
	struct lcai_flash_ws *ws = malloc(sizeof *ws);
	char *base = flash_alloc_bytes(nq + ns + no + nm + nl);

	if (!ws || !base) {
		free(ws);
		free(base);
		return NULL;
	}
	ws->q = base;
	ws->s = base + nq;
	ws->o = base + nq + ns;
	ws->m = base + nq + ns + no;
	ws->l = base + nq + ns + no + nm;
	return ws;
}

static void flash_ws_free(struct lcai_flash_ws *ws)
{
	if (ws)
		free(ws->q);
	free(ws);
}

lca_status lcai_flash_run(const struct lcai_flash *f,
	const struct lcai_flash_task *tasks, int64_t ntasks)
{
	struct flash_item *items;
	int64_t nitems;
	int nomem = 0;

	if (!(items = flash_items(f, tasks, ntasks, &nitems)))
		return lcai_fail(LCA_ERR_NOMEM, "cpu attention: no memory for the tile list");
	#pragma omp parallel num_threads(lcai_flash_team(f->p, nitems))
	{
		struct lcai_flash_ws *ws = flash_ws_new(f);
		int failed;

		if (!ws) {
			#pragma omp atomic write
			nomem = 1;
		}
		/* Every thread has tried before any writes: if one failed,
		 * all skip their items (every thread must still reach the
		 * loop), so LCA_ERR_NOMEM leaves the outputs untouched. */
		#pragma omp barrier
		#pragma omp atomic read
		failed = nomem;
		#pragma omp for schedule(dynamic, 1)
		for (int64_t i = 0; i < nitems; i++)
			if (!failed)
				f->ops->attend(f, &tasks[items[i].task], items[i].i0, ws);
		flash_ws_free(ws);
	}
	free(items);
	if (nomem)
		return lcai_fail(LCA_ERR_NOMEM, "cpu attention: no memory for a thread's tiles");
	return LCA_OK;
}

/* ---- softmax attention ---------------------------------------------- */

/* Packing jobs (one per sequence and kv head) and tasks (one per sequence
 * and query head) of a softmax call; off from lcai_flash_offsets. */
static void softmax_plan(const struct lcai_flash *f, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const int64_t *off, const void *q,
	const void *k, const void *v, void *o, void *lse, void *lse_lo,
	void *kt, void *vp,
	struct lcai_flash_pack *jobs, struct lcai_flash_task *tasks)
{
	const lca_params *p = f->p;
	const size_t es = f->ops->esize, ws = f->ops->wsize;
	const int64_t H = p->H, Hkv = p->Hkv, dk = p->dk, dv = p->dv;
	const int64_t rows = off[nseq];

	for (int64_t n = 0; n < nseq; n++) {
		const int64_t k0 = cu_k[n], q0 = cu_q[n];

		for (int64_t g = 0; g < Hkv; g++) {
			struct lcai_flash_pack *j = &jobs[n * Hkv + g];

			memset(j, 0, sizeof *j);
			j->k.b = lcai_flash_at(k, es, (k0 * Hkv + g) * dk);
			j->k.ldb = Hkv * dk;
			j->k.db = dk;
			j->v = lcai_flash_at(v, es, (k0 * Hkv + g) * dv);
			j->ldv = Hkv * dv;
			j->tk = cu_k[n + 1] - k0;
			j->kt = lcai_flash_at_w(kt, es, (g * rows + off[n]) * f->dkp);
			j->vp = lcai_flash_at_w(vp, ws, (g * rows + off[n]) * f->dvp);
		}
		for (int64_t h = 0; h < H; h++) {
			struct lcai_flash_task *t = &tasks[n * H + h];
			const struct lcai_flash_pack *j = &jobs[n * Hkv + h / (H / Hkv)];

			memset(t, 0, sizeof *t);
			t->q.b = lcai_flash_at(q, es, (q0 * H + h) * dk);
			t->q.ldb = H * dk;
			t->q.db = dk;
			t->kt = j->kt;
			t->vp = j->vp;
			t->tq = cu_q[n + 1] - q0;
			t->tk = j->tk;
			t->o = lcai_flash_at_w(o, es, (q0 * H + h) * dv);
			t->ldo = H * dv;
			t->lse = lse ? lcai_flash_at_w(lse, es, q0 * H + h) : NULL;
			t->ldlse = H;
			t->lse_lo = lse_lo ? lcai_flash_at_w(lse_lo, es, q0 * H + h) : NULL;
		}
	}
}

lca_status lcai_cpu_softmax(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q, const void *k,
	const void *v, void *o, void *lse)
{
	return lcai_cpu_softmax_lse2(p, cu_q, cu_k, nseq, q, k, v, o, lse, NULL);
}

/* A call over sequences cu_q/cu_k, bottom-right (at NULL) or, for one
 * sequence, at the positions *at. */
static lca_status softmax_run(const lca_params *p, const struct lcai_pos *at,
	const int64_t *cu_q, const int64_t *cu_k, int64_t nseq, const void *q,
	const void *k, const void *v, void *o, void *lse, void *lse_lo)
{
	struct lcai_flash f;
	struct lcai_flash_pack *jobs = NULL;
	struct lcai_flash_task *tasks = NULL;
	int64_t *off = NULL, njobs, ntasks;
	void *kt = NULL, *vp = NULL;
	lca_status st;

	st = at ? lcai_flash_init_at(&f, p, 0, p->dk, p->dv, p->rope_dim, p->scale,
		at, cu_q[1], cu_k[1]) :
		lcai_flash_init(&f, p, 0, p->dk, p->dv, p->rope_dim, p->scale,
		cu_q, cu_k, nseq);
	if (st != LCA_OK)
		return st;
	if (!lcai_mul(nseq, p->Hkv, &njobs) || !lcai_mul(nseq, p->H, &ntasks) ||
	    (uint64_t)ntasks > SIZE_MAX / sizeof *tasks ||
	    !(off = malloc((size_t)(nseq + 1) * sizeof *off)) ||
	    !(jobs = malloc((size_t)njobs * sizeof *jobs + 1)) ||
	    !(tasks = malloc((size_t)ntasks * sizeof *tasks + 1))) {
		st = lcai_fail(LCA_ERR_NOMEM, "cpu softmax: no memory for %lld sequences",
			(long long)nseq);
		goto out;
	}
	if (!lcai_flash_offsets(cu_k, nseq, off)) {
		st = lcai_fail(LCA_ERR_NOMEM, "cpu softmax: packed key count overflows");
		goto out;
	}
	if ((st = lcai_flash_alloc(&f, p->Hkv, off[nseq], &kt, &vp)) != LCA_OK)
		goto out;
	softmax_plan(&f, cu_q, cu_k, nseq, off, q, k, v, o, lse, lse_lo, kt, vp, jobs,
		tasks);
	lcai_flash_pack_all(&f, jobs, njobs);
	st = lcai_flash_run(&f, tasks, ntasks);
out:
	free(kt);
	free(vp);
	free(tasks);
	free(jobs);
	free(off);
	lcai_flash_free(&f);
	return st;
}

lca_status lcai_cpu_softmax_lse2(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q, const void *k,
	const void *v, void *o, void *lse, void *lse_lo)
{
	return softmax_run(p, NULL, cu_q, cu_k, nseq, q, k, v, o, lse, lse_lo);
}

lca_status lcai_cpu_softmax_at(const lca_params *p, const struct lcai_pos *at,
	int64_t tq, int64_t tk, const void *q, const void *k, const void *v,
	void *o, void *lse)
{
	const int64_t cu_q[2] = { 0, tq }, cu_k[2] = { 0, tk };

	/* Refused on every CPU alike, though the bf16 engine could run the
	 * plans lcai_cpu_softmax_bf16dot allows: bf16 is offered in forward
	 * calls only (lcattn(7)). */
	if (p->dtype == LCA_BF16)
		return lcai_fail(LCA_ERR_UNSUPPORTED, "lca_softmax_partial: the cpu backend "
			"has no bf16 partial attention (bf16 is for forward calls)");
	return softmax_run(p, at, cu_q, cu_k, 1, q, k, v, o, lse, NULL);
}

#else /* FLASH_TEMPLATE: the typed engine for element type FT */

/*
 * FT is the element type and FI the integer of its size; FLASH_VB the
 * vector size in bytes, FLASH_NB vectors per register block, FLASH_TARGET
 * the ISA attribute of every function; FN() names the instance and
 * VFMA(a, b, c) computes a b + c (fused where the ISA can).
 */
#define VW (FLASH_VB / (int)sizeof(FT))   /* elements per vector */
#define NC (FLASH_NB * VW)                /* columns per register block */
/* Query rows per register block of the forward's products, and the grain
 * a tile's rows are padded to (a divisor of BQ, so nr <= BQ). AVX2 has 16
 * vector registers: 6 rows x 2 vectors are 12 accumulators, plus 2 key
 * or value vectors and 1 broadcast query value, 15 in all, no spill; 12
 * independent FMA chains cover two FMA pipes' latency where 4 x 2 (11
 * registers) kept only 8. One tile's products alone, one thread, tiles
 * in L2, AMD EPYC Zen 5: 4 x 2 ran at 0.90 of an FMA loop, 6 x 2 at
 * 0.97 (the whole engine gains less: it also waits on memory and runs
 * the softmax). A 128-row tile is 21 blocks of 6 and one of 2; a
 * shorter tile ends in a block of 2 or 4 or in a full one. The 32
 * registers of AVX-512 take 4 x 4 (FLASH_ROWS); SSE has no FMA and keeps
 * 4 x 2. The blocking changes no bits (flash_tile.h). */
#if FLASH_VB == 32
#define FROWS 6
#define FGRAIN 2
#define FLASH_STRIP FLASH_TARGET static __attribute__((noinline))
#else
#define FROWS FLASH_ROWS
#define FGRAIN FLASH_ROWS
#define FLASH_STRIP INLINE
#endif
#if LCAI_FLASH_FWD_BQ % FGRAIN != 0
#error "LCAI_FLASH_FWD_BQ must be a multiple of the row grain"
#endif
#define BQ LCAI_FLASH_FWD_BQ
#define BK LCAI_FLASH_BK
#define VEC FN(vec)
#define IVEC FN(ivec)
#define INLINE FLASH_TARGET static inline __attribute__((always_inline))
/* IT the element of the call's tensors, QT of a tile's queries, KT of
 * packed keys, which hold KPACK coordinates each; OUT(x) an output value
 * as IT. The bf16 instance (flash_bf16.h) takes bf16 tensors and keeps
 * keys as bf16 pairs; the others keep everything in FT. */
#ifdef FLASH_BF16
#define IT uint16_t
#define QT uint16_t
#define KT uint32_t
#define KPACK 2
#define OUT(x) lcai_bf16_round(x)
#define QK FN(qk_dot)
#else
#define IT FT
#define QT FT
#define KT FT
#define KPACK 1
#define OUT(x) (x)
#define QK FN(qk_block)
#endif

typedef FT VEC __attribute__((vector_size(FLASH_VB)));
typedef FI IVEC __attribute__((vector_size(FLASH_VB)));

/* Unaligned vector load and store (memcpy: no aliasing games). */
#define VLOAD(x, p) memcpy(&(x), (p), sizeof(VEC))
#define VSTORE(p, x) memcpy((p), &(x), sizeof(VEC))
/* Lanes of a where mask is set, else lanes of b. */
#define VSEL(mask, a, b) \
	((VEC)(((IVEC)(a) & (mask)) | ((IVEC)(b) & ~(mask))))

#include "vexp.h"

#include "flash_tile.h"

#ifdef FLASH_BF16
#include "flash_bf16.h"
#else
/* Keys into transposed tiles [tile][dk][BK] and values into rows of dvp,
 * both zero-padded to whole tiles (zeros, not garbage: padded keys meet
 * real queries in the products before the mask removes them). A key row
 * of up to FLASH_PACK_ROW values is built in a contiguous row on the
 * stack (vectorised) and then spread over its tile column; a longer one
 * is built in place. */
#define FLASH_PACK_ROW 1024
FLASH_TARGET static void FN(pack)(const struct lcai_flash *f,
	const struct lcai_flash_pack *job)
{
	const int64_t dk = f->dk, dv = f->dv, dvp = f->dvp, tk = job->tk;
	const int64_t rows = lcai_flash_padded(tk), kpos = lcai_flash_kpos(f);
	const FT *v = job->v;
	FT *kt = job->kt, *vp = job->vp, tmp[FLASH_PACK_ROW];

	LCAI_PROF(LCAI_PH_FL_PACK);
	for (int64_t s = 0; s < rows; s++) {
		FT *kcol = kt + (s / BK) * dk * BK + s % BK;
		FT *vrow = vp + s * dvp;
		int64_t c = 0;

		if (s >= tk) {
			for (int64_t d = 0; d < dk; d++)
				kcol[d * BK] = 0;
		} else if (dk <= FLASH_PACK_ROW) {
			FN(load_row)(f, &job->k, s, kpos + s, 1.0, tmp, 1);
			for (int64_t d = 0; d < dk; d++)
				kcol[d * BK] = tmp[d];
		} else {
			FN(load_row)(f, &job->k, s, kpos + s, 1.0, kcol, BK);
		}
		if (s < tk) {
			memcpy(vrow, v + s * job->ldv, (size_t)dv * sizeof(FT));
			c = dv;
		}
		memset(vrow + c, 0, (size_t)(dvp - c) * sizeof(FT));
	}
	LCAI_PROF_END();
}
#undef FLASH_PACK_ROW

/* Query row i of t, rotated at position pos, into dst (dk values). */
INLINE void FN(load_q)(const struct lcai_flash *f,
	const struct lcai_flash_task *t, int64_t i, int64_t pos, FT *dst)
{
	FN(load_row)(f, &t->q, i, pos, 1.0, dst, 1);
}
#endif /* FLASH_BF16 */

/* Logits of the `rows` query rows at q (FROWS, or the 2 or 4 that end a
 * tile) against the key tile kt, into s. Not inlined: inside attend the
 * six query row addresses of the 6-row loop spill to the stack (general
 * registers), three extra loads per step. */
FLASH_STRIP void FN(qk_strip)(int64_t rows, const QT *q, int64_t dk,
	const KT *kt, FT *s)
{
#if FROWS == FLASH_ROWS
	(void)rows;
	for (int64_t c = 0; c < BK; c += NC)
		QK(q, dk, kt + c, s + c);
#else
	if (rows == FROWS) {
		for (int64_t c = 0; c < BK; c += NC)
			FN(qk_rows)(FROWS, q, dk, kt + c, s + c);
	} else if (rows == 4) {
		for (int64_t c = 0; c < BK; c += NC)
			FN(qk_rows)(4, q, dk, kt + c, s + c);
	} else {
		for (int64_t c = 0; c < BK; c += NC)
			FN(qk_rows)(2, q, dk, kt + c, s + c);
	}
#endif
}

/* o[rows][dvp] += p[rows][BK] vp[BK][dvp], rows as qk_strip's. */
FLASH_STRIP void FN(pv_strip)(int64_t rows, const FT *p, const FT *vp,
	int64_t dvp, FT *o)
{
#if FROWS == FLASH_ROWS
	(void)rows;
	for (int64_t c = 0; c < dvp; c += NC)
		FN(pv_block)(p, vp + c, dvp, o + c);
#else
	if (rows == FROWS) {
		for (int64_t c = 0; c < dvp; c += NC)
			FN(pv_rows)(FROWS, p, vp + c, dvp, o + c);
	} else if (rows == 4) {
		for (int64_t c = 0; c < dvp; c += NC)
			FN(pv_rows)(4, p, vp + c, dvp, o + c);
	} else {
		for (int64_t c = 0; c < dvp; c += NC)
			FN(pv_rows)(2, p, vp + c, dvp, o + c);
	}
#endif
}

/* Logits of keys a row may not see become -inf (s is the key tile at j0).
 * A row sees one run of keys, so it is masked in at most two runs. */
FLASH_TARGET static void FN(mask)(const struct lcai_flash_ws *ws, int64_t nq,
	int64_t j0, FT *s)
{
	for (int64_t r = 0; r < nq; r++) {
		int64_t lo = ws->lo[r] - j0, hi = ws->hi[r] - j0;

		lo = lo < 0 ? 0 : lo > BK ? BK : lo;
		hi = hi < 0 ? 0 : hi > BK ? BK : hi;
		for (int64_t j = 0; j < lo; j++)
			s[r * BK + j] = -INFINITY;
		for (int64_t j = hi; j < BK; j++)
			s[r * BK + j] = -INFINITY;
	}
}

/* The online-softmax step of one key tile: each row's logits become
 * exp(logit - m_new) and its past sum and output shrink by
 * exp(m_old - m_new) <= 1. A row that has seen no key yet (m = -inf)
 * keeps zeros. Sums stay in vectors (lane j adds keys j mod VW) until
 * finish(), so no tile pays for a horizontal sum. */
INLINE void FN(online)(struct lcai_flash_ws *ws, int64_t nq, int64_t dvp,
	FT *s, FT *o)
{
	FT *m = ws->m;
	VEC *l = ws->l;

	for (int64_t r = 0; r < nq; r++) {
		FT *row = s + r * BK, mx;
		VEC x, mv = (VEC){ 0 } - (FT)INFINITY, sum;

		for (int j = 0; j < BK; j += VW) {
			VLOAD(x, row + j);
			mv = VSEL(x > mv, x, mv);
		}
		mx = FN(lane_max)(mv);
		if (mx > m[r]) {
			if (m[r] > -INFINITY) {
				FT alpha = (FT)exp((double)m[r] - (double)mx);
				VEC av = alpha - (VEC){ 0 };
				FT *orow = o + r * dvp;

				for (int64_t c = 0; c < dvp; c += VW) {
					VLOAD(x, orow + c);
					x *= av;
					VSTORE(orow + c, x);
				}
				l[r] *= av;
			}
			m[r] = mx;
		}
		if (m[r] == -INFINITY) {
			memset(row, 0, BK * sizeof(FT));
			continue;
		}
		mv = m[r] - (VEC){ 0 };
		sum = l[r];
		for (int j = 0; j < BK; j += VW) {
			VLOAD(x, row + j);
			x = FN(exp_vec)(x - mv);
			VSTORE(row + j, x);
			sum += x;
		}
		l[r] = sum;
	}
}

/* Output rows o / l and lse = m + log l; a row that saw no key gets o = 0
 * and lse = -inf. */
FLASH_TARGET static void FN(finish)(const struct lcai_flash *f,
	const struct lcai_flash_task *t, const struct lcai_flash_ws *ws,
	int64_t i0, int64_t nq)
{
	const FT *acc = ws->o, *m = ws->m;
	const VEC *lv = ws->l;
	IT *lse = t->lse, *lse_lo = t->lse_lo;

	for (int64_t r = 0; r < nq; r++) {
		IT *orow = (IT *)t->o + (i0 + r) * t->ldo;
		const FT *arow = acc + r * f->dvp;
		FT ls = -INFINITY, lo = 0, l = FN(lane_sum)(lv[r]);

		if (l > 0) {
			double full = (double)m[r] + log((double)l);

			#pragma omp simd
			for (int64_t c = 0; c < f->dv; c++)
				orow[c] = OUT(arow[c] / l);
			ls = (FT)full;
			lo = (FT)(full - (double)ls);
		} else {
			for (int64_t c = 0; c < f->dv; c++)
				orow[c] = OUT((FT)0);
		}
		if (lse)
			lse[(i0 + r) * t->ldlse] = OUT(ls);
		if (lse_lo)
			lse_lo[(i0 + r) * t->ldlse] = OUT(lo);
	}
}

/* Part `part` of `parts` of the n bytes at p towards L2: spread over a
 * tile's row blocks, the next operand streams in from memory while the
 * current one is multiplied (the hardware prefetcher alone leaves the
 * first row block of every tile waiting on memory at long T). */
INLINE void FN(prefetch)(const void *p, int64_t n, int64_t part, int64_t parts)
{
	const int64_t line = FLASH_ALIGN;
	int64_t per = (n + parts * line - 1) / (parts * line) * line;
	int64_t a = part * per, b = a + per < n ? a + per : n;

	for (; a < b; a += line)
		__builtin_prefetch((const char *)p + a, 0, 2);
}

/* Queries i0 .. i0+nq-1 of task t (alg. 1 of FlashAttention, one query
 * tile): only the key tiles in the union of the rows' visible ranges are
 * visited, and only those crossing a row's range edge are masked. */
FLASH_TARGET static void FN(attend)(const struct lcai_flash *f,
	const struct lcai_flash_task *t, int64_t i0, struct lcai_flash_ws *ws)
{
	const int64_t dk = f->dkp, dvp = f->dvp;
	const int64_t nq = t->tq - i0 < BQ ? t->tq - i0 : BQ;
	const int64_t nr = (nq + FGRAIN - 1) / FGRAIN * FGRAIN;
	const int64_t nblk = (nr + FROWS - 1) / FROWS;
	const int64_t kbytes = BK * dk * (int64_t)sizeof(KT) / KPACK;
	const int64_t vbytes = BK * dvp * (int64_t)sizeof(FT);
	const int64_t pos0 = lcai_flash_qrel(f, t) + i0, kpos = lcai_flash_kpos(f);
	QT *q = ws->q;
	FT *s = ws->s, *o = ws->o;
	int64_t first, end, inner_lo, inner_hi;

	/* Rows nq..nr are zero queries: their logits are 0, never turned
	 * into weights, so they add nothing to the output. */
	LCAI_PROF(LCAI_PH_FL_ROWS);
	for (int64_t r = 0; r < nq; r++) {
		FN(load_q)(f, t, i0 + r, kpos + pos0 + r, q + r * dk);
		lcai_ref_key_range(f->p, pos0 + r, t->tk, &ws->lo[r], &ws->hi[r]);
		((FT *)ws->m)[r] = -INFINITY;
		((VEC *)ws->l)[r] = (VEC){ 0 };
	}
	memset(q + nq * dk, 0, (size_t)((nr - nq) * dk) * sizeof(QT));
	memset(o, 0, (size_t)(nr * dvp) * sizeof(FT));
	/* Ranges only move right with the position: the union is
	 * [lo of the first row, hi of the last), and keys every row sees
	 * are [lo of the last row, hi of the first). */
	first = ws->lo[0] / BK * BK;
	end = ws->hi[nq - 1];
	inner_lo = ws->lo[nq - 1];
	inner_hi = ws->hi[0];
	for (int64_t j0 = first; j0 < end; j0 += BK) {
		const KT *kt = (const KT *)t->kt + (j0 / BK) * (dk / KPACK) * BK;
		const FT *vp = (const FT *)t->vp + j0 * dvp;

		/* this tile's values during the logits, the next tile's
		 * keys during the values */
		LCAI_PROF(LCAI_PH_FL_QK);
		for (int64_t r = 0; r < nr; r += FROWS) {
			FN(prefetch)(vp, vbytes, r / FROWS, nblk);
			FN(qk_strip)(nr - r < FROWS ? nr - r : FROWS, q + r * dk,
				dk, kt, s + r * BK);
		}
		LCAI_PROF(LCAI_PH_FL_SOFTMAX);
		FN(scale_tile)(s, nr * BK, (FT)f->scale);
		if (j0 < inner_lo || j0 + BK > inner_hi)
			FN(mask)(ws, nq, j0, s);
		FN(online)(ws, nq, dvp, s, o);
		LCAI_PROF(LCAI_PH_FL_PV);
		for (int64_t r = 0; r < nr; r += FROWS) {
			if (j0 + BK < end)
				FN(prefetch)(kt + (dk / KPACK) * BK, kbytes, r / FROWS, nblk);
			FN(pv_strip)(nr - r < FROWS ? nr - r : FROWS, s + r * BK,
				vp, dvp, o + r * dvp);
		}
	}
	LCAI_PROF(LCAI_PH_FL_ROWS);
	FN(finish)(f, t, ws, i0, nq);
	LCAI_PROF_END();
}

static const struct lcai_flash_ops FN(ops) = {
	sizeof(IT), sizeof(FT), KPACK, NC, FN(pack), FN(attend),
};

#undef VW
#undef NC
#undef FROWS
#undef FGRAIN
#undef FLASH_STRIP
#undef BQ
#undef BK
#undef VEC
#undef IVEC
#undef INLINE
#undef VLOAD
#undef VSTORE
#undef VSEL
#undef IT
#undef QT
#undef KT
#undef KPACK
#undef OUT
#undef QK
#undef FT
#undef FI
#undef FN
#undef VFMA

#endif /* FLASH_TEMPLATE */
