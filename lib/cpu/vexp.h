/*
 * vexp.h - the row maximum and the vectorised exp of one row of scores,
 * shared by the prefill engine (softmax.c) and the decode kernels
 * (decode.h). A template fragment, not a header: each inclusion consumes
 * FT, FI, FN, VEC, IVEC, VW, BK, INLINE, VLOAD, VSTORE, VSEL and VFMA of
 * the including instance, so the same code is built per type and vector
 * width.
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

/* Largest and sum of the lanes of v: a halving tree, log2(VW) dependent
 * steps instead of VW. */
INLINE FT FN(lane_max)(VEC v)
{
	FT t[VW];

	memcpy(t, &v, sizeof t);
#pragma GCC unroll 16
	for (int w = VW / 2; w > 0; w /= 2)
#pragma GCC unroll 16
		for (int i = 0; i < w; i++)
			t[i] = t[i + w] > t[i] ? t[i + w] : t[i];
	return t[0];
}

INLINE FT FN(lane_sum)(VEC v)
{
	FT t[VW];

	memcpy(t, &v, sizeof t);
#pragma GCC unroll 16
	for (int w = VW / 2; w > 0; w /= 2)
#pragma GCC unroll 16
		for (int i = 0; i < w; i++)
			t[i] += t[i + w];
	return t[0];
}

/* exp(v) lane by lane for v <= 0: exp_row's method and polynomial on one
 * vector, with every multiply-add fused (VFMA: one rounding, half the
 * instructions). Lanes below emin and -inf give exactly 0. */
INLINE VEC FN(exp_vec)(VEC v)
{
	const int f32 = sizeof(FT) == 4;
	const int deg = f32 ? 7 : 13, mant = f32 ? 23 : 52;
	const FT magic = f32 ? 12582912.0 : 6755399441055744.0; /* 1.5 2^mant */
	const FT ln2_hi = f32 ? 0.693359375 : 6.93147180369123816490e-01;
	const FT ln2_lo = f32 ? -2.12194440e-4 : 1.90821492927058770002e-10;
	const VEC vmin = (VEC){ 0 } + (FT)(f32 ? -87.0 : -708.0);
	const VEC vmag = (VEC){ 0 } + magic;
	/* the exponent bits of 2^k: (t - magic as an integer) + bias */
	const IVEC ebias = (IVEC){ 0 } + (FI)(f32 ? 127 : 1023) - (IVEC)vmag;
	IVEC keep = v >= vmin;
	VEC t, k, r, pol;

	v = VSEL(keep, v, vmin);
	t = VFMA(v, (VEC){ 0 } + (FT)1.44269504088896340736, vmag);
	k = t - vmag;
	r = VFMA(k, (VEC){ 0 } - ln2_hi, v);
	r = VFMA(k, (VEC){ 0 } - ln2_lo, r);
	pol = (VEC){ 0 } + (FT)vexp_inv_fact[deg];
#pragma GCC unroll 16
	for (int i = deg - 1; i >= 0; i--)
		pol = VFMA(pol, r, (VEC){ 0 } + (FT)vexp_inv_fact[i]);
	pol = pol * (VEC)(((IVEC)t + ebias) << mant);
	return (VEC)((IVEC)pol & keep);
}
