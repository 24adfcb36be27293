/*
 * vexp.h - the row maximum and the vectorised exp of one row of scores,
 * shared by the prefill engine (softmax.c) and the decode kernels
 * (decode.h). A template fragment, not a header: each inclusion consumes
 * FT, FI, FN, VEC, IVEC, VW, BK, INLINE, VLOAD, VSTORE and VSEL of the
 * including instance, so the same code is built per type and vector width.
 */

#ifndef LCATTN_CPU_VEXP_TABLE
#define LCATTN_CPU_VEXP_TABLE
/* 1/k! for the Taylor polynomial of exp on |r| <= ln2/2: degree 7 leaves
 * a truncation error below 5e-9 (float ulp 6e-8), degree 13 below 5e-18. */
static const double vexp_inv_fact[14] = {
	1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720,
	1.0 / 5040, 1.0 / 40320, 1.0 / 362880, 1.0 / 3628800,
	1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0,
};
#endif

/* Largest of x[0..BK) (-inf for a fully masked row). */
INLINE FT FN(row_max)(const FT *x)
{
	VEC mx = (VEC){ 0 } - (FT)INFINITY, v;
	FT best = -INFINITY;

	for (int j = 0; j < BK; j += VW) {
		VLOAD(v, x + j);
		mx = VSEL(v > mx, v, mx);
	}
#pragma GCC unroll 16
	for (int i = 0; i < VW; i++)
		best = mx[i] > best ? mx[i] : best;
	return best;
}

/* x[0..BK) = exp(x - m) for x <= m, returning their sum. Range reduction
 * x = k ln2 + r, |r| <= ln2/2 (Cody-Waite: k ln2_hi is exact), Taylor
 * polynomial in r, 2^k built in the exponent bits. Below emin (where
 * exp underflows anyway) and for masked -inf the result is exactly 0, so
 * masked keys never leak into the sum. */
INLINE FT FN(exp_row)(FT *x, FT m)
{
	const int f32 = sizeof(FT) == 4;
	const int deg = f32 ? 7 : 13, mant = f32 ? 23 : 52;
	const FI bias = f32 ? 127 : 1023;
	const FT emin = f32 ? -87.0 : -708.0;
	const FT magic = f32 ? 12582912.0 : 6755399441055744.0; /* 1.5 2^mant */
	const FT ln2_hi = f32 ? 0.693359375 : 6.93147180369123816490e-01;
	const FT ln2_lo = f32 ? -2.12194440e-4 : 1.90821492927058770002e-10;
	const FT log2e = 1.44269504088896340736;
	const VEC vmin = (VEC){ 0 } + emin, vmag = (VEC){ 0 } + magic;
	VEC sum = { 0 };
	FT total = 0;

	for (int j = 0; j < BK; j += VW) {
		VEC v, t, k, r, pol;
		IVEC keep, e;

		VLOAD(v, x + j);
		v = v - m;
		keep = v >= vmin;
		v = VSEL(keep, v, vmin);
		t = v * log2e + vmag;     /* rounds k to nearest in the low bits */
		k = t - vmag;
		r = v - k * ln2_hi - k * ln2_lo;
		pol = (VEC){ 0 } + (FT)vexp_inv_fact[deg];
#pragma GCC unroll 16
		for (int i = deg - 1; i >= 0; i--)
			pol = pol * r + (FT)vexp_inv_fact[i];
		e = ((IVEC)t - (IVEC)vmag + bias) << mant;
		pol = pol * (VEC)e;
		pol = (VEC)((IVEC)pol & keep);
		VSTORE(x + j, pol);
		sum += pol;
	}
#pragma GCC unroll 16
	for (int i = 0; i < VW; i++)
		total += sum[i];
	return total;
}
