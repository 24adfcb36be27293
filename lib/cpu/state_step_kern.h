/*
 * state_step_kern.h - the typed kernels of state_step.c, written once
 * and included by it per (element type, vector width), as decode.c does
 * with decode.h. Not a standalone header; each inclusion consumes:
 *
 *   FT          element type
 *   OPS         the struct of state_step.h that holds FT's kernels
 *   FN(name)    names the instance's functions
 *   VFMA(a,b,c) a b + c on vectors, SFMA on scalars: FMA instructions
 *               where the ISA has them (then DECAY splits the decay
 *               factor, see below), a * b + c otherwise
 *
 * and reads ST_VB (vector bytes), ST_NV (vectors per column block),
 * ST_FMA (1 when VFMA is fused), ST_TARGET (the ISA attribute) and
 * ST_PF (rows ahead to prefetch).
 */

#define VW (ST_VB / (int)sizeof(FT))    /* elements per vector */
#define NV ST_NV
#define VEC FN(vec)
#define DVEC FN(dvec)
#define DECAY FN(decay)
#define SDECAY FN(sdecay)
#define INLINE ST_TARGET static inline __attribute__((always_inline))

typedef FT VEC __attribute__((vector_size(ST_VB)));
/* VW doubles: the double image of one VEC. */
typedef double DVEC __attribute__((vector_size(VW * 8)));

#define VLOAD(x, p) memcpy(&(x), (p), sizeof(x))
#define VSTORE(p, x) memcpy((p), &(x), sizeof(x))

/*
 * The decay factor e (double: rounded to float it would bias every step
 * by up to 6e-8 relative, which the state compounds over the ~1/(1 - e)
 * tokens it remembers; see deltanet.c and lightning.c) applied as
 * fl(e s + x y).
 *
 * float32 with FMA: e s = s - mu s with mu = 1 - e rounded to float, as
 * fl(x y + fl(s - mu s)): two FMAs, where the double form spent four
 * conversions. mu's rounding moves the decay by at most 2^-24 mu, which
 * compounds over the ~1/mu remembered tokens to about 2^-24 relative,
 * where rounding e itself would compound to (1/mu) 2^-24. Both roundings
 * are at the size of s (the double form rounds x y, then the sum):
 * measured, the 1M-token drift of lcattn bench --phase decode, lightning
 * 3.95e-5 against 2.50e-5 (bound 3e-4), deltanet 2.6e-7 either way.
 * fl(s + fl(x y - fl(mu s))) keeps the drift at 2.50e-5 but made the
 * steps 20-30% slower on Zen 4 (a multiply and an add beside the FMA).
 * float64 and builds without FMA keep the double form (float32 through
 * double lanes, as the scalar code did).
 */
struct FN(dec) {
	double e;
	FT mu;
};

INLINE struct FN(dec) FN(dec_make)(double e)
{
	return (struct FN(dec)){ e, (FT)(1.0 - e) };
}

/* x in every lane: x - 0 is x for every x, so the compiler drops the
 * subtraction and keeps the broadcast (x + 0 is not x for x = -0: GCC
 * then adds before it broadcasts, an extra op per row). */
INLINE VEC FN(splat)(FT x)
{
	return x - (VEC){ 0 };
}

INLINE VEC DECAY(struct FN(dec) d, VEC s, VEC x, VEC y)
{
#if ST_FMA
	if (sizeof(FT) == 4)
		return VFMA(x, y, VFMA(FN(splat)(-d.mu), s, s));
	return VFMA(x, y, FN(splat)((FT)d.e) * s);
#else
	if (sizeof(FT) == 4) {
		DVEC w = d.e * __builtin_convertvector(s, DVEC) +
			__builtin_convertvector(x * y, DVEC);

		return __builtin_convertvector(w, VEC);
	}
	return FN(splat)((FT)d.e) * s + x * y;
#endif
}

INLINE FT SDECAY(struct FN(dec) d, FT s, FT x, FT y)
{
#if ST_FMA
	if (sizeof(FT) == 4)
		return SFMA(x, y, SFMA(-d.mu, s, s));
	return SFMA(x, y, (FT)d.e * s);
#else
	return (FT)(d.e * s + (double)(x * y));
#endif
}

/* Ask for the lines of row r + ST_PF of the block (n bytes from p, rows
 * ld elements apart): a block is a few lines of each of dk rows 512 or
 * more bytes apart, a stride the hardware prefetchers followed only in
 * part (measured: the loads of the first pass waited most of its time). */
INLINE void FN(pf_row)(const FT *p, int64_t ld, int64_t r, int64_t rows,
	int n)
{
	if (r + ST_PF < rows)
		for (int b = 0; b < n; b += 64)
			__builtin_prefetch((const char *)(p + (r + ST_PF) * ld) + b, 0, 3);
}

