/*
 * flash_tile.h - the register-blocked tile products and the row loader of
 * the flash engine, shared by the forward (softmax.c) and the backward
 * (softmax_bwd.c). A template fragment, not a header: each inclusion
 * consumes FT, FN, VEC, VW, NC, BK, FLASH_NB, FLASH_ROWS, INLINE, VLOAD,
 * VSTORE and VFMA of the including instance, so the same code is built
 * per type and vector width, and the backward recomputes the forward's
 * logits to the bit (same products, same order).
 */

#ifndef FLASH_TILE_MAX_ROWS
/* The most query rows a register block may have (FLASH_ROWS of every
 * includer and the forward's per-width blocking, softmax.c). */
#define FLASH_TILE_MAX_ROWS 8
#endif

/* s[rows][NC] = q[rows][dk] kt[dk][NC], kt and s with row stride BK:
 * each step broadcasts one query value against NC keys. rows is a
 * constant wherever this is inlined, so the unrolled loops keep the
 * rows x FLASH_NB accumulators in registers at -O2 as well (a loop over
 * them would live in memory). Every logit is one accumulator lane's
 * fused sum over c = 0 .. dk-1 in order whatever rows and FLASH_NB are:
 * any blocking gives the same bits, so the backward recomputes the
 * forward's logits exactly under a blocking of its own. */
INLINE void FN(qk_rows)(const int rows, const FT *q, int64_t dk,
	const FT *kt, FT *s)
{
	VEC acc[FLASH_TILE_MAX_ROWS][FLASH_NB], b[FLASH_NB];

#pragma GCC unroll 8
	for (int r = 0; r < rows; r++)
#pragma GCC unroll 8
		for (int v = 0; v < FLASH_NB; v++)
			acc[r][v] = (VEC){ 0 };
	for (int64_t c = 0; c < dk; c++) {
#pragma GCC unroll 8
		for (int v = 0; v < FLASH_NB; v++)
			VLOAD(b[v], kt + c * BK + v * VW);
#pragma GCC unroll 8
		for (int r = 0; r < rows; r++) {
			VEC a = q[r * dk + c] - (VEC){ 0 };

#pragma GCC unroll 8
			for (int v = 0; v < FLASH_NB; v++)
				acc[r][v] = VFMA(a, b[v], acc[r][v]);
		}
	}
#pragma GCC unroll 8
	for (int r = 0; r < rows; r++)
#pragma GCC unroll 8
		for (int v = 0; v < FLASH_NB; v++)
			VSTORE(s + r * BK + v * VW, acc[r][v]);
}

/* o[rows][NC] += p[rows][BK] vp[BK][NC], o and vp with row stride dvp;
 * rows a constant where inlined, each output one lane's fused sum over
 * j = 0 .. BK-1 in order (bits independent of the blocking). */
INLINE void FN(pv_rows)(const int rows, const FT *p, const FT *vp,
	int64_t dvp, FT *o)
{
	VEC acc[FLASH_TILE_MAX_ROWS][FLASH_NB], b[FLASH_NB];

#pragma GCC unroll 8
	for (int r = 0; r < rows; r++)
#pragma GCC unroll 8
		for (int v = 0; v < FLASH_NB; v++)
			VLOAD(acc[r][v], o + r * dvp + v * VW);
	for (int j = 0; j < BK; j++) {
#pragma GCC unroll 8
		for (int v = 0; v < FLASH_NB; v++)
			VLOAD(b[v], vp + j * dvp + v * VW);
#pragma GCC unroll 8
		for (int r = 0; r < rows; r++) {
			VEC a = p[r * BK + j] - (VEC){ 0 };

#pragma GCC unroll 8
			for (int v = 0; v < FLASH_NB; v++)
				acc[r][v] = VFMA(a, b[v], acc[r][v]);
		}
	}
#pragma GCC unroll 8
	for (int r = 0; r < rows; r++)
#pragma GCC unroll 8
		for (int v = 0; v < FLASH_NB; v++)
			VSTORE(o + r * dvp + v * VW, acc[r][v]);
}

/* The blocks of the includer's FLASH_ROWS rows. */
INLINE void FN(qk_block)(const FT *q, int64_t dk, const FT *kt, FT *s)
{
	FN(qk_rows)(FLASH_ROWS, q, dk, kt, s);
}

INLINE void FN(pv_block)(const FT *p, const FT *vp, int64_t dvp, FT *o)
{
	FN(pv_rows)(FLASH_ROWS, p, vp, dvp, o);
}

/* Row i of src as [a ; rope(b)] times mult into dst[c * stride], rotated
 * as at position pos with the table of f (double arithmetic, rounded
 * once). Inlined, so that the contiguous calls (stride 1) vectorise:
 * lanes compute exactly what the scalar loop would. */
INLINE void FN(load_row)(const struct lcai_flash *f,
	const struct lcai_flash_src *src, int64_t i, int64_t pos, double mult,
	FT *dst, int64_t stride)
{
	const int64_t da = src->da, db = src->db, rot = f->rope_dim, h = rot / 2;

	if (da > 0) {
		const FT *a = (const FT *)src->a + i * src->lda;

		#pragma omp simd
		for (int64_t c = 0; c < da; c++)
			dst[c * stride] = (FT)(mult * a[c]);
		dst += da * stride;
	}
	if (db > 0) {
		const FT *b = (const FT *)src->b + i * src->ldb;
		const double *cs = rot > 0 ? lcai_flash_cs(f, pos) : NULL;

		if (f->p->rope_style == LCA_ROPE_INTERLEAVED) {
			#pragma omp simd
			for (int64_t j = 0; j < h; j++) {
				double x = b[2 * j], y = b[2 * j + 1];

				dst[2 * j * stride] = (FT)(mult * (x * cs[2 * j] - y * cs[2 * j + 1]));
				dst[(2 * j + 1) * stride] = (FT)(mult * (x * cs[2 * j + 1] + y * cs[2 * j]));
			}
		} else {
			#pragma omp simd
			for (int64_t j = 0; j < h; j++) {
				double x = b[j], y = b[j + h];

				dst[j * stride] = (FT)(mult * (x * cs[2 * j] - y * cs[2 * j + 1]));
				dst[(j + h) * stride] = (FT)(mult * (x * cs[2 * j + 1] + y * cs[2 * j]));
			}
		}
		#pragma omp simd
		for (int64_t c = rot; c < db; c++)
			dst[c * stride] = (FT)(mult * b[c]);
	}
}

/* x[0 .. n) *= scale, n a multiple of VW: logits are scale * <q, k>,
 * rounded as the reference rounds them (the dot product, then the
 * scale), not <scale q, k>: rounding scale * q first adds an error of
 * |logit| ulp/2 to every logit, 2.4e-6 at a logit of 80 in float, which
 * the weights exp(logit - lse) and the backward's dS inherit. */
INLINE void FN(scale_tile)(FT *x, int64_t n, FT scale)
{
	const VEC sv = (VEC){ 0 } + scale;

	for (int64_t i = 0; i < n; i += VW) {
		VEC v;

		VLOAD(v, x + i);
		v *= sv;
		VSTORE(x + i, v);
	}
}
