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
 * ST_FMA (1 when VFMA is fused) and ST_TARGET (the ISA attribute).
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
 * The decay factor e (double, see deltanet.c and lightning.c: rounded to
 * float it would bias every step) applied as fl(e s + a), a = x y.
 *
 * float32 with FMA: e = eh + el, two floats (el exact to 2^-48 e), and
 * fl(eh s + fl(x y + fl(el s))): fl(el s) errs by 2^-24 |el s| ~ 2^-48
 * |s|, so this rounds the sum once, and x y with it, where the double
 * form rounds x y and the sum: the same two roundings, no conversions.
 * float64 and builds without FMA keep the double form (float32: through
 * double lanes, as the scalar code did).
 */
struct FN(dec) {
	double e;
	FT eh, el;
};

INLINE struct FN(dec) FN(dec_make)(double e)
{
	struct FN(dec) d = { e, (FT)e, 0 };

	d.el = (FT)(e - (double)d.eh);
	return d;
}

INLINE VEC DECAY(struct FN(dec) d, VEC s, VEC x, VEC y)
{
#if ST_FMA
	if (sizeof(FT) == 4) {
		const VEC eh = (VEC){ 0 } + d.eh, el = (VEC){ 0 } + d.el;

		return VFMA(eh, s, VFMA(x, y, el * s));
	}
	return VFMA(x, y, ((VEC){ 0 } + (FT)d.e) * s);
#else
	if (sizeof(FT) == 4) {
		DVEC w = d.e * __builtin_convertvector(s, DVEC) +
			__builtin_convertvector(x * y, DVEC);

		return __builtin_convertvector(w, VEC);
	}
	return ((VEC){ 0 } + (FT)d.e) * s + x * y;
#endif
}

INLINE FT SDECAY(struct FN(dec) d, FT s, FT x, FT y)
{
#if ST_FMA
	if (sizeof(FT) == 4)
		return SFMA(d.eh, s, SFMA(x, y, d.el * s));
	return SFMA(x, y, (FT)d.e * s);
#else
	return (FT)(d.e * s + (double)(x * y));
#endif
}

/*
 * Gated DeltaNet, one token on one head's state, columns c .. c + N VW - 1
 * (N <= NV vectors): pass 1 reads the block for y = S^T k, then
 *   u = beta (v - e y);  S = e S + k u^T;  o = S^T q
 * in pass 2, which finds the block (dk rows of N VW values) in L1. A
 * column of S needs only its own u, so each block is read from memory
 * once and written once. Rows i of S0 and S are dv apart; S0 may be S.
 * kf, qf scale k and q as deltanet.c's dn_prepare does (same roundings).
 */
INLINE void FN(dn_cols)(const FT *S0, FT *S, int64_t dk, int64_t dv,
	int64_t c, const FT *q, FT qf, const FT *k, FT kf, const FT *v,
	struct FN(dec) d, double beta, FT *o, const int N)
{
	VEC y[NV], u[NV], acc[NV];

#pragma GCC unroll 8
	for (int t = 0; t < N; t++)
		y[t] = (VEC){ 0 };
	for (int64_t i = 0; i < dk; i++) {
		const VEC kb = (VEC){ 0 } + k[i] * kf;

#pragma GCC unroll 8
		for (int t = 0; t < N; t++) {
			VEC s;

			VLOAD(s, S0 + i * dv + c + t * VW);
			y[t] = VFMA(s, kb, y[t]);
		}
	}
#pragma GCC unroll 8
	for (int t = 0; t < N; t++) {
		VEC vv;
		DVEC w;

		VLOAD(vv, v + c + t * VW);
		w = beta * (__builtin_convertvector(vv, DVEC) -
			d.e * __builtin_convertvector(y[t], DVEC));
		u[t] = __builtin_convertvector(w, VEC);
		acc[t] = (VEC){ 0 };
	}
	for (int64_t i = 0; i < dk; i++) {
		const VEC kb = (VEC){ 0 } + k[i] * kf;
		const VEC qb = (VEC){ 0 } + q[i] * qf;

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
	for (int t = 0; t < N; t++)
		VSTORE(o + c + t * VW, acc[t]);
}

/* Column j alone (the last dv mod VW columns), the same steps. */
INLINE void FN(dn_col)(const FT *S0, FT *S, int64_t dk, int64_t dv,
	int64_t j, const FT *q, FT qf, const FT *k, FT kf, const FT *v,
	struct FN(dec) d, double beta, FT *o)
{
	FT y = 0, u, acc = 0;

	for (int64_t i = 0; i < dk; i++)
		y = SFMA(S0[i * dv + j], k[i] * kf, y);
	u = (FT)(beta * ((double)v[j] - d.e * (double)y));
	for (int64_t i = 0; i < dk; i++) {
		FT s = SDECAY(d, S0[i * dv + j], k[i] * kf, u);

		S[i * dv + j] = s;
		acc = SFMA(s, q[i] * qf, acc);
	}
	o[j] = acc;
}

ST_TARGET static void FN(dn_token)(const FT *S0, FT *S, int64_t dk,
	int64_t dv, const FT *q, FT qf, const FT *k, FT kf, const FT *v,
	double e, double beta, FT *o)
{
	const struct FN(dec) d = FN(dec_make)(e);
	int64_t c = 0;

	for (; c + NV * VW <= dv; c += NV * VW)
		FN(dn_cols)(S0, S, dk, dv, c, q, qf, k, kf, v, d, beta, o, NV);
	for (; c + VW <= dv; c += VW)
		FN(dn_cols)(S0, S, dk, dv, c, q, qf, k, kf, v, d, beta, o, 1);
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
		const VEC kb = (VEC){ 0 } + k[i], qb = (VEC){ 0 } + q[i];

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