/*
 * Gated DeltaNet, one token on one head's state, by column blocks of N VW
 * columns (N <= NV vectors). A column of S needs only its own part of
 *   y = S^T k,  u = beta (v - e y);  S = e S + k u^T;  o = S^T q,
 * so a block is read for its y (pass 1), then updated and multiplied by q
 * (pass 2). Pass 2 of block b runs together with pass 1 of block b + 1:
 * pass 1 alone waits on memory (the block comes from L2 or beyond, rows
 * dv apart) and pass 2 alone on the FMA units (the block is mostly in
 * L1), so each hides the other. Rows i of S0 and S are dv apart; S0 may
 * be S (a block is read whole before it is written, and the next block's
 * columns are not written until its own pass 2).
 *
 * k and q enter as the tensors' vectors with their factors kf and qf
 * (deltanet.c's dn_factors) folded into per-column values: y = kf S^T k,
 * the update's u' = kf u against k, and o = qf S^T q, so the row loops
 * broadcast k[i] and q[i] straight from memory (scaled copies held in
 * registers pushed an accumulator of the AVX2 build out to the stack).
 */

/* acc[t] += block c's rows times x[i]: pass 1 alone (the first block). */
INLINE void FN(dn_pass1)(const FT *S0, int64_t dk, int64_t dv, int64_t c,
	const FT *x, VEC *acc, const int N)
{
	const FT *Sr = S0 + c;

	for (int64_t i = 0; i < dk; i++) {
		const VEC xb = FN(splat)(x[i]);

		FN(pf_row)(Sr, dv, i, dk, N * ST_VB);
#pragma GCC unroll 8
		for (int t = 0; t < N; t++) {
			VEC s;

			VLOAD(s, Sr + i * dv + t * VW);
			acc[t] = VFMA(s, xb, acc[t]);
		}
	}
}

/* u' = kf beta (v - e kf y) of the block's columns, from y = S^T k. */
INLINE void FN(dn_u)(const FT *v, int64_t c, FT kf, struct FN(dec) d,
	double beta, const VEC *y, VEC *u, const int N)
{
#pragma GCC unroll 8
	for (int t = 0; t < N; t++) {
		VEC vv;
		DVEC w;

		VLOAD(vv, v + c + t * VW);
		w = (double)kf * (beta * (__builtin_convertvector(vv, DVEC) -
			d.e * ((double)kf * __builtin_convertvector(y[t], DVEC))));
		u[t] = __builtin_convertvector(w, VEC);
	}
}

/*
 * Pass 2 of block c (u from dn_u) into S and o, with pass 1 of block cn
 * (Nn vectors, none when Nn = 0) accumulated into yn.
 */
INLINE void FN(dn_pass2)(const FT *S0, FT *S, int64_t dk, int64_t dv,
	int64_t c, const FT *q, FT qf, const FT *k, struct FN(dec) d,
	const VEC *u, FT *o, const int N, int64_t cn, VEC *yn, const int Nn)
{
	VEC acc[NV];

#pragma GCC unroll 8
	for (int t = 0; t < N; t++)
		acc[t] = (VEC){ 0 };
	for (int64_t i = 0; i < dk; i++) {
		const VEC kb = FN(splat)(k[i]), qb = FN(splat)(q[i]);

		if (Nn)
			FN(pf_row)(S0 + cn, dv, i, dk, Nn * ST_VB);
#pragma GCC unroll 8
		for (int t = 0; t < Nn; t++) {
			VEC s;

			VLOAD(s, S0 + i * dv + cn + t * VW);
			yn[t] = VFMA(s, kb, yn[t]);
		}
#pragma GCC unroll 8
		for (int t = 0; t < N; t++) {
			VEC s;

			VLOAD(s, S0 + i * dv + c + t * VW);
			s = DECAY(d, s, kb, u[t]);
			VSTORE(S + i * dv + c + t * VW, s);
			acc[t] = VFMA(s, qb, acc[t]);
		}
	}
#pragma GCC unroll 8
	for (int t = 0; t < N; t++) {
		acc[t] *= qf;
		VSTORE(o + c + t * VW, acc[t]);
	}
}

/* Column j alone (the last dv mod VW columns), the same steps. */
INLINE void FN(dn_col)(const FT *S0, FT *S, int64_t dk, int64_t dv,
	int64_t j, const FT *q, FT qf, const FT *k, FT kf, const FT *v,
	struct FN(dec) d, double beta, FT *o)
{
	FT y = 0, u, acc = 0;

