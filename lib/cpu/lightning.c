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
 *              are NN GEMMs on the block's K^T and V packed once, and the
 *              two terms of O are one product [scale diag(lambda^r) Q |
 *              scale Q K^T (.) D] [S0 ; V] written straight into o (rows
 *              H d apart). It goes by row tiles of 32 that stop at the
 *              diagonal, so the masked upper tiles (7/16 of a full b x b
 *              Q K^T and (.) V at b = 256) are never formed and the scores
 *              take one 32 x b tile of memory, not b x b.
 *   RECURRENT  the token loop, for decode-sized inputs.
 *
 * Decode-sized sequences (no longer than LT_SHORT tokens) of a call that
 * returns a state take neither path whatever the plan's algo or the
 * call's other sequences (a sequence's bits never depend on its batch):
 * each (sequence,
 * head) runs the recurrence token by token straight on its slot of state,
 * one fused pass per token (lib/cpu/state_step.c), with no workspace and
 * no copy (each decode step through a cache is such a call; before, the
 * blockwise form with b = 1 spent it in BLAS calls of size 1 and copies:
 * 46 us at f32, H = 8, dk = dv = 128, now about 6 us on AVX-512).
 *
 * Numerical trap avoided: every power of lambda used is lambda^m with
 * 0 <= m <= b, computed as exp(-slope m) <= 1. Nothing is divided by a
 * power of lambda (as prefix-sum formulations do), so no factor can
 * overflow however long the sequence or large the slope; large slopes just
 * underflow to 0, which is the right limit.
 *
 * A work item is a sequence and a group of its heads (see lt_group);
 * blocks of one head are sequential through S, and the heads of a group
 * advance block by block together, because their rows of a token share
 * pages. Each item reads its slots of state0 whole into scratch before it
 * starts and writes its slots of state when it ends, so state0 may alias
 * state. With items in parallel, BLAS must run on the calling thread:
 * lib/cpu/gemm.c cuts products into calls of at most 64^3, the size up to
 * which the pthreads OpenBLAS stays single-threaded (lib/cpu/gemm.h
 * explains the rule and the measurement behind it). With a single work
 * item and no thread cap the calls are left whole for a threaded BLAS to
 * spread.
 *
 * Float32, float64 and bfloat16 share one body: the second half of this
 * file is a template that includes itself once per instance, with FN()
 * naming it and GEMM the matching BLAS routine. `real` is the type the
 * instance computes in and `elem` the type of the call's tensors (state0
 * and state excepted: they are real), read through LD() (elem_rows.h).
 * The bf16 instance computes in float32 on bf16 tensors: K and V are
 * widened as a block packs them, Q a row tile at a time, and each row
 * tile of o is formed in float32 scratch, then rounded to bf16. So it
 * does the float32 instance's arithmetic on the same values and gives
 * its bits rounded once, without float32 copies of whole tensors (which
 * made a bf16 call 2x slower than float32 at T = 16384, H = 8, d = 128).
 */
#ifndef LT_TEMPLATE

#include "internal.h"
#include "bf16.h"
#include "gemm.h"
#include "prof.h"
#include "state_step.h"

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

/* Rows per tile of the intra-block product: tiles wholly above the
 * diagonal of Q K^T are never formed. Measured against 64 (3/8 of the
 * b x b work skipped instead of 7/16): 5-9% faster in float32 and float64;
 * 16 gains nothing more. */
#define LT_ROW_TILE 32

/* Most heads one work item runs in step. Measured (f32, H = 8, T = 8192,
 * one thread): G = 1, 2, 4, 8 ran in 1.09, 1.06, 1.00, 1.07 of the G = 4
 * time: sharing a token's pages pays up to 4 heads, while 8 heads' states
 * and packed V (192 KiB each) outgrow the L2 cache. */
#define LT_GROUP_MAX 4
/* Decode-sized calls (no sequence longer than this) take one head per
 * item: see DN_SHORT in deltanet.c (a group's workspace allocated per
 * decode step cost 4-7x the step once glibc served it by mmap). */
