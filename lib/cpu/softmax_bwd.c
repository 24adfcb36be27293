/*
 * softmax_bwd.c - the backward of softmax attention on the CPU (OpenMP,
 * float32 and float64), and the backward engine of flash_bwd.h that
 * mla_bwd.c reuses. The numbers are those of lib/ref/softmax_bwd.c.
 *
 * The API takes no saved activations, so a call first runs the forward
 * engine (lcai_cpu_softmax) into scratch o and lse: two tile products per
 * (query tile, key tile) pair. D = rowsum(dout .* o) is then a dot
 * product per row (FlashAttention-2's choice), where D = rowsum(P .* dP)
 * would need a second sweep with dP = dout V^T before any dS could be
 * formed: three products per pair instead of two. The backward proper
 * (five products per pair) is flash_bwd.h's engine: per (sequence, query
 * head) one task, key tiles outer, so dK and dV of a key tile are summed
 * in registers and cache, and dQ in the thread's workspace. A task's key
 * and value gradients are a partial per query head; the kv head's
 * gradient is the sum of its group's partials in head order, then rotated
 * back: bitwise the same for every thread count.
 *
 * Memory: the packed keys and values of every kv head, one partial dK, dV
 * per query head, the forward's o and lse, and per thread the packed
 * queries and cotangents of one sequence: O(T), no T x T buffer.
 *
 * Like softmax.c, the typed engine (second half, a template that includes
 * itself) is built per element type for AVX-512, AVX2+FMA and SSE2 and
 * picked at run time; its tile products are flash_tile.h's, so the
 * recomputed logits equal the forward's to the bit and P = exp(S - lse)
 * is the forward's normalised weight.
 */
#ifndef FLASH_TEMPLATE

#include "flash_bwd.h"
#include "../ref/rowsoftmax.h" /* lcai_ref_key_range: masks defined once */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define FLASH_ROWS 4
#define FLASH_ALIGN 64

#if LCAI_FLASH_BQ != LCAI_FLASH_BK
#error "the backward tiles assume square tiles (transposed logit tiles)"
#endif

/* A thread's buffers for one task (sized for max_tq queries). */
struct lcai_flash_bwd_ws {
	void *qs;      /* [tqp][dkp] rotated query rows */
	void *qt;      /* [tqp/BQ][dkp][BQ] the same, transposed per tile */
	void *dor;     /* [tqp][dvp] dout rows */
	void *dot;     /* [tqp/BQ][dvp][BQ] transposed per tile */
	void *dq;      /* [tqp][dkp] dQ accumulator */
	void *lse;     /* [tqp] lse, +inf for rows that see no key */
	void *lsl;     /* [tqp] its rounding residual */
	void *dd;      /* [tqp] D = rowsum(dout .* o) */
	int64_t *lo, *hi; /* [tqp] visible keys per row */
	void *st, *dst, *ds;  /* [BK][BQ] P^T, dS^T; [BQ][BK] dS */
	void *dka, *dva;      /* [BK][dkp], [BK][dvp] accumulators */
	char *base;
};

#include "isa.h"
#ifdef LCAI_X86
#define FLASH_X86 1
#endif

#define FLASH_SELF "softmax_bwd.c"
#include "flash_instances.h"

/* The same ISA choice as the forward (softmax.c's flash_pick), and the
 * register-block width of that build. */
static const struct lcai_flash_bwd_ops *bwd_pick(lca_dtype dtype, int64_t *nc)
{
	const int f32 = dtype == LCA_F32;

#ifdef FLASH_X86
	switch (lcai_isa_best()) {
	case LCAI_ISA_AVX512:
		*nc = f32 ? 64 : 32;
		return f32 ? &bwd_f32_avx512 : &bwd_f64_avx512;
	case LCAI_ISA_AVX2:
		*nc = f32 ? 16 : 8;
		return f32 ? &bwd_f32_avx2 : &bwd_f64_avx2;
	case LCAI_ISA_SSE:
		break;
	}
#endif
	*nc = f32 ? 8 : 4;
	return f32 ? &bwd_f32_sse : &bwd_f64_sse;
}

static int64_t round_up(int64_t n, int64_t m)
{
	return (n + m - 1) / m * m;
}

