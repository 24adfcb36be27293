/*
 * mla.cu - multi-head latent attention (DeepSeek-V2 sec. 2.1) on the GPU,
 * both computations of lib/ref/mla.c:
 *
 *   absorbed  q_lat[t][h] = w_uk[h]^T q_nope[t][h] (one batched product),
 *             then softmax attention of the H heads over the shared latent
 *             cache as one multi-query problem: key [ckv ; rope(k_rope)]
 *             (dc + dr), value ckv (dc), query [q_lat ; rope(q_rope)];
 *             the generic kernel of softmax.cu packs (token, head) rows of
 *             all heads into a block, so each latent tile it loads serves
 *             every head of the block's rows; finally o = w_uv[h] lat.
 *   naive     decompress k_h = [w_uk[h] ckv ; rope(k_rope)], v_h = w_uv[h]
 *             ckv per head and run plain attention (the cross-check).
 *
 * Intermediates (q_lat, the latent sum, decompressed K and V) stay in f32:
 * only the final o and lse are rounded to the input dtype.
 */
#include "util.cuh"

#include <stdlib.h>
#include <string.h>

/* dst[row][0..w) = src[row / div][0..w), rows with strides (elements):
 * gathers and broadcasts into concatenated [latent ; rope] operands. */
template <typename TI, typename TO>
__global__ void copy_rows(int64_t rows, int64_t w, const TI *src,
	int64_t sstride, int64_t div, TO *dst, int64_t dstride)
{
	int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	int64_t step = (int64_t)gridDim.x * blockDim.x;

	for (; e < rows * w; e += step) {
		int64_t r = e / w, c = e % w;

		stf(dst + r * dstride + c, ldf(src + (r / div) * sstride + c));
	}
}

template <typename TI, typename TO>
static lca_status copy_rows_launch(int64_t rows, int64_t w, const TI *src,
	int64_t sstride, int64_t div, TO *dst, int64_t dstride)
{
	int64_t blocks = (rows * w + 255) / 256;

	if (rows * w == 0)
		return LCA_OK;
	if (blocks > 65536)
		blocks = 65536;
	copy_rows<TI, TO><<<(unsigned)blocks, 256>>>(rows, w, src, sstride, div, dst, dstride);
	return lcc_launched("mla gather kernel");
}

/* Device scratch of n floats. */
static lca_status floats(struct lcc_scratch *sc, int64_t a, int64_t b,
	float **out, const char *what)
{
	size_t bytes;
	void *m;
	lca_status s;

	if (!lcc_bytes(&bytes, a, b, sizeof(float)))
		return lcai_fail(LCA_ERR_NOMEM, "cuda mla: %s size overflows", what);
	if ((s = lcc_scratch_alloc(sc, bytes, &m, what)))
		return s;
	*out = (float *)m;
	return LCA_OK;
}

/* The per-call context both computations share. */
struct mla_ctx {
	const lca_params *p;
	const int64_t *cu_q, *cu_k;
	int64_t nseq, Tq, Tk;
	int64_t *cuq_dev, *cuk_dev, *offq_dev, *offk_dev;
	float *qr, *kr;	/* rotated q_rope [Tq][H][dr], k_rope [Tk][dr] */
	struct lcc_scratch *sc;
};

/* Sequence tables and the rotated rope parts. */
template <typename T>
static lca_status mla_prepare(struct mla_ctx *c, const T *q_rope, const T *k_rope)
{
	const lca_params *p = c->p;
	int64_t *off = (int64_t *)calloc((size_t)c->nseq, sizeof(int64_t));
	lca_status s;

	if (!off)
		return lcai_fail(LCA_ERR_NOMEM, "cuda mla: offsets");
	for (int64_t n = 0; n < c->nseq; n++)
		off[n] = (c->cu_k[n + 1] - c->cu_k[n]) - (c->cu_q[n + 1] - c->cu_q[n]);
	s = lcc_scratch_i64(c->sc, off, c->nseq, &c->offq_dev, "query offsets");
	if (!s) {
		memset(off, 0, (size_t)c->nseq * sizeof(int64_t));
		s = lcc_scratch_i64(c->sc, off, c->nseq, &c->offk_dev, "key offsets");
	}
	free(off);
	if (s || (s = lcc_scratch_i64(c->sc, c->cu_q, c->nseq + 1, &c->cuq_dev, "cu_seqlens")) ||
	    (s = lcc_scratch_i64(c->sc, c->cu_k, c->nseq + 1, &c->cuk_dev, "cu_seqlens")) ||
	    (s = floats(c->sc, c->Tq * p->H, p->dr, &c->qr, "rotated q_rope")) ||
	    (s = floats(c->sc, c->Tk, p->dr, &c->kr, "rotated k_rope")) ||
	    (s = lcc_rope<T, float>(p, q_rope, c->Tq, p->H, p->dr, c->cuq_dev, c->offq_dev,
		c->nseq, c->qr, c->sc)))
		return s;
	return lcc_rope<T, float>(p, k_rope, c->Tk, 1, p->dr, c->cuk_dev, c->offk_dev,
		c->nseq, c->kr, c->sc);
}

