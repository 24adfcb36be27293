/*
 * mla_bwd.c - the backward of multi-head latent attention on the CPU
 * (float32 and float64): the numbers of lib/ref/mla_bwd.c's adjoints, in
 * the form the forward runs for the call (lcai_cpu_mla_algo: p->algo, or
 * AUTO's pick, so naive for a prefill, absorbed for a few queries over a
 * long context). Both differentiate the same function (DESIGN.md).
 *
 * Naive, per group of heads:
 *   1. decompress k_nope = ckv w_uk[h]^T and v = ckv w_uv[h]^T (BLAS, the
 *      forward's calls, so the same bits) and run the softmax backward
 *      engine (flash_bwd.h) with rows [q_nope ; rope(q_rope)] against
 *      [k_nope ; rope(k_rope)]: it writes dq_nope, dq_rope and per head
 *      the partial gradients of the key rows and values;
 *   2. fold back (BLAS): dckv += dk_nope w_uk[h] + dv w_uv[h],
 *      dw_uk[h] = dk_nope^T ckv, dw_uv[h] = dv^T ckv, and the rotated
 *      k_rope gradient sums over heads, rotated back once at the end.
 * Absorbed: see mla_absorbed_bwd below.
 * Heads are folded in order and BLAS runs outside our OpenMP team (its
 * own threads, never p->nthreads), so results are bitwise the same for
 * every p->nthreads. The forward's o (or latent sums) and lse are
 * recomputed by lib/cpu/mla.c in the same form, so the recomputed logits
 * are the forward's.
 */
#include "flash_bwd.h"

#include <cblas.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MLA_GROUP_BYTES ((int64_t)1 << 28)
#define MLA_ALIGN 64

/* C[M][N] = op(A) op(B) + beta C, row-major, in dtype; op(A) is A[M][K]
 * or, with ta, A[K][M]^T; op(B) B[K][N] or, with tb, B[N][K]^T. BLAS
 * takes int sizes: M is sliced for op(A) = A, K for op(A) = A^T (later
 * slices accumulate); N, and with ta M, are head sizes. */
static void bwd_gemm(lca_dtype dtype, int ta, int tb, int64_t M, int64_t N,
	int64_t K, const void *A, int64_t lda, const void *B, int64_t ldb,
	double beta, void *C, int64_t ldc)
{
	const size_t es = dtype == LCA_F32 ? sizeof(float) : sizeof(double);
	const enum CBLAS_TRANSPOSE oa = ta ? CblasTrans : CblasNoTrans;
	const enum CBLAS_TRANSPOSE ob = tb ? CblasTrans : CblasNoTrans;
	const int64_t cut = INT_MAX / 2, outer = ta ? K : M;

	for (int64_t x0 = 0; x0 < outer || x0 == 0; x0 += cut) {
		const int64_t n = outer - x0 < cut ? outer - x0 : cut;
		const void *a = lcai_flash_at(A, es, x0 * lda);
		const void *b = ta ? lcai_flash_at(B, es, tb ? x0 : x0 * ldb) : B;
		void *c = ta ? C : lcai_flash_at_w(C, es, x0 * ldc);
		const int m = (int)(ta ? M : n), k = (int)(ta ? n : K);
		const double bt = ta && x0 > 0 ? 1.0 : beta;

		if (m == 0 || k == 0 || N == 0) {
			if (x0 == 0 && k == 0 && bt == 0.0)
				for (int64_t i = 0; i < M; i++)
					memset(lcai_flash_at_w(C, es, i * ldc), 0, (size_t)N * es);
			break;
		}
		if (dtype == LCA_F32)
			cblas_sgemm(CblasRowMajor, oa, ob, m, (int)N, k, 1.0f, a, (int)lda,
				b, (int)ldb, (float)bt, c, (int)ldc);
		else
			cblas_dgemm(CblasRowMajor, oa, ob, m, (int)N, k, 1.0, a, (int)lda,
				b, (int)ldb, bt, c, (int)ldc);
	}
}

/* One call's arguments and buffers. */
struct mla_bwd {
	const lca_params *p;
	const int64_t *cu_q, *cu_k;
	int64_t nseq, G, rows;
	const void *q_nope, *q_rope, *ckv, *k_rope, *w_uk, *w_uv, *dout;
	void *dq_nope, *dq_rope, *dckv, *dk_rope, *dw_uk, *dw_uv;
	void *o, *lse, *lse_lo;  /* the forward's */
	void *kn, *vh;           /* [G][Tk][dn], [G][Tk][dv] */
	void *slots, *parts;     /* [G][rows][dkp + dvp] each */
	int64_t *off;
	struct lcai_flash_bwd_pack *jobs;
	struct lcai_flash_bwd_task *tasks;
};

