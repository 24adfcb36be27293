/*
 * lightning_bwd.c - the backward of Lightning Attention on the CPU:
 * OpenMP + CBLAS, float32 and float64. The numbers are those of the
 * reference adjoint lib/ref/lightning_bwd.c (its comment derives them);
 * here the block's products are GEMMs.
 *
 * A block of b tokens (0-based local r, i), entered with state S0 and
 * left with S_b, G = dL/dS_b from the later blocks (and dstate), decay
 * mask D[r][i] = lambda^(r-i) for i <= r, else 0:
 *
 *   dQ  = scale [diag(lambda^(r+1)) dO S0^T + (dO V^T (.) D) K]
 *   dK  = scale (dO V^T (.) D)^T Q + diag(lambda^(b-1-i)) V G^T
 *   dV  = scale (Q K^T (.) D)^T dO + diag(lambda^(b-1-i)) K G
 *   dS0 = lambda^b G + scale (diag(lambda^(r+1)) Q)^T dO
 *
 * Two scans per (sequence, head) work item, nothing stored between them
 * (workspace O(block (dk + dv) + dk dv) per thread, independent of T):
 *   forward   S^T carried block to block as the forward pass carries S;
 *             dQ of each block is one product per row tile,
 *             [scale diag(lambda^(r+1)) dO | scale dO V^T (.) D] [S0^T ; K]
 *             (tiles stop at the diagonal, as in lightning.c);
 *   reverse   G carried from dstate back to dstate0; dK and dV of each
 *             block are one product per row tile of keys,
 *             [scale (V dO^T (.) D^T) | diag(lambda^(b-1-i)) V] [Q ; G^T]
 *             [scale (K Q^T (.) D^T) | diag(lambda^(b-1-i)) K] [dO ; G]
 *             whose tiles start at the diagonal (columns r >= i only).
 * The reverse scan forms dO V^T again rather than keep the forward's
 * (b^2 dv per block more work, against T b floats of memory per item).
 *
 * Every power of lambda is lambda^m = exp(-slope m) with 0 <= m <= b:
 * the mask is applied by indexing the table with r - i >= 0 only, so no
 * exponent is positive and nothing overflows (lightning.c's rule).
 *
 * The plan's algo does not change the computation: the recurrent form's
 * gradients are the same numbers, and the blockwise adjoint with blocks
 * of min(block, T) tokens serves both.
 *
 * Determinism: an item owns the rows of its (sequence, head) in dq, dk, dv
 * and its slot of dstate0; no sums cross items, and with a thread cap the
 * GEMMs are cut the same way whatever the team size (lib/cpu/gemm.h), so
 * the bits do not depend on the thread count.
 */
#ifndef LB_TEMPLATE

#include "internal.h"
#include "gemm.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define LB_ALIGN 64
/* Rows per tile of the triangular products (as LT_ROW_TILE). */
#define LB_TILE 32

