/*
 * deltanet.c - Gated DeltaNet (Qwen3-Next) on the CPU: OpenMP + CBLAS,
 * float32 and float64.
 *
 * Two computations, chosen by p->algo, both checked against lib/ref:
 *
 *   CHUNKED    the WY/UT chunk form derived in lib/ref/deltanet.c (Yang et
 *              al. 2024, "Parallelizing Linear Transformers with the Delta
 *              Rule", sec. 3.2-3.3; gate as in Gated Delta Networks sec.
 *              3.3). Per chunk of C tokens entered with state S0:
 *                  (I + A) [W | U~] = [diag(beta gamma) K | diag(beta) V]
 *                  U   = U~ - W S0
 *                  O   = diag(gamma) Q S0 + (Q K^T (.) M) U
 *                  S_C = gamma_C S0 + K^T diag(gamma_C / gamma) U
 *              with A[r][i] = beta_r (gamma_r/gamma_i) (k_r . k_i), i < r,
 *              M[r][i] = gamma_r/gamma_i for i <= r. Every product is a
 *              plain NN GEMM (K^T is formed once per chunk), and the two
 *              terms of O are one product [diag(gamma) Q | Q K^T (.) M]
 *              [S0 ; U] written straight into o.
 *   RECURRENT  the token loop S = e^g S; u = beta (v - S^T k); S += k u^T;
 *              o = S^T q, for decode-sized inputs.
 *
 * Decode-sized sequences (no longer than DN_SHORT tokens) of a call that
 * returns a state take neither path whatever the plan's algo or the
 * call's other sequences: each (sequence,
 * head) runs the recurrence token by token straight on its slot of state,
 * one fused pass per token (lib/cpu/state_step.c), with no workspace and
 * no copy (each decode step through a cache is such a call). Before, a
 * cache step went through the chunked form with C = 1: 73% of it in BLAS
 * calls of size 1 and 12% in copying the state in and out (perf, f32,
 * H = 8, dk = dv = 128: 70 us, now about 9 us on AVX-512).
 *
 * An OpenMP work item is a sequence and a group of its value heads (see
 * dn_group): the chunks of one head depend on each other through S,
 * different heads never do. The heads of a group advance chunk by chunk
 * together, because their rows of a token share pages. Each item reads its
 * slots of state0 whole into scratch before it starts and writes its slots
 * of state when it ends, so state0 may alias state.
 *
 * BLAS and threads: the BLAS calls run inside the OpenMP region, one item
 * per thread, so BLAS must stay on the calling thread. Nesting-aware BLAS
 * builds (OpenBLAS-OpenMP, MKL, BLIS) do that by themselves; the pthreads
 * OpenBLAS that Debian installs by default does not notice the OpenMP
 * region and spreads each call over its own thread pool, which on the 2-core
 * development machine made lightning 5x slower. It does, however, run a
 * GEMM single-threaded when m n k <= 65536 * GEMM_MULTITHREAD_THRESHOLD
 * (= 64^3 by default; interface/gemm.c of 0.3.21), so the GEMMs of
 * lib/cpu/gemm.c cut every product into calls of at most 64^3, which costs
 * a nesting-aware BLAS only the extra calls (64^3 calls run at full
 * single-core speed; measured: 5x faster than whole calls there). syrk
 * and trsm have no such size rule, so the chunk uses GEMMs only: the Gram
 * matrix by row tiles up to the diagonal and the triangular solve as an
 * explicit (I + A)^{-1} times the right-hand side. With a single work item
 * and no thread cap the calls are left whole, so a threaded BLAS can use
 * the cores the items cannot.
 *
 * Float32, float64 and bfloat16 share one body: the second half of this
 * file is a template that includes itself once per instance, with FN()
 * naming it and the BLAS routines picked to match. `real` is the type
 * the instance computes in and `elem` the type of the call's tensors
 * (state0 and state excepted: they are real), read through LD()
 * (elem_rows.h). The bf16 instance computes in float32 on bf16 tensors:
 * each value is widened where the packing of a chunk or token reads it
 * (exact: a bf16 is the high half of a float) and each row tile of o is
 * formed in float32 scratch, then rounded to bf16. So it does the float32
 * instance's arithmetic on the same values and gives its bits rounded
 * once, without float32 copies of whole tensors (which made a bf16 call
 * 1.8x slower than float32: page faults and conversion passes over ~270
 * MB at T = 16384, H = 8, d = 128).
 */
#ifndef DN_TEMPLATE

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

/* Added under the square root of the L2 norm, as in lib/ref. */
#define DN_L2_EPS 1e-6

/* Workspace sub-arrays start on 64-byte boundaries (BLAS packs faster). */
#define DN_ALIGN 64

/* Rows of the UT inverse are padded to a multiple of this many elements,
 * a vector width or more for both element types; dn_unit_lower_inverse
 * is written for exactly 8. */
#define DN_PAD 8

/* Rows per tile of the chunk's triangular products (K K^T, Tm R, Q K^T
 * and its product with U): the work right of the diagonal tile is
 * skipped, 3/8 of those C x C products at C = 64. Measured: 16 is 6-8%
 * faster than whole products, 3-4% faster than 32, and 8 gains nothing. */
#define DN_ROW_TILE 16