static void mla_bwd_free(struct mla_bwd *c)
{
	free(c->o);
	free(c->lse);
	free(c->lse_lo);
	free(c->kn);
	free(c->vh);
	free(c->slots);
	free(c->parts);
	free(c->off);
	free(c->jobs);
	free(c->tasks);
}

/* Heads per group and every buffer, before any output is written. */
static lca_status mla_bwd_alloc(struct mla_bwd *c, const struct lcai_flash_bwd *b)
{
	const lca_params *p = c->p;
	const int64_t es = (int64_t)b->f->ops->esize, Tk = c->cu_k[c->nseq];
	int64_t a, s, per_head, nkn, nvh, nslot, nj, nt;

	if (!(c->off = malloc((size_t)(c->nseq + 1) * sizeof *c->off)) ||
	    !lcai_flash_offsets(c->cu_k, c->nseq, c->off))
		return LCA_ERR_NOMEM;
	c->rows = c->off[c->nseq];
	if (!lcai_mul_n(&a, 3, Tk, p->dn + p->dv, es) ||
	    !lcai_mul_n(&s, 3, c->rows, b->dkp + b->dvp, es) || s > (INT64_MAX - a) / 2)
		return LCA_ERR_NOMEM;
	per_head = a + 2 * s;
	c->G = per_head > 0 ? MLA_GROUP_BYTES / per_head : p->H;
	c->G = c->G < 1 ? 1 : c->G > p->H ? p->H : c->G;
	if (!lcai_mul_n(&nkn, 4, c->G, Tk, p->dn, es) ||
	    !lcai_mul_n(&nvh, 4, c->G, Tk, p->dv, es) ||
	    !lcai_mul(s, c->G, &nslot) || (uint64_t)nslot > SIZE_MAX - 2 * MLA_ALIGN ||
	    !lcai_mul_n(&nj, 3, c->nseq, c->G, (int64_t)sizeof *c->jobs) ||
	    !lcai_mul_n(&nt, 3, c->nseq, c->G, (int64_t)sizeof *c->tasks))
		return LCA_ERR_NOMEM;
	nslot = (nslot + MLA_ALIGN) / MLA_ALIGN * MLA_ALIGN;
	c->kn = malloc((size_t)nkn + 1);
	c->vh = malloc((size_t)nvh + 1);
	c->slots = aligned_alloc(MLA_ALIGN, (size_t)nslot);
	c->parts = aligned_alloc(MLA_ALIGN, (size_t)nslot);
	c->jobs = malloc((size_t)nj + 1);
	c->tasks = malloc((size_t)nt + 1);
	if (!c->kn || !c->vh || !c->slots || !c->parts || !c->jobs || !c->tasks)
		return LCA_ERR_NOMEM;
	return LCA_OK;
}