/* Carve a thread's workspace from one aligned block; NULL on failure. */
static struct lcai_flash_bwd_ws *bwd_ws_new(const struct lcai_flash_bwd *b)
{
	const int64_t es = (int64_t)b->f->ops->esize, BQ = LCAI_FLASH_BQ;
	const int64_t tqp = round_up(b->max_tq, BQ), dkp = b->dkp, dvp = b->dvp;
	int64_t sz[14], total = 0, off = 0;
	struct lcai_flash_bwd_ws *ws;
	void **dst[14];

	if (!lcai_mul_n(&sz[0], 3, tqp, dkp, es) || !lcai_mul_n(&sz[2], 3, tqp, dvp, es))
		return NULL;
	sz[1] = sz[4] = sz[0];
	sz[3] = sz[2];
	sz[5] = sz[6] = tqp * es;
	sz[7] = sz[8] = tqp * (int64_t)sizeof(int64_t);
	sz[9] = sz[10] = sz[11] = BQ * LCAI_FLASH_BK * es;
	sz[12] = LCAI_FLASH_BK * (dkp + dvp) * es;
	sz[13] = tqp * es;
	for (int i = 0; i < 14; i++) {
		sz[i] = round_up(sz[i], FLASH_ALIGN);
		if (sz[i] > INT64_MAX / 16 - total)
			return NULL;
		total += sz[i];
	}
	if (!(ws = malloc(sizeof *ws)))
		return NULL;
	if ((uint64_t)total > SIZE_MAX || !(ws->base = aligned_alloc(FLASH_ALIGN, (size_t)total))) {
		free(ws);
		return NULL;
	}
	dst[0] = &ws->qs, dst[1] = &ws->qt, dst[2] = &ws->dor, dst[3] = &ws->dot;
	dst[4] = &ws->dq, dst[5] = &ws->lse, dst[6] = &ws->dd;
	dst[7] = (void **)&ws->lo, dst[8] = (void **)&ws->hi;
	dst[9] = &ws->st, dst[10] = &ws->dst, dst[11] = &ws->ds, dst[12] = &ws->dka;
	dst[13] = &ws->lsl;
	for (int i = 0; i < 14; i++) {
		*dst[i] = ws->base + off;
		off += sz[i];
	}
	ws->dva = (char *)ws->dka + LCAI_FLASH_BK * dkp * es;
	return ws;
}

lca_status lcai_flash_bwd_init(struct lcai_flash_bwd *b,
	const struct lcai_flash *f, int64_t max_tq, int64_t ntasks)
{
	int64_t nc;

	memset(b, 0, sizeof *b);
	b->f = f;
	b->ops = bwd_pick(f->p->dtype, &nc);
	b->dkp = round_up(f->dk, nc);
	b->dvp = round_up(f->dv, nc);
	b->max_tq = max_tq < 1 ? 1 : max_tq;
	b->nthreads = lcai_flash_team(f->p, ntasks);
	if (!(b->ws = calloc((size_t)b->nthreads, sizeof *b->ws)))
		goto nomem;
	for (int i = 0; i < b->nthreads; i++)
		if (!(b->ws[i] = bwd_ws_new(b)))
			goto nomem;
	return LCA_OK;
nomem:
	lcai_flash_bwd_free(b);
	return lcai_fail(LCA_ERR_NOMEM, "cpu attention backward: no memory for the "
		"workspaces of %lld queries", (long long)max_tq);
}

void lcai_flash_bwd_free(struct lcai_flash_bwd *b)
{
	if (b->ws)
		for (int i = 0; i < b->nthreads; i++)
			if (b->ws[i]) {
				free(b->ws[i]->base);
				free(b->ws[i]);
			}
	free(b->ws);
	b->ws = NULL;
}

void lcai_flash_bwd_pack_all(const struct lcai_flash_bwd *b,
	const struct lcai_flash_bwd_pack *jobs, int64_t njobs)
{
	#pragma omp parallel for schedule(dynamic) num_threads(lcai_flash_team(b->f->p, njobs))
	for (int64_t j = 0; j < njobs; j++)
		b->ops->pack(b, &jobs[j]);
}

void lcai_flash_bwd_run(const struct lcai_flash_bwd *b,
	const struct lcai_flash_bwd_task *tasks, int64_t ntasks)
{
	/* Tasks in order, one at a time to whichever thread is free
	 * (balanced when sequences are alike; a longest-first order would
	 * help varlen batches); which thread runs a task does not change
	 * its numbers. */
	#pragma omp parallel num_threads(b->nthreads)
	{
		int me = 0;

#ifdef _OPENMP
		me = omp_get_thread_num();
#endif
		#pragma omp for schedule(dynamic, 1)
		for (int64_t i = 0; i < ntasks; i++)
			b->ops->task(b, &tasks[i], b->ws[me]);
	}
}

