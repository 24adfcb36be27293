/*
 * deltanet.cu - Gated DeltaNet (Qwen3-Next) on the GPU, the two
 * computations of lib/ref/deltanet.c (see the derivation there):
 *
 *   chunked    the WY/UT chunk form (Yang et al. 2024, sec. 3.2-3.3, gate
 *              as in Gated Delta Networks sec. 3.3). Per chunk of C tokens
 *              entered with state S0:
 *                (I + A) U = diag(beta) V - diag(beta gamma) K S0,
 *                A[r][i] = beta_r (gamma_r / gamma_i) (k_r . k_i), i < r,
 *                O   = diag(gamma) Q S0 + (Q K^T (.) M) U,
 *                S_C = gamma_C S0 + K^T diag(gamma_C / gamma_i) U.
 *              The unit lower triangular system is solved by forward
 *              substitution directly on the right-hand side (the same
 *              U as W and U~ of the reference, without forming W); every
 *              matrix of the chunk and the state are f32 in shared memory.
 *   recurrent  the gated delta rule token by token (decode).
 *
 * Columns of S (the dv index) never mix in either form: u_j, S[:, j] and
 * o_j depend only on column j. A block therefore owns one (sequence, value
 * head, slice of 32 columns), which gives the GPU nseq * H * dv / 32
 * independent blocks; the chunk-local matrices (K K^T, decays) are
 * recomputed by each slice. A block reads state0 of its slice before it
 * writes state, and no other block touches that slice: state0 may alias
 * state.
 *
 * Decay trap (as the reference): gamma_r / gamma_i is the exp of the sum
 * of g over (i, r], accumulated directly, never exp(G_r - G_i).
 */
#include "util.cuh"

#define DVS 32		/* state columns per block: one per lane */
#define DTHREADS 256
#define DN_L2_EPS 1e-6f

struct dn_args {
	const void *q, *k, *v, *g, *beta;
	const float *state0;
	void *o;
	float *state;
	const int64_t *cu;
	int64_t H, Hk, dk, dv, nslice;
	int C;
	float scale;
	int l2norm;
};

/* (sequence, value head, first column) of this block. */
__device__ __forceinline__ void dn_block(const struct dn_args *a, int64_t *n,
	int64_t *h, int64_t *j0)
{
	int64_t b = blockIdx.x;

	*j0 = (b % a->nslice) * DVS;
	*h = (b / a->nslice) % a->H;
	*n = b / (a->nslice * a->H);
}

/* Normalise q and k of row r in place: optional x / sqrt(sum x^2 + eps),
 * then q *= scale, in the reference's order. Called by one whole warp. */
__device__ __forceinline__ void dn_prepare_row(float *qr, float *kr,
	int dk, int l2norm, float scale)
{
	const int lane = threadIdx.x & 31;
	float sq = 0.0f, sk = 0.0f, nq = 1.0f, nk = 1.0f;

	if (l2norm) {
		for (int d = lane; d < dk; d += 32) {
			sq += qr[d] * qr[d];
			sk += kr[d] * kr[d];
		}
		for (int off = 16; off > 0; off >>= 1) {
			sq += __shfl_xor_sync(0xffffffffu, sq, off);
			sk += __shfl_xor_sync(0xffffffffu, sk, off);
		}
		nq = sqrtf(sq + DN_L2_EPS);
		nk = sqrtf(sk + DN_L2_EPS);
	}
	for (int d = lane; d < dk; d += 32) {
		if (l2norm) {
			qr[d] /= nq;
			kr[d] /= nk;
		}
		qr[d] *= scale;
	}
}

/* ---- chunked ---- */

static size_t dn_chunk_smem(int C, int64_t dk)
{
	return sizeof(float) * ((size_t)dk * DVS + 2 * (size_t)C * (dk + 1) +
		(size_t)C * (DVS + 1) + 2 * (size_t)C * (C + 1) + 4 * (size_t)C);
}

/* Load and prepare the chunk's q, k, g, beta (tokens t0 .. t0 + cc - 1):
 * a warp per row, a lane per coordinate. */