/* Decompress heads h0 .. h0+G-1 and set up their jobs and tasks. */
static void mla_bwd_plan(struct mla_bwd *c, const struct lcai_flash_bwd *b,
	int64_t h0, int64_t G)
{
	const lca_params *p = c->p;
	const size_t es = b->f->ops->esize;
	const int64_t H = p->H, dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;
	const int64_t Tk = c->cu_k[c->nseq], rows = c->rows;
	const int64_t dkp = b->dkp, dvp = b->dvp;

	for (int64_t g = 0; g < G; g++) {
		bwd_gemm(p->dtype, 0, 1, Tk, dn, dc, c->ckv, dc,
			lcai_flash_at(c->w_uk, es, (h0 + g) * dn * dc), dc, 0.0,
			lcai_flash_at_w(c->kn, es, g * Tk * dn), dn);
		bwd_gemm(p->dtype, 0, 1, Tk, dv, dc, c->ckv, dc,
			lcai_flash_at(c->w_uv, es, (h0 + g) * dv * dc), dc, 0.0,
			lcai_flash_at_w(c->vh, es, g * Tk * dv), dv);
	}
	for (int64_t n = 0; n < c->nseq; n++)
		for (int64_t g = 0; g < G; g++) {
			const int64_t k0 = c->cu_k[n], q0 = c->cu_q[n], h = h0 + g;
			struct lcai_flash_bwd_pack *j = &c->jobs[n * G + g];
			struct lcai_flash_bwd_task *t = &c->tasks[n * G + g];
			void *slot = lcai_flash_at_w(c->slots, es, g * rows * (dkp + dvp));
			void *part = lcai_flash_at_w(c->parts, es, g * rows * (dkp + dvp));

			memset(j, 0, sizeof *j);
			j->k.a = lcai_flash_at(c->kn, es, (g * Tk + k0) * dn);
			j->k.lda = dn;
			j->k.da = dn;
			j->k.b = lcai_flash_at(c->k_rope, es, k0 * dr);
			j->k.ldb = dr;
			j->k.db = dr;
			j->v = lcai_flash_at(c->vh, es, (g * Tk + k0) * dv);
			j->ldv = dv;
			j->tk = c->cu_k[n + 1] - k0;
			j->kr = lcai_flash_at_w(slot, es, c->off[n] * dkp);
			j->vr = lcai_flash_at_w(slot, es, rows * dkp + c->off[n] * dvp);

			memset(t, 0, sizeof *t);
			t->q.a = lcai_flash_at(c->q_nope, es, (q0 * H + h) * dn);
			t->q.lda = H * dn;
			t->q.da = dn;
			t->q.b = lcai_flash_at(c->q_rope, es, (q0 * H + h) * dr);
			t->q.ldb = H * dr;
			t->q.db = dr;
			t->o = lcai_flash_at(c->o, es, (q0 * H + h) * dv);
			t->ldo = H * dv;
			t->dout = lcai_flash_at(c->dout, es, (q0 * H + h) * dv);
			t->lddo = H * dv;
			t->lse = lcai_flash_at(c->lse, es, q0 * H + h);
			t->lse_lo = lcai_flash_at(c->lse_lo, es, q0 * H + h);
			t->ldlse = H;
			t->kr = j->kr;
			t->vr = j->vr;
			t->tq = c->cu_q[n + 1] - q0;
			t->tk = j->tk;
			t->dqa = lcai_flash_at_w(c->dq_nope, es, (q0 * H + h) * dn);
			t->lddqa = H * dn;
			t->dqb = lcai_flash_at_w(c->dq_rope, es, (q0 * H + h) * dr);
			t->lddqb = H * dr;
			t->dk = lcai_flash_at_w(part, es, c->off[n] * dkp);
			t->dv = lcai_flash_at_w(part, es, rows * dkp + c->off[n] * dvp);
		}
}

/* y[0..n) += x[0..n) in dtype. */
static void add_row(size_t es, void *y, const void *x, int64_t n)
{
	if (es == sizeof(float))
		for (int64_t i = 0; i < n; i++)
			((float *)y)[i] += ((const float *)x)[i];
	else
		for (int64_t i = 0; i < n; i++)
			((double *)y)[i] += ((const double *)x)[i];
}

/* Fold head h0 + g's partials back onto the latent inputs: its key-row
 * gradient [dk_nope ; rotated dk_rope] and value gradient, compacted to
 * token rows in kn and vh (free once the tasks ran), then BLAS. */
static void mla_bwd_fold(struct mla_bwd *c, const struct lcai_flash_bwd *b,
	int64_t h, int64_t g)
{
	const lca_params *p = c->p;
	const size_t es = b->f->ops->esize;
	const int64_t dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;
	const int64_t Tk = c->cu_k[c->nseq], dkp = b->dkp, dvp = b->dvp;
	const void *part = lcai_flash_at(c->parts, es, g * c->rows * (dkp + dvp));
	void *kn = lcai_flash_at_w(c->kn, es, g * Tk * dn);
	void *vh = lcai_flash_at_w(c->vh, es, g * Tk * dv);

	#pragma omp parallel for num_threads(lcai_flash_team(p, c->nseq * 4)) schedule(dynamic)
	for (int64_t n = 0; n < c->nseq; n++) {
		const int64_t k0 = c->cu_k[n], tk = c->cu_k[n + 1] - k0;

		for (int64_t s = 0; s < tk; s++) {
			const void *krow = lcai_flash_at(part, es, (c->off[n] + s) * dkp);
			const void *vrow = lcai_flash_at(part, es,
				c->rows * dkp + (c->off[n] + s) * dvp);

			memcpy(lcai_flash_at_w(kn, es, (k0 + s) * dn), krow, (size_t)dn * es);
			memcpy(lcai_flash_at_w(vh, es, (k0 + s) * dv), vrow, (size_t)dv * es);
			add_row(es, lcai_flash_at_w(c->dk_rope, es, (k0 + s) * dr),
				lcai_flash_at(krow, es, dn), dr);
		}
	}
	/* ckv [Tk][dc]: dckv += dk_nope w_uk[h] + dv w_uv[h];
	 * dw_uk[h] = dk_nope^T ckv, dw_uv[h] = dv^T ckv */
	bwd_gemm(p->dtype, 0, 0, Tk, dc, dn, kn, dn,
		lcai_flash_at(c->w_uk, es, h * dn * dc), dc, 1.0, c->dckv, dc);
	bwd_gemm(p->dtype, 0, 0, Tk, dc, dv, vh, dv,
		lcai_flash_at(c->w_uv, es, h * dv * dc), dc, 1.0, c->dckv, dc);
	bwd_gemm(p->dtype, 1, 0, dn, dc, Tk, kn, dn, c->ckv, dc, 0.0,
		lcai_flash_at_w(c->dw_uk, es, h * dn * dc), dc);
	bwd_gemm(p->dtype, 1, 0, dv, dc, Tk, vh, dv, c->ckv, dc, 0.0,
		lcai_flash_at_w(c->dw_uv, es, h * dv * dc), dc);
}