	for (int64_t i = 0; i < dk; i++)
		y = SFMA(S0[i * dv + j], k[i], y);
	u = (FT)((double)kf * (beta * ((double)v[j] - d.e * ((double)kf * y))));
	for (int64_t i = 0; i < dk; i++) {
		FT s = SDECAY(d, S0[i * dv + j], k[i], u);

		S[i * dv + j] = s;
		acc = SFMA(s, q[i], acc);
	}
	o[j] = acc * qf;
}

ST_TARGET static void FN(dn_token)(const FT *S0, FT *S, int64_t dk,
	int64_t dv, const FT *q, FT qf, const FT *k, FT kf, const FT *v,
	double e, double beta, FT *o)
{
	const struct FN(dec) d = FN(dec_make)(e);
	const int64_t nb = dv / (NV * VW);
	VEC y[NV], u[NV];
	int64_t c;

	/* whole blocks, pipelined */
	for (int t = 0; t < NV; t++)
		y[t] = (VEC){ 0 };
	if (nb > 0)
		FN(dn_pass1)(S0, dk, dv, 0, k, y, NV);
	for (int64_t b = 0; b < nb; b++) {
		c = b * NV * VW;
		FN(dn_u)(v, c, kf, d, beta, y, u, NV);
		for (int t = 0; t < NV; t++)
			y[t] = (VEC){ 0 };
		if (b + 1 < nb)
			FN(dn_pass2)(S0, S, dk, dv, c, q, qf, k, d, u, o, NV,
				c + NV * VW, y, NV);
		else
			FN(dn_pass2)(S0, S, dk, dv, c, q, qf, k, d, u, o, NV, 0,
				y, 0);
	}
	/* single vectors, then single columns */
	for (c = nb * NV * VW; c + VW <= dv; c += VW) {
		y[0] = (VEC){ 0 };
		FN(dn_pass1)(S0, dk, dv, c, k, y, 1);
		FN(dn_u)(v, c, kf, d, beta, y, u, 1);
		FN(dn_pass2)(S0, S, dk, dv, c, q, qf, k, d, u, o, 1, 0, y, 0);
	}
	for (; c < dv; c++)
		FN(dn_col)(S0, S, dk, dv, c, q, qf, k, kf, v, d, beta, o);
}

/*
 * Lightning, one token on one head's state, columns c .. c + N VW - 1:
 * S = lambda S + k v^T and o = scale S^T q in one pass, o in registers.
 */
INLINE void FN(lt_cols)(const FT *S0, FT *S, int64_t dk, int64_t dv,
	int64_t c, const FT *q, const FT *k, const FT *v, struct FN(dec) d,
	FT scale, FT *o, const int N)
{
	VEC vv[NV], acc[NV];

#pragma GCC unroll 8
	for (int t = 0; t < N; t++) {
		VLOAD(vv[t], v + c + t * VW);
		acc[t] = (VEC){ 0 };
	}
	for (int64_t i = 0; i < dk; i++) {
		const VEC kb = FN(splat)(k[i]), qb = FN(splat)(q[i]);

		FN(pf_row)(S0 + c, dv, i, dk, N * ST_VB);

#pragma GCC unroll 8
		for (int t = 0; t < N; t++) {
			VEC s;

			VLOAD(s, S0 + i * dv + c + t * VW);
			s = DECAY(d, s, kb, vv[t]);
			VSTORE(S + i * dv + c + t * VW, s);
			acc[t] = VFMA(s, qb, acc[t]);
		}
	}
#pragma GCC unroll 8
	for (int t = 0; t < N; t++) {
		acc[t] *= scale;
		VSTORE(o + c + t * VW, acc[t]);
	}
}

ST_TARGET static void FN(lt_token)(const FT *S0, FT *S, int64_t dk,
	int64_t dv, const FT *q, const FT *k, const FT *v, double lambda,
	FT scale, FT *o)
{
	const struct FN(dec) d = FN(dec_make)(lambda);
	int64_t c = 0;

	for (; c + NV * VW <= dv; c += NV * VW)
		FN(lt_cols)(S0, S, dk, dv, c, q, k, v, d, scale, o, NV);
	for (; c + VW <= dv; c += VW)
		FN(lt_cols)(S0, S, dk, dv, c, q, k, v, d, scale, o, 1);
	for (; c < dv; c++) {
		FT acc = 0;

		for (int64_t i = 0; i < dk; i++) {
			FT s = SDECAY(d, S0[i * dv + c], k[i], v[c]);

			S[i * dv + c] = s;
			acc = SFMA(s, q[i], acc);
		}
		o[c] = acc * scale;
	}
}

static const struct OPS FN(step_ops) = { FN(dn_token), FN(lt_token) };

#undef VW
#undef NV
#undef VEC
#undef DVEC
#undef DECAY
#undef SDECAY
#undef INLINE
#undef VLOAD
#undef VSTORE
#undef FT
#undef OPS
#undef FN
#undef VFMA
#undef SFMA