template <typename T>
__device__ void dn_chunk_load(const struct dn_args *a, int64_t t0, int cc,
	int64_t h, float *Qc, float *Kc, float *gg, float *bet)
{
	const int dk = (int)a->dk, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int64_t hk = h / (a->H / a->Hk);

	for (int r = warp; r < cc; r += DTHREADS / 32) {
		const T *qs = (const T *)a->q + ((t0 + r) * a->Hk + hk) * dk;
		const T *ks = (const T *)a->k + ((t0 + r) * a->Hk + hk) * dk;

		for (int d = lane; d < dk; d += 32) {
			Qc[r * (dk + 1) + d] = ldf(qs + d);
			Kc[r * (dk + 1) + d] = ldf(ks + d);
		}
		if (lane == 0) {
			gg[r] = ldf((const T *)a->g + (t0 + r) * a->H + h);
			bet[r] = ldf((const T *)a->beta + (t0 + r) * a->H + h);
		}
		__syncwarp();
		dn_prepare_row(Qc + r * (dk + 1), Kc + r * (dk + 1), dk, a->l2norm, a->scale);
	}
	__syncthreads();
}

/* Register prefetch of the next chunk (dk <= 128, C <= 64): its global
 * loads are issued before the current chunk's arithmetic and land while
 * it runs. Thread (warp, lane) holds rows warp + 8 i, coordinates
 * lane + 32 c of q and k, g and beta of row tid, and the values v[r][j]
 * of the (r, j) it owns in dn_rhs. */
struct dn_pf {
	float q[8][4], k[8][4], v[4][2], g, b;
};

template <typename T>
__device__ __forceinline__ void dn_prefetch(const struct dn_args *a, int64_t t0,
	int cc, int64_t h, int64_t j0, struct dn_pf *pf)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, dk = (int)a->dk;
	const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
	const int64_t hk = h / (a->H / a->Hk);

#pragma unroll
	for (int i = 0; i < 8; i++) {
		int r = warp + 8 * i;
		const T *qs = (const T *)a->q + ((t0 + r) * a->Hk + hk) * dk;
		const T *ks = (const T *)a->k + ((t0 + r) * a->Hk + hk) * dk;

#pragma unroll
		for (int c = 0; c < 4; c++) {
			int d = lane + 32 * c, in = r < cc && d < dk;

			pf->q[i][c] = in ? ldf(qs + d) : 0.0f;
			pf->k[i][c] = in ? ldf(ks + d) : 0.0f;
		}
	}
#pragma unroll
	for (int rr = 0; rr < 4; rr++)
#pragma unroll
		for (int jj = 0; jj < 2; jj++) {
			int r = ty + 16 * rr;
			int64_t j = j0 + tx + 16 * jj;

			pf->v[rr][jj] = r < cc && j < a->dv ?
				ldf((const T *)a->v + ((t0 + r) * a->H + h) * a->dv + j) : 0.0f;
		}
	pf->g = pf->b = 0.0f;
	if ((int)threadIdx.x < cc) {
		pf->g = ldf((const T *)a->g + (t0 + threadIdx.x) * a->H + h);
		pf->b = ldf((const T *)a->beta + (t0 + threadIdx.x) * a->H + h);
	}
}

/* Store a prefetched chunk into shared memory and prepare q and k. */
__device__ __forceinline__ void dn_pf_store(const struct dn_args *a, int cc,
	const struct dn_pf *pf, float *Qc, float *Kc, float *gg, float *bet)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, dk = (int)a->dk;

#pragma unroll
	for (int i = 0; i < 8; i++) {
		int r = warp + 8 * i;

#pragma unroll
		for (int c = 0; c < 4; c++) {
			int d = lane + 32 * c;

			if (r < cc && d < dk) {
				Qc[r * (dk + 1) + d] = pf->q[i][c];
				Kc[r * (dk + 1) + d] = pf->k[i][c];
			}
		}
		__syncwarp();
		if (r < cc)
			dn_prepare_row(Qc + r * (dk + 1), Kc + r * (dk + 1), dk, a->l2norm, a->scale);
	}
	if ((int)threadIdx.x < cc) {
		gg[threadIdx.x] = pf->g;
		bet[threadIdx.x] = pf->b;
	}
	__syncthreads();
}

