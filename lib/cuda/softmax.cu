/*
 * softmax.cu - softmax attention on the GPU: one pass over key/value
 * tiles with a running maximum and sum per query row (the online softmax
 * of FlashAttention, Dao et al. 2022, Alg. 1), so no Tq x Tk matrix is
 * ever stored. Masks, positions and the fully masked convention follow
 * lib/ref/softmax.c exactly: query i of tq sits at tk - tq + i, causal
 * keeps keys s <= pq, a window W keeps 0 <= pq - s < W, and a row with no
 * kept key gives o = 0, lse = -inf. Key tiles outside the union of the
 * block's rows' ranges are never loaded (causal and window skipping).
 *
 * Two kernels:
 *   generic  float FMA, any dk and dv that fit shared memory. Query rows
 *            of a block are (token, head) pairs of one kv group, so a
 *            K/V tile is read once for all heads that share it (GQA,
 *            and the latent cache of mla). Used for f32 and odd shapes.
 *   mma      bf16 tensor cores (mma.sync m16n8k16, f32 accumulate) for
 *            dk = dv in {64, 128}: 128 queries x 64 keys per tile, 8 warps
 *            of 16 rows, S, P and O in registers (FlashAttention-2 style).
 *            P is rounded to bf16 for the P V product, and the row sum is
 *            taken over the rounded P, so o stays a convex combination of
 *            the values with the weights actually used.
 * RoPE is applied before either kernel by a pre-rotation pass (util.cu).
 */
#include "util.cuh"

#include <stdlib.h>
#include <string.h>

/* ---- shared pieces ---- */

/* Keys a query at position pq may see, [*lo, *hi), as REF(key_range). */
__host__ __device__ __forceinline__ void key_range(int causal, int64_t window,
	int64_t pq, int64_t tk, int64_t *lo, int64_t *hi)
{
	int64_t a = 0, b = tk;

	if ((causal || window > 0) && pq + 1 < b)
		b = pq + 1;
	if (window > 0 && pq >= window)
		a = pq - window + 1;
	if (b < a)
		b = a;
	*lo = a;
	*hi = b;
}

struct attn_args {
	const void *q, *k, *v;
	void *o, *lse;
	int64_t H, Hkv, dk, dv;
	float scale;
	int causal;
	int64_t window;
	const int64_t *cuq, *cuk;  /* device, nseq + 1 */
	const int64_t *tiles;      /* device, pairs (sequence, first row) */
	int BQ;                    /* generic: rows per block */
};

/* Host: the (sequence, first row) pairs of the blocks, rows per sequence
 * = tq * rows_per_token, bq rows per block. Longest-running blocks (the
 * last rows under a causal mask) come first. */
static lca_status make_tiles(const int64_t *cu_q, int64_t nseq,
	int64_t rows_per_token, int64_t bq, int64_t **tiles_dev, int64_t *ntiles,
	struct lcc_scratch *sc)
{
	int64_t n, r, m = 0, count = 0, *h;
	lca_status s;

	for (n = 0; n < nseq; n++)
		count += ((cu_q[n + 1] - cu_q[n]) * rows_per_token + bq - 1) / bq;
	*ntiles = count;
	if (count == 0)
		return LCA_OK;
	if (count > INT32_MAX)
		return lcai_fail(LCA_ERR_UNSUPPORTED, "cuda: too many query tiles");
	h = (int64_t *)malloc((size_t)count * 2 * sizeof *h);
	if (!h)
		return lcai_fail(LCA_ERR_NOMEM, "cuda: tile list of %lld", (long long)count);
	for (n = 0; n < nseq; n++) {
		int64_t rows = (cu_q[n + 1] - cu_q[n]) * rows_per_token;

		for (r = ((rows + bq - 1) / bq - 1) * bq; r >= 0; r -= bq) {
			h[2 * m] = n;
			h[2 * m + 1] = r;
			m++;
		}
	}
	s = lcc_scratch_i64(sc, h, 2 * count, tiles_dev, "tile list");
	free(h);
	return s;
}

/* ---- generic kernel ---- */

#define GBK 32	/* keys per tile: one per lane in the softmax step */
#define GTHREADS 128

