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
 *              GEMM; O is written straight into o.
 *   RECURRENT  the token loop S = e^g S; u = beta (v - S^T k); S += k u^T;
 *              o = S^T q, for decode-sized inputs.
 *
 * Both run one (sequence, value head) pair per OpenMP work item: the
 * chunks of one pair depend on each other through S, different pairs never
 * do. Each item runs its state in place in its own slot of state (scratch
 * when state is NULL), after reading its slot of state0 whole, so state0
 * may alias state.
 *
 * BLAS and threads: the BLAS calls run inside the OpenMP region, one item
 * per thread, so BLAS must stay on the calling thread. Nesting-aware BLAS
 * builds (OpenBLAS-OpenMP, MKL, BLIS) do that by themselves; the pthreads
 * OpenBLAS that Debian installs by default does not notice the OpenMP
 * region and spreads each call over its own thread pool, which on the 2-core
 * development machine made lightning 5x slower. It does, however, run a
 * GEMM single-threaded when m n k <= 65536 * GEMM_MULTITHREAD_THRESHOLD
 * (= 64^3 by default; interface/gemm.c of 0.3.21), so the GEMMs of
 * lib/cpu/gemm.c cut every product into calls of at most 64^3, which costs a nesting-aware
 * BLAS only the extra calls (64^3 calls run at full single-core speed;
 * measured: 5x faster than whole calls there). syrk and trsm
 * have no such size rule, so the chunk uses GEMMs only: the Gram matrix in
 * full and the triangular solve as an explicit (I + A)^{-1} times the
 * right-hand side. With a single work item and no thread cap the calls are
 * left whole, so a threaded BLAS can use the cores the items cannot.
 *
 * Float32 and float64 share one body: the second half of this file is a
 * template that includes itself twice, once per element type (real), with
 * FN() naming the instance and the BLAS routines picked to match.
 */
#ifndef DN_TEMPLATE

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

/* Added under the square root of the L2 norm, as in lib/ref. */
#define DN_L2_EPS 1e-6

/* Workspace sub-arrays start on 64-byte boundaries (BLAS packs faster). */
#define DN_ALIGN 64

/* Largest m n k of one BLAS call made inside the parallel region: the
 * pthreads OpenBLAS runs GEMMs up to this size on the calling thread. */

/* Threads for `items` independent work items: p->nthreads caps, 0 means
 * the OpenMP default; never more threads than items. */
static int dn_team(const lca_params *p, int64_t items)
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

static int dn_tid(void)
{
#ifdef _OPENMP
	return omp_get_thread_num();
#else
	return 0;
#endif
}

static int64_t dn_min(int64_t a, int64_t b)
{
	return a < b ? a : b;
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

	return p->dk + p->dv <= lim && cap <= lim &&
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

/* ---- the two element-type instances ---------------------------------- */

#define DN_TEMPLATE
#define real float
#define FN(name) name##_f32
#define GEMM_TILED lcai_cpu_gemm_f32
#include "deltanet.c"
#undef real
#undef FN
#undef GEMM_TILED

#define real double
#define FN(name) name##_f64
#define GEMM_TILED lcai_cpu_gemm_f64
#include "deltanet.c"
#undef real
#undef FN
#undef GEMM_TILED
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
	return lcai_fail(LCA_ERR_INTERNAL, "cpu deltanet: dtype %d reached "
		"the kernel", (int)p->dtype);
}

#else /* DN_TEMPLATE: the body, once per element type `real` */

/* The call's tensors, typed, and how to call BLAS. */
struct FN(dn_args) {
	const lca_params *p;
	const int64_t *cu;
	const real *q, *k, *v, *g, *beta, *state0;
	real *o, *state;
	int serial_blas;        /* keep every BLAS call on its thread */
};

/* One thread's scratch (pointers into one block); cap = longest chunk. */
struct FN(dn_ws) {
	double *e;      /* [cap] exp(g) of the chunk's tokens */
	double *beta;   /* [cap] */
	double *gam;    /* [cap] gamma_r */
	double *dec;    /* [cap][cap] gamma_r/gamma_i, i <= r */
	real *S;        /* [dk][dv] carried state (or the output slot) */
	real *Q;        /* [cap][dk] prepared queries, then diag(gamma) Q */
	real *K;        /* [cap][dk] prepared keys, then diag(gamma_C/gamma)K */
	real *R;        /* [cap][dk+dv] right-hand side of the solve */
	real *X;        /* [cap][dk+dv] [W | U~], then [W | U] */
	real *A;        /* [cap][cap] K K^T, then A (strict lower part) */
	real *Tm;       /* [cap][cap] (I + A)^{-1} */
	real *P;        /* [cap][cap] Q K^T (.) M */
};

