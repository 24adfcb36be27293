/*
 * util.cuh - pieces shared by the CUDA kernels of lib/cuda: element loads
 * and stores for the two input types, CUDA error mapping, per-call device
 * scratch, the host-side sequence tables and the RoPE pre-rotation pass.
 *
 * Every kernel file includes internal.h through here, inside extern "C",
 * because internal.h is a C header without C++ guards.
 */
#ifndef LCATTN_CUDA_UTIL_CUH
#define LCATTN_CUDA_UTIL_CUH

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "internal.h"
}

typedef __nv_bfloat16 bf16;

/* ---- element access: every load widens to float, every store rounds
 * once (bf16: round to nearest even) ---- */

__device__ __forceinline__ float ldf(const float *p) { return *p; }
__device__ __forceinline__ float ldf(const bf16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void stf(float *p, float x) { *p = x; }
__device__ __forceinline__ void stf(bf16 *p, float x) { *p = __float2bfloat16_rn(x); }

/* ---- errors ---- */

/* Map a CUDA error to a status with a detail naming the CUDA error:
 * allocation failures are LCA_ERR_NOMEM, a missing device or driver
 * LCA_ERR_NO_DEVICE, everything else LCA_ERR_INTERNAL. */
lca_status lcc_status(cudaError_t e, const char *what);
/* Status of the launches made so far (cudaGetLastError). */
lca_status lcc_launched(const char *what);
/* Wait for the device and report any asynchronous error. */
lca_status lcc_sync(const char *what);

/* ---- per-call device scratch: everything allocated through one of these
 * is freed by lcc_scratch_free() on every path ---- */

#define LCC_SCRATCH_MAX 16

struct lcc_scratch {
	void *p[LCC_SCRATCH_MAX];
	int n;
};

void lcc_scratch_init(struct lcc_scratch *s);
lca_status lcc_scratch_alloc(struct lcc_scratch *s, size_t bytes, void **out,
	const char *what);
/* Copy n host int64 values to new scratch. */
lca_status lcc_scratch_i64(struct lcc_scratch *s, const int64_t *host,
	int64_t n, int64_t **out, const char *what);
void lcc_scratch_free(struct lcc_scratch *s);

/* bytes = a * b * c with overflow check (size_t); 0 on overflow. */
int lcc_bytes(size_t *bytes, int64_t a, int64_t b, size_t c);

/* Shared memory a block may opt into on the current device (bytes). */
lca_status lcc_smem_limit(size_t *bytes);

/* ---- RoPE pre-rotation ----
 * out[t][h][0..d) = rope(x[t][h][0..d)) as float, the first rope_dim
 * coordinates rotated as at the token's position in its sequence:
 * pos = t - cu[n] + off[n], with cu (nseq + 1) and off (nseq) on the
 * device (off = tk - tq for queries, 0 for keys). Angles are formed in
 * double exactly as lib/core/rope.c does (freq from the host's pow(),
 * ang = pos * freq, cos and sin in double, rounded to float), so positions
 * up to 64K and beyond lose nothing; products and sums are in float.
 * TO = bf16 rounds the rotated value once (the tensor-core softmax). */
template <typename T, typename TO>
lca_status lcc_rope(const lca_params *p, const T *x, int64_t ntok,
	int64_t heads, int64_t d, const int64_t *cu_dev, const int64_t *off_dev,
	int64_t nseq, TO *out, struct lcc_scratch *sc);

/* Index of the sequence holding token t: the n with cu[n] <= t < cu[n+1]
 * (binary search; empty sequences are skipped naturally). */
__device__ __forceinline__ int64_t lcc_seq_of(const int64_t *cu, int64_t nseq,
	int64_t t)
{
	int64_t lo = 0, hi = nseq - 1;

	while (lo < hi) {
		int64_t mid = (lo + hi + 1) / 2;

		if (cu[mid] <= t)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* ---- small batched GEMM (f32 accumulate) ----
 * C[b](m, n) = sum_k A[b](m, k) B[b](k, n) for b < batch, every operand
 * addressed by element strides (so transposes are free):
 *   A[b](m, k) = A[b * sab + m * sam + k * sak], likewise B and C.
 * Used by mla for w_uk and w_uv; plain tiled shared-memory kernel. */
template <typename TA, typename TB, typename TC>
lca_status lcc_gemm(int64_t batch, int64_t M, int64_t N, int64_t K,
	const TA *A, int64_t sab, int64_t sam, int64_t sak,
	const TB *B, int64_t sbb, int64_t sbk, int64_t sbn,
	TC *C, int64_t scb, int64_t scm, int64_t scn);

/* ---- masked softmax attention over packed sequences (softmax.cu) ----
 * o[t][h] = softmax_s(scale <q[t][h], k[s][h / (H / Hkv)]>) v[s][g], masks
 * and positions as lib/ref/softmax.c; lse as the natural-log sum (may be
 * NULL); fully masked rows o = 0, lse = -inf. q [Tq][H][dk], k [Tk][Hkv][dk],
 * v [Tk][Hkv][dv], o [Tq][H][dv]. cu_q/cu_k host, cuq_dev/cuk_dev their
 * device copies. Uses only p->scale, p->causal and p->window of p.
 * The generic f32-FMA kernel: any sizes that fit shared memory. */
template <typename TQK, typename TV, typename TO, typename TL>
lca_status lcc_attention(const lca_params *p, int64_t H, int64_t Hkv,
	int64_t dk, int64_t dv, const int64_t *cu_q, const int64_t *cu_k,
	int64_t nseq, const int64_t *cuq_dev, const int64_t *cuk_dev,
	const TQK *q, const TQK *k, const TV *v, TO *o, TL *lse,
	struct lcc_scratch *sc);

#endif /* LCATTN_CUDA_UTIL_CUH */
