/*
 * isa.h - which x86-64 level the vector kernels of softmax.c, softmax_bwd.c
 * and decode.c may use: each is built per level and picks one at run time,
 * and all must agree on what a level requires (the AVX2 builds use FMA).
 */
#ifndef LCA_CPU_ISA_H
#define LCA_CPU_ISA_H

#include "config.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LCAI_X86 1
#include <immintrin.h>
/* The compiler builds the AVX-512 BF16 kernel (configure's check). */
#ifdef HAVE_AVX512BF16
#define LCAI_BF16DOT 1
#endif
#endif

/* Vector widths: the levels every kernel is built for. */
enum lcai_isa { LCAI_ISA_SSE, LCAI_ISA_AVX2, LCAI_ISA_AVX512 };

/* The level the kernels use: the widest this CPU runs, capped by the
 * environment variable LCA_CPU_ISA (lcattn(7)), decided at the first
 * call of the process and the same for every later one. */
enum lcai_isa lcai_isa_best(void);

/* Nonzero when the bf16 softmax may take its products with the AVX-512
 * BF16 dot instruction (vdpbf16ps): the CPU has it, the build has the
 * kernel, and LCA_CPU_ISA does not cap the level below avx512bf16. On
 * such a machine lcai_isa_best() is LCAI_ISA_AVX512. Decided with it. */
int lcai_isa_bf16dot(void);

#endif
