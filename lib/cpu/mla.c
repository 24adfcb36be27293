/*
 * mla.c - multi-head latent attention (DeepSeek-V2 sec. 2.1) on the CPU,
 * float32 and float64: BLAS for the projections, the tiled online-softmax
 * engine of softmax.c (flash.h) for the attention itself.
 *
 * Both computations of lib/ref/mla.c, picked by p->algo (AUTO: per call,
 * the one with fewer modelled flops, lcai_mla_pick in lib/core/cost.c;
 * NAIVE for a prefill, ABSORBED for a few queries over a long context):
 *
 *   ABSORBED  q_lat[t,h] = w_uk[h]^T q_nope[t,h] (one GEMM per head over
 *             all tokens). Every head then attends, with rows
 *             q = [q_lat ; rope(q_rope)] and k = [ckv ; rope(k_rope)], to
 *             the values ckv itself: MQA with dk = dc + dr and dv = dc, the
 *             latent cache packed once and shared by all heads. The
 *             normalised latent sum becomes o[t,h] = w_uv[h] lat[t,h] (one
 *             GEMM per head). Equal to NAIVE because
 *             q_nope . (w_uk[h] c) = (w_uk[h]^T q_nope) . c and
 *             sum_s p_s w_uv[h] c_s = w_uv[h] sum_s p_s c_s.
 *   NAIVE     decompress per head k_nope = ckv w_uk[h]^T and v = ckv w_uv[h]^T
 *             (two GEMMs over all keys), then softmax attention with
 *             rows q = [q_nope ; rope(q_rope)], k = [k_nope ; rope(k_rope)].
 *
 * Heads are processed in groups sized so that the per-group buffers
 * (projected queries and latent outputs, or decompressed keys and values)
 * stay near MLA_GROUP_BYTES: memory is O(T) at any head count, and a group
 * still offers (heads x query tiles) items to the threads.
 *
 * BLAS and threads: the projections are large GEMMs issued outside any
 * OpenMP region, so BLAS uses its own threads there and never runs inside
 * our team (the pthreads OpenBLAS would oversubscribe it); the attention
 * runs in the engine's team, which calls no BLAS.
 */
#include "flash.h"
#include "prof.h"

#include <cblas.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Target size of one head group's buffers. */
#define MLA_GROUP_BYTES ((int64_t)1 << 28)

/* One call's arguments. */
struct mla_call {
	const lca_params *p;
	const int64_t *cu_q, *cu_k;
	int64_t nseq;
	const void *q_nope, *q_rope, *ckv, *k_rope, *w_uk, *w_uv;
	void *o, *lse, *lse_lo;
	void *lat;  /* NULL, or absorbed only: stop at the latent sum, [Tq][H][dc] */
	const struct lcai_pos *at; /* NULL: bottom-right; else nseq = 1 here */
};

/*
 * C[M][N] = A[M][K] op(B), row-major, in the plan's dtype; op(B) is
 * B[K][N] or, with transb, B[N][K]^T. BLAS takes int sizes: M is cut into
 * slices that fit (N, K and the leading dimensions are head sizes).
 */
static void mla_gemm(lca_dtype dtype, int transb, int64_t M, int64_t N,
	int64_t K, const void *A, int64_t lda, const void *B, int64_t ldb,
	void *C, int64_t ldc)
{
	const size_t es = dtype == LCA_F32 ? sizeof(float) : sizeof(double);
	const enum CBLAS_TRANSPOSE tb = transb ? CblasTrans : CblasNoTrans;

	LCAI_PROF(LCAI_PH_MLA_PROJECT);
	for (int64_t m0 = 0; m0 < M; m0 += INT_MAX / 2) {
		int m = (int)(M - m0 < INT_MAX / 2 ? M - m0 : INT_MAX / 2);
		const void *a = lcai_flash_at(A, es, m0 * lda);
		void *c = lcai_flash_at_w(C, es, m0 * ldc);

		if (dtype == LCA_F32)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, m, (int)N, (int)K,
				1.0f, a, (int)lda, B, (int)ldb, 0.0f, c, (int)ldc);
		else
			cblas_dgemm(CblasRowMajor, CblasNoTrans, tb, m, (int)N, (int)K,
				1.0, a, (int)lda, B, (int)ldb, 0.0, c, (int)ldc);
	}
	LCAI_PROF_END();
}

