/*
 * lightning.cu - Lightning Attention (MiniMax-01; Qin et al.,
 * "Lightning Attention-2", sec. 3, Alg. 1) on the GPU, the two
 * computations of lib/ref/lightning.c:
 *
 *   blockwise  per block of C tokens entered with the true state S0 and
 *              with pw[m] = lambda^m = exp(-slope m):
 *                o_r = scale [ pw[r+1] S0^T q_r
 *                            + sum_{i<=r} pw[r-i] (q_r . k_i) v_i ],
 *                S_C = pw[C] S0 + sum_i pw[C-1-i] k_i v_i^T
 *              (r, i from 0). Every decay is a power lambda^m with m >= 0:
 *              nothing is divided by a power of lambda, which would
 *              overflow for long blocks or steep slopes.
 *   recurrent  S = lambda S + k v^T; o = scale S^T q, token by token.
 *
 * As in deltanet.cu, the columns of S are independent, so a block owns
 * one (sequence, head, slice of 32 columns); state0 may alias state.
 */
#include "util.cuh"

#define LVS 32		/* state columns per block */
#define LTHREADS 256

struct lt_args {
	const void *q, *k, *v, *slope;
	const float *state0;
	void *o;
	float *state;
	const int64_t *cu;
	int64_t H, dk, dv, nslice;
	int C;
	float scale;
};

__device__ __forceinline__ void lt_block(const struct lt_args *a, int64_t *n,
	int64_t *h, int64_t *j0)
{
	int64_t b = blockIdx.x;

	*j0 = (b % a->nslice) * LVS;
	*h = (b / a->nslice) % a->H;
	*n = b / (a->nslice * a->H);
}

/* ---- blockwise ---- */

/* Register prefetch of the next block (dk <= 128, C <= 64): its global
 * loads are issued before the current block's arithmetic and land while
 * it runs. Thread (warp, lane) holds rows warp + 8 i, coordinates
 * lane + 32 c of q and k, and v[r][j] for r * 32 + j = tid + 256 i. */
struct lt_pf {
	float q[8][4], k[8][4], v[8];
};

template <typename T>
__device__ __forceinline__ void lt_prefetch(const struct lt_args *a, int64_t t0,
	int cc, int64_t h, int64_t j0, struct lt_pf *pf)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, dk = (int)a->dk;

#pragma unroll
	for (int i = 0; i < 8; i++) {
		int r = warp + 8 * i;
		const T *qs = (const T *)a->q + ((t0 + r) * a->H + h) * dk;
		const T *ks = (const T *)a->k + ((t0 + r) * a->H + h) * dk;

#pragma unroll
		for (int c = 0; c < 4; c++) {
			int d = lane + 32 * c, in = r < cc && d < dk;

			pf->q[i][c] = in ? ldf(qs + d) : 0.0f;
			pf->k[i][c] = in ? ldf(ks + d) : 0.0f;
		}
	}
#pragma unroll
	for (int i = 0; i < 8; i++) {
		int e = threadIdx.x + LTHREADS * i, r = e / LVS;
		int64_t j = j0 + e % LVS;

		pf->v[i] = r < cc && j < a->dv ?
			ldf((const T *)a->v + ((t0 + r) * a->H + h) * a->dv + j) : 0.0f;
	}
}

__device__ __forceinline__ void lt_pf_store(int dk, int cc, const struct lt_pf *pf,
	float *Qc, float *Kc, float *Vc)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

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
	}
#pragma unroll
	for (int i = 0; i < 8; i++) {
		int e = threadIdx.x + LTHREADS * i, r = e / LVS, j = e % LVS;

		if (r < cc)
			Vc[r * (LVS + 1) + j] = pf->v[i];
	}
	__syncthreads();
}

static size_t lt_block_smem(int C, int64_t dk)
{
	return sizeof(float) * ((size_t)dk * LVS + 2 * (size_t)C * (dk + 1) +
		(size_t)C * (LVS + 1) + (size_t)C * (C + 1) + (size_t)C + 1);
}

/* Thread (ty, tx) of a 16 x 16 grid owns rows ty + 16 a of each chunk
 * product and columns tx + 16 b: register tiles, few shared loads. */

