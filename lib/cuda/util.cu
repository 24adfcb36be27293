/*
 * util.cu - error mapping, device scratch, buffer helpers, the input scan
 * of lib/core (lcai_cuda_find), RoPE pre-rotation and a small batched GEMM
 * shared by the CUDA kernels.
 */
#include "util.cuh"

#include <math.h>
#include <string.h>

/* ---- errors ---- */

lca_status lcc_status(cudaError_t e, const char *what)
{
	lca_status s;

	if (e == cudaSuccess)
		return LCA_OK;
	if (e == cudaErrorMemoryAllocation)
		s = LCA_ERR_NOMEM;
	else if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver)
		s = LCA_ERR_NO_DEVICE;
	else
		s = LCA_ERR_INTERNAL;
	return lcai_fail(s, "cuda: %s: %s (%s)", what, cudaGetErrorString(e),
		cudaGetErrorName(e));
}

lca_status lcc_launched(const char *what)
{
	return lcc_status(cudaGetLastError(), what);
}

lca_status lcc_sync(const char *what)
{
	cudaError_t e = cudaDeviceSynchronize();

	if (e == cudaSuccess)
		e = cudaGetLastError();
	return lcc_status(e, what);
}

/* ---- scratch ---- */

void lcc_scratch_init(struct lcc_scratch *s)
{
	s->n = 0;
}

lca_status lcc_scratch_alloc(struct lcc_scratch *s, size_t bytes, void **out,
	const char *what)
{
	void *p = NULL;
	cudaError_t e;

	*out = NULL;
	if (s->n >= LCC_SCRATCH_MAX)
		return lcai_fail(LCA_ERR_INTERNAL, "cuda: %s: too many scratch buffers", what);
	/* cudaMalloc(0) may return NULL: always ask for something. */
	e = cudaMalloc(&p, bytes ? bytes : 16);
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		return lcc_status(e, what);
	}
	s->p[s->n++] = p;
	*out = p;
	return LCA_OK;
}

lca_status lcc_scratch_i64(struct lcc_scratch *s, const int64_t *host,
	int64_t n, int64_t **out, const char *what)
{
	void *p;
	lca_status st = lcc_scratch_alloc(s, (size_t)n * sizeof(int64_t), &p, what);

	if (st)
		return st;
	*out = (int64_t *)p;
	return lcc_status(cudaMemcpy(p, host, (size_t)n * sizeof(int64_t),
		cudaMemcpyHostToDevice), what);
}

void lcc_scratch_free(struct lcc_scratch *s)
{
	while (s->n > 0)
		(void)cudaFree(s->p[--s->n]);
}

int lcc_bytes(size_t *bytes, int64_t a, int64_t b, size_t c)
{
	int64_t ab;

	if (a < 0 || b < 0 || !lcai_mul(a, b, &ab) || (uint64_t)ab > SIZE_MAX / c)
		return 0;
	*bytes = (size_t)ab * c;
	return 1;
}

