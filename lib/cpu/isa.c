/*
 * isa.c - the instruction-set level of the cpu backend's vector kernels,
 * and lca_cpu_isa(), which names it.
 *
 * LCA_CPU_ISA=sse|avx2|avx512|avx512bf16 caps the level, so that the tests
 * can run every build a machine supports against the reference and a user
 * can compare them; it never raises the level above what the CPU (and the
 * operating system, for the wide registers) runs. Any other value is
 * ignored: a library must not print, and the level it falls back to is
 * visible through lca_cpu_isa().
 *
 * avx512bf16 is AVX-512 plus the bf16 dot instruction, which only the bf16
 * softmax uses (lib/cpu/softmax.c); every other kernel runs its AVX-512
 * build there, so LCA_CPU_ISA=avx512 turns off just that one path.
 */
#include "internal.h"
#include "isa.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Levels in order; the last is no vector width of its own. */
#define ISA_BF16DOT 3
static const char *const isa_names[] = { "sse", "avx2", "avx512", "avx512bf16" };

/* The widest level this CPU runs (__builtin_cpu_supports includes the
 * operating system's support for the wide registers; avx512bf16 is
 * cpuid leaf 7, subleaf 1, EAX bit 5). */
static int isa_cpu(void)
{
#ifdef LCAI_X86
	if (__builtin_cpu_supports("avx512f")) {
#ifdef LCAI_BF16DOT
		if (__builtin_cpu_supports("avx512bf16"))
			return ISA_BF16DOT;
#endif
		return LCAI_ISA_AVX512;
	}
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return LCAI_ISA_AVX2;
#endif
	return LCAI_ISA_SSE;
}

static int isa_decide(void)
{
	int best = isa_cpu();
	const char *cap = getenv("LCA_CPU_ISA");

	for (int i = 0; cap && i < best; i++)
		if (!strcmp(cap, isa_names[i]))
			return i;
	return best;
}

/* The level, 0 .. ISA_BF16DOT. */
static int isa_level(void)
{
	/* A memo of a fact of the process, not state a caller can change:
	 * two threads that race here both store the same value. Deciding
	 * once keeps every call of a run, and what lca_cpu_isa() reports,
	 * on one level even if the environment changes later. */
	static atomic_int memo = -1;
	int v = atomic_load_explicit(&memo, memory_order_relaxed);

	if (v < 0) {
		v = isa_decide();
		atomic_store_explicit(&memo, v, memory_order_relaxed);
	}
	return v;
}

enum lcai_isa lcai_isa_best(void)
{
	int v = isa_level();

	return v == ISA_BF16DOT ? LCAI_ISA_AVX512 : (enum lcai_isa)v;
}

int lcai_isa_bf16dot(void)
{
	return isa_level() == ISA_BF16DOT;
}

const char *lca_cpu_isa(void)
{
#ifdef LCAI_X86
	return isa_names[isa_level()];
#else
	return "generic";
#endif
}
