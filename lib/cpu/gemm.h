/*
 * gemm.h - BLAS GEMM for use inside our OpenMP regions.
 *
 * Debian's OpenBLAS is the pthreads build: inside an OpenMP parallel region
 * a large GEMM starts its own threads on top of ours and oversubscribes the
 * cores (measured: lightning 5x slower). OpenBLAS 0.3.21 runs a GEMM on the
 * calling thread when m*n*k <= 64^3, so with serial_blas set the product is
 * cut into calls of at most that size; otherwise it is one call and BLAS may
 * use every core.
 *
 * At that size OpenBLAS takes its small-matrix path, and on AMD Zen 5 it
 * runs its AVX2 (HASWELL) kernels: so with serial_blas set, float32 goes
 * to our own kernels instead (gemm_small.c) at the AVX2 and AVX-512
 * levels (lcai_isa_best()); the SSE level, other architectures and
 * float64 keep the BLAS pieces.
 */
#ifndef LCATTN_CPU_GEMM_H
#define LCATTN_CPU_GEMM_H

#include <cblas.h>
#include <stdint.h>

/* C = alpha op(A) op(B) + beta C, row-major, k >= 1; sizes must fit int. */
void lcai_cpu_gemm_f32(int serial_blas, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb,
	int64_t m, int64_t n, int64_t k, double alpha, const float *A,
	int64_t lda, const float *B, int64_t ldb, double beta, float *C,
	int64_t ldc);
void lcai_cpu_gemm_f64(int serial_blas, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb,
	int64_t m, int64_t n, int64_t k, double alpha, const double *A,
	int64_t lda, const double *B, int64_t ldb, double beta, double *C,
	int64_t ldc);

/*
 * The serial float32 product of our own (gemm_small.c), whole, on the
 * calling thread: C = alpha op(A) op(B) + beta C, row-major, with BLAS's
 * rules (beta 0 never reads C; alpha 0 or k 0 only scales C by beta).
 * Returns 0, having done nothing, where the ISA level has no kernel.
 */
int lcai_cpu_gemm_small_f32(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb,
	int64_t m, int64_t n, int64_t k, float alpha, const float *A,
	int64_t lda, const float *B, int64_t ldb, float beta, float *C,
	int64_t ldc);

/*
 * dst[j][i] = src[i][j] for n rows src of m elements, ld apart; dst is
 * [m][n]. The kernels form K^T once per chunk with this so that products
 * with K^T are plain NN GEMMs: OpenBLAS 0.3.21 sends a row-major A B^T
 * down its packed path, measured 1.7x slower than the small-matrix NN
 * path at the 64^3 calls above. float32 and bf16 sources go by 8 x 8
 * blocks in vector registers at the AVX2 and AVX-512 levels (gemm.c);
 * float64 and the SSE level eight rows at a time (a cache line of stores
 * per column): 5x faster than element by element.
 */
void lcai_cpu_transpose_f32(int64_t n, int64_t m, const float *src,
	int64_t ld, float *dst);
void lcai_cpu_transpose_f64(int64_t n, int64_t m, const double *src,
	int64_t ld, double *dst);
/* The same from bf16 bits, widened to float32 on the way. */
void lcai_cpu_transpose_bf16(int64_t n, int64_t m, const uint16_t *src,
	int64_t ld, float *dst);

#endif /* LCATTN_CPU_GEMM_H */