/* Most value heads one work item runs in step. Measured (f32, H = 8,
 * T = 8192, one thread): G = 1, 2, 4, 8 ran in 1.12, 1.04, 1.00, 1.00 of
 * the G = 4 time: sharing a token's pages pays up to 4 heads, beyond which
 * the heads' states no longer stay in the L2 cache. */
#define DN_GROUP_MAX 4
/* Decode-sized calls (no sequence longer than this) take one head per
 * item: grouping buys nothing for a token or two, and the workspace of a
 * group (G states with a chunk below each, 0.5 MiB at H 8, d 128) made
 * every decode step allocate and fault in fresh pages once glibc served
 * it by mmap: 4-7x the step's time in a long-running process (lcattn
 * bench --phase decode after the softmax rows). */
#define DN_SHORT 4
/* A decode-sized call takes a thread per this many bytes of state it
 * sweeps: one head's step is about a microsecond (lib/cpu/state_step.c),
 * and waking a sleeping worker costs more than that, up to a scheduler
 * time slice (8 ms measured) when the other core is busy. Measured (f32,
 * dk = dv = 128, 2 ms of other work between steps, 2 shared cores): a
 * second thread cut the fastest step from 47 to 28 us at 2 MiB and from
 * 210 to 129 us at 8 MiB, but the median step grew at every size (to 0.2
 * ms at 2 MiB, 0.64 ms at 8 MiB) while the other core was busy; back to
 * back, with the worker still spinning, it paid from 0.25 MiB. 4 MiB is a
 * step of about 70 us alone. */
#define DN_STATE_PER_THREAD ((int64_t)4 << 20)

