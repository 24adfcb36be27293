/*
 * decode.h - the typed kernels of decode.c, written once and included by
 * it per (element type, vector width), as softmax.c does with itself.
 * Not a standalone header: it uses decode.c's struct dec_job, dec_ws and
 * dec_ops and its constants, and each inclusion consumes these macros:
 *
 *   FT, FI      element type and the integer of its size
 *   KT          the cache's storage type: FT, or uint16_t (bf16 bits) for
 *               the widening instances, which also define DEC_WIDE 1 and
 *               may define DEC_KWIDEN(x), VW bf16 at x as float32 by
 *               intrinsics (GCC splits the generic widening of a whole
 *               AVX-512 vector into two halves and a merge)
 *   FN(name)    names the instance's functions
 *   VFMA(a,b,c) a b + c: an FMA intrinsic where the ISA has one (lib/cpu
 *               is not the oracle; one rounding is only more accurate)
 *
 * and reads DEC_VB (vector bytes), DEC_NB (vectors per column block of
 * the value product), DEC_QR, DEC_QK and DEC_PV (the register blocks of
 * many rows: rows, keys of the logits, vectors of the values; QR (QK + 1)
 * or QR (PV + 1) vectors must fit the register file) and DEC_TARGET (the
 * ISA attribute of every function).
 */

#define VW (DEC_VB / (int)sizeof(FT))   /* elements per vector */
#define DW (DEC_VB / 8)                 /* doubles per vector */
#define NB DEC_NB
#define BK DEC_BK
#define QR DEC_QR
#define QK DEC_QK
#define PV DEC_PV
#define VEC FN(vec)
#define IVEC FN(ivec)
#define DVEC FN(dvec)
#define DIVEC FN(divec)
#define KSEG FN(kseg)
#define PFQ FN(pfq)
#define HVEC FN(hvec)
#define INLINE DEC_TARGET static inline __attribute__((always_inline))
#ifndef DEC_WIDE
#define DEC_WIDE 0
#endif
/* Bytes of an element of a key part: the storage type's when the part is
 * read from a widening cache (w), else FT's; KAT is element i of such a
 * part. w is a constant wherever it matters, so both fold. */
#define KES(w) ((DEC_WIDE && (w)) ? (int64_t)sizeof(KT) : (int64_t)sizeof(FT))
#define KAT(p, i, w) ((const char *)(p) + (i) * KES(w))

typedef FT VEC __attribute__((vector_size(DEC_VB)));
typedef FI IVEC __attribute__((vector_size(DEC_VB)));
typedef double DVEC __attribute__((vector_size(DEC_VB)));
typedef int64_t DIVEC __attribute__((vector_size(DEC_VB)));
/* DW elements of FT: a double vector converted to FT. */
typedef FT HVEC __attribute__((vector_size(DW * sizeof(FT))));

/* One part of the key rows of a block: row j at element j * ld of p, n
 * values; wide: stored as KT (read from the cache) rather than FT. */
struct KSEG {
	const void *p;
	int64_t ld, n;
	int wide;
};

#define VLOAD(x, p) memcpy(&(x), (p), sizeof(x))
/* Keep x in a register: GCC would otherwise fold a vector loaded once for
 * several FMAs into each of them as a memory operand, one load per FMA. */
#define REG(x) __asm__("" : "+v"(x))
#define VSTORE(p, x) memcpy((p), &(x), sizeof(x))
/* Lanes of a where mask is set, else lanes of b (C has no vector ?:). */
#define VSEL(mask, a, b) \
	((VEC)(((IVEC)(a) & (mask)) | ((IVEC)(b) & ~(mask))))

/* VW values at x as FT: stored as FT, or (w) as bf16 bits, widened by a
 * 16-bit left shift of the zero-extended bits (bf16 is the top half of a
 * float32). kload1 is one value. */
#if DEC_WIDE
typedef KT FN(khalf) __attribute__((vector_size(VW * sizeof(KT))));
typedef uint32_t FN(uvec) __attribute__((vector_size(DEC_VB)));
#endif
INLINE VEC FN(kload)(const void *x, const int w)
{
	VEC v;

#if DEC_WIDE
	if (w) {
#ifdef DEC_KWIDEN
		return (VEC)DEC_KWIDEN(x);
#else
		FN(khalf) h;

		memcpy(&h, x, sizeof h);
		return (VEC)(__builtin_convertvector(h, FN(uvec)) << 16);
#endif
	}
#endif
	(void)w;
	VLOAD(v, x);
	return v;
}

INLINE FT FN(kload1)(const void *x, const int w)
{
	FT f;

#if DEC_WIDE
	if (w) {
		uint32_t u = (uint32_t)*(const KT *)x << 16;

		memcpy(&f, &u, sizeof f);
		return f;
	}
#endif
	(void)w;
	memcpy(&f, x, sizeof f);
	return f;
}

/* Lanes m[l] of a (SHUF1) or of a ++ b (SHUF2). GCC's __builtin_shuffle
 * takes the mask as a vector; clang has no such builtin, but its lane
 * loops over constant masks fold to the same shuffles. */
#ifdef __clang__
INLINE VEC FN(shuf2)(VEC a, VEC b, IVEC m)
{
	VEC r;

#pragma GCC unroll 16
	for (int l = 0; l < VW; l++)
		r[l] = m[l] < VW ? a[m[l]] : b[m[l] - VW];
	return r;
}

INLINE DVEC FN(dshuf2)(DVEC a, DVEC b, DIVEC m)
{
	DVEC r;

#pragma GCC unroll 16
	for (int l = 0; l < DW; l++)
		r[l] = m[l] < DW ? a[m[l]] : b[m[l] - DW];
	return r;
}
#define SHUF1(a, m) FN(shuf2)(a, a, m)
#define SHUF2(a, b, m) FN(shuf2)(a, b, m)
#define DSHUF1(a, m) FN(dshuf2)(a, a, m)
#define DSHUF2(a, b, m) FN(dshuf2)(a, b, m)
#else
#define SHUF1(a, m) __builtin_shuffle(a, m)
#define SHUF2(a, b, m) __builtin_shuffle(a, b, m)
#define DSHUF1(a, m) __builtin_shuffle(a, m)
#define DSHUF2(a, b, m) __builtin_shuffle(a, b, m)
#endif

