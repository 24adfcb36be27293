/*
 * deltanet_bwd.c - the backward of Gated DeltaNet on the CPU: OpenMP +
 * CBLAS, float32 and float64. The numbers are those of the reference
 * adjoint of the chunked (WY/UT) form, lib/ref/deltanet_chunked_bwd.c
 * (its comment and lib/ref/deltanet.c's derive them); here each step of
 * a chunk is a GEMM. Per chunk of C tokens entered with S0, L = C - 1,
 * dec[r][i] = gamma_r / gamma_i (i <= r), M the mask dec (.) [i <= r]:
 *
 *   forward (recomputed)    (I + A) X = R, X = [W | U~], U = U~ - W S0
 *   (5) S_C = gamma_L S0 + (diag(dec[L]) K)^T U
 *         dU  = diag(dec[L]) K dS;   Y = U dS^T
 *         dK  = diag(dec[L]) Y;      ddec[L][r] = k_r . Y_r
 *         dS0 = gamma_L dS;          dgamma_L = <dS, S0>
 *   (4) O = diag(gamma) Q S0 + (Q K^T (.) M) U
 *         Z = dO S0^T: dQ = diag(gamma) Z, dgamma_r += q_r . Z_r
 *         dS0 += (diag(gamma) Q)^T dO
 *         P = Q K^T, dP = dO U^T: ddec += dP (.) P on i <= r
 *         dU += (P (.) M)^T dO; dQ += (dP (.) M) K; dK += (dP (.) M)^T Q
 *   (3) dW = -dU S0^T;  dS0 -= W^T dU
 *   solve  dR = Tm^T dX (Tm = (I + A)^-1);  dA = -dR X^T (strictly lower)
 *         with A[s][r] = beta_s dec[s][r] (k_s . k_r):
 *         dbeta, ddec elementwise; dK += (dKK + dKK^T) K
 *         R = [diag(beta gamma) K | diag(beta) V]: dK, dbeta, dgamma, dV
 *   decays dg_j = sum_{r>=j} dgamma_r gamma_r
 *                 + sum_{i<j<=r} ddec[r][i] dec[r][i]
 *
 * Gates: as in the forward (lib/cpu/deltanet.c, dn_decays), a decay is a
 * product of factors exp(g) <= 1 over its range, in double, never the
 * exp of a difference of cumulative sums: after a gate of -1e30 such a
 * difference is -1e30 - (-1e30) = 0 (or inf - inf = NaN) where the true
 * range sum is small. The mask is applied by only forming dec[r][i] for
 * i <= r; products that reach a 0 gate stay exactly 0, and the decay
 * adjoint multiplies by these factors (never divides), so no NaN arises.
 * v - S^T k (U), the UT solve and every GEMM run in the plan's real: f32
 * in the f32 path, f64 in the f64 path; decays and gate gradients in
 * double.
 *
 * Memory: per thread, the state entering every chunk of the longest
 * sequence, kept from a forward sweep: ceil(maxlen / chunk) dk dv reals
 * (f32, dk = dv = 128, chunk 64: 1 KiB per token, 16 MiB at T = 16384);
 * inside a chunk everything is recomputed from the inputs (one more
 * pass of the chunk's Gram, UT and W/U products, ~12% of the work).
 * With grouped heads (H > Hk) also 2 T H dk reals for the per-value-head
 * gradients of the prepared q and k, summed afterwards.
 *
 * Work items are (sequence, value head); each writes its own rows of dv,
 * dg, dbeta and its slot of dstate0, and the gradients of the prepared q
 * and k of its value head. A last pass over (token, qk head) sums those
 * over the value heads of the group in head order and carries them
 * through q *= scale and the L2 norm: fixed-order reductions, so the bits
 * do not depend on the thread count. Both algos run this adjoint (the
 * recurrent form's gradients are the same numbers).
 */
#ifndef DB_TEMPLATE

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

#define DB_L2_EPS 1e-6
#define DB_ALIGN 64
/* Rows of Tm padded to a multiple of 8 (db_unit_lower_inverse). */
#define DB_PAD 8
/* Row tile of the triangular products (as DN_ROW_TILE). */
#define DB_TILE 16

