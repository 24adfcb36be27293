/*
 * rowsoftmax.c - one masked softmax row, written once for the softmax and
 * mla references.
 */
#include "rowsoftmax.h"


void REF(key_range)(const lca_params *p, int64_t pq, int64_t tk,
	int64_t *lo, int64_t *hi)
{
	int64_t a = 0, b = tk;

	/* A window implies the causal bound too (0 <= pq - pos_k). */
	if ((p->causal || p->window > 0) && pq + 1 < b)
		b = pq + 1;
	/* pq - W + 1 is formed only when it is positive: pq may be negative
	 * and W as large as INT64_MAX. */
	if (p->window > 0 && pq >= p->window)
		a = pq - p->window + 1;
	/* A window can end before the first key or, for a query far after
	 * the keys (partial attention), start after the last: the empty
	 * range then stays within [0, tk], where tiled kernels may index. */
	if (a > tk)
		a = tk;
	if (b < a)
		b = a;
	*lo = a;
	*hi = b;
}

real REF(row_exp)(real *x, int64_t n, real *sum)
{
	real m, acc = 0.0;

	if (n <= 0) {
		*sum = 0.0;
		return -INFINITY;
	}
	m = x[0];
	for (int64_t s = 1; s < n; s++)
		if (x[s] > m)
			m = x[s];
	/* Subtracting the maximum first keeps every exponent <= 0: logits of
	 * +-1000 neither overflow nor turn into inf/inf = NaN. */
	for (int64_t s = 0; s < n; s++) {
		x[s] = exp(x[s] - m);
		acc += x[s];
		FLOPS(3);
	}
	*sum = acc;
	FLOPS(2);
	return m + log(acc);
}

void REF(row_mix)(const real *w, int64_t n, real sum,
	const real *x, int64_t stride, int64_t d, real *out)
{
	for (int64_t j = 0; j < d; j++)
		out[j] = 0.0;
	for (int64_t s = 0; s < n; s++)
		for (int64_t j = 0; j < d; j++) {
			out[j] += w[s] * x[s * stride + j];
			FLOPS(2);
		}
	/* Normalise once at the end (sum >= 1, no division by zero); an
	 * empty row keeps out = 0, the fully masked convention. */
	if (n > 0)
		for (int64_t j = 0; j < d; j++) {
			out[j] /= sum;
			FLOPS(1);
		}
}

void REF(row_exp_bwd)(real *w, real *dp, int64_t n, real sum)
{
	real dot = 0.0;

	/* sum >= 1 when n > 0 (row_exp), so the division is safe; the logits
	 * were max-subtracted there, so no exponent is formed here at all. */
	for (int64_t s = 0; s < n; s++) {
		w[s] /= sum;
		dot += w[s] * dp[s];
	}
	for (int64_t s = 0; s < n; s++)
		dp[s] = w[s] * (dp[s] - dot);
}