/* Bytes of one workspace; 0 on overflow. The recurrent form uses S (when
 * state is NULL) and the first row of Q, K and X (cap >= 1). */
static size_t FN(dn_ws_bytes)(const lca_params *p, int64_t cap)
{
	int64_t dk = p->dk, dv = p->dv, sq, state, rows, rhs;
	size_t b = 0;

	if (!lcai_mul(cap, cap, &sq) || !lcai_mul(dk, dv, &state) ||
	    !lcai_mul(cap, dk, &rows) || !lcai_mul(cap, dk + dv, &rhs))
		return 0;
	if (!dn_add(&b, cap, sizeof(double)) ||
	    !dn_add(&b, cap, sizeof(double)) ||
	    !dn_add(&b, cap, sizeof(double)) ||
	    !dn_add(&b, sq, sizeof(double)) ||
	    !dn_add(&b, state, sizeof(real)) ||
	    !dn_add(&b, rows, sizeof(real)) ||
	    !dn_add(&b, rows, sizeof(real)) ||
	    !dn_add(&b, rhs, sizeof(real)) ||
	    !dn_add(&b, rhs, sizeof(real)) ||
	    !dn_add(&b, sq, sizeof(real)) || !dn_add(&b, sq, sizeof(real)) ||
	    !dn_add(&b, sq, sizeof(real)))
		return 0;
	return b;
}

static void FN(dn_ws_carve)(struct FN(dn_ws) *ws, const lca_params *p,
	int64_t cap, char *base)
{
	int64_t dk = p->dk, dv = p->dv;

	ws->e = dn_take(&base, cap, sizeof(double));
	ws->beta = dn_take(&base, cap, sizeof(double));
	ws->gam = dn_take(&base, cap, sizeof(double));
	ws->dec = dn_take(&base, cap * cap, sizeof(double));
	ws->S = dn_take(&base, dk * dv, sizeof(real));
	ws->Q = dn_take(&base, cap * dk, sizeof(real));
	ws->K = dn_take(&base, cap * dk, sizeof(real));
	ws->R = dn_take(&base, cap * (dk + dv), sizeof(real));
	ws->X = dn_take(&base, cap * (dk + dv), sizeof(real));
	ws->A = dn_take(&base, cap * cap, sizeof(real));
	ws->Tm = dn_take(&base, cap * cap, sizeof(real));
	ws->P = dn_take(&base, cap * cap, sizeof(real));
}

/*
 * Token t's qk-head vectors as the recurrence sees them: optional
 * x / sqrt(sum x^2 + eps) for q and k, then q *= scale. The sums run in
 * double (as lib/ref does) whatever real is: dk extra flops per token.
 */
static void FN(dn_prepare)(const lca_params *p, const real *qs,
	const real *ks, real *qd, real *kd)
{
	int64_t i, dk = p->dk;
	double fq = p->scale, fk = 1.0;

	if (p->qk_l2norm) {
		double sq = 0.0, sk = 0.0;

		#pragma omp simd reduction(+:sq, sk)
		for (i = 0; i < dk; i++) {
			sq += (double)qs[i] * qs[i];
			sk += (double)ks[i] * ks[i];
		}
		fq /= sqrt(sq + DN_L2_EPS);
		fk /= sqrt(sk + DN_L2_EPS);
	}
	#pragma omp simd
	for (i = 0; i < dk; i++) {
		qd[i] = (real)(qs[i] * fq);
		kd[i] = (real)(ks[i] * fk);
	}
}

/*
 * Where item (n, h) keeps its state while it runs: in the output slot
 * state[n][h] itself when there is one (nothing to copy back), else in
 * scratch; filled first from state0[n][h], or zeros. The slot is read whole
 * before any update and no other item touches it, which is what makes
 * state0 == state safe.
 */