static int64_t db_min(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

static int64_t db_pad(int64_t n)
{
	return (n + DB_PAD - 1) / DB_PAD * DB_PAD;
}

static int db_tid(void)
{
#ifdef _OPENMP
	return omp_get_thread_num();
#else
	return 0;
#endif
}

static int64_t db_max_len(const int64_t *cu, int64_t nseq)
{
	int64_t n, m = 0;

	for (n = 0; n < nseq; n++)
		if (cu[n + 1] - cu[n] > m)
			m = cu[n + 1] - cu[n];
	return m;
}

/* *acc += n elements of esize bytes, rounded to DB_ALIGN; 0 on overflow. */
static int db_add(size_t *acc, int64_t n, size_t esize)
{
	size_t b;

	if (n < 0 || (uint64_t)n > (SIZE_MAX - DB_ALIGN) / esize)
		return 0;
	b = ((size_t)n * esize + DB_ALIGN - 1) / DB_ALIGN * DB_ALIGN;
	if (b > SIZE_MAX - *acc)
		return 0;
	*acc += b;
	return 1;
}

static void *db_take(char **cur, int64_t n, size_t esize)
{
	void *p = *cur;

	*cur += ((size_t)n * esize + DB_ALIGN - 1) / DB_ALIGN * DB_ALIGN;
	return p;
}

/* The forward's decays (lib/cpu/deltanet.c dn_decays): gam[r] = e_0..e_r,
 * dec[r][i] = e_{i+1} .. e_r for i <= r, products of factors <= 1. */
static void db_decays(const double *e, int64_t C, double *gam, double *dec)
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

#define DB_TEMPLATE
#define real float
#define FN(name) name##_f32
#define GEMM_TILED lcai_cpu_gemm_f32
#define TRANSPOSE lcai_cpu_transpose_f32
#include "deltanet_bwd.c"
#undef real
#undef FN
#undef GEMM_TILED
#undef TRANSPOSE

#define real double
#define FN(name) name##_f64
#define GEMM_TILED lcai_cpu_gemm_f64
#define TRANSPOSE lcai_cpu_transpose_f64
#include "deltanet_bwd.c"
#undef real
#undef FN
#undef GEMM_TILED
#undef TRANSPOSE
#undef DB_TEMPLATE

lca_status lcai_cpu_deltanet_bwd(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *g, const void *beta, const void *state0, const void *dout,
	const void *dstate, void *dq, void *dk, void *dv, void *dg,
	void *dbeta, void *dstate0)
{
	if (p->dtype == LCA_F64)
		return db_run_f64(p, cu, nseq, q, k, v, g, beta, state0, dout,
			dstate, dq, dk, dv, dg, dbeta, dstate0);
	if (p->dtype == LCA_F32)
		return db_run_f32(p, cu, nseq, q, k, v, g, beta, state0, dout,
			dstate, dq, dk, dv, dg, dbeta, dstate0);
	return lcai_fail(LCA_ERR_INTERNAL, "cpu deltanet backward: dtype %d "
		"reached the kernel", (int)p->dtype);
}

#else /* DB_TEMPLATE: the body, once per element type `real` */

struct FN(db_args) {
	const lca_params *p;
	const int64_t *cu;
	const real *q, *k, *v, *g, *beta, *state0, *dout, *dstate;
	real *dv, *dg, *dbeta, *dstate0;
	real *Dq, *Dk;          /* [T][H][dk] gradients of prepared q, k */
	int64_t cap, nck;       /* longest chunk; chunks of the longest seq */
	int sb;                 /* serial BLAS */
};

/* One thread's scratch; C-sized matrices are packed with leading
 * dimension C (the chunk at hand), w = dk + dv. */
struct FN(db_ws) {
	double *e, *bet, *gam, *dec;    /* [C], [C], [C], [C][C] */
	double *ddec, *dgam, *dbet;     /* [C][C], [C], [C] */
	double *y;      /* [dk] a summed gradient row (db_prepare_adj) */
	real *S;        /* [nck][dk][dv] state entering each chunk */
	real *dS, *dS0; /* [dk][dv] */
	real *S0T, *dST;        /* [dv][dk] */
	real *Q, *K, *Kd, *dQ, *dK, *Y; /* [C][dk] */
	real *KT;       /* [dk][C] */
	real *R, *X, *dX, *dR;  /* [C][w] */
	real *XT;       /* [w][C] */
	real *U;        /* [C][dv] */
	real *UT;       /* [dv][C] */
	real *KK, *A, *P, *dP;  /* [C][C] */
	real *Tm;       /* [C][pad(C)] */
};

static size_t FN(db_ws_bytes)(const lca_params *p, int64_t cap, int64_t nck)
{
	int64_t dk = p->dk, dv = p->dv, w = dk + dv, x, i;
	size_t b = 0;
	int64_t nreal[][2] = {
		{ dk, dv }, { dk, dv }, { dv, dk }, { dv, dk },
		{ cap, dk }, { cap, dk }, { cap, dk }, { cap, dk }, { cap, dk },
		{ cap, dk }, { dk, cap }, { cap, w }, { cap, w }, { cap, w },
		{ cap, w }, { w, cap }, { cap, dv }, { dv, cap }, { cap, cap },
		{ cap, cap }, { cap, cap }, { cap, cap }, { cap, db_pad(cap) },
	};

	if (!db_add(&b, cap, sizeof(double)) || !db_add(&b, cap, sizeof(double)) ||
	    !db_add(&b, cap, sizeof(double)) || !db_add(&b, cap * cap, sizeof(double)) ||
	    !db_add(&b, cap * cap, sizeof(double)) ||
	    !db_add(&b, cap, sizeof(double)) || !db_add(&b, cap, sizeof(double)) ||
	    !db_add(&b, dk, sizeof(double)))
		return 0;
	if (!lcai_mul(dk, dv, &x) || !lcai_mul(x, nck, &x) ||
	    !db_add(&b, x, sizeof(real)))
		return 0;
	for (i = 0; i < (int64_t)(sizeof nreal / sizeof nreal[0]); i++)
		if (!lcai_mul(nreal[i][0], nreal[i][1], &x) ||
		    !db_add(&b, x, sizeof(real)))
			return 0;
	return b;
}

static void FN(db_ws_carve)(struct FN(db_ws) *ws, const lca_params *p,
	int64_t cap, int64_t nck, char *c)
{
	int64_t dk = p->dk, dv = p->dv, w = dk + dv;

	ws->e = db_take(&c, cap, sizeof(double));
	ws->bet = db_take(&c, cap, sizeof(double));
	ws->gam = db_take(&c, cap, sizeof(double));
	ws->dec = db_take(&c, cap * cap, sizeof(double));
	ws->ddec = db_take(&c, cap * cap, sizeof(double));
	ws->dgam = db_take(&c, cap, sizeof(double));
	ws->dbet = db_take(&c, cap, sizeof(double));
	ws->y = db_take(&c, dk, sizeof(double));
	ws->S = db_take(&c, nck * dk * dv, sizeof(real));
	ws->dS = db_take(&c, dk * dv, sizeof(real));
	ws->dS0 = db_take(&c, dk * dv, sizeof(real));
	ws->S0T = db_take(&c, dv * dk, sizeof(real));
	ws->dST = db_take(&c, dv * dk, sizeof(real));
	ws->Q = db_take(&c, cap * dk, sizeof(real));
	ws->K = db_take(&c, cap * dk, sizeof(real));
	ws->Kd = db_take(&c, cap * dk, sizeof(real));
	ws->dQ = db_take(&c, cap * dk, sizeof(real));
	ws->dK = db_take(&c, cap * dk, sizeof(real));
	ws->Y = db_take(&c, cap * dk, sizeof(real));
	ws->KT = db_take(&c, dk * cap, sizeof(real));
	ws->R = db_take(&c, cap * w, sizeof(real));
	ws->X = db_take(&c, cap * w, sizeof(real));
	ws->dX = db_take(&c, cap * w, sizeof(real));
	ws->dR = db_take(&c, cap * w, sizeof(real));
	ws->XT = db_take(&c, w * cap, sizeof(real));
	ws->U = db_take(&c, cap * dv, sizeof(real));
	ws->UT = db_take(&c, dv * cap, sizeof(real));
	ws->KK = db_take(&c, cap * cap, sizeof(real));
	ws->A = db_take(&c, cap * cap, sizeof(real));
	ws->P = db_take(&c, cap * cap, sizeof(real));
	ws->dP = db_take(&c, cap * cap, sizeof(real));
	ws->Tm = db_take(&c, cap * db_pad(cap), sizeof(real));
}

/* Summed in double: these dots feed dg, whose entries are small
 * differences of large terms (the decays' adjoint), so float sums would
 * cost the float kernel more than the float reference loses. */
static double FN(db_dot)(const real *a, const real *b, int64_t n)
{
	double s = 0;
	int64_t i;

	#pragma omp simd reduction(+:s)
	for (i = 0; i < n; i++)
		s += (double)a[i] * (double)b[i];
	return s;
}

/* Out (rows r0..) = alpha Ml B + beta Out for Ml [C][C] lower triangular
 * (diagonal included): row tile r0 reads columns < r0 + rt only. */
static void FN(db_gemm_lower)(int sb, int64_t C, int64_t n, double alpha,
	const real *Ml, int64_t ldm, const real *B, int64_t ldb, double beta,
	real *Out, int64_t ldo)
{
	int64_t r0, rt;

	for (r0 = 0; r0 < C; r0 += DB_TILE) {
		rt = db_min(DB_TILE, C - r0);
		GEMM_TILED(sb, CblasNoTrans, CblasNoTrans, rt, n, r0 + rt, alpha,
			Ml + r0 * ldm, ldm, B, ldb, beta, Out + r0 * ldo, ldo);
	}
}

/* Out = alpha Ml^T B + beta Out, Ml lower triangular: row i of Ml^T has
 * entries in columns >= i, so tile i0 reads rows >= i0 of Ml and B. */
static void FN(db_gemm_lower_t)(int sb, int64_t C, int64_t n, double alpha,
	const real *Ml, int64_t ldm, const real *B, int64_t ldb, double beta,
	real *Out, int64_t ldo)
{
	int64_t i0, rt;

	for (i0 = 0; i0 < C; i0 += DB_TILE) {
		rt = db_min(DB_TILE, C - i0);
		GEMM_TILED(sb, CblasTrans, CblasNoTrans, rt, n, C - i0, alpha,
			Ml + i0 * ldm + i0, ldm, B + i0 * ldb, ldb, beta,
			Out + i0 * ldo, ldo);
	}
}

/* Rows r0.. of Out = A B^T restricted to columns <= the tile's last row
 * (BT = B^T packed [n][C]): the lower part of a C x C product. */
static void FN(db_gemm_tri)(int sb, int64_t C, int64_t kd, double alpha,
	const real *A, int64_t lda, const real *BT, real *Out)
{
	int64_t r0, rt;

	for (r0 = 0; r0 < C; r0 += DB_TILE) {
		rt = db_min(DB_TILE, C - r0);
		GEMM_TILED(sb, CblasNoTrans, CblasNoTrans, rt, r0 + rt, kd,
			alpha, A + r0 * lda, lda, BT, C, 0.0, Out + r0 * C, C);
	}
}

/* Tm = (I + A)^{-1}, A strictly lower (lib/cpu/deltanet.c's
 * dn_unit_lower_inverse, same order of operations). */
static void FN(db_unit_lower_inverse)(const real *A, int64_t C, int64_t ld,
	real *Tm)
{
	int64_t r, i, cb;

	for (r = 0; r < C; r++) {
		real *tr = Tm + r * ld;

		for (cb = 0; cb < ld; cb += DB_PAD) {
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

/* ---- the forward chunk, recomputed ------------------------------------ */

/* Prepared q and k of token t (qk head hk): as lib/cpu/deltanet.c. */
static void FN(db_prepare)(const lca_params *p, const real *qs,
	const real *ks, real *qd, real *kd)
{
	int64_t i, dk = p->dk;
	real fq = (real)p->scale, fk = 1;

	if (p->qk_l2norm) {
		real sq = 0, sk = 0;

		#pragma omp simd reduction(+:sq, sk)
		for (i = 0; i < dk; i++) {
			sq += qs[i] * qs[i];
			sk += ks[i] * ks[i];
		}
		fq = (real)(p->scale / sqrt((double)sq + DB_L2_EPS));
		fk = (real)(1.0 / sqrt((double)sk + DB_L2_EPS));
	}
	#pragma omp simd
	for (i = 0; i < dk; i++) {
		qd[i] = qs[i] * fq;
		kd[i] = ks[i] * fk;
	}
}

/*
 * Chunk t0 .. t0+C-1 of value head h entered with S0: gates and decays,
 * prepared Q and K (and K^T), R, the Gram matrix KK, A, Tm, X = Tm R and
 * U = U~ - W S0.
 */
static void FN(db_chunk_fwd)(const struct FN(db_args) *a, int64_t t0,
	int64_t C, int64_t h, const real *S0, struct FN(db_ws) *ws)
{
	const lca_params *p = a->p;
	int64_t H = p->H, Hk = p->Hk, dk = p->dk, dv = p->dv, w = dk + dv;
	int64_t hk = h / (H / Hk), r, i, ld = db_pad(C);

	for (r = 0; r < C; r++) {
		ws->e[r] = exp((double)a->g[(t0 + r) * H + h]);
		ws->bet[r] = a->beta[(t0 + r) * H + h];
	}
	db_decays(ws->e, C, ws->gam, ws->dec);
	for (r = 0; r < C; r++) {
		const real *vr = a->v + ((t0 + r) * H + h) * dv;
		real *kr = ws->K + r * dk, *xr = ws->R + r * w;
		real bg = (real)(ws->bet[r] * ws->gam[r]), b = (real)ws->bet[r];
		int64_t t = t0 + r;

		FN(db_prepare)(p, a->q + (t * Hk + hk) * dk,
			a->k + (t * Hk + hk) * dk, ws->Q + r * dk, kr);
		#pragma omp simd
		for (i = 0; i < dk; i++)
			xr[i] = bg * kr[i];
		#pragma omp simd
		for (i = 0; i < dv; i++)
			xr[dk + i] = b * vr[i];
	}
	TRANSPOSE(C, dk, ws->K, dk, ws->KT);
	FN(db_gemm_tri)(a->sb, C, dk, 1.0, ws->K, dk, ws->KT, ws->KK);
	for (r = 0; r < C; r++)
		#pragma omp simd
		for (i = 0; i < r; i++)
			ws->A[r * C + i] = (real)(ws->bet[r] * ws->dec[r * C + i]) *
				ws->KK[r * C + i];
	FN(db_unit_lower_inverse)(ws->A, C, ld, ws->Tm);
	FN(db_gemm_lower)(a->sb, C, w, 1.0, ws->Tm, ld, ws->R, w, 0.0, ws->X,
		w);
	for (r = 0; r < C; r++)
		memcpy(ws->U + r * dv, ws->X + r * w + dk,
			(size_t)dv * sizeof(real));
	GEMM_TILED(a->sb, CblasNoTrans, CblasNoTrans, C, dv, dk, -1.0, ws->X,
		w, S0, dv, 1.0, ws->U, dv);
}

/* S1 = gamma_L S0 + (diag(dec[L]) K)^T U, after db_chunk_fwd. */
static void FN(db_chunk_advance)(const struct FN(db_args) *a, int64_t C,
	const real *S0, real *S1, struct FN(db_ws) *ws)
{
	int64_t dk = a->p->dk, dv = a->p->dv, r, i;

	for (r = 0; r < C; r++) {
		real d = (real)ws->dec[(C - 1) * C + r];

		#pragma omp simd
		for (i = 0; i < dk; i++)
			ws->Kd[r * dk + i] = d * ws->K[r * dk + i];
	}
	memcpy(S1, S0, (size_t)(dk * dv) * sizeof(real));
	GEMM_TILED(a->sb, CblasTrans, CblasNoTrans, dk, dv, C, 1.0, ws->Kd, dk,
		ws->U, dv, ws->gam[C - 1], S1, dv);
}

/* ---- adjoints, in reverse order of the forward ------------------------ */

/* Of (5) and (4): the state and output terms, into dS0, dU (in dX),
 * dQ, dK, dgam, ddec. */
static void FN(db_out_adj)(const struct FN(db_args) *a, int64_t t0,
	int64_t C, int64_t h, const real *S0, struct FN(db_ws) *ws)
{
	int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv, w = dk + dv;
	int64_t L = C - 1, r, i, kv = dk * dv;
	const real *dO = a->dout + (t0 * H + h) * dv;
	real gL = (real)ws->gam[L];
	double acc = 0;

	/* (5) */
	for (i = 0; i < kv; i++) {
		ws->dS0[i] = gL * ws->dS[i];
		acc += (double)ws->dS[i] * (double)S0[i];
	}
	ws->dgam[L] += acc;
	GEMM_TILED(a->sb, CblasNoTrans, CblasNoTrans, C, dv, dk, 1.0, ws->Kd,
		dk, ws->dS, dv, 0.0, ws->dX + dk, w);
	TRANSPOSE(dk, dv, ws->dS, dv, ws->dST);
	GEMM_TILED(a->sb, CblasNoTrans, CblasNoTrans, C, dk, dv, 1.0, ws->U, dv,
		ws->dST, dk, 0.0, ws->Y, dk);
	for (r = 0; r < C; r++) {
		real d = (real)ws->dec[L * C + r];

		ws->ddec[L * C + r] += FN(db_dot)(ws->K + r * dk, ws->Y + r * dk,
			dk);
		#pragma omp simd
		for (i = 0; i < dk; i++)
			ws->dK[r * dk + i] = d * ws->Y[r * dk + i];
	}
	/* (4), inter-chunk term: Z = dO S0^T in Y */
	TRANSPOSE(dk, dv, S0, dv, ws->S0T);
	GEMM_TILED(a->sb, CblasNoTrans, CblasNoTrans, C, dk, dv, 1.0, dO, H * dv,
		ws->S0T, dk, 0.0, ws->Y, dk);
	for (r = 0; r < C; r++) {
		real gr = (real)ws->gam[r];

		ws->dgam[r] += FN(db_dot)(ws->Q + r * dk, ws->Y + r * dk, dk);
		#pragma omp simd
		for (i = 0; i < dk; i++) {
			ws->dQ[r * dk + i] = gr * ws->Y[r * dk + i];
			ws->Kd[r * dk + i] = gr * ws->Q[r * dk + i];
		}
	}
	GEMM_TILED(a->sb, CblasTrans, CblasNoTrans, dk, dv, C, 1.0, ws->Kd, dk,
		dO, H * dv, 1.0, ws->dS0, dv);
	/* (4), intra-chunk term */
	FN(db_gemm_tri)(a->sb, C, dk, 1.0, ws->Q, dk, ws->KT, ws->P);
	TRANSPOSE(C, dv, ws->U, dv, ws->UT);
	FN(db_gemm_tri)(a->sb, C, dv, 1.0, dO, H * dv, ws->UT, ws->dP);
	for (r = 0; r < C; r++) {
		real *Pr = ws->P + r * C, *dPr = ws->dP + r * C;
		const double *decr = ws->dec + r * C;
		double *ddr = ws->ddec + r * C;

		for (i = 0; i <= r; i++) {
			real d = (real)decr[i];

			ddr[i] += (double)dPr[i] * (double)Pr[i];
			Pr[i] *= d;
			dPr[i] *= d;
		}
		for (i = r + 1; i < C; i++)
			Pr[i] = dPr[i] = 0;
	}
	FN(db_gemm_lower_t)(a->sb, C, dv, 1.0, ws->P, C, dO, H * dv, 1.0,
		ws->dX + dk, w);
	FN(db_gemm_lower)(a->sb, C, dk, 1.0, ws->dP, C, ws->K, dk, 1.0, ws->dQ,
		dk);
	FN(db_gemm_lower_t)(a->sb, C, dk, 1.0, ws->dP, C, ws->Q, dk, 1.0,
		ws->dK, dk);
}

/* Of (3) and the solve: dW, dS0, dR = Tm^T dX, dA and what A and R are
 * made of; writes dv of the chunk. */
static void FN(db_solve_adj)(const struct FN(db_args) *a, int64_t t0,
	int64_t C, int64_t h, struct FN(db_ws) *ws)
{
	int64_t H = a->p->H, dk = a->p->dk, dv = a->p->dv, w = dk + dv;
	int64_t r, s, i, ld = db_pad(C);

	/* (3): dW = -dU S0^T; dS0 -= W^T dU */
	GEMM_TILED(a->sb, CblasNoTrans, CblasNoTrans, C, dk, dv, -1.0,
		ws->dX + dk, w, ws->S0T, dk, 0.0, ws->dX, w);
	GEMM_TILED(a->sb, CblasTrans, CblasNoTrans, dk, dv, C, -1.0, ws->X, w,
		ws->dX + dk, w, 1.0, ws->dS0, dv);
	/* the solve */
	FN(db_gemm_lower_t)(a->sb, C, w, 1.0, ws->Tm, ld, ws->dX, w, 0.0,
		ws->dR, w);
	TRANSPOSE(C, w, ws->X, w, ws->XT);
	/* dA = -dR X^T, in P (strictly lower part used) */
	FN(db_gemm_tri)(a->sb, C, w, -1.0, ws->dR, w, ws->XT, ws->P);
	for (s = 0; s < C; s++) {
		const double *decs = ws->dec + s * C;
		double bs = ws->bet[s], db = 0;

		for (r = 0; r < s; r++) {
			double da = ws->P[s * C + r], kk = ws->KK[s * C + r];
			real x = (real)(da * bs * decs[r]);

			db += da * decs[r] * kk;
			ws->ddec[s * C + r] += da * bs * kk;
			ws->dP[s * C + r] = x;
			ws->dP[r * C + s] = x;
		}
		ws->dP[s * C + s] = 0;
		ws->dbet[s] += db;
	}
	GEMM_TILED(a->sb, CblasNoTrans, CblasNoTrans, C, dk, C, 1.0, ws->dP, C,
		ws->K, dk, 1.0, ws->dK, dk);
	/* R = [diag(beta gamma) K | diag(beta) V] */
	for (r = 0; r < C; r++) {
		const real *dRr = ws->dR + r * w, *kr = ws->K + r * dk;
		const real *vr = a->v + ((t0 + r) * H + h) * dv;
		real *dvr = a->dv + ((t0 + r) * H + h) * dv;
		double kdb = FN(db_dot)(dRr, kr, dk);
		real bg = (real)(ws->bet[r] * ws->gam[r]), b = (real)ws->bet[r];

		ws->dbet[r] += ws->gam[r] * kdb + FN(db_dot)(dRr + dk, vr, dv);
		ws->dgam[r] += ws->bet[r] * kdb;
		#pragma omp simd
		for (i = 0; i < dk; i++)
			ws->dK[r * dk + i] += bg * dRr[i];
		#pragma omp simd
		for (i = 0; i < dv; i++)
			dvr[i] = b * dRr[dk + i];
	}
}

/*
 * Of the decays, into dg of the chunk's tokens:
 *   dg_j = sum_{r>=j} dgam_r gam_r + sum_{r>=j} sum_{i<j} ddec[r][i] dec[r][i]
 * the second as, per row r, a running prefix over i, added column-wise.
 */
static void FN(db_decay_adj)(const struct FN(db_args) *a, int64_t t0,
	int64_t C, int64_t h, struct FN(db_ws) *ws)
{
	int64_t H = a->p->H, r, j;
	double *acc = ws->e, run;    /* e is free once the chunk ran */

	run = 0;
	for (r = C - 1; r >= 0; r--) {
		run += ws->dgam[r] * ws->gam[r];
		acc[r] = run;
	}
	for (r = 1; r < C; r++) {
		const double *dd = ws->ddec + r * C, *de = ws->dec + r * C;

		run = 0;
		for (j = 1; j <= r; j++) {
			run += dd[j - 1] * de[j - 1];
			acc[j] += run;
		}
	}
	for (r = 0; r < C; r++) {
		a->dg[(t0 + r) * H + h] = (real)acc[r];
		a->dbeta[(t0 + r) * H + h] = (real)ws->dbet[r];
	}
}

/* One chunk, backwards: ws->dS goes from dL/dS_C to dL/dS0. */
static void FN(db_chunk_adj)(const struct FN(db_args) *a, int64_t t0,
	int64_t C, int64_t h, const real *S0, struct FN(db_ws) *ws)
{
	int64_t H = a->p->H, dk = a->p->dk, r, i;

	FN(db_chunk_fwd)(a, t0, C, h, S0, ws);
	for (r = 0; r < C; r++) {
		real d = (real)ws->dec[(C - 1) * C + r];

		#pragma omp simd
		for (i = 0; i < dk; i++)
			ws->Kd[r * dk + i] = d * ws->K[r * dk + i];
	}
	memset(ws->ddec, 0, (size_t)(C * C) * sizeof(double));
	memset(ws->dgam, 0, (size_t)C * sizeof(double));
	memset(ws->dbet, 0, (size_t)C * sizeof(double));
	FN(db_out_adj)(a, t0, C, h, S0, ws);
	FN(db_solve_adj)(a, t0, C, h, ws);
	FN(db_decay_adj)(a, t0, C, h, ws);
	for (r = 0; r < C; r++) {
		memcpy(a->Dq + ((t0 + r) * H + h) * dk, ws->dQ + r * dk,
			(size_t)dk * sizeof(real));
		memcpy(a->Dk + ((t0 + r) * H + h) * dk, ws->dK + r * dk,
			(size_t)dk * sizeof(real));
	}
	memcpy(ws->dS, ws->dS0, (size_t)(dk * a->p->dv) * sizeof(real));
}

/* Item (n, h): the forward sweep keeps the state entering each chunk,
 * the reverse sweep carries dS from dstate to dstate0. */
static void FN(db_item)(const struct FN(db_args) *a, int64_t n, int64_t h,
	struct FN(db_ws) *ws)
{
	int64_t kv = a->p->dk * a->p->dv, Cn = a->p->chunk, c, nc, t0, C;
	int64_t beg = a->cu[n], end = a->cu[n + 1];
	size_t off = (size_t)(n * a->p->H + h) * (size_t)kv;

	nc = end == beg ? 0 : (end - beg - 1) / Cn + 1;
	if (nc > 0) {
		if (a->state0)
			memcpy(ws->S, a->state0 + off, (size_t)kv * sizeof(real));
		else
			memset(ws->S, 0, (size_t)kv * sizeof(real));
	}
	for (c = 0; c + 1 < nc; c++) {
		t0 = beg + c * Cn;
		FN(db_chunk_fwd)(a, t0, Cn, h, ws->S + c * kv, ws);
		FN(db_chunk_advance)(a, Cn, ws->S + c * kv,
			ws->S + (c + 1) * kv, ws);
	}
	if (a->dstate)
		memcpy(ws->dS, a->dstate + off, (size_t)kv * sizeof(real));
	else
		memset(ws->dS, 0, (size_t)kv * sizeof(real));
	for (c = nc - 1; c >= 0; c--) {
		t0 = beg + c * Cn;
		C = db_min(end - t0, Cn);
		FN(db_chunk_adj)(a, t0, C, h, ws->S + c * kv, ws);
	}
	if (a->dstate0)
		memcpy(a->dstate0 + off, ws->dS, (size_t)kv * sizeof(real));
}

/*
 * dq, dk of qk head hk at token t: the prepared-space gradients of the
 * value heads h of its group summed in head order, then through
 * q *= scale and x / sqrt(x . x + eps): J^T y = (y - x^ (x^ . y)) / n,
 * x^ = x / n (lib/ref/deltanet_bwd.c dn_prepare_adj), in double. The
 * row sum goes into y whole before dx is written, so Dx may be dx
 * (H = Hk).
 */
static void FN(db_prepare_adj)(const lca_params *p, int64_t t, int64_t hk,
	double sc, const real *x, const real *Dx, real *dx, double *y)
{
	int64_t dk = p->dk, grp = p->H / p->Hk, h, i;
	const real *xr = x + (t * p->Hk + hk) * dk;
	const real *D0 = Dx + (t * p->H + hk * grp) * dk;
	real *out = dx + (t * p->Hk + hk) * dk;
	double nrm = 1, ydy = 0, ss = 0;

	#pragma omp simd
	for (i = 0; i < dk; i++)
		y[i] = sc * D0[i];
	for (h = 1; h < grp; h++)
		#pragma omp simd
		for (i = 0; i < dk; i++)
			y[i] += sc * D0[h * dk + i];
	if (p->qk_l2norm) {
		#pragma omp simd reduction(+:ss, ydy)
		for (i = 0; i < dk; i++) {
			ss += (double)xr[i] * xr[i];
			ydy += (double)xr[i] * y[i];
		}
		nrm = sqrt(ss + DB_L2_EPS);
		ydy /= nrm;
	}
	#pragma omp simd
	for (i = 0; i < dk; i++)
		out[i] = (real)((y[i] - (xr[i] / nrm) * ydy) / nrm);
}

static lca_status FN(db_run)(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *g, const void *beta, const void *state0, const void *dout,
	const void *dstate, void *dq, void *dk, void *dv, void *dg,
	void *dbeta, void *dstate0)
{
	struct FN(db_args) a = { p, cu, q, k, v, g, beta, state0, dout, dstate,
		dv, dg, dbeta, dstate0, dq, dk, 1, 1, 1 };
	int64_t items = nseq * p->H, maxlen = db_max_len(cu, nseq), T = cu[nseq];
	int64_t it, nt, rows;
	size_t wsb, scratch = 0;
	char *block;

	a.cap = db_min(maxlen, p->chunk);
	if (a.cap < 1)
		a.cap = 1;
	a.nck = maxlen == 0 ? 1 : (maxlen - 1) / a.cap + 1;
	if (p->dk + p->dv > INT_MAX || p->H > INT_MAX / p->dv ||
	    p->Hk > INT_MAX / p->dk)
		return lcai_fail(LCA_ERR_UNSUPPORTED, "cpu deltanet backward: "
			"a size passed to BLAS exceeds INT_MAX");
	nt = lcai_cpu_threads(p);
	if (nt > items)
		nt = items;
	if (nt < 1)
		nt = 1;
	a.sb = nt > 1 || p->nthreads > 0;
	wsb = FN(db_ws_bytes)(p, a.cap, a.nck);
	if (p->H > p->Hk && (!lcai_mul(T * p->H, p->dk, &rows) ||
	    !db_add(&scratch, rows, sizeof(real)) ||
	    !db_add(&scratch, rows, sizeof(real))))
		wsb = 0;
	if (wsb == 0 || wsb > (SIZE_MAX - scratch) / (size_t)nt)
		return lcai_fail(LCA_ERR_NOMEM, "cpu deltanet backward: "
			"workspace size overflows");
	block = aligned_alloc(DB_ALIGN, wsb * (size_t)nt + scratch);
	if (!block)
		return lcai_fail(LCA_ERR_NOMEM, "cpu deltanet backward: cannot "
			"allocate %zu bytes of workspace",
			wsb * (size_t)nt + scratch);
	if (scratch) {
		a.Dq = (real *)(block + wsb * (size_t)nt);
		a.Dk = a.Dq + T * p->H * p->dk;
	}

	#pragma omp parallel num_threads((int)nt)
	{
		struct FN(db_ws) ws;
		int64_t i, Thk = T * p->Hk;

		FN(db_ws_carve)(&ws, p, a.cap, a.nck,
			block + (size_t)db_tid() * wsb);
		#pragma omp for schedule(dynamic, 1)
		for (it = 0; it < items; it++)
			FN(db_item)(&a, it / p->H, it % p->H, &ws);
		#pragma omp for schedule(static)
		for (i = 0; i < Thk; i++) {
			FN(db_prepare_adj)(p, i / p->Hk, i % p->Hk, p->scale,
				q, a.Dq, dq, ws.y);
			FN(db_prepare_adj)(p, i / p->Hk, i % p->Hk, 1.0, k,
				a.Dk, dk, ws.y);
		}
	}
	free(block);
	return LCA_OK;
}

#endif /* DB_TEMPLATE */