/* M[r][i] = lambda^(r-i) (q_r . k_i) for i <= r, 0 above: (Q K^T) . D */
__device__ void lt_gram(int cc, int C, int dk, const float *Qc,
	const float *Kc, const float *pw, float *M)
{
	const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
	const float *qr_p[4], *ki_p[4];
	float qk[4][4];

#pragma unroll
	for (int a = 0; a < 4; a++) {
		qr_p[a] = Qc + (ty + 16 * a < cc ? ty + 16 * a : 0) * (dk + 1);
		ki_p[a] = Kc + (tx + 16 * a < cc ? tx + 16 * a : 0) * (dk + 1);
	}
#pragma unroll
	for (int a = 0; a < 4; a++)
#pragma unroll
		for (int b = 0; b < 4; b++)
			qk[a][b] = 0.0f;
	for (int d = 0; d < dk; d++) {
		float qr[4], ki[4];

#pragma unroll
		for (int a = 0; a < 4; a++) {
			qr[a] = qr_p[a][d];
			ki[a] = ki_p[a][d];
		}
#pragma unroll
		for (int a = 0; a < 4; a++)
#pragma unroll
			for (int b = 0; b < 4; b++)
				qk[a][b] += qr[a] * ki[b];
	}
#pragma unroll
	for (int a = 0; a < 4; a++)
#pragma unroll
		for (int b = 0; b < 4; b++) {
			int r = ty + 16 * a, i = tx + 16 * b;

			if (r < cc && i < cc)
				M[r * (C + 1) + i] = i <= r ? pw[r - i] * qk[a][b] : 0.0f;
		}
	__syncthreads();
}

/* o_r[j] = scale (lambda^(r+1) (Q S0)[r][j] + sum_{i<=r} M[r][i] v_i[j]) */
template <typename T>
__device__ void lt_out(const struct lt_args *a, int64_t t0, int cc, int64_t h,
	int64_t j0, const float *Qc, const float *S, const float *pw,
	const float *M, const float *Vc)
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
			sj[jj] = S[d * LVS + tx + 16 * jj];
#pragma unroll
		for (int rr = 0; rr < 4; rr++)
#pragma unroll
			for (int jj = 0; jj < 2; jj++)
				qs[rr][jj] += qr[rr] * sj[jj];
	}
	for (int i = 0; i < cc; i++) {
		float mr[4], vj[2];

#pragma unroll
		for (int rr = 0; rr < 4; rr++)
			mr[rr] = mr_p[rr][i];
#pragma unroll
		for (int jj = 0; jj < 2; jj++)
			vj[jj] = Vc[i * (LVS + 1) + tx + 16 * jj];
#pragma unroll
		for (int rr = 0; rr < 4; rr++)
#pragma unroll
			for (int jj = 0; jj < 2; jj++)
				in[rr][jj] += mr[rr] * vj[jj];
	}
#pragma unroll
	for (int rr = 0; rr < 4; rr++)
#pragma unroll
		for (int jj = 0; jj < 2; jj++) {
			int r = ty + 16 * rr, j = tx + 16 * jj;

			if (r < cc && j0 + j < dv)
				stf((T *)a->o + ((t0 + r) * a->H + h) * dv + j0 + j,
					a->scale * (pw[r + 1] * qs[rr][jj] + in[rr][jj]));
		}
}

/* S[d][j] = lambda^cc S[d][j] + sum_i lambda^(cc-1-i) k_i[d] v_i[j] */
__device__ void lt_advance(int cc, int dk, const float *Kc, const float *Vc,
	const float *pw, float *S)
{
	const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

	for (int base = 0; base < dk; base += 128) {
		float acc[8][2];

#pragma unroll
		for (int dd = 0; dd < 8; dd++)
#pragma unroll
			for (int jj = 0; jj < 2; jj++) {
				int d = base + ty + 16 * dd;

				acc[dd][jj] = d < dk ? pw[cc] * S[d * LVS + tx + 16 * jj] : 0.0f;
			}
		for (int i = 0; i < cc; i++) {
			float kd[8], vj[2], c = pw[cc - 1 - i];

#pragma unroll
			for (int dd = 0; dd < 8; dd++) {
				int d = base + ty + 16 * dd;

				kd[dd] = d < dk ? c * Kc[i * (dk + 1) + d] : 0.0f;
			}
#pragma unroll
			for (int jj = 0; jj < 2; jj++)
				vj[jj] = Vc[i * (LVS + 1) + tx + 16 * jj];
#pragma unroll
			for (int dd = 0; dd < 8; dd++)
#pragma unroll
				for (int jj = 0; jj < 2; jj++)
					acc[dd][jj] += kd[dd] * vj[jj];
		}
#pragma unroll
		for (int dd = 0; dd < 8; dd++)
#pragma unroll
			for (int jj = 0; jj < 2; jj++) {
				int d = base + ty + 16 * dd;

				if (d < dk)
					S[d * LVS + tx + 16 * jj] = acc[dd][jj];
			}
	}
}

