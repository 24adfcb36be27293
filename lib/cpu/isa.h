/*
 * isa.h - which x86-64 level the vector kernels of softmax.c, softmax_bwd.c
 * and decode.c may use: each is built per level and picks one at run time,
 * and all must agree on what a level requires (the AVX2 builds use FMA).
 */
#ifndef LCA_CPU_ISA_H
#define LCA_CPU_ISA_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LCAI_X86 1
#include <immintrin.h>
#endif

enum lcai_isa { LCAI_ISA_SSE, LCAI_ISA_AVX2, LCAI_ISA_AVX512 };

/* The level the kernels use: the widest this CPU runs, capped by the
 * environment variable LCA_CPU_ISA (lcattn(7)), decided at the first
 * call of the process and the same for every later one. */
enum lcai_isa lcai_isa_best(void);

#endif
