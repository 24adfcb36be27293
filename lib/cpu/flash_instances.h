/*
 * flash_instances.h - compile the including file's engine once per
 * (element type, vector width): float and double, each for SSE and, on
 * x86, for AVX2+FMA and AVX-512, and, where the includer defines
 * FLASH_WANT_BF16 and the compiler has AVX-512 BF16, once more for bf16
 * tensors (FLASH_BF16). The includer defines FLASH_SELF as its
 * own file name and guards its template part with FLASH_TEMPLATE. Each
 * inclusion of the template consumes FT, FI, FN and VFMA (it undefines
 * them); the width settings stay until undefined here.
 */
#define FLASH_TEMPLATE
#define FLASH_VB 16
#define FLASH_NB 2
#define FLASH_TARGET
#define FT float
#define FI int32_t
#define FN(name) name##_f32_sse
#define VFMA(a, b, c) ((a) * (b) + (c))
#include FLASH_SELF
#define FT double
#define FI int64_t
#define FN(name) name##_f64_sse
#define VFMA(a, b, c) ((a) * (b) + (c))
#include FLASH_SELF
#undef FLASH_VB
#undef FLASH_NB
#undef FLASH_TARGET

#ifdef FLASH_X86
#define FLASH_VB 32
#define FLASH_NB 2
#define FLASH_TARGET __attribute__((target("avx2,fma")))
#define FT float
#define FI int32_t
#define FN(name) name##_f32_avx2
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#include FLASH_SELF
#define FT double
#define FI int64_t
#define FN(name) name##_f64_avx2
#define VFMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#include FLASH_SELF
#undef FLASH_VB
#undef FLASH_NB
#undef FLASH_TARGET

#define FLASH_VB 64
#define FLASH_NB 4
#define FLASH_TARGET __attribute__((target("avx512f")))
#define FT float
#define FI int32_t
#define FN(name) name##_f32_avx512
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#include FLASH_SELF
#define FT double
#define FI int64_t
#define FN(name) name##_f64_avx512
#define VFMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#include FLASH_SELF
#if defined(FLASH_WANT_BF16) && defined(LCAI_BF16DOT)
/* bf16 tensors, float arithmetic, logits by vdpbf16ps (flash_bf16.h) */
#undef FLASH_TARGET
#define FLASH_TARGET __attribute__((target("avx512f,avx512bf16")))
#define FLASH_BF16 1
#define FT float
#define FI int32_t
#define FN(name) name##_bf16_avx512
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#include FLASH_SELF
#undef FLASH_BF16
#endif
#undef FLASH_VB
#undef FLASH_NB
#undef FLASH_TARGET
#endif /* FLASH_X86 */
#undef FLASH_TEMPLATE
