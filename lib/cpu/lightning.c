/*
 * lightning.c - Lightning Attention (MiniMax-01, arXiv:2501.08313) on the
 * CPU: OpenMP + CBLAS, float32 and float64.
 *
 * Per token and head, lambda = exp(-slope_h) in (0, 1]:
 *	S = lambda S + k v^T;	o = scale S^T q		(S is [dk][dv])
 *
 * Two computations, chosen by p->algo, both checked against lib/ref:
 *
 *   CHUNKED    the blockwise form of Lightning Attention-2 (Qin et al.,
 *              arXiv:2401.04658, sec. 3, Alg. 1). A block of b tokens
 *              entered with the true state S0 (local positions r, i = 1..b):
 *                  O = scale [ diag(lambda^r) Q S0 + (Q K^T (.) D) V ]
 *                  S = lambda^b S0 + K^T diag(lambda^(b-i)) V
 *              D[r][i] = lambda^(r-i) for i <= r, else 0. The products
 *              are GEMMs reading q, k, v and writing o in place (rows H d
 *              apart); Q K^T and its product with V go by row tiles of 64
 *              that stop at the diagonal, so the masked upper tiles (3/8
 *              of that work at b = 256) are never formed and the scores
 *              take one 64 x b tile of memory, not b x b.
 *   RECURRENT  the token loop, for decode-sized inputs.
 *
 * Numerical trap avoided: every power of lambda used is lambda^m with
 * 0 <= m <= b, computed as exp(-slope m) <= 1. Nothing is divided by a
 * power of lambda (as prefix-sum formulations do), so no factor can
 * overflow however long the sequence or large the slope; large slopes just
 * underflow to 0, which is the right limit.
 *
 * Work items are (sequence, head) pairs, one per OpenMP thread at a time;
 * blocks of one pair are sequential through S. Each item runs its state in
 * place in its own slot of state (scratch when state is NULL), after
 * reading its slot of state0 whole, so state0 may alias state. With items
 * in parallel, BLAS must run on the calling thread: lib/cpu/gemm.c cuts
 * products into calls of at most 64^3, the size up to which the pthreads
 * OpenBLAS stays single-threaded (lib/cpu/gemm.h explains the rule and
 * the measurement behind it). With a single work item and no thread cap the
 * calls are left whole for a threaded BLAS to spread.
 *
 * Float32 and float64 share one body: the second half of this file is a
 * template that includes itself once per element type (real), with FN()
 * naming the instance and GEMM the matching BLAS routine.
 */
#ifndef LT_TEMPLATE

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

/* Workspace sub-arrays start on 64-byte boundaries (BLAS packs faster). */
#define LT_ALIGN 64

/* Largest m n k of one BLAS call made inside the parallel region: the
 * pthreads OpenBLAS runs GEMMs up to this size on the calling thread. */

/* Rows per tile of the intra-block product: tiles wholly above the
 * diagonal of Q K^T are never formed. */
#define LT_ROW_TILE 64