static real *FN(dn_open_state)(const struct FN(dn_args) *a, int64_t n,
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
	const real *v, double e, double beta, int64_t dk, int64_t dv, real *u,
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
		u[j] = (real)(beta * (v[j] - e * u[j]));
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

static void FN(dn_recurrent_item)(const struct FN(dn_args) *a, int64_t n,
	int64_t h, struct FN(dn_ws) *ws)
{
	const lca_params *p = a->p;
	int64_t H = p->H, Hk = p->Hk, dk = p->dk, dv = p->dv;
	int64_t hk = h / (H / Hk), t;
	real *qt = ws->Q, *kt = ws->K, *u = ws->X;
	real *S = FN(dn_open_state)(a, n, h, ws->S);

	for (t = a->cu[n]; t < a->cu[n + 1]; t++) {
		FN(dn_prepare)(p, a->q + (t * Hk + hk) * dk,
			a->k + (t * Hk + hk) * dk, qt, kt);
		FN(dn_token)(S, qt, kt, a->v + (t * H + h) * dv,
			exp((double)a->g[t * H + h]), a->beta[t * H + h],
			dk, dv, u, a->o + (t * H + h) * dv);
	}
}

/* ---- chunked form ----------------------------------------------------- */

/* Prepared q, k and the gates of tokens t0 .. t0+C-1 of value head h. */
static void FN(dn_gather)(const struct FN(dn_args) *a, int64_t t0, int64_t C,
	int64_t h, struct FN(dn_ws) *ws)
{
	const lca_params *p = a->p;
	int64_t H = p->H, Hk = p->Hk, dk = p->dk;
	int64_t hk = h / (H / Hk), r, t;

	for (r = 0; r < C; r++) {
		t = t0 + r;
		FN(dn_prepare)(p, a->q + (t * Hk + hk) * dk,
			a->k + (t * Hk + hk) * dk, ws->Q + r * dk,
			ws->K + r * dk);
		ws->e[r] = exp((double)a->g[t * H + h]);
		ws->beta[r] = a->beta[t * H + h];
	}
	dn_decays(ws->e, C, ws->gam, ws->dec);
}

/*
 * Tm = (I + A)^{-1} for A strictly lower triangular (the UT transform of
 * the DeltaNet paper, sec. 3.3) by forward substitution on the identity:
 * row r is e_r - sum_{i<r} A[r][i] Tm[i], and Tm[i] is zero past column
 * i. C^3/6 multiply-adds: under 1% of the chunk's flops, ~5% of its time.
 */
static void FN(dn_unit_lower_inverse)(const real *A, int64_t C, real *Tm)
{
	int64_t r, i, c;

	for (r = 0; r < C; r++) {
		real *tr = Tm + r * C;

		for (c = 0; c < C; c++)
			tr[c] = 0;
		tr[r] = 1;
		for (i = 0; i < r; i++) {
			const real *ti = Tm + i * C;
			real air = A[r * C + i];

			#pragma omp simd
			for (c = 0; c <= i; c++)
				tr[c] -= air * ti[c];
		}
	}
}

/*
 * [W | U~] of the chunk, state-free: A from the Gram matrix K K^T,
 * Tm = (I + A)^{-1}, and [W | U~] = Tm [diag(beta gamma) K | diag(beta) V].
 */
static void FN(dn_wy)(const struct FN(dn_args) *a, int64_t t0, int64_t C,
	int64_t h, struct FN(dn_ws) *ws)
{
	int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv, w = dk + dv;
	int64_t r, i, j;

	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasTrans, C, C, dk, 1.0,
		ws->K, dk, ws->K, dk, 0.0, ws->A, C);
	for (r = 0; r < C; r++) {
		const real *vr = a->v + ((t0 + r) * H + h) * dv;
		const real *kr = ws->K + r * dk;
		real *Ar = ws->A + r * C, *xr = ws->R + r * w;
		real bg = (real)(ws->beta[r] * ws->gam[r]);
		real b = (real)ws->beta[r];

		#pragma omp simd
		for (i = 0; i < r; i++)
			Ar[i] *= (real)(ws->beta[r] * ws->dec[r * C + i]);
		#pragma omp simd
		for (j = 0; j < dk; j++)
			xr[j] = bg * kr[j];
		#pragma omp simd
		for (j = 0; j < dv; j++)
			xr[dk + j] = b * vr[j];
	}
	FN(dn_unit_lower_inverse)(ws->A, C, ws->Tm);
	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, C, w, C, 1.0,
		ws->Tm, C, ws->R, w, 0.0, ws->X, w);
}

/*
 * O = diag(gamma) Q S0 + (Q K^T (.) M) U into o (rows H dv apart), given
 * U in X. Q K^T is formed in full and its upper triangle zeroed: a C x C
 * product is cheap next to the C x dk x dv ones.
 */
