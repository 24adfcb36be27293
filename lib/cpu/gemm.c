/*
 * gemm.c - GEMM cut into calling-thread-sized pieces (see gemm.h), or
 * for float32 at the AVX2 and AVX-512 levels our own kernels
 * (gemm_small.c). The first piece along k applies beta, the rest
 * accumulate. Also the transpose that turns A B^T products into NN ones.
 */
#include "gemm.h"
#include "bf16.h"
#include "isa.h"

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

/*
 * The vector transposes (float32 and bf16 sources, AVX2 and AVX-512
 * levels): 8 x 8 blocks in eight ymm registers, 8 rows of src loaded
 * whole (bf16 widened by a shift, exact as lcai_bf16_widen), turned by
 * unpacks, shuffles and 128-bit lane swaps and stored as 8 rows of dst;
 * the last n % 8 rows and m % 8 columns take the scalar loop. The
 * AVX-512 level runs the same ymm code: a 16 x 16 block in zmm registers
 * would halve the shuffles, but the transpose is no longer a visible
 * part of deltanet's gather (perf, lcattn bench deltanet f32 T = 16K, 2
 * threads, AMD EPYC Zen 5: 3.5x fewer samples than the scalar strips,
 * 1.5% of the kernel's samples before, 0.4% after; most of the gather
 * was waiting on memory, see dn_prefetch in deltanet.c). A transpose
 * only moves values, so every level gives the same bits.
 */
#ifdef LCAI_X86
#define TR_TARGET __attribute__((target("avx2")))

TR_TARGET static inline void tr8x8(__m256 r[8], float *dst, int64_t ldd)
{
	__m256 t0 = _mm256_unpacklo_ps(r[0], r[1]);
	__m256 t1 = _mm256_unpackhi_ps(r[0], r[1]);
	__m256 t2 = _mm256_unpacklo_ps(r[2], r[3]);
	__m256 t3 = _mm256_unpackhi_ps(r[2], r[3]);
	__m256 t4 = _mm256_unpacklo_ps(r[4], r[5]);
	__m256 t5 = _mm256_unpackhi_ps(r[4], r[5]);
	__m256 t6 = _mm256_unpacklo_ps(r[6], r[7]);
	__m256 t7 = _mm256_unpackhi_ps(r[6], r[7]);
	/* s_c: column c of rows 0-3 (low lane) and column c + 4 (high) */
	__m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
	__m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
	__m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
	__m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));

	_mm256_storeu_ps(dst + 0 * ldd, _mm256_permute2f128_ps(s0, s4, 0x20));
	_mm256_storeu_ps(dst + 1 * ldd, _mm256_permute2f128_ps(s1, s5, 0x20));
	_mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(s2, s6, 0x20));
	_mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(s3, s7, 0x20));
	_mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(s0, s4, 0x31));
	_mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(s1, s5, 0x31));
	_mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(s2, s6, 0x31));
	_mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(s3, s7, 0x31));
}

TR_TARGET static inline __m256 tr_load_f32(const float *p)
{
	return _mm256_loadu_ps(p);
}

TR_TARGET static inline __m256 tr_load_bf16(const uint16_t *p)
{
	__m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));

	return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

#define DEFINE_TRANSPOSE_AVX2(name, elem, LOADV, LD)                           TR_TARGET static void name(int64_t n, int64_t m, const elem *src, int64_t ld,  	float *dst)                                                            {                                                                              	int64_t i = 0, j;                                                                                                                                     	for (; i + 8 <= n; i += 8) {                                           		for (j = 0; j + 8 <= m; j += 8) {                              			__m256 r[8];                                                                                                                          			for (int s = 0; s < 8; s++)                            				r[s] = LOADV(src + (i + s) * ld + j);          			tr8x8(r, dst + j * n + i, n);                          		}                                                              		for (; j < m; j++)                                             			for (int64_t s = 0; s < 8; s++)                        				dst[j * n + i + s] = LD(src[(i + s) * ld + j]); 	}                                                                      	for (; i < n; i++)                                                     		for (j = 0; j < m; j++)                                        			dst[j * n + i] = LD(src[i * ld + j]);                  }

#define AS_IS(x) (x)
DEFINE_TRANSPOSE_AVX2(transpose_f32_avx2, float, tr_load_f32, AS_IS)
DEFINE_TRANSPOSE_AVX2(transpose_bf16_avx2, uint16_t, tr_load_bf16,
	lcai_bf16_widen)
#define VEC_F32(n, m, src, ld, dst)                                            	(lcai_isa_best() != LCAI_ISA_SSE ?                                     	 (transpose_f32_avx2(n, m, src, ld, dst), 1) : 0)
#define VEC_BF16(n, m, src, ld, dst)                                           	(lcai_isa_best() != LCAI_ISA_SSE ?                                     	 (transpose_bf16_avx2(n, m, src, ld, dst), 1) : 0)
#else
#define AS_IS(x) (x)
#define VEC_F32(...) 0
#define VEC_BF16(...) 0
#endif /* LCAI_X86 */
#define NO_VEC(...) 0

#define DEFINE_TRANSPOSE(name, elem, real, LD, VEC)                            \
void name(int64_t n, int64_t m, const elem *src, int64_t ld, real *dst)        \
{                                                                              \
	int64_t i = 0;                                                         \
                                                                               \
	if (VEC(n, m, src, ld, dst))                                           \
		return;                                                        \
	for (; i + STRIP <= n; i += STRIP)                                     \
		for (int64_t j = 0; j < m; j++)                                \
			for (int64_t s = 0; s < STRIP; s++)                    \
				dst[j * n + i + s] = LD(src[(i + s) * ld + j]); \
	for (; i < n; i++)                                                     \
		for (int64_t j = 0; j < m; j++)                                \
			dst[j * n + i] = LD(src[i * ld + j]);                  \
}

DEFINE_TRANSPOSE(lcai_cpu_transpose_f32, float, float, AS_IS, VEC_F32)
DEFINE_TRANSPOSE(lcai_cpu_transpose_f64, double, double, AS_IS, NO_VEC)
DEFINE_TRANSPOSE(lcai_cpu_transpose_bf16, uint16_t, float, lcai_bf16_widen,
	VEC_BF16)