/* The engines of one call with rows [da ; dr] against values of dv: the
 * forward's set-up (f) and the backward's workspaces (b), sized for the
 * longest query run. The caller frees b whatever the status, and f once
 * *f_ready is set. */
static lca_status mla_engines(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, int64_t da, int64_t dv,
	struct lcai_flash *f, struct lcai_flash_bwd *b, int *f_ready)
{
	int64_t max_tq = 0;
	lca_status st;

	*f_ready = 0;
	if ((st = lcai_flash_init(f, p, da, p->dr, dv, p->rope_dim, p->scale,
			cu_q, cu_k, nseq)) != LCA_OK)
		return st;
	*f_ready = 1;
	for (int64_t n = 0; n < nseq; n++)
		if (cu_q[n + 1] - cu_q[n] > max_tq)
			max_tq = cu_q[n + 1] - cu_q[n];
	return lcai_flash_bwd_init(b, f, max_tq, nseq * p->H);
}

/* dk_rope, summed over heads in the rotated domain, rotated back. */
static void mla_unrotate(const lca_params *p, const struct lcai_flash *f,
	const struct lcai_flash_bwd *b, const int64_t *cu_k, int64_t nseq,
	void *dk_rope)
{
	const size_t es = f->ops->esize;

	if (p->rope_dim <= 0)
		return;
	#pragma omp parallel for num_threads(lcai_flash_team(p, cu_k[nseq] / 256 + 1))
	for (int64_t s = 0; s < nseq; s++)
		for (int64_t t = cu_k[s]; t < cu_k[s + 1]; t++)
			b->ops->unrotate(f, lcai_flash_at_w(dk_rope, es, t * p->dr),
				t - cu_k[s]);
}

static lca_status mla_naive_bwd(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, const void *dout, void *dq_nope,
	void *dq_rope, void *dckv, void *dk_rope, void *dw_uk, void *dw_uv)
{
	const int64_t Tq = cu_q[nseq], Tk = cu_k[nseq];
	const size_t es = p->dtype == LCA_F32 ? sizeof(float) : sizeof(double);
	struct mla_bwd c = {
		p, cu_q, cu_k, nseq, 0, 0, q_nope, q_rope, ckv, k_rope, w_uk, w_uv,
		dout, dq_nope, dq_rope, dckv, dk_rope, dw_uk, dw_uv,
		NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	};
	lca_params naive = *p;
	struct lcai_flash f;
	struct lcai_flash_bwd b = { 0 };
	int64_t no;
	int f_ready = 0;
	lca_status st;

	/* The forward in the naive form: its logits are the ones recomputed. */
	naive.algo = LCA_ALGO_NAIVE;
	if (!lcai_mul_n(&no, 4, Tq, p->H, p->dv, (int64_t)es) ||
	    !(c.o = malloc((size_t)no + 1)) || !(c.lse = malloc((size_t)(Tq * p->H) * es + 1)) ||
	    !(c.lse_lo = malloc((size_t)(Tq * p->H) * es + 1))) {
		mla_bwd_free(&c);
		return lcai_fail(LCA_ERR_NOMEM, "cpu mla backward: no memory for %lld queries",
			(long long)Tq);
	}
	if ((st = lcai_cpu_mla_lse2(&naive, cu_q, cu_k, nseq, q_nope, q_rope, ckv,
			k_rope, w_uk, w_uv, c.o, c.lse, c.lse_lo)) != LCA_OK) {
		mla_bwd_free(&c);
		return st;
	}
	if ((st = mla_engines(p, cu_q, cu_k, nseq, p->dn, p->dv, &f, &b,
			&f_ready)) != LCA_OK)
		goto out;
	if (mla_bwd_alloc(&c, &b) != LCA_OK) {
		st = lcai_fail(LCA_ERR_NOMEM, "cpu mla backward: no memory to decompress "
			"%lld keys", (long long)Tk);
		goto out;
	}
	/* Every buffer exists: outputs from here on. */
	memset(dckv, 0, (size_t)(Tk * p->dc) * es);
	memset(dk_rope, 0, (size_t)(Tk * p->dr) * es);
	for (int64_t h0 = 0; h0 < p->H; h0 += c.G) {
		const int64_t G = p->H - h0 < c.G ? p->H - h0 : c.G;

		mla_bwd_plan(&c, &b, h0, G);
		lcai_flash_bwd_pack_all(&b, c.jobs, nseq * G);
		lcai_flash_bwd_run(&b, c.tasks, nseq * G);
		for (int64_t g = 0; g < G; g++)
			mla_bwd_fold(&c, &b, h0 + g, g);
	}
	mla_unrotate(p, &f, &b, cu_k, nseq, dk_rope);
out:
	lcai_flash_bwd_free(&b);
	if (f_ready)
		lcai_flash_free(&f);
	mla_bwd_free(&c);
	return st;
}