static size_t generic_smem(int bq, int64_t dk, int64_t dv)
{
	return (size_t)bq * 2 * sizeof(int64_t) + sizeof(float) *
		((size_t)bq * dk + GBK * (dk + 1) + GBK * dv +
		 (size_t)bq * (GBK + 1) + (size_t)bq * dv + 3 * (size_t)bq);
}

/* Row r of the block (flattened (token, head) index R = r0 + r of the
 * sequence's kv group g): token i = R / group, head g * group + R % group. */
template <typename TQK, typename TV, typename TO, typename TL>
__global__ void __launch_bounds__(GTHREADS) attn_generic(struct attn_args a)
{
	extern __shared__ __align__(16) unsigned char smraw[];
	const int BQ = a.BQ, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const int dk = (int)a.dk, dv = (int)a.dv, NW = GTHREADS / 32;
	const int64_t g = blockIdx.y, group = a.H / a.Hkv;
	const int64_t n = a.tiles[2 * blockIdx.x], r0 = a.tiles[2 * blockIdx.x + 1];
	const int64_t q0 = a.cuq[n], tq = a.cuq[n + 1] - q0;
	const int64_t k0 = a.cuk[n], tk = a.cuk[n + 1] - k0;
	const TQK *q = (const TQK *)a.q, *k = (const TQK *)a.k;
	const TV *v = (const TV *)a.v;
	int64_t *rlo = (int64_t *)smraw, *rhi = rlo + BQ;
	float *Qs = (float *)(rhi + BQ);
	float *Ks = Qs + BQ * dk;                   /* [GBK][dk + 1] */
	float *Vs = Ks + GBK * (dk + 1);            /* [GBK][dv] */
	float *Ss = Vs + GBK * dv;                  /* [BQ][GBK + 1] */
	float *Os = Ss + BQ * (GBK + 1);            /* [BQ][dv] */
	float *rm = Os + BQ * dv, *rl = rm + BQ, *ral = rl + BQ;
	__shared__ int64_t klo, khi;
	int64_t rows = tq * group, nr = rows - r0 < BQ ? rows - r0 : BQ;

	for (int r = tid; r < BQ; r += GTHREADS) {
		int64_t lo = 0, hi = 0;

		if (r < nr)
			key_range(a.causal, a.window, tk - tq + (r0 + r) / group, tk, &lo, &hi);
		rlo[r] = lo;
		rhi[r] = hi;
		rm[r] = -INFINITY;
		rl[r] = 0.0f;
	}
	/* a warp per row, a lane per coordinate: no index division per element */
	for (int r = warp; r < BQ; r += NW) {
		int64_t R = r0 + r;
		const TQK *qr = q + ((q0 + R / group) * a.H + g * group + R % group) * dk;

		for (int d = lane; d < dk; d += 32)
			Qs[r * dk + d] = r < nr ? ldf(qr + d) : 0.0f;
		for (int d = lane; d < dv; d += 32)
			Os[r * dv + d] = 0.0f;
	}
	__syncthreads();
	if (tid == 0) {
		/* union of the rows' ranges: each range grows with pq */
		int64_t lo = INT64_MAX, hi = 0;

		for (int r = 0; r < nr; r++)
			if (rhi[r] > rlo[r]) {
				lo = rlo[r] < lo ? rlo[r] : lo;
				hi = rhi[r] > hi ? rhi[r] : hi;
			}
		klo = lo;
		khi = hi;
	}
	__syncthreads();
	for (int64_t kt = klo; kt < khi; kt += GBK) {
		/* Rows past the range are zero: a masked P = 0 times a value
		 * that was never loaded could otherwise be 0 * NaN. */
		for (int j = warp; j < GBK; j += NW) {
			int in = kt + j < khi;
			const TQK *kr = k + ((k0 + kt + j) * a.Hkv + g) * dk;
			const TV *vr = v + ((k0 + kt + j) * a.Hkv + g) * dv;

			for (int d = lane; d < dk; d += 32)
				Ks[j * (dk + 1) + d] = in ? ldf(kr + d) : 0.0f;
			for (int d = lane; d < dv; d += 32)
				Vs[j * dv + d] = in ? ldf(vr + d) : 0.0f;
		}
		__syncthreads();
		for (int e = tid; e < BQ * GBK; e += GTHREADS) {
			int r = e / GBK, j = e % GBK;
			int64_t s = kt + j;
			float x = -INFINITY;

			/* masked keys are never scored: they cannot reach max or sum */
			if (r < nr && s >= rlo[r] && s < rhi[r]) {
				const float *qr = Qs + r * dk, *kr = Ks + j * (dk + 1);
				float acc = 0.0f;

				for (int d = 0; d < dk; d++)
					acc += qr[d] * kr[d];
				x = a.scale * acc;
			}
			Ss[r * (GBK + 1) + j] = x;
		}
		__syncthreads();
		for (int r = warp; r < nr; r += GTHREADS / 32) {
			float x = Ss[r * (GBK + 1) + lane], mt = x, m_old = rm[r], m_new, p, sum;

			for (int off = 16; off > 0; off >>= 1)
				mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, off));
			m_new = fmaxf(m_old, mt);
			/* every exponent <= 0; an all-masked row so far stays 0 */
			p = m_new == -INFINITY || x == -INFINITY ? 0.0f : expf(x - m_new);
			sum = p;
			for (int off = 16; off > 0; off >>= 1)
				sum += __shfl_xor_sync(0xffffffffu, sum, off);
			Ss[r * (GBK + 1) + lane] = p;
			__syncwarp();
			if (lane == 0) {
				float al = m_new == -INFINITY || m_old == -INFINITY ? 0.0f : expf(m_old - m_new);

				if (m_new == -INFINITY)
					al = 1.0f;
				ral[r] = al;
				rl[r] = al * rl[r] + sum;
				rm[r] = m_new;
			}
		}
		__syncthreads();
		for (int e = tid; e < (int)nr * dv; e += GTHREADS) {
			int r = e / dv, d = e % dv;
			const float *pr = Ss + r * (GBK + 1);
			float acc = Os[e] * ral[r];

			for (int j = 0; j < GBK; j++)
				acc += pr[j] * Vs[j * dv + d];
			Os[e] = acc;
		}
	}
	__syncthreads();
	for (int r = warp; r < nr; r += NW) {
		int64_t R = r0 + r;
		TO *orow = (TO *)a.o + ((q0 + R / group) * a.H + g * group + R % group) * dv;
		float l = rl[r];

		for (int d = lane; d < dv; d += 32)
			stf(orow + d, l > 0.0f ? Os[r * dv + d] / l : 0.0f);
	}
	if (a.lse)
		for (int r = tid; r < nr; r += GTHREADS) {
			int64_t R = r0 + r;
			float l = rl[r];

			stf((TL *)a.lse + (q0 + R / group) * a.H + g * group + R % group,
				l > 0.0f ? rm[r] + logf(l) : -INFINITY);
		}
}

