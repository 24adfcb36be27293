/*
 * serve.c - `lcattn bench --phase serve`: B sequences of mixed context
 * lengths decoding together, one new token per sequence per step (T = B,
 * cu_seqlens 0, 1, ..., B), on the cpu backend with f32 plans; softmax and
 * mla from a paged pool (lca_cache_create_ex(3)) storing keys and values
 * in f32 and in bf16, deltanet and lightning from their states (f32).
 * Then the sessions-that-fit table (sessions.c).
 *
 * Lengths: lognormal, median ctx_median, log-space sigma ctx_sigma,
 * rounded, clamped to [1, ctx_max], drawn from the seed and B (the same
 * draw for every mechanism and storage).
 *
 * Filling a pool fast: a step's plan must compute the cache's numbers
 * (its window included), and a causal prefill of n tokens costs O(n^2).
 * So a first pool of the same options is filled by a plan with window 1
 * (each new token reads one key: O(n)), saved (lca_cache_save(3)) and
 * loaded into the pool of the causal plan that is timed: a checkpoint
 * holds tokens, not the numbers of a plan. Peak memory is twice the pool.
 *
 * Bytes a step must read (the roofline's bytes; stated again in the
 * output): softmax, mla: sum over the sequences of their context (tokens
 * cached, the new one included) x per-token bytes of the storage
 * (lca_plan_cache_cost(3), halved in bf16) + the weights read once (mla
 * w_uk and w_uv, H (dn + dv) dc x 4) + the step's own tensors (q, k, v
 * or their mla counterparts, o, lse: f32, B rows); deltanet, lightning:
 * every state read and written (B x 2 x H dk dv x 4) + the step's
 * tensors. Flops of a step: the sum over the sequences of
 * lca_plan_cost(3)'s LCA_PHASE_DECODE flops at their contexts, as the
 * decode phase counts one sequence. roofline_frac = max(flops / peak,
 * bytes / copy bandwidth) / seconds, with the peak and bandwidth measured
 * in this run (mla decode is bound by its flops, the others by bytes).
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILL_CHUNK 8192   /* tokens per filling step */
#define LINEAR_FILL 64    /* prefill of a recurrent state (cost independent of it) */
#define WARM 2            /* untimed steps before the timed ones */
#define MAX_B 4096

static const char *const mech_names[] = { "softmax", "mla", "deltanet", "lightning" };

struct srv_job {
	lca_variant v;
	lca_params shape;
	const int64_t *len;
	int64_t B;
	lca_dtype storage;    /* LCA_F32 or LCA_BF16 (softmax, mla) */
	int reps;
};