/* ---- softmax attention ---------------------------------------------- */

/* The sum over a group of partial rows of n values, in head order, into
 * the first partial (in place); f64 or f32 by esize. */
static void sum_group(size_t es, void *const *parts, int64_t nparts,
	int64_t off, int64_t n)
{
	if (es == sizeof(float)) {
		float *d = (float *)parts[0] + off;

		for (int64_t h = 1; h < nparts; h++) {
			const float *s = (const float *)parts[h] + off;

			for (int64_t c = 0; c < n; c++)
				d[c] += s[c];
		}
	} else {
		double *d = (double *)parts[0] + off;

		for (int64_t h = 1; h < nparts; h++) {
			const double *s = (const double *)parts[h] + off;

			for (int64_t c = 0; c < n; c++)
				d[c] += s[c];
		}
	}
}

/* Softmax's kv gradients: for each (sequence, kv head, key), the group's
 * partials summed in head order, the key gradient rotated back. */
static void softmax_reduce(const struct lcai_flash_bwd *b, const int64_t *cu_k,
	int64_t nseq, void *const *pdk, void *const *pdv, void *dk, void *dv)
{
	const struct lcai_flash *f = b->f;
	const lca_params *p = f->p;
	const size_t es = f->ops->esize;
	const int64_t H = p->H, Hkv = p->Hkv, group = H / Hkv;
	const int64_t njobs = nseq * Hkv;

	#pragma omp parallel for schedule(dynamic) num_threads(lcai_flash_team(p, njobs))
	for (int64_t j = 0; j < njobs; j++) {
		const int64_t n = j / Hkv, g = j % Hkv, k0 = cu_k[n];
		const int64_t tk = cu_k[n + 1] - k0;
		void *const *gk = pdk + n * H + g * group;
		void *const *gv = pdv + n * H + g * group;

		for (int64_t s = 0; s < tk; s++) {
			void *drow = lcai_flash_at_w(dk, es, ((k0 + s) * Hkv + g) * p->dk);
			void *vrow = lcai_flash_at_w(dv, es, ((k0 + s) * Hkv + g) * p->dv);

			sum_group(es, gk, group, s * b->dkp, p->dk);
			sum_group(es, gv, group, s * b->dvp, p->dv);
			memcpy(drow, lcai_flash_at(gk[0], es, s * b->dkp), (size_t)p->dk * es);
			memcpy(vrow, lcai_flash_at(gv[0], es, s * b->dvp), (size_t)p->dv * es);
			if (f->rope_dim > 0)
				b->ops->unrotate(f, drow, s);
		}
	}
}

/* Everything the softmax backward allocates besides the forward's. */
struct softmax_bufs {
	void *o, *lse, *lse_lo; /* the forward's outputs */
	void *slots, *parts;    /* packed kv heads; partial dk, dv per head */
	int64_t *off;           /* packed rows of each sequence */
	void **pdk, **pdv;      /* [nseq * H] partial pointers */
	struct lcai_flash_bwd_pack *jobs;
	struct lcai_flash_bwd_task *tasks;
};

static void softmax_bufs_free(struct softmax_bufs *m)
{
	free(m->o);
	free(m->lse);
	free(m->lse_lo);
	free(m->slots);
	free(m->parts);
	free(m->off);
	free(m->pdk);
	free(m->pdv);
	free(m->jobs);
	free(m->tasks);
}

