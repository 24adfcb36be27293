/*
 * cuda_bench.cu - times each mechanism of the cuda backend (bf16) at
 * several sequence lengths against the GPU's own measured limits, all in
 * one run:
 *
 *   peak  bf16 matrix-product rate: cuBLAS GEMM 8192^3, bf16 in, f32
 *         accumulate (CUBLAS_COMPUTE_32F), the best of 10 after warm-up
 *   bw    device-to-device copy of 1 GiB, bytes read + written, best of 10
 *
 * and for each (mechanism, T) the roofline fraction
 *
 *   roofline_frac = max(flops / peak, bytes / bw) / seconds
 *
 * with the FLOP and byte counts printed below (the arithmetic the
 * algorithm needs, not what a kernel happens to do). 1.0 would be a
 * kernel at the machine's limit. Inputs are fresh random bf16 values
 * (seeded from the clock); check_finite is off so only the kernels are
 * timed. A case whose time, extrapolated from the previous T as T^2, would
 * exceed --budget seconds is skipped and says so.
 *
 * Built by tests/cuda-check.sh with nvcc against the built library:
 *   nvcc -O2 -arch=sm_90 -Iinclude bench/cuda_bench.cu -L.libs -llcattn -lcublas
 * Usage: cuda_bench [--tsv FILE] [--budget SECONDS] [T ...]
 */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lcattn.h"

#define CK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { \
	fprintf(stderr, "cuda_bench: %s: %s\n", #call, cudaGetErrorString(e_)); exit(1); } } while (0)
#define LK(call) do { lca_status s_ = (call); if (s_ != LCA_OK) { \
	fprintf(stderr, "cuda_bench: %s: %s (%s)\n", #call, lca_strerror(s_), lca_last_error()); \
	exit(1); } } while (0)

/* ---- random bf16 inputs ---- */

__global__ void fill_kernel(__nv_bfloat16 *x, int64_t n, uint64_t seed, float lo, float hi)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	int64_t step = (int64_t)gridDim.x * blockDim.x;

	for (; i < n; i += step) {
		uint64_t z = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		x[i] = __float2bfloat16(lo + (hi - lo) * (float)((z >> 40) * 0x1.0p-24));
	}
}

static uint64_t seed_base;

static void *rnd(int64_t n, float lo, float hi)
{
	void *p;

	CK(cudaMalloc(&p, (size_t)n * 2));
	fill_kernel<<<1024, 256>>>((__nv_bfloat16 *)p, n, seed_base += 0x1234567ull, lo, hi);
	CK(cudaGetLastError());
	return p;
}

static void *zeros(size_t bytes)
{
	void *p;

	CK(cudaMalloc(&p, bytes));
	CK(cudaMemset(p, 0, bytes));
	return p;
}

/* ---- machine limits ---- */

static double gemm_peak(void)
{
	const int n = 8192;
	cublasHandle_t h;
	void *a = rnd((int64_t)n * n, -1, 1), *b = rnd((int64_t)n * n, -1, 1), *c;
	float one = 1.0f, zero = 0.0f, best = 1e30f, ms;
	cudaEvent_t e0, e1;

	CK(cudaMalloc(&c, (size_t)n * n * 2));
	if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
		fprintf(stderr, "cuda_bench: cublasCreate failed\n");
		exit(1);
	}
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	for (int r = 0; r < 13; r++) {
		CK(cudaEventRecord(e0));
		if (cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n,
			b, CUDA_R_16BF, n, &zero, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
			CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
			fprintf(stderr, "cuda_bench: cublasGemmEx failed\n");
			exit(1);
		}
		CK(cudaEventRecord(e1));
		CK(cudaEventSynchronize(e1));
		CK(cudaEventElapsedTime(&ms, e0, e1));
		if (r >= 3 && ms < best)
			best = ms;
	}
	cublasDestroy(h);
	cudaFree(a);
	cudaFree(b);
	cudaFree(c);
	return 2.0 * n * (double)n * n / (best * 1e-3);
}