/* ---- RoPE --------------------------------------------------------------- */

/* sin and cos of 0 <= a < DEC_ANGLE_MAX. a = k pi/2 + r exactly enough:
 * k rounds a 2/pi to an integer (< 2^20), k P1 and k P2 are exact (33-bit
 * parts of pi/2) and P3 carries the rest, so |r| <= pi/4 + tiny with an
 * absolute error near 1e-17; then the quadrant k mod 4 swaps and signs the
 * Taylor sin r and cos r. */
INLINE void FN(sincos)(DVEC a, DVEC *sn, DVEC *cs)
{
	const double magic = 6755399441055744.0; /* 1.5 2^52 */
	const DVEC P1 = (DVEC){ 0 } + 1.5707963267341256e+00;
	const DVEC P2 = (DVEC){ 0 } + 6.077100506303966e-11;
	const DVEC P3 = (DVEC){ 0 } + 2.0222662487959506e-21;
	DVEC t = a * 0.6366197723675814 + magic; /* k in the low bits */
	DVEC k = t - magic, r, z, ps, pc;
	const DIVEC sign = (DIVEC){ 0 } + INT64_MIN;
	DIVEC q = (DIVEC)t & 3, odd = -(q & 1), s, c;

	r = a - k * P1;
	r = r - k * P2;
	r = r - k * P3;
	z = r * r;
	ps = (DVEC){ 0 } + dec_sin_c[8];
#pragma GCC unroll 16
	for (int i = 7; i >= 0; i--)
		ps = ps * z + dec_sin_c[i];
	ps = ps * r;
	pc = (DVEC){ 0 } + dec_cos_c[9];
#pragma GCC unroll 16
	for (int i = 8; i >= 0; i--)
		pc = pc * z + dec_cos_c[i];
	/* sin(a): s, c, -s, -c and cos(a): c, -s, -c, s for q = 0..3. */
	s = ((DIVEC)ps & ~odd) | ((DIVEC)pc & odd);
	c = ((DIVEC)pc & ~odd) | ((DIVEC)ps & odd);
	s ^= -((q >> 1) & 1) & sign;
	c ^= -(((q + 1) >> 1) & 1) & sign;
	*sn = (DVEC)s;
	*cs = (DVEC)c;
}

/* Store row j of tab from the double cos and sin of pairs i .. i + DW - 1
 * (layout in trig). */
INLINE void FN(trig_store)(const struct dec_job *J, FT *c, FT *s, int64_t i,
	DVEC cv, DVEC sv)
{
	if (J->interleaved) {
		DIVEC lo = { 0 }, hi = { 0 }, slo = { 0 }, shi = { 0 };
		HVEC x;

#pragma GCC unroll 16
		for (int l = 0; l < DW; l++) {
			lo[l] = l / 2;
			hi[l] = DW / 2 + l / 2;
			slo[l] = l / 2 + (l % 2 ? DW : 0);
			shi[l] = DW / 2 + l / 2 + (l % 2 ? DW : 0);
		}
		x = __builtin_convertvector(DSHUF1(cv, lo), HVEC);
		VSTORE(c + 2 * i, x);
		x = __builtin_convertvector(DSHUF1(cv, hi), HVEC);
		VSTORE(c + 2 * i + DW, x);
		x = __builtin_convertvector(DSHUF2(-sv, sv, slo), HVEC);
		VSTORE(s + 2 * i, x);
		x = __builtin_convertvector(DSHUF2(-sv, sv, shi), HVEC);
		VSTORE(s + 2 * i + DW, x);
	} else {
		HVEC x = __builtin_convertvector(cv, HVEC);

		VSTORE(c + i, x);
		x = __builtin_convertvector(sv, HVEC);
		VSTORE(s + i, x);
	}
}

/*
 * cos and sin of every (key, pair) of the block at s0, of the angle
 * A = fl(s freq) the reference rotates by, rounded once to FT. Row j of
 * tab (4 hp values) holds, for the half style, hp cosines then, from 2 hp,
 * hp sines; for the interleaved style each cosine twice (lanes 2i and
 * 2i + 1), then from 2 hp each sine as -s, s (see rotate).
 *
 * The block's first key gets sincos(A0); the next keys are reached by
 * rotating by (cos f, sin f), i.e. the angle X_j = A0 + j f, 4 mul and 2
 * add instead of a sincos, with errors of j ulps (j < 64). X_j is not
 * the reference's fl((s0 + j) f): they differ by d = e_0 - e_j, e the
 * exact error of the product fl(s f) (Dekker: f in 26-bit halves, s below
 * 2^26, so every partial product is exact), up to an ulp of the angle
 * (6e-11 at s = 2^18, too much for float64), so cos X - d sin X and
 * sin X + d cos X are stored (d^2 ~ 1e-21 is dropped). float32 needs no
 * correction. Positions or angles past DEC_ANGLE_MAX go to libm.
 */