/* ---- absorbed ---------------------------------------------------------- */

/*
 * The absorbed form's adjoint, for the shapes where the forward runs
 * absorbed (a few queries over a long context): no head is decompressed.
 * The forward is MQA over the latent cache, rows q = [q_lat ; rope(q_rope)]
 * against k = [ckv ; rope(k_rope)], values ckv, giving lat; o = w_uv lat.
 * Per head h (T: its query rows):
 *   dlat = dout w_uv[h],       dw_uv[h] = dout^T lat
 *   engine(q, k, v = ckv, o = lat, dout = dlat) -> dq_lat, dq_rope and the
 *     head's partial key-row and value gradients (both onto ckv)
 *   dq_nope = dq_lat w_uk[h]^T, dw_uk[h] = q_nope^T dq_lat
 * and dckv, dk_rope sum the heads' partials in head order. The latent
 * cache is packed once for every head. Memory beyond the gradients: lat
 * for every head ([Tq][H][dc]: the forward must finish before any output
 * is written) and, per group of heads, q_lat, dlat, dq_lat ([Tq][dc] each)
 * and the partials ([padded Tk][dc + dr + dc] each).
 */
struct mla_abs {
	const lca_params *p;
	const int64_t *cu_q, *cu_k;
	int64_t nseq, G, rows;
	void *lat, *lse, *lse_lo;       /* the forward's, every head */
	void *ql, *dlat, *dql;          /* [G][Tq][dc] */
	void *slot, *parts;             /* [rows][dkp + dvp], [G][rows][dkp + dvp] */
	int64_t *off;
	struct lcai_flash_bwd_pack *jobs;
	struct lcai_flash_bwd_task *tasks;
};

static void mla_abs_free(struct mla_abs *a)
{
	void *m[] = { a->lat, a->lse, a->lse_lo, a->ql, a->dlat, a->dql,
		a->slot, a->parts, a->off, a->jobs, a->tasks };

	for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
		free(m[i]);
}