/* gamma_r = exp(sum_{j<=r} g_j); M[r][i] = exp(sum_{j=i+1}^{r} g_j) for
 * i <= r (a decay ratio, later turned into the masked Q K^T); last[i] =
 * M[cc-1][i]. Each range sum is accumulated on its own. */
__device__ void dn_chunk_decay(int cc, int C, const float *gg, float *gam,
	float *M, float *last)
{
	const int tid = threadIdx.x;

	/* thread r forms the prefix sum in the same order a running sum would */
	for (int r = tid; r < cc; r += DTHREADS) {
		float s = 0.0f;

		for (int j = 0; j <= r; j++)
			s += gg[j];
		gam[r] = expf(s);
	}
	for (int i = tid; i < cc; i += DTHREADS) {
		float s = 0.0f, d = 1.0f;

		M[i * (C + 1) + i] = 1.0f;
		for (int r = i + 1; r < cc; r++) {
			s += gg[r];
			d = expf(s);
			M[r * (C + 1) + i] = d;
		}
		last[i] = d;
	}
	__syncthreads();
}

/* A[r][i] = beta_r dec (k_r . k_i) for i < r; M[r][i] = dec (q_r . k_i)
 * for i <= r; both zero above. Thread (ty, tx) of a 16 x 16 grid owns
 * rows ty + 16 rr and columns tx + 16 ii (4 x 4 outputs of each product,
 * 12 shared loads per 32 FMAs). */
__device__ void dn_chunk_gram(int cc, int C, int dk, const float *Qc,
	const float *Kc, const float *bet, float *A, float *M)
{
	const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
	const float *kr_p[4], *qr_p[4], *ki_p[4];
	float kk[4][4], qk[4][4];

#pragma unroll
	for (int a = 0; a < 4; a++) {
		int r = ty + 16 * a < cc ? ty + 16 * a : 0;
		int i = tx + 16 * a < cc ? tx + 16 * a : 0;

		kr_p[a] = Kc + r * (dk + 1);
		qr_p[a] = Qc + r * (dk + 1);
		ki_p[a] = Kc + i * (dk + 1);
	}
#pragma unroll
	for (int a = 0; a < 4; a++)
#pragma unroll
		for (int b = 0; b < 4; b++)
			kk[a][b] = qk[a][b] = 0.0f;
	for (int d = 0; d < dk; d++) {
		float kr[4], qr[4], ki[4];

#pragma unroll
		for (int a = 0; a < 4; a++) {
			kr[a] = kr_p[a][d];
			qr[a] = qr_p[a][d];
			ki[a] = ki_p[a][d];
		}
#pragma unroll
		for (int a = 0; a < 4; a++)
#pragma unroll
			for (int b = 0; b < 4; b++) {
				kk[a][b] += kr[a] * ki[b];
				qk[a][b] += qr[a] * ki[b];
			}
	}
	__syncthreads();	/* M holds the decays until every thread is here */
#pragma unroll
	for (int a = 0; a < 4; a++)
#pragma unroll
		for (int b = 0; b < 4; b++) {
			int r = ty + 16 * a, i = tx + 16 * b;
			float dec;

			if (r >= cc || i >= cc)
				continue;
			dec = i <= r ? M[r * (C + 1) + i] : 0.0f;
			A[r * (C + 1) + i] = i < r ? bet[r] * dec * kk[a][b] : 0.0f;
			M[r * (C + 1) + i] = dec * qk[a][b];
		}
	__syncthreads();
}

/* Forward substitution of (I + A) U = Y in place, by blocks of 16 rows:
 * warp 0 solves a diagonal block (one column per lane, the columns are
 * independent), then all threads subtract that block's contribution from
 * the rows below. The sequential chain is 16 rows long, not 64. */