static int64_t lt_min(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* Threads for `items` independent work items: p->nthreads caps, 0 means
 * the OpenMP default; never more threads than items. */
static int lt_team(const lca_params *p, int64_t items)
{
	int64_t nt = 1;

#ifdef _OPENMP
	nt = p->nthreads > 0 ? p->nthreads : omp_get_max_threads();
#else
	(void)p;
#endif
	if (nt > items)
		nt = items;
	return nt < 1 ? 1 : (int)nt;
}

static int lt_tid(void)
{
#ifdef _OPENMP
	return omp_get_thread_num();
#else
	return 0;
#endif
}

/* Longest block any sequence forms: min(B, longest sequence), >= 1. */
static int64_t lt_longest_block(const int64_t *cu, int64_t nseq, int64_t B)
{
	int64_t n, m = 1;

	for (n = 0; n < nseq; n++)
		if (cu[n + 1] - cu[n] > m)
			m = cu[n + 1] - cu[n];
	return m < B ? m : B;
}

/* Bytes of n elements of esize, rounded up to LT_ALIGN; 0 on overflow. */
static size_t lt_bytes(int64_t n, size_t esize)
{
	if (n < 0 || (uint64_t)n > (SIZE_MAX - LT_ALIGN) / esize)
		return 0;
	return ((size_t)n * esize + LT_ALIGN - 1) / LT_ALIGN * LT_ALIGN;
}

/* BLAS takes int sizes and strides: every one we pass must fit. */
static int lt_blas_fits(const lca_params *p, int64_t bmax)
{
	return bmax <= INT_MAX && p->H <= INT_MAX / p->dk &&
		p->H <= INT_MAX / p->dv;
}

/* pw[m] = lambda^m = exp(-slope m), m = 0 .. bmax: one exp of an argument
 * <= 0 each, exact to rounding at any m (repeated multiplication would
 * carry m roundings). */
static void lt_powers(double *pw, int64_t bmax, double slope)
{
	int64_t m;

	for (m = 0; m <= bmax; m++)
		pw[m] = exp(-slope * (double)m);
}

/* ---- the two element-type instances ---------------------------------- */

#define LT_TEMPLATE
#define real float
#define FN(name) name##_f32
#define GEMM_TILED lcai_cpu_gemm_f32
#include "lightning.c"
#undef real
#undef FN
#undef GEMM_TILED

#define real double
#define FN(name) name##_f64
#define GEMM_TILED lcai_cpu_gemm_f64
#include "lightning.c"
#undef real
#undef FN
#undef GEMM_TILED
#undef LT_TEMPLATE

lca_status lcai_cpu_lightning(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *slope, const void *state0, void *o, void *state)
{
	if (p->dtype == LCA_F64)
		return lt_run_f64(p, cu, nseq, q, k, v, slope, state0, o,
			state);
	if (p->dtype == LCA_F32)
		return lt_run_f32(p, cu, nseq, q, k, v, slope, state0, o,
			state);
	return lcai_fail(LCA_ERR_INTERNAL, "cpu lightning: dtype %d reached "
		"the kernel", (int)p->dtype);
}

#else /* LT_TEMPLATE: the body, once per element type `real` */

/* The call's tensors, typed. */
struct FN(lt_args) {
	const lca_params *p;
	const int64_t *cu;
	const real *q, *k, *v, *slope, *state0;
	real *o, *state;
	int serial_blas;        /* keep every BLAS call on its thread */
};

/* One thread's scratch; bmax = longest block. */
struct FN(lt_ws) {
	double *pw;     /* [bmax+1] lambda^m of the item's head */
	real *pwr;      /* [bmax+1] the same, rounded to real */
	real *S;        /* [dk][dv] carried state (or the output slot) */
	real *P;        /* [LT_ROW_TILE][bmax] row tile of scale Q K^T (.) D */
	real *Kd;       /* [bmax][dk] diag(lambda^(b-i)) K */
};

static size_t FN(lt_ws_bytes)(const lca_params *p, int64_t bmax)
{
	int64_t tile, state, rows;
	size_t part[5], b = 0;
	int i;

	if (!lcai_mul(lt_min(bmax, LT_ROW_TILE), bmax, &tile) ||
	    !lcai_mul(p->dk, p->dv, &state) || !lcai_mul(bmax, p->dk, &rows))
		return 0;
	part[0] = lt_bytes(bmax + 1, sizeof(double));
	part[1] = lt_bytes(bmax + 1, sizeof(real));
	part[2] = lt_bytes(state, sizeof(real));
	part[3] = lt_bytes(tile, sizeof(real));
	part[4] = lt_bytes(rows, sizeof(real));
	for (i = 0; i < 5; i++) {
		if (part[i] == 0 || part[i] > SIZE_MAX - b)
			return 0;
		b += part[i];
	}
	return b;
}

static void FN(lt_ws_carve)(struct FN(lt_ws) *ws, const lca_params *p,
	int64_t bmax, char *base)
{
	ws->pw = (double *)base;
	base += lt_bytes(bmax + 1, sizeof(double));
	ws->pwr = (real *)base;
	base += lt_bytes(bmax + 1, sizeof(real));
	ws->S = (real *)base;
	base += lt_bytes(p->dk * p->dv, sizeof(real));
	ws->P = (real *)base;
	base += lt_bytes(lt_min(bmax, LT_ROW_TILE) * bmax, sizeof(real));
	ws->Kd = (real *)base;
}

/*
 * Where item (n, h) keeps its state while it runs: in the output slot
 * state[n][h] itself when there is one (nothing to copy back), else in
 * scratch; filled first from state0[n][h], or zeros. The slot is read whole
 * before any update and no other item touches it, which is what makes
 * state0 == state safe.
 */
static real *FN(lt_open_state)(const struct FN(lt_args) *a, int64_t n,
	int64_t h, real *scratch)
{
	size_t len = (size_t)(a->p->dk * a->p->dv);
	size_t off = (size_t)(n * a->p->H + h) * len;
	real *S = a->state ? a->state + off : scratch;

	if (!a->state0)
		memset(S, 0, len * sizeof(*S));
	else if (a->state0 + off != S)
		memmove(S, a->state0 + off, len * sizeof(*S));
	return S;
}

/* ---- recurrent form --------------------------------------------------- */

/*
 * Tokens of sequence n, head h: S = lambda S + k v^T and o = scale S^T q
 * in one sweep over S per token. lambda stays double: rounded to float it
 * would be off by up to 6e-8 relative, a bias the state compounds over its
 * ~1/slope tokens of memory (3e-3 for MiniMax's last-layer slopes ~2e-5);
 * in double each step rounds only S itself.
 */
static void FN(lt_recurrent_item)(const struct FN(lt_args) *a, int64_t n,
	int64_t h, struct FN(lt_ws) *ws)
{
	int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv, t, i, j;
	double lambda = exp(-(double)a->slope[h]);
	real scale = (real)a->p->scale;
	real *S = FN(lt_open_state)(a, n, h, ws->S);

	for (t = a->cu[n]; t < a->cu[n + 1]; t++) {
		const real *q = a->q + (t * H + h) * dk;
		const real *k = a->k + (t * H + h) * dk;
		const real *v = a->v + (t * H + h) * dv;
		real *o = a->o + (t * H + h) * dv;

		for (j = 0; j < dv; j++)
			o[j] = 0;
		for (i = 0; i < dk; i++) {
			real *Si = S + i * dv;

			#pragma omp simd
			for (j = 0; j < dv; j++) {
				Si[j] = (real)(lambda * Si[j] + k[i] * v[j]);
				o[j] += Si[j] * q[i];
			}
		}
		for (j = 0; j < dv; j++)
			o[j] *= scale;
	}
}

/* ---- blockwise form --------------------------------------------------- */

/*
 * O[r0 .. r0+rt-1] += (scale Q K^T (.) D) V for one row tile of the block.
 * D is lower triangular, so the tile needs key columns 0 .. r0+rt-1 only:
 * the tiles above the diagonal are never formed, and only one row tile of
 * scores exists at a time. 0-based r, i: D[r][i] = lambda^(r-i) = pw[r-i].
 */
static void FN(lt_intra_tile)(const struct FN(lt_args) *a, const real *Q,
	const real *K, const real *V, real *O, int64_t r0, int64_t rt,
	struct FN(lt_ws) *ws)
{
	int64_t ldq = a->p->H * a->p->dk, ldv = a->p->H * a->p->dv;
	int64_t ncol = r0 + rt, r, i;
	const real *pw = ws->pwr;

	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasTrans, rt, ncol,
		a->p->dk, a->p->scale, Q + r0 * ldq, ldq, K, ldq, 0.0, ws->P,
		ncol);
	for (r = 0; r < rt; r++) {
		real *Pr = ws->P + r * ncol;

		#pragma omp simd
		for (i = 0; i <= r0 + r; i++)
			Pr[i] *= pw[r0 + r - i];
		for (i = r0 + r + 1; i < ncol; i++)
			Pr[i] = 0;
	}
	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, rt, a->p->dv,
		ncol, 1.0, ws->P, ncol, V, ldv, 1.0, O + r0 * ldv, ldv);
}

