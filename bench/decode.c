/*
 * decode.c - `lcattn bench --phase decode`: time per generated token
 * against the context length, through the cache API (lca_*_step), on the
 * cpu backend.
 *
 * A context of n tokens is built cheaply: softmax and mla tokens are
 * stepped into a cache of a plan with window 1, so the fill costs O(n),
 * not O(n^2), then moved by a checkpoint (lca_cache_save, lca_cache_load:
 * it carries tokens, not masks) into the cache of the causal plan, whose
 * one query per timed step reads the whole cache. (A step refuses a plan
 * whose masks differ from the cache's: lca_softmax_step(3).) deltanet and lightning keep a fixed-size state whose step cost does
 * not depend on n: it is filled by a 1024-token prefill.
 *
 * FLOPs and bytes of one step are lca_plan_cost(LCA_PHASE_DECODE, n), whose
 * formulas lca_plan_cost(3) states: bytes are the cache (K and V, or the
 * latent, or the state read and written) plus the step's own tensors.
 *
 * A deltanet or lightning step cannot beat reading and writing its state
 * once, so the same child also times that: a memcpy of the state's
 * H dk dv elements between two buffers of that size (each byte read once
 * and written once, as the step does in place), median of PASS_REPS, the
 * buffers warm as the state is between steps. The table's step/pass is
 * the step's median over the pass's median.
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILL_CHUNK 16384  /* tokens per filling step */
#define LINEAR_FILL 1024  /* prefill of the recurrent states */
#define PASS_REPS 101     /* state passes timed (median) */

struct dec_job {
	lca_variant v;
	const struct bench_shape *s;
	int64_t n;
	lca_dtype dtype;
	int reps;
};

/* Inputs of up to `rows` new tokens, drawn once and reused for every step
 * (the timing does not depend on the values; finiteness is still checked). */
struct dec_inputs {
	void *q, *k, *v, *g, *beta, *slope, *qr, *kr, *wuk, *wuv, *o, *lse;
};