#define LT_SHORT 4
/* A decode-sized call takes a thread per this many bytes of state (see
 * DN_STATE_PER_THREAD in deltanet.c: waking a worker costs more than a
 * head's step). */
#define LT_STATE_PER_THREAD ((int64_t)4 << 20)

static int64_t lt_min(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* Threads asked for (lib/cpu/threads.c). */
static int64_t lt_threads(const lca_params *p)
{
	return lcai_cpu_threads(p);
}

/* Threads for `items` independent work items: never more than items. */
static int lt_team(const lca_params *p, int64_t items)
{
	int64_t nt = lt_threads(p);

	if (nt > items)
		nt = items;
	return nt < 1 ? 1 : (int)nt;
}

/*
 * Heads per work item: the largest divisor G of H up to LT_GROUP_MAX
 * that still gives every thread an item. Heads of one item run in step
 * (see lt_blockwise_item).
 */
static int64_t lt_group(const lca_params *p, int64_t nseq)
{
	int64_t nt = lt_threads(p), G;

	for (G = lt_min(p->H, LT_GROUP_MAX); G > 1; G--)
		if (p->H % G == 0 && nseq * (p->H / G) >= nt)
			return G;
	return 1;
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
	return p->dk <= INT_MAX - bmax && p->H <= INT_MAX / p->dk &&
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

/* ---- the three instances --------------------------------------------- */

#define LT_TEMPLATE
#define real float
#define elem float
#define ELEM_BF16 0
#define FN(name) name##_f32
#define GEMM_TILED lcai_cpu_gemm_f32
#define TRANSPOSE lcai_cpu_transpose_f32
#define STEP lcai_step_f32
#include "lightning.c"
#undef real
#undef elem
#undef LD
#undef ELEM_BF16
#undef FN
#undef GEMM_TILED
#undef TRANSPOSE
#undef STEP

#define real double
#define elem double
#define ELEM_BF16 0
#define FN(name) name##_f64
#define GEMM_TILED lcai_cpu_gemm_f64
#define TRANSPOSE lcai_cpu_transpose_f64
#define STEP lcai_step_f64
#include "lightning.c"
#undef real
#undef elem
#undef LD
#undef ELEM_BF16
#undef FN
#undef GEMM_TILED
#undef TRANSPOSE
#undef STEP

#define real float
#define elem uint16_t
#define ELEM_BF16 1
#define FN(name) name##_bf16
#define GEMM_TILED lcai_cpu_gemm_f32
#define TRANSPOSE lcai_cpu_transpose_bf16
#define STEP lcai_step_f32
#include "lightning.c"
#undef real
#undef elem
#undef LD
#undef ELEM_BF16
#undef FN
#undef GEMM_TILED
#undef TRANSPOSE
#undef STEP
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
	if (p->dtype == LCA_BF16)
		return lt_run_bf16(p, cu, nseq, q, k, v, slope, state0, o,
			state);
	return lcai_fail(LCA_ERR_INTERNAL, "cpu lightning: dtype %d reached "
		"the kernel", (int)p->dtype);
}

#else /* LT_TEMPLATE: the body, once per instance (real, elem) */

#include "elem_rows.h"

/* The call's tensors, typed. */
struct FN(lt_args) {
	const lca_params *p;
	const int64_t *cu;
	const elem *q, *k, *v, *slope;
	const real *state0;
	elem *o;
	real *state;
	int64_t G;              /* heads per work item */
	int64_t bmax;           /* longest block */
	int serial_blas;        /* keep every BLAS call on its thread */
	real *tok;              /* bf16: [threads][2 dk + 2 dv] a step's
	                         * q, k, v widened and its o (lt_step_head) */
};

/*
 * One thread's scratch. SV holds, per head of the item, the state S
 * [dk][dv] with the block's V [b][dv] right below it, so that
 * [scale diag(lambda^r) Q | scale Q K^T (.) D] times [S ; V] is a row
 * tile's whole output in one product.
 */
struct FN(lt_ws) {
	double *pw;     /* [bmax+1] lambda^m of the head at hand */
	real *pwr;      /* [bmax+1] the same, rounded to real */
	real *QP;       /* [LT_ROW_TILE][dk+bmax] row tile of [Q | P] */
	real *KT;       /* [dk][b] K^T, then K^T diag(lambda^(b-1-i)) */
	real *SV;       /* [G][dk+bmax][dv] */
	real *Qw;       /* bf16: [min(bmax, LT_ROW_TILE)][dk] a row tile of q */
	real *Ob;       /* bf16: [min(bmax, LT_ROW_TILE)][dv] rows of o */
	int64_t pf_t0, pf_b, pf_h;  /* the block the item packs next
	                             * (pf_b = 0: none), see lt_prefetch */
};

static size_t FN(lt_ws_bytes)(const lca_params *p, int64_t bmax, int64_t G)
{
	int64_t rows = lt_min(bmax, LT_ROW_TILE), tile, kt, sv;
	size_t part[7], b = 0;
	int i, np = ELEM_BF16 ? 7 : 5;

	if (!lcai_mul(rows, p->dk + bmax, &tile) ||
	    !lcai_mul(p->dk, bmax, &kt) ||
	    !lcai_mul(p->dk + bmax, p->dv, &sv) || !lcai_mul(sv, G, &sv))
		return 0;
	part[0] = lt_bytes(bmax + 1, sizeof(double));
	part[1] = lt_bytes(bmax + 1, sizeof(real));
	part[2] = lt_bytes(tile, sizeof(real));
	part[3] = lt_bytes(kt, sizeof(real));
	part[4] = lt_bytes(sv, sizeof(real));
	/* bf16's Qw and Ob (rows <= LT_ROW_TILE: no overflow) */
	part[5] = lt_bytes(rows * p->dk, sizeof(real));
	part[6] = lt_bytes(rows * p->dv, sizeof(real));
	for (i = 0; i < np; i++) {
		if (part[i] == 0 || part[i] > SIZE_MAX - b)
			return 0;
		b += part[i];
	}
	return b;
}

static void FN(lt_ws_carve)(struct FN(lt_ws) *ws, const lca_params *p,
	int64_t bmax, int64_t G, char *base)
{
	ws->pw = (double *)base;
	base += lt_bytes(bmax + 1, sizeof(double));
	ws->pwr = (real *)base;
	base += lt_bytes(bmax + 1, sizeof(real));
	ws->QP = (real *)base;
	base += lt_bytes(lt_min(bmax, LT_ROW_TILE) * (p->dk + bmax),
		sizeof(real));
	ws->KT = (real *)base;
	base += lt_bytes(p->dk * bmax, sizeof(real));
	ws->SV = (real *)base;
	ws->Qw = ws->Ob = NULL;
	if (ELEM_BF16) {
		base += lt_bytes((p->dk + bmax) * p->dv * G, sizeof(real));
		ws->Qw = (real *)base;
		base += lt_bytes(lt_min(bmax, LT_ROW_TILE) * p->dk,
			sizeof(real));
		ws->Ob = (real *)base;
	}
}

/* Head j of the item: its S, with room for a block's V below. */
static real *FN(lt_sv)(const struct FN(lt_args) *a, int64_t j,
	struct FN(lt_ws) *ws)
{
	return ws->SV + j * (a->p->dk + a->bmax) * a->p->dv;
}

/*
 * The state of (sequence n, head h) runs in scratch S: read whole from
 * state0[n][h] (or zeros) when the item starts and written to state[n][h]
 * when it ends. No other item touches that slot, which is what makes
 * state0 == state safe.
 */
static void FN(lt_open_state)(const struct FN(lt_args) *a, int64_t n,
	int64_t h, real *S)
{
	size_t len = (size_t)(a->p->dk * a->p->dv);

	if (a->state0)
		memcpy(S, a->state0 + (size_t)(n * a->p->H + h) * len,
			len * sizeof(*S));
	else
		memset(S, 0, len * sizeof(*S));
}

static void FN(lt_close_state)(const struct FN(lt_args) *a, int64_t n,
	int64_t h, const real *S)
{
	size_t len = (size_t)(a->p->dk * a->p->dv);

	if (a->state)
		memcpy(a->state + (size_t)(n * a->p->H + h) * len, S,
			len * sizeof(*S));
}

/* ---- recurrent form --------------------------------------------------- */

/*
 * Tokens of sequence n, head h: S = lambda S + k v^T and o = scale S^T q
 * in one sweep over S per token. lambda stays double: rounded to float it
 * would be off by up to 6e-8 relative, a bias the state compounds over its
 * ~1/slope tokens of memory (3e-3 for MiniMax's last-layer slopes ~2e-5);
 * in double each step rounds only S itself.
 */
static void FN(lt_recurrent_head)(const struct FN(lt_args) *a, int64_t n,
	int64_t h, real *S, struct FN(lt_ws) *ws)
{
	int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv, t, i, j;
	double lambda = exp(-(double)LD(a->slope[h]));
	real scale = (real)a->p->scale;

	for (t = a->cu[n]; t < a->cu[n + 1]; t++) {
		const elem *q = a->q + (t * H + h) * dk;
		const elem *k = a->k + (t * H + h) * dk;
		const elem *v = a->v + (t * H + h) * dv;
		elem *o = a->o + (t * H + h) * dv;
		real *ot = FN(el_orow)(o, ws->Ob);

		for (j = 0; j < dv; j++)
			ot[j] = 0;
		for (i = 0; i < dk; i++) {
			real *Si = S + i * dv, ki = LD(k[i]), qi = LD(q[i]);

			#pragma omp simd
			for (j = 0; j < dv; j++) {
				Si[j] = (real)(lambda * Si[j] + ki * LD(v[j]));
				ot[j] += Si[j] * qi;
			}
		}
		for (j = 0; j < dv; j++)
			ot[j] *= scale;
		FN(el_put)(o, dv, ot, 1, dv);
	}
}

/* ---- blockwise form --------------------------------------------------- */

/* lambda^m = exp(-slope m), m = 0 .. bmax, of head h into ws. */
static void FN(lt_head_powers)(const struct FN(lt_args) *a, int64_t h,
	struct FN(lt_ws) *ws)
{
	int64_t m;

	lt_powers(ws->pw, a->bmax, (double)LD(a->slope[h]));
	for (m = 0; m <= a->bmax; m++)
		ws->pwr[m] = (real)ws->pw[m];
}

/*
 * The block's K and V packed (and widened, bf16): K^T into KT (leading
 * dimension b) and V below S in SV.
 */
static void FN(lt_pack)(const struct FN(lt_args) *a, int64_t t0, int64_t b,
	int64_t h, real *SV, struct FN(lt_ws) *ws)
{
	int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv, r;
	real *V = SV + dk * dv;

	for (r = 0; r < b; r++)
		FN(el_load)(V + r * dv, a->v + ((t0 + r) * H + h) * dv, dv);
	TRANSPOSE(b, dk, a->k + (t0 * H + h) * dk, H * dk, ws->KT);
}

/*
 * Rows of the tensors asked for into the cache ahead of their use, while
 * a row tile's products run: part `part` of `parts` of the k and v rows
 * of the item's next block (ws->pf_*), and the q rows of the next row
 * tile of this block (t0 + r0 .. + rt). Rows of one head are H d elements
 * apart (a 4 KiB page each at H = 8, d = 128), too short a run for the
 * hardware's prefetcher: read one by one, each waited on memory.
 * Measured as for dn_prefetch (deltanet.c; AMD EPYC Zen 5, f32, T =
 * 16K): pack 13% -> 8-10% of the time at AVX-512, 7-8.5% -> 4.5-5.5% at
 * AVX2, while output's share grew (28-31% -> 30-36%): part of the wait
 * moved rather than went.
 */
static void FN(lt_prefetch)(const struct FN(lt_args) *a,
	const struct FN(lt_ws) *ws, int64_t part, int64_t parts, int64_t t0,
	int64_t rt, int64_t h)
{
	int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv, t;
	int64_t lo = ws->pf_b * part / parts, hi = ws->pf_b * (part + 1) / parts;

	for (t = ws->pf_t0 + lo; t < ws->pf_t0 + hi; t++) {
		FN(el_prefetch)(a->k + (t * H + ws->pf_h) * dk, dk);
		FN(el_prefetch)(a->v + (t * H + ws->pf_h) * dv, dv);
	}
	for (t = t0; t < t0 + rt; t++)
		FN(el_prefetch)(a->q + (t * H + h) * dk, dk);
}

/*
 * Rows r0 .. r0+rt-1 of the block's output, into o (bf16: q widened into
 * Qw, o formed in Ob, a tile at a time):
 *   O = [scale diag(lambda^(r+1)) Q | scale Q K^T (.) D] [S0 ; V].
 * D is lower triangular, so the tile needs key columns 0 .. r0+rt-1 only:
 * the tiles above the diagonal are never formed, and only one row tile of
 * scores exists at a time. 0-based r, i: D[r][i] = lambda^(r-i) = pw[r-i],
 * and the inter-block factor lambda^r of the 1-based formula is pw[r+1].
 */
static void FN(lt_row_tile)(const struct FN(lt_args) *a, int64_t t0,
	int64_t b, int64_t h, int64_t r0, int64_t rt, const real *SV,
	struct FN(lt_ws) *ws)
{
	int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv, ldq;
	int64_t ncol = r0 + rt, ld = dk + ncol, r, i;
	const real *Q = FN(el_tile)(a->q + ((t0 + r0) * H + h) * dk, H * dk,
		rt, dk, ws->Qw, &ldq);
	elem *O = a->o + ((t0 + r0) * H + h) * dv;
	const real *pw = ws->pwr;
	real scale = (real)a->p->scale;

	LCAI_PROF(LCAI_PH_LT_SCORES);
	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, rt, ncol, dk,
		a->p->scale, Q, ldq, ws->KT, b, 0.0, ws->QP + dk, ld);
	for (r = 0; r < rt; r++) {
		real *Qr = ws->QP + r * ld, *Pr = Qr + dk;
		real f = scale * pw[r0 + r + 1];

		#pragma omp simd
		for (i = 0; i < dk; i++)
			Qr[i] = f * Q[r * ldq + i];
		#pragma omp simd
		for (i = 0; i <= r0 + r; i++)
			Pr[i] *= pw[r0 + r - i];
		for (i = r0 + r + 1; i < ncol; i++)
			Pr[i] = 0;
	}
	LCAI_PROF(LCAI_PH_LT_OUTPUT);
	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, rt, dv, ld, 1.0,
		ws->QP, ld, SV, dv, 0.0, FN(el_orow)(O, ws->Ob),
		FN(el_ld)(H * dv, dv));
	FN(el_put)(O, H * dv, ws->Ob, rt, dv);
}