static double copy_bw(void)
{
	const size_t bytes = (size_t)1 << 30;
	void *a = zeros(bytes), *b = zeros(bytes);
	float best = 1e30f, ms;
	cudaEvent_t e0, e1;

	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	for (int r = 0; r < 13; r++) {
		CK(cudaEventRecord(e0));
		CK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
		CK(cudaEventRecord(e1));
		CK(cudaEventSynchronize(e1));
		CK(cudaEventElapsedTime(&ms, e0, e1));
		if (r >= 3 && ms < best)
			best = ms;
	}
	cudaFree(a);
	cudaFree(b);
	return 2.0 * bytes / (best * 1e-3);
}

/* ---- the mechanisms ---- */

/* Shapes: the models' own (Qwen3-Next, DeepSeek-V3 latent sizes, MiniMax
 * head size), with 32 heads where the model has more or fewer, so that
 * softmax and the linear mechanisms are compared at equal width. */
enum { SM_H = 32, SM_HKV = 8, D = 128 };
enum { MLA_H = 16, MLA_DN = 128, MLA_DR = 64, MLA_DC = 512, MLA_DV = 128 };
enum { DN_H = 32, DN_HK = 16, LT_H = 32, CH = 64 };

struct run {
	const char *mech;
	double flops, bytes;
	lca_plan *plan;
	void *t[8];
	int nt;
};

static lca_plan *make_plan(lca_params *p)
{
	lca_plan *plan;

	p->backend = LCA_BACKEND_CUDA;
	p->dtype = LCA_BF16;
	p->check_finite = 0;
	LK(lca_plan_create(p, &plan));
	return plan;
}