DEC_TARGET static void FN(trig)(const struct dec_job *J, int64_t s0,
	int64_t nb, FT *tab, double *st)
{
	const int64_t hp = J->hp;
	const double *f = J->freq, *fh = f + hp, *fl = f + 2 * hp;
	const double *c1 = f + 3 * hp, *s1 = f + 4 * hp;
	const int exact = sizeof(FT) == 8;
	double *sc = st, *ss = st + hp, *e0 = st + 2 * hp;

	if ((double)(s0 + nb) * J->fmax >= DEC_ANGLE_MAX || s0 + nb > (1 << 26)) {
		for (int64_t j = 0; j < nb; j++)
			for (int64_t i = 0; i < hp; i += DW) {
				DVEC a, cv, sv;

				VLOAD(a, f + i);
				a = (double)(s0 + j) * a;
#pragma GCC unroll 16
				for (int l = 0; l < DW; l++) {
					cv[l] = cos(a[l]);
					sv[l] = sin(a[l]);
				}
				FN(trig_store)(J, tab + j * 4 * hp, tab + j * 4 * hp + 2 * hp,
					i, cv, sv);
			}
		return;
	}
	for (int64_t i = 0; i < hp; i += DW) {
		DVEC fv, hv, lv, a, cv, sv, e;
		const double p0 = (double)s0;

		VLOAD(fv, f + i);
		VLOAD(hv, fh + i);
		VLOAD(lv, fl + i);
		a = p0 * fv;
		FN(sincos)(a, &sv, &cv);
		e = (p0 * hv - a) + p0 * lv;
		VSTORE(sc + i, cv);
		VSTORE(ss + i, sv);
		VSTORE(e0 + i, e);
	}
	for (int64_t j = 0; j < nb; j++) {
		const double pos = (double)(s0 + j);
		FT *c = tab + j * 4 * hp, *s = c + 2 * hp;

		for (int64_t i = 0; i < hp; i += DW) {
			DVEC cv, sv, cs1, sn1, x, y;

			VLOAD(cv, sc + i);
			VLOAD(sv, ss + i);
			VLOAD(cs1, c1 + i);
			VLOAD(sn1, s1 + i);
			if (exact && j > 0) {
				DVEC fv, hv, lv, a, e, d;

				VLOAD(fv, f + i);
				VLOAD(hv, fh + i);
				VLOAD(lv, fl + i);
				VLOAD(e, e0 + i);
				a = pos * fv;
				d = e - ((pos * hv - a) + pos * lv);
				x = cv - d * sv;
				y = sv + d * cv;
				FN(trig_store)(J, c, s, i, x, y);
			} else {
				FN(trig_store)(J, c, s, i, cv, sv);
			}
			x = cv * cs1 - sv * sn1;
			y = sv * cs1 + cv * sn1;
			VSTORE(sc + i, x);
			VSTORE(ss + i, y);
		}
	}
}

/* Rotate the first rd values of nb key rows (src + j * ld, stored as KT:
 * widened here, so kr is always FT) into kr, as
 * lcai_rope_apply(_f) does: a c - b s and a s + b c in FT. Half style:
 * a = x[i], b = x[i + h] with tab's c, s; interleaved: pairs of adjacent
 * lanes, y = x cc + swap(x) ss with tab's duplicated cc and signed ss
 * (ss[2i] = -s_i, exact), so both run on whole vectors. */
DEC_TARGET static void FN(rotate)(const struct dec_job *J, const KT *src,
	int64_t ld, int64_t nb, const FT *tab, FT *kr)
{
	const int64_t rd = J->rd, h = rd / 2, w = 4 * J->hp;

	for (int64_t j = 0; j < nb; j++) {
		const KT *x = src + j * ld;
		const FT *c = tab + j * w, *s = c + w / 2;
		FT *y = kr + j * rd;
		int64_t i = 0;

		if (J->interleaved) {
			IVEC swap = { 0 };

#pragma GCC unroll 16
			for (int l = 0; l < VW; l++)
				swap[l] = l ^ 1;
			for (; i + VW <= rd; i += VW) {
				VEC a, cc, ss;

				a = FN(kload)(x + i, DEC_WIDE);
				VLOAD(cc, c + i);
				VLOAD(ss, s + i);
				a = a * cc + SHUF1(a, swap) * ss;
				VSTORE(y + i, a);
			}
			for (; i < rd; i++)
				y[i] = FN(kload1)(x + i, DEC_WIDE) * c[i] +
					FN(kload1)(x + (i ^ 1), DEC_WIDE) * s[i];
		} else {
			for (; i + VW <= h; i += VW) {
				VEC a, b, cv, sv, ya, yb;

				a = FN(kload)(x + i, DEC_WIDE);
				b = FN(kload)(x + i + h, DEC_WIDE);
				VLOAD(cv, c + i);
				VLOAD(sv, s + i);
				ya = a * cv - b * sv;
				yb = a * sv + b * cv;
				VSTORE(y + i, ya);
				VSTORE(y + i + h, yb);
			}
			for (; i < h; i++) {
				FT a = FN(kload1)(x + i, DEC_WIDE);
				FT b = FN(kload1)(x + i + h, DEC_WIDE);

				y[i] = a * c[i] - b * s[i];
				y[i + h] = a * s[i] + b * c[i];
			}
		}
	}
}

/* ---- logits ------------------------------------------------------------- */

/* Sum of the lanes of v, as a tree of shuffles. */
INLINE FT FN(hsum)(VEC v)
{
#pragma GCC unroll 16
	for (int h = VW / 2; h >= 1; h /= 2) {
		IVEC idx = { 0 };

#pragma GCC unroll 16
		for (int i = 0; i < VW; i++)
			idx[i] = i ^ h;
		v += SHUF1(v, idx);
	}
	return v[0];
}

/* a and b reduced pairwise within blocks of 2h lanes: in each block, the
 * first h lanes get a's two halves summed, the last h lanes b's. */
INLINE VEC FN(comb)(VEC a, VEC b, const int h)
{
	IVEC lo = { 0 }, hi = { 0 };

#pragma GCC unroll 16
	for (int l = 0; l < VW; l++) {
		const int blk = l / (2 * h) * (2 * h), off = l % (2 * h);

		lo[l] = off < h ? blk + off : VW + blk + off - h;
		hi[l] = off < h ? blk + off + h : VW + blk + off;
	}
	return SHUF2(a, b, lo) + SHUF2(a, b, hi);
}

/* Index t with its log2(VW) bits reversed. */
INLINE int FN(bitrev)(int t)
{
	int r = 0;

#pragma GCC unroll 16
	for (int b = 1; b < VW; b *= 2)
		r = r * 2 + (t & b ? 1 : 0);
	return r;
}

/* The VW lane sums of v[0..VW), as one vector in that order: a tree of
 * VW - 1 combs (3 ops each, against 2 log2(VW) per separate sum). Fed in
 * bit-reversed order, the tree leaves sum t in lane t. v is clobbered. */
INLINE VEC FN(reduce)(VEC *v)
{
	VEC w[VW];
	int n = VW;

#pragma GCC unroll 16
	for (int t = 0; t < VW; t++)
		w[FN(bitrev)(t)] = v[t];
#pragma GCC unroll 16
	for (int h = VW / 2; h >= 1; h /= 2, n /= 2)
#pragma GCC unroll 16
		for (int m = 0; m < n / 2; m++)
			w[m] = FN(comb)(w[2 * m], w[2 * m + 1], h);
	return w[0];
}

