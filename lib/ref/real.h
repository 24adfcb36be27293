/*
 * real.h - the reference kernels are written once, over `real`, and
 * compiled twice: as double (the ground truth, lcai_ref_*) and, with
 * LCA_REF_FLOAT defined, as float (lcai_ref32_*). The float build is "the
 * reference algorithm itself run in float32" of the tolerance rule in
 * DESIGN.md: the same textbook loops, every operation rounded to float.
 * A third, double build counts its operations for the tests
 * (LCA_REF_COUNT, lcai_refc_*; FLOPS below).
 * <tgmath.h> makes exp, log and sqrt follow the argument type.
 */
#ifndef LCATTN_REF_REAL_H
#define LCATTN_REF_REAL_H

#include <tgmath.h>

#if defined LCA_REF_FLOAT && defined LCA_REF_COUNT
#error "the counting build of the reference is double only"
#endif

#ifdef LCA_REF_FLOAT
typedef float real;
#define REF(name) lcai_ref32_##name
#define ref_rope lcai_rope_apply_f
#else
typedef double real;
#ifdef LCA_REF_COUNT
#define REF(name) lcai_refc_##name
#else
#define REF(name) lcai_ref_##name
#endif
#define ref_rope lcai_rope_apply
#endif

/*
 * FLOPS(n): the statement beside it performs n floating-point operations.
 * The counting build (LCA_REF_COUNT, libref_count.la, linked only into
 * tests/check_cost) adds them to a per-thread counter so that the test can
 * hold lca_plan_cost(3) to what the reference actually executes; every
 * other build compiles it to nothing, so the oracle's code and bits are
 * unchanged. What counts 1 (lca_plan_cost(3), "What is counted"): an add,
 * subtract, multiply, divide, sqrt, exp or log of tensor data. Not counted:
 * comparisons, negations, conversions and index arithmetic. RoPE counts
 * its rotation, 4 multiplies and 2 adds per pair of coordinates, not the
 * angle, cos and sin: one table per position serves every head and layer.
 */
#ifdef LCA_REF_COUNT
#include <stdint.h>
extern _Thread_local int64_t lcai_refc_flops;
#define FLOPS(n) ((void)(lcai_refc_flops += (n)))
#undef ref_rope
#define ref_rope(x, rd, style, theta, pos) \
	(FLOPS((rd) / 2 * 6), lcai_rope_apply(x, rd, style, theta, pos))
#else
#define FLOPS(n) ((void)0)
#endif

#endif /* LCATTN_REF_REAL_H */