static double draw(uint64_t *st)
{
	uint64_t z = (*st += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (double)((z ^ (z >> 31)) >> 11) * 0x1p-53;
}

/* n values in [lo, hi) of the dtype; NULL on allocation failure. */
static void *fill(uint64_t *st, int64_t n, lca_dtype t, double lo, double hi)
{
	size_t es = t == LCA_F64 ? 8 : 4;
	char *x = malloc((size_t)(n > 0 ? n : 1) * es);

	for (int64_t i = 0; x && i < n; i++) {
		double d = lo + (hi - lo) * draw(st);

		if (t == LCA_F64)
			((double *)x)[i] = d;
		else
			((float *)x)[i] = (float)d;
	}
	return x;
}

static int make_inputs(const struct dec_job *j, int64_t rows, struct dec_inputs *in)
{
	const struct bench_shape *s = j->s;
	uint64_t st = 12345;
	lca_dtype t = j->dtype;

	memset(in, 0, sizeof *in);
	if (j->v == LCA_MLA) {
		in->q = fill(&st, rows * s->H * s->dn, t, -1, 1);
		in->qr = fill(&st, rows * s->H * s->dr, t, -1, 1);
		in->k = fill(&st, rows * s->dc, t, -1, 1);
		in->kr = fill(&st, rows * s->dr, t, -1, 1);
		in->wuk = fill(&st, s->H * s->dn * s->dc, t, -0.05, 0.05);
		in->wuv = fill(&st, s->H * s->dv * s->dc, t, -0.05, 0.05);
	} else {
		in->q = fill(&st, rows * s->H * s->dk, t, -1, 1);
		in->k = fill(&st, rows * s->H * s->dk, t, -1, 1);
		in->v = fill(&st, rows * s->H * s->dv, t, -1, 1);
		in->g = fill(&st, rows * s->H, t, -0.1, 0);
		in->beta = fill(&st, rows * s->H, t, 0, 1);
		in->slope = fill(&st, s->H, t, 0.01, 0.5);
	}
	in->o = fill(&st, rows * s->H * s->dv, t, 0, 0);
	in->lse = fill(&st, rows * s->H, t, 0, 0);
	if (!in->q || !in->o || !in->lse)
		return -1;
	return j->v == LCA_MLA ? (in->qr && in->k && in->kr && in->wuk && in->wuv ? 0 : -1) :
		(in->k && in->v && in->g && in->beta && in->slope ? 0 : -1);
}

static void free_inputs(struct dec_inputs *in)
{
	void **p = (void **)in;

	for (size_t i = 0; i < sizeof *in / sizeof(void *); i++)
		free(p[i]);
}

/* One step of T new tokens on the cache. */
static lca_status step(const lca_plan *plan, lca_cache *c, lca_variant v,
	int64_t T, const struct dec_inputs *in)
{
	switch (v) {
	case LCA_SOFTMAX:
		return lca_softmax_step(plan, c, T, in->q, in->k, in->v, NULL, in->o, in->lse);
	case LCA_MLA:
		return lca_mla_step(plan, c, T, in->q, in->qr, in->k, in->kr, in->wuk,
			in->wuv, NULL, in->o, in->lse);
	case LCA_DELTANET:
		return lca_deltanet_step(plan, c, T, in->q, in->k, in->v, in->g, in->beta,
			NULL, in->o);
	case LCA_LIGHTNING:
		return lca_lightning_step(plan, c, T, in->q, in->k, in->v, in->slope, NULL, in->o);
	}
	return LCA_ERR_ARG;
}

static lca_status make_plan(const struct dec_job *j, int64_t window, lca_plan **plan)
{
	const struct bench_shape *s = j->s;
	lca_params p;

	lca_params_init(&p, j->v);
	p.backend = LCA_BACKEND_CPU;
	p.dtype = j->dtype;
	p.H = s->H;
	p.dk = s->dk;
	p.dv = s->dv;
	p.dn = s->dn;
	p.dr = s->dr;
	p.dc = s->dc;
	p.chunk = s->chunk;
	p.block = s->block;
	p.window = window;
	if (j->v == LCA_MLA)
		p.scale = 1.0 / sqrt((double)(s->dn + s->dr));
	return lca_plan_create(&p, plan);
}

/* Fill the cache to n - 1 tokens (softmax, mla: through a window-1 cache
 * and a checkpoint) or LINEAR_FILL tokens. */
static lca_status fill_cache(const struct dec_job *j, lca_cache *c,
	const struct dec_inputs *in, int64_t capacity)
{
	int quad = j->v == LCA_SOFTMAX || j->v == LCA_MLA;
	int64_t want = quad ? j->n - 1 : LINEAR_FILL, done = 0;
	lca_plan *fp = NULL;
	lca_cache *fc = NULL;
	void *buf = NULL;
	size_t need = 0;
	lca_status st = make_plan(j, quad ? 1 : 0, &fp);

	if (st == LCA_OK)
		st = quad ? lca_cache_create(fp, 1, capacity, &fc) : LCA_OK;
	while (st == LCA_OK && done < want) {
		int64_t t = want - done < FILL_CHUNK ? want - done : FILL_CHUNK;

		st = step(fp, quad ? fc : c, j->v, t, in);
		done += t;
	}
	if (st == LCA_OK && quad && (st = lca_cache_save(fc, NULL, 0, &need)) == LCA_OK) {
		if (!(buf = malloc(need)))
			st = LCA_ERR_NOMEM;
		else if ((st = lca_cache_save(fc, buf, need, &need)) == LCA_OK)
			st = lca_cache_load(c, buf, need);
	}
	free(buf);
	lca_cache_destroy(fc);
	lca_plan_destroy(fp);
	return st;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* What a child reports: the steps, and for deltanet and lightning the
 * state pass (0 when not timed). */
struct dec_result {
	struct bench_result r;
	double pass;
};

/* Median seconds of a memcpy of `bytes` between two warm buffers, or 0
 * when they cannot be allocated. */
static double state_pass(size_t bytes)
{
	char *a = malloc(bytes), *b = malloc(bytes);
	double t[PASS_REPS], med = 0;

	if (a && b) {
		memset(a, 1, bytes);
		memset(b, 2, bytes);
		for (int i = 0; i < PASS_REPS; i++) {
			double t0 = bench_now();

			if (i % 2)
				memcpy(a, b, bytes);
			else
				memcpy(b, a, bytes);
			t[i] = bench_now() - t0;
		}
		qsort(t, PASS_REPS, sizeof t[0], cmp_double);
		med = t[PASS_REPS / 2];
	}
	free(a);
	free(b);
	return med;
}

/* The measurement child: fill, warm up, then time single-token steps. */
static void dec_child(void *arg, void *res)
{
	const struct dec_job *j = arg;
	struct dec_result *dr = res;
	struct bench_result *r = &dr->r;
	int64_t rows = j->v == LCA_SOFTMAX || j->v == LCA_MLA ? FILL_CHUNK : LINEAR_FILL;
	struct dec_inputs in;
	lca_plan *plan = NULL;
	lca_cache *c = NULL;
	double *t = calloc((size_t)j->reps, sizeof *t);
	lca_status st;

	r->status = LCA_ERR_NOMEM;
	if (!t || make_inputs(j, rows, &in))
		goto out;
	if ((st = make_plan(j, 0, &plan)) ||
	    (st = lca_cache_create(plan, 1, j->n + j->reps + 2, &c)) ||
	    (st = fill_cache(j, c, &in, j->n + j->reps + 2)) ||
	    (st = step(plan, c, j->v, 1, &in))) {
		r->status = st;
		goto out;
	}
	for (int i = 0; i < j->reps; i++) {
		double t0 = bench_now();

		if ((st = step(plan, c, j->v, 1, &in))) {
			r->status = st;
			goto out;
		}
		t[i] = bench_now() - t0;
	}
	qsort(t, (size_t)j->reps, sizeof *t, cmp_double);
	r->status = LCA_OK;
	r->runs = j->reps;
	r->seconds = t[j->reps / 2];
	if (j->v == LCA_DELTANET || j->v == LCA_LIGHTNING)
		dr->pass = state_pass((size_t)(j->s->H * j->s->dk * j->s->dv) *
			(j->dtype == LCA_F64 ? 8 : 4));
out:
	if (r->status != LCA_OK)
		snprintf(r->msg, sizeof r->msg, "%s", lca_last_error());
	r->rss_mb = bench_peak_rss_mb();
	lca_cache_destroy(c);
	lca_plan_destroy(plan);
	free_inputs(&in);
	free(t);
}

/* Modelled cost of one step at context n, from the library's cost model. */
static int step_cost(const struct dec_job *j, lca_cost *cost)
{
	lca_plan *plan;
	int rc;

	if (make_plan(j, 0, &plan))
		return -1;
	rc = lca_plan_cost(plan, LCA_PHASE_DECODE, j->n, cost) ? -1 : 0;
	lca_plan_destroy(plan);
	return rc;
}

static const char *vname(lca_variant v)
{
	static const char *n[] = { "softmax", "mla", "deltanet", "lightning" };

	return n[v];
}

int bench_decode(const struct bench_shape *s, const int64_t *Ts, int nT,
	const lca_variant *vs, int nv, lca_dtype dtype, int reps,
	const struct bench_ceiling *c, FILE *csv)
{
	double peak = bench_peak_gflops(c, dtype == LCA_F64);
	double at[4][32] = { { 0 } };
	size_t es = dtype == LCA_F64 ? 8 : 4;

	printf("\ndecode: seconds per generated token (median of %d single-token steps), cpu %s\n",
		reps, dtype == LCA_F64 ? "f64" : "f32");
	printf("%-10s %8s %12s %12s %12s %9s %9s %10s %12s %9s\n", "mechanism", "context",
		"s/token", "GB/s", "GFLOP/s", "roofline", "rss MiB", "cache MiB",
		"state pass", "step/pass");
	for (int a = 0; a < nv; a++)
		for (int b = 0; b < nT && b < 32; b++) {
			struct dec_job j = { vs[a], s, Ts[b], dtype, reps };
			struct dec_result dr = { .r = { .status = -1 } };
			struct bench_result r;
			lca_cost cost;
			double frac;

			fprintf(stderr, "decode %s n=%lld ...\n", vname(vs[a]), (long long)Ts[b]);
			if (step_cost(&j, &cost) || bench_fork(dec_child, &j, &dr, sizeof dr, 1800) ||
			    dr.r.status != LCA_OK) {
				r = dr.r;
				printf("%-10s %8lld  n/a (%s)\n", vname(vs[a]), (long long)Ts[b],
					r.status == -1 ? "child died" : r.msg);
				continue;
			}
			r = dr.r;
			frac = fmax(cost.flops / (peak * 1e9), cost.bytes / (c->bw_gbs * 1e9)) /
				r.seconds;
			at[vs[a]][b] = r.seconds;
			printf("%-10s %8lld %12.3e %12.2f %12.2f %9.3f %9.0f %10.1f",
				vname(vs[a]), (long long)Ts[b], r.seconds, cost.bytes / r.seconds / 1e9,
				cost.flops / r.seconds / 1e9, frac, r.rss_mb,
				cost.state_bytes / 1048576.0);
			if (dr.pass > 0)
				printf(" %12.3e %9.2f\n", dr.pass, r.seconds / dr.pass);
			else
				printf(" %12s %9s\n", "-", "-");
			if (csv)
				fprintf(csv, "%s,decode,cpu,%s,%lld,%lld,%lld,%lld,%.6g,%.6g,%.6g,%.6g,%.4f,,%.1f\n",
					vname(vs[a]), dtype == LCA_F64 ? "f64" : "f32",
					(long long)Ts[b], (long long)s->H,
					(long long)(vs[a] == LCA_MLA ? s->dn + s->dr : s->dk),
					(long long)s->dv, r.seconds, cost.flops, cost.bytes,
					cost.flops / r.seconds / 1e9, frac, r.rss_mb);
		}
	/* mla against softmax at equal heads and head size: time next to cache. */
	for (int b = 0; b < nT && b < 32; b++)
		if (at[LCA_MLA][b] > 0 && at[LCA_SOFTMAX][b] > 0)
			printf("mla/softmax at n=%lld: decode time %.3f, cache bytes %.3f "
				"((dc+dr) / (H (dk+dv)) = %lld / %lld)\n", (long long)Ts[b],
				at[LCA_MLA][b] / at[LCA_SOFTMAX][b],
				(double)(s->dc + s->dr) / (double)(s->H * (s->dk + s->dv)),
				(long long)(s->dc + s->dr), (long long)(s->H * (s->dk + s->dv)));
	printf("roofline = max(flops / peak, bytes / copy bandwidth) / seconds, peak = max(%s, "
		"fma %s) = %.1f GFLOP/s; flops and bytes from lca_plan_cost(3) (LCA_PHASE_DECODE), "
		"%zu-byte elements\n", dtype == LCA_F64 ? "dgemm" : "sgemm",
		dtype == LCA_F64 ? "f64" : "f32", peak, es);
	printf("state pass = median of %d memcpy of the state's H dk dv = %lld elements "
		"(%.2f MiB: each byte read and written once) in the same child; "
		"step/pass = s/token / state pass\n", PASS_REPS,
		(long long)(s->H * s->dk * s->dv), (double)(s->H * s->dk * s->dv) * (double)es /
		1048576.0);
	return 0;
}