/* Heads per group when one head needs per_head bytes of buffers. */
static int64_t mla_group(const lca_params *p, int64_t per_head)
{
	int64_t g = per_head > 0 ? MLA_GROUP_BYTES / per_head : p->H;

	return g < 1 ? 1 : g > p->H ? p->H : g;
}

/* Task of sequence n, head h: queries q_src against a packed kv head. */
static void mla_task(const struct mla_call *c, const struct lcai_flash *f,
	int64_t n, int64_t h, const struct lcai_flash_src *q_src,
	const struct lcai_flash_pack *kv, void *out, int64_t ldo,
	struct lcai_flash_task *t)
{
	const int64_t q0 = c->cu_q[n], H = c->p->H;

	memset(t, 0, sizeof *t);
	t->q = *q_src;
	t->kt = kv->kt;
	t->vp = kv->vp;
	t->tq = c->cu_q[n + 1] - q0;
	t->tk = kv->tk;
	t->o = out;
	t->ldo = ldo;
	t->lse = c->lse ? lcai_flash_at_w(c->lse, f->ops->esize, q0 * H + h) : NULL;
	t->ldlse = H;
	t->lse_lo = c->lse_lo ? lcai_flash_at_w(c->lse_lo, f->ops->esize, q0 * H + h) : NULL;
}

/* ---- absorbed ---------------------------------------------------------- */

/* Heads h0 .. h0+G-1: q_lat by GEMM into ql, attention into lat, then
 * o = lat w_uv^T by GEMM (or, with c->lat, attention into c->lat and no
 * o). jobs holds the packed latent cache per sequence. */
static lca_status absorbed_group(const struct mla_call *c,
	const struct lcai_flash *f, const struct lcai_flash_pack *jobs,
	int64_t h0, int64_t G, void *ql, void *lat,
	struct lcai_flash_task *tasks)
{
	const lca_params *p = c->p;
	const size_t es = f->ops->esize;
	const int64_t H = p->H, dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;
	const int64_t Tq = c->cu_q[c->nseq];
	lca_status st;

	for (int64_t g = 0; g < G; g++)
		mla_gemm(p->dtype, 0, Tq, dc, dn,
			lcai_flash_at(c->q_nope, es, (h0 + g) * dn), H * dn,
			lcai_flash_at(c->w_uk, es, (h0 + g) * dn * dc), dc,
			lcai_flash_at_w(ql, es, g * Tq * dc), dc);
	for (int64_t n = 0; n < c->nseq; n++)
		for (int64_t g = 0; g < G; g++) {
			const int64_t q0 = c->cu_q[n], h = h0 + g;
			struct lcai_flash_src q = {
				lcai_flash_at(ql, es, (g * Tq + q0) * dc), dc, dc,
				lcai_flash_at(c->q_rope, es, (q0 * H + h) * dr), H * dr, dr,
			};

			if (c->lat)
				mla_task(c, f, n, h, &q, &jobs[n],
					lcai_flash_at_w(c->lat, es, (q0 * H + h) * dc), H * dc,
					&tasks[n * G + g]);
			else
				mla_task(c, f, n, h, &q, &jobs[n],
					lcai_flash_at_w(lat, es, (g * Tq + q0) * dc), dc,
					&tasks[n * G + g]);
		}
	if ((st = lcai_flash_run(f, tasks, c->nseq * G)) != LCA_OK || c->lat)
		return st;
	for (int64_t g = 0; g < G; g++)
		mla_gemm(p->dtype, 1, Tq, dv, dc,
			lcai_flash_at(lat, es, g * Tq * dc), dc,
			lcai_flash_at(c->w_uv, es, (h0 + g) * dv * dc), dc,
			lcai_flash_at_w(c->o, es, (h0 + g) * dv), H * dv);
	return LCA_OK;
}

/* Pack [ckv ; rope(k_rope)] as keys and ckv as values, once per sequence:
 * every head reads them. */