static int64_t lb_min(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

static int lb_tid(void)
{
#ifdef _OPENMP
	return omp_get_thread_num();
#else
	return 0;
#endif
}

/* Longest block any sequence forms: min(B, longest sequence), >= 1. */
static int64_t lb_longest_block(const int64_t *cu, int64_t nseq, int64_t B)
{
	int64_t n, m = 1;

	for (n = 0; n < nseq; n++)
		if (cu[n + 1] - cu[n] > m)
			m = cu[n + 1] - cu[n];
	return m < B ? m : B;
}

/* *acc += n elements of esize bytes, rounded to LB_ALIGN; 0 on overflow. */
static int lb_add(size_t *acc, int64_t n, size_t esize)
{
	size_t b;

	if (n < 0 || (uint64_t)n > (SIZE_MAX - LB_ALIGN) / esize)
		return 0;
	b = ((size_t)n * esize + LB_ALIGN - 1) / LB_ALIGN * LB_ALIGN;
	if (b > SIZE_MAX - *acc)
		return 0;
	*acc += b;
	return 1;
}

static void *lb_take(char **cur, int64_t n, size_t esize)
{
	void *p = *cur;

	*cur += ((size_t)n * esize + LB_ALIGN - 1) / LB_ALIGN * LB_ALIGN;
	return p;
}

/* pw[m] = lambda^m = exp(-slope m), m = 0 .. bmax: each one exp of an
 * argument <= 0, as the forward forms them. */
static void lb_powers(double *pw, int64_t bmax, double slope)
{
	int64_t m;

	for (m = 0; m <= bmax; m++)
		pw[m] = exp(-slope * (double)m);
}

#define LB_TEMPLATE
#define real float
#define FN(name) name##_f32
#define GEMM_TILED lcai_cpu_gemm_f32
#define TRANSPOSE lcai_cpu_transpose_f32
#include "lightning_bwd.c"
#undef real
#undef FN
#undef GEMM_TILED
#undef TRANSPOSE

#define real double
#define FN(name) name##_f64
#define GEMM_TILED lcai_cpu_gemm_f64
#define TRANSPOSE lcai_cpu_transpose_f64
#include "lightning_bwd.c"
#undef real
#undef FN
#undef GEMM_TILED
#undef TRANSPOSE
#undef LB_TEMPLATE

lca_status lcai_cpu_lightning_bwd(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *slope, const void *state0, const void *dout,
	const void *dstate, void *dq, void *dk, void *dv, void *dstate0)
{
	if (p->dtype == LCA_F64)
		return lb_run_f64(p, cu, nseq, q, k, v, slope, state0, dout,
			dstate, dq, dk, dv, dstate0);
	if (p->dtype == LCA_F32)
		return lb_run_f32(p, cu, nseq, q, k, v, slope, state0, dout,
			dstate, dq, dk, dv, dstate0);
	return lcai_fail(LCA_ERR_INTERNAL, "cpu lightning backward: dtype %d "
		"reached the kernel", (int)p->dtype);
}

#else /* LB_TEMPLATE: the body, once per element type `real` */

struct FN(lb_args) {
	const lca_params *p;
	const int64_t *cu;
	const real *q, *k, *v, *slope, *state0, *dout, *dstate;
	real *dq, *dk, *dv, *dstate0;
	int64_t bmax;
	int serial_blas;
};

/* One thread's scratch. */
struct FN(lb_ws) {
	double *pw;     /* [bmax+1] lambda^m */
	real *pwr;      /* [bmax+1] the same in real */
	real *SK;       /* [dv+bmax][dk] S^T, the block's K below (forward) */
	real *VT;       /* [dv][b] V^T of the block (forward) */
	real *QG;       /* [bmax+dv][dk] the block's Q, G^T below (reverse) */
	real *OG;       /* [bmax+dk][dv] the block's dO, G below (reverse) */
	real *QT;       /* [dk][b] Q^T (reverse) */
	real *OT;       /* [dv][b] dO^T (reverse) */
	real *X;        /* [bmax][dv] scale lambda^(r+1) dO (reverse) */
	real *G;        /* [dk][dv] dL/dS carried back */
	real *Tl;       /* [LB_TILE][bmax+max(dk,dv)] row tile of a product */
};

static size_t FN(lb_ws_bytes)(const lca_params *p, int64_t bmax)
{
	int64_t dk = p->dk, dv = p->dv, mx = dk > dv ? dk : dv, x;
	size_t b = 0;

	if (!lb_add(&b, bmax + 1, sizeof(double)) ||
	    !lb_add(&b, bmax + 1, sizeof(real)))
		return 0;
	if (!lcai_mul(dv + bmax, dk, &x) || !lb_add(&b, x, sizeof(real)) ||
	    !lcai_mul(dv, bmax, &x) || !lb_add(&b, x, sizeof(real)) ||
	    !lcai_mul(bmax + dv, dk, &x) || !lb_add(&b, x, sizeof(real)) ||
	    !lcai_mul(bmax + dk, dv, &x) || !lb_add(&b, x, sizeof(real)) ||
	    !lcai_mul(dk, bmax, &x) || !lb_add(&b, x, sizeof(real)) ||
	    !lcai_mul(dv, bmax, &x) || !lb_add(&b, x, sizeof(real)) ||
	    !lcai_mul(bmax, dv, &x) || !lb_add(&b, x, sizeof(real)) ||
	    !lcai_mul(dk, dv, &x) || !lb_add(&b, x, sizeof(real)) ||
	    !lcai_mul(lb_min(bmax, LB_TILE), bmax + mx, &x) ||
	    !lb_add(&b, x, sizeof(real)))
		return 0;
	return b;
}

static void FN(lb_ws_carve)(struct FN(lb_ws) *ws, const lca_params *p,
	int64_t bmax, char *c)
{
	int64_t dk = p->dk, dv = p->dv, mx = dk > dv ? dk : dv;

	ws->pw = lb_take(&c, bmax + 1, sizeof(double));
	ws->pwr = lb_take(&c, bmax + 1, sizeof(real));
	ws->SK = lb_take(&c, (dv + bmax) * dk, sizeof(real));
	ws->VT = lb_take(&c, dv * bmax, sizeof(real));
	ws->QG = lb_take(&c, (bmax + dv) * dk, sizeof(real));
	ws->OG = lb_take(&c, (bmax + dk) * dv, sizeof(real));
	ws->QT = lb_take(&c, dk * bmax, sizeof(real));
	ws->OT = lb_take(&c, dv * bmax, sizeof(real));
	ws->X = lb_take(&c, bmax * dv, sizeof(real));
	ws->G = lb_take(&c, dk * dv, sizeof(real));
	ws->Tl = lb_take(&c, lb_min(bmax, LB_TILE) * (bmax + mx),
		sizeof(real));
}

/* Copy b rows of width d, ld apart, to a packed [b][d]. */
static void FN(lb_rows)(real *dst, const real *src, int64_t b, int64_t d,
	int64_t ld)
{
	int64_t r;

	for (r = 0; r < b; r++)
		memcpy(dst + r * d, src + r * ld, (size_t)d * sizeof(real));
}

/* ---- forward scan: dQ ------------------------------------------------- */

/*
 * dQ of the block at t0 (b tokens), S^T atop SK; then S^T advances to
 * S_b^T = lambda^b S0^T + V^T diag(lambda^(b-1-i)) K.
 */
static void FN(lb_block_dq)(const struct FN(lb_args) *a, int64_t t0,
	int64_t b, int64_t h, struct FN(lb_ws) *ws)
{
	int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv, r0, rt, r, i;
	const real *pw = ws->pwr;
	real scale = (real)a->p->scale, *K = ws->SK + dv * dk;

	FN(lb_rows)(K, a->k + (t0 * H + h) * dk, b, dk, H * dk);
	TRANSPOSE(b, dv, a->v + (t0 * H + h) * dv, H * dv, ws->VT);
	for (r0 = 0; r0 < b; r0 += LB_TILE) {
		int64_t ncol, ld;
		const real *dO = a->dout + ((t0 + r0) * H + h) * dv;

		rt = lb_min(LB_TILE, b - r0);
		ncol = r0 + rt;
		ld = dv + ncol;
		GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, rt, ncol,
			dv, a->p->scale, dO, H * dv, ws->VT, b, 0.0,
			ws->Tl + dv, ld);
		for (r = 0; r < rt; r++) {
			real *Ar = ws->Tl + r * ld, *Pr = Ar + dv;
			real f = scale * pw[r0 + r + 1];

			#pragma omp simd
			for (i = 0; i < dv; i++)
				Ar[i] = f * dO[r * H * dv + i];
			#pragma omp simd
			for (i = 0; i <= r0 + r; i++)
				Pr[i] *= pw[r0 + r - i];
			for (i = r0 + r + 1; i < ncol; i++)
				Pr[i] = 0;
		}
		GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, rt, dk,
			ld, 1.0, ws->Tl, ld, ws->SK, dk, 0.0,
			a->dq + ((t0 + r0) * H + h) * dk, H * dk);
	}
	for (r = 0; r < b; r++) {
		real f = pw[b - 1 - r];

		#pragma omp simd
		for (i = 0; i < dk; i++)
			K[r * dk + i] *= f;
	}
	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, dv, dk, b, 1.0,
		ws->VT, b, K, dk, ws->pw[b], ws->SK, dk);
}