/* Allocate them all, given the forward already ran into m->o, m->lse. */
static lca_status softmax_bufs_alloc(const struct lcai_flash_bwd *b,
	const int64_t *cu_k, int64_t nseq, struct softmax_bufs *m)
{
	const lca_params *p = b->f->p;
	int64_t rows, slot, nslots, nparts, njobs, ntasks;

	if (!(m->off = malloc((size_t)(nseq + 1) * sizeof *m->off)) ||
	    !lcai_flash_offsets(cu_k, nseq, m->off))
		return LCA_ERR_NOMEM;
	rows = m->off[nseq];
	if (!lcai_mul_n(&slot, 3, rows, b->dkp + b->dvp, (int64_t)b->f->ops->esize) ||
	    !lcai_mul(slot, p->Hkv, &nslots) || !lcai_mul(slot, p->H, &nparts) ||
	    !lcai_mul_n(&njobs, 3, nseq, p->Hkv, (int64_t)sizeof *m->jobs) ||
	    !lcai_mul_n(&ntasks, 3, nseq, p->H, (int64_t)sizeof *m->tasks) ||
	    (uint64_t)nparts > SIZE_MAX - 64 || (uint64_t)ntasks > SIZE_MAX / 8)
		return LCA_ERR_NOMEM;
	m->slots = aligned_alloc(FLASH_ALIGN, (size_t)round_up(nslots + 1, FLASH_ALIGN));
	m->parts = aligned_alloc(FLASH_ALIGN, (size_t)round_up(nparts + 1, FLASH_ALIGN));
	m->jobs = malloc((size_t)njobs + 1);
	m->tasks = malloc((size_t)ntasks + 1);
	m->pdk = malloc((size_t)(nseq * p->H) * sizeof(void *) + 1);
	m->pdv = malloc((size_t)(nseq * p->H) * sizeof(void *) + 1);
	if (!m->slots || !m->parts || !m->jobs || !m->tasks || !m->pdk || !m->pdv)
		return LCA_ERR_NOMEM;
	return LCA_OK;
}

/* Jobs (one per sequence and kv head) and tasks (one per sequence and query
 * head); a head's partials are its slot-shaped share of m->parts. */
static void softmax_bwd_plan(const struct lcai_flash_bwd *b, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q, const void *k,
	const void *v, const void *dout, void *dq, struct softmax_bufs *m)
{
	const lca_params *p = b->f->p;
	const size_t es = b->f->ops->esize;
	const int64_t H = p->H, Hkv = p->Hkv, dk = p->dk, dv = p->dv;
	const int64_t rows = m->off[nseq], dkp = b->dkp, dvp = b->dvp;

	for (int64_t n = 0; n < nseq; n++) {
		const int64_t k0 = cu_k[n], q0 = cu_q[n];

		for (int64_t g = 0; g < Hkv; g++) {
			struct lcai_flash_bwd_pack *j = &m->jobs[n * Hkv + g];
			/* slot g: [rows][dkp] keys, then [rows][dvp] values */
			void *base = lcai_flash_at_w(m->slots, es, g * rows * (dkp + dvp));

			memset(j, 0, sizeof *j);
			j->k.b = lcai_flash_at(k, es, (k0 * Hkv + g) * dk);
			j->k.ldb = Hkv * dk;
			j->k.db = dk;
			j->v = lcai_flash_at(v, es, (k0 * Hkv + g) * dv);
			j->ldv = Hkv * dv;
			j->tk = cu_k[n + 1] - k0;
			j->kr = lcai_flash_at_w(base, es, m->off[n] * dkp);
			j->vr = lcai_flash_at_w(base, es, rows * dkp + m->off[n] * dvp);
		}
		for (int64_t h = 0; h < H; h++) {
			struct lcai_flash_bwd_task *t = &m->tasks[n * H + h];
			const struct lcai_flash_bwd_pack *j = &m->jobs[n * Hkv + h / (H / Hkv)];
			void *base = lcai_flash_at_w(m->parts, es, h * rows * (dkp + dvp));

			memset(t, 0, sizeof *t);
			t->q.b = lcai_flash_at(q, es, (q0 * H + h) * dk);
			t->q.ldb = H * dk;
			t->q.db = dk;
			t->o = lcai_flash_at(m->o, es, (q0 * H + h) * dv);
			t->ldo = H * dv;
			t->dout = lcai_flash_at(dout, es, (q0 * H + h) * dv);
			t->lddo = H * dv;
			t->lse = lcai_flash_at(m->lse, es, q0 * H + h);
			t->lse_lo = lcai_flash_at(m->lse_lo, es, q0 * H + h);
			t->ldlse = H;
			t->kr = j->kr;
			t->vr = j->vr;
			t->tq = cu_q[n + 1] - q0;
			t->tk = j->tk;
			t->dqb = lcai_flash_at_w(dq, es, (q0 * H + h) * dk);
			t->lddqb = H * dk;
			t->dk = m->pdk[n * H + h] = lcai_flash_at_w(base, es, m->off[n] * dkp);
			t->dv = m->pdv[n * H + h] =
				lcai_flash_at_w(base, es, rows * dkp + m->off[n] * dvp);
		}
	}
}

