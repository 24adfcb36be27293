/*
 * gemm_small_kern.h - the per-ISA part of gemm_small.c, written once and
 * included by it per vector width, as state_step.c does with
 * state_step_kern.h. Not a standalone header; each inclusion reads:
 *
 *   GS_TARGET     the ISA attribute of every function
 *   FN(name)      names the instance's functions
 *   GS_MR, GS_NV  the register tile: GS_MR rows of C by GS_NV vectors
 *   VT, VW        the vector type and its lanes; MT the type of a lane mask
 *   VZERO() VSET1(x) VLOAD(p) VFMA(a, b, c) VMUL(a, b)
 *   VLOADM(p, m)  lanes of m from p, zero elsewhere, never touching the
 *                 memory of the other lanes; VSTORE(p, x), VSTOREM(p, m, x)
 *   MASK(r)       the mask of the first r lanes, 1 <= r <= VW
 *
 * and undefines them all at its end.
 */

#define GS_NR (GS_NV * VW)
#define INLINE GS_TARGET static inline __attribute__((always_inline))

/* Rows i < mr of C = alpha acc + beta C, the last vector of a row
 * through the mask when masked. beta 0 never reads C: it may hold
 * anything, NaN too. */
INLINE void FN(store)(int nv, int masked, MT m, int mr,
	VT acc[GS_MR][GS_NV], float alpha, float beta, float *c, int64_t ldc)
{
	#pragma GCC unroll 16
	for (int i = 0; i < GS_MR && i < mr; i++) {
		float *ci = c + i * ldc;

		#pragma GCC unroll 4
		for (int v = 0; v < GS_NV && v < nv; v++) {
			int mv = masked && v == nv - 1;
			float *cv = ci + v * VW;
			VT x = VMUL(VSET1(alpha), acc[i][v]);

			if (beta != 0.0f)
				x = VFMA(VSET1(beta),
					mv ? VLOADM(cv, m) : VLOAD(cv), x);
			if (mv)
				VSTOREM(cv, m, x);
			else
				VSTORE(cv, x);
		}
	}
}

/*
 * C[0..mr)[0..nv VW) = alpha op(A) B + beta C for one register tile, the
 * whole k in registers (so C is read and written once, and every element
 * is one chain of fused multiply-adds in the order p = 0, 1, ..., k-1).
 * ar[i] is row i of op(A) (rows past mr repeat the last one: they are
 * computed and dropped, so no tail kernel is needed), element p at
 * ar[i][p csa]; row p of B at b + p ldb. nv and masked are constants at
 * every call, so the loops unroll to straight code: masked marks a last
 * vector holding fewer than VW columns (mask m), loaded and stored
 * through the mask so that no byte past the matrix is touched.
 */
INLINE void FN(tile)(int nv, int masked, MT m, int mr, int64_t k,
	const float *const *ar, int64_t csa, const float *b, int64_t ldb,
	float alpha, float beta, float *c, int64_t ldc)
{
	VT acc[GS_MR][GS_NV], bv[GS_NV];
	const float *a[GS_MR];
	int64_t p, off = 0;

	#pragma GCC unroll 16
	for (int i = 0; i < GS_MR; i++) {
		a[i] = ar[i];
		#pragma GCC unroll 4
		for (int v = 0; v < GS_NV; v++)
			acc[i][v] = VZERO();
	}
	for (p = 0; p < k; p++, off += csa, b += ldb) {
		#pragma GCC unroll 4
		for (int v = 0; v < GS_NV && v < nv; v++)
			bv[v] = masked && v == nv - 1 ? VLOADM(b + v * VW, m) :
				VLOAD(b + v * VW);
		#pragma GCC unroll 16
		for (int i = 0; i < GS_MR; i++) {
			VT ai = VSET1(a[i][off]);

			#pragma GCC unroll 4
			for (int v = 0; v < GS_NV && v < nv; v++)
				acc[i][v] = VFMA(ai, bv[v], acc[i][v]);
		}
	}
	FN(store)(nv, masked, m, mr, acc, alpha, beta, c, ldc);
}

/*
 * The instances of FN(tile), one function each (not inlined into the
 * loops that call them): inlined, the compiler hoists the store phase's
 * broadcasts of alpha and beta out of the loop nest at -O3 and spills an
 * accumulator in the k loop to make room (measured at the AVX2 level:
 * half the speed). tail is the columns of the last vector, 0 for a full
 * one.
 */