/*
 * One block of b tokens from t0, head h: o for its rows, and S (atop SV)
 * from S0 to S_b = lambda^b S0 + (K^T diag(lambda^(b-1-i))) V.
 */
static void FN(lt_block)(const struct FN(lt_args) *a, int64_t t0, int64_t b,
	int64_t h, real *SV, struct FN(lt_ws) *ws)
{
	int64_t dk = a->p->dk, dv = a->p->dv, r0, r, i;
	const real *pw = ws->pwr;

	LCAI_PROF(LCAI_PH_LT_PACK);
	FN(lt_pack)(a, t0, b, h, SV, ws);
	for (r0 = 0; r0 < b; r0 += LT_ROW_TILE) {
		int64_t next = r0 + LT_ROW_TILE;

		FN(lt_prefetch)(a, ws, r0 / LT_ROW_TILE,
			(b + LT_ROW_TILE - 1) / LT_ROW_TILE, t0 + next,
			next < b ? lt_min(LT_ROW_TILE, b - next) : 0, h);
		FN(lt_row_tile)(a, t0, b, h, r0, lt_min(LT_ROW_TILE, b - r0),
			SV, ws);
	}
	LCAI_PROF(LCAI_PH_LT_STATE);
	for (i = 0; i < dk; i++) {
		real *Ki = ws->KT + i * b;

		#pragma omp simd
		for (r = 0; r < b; r++)
			Ki[r] *= pw[b - 1 - r];
	}
	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, dk, dv, b, 1.0,
		ws->KT, b, SV + dk * dv, dv, ws->pw[b], SV, dv);
	LCAI_PROF_END();
}