static void absorbed_pack(const struct mla_call *c, const struct lcai_flash *f,
	const int64_t *off, void *kt, void *vp, struct lcai_flash_pack *jobs)
{
	const size_t es = f->ops->esize;
	const int64_t dc = c->p->dc, dr = c->p->dr;

	for (int64_t n = 0; n < c->nseq; n++) {
		const int64_t k0 = c->cu_k[n];
		struct lcai_flash_pack *j = &jobs[n];

		memset(j, 0, sizeof *j);
		j->k.a = lcai_flash_at(c->ckv, es, k0 * dc);
		j->k.lda = dc;
		j->k.da = dc;
		j->k.b = lcai_flash_at(c->k_rope, es, k0 * dr);
		j->k.ldb = dr;
		j->k.db = dr;
		j->v = j->k.a;
		j->ldv = dc;
		j->tk = c->cu_k[n + 1] - k0;
		j->kt = lcai_flash_at_w(kt, es, off[n] * f->dk);
		j->vp = lcai_flash_at_w(vp, es, off[n] * f->dvp);
	}
	lcai_flash_pack_all(f, jobs, c->nseq);
}

static lca_status mla_absorbed(const struct mla_call *c, struct lcai_flash *f,
	const int64_t *off)
{
	const lca_params *p = c->p;
	const int64_t es = (int64_t)f->ops->esize, Tq = c->cu_q[c->nseq];
	struct lcai_flash_pack *jobs = NULL;
	struct lcai_flash_task *tasks = NULL;
	void *kt = NULL, *vp = NULL, *ql = NULL, *lat = NULL;
	int64_t per_head, G, nbuf, ntasks;
	lca_status st;

	if ((st = lcai_flash_alloc(f, 1, off[c->nseq], &kt, &vp)) != LCA_OK)
		return st;
	if (!lcai_mul_n(&per_head, 3, Tq, p->dc, 2 * es))
		per_head = INT64_MAX;
	G = mla_group(p, per_head);
	if (!lcai_mul_n(&nbuf, 4, G, Tq, p->dc, es) ||
	    !lcai_mul_n(&ntasks, 3, c->nseq, G, (int64_t)sizeof *tasks) ||
	    !(jobs = malloc((size_t)c->nseq * sizeof *jobs)) ||
	    !(tasks = malloc((size_t)ntasks)) ||
	    !(ql = malloc((size_t)nbuf + 1)) ||
	    (!c->lat && !(lat = malloc((size_t)nbuf + 1)))) {
		st = lcai_fail(LCA_ERR_NOMEM, "cpu mla: no memory for %lld queries of %lld heads",
			(long long)Tq, (long long)G);
		goto out;
	}
	absorbed_pack(c, f, off, kt, vp, jobs);
	for (int64_t h0 = 0; h0 < p->H && st == LCA_OK; h0 += G)
		st = absorbed_group(c, f, jobs, h0, p->H - h0 < G ? p->H - h0 : G,
			ql, lat, tasks);
out:
	free(lat);
	free(ql);
	free(tasks);
	free(jobs);
	free(vp);
	free(kt);
	return st;
}

/* ---- naive ------------------------------------------------------------- */

/* Heads h0 .. h0+G-1: decompress keys and values by GEMM into kn and vh,
 * pack them with the rotated k_rope, attend straight into o. */
static lca_status naive_group(const struct mla_call *c,
	const struct lcai_flash *f, const int64_t *off, int64_t h0, int64_t G,
	void *kn, void *vh, void *kt, void *vp, struct lcai_flash_pack *jobs,
	struct lcai_flash_task *tasks)
{
	const lca_params *p = c->p;
	const size_t es = f->ops->esize;
	const int64_t H = p->H, dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;
	const int64_t Tk = c->cu_k[c->nseq], rows = off[c->nseq];

