/*
 * isa.c - the instruction-set level of the cpu backend's vector kernels,
 * and lca_cpu_isa(), which names it.
 *
 * LCA_CPU_ISA=sse|avx2|avx512 caps the level, so that the tests can run
 * every build a machine supports against the reference and a user can
 * compare them; it never raises the level above what the CPU (and the
 * operating system, for the wide registers) runs. Any other value is
 * ignored: a library must not print, and the level it falls back to is
 * visible through lca_cpu_isa().
 */
#include "internal.h"
#include "isa.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const char *const isa_names[] = { "sse", "avx2", "avx512" };

/* The widest level this CPU runs (__builtin_cpu_supports includes the
 * operating system's support for the wide registers). */
static enum lcai_isa isa_cpu(void)
{
#ifdef LCAI_X86
	if (__builtin_cpu_supports("avx512f"))
		return LCAI_ISA_AVX512;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return LCAI_ISA_AVX2;
#endif
	return LCAI_ISA_SSE;
}

static enum lcai_isa isa_decide(void)
{
	enum lcai_isa best = isa_cpu();
	const char *cap = getenv("LCA_CPU_ISA");

	for (int i = 0; cap && i < (int)best; i++)
		if (!strcmp(cap, isa_names[i]))
			return (enum lcai_isa)i;
	return best;
}

enum lcai_isa lcai_isa_best(void)
{
	/* A memo of a fact of the process, not state a caller can change:
	 * two threads that race here both store the same value. Deciding
	 * once keeps every call of a run, and what lca_cpu_isa() reports,
	 * on one level even if the environment changes later. */
	static atomic_int memo = -1;
	int v = atomic_load_explicit(&memo, memory_order_relaxed);

	if (v < 0) {
		v = (int)isa_decide();
		atomic_store_explicit(&memo, v, memory_order_relaxed);
	}
	return (enum lcai_isa)v;
}

const char *lca_cpu_isa(void)
{
#ifdef LCAI_X86
	return isa_names[lcai_isa_best()];
#else
	return "generic";
#endif
}