struct srv_result {
	int status;           /* lca_status; -1 the child died */
	double seconds;       /* median step */
	double rss_mb;
	char msg[200];
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int is_kv(lca_variant v)
{
	return v == LCA_SOFTMAX || v == LCA_MLA;
}

/* cu = 0 up to and including seq, t after it: a step of t tokens, all
 * for sequence seq. */
static void one_seq(int64_t *cu, int64_t B, int64_t seq, int64_t t)
{
	for (int64_t j = 0; j <= B; j++)
		cu[j] = j <= seq ? 0 : t;
}

/* A pool of the job's options for plan; sized to hold every sequence's
 * context plus the steps to come. */
static lca_status make_pool(const struct srv_job *j, const lca_plan *plan, lca_cache **c)
{
	int64_t pt, ps, pages = 0, cap = 0;
	lca_cache_opts o;
	lca_status s;

	if ((s = lca_plan_cache_cost(plan, &pt, &ps)) || (s = lca_cache_opts_init(plan, &o)))
		return s;
	if (j->storage == LCA_BF16)
		pt /= 2;
	for (int64_t i = 0; i < j->B; i++) {
		int64_t n = j->len[i] + WARM + j->reps;

		pages += (n + LCA_CACHE_PAGE - 1) / LCA_CACHE_PAGE;
		cap = n > cap ? n : cap;
	}
	o.nseq = j->B;
	o.capacity = cap;
	o.pool_bytes = (size_t)pages * LCA_CACHE_PAGE * (size_t)pt;
	o.storage = j->storage;
	return lca_cache_create_ex(plan, &o, c);
}

/* Fill a pool through a window-1 plan, then hand its tokens to a pool of
 * the timed plan through a checkpoint (see the file comment). */
static lca_status fill_kv(const struct srv_job *j, const lca_plan *plan,
	const struct serve_in *in, lca_cache **out)
{
	lca_plan *fp = NULL;
	lca_cache *a = NULL;
	int64_t *cu = malloc((size_t)(j->B + 1) * sizeof *cu);
	void *buf = NULL;
	size_t need = 0;
	lca_status s = cu ? serve_plan(j->v, &j->shape, 1, &fp) : LCA_ERR_NOMEM;

	if (s == LCA_OK)
		s = make_pool(j, fp, &a);
	for (int64_t i = 0; s == LCA_OK && i < j->B; i++)
		for (int64_t done = 0; s == LCA_OK && done < j->len[i]; done += FILL_CHUNK) {
			int64_t t = j->len[i] - done < FILL_CHUNK ? j->len[i] - done : FILL_CHUNK;

			one_seq(cu, j->B, i, t);
			s = serve_step(fp, a, j->v, t, in, cu);
		}
	if (s == LCA_OK)
		s = lca_cache_save(a, NULL, 0, &need);
	if (s == LCA_OK && !(buf = malloc(need ? need : 1)))
		s = LCA_ERR_NOMEM;
	if (s == LCA_OK)
		s = lca_cache_save(a, buf, need, &need);
	lca_cache_destroy(a);
	if (s == LCA_OK)
		s = make_pool(j, plan, out);
	if (s == LCA_OK && (s = lca_cache_load(*out, buf, need)) != LCA_OK) {
		lca_cache_destroy(*out);
		*out = NULL;
	}
	free(buf);
	free(cu);
	lca_plan_destroy(fp);
	return s;
}

/* Recurrent states: a short prefill of every sequence at once. */
static lca_status fill_linear(const struct srv_job *j, const lca_plan *plan,
	const struct serve_in *in, lca_cache **c)
{
	int64_t *cu = malloc((size_t)(j->B + 1) * sizeof *cu);
	lca_status s = cu ? lca_cache_create(plan, j->B, LINEAR_FILL + WARM + j->reps, c) :
		LCA_ERR_NOMEM;

	for (int64_t i = 0; cu && i <= j->B; i++)
		cu[i] = i * LINEAR_FILL;
	if (s == LCA_OK)
		s = serve_step(plan, *c, j->v, j->B * LINEAR_FILL, in, cu);
	free(cu);
	return s;
}

/* Rows of the fill's inputs: the longest sequence, at most FILL_CHUNK. */
static int64_t max_len(const struct srv_job *j)
{
	int64_t m = 1;

	for (int64_t i = 0; i < j->B; i++)
		m = j->len[i] > m ? j->len[i] : m;
	return m < FILL_CHUNK ? m : FILL_CHUNK;
}

/* The measurement child: fill, warm up, time single-token steps. */
static void srv_child(void *arg, void *res)
{
	const struct srv_job *j = arg;
	struct srv_result *r = res;
	int64_t rows = is_kv(j->v) ? max_len(j) : j->B * LINEAR_FILL;
	int64_t *cu = malloc((size_t)(j->B + 1) * sizeof *cu);
	double *t = calloc((size_t)j->reps, sizeof *t);
	struct serve_in in;
	lca_plan *plan = NULL;
	lca_cache *c = NULL;
	lca_status s = LCA_ERR_NOMEM;

	memset(&in, 0, sizeof in);
	if (!cu || !t || serve_inputs(j->v, &j->shape, rows < j->B ? j->B : rows, 11, &in))
		goto out;
	for (int64_t i = 0; i <= j->B; i++)
		cu[i] = i;
	if ((s = serve_plan(j->v, &j->shape, 0, &plan)) ||
	    (s = is_kv(j->v) ? fill_kv(j, plan, &in, &c) : fill_linear(j, plan, &in, &c)))
		goto out;
	for (int i = 0; i < WARM + j->reps; i++) {
		double t0 = bench_now();

		if ((s = serve_step(plan, c, j->v, j->B, &in, cu)))
			goto out;
		if (i >= WARM)
			t[i - WARM] = bench_now() - t0;
	}
	qsort(t, (size_t)j->reps, sizeof *t, cmp_double);
	r->seconds = t[j->reps / 2];
out:
	r->status = s;
	if (s != LCA_OK)
		snprintf(r->msg, sizeof r->msg, "%s", lca_last_error());
	r->rss_mb = bench_peak_rss_mb();
	lca_cache_destroy(c);
	lca_plan_destroy(plan);
	serve_inputs_free(&in);
	free(cu);
	free(t);
}

/* Bytes of the step's own tensors per sequence (f32), and the weights. */
static double io_bytes(lca_variant v, const lca_params *p, double *weights)
{
	int64_t H = p->H, Hkv = p->Hkv ? p->Hkv : H, Hk = p->Hk ? p->Hk : H;

	*weights = 0;
	switch (v) {
	case LCA_SOFTMAX:
		return 4.0 * (double)(H * p->dk + Hkv * (p->dk + p->dv) + H * p->dv + H);
	case LCA_MLA:
		*weights = 4.0 * (double)(H * (p->dn + p->dv) * p->dc);
		return 4.0 * (double)(H * (p->dn + p->dr) + p->dc + p->dr + H * p->dv + H);
	case LCA_DELTANET:
		return 4.0 * (double)(2 * Hk * p->dk + 2 * H * p->dv + 2 * H);
	case LCA_LIGHTNING:
		*weights = 4.0 * (double)H;
		return 4.0 * (double)(2 * H * p->dk + 2 * H * p->dv);
	}
	return 0;
}

/* The roofline's bytes and flops of one step at the contexts of the first
 * timed step. */
static double step_bytes(const struct srv_job *j, int64_t *tokens, double *flops)
{
	lca_plan *pl = NULL;
	int64_t pt = 0, ps = 0;
	double w, io = io_bytes(j->v, &j->shape, &w), bytes = w + io * (double)j->B;

	*tokens = 0;
	*flops = 0;
	if (serve_plan(j->v, &j->shape, 0, &pl) || lca_plan_cache_cost(pl, &pt, &ps)) {
		lca_plan_destroy(pl);
		*flops = NAN;
		return NAN;
	}
	for (int64_t i = 0; i < j->B; i++) {
		lca_cost cost;

		*tokens += j->len[i] + WARM + 1;
		if (lca_plan_cost(pl, LCA_PHASE_DECODE, j->len[i] + WARM + 1, &cost))
			*flops = NAN;
		else
			*flops += cost.flops;
	}
	lca_plan_destroy(pl);
	if (is_kv(j->v))
		return bytes + (double)*tokens * (double)(j->storage == LCA_BF16 ? pt / 2 : pt);
	return bytes + 2.0 * (double)ps * (double)j->B;
}

/* Lognormal lengths (Box-Muller), clamped to [1, max]. */
static void draw_lengths(const struct serve_opts *o, int64_t B, int64_t *len)
{
	uint64_t st = o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)B;

