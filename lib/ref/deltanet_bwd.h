/*
 * deltanet_bwd.h - pieces shared by the two reference adjoints of Gated
 * DeltaNet (deltanet_bwd.c: recurrent; deltanet_chunked_bwd.c: WY/UT).
 * Compiled once per real type, like the kernels (REF() names them).
 */
#ifndef LCATTN_REF_DELTANET_BWD_H
#define LCATTN_REF_DELTANET_BWD_H

#include "internal.h"
#include "real.h"

#include <stdint.h>

/* Added under the square root of the L2 norm, as in lib/ref/deltanet.c. */
#define DN_L2_EPS ((real)1e-6)

#define dn_prepare REF(dnb_prepare)
#define dn_prepare_adj REF(dnb_prepare_adj)
#define dn_dot REF(dnb_dot)
#define dn_add_size REF(dnb_add_size)
#define dn_max_len REF(dnb_max_len)
#define dn_zero_grads REF(dnb_zero_grads)
#define dn_write_dstate0 REF(dnb_write_dstate0)
#define dn_read_slices REF(dnb_read_slices)

/* q and k of one token as the recurrence sees them: optional
 * x / sqrt(sum x^2 + eps), then q *= scale; the same operations, in the
 * same order, as the forward's dn_prepare_qk, so the bits agree. */
void dn_prepare(const lca_params *p, const real *qs, const real *ks,
	real *qd, real *kd);

/* dx += J^T dxh, J the Jacobian of x -> prepared x (is_q: times scale). */
void dn_prepare_adj(const lca_params *p, int is_q, const real *x,
	const real *dxh, real *dx);

real dn_dot(const real *a, const real *b, int64_t n);

/* *acc += a * b, or 0 if any step overflows int64_t or size_t. */
int dn_add_size(int64_t *acc, int64_t a, int64_t b);

int64_t dn_max_len(const int64_t *cu, int64_t nseq);

/* Zero dq and dk: they accumulate over the value heads of a qk head. */
void dn_zero_grads(const lca_params *p, int64_t T, real *dq, real *dk);

/* S = state0[n][h] and dS = dstate[n][h], zeros where not given: where
 * both adjoints start a (sequence, head). */
void dn_read_slices(const lca_params *p, int64_t n, int64_t h,
	const real *state0, const real *dstate, real *S, real *dS);

/* dstate0[n][h] = dS, the gradient carried back to the start state. */
void dn_write_dstate0(const lca_params *p, int64_t n, int64_t h,
	const real *dS, real *dstate0);

/* qk head read by value head h (grouped heads, as GQA). */
static inline int64_t dn_qk_head(const lca_params *p, int64_t h)
{
	return h / (p->H / p->Hk);
}

#endif /* LCATTN_REF_DELTANET_BWD_H */
