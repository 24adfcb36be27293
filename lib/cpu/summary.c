/*
 * summary.c - range summaries of the two linear mechanisms on the CPU
 * (context parallelism), computed by the forward kernels themselves
 * (lib/cpu/deltanet.c, lightning.c: chunked WY/UT and blockwise, BLAS)
 * rather than by a second implementation.
 *
 *   lightning  b is the final state of the range run from a zero state;
 *              a = exp(-slope T).
 *   deltanet   b likewise; the per-token decays exp(g) are scalars, so
 *              they leave the product:
 *                A = prod_t exp(g_t) (I - beta_t k_t k_t^T) = exp(sum g) M,
 *              M the final state of dk columns run from I with v = 0 and
 *              g = 0 (the map acts on each column of S alone), the total
 *              decay one exp of a sum.
 *
 * Whatever the plan's dtype the kernels run in double and the summary is
 * rounded once. A summary stands for a whole range, and in float32 the
 * strongly contracting product M (and any decay carried token by token,
 * DESIGN.md "Tolerance rule") lose accuracy that a float32 forward keeps
 * only because its state is dominated by recent tokens; the cost is that
 * of a float64 forward over the range.
 *
 * The range runs in pieces of about SUMMARY_PIECE tokens, the state
 * carried from piece to piece (state0 == state is allowed), so the
 * scratch (inputs in double, outputs nobody reads) stays O(piece) at any
 * T.
 */
#include "internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SUMMARY_PIECE 4096

/* Tokens per piece: a whole number of the kernel's tiles. */
static int64_t piece_len(int64_t tile, int64_t T)
{
	int64_t n = tile >= SUMMARY_PIECE ? tile : SUMMARY_PIECE / tile * tile;

	return n < T ? n : T;
}

static double *alloc_doubles(int64_t n)
{
	if (n < 1)
		n = 1;
	if ((uint64_t)n > SIZE_MAX / sizeof(double))
		return NULL;
	return malloc((size_t)n * sizeof(double));
}

/* d[0 .. n) = x[off .. off + n) of dtype t (f64 or f32). */
static void widen(lca_dtype t, const void *x, int64_t off, int64_t n, double *d)
{
	if (t == LCA_F64)
		memcpy(d, (const double *)x + off, (size_t)n * sizeof *d);
	else
		for (int64_t i = 0; i < n; i++)
			d[i] = ((const float *)x)[off + i];
}

static void narrow(lca_dtype t, const double *d, int64_t n, void *x)
{
	if (t == LCA_F64)
		memcpy(x, d, (size_t)n * sizeof *d);
	else
		for (int64_t i = 0; i < n; i++)
			((float *)x)[i] = (float)d[i];
}

lca_status lcai_cpu_lightning_summary(const lca_params *p, int64_t T,
	const void *k, const void *v, const void *slope, void *a, void *b)
{
	const int64_t H = p->H, dk = p->dk, dv = p->dv, P = piece_len(p->block, T);
	lca_params pd = *p;
	int64_t nk, nv, ns;
	double *kd = NULL, *vd = NULL, *od = NULL, *sd = NULL, *slopes = NULL;
	lca_status st = LCA_OK;

	pd.dtype = LCA_F64;
	if (!lcai_mul_n(&nk, 3, P, H, dk) || !lcai_mul_n(&nv, 3, P, H, dv) ||
	    !lcai_mul_n(&ns, 3, H, dk, dv) || !(kd = alloc_doubles(nk)) ||
	    !(vd = alloc_doubles(nv)) || !(od = alloc_doubles(nv)) ||
	    !(sd = alloc_doubles(ns)) || !(slopes = alloc_doubles(H))) {
		st = lcai_fail(LCA_ERR_NOMEM, "cpu lightning summary: no memory for %lld tokens",
			(long long)P);
		goto out;
	}
	widen(p->dtype, slope, 0, H, slopes);
	for (int64_t t0 = 0; t0 < T && st == LCA_OK; t0 += P) {
		const int64_t n = T - t0 < P ? T - t0 : P, cu[2] = { 0, n };

		widen(p->dtype, k, t0 * H * dk, n * H * dk, kd);
		widen(p->dtype, v, t0 * H * dv, n * H * dv, vd);
		/* q is not needed: the keys stand in for it */
		st = lcai_cpu_lightning(&pd, cu, 1, kd, kd, vd, slopes, t0 ? sd : NULL, od, sd);
	}
	if (st != LCA_OK)
		goto out;
	narrow(p->dtype, sd, ns, b);
	for (int64_t h = 0; h < H; h++)
		slopes[h] = exp(-slopes[h] * (double)T);
	narrow(p->dtype, slopes, H, a);
out:
	free(slopes);
	free(sd);
	free(od);
	free(vd);
	free(kd);
	return st;
}

