/*
 * rowsoftmax.h - the masking and row-normalisation rules shared by the
 * softmax and mla references, so both mechanisms mask and normalise a row
 * in exactly one way.
 */
#ifndef LCATTN_REF_ROWSOFTMAX_H
#define LCATTN_REF_ROWSOFTMAX_H

#include "internal.h"
#include "real.h"

#include <stdint.h>

/* Keys a query at position pq may see within a sequence of tk keys, as the
 * half-open range [*lo, *hi) of key positions. Causal keeps pos_k <= pq; a
 * window W > 0 keeps 0 <= pq - pos_k < W. pq may be negative (more queries
 * than keys), in which case a causal row is empty: *lo >= *hi. Always
 * 0 <= *lo <= *hi <= tk. */
void REF(key_range)(const lca_params *p, int64_t pq, int64_t tk,
	int64_t *lo, int64_t *hi);

/* Stable softmax numerator of one row of n kept logits: x[s] becomes
 * exp(x[s] - max x), so every exponent is <= 0 and the largest term is 1;
 * *sum receives the sum of the new x (>= 1 when n > 0). Returns the
 * natural-log sum of exp of the original logits, max + log(sum), or
 * -INFINITY (with *sum = 0) when n == 0, the fully masked row. */
real REF(row_exp)(real *x, int64_t n, real *sum);

/* out[0..d) = sum_s w[s] x[s * stride + 0..d) / sum over the n kept rows of
 * x (w and sum from lcai_ref_row_exp); out = 0 when n == 0. */
void REF(row_mix)(const real *w, int64_t n, real sum,
	const real *x, int64_t stride, int64_t d, real *out);

/* Adjoint of one softmax row (the backward of row_exp and row_mix).
 * w[0..n) holds the numerators and sum the denominator from row_exp; on
 * return w holds the probabilities P = w / sum. dp[s] holds dL/dP_s on
 * entry and receives the logit gradient
 *   dS_s = P_s (dP_s - sum_r P_r dP_r)
 * (the Jacobian of softmax, diag(P) - P P^T, applied to dP). */
void REF(row_exp_bwd)(real *w, real *dp, int64_t n, real sum);

#endif /* LCATTN_REF_ROWSOFTMAX_H */