/* qk_tile's sums over one key part k (w: stored as KT), query values qp. */
INLINE void FN(qk_tile_seg)(const FT *qp, int64_t dq, const struct KSEG *k,
	int64_t j, VEC *acc, FT *tail, const int NR, const int NK, const int w)
{
	const char *kp[VW];
	const int64_t n = k->n;
	int64_t c = 0;

#pragma GCC unroll 16
	for (int kk = 0; kk < NK; kk++)
		kp[kk] = KAT(k->p, (j + kk) * k->ld, w);
	for (; c + VW <= n; c += VW) {
		VEC qv[2], kv;

#pragma GCC unroll 16
		for (int r = 0; r < NR; r++)
			VLOAD(qv[r], qp + r * dq + c);
#pragma GCC unroll 16
		for (int kk = 0; kk < NK; kk++) {
			kv = FN(kload)(KAT(kp[kk], c, w), w);
#pragma GCC unroll 16
			for (int r = 0; r < NR; r++)
				acc[r * NK + kk] = VFMA(qv[r], kv, acc[r * NK + kk]);
		}
	}
	for (; c < n; c++)
#pragma GCC unroll 16
		for (int t = 0; t < NR * NK; t++)
			tail[t] += qp[(t / NK) * dq + c] *
				FN(kload1)(KAT(kp[t % NK], c, w), w);
}

/* s[r * BK + kk] = <q_r, key j + kk> for NR <= 2 rows and NK keys, NR NK
 * <= VW: key rows are the concatenation of the ns parts, query rows
 * (stride dq) the same concatenation. A tile of at least VW / 2 sums
 * reduces its accumulators with one tree (zero-padded to VW). */
INLINE void FN(qk_tile)(const FT *q, int64_t dq, const struct KSEG *sg,
	int ns, int64_t j, FT *s, const int NR, const int NK)
{
	VEC acc[2 * VW];
	FT tail[2 * VW];
	int64_t off = 0;

#pragma GCC unroll 16
	for (int t = 0; t < NR * NK; t++) {
		acc[t] = (VEC){ 0 };
		tail[t] = 0;
	}
	for (int g = 0; g < ns; g++) {
		if (DEC_WIDE && sg[g].wide)
			FN(qk_tile_seg)(q + off, dq, &sg[g], j, acc, tail, NR, NK, 1);
		else
			FN(qk_tile_seg)(q + off, dq, &sg[g], j, acc, tail, NR, NK, 0);
		off += sg[g].n;
	}
	if (NR * NK >= VW / 2 && NR * NK > 1) {
		VEC sum, tv;

#pragma GCC unroll 16
		for (int t = NR * NK; t < VW; t++) {
			acc[t] = (VEC){ 0 };
			tail[t] = 0;
		}
		sum = FN(reduce)(acc);
		VLOAD(tv, tail);
		sum += tv;
#pragma GCC unroll 2
		for (int r = 0; r < NR; r++)
			memcpy(s + r * BK, (FT *)&sum + r * NK, NK * sizeof(FT));
	} else {
#pragma GCC unroll 16
		for (int t = 0; t < NR * NK; t++)
			s[(t / NK) * BK + t % NK] = FN(hsum)(acc[t]) + tail[t];
	}
}

/* Ask for rows j .. j + nk - 1 of each of the npf parts in pf, into L2
 * (into L1 was slower on Zen 4: it fights the current pass for the
 * miss buffers; no prefetch at all streamed at half the bandwidth). */
INLINE void FN(prefetch)(const struct KSEG *pf, int npf, int64_t j,
	int64_t nk)
{
	for (int t = 0; t < npf; t++)
		for (int64_t kk = j; kk < j + nk; kk++) {
			const char *row = KAT(pf[t].p, kk * pf[t].ld, pf[t].wide);

			for (int64_t b = 0; b < pf[t].n * KES(pf[t].wide); b += 64)
				__builtin_prefetch(row + b, 0, 2);
		}
}

/* The next pass still to request: pf (npf parts), rows next .. end - 1.
 * qk and pv spread the requests over their work, so that memory works
 * while the pass computes: by whole rows (pf_some, one row block at a
 * time), or, in the register-blocked kernels, a line or two per step of
 * their inner loops from the byte range [p, lim) (pf_refill: the rest of
 * part t when its rows are contiguous, else its next row). */
struct PFQ {
	const struct KSEG *pf;
	int npf, t;
	int64_t next, end;
	const char *p, *lim;
};

/* Request up to n more rows of the queue. */
INLINE void FN(pf_some)(struct PFQ *pq, int64_t n)
{
	if (pq->next < pq->end) {
		if (n > pq->end - pq->next)
			n = pq->end - pq->next;
		FN(prefetch)(pq->pf, pq->npf, pq->next, n);
		pq->next += n;
	}
}

/* Make [p, lim) the next range if the current one is used up; p starts
 * on a line. */
INLINE void FN(pf_refill)(struct PFQ *pq)
{
	while (pq->p >= pq->lim && pq->t < pq->npf) {
		const struct KSEG *k = &pq->pf[pq->t];
		const int64_t rows = k->ld == k->n ? pq->end - pq->next : 1;
		const char *row = KAT(k->p, pq->next * k->ld, k->wide);

		if (pq->next >= pq->end) {
			pq->t++;
			pq->next = 0;
			continue;
		}
		pq->p = (const char *)((uintptr_t)row & ~(uintptr_t)63);
		pq->lim = row + rows * k->n * KES(k->wide);
		pq->next += rows;
	}
}

/* Request every line still queued. */
INLINE void FN(pf_rest)(struct PFQ *pq)
{
	for (FN(pf_refill)(pq); pq->p < pq->lim; FN(pf_refill)(pq))
		for (; pq->p < pq->lim; pq->p += 64)
			__builtin_prefetch(pq->p, 0, 2);
}

/* One queued line at *pp (a local copy of pq->p, so it stays in a
 * register in the inner loops), if any is left in the range. */