#define GS_INST(NVC, MK)                                                       \
GS_TARGET __attribute__((noinline)) static void FN(tile_##NVC##_##MK)(         \
	int tail, int mr, int64_t k, const float *const *ar, int64_t csa,      \
	const float *b, int64_t ldb, float alpha, float beta, float *c,        \
	int64_t ldc)                                                           \
{                                                                              \
	FN(tile)(NVC, MK, MASK(MK ? tail : VW), mr, k, ar, csa, b, ldb,        \
		alpha, beta, c, ldc);                                          \
}
GS_INST(1, 0)
GS_INST(1, 1)
#if GS_NV > 1
GS_INST(2, 0)
GS_INST(2, 1)
#endif
#if GS_NV > 2
GS_INST(3, 0)
GS_INST(3, 1)
#endif
#if GS_NV > 3
GS_INST(4, 0)
GS_INST(4, 1)
#endif
#undef GS_INST

/* One column panel of nr <= GS_NR columns: its vector count and mask
 * made constants for FN(tile). */
GS_TARGET static void FN(panel)(int64_t nr, int mr, int64_t k,
	const float *const *ar, int64_t csa, const float *b, int64_t ldb,
	float alpha, float beta, float *c, int64_t ldc)
{
	int nv = (int)((nr + VW - 1) / VW), tail = (int)(nr % VW);

#define GS_CASE(NVC)                                                           \
	case NVC:                                                              \
		if (tail)                                                      \
			FN(tile_##NVC##_1)(tail, mr, k, ar, csa, b, ldb,       \
				alpha, beta, c, ldc);                          \
		else                                                           \
			FN(tile_##NVC##_0)(tail, mr, k, ar, csa, b, ldb,       \
				alpha, beta, c, ldc);                          \
		break;
	switch (nv) {
	GS_CASE(1)
#if GS_NV > 1
	GS_CASE(2)
#endif
#if GS_NV > 2
	GS_CASE(3)
#endif
#if GS_NV > 3
	GS_CASE(4)
#endif
	}
#undef GS_CASE
}

/*
 * C = alpha op(A) B + beta C with B not transposed, column panel by
 * column panel, each panel's tiles top to bottom (the panel, k GS_NR
 * floats, stays in L1 while op(A) streams past it).
 */
GS_TARGET static void FN(gemm_bn)(int ta, int64_t m, int64_t n, int64_t k,
	float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
	float beta, float *C, int64_t ldc)
{
	const float *ar[GS_MR];
	int64_t csa = ta ? lda : 1;

	for (int64_t j = 0; j < n; j += GS_NR) {
		int64_t nr = n - j < GS_NR ? n - j : GS_NR;

		for (int64_t i = 0; i < m; i += GS_MR) {
			int mr = (int)(m - i < GS_MR ? m - i : GS_MR);

			for (int r = 0; r < GS_MR; r++) {
				int64_t row = i + (r < mr ? r : mr - 1);

				ar[r] = ta ? A + row : A + row * lda;
			}
			FN(panel)(nr, mr, k, ar, csa, B + j, ldb, alpha, beta,
				C + i * ldc + j, ldc);
		}
	}
}

/*
 * The whole product. A transposed B is copied, GS_KB rows of op(B) by
 * GS_NB columns at a time, into an aligned block on the stack laid out
 * as a B not transposed: no caller of the serial path uses it (decode's
 * A B^T goes to BLAS), so it only has to be right, and this keeps one
 * kernel. The first block along k applies beta, the rest accumulate.
 */
GS_TARGET static void FN(gemm)(int ta, int tb, int64_t m, int64_t n,
	int64_t k, float alpha, const float *A, int64_t lda, const float *B,
	int64_t ldb, float beta, float *C, int64_t ldc)
{
	_Alignas(64) float blk[GS_KB * GS_NB];

	if (!tb) {
		FN(gemm_bn)(ta, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
		return;
	}
	for (int64_t l = 0; l < k; l += GS_KB) {
		int64_t kb = k - l < GS_KB ? k - l : GS_KB;

		for (int64_t j = 0; j < n; j += GS_NB) {
			int64_t nb = n - j < GS_NB ? n - j : GS_NB;

			for (int64_t q = 0; q < nb; q++) {
				const float *bq = B + (j + q) * ldb + l;

				for (int64_t p = 0; p < kb; p++)
					blk[p * GS_NB + q] = bq[p];
			}
			FN(gemm_bn)(ta, m, nb, kb, alpha,
				ta ? A + l * lda : A + l, lda, blk, GS_NB,
				l == 0 ? beta : 1.0f, C + j, ldc);
		}
	}
}

#undef INLINE
#undef GS_NR
#undef GS_TARGET
#undef FN
#undef GS_MR
#undef GS_NV
#undef VT
#undef VW
#undef MT
#undef VZERO
#undef VSET1
#undef VLOAD
#undef VLOADM
#undef VSTORE
#undef VSTOREM
#undef VFMA
#undef VMUL
#undef MASK
