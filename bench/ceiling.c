/*
 * ceiling.c - the machine's own limits, measured in the same run as the
 * kernels they judge: the BLAS GEMM rate and the rate of a loop of
 * independent fused multiply-adds at the cpu kernels' own vector width (the
 * larger of the two is what a compute-bound kernel can hope for: a BLAS
 * built for a narrower ISA than the kernels dispatch to sets the bar too
 * low), and the bandwidth of a large copy (what a memory-bound one can).
 *
 * Both run in a forked child so that the parent never starts the BLAS
 * thread pool and forks cleanly afterwards.
 */
#define _GNU_SOURCE /* sched_getaffinity: the CPUs the kernels' threads may use */
#include "bench.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	GEMM_N = 2048,   /* 2 n^3 = 17 GFLOP: long enough to time, short to run */
	COPY_MIB = 512,  /* far beyond any last-level cache */
	BEST_OF = 5,     /* a busy machine rarely slows all five */
	MAX_COPY_THREADS = 64,
	FMA_ACC = 16,    /* independent accumulators, AVX-512 (32 registers): */
	FMA_ACC16 = 12,  /* ... and 16 registers; both above latency x FMA ports (4 x 2) */
	FMA_ITER = 1 << 23 /* x 16 vector FMAs a thread: ~0.05 s at AVX-512 */
};

/* Best-of-5 GFLOP/s of an n^3 GEMM in float (dbl = 0) or double. The
 * operands are filled with small values so no denormals or overflow slow
 * the kernel down; one untimed call first lets BLAS start its threads. */
static double gemm_rate(int n, int dbl)
{
	size_t es = dbl ? sizeof(double) : sizeof(float), nn = (size_t)n * n;
	void *a = malloc(nn * es), *b = malloc(nn * es), *c = malloc(nn * es);
	double best = 0;

	if (!a || !b || !c)
		goto out;
	for (size_t i = 0; i < nn; i++) {
		double x = (double)(i % 17) / 17 - 0.5, y = (double)(i % 13) / 13 - 0.5;

		if (dbl)
			((double *)a)[i] = x, ((double *)b)[i] = y;
		else
			((float *)a)[i] = (float)x, ((float *)b)[i] = (float)y;
	}
	memset(c, 0, nn * es);
	for (int rep = 0; rep <= BEST_OF; rep++) {
		double t0 = bench_now(), t;

		if (dbl)
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n,
				1.0, a, n, b, n, 0.0, c, n);
		else
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n,
				1.0f, a, n, b, n, 0.0f, c, n);
		t = bench_now() - t0;
		if (rep > 0 && t > 0 && 2.0 * n * n * (double)n / t / 1e9 > best)
			best = 2.0 * n * n * (double)n / t / 1e9;
	}
out:
	free(a), free(b), free(c);
	return best;
}

struct slice {
	char *dst;
	const char *src;
	size_t n;
};

static void *copy_slice(void *arg)
{
	struct slice *s = arg;

	memcpy(s->dst, s->src, s->n);
	return NULL;
}

/* One copy of n bytes split over nt threads; returns seconds or -1. */
static double copy_once(char *dst, const char *src, size_t n, int nt)
{
	struct slice sl[MAX_COPY_THREADS];
	pthread_t th[MAX_COPY_THREADS];
	size_t per = (n / nt + 63) & ~(size_t)63;  /* cache-line aligned cuts */
	double t0 = bench_now();
	int started = 0;

	for (int i = 0; i < nt; i++) {
		size_t lo = per * i < n ? per * i : n, hi = lo + per < n ? lo + per : n;

		sl[i] = (struct slice){ dst + lo, src + lo, hi - lo };
		if (i == nt - 1)
			copy_slice(&sl[i]);  /* the calling thread takes the last slice */
		else if (pthread_create(&th[i], NULL, copy_slice, &sl[i]) == 0)
			started++;
		else
			copy_slice(&sl[i]);  /* no thread: do it here */
	}
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	return bench_now() - t0;
}

/* Best-of-5 bandwidth of a large copy with one thread per core (one core
 * cannot saturate the memory system on most machines). Both buffers are
 * touched first so page faults are not timed. Counted bytes: 2 x size, one
 * read and one write of every byte; a write-allocate cache moves more, so
 * this is the bandwidth a kernel can actually use, not the bus's. */
static double copy_rate(size_t bytes, int nt)
{
	char *src = malloc(bytes), *dst = malloc(bytes);
	double best = 0;

	if (src && dst) {
		memset(src, 1, bytes);
		memset(dst, 0, bytes);
		for (int rep = 0; rep <= BEST_OF; rep++) {
			double t = copy_once(dst, src, bytes, nt);

			if (rep > 0 && t > 0 && 2.0 * bytes / t / 1e9 > best)
				best = 2.0 * bytes / t / 1e9;
		}
	}
	free(src), free(dst);
	return best;
}