lca_status lcc_smem_limit(size_t *bytes)
{
	int dev = 0, v = 0;
	lca_status s;

	if ((s = lcc_status(cudaGetDevice(&dev), "cudaGetDevice")) ||
	    (s = lcc_status(cudaDeviceGetAttribute(&v,
		cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "shared memory limit")))
		return s;
	*bytes = (size_t)v;
	return LCA_OK;
}

/* ---- buffers (lca_buffer_* of the cuda backend) ---- */

extern "C" lca_status lcai_cuda_alloc(size_t bytes, void **ptr)
{
	cudaError_t e = cudaMalloc(ptr, bytes);

	if (e != cudaSuccess) {
		*ptr = NULL;
		(void)cudaGetLastError();
		return lcc_status(e, "lca_buffer_alloc");
	}
	return LCA_OK;
}

extern "C" void lcai_cuda_free(void *ptr)
{
	if (ptr)
		(void)cudaFree(ptr);
}

extern "C" lca_status lcai_cuda_copy(void *dst, const void *src, size_t bytes,
	lca_copy_kind kind)
{
	cudaMemcpyKind k = kind == LCA_COPY_HOST_TO_DEVICE ? cudaMemcpyHostToDevice :
		kind == LCA_COPY_DEVICE_TO_HOST ? cudaMemcpyDeviceToHost :
		cudaMemcpyDeviceToDevice;

	return lcc_status(cudaMemcpy(dst, src, bytes, k), "lca_buffer_copy");
}

/* ---- lcai_cuda_find: the input checks of lib/core on device data ---- */

/* Does x break the rule of mode (0: not finite, 1: > 0, -1: < 0)? NaN
 * compares false, so a NaN never breaks a sign rule (the finite check
 * runs first and catches it). */
__device__ __forceinline__ int find_hit(double x, int mode)
{
	if (mode == 0)
		return !isfinite(x);
	return mode > 0 ? x > 0 : x < 0;
}

template <typename T>
__global__ void find_kernel(const T *x, int64_t n, int mode,
	unsigned long long *first)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	int64_t step = (int64_t)gridDim.x * blockDim.x;

	for (; i < n; i += step)
		if (find_hit((double)x[i], mode)) {
			atomicMin(first, (unsigned long long)i);
			return;
		}
}

/* bf16 through its float value (exact). */
__global__ void find_kernel_bf16(const bf16 *x, int64_t n, int mode,
	unsigned long long *first)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	int64_t step = (int64_t)gridDim.x * blockDim.x;

	for (; i < n; i += step)
		if (find_hit((double)__bfloat162float(x[i]), mode)) {
			atomicMin(first, (unsigned long long)i);
			return;
		}
}

extern "C" int64_t lcai_cuda_find(const void *x, int64_t n, lca_dtype t, int mode)
{
	const unsigned long long none = ~0ull;
	unsigned long long *d = NULL, h = none;
	int64_t blocks = (n + 255) / 256;

	if (n <= 0)
		return -1;
	if (blocks > 4096)
		blocks = 4096;
	if (cudaMalloc(&d, sizeof *d) != cudaSuccess) {
		(void)cudaGetLastError();
		return -2;
	}
	if (cudaMemcpy(d, &h, sizeof h, cudaMemcpyHostToDevice) != cudaSuccess)
		goto fail;
	if (t == LCA_F64)
		find_kernel<double><<<(unsigned)blocks, 256>>>((const double *)x, n, mode, d);
	else if (t == LCA_F32)
		find_kernel<float><<<(unsigned)blocks, 256>>>((const float *)x, n, mode, d);
	else
		find_kernel_bf16<<<(unsigned)blocks, 256>>>((const bf16 *)x, n, mode, d);
	if (cudaGetLastError() != cudaSuccess ||
	    cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost) != cudaSuccess)
		goto fail;
	cudaFree(d);
	return h == none ? -1 : (int64_t)h;
fail:
	(void)cudaGetLastError();
	cudaFree(d);
	return -2;
}

/* ---- lcai_cuda_maxabs: the magnitudes for the range rule ---- */

/* The bits of a double >= 0 order as its values do, so an integer
 * atomicMax over them is a max over the values. */
template <typename T>
__global__ void maxabs_kernel(const T *x, int64_t n, unsigned long long *out)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	int64_t step = (int64_t)gridDim.x * blockDim.x;
	double m = 0;

	for (; i < n; i += step) {
		double v = fabs((double)x[i]);

		m = v > m ? v : m;
	}
	atomicMax(out, (unsigned long long)__double_as_longlong(m));
}

__global__ void maxabs_kernel_bf16(const bf16 *x, int64_t n,
	unsigned long long *out)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	int64_t step = (int64_t)gridDim.x * blockDim.x;
	double m = 0;

	for (; i < n; i += step) {
		double v = fabs((double)__bfloat162float(x[i]));

		m = v > m ? v : m;
	}
	atomicMax(out, (unsigned long long)__double_as_longlong(m));
}