template <typename TQK, typename TV, typename TO, typename TL>
lca_status lcc_attention(const lca_params *p, int64_t H, int64_t Hkv,
	int64_t dk, int64_t dv, const int64_t *cu_q, const int64_t *cu_k,
	int64_t nseq, const int64_t *cuq_dev, const int64_t *cuk_dev,
	const TQK *q, const TQK *k, const TV *v, TO *o, TL *lse,
	struct lcc_scratch *sc)
{
	struct attn_args a;
	int64_t *tiles, ntiles;
	size_t limit, bytes;
	int bq;
	lca_status s;

	(void)cu_k;
	if ((s = lcc_smem_limit(&limit)))
		return s;
	/* the most query rows per block that fit */
	for (bq = 32; bq >= 1 && generic_smem(bq, dk, dv) > limit; bq /= 2)
		;
	if (bq < 1)
		return lcai_fail(LCA_ERR_UNSUPPORTED,
			"cuda softmax: dk = %lld, dv = %lld do not fit in shared memory",
			(long long)dk, (long long)dv);
	if (Hkv > 65535)
		return lcai_fail(LCA_ERR_UNSUPPORTED, "cuda softmax: more than 65535 kv heads");
	bytes = generic_smem(bq, dk, dv);
	if ((s = make_tiles(cu_q, nseq, H / Hkv, bq, &tiles, &ntiles, sc)) || ntiles == 0)
		return s;
	a.q = q;
	a.k = k;
	a.v = v;
	a.o = o;
	a.lse = lse;
	a.H = H;
	a.Hkv = Hkv;
	a.dk = dk;
	a.dv = dv;
	a.scale = (float)p->scale;
	a.causal = p->causal;
	a.window = p->window;
	a.cuq = cuq_dev;
	a.cuk = cuk_dev;
	a.tiles = tiles;
	a.BQ = bq;
	if ((s = lcc_status(cudaFuncSetAttribute(attn_generic<TQK, TV, TO, TL>,
		cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes), "softmax shared memory")))
		return s;
	attn_generic<TQK, TV, TO, TL><<<dim3((unsigned)ntiles, (unsigned)Hkv), GTHREADS, bytes>>>(a);
	return lcc_launched("softmax kernel");
}