template <typename T>
static lca_status mla_absorbed(struct mla_ctx *c, const T *q_nope,
	const T *ckv, const T *w_uk, const T *w_uv, T *o, T *lse)
{
	const lca_params *p = c->p;
	const int64_t H = p->H, dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;
	const int64_t dq = dc + dr, Tq = c->Tq, Tk = c->Tk;
	float *qcat, *kcat, *lat;
	lca_status s;

	if ((s = floats(c->sc, Tq * H, dq, &qcat, "latent queries")) ||
	    (s = floats(c->sc, Tk, dq, &kcat, "latent keys")) ||
	    (s = floats(c->sc, Tq * H, dc, &lat, "latent sums")))
		return s;
	/* q_lat[t][h][c] = sum_j w_uk[h][j][c] q_nope[t][h][j] */
	if ((s = lcc_gemm<T, T, float>(H, Tq, dc, dn, q_nope, dn, H * dn, 1,
		w_uk, dn * dc, dc, 1, qcat, dq, H * dq, 1)) ||
	    (s = copy_rows_launch<float, float>(Tq * H, dr, c->qr, dr, 1, qcat + dc, dq)) ||
	    (s = copy_rows_launch<T, float>(Tk, dc, ckv, dc, 1, kcat, dq)) ||
	    (s = copy_rows_launch<float, float>(Tk, dr, c->kr, dr, 1, kcat + dc, dq)))
		return s;
	/* one kv head shared by all H query heads; the value is ckv itself */
	if ((s = lcc_attention<float, T, float, T>(p, H, 1, dq, dc, c->cu_q, c->cu_k,
		c->nseq, c->cuq_dev, c->cuk_dev, qcat, kcat, ckv, lat, lse, c->sc)))
		return s;
	/* o[t][h][d] = sum_c w_uv[h][d][c] lat[t][h][c] */
	return lcc_gemm<float, T, T>(H, Tq, dv, dc, lat, dc, H * dc, 1,
		w_uv, dv * dc, 1, dc, o, dv, H * dv, 1);
}

template <typename T>
static lca_status mla_naive(struct mla_ctx *c, const T *q_nope,
	const T *ckv, const T *w_uk, const T *w_uv, T *o, T *lse)
{
	const lca_params *p = c->p;
	const int64_t H = p->H, dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv;
	const int64_t dq = dn + dr, Tq = c->Tq, Tk = c->Tk;
	float *qh, *kh, *vh;
	lca_status s;

	if ((s = floats(c->sc, Tq * H, dq, &qh, "queries")) ||
	    (s = floats(c->sc, Tk * H, dq, &kh, "decompressed keys")) ||
	    (s = floats(c->sc, Tk * H, dv, &vh, "decompressed values")))
		return s;
	/* k_h[s][j] = sum_c w_uk[h][j][c] ckv[s][c], v_h[s][d] likewise */
	if ((s = lcc_gemm<T, T, float>(H, Tk, dn, dc, ckv, 0, dc, 1,
		w_uk, dn * dc, 1, dc, kh, dq, H * dq, 1)) ||
	    (s = lcc_gemm<T, T, float>(H, Tk, dv, dc, ckv, 0, dc, 1,
		w_uv, dv * dc, 1, dc, vh, dv, H * dv, 1)) ||
	    (s = copy_rows_launch<float, float>(Tk * H, dr, c->kr, dr, H, kh + dn, dq)) ||
	    (s = copy_rows_launch<T, float>(Tq * H, dn, q_nope, dn, 1, qh, dq)) ||
	    (s = copy_rows_launch<float, float>(Tq * H, dr, c->qr, dr, 1, qh + dn, dq)))
		return s;
	return lcc_attention<float, float, T, T>(p, H, H, dq, dv, c->cu_q, c->cu_k,
		c->nseq, c->cuq_dev, c->cuk_dev, qh, kh, vh, o, lse, c->sc);
}

template <typename T>
static lca_status mla_run(struct mla_ctx *c, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, void *o, void *lse)
{
	lca_status s = mla_prepare<T>(c, (const T *)q_rope, (const T *)k_rope);

	if (s)
		return s;
	if (c->p->algo == LCA_ALGO_NAIVE)
		return mla_naive<T>(c, (const T *)q_nope, (const T *)ckv, (const T *)w_uk,
			(const T *)w_uv, (T *)o, (T *)lse);
	return mla_absorbed<T>(c, (const T *)q_nope, (const T *)ckv, (const T *)w_uk,
		(const T *)w_uv, (T *)o, (T *)lse);
}

extern "C" lca_status lcai_cuda_mla(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, void *o, void *lse)
{
	struct lcc_scratch sc;
	struct mla_ctx c;
	lca_status s;

	lcc_scratch_init(&sc);
	memset(&c, 0, sizeof c);
	c.p = p;
	c.cu_q = cu_q;
	c.cu_k = cu_k;
	c.nseq = nseq;
	c.Tq = cu_q[nseq];
	c.Tk = cu_k[nseq];
	c.sc = &sc;
	if (p->dtype == LCA_BF16)
		s = mla_run<bf16>(&c, q_nope, q_rope, ckv, k_rope, w_uk, w_uv, o, lse);
	else
		s = mla_run<float>(&c, q_nope, q_rope, ckv, k_rope, w_uk, w_uv, o, lse);
	if (!s)
		s = lcc_sync("mla");
	else
		(void)cudaDeviceSynchronize();
	lcc_scratch_free(&sc);
	return s;
}
