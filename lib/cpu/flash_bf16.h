/*
 * flash_bf16.h - the parts of the flash engine (softmax.c) that differ when
 * its inputs are bf16 and its logits come from the AVX-512 BF16 dot
 * instruction (vdpbf16ps): packing, the query loader, the logit product
 * and the rounding of outputs. A template fragment of the float AVX-512
 * instance with FLASH_BF16 defined; everything else (masks, the online
 * softmax, P V, the tile walk) is that instance's float code.
 *
 * Keys are packed as bf16, not widened: [tile][dkp/2][BK][2], the two
 * values of a pair of coordinates side by side (dkp = dk rounded up to
 * even, the odd one out paired with a zero), which is the operand layout
 * of vdpbf16ps; a query row is its dkp bf16 values, each pair broadcast
 * as one 32-bit lane. A product of two bf16 is exact in float, and the
 * instruction adds the two products of a pair into a float accumulator,
 * so the logits differ from the float path on the widened inputs only in
 * the order (and so the rounding) of their sums. The instruction treats
 * denormal inputs as zero and flushes denormal results to zero, whatever
 * MXCSR says: a logit below 1.2e-38 in size becomes 0, which moves no
 * weight exp(logit - m) by more than an ulp. Values are widened to float
 * when packed, and P V stays in float: P is never rounded to bf16.
 *
 * Only plans without RoPE come here (lcai_cpu_softmax_bf16dot): rotating
 * a bf16 row gives values that are no longer bf16, and rounding them
 * would add an error the float path does not make.
 */

typedef uint16_t FN(bf16);

/* Coordinates c, c + 1 of a bf16 row of d values as one 32-bit pair
 * (little endian: c in the low half), a zero past the end. */
INLINE uint32_t FN(pair)(const uint16_t *row, int64_t c, int64_t d)
{
	uint32_t w;

	if (c + 1 < d) {
		memcpy(&w, row + c, sizeof w);
		return w;
	}
	return c < d ? row[c] : 0;
}

/* Keys into bf16 pair tiles and values, widened, into float rows of dvp,
 * both zero-padded to whole tiles (padded keys meet real queries in the
 * products before the mask removes them). */
FLASH_TARGET static void FN(pack)(const struct lcai_flash *f,
	const struct lcai_flash_pack *job)
{
	const int64_t dk = f->dk, dkp = f->dkp, dv = f->dv, dvp = f->dvp;
	const int64_t tk = job->tk, rows = lcai_flash_padded(tk);
	const uint16_t *k = job->k.b, *v = job->v;
	uint32_t *kt = job->kt;
	float *vp = job->vp;

	for (int64_t s = 0; s < rows; s++) {
		uint32_t *kcol = kt + (s / BK) * (dkp / 2) * BK + s % BK;
		float *vrow = vp + s * dvp;
		int64_t c = 0;

		if (s < tk) {
			const uint16_t *krow = k + s * job->k.ldb;
			const uint16_t *vsrc = v + s * job->ldv;

			for (int64_t d = 0; d < dkp; d += 2)
				kcol[(d / 2) * BK] = FN(pair)(krow, d, dk);
			#pragma omp simd
			for (c = 0; c < dv; c++)
				vrow[c] = lcai_bf16_widen(vsrc[c]);
		} else {
			for (int64_t d = 0; d < dkp; d += 2)
				kcol[(d / 2) * BK] = 0;
		}
		memset(vrow + c, 0, (size_t)(dvp - c) * sizeof(float));
	}
}

/* Query row i of t as dkp bf16 values (the last a zero when dk is odd);
 * pos is unused: no RoPE here. */
INLINE void FN(load_q)(const struct lcai_flash *f,
	const struct lcai_flash_task *t, int64_t i, int64_t pos, uint16_t *dst)
{
	(void)pos;
	const uint16_t *row = (const uint16_t *)t->q.b + i * t->q.ldb;

	memcpy(dst, row, (size_t)f->dk * sizeof *dst);
	if (f->dkp > f->dk)
		dst[f->dk] = 0;
}

/* s[FLASH_ROWS][NC] = q[FLASH_ROWS][dkp] kt[dkp][NC] on bf16 pairs, kt
 * with row stride BK pairs and s with row stride BK: each step
 * broadcasts one query pair against NC keys' pairs. */
INLINE void FN(qk_dot)(const uint16_t *q, int64_t dkp, const uint32_t *kt,
	float *s)
{
	__m512 acc[FLASH_ROWS][FLASH_NB];
	__m512i b[FLASH_NB];

#pragma GCC unroll 8
	for (int r = 0; r < FLASH_ROWS; r++)
#pragma GCC unroll 8
		for (int v = 0; v < FLASH_NB; v++)
			acc[r][v] = _mm512_setzero_ps();
	for (int64_t c = 0; c < dkp; c += 2) {
#pragma GCC unroll 8
		for (int v = 0; v < FLASH_NB; v++)
			b[v] = _mm512_loadu_si512(kt + (c / 2) * BK + v * VW);
#pragma GCC unroll 8
		for (int r = 0; r < FLASH_ROWS; r++) {
			uint32_t w;
			__m512i a;

			memcpy(&w, q + r * dkp + c, sizeof w);
			a = _mm512_set1_epi32((int)w);
#pragma GCC unroll 8
			for (int v = 0; v < FLASH_NB; v++)
				acc[r][v] = _mm512_dpbf16_ps(acc[r][v], (__m512bh)a,
					(__m512bh)b[v]);
		}
	}
#pragma GCC unroll 8
	for (int r = 0; r < FLASH_ROWS; r++)
#pragma GCC unroll 8
		for (int v = 0; v < FLASH_NB; v++)
			_mm512_storeu_ps(s + r * BK + v * VW, acc[r][v]);
}