#define LCC_ATTN_INST(A, B, C, D) \
	template lca_status lcc_attention<A, B, C, D>(const lca_params *, int64_t, \
		int64_t, int64_t, int64_t, const int64_t *, const int64_t *, int64_t, \
		const int64_t *, const int64_t *, const A *, const A *, const B *, C *, \
		D *, struct lcc_scratch *);
LCC_ATTN_INST(float, float, float, float)
LCC_ATTN_INST(bf16, bf16, bf16, bf16)
LCC_ATTN_INST(float, bf16, bf16, bf16)
LCC_ATTN_INST(float, bf16, float, bf16)
LCC_ATTN_INST(float, float, bf16, bf16)

/* ---- tensor-core kernel (bf16, dk = dv = D) ----
 *
 * FlashAttention-2 layout (Dao 2023, sec. 3): a block owns 128 queries of
 * one head, each of its 8 warps 16 query rows; K/V tiles of 64 keys are
 * double-buffered in shared memory by cp.async. S = Q K^T and O += P V are
 * mma.sync m16n8k16 (bf16 in, f32 accumulate), S, P and O never leave the
 * registers. In the accumulator of an m16n8 product, thread (g = lane / 4,
 * t = lane % 4) holds rows g and g + 8, columns 2t and 2t + 1, so a row's
 * maximum and sum are reduced over the 4 threads of a quad, and the S
 * accumulators of two adjacent n8 tiles are exactly the A operand of the
 * P V product (the registers are re-packed, not moved).
 */

#define MBQ 128	/* queries per block: 8 warps x 16 rows */
#define MBK 64		/* keys per tile */
#define MTHREADS 256

static size_t mma_smem(int D)
{
	/* Q [128], K[2] and V[2] [64] rows of D + 8 bf16: the 16-byte pad
	 * puts the 8 rows an ldmatrix reads in 8 different bank groups */
	return (size_t)(MBQ + 4 * MBK) * (D + 8) * 2;
}

__device__ __forceinline__ void cp_async16(void *dst, const void *src, int bytes)
{
	unsigned s = (unsigned)__cvta_generic_to_shared(dst);

	/* bytes = 0 fills the 16 bytes with zeros and reads nothing */
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(s), "l"(src), "r"(bytes));
}

__device__ __forceinline__ void cp_async_commit(void)
{
	asm volatile("cp.async.commit_group;\n" ::);
}

