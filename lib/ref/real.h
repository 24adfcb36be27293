/*
 * real.h - the reference kernels are written once, over `real`, and
 * compiled twice: as double (the ground truth, lcai_ref_*) and, with
 * LCA_REF_FLOAT defined, as float (lcai_ref32_*). The float build is "the
 * reference algorithm itself run in float32" of the tolerance rule in
 * DESIGN.md: the same textbook loops, every operation rounded to float.
 * <tgmath.h> makes exp, log and sqrt follow the argument type.
 */
#ifndef LCATTN_REF_REAL_H
#define LCATTN_REF_REAL_H

#include <tgmath.h>

#ifdef LCA_REF_FLOAT
typedef float real;
#define REF(name) lcai_ref32_##name
#define ref_rope lcai_rope_apply_f
#else
typedef double real;
#define REF(name) lcai_ref_##name
#define ref_rope lcai_rope_apply
#endif

#endif /* LCATTN_REF_REAL_H */
