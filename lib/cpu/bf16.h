/*
 * bf16.h - bfloat16 bits (uint16_t) to and from float32, for the cpu
 * kernels that read bf16 inputs and write bf16 outputs themselves
 * (deltanet.c, lightning.c) and for bf16.c.
 */
#ifndef LCA_CPU_BF16_H
#define LCA_CPU_BF16_H

#include <stdint.h>
#include <string.h>

/* Exact: a bf16 is the high half of a float. */
static inline float lcai_bf16_widen(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float f;

	memcpy(&f, &u, sizeof f);
	return f;
}

/* Nearest bf16, ties to even. Outputs are finite or -inf (lse of a fully
 * masked row), never NaN, for which the carry would be wrong; a finite
 * value above the largest bf16 becomes inf, as correct rounding asks. */
static inline uint16_t lcai_bf16_round(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof u);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

#endif /* LCA_CPU_BF16_H */