__device__ __forceinline__ void cp_async_wait_all(void)
{
	asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

__device__ __forceinline__ void ldsm_x4(unsigned r[4], const bf16 *p)
{
	unsigned s = (unsigned)__cvta_generic_to_shared(p);

	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
		: "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}

__device__ __forceinline__ void ldsm_x4_trans(unsigned r[4], const bf16 *p)
{
	unsigned s = (unsigned)__cvta_generic_to_shared(p);

	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
		: "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}

/* c += a b, m16n8k16, bf16 inputs, f32 accumulators */
__device__ __forceinline__ void mma16816(float c[4], const unsigned a[4], unsigned b0,
	unsigned b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
		"{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
		: "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		: "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats as bf16x2, the lower column in the low half; *sum gains the
 * values as rounded, so a row's sum is that of the weights used. */
__device__ __forceinline__ unsigned pack_p(float x0, float x1, float *sum)
{
	__nv_bfloat162 v = __floats2bfloat162_rn(x0, x1);

	*sum += __low2float(v) + __high2float(v);
	return *(unsigned *)&v;
}

/* Start copying rows [first, first + ROWS) of a [tokens][heads][D] tensor
 * into a [ROWS][D + 8] tile; rows at or past end are zero-filled (a masked
 * P = 0 times a value never loaded could otherwise be 0 * NaN). */
template <int D, int ROWS>
__device__ __forceinline__ void tile_async(bf16 *dst, const bf16 *base,
	int64_t first, int64_t end, int64_t heads, int64_t head)
{
	const int VPR = D / 8;	/* 16-byte pieces per row */

	for (int e = threadIdx.x; e < ROWS * VPR; e += MTHREADS) {
		int r = e / VPR, c = e % VPR;
		int in = first + r < end;
		const bf16 *src = in ? base + ((first + r) * heads + head) * D + c * 8 : base;

		cp_async16(dst + r * (D + 8) + c * 8, src, in ? 16 : 0);
	}
}

/* Scale one S tile, mask it, and fold it into the running row state:
 * returns the new maxima and writes P (bf16 A fragments) and alpha.
 * Logits are kept in base 2 (scale2 = scale * log2 e), so each
 * exponential is one exp2f; m is the running maximum in that base. */
template <int D>
__device__ __forceinline__ void online_softmax(float s[8][4], unsigned pa[4][4],
	float scale2, int masked, int64_t kt, int t, const int64_t lo[2],
	const int64_t hi[2], float m[2], float l[2], float alpha[2])
{
	float mx[2] = { -INFINITY, -INFINITY }, mn[2], ps[2] = { 0.0f, 0.0f };

#pragma unroll
	for (int jn = 0; jn < 8; jn++)
#pragma unroll
		for (int e = 0; e < 4; e++) {
			int64_t key = kt + 8 * jn + 2 * t + (e & 1);
			int row = e >> 1;
			float x = s[jn][e] * scale2;

			/* masked keys are never scored: they cannot reach max or sum */
			if (masked && !(key >= lo[row] && key < hi[row]))
				x = -INFINITY;
			s[jn][e] = x;
			mx[row] = fmaxf(mx[row], x);
		}
#pragma unroll
	for (int row = 0; row < 2; row++) {
		mx[row] = fmaxf(mx[row], __shfl_xor_sync(0xffffffffu, mx[row], 1));
		mx[row] = fmaxf(mx[row], __shfl_xor_sync(0xffffffffu, mx[row], 2));
		mn[row] = fmaxf(m[row], mx[row]);
		/* every exponent <= 0; a row with no key so far stays empty */
		alpha[row] = mn[row] == -INFINITY ? 1.0f :
			m[row] == -INFINITY ? 0.0f : exp2f(m[row] - mn[row]);
	}
#pragma unroll
	for (int jn = 0; jn < 8; jn++)
#pragma unroll
		for (int e = 0; e < 4; e++) {
			int row = e >> 1;

			s[jn][e] = s[jn][e] == -INFINITY ? 0.0f : exp2f(s[jn][e] - mn[row]);
		}
#pragma unroll
	for (int kk = 0; kk < 4; kk++) {
		pa[kk][0] = pack_p(s[2 * kk][0], s[2 * kk][1], &ps[0]);
		pa[kk][1] = pack_p(s[2 * kk][2], s[2 * kk][3], &ps[1]);
		pa[kk][2] = pack_p(s[2 * kk + 1][0], s[2 * kk + 1][1], &ps[0]);
		pa[kk][3] = pack_p(s[2 * kk + 1][2], s[2 * kk + 1][3], &ps[1]);
	}
#pragma unroll
	for (int row = 0; row < 2; row++) {
		/* l is this thread's part of the row sum; the quad adds at the end */
		l[row] = alpha[row] * l[row] + ps[row];
		m[row] = mn[row];
	}
}

template <int D>
__global__ void __launch_bounds__(MTHREADS) attn_mma(struct attn_args a)
{
	extern __shared__ __align__(16) unsigned char smm[];
	const int LD = D + 8;
	bf16 *Qs = (bf16 *)smm, *Ks = Qs + MBQ * LD, *Vs = Ks + 2 * MBK * LD;
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const int g = lane >> 2, t = lane & 3;
	const int64_t h = blockIdx.y, kvh = h / (a.H / a.Hkv);
	const int64_t n = a.tiles[2 * blockIdx.x], i0 = a.tiles[2 * blockIdx.x + 1];
	const int64_t q0 = a.cuq[n], tq = a.cuq[n + 1] - q0;
	const int64_t k0 = a.cuk[n], tk = a.cuk[n + 1] - k0;
	const int64_t ilast = i0 + MBQ - 1 < tq - 1 ? i0 + MBQ - 1 : tq - 1;
	const bf16 *kb = (const bf16 *)a.k + k0 * a.Hkv * D;
	const bf16 *vb = (const bf16 *)a.v + k0 * a.Hkv * D;
	int64_t iq[2], lo[2], hi[2], klo, khi, lo_last, hi_first;
	float o[D / 8][4], m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };
	unsigned qf[D / 16][4];
	int buf = 0;

	for (int r = 0; r < 2; r++) {
		iq[r] = i0 + 16 * warp + g + 8 * r;
		key_range(a.causal, a.window, tk - tq + iq[r], tk, &lo[r], &hi[r]);
		if (iq[r] >= tq)
			lo[r] = hi[r] = 0;
	}
	/* ranges grow with the position: the block needs [lo(first), hi(last))
	 * and every row sees all of [lo(last), hi(first)) */
	key_range(a.causal, a.window, tk - tq + i0, tk, &klo, &hi_first);
	key_range(a.causal, a.window, tk - tq + ilast, tk, &lo_last, &khi);
#pragma unroll
	for (int nd = 0; nd < D / 8; nd++)
		o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.0f;

	tile_async<D, MBQ>(Qs, (const bf16 *)a.q + q0 * a.H * D, i0, tq, a.H, h);
	if (klo < khi) {
		tile_async<D, MBK>(Ks, kb, klo, khi, a.Hkv, kvh);
		tile_async<D, MBK>(Vs, vb, klo, khi, a.Hkv, kvh);
	}
	cp_async_commit();
	for (int64_t kt = klo; kt < khi; kt += MBK, buf ^= 1) {
		const bf16 *Kt = Ks + buf * MBK * LD, *Vt = Vs + buf * MBK * LD;
		float s[8][4], alpha[2];
		unsigned pa[4][4];

		cp_async_wait_all();
		/* tile kt is in; every warp is done with the other buffer */
		__syncthreads();
		if (kt == klo)
#pragma unroll
			for (int kk = 0; kk < D / 16; kk++)
				ldsm_x4(qf[kk], Qs + (16 * warp + (lane & 15)) * LD + 16 * kk + (lane >> 4) * 8);
		if (kt + MBK < khi) {
			tile_async<D, MBK>(Ks + (buf ^ 1) * MBK * LD, kb, kt + MBK, khi, a.Hkv, kvh);
			tile_async<D, MBK>(Vs + (buf ^ 1) * MBK * LD, vb, kt + MBK, khi, a.Hkv, kvh);
		}
		cp_async_commit();
#pragma unroll
		for (int jn = 0; jn < 8; jn++)
			s[jn][0] = s[jn][1] = s[jn][2] = s[jn][3] = 0.0f;
#pragma unroll
		for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
			for (int jp = 0; jp < 4; jp++) {
				unsigned r[4];

				/* keys 16 jp .. + 15, dims 16 kk .. + 15: B = K^T, col-major */
				ldsm_x4(r, Kt + (16 * jp + (lane & 7) + ((lane >> 4) << 3)) * LD +
					16 * kk + ((lane >> 3) & 1) * 8);
				mma16816(s[2 * jp], qf[kk], r[0], r[1]);
				mma16816(s[2 * jp + 1], qf[kk], r[2], r[3]);
			}
		online_softmax<D>(s, pa, a.scale * 1.4426950408889634f,
			!(kt >= lo_last && kt + MBK <= hi_first),
			kt, t, lo, hi, m, l, alpha);
#pragma unroll
		for (int nd = 0; nd < D / 8; nd++) {
			o[nd][0] *= alpha[0];
			o[nd][1] *= alpha[0];
			o[nd][2] *= alpha[1];
			o[nd][3] *= alpha[1];
		}
#pragma unroll
		for (int kk = 0; kk < 4; kk++)
#pragma unroll
			for (int np = 0; np < D / 16; np++) {
				unsigned r[4];

				/* keys 16 kk .. + 15, dims 16 np .. + 15: B = V, row-major */
				ldsm_x4_trans(r, Vt + (16 * kk + (lane & 7) + ((lane >> 3) & 1) * 8) * LD +
					16 * np + (lane >> 4) * 8);
				mma16816(o[2 * np], pa[kk], r[0], r[1]);
				mma16816(o[2 * np + 1], pa[kk], r[2], r[3]);
			}
	}
	cp_async_wait_all();
#pragma unroll
	for (int r = 0; r < 2; r++) {
		l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
		l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
	}
#pragma unroll
	for (int r = 0; r < 2; r++) {
		bf16 *orow = (bf16 *)a.o + ((q0 + iq[r]) * a.H + h) * D;
		int inv_ok = l[r] > 0.0f;

		if (iq[r] >= tq)
			continue;
#pragma unroll
		for (int nd = 0; nd < D / 8; nd++) {
			__nv_bfloat162 v = __floats2bfloat162_rn(
				inv_ok ? o[nd][2 * r] / l[r] : 0.0f,
				inv_ok ? o[nd][2 * r + 1] / l[r] : 0.0f);

			*(__nv_bfloat162 *)(orow + 8 * nd + 2 * t) = v;
		}
		if (t == 0 && a.lse)
			stf((bf16 *)a.lse + (q0 + iq[r]) * a.H + h,
				l[r] > 0.0f ? m[r] * 0.6931471805599453f + logf(l[r]) : -INFINITY);
	}
}

/* The tensor-core kernel applies: bf16, dk = dv in {64, 128}, every tensor
 * 16-byte aligned (rows then are too, as D is a multiple of 8). */
static int mma_fits(const lca_params *p, const void *q, const void *k,
	const void *v, const void *o)
{
	uintptr_t any = (uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o;

	return p->dtype == LCA_BF16 && p->dk == p->dv && (p->dk == 64 || p->dk == 128) &&
		any % 16 == 0 && p->H <= 65535;
}

template <int D>
static lca_status launch_mma(const lca_params *p, const int64_t *cu_q,
	int64_t nseq, const int64_t *cuq_dev, const int64_t *cuk_dev,
	const bf16 *q, const bf16 *k, const bf16 *v, bf16 *o, bf16 *lse,
	struct lcc_scratch *sc)
{
	struct attn_args a;
	int64_t *tiles, ntiles;
	size_t bytes = mma_smem(D);
	lca_status s;

	if ((s = make_tiles(cu_q, nseq, 1, MBQ, &tiles, &ntiles, sc)) || ntiles == 0)
		return s;
	a.q = q;
	a.k = k;
	a.v = v;
	a.o = o;
	a.lse = lse;
	a.H = p->H;
	a.Hkv = p->Hkv;
	a.dk = D;
	a.dv = D;
	a.scale = (float)p->scale;
	a.causal = p->causal;
	a.window = p->window;
	a.cuq = cuq_dev;
	a.cuk = cuk_dev;
	a.tiles = tiles;
	a.BQ = MBQ;
	if ((s = lcc_status(cudaFuncSetAttribute(attn_mma<D>,
		cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes), "softmax shared memory")))
		return s;
	attn_mma<D><<<dim3((unsigned)ntiles, (unsigned)p->H), MTHREADS, bytes>>>(a);
	return lcc_launched("softmax tensor-core kernel");
}

/* ---- entry ---- */

/* Rotate q and k (RoPE) into scratch of type TR; offsets tk - tq per
 * sequence for the queries (bottom-right alignment), 0 for the keys. */
template <typename T, typename TR>
static lca_status rotate_qk(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const int64_t *cuq_dev,
	const int64_t *cuk_dev, const T *q, const T *k, TR **qr, TR **kr,
	struct lcc_scratch *sc)
{
	int64_t Tq = cu_q[nseq], Tk = cu_k[nseq], *off, *offd, *zd;
	size_t bq, bk;
	void *mq, *mk;
	lca_status s;

	if (!lcc_bytes(&bq, Tq * p->H, p->dk, sizeof(TR)) ||
	    !lcc_bytes(&bk, Tk * p->Hkv, p->dk, sizeof(TR)))
		return lcai_fail(LCA_ERR_NOMEM, "cuda softmax: rotated q/k size overflows");
	off = (int64_t *)calloc((size_t)nseq, sizeof *off);
	if (!off)
		return lcai_fail(LCA_ERR_NOMEM, "cuda softmax: offsets");
	for (int64_t n = 0; n < nseq; n++)
		off[n] = (cu_k[n + 1] - cu_k[n]) - (cu_q[n + 1] - cu_q[n]);
	s = lcc_scratch_i64(sc, off, nseq, &offd, "query offsets");
	if (!s) {
		memset(off, 0, (size_t)nseq * sizeof *off);
		s = lcc_scratch_i64(sc, off, nseq, &zd, "key offsets");
	}
	free(off);
	if (s || (s = lcc_scratch_alloc(sc, bq, &mq, "rotated q")) ||
	    (s = lcc_scratch_alloc(sc, bk, &mk, "rotated k")))
		return s;
	*qr = (TR *)mq;
	*kr = (TR *)mk;
	if ((s = lcc_rope<T, TR>(p, q, Tq, p->H, p->dk, cuq_dev, offd, nseq, *qr, sc)))
		return s;
	return lcc_rope<T, TR>(p, k, Tk, p->Hkv, p->dk, cuk_dev, zd, nseq, *kr, sc);
}

static lca_status softmax_bf16(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const int64_t *cuq_dev,
	const int64_t *cuk_dev, const bf16 *q, const bf16 *k, const bf16 *v,
	bf16 *o, bf16 *lse, struct lcc_scratch *sc)
{
	lca_status s;

	if (mma_fits(p, q, k, v, o)) {
		bf16 *qr = (bf16 *)q, *kr = (bf16 *)k;

		/* RoPE rounds the rotated q and k to bf16 once more */
		if (p->rope_dim > 0 &&
		    (s = rotate_qk<bf16, bf16>(p, cu_q, cu_k, nseq, cuq_dev, cuk_dev, q, k,
			&qr, &kr, sc)))
			return s;
		return p->dk == 64 ?
			launch_mma<64>(p, cu_q, nseq, cuq_dev, cuk_dev, qr, kr, v, o, lse, sc) :
			launch_mma<128>(p, cu_q, nseq, cuq_dev, cuk_dev, qr, kr, v, o, lse, sc);
	}
	if (p->rope_dim > 0) {
		float *qr = NULL, *kr = NULL;

		if ((s = rotate_qk<bf16, float>(p, cu_q, cu_k, nseq, cuq_dev, cuk_dev, q, k,
			&qr, &kr, sc)))
			return s;
		return lcc_attention<float, bf16, bf16, bf16>(p, p->H, p->Hkv, p->dk, p->dv,
			cu_q, cu_k, nseq, cuq_dev, cuk_dev, qr, kr, v, o, lse, sc);
	}
	return lcc_attention<bf16, bf16, bf16, bf16>(p, p->H, p->Hkv, p->dk, p->dv,
		cu_q, cu_k, nseq, cuq_dev, cuk_dev, q, k, v, o, lse, sc);
}

static lca_status softmax_f32(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const int64_t *cuq_dev,
	const int64_t *cuk_dev, const float *q, const float *k, const float *v,
	float *o, float *lse, struct lcc_scratch *sc)
{
	lca_status s;

	if (p->rope_dim > 0) {
		float *qr = NULL, *kr = NULL;

		if ((s = rotate_qk<float, float>(p, cu_q, cu_k, nseq, cuq_dev, cuk_dev, q, k,
			&qr, &kr, sc)))
			return s;
		q = qr;
		k = kr;
	}
	return lcc_attention<float, float, float, float>(p, p->H, p->Hkv, p->dk, p->dv,
		cu_q, cu_k, nseq, cuq_dev, cuk_dev, q, k, v, o, lse, sc);
}

extern "C" lca_status lcai_cuda_softmax(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q, const void *k,
	const void *v, void *o, void *lse)
{
	struct lcc_scratch sc;
	int64_t *cuq_dev, *cuk_dev;
	lca_status s;

	lcc_scratch_init(&sc);
	if (!(s = lcc_scratch_i64(&sc, cu_q, nseq + 1, &cuq_dev, "cu_seqlens")) &&
	    !(s = lcc_scratch_i64(&sc, cu_k, nseq + 1, &cuk_dev, "cu_seqlens"))) {
		if (p->dtype == LCA_BF16)
			s = softmax_bf16(p, cu_q, cu_k, nseq, cuq_dev, cuk_dev, (const bf16 *)q,
				(const bf16 *)k, (const bf16 *)v, (bf16 *)o, (bf16 *)lse, &sc);
		else
			s = softmax_f32(p, cu_q, cu_k, nseq, cuq_dev, cuk_dev, (const float *)q,
				(const float *)k, (const float *)v, (float *)o, (float *)lse, &sc);
	}
	if (!s)
		s = lcc_sync("softmax");
	else
		(void)cudaDeviceSynchronize();
	lcc_scratch_free(&sc);
	return s;
}