	for (int64_t g = 0; g < G; g++) {
		mla_gemm(p->dtype, 1, Tk, dn, dc, c->ckv, dc,
			lcai_flash_at(c->w_uk, es, (h0 + g) * dn * dc), dc,
			lcai_flash_at_w(kn, es, g * Tk * dn), dn);
		mla_gemm(p->dtype, 1, Tk, dv, dc, c->ckv, dc,
			lcai_flash_at(c->w_uv, es, (h0 + g) * dv * dc), dc,
			lcai_flash_at_w(vh, es, g * Tk * dv), dv);
	}
	for (int64_t n = 0; n < c->nseq; n++)
		for (int64_t g = 0; g < G; g++) {
			const int64_t k0 = c->cu_k[n], q0 = c->cu_q[n], h = h0 + g;
			struct lcai_flash_pack *j = &jobs[n * G + g];
			struct lcai_flash_src q = {
				lcai_flash_at(c->q_nope, es, (q0 * H + h) * dn), H * dn, dn,
				lcai_flash_at(c->q_rope, es, (q0 * H + h) * dr), H * dr, dr,
			};

			memset(j, 0, sizeof *j);
			j->k.a = lcai_flash_at(kn, es, (g * Tk + k0) * dn);
			j->k.lda = dn;
			j->k.da = dn;
			j->k.b = lcai_flash_at(c->k_rope, es, k0 * dr);
			j->k.ldb = dr;
			j->k.db = dr;
			j->v = lcai_flash_at(vh, es, (g * Tk + k0) * dv);
			j->ldv = dv;
			j->tk = c->cu_k[n + 1] - k0;
			j->kt = lcai_flash_at_w(kt, es, (g * rows + off[n]) * f->dk);
			j->vp = lcai_flash_at_w(vp, es, (g * rows + off[n]) * f->dvp);
			mla_task(c, f, n, h, &q, j,
				lcai_flash_at_w(c->o, es, (q0 * H + h) * dv), H * dv,
				&tasks[n * G + g]);
		}
	lcai_flash_pack_all(f, jobs, c->nseq * G);
	return lcai_flash_run(f, tasks, c->nseq * G);
}

static lca_status mla_naive(const struct mla_call *c, struct lcai_flash *f,
	const int64_t *off)
{
	const lca_params *p = c->p;
	const int64_t es = (int64_t)f->ops->esize, Tk = c->cu_k[c->nseq];
	const int64_t rows = off[c->nseq];
	struct lcai_flash_pack *jobs = NULL;
	struct lcai_flash_task *tasks = NULL;
	void *kt = NULL, *vp = NULL, *kn = NULL, *vh = NULL;
	int64_t per_head, a, b, G, nkn, nvh, njobs, ntasks;
	lca_status st = LCA_OK;

	/* Per head: decompressed keys and values, and their packed copies. */
	if (!lcai_mul_n(&a, 3, Tk, p->dn + p->dv, es) ||
	    !lcai_mul_n(&b, 3, rows, f->dk + f->dvp, es) || a > INT64_MAX - b)
		per_head = INT64_MAX;
	else
		per_head = a + b;
	G = mla_group(p, per_head);
	if (!lcai_mul_n(&nkn, 4, G, Tk, p->dn, es) ||
	    !lcai_mul_n(&nvh, 4, G, Tk, p->dv, es) ||
	    !lcai_mul_n(&njobs, 3, c->nseq, G, (int64_t)sizeof *jobs) ||
	    !lcai_mul_n(&ntasks, 3, c->nseq, G, (int64_t)sizeof *tasks) ||
	    !(jobs = malloc((size_t)njobs)) || !(tasks = malloc((size_t)ntasks)) ||
	    !(kn = malloc((size_t)nkn + 1)) || !(vh = malloc((size_t)nvh + 1))) {
		st = lcai_fail(LCA_ERR_NOMEM, "cpu mla: no memory to decompress %lld keys of %lld heads",
			(long long)Tk, (long long)G);
		goto out;
	}
	if ((st = lcai_flash_alloc(f, G, rows, &kt, &vp)) != LCA_OK)
		goto out;
	for (int64_t h0 = 0; h0 < p->H && st == LCA_OK; h0 += G)
		st = naive_group(c, f, off, h0, p->H - h0 < G ? p->H - h0 : G,
			kn, vh, kt, vp, jobs, tasks);
out:
	free(vp);
	free(kt);
	free(vh);
	free(kn);
	free(tasks);
	free(jobs);
	return st;
}