#define PF_LINE(pp, lim) do { \
		if ((pp) < (lim)) { \
			__builtin_prefetch((pp), 0, 2); \
			(pp) += 64; \
		} \
	} while (0)

/* s[r * BK + kk] = <q_r, key j + kk> for NR <= QR rows and NK <= QK keys
 * at once: each key vector is loaded once for all NR rows (a query vector
 * once for all NK keys), so a block of QR rows reads every key once, from
 * wherever it is, and the loads stay well under the FMAs (QR + QK loads
 * for QR QK FMAs). The QR QK accumulators fill the register file (QR = 8,
 * QK = 3 for 32 registers). Their lane sums are reduced VW at a time by
 * the tree of reduce. */
/* qk_rows' sums over one key part k (w: stored as KT), packed queries
 * qs; *pp walks the queued lines below lim. */
INLINE void FN(qk_rows_seg)(const FT *qs, const struct KSEG *k, int64_t j,
	int64_t ahead, const char **pp, const char *lim, VEC *acc, FT *tail,
	const int NR, const int NK, const int w)
{
	const char *kp[QK];
	const int64_t n = k->n;
	int64_t c = 0;

#pragma GCC unroll 16
	for (int kk = 0; kk < NK; kk++)
		kp[kk] = KAT(k->p, (j + kk) * k->ld, w);
	for (; c + VW <= n; c += VW) {
		VEC kv[QK], qv;

#pragma GCC unroll 16
		for (int kk = 0; kk < NK; kk++) {
			kv[kk] = FN(kload)(KAT(kp[kk], c, w), w);
			__builtin_prefetch(KAT(kp[kk], ahead * k->ld + c, w), 0, 3);
		}
		PF_LINE(*pp, lim);
		PF_LINE(*pp, lim);
#pragma GCC unroll 16
		for (int r = 0; r < NR; r++) {
			VLOAD(qv, qs + c * QR + r * VW);
			REG(qv);
#pragma GCC unroll 16
			for (int kk = 0; kk < NK; kk++)
				acc[r * NK + kk] = VFMA(qv, kv[kk], acc[r * NK + kk]);
		}
	}
	for (; c < n; c++)
#pragma GCC unroll 32
		for (int t = 0; t < NR * NK; t++)
			tail[t] += qs[c / VW * QR * VW + (t / NK) * VW + c % VW] *
				FN(kload1)(KAT(kp[t % NK], c, w), w);
}

INLINE void FN(qk_rows)(const FT *qb, const struct KSEG *sg, int ns,
	int64_t j, int64_t ahead, struct PFQ *pq, FT *s, const int NR,
	const int NK)
{
	enum { NA = (QR * QK + VW - 1) / VW * VW };
	VEC acc[NA];
	FT tail[NA];
	const char *pp = pq->p, *const lim = pq->lim;
	int64_t off = 0;

#pragma GCC unroll 32
	for (int t = 0; t < NA; t++) {
		acc[t] = (VEC){ 0 };
		tail[t] = 0;
	}
	for (int g = 0; g < ns; g++) {
		if (DEC_WIDE && sg[g].wide)
			FN(qk_rows_seg)(qb + off * QR, &sg[g], j, ahead, &pp, lim, acc,
				tail, NR, NK, 1);
		else
			FN(qk_rows_seg)(qb + off * QR, &sg[g], j, ahead, &pp, lim, acc,
				tail, NR, NK, 0);
		off += (sg[g].n + VW - 1) / VW * VW;
	}
	pq->p = pp;
#pragma GCC unroll 4
	for (int t0 = 0; t0 < NR * NK; t0 += VW) {
		VEC sum, tv;

		sum = FN(reduce)(acc + t0);
		VLOAD(tv, tail + t0);
		sum += tv;
#pragma GCC unroll 16
		for (int l = 0; l < VW; l++)
			if (t0 + l < NR * NK)
				s[(t0 + l) / NK * BK + (t0 + l) % NK] = sum[l];
	}
}

/* qk for nr >= QR rows: tiles of QR rows by QK keys (qk_rows), keys
 * outer, so that a key tile is read from memory once and from L1 by the
 * further row blocks; rows past the last whole block take qk_tile. Each
 * tile asks for the next tile's keys into L1, and its inner loop for two
 * lines of the next pass into L2 (pv asks for the rest). */
DEC_TARGET static void FN(qk_many)(const FT *q, int64_t dq, int64_t nr,
	const FT *qpk, int64_t pw, const struct KSEG *sg, int ns, int64_t nb,
	FT *S, struct PFQ *pq)
{
	const int64_t rq = nr / QR * QR;
	int64_t j = 0;

	for (; j + QK <= nb; j += QK)
		for (int64_t r = 0; r < rq; r += QR) {
			FN(pf_refill)(pq);
			FN(qk_rows)(qpk + r * pw, sg, ns, j,
				r == 0 && j + 2 * QK <= nb ? QK : 0, pq, S + r * BK + j,
				QR, QK);
		}
	for (; j < nb; j++)
		for (int64_t r = 0; r < rq; r += QR)
			FN(qk_rows)(qpk + r * pw, sg, ns, j, 0, pq, S + r * BK + j,
				QR, 1);
	for (int64_t r = rq; r < nr; r++)
		for (j = 0; j < nb; j++)
			FN(qk_tile)(q + r * dq, dq, sg, ns, j, S + r * BK + j, 1, 1);
}

/* Pack the query rows of every kv head for qk_rows, in blocks of QR rows:
 * per block and key part (rot, a, b; the empty ones left out, as in
 * parts), the part's values in vectors of VW, the block's QR rows next to
 * each other ([vector][QR][VW], zero-padded to whole vectors), so that one
 * pointer reaches every row of the block. Rows past the last whole block
 * stay with qk_tile, which reads J->q. */