lca_status lcai_cpu_softmax_bwd(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q, const void *k,
	const void *v, const void *dout, void *dq, void *dk, void *dv)
{
	const int64_t Tq = cu_q[nseq];
	struct softmax_bufs m = { 0 };
	struct lcai_flash f;
	struct lcai_flash_bwd b = { 0 };
	int64_t no, max_tq = 0;
	size_t es = p->dtype == LCA_F32 ? sizeof(float) : sizeof(double);
	lca_status st;

	/* The forward's o and lse first: until every buffer exists, nothing
	 * but scratch is written. */
	if (!lcai_mul_n(&no, 4, Tq, p->H, p->dv, (int64_t)es) ||
	    !(m.o = malloc((size_t)no + 1)) || !(m.lse = malloc((size_t)(Tq * p->H) * es + 1)) ||
	    !(m.lse_lo = malloc((size_t)(Tq * p->H) * es + 1))) {
		softmax_bufs_free(&m);
		return lcai_fail(LCA_ERR_NOMEM, "cpu softmax backward: no memory for %lld queries",
			(long long)Tq);
	}
	if ((st = lcai_cpu_softmax_lse2(p, cu_q, cu_k, nseq, q, k, v, m.o, m.lse,
			m.lse_lo)) != LCA_OK) {
		softmax_bufs_free(&m);
		return st;
	}
	if ((st = lcai_flash_init(&f, p, 0, p->dk, p->dv, p->rope_dim, p->scale,
			cu_q, cu_k, nseq)) != LCA_OK) {
		softmax_bufs_free(&m);
		return st;
	}
	for (int64_t n = 0; n < nseq; n++)
		if (cu_q[n + 1] - cu_q[n] > max_tq)
			max_tq = cu_q[n + 1] - cu_q[n];
	if ((st = lcai_flash_bwd_init(&b, &f, max_tq, nseq * p->H)) != LCA_OK)
		goto out;
	if (softmax_bufs_alloc(&b, cu_k, nseq, &m) != LCA_OK) {
		st = lcai_fail(LCA_ERR_NOMEM, "cpu softmax backward: no memory for the "
			"packed keys and partial gradients of %lld keys", (long long)cu_k[nseq]);
		goto out;
	}
	softmax_bwd_plan(&b, cu_q, cu_k, nseq, q, k, v, dout, dq, &m);
	lcai_flash_bwd_pack_all(&b, m.jobs, nseq * p->Hkv);
	lcai_flash_bwd_run(&b, m.tasks, nseq * p->H);
	softmax_reduce(&b, cu_k, nseq, m.pdk, m.pdv, dk, dv);
out:
	lcai_flash_bwd_free(&b);
	lcai_flash_free(&f);
	softmax_bufs_free(&m);
	return st;
}

#else /* FLASH_TEMPLATE: the typed backward for element type FT */

#define VW (FLASH_VB / (int)sizeof(FT))
#define NC (FLASH_NB * VW)
#define BQ LCAI_FLASH_BQ
#define BK LCAI_FLASH_BK
#define VEC FN(bvec)
#define IVEC FN(bivec)
#define INLINE FLASH_TARGET static inline __attribute__((always_inline))

typedef FT VEC __attribute__((vector_size(FLASH_VB)));
typedef FI IVEC __attribute__((vector_size(FLASH_VB)));

#define VLOAD(x, p) memcpy(&(x), (p), sizeof(VEC))
#define VSTORE(p, x) memcpy((p), &(x), sizeof(VEC))
#define VSEL(mask, a, b) \
	((VEC)(((IVEC)(a) & (mask)) | ((IVEC)(b) & ~(mask))))

#include "vexp.h"
#include "flash_tile.h"

/* Keys [a ; rope(b)] and values into rows of dkp and dvp values, zero-
 * padded to whole tiles; the rotation is load_row's, as the forward packs
 * its keys (same bits). */