static int64_t dn_min(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* Threads asked for (lib/cpu/threads.c). */
static int64_t dn_threads(const lca_params *p)
{
	return lcai_cpu_threads(p);
}

/* Threads for `items` independent work items: never more than items. */
static int dn_team(const lca_params *p, int64_t items)
{
	int64_t nt = dn_threads(p);

	if (nt > items)
		nt = items;
	return nt < 1 ? 1 : (int)nt;
}

/*
 * Value heads per work item: the largest divisor G of H up to
 * DN_GROUP_MAX that still gives every thread an item. Heads of one item
 * run in step (see dn_chunked_item).
 */
static int64_t dn_group(const lca_params *p, int64_t nseq)
{
	int64_t nt = dn_threads(p), G;

	for (G = dn_min(p->H, DN_GROUP_MAX); G > 1; G--)
		if (p->H % G == 0 && nseq * (p->H / G) >= nt)
			return G;
	return 1;
}

/* n rounded up to a multiple of DN_PAD (n <= chunk, far from overflow). */
static int64_t dn_pad(int64_t n)
{
	return (n + DN_PAD - 1) / DN_PAD * DN_PAD;
}

static int dn_tid(void)
{
#ifdef _OPENMP
	return omp_get_thread_num();
#else
	return 0;
#endif
}

/* Longest sequence in cu: bounds the chunk workspace for huge p->chunk. */
static int64_t dn_max_len(const int64_t *cu, int64_t nseq)
{
	int64_t n, m = 0;

	for (n = 0; n < nseq; n++)
		if (cu[n + 1] - cu[n] > m)
			m = cu[n + 1] - cu[n];
	return m;
}

/* Round a byte count up to DN_ALIGN; 0 on overflow. */
static size_t dn_round(size_t bytes)
{
	if (bytes > SIZE_MAX - DN_ALIGN)
		return 0;
	return (bytes + DN_ALIGN - 1) / DN_ALIGN * DN_ALIGN;
}

/* *acc += n elements of esize bytes, aligned; 0 on overflow. */
static int dn_add(size_t *acc, int64_t n, size_t esize)
{
	size_t b;

	if (n < 0 || (uint64_t)n > SIZE_MAX / esize)
		return 0;
	b = dn_round((size_t)n * esize);
	if (b == 0 && n > 0)
		return 0;
	if (b > SIZE_MAX - *acc)
		return 0;
	*acc += b;
	return 1;
}

/* Carve n elements of esize bytes off *cur (the layout of dn_add). */
static void *dn_take(char **cur, int64_t n, size_t esize)
{
	void *p = *cur;

	*cur += dn_round((size_t)n * esize);
	return p;
}

/* BLAS takes int sizes and strides: every one we pass must fit. */
static int dn_blas_fits(const lca_params *p, int64_t cap)
{
	int64_t lim = INT_MAX;

	return p->dk + p->dv <= lim && p->dk <= lim - cap &&
		p->H <= lim / p->dv && p->Hk <= lim / p->dk;
}

/*
 * Decay ratios of one chunk from its per-token factors e[r] = exp(g_r):
 *   gam[r]       = gamma_r     = e_0 e_1 ... e_r
 *   dec[r][i]    = gamma_r/gamma_i = e_{i+1} ... e_r   (i <= r)
 * Numerical trap avoided: the ratio is never exp(G_r - G_i) of cumulative
 * log sums, which cancels catastrophically after a gate of -1e30 (-1e30 -
 * (-1e30) = 0, not the -0.1 between two later tokens). Products of factors
 * <= 1 cannot cancel: row r is row r-1 times e_r, so each ratio carries at
 * most C roundings (relative error <= C u), a factor exp(-1e30) = 0 zeroes
 * exactly the ratios whose range contains it, and nothing overflows. Kept
 * in double for both element types: C^2 multiplications are free next to
 * the GEMMs, and float32 then only rounds each ratio once.
 */
static void dn_decays(const double *e, int64_t C, double *gam, double *dec)
{
	int64_t r, i;

	gam[0] = e[0];
	dec[0] = 1.0;
	for (r = 1; r < C; r++) {
		const double *prev = dec + (r - 1) * C;
		double *row = dec + r * C;

		gam[r] = gam[r - 1] * e[r];
		#pragma omp simd
		for (i = 0; i < r; i++)
			row[i] = prev[i] * e[r];
		row[r] = 1.0;
	}
}

/* ---- the three instances --------------------------------------------- */

#define DN_TEMPLATE
#define real float
#define elem float
#define ELEM_BF16 0
#define FN(name) name##_f32
#define GEMM_TILED lcai_cpu_gemm_f32
#define TRANSPOSE lcai_cpu_transpose_f32
#define STEP lcai_step_f32
#include "deltanet.c"
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
#include "deltanet.c"
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
#define TRANSPOSE lcai_cpu_transpose_f32
#define STEP lcai_step_f32
#include "deltanet.c"
#undef real
#undef elem
#undef LD
#undef ELEM_BF16
#undef FN
#undef GEMM_TILED
#undef TRANSPOSE
#undef STEP
#undef DN_TEMPLATE

lca_status lcai_cpu_deltanet(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *g, const void *beta, const void *state0, void *o,
	void *state)
{
	if (p->dtype == LCA_F64)
		return dn_run_f64(p, cu, nseq, q, k, v, g, beta, state0, o,
			state);
	if (p->dtype == LCA_F32)
		return dn_run_f32(p, cu, nseq, q, k, v, g, beta, state0, o,
			state);
	if (p->dtype == LCA_BF16)
		return dn_run_bf16(p, cu, nseq, q, k, v, g, beta, state0, o,
			state);
	return lcai_fail(LCA_ERR_INTERNAL, "cpu deltanet: dtype %d reached "
		"the kernel", (int)p->dtype);
}

#else /* DN_TEMPLATE: the body, once per instance (real, elem) */

#include "elem_rows.h"


/* The call's tensors, typed, and how to call BLAS. */
struct FN(dn_args) {
	const lca_params *p;
	const int64_t *cu;
	const elem *q, *k, *v, *g, *beta;
	const real *state0;
	elem *o;
	real *state;
	int64_t G;              /* value heads per work item */
	int serial_blas;        /* keep every BLAS call on its thread */
	real *tok;              /* bf16: [threads][2 dk + 2 dv] a step's
	                         * q, k, v widened and its o (dn_step_head) */
};

/*
 * One thread's scratch (pointers into one block); cap = longest chunk, C
 * the chunk at hand (leading dimensions follow C, so a short last chunk
 * packs tighter). SU holds, per head of the item, the state S [dk][dv]
 * with the chunk's U [C][dv] right below it: [diag(gamma) Q | P] times
 * [S ; U] is then the chunk's whole output in one product.
 */
struct FN(dn_ws) {
	double *e;      /* [cap] exp(g) of the chunk's tokens */
	double *beta;   /* [cap] */
	double *gam;    /* [cap] gamma_r */
	double *dec;    /* [cap][cap] gamma_r/gamma_i, i <= r */
	real *QP;       /* [C][dk+C] prepared Q, then diag(gamma) Q | P */
	real *K;        /* [C][dk] prepared keys, then diag(gamma_C/gamma) K */
	real *KT;       /* [dk][C] the prepared keys transposed */
	real *R;        /* [C][dk+dv] [diag(beta gamma) K | diag(beta) V] */
	real *W;        /* [C][dk] */
	real *A;        /* [C][C] K K^T, then A (strict lower part) */
	real *Tm;       /* [C][dn_pad(C)] (I + A)^{-1} */
	real *SU;       /* [G][dk+cap][dv] state and U of each head */
	real *Ob;       /* bf16: [min(cap, DN_ROW_TILE)][dv] rows of o */
	int64_t pf_t0, pf_C, pf_h;  /* the chunk the item gathers next
	                             * (pf_C = 0: none), see dn_prefetch */
};

/* Bytes of one workspace; 0 on overflow. The recurrent form uses SU and
 * the first row of QP, K and R (cap >= 1). */
static size_t FN(dn_ws_bytes)(const lca_params *p, int64_t cap, int64_t G)
{
	int64_t dk = p->dk, dv = p->dv, sq, sqp, qp, rows, rhs, su;
	size_t b = 0;

	if (!lcai_mul(cap, cap, &sq) || !lcai_mul(cap, dn_pad(cap), &sqp) ||
	    !lcai_mul(cap, dk + cap, &qp) ||
	    !lcai_mul(cap, dk, &rows) || !lcai_mul(cap, dk + dv, &rhs) ||
	    !lcai_mul(dk + cap, dv, &su) || !lcai_mul(su, G, &su))
		return 0;
	if (!dn_add(&b, cap, sizeof(double)) ||
	    !dn_add(&b, cap, sizeof(double)) ||
	    !dn_add(&b, cap, sizeof(double)) ||
	    !dn_add(&b, sq, sizeof(double)) ||
	    !dn_add(&b, qp, sizeof(real)) ||
	    !dn_add(&b, rows, sizeof(real)) ||
	    !dn_add(&b, rows, sizeof(real)) ||
	    !dn_add(&b, rhs, sizeof(real)) ||
	    !dn_add(&b, rows, sizeof(real)) ||
	    !dn_add(&b, sq, sizeof(real)) || !dn_add(&b, sqp, sizeof(real)) ||
	    !dn_add(&b, su, sizeof(real)) ||
	    !dn_add(&b, ELEM_BF16 ? dn_min(cap, DN_ROW_TILE) * dv : 0,
	    sizeof(real)))
		return 0;
	return b;
}

static void FN(dn_ws_carve)(struct FN(dn_ws) *ws, const lca_params *p,
	int64_t cap, int64_t G, char *base)
{
	int64_t dk = p->dk, dv = p->dv;

	ws->e = dn_take(&base, cap, sizeof(double));
	ws->beta = dn_take(&base, cap, sizeof(double));
	ws->gam = dn_take(&base, cap, sizeof(double));
	ws->dec = dn_take(&base, cap * cap, sizeof(double));
	ws->QP = dn_take(&base, cap * (dk + cap), sizeof(real));
	ws->K = dn_take(&base, cap * dk, sizeof(real));
	ws->KT = dn_take(&base, cap * dk, sizeof(real));
	ws->R = dn_take(&base, cap * (dk + dv), sizeof(real));
	ws->W = dn_take(&base, cap * dk, sizeof(real));
	ws->A = dn_take(&base, cap * cap, sizeof(real));
	ws->Tm = dn_take(&base, cap * dn_pad(cap), sizeof(real));
	ws->SU = dn_take(&base, G * (dk + cap) * dv, sizeof(real));
	ws->Ob = ELEM_BF16 ? dn_take(&base, dn_min(cap, DN_ROW_TILE) * dv,
		sizeof(real)) : NULL;
}

/*
 * Token t's qk-head vectors as the recurrence sees them: optional
 * x / sqrt(sum x^2 + eps) for q and k, then q *= scale. The sums run in
 * real, as the reference of the same precision does (lib/ref's float
 * build is the yardstick of the float32 tolerance rule); summed in double
 * they cost the float path 10% of its time in conversions.
 */
static void FN(dn_factors)(const lca_params *p, const real *qs,
	const real *ks, real *fq, real *fk)
{
	int64_t i, dk = p->dk;

	*fq = (real)p->scale;
	*fk = 1;
	if (p->qk_l2norm) {
		real sq = 0, sk = 0;

		#pragma omp simd reduction(+:sq, sk)
		for (i = 0; i < dk; i++) {
			sq += qs[i] * qs[i];
			sk += ks[i] * ks[i];
		}
		*fq = (real)(p->scale / sqrt((double)sq + DN_L2_EPS));
		*fk = (real)(1.0 / sqrt((double)sk + DN_L2_EPS));
	}
}

/* q and k of a token prepared into qd and kd (bf16: widened there
 * first, so that the sums of dn_factors run on floats in the float32
 * instance's order; summed straight from bf16 the vectoriser picked
 * another lane count and so other bits). */
static void FN(dn_prepare)(const lca_params *p, const elem *qs,
	const elem *ks, real *qd, real *kd)
{
	int64_t i, dk = p->dk;
	const real *qr = FN(el_real)(qs, dk, qd), *kr = FN(el_real)(ks, dk, kd);
	real fq, fk;

	FN(dn_factors)(p, qr, kr, &fq, &fk);
	#pragma omp simd
	for (i = 0; i < dk; i++) {
		qd[i] = qr[i] * fq;
		kd[i] = kr[i] * fk;
	}
}

/*
 * The state of (sequence n, value head h) runs in scratch S: read whole
 * from state0[n][h] (or zeros) when the item starts and written to
 * state[n][h] when it ends. No other item touches that slot, which is
 * what makes state0 == state safe.
 */
static void FN(dn_open_state)(const struct FN(dn_args) *a, int64_t n,
	int64_t h, real *S)
{
	size_t len = (size_t)(a->p->dk * a->p->dv);

	if (a->state0)
		memcpy(S, a->state0 + (size_t)(n * a->p->H + h) * len,
			len * sizeof(*S));
	else
		memset(S, 0, len * sizeof(*S));
}

static void FN(dn_close_state)(const struct FN(dn_args) *a, int64_t n,
	int64_t h, const real *S)
{
	size_t len = (size_t)(a->p->dk * a->p->dv);

	if (a->state)
		memcpy(a->state + (size_t)(n * a->p->H + h) * len, S,
			len * sizeof(*S));
}

/* Head j of the item: its S, with room for a chunk's U below. */
static real *FN(dn_su)(const struct FN(dn_args) *a, int64_t cap, int64_t j,
	struct FN(dn_ws) *ws)
{
	return ws->SU + j * (a->p->dk + cap) * a->p->dv;
}

/* ---- recurrent form --------------------------------------------------- */

/*
 * One token on S [dk][dv]. With e = exp(g) the decayed state's S^T k is
 * e (S^T k), so the decay folds into the update pass:
 *   u = beta (v - e S^T k);  S = e S + k u^T;  o = S^T q
 * two sweeps over S per token instead of four. u is dv scratch. e stays
 * double: rounded to float, a gate near 0 would bias every step by up to
 * 6e-8 relative, compounding over the ~1/|g| tokens the state remembers.
 * (Splitting e into two floats avoids the conversions but rounds three
 * times per step; measured 1.3-1.5x the error, for no gain in decode,
 * which waits on the state's memory traffic.)
 */
static void FN(dn_token)(real *S, const real *q, const real *k,
	const elem *v, double e, double beta, int64_t dk, int64_t dv, real *u,
	real *o)
{
	int64_t i, j;

	for (j = 0; j < dv; j++)
		u[j] = 0;
	for (i = 0; i < dk; i++) {
		#pragma omp simd
		for (j = 0; j < dv; j++)
			u[j] += S[i * dv + j] * k[i];
	}
	#pragma omp simd
	for (j = 0; j < dv; j++) {
		u[j] = (real)(beta * (LD(v[j]) - e * u[j]));
		o[j] = 0;
	}
	for (i = 0; i < dk; i++) {
		real *Si = S + i * dv;

		#pragma omp simd
		for (j = 0; j < dv; j++) {
			Si[j] = (real)(e * Si[j] + k[i] * u[j]);
			o[j] += Si[j] * q[i];
		}
	}
}

static void FN(dn_recurrent_head)(const struct FN(dn_args) *a, int64_t n,
	int64_t h, real *S, struct FN(dn_ws) *ws)
{
	const lca_params *p = a->p;
	int64_t H = p->H, Hk = p->Hk, dk = p->dk, dv = p->dv;
	int64_t hk = h / (H / Hk), t;
	real *qt = ws->QP, *kt = ws->K, *u = ws->R;

	for (t = a->cu[n]; t < a->cu[n + 1]; t++) {
		elem *o = a->o + (t * H + h) * dv;
		real *ot = FN(el_orow)(o, ws->Ob);

		FN(dn_prepare)(p, a->q + (t * Hk + hk) * dk,
			a->k + (t * Hk + hk) * dk, qt, kt);
		FN(dn_token)(S, qt, kt, a->v + (t * H + h) * dv,
			exp((double)LD(a->g[t * H + h])),
			LD(a->beta[t * H + h]), dk, dv, u, ot);
		FN(el_put)(o, dv, ot, 1, dv);
	}
}

/* ---- chunked form ----------------------------------------------------- */

/*
 * Part `part` of `parts` of the rows of q, k and v that the item's next
 * chunk (ws->pf_*) reads, asked for into the cache while this chunk's
 * products run. Rows of one head are H d elements apart (4 KiB at H = 8,
 * d = 128: a page each), too short a run for the hardware's prefetcher,
 * so dn_gather read every row from memory at its latency (perf: the
 * loads of dn_factors and of v stalled). Spread over the products' row
 * tiles, so a burst of requests never stalls one of them for long.
 * Measured (lcattn bench, f32, T = 16K, H = 8, d = 128, 2 threads, AMD
 * EPYC Zen 5 shared with another job, old and new alternated 3 times):
 * gather 20-23% -> 14-17% of the time at AVX-512, 10-17% -> 9-15% at
 * AVX2; the whole call's change was within the machine's noise.
 */
static void FN(dn_prefetch)(const struct FN(dn_args) *a,
	const struct FN(dn_ws) *ws, int64_t part, int64_t parts)
{
	const lca_params *p = a->p;
	int64_t h = ws->pf_h, hk = h / (p->H / p->Hk), t;
	int64_t lo = ws->pf_C * part / parts, hi = ws->pf_C * (part + 1) / parts;

	for (t = ws->pf_t0 + lo; t < ws->pf_t0 + hi; t++) {
		FN(el_prefetch)(a->q + (t * p->Hk + hk) * p->dk, p->dk);
		FN(el_prefetch)(a->k + (t * p->Hk + hk) * p->dk, p->dk);
		FN(el_prefetch)(a->v + (t * p->H + h) * p->dv, p->dv);
	}
}

/*
 * Everything the chunk t0 .. t0+C-1 of value head h reads from the
 * tensors, packed: gates and decay ratios, prepared q (QP) and k (K and
 * KT), and the right-hand side R of the solve.
 */
static void FN(dn_gather)(const struct FN(dn_args) *a, int64_t t0, int64_t C,
	int64_t h, struct FN(dn_ws) *ws)
{
	const lca_params *p = a->p;
	int64_t H = p->H, Hk = p->Hk, dk = p->dk, dv = p->dv, w = dk + dv;
	int64_t hk = h / (H / Hk), r, i, t;

	for (r = 0; r < C; r++) {
		ws->e[r] = exp((double)LD(a->g[(t0 + r) * H + h]));
		ws->beta[r] = LD(a->beta[(t0 + r) * H + h]);
	}
	dn_decays(ws->e, C, ws->gam, ws->dec);
	for (r = 0; r < C; r++) {
		const elem *vr = a->v + ((t0 + r) * H + h) * dv;
		real *kr = ws->K + r * dk, *xr = ws->R + r * w;
		real bg = (real)(ws->beta[r] * ws->gam[r]);
		real b = (real)ws->beta[r];

		t = t0 + r;
		FN(dn_prepare)(p, a->q + (t * Hk + hk) * dk,
			a->k + (t * Hk + hk) * dk, ws->QP + r * (dk + C), kr);
		#pragma omp simd
		for (i = 0; i < dk; i++)
			xr[i] = bg * kr[i];
		#pragma omp simd
		for (i = 0; i < dv; i++)
			xr[dk + i] = b * LD(vr[i]);
	}
	TRANSPOSE(C, dk, ws->K, dk, ws->KT);
}

/*
 * Tm = (I + A)^{-1} for A strictly lower triangular (the UT transform of
 * the DeltaNet paper, sec. 3.3) by forward substitution on the identity:
 * row r is e_r - sum_{i<r} A[r][i] Tm[i], and Tm[i] is zero past column
 * i. C^3/6 multiply-adds: under 1% of the chunk's flops. Each row goes
 * DN_PAD = 8 columns at a time from cb (rows i >= cb only: the others are
 * zero there), summing over i in eight scalars that the compiler keeps in
 * registers; updating the row in memory once per i instead waits on each
 * store before the next load (measured: deltanet 4-7% slower in float32,
 * 2-4% in float64).
 * Rows of Tm are ld = C rounded up to DN_PAD apart.
 */
static void FN(dn_unit_lower_inverse)(const real *A, int64_t C, int64_t ld,
	real *Tm)
{
	int64_t r, i, cb;

	for (r = 0; r < C; r++) {
		real *tr = Tm + r * ld;

		for (cb = 0; cb < ld; cb += DN_PAD) {
			real s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0,
				s6 = 0, s7 = 0;

			for (i = cb; i < r; i++) {
				const real *ti = Tm + i * ld + cb;
				real air = A[r * C + i];

				s0 += air * ti[0], s1 += air * ti[1];
				s2 += air * ti[2], s3 += air * ti[3];
				s4 += air * ti[4], s5 += air * ti[5];
				s6 += air * ti[6], s7 += air * ti[7];
			}
			tr[cb] = 0 - s0, tr[cb + 1] = 0 - s1;
			tr[cb + 2] = 0 - s2, tr[cb + 3] = 0 - s3;
			tr[cb + 4] = 0 - s4, tr[cb + 5] = 0 - s5;
			tr[cb + 6] = 0 - s6, tr[cb + 7] = 0 - s7;
		}
		tr[r] = 1;
	}
}

/*
 * W and U~ of the chunk, state-free: A from the Gram matrix K K^T,
 * Tm = (I + A)^{-1}, W = Tm diag(beta gamma) K and U~ = Tm diag(beta) V,
 * the latter into U's place below S.
 */
static void FN(dn_wy)(const struct FN(dn_args) *a, int64_t C, real *U,
	struct FN(dn_ws) *ws)
{
	int64_t dk = a->p->dk, dv = a->p->dv, w = dk + dv, r, i, r0, rt;
	int64_t ld = dn_pad(C);

	/* Only the strict lower triangle of A is read. */
	for (r0 = 0; r0 < C; r0 += DN_ROW_TILE) {
		rt = dn_min(DN_ROW_TILE, C - r0);
		GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, rt,
			r0 + rt, dk, 1.0, ws->K + r0 * dk, dk, ws->KT, C, 0.0,
			ws->A + r0 * C, C);
	}
	for (r = 0; r < C; r++) {
		real *Ar = ws->A + r * C;

		#pragma omp simd
		for (i = 0; i < r; i++)
			Ar[i] *= (real)(ws->beta[r] * ws->dec[r * C + i]);
	}
	LCAI_PROF(LCAI_PH_DN_INVERSE);
	FN(dn_unit_lower_inverse)(ws->A, C, ld, ws->Tm);
	LCAI_PROF(LCAI_PH_DN_WY);
	/* Tm is lower triangular: row tile r0 needs rows < r0 + rt of R. */
	for (r0 = 0; r0 < C; r0 += DN_ROW_TILE) {
		rt = dn_min(DN_ROW_TILE, C - r0);
		FN(dn_prefetch)(a, ws, r0 / DN_ROW_TILE,
			2 * ((C + DN_ROW_TILE - 1) / DN_ROW_TILE));
		GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, rt, dk,
			r0 + rt, 1.0, ws->Tm + r0 * ld, ld, ws->R, w, 0.0,
			ws->W + r0 * dk, dk);
		GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, rt, dv,
			r0 + rt, 1.0, ws->Tm + r0 * ld, ld, ws->R + dk, w, 0.0,
			U + r0 * dv, dv);
	}
}