/* The computation of this call: p->algo, or AUTO's pick for its query,
 * key and visible-pair counts (lcai_mla_pick). */
lca_algo lcai_cpu_mla_algo(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq)
{
	double pairs = 0;

	if (p->algo != LCA_ALGO_AUTO)
		return p->algo;
	for (int64_t n = 0; n < nseq; n++)
		pairs += lcai_mla_pairs(p, cu_q[n + 1] - cu_q[n], cu_k[n + 1] - cu_k[n]);
	return lcai_mla_pick(p, (double)cu_q[nseq], (double)cu_k[nseq], pairs);
}

/* Call c in the naive or the absorbed form. */
static lca_status mla_run(const struct mla_call *c, int naive)
{
	const lca_params *p = c->p;
	const int64_t da = naive ? p->dn : p->dc, dv = naive ? p->dv : p->dc;
	struct lcai_flash f;
	int64_t *off;
	lca_status st;

	/* Rows [a ; b]: naive [q_nope ; q_rope] against decompressed heads,
	 * absorbed [q_lat ; q_rope] against the latent cache. */
	st = c->at ? lcai_flash_init_at(&f, p, da, p->dr, dv, p->rope_dim,
		p->scale, c->at, c->cu_q[1], c->cu_k[1]) :
		lcai_flash_init(&f, p, da, p->dr, dv, p->rope_dim, p->scale, c->cu_q,
		c->cu_k, c->nseq);
	if (st != LCA_OK)
		return st;
	if ((uint64_t)c->nseq >= SIZE_MAX / sizeof *off ||
	    !(off = malloc((size_t)(c->nseq + 1) * sizeof *off))) {
		lcai_flash_free(&f);
		return lcai_fail(LCA_ERR_NOMEM, "cpu mla: no memory for %lld sequences",
			(long long)c->nseq);
	}
	if (!lcai_flash_offsets(c->cu_k, c->nseq, off))
		st = lcai_fail(LCA_ERR_NOMEM, "cpu mla: packed key count overflows");
	else if (naive)
		st = mla_naive(c, &f, off);
	else
		st = mla_absorbed(c, &f, off);
	free(off);
	lcai_flash_free(&f);
	return st;
}

lca_status lcai_cpu_mla(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, void *o, void *lse)
{
	return lcai_cpu_mla_lse2(p, cu_q, cu_k, nseq, q_nope, q_rope, ckv, k_rope,
		w_uk, w_uv, o, lse, NULL);
}

lca_status lcai_cpu_mla_lse2(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, void *o, void *lse, void *lse_lo)
{
	const struct mla_call c = {
		p, cu_q, cu_k, nseq, q_nope, q_rope, ckv, k_rope, w_uk, w_uv, o, lse,
		lse_lo, NULL, NULL,
	};

	return mla_run(&c, lcai_cpu_mla_algo(p, cu_q, cu_k, nseq) == LCA_ALGO_NAIVE);
}

lca_status lcai_cpu_mla_latent(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, void *lat, void *lse, void *lse_lo)
{
	const struct mla_call c = {
		p, cu_q, cu_k, nseq, q_nope, q_rope, ckv, k_rope, w_uk, NULL, NULL,
		lse, lse_lo, lat, NULL,
	};

	return mla_run(&c, 0);
}

/* One sequence at the positions of *at (lca_softmax_partial's mla twin).
 * AUTO's pick counts bottom-right pairs: at other positions it is only a
 * guess at the cheaper computation, never a different result. */
lca_status lcai_cpu_mla_at(const lca_params *p, const struct lcai_pos *at,
	int64_t tq, int64_t tk, const void *q_nope, const void *q_rope,
	const void *ckv, const void *k_rope, const void *w_uk,
	const void *w_uv, void *o, void *lse)
{
	const int64_t cu_q[2] = { 0, tq }, cu_k[2] = { 0, tk };
	const struct mla_call c = {
		p, cu_q, cu_k, 1, q_nope, q_rope, ckv, k_rope, w_uk, w_uv, o, lse,
		NULL, NULL, at,
	};

	return mla_run(&c, lcai_cpu_mla_algo(p, cu_q, cu_k, 1) == LCA_ALGO_NAIVE);
}
