/*
 * gemm_small.c - our own float32 GEMM for the products that deltanet and
 * lightning (forward and backward) run inside their OpenMP regions
 * (lcai_cpu_gemm_f32 with serial_blas set, gemm.h).
 *
 * Why not BLAS there: a pthreads OpenBLAS must be kept on the calling
 * thread inside our parallel regions (gemm.h), which Debian's 0.3.21
 * does only for products of at most 64^3, so those products reached it
 * as 64 x 64 x 64 pieces. At that size OpenBLAS runs its small-matrix
 * path, and on AMD Zen 5 it dispatches its HASWELL (AVX2) kernels, not
 * AVX-512: deltanet and lightning f32 prefill ran at 0.25 and 0.28 of
 * the roofline (lcattn bench, T = 16K, 2 threads, EPYC Zen 5).
 *
 * The kernel: a register tile of GS_MR rows of C by GS_NV vectors, k
 * innermost, each step loading GS_NV vectors of a row of B and
 * broadcasting one element of op(A) per row: AVX-512 8 rows x 2 zmm (16
 * accumulators, two vectors of B and a broadcast: 19 of the 32 zmm
 * registers), AVX2 6 x 2 ymm (12 accumulators: 15 of the 16). Both keep more
 * independent accumulators than the two FMA pipes need to hide their
 * latency, and panels of 32 and 16 columns divide the callers' widths
 * (dk, dv, and deltanet's ncol = r0 + rt in steps of DN_ROW_TILE = 16).
 * Measured against 4 x 3 ymm at AVX2: as fast at 64 columns, 0.6x at
 * 128 (the 24-column panels leave an 8-column one of 4 accumulators).
 * No packing: B (not transposed in every serial caller) is read in
 * place, a panel of k x GS_NV vectors that stays in L1 while the tiles
 * of op(A) go down it, and op(A) is read in place whether transposed or
 * not (a transposed A gives each step's GS_MR elements side by side).
 * Edges need no tail kernels: a last partial vector of columns is
 * loaded and stored through a lane mask, and the rows of a last partial
 * row tile repeat its last row, computed and not stored.
 *
 * Measured alone (lcai_cpu_gemm_f32 of the library build against one
 * cblas_sgemm call, C += A B, one thread, AMD EPYC Zen 5, GFLOP/s, best
 * of 5 in one run; one core's FMA peak is about 268 at AVX-512, 134 at
 * AVX2): at AVX-512 64 x 64 x 64 241 against 118, 16 x 64 x 128 (a
 * deltanet row tile) 252 against 103, A^T B 128 x 128 x 64 (the state
 * update) 243 against 124; under LCA_CPU_ISA=avx2 124, 114 and 123
 * against 118, 102 and 124 (OpenBLAS runs AVX2 kernels either way).
 * deltanet and lightning f32 prefill (lcattn bench, H = 8, d = 128, 2
 * threads): see the commit that brought this file.
 *
 * Each element of C is one chain of fused multiply-adds over p = 0 ..
 * k-1, then alpha, then beta C: the same bits for any thread count and
 * on every run (the order depends only on the ISA level).
 *
 * The SSE level and builds for other architectures keep BLAS. float64
 * products stay on BLAS too (the f64 paths are the accurate ones, not
 * the fast ones).
 */
#include "gemm.h"
#include "isa.h"

#include <string.h>

/* Rows of op(B) by columns copied at a time when B is transposed. */
#define GS_KB 64
#define GS_NB 64

#ifdef LCAI_X86
#define GS_TARGET __attribute__((target("avx2,fma")))
#define FN(name) name##_avx2
#define GS_MR 6
#define GS_NV 2
#define VT __m256
#define VW 8
#define MT __m256i
#define VZERO() _mm256_setzero_ps()
#define VSET1(x) _mm256_set1_ps(x)
#define VLOAD(p) _mm256_loadu_ps(p)
#define VLOADM(p, m) _mm256_maskload_ps((p), (m))
#define VSTORE(p, x) _mm256_storeu_ps((p), (x))
#define VSTOREM(p, m, x) _mm256_maskstore_ps((p), (m), (x))
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define MASK(r) _mm256_cmpgt_epi32(_mm256_set1_epi32(r), \
	_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#include "gemm_small_kern.h"

#define GS_TARGET __attribute__((target("avx512f,fma")))
#define FN(name) name##_avx512
#define GS_MR 8
#define GS_NV 2
#define VT __m512
#define VW 16
#define MT __mmask16
#define VZERO() _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VLOAD(p) _mm512_loadu_ps(p)
#define VLOADM(p, m) _mm512_maskz_loadu_ps((m), (p))
#define VSTORE(p, x) _mm512_storeu_ps((p), (x))
#define VSTOREM(p, m, x) _mm512_mask_storeu_ps((p), (m), (x))
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define MASK(r) ((__mmask16)((1u << (r)) - 1u))
#include "gemm_small_kern.h"
#endif /* LCAI_X86 */

/* alpha 0 or k 0: C = beta C without reading A or B (BLAS's rule), and
 * beta 0 writes zeros without reading C. */
static void scale_c(int64_t m, int64_t n, float beta, float *C, int64_t ldc)
{
	for (int64_t i = 0; i < m; i++) {
		float *c = C + i * ldc;

		if (beta == 0.0f)
			memset(c, 0, (size_t)n * sizeof *c);
		else
			for (int64_t j = 0; j < n; j++)
				c[j] *= beta;
	}
}

int lcai_cpu_gemm_small_f32(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb,
	int64_t m, int64_t n, int64_t k, float alpha, const float *A,
	int64_t lda, const float *B, int64_t ldb, float beta, float *C,
	int64_t ldc)
{
#ifdef LCAI_X86
	enum lcai_isa isa = lcai_isa_best();
	/* conjugation is nothing on real numbers */
	int at = ta == CblasTrans || ta == CblasConjTrans;
	int bt = tb == CblasTrans || tb == CblasConjTrans;

	if (isa == LCAI_ISA_SSE)
		return 0;
	if (m <= 0 || n <= 0)
		return 1;
	if (k <= 0 || alpha == 0.0f) {
		scale_c(m, n, beta, C, ldc);
		return 1;
	}
	if (isa == LCAI_ISA_AVX512)
		gemm_avx512(at, bt, m, n, k, alpha, A, lda, B, ldb, beta, C,
			ldc);
	else
		gemm_avx2(at, bt, m, n, k, alpha, A, lda, B, ldb, beta, C,
			ldc);
	return 1;
#else
	(void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)A;
	(void)lda, (void)B, (void)ldb, (void)beta, (void)C, (void)ldc;
	return 0;
#endif
}