	for (int64_t i = 0; i < B; i++) {
		double u1 = serve_uniform(&st), u2 = serve_uniform(&st);
		double z = sqrt(-2 * log(1 - u1)) * cos(6.283185307179586 * u2);
		double x = floor((double)o->ctx_median * exp(o->ctx_sigma * z) + 0.5);

		len[i] = x < 1 ? 1 : x > (double)o->ctx_max ? o->ctx_max : (int64_t)x;
	}
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static void print_lengths(const char *what, const int64_t *len, int64_t B)
{
	int64_t *s = malloc((size_t)B * sizeof *s), total = 0;

	if (!s)
		return;
	memcpy(s, len, (size_t)B * sizeof *s);
	qsort(s, (size_t)B, sizeof *s, cmp_i64);
	for (int64_t i = 0; i < B; i++)
		total += s[i];
	printf("B=%lld %s: min %lld, median %lld, max %lld, total %lld tokens\n", (long long)B,
		what, (long long)s[0], (long long)s[B / 2], (long long)s[B - 1], (long long)total);
	free(s);
}

static lca_params shape_of(lca_variant v, const struct bench_shape *s)
{
	if (v == LCA_MLA)
		return (lca_params){ .H = s->H, .dn = s->dn, .dr = s->dr, .dc = s->dc, .dv = s->dv };
	return (lca_params){ .H = s->H, .Hkv = s->H, .Hk = s->H, .dk = s->dk, .dv = s->dv };
}

/* One batch (lengths len) of every selected mechanism and storage; the
 * rows printed as they come. Returns the number of failed rows. */
static int run_batch(const struct bench_shape *s, const struct serve_opts *o,
	const struct bench_ceiling *c, const int64_t *len, int64_t B)
{
	int failed = 0;

	for (int m = 0; m < 4; m++) {
		double tps[2] = { 0, 0 };

		for (int k = 0; o->mech[m] && k < (is_kv((lca_variant)m) ? 2 : 1); k++) {
			struct srv_job j = { (lca_variant)m, shape_of((lca_variant)m, s), len, B,
				k ? LCA_BF16 : LCA_F32, o->reps };
			struct srv_result r = { .status = -1 };
			int64_t tokens;
			double flops, bytes = step_bytes(&j, &tokens, &flops), t0 = bench_now();
			double peak = bench_peak_gflops(c, 0) * 1e9;

			fprintf(stderr, "serve %s B=%lld %s (%lld tokens, pool ~%.0f MiB, twice that "
				"at peak) ...", mech_names[m], (long long)B, k ? "bf16" : "f32",
				(long long)tokens, bytes / 1048576);
			if (bench_fork(srv_child, &j, &r, sizeof r, 3600) || r.status != LCA_OK) {
				fprintf(stderr, " failed\n");
				printf("%-9s %5lld %-7s %10lld  n/a (%s)\n", mech_names[m], (long long)B,
					k ? "bf16" : "f32", (long long)tokens,
					r.status == -1 ? "child died" : r.msg);
				failed++;
				continue;
			}
			fprintf(stderr, " %.1f s\n", bench_now() - t0);
			tps[k] = (double)B / r.seconds;
			printf("%-9s %5lld %-7s %10lld %10.4g %11.4g %11.4g %8.3g %8.3g %9.3g %8.0f",
				mech_names[m], (long long)B, is_kv((lca_variant)m) ? (k ? "bf16" : "f32") :
				"state", (long long)tokens, bytes / 1048576, r.seconds, tps[k],
				bytes / r.seconds / 1e9, flops / r.seconds / 1e9,
				fmax(flops / peak, bytes / (c->bw_gbs * 1e9)) / r.seconds, r.rss_mb);
			if (k == 1 && tps[0] > 0)
				printf(" %9.3f", tps[1] / tps[0]);
			printf("\n");
			fflush(stdout);
		}
	}
	return failed;
}

int bench_serve(const struct bench_shape *s, const struct serve_opts *o,
	const struct bench_ceiling *c)
{
	int64_t *len = malloc(MAX_B * sizeof *len);
	struct fit_row rows[64];
	int failed = 0, nrows;

	if (!len)
		return 1;
	printf("\nserve: B sequences decode together, one new token each per step (T = B, "
		"cu_seqlens 0..B), cpu backend, f32 plans; seconds = median of %d steps after %d "
		"warm-up steps\n", o->reps, WARM);
	printf("shapes: softmax H %lld Hkv %lld dk %lld dv %lld; mla H %lld dn %lld dr %lld "
		"dc %lld dv %lld; deltanet, lightning H %lld dk %lld dv %lld\n",
		(long long)s->H, (long long)s->H, (long long)s->dk, (long long)s->dv,
		(long long)s->H, (long long)s->dn, (long long)s->dr, (long long)s->dc,
		(long long)s->dv, (long long)s->H, (long long)s->dk, (long long)s->dv);
	printf("softmax, mla: a paged pool (LCA_CACHE_PAGE = %d tokens) sized to fit, keys and "
		"values stored in f32 or bf16; filled through a window-1 plan and a checkpoint "
		"(bench/serve.c says why)\n", LCA_CACHE_PAGE);
	printf("bytes a step must read = sum over sequences of context x per-token bytes of "
		"the storage (softmax Hkv (dk + dv), mla dc + dr elements: lca_plan_cache_cost(3)) "
		"+ weights read once (mla w_uk, w_uv: H (dn + dv) dc x 4) + the step's tensors "
		"(q, k, v, o, lse, f32); deltanet, lightning: B x 2 x H dk dv x 4 (each state read "
		"and written) + the step's tensors\n");
	printf("flops of a step = sum over sequences of lca_plan_cost(3)'s LCA_PHASE_DECODE "
		"flops at their context\n");
	printf("tokens/s = B / seconds; roofline = max(flops / peak, bytes / copy bandwidth) "
		"/ seconds (peak = max(sgemm, fma) = %.1f GFLOP/s, copy %.1f GB/s, measured at "
		"start; above 1 where the bytes fit in the CPU's caches, as small states do); "
		"bf16/f32 = tokens/s ratio; deltanet and lightning rows show the batch's "
		"context, which their states' size does not depend on (filled with %d "
		"tokens)\n", bench_peak_gflops(c, 0), c->bw_gbs, LINEAR_FILL);
	printf("cpu isa: %s (lca_cpu_isa(3))\n\n", lca_cpu_isa());
	for (int b = 0; b < o->nB; b++) {
		draw_lengths(o, o->B[b], len);
		print_lengths("mixed lengths", len, o->B[b]);
	}
	printf("lengths: lognormal, median %lld, sigma %.2f (log space), clamped to [1, %lld], "
		"seed %llu; context = length + %d at the first timed step\n\n",
		(long long)o->ctx_median, o->ctx_sigma, (long long)o->ctx_max,
		(unsigned long long)o->seed, WARM + 1);
	printf("%-9s %5s %-7s %10s %10s %11s %11s %8s %8s %9s %8s %9s\n", "mechanism", "B",
		"storage", "context", "MiB read", "s/step", "tokens/s", "GB/s", "GFLOP/s",
		"roofline", "rss MiB", "bf16/f32");
	for (int b = 0; b < o->nB; b++) {
		draw_lengths(o, o->B[b], len);
		failed += run_batch(s, o, c, len, o->B[b]);
	}
	if (o->long_ctx > 0 && o->long_B > 0 && o->long_B <= MAX_B) {
		for (int64_t i = 0; i < o->long_B; i++)
			len[i] = o->long_ctx;
		printf("B=%lld every sequence at %lld tokens:\n", (long long)o->long_B,
			(long long)o->long_ctx);
		failed += run_batch(s, o, c, len, o->long_B);
	}
	free(len);
	fprintf(stderr, "serve: sessions that fit ...\n");
	nrows = bench_fit_rows(s, o->budget, o->fit_ctx, o->nfit, 1, rows, 64);
	if (nrows < 0) {
		printf("sessions that fit: n/a (%s)\n", lca_last_error());
		return 1;
	}
	bench_fit_print(stdout, 0, o->budget, rows, nrows);
	for (int i = 0; i < nrows; i++)
		failed += rows[i].meas[0] < 0 || rows[i].meas[1] < 0;
	return failed ? 1 : 0;
}
