/*
 * isa.h - which x86-64 level the vector kernels of softmax.c and decode.c
 * may use on this CPU: each is built per level and picks one at run time,
 * and both must agree on what a level requires (the AVX2 builds use FMA).
 */
#ifndef LCA_CPU_ISA_H
#define LCA_CPU_ISA_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LCAI_X86 1
#include <immintrin.h>
#endif

enum lcai_isa { LCAI_ISA_SSE, LCAI_ISA_AVX2, LCAI_ISA_AVX512 };

/* The widest level this CPU runs (__builtin_cpu_supports includes the
 * operating system's support for the wide registers). */
static inline enum lcai_isa lcai_isa_best(void)
{
#ifdef LCAI_X86
	if (__builtin_cpu_supports("avx512f"))
		return LCAI_ISA_AVX512;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return LCAI_ISA_AVX2;
#endif
	return LCAI_ISA_SSE;
}

#endif