/*
 * Heads h0 .. h0+G-1 of sequence n, block by block, every head of the
 * group on one block before the next block: the group's rows of a token
 * share its pages, so each page is walked into the TLB once per group
 * rather than once per head.
 */
static void FN(lt_blockwise_item)(const struct FN(lt_args) *a, int64_t n,
	int64_t h0, struct FN(lt_ws) *ws)
{
	int64_t t0, b, j, end = a->cu[n + 1];

	for (t0 = a->cu[n]; t0 < end; t0 += b) {
		b = lt_min(end - t0, a->p->block);
		for (j = 0; j < a->G; j++) {
			/* the next head's block, or the first head's next */
			ws->pf_h = h0 + (j + 1) % a->G;
			ws->pf_t0 = j + 1 < a->G ? t0 : t0 + b;
			ws->pf_b = j + 1 < a->G ? b :
				lt_min(end - t0 - b, a->p->block);
			FN(lt_head_powers)(a, h0 + j, ws);
			FN(lt_block)(a, t0, b, h0 + j, FN(lt_sv)(a, j, ws),
				ws);
		}
	}
}

/* ---- decode-sized calls ----------------------------------------------- */

/*
 * The tokens of sequence n, head h, straight on its slot of state: the
 * first token reads state0's slot (or the slot cleared), each token
 * writes state's slot in one fused pass (state_step.c). No scratch, so
 * no allocation per step, and no copy of the state in or out (bf16: a
 * token's q, k, v widened and its o, el_tok_alloc).
 */