/*
 * O = [diag(gamma) Q | Q K^T (.) M] [S ; U] into o (rows H dv apart; bf16
 * through Ob a tile at a time): the
 * inter- and intra-chunk terms as one product, so o is written once. It
 * goes by row tiles that stop at the diagonal of M, so Q K^T is formed
 * only up to there (the rest of the tile zeroed) and the product reads
 * only the rows of U it needs.
 */
static void FN(dn_output)(const struct FN(dn_args) *a, int64_t t0,
	int64_t C, int64_t h, const real *SU, struct FN(dn_ws) *ws)
{
	int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv, ld = dk + C;
	int64_t r, i, r0, rt, ncol;
	elem *O = a->o + (t0 * H + h) * dv;

	for (r0 = 0; r0 < C; r0 += DN_ROW_TILE) {
		rt = dn_min(DN_ROW_TILE, C - r0);
		ncol = r0 + rt;
		FN(dn_prefetch)(a, ws, (C + r0) / DN_ROW_TILE,
			2 * ((C + DN_ROW_TILE - 1) / DN_ROW_TILE));
		GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, rt,
			ncol, dk, 1.0, ws->QP + r0 * ld, ld, ws->KT, C, 0.0,
			ws->QP + r0 * ld + dk, ld);
		for (r = r0; r < r0 + rt; r++) {
			real *Qr = ws->QP + r * ld, *Pr = Qr + dk;
			real gr = (real)ws->gam[r];

			#pragma omp simd
			for (i = 0; i <= r; i++)
				Pr[i] *= (real)ws->dec[r * C + i];
			for (i = r + 1; i < ncol; i++)
				Pr[i] = 0;
			#pragma omp simd
			for (i = 0; i < dk; i++)
				Qr[i] *= gr;
		}
		GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, rt, dv,
			dk + ncol, 1.0, ws->QP + r0 * ld, ld, SU, dv, 0.0,
			FN(el_orow)(O + r0 * H * dv, ws->Ob),
			FN(el_ld)(H * dv, dv));
		FN(el_put)(O + r0 * H * dv, H * dv, ws->Ob, rt, dv);
	}
}