/* ---- reverse scan: dK, dV, dS0 ---------------------------------------- */

/*
 * Rows i0 .. i0+rt-1 of dK (is_k) or dV of the block: the tile
 * [scale (Y Z^T (.) D^T) | diag(lambda^(b-1-i)) Y] times [Z ; M], with
 * (Y, Z^T, [Z ; M]) = (V, dO^T, [Q ; G^T]) for dK and (K, Q^T, [dO ; G])
 * for dV. Column c of the tile is row r = i0 + c of the block; entries
 * r < i are masked (zero), the others get lambda^(r-i).
 */
static void FN(lb_tile_kv)(const struct FN(lb_args) *a, int64_t t0,
	int64_t b, int64_t h, int64_t i0, int64_t rt, int is_k,
	struct FN(lb_ws) *ws)
{
	int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv;
	int64_t dy = is_k ? dv : dk, dout = is_k ? dk : dv;
	int64_t ncol = b - i0, ld = ncol + dy, i, c;
	const real *Y = (is_k ? a->v : a->k) + ((t0 + i0) * H + h) * dy;
	const real *ZT = (is_k ? ws->OT : ws->QT) + i0;
	const real *ZM = (is_k ? ws->QG : ws->OG) + i0 * dout;
	real *out = (is_k ? a->dk : a->dv) + ((t0 + i0) * H + h) * dout;
	const real *pw = ws->pwr;

	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, rt, ncol, dy,
		a->p->scale, Y, H * dy, ZT, b, 0.0, ws->Tl, ld);
	for (i = 0; i < rt; i++) {
		real *Tr = ws->Tl + i * ld, *Mr = Tr + ncol;
		real f = pw[b - 1 - i0 - i];

		for (c = 0; c < i; c++)
			Tr[c] = 0;
		#pragma omp simd
		for (c = i; c < ncol; c++)
			Tr[c] *= pw[c - i];
		#pragma omp simd
		for (c = 0; c < dy; c++)
			Mr[c] = f * Y[i * H * dy + c];
	}
	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, rt, dout, ld,
		1.0, ws->Tl, ld, ZM, dout, 0.0, out, H * dout);
}