/*
 * One block of b tokens from t0, head h; ws->S goes from S0 to S_b.
 * 0-based rows here, so lambda^r of the 1-based formula is pw[r+1].
 */
static void FN(lt_block)(const struct FN(lt_args) *a, int64_t t0, int64_t b,
	int64_t h, struct FN(lt_ws) *ws)
{
	int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv, r0, r, i;
	int64_t ldq = H * dk, ldv = H * dv;
	const real *Q = a->q + (t0 * H + h) * dk, *K = a->k + (t0 * H + h) * dk;
	const real *V = a->v + (t0 * H + h) * dv;
	real *O = a->o + (t0 * H + h) * dv;
	const real *pw = ws->pwr;

	/* Inter-block: O = scale diag(lambda^r) Q S0, then the intra term. */
	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, b, dv, dk,
		a->p->scale, Q, ldq, ws->S, dv, 0.0, O, ldv);
	for (r = 0; r < b; r++) {
		#pragma omp simd
		for (i = 0; i < dv; i++)
			O[r * ldv + i] *= pw[r + 1];
	}
	for (r0 = 0; r0 < b; r0 += LT_ROW_TILE)
		FN(lt_intra_tile)(a, Q, K, V, O, r0,
			lt_min(LT_ROW_TILE, b - r0), ws);
	/* S = lambda^b S0 + (diag(lambda^(b-i)) K)^T V. */
	for (r = 0; r < b; r++) {
		#pragma omp simd
		for (i = 0; i < dk; i++)
			ws->Kd[r * dk + i] = pw[b - 1 - r] * K[r * ldq + i];
	}
	GEMM_TILED(a->serial_blas, CblasTrans, CblasNoTrans, dk, dv, b, 1.0,
		ws->Kd, dk, V, ldv, ws->pw[b], ws->S, dv);
}