extern "C" int lcai_cuda_maxabs(const void *x, int64_t n, lca_dtype t,
	double *amax)
{
	unsigned long long *d = NULL, h = 0;
	int64_t blocks = (n + 255) / 256;

	*amax = 0;
	if (n <= 0)
		return 0;
	if (blocks > 4096)
		blocks = 4096;
	if (cudaMalloc(&d, sizeof *d) != cudaSuccess) {
		(void)cudaGetLastError();
		return -2;
	}
	if (cudaMemcpy(d, &h, sizeof h, cudaMemcpyHostToDevice) != cudaSuccess)
		goto fail;
	if (t == LCA_F64)
		maxabs_kernel<double><<<(unsigned)blocks, 256>>>((const double *)x, n, d);
	else if (t == LCA_F32)
		maxabs_kernel<float><<<(unsigned)blocks, 256>>>((const float *)x, n, d);
	else
		maxabs_kernel_bf16<<<(unsigned)blocks, 256>>>((const bf16 *)x, n, d);
	if (cudaGetLastError() != cudaSuccess ||
	    cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost) != cudaSuccess)
		goto fail;
	cudaFree(d);
	memcpy(amax, &h, sizeof *amax);
	return 0;
fail:
	(void)cudaGetLastError();
	cudaFree(d);
	return -2;
}

/* ---- RoPE ---- */

template <typename T, typename TO>
__global__ void rope_kernel(const T *x, int64_t ntok, int64_t heads,
	int64_t d, int64_t rope_dim, int interleaved, const double *freq,
	const int64_t *cu, const int64_t *off, int64_t nseq, TO *out)
{
	int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	int64_t step = (int64_t)gridDim.x * blockDim.x;
	int64_t total = ntok * heads * d;

	for (; e < total; e += step) {
		int64_t j = e % d, row = e / d, t = row / heads;
		const T *xr = x + row * d;
		int64_t n, pos, i, a, b;
		double ang;
		float c, s;

		if (j >= rope_dim) {
			stf(out + e, ldf(xr + j));
			continue;
		}
		n = lcc_seq_of(cu, nseq, t);
		pos = t - cu[n] + off[n];
		/* pair of coordinate j and its partner */
		if (interleaved) {
			i = j / 2;
			a = 2 * i;
			b = a + 1;
		} else {
			i = j % (rope_dim / 2);
			a = i;
			b = i + rope_dim / 2;
		}
		ang = (double)pos * freq[i];
		c = (float)cos(ang);
		s = (float)sin(ang);
		if (j == a)
			stf(out + e, ldf(xr + a) * c - ldf(xr + b) * s);
		else
			stf(out + e, ldf(xr + a) * s + ldf(xr + b) * c);
	}
}

template <typename T, typename TO>
lca_status lcc_rope(const lca_params *p, const T *x, int64_t ntok,
	int64_t heads, int64_t d, const int64_t *cu_dev, const int64_t *off_dev,
	int64_t nseq, TO *out, struct lcc_scratch *sc)
{
	int64_t half = p->rope_dim / 2, total = ntok * heads * d, blocks;
	double fh[512], *freq = NULL, *fd;
	void *mem;
	lca_status s;

	if (total == 0)
		return LCA_OK;
	if (half > 512)
		return lcai_fail(LCA_ERR_UNSUPPORTED, "cuda: rope_dim %lld > 1024",
			(long long)p->rope_dim);
	/* The same pow() as lib/core/rope.c, so the angles agree to the bit. */
	for (int64_t i = 0; i < half; i++)
		fh[i] = pow(p->rope_theta, -2.0 * (double)i / (double)p->rope_dim);
	if ((s = lcc_scratch_alloc(sc, (size_t)(half > 0 ? half : 1) * sizeof(double),
		&mem, "rope frequencies")))
		return s;
	fd = (double *)mem;
	if (half > 0 && (s = lcc_status(cudaMemcpy(fd, fh, (size_t)half * sizeof(double),
		cudaMemcpyHostToDevice), "rope frequencies")))
		return s;
	freq = fd;
	blocks = (total + 255) / 256;
	if (blocks > 65536)
		blocks = 65536;
	rope_kernel<T, TO><<<(unsigned)blocks, 256>>>(x, ntok, heads, d, p->rope_dim,
		p->rope_style == LCA_ROPE_INTERLEAVED, freq, cu_dev, off_dev, nseq, out);
	return lcc_launched("rope kernel");
}