/* One chunk t0 .. t0+C-1 of value head h: S (atop SU) goes from S0 to
 * S_C. The rest as for dn_gather. */
static void FN(dn_chunk)(const struct FN(dn_args) *a, int64_t t0, int64_t C,
	int64_t h, real *SU,
	struct FN(dn_ws) *ws)
{
	int64_t dk = a->p->dk, dv = a->p->dv;
	real *U = SU + dk * dv;
	int64_t r, i;

	LCAI_PROF(LCAI_PH_DN_GATHER);
	FN(dn_gather)(a, t0, C, h, ws);
	LCAI_PROF(LCAI_PH_DN_WY);
	FN(dn_wy)(a, C, U, ws);
	/* U = U~ - W S0, in place over U~. */
	LCAI_PROF(LCAI_PH_DN_UPDATE_U);
	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, C, dv, dk,
		-1.0, ws->W, dk, SU, dv, 1.0, U, dv);
	LCAI_PROF(LCAI_PH_DN_OUTPUT);
	FN(dn_output)(a, t0, C, h, SU, ws);
	LCAI_PROF(LCAI_PH_DN_STATE);
	/* S_C = gamma_C S0 + (diag(gamma_C/gamma) K)^T U. */
	for (r = 0; r < C; r++) {
		real d = (real)ws->dec[(C - 1) * C + r];

		#pragma omp simd
		for (i = 0; i < dk; i++)
			ws->K[r * dk + i] *= d;
	}
	GEMM_TILED(a->serial_blas, CblasTrans, CblasNoTrans, dk, dv, C, 1.0,
		ws->K, dk, U, dv, ws->gam[C - 1], SU, dv);
	LCAI_PROF_END();
}