static void FN(lt_blockwise_item)(const struct FN(lt_args) *a, int64_t n,
	int64_t h, int64_t bmax, struct FN(lt_ws) *ws)
{
	int64_t t0, b, end = a->cu[n + 1], m;

	lt_powers(ws->pw, bmax, (double)a->slope[h]);
	for (m = 0; m <= bmax; m++)
		ws->pwr[m] = (real)ws->pw[m];
	ws->S = FN(lt_open_state)(a, n, h, ws->S);
	for (t0 = a->cu[n]; t0 < end; t0 += b) {
		b = lt_min(end - t0, a->p->block);
		FN(lt_block)(a, t0, b, h, ws);
	}
}

/* ---- driver ----------------------------------------------------------- */

static lca_status FN(lt_run)(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *slope, const void *state0, void *o, void *state)
{
	struct FN(lt_args) a = { p, cu, q, k, v, slope, state0, o, state, 1 };
	int64_t items = nseq * p->H, it;
	int64_t bmax = lt_longest_block(cu, nseq, p->block);
	int nt = lt_team(p, items);
	size_t wsb;
	char *block;

	/* BLAS may spread a call over the cores only when nothing else runs
	 * beside it and the caller set no thread cap. */
	a.serial_blas = nt > 1 || p->nthreads > 0;
	if (!lt_blas_fits(p, bmax))
		return lcai_fail(LCA_ERR_UNSUPPORTED, "cpu lightning: a size "
			"passed to BLAS exceeds INT_MAX");
	wsb = FN(lt_ws_bytes)(p, bmax);
	if (wsb == 0 || wsb > SIZE_MAX / (size_t)nt)
		return lcai_fail(LCA_ERR_NOMEM, "cpu lightning: workspace "
			"size overflows");
	block = aligned_alloc(LT_ALIGN, wsb * (size_t)nt);
	if (!block)
		return lcai_fail(LCA_ERR_NOMEM, "cpu lightning: cannot "
			"allocate %zu bytes of workspace", wsb * (size_t)nt);

	#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
	for (it = 0; it < items; it++) {
		struct FN(lt_ws) ws;

		FN(lt_ws_carve)(&ws, p, bmax, block + (size_t)lt_tid() * wsb);
		if (p->algo == LCA_ALGO_RECURRENT)
			FN(lt_recurrent_item)(&a, it / p->H, it % p->H, &ws);
		else
			FN(lt_blockwise_item)(&a, it / p->H, it % p->H, bmax,
				&ws);
	}
	free(block);
	return LCA_OK;
}

#endif /* LT_TEMPLATE */