static void FN(lt_step_head)(const struct FN(lt_args) *a, int64_t n,
	int64_t h)
{
	const int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv;
	const size_t len = (size_t)(dk * dv), slot = (size_t)(n * H + h) * len;
	const double lambda = exp(-(double)LD(a->slope[h]));
	const real *S0 = a->state0 ? a->state0 + slot : NULL;
	real *S = a->state + slot;
	real *qb, *kb, *vb, *ob;
	int64_t t;

	if (a->cu[n + 1] - a->cu[n] > LT_SHORT)
		return;  /* the driver's (lt_item) */
	FN(el_tok)(a->tok, lt_tid(), dk, dv, &qb, &kb, &vb, &ob);
	if (!S0) {
		memset(S, 0, len * sizeof(*S));
		S0 = S;
	}
	for (t = a->cu[n]; t < a->cu[n + 1]; t++, S0 = S) {
		elem *o = a->o + (t * H + h) * dv;
		real *ot = FN(el_orow)(o, ob);

		STEP()->lt(S0, S, dk, dv,
			FN(el_real)(a->q + (t * H + h) * dk, dk, qb),
			FN(el_real)(a->k + (t * H + h) * dk, dk, kb),
			FN(el_real)(a->v + (t * H + h) * dv, dv, vb), lambda,
			(real)a->p->scale, ot);
		FN(el_put)(o, dv, ot, 1, dv);
	}
	if (S0 != S) /* a sequence without tokens passes its state through */
		memcpy(S, S0, len * sizeof(*S));
}