FLASH_TARGET static void FN(bwd_pack)(const struct lcai_flash_bwd *b,
	const struct lcai_flash_bwd_pack *job)
{
	const struct lcai_flash *f = b->f;
	const int64_t dk = f->dk, dv = f->dv, dkp = b->dkp, dvp = b->dvp;
	const int64_t rows = lcai_flash_padded(job->tk);
	FT *kr = job->kr, *vr = job->vr;

	for (int64_t s = 0; s < rows; s++) {
		FT *krow = kr + s * dkp, *vrow = vr + s * dvp;
		int64_t ck = 0, cv = 0;

		if (s < job->tk) {
			FN(load_row)(f, &job->k, s, s, 1.0, krow, 1);
			memcpy(vrow, (const FT *)job->v + s * job->ldv, (size_t)dv * sizeof(FT));
			ck = dk;
			cv = dv;
		}
		memset(krow + ck, 0, (size_t)(dkp - ck) * sizeof(FT));
		memset(vrow + cv, 0, (size_t)(dvp - cv) * sizeof(FT));
	}
}

/* x[0 .. rope_dim) rotated by -pos: the transpose of load_row's rotation,
 * in double with the same table, rounded once. */
FLASH_TARGET static void FN(unrotate)(const struct lcai_flash *f, void *xv,
	int64_t pos)
{
	const int64_t rot = f->rope_dim, h = rot / 2;
	const double *cs = f->rope + (pos - f->pmin) * rot;
	FT *x = xv;

	if (rot <= 0)
		return;
	if (f->p->rope_style == LCA_ROPE_INTERLEAVED) {
		for (int64_t j = 0; j < h; j++) {
			double a = x[2 * j], c = x[2 * j + 1];

			x[2 * j] = (FT)(a * cs[2 * j] + c * cs[2 * j + 1]);
			x[2 * j + 1] = (FT)(c * cs[2 * j] - a * cs[2 * j + 1]);
		}
	} else {
		for (int64_t j = 0; j < h; j++) {
			double a = x[j], c = x[j + h];

			x[j] = (FT)(a * cs[2 * j] + c * cs[2 * j + 1]);
			x[j + h] = (FT)(c * cs[2 * j] - a * cs[2 * j + 1]);
		}
	}
}

/* dst[c][r] = src[r][c] for a BK x BQ tile (square). */
INLINE void FN(transpose)(const FT *src, FT *dst)
{
	for (int r0 = 0; r0 < BK; r0 += 8)
		for (int c = 0; c < BQ; c++)
#pragma GCC unroll 8
			for (int r = r0; r < r0 + 8; r++)
				dst[c * BK + r] = src[r * BQ + c];
}

/* Load the task's queries (rotated, scaled), cotangents, lse and D into
 * the workspace, rows and transposed tiles; padded rows are zeros with
 * lse = +inf (P = 0), as are rows that see no key. */
FLASH_TARGET static void FN(bwd_load)(const struct lcai_flash_bwd *b,
	const struct lcai_flash_bwd_task *t, struct lcai_flash_bwd_ws *ws,
	int64_t tqp)
{
	const struct lcai_flash *f = b->f;
	const int64_t dk = f->dk, dv = f->dv, dkp = b->dkp, dvp = b->dvp;
	FT *qs = ws->qs, *dor = ws->dor, *lse = ws->lse, *lsl = ws->lsl, *dd = ws->dd;

	for (int64_t i = 0; i < tqp; i++) {
		FT *qrow = qs + i * dkp, *drow = dor + i * dvp;
		int64_t ck = 0, cv = 0;

		ws->lo[i] = ws->hi[i] = 0;
		lse[i] = (FT)INFINITY;
		lsl[i] = 0;
		dd[i] = 0;
		if (i < t->tq) {
			const int64_t pos = t->tk - t->tq + i;
			const FT *orow = (const FT *)t->o + i * t->ldo;
			const FT *grow = (const FT *)t->dout + i * t->lddo;
			double acc = 0;

			lcai_ref_key_range(f->p, pos, t->tk, &ws->lo[i], &ws->hi[i]);
			FN(load_row)(f, &t->q, i, pos, 1.0, qrow, 1);
			memcpy(drow, grow, (size_t)dv * sizeof(FT));
			ck = dk;
			cv = dv;
			for (int64_t c = 0; c < dv; c++)
				acc += (double)grow[c] * orow[c];
			dd[i] = (FT)acc;
			if (ws->lo[i] < ws->hi[i]) {
				lse[i] = ((const FT *)t->lse)[i * t->ldlse];
				lsl[i] = ((const FT *)t->lse_lo)[i * t->ldlse];
			}
		}
		memset(qrow + ck, 0, (size_t)(dkp - ck) * sizeof(FT));
		memset(drow + cv, 0, (size_t)(dvp - cv) * sizeof(FT));
	}
	for (int64_t i0 = 0; i0 < tqp; i0 += BQ) {
		FT *qt = (FT *)ws->qt + i0 * dkp, *dt = (FT *)ws->dot + i0 * dvp;

		for (int64_t r = 0; r < BQ; r++)
			for (int64_t c = 0; c < dkp; c++)
				qt[c * BQ + r] = qs[(i0 + r) * dkp + c];
		for (int64_t r = 0; r < BQ; r++)
			for (int64_t c = 0; c < dvp; c++)
				dt[c * BQ + r] = dor[(i0 + r) * dvp + c];
	}
	memset(ws->dq, 0, (size_t)(tqp * dkp) * sizeof(FT));
}