__device__ void dn_chunk_solve(int cc, int C, const float *A, float *U)
{
	const int lane = threadIdx.x & 31;

	for (int b0 = 0; b0 < cc; b0 += 16) {
		int b1 = b0 + 16 < cc ? b0 + 16 : cc;

		if (threadIdx.x < 32)
			for (int r = b0 + 1; r < b1; r++) {
				const float *ar = A + r * (C + 1);
				float s = 0.0f;

				for (int i = b0; i < r; i++)
					s += ar[i] * U[i * (DVS + 1) + lane];
				U[r * (DVS + 1) + lane] -= s;
			}
		__syncthreads();
		for (int e = threadIdx.x; e < (cc - b1) * DVS; e += DTHREADS) {
			int r = b1 + e / DVS, j = e % DVS;
			const float *ar = A + r * (C + 1);
			float s = 0.0f;

			for (int i = b0; i < b1; i++)
				s += ar[i] * U[i * (DVS + 1) + j];
			U[r * (DVS + 1) + j] -= s;
		}
		__syncthreads();
	}
}

/* The (r, j) products of a chunk: thread (ty, tx) owns rows ty + 16 rr
 * (rr < 4) and state columns tx + 16 jj (jj < 2) of a 64 x 32 result. */

/* U[r][j] = beta_r v_r[j] - beta_r gamma_r (K S0)[r][j]; v from pv (the
 * prefetch) when use_pv, else read here */
template <typename T>
__device__ __forceinline__ void dn_rhs(const struct dn_args *a, int64_t t0,
	int cc, int64_t h, int64_t j0, const float *Kc, const float *S,
	const float *bet, const float *gam, int use_pv, const float pv[4][2],
	float *U)
{
	const int tx = threadIdx.x % 16, ty = threadIdx.x / 16, dk = (int)a->dk;
	const int64_t dv = a->dv;
	const float *kr_p[4];
	float acc[4][2] = { { 0 } };

#pragma unroll
	for (int rr = 0; rr < 4; rr++)
		kr_p[rr] = Kc + (ty + 16 * rr < cc ? ty + 16 * rr : 0) * (dk + 1);
	for (int d = 0; d < dk; d++) {
		float kr[4], sj[2];

#pragma unroll
		for (int rr = 0; rr < 4; rr++)
			kr[rr] = kr_p[rr][d];
#pragma unroll
		for (int jj = 0; jj < 2; jj++)
			sj[jj] = S[d * DVS + tx + 16 * jj];
#pragma unroll
		for (int rr = 0; rr < 4; rr++)
#pragma unroll
			for (int jj = 0; jj < 2; jj++)
				acc[rr][jj] += kr[rr] * sj[jj];
	}
#pragma unroll
	for (int rr = 0; rr < 4; rr++)
#pragma unroll
		for (int jj = 0; jj < 2; jj++) {
			int r = ty + 16 * rr, j = tx + 16 * jj;
			float vv = 0.0f;

			if (r >= cc)
				continue;
			if (use_pv)
				vv = pv[rr][jj];
			else if (j0 + j < dv)
				vv = ldf((const T *)a->v + ((t0 + r) * a->H + h) * dv + j0 + j);
			U[r * (DVS + 1) + j] = bet[r] * vv - bet[r] * gam[r] * acc[rr][jj];
		}
	__syncthreads();
}

/* o_r[j] = gamma_r (Q S0)[r][j] + sum_{i<=r} M[r][i] U[i][j] */
template <typename T>
__device__ void dn_out(const struct dn_args *a, int64_t t0, int cc, int64_t h,
	int64_t j0, const float *Qc, const float *S, const float *gam,
	const float *M, const float *U)
{
	const int tx = threadIdx.x % 16, ty = threadIdx.x / 16, C = a->C, dk = (int)a->dk;
	const int64_t dv = a->dv;
	const float *qr_p[4], *mr_p[4];
	float qs[4][2] = { { 0 } }, in[4][2] = { { 0 } };

#pragma unroll
	for (int rr = 0; rr < 4; rr++) {
		int r = ty + 16 * rr < cc ? ty + 16 * rr : 0;

		qr_p[rr] = Qc + r * (dk + 1);
		mr_p[rr] = M + r * (C + 1);
	}
	for (int d = 0; d < dk; d++) {
		float qr[4], sj[2];

#pragma unroll
		for (int rr = 0; rr < 4; rr++)
			qr[rr] = qr_p[rr][d];
#pragma unroll
		for (int jj = 0; jj < 2; jj++)
			sj[jj] = S[d * DVS + tx + 16 * jj];
#pragma unroll
		for (int rr = 0; rr < 4; rr++)
#pragma unroll
			for (int jj = 0; jj < 2; jj++)
				qs[rr][jj] += qr[rr] * sj[jj];
	}
	/* M is zero above the diagonal: the sum may run over the whole chunk */
	for (int i = 0; i < cc; i++) {
		float mr[4], uj[2];

#pragma unroll
		for (int rr = 0; rr < 4; rr++)
			mr[rr] = mr_p[rr][i];
#pragma unroll
		for (int jj = 0; jj < 2; jj++)
			uj[jj] = U[i * (DVS + 1) + tx + 16 * jj];
#pragma unroll
		for (int rr = 0; rr < 4; rr++)
#pragma unroll
			for (int jj = 0; jj < 2; jj++)
				in[rr][jj] += mr[rr] * uj[jj];
	}
#pragma unroll
	for (int rr = 0; rr < 4; rr++)
#pragma unroll
		for (int jj = 0; jj < 2; jj++) {
			int r = ty + 16 * rr, j = tx + 16 * jj;

			if (r < cc && j0 + j < dv)
				stf((T *)a->o + ((t0 + r) * a->H + h) * dv + j0 + j,
					gam[r] * qs[rr][jj] + in[rr][jj]);
		}
}