/* Every (sequence, head) of a decode-sized call, on nt threads; the heads
 * are independent, so the split never changes the bits. */
static void FN(lt_steps)(const struct FN(lt_args) *a, int64_t nseq, int nt)
{
	const int64_t H = a->p->H, items = nseq * H;
	int64_t it;

	if (nt <= 1) {
		for (it = 0; it < items; it++)
			FN(lt_step_head)(a, it / H, it % H);
		return;
	}
	#pragma omp parallel for schedule(static) num_threads(nt)
	for (it = 0; it < items; it++)
		FN(lt_step_head)(a, it / H, it % H);
}

/* ---- driver ----------------------------------------------------------- */

/* Work item it: sequence it / groups, heads from (it % groups) G. */
static void FN(lt_item)(const struct FN(lt_args) *a, int64_t it,
	struct FN(lt_ws) *ws)
{
	int64_t groups = a->p->H / a->G, n = it / groups;
	int64_t h0 = it % groups * a->G, j;

	if (a->state && a->cu[n + 1] - a->cu[n] <= LT_SHORT)
		return;  /* lt_step_head's */
	for (j = 0; j < a->G; j++)
		FN(lt_open_state)(a, n, h0 + j, FN(lt_sv)(a, j, ws));
	if (a->p->algo == LCA_ALGO_RECURRENT)
		for (j = 0; j < a->G; j++)
			FN(lt_recurrent_head)(a, n, h0 + j,
				FN(lt_sv)(a, j, ws), ws);
	else
		FN(lt_blockwise_item)(a, n, h0, ws);
	for (j = 0; j < a->G; j++)
		FN(lt_close_state)(a, n, h0 + j, FN(lt_sv)(a, j, ws));
}

