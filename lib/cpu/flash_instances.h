/*
 * flash_instances.h - the (type, ISA) instances of a flash engine, one
 * list for the forward (softmax.c) and the backward (softmax_bwd.c).
 *
 * The including file defines FLASH_SELF as its own name in quotes; each
 * instance includes it again with FLASH_TEMPLATE defined, after setting
 * the register-block width (FLASH_VB, FLASH_NB), the target attribute, the
 * element and index types (FT, FI), the name suffix (FN) and the fused
 * multiply-add (VFMA). Each inclusion of the template consumes FT, FI and
 * FN (it undefines them); the width settings are undefined here. No
 * include guard: it is meant to be included once per engine.
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
#undef FLASH_VB
#undef FLASH_NB
#undef FLASH_TARGET
#endif /* FLASH_X86 */
#undef FLASH_TEMPLATE
#undef FLASH_SELF