/* S[d][j] = gamma_C S[d][j] + sum_r last[r] k_r[d] U[r][j]; thread (ty, tx)
 * owns rows d = base + ty + 16 dd (dd < 8) and columns tx + 16 jj. */
__device__ void dn_advance(int cc, int dk, const float *Kc, const float *U,
	const float *last, float gC, float *S)
{
	const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

	for (int base = 0; base < dk; base += 128) {
		float acc[8][2];

#pragma unroll
		for (int dd = 0; dd < 8; dd++)
#pragma unroll
			for (int jj = 0; jj < 2; jj++) {
				int d = base + ty + 16 * dd;

				acc[dd][jj] = d < dk ? gC * S[d * DVS + tx + 16 * jj] : 0.0f;
			}
		for (int r = 0; r < cc; r++) {
			float kd[8], uj[2], c = last[r];

#pragma unroll
			for (int dd = 0; dd < 8; dd++) {
				int d = base + ty + 16 * dd;

				kd[dd] = d < dk ? c * Kc[r * (dk + 1) + d] : 0.0f;
			}
#pragma unroll
			for (int jj = 0; jj < 2; jj++)
				uj[jj] = U[r * (DVS + 1) + tx + 16 * jj];
#pragma unroll
			for (int dd = 0; dd < 8; dd++)
#pragma unroll
				for (int jj = 0; jj < 2; jj++)
					acc[dd][jj] += kd[dd] * uj[jj];
		}
#pragma unroll
		for (int dd = 0; dd < 8; dd++)
#pragma unroll
			for (int jj = 0; jj < 2; jj++) {
				int d = base + ty + 16 * dd;

				if (d < dk)
					S[d * DVS + tx + 16 * jj] = acc[dd][jj];
			}
	}
}