/* Transposed logits st[key r][query c] of keys a query may not see become
 * -inf (key tile at j0, query tile at i0). */
FLASH_TARGET static void FN(bwd_mask)(const struct lcai_flash_bwd_ws *ws,
	int64_t i0, int64_t j0, FT *st)
{
	for (int64_t c = 0; c < BQ; c++) {
		const int64_t lo = ws->lo[i0 + c] - j0, hi = ws->hi[i0 + c] - j0;

		for (int64_t r = 0; r < BK; r++)
			if (r < lo || r >= hi)
				st[r * BQ + c] = -INFINITY;
	}
}

/* One (key tile j0, query tile i0) pair of alg. 2 of FlashAttention-2, in
 * transposed form: S^T = K Q^T, P^T = exp(S^T - lse), dP^T = V dO^T,
 * dS^T = P^T .* (dP^T - D); dV += P^T dO, dK += dS^T Q, dQ += dS K. */
INLINE void FN(bwd_pair)(const struct lcai_flash_bwd *b,
	struct lcai_flash_bwd_ws *ws, const FT *kj, const FT *vj, int64_t i0,
	int64_t j0, int full)
{
	const int64_t dkp = b->dkp, dvp = b->dvp;
	const FT *qt = (const FT *)ws->qt + i0 * dkp, *dt = (const FT *)ws->dot + i0 * dvp;
	const FT *qs = (const FT *)ws->qs + i0 * dkp, *dor = (const FT *)ws->dor + i0 * dvp;
	const FT *lse = (const FT *)ws->lse + i0, *lsl = (const FT *)ws->lsl + i0;
	const FT *dd = (const FT *)ws->dd + i0;
	FT *st = ws->st, *dst = ws->dst, *ds = ws->ds;
	FT *dka = ws->dka, *dva = ws->dva, *dq = (FT *)ws->dq + i0 * dkp;

	for (int64_t r = 0; r < BK; r += FLASH_ROWS)
		for (int64_t c = 0; c < BQ; c += NC) {
			FN(qk_block)(kj + r * dkp, dkp, qt + c, st + r * BQ + c);
			FN(qk_block)(vj + r * dvp, dvp, dt + c, dst + r * BQ + c);
		}
	FN(scale_tile)(st, BK * BQ, (FT)b->f->scale);
	if (!full)
		FN(bwd_mask)(ws, i0, j0, st);
	for (int64_t r = 0; r < BK; r++)
		for (int64_t c = 0; c < BQ; c += VW) {
			VEC s, l, ll, dp, d, pr;

			VLOAD(s, st + r * BQ + c);
			VLOAD(l, lse + c);
			VLOAD(ll, lsl + c);
			VLOAD(dp, dst + r * BQ + c);
			VLOAD(d, dd + c);
			/* s - l is exact near the row's largest logits
			 * (Sterbenz); the residual then carries lse's
			 * precision beyond FT's */
			pr = FN(exp_vec)((s - l) - ll);
			dp = pr * (dp - d);
			VSTORE(st + r * BQ + c, pr);
			VSTORE(dst + r * BQ + c, dp);
		}
	for (int64_t r = 0; r < BK; r += FLASH_ROWS) {
		for (int64_t c = 0; c < dvp; c += NC)
			FN(pv_block)(st + r * BQ, dor + c, dvp, dva + r * dvp + c);
		for (int64_t c = 0; c < dkp; c += NC)
			FN(pv_block)(dst + r * BQ, qs + c, dkp, dka + r * dkp + c);
	}
	FN(transpose)(dst, ds);
	for (int64_t r = 0; r < BQ; r += FLASH_ROWS)
		for (int64_t c = 0; c < dkp; c += NC)
			FN(pv_block)(ds + r * BK, kj + c, dkp, dq + r * dkp + c);
}