/*
 * Value heads h0 .. h0+G-1 of sequence n, chunk by chunk, every head of
 * the group on one chunk before the next chunk: the group's rows of a
 * token share its pages, so each page is walked into the TLB once per
 * group rather than once per head (measured: 10% of the time at G = 4 on
 * the development machine, where rows of one head are 4 KiB apart).
 */
static void FN(dn_chunked_item)(const struct FN(dn_args) *a, int64_t n,
	int64_t h0, int64_t cap, struct FN(dn_ws) *ws)
{
	int64_t t0, C, j, end = a->cu[n + 1];

	for (t0 = a->cu[n]; t0 < end; t0 += C) {
		C = dn_min(end - t0, a->p->chunk);
		for (j = 0; j < a->G; j++) {
			/* the next head's chunk, or the first head's next */
			ws->pf_h = h0 + (j + 1) % a->G;
			ws->pf_t0 = j + 1 < a->G ? t0 : t0 + C;
			ws->pf_C = j + 1 < a->G ? C :
				dn_min(end - t0 - C, a->p->chunk);
			FN(dn_chunk)(a, t0, C, h0 + j,
				FN(dn_su)(a, cap, j, ws), ws);
		}
	}
}

/* ---- decode-sized calls ----------------------------------------------- */

/*
 * The tokens of sequence n, value head h, straight on its slot of state:
 * the first token reads state0's slot (or the slot cleared), each token
 * writes state's slot in one fused pass (state_step.c). No scratch, so
 * no allocation per step, and no copy of the state in or out (bf16: a
 * token's q, k, v widened and its o, 2 dk + 2 dv floats per thread).
 */