/* Every buffer but the forward's, heads per group included. */
static lca_status mla_abs_alloc(struct mla_abs *a, const struct lcai_flash_bwd *b)
{
	const lca_params *p = a->p;
	const int64_t es = (int64_t)b->f->ops->esize, Tq = a->cu_q[a->nseq];
	int64_t q, s, per_head, nq, nslot, nparts, nj, nt;

	if (!(a->off = malloc((size_t)(a->nseq + 1) * sizeof *a->off)) ||
	    !lcai_flash_offsets(a->cu_k, a->nseq, a->off))
		return LCA_ERR_NOMEM;
	a->rows = a->off[a->nseq];
	if (!lcai_mul_n(&q, 4, 3, Tq, p->dc, es) ||
	    !lcai_mul_n(&s, 3, a->rows, b->dkp + b->dvp, es) || q > INT64_MAX - s)
		return LCA_ERR_NOMEM;
	per_head = q + s;
	a->G = per_head > 0 ? MLA_GROUP_BYTES / per_head : p->H;
	a->G = a->G < 1 ? 1 : a->G > p->H ? p->H : a->G;
	if (!lcai_mul_n(&nq, 4, a->G, Tq, p->dc, es) ||
	    (uint64_t)s > SIZE_MAX - 2 * MLA_ALIGN || !lcai_mul(s, a->G, &nparts) ||
	    (uint64_t)nparts > SIZE_MAX - 2 * MLA_ALIGN ||
	    !lcai_mul_n(&nj, 2, a->nseq, (int64_t)sizeof *a->jobs) ||
	    !lcai_mul_n(&nt, 3, a->nseq, a->G, (int64_t)sizeof *a->tasks))
		return LCA_ERR_NOMEM;
	nslot = (s + MLA_ALIGN) / MLA_ALIGN * MLA_ALIGN;
	nparts = (nparts + MLA_ALIGN) / MLA_ALIGN * MLA_ALIGN;
	a->ql = malloc((size_t)nq + 1);
	a->dlat = malloc((size_t)nq + 1);
	a->dql = malloc((size_t)nq + 1);
	a->slot = aligned_alloc(MLA_ALIGN, (size_t)nslot);
	a->parts = aligned_alloc(MLA_ALIGN, (size_t)nparts);
	a->jobs = malloc((size_t)nj + 1);
	a->tasks = malloc((size_t)nt + 1);
	if (!a->ql || !a->dlat || !a->dql || !a->slot || !a->parts || !a->jobs ||
	    !a->tasks)
		return LCA_ERR_NOMEM;
	return LCA_OK;
}

/* The latent cache [ckv ; rope(k_rope)] as keys and ckv as values, packed
 * once per sequence into the one slot every head reads. */
static void mla_abs_pack(struct mla_abs *a, const struct lcai_flash_bwd *b,
	const void *ckv, const void *k_rope)
{
	const size_t es = b->f->ops->esize;
	const int64_t dc = a->p->dc, dr = a->p->dr, rows = a->rows;

	for (int64_t n = 0; n < a->nseq; n++) {
		const int64_t k0 = a->cu_k[n];
		struct lcai_flash_bwd_pack *j = &a->jobs[n];

		memset(j, 0, sizeof *j);
		j->k.a = lcai_flash_at(ckv, es, k0 * dc);
		j->k.lda = dc;
		j->k.da = dc;
		j->k.b = lcai_flash_at(k_rope, es, k0 * dr);
		j->k.ldb = dr;
		j->k.db = dr;
		j->v = j->k.a;
		j->ldv = dc;
		j->tk = a->cu_k[n + 1] - k0;
		j->kr = lcai_flash_at_w(a->slot, es, a->off[n] * b->dkp);
		j->vr = lcai_flash_at_w(a->slot, es, rows * b->dkp + a->off[n] * b->dvp);
	}
	lcai_flash_bwd_pack_all(b, a->jobs, a->nseq);
}

/* Tasks of heads h0 .. h0+G-1: queries [ql ; q_rope] against the slot,
 * o = lat and dout = dlat, dq_lat into dql and dq_rope in place. */
static void mla_abs_tasks(struct mla_abs *a, const struct lcai_flash_bwd *b,
	int64_t h0, int64_t G, const void *q_rope, void *dq_rope)
{
	const size_t es = b->f->ops->esize;
	const int64_t H = a->p->H, dc = a->p->dc, dr = a->p->dr;
	const int64_t Tq = a->cu_q[a->nseq], rows = a->rows;
	const int64_t dkp = b->dkp, dvp = b->dvp;

	for (int64_t n = 0; n < a->nseq; n++)
		for (int64_t g = 0; g < G; g++) {
			const int64_t q0 = a->cu_q[n], h = h0 + g;
			const struct lcai_flash_bwd_pack *j = &a->jobs[n];
			struct lcai_flash_bwd_task *t = &a->tasks[n * G + g];
			void *part = lcai_flash_at_w(a->parts, es, g * rows * (dkp + dvp));

			memset(t, 0, sizeof *t);
			t->q.a = lcai_flash_at(a->ql, es, (g * Tq + q0) * dc);
			t->q.lda = dc;
			t->q.da = dc;
			t->q.b = lcai_flash_at(q_rope, es, (q0 * H + h) * dr);
			t->q.ldb = H * dr;
			t->q.db = dr;
			t->o = lcai_flash_at(a->lat, es, (q0 * H + h) * dc);
			t->ldo = H * dc;
			t->dout = lcai_flash_at(a->dlat, es, (g * Tq + q0) * dc);
			t->lddo = dc;
			t->lse = lcai_flash_at(a->lse, es, q0 * H + h);
			t->lse_lo = lcai_flash_at(a->lse_lo, es, q0 * H + h);
			t->ldlse = H;
			t->kr = j->kr;
			t->vr = j->vr;
			t->tq = a->cu_q[n + 1] - q0;
			t->tk = j->tk;
			t->dqa = lcai_flash_at_w(a->dql, es, (g * Tq + q0) * dc);
			t->lddqa = dc;
			t->dqb = lcai_flash_at_w(dq_rope, es, (q0 * H + h) * dr);
			t->lddqb = H * dr;
			t->dk = lcai_flash_at_w(part, es, a->off[n] * dkp);
			t->dv = lcai_flash_at_w(part, es, rows * dkp + a->off[n] * dvp);
		}
}