static void setup(struct run *r, int which, int64_t T)
{
	lca_params p;
	double P = (double)T * (T + 1) / 2;	/* kept pairs, causal */

	memset(r, 0, sizeof *r);
	switch (which) {
	case 0:
		r->mech = "softmax";
		LK(lca_params_init(&p, LCA_SOFTMAX));
		p.H = SM_H;
		p.Hkv = SM_HKV;
		p.dk = p.dv = D;
		r->plan = make_plan(&p);
		r->t[0] = rnd(T * SM_H * D, -1, 1);
		r->t[1] = rnd(T * SM_HKV * D, -1, 1);
		r->t[2] = rnd(T * SM_HKV * D, -1, 1);
		r->t[3] = zeros((size_t)T * SM_H * D * 2);
		r->t[4] = zeros((size_t)T * SM_H * 2);
		r->nt = 5;
		r->flops = 2.0 * SM_H * P * (D + D);
		r->bytes = 2.0 * T * (SM_H * D + 2.0 * SM_HKV * D + SM_H * D + SM_H);
		break;
	case 1:
		r->mech = "mla";
		LK(lca_params_init(&p, LCA_MLA));
		p.H = MLA_H;
		p.dn = MLA_DN;
		p.dr = MLA_DR;
		p.dc = MLA_DC;
		p.dv = MLA_DV;
		p.scale = 1.0 / sqrt((double)(MLA_DN + MLA_DR));
		r->plan = make_plan(&p);
		r->t[0] = rnd(T * MLA_H * MLA_DN, -1, 1);
		r->t[1] = rnd(T * MLA_H * MLA_DR, -1, 1);
		r->t[2] = rnd(T * MLA_DC, -1, 1);
		r->t[3] = rnd(T * MLA_DR, -1, 1);
		r->t[4] = rnd((int64_t)MLA_H * MLA_DN * MLA_DC, -0.08f, 0.08f);
		r->t[5] = rnd((int64_t)MLA_H * MLA_DV * MLA_DC, -0.08f, 0.08f);
		r->t[6] = zeros((size_t)T * MLA_H * MLA_DV * 2);
		r->t[7] = zeros((size_t)T * MLA_H * 2);
		r->nt = 8;
		r->flops = 2.0 * T * MLA_H * MLA_DN * MLA_DC +
			2.0 * MLA_H * P * (MLA_DC + MLA_DR) + 2.0 * MLA_H * P * MLA_DC +
			2.0 * T * MLA_H * MLA_DC * MLA_DV;
		r->bytes = 2.0 * ((double)T * MLA_H * (MLA_DN + MLA_DR) + (double)T * (MLA_DC + MLA_DR) +
			(double)MLA_H * (MLA_DN + MLA_DV) * MLA_DC + (double)T * MLA_H * MLA_DV +
			(double)T * MLA_H);
		break;
	case 2:
		r->mech = "deltanet";
		LK(lca_params_init(&p, LCA_DELTANET));
		p.H = DN_H;
		p.Hk = DN_HK;
		p.dk = p.dv = D;
		r->plan = make_plan(&p);
		r->t[0] = rnd(T * DN_HK * D, -1, 1);
		r->t[1] = rnd(T * DN_HK * D, -1, 1);
		r->t[2] = rnd(T * DN_H * D, -1, 1);
		r->t[3] = rnd(T * DN_H, -0.5f, -0.01f);	/* g <= 0 */
		r->t[4] = rnd(T * DN_H, 0.05f, 1.0f);	/* beta */
		r->t[5] = zeros((size_t)T * DN_H * D * 2);
		r->t[6] = zeros((size_t)DN_H * D * D * 4);
		r->nt = 7;
		r->flops = (double)DN_H * T * (2.0 * CH * D + 6.0 * D * D + 2.0 * CH * D);
		r->bytes = 2.0 * T * (2.0 * DN_HK * D + 2.0 * DN_H * D + 2.0 * DN_H) +
			4.0 * DN_H * D * D;
		break;
	default: {
		double slope[LT_H];
		__nv_bfloat16 sb[LT_H];

		r->mech = "lightning";
		LK(lca_params_init(&p, LCA_LIGHTNING));
		p.H = LT_H;
		p.dk = p.dv = D;
		r->plan = make_plan(&p);
		LK(lca_minimax_slopes(LT_H, 0, 8, slope));
		for (int h = 0; h < LT_H; h++)
			sb[h] = __float2bfloat16((float)slope[h]);
		r->t[0] = rnd(T * LT_H * D, -1, 1);
		r->t[1] = rnd(T * LT_H * D, -1, 1);
		r->t[2] = rnd(T * LT_H * D, -1, 1);
		CK(cudaMalloc(&r->t[3], sizeof sb));
		CK(cudaMemcpy(r->t[3], sb, sizeof sb, cudaMemcpyHostToDevice));
		r->t[4] = zeros((size_t)T * LT_H * D * 2);
		r->t[5] = zeros((size_t)LT_H * D * D * 4);
		r->nt = 6;
		r->flops = (double)LT_H * T * (CH * D + 4.0 * D * D + CH * D);
		r->bytes = 2.0 * T * (4.0 * LT_H * D) + 4.0 * LT_H * D * D;
		break;
	}
	}
	CK(cudaDeviceSynchronize());
}

static void call(struct run *r, int which, int64_t T)
{
	void **t = r->t;

	switch (which) {
	case 0:
		LK(lca_softmax_forward(r->plan, T, T, t[0], t[1], t[2], NULL, 0, t[3], t[4]));
		break;
	case 1:
		LK(lca_mla_forward(r->plan, T, T, t[0], t[1], t[2], t[3], t[4], t[5], NULL, 0,
			t[6], t[7]));
		break;
	case 2:
		LK(lca_deltanet_forward(r->plan, T, t[0], t[1], t[2], t[3], t[4], NULL, 0, NULL,
			t[5], t[6]));
		break;
	default:
		LK(lca_lightning_forward(r->plan, T, t[0], t[1], t[2], t[3], NULL, 0, NULL, t[4],
			t[5]));
	}
}