/* dK, dV of the block at t0 through G = dL/dS_b; then G becomes dL/dS0. */
static void FN(lb_block_dkdv)(const struct FN(lb_args) *a, int64_t t0,
	int64_t b, int64_t h, struct FN(lb_ws) *ws)
{
	int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv, i0, r, i;
	const real *dO = a->dout + (t0 * H + h) * dv;
	real scale = (real)a->p->scale;

	FN(lb_rows)(ws->QG, a->q + (t0 * H + h) * dk, b, dk, H * dk);
	TRANSPOSE(dk, dv, ws->G, dv, ws->QG + b * dk);
	FN(lb_rows)(ws->OG, dO, b, dv, H * dv);
	memcpy(ws->OG + b * dv, ws->G, (size_t)(dk * dv) * sizeof(real));
	TRANSPOSE(b, dk, ws->QG, dk, ws->QT);
	TRANSPOSE(b, dv, ws->OG, dv, ws->OT);
	for (i0 = 0; i0 < b; i0 += LB_TILE) {
		int64_t rt = lb_min(LB_TILE, b - i0);

		FN(lb_tile_kv)(a, t0, b, h, i0, rt, 1, ws);
		FN(lb_tile_kv)(a, t0, b, h, i0, rt, 0, ws);
	}
	for (r = 0; r < b; r++) {
		real f = scale * ws->pwr[r + 1];

		#pragma omp simd
		for (i = 0; i < dv; i++)
			ws->X[r * dv + i] = f * ws->OG[r * dv + i];
	}
	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, dk, dv, b, 1.0,
		ws->QT, b, ws->X, dv, ws->pw[b], ws->G, dv);
}