static void FN(dn_step_head)(const struct FN(dn_args) *a, int64_t n,
	int64_t h)
{
	const lca_params *p = a->p;
	const int64_t H = p->H, Hk = p->Hk, dk = p->dk, dv = p->dv;
	const int64_t hk = h / (H / Hk);
	const size_t len = (size_t)(dk * dv), slot = (size_t)(n * H + h) * len;
	const real *S0 = a->state0 ? a->state0 + slot : NULL;
	real *S = a->state + slot;
	real *qb, *kb, *vb, *ob;
	int64_t t;

	if (a->cu[n + 1] - a->cu[n] > DN_SHORT)
		return;  /* the driver's (dn_item) */
	FN(el_tok)(a->tok, dn_tid(), dk, dv, &qb, &kb, &vb, &ob);
	if (!S0) {
		memset(S, 0, len * sizeof(*S));
		S0 = S;
	}
	for (t = a->cu[n]; t < a->cu[n + 1]; t++, S0 = S) {
		const real *qs = FN(el_real)(a->q + (t * Hk + hk) * dk, dk, qb);
		const real *ks = FN(el_real)(a->k + (t * Hk + hk) * dk, dk, kb);
		elem *o = a->o + (t * H + h) * dv;
		real *ot = FN(el_orow)(o, ob);
		real fq, fk;

		FN(dn_factors)(p, qs, ks, &fq, &fk);
		STEP()->dn(S0, S, dk, dv, qs, fq, ks, fk,
			FN(el_real)(a->v + (t * H + h) * dv, dv, vb),
			exp((double)LD(a->g[t * H + h])),
			LD(a->beta[t * H + h]), ot);
		FN(el_put)(o, dv, ot, 1, dv);
	}
	if (S0 != S) /* a sequence without tokens passes its state through */
		memcpy(S, S0, len * sizeof(*S));
}