template <typename T>
__global__ void __launch_bounds__(DTHREADS) dn_chunked(struct dn_args a)
{
	extern __shared__ __align__(16) float sm[];
	const int C = a.C, tid = threadIdx.x;
	const int64_t dk = a.dk, dv = a.dv;
	float *S = sm;                          /* [dk][DVS] */
	float *Kc = S + dk * DVS;               /* [C][dk + 1] */
	float *Qc = Kc + C * (dk + 1);          /* [C][dk + 1] */
	float *U = Qc + C * (dk + 1);           /* [C][DVS + 1] */
	float *A = U + C * (DVS + 1);           /* [C][C + 1] */
	float *M = A + C * (C + 1);             /* [C][C + 1] */
	float *gam = M + C * (C + 1), *gg = gam + C, *bet = gg + C, *last = bet + C;
	int64_t n, h, j0;

	dn_block(&a, &n, &h, &j0);
	for (int64_t e = tid; e < dk * DVS; e += DTHREADS) {
		int64_t d = e / DVS, j = j0 + e % DVS;

		S[e] = a.state0 && j < dv ? a.state0[((n * a.H + h) * dk + d) * dv + j] : 0.0f;
	}
	__syncthreads();
	/* small heads take the prefetching path; others load as they go */
	const int pfok = dk <= 128 && C <= 64;
	struct dn_pf pf;
	float pv[4][2];

	if (pfok && a.cu[n] < a.cu[n + 1])
		dn_prefetch<T>(&a, a.cu[n], a.cu[n + 1] - a.cu[n] < C ?
			(int)(a.cu[n + 1] - a.cu[n]) : C, h, j0, &pf);
	for (int64_t t0 = a.cu[n]; t0 < a.cu[n + 1]; t0 += C) {
		int cc = a.cu[n + 1] - t0 < C ? (int)(a.cu[n + 1] - t0) : C;

		if (pfok) {
			int64_t t1 = t0 + C, left = a.cu[n + 1] - t1;

			dn_pf_store(&a, cc, &pf, Qc, Kc, gg, bet);
#pragma unroll
			for (int rr = 0; rr < 4; rr++)
#pragma unroll
				for (int jj = 0; jj < 2; jj++)
					pv[rr][jj] = pf.v[rr][jj];
			if (left > 0)
				dn_prefetch<T>(&a, t1, left < C ? (int)left : C, h, j0, &pf);
		} else {
			dn_chunk_load<T>(&a, t0, cc, h, Qc, Kc, gg, bet);
		}
		dn_chunk_decay(cc, C, gg, gam, M, last);
		dn_chunk_gram(cc, C, (int)dk, Qc, Kc, bet, A, M);
		/* right-hand side diag(beta) V - diag(beta gamma) K S0 */
		dn_rhs<T>(&a, t0, cc, h, j0, Kc, S, bet, gam, pfok, pv, U);
		dn_chunk_solve(cc, C, A, U);
		/* O = diag(gamma) Q S0 + (Q K^T . M) U */
		dn_out<T>(&a, t0, cc, h, j0, Qc, S, gam, M, U);
		__syncthreads();
		/* S = gamma_C S0 + K^T diag(last) U */
		dn_advance(cc, (int)dk, Kc, U, last, gam[cc - 1], S);
		__syncthreads();
	}
	if (a.state)
		for (int64_t e = tid; e < dk * DVS; e += DTHREADS) {
			int64_t d = e / DVS, j = j0 + e % DVS;

			if (j < dv)
				a.state[((n * a.H + h) * dk + d) * dv + j] = S[e];
		}
}

/* ---- recurrent: one warp per block, lane j owns column j0 + j ---- */

static size_t dn_rec_smem(int64_t dk)
{
	return sizeof(float) * ((size_t)dk * DVS + 2 * (size_t)dk);
}

template <typename T>
__global__ void __launch_bounds__(32) dn_recurrent(struct dn_args a)
{
	extern __shared__ __align__(16) float sm[];
	const int64_t dk = a.dk, dv = a.dv;
	const int lane = threadIdx.x;
	float *S = sm, *qs = S + dk * DVS, *ks = qs + dk;
	int64_t n, h, j0, hk, j;

	dn_block(&a, &n, &h, &j0);
	hk = h / (a.H / a.Hk);
	j = j0 + lane;
	for (int64_t d = 0; d < dk; d++)
		S[d * DVS + lane] = a.state0 && j < dv ? a.state0[((n * a.H + h) * dk + d) * dv + j] : 0.0f;
	for (int64_t t = a.cu[n]; t < a.cu[n + 1]; t++) {
		float decay, beta, u, sk = 0.0f, acc = 0.0f, vj = 0.0f;

		__syncwarp();	/* the last token is done with qs, ks */
		for (int64_t d = lane; d < dk; d += 32) {
			qs[d] = ldf((const T *)a.q + (t * a.Hk + hk) * dk + d);
			ks[d] = ldf((const T *)a.k + (t * a.Hk + hk) * dk + d);
		}
		__syncwarp();
		dn_prepare_row(qs, ks, (int)dk, a.l2norm, a.scale);
		__syncwarp();
		decay = expf(ldf((const T *)a.g + t * a.H + h));
		beta = ldf((const T *)a.beta + t * a.H + h);
		if (j < dv)
			vj = ldf((const T *)a.v + (t * a.H + h) * dv + j);
		/* S = exp(g) S; u = beta (v - S^T k) */
		for (int64_t d = 0; d < dk; d++) {
			float s = S[d * DVS + lane] * decay;

			S[d * DVS + lane] = s;
			sk += s * ks[d];
		}
		u = beta * (vj - sk);
		/* S += k u^T; o = S^T q */
		for (int64_t d = 0; d < dk; d++) {
			float s = S[d * DVS + lane] + ks[d] * u;

			S[d * DVS + lane] = s;
			acc += s * qs[d];
		}
		if (j < dv)
			stf((T *)a.o + (t * a.H + h) * dv + j, acc);
	}
	if (a.state && j < dv)
		for (int64_t d = 0; d < dk; d++)
			a.state[((n * a.H + h) * dk + d) * dv + j] = S[d * DVS + lane];
}

