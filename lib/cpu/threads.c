/*
 * threads.c - how many threads a cpu kernel may ask OpenMP for, and a
 * check at plan creation that the process can create that many.
 *
 * libgomp cannot report a failed pthread_create: it prints and calls
 * exit(1). A library must not exit, so the team is kept to what can help
 * (no more threads than processors) and lcai_cpu_probe_threads() creates
 * the team's threads once, with the stack size libgomp would give them,
 * before any kernel asks libgomp for them. What the probe cannot see is
 * documented in lca_plan_create(3).
 */
#include "config.h"
#include "internal.h"

#include <cblas.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

int lcai_cpu_threads(const lca_params *p)
{
#ifdef _OPENMP
	int t = p->nthreads > 0 ? p->nthreads : omp_get_max_threads();
	int procs = omp_get_num_procs();

	/* More threads than processors only time-share them: the split of
	 * the work changes, the numbers do not (lca_params_init(3)). */
	if (t > procs)
		t = procs;
	if (t > LCA_MAX_THREADS)
		t = LCA_MAX_THREADS;
	return t < 1 ? 1 : t;
#else
	(void)p;
	return 1;
#endif
}

/* Threads an OpenMP build of OpenBLAS may open from a call made outside
 * our parallel regions (1 when BLAS keeps its own pthreads pool, created
 * when it was loaded, or runs serially). */
static int blas_omp_threads(void)
{
#if defined(HAVE_OPENBLAS_GET_PARALLEL) && defined(HAVE_OPENBLAS_GET_NUM_THREADS)
	if (openblas_get_parallel() == 2)
		return openblas_get_num_threads();
#endif
	return 1;
}

/*
 * libgomp's stack size for its threads: OMP_STACKSIZE, else
 * GOMP_STACKSIZE ("<n>[BKMG]", kilobytes without a suffix); 0 when
 * neither is set or readable, which means the pthreads default, as for
 * libgomp.
 */
static size_t gomp_stacksize(void)
{
	static const char *names[] = { "OMP_STACKSIZE", "GOMP_STACKSIZE" };

	for (int i = 0; i < 2; i++) {
		const char *s = getenv(names[i]);
		char *end;
		unsigned long long n, shift = 10;

		if (!s)
			continue;
		errno = 0;
		n = strtoull(s, &end, 10);
		if (errno || end == s)
			continue;
		while (isspace((unsigned char)*end))
			end++;
		switch (tolower((unsigned char)*end)) {
		case 'b': shift = 0; end++; break;
		case 'k': shift = 10; end++; break;
		case 'm': shift = 20; end++; break;
		case 'g': shift = 30; end++; break;
		}
		if (n > (SIZE_MAX >> shift))
			continue;
		return (size_t)n << shift;
	}
	return 0;
}

/* A probe thread lives until the prober releases the gate, so that all
 * of them exist at once, as a team's threads do. */
static void *probe_wait(void *gate)
{
	pthread_mutex_lock(gate);
	pthread_mutex_unlock(gate);
	return NULL;
}

/* Create n - 1 threads at once (the caller is the n-th), then end them.
 * 0 on success, else the pthread_create error and *made the count made. */
static int probe_team(int n, size_t stack, int *made)
{
	pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
	pthread_t *tid;
	pthread_attr_t attr;
	int err = 0;

	*made = 0;
	if (!(tid = malloc(sizeof *tid * (size_t)n)))
		return ENOMEM;
	if ((err = pthread_attr_init(&attr))) {
		free(tid);
		return err;
	}
	if (stack)
		err = pthread_attr_setstacksize(&attr, stack);
	pthread_mutex_lock(&gate);
	for (int i = 0; !err && i < n - 1; i++)
		if (!(err = pthread_create(&tid[i], &attr, probe_wait, &gate)))
			(*made)++;
	pthread_mutex_unlock(&gate);
	for (int i = 0; i < *made; i++)
		pthread_join(tid[i], NULL);
	pthread_attr_destroy(&attr);
	free(tid);
	return err;
}

lca_status lcai_cpu_probe_threads(const lca_params *p)
{
	int n = lcai_cpu_threads(p), b = blas_omp_threads(), made, err;
	size_t stack = gomp_stacksize();

	if (b > n)
		n = b;
	if (n <= 1)
		return LCA_OK;
	if ((err = probe_team(n, stack, &made)))
		return lcai_fail(LCA_ERR_NOMEM,
			"lca_plan_create: cannot create a team of %d threads "
			"(thread %d failed: %s; nthreads = %d)",
			n, made + 2, strerror(err), p->nthreads);
	return LCA_OK;
}