/* Every (sequence, value head) of a decode-sized call, on nt threads;
 * the heads are independent, so the split never changes the bits. */
static void FN(dn_steps)(const struct FN(dn_args) *a, int64_t nseq, int nt)
{
	const int64_t H = a->p->H, items = nseq * H;
	int64_t it;

	if (nt <= 1) {
		for (it = 0; it < items; it++)
			FN(dn_step_head)(a, it / H, it % H);
		return;
	}
	#pragma omp parallel for schedule(static) num_threads(nt)
	for (it = 0; it < items; it++)
		FN(dn_step_head)(a, it / H, it % H);
}

/* ---- driver ----------------------------------------------------------- */

/* Work item it: sequence it / groups, heads from (it % groups) G. */
static void FN(dn_item)(const struct FN(dn_args) *a, int64_t it,
	int64_t cap, struct FN(dn_ws) *ws)
{
	int64_t groups = a->p->H / a->G, n = it / groups;
	int64_t h0 = it % groups * a->G, j;

	if (a->state && a->cu[n + 1] - a->cu[n] <= DN_SHORT)
		return;  /* dn_step_head's */
	for (j = 0; j < a->G; j++)
		FN(dn_open_state)(a, n, h0 + j, FN(dn_su)(a, cap, j, ws));
	if (a->p->algo == LCA_ALGO_RECURRENT)
		for (j = 0; j < a->G; j++)
			FN(dn_recurrent_head)(a, n, h0 + j,
				FN(dn_su)(a, cap, j, ws), ws);
	else
		FN(dn_chunked_item)(a, n, h0, cap, ws);
	for (j = 0; j < a->G; j++)
		FN(dn_close_state)(a, n, h0 + j, FN(dn_su)(a, cap, j, ws));
}

static lca_status FN(dn_run)(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *g, const void *beta, const void *state0, void *o,
	void *state)
{
	struct FN(dn_args) a = { p, cu, q, k, v, g, beta, state0, o, state,
		1, 1, NULL };
	int64_t cap = dn_max_len(cu, nseq), items, it;
	int nt;
	size_t wsb;
	char *block;
	lca_status s;

	a.G = cap <= DN_SHORT ? 1 : dn_group(p, nseq);
	items = nseq * (p->H / a.G);
	nt = dn_team(p, items);
	if (cap <= DN_SHORT) {
		int64_t per = DN_STATE_PER_THREAD / (p->dk * p->dv * (int64_t)sizeof(real));

		nt = (int)dn_min(nt, items / (per > 0 ? per : 1) + 1);
		if (state) {
			if ((s = FN(el_tok_alloc)(&a.tok, p->dk, p->dv, nt,
			    "cpu deltanet")))
				return s;
			FN(dn_steps)(&a, nseq, nt);
			free(a.tok);
			return LCA_OK;
		}
	}
	/* BLAS may spread a call over the cores only when nothing else runs
	 * beside it and the caller set no thread cap. */
	a.serial_blas = nt > 1 || p->nthreads > 0;
	/* Chunks never outgrow the longest sequence; >= 1 keeps the
	 * workspace well formed when every sequence is empty. */
	cap = dn_min(cap, p->chunk);
	if (cap < 1)
		cap = 1;
	if (!dn_blas_fits(p, cap))
		return lcai_fail(LCA_ERR_UNSUPPORTED, "cpu deltanet: a size "
			"passed to BLAS exceeds INT_MAX");
	wsb = FN(dn_ws_bytes)(p, cap, a.G);
	if (wsb == 0 || wsb > SIZE_MAX / (size_t)nt)
		return lcai_fail(LCA_ERR_NOMEM, "cpu deltanet: workspace "
			"size overflows");
	if (state && (s = FN(el_tok_alloc)(&a.tok, p->dk, p->dv, 1,
	    "cpu deltanet")))
		return s;
	block = aligned_alloc(DN_ALIGN, wsb * (size_t)nt);
	if (!block) {
		free(a.tok);
		return lcai_fail(LCA_ERR_NOMEM, "cpu deltanet: cannot allocate "
			"%zu bytes of workspace", wsb * (size_t)nt);
	}

	/* With a state, the decode-sized sequences of a longer call take the
	 * fused steps too (after the allocations, before the rest): a
	 * sequence's bits never depend on the other sequences of its call,
	 * so one cache step of many sequences equals a step per sequence. */
	if (state)
		FN(dn_steps)(&a, nseq, 1);
	#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
	for (it = 0; it < items; it++) {
		struct FN(dn_ws) ws;

		FN(dn_ws_carve)(&ws, p, cap, a.G,
			block + (size_t)dn_tid() * wsb);
		FN(dn_item)(&a, it, cap, &ws);
	}
	free(block);
	free(a.tok);
	return LCA_OK;
}

#endif /* DN_TEMPLATE */