/* ---- driver ----------------------------------------------------------- */

/*
 * Item (n, h): the forward scan from state0[n][h] (transposed), the
 * reverse scan from dstate[n][h]; dstate0[n][h] = G at the end.
 */
static void FN(lb_item)(const struct FN(lb_args) *a, int64_t n, int64_t h,
	struct FN(lb_ws) *ws)
{
	int64_t dk = a->p->dk, dv = a->p->dv, B = a->p->block, t0, b, m;
	int64_t beg = a->cu[n], end = a->cu[n + 1];
	size_t len = (size_t)(dk * dv), off = (size_t)(n * a->p->H + h) * len;

	lb_powers(ws->pw, a->bmax, (double)a->slope[h]);
	for (m = 0; m <= a->bmax; m++)
		ws->pwr[m] = (real)ws->pw[m];
	if (a->state0)
		TRANSPOSE(dk, dv, a->state0 + off, dv, ws->SK);
	else
		memset(ws->SK, 0, len * sizeof(real));
	for (t0 = beg; t0 < end; t0 += b) {
		b = lb_min(end - t0, B);
		FN(lb_block_dq)(a, t0, b, h, ws);
	}
	if (a->dstate)
		memcpy(ws->G, a->dstate + off, len * sizeof(real));
	else
		memset(ws->G, 0, len * sizeof(real));
	if (end > beg)
		for (t0 = beg + (end - beg - 1) / B * B; t0 >= beg; t0 -= B)
			FN(lb_block_dkdv)(a, t0, lb_min(end - t0, B), h, ws);
	if (a->dstate0)
		memcpy(a->dstate0 + off, ws->G, len * sizeof(real));
}

static lca_status FN(lb_run)(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *slope, const void *state0, const void *dout,
	const void *dstate, void *dq, void *dk, void *dv, void *dstate0)
{
	struct FN(lb_args) a = { p, cu, q, k, v, slope, state0, dout, dstate,
		dq, dk, dv, dstate0, 1, 1 };
	int64_t items = nseq * p->H, it, nt;
	size_t wsb;
	char *block;

	a.bmax = lb_longest_block(cu, nseq, p->block);
	if (p->dk > INT_MAX - a.bmax || p->dv > INT_MAX - a.bmax ||
	    p->H > INT_MAX / p->dk || p->H > INT_MAX / p->dv)
		return lcai_fail(LCA_ERR_UNSUPPORTED, "cpu lightning backward: "
			"a size passed to BLAS exceeds INT_MAX");
	nt = lcai_cpu_threads(p);
	if (nt > items)
		nt = items;
	if (nt < 1)
		nt = 1;
	a.serial_blas = nt > 1 || p->nthreads > 0;
	wsb = FN(lb_ws_bytes)(p, a.bmax);
	if (wsb == 0 || wsb > SIZE_MAX / (size_t)nt)
		return lcai_fail(LCA_ERR_NOMEM, "cpu lightning backward: "
			"workspace size overflows");
	block = aligned_alloc(LB_ALIGN, wsb * (size_t)nt);
	if (!block)
		return lcai_fail(LCA_ERR_NOMEM, "cpu lightning backward: cannot "
			"allocate %zu bytes of workspace", wsb * (size_t)nt);

	#pragma omp parallel for schedule(dynamic, 1) num_threads((int)nt)
	for (it = 0; it < items; it++) {
		struct FN(lb_ws) ws;

		FN(lb_ws_carve)(&ws, p, a.bmax, block + (size_t)lb_tid() * wsb);
		FN(lb_item)(&a, it / p->H, it % p->H, &ws);
	}
	free(block);
	return LCA_OK;
}

#endif /* LB_TEMPLATE */
