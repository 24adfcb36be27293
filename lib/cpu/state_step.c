/*
 * state_step.c - the single-token steps of Gated DeltaNet and Lightning
 * attention: what a decode step does to each head's state, at the cost
 * of reading and writing the state once.
 *
 * A step touches every element of S [dk][dv] a few times and does a few
 * flops per element, so its cost is the state's bytes if S crosses the
 * memory hierarchy once. Columns are independent given their own part of
 * u = beta (v - e S^T k) (deltanet) or v (lightning), so the kernels go
 * by column blocks of ST_NV vectors (128 or 256 bytes of each row, whole
 * cache lines): a deltanet block is read once for its S^T k, then updated
 * and multiplied by q from L1 in a second pass; a lightning block needs
 * one pass. Accumulators (S^T k, S^T q) stay in registers across the dk
 * rows: ST_NV vectors of them plus the block's u or v, a few broadcasts
 * and temporaries fit 16 ymm registers at ST_NV = 4 (AVX2) as they fit
 * the 32 zmm.
 *
 * Measured (f32, H = 8, dk = dv = 128, 0.5 MiB of state, one step through
 * lca_deltanet_step / lca_lightning_step, Zen 4 core, AVX-512): see
 * deltanet.c and lightning.c, which call these per (sequence, head).
 *
 * The kernels are built for AVX-512, AVX2+FMA and SSE2 (the portable
 * build: plain vector arithmetic) and chosen at run time (isa.h).
 */
#include "state_step.h"
#include "isa.h"

#include <string.h>

/* Rows ahead a kernel asks for (lines of the column block). */
#define ST_PF 8

#define ST_TARGET
#define ST_VB 16
#define ST_NV 4
#define ST_FMA 0
#define FT float
#define OPS lcai_step_f32
#define FN(name) name##_f32_sse
#define VFMA(a, b, c) ((a) * (b) + (c))
#define SFMA(a, b, c) ((a) * (b) + (c))
#include "state_step_kern.h"
#define FT double
#define OPS lcai_step_f64
#define FN(name) name##_f64_sse
#define VFMA(a, b, c) ((a) * (b) + (c))
#define SFMA(a, b, c) ((a) * (b) + (c))
#include "state_step_kern.h"
#undef ST_TARGET
#undef ST_VB
#undef ST_NV
#undef ST_FMA

#ifdef LCAI_X86
#define ST_TARGET __attribute__((target("avx2,fma")))
#define ST_VB 32
#define ST_NV 4
#define ST_FMA 1
#define FT float
#define OPS lcai_step_f32
#define FN(name) name##_f32_avx2
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define SFMA(a, b, c) __builtin_fmaf(a, b, c)
#include "state_step_kern.h"
#define FT double
#define OPS lcai_step_f64
#define FN(name) name##_f64_avx2
#define VFMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define SFMA(a, b, c) __builtin_fma(a, b, c)
#include "state_step_kern.h"
#undef ST_TARGET
#undef ST_VB
#undef ST_NV

#define ST_TARGET __attribute__((target("avx512f,fma")))
#define ST_VB 64
#define ST_NV 4
#define FT float
#define OPS lcai_step_f32
#define FN(name) name##_f32_avx512
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SFMA(a, b, c) __builtin_fmaf(a, b, c)
#include "state_step_kern.h"
#define FT double
#define OPS lcai_step_f64
#define FN(name) name##_f64_avx512
#define VFMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define SFMA(a, b, c) __builtin_fma(a, b, c)
#include "state_step_kern.h"
#undef ST_TARGET
#undef ST_VB
#undef ST_NV
#undef ST_FMA
#endif /* LCAI_X86 */

const struct lcai_step_f32 *lcai_step_f32(void)
{
#ifdef LCAI_X86
	switch (lcai_isa_best()) {
	case LCAI_ISA_AVX512:
		return &step_ops_f32_avx512;
	case LCAI_ISA_AVX2:
		return &step_ops_f32_avx2;
	case LCAI_ISA_SSE:
		break;
	}
#endif
	return &step_ops_f32_sse;
}

const struct lcai_step_f64 *lcai_step_f64(void)
{
#ifdef LCAI_X86
	switch (lcai_isa_best()) {
	case LCAI_ISA_AVX512:
		return &step_ops_f64_avx512;
	case LCAI_ISA_AVX2:
		return &step_ops_f64_avx2;
	case LCAI_ISA_SSE:
		break;
	}
#endif
	return &step_ops_f64_sse;
}