/* ---- the FMA ceiling -------------------------------------------------- */

/*
 * Each loop keeps nacc accumulators in registers (FMA_ACC with AVX-512's
 * 32 vector registers, FMA_ACC16 with 16: x and y need two, and a spilled
 * accumulator would put a store and a load in its chain) and updates every
 * one with a = a * x + y per iteration, so nothing but the FMA units bounds it.
 * x < 1 and small y keep the values near y / (1 - x): no overflow, no
 * denormals. The sum of the accumulators is returned so the compiler
 * cannot drop the loop. The widths are those the cpu kernels are built for
 * (lib/cpu/isa.h): AVX-512 zmm, AVX2 ymm with FMA, SSE xmm, which has no
 * fused multiply-add: there a multiply and an add count as one "FMA".
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FMA_LOOP(name, attr, vt, set1, fma, store, et, lanes, nacc)    \
static attr double name(long iters)                                     \
{                                                                       \
	vt acc[nacc], x = set1((et)0.999999), y = set1((et)1e-6);       \
	et out[lanes];                                                  \
	double sum = 0;                                                 \
	for (int i = 0; i < nacc; i++)                                  \
		acc[i] = set1((et)i);                                   \
	for (long n = 0; n < iters; n++) {                              \
		_Pragma("GCC unroll 16")                                \
		for (int i = 0; i < nacc; i++)                          \
			acc[i] = fma(acc[i], x, y);                     \
	}                                                               \
	for (int i = 1; i < nacc; i++)                                  \
		acc[0] = fma(acc[i], x, acc[0]);                        \
	store(out, acc[0]);                                             \
	for (int i = 0; i < lanes; i++)                                 \
		sum += out[i];                                          \
	return sum;                                                     \
}
#define SSE_FMA_PS(a, b, c) _mm_add_ps(_mm_mul_ps(a, b), c)
#define SSE_FMA_PD(a, b, c) _mm_add_pd(_mm_mul_pd(a, b), c)
FMA_LOOP(fma512s, __attribute__((target("avx512f"))), __m512, _mm512_set1_ps,
	_mm512_fmadd_ps, _mm512_storeu_ps, float, 16, FMA_ACC)
FMA_LOOP(fma512d, __attribute__((target("avx512f"))), __m512d, _mm512_set1_pd,
	_mm512_fmadd_pd, _mm512_storeu_pd, double, 8, FMA_ACC)
FMA_LOOP(fma256s, __attribute__((target("avx2,fma"))), __m256, _mm256_set1_ps,
	_mm256_fmadd_ps, _mm256_storeu_ps, float, 8, FMA_ACC16)
FMA_LOOP(fma256d, __attribute__((target("avx2,fma"))), __m256d, _mm256_set1_pd,
	_mm256_fmadd_pd, _mm256_storeu_pd, double, 4, FMA_ACC16)
FMA_LOOP(fma128s, , __m128, _mm_set1_ps, SSE_FMA_PS, _mm_storeu_ps, float, 4, FMA_ACC16)
FMA_LOOP(fma128d, , __m128d, _mm_set1_pd, SSE_FMA_PD, _mm_storeu_pd, double, 2, FMA_ACC16)

/* The loop, its lanes and accumulators for the level lca_cpu_isa()
 * names and the type: "avx512" and "avx512bf16" both run 64-byte FMAs
 * (matching the name exactly took the SSE loop on BF16 machines). */
static double (*fma_kernel(const char *isa, int dbl, int *lanes, int *nacc))(long)
{
	if (!strncmp(isa, "avx512", 6)) {
		*lanes = dbl ? 8 : 16;
		*nacc = FMA_ACC;
		return dbl ? fma512d : fma512s;
	}
	*nacc = FMA_ACC16;
	if (!strcmp(isa, "avx2")) {
		*lanes = dbl ? 4 : 8;
		return dbl ? fma256d : fma256s;
	}
	*lanes = dbl ? 2 : 4;
	return dbl ? fma128d : fma128s;
}
#else
/* Off x86-64 the kernels are plain C: a scalar loop, one lane. */
static double fma_scalar(long iters)
{
	double acc[FMA_ACC], sum = 0;
	volatile double xv = 0.999999;
	double x = xv;

	for (int i = 0; i < FMA_ACC; i++)
		acc[i] = i;
	for (long n = 0; n < iters; n++)
		for (int i = 0; i < FMA_ACC; i++)
			acc[i] = acc[i] * x + 1e-6;
	for (int i = 0; i < FMA_ACC; i++)
		sum += acc[i];
	return sum;
}

