/*
 * gemm.c - GEMM cut into calling-thread-sized pieces (see gemm.h), or
 * for float32 at the AVX2 and AVX-512 levels our own kernels
 * (gemm_small.c). The first piece along k applies beta, the rest
 * accumulate. Also the transpose that turns A B^T products into NN ones.
 */
#include "gemm.h"
#include "bf16.h"

#define SERIAL_MNK (64 * 64 * 64)
#define TILE 64

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

#define DEFINE_GEMM(name, real, gemm, SMALL)                                   \
void name(int serial_blas, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb,             \
	int64_t m, int64_t n, int64_t k, double alpha, const real *A,          \
	int64_t lda, const real *B, int64_t ldb, double beta, real *C,         \
	int64_t ldc)                                                           \
{                                                                              \
	int64_t mb = m, nb = n, kb = k;                                        \
                                                                               \
	if (serial_blas && SMALL(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, \
	    C, ldc))                                                           \
		return;                                                        \
	if (serial_blas) {                                                     \
		mb = min64(m, TILE);                                           \
		nb = min64(n, TILE);                                           \
		kb = min64(k, SERIAL_MNK / (mb * nb));                         \
	}                                                                      \
	for (int64_t i = 0; i < m; i += mb)                                    \
		for (int64_t j = 0; j < n; j += nb)                            \
			for (int64_t l = 0; l < k; l += kb) {                  \
				const real *a = ta == CblasNoTrans ?           \
					A + i * lda + l : A + l * lda + i;     \
				const real *b = tb == CblasNoTrans ?           \
					B + l * ldb + j : B + j * ldb + l;     \
				gemm(CblasRowMajor, ta, tb,                    \
					(int)min64(mb, m - i),                 \
					(int)min64(nb, n - j),                 \
					(int)min64(kb, k - l), alpha, a,       \
					(int)lda, b, (int)ldb,                 \
					l == 0 ? beta : 1.0, C + i * ldc + j,  \
					(int)ldc);                             \
			}                                                      \
}

/* float32: our own kernels where the ISA level has them (gemm_small.c) */
#define SMALL_F32(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)        \
	lcai_cpu_gemm_small_f32(ta, tb, m, n, k, (float)(alpha), A, lda, B,    \
		ldb, (float)(beta), C, ldc)
#define NO_SMALL(...) 0
DEFINE_GEMM(lcai_cpu_gemm_f32, float, cblas_sgemm, SMALL_F32)
DEFINE_GEMM(lcai_cpu_gemm_f64, double, cblas_dgemm, NO_SMALL)

/* Rows of src taken together by the transpose: 8 floats or doubles of a
 * dst row are stored at once. */
#define STRIP 8

#define DEFINE_TRANSPOSE(name, elem, real, LD)                                 \
void name(int64_t n, int64_t m, const elem *src, int64_t ld, real *dst)        \
{                                                                              \
	int64_t i = 0;                                                         \
                                                                               \
	for (; i + STRIP <= n; i += STRIP)                                     \
		for (int64_t j = 0; j < m; j++)                                \
			for (int64_t s = 0; s < STRIP; s++)                    \
				dst[j * n + i + s] = LD(src[(i + s) * ld + j]); \
	for (; i < n; i++)                                                     \
		for (int64_t j = 0; j < m; j++)                                \
			dst[j * n + i] = LD(src[i * ld + j]);                  \
}

#define AS_IS(x) (x)
DEFINE_TRANSPOSE(lcai_cpu_transpose_f32, float, float, AS_IS)
DEFINE_TRANSPOSE(lcai_cpu_transpose_f64, double, double, AS_IS)
DEFINE_TRANSPOSE(lcai_cpu_transpose_bf16, uint16_t, float, lcai_bf16_widen)