/* ---- entry ---- */

template <typename T>
static lca_status dn_launch(const lca_params *p, struct dn_args *a, int64_t nblocks)
{
	size_t limit, bytes;
	int C;
	lca_status s;

	if ((s = lcc_smem_limit(&limit)))
		return s;
	if (p->algo == LCA_ALGO_RECURRENT) {
		bytes = dn_rec_smem(p->dk);
		if (bytes > limit)
			return lcai_fail(LCA_ERR_UNSUPPORTED,
				"cuda deltanet: dk = %lld does not fit in shared memory", (long long)p->dk);
		if ((s = lcc_status(cudaFuncSetAttribute(dn_recurrent<T>,
			cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes), "deltanet shared memory")))
			return s;
		dn_recurrent<T><<<(unsigned)nblocks, 32, bytes>>>(*a);
		return lcc_launched("deltanet recurrent kernel");
	}
	/* The plan's chunk, capped at 64 and halved until it fits: the chunk
	 * length changes rounding only, never the result. */
	C = p->chunk < 64 ? (int)p->chunk : 64;
	while (C > 1 && dn_chunk_smem(C, p->dk) > limit)
		C /= 2;
	bytes = dn_chunk_smem(C, p->dk);
	if (bytes > limit)
		return lcai_fail(LCA_ERR_UNSUPPORTED,
			"cuda deltanet: dk = %lld does not fit in shared memory", (long long)p->dk);
	a->C = C;
	if ((s = lcc_status(cudaFuncSetAttribute(dn_chunked<T>,
		cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes), "deltanet shared memory")))
		return s;
	dn_chunked<T><<<(unsigned)nblocks, DTHREADS, bytes>>>(*a);
	return lcc_launched("deltanet chunked kernel");
}

extern "C" lca_status lcai_cuda_deltanet(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *g, const void *beta, const void *state0, void *o,
	void *state)
{
	struct lcc_scratch sc;
	struct dn_args a;
	int64_t *cu_dev, nblocks;
	lca_status s;

	a.nslice = (p->dv + DVS - 1) / DVS;
	if (!lcai_mul_n(&nblocks, 3, nseq, p->H, a.nslice) || nblocks > INT32_MAX)
		return lcai_fail(LCA_ERR_UNSUPPORTED, "cuda deltanet: too many blocks");
	lcc_scratch_init(&sc);
	if ((s = lcc_scratch_i64(&sc, cu, nseq + 1, &cu_dev, "cu_seqlens"))) {
		lcc_scratch_free(&sc);
		return s;
	}
	a.q = q;
	a.k = k;
	a.v = v;
	a.g = g;
	a.beta = beta;
	a.state0 = (const float *)state0;
	a.o = o;
	a.state = (float *)state;
	a.cu = cu_dev;
	a.H = p->H;
	a.Hk = p->Hk;
	a.dk = p->dk;
	a.dv = p->dv;
	a.C = 1;
	a.scale = (float)p->scale;
	a.l2norm = p->qk_l2norm;
	s = p->dtype == LCA_BF16 ? dn_launch<bf16>(p, &a, nblocks) :
		dn_launch<float>(p, &a, nblocks);
	if (!s)
		s = lcc_sync("deltanet");
	else
		(void)cudaDeviceSynchronize();
	lcc_scratch_free(&sc);
	return s;
}