static double (*fma_kernel(const char *isa, int dbl, int *lanes, int *nacc))(long)
{
	(void)isa, (void)dbl;
	*lanes = 1;
	*nacc = FMA_ACC;
	return fma_scalar;
}
#endif

struct fma_job {
	double (*fn)(long);
	atomic_int *go;
	double sink;
};

static void *fma_thread(void *arg)
{
	struct fma_job *j = arg;

	while (!atomic_load_explicit(j->go, memory_order_acquire))
		;  /* spin: a sleeping thread would start late */
	j->sink = j->fn(FMA_ITER);
	return NULL;
}

/* The threads a cpu plan with nthreads 0 gets, found as libgomp finds its
 * default: OMP_NUM_THREADS if set, else the CPUs of this process's
 * affinity mask; never more than those CPUs (lcai_cpu_threads()). */
int bench_kernel_threads(void)
{
	const char *e = getenv("OMP_NUM_THREADS");
	cpu_set_t set;
	long procs = sysconf(_SC_NPROCESSORS_ONLN), n = 0;

	if (!sched_getaffinity(0, sizeof set, &set) && CPU_COUNT(&set) > 0)
		procs = CPU_COUNT(&set);
	if (procs < 1)
		procs = 1;
	if (e)
		n = strtol(e, NULL, 10);
	if (n < 1 || n > procs)
		n = procs;
	return n > MAX_COPY_THREADS ? MAX_COPY_THREADS : (int)n;
}

/* Best-of-5 GFLOP/s of the FMA loop on nt threads (the calling one and
 * nt - 1 started) released together; the time runs from the release to
 * the last join. A thread that cannot be started is not counted. */
static double fma_rate(const char *isa, int dbl, int nt, int *lanes, int *nacc)
{
	struct fma_job job[MAX_COPY_THREADS];
	pthread_t th[MAX_COPY_THREADS];
	double (*fn)(long) = fma_kernel(isa, dbl, lanes, nacc);
	double best = 0;

	for (int rep = 0; rep <= BEST_OF; rep++) {
		atomic_int go = 0;
		int started = 0;
		double t0, t, flops;

		for (int i = 1; i < nt; i++) {
			job[started + 1] = (struct fma_job){ fn, &go, 0 };
			if (pthread_create(&th[started + 1], NULL, fma_thread, &job[started + 1]))
				break;
			started++;
		}
		t0 = bench_now();
		atomic_store_explicit(&go, 1, memory_order_release);
		job[0].sink = fn(FMA_ITER);
		for (int i = 1; i <= started; i++)
			pthread_join(th[i], NULL);
		t = bench_now() - t0;
		flops = 2.0 * *lanes * *nacc * (double)FMA_ITER * (started + 1);
		if (job[0].sink != job[0].sink)
			return 0;  /* NaN cannot happen; keeps the sum live */
		if (rep > 0 && t > 0 && flops / t / 1e9 > best)
			best = flops / t / 1e9;
	}
	return best;
}

double bench_peak_gflops(const struct bench_ceiling *c, int dbl)
{
	double g = dbl ? c->dgemm_gflops : c->sgemm_gflops;
	double f = dbl ? c->fma_d_gflops : c->fma_s_gflops;

	return f > g ? f : g;
}

static void ceilings_child(void *arg, void *res)
{
	struct bench_ceiling *c = res;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	(void)arg;
	c->gemm_n = GEMM_N;
	c->copy_mib = COPY_MIB;
	c->copy_threads = ncpu < 1 ? 1 : ncpu > MAX_COPY_THREADS ? MAX_COPY_THREADS : (int)ncpu;
	c->sgemm_gflops = gemm_rate(GEMM_N, 0);
	c->dgemm_gflops = gemm_rate(GEMM_N, 1);
	c->bw_gbs = copy_rate((size_t)COPY_MIB << 20, c->copy_threads);
	c->fma_threads = bench_kernel_threads();
	snprintf(c->fma_isa, sizeof c->fma_isa, "%s", lca_cpu_isa());
	c->fma_s_gflops = fma_rate(c->fma_isa, 0, c->fma_threads, &c->fma_s_lanes,
		&c->fma_acc);
	c->fma_d_gflops = fma_rate(c->fma_isa, 1, c->fma_threads, &c->fma_d_lanes,
		&c->fma_acc);
}

int bench_ceilings(struct bench_ceiling *c)
{
	memset(c, 0, sizeof *c);
	if (bench_fork(ceilings_child, NULL, c, sizeof *c, 600))
		return -1;
	return c->sgemm_gflops > 0 && c->dgemm_gflops > 0 && c->bw_gbs > 0 &&
		c->fma_s_gflops > 0 && c->fma_d_gflops > 0 ? 0 : -1;
}