/* dckv and (rotated) dk_rope += the G heads' partials, in head order: each
 * key row is one thread's, so the sums do not depend on the team. */
static void mla_abs_fold(const struct mla_abs *a, const struct lcai_flash_bwd *b,
	int64_t G, void *dckv, void *dk_rope)
{
	const lca_params *p = a->p;
	const size_t es = b->f->ops->esize;
	const int64_t dc = p->dc, dr = p->dr, rows = a->rows;
	const int64_t dkp = b->dkp, dvp = b->dvp;

	#pragma omp parallel for num_threads(lcai_flash_team(p, a->nseq * 4)) schedule(dynamic)
	for (int64_t n = 0; n < a->nseq; n++) {
		const int64_t k0 = a->cu_k[n], tk = a->cu_k[n + 1] - k0;

		for (int64_t s = 0; s < tk; s++) {
			void *crow = lcai_flash_at_w(dckv, es, (k0 + s) * dc);
			void *rrow = lcai_flash_at_w(dk_rope, es, (k0 + s) * dr);

			for (int64_t g = 0; g < G; g++) {
				const void *part = lcai_flash_at(a->parts, es, g * rows * (dkp + dvp));
				const void *krow = lcai_flash_at(part, es, (a->off[n] + s) * dkp);

				add_row(es, crow, krow, dc);
				add_row(es, crow, lcai_flash_at(part, es,
					rows * dkp + (a->off[n] + s) * dvp), dc);
				add_row(es, rrow, lcai_flash_at(krow, es, dc), dr);
			}
		}
	}
}

/* Heads h0 .. h0+G-1, given the packed slot: every GEMM of the adjoint
 * around one run of the engine, then the fold. */
static void mla_abs_group(struct mla_abs *a, const struct lcai_flash_bwd *b,
	int64_t h0, int64_t G, const void *q_nope, const void *q_rope,
	const void *w_uk, const void *w_uv, const void *dout, void *dq_nope,
	void *dq_rope, void *dckv, void *dk_rope, void *dw_uk, void *dw_uv)
{
	const lca_params *p = a->p;
	const size_t es = b->f->ops->esize;
	const int64_t H = p->H, dn = p->dn, dc = p->dc, dv = p->dv;
	const int64_t Tq = a->cu_q[a->nseq];

	for (int64_t g = 0; g < G; g++) {
		const int64_t h = h0 + g;
		void *ql = lcai_flash_at_w(a->ql, es, g * Tq * dc);
		void *dlat = lcai_flash_at_w(a->dlat, es, g * Tq * dc);

		/* q_lat = q_nope w_uk[h], the forward's product */
		bwd_gemm(p->dtype, 0, 0, Tq, dc, dn, lcai_flash_at(q_nope, es, h * dn),
			H * dn, lcai_flash_at(w_uk, es, h * dn * dc), dc, 0.0, ql, dc);
		bwd_gemm(p->dtype, 0, 0, Tq, dc, dv, lcai_flash_at(dout, es, h * dv),
			H * dv, lcai_flash_at(w_uv, es, h * dv * dc), dc, 0.0, dlat, dc);
		bwd_gemm(p->dtype, 1, 0, dv, dc, Tq, lcai_flash_at(dout, es, h * dv),
			H * dv, lcai_flash_at(a->lat, es, h * dc), H * dc, 0.0,
			lcai_flash_at_w(dw_uv, es, h * dv * dc), dc);
	}
	mla_abs_tasks(a, b, h0, G, q_rope, dq_rope);
	lcai_flash_bwd_run(b, a->tasks, a->nseq * G);
	for (int64_t g = 0; g < G; g++) {
		const int64_t h = h0 + g;
		const void *dql = lcai_flash_at(a->dql, es, g * Tq * dc);

		bwd_gemm(p->dtype, 0, 1, Tq, dn, dc, dql, dc,
			lcai_flash_at(w_uk, es, h * dn * dc), dc, 0.0,
			lcai_flash_at_w(dq_nope, es, h * dn), H * dn);
		bwd_gemm(p->dtype, 1, 0, dn, dc, Tq, lcai_flash_at(q_nope, es, h * dn),
			H * dn, dql, dc, 0.0, lcai_flash_at_w(dw_uk, es, h * dn * dc), dc);
	}
	mla_abs_fold(a, b, G, dckv, dk_rope);
}