static void teardown(struct run *r)
{
	for (int i = 0; i < r->nt; i++)
		cudaFree(r->t[i]);
	lca_plan_destroy(r->plan);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Best of up to 5 timed calls within about a second, after one warm-up
 * call when the previous one took under 2 s. Calls return synchronised. */
static double time_call(struct run *r, int which, int64_t T)
{
	double t0 = now(), best = 1e30, first;

	call(r, which, T);
	first = now() - t0;
	if (first > 2.0)
		return first;
	for (int rep = 0; rep < 5; rep++) {
		double a = now(), dt;

		call(r, which, T);
		dt = now() - a;
		best = dt < best ? dt : best;
		if (now() - t0 > 1.0)
			break;
	}
	return best;
}

int main(int argc, char **argv)
{
	static const char *names[] = { "softmax", "mla", "deltanet", "lightning" };
	int64_t Ts[8] = { 4096, 16384, 65536 };
	int nT = 3, custom = 0;
	double budget = 60.0, peak, bw;
	const char *tsv = NULL;
	FILE *f = NULL;
	cudaDeviceProp prop;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--tsv") && i + 1 < argc)
			tsv = argv[++i];
		else if (!strcmp(argv[i], "--budget") && i + 1 < argc)
			budget = atof(argv[++i]);
		else {
			if (!custom)
				nT = 0;
			custom = 1;
			if (nT < 8 && atoll(argv[i]) > 0)
				Ts[nT++] = atoll(argv[i]);
		}
	}
	seed_base = (uint64_t)time(NULL) * 0x2545f4914f6cdd1dull;
	CK(cudaGetDeviceProperties(&prop, 0));
	peak = gemm_peak();
	bw = copy_bw();
	printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
	printf("measured: bf16 GEMM %.1f TFLOP/s (cuBLAS 8192^3), copy %.0f GB/s (read + write)\n",
		peak / 1e12, bw / 1e9);
	printf("FLOPs (P = T(T+1)/2 causal pairs, C = %d):\n", CH);
	printf("  softmax   2 H P (dk + dv)                         H=%d Hkv=%d d=%d\n", SM_H, SM_HKV, D);
	printf("  mla       2 T H dn dc + 2 H P (2 dc + dr) + 2 T H dc dv   H=%d dn=%d dr=%d dc=%d dv=%d\n",
		MLA_H, MLA_DN, MLA_DR, MLA_DC, MLA_DV);
	printf("  deltanet  H T (2 C dk + 6 dk dv + 2 C dv)  [gram, K S, Q S, state; solve, intra]  H=%d Hk=%d d=%d\n",
		DN_H, DN_HK, D);
	printf("  lightning H T (C dk + 4 dk dv + C dv)  [Q K^T; Q S, state; intra]  H=%d d=%d\n", LT_H, D);
	printf("bytes: every input read once and every output written once (bf16; state f32)\n");
	printf("roofline_frac = max(flops / peak, bytes / bw) / seconds\n\n");
	printf("%-10s %7s %10s %9s %9s\n", "mechanism", "T", "ms", "TFLOP/s", "roofline");
	if (tsv && !(f = fopen(tsv, "w"))) {
		perror(tsv);
		return 1;
	}
	for (int w = 0; w < 4; w++) {
		double last = 0.0;
		int64_t lastT = 0;

		for (int i = 0; i < nT; i++) {
			struct run r;
			double sec, frac, est = last * ((double)Ts[i] / lastT) * ((double)Ts[i] / lastT);

			if (lastT && est > budget) {
				printf("%-10s %7lld   skipped: about %.0f s expected (budget %.0f s)\n",
					names[w], (long long)Ts[i], est, budget);
				if (f)
					fprintf(f, "%s\t%lld\tnan\tnan\tnan\n", names[w], (long long)Ts[i]);
				continue;
			}
			setup(&r, w, Ts[i]);
			sec = time_call(&r, w, Ts[i]);
			frac = fmax(r.flops / peak, r.bytes / bw) / sec;
			printf("%-10s %7lld %10.3f %9.1f %9.3f\n", r.mech, (long long)Ts[i], sec * 1e3,
				r.flops / sec / 1e12, frac);
			fflush(stdout);
			if (f)
				fprintf(f, "%s\t%lld\t%.6e\t%.3f\t%.4f\n", r.mech, (long long)Ts[i], sec,
					r.flops / sec / 1e12, frac);
			teardown(&r);
			last = sec;
			lastT = Ts[i];
		}
	}
	if (f)
		fclose(f);
	return 0;
}