static lca_status FN(lt_run)(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *slope, const void *state0, void *o, void *state)
{
	struct FN(lt_args) a = { p, cu, q, k, v, slope, state0, o, state, 1,
		1, 1, NULL };
	int64_t items, it;
	int nt, short_call;
	size_t wsb;
	char *block;
	lca_status s;

	/* decode-sized: the longest sequence, not the block (a block of 4 may
	 * cut a long prefill) */
	short_call = lt_longest_block(cu, nseq, INT64_MAX) <= LT_SHORT;
	a.bmax = lt_longest_block(cu, nseq, p->block);
	a.G = short_call ? 1 : lt_group(p, nseq);
	items = nseq * (p->H / a.G);
	nt = lt_team(p, items);
	if (short_call) {
		int64_t per = LT_STATE_PER_THREAD / (p->dk * p->dv * (int64_t)sizeof(real));

		nt = (int)lt_min(nt, items / (per > 0 ? per : 1) + 1);
		if (state) {
			if ((s = FN(el_tok_alloc)(&a.tok, p->dk, p->dv, nt,
			    "cpu lightning")))
				return s;
			FN(lt_steps)(&a, nseq, nt);
			free(a.tok);
			return LCA_OK;
		}
	}
	/* BLAS may spread a call over the cores only when nothing else runs
	 * beside it and the caller set no thread cap. */
	a.serial_blas = nt > 1 || p->nthreads > 0;
	if (!lt_blas_fits(p, a.bmax))
		return lcai_fail(LCA_ERR_UNSUPPORTED, "cpu lightning: a size "
			"passed to BLAS exceeds INT_MAX");
	wsb = FN(lt_ws_bytes)(p, a.bmax, a.G);
	if (wsb == 0 || wsb > SIZE_MAX / (size_t)nt)
		return lcai_fail(LCA_ERR_NOMEM, "cpu lightning: workspace "
			"size overflows");
	if (state && (s = FN(el_tok_alloc)(&a.tok, p->dk, p->dv, 1,
	    "cpu lightning")))
		return s;
	block = aligned_alloc(LT_ALIGN, wsb * (size_t)nt);
	if (!block) {
		free(a.tok);
		return lcai_fail(LCA_ERR_NOMEM, "cpu lightning: cannot "
			"allocate %zu bytes of workspace", wsb * (size_t)nt);
	}

	/* With a state, the decode-sized sequences of a longer call take the
	 * fused steps too (after the allocations, before the rest): a
	 * sequence's bits never depend on the other sequences of its call,
	 * so one cache step of many sequences equals a step per sequence. */
	if (state)
		FN(lt_steps)(&a, nseq, 1);
	#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
	for (it = 0; it < items; it++) {
		struct FN(lt_ws) ws;

		FN(lt_ws_carve)(&ws, p, a.bmax, a.G,
			block + (size_t)lt_tid() * wsb);
		FN(lt_item)(&a, it, &ws);
	}
	free(block);
	free(a.tok);
	return LCA_OK;
}

#endif /* LT_TEMPLATE */