/* Load a block of q, k and the v slice without prefetch (large dk). */
template <typename T>
__device__ void lt_load(const struct lt_args *a, int64_t t0, int cc, int64_t h,
	int64_t j0, float *Qc, float *Kc, float *Vc)
{
	const int tid = threadIdx.x, dk = (int)a->dk;

	/* a warp per row, a lane per coordinate */
	for (int r = tid >> 5; r < cc; r += LTHREADS / 32) {
		const T *qs = (const T *)a->q + ((t0 + r) * a->H + h) * dk;
		const T *ks = (const T *)a->k + ((t0 + r) * a->H + h) * dk;

		for (int d = tid & 31; d < dk; d += 32) {
			Qc[r * (dk + 1) + d] = ldf(qs + d);
			Kc[r * (dk + 1) + d] = ldf(ks + d);
		}
	}
	for (int e = tid; e < cc * LVS; e += LTHREADS) {
		int r = e / LVS, j = e % LVS;

		Vc[r * (LVS + 1) + j] = j0 + j < a->dv ?
			ldf((const T *)a->v + ((t0 + r) * a->H + h) * a->dv + j0 + j) : 0.0f;
	}
	__syncthreads();
}

template <typename T>
__global__ void __launch_bounds__(LTHREADS) lt_blockwise(struct lt_args a)
{
	extern __shared__ __align__(16) float sm[];
	const int C = a.C, tid = threadIdx.x, dk = (int)a.dk;
	const int64_t dv = a.dv, H = a.H;
	float *S = sm;                          /* [dk][LVS] */
	float *Kc = S + dk * LVS;               /* [C][dk + 1] */
	float *Qc = Kc + C * (dk + 1);          /* [C][dk + 1] */
	float *Vc = Qc + C * (dk + 1);          /* [C][LVS + 1] */
	float *M = Vc + C * (LVS + 1);          /* [C][C + 1] */
	float *pw = M + C * (C + 1);            /* [C + 1] */
	int64_t n, h, j0;
	float slope;

	lt_block(&a, &n, &h, &j0);
	slope = ldf((const T *)a.slope + h);
	/* each power is one exp of an argument <= 0: exact to rounding */
	for (int m = tid; m <= C; m += LTHREADS)
		pw[m] = expf(-slope * (float)m);
	for (int64_t e = tid; e < dk * LVS; e += LTHREADS) {
		int64_t d = e / LVS, j = j0 + e % LVS;

		S[e] = a.state0 && j < dv ? a.state0[((n * H + h) * dk + d) * dv + j] : 0.0f;
	}
	__syncthreads();
	/* small heads take the prefetching path; others load as they go */
	const int pfok = dk <= 128 && C <= 64;
	struct lt_pf pf;

	if (pfok && a.cu[n] < a.cu[n + 1])
		lt_prefetch<T>(&a, a.cu[n], a.cu[n + 1] - a.cu[n] < C ?
			(int)(a.cu[n + 1] - a.cu[n]) : C, h, j0, &pf);
	for (int64_t t0 = a.cu[n]; t0 < a.cu[n + 1]; t0 += C) {
		int cc = a.cu[n + 1] - t0 < C ? (int)(a.cu[n + 1] - t0) : C;

		if (pfok) {
			int64_t left = a.cu[n + 1] - (t0 + C);

			lt_pf_store(dk, cc, &pf, Qc, Kc, Vc);
			if (left > 0)
				lt_prefetch<T>(&a, t0 + C, left < C ? (int)left : C, h, j0, &pf);
		} else {
			lt_load<T>(&a, t0, cc, h, j0, Qc, Kc, Vc);
		}
		lt_gram(cc, C, dk, Qc, Kc, pw, M);
		lt_out<T>(&a, t0, cc, h, j0, Qc, S, pw, M, Vc);
		__syncthreads();
		lt_advance(cc, dk, Kc, Vc, pw, S);
		__syncthreads();
	}
	if (a.state)
		for (int64_t e = tid; e < dk * LVS; e += LTHREADS) {
			int64_t d = e / LVS, j = j0 + e % LVS;

			if (j < dv)
				a.state[((n * H + h) * dk + d) * dv + j] = S[e];
		}
}

/* ---- recurrent: one warp per block, lane j owns column j0 + j ---- */

static size_t lt_rec_smem(int64_t dk)
{
	return sizeof(float) * ((size_t)dk * LVS + 2 * (size_t)dk);
}