static lca_status mla_absorbed_bwd(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, const void *dout, void *dq_nope,
	void *dq_rope, void *dckv, void *dk_rope, void *dw_uk, void *dw_uv)
{
	const int64_t Tq = cu_q[nseq], Tk = cu_k[nseq];
	const size_t es = p->dtype == LCA_F32 ? sizeof(float) : sizeof(double);
	struct mla_abs a = { .p = p, .cu_q = cu_q, .cu_k = cu_k, .nseq = nseq };
	lca_params abs = *p;
	struct lcai_flash f;
	struct lcai_flash_bwd b = { 0 };
	int64_t nlat;
	int f_ready = 0;
	lca_status st;

	abs.algo = LCA_ALGO_ABSORBED;
	if (!lcai_mul_n(&nlat, 4, Tq, p->H, p->dc, (int64_t)es) ||
	    !(a.lat = malloc((size_t)nlat + 1)) ||
	    !(a.lse = malloc((size_t)(Tq * p->H) * es + 1)) ||
	    !(a.lse_lo = malloc((size_t)(Tq * p->H) * es + 1))) {
		mla_abs_free(&a);
		return lcai_fail(LCA_ERR_NOMEM, "cpu mla backward: no memory for the "
			"latent sums of %lld queries", (long long)Tq);
	}
	if ((st = lcai_cpu_mla_latent(&abs, cu_q, cu_k, nseq, q_nope, q_rope, ckv,
			k_rope, w_uk, a.lat, a.lse, a.lse_lo)) != LCA_OK) {
		mla_abs_free(&a);
		return st;
	}
	if ((st = mla_engines(p, cu_q, cu_k, nseq, p->dc, p->dc, &f, &b,
			&f_ready)) != LCA_OK)
		goto out;
	if (mla_abs_alloc(&a, &b) != LCA_OK) {
		st = lcai_fail(LCA_ERR_NOMEM, "cpu mla backward: no memory for the "
			"packed latent cache of %lld keys", (long long)Tk);
		goto out;
	}
	/* Every buffer exists: outputs from here on. */
	memset(dckv, 0, (size_t)(Tk * p->dc) * es);
	memset(dk_rope, 0, (size_t)(Tk * p->dr) * es);
	mla_abs_pack(&a, &b, ckv, k_rope);
	for (int64_t h0 = 0; h0 < p->H; h0 += a.G)
		mla_abs_group(&a, &b, h0, p->H - h0 < a.G ? p->H - h0 : a.G, q_nope,
			q_rope, w_uk, w_uv, dout, dq_nope, dq_rope, dckv, dk_rope, dw_uk,
			dw_uv);
	mla_unrotate(p, &f, &b, cu_k, nseq, dk_rope);
out:
	lcai_flash_bwd_free(&b);
	if (f_ready)
		lcai_flash_free(&f);
	mla_abs_free(&a);
	return st;
}

/* The form the forward runs for this call (AUTO: lcai_cpu_mla_algo). */
lca_status lcai_cpu_mla_bwd(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, const void *dout, void *dq_nope,
	void *dq_rope, void *dckv, void *dk_rope, void *dw_uk, void *dw_uv)
{
	if (lcai_cpu_mla_algo(p, cu_q, cu_k, nseq) == LCA_ALGO_ABSORBED)
		return mla_absorbed_bwd(p, cu_q, cu_k, nseq, q_nope, q_rope, ckv,
			k_rope, w_uk, w_uv, dout, dq_nope, dq_rope, dckv, dk_rope, dw_uk,
			dw_uv);
	return mla_naive_bwd(p, cu_q, cu_k, nseq, q_nope, q_rope, ckv, k_rope,
		w_uk, w_uv, dout, dq_nope, dq_rope, dckv, dk_rope, dw_uk, dw_uv);
}
