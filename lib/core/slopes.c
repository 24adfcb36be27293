/*
 * slopes.c - MiniMax's per-head decay slopes for lightning attention.
 *
 * MiniMax-01 reuses ALiBi's head slopes (Press et al., "Train Short, Test
 * Long", arXiv:2108.12409, and its reference get_slopes()) as decay rates
 * and shrinks them with depth, so deeper lightning layers forget more
 * slowly: slope *= 1 - layer / (L - 1) + 1e-5. The 1e-5 keeps the last
 * layer's decay strictly positive.
 */
#include "internal.h"

#include <math.h>

/* Largest power of two <= n (n >= 1), built without ever overflowing. */
static int64_t floor_pow2(int64_t n)
{
	int64_t p = 1;

	while (p <= n / 2)
		p *= 2;
	return p;
}

/*
 * Slope i (0-based) of n heads, n a power of two: 2^(-8 (i + 1) / n).
 * With n a power of two the exponent is exact in double and exp2() of it
 * is correct to rounding, unlike ALiBi's start * ratio^i.
 */
static double pow2_slope(int64_t i, int64_t n)
{
	return exp2(-8.0 * (double)(i + 1) / (double)n);
}

/*
 * ALiBi's base slope of head h of H: the P slopes of P = floor_pow2(H),
 * then slopes 0, 2, 4, ... of 2P for the remaining H - P heads, so the
 * extra heads interleave between the first ones geometrically.
 */
static double base_slope(int64_t h, int64_t H)
{
	int64_t P = floor_pow2(H);

	if (h < P)
		return pow2_slope(h, P);
	return pow2_slope(2 * (h - P), 2 * P);
}

LCA_API lca_status lca_minimax_slopes(int64_t H, int64_t layer, int64_t L,
	double *slope)
{
	double factor;

	lcai_clear_error();
	if (slope == NULL)
		return lcai_fail(LCA_ERR_NULL, "lca_minimax_slopes: slope is NULL");
	if (H < 1)
		return lcai_fail(LCA_ERR_SIZE,
			"lca_minimax_slopes: H = %lld, must be >= 1", (long long)H);
	if (L < 1)
		return lcai_fail(LCA_ERR_SIZE,
			"lca_minimax_slopes: L = %lld, must be >= 1", (long long)L);
	if (layer < 0 || layer >= L)
		return lcai_fail(LCA_ERR_ARG,
			"lca_minimax_slopes: layer = %lld, must be in [0, %lld)",
			(long long)layer, (long long)L);

	/* MiniMax's depth factor, evaluated in its order; one layer has no
	 * depth to interpolate over and keeps the full slopes. */
	if (L == 1)
		factor = 1.0 + 1e-5;
	else
		factor = 1.0 - (double)layer / (double)(L - 1) + 1e-5;
	for (int64_t h = 0; h < H; h++)
		slope[h] = base_slope(h, H) * factor;
	return LCA_OK;
}