template <typename T>
__global__ void __launch_bounds__(32) lt_recurrent(struct lt_args a)
{
	extern __shared__ __align__(16) float sm[];
	const int64_t dk = a.dk, dv = a.dv, H = a.H;
	const int lane = threadIdx.x;
	float *S = sm, *qs = S + dk * LVS, *ks = qs + dk;
	int64_t n, h, j0, j;
	float lambda;

	lt_block(&a, &n, &h, &j0);
	j = j0 + lane;
	/* slope >= 0 keeps lambda <= 1: the state never grows by decay */
	lambda = expf(-ldf((const T *)a.slope + h));
	for (int64_t d = 0; d < dk; d++)
		S[d * LVS + lane] = a.state0 && j < dv ? a.state0[((n * H + h) * dk + d) * dv + j] : 0.0f;
	for (int64_t t = a.cu[n]; t < a.cu[n + 1]; t++) {
		float vj = 0.0f, acc = 0.0f;

		__syncwarp();
		for (int64_t d = lane; d < dk; d += 32) {
			qs[d] = ldf((const T *)a.q + (t * H + h) * dk + d);
			ks[d] = ldf((const T *)a.k + (t * H + h) * dk + d);
		}
		__syncwarp();
		if (j < dv)
			vj = ldf((const T *)a.v + (t * H + h) * dv + j);
		for (int64_t d = 0; d < dk; d++) {
			float s = lambda * S[d * LVS + lane] + ks[d] * vj;

			S[d * LVS + lane] = s;
			acc += s * qs[d];
		}
		if (j < dv)
			stf((T *)a.o + (t * H + h) * dv + j, a.scale * acc);
	}
	if (a.state && j < dv)
		for (int64_t d = 0; d < dk; d++)
			a.state[((n * H + h) * dk + d) * dv + j] = S[d * LVS + lane];
}

/* ---- entry ---- */

template <typename T>
static lca_status lt_launch(const lca_params *p, struct lt_args *a, int64_t nblocks)
{
	size_t limit, bytes;
	int C;
	lca_status s;

	if ((s = lcc_smem_limit(&limit)))
		return s;
	if (p->algo == LCA_ALGO_RECURRENT) {
		bytes = lt_rec_smem(p->dk);
		if (bytes > limit)
			return lcai_fail(LCA_ERR_UNSUPPORTED,
				"cuda lightning: dk = %lld does not fit in shared memory", (long long)p->dk);
		if ((s = lcc_status(cudaFuncSetAttribute(lt_recurrent<T>,
			cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes), "lightning shared memory")))
			return s;
		lt_recurrent<T><<<(unsigned)nblocks, 32, bytes>>>(*a);
		return lcc_launched("lightning recurrent kernel");
	}
	/* The plan's block, capped at 64 and halved until it fits: the block
	 * length changes rounding only, never the result. */
	C = p->block < 64 ? (int)p->block : 64;
	while (C > 1 && lt_block_smem(C, p->dk) > limit)
		C /= 2;
	bytes = lt_block_smem(C, p->dk);
	if (bytes > limit)
		return lcai_fail(LCA_ERR_UNSUPPORTED,
			"cuda lightning: dk = %lld does not fit in shared memory", (long long)p->dk);
	a->C = C;
	if ((s = lcc_status(cudaFuncSetAttribute(lt_blockwise<T>,
		cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes), "lightning shared memory")))
		return s;
	lt_blockwise<T><<<(unsigned)nblocks, LTHREADS, bytes>>>(*a);
	return lcc_launched("lightning blockwise kernel");
}

extern "C" lca_status lcai_cuda_lightning(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *slope, const void *state0, void *o, void *state)
{
	struct lcc_scratch sc;
	struct lt_args a;
	int64_t *cu_dev, nblocks;
	lca_status s;

	a.nslice = (p->dv + LVS - 1) / LVS;
	if (!lcai_mul_n(&nblocks, 3, nseq, p->H, a.nslice) || nblocks > INT32_MAX)
		return lcai_fail(LCA_ERR_UNSUPPORTED, "cuda lightning: too many blocks");
	lcc_scratch_init(&sc);
	if ((s = lcc_scratch_i64(&sc, cu, nseq + 1, &cu_dev, "cu_seqlens"))) {
		lcc_scratch_free(&sc);
		return s;
	}
	a.q = q;
	a.k = k;
	a.v = v;
	a.slope = slope;
	a.state0 = (const float *)state0;
	a.o = o;
	a.state = (float *)state;
	a.cu = cu_dev;
	a.H = p->H;
	a.dk = p->dk;
	a.dv = p->dv;
	a.C = 1;
	a.scale = (float)p->scale;
	s = p->dtype == LCA_BF16 ? lt_launch<bf16>(p, &a, nblocks) :
		lt_launch<float>(p, &a, nblocks);
	if (!s)
		s = lcc_sync("lightning");
	else
		(void)cudaDeviceSynchronize();
	lcc_scratch_free(&sc);
	return s;
}
