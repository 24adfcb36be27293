/*
 * ceiling.c - the machine's own limits, measured in the same run as the
 * kernels they judge: the BLAS GEMM rate (what a compute-bound kernel can
 * hope for) and the bandwidth of a large copy (what a memory-bound one can).
 *
 * Both run in a forked child so that the parent never starts the BLAS
 * thread pool and forks cleanly afterwards.
 */
#include "bench.h"

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	GEMM_N = 2048,   /* 2 n^3 = 17 GFLOP: long enough to time, short to run */
	COPY_MIB = 512,  /* far beyond any last-level cache */
	BEST_OF = 5,     /* a busy machine rarely slows all five */
	MAX_COPY_THREADS = 64
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
}

int bench_ceilings(struct bench_ceiling *c)
{
	memset(c, 0, sizeof *c);
	if (bench_fork(ceilings_child, NULL, c, sizeof *c, 600))
		return -1;
	return c->sgemm_gflops > 0 && c->dgemm_gflops > 0 && c->bw_gbs > 0 ? 0 : -1;
}