DEC_TARGET static void FN(pack_q)(const struct dec_job *J)
{
	const struct dec_seg *part[3] = { &J->rot, &J->a, &J->b };
	const FT *q = J->q;
	FT *dst = J->qpk;

	for (int64_t g = 0; g < J->nkv; g++)
		for (int64_t b = 0; b + QR <= J->R; b += QR) {
			int64_t off = 0;

			for (int t = 0; t < 3; t++) {
				const int64_t n = part[t]->n;

				for (int64_t c0 = 0; c0 < n; c0 += VW)
					for (int r = 0; r < QR; r++) {
						const FT *row = q + (g * J->R + b + r) * J->dq + off;

						for (int l = 0; l < VW; l++)
							*dst++ = c0 + l < n ? row[c0 + l] : 0;
					}
				off += n;
			}
		}
}

/* Logits S[nr][BK] of nb keys against nr query rows (qpk: the rows
 * packed for qk_many, pw values each). Key tiles are the outer loop, so a
 * tile stays in L1 while every row pair meets it. On the way, the rows of
 * the next pass (pq, see block) are requested, a few per tile, so that
 * memory stays busy. */
DEC_TARGET static void FN(qk)(const FT *q, int64_t dq, int64_t nr,
	const FT *qpk, int64_t pw, const struct KSEG *sg, int ns, int64_t nb,
	FT *S, struct PFQ *pq)
{
	const int NK = nr == 1 ? VW : VW / 2;
	const int64_t tiles = nb / NK > 0 ? nb / NK : 1;
	const int64_t step = (pq->end - pq->next + tiles - 1) / tiles;
	int64_t j = 0;

	if (nr >= QR && pw >= DEC_MANY_MIN * VW) {
		FN(qk_many)(q, dq, nr, qpk, pw, sg, ns, nb, S, pq);
		return;
	}
	for (; j + NK <= nb; j += NK) {
		int64_t r = 0;

		FN(pf_some)(pq, step);
		if (nr == 1) {
			FN(qk_tile)(q, dq, sg, ns, j, S + j, 1, VW);
			continue;
		}
		for (; r + 2 <= nr; r += 2)
			FN(qk_tile)(q + r * dq, dq, sg, ns, j, S + r * BK + j, 2, VW / 2);
		if (r < nr)
			FN(qk_tile)(q + r * dq, dq, sg, ns, j, S + r * BK + j, 1, VW / 2);
	}
	for (; j < nb; j++) {
		int64_t r = 0;

		for (; r + 2 <= nr; r += 2)
			FN(qk_tile)(q + r * dq, dq, sg, ns, j, S + r * BK + j, 2, 1);
		if (r < nr)
			FN(qk_tile)(q + r * dq, dq, sg, ns, j, S + r * BK + j, 1, 1);
	}
	FN(pf_some)(pq, pq->end - pq->next);
}

/* ---- masks and the online softmax --------------------------------------- */

/* Logits past the block's nb keys, and of keys a row's query may not see,
 * become -inf (so they never enter a max or a sum). */
DEC_TARGET static void FN(mask)(const struct dec_job *J, int64_t s0,
	int64_t nb, FT *S)
{
	const int need = s0 < J->inner_lo || s0 + nb > J->inner_hi;

	for (int64_t r = 0; r < J->R; r++) {
		FT *row = S + r * BK;
		const int64_t i = r / J->G;

		if (need)
			for (int64_t j = 0; j < nb; j++)
				if (s0 + j < J->lo[i] || s0 + j >= J->hi[i])
					row[j] = -INFINITY;
		for (int64_t j = nb; j < BK; j++)
			row[j] = -INFINITY;
	}
}

#include "vexp.h"

/* x[0..n) *= a, in vectors (-O2 leaves such a loop scalar). */
INLINE void FN(scale_row)(FT *x, int64_t n, FT a)
{
	int64_t c = 0;

	for (; c + VW <= n; c += VW) {
		VEC v;

		VLOAD(v, x + c);
		v *= a;
		VSTORE(x + c, v);
	}
	for (; c < n; c++)
		x[c] *= a;
}

/* Largest of x[0..BK) (-inf for a fully masked row), its lanes reduced
 * by a tree. */
INLINE FT FN(blk_max)(const FT *x)
{
	VEC mx = (VEC){ 0 } - (FT)INFINITY, v;

#pragma GCC unroll 16
	for (int j = 0; j < BK; j += VW) {
		VLOAD(v, x + j);
		mx = VSEL(v > mx, v, mx);
	}
	return FN(lane_max)(mx);
}

/* x[0..BK) = exp(x - m) for x <= m (exp_vec: -inf gives 0), returning
 * their sum, its lanes reduced by a tree. */
INLINE FT FN(blk_exp)(FT *x, FT m)
{
	VEC sum = { 0 }, v;

#pragma GCC unroll 16
	for (int j = 0; j < BK; j += VW) {
		VLOAD(v, x + j);
		v = FN(exp_vec)(v - m);
		VSTORE(x + j, v);
		sum += v;
	}
	return FN(lane_sum)(sum);
}

/* The online-softmax step of one block for nr rows: logits become
 * exp(logit - m_new); a row whose max grew shrinks its sum and output by
 * exp(m_old - m_new) <= 1. A row with no visible key keeps its state.
 * The row's max and sum reduce their lanes by trees and the exp fuses its
 * multiply-adds: vexp.h's row_max and exp_row end in lane-by-lane scalar
 * chains, which left this step latency-bound (AVX-512, f32, MLA at H = 8,
 * AMD EPYC Zen 5: 13.5 TSC ticks per key with them, 11.5 with these, of
 * ~250 for the whole block from L3). */
DEC_TARGET static void FN(online)(int64_t nr, FT *S, FT *ml, FT *o,
	int64_t dvv)
{
	for (int64_t r = 0; r < nr; r++) {
		FT *row = S + r * BK, *m = ml + 2 * r, *l = m + 1;
		FT mx = FN(blk_max)(row);

		if (mx == -INFINITY) {
			memset(row, 0, BK * sizeof(FT));
			continue;
		}
		if (mx > *m) {
			if (*m > -INFINITY) {
				FT alpha = (FT)exp((double)*m - (double)mx);

				FN(scale_row)(o + r * dvv, dvv, alpha);
				*l *= alpha;
			}
			*m = mx;
		}
		*l += FN(blk_exp)(row, *m);
	}
}

/* ---- values ------------------------------------------------------------- */