/* Scratch of one deltanet summary, in double. */
struct dn_work {
	double *k, *v, *g, *beta, *zv, *zg, *o, *M, *B;
};

static void dn_work_free(struct dn_work *w)
{
	free(w->k), free(w->v), free(w->g), free(w->beta), free(w->zv);
	free(w->zg), free(w->o), free(w->M), free(w->B);
}

static lca_status dn_work_alloc(const lca_params *p, int64_t P, struct dn_work *w)
{
	const int64_t H = p->H, dk = p->dk, dv = p->dv, dw = dk > dv ? dk : dv;
	int64_t nk, nv, nz, no, ng, nm, nb;

	memset(w, 0, sizeof *w);
	if (!lcai_mul_n(&nk, 3, P, p->Hk, dk) || !lcai_mul_n(&nv, 3, P, H, dv) ||
	    !lcai_mul_n(&nz, 3, P, H, dk) || !lcai_mul_n(&no, 3, P, H, dw) ||
	    !lcai_mul(P, H, &ng) || !lcai_mul_n(&nm, 3, H, dk, dk) ||
	    !lcai_mul_n(&nb, 3, H, dk, dv) || !(w->k = alloc_doubles(nk)) ||
	    !(w->v = alloc_doubles(nv)) || !(w->g = alloc_doubles(ng)) ||
	    !(w->beta = alloc_doubles(ng)) || !(w->zv = calloc((size_t)nz, sizeof(double))) ||
	    !(w->zg = calloc((size_t)ng, sizeof(double))) || !(w->o = alloc_doubles(no)) ||
	    !(w->M = alloc_doubles(nm)) || !(w->B = alloc_doubles(nb))) {
		dn_work_free(w);
		return lcai_fail(LCA_ERR_NOMEM, "cpu deltanet summary: no memory for %lld tokens",
			(long long)P);
	}
	return LCA_OK;
}

lca_status lcai_cpu_deltanet_summary(const lca_params *p, int64_t T,
	const void *k, const void *v, const void *g, const void *beta,
	void *A, void *B)
{
	const int64_t H = p->H, Hk = p->Hk, dk = p->dk, dv = p->dv;
	const int64_t P = piece_len(p->chunk, T);
	lca_params pb = *p, pm;
	struct dn_work w;
	lca_status st;

	pb.dtype = LCA_F64;
	pm = pb;
	pm.dv = dk; /* M is a state of dk columns */
	if ((st = dn_work_alloc(p, P, &w)) != LCA_OK)
		return st;
	memset(w.M, 0, (size_t)(H * dk * dk) * sizeof *w.M);
	for (int64_t h = 0; h < H; h++)
		for (int64_t i = 0; i < dk; i++)
			w.M[(h * dk + i) * dk + i] = 1.0;
	for (int64_t t0 = 0; t0 < T && st == LCA_OK; t0 += P) {
		const int64_t n = T - t0 < P ? T - t0 : P, cu[2] = { 0, n };

		widen(p->dtype, k, t0 * Hk * dk, n * Hk * dk, w.k);
		widen(p->dtype, v, t0 * H * dv, n * H * dv, w.v);
		widen(p->dtype, g, t0 * H, n * H, w.g);
		widen(p->dtype, beta, t0 * H, n * H, w.beta);
		/* q is not needed: the keys stand in for it */
		st = lcai_cpu_deltanet(&pb, cu, 1, w.k, w.k, w.v, w.g, w.beta,
			t0 ? w.B : NULL, w.o, w.B);
		if (st == LCA_OK)
			st = lcai_cpu_deltanet(&pm, cu, 1, w.k, w.k, w.zv, w.zg, w.beta,
				w.M, w.o, w.M);
	}
	if (st == LCA_OK) {
		for (int64_t h = 0; h < H; h++) {
			double sum = 0, decay;

			for (int64_t t = 0; t < T; t++)
				sum += p->dtype == LCA_F64 ? ((const double *)g)[t * H + h] :
					(double)((const float *)g)[t * H + h];
			decay = exp(sum);
			for (int64_t i = 0; i < dk * dk; i++)
				w.M[h * dk * dk + i] *= decay;
		}
		narrow(p->dtype, w.M, H * dk * dk, A);
		narrow(p->dtype, w.B, H * dk * dv, B);
	}
	dn_work_free(&w);
	return st;
}
