/*
 * drift.c - see drift.h.
 *
 * Inputs are drawn per token from a counter-based generator, so 1M tokens
 * need no 1M-token buffers, and rounded to float first: both runs see the
 * same numbers, and the difference is the float32 arithmetic alone (the
 * state carried over a million updates), not the rounding of the inputs.
 */
#include "drift.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* splitmix64 of (seed, counter): a uniform double in [0, 1). */
static double unit(uint64_t seed, uint64_t i)
{
	uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (double)((z ^ (z >> 31)) >> 11) * 0x1p-53;
}

enum { NIN = 5, NROW = DRIFT_DK + DRIFT_DK + DRIFT_DV + 2 };

/* Token t's q, k, v (and g, beta for deltanet) in one row of doubles,
 * each value a float. Lightning's q, k are scaled by 1/sqrt(dk) so that
 * its unnormalised logits stay O(1) (deltanet normalises q, k itself). */
static void token(lca_variant v, uint64_t seed, int64_t t, double *x)
{
	uint64_t base = (uint64_t)t * NROW;
	double s = v == LCA_LIGHTNING ? 1.0 / sqrt((double)DRIFT_DK) : 1.0;

	for (int i = 0; i < NROW; i++) {
		double u = unit(seed, base + (uint64_t)i);
		double y = (2 * u - 1) * sqrt(3.0);  /* variance 1 */

		if (i < 2 * DRIFT_DK)
			y *= s;
		if (i == NROW - 2)
			y = -0.01 * u;               /* g */
		if (i == NROW - 1)
			y = u;                       /* beta */
		x[i] = (float)y;
	}
}

struct run {
	lca_plan *plan;
	lca_cache *cache;
	size_t elt;
	void *in[NIN], *slope, *o;
};

static void run_free(struct run *r)
{
	lca_cache_destroy(r->cache);
	lca_plan_destroy(r->plan);
	for (int i = 0; i < NIN; i++)
		free(r->in[i]);
	free(r->slope);
	free(r->o);
}

static lca_status run_open(struct run *r, lca_variant v, lca_backend b,
	lca_dtype t, int64_t T)
{
	static const int64_t n[NIN] = { DRIFT_DK, DRIFT_DK, DRIFT_DV, 1, 1 };
	lca_params p;
	lca_status s;

	memset(r, 0, sizeof *r);
	r->elt = t == LCA_F64 ? 8 : 4;
	if ((s = lca_params_init(&p, v)) != LCA_OK)
		return s;
	p.backend = b;
	p.dtype = t;
	p.H = 1;
	p.dk = DRIFT_DK;
	p.dv = DRIFT_DV;
	p.nthreads = 1;     /* one head of 16 x 16: threads only cost here */
	p.algo = LCA_ALGO_RECURRENT;
	if ((s = lca_plan_create(&p, &r->plan)) != LCA_OK ||
	    (s = lca_cache_create(r->plan, 1, T, &r->cache)) != LCA_OK)
		return s;
	for (int i = 0; i < NIN; i++)
		if (!(r->in[i] = malloc((size_t)n[i] * r->elt)))
			return LCA_ERR_NOMEM;
	if (!(r->slope = malloc(r->elt)) || !(r->o = malloc(DRIFT_DV * r->elt)))
		return LCA_ERR_NOMEM;
	if (r->elt == 8)
		*(double *)r->slope = DRIFT_SLOPE;
	else
		*(float *)r->slope = (float)DRIFT_SLOPE;
	return LCA_OK;
}

/* One token's inputs into r's typed buffers, then its step into r->o. */
static lca_status run_step(struct run *r, lca_variant v, const double *x)
{
	static const int off[NIN] = { 0, DRIFT_DK, 2 * DRIFT_DK, NROW - 2, NROW - 1 };
	static const int n[NIN] = { DRIFT_DK, DRIFT_DK, DRIFT_DV, 1, 1 };
	void *const *in = r->in;

	for (int i = 0; i < NIN; i++)
		for (int j = 0; j < n[i]; j++) {
			if (r->elt == 8)
				((double *)in[i])[j] = x[off[i] + j];
			else
				((float *)in[i])[j] = (float)x[off[i] + j];
		}
	if (v == LCA_DELTANET)
		return lca_deltanet_step(r->plan, r->cache, 1, in[0], in[1], in[2],
			in[3], in[4], NULL, r->o);
	return lca_lightning_step(r->plan, r->cache, 1, in[0], in[1], in[2],
		r->slope, NULL, r->o);
}

lca_status drift_run(lca_variant v, int64_t T, uint64_t seed, struct drift *d)
{
	struct run r32, r64;
	struct timespec t0, t1;
	double x[NROW];
	lca_status s;

	if (v != LCA_DELTANET && v != LCA_LIGHTNING)
		return LCA_ERR_UNSUPPORTED;
	memset(d, 0, sizeof *d);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((s = run_open(&r32, v, LCA_BACKEND_CPU, LCA_F32, T)) != LCA_OK ||
	    (s = run_open(&r64, v, LCA_BACKEND_REF, LCA_F64, T)) != LCA_OK)
		goto out;
	for (int64_t t = 0; t < T; t++) {
		token(v, seed, t, x);
		if ((s = run_step(&r32, v, x)) != LCA_OK ||
		    (s = run_step(&r64, v, x)) != LCA_OK)
			goto out;
		d->lastabs = 0;
		for (int j = 0; j < DRIFT_DV; j++) {
			double ref = ((double *)r64.o)[j];
			double e = fabs((double)((float *)r32.o)[j] - ref);

			d->lastabs = fmax(d->lastabs, e);
			d->maxref = fmax(d->maxref, fabs(ref));
		}
		d->maxabs = fmax(d->maxabs, d->lastabs);
	}
	d->T = T;
out:
	clock_gettime(CLOCK_MONOTONIC, &t1);
	d->seconds = (double)(t1.tv_sec - t0.tv_sec) +
		1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
	run_free(&r32);
	run_free(&r64);
	return s;
}