/* o[NR][NV vectors] += P[NR][nb] v[nb][.], P rows of stride BK. */
INLINE void FN(pv_tile)(const FT *P, const KT *v, int64_t ldv, int64_t nb,
	FT *o, int64_t ldo, struct PFQ *pq, const int NR, const int NV)
{
	VEC acc[QR > 4 ? QR : 4][NB > PV ? NB : PV], b[NB > PV ? NB : PV];
	const char *pp = pq ? pq->p : NULL, *const lim = pq ? pq->lim : NULL;

#pragma GCC unroll 16
	for (int r = 0; r < NR; r++)
#pragma GCC unroll 16
		for (int u = 0; u < NV; u++)
			VLOAD(acc[r][u], o + r * ldo + u * VW);

	for (int64_t j = 0; j < nb; j++) {
		if (pq)
			PF_LINE(pp, lim);
#pragma GCC unroll 16
		for (int u = 0; u < NV; u++)
			b[u] = FN(kload)(v + j * ldv + u * VW, DEC_WIDE);
#pragma GCC unroll 16
		for (int r = 0; r < NR; r++) {
			FT w = P[r * BK + j];

#pragma GCC unroll 16
			for (int u = 0; u < NV; u++)
				acc[r][u] = VFMA((VEC){ 0 } + w, b[u], acc[r][u]);
		}
	}
#pragma GCC unroll 16
	for (int r = 0; r < NR; r++)
#pragma GCC unroll 16
		for (int u = 0; u < NV; u++)
			VSTORE(o + r * ldo + u * VW, acc[r][u]);
	if (pq)
		pq->p = pp;
}

/* All dvv columns of NR <= 4 rows. */
INLINE void FN(pv_rows)(const FT *P, const KT *v, int64_t ldv, int64_t nb,
	FT *o, int64_t dvv, const int NR)
{
	int64_t c = 0;

	for (; c + NB * VW <= dvv; c += NB * VW)
		FN(pv_tile)(P, v + c, ldv, nb, o + c, dvv, NULL, NR, NB);
	for (; c + VW <= dvv; c += VW)
		FN(pv_tile)(P, v + c, ldv, nb, o + c, dvv, NULL, NR, 1);
	for (; c < dvv; c++)
#pragma GCC unroll 16
		for (int r = 0; r < NR; r++) {
			FT acc = o[r * dvv + c];

			for (int64_t j = 0; j < nb; j++)
				acc += P[r * BK + j] * FN(kload1)(v + j * ldv + c, DEC_WIDE);
			o[r * dvv + c] = acc;
		}
}

/* pv for nr >= QR rows: tiles of QR rows by PV vectors, so that a value
 * vector loaded once serves QR rows (QR + PV loads for QR PV FMAs) and a
 * block of QR rows reads the values once. The rest of the next pass is
 * requested on the way, a line per key of each column tile. */
DEC_TARGET static void FN(pv_many)(const FT *P, int64_t nr, const KT *v,
	int64_t ldv, int64_t nb, FT *o, int64_t dvv, struct PFQ *pq)
{
	const int64_t rq = nr / QR * QR;

	for (int64_t r = 0; r < rq; r += QR) {
		const FT *pr = P + r * BK;
		FT *orow = o + r * dvv;
		int64_t c = 0;

		for (; c + PV * VW <= dvv; c += PV * VW) {
			FN(pf_refill)(pq);
			FN(pv_tile)(pr, v + c, ldv, nb, orow + c, dvv, pq, QR, PV);
		}
		/* two vectors at a time where PV > 2 leaves some (MLA's dc 512
		 * in tiles of 3: 2 left): a lone vector serves QR broadcasts
		 * with one load and QR dependent accumulators */
		for (; PV > 2 && c + 2 * VW <= dvv; c += 2 * VW) {
			FN(pf_refill)(pq);
			FN(pv_tile)(pr, v + c, ldv, nb, orow + c, dvv, pq, QR, 2);
		}
		for (; c + VW <= dvv; c += VW) {
			FN(pf_refill)(pq);
			FN(pv_tile)(pr, v + c, ldv, nb, orow + c, dvv, pq, QR, 1);
		}
		for (; c < dvv; c++)
			for (int64_t i = 0; i < QR; i++) {
				FT acc = orow[i * dvv + c];

				for (int64_t j = 0; j < nb; j++)
					acc += pr[i * BK + j] *
						FN(kload1)(v + j * ldv + c, DEC_WIDE);
				orow[i * dvv + c] = acc;
			}
	}
	for (int64_t r = rq; r < nr; r++)
		FN(pv_rows)(P + r * BK, v, ldv, nb, o + r * dvv, dvv, 1);
	FN(pf_rest)(pq);
}

DEC_TARGET static void FN(pv)(const FT *P, int64_t nr, const KT *v,
	int64_t ldv, int64_t nb, FT *o, int64_t dvv, struct PFQ *pq)
{
	int64_t r = 0;

	if (nr >= QR) {
		FN(pv_many)(P, nr, v, ldv, nb, o, dvv, pq);
		return;
	}

	for (; r + 4 <= nr; r += 4)
		FN(pv_rows)(P + r * BK, v, ldv, nb, o + r * dvv, dvv, 4);
	for (; r < nr; r++)
		FN(pv_rows)(P + r * BK, v, ldv, nb, o + r * dvv, dvv, 1);
}

/* ---- blocks, chunks, merge ---------------------------------------------- */

/* The first np parts (rot, a, b, v) of block s0 of kv head g as rows, the
 * empty ones left out: the rotated part from kr if given, else in place
 * (dec_row: the block lies in one page, so its rows are ld apart).
 * Returns their count. */
INLINE int FN(parts)(const struct dec_job *J, int64_t g, int64_t s0,
	const FT *kr, int np, struct KSEG *sg)
{
	const struct dec_seg *part[4] = { &J->rot, &J->a, &J->b, &J->v };
	int ns = 0;

	for (int t = 0; t < np; t++) {
		/* absorbed MLA: the values are the latent keys themselves */
		if (part[t]->n == 0 || (t == 3 && J->v.buf == J->a.buf &&
		    J->v.off == J->a.off))
			continue;
		if (t == 0 && kr)
			sg[ns++] = (struct KSEG){ kr, J->rd, J->rd, 0 };
		else
			sg[ns++] = (struct KSEG){ dec_row(J, part[t], s0, g),
				J->kv->row[part[t]->buf], part[t]->n, DEC_WIDE };
	}
	return ns;
}