#define LCC_ROPE_INST(T, TO) \
	template lca_status lcc_rope<T, TO>(const lca_params *, const T *, int64_t, \
		int64_t, int64_t, const int64_t *, const int64_t *, int64_t, TO *, \
		struct lcc_scratch *);
LCC_ROPE_INST(float, float)
LCC_ROPE_INST(bf16, float)
LCC_ROPE_INST(bf16, bf16)

/* ---- batched GEMM ---- */

#define GT 16	/* output tile GT x GT, one element per thread */

template <typename TA, typename TB, typename TC>
__global__ void gemm_kernel(int64_t batch, int64_t M, int64_t N, int64_t K,
	const TA *A, int64_t sab, int64_t sam, int64_t sak,
	const TB *B, int64_t sbb, int64_t sbk, int64_t sbn,
	TC *C, int64_t scb, int64_t scm, int64_t scn)
{
	__shared__ float As[GT][GT + 1], Bs[GT][GT + 1];
	int tx = threadIdx.x, ty = threadIdx.y;
	int64_t m = (int64_t)blockIdx.x * GT + ty, n = (int64_t)blockIdx.y * GT + tx;

	for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
		const TA *Ab = A + b * sab;
		const TB *Bb = B + b * sbb;
		float acc = 0.0f;

		for (int64_t k0 = 0; k0 < K; k0 += GT) {
			int64_t am = (int64_t)blockIdx.x * GT + ty, ak = k0 + tx;
			int64_t bk = k0 + ty, bn = (int64_t)blockIdx.y * GT + tx;

			As[ty][tx] = am < M && ak < K ? ldf(Ab + am * sam + ak * sak) : 0.0f;
			Bs[ty][tx] = bk < K && bn < N ? ldf(Bb + bk * sbk + bn * sbn) : 0.0f;
			__syncthreads();
			for (int kk = 0; kk < GT; kk++)
				acc += As[ty][kk] * Bs[kk][tx];
			__syncthreads();
		}
		if (m < M && n < N)
			stf(C + b * scb + m * scm + n * scn, acc);
	}
}

template <typename TA, typename TB, typename TC>
lca_status lcc_gemm(int64_t batch, int64_t M, int64_t N, int64_t K,
	const TA *A, int64_t sab, int64_t sam, int64_t sak,
	const TB *B, int64_t sbb, int64_t sbk, int64_t sbn,
	TC *C, int64_t scb, int64_t scm, int64_t scn)
{
	int64_t gx = (M + GT - 1) / GT, gy = (N + GT - 1) / GT;
	dim3 grid, block(GT, GT);

	if (batch == 0 || M == 0 || N == 0)
		return LCA_OK;
	if (gx > INT32_MAX || gy > 65535)
		return lcai_fail(LCA_ERR_UNSUPPORTED, "cuda: matrix product %lld x %lld too large",
			(long long)M, (long long)N);
	grid = dim3((unsigned)gx, (unsigned)gy, (unsigned)(batch < 65535 ? batch : 65535));
	gemm_kernel<TA, TB, TC><<<grid, block>>>(batch, M, N, K, A, sab, sam, sak,
		B, sbb, sbk, sbn, C, scb, scm, scn);
	return lcc_launched("matrix product kernel");
}

#define LCC_GEMM_INST(TA, TB, TC) \
	template lca_status lcc_gemm<TA, TB, TC>(int64_t, int64_t, int64_t, int64_t, \
		const TA *, int64_t, int64_t, int64_t, const TB *, int64_t, int64_t, \
		int64_t, TC *, int64_t, int64_t, int64_t);
LCC_GEMM_INST(float, float, float)
LCC_GEMM_INST(bf16, bf16, float)
LCC_GEMM_INST(float, bf16, float)
LCC_GEMM_INST(float, float, bf16)
LCC_GEMM_INST(float, bf16, bf16)