/* One task: its key tiles in order, for each the query tiles that see it
 * in order; then dq = scale dQ, rotated back. */
FLASH_TARGET static void FN(bwd_task)(const struct lcai_flash_bwd *b,
	const struct lcai_flash_bwd_task *t, struct lcai_flash_bwd_ws *ws)
{
	const struct lcai_flash *f = b->f;
	const int64_t dkp = b->dkp, dvp = b->dvp, tq = t->tq;
	const int64_t tqp = (tq + BQ - 1) / BQ * BQ, rows = lcai_flash_padded(t->tk);
	const FT *kr = t->kr, *vr = t->vr;
	FT *pdk = t->dk, *pdv = t->dv;
	int64_t first, end;

	if (tq == 0) {
		memset(pdk, 0, (size_t)(rows * dkp) * sizeof(FT));
		memset(pdv, 0, (size_t)(rows * dvp) * sizeof(FT));
		return;
	}
	FN(bwd_load)(b, t, ws, tqp);
	/* ranges move right with the position: the union of the rows'
	 * ranges is [lo of the first row, hi of the last) */
	first = ws->lo[0] / BK * BK;
	end = ws->hi[tq - 1];
	if (end <= first)
		first = end = 0;
	memset(pdk, 0, (size_t)(first * dkp) * sizeof(FT));
	memset(pdv, 0, (size_t)(first * dvp) * sizeof(FT));
	for (int64_t j0 = first; j0 < end; j0 += BK) {
		memset(ws->dka, 0, (size_t)(BK * dkp) * sizeof(FT));
		memset(ws->dva, 0, (size_t)(BK * dvp) * sizeof(FT));
		for (int64_t i0 = 0; i0 < tqp; i0 += BQ) {
			const int64_t last = (i0 + BQ < tq ? i0 + BQ : tq) - 1;
			int full;

			/* The tile's rows see [lo of its first row, hi of its
			 * last); rows that see nothing form a prefix (queries
			 * before the first key), so an empty last row means an
			 * empty tile. Padded rows have P = 0 (lse = +inf): a
			 * tile is unmasked when its real rows all see all keys. */
			if (ws->lo[i0] >= j0 + BK || ws->hi[last] <= j0 ||
			    ws->hi[last] <= ws->lo[last])
				continue;
			full = ws->lo[last] <= j0 && ws->hi[i0] >= j0 + BK;
			FN(bwd_pair)(b, ws, kr + j0 * dkp, vr + j0 * dvp, i0, j0, full);
		}
		/* dK = scale dS^T q (the queries are unscaled) */
		FN(scale_tile)(ws->dka, BK * dkp, (FT)f->scale);
		memcpy(pdk + j0 * dkp, ws->dka, (size_t)(BK * dkp) * sizeof(FT));
		memcpy(pdv + j0 * dvp, ws->dva, (size_t)(BK * dvp) * sizeof(FT));
	}
	end = end > first ? (end + BK - 1) / BK * BK : first;
	memset(pdk + end * dkp, 0, (size_t)((rows - end) * dkp) * sizeof(FT));
	memset(pdv + end * dvp, 0, (size_t)((rows - end) * dvp) * sizeof(FT));

	for (int64_t i = 0; i < tq; i++) {
		const FT *acc = (const FT *)ws->dq + i * dkp;
		const int64_t da = t->q.da, db = t->q.db;
		FT *a = da > 0 ? (FT *)t->dqa + i * t->lddqa : NULL;
		FT *bb = db > 0 ? (FT *)t->dqb + i * t->lddqb : NULL;

		for (int64_t c = 0; c < da; c++)
			a[c] = (FT)(f->scale * acc[c]);
		for (int64_t c = 0; c < db; c++)
			bb[c] = (FT)(f->scale * acc[da + c]);
		if (bb && f->rope_dim > 0)
			FN(unrotate)(f, bb, t->tk - tq + i);
	}
}

static const struct lcai_flash_bwd_ops FN(bwd) = {
	FN(bwd_pack), FN(bwd_task), FN(unrotate),
};

#undef VW
#undef NC
#undef BQ
#undef BK
#undef VEC
#undef IVEC
#undef INLINE
#undef VLOAD
#undef VSTORE
#undef VSEL
#undef FT
#undef FI
#undef FN
#undef VFMA

#endif /* FLASH_TEMPLATE */