/* Key block [s0, s0 + nb) of kv head g against its R rows, whose state is
 * ml (m, l pairs) and o (R x dvv). tab holds the block's cos/sin. The
 * next pass (kv head g + 1, or the next block, possibly the first of the
 * next chunk) is (g1, s1, nb1); nb1 = 0 if none. */
DEC_TARGET static void FN(block)(const struct dec_job *J, int64_t g,
	int64_t s0, int64_t nb, struct dec_ws *ws, FT *o, FT *ml, int64_t g1,
	int64_t s1, int64_t nb1)
{
	struct KSEG sg[4], pf[4];
	struct PFQ pq = { .pf = pf, .end = nb1 };
	FT *S = ws->s;
	int ns;

	if (J->rd > 0)
		FN(rotate)(J, (const KT *)dec_row(J, &J->rot, s0, g),
			J->kv->row[J->rot.buf], nb, ws->tab, ws->kr);
	ns = FN(parts)(J, g, s0, J->rd > 0 ? ws->kr : NULL, 3, sg);
	pq.npf = nb1 > 0 ? FN(parts)(J, g1, s1, NULL, 4, pf) : 0;
	FN(qk)((const FT *)J->q + g * J->R * J->dq, J->dq, J->R,
		(const FT *)J->qpk + g * (J->R / QR) * QR * J->pw, J->pw, sg, ns, nb,
		S, &pq);
	FN(mask)(J, s0, nb, S);
	FN(online)(J->R, S, ml, o, J->dvv);
	FN(pv)(S, J->R, (const KT *)dec_row(J, &J->v, s0, g),
		J->kv->row[J->v.buf], nb, o, J->dvv, &pq);
}

/* Chunk c: its keys in blocks, every kv head per block (so the block's
 * cos/sin serve all of them), into the chunk's partial state. */
DEC_TARGET static void FN(chunk)(const struct dec_job *J, int64_t c,
	struct dec_ws *ws)
{
	const int64_t nrow = J->nkv * J->R, dvv = J->dvv;
	const int64_t s_lo = J->klo + c * J->chunk;
	const int64_t s_hi = J->khi - s_lo < J->chunk ? J->khi : s_lo + J->chunk;
	FT *o = (FT *)J->po + c * nrow * dvv, *ml = (FT *)J->pml + c * nrow * 2;

	memset(o, 0, (size_t)(nrow * dvv) * sizeof(FT));
	for (int64_t r = 0; r < nrow; r++) {
		ml[2 * r] = -INFINITY;
		ml[2 * r + 1] = 0;
	}
	for (int64_t s0 = s_lo; s0 < s_hi; s0 += BK) {
		const int64_t nb = s_hi - s0 < BK ? s_hi - s0 : BK;

		if (J->rd > 0)
			FN(trig)(J, s0, nb, ws->tab, ws->st);
		for (int64_t g = 0; g < J->nkv; g++) {
			const int last = g + 1 == J->nkv;
			const int64_t s1 = last ? s0 + BK : s0;
			int64_t nb1 = J->khi - s1 < BK ? J->khi - s1 : BK;

			FN(block)(J, g, s0, nb, ws, o + g * J->R * dvv,
				ml + g * J->R * 2, last ? 0 : g + 1, s1,
				nb1 > 0 ? nb1 : 0);
		}
	}
}

/* Merge the chunks of one row (log-sum-exp rule, fixed chunk order, in
 * double): acc[dvv] receives the normalised output, w[nch] is scratch;
 * returns the lse (-inf, acc = 0 when no chunk saw a key). */
DEC_TARGET static double FN(merge_row)(const struct dec_job *J, int64_t row,
	double *w, double *acc)
{
	const int64_t nrow = J->nkv * J->R, dvv = J->dvv;
	const FT *ml = J->pml, *po = J->po;
	double M = -INFINITY, L = 0;

	for (int64_t d = 0; d < dvv; d++)
		acc[d] = 0;
	for (int64_t c = 0; c < J->nch; c++)
		if (ml[(c * nrow + row) * 2] > M)
			M = ml[(c * nrow + row) * 2];
	if (M == -INFINITY)
		return -INFINITY;
	for (int64_t c = 0; c < J->nch; c++) {
		const FT m = ml[(c * nrow + row) * 2], l = ml[(c * nrow + row) * 2 + 1];

		w[c] = m == -INFINITY ? 0.0 : exp((double)m - M);
		L += w[c] * (double)l;
	}
	for (int64_t c = 0; c < J->nch; c++) {
		const FT *oc = po + (c * nrow + row) * dvv;
		const DVEC wv = (DVEC){ 0 } + w[c];
		int64_t d = 0;

		if (w[c] == 0)
			continue;
		for (; d + DW <= dvv; d += DW) {
			HVEC h;
			DVEC a;

			VLOAD(h, oc + d);
			VLOAD(a, acc + d);
			a += wv * __builtin_convertvector(h, DVEC);
			VSTORE(acc + d, a);
		}
		for (; d < dvv; d++)
			acc[d] += w[c] * (double)oc[d];
	}
	for (int64_t d = 0; d < dvv; d++)
		acc[d] /= L;
	return M + log(L);
}

static const struct dec_ops FN(dec_ops) = {
	sizeof(FT), VW, QR, FN(pack_q), FN(chunk), FN(merge_row),
};

#undef VW
#undef DW
#undef NB
#undef BK
#undef QR
#undef QK
#undef PV
#undef VEC
#undef IVEC
#undef DVEC
#undef DIVEC
#undef KSEG
#undef PFQ
#undef HVEC
#undef INLINE
#undef VLOAD
#undef REG
#undef VSTORE
#undef VSEL
#undef SHUF1
#undef SHUF2
#undef DSHUF1
#undef DSHUF2
#undef FT
#undef FI
#undef KT
#undef FN
#undef VFMA
#undef DEC_WIDE
#undef DEC_KWIDEN
#undef KES
#undef KAT