static void FN(dn_output)(const struct FN(dn_args) *a, int64_t t0,
	int64_t C, int64_t h, struct FN(dn_ws) *ws)
{
	int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv, w = dk + dv;
	real *o = a->o + (t0 * H + h) * dv;
	int64_t r, i;

	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasTrans, C, C, dk, 1.0,
		ws->Q, dk, ws->K, dk, 0.0, ws->P, C);
	for (r = 0; r < C; r++) {
		real *Pr = ws->P + r * C, *Qr = ws->Q + r * dk;
		real gr = (real)ws->gam[r];

		#pragma omp simd
		for (i = 0; i <= r; i++)
			Pr[i] *= (real)ws->dec[r * C + i];
		for (i = r + 1; i < C; i++)
			Pr[i] = 0;
		#pragma omp simd
		for (i = 0; i < dk; i++)
			Qr[i] *= gr;
	}
	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, C, dv, dk, 1.0,
		ws->Q, dk, ws->S, dv, 0.0, o, H * dv);
	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, C, dv, C, 1.0,
		ws->P, C, ws->X + dk, w, 1.0, o, H * dv);
}

/* One chunk t0 .. t0+C-1 of value head h: ws->S goes from S0 to S_C. */
static void FN(dn_chunk)(const struct FN(dn_args) *a, int64_t t0, int64_t C,
	int64_t h, struct FN(dn_ws) *ws)
{
	int64_t dk = a->p->dk, dv = a->p->dv, w = dk + dv;
	int64_t r, i;

	FN(dn_gather)(a, t0, C, h, ws);
	FN(dn_wy)(a, t0, C, h, ws);
	/* U = U~ - W S0, in place over U~. */
	GEMM_TILED(a->serial_blas, CblasNoTrans, CblasNoTrans, C, dv, dk,
		-1.0, ws->X, w, ws->S, dv, 1.0, ws->X + dk, w);
	FN(dn_output)(a, t0, C, h, ws);
	/* S_C = gamma_C S0 + (diag(gamma_C/gamma) K)^T U. */
	for (r = 0; r < C; r++) {
		real d = (real)ws->dec[(C - 1) * C + r];

		#pragma omp simd
		for (i = 0; i < dk; i++)
			ws->K[r * dk + i] *= d;
	}
	GEMM_TILED(a->serial_blas, CblasTrans, CblasNoTrans, dk, dv, C, 1.0,
		ws->K, dk, ws->X + dk, w, ws->gam[C - 1], ws->S, dv);
}

static void FN(dn_chunked_item)(const struct FN(dn_args) *a, int64_t n,
	int64_t h, struct FN(dn_ws) *ws)
{
	int64_t t0, C, end = a->cu[n + 1];

	ws->S = FN(dn_open_state)(a, n, h, ws->S);
	for (t0 = a->cu[n]; t0 < end; t0 += C) {
		C = dn_min(end - t0, a->p->chunk);
		FN(dn_chunk)(a, t0, C, h, ws);
	}
}

/* ---- driver ----------------------------------------------------------- */

static lca_status FN(dn_run)(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *g, const void *beta, const void *state0, void *o,
	void *state)
{
	struct FN(dn_args) a = { p, cu, q, k, v, g, beta, state0, o, state, 1 };
	int64_t items = nseq * p->H, cap = dn_max_len(cu, nseq), it;
	int nt = dn_team(p, items);
	size_t wsb;
	char *block;

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
	wsb = FN(dn_ws_bytes)(p, cap);
	if (wsb == 0 || wsb > SIZE_MAX / (size_t)nt)
		return lcai_fail(LCA_ERR_NOMEM, "cpu deltanet: workspace "
			"size overflows");
	block = aligned_alloc(DN_ALIGN, wsb * (size_t)nt);
	if (!block)
		return lcai_fail(LCA_ERR_NOMEM, "cpu deltanet: cannot allocate "
			"%zu bytes of workspace", wsb * (size_t)nt);

	#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
	for (it = 0; it < items; it++) {
		struct FN(dn_ws) ws;

		FN(dn_ws_carve)(&ws, p, cap, block + (size_t)dn_tid() * wsb);
		if (p->algo == LCA_ALGO_RECURRENT)
			FN(dn_recurrent_item)(&a, it / p->H, it % p->H, &ws);
		else
			FN(dn_chunked_item)(&a, it / p->H, it % p->H, &ws);
	}
	free(block);
	return LCA_OK;
}

#endif /* DN_TEMPLATE */
