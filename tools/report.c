/*
 * report.c - `lcattn report`: the architecture comparison in one file.
 *
 * Measured here: the machine's ceilings (bench/ceiling.c), prefill and
 * decode of one layer of each mechanism and of 8-layer hybrid stacks run
 * end to end (bench/stack.c) at a reduced width on the cpu backend, the
 * probes of
 * lcattn-probes(7) on small shapes (gradient flow included: the training
 * signal section), and the agreement of every available backend with the
 * double reference on a small random case. Modelled: the
 * FLOPs and bytes of lca_plan_cost(3) and the presets of `lcattn cost`.
 * Every table says which.
 */
#include "lcattn.h"
#include "tool.h"
#include "gradflow.h"
#include "../bench/bench.h"
#include "../bench/drift.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { MAXT = 8, NMECH = 4, NSCHED = 4, WARM = 2, MAXSTEPS = 64, GF_MAX = 8, GF_ND = 4 };

static const char *const mech[NMECH] = { "softmax", "mla", "deltanet", "lightning" };

struct opts {
	const char *out;
	int quick, longer;
	int64_t T[MAXT];
	int nT, decode_steps;
};

/* One layer's tensors in call order, output last; per-token sizes (0 for
 * weights and slopes, which have `fixed` elements). */
struct tspec {
	int64_t per_tok, fixed;
	double lo, hi;
	int slope;
};

static int tspecs(lca_variant v, const lca_params *s, struct tspec *t)
{
	double w = s->dc > 0 ? 1 / sqrt((double)s->dc) : 1;
	int64_t Hkv = s->Hkv ? s->Hkv : s->H, Hk = s->Hk ? s->Hk : s->H;

	switch (v) {
	case LCA_SOFTMAX:
		t[0] = (struct tspec){ s->H * s->dk, 0, -1, 1, 0 };
		t[1] = (struct tspec){ Hkv * s->dk, 0, -1, 1, 0 };
		t[2] = (struct tspec){ Hkv * s->dv, 0, -1, 1, 0 };
		t[3] = (struct tspec){ s->H * s->dv, 0, 0, 0, 0 };
		return 4;
	case LCA_MLA:
		t[0] = (struct tspec){ s->H * s->dn, 0, -1, 1, 0 };
		t[1] = (struct tspec){ s->H * s->dr, 0, -1, 1, 0 };
		t[2] = (struct tspec){ s->dc, 0, -1, 1, 0 };
		t[3] = (struct tspec){ s->dr, 0, -1, 1, 0 };
		t[4] = (struct tspec){ 0, s->H * s->dn * s->dc, -w, w, 0 };
		t[5] = (struct tspec){ 0, s->H * s->dv * s->dc, -w, w, 0 };
		t[6] = (struct tspec){ s->H * s->dv, 0, 0, 0, 0 };
		return 7;
	case LCA_DELTANET:
		t[0] = (struct tspec){ Hk * s->dk, 0, -1, 1, 0 };
		t[1] = (struct tspec){ Hk * s->dk, 0, -1, 1, 0 };
		t[2] = (struct tspec){ s->H * s->dv, 0, -1, 1, 0 };
		t[3] = (struct tspec){ s->H, 0, -0.1, 0, 0 };
		t[4] = (struct tspec){ s->H, 0, 0, 1, 0 };
		t[5] = (struct tspec){ s->H * s->dv, 0, 0, 0, 0 };
		return 6;
	case LCA_LIGHTNING:
		t[0] = (struct tspec){ s->H * s->dk, 0, -1, 1, 0 };
		t[1] = (struct tspec){ s->H * s->dk, 0, -1, 1, 0 };
		t[2] = (struct tspec){ s->H * s->dv, 0, -1, 1, 0 };
		t[3] = (struct tspec){ 0, s->H, 0, 0, 1 };
		t[4] = (struct tspec){ s->H * s->dv, 0, 0, 0, 0 };
		return 5;
	}
	return 0;
}

static double rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (double)(z >> 11) * 0x1p-53;
}

/* Host tensors (double) for T tokens; b[i] NULL-terminated on failure. */
static int make_inputs(lca_variant v, const lca_params *s, int64_t T,
	uint64_t seed, double **b, int64_t *n)
{
	struct tspec t[8];
	int nt = tspecs(v, s, t);

	for (int i = 0; i < nt; i++) {
		n[i] = t[i].per_tok ? t[i].per_tok * T : t[i].fixed;
		if (!(b[i] = calloc((size_t)n[i], sizeof(double))))
			return -1;
		if (t[i].slope && lca_minimax_slopes(s->H, 0, 8, b[i]))
			return -1;
		if (i < nt - 1 && !t[i].slope)
			for (int64_t j = 0; j < n[i]; j++)
				b[i][j] = t[i].lo + (t[i].hi - t[i].lo) * rnd(&seed);
	}
	return nt;
}

/* One call: a forward over T tokens, or a step of T tokens into cache
 * (token offset `at` into the per-token tensors). */
static lca_status call(const lca_plan *pl, lca_variant v, lca_cache *cache,
	int64_t T, void *const *b)
{
	switch (v) {
	case LCA_SOFTMAX:
		return cache ? lca_softmax_step(pl, cache, T, b[0], b[1], b[2], NULL, b[3], NULL) :
			lca_softmax_forward(pl, T, T, b[0], b[1], b[2], NULL, 0, b[3], NULL);
	case LCA_MLA:
		return cache ? lca_mla_step(pl, cache, T, b[0], b[1], b[2], b[3], b[4], b[5],
				NULL, b[6], NULL) :
			lca_mla_forward(pl, T, T, b[0], b[1], b[2], b[3], b[4], b[5], NULL, 0,
				b[6], NULL);
	case LCA_DELTANET:
		return cache ? lca_deltanet_step(pl, cache, T, b[0], b[1], b[2], b[3], b[4],
				NULL, b[5]) :
			lca_deltanet_forward(pl, T, b[0], b[1], b[2], b[3], b[4], NULL, 0, NULL,
				b[5], NULL);
	case LCA_LIGHTNING:
		return cache ? lca_lightning_step(pl, cache, T, b[0], b[1], b[2], b[3], NULL, b[4]) :
			lca_lightning_forward(pl, T, b[0], b[1], b[2], b[3], NULL, 0, NULL,
				b[4], NULL);
	}
	return LCA_ERR_ARG;
}

static void free_all(void **b, int n)
{
	for (int i = 0; i < n; i++)
		free(b[i]);
}

/* ---- measured: one layer on the cpu backend ----------------------------- */

struct timing {
	double prefill_s, decode_s;      /* measured */
	int ok;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Prefill of T tokens in one step, then `steps` single-token decode steps
 * (median), f32 on the cpu backend. */
static void time_layer(lca_variant v, const lca_params *s, int64_t T, int steps,
	struct timing *r)
{
	struct tspec ts[8];
	double *d[8] = { 0 }, dt[MAXSTEPS], t0;
	void *f[8] = { 0 }, *at[8];
	int64_t n[8];
	int nt = make_inputs(v, s, T + steps + WARM, 7 + (uint64_t)T, d, n);
	lca_plan *pl = NULL;
	lca_cache *c = NULL;

	memset(r, 0, sizeof *r);
	tspecs(v, s, ts);
	for (int i = 0; i < nt; i++) {
		if (!(f[i] = malloc((size_t)n[i] * sizeof(float))))
			goto out;
		for (int64_t j = 0; j < n[i]; j++)
			((float *)f[i])[j] = (float)d[i][j];
	}
	if (nt < 1 || tool_shape_plan(v, s, LCA_BACKEND_CPU, LCA_F32, &pl) ||
	    lca_cache_create(pl, 1, T + steps + WARM, &c))
		goto out;
	t0 = bench_now();
	if (call(pl, v, c, T, f))
		goto out;
	r->prefill_s = bench_now() - t0;
	/* two untimed steps first: the first single-token call after a prefill
	 * pays for thread pools switching between BLAS and OpenMP */
	for (int j = 0; j < steps + WARM; j++) {
		for (int i = 0; i < nt; i++)
			at[i] = (char *)f[i] + (size_t)(ts[i].per_tok * (T + j)) * sizeof(float);
		t0 = bench_now();
		if (call(pl, v, c, 1, at))
			goto out;
		if (j >= WARM)
			dt[j - WARM] = bench_now() - t0;
	}
	qsort(dt, (size_t)steps, sizeof *dt, cmp_double);
	r->decode_s = dt[steps / 2];
	r->ok = 1;
out:
	lca_cache_destroy(c);
	lca_plan_destroy(pl);
	free_all((void **)d, nt);
	free_all(f, nt);
}

/* The reduced width of the measured layers and stacks: H = 8, d = 128. */
static lca_params reduced(lca_variant v)
{
	lca_params s = { .H = 8, .Hkv = 8, .Hk = 8, .dk = 128, .dv = 128 };

	if (v == LCA_MLA)
		s.dn = 128, s.dr = 64, s.dc = 512;
	return s;
}

/* The same for bench_stack_run(), chunk and block the plans' defaults. */
static const struct bench_shape stack_shape = {
	.H = 8, .dk = 128, .dv = 128, .dn = 128, .dr = 64, .dc = 512, .chunk = 64, .block = 256
};

/* ---- measured: agreement with the double reference ------------------------ */

struct agree {
	const char *backend, *dtype;
	double err, bound;
	int ran;
	char why[120];
};

static lca_params small(lca_variant v)
{
	lca_params s = { .H = 2, .Hkv = 1, .Hk = 1, .dk = 16, .dv = 16 };

	if (v == LCA_MLA)
		s.dn = 16, s.dr = 8, s.dc = 32;
	return s;
}

/* Run the small case of v through backend/dtype; out receives o (double). */
static lca_status run_small(lca_variant v, lca_backend be, lca_dtype dt,
	double *const *in, const int64_t *n, int nt, int64_t T, double *out,
	char *why, size_t wl)
{
	lca_params s = small(v), p;
	size_t es = dt == LCA_F64 ? 8 : 4;
	void *h[8] = { 0 }, *dv[8] = { 0 };
	lca_plan *pl = NULL;
	lca_status st;

	st = tool_shape_plan(v, &s, be, dt, &pl);
	if (st == LCA_OK && v >= LCA_DELTANET) {  /* two chunks or blocks and a tail */
		lca_plan_params(pl, &p);
		p.chunk = 16, p.block = 16;
		lca_plan_destroy(pl), pl = NULL;
		st = lca_plan_create(&p, &pl);
	}
	for (int i = 0; i < nt && st == LCA_OK; i++) {
		if (!(h[i] = malloc((size_t)n[i] * es)) ||
		    (st = lca_buffer_alloc(be, (size_t)n[i] * es, &dv[i])) != LCA_OK) {
			st = st ? st : LCA_ERR_NOMEM;
			break;
		}
		for (int64_t j = 0; j < n[i]; j++)
			if (dt == LCA_F64)
				((double *)h[i])[j] = in[i][j];
			else
				((float *)h[i])[j] = (float)in[i][j];
		st = lca_buffer_copy(be, dv[i], h[i], (size_t)n[i] * es, LCA_COPY_HOST_TO_DEVICE);
	}
	if (st == LCA_OK)
		st = call(pl, v, NULL, T, dv);
	if (st == LCA_OK)
		st = lca_buffer_copy(be, h[nt - 1], dv[nt - 1], (size_t)n[nt - 1] * es,
			LCA_COPY_DEVICE_TO_HOST);
	if (st == LCA_OK)
		for (int64_t j = 0; j < n[nt - 1]; j++)
			out[j] = dt == LCA_F64 ? ((double *)h[nt - 1])[j] : ((float *)h[nt - 1])[j];
	else
		snprintf(why, wl, "%s", lca_last_error());
	for (int i = 0; i < nt; i++)
		lca_buffer_free(be, dv[i]), free(h[i]);
	lca_plan_destroy(pl);
	return st;
}

/* Every backend and dtype against ref f64 on one small case of v. The
 * f32 bound is the tolerance rule's: 2 x the reference run in float32,
 * floored at 1e-6; f64 paths 1e-12. */
static int agreement(lca_variant v, struct agree *a)
{
	static const struct { lca_backend be; lca_dtype dt; const char *b, *d; } runs[] = {
		{ LCA_BACKEND_REF, LCA_F32, "ref", "f32" },
		{ LCA_BACKEND_CPU, LCA_F64, "cpu", "f64" },
		{ LCA_BACKEND_CPU, LCA_F32, "cpu", "f32" },
		{ LCA_BACKEND_CUDA, LCA_F32, "cuda", "f32" },
	};
	const int64_t T = 40;
	lca_params s = small(v);
	double *in[8] = { 0 }, *ref = NULL, *o = NULL, e32 = 0;
	int64_t n[8];
	int nt = make_inputs(v, &s, T, 99, in, n), k = 0;

	if (nt < 1 || !(ref = malloc((size_t)n[nt - 1] * sizeof *ref)) ||
	    !(o = malloc((size_t)n[nt - 1] * sizeof *o)) ||
	    run_small(v, LCA_BACKEND_REF, LCA_F64, in, n, nt, T, ref, a[0].why, sizeof a[0].why)) {
		free_all((void **)in, nt > 0 ? nt : 0), free(ref), free(o);
		return -1;
	}
	for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++, k++) {
		double mx;
		int64_t mm;

		a[k] = (struct agree){ runs[r].b, runs[r].d, NAN, 0, 0, "" };
		if (!lca_backend_available(runs[r].be)) {
			snprintf(a[k].why, sizeof a[k].why, "not available here");
			continue;
		}
		if (run_small(v, runs[r].be, runs[r].dt, in, n, nt, T, o, a[k].why, sizeof a[k].why))
			continue;
		a[k].ran = 1;
		a[k].err = tool_normwise(o, ref, n[nt - 1], &mx, &mm);
		if (r == 0)
			e32 = a[k].err;
		a[k].bound = runs[r].dt == LCA_F64 ? 1e-12 : fmax(2 * e32, 1e-6);
	}
	free_all((void **)in, nt), free(ref), free(o);
	return k;
}

/* ---- measured: the probes (lcattn-probes(7)) on small shapes ------------- */

struct probes {
	double retrieval, overwrite, dilution, position;  /* NAN: not defined */
};

/* Mean retrieval error of T random unit keys (rho 0), mean DeltaNet
 * overwrite, median lightning dilution, and the order sensitivity at
 * distance 1 (RoPE on for softmax and mla), dk = dv = 64, probe defaults
 * otherwise (lightning slope 0, deltanet beta 1 and g 0, mla dc = dk). */
static int run_probes(lca_variant v, int64_t T, struct probes *pr)
{
	const int64_t dk = 64, dist = 1;
	double *k = malloc((size_t)(T + 1) * dk * sizeof *k);
	double *vv = malloc((size_t)(T + 1) * dk * sizeof *vv);
	double *x = malloc((size_t)T * sizeof *x), sens = NAN;
	lca_probe_params pp;
	lca_probe_seq sq = { T, k, vv, NULL, NULL, NULL };
	int rc = -1;

	*pr = (struct probes){ NAN, NAN, NAN, NAN };
	if (!k || !vv || !x || lca_probe_params_init(&pp, v))
		goto out;
	pp.dk = pp.dv = dk;
	if (lca_probe_draw(T + 1, dk, dk, 0, 1, k, vv) || lca_probe_retrieval(&pp, &sq, x))
		goto out;
	pr->retrieval = 0;
	for (int64_t i = 0; i < T; i++)
		pr->retrieval += x[i] / (double)T;
	if (v == LCA_DELTANET && !lca_probe_overwrite(&pp, &sq, x, NULL, NULL, NULL)) {
		pr->overwrite = 0;
		for (int64_t i = 0; i < T; i++)
			pr->overwrite += x[i] / (double)T;
	}
	if (v == LCA_LIGHTNING && !lca_probe_dilution(&pp, &sq, x)) {
		qsort(x, (size_t)T, sizeof *x, cmp_double);
		pr->dilution = x[T / 2];
	}
	if (v <= LCA_MLA)
		pp.rope_dim = LCA_ROPE_FULL;
	if (v == LCA_MLA)
		pp.dr = dk / 8 * 2;
	sq.q = k + T * dk;
	if (!lca_probe_position(&pp, &sq, 1, &dist, &sens))
		pr->position = sens;
	rc = 0;
out:
	free(k), free(vv), free(x);
	return rc;
}

/* ---- the report ----------------------------------------------------------- */

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "lcattn report: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

/* A mechanism at production width (the preset it comes from) and its
 * multi-head softmax of the same heads and head sizes. */
static lca_params production(lca_variant v, lca_params *mha)
{
	const struct tool_preset *p = &tool_presets[v == LCA_MLA ? 0 : v == LCA_DELTANET ? 2 : 4];
	lca_params s = v == LCA_SOFTMAX ? p->softmax : v == LCA_MLA ? p->mla :
		v == LCA_DELTANET ? p->deltanet : p->lightning;

	*mha = (lca_params){ .H = s.H, .Hkv = s.H, .dv = s.dv,
		.dk = v == LCA_MLA ? s.dn + s.dr : s.dk };
	return s;
}

static const char *const stored[NMECH] = {
	"K and V of every token", "latent dc + dr per token",
	"one dk x dv state per value head", "one dk x dv state per head"
};

static double layer_cost(lca_variant v, const lca_params *s, lca_phase ph,
	int64_t n, int bytes)
{
	lca_plan *pl = NULL;
	lca_cost c = { NAN, NAN, NAN };

	if (!tool_shape_plan(v, s, LCA_BACKEND_REF, LCA_F64, &pl))
		lca_plan_cost(pl, ph, n, &c);
	lca_plan_destroy(pl);
	return bytes ? c.state_bytes / 4 : c.flops;  /* bf16: 2 of the f64 plan's 8 bytes */
}

static void fmt_err(char *b, size_t n, double x)
{
	if (isnan(x))
		snprintf(b, n, "-");
	else
		snprintf(b, n, "%.2g", x);
}

struct results {
	struct timing t[NMECH];          /* one layer at the last T */
	struct bench_stack st[NSCHED][MAXT];
	struct probes pr[NMECH];
	struct agree ag[NMECH][4];
	int nag[NMECH];
	struct bench_ceiling ceil;
	int have_ceil;
	struct drift drift[2];           /* deltanet, lightning */
	lca_status drift_status[2];
	/* gradient flow at distances 1, 10, 100, 1000 (NaN beyond T - 1) */
	int64_t gf_T, gf_seeds;
	double gf_v[GF_MAX][GF_ND], gf_k[GF_MAX][GF_ND];
	lca_status gf_status[GF_MAX];
};

static void mech_table(FILE *f, FILE *csv, const struct opts *o, const struct results *r)
{
	int last = o->nT - 1;
	int64_t Tl = o->T[last];

	fprintf(f, "## Per mechanism\n\n"
		"Stored bytes and FLOPs are **modelled** (lca_plan_cost(3)) at production width "
		"(softmax: a MiniMax-M1 softmax layer, 64 q / 8 kv heads of 128; mla: DeepSeek-V3; "
		"deltanet: Qwen3-Next; lightning: MiniMax-M1), one layer, bf16 (2 bytes an element); "
		"FLOPs are per generated token at context n relative to multi-head softmax of the same "
		"heads and head sizes. Speeds are **measured** here at reduced width (H 8, d 128; mla "
		"dn 128, dr 64, dc 512) on the cpu backend, f32, T = %lld. Probe numbers are **measured** "
		"on the double reference (T %d, dk = dv = 64, random unit keys): retrieval error "
		"(mean, 0 exact, 1 nothing), overwrite loss (deltanet, mean), dilution (lightning, median "
		"crosstalk/signal), positional sensitivity (order swap at distance 1; RoPE on for "
		"softmax and mla). Agreement: worst normwise error of the other backends against the "
		"double reference (**measured**, table below).\n\n", (long long)Tl, o->quick ? 32 : 64);
	fprintf(f, "| mechanism | stored between tokens | bytes at 1M (modelled) | FLOPs at 100K vs softmax "
		"(modelled) | FLOPs at 1M vs softmax (modelled) | prefill tok/s (measured) "
		"| decode tok/s (measured) | retrieval error | overwrite loss | dilution "
		"| positional sensitivity | worst backend error |\n"
		"|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	fprintf(csv, "mechanism,state_bytes_1M,flops_rel_100K,flops_rel_1M,prefill_tok_s,decode_tok_s,"
		"retrieval,overwrite,dilution,position,worst_backend_error\n");
	for (int v = 0; v < NMECH; v++) {
		lca_params mha, s = production((lca_variant)v, &mha);
		double by = layer_cost((lca_variant)v, &s, LCA_PHASE_DECODE, 1048576, 1);
		double r100 = layer_cost((lca_variant)v, &s, LCA_PHASE_DECODE, 100000, 0) /
			layer_cost(LCA_SOFTMAX, &mha, LCA_PHASE_DECODE, 100000, 0);
		double r1m = layer_cost((lca_variant)v, &s, LCA_PHASE_DECODE, 1048576, 0) /
			layer_cost(LCA_SOFTMAX, &mha, LCA_PHASE_DECODE, 1048576, 0);
		const struct timing *t = &r->t[v];
		double pf = t->ok ? Tl / t->prefill_s : NAN, dc = t->ok ? 1 / t->decode_s : NAN;
		double worst = NAN;
		char e[4][32];

		for (int k = 0; k < r->nag[v]; k++)
			if (r->ag[v][k].ran && !(r->ag[v][k].err <= worst))
				worst = r->ag[v][k].err;
		fmt_err(e[0], 32, r->pr[v].retrieval), fmt_err(e[1], 32, r->pr[v].overwrite);
		fmt_err(e[2], 32, r->pr[v].dilution), fmt_err(e[3], 32, r->pr[v].position);
		fprintf(f, "| %s | %s | %.3g MiB | %.3g | %.3g | %.0f | %.0f | %s | %s | %s | %s | %.1e |\n",
			mech[v], stored[v], by / 1048576, r100, r1m, pf, dc, e[0], e[1], e[2], e[3], worst);
		fprintf(csv, "%s,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n", mech[v], by, r100,
			r1m, pf, dc, r->pr[v].retrieval, r->pr[v].overwrite, r->pr[v].dilution,
			r->pr[v].position, worst);
	}
	fprintf(f, "\n");
}

/* Schedules of the reduced stacks (8 layers). */
static const char *const sched[NSCHED] = { "DDDSDDDS", "LLLLLLLS", "MMMMMMMM", "SSSSSSSS" };
static const char *const sched_name[NSCHED] = { "qwen3-next-like", "minimax-like",
	"deepseek-like", "all softmax" };

static double predict(const struct results *r, double flops, double bytes, int roof)
{
	double peak = bench_peak_gflops(&r->ceil, 0) * 1e9, bw = r->ceil.bw_gbs * 1e9;

	if (!r->have_ceil)
		return NAN;
	return roof ? fmax(flops / peak, bytes / bw) : flops / peak;
}

static void stack_table(FILE *f, FILE *csv, const struct opts *o, const struct results *r)
{
	fprintf(f, "## Hybrid stacks at reduced width (measured against modelled)\n\n"
		"8 layers, H 8, d 128 (mla dn 128, dr 64, dc 512), cpu backend, f32, one sequence, "
		"each stack **measured** end to end: a prefill of T tokens through all 8 layers (each "
		"into its own cache), then %d single-token decode steps through all 8 caches after 2 "
		"untimed ones (median step). Layers are joined by a pre-norm residual stream of width "
		"H d: h = x / rms(x), o = layer(h), x += o; a layer's q, k and v heads are the head "
		"slices of h (mla's rotary and latent inputs are slices too, deltanet's g and beta "
		"fixed random, lightning's slopes MiniMax's for its layer). Included: the attention "
		"layers, their caches and that glue. Excluded: the q/k/v/output projections, MLP or "
		"MoE, gates, short convolutions, embeddings and the LM head. **Modelled**: "
		"lca_plan_cost(3) summed over the 8 layers (decode at the median step's context), "
		"divided by the compute peak measured in this run (`flops/peak`, peak = max(sgemm, "
		"FMA loop)), and the roofline max(flops/peak, bytes/bandwidth); the glue's O(T H d) per layer is not in the "
		"model, and its measured share is shown. A decode step lasts micro- to milliseconds: waking the OpenMP and BLAS thread "
		"pools 8 times and other load on the machine dominate it, so decode ratios far from "
		"1 say more about the overhead of single-token calls here than about the mechanism; "
		"the roofline's bandwidth is that of a large copy, so a cache that fits in the CPU "
		"caches can beat it (ratio < 1).\n\n", o->decode_steps);
	fprintf(f, "| schedule | phase | T | measured s | of which glue s | modelled s "
		"(flops/peak) | modelled s (roofline) | measured / roofline |\n"
		"|---|---|---|---|---|---|---|---|\n");
	fprintf(csv, "schedule,phase,T,measured_s,modelled_flops_s,modelled_roofline_s,glue_s\n");
	for (int s = 0; s < NSCHED; s++)
		for (int ph = 0; ph < 2; ph++)
			for (int i = 0; i < o->nT; i++) {
				const struct bench_stack *b = &r->st[s][i];
				double m = ph ? b->decode_s : b->prefill_s;
				double fl = ph ? b->decode_flops : b->prefill_flops;
				double by = ph ? b->decode_bytes : b->prefill_bytes;
				double gl = ph ? b->decode_glue_s : b->prefill_glue_s;
				double p1 = predict(r, fl, by, 0), p2 = predict(r, fl, by, 1);

				fprintf(f, "| %s %s | %s | %lld | %.3g | %.2g | %.3g | %.3g | %.2f |\n",
					sched[s], sched_name[s], ph ? "decode" : "prefill",
					(long long)o->T[i], m, gl, p1, p2, m / p2);
				fprintf(csv, "%s,%s,%lld,%.6g,%.6g,%.6g,%.6g\n", sched[s],
					ph ? "decode" : "prefill", (long long)o->T[i], m, p1, p2, gl);
			}
	fprintf(f, "\n");
}

static void agree_table(FILE *f, FILE *csv, const struct results *r)
{
	fprintf(f, "## Agreement with the double reference (measured)\n\n"
		"One random case per mechanism (T 40, H 2, GQA/qk heads 1, d 16; mla dn 16, dr 8, dc 32; "
		"chunk and block 16), output o, normwise error ||x - ref|| / ||ref|| against ref f64. "
		"Bound: the tolerance rule (f64 1e-12; f32 2 x the reference run in float32, floored "
		"at 1e-6).\n\n| mechanism | backend | dtype | normwise error | bound | within |\n"
		"|---|---|---|---|---|---|\n");
	fprintf(csv, "mechanism,backend,dtype,error,bound\n");
	for (int v = 0; v < NMECH; v++)
		for (int k = 0; k < r->nag[v]; k++) {
			const struct agree *a = &r->ag[v][k];

			if (!a->ran) {
				fprintf(f, "| %s | %s | %s | not run: %s | | |\n", mech[v], a->backend,
					a->dtype, a->why);
				continue;
			}
			fprintf(f, "| %s | %s | %s | %.2e | %s%.0e | %s |\n", mech[v], a->backend, a->dtype,
				a->err, k == 0 ? "(itself) " : "", a->bound,
				k == 0 ? "-" : a->err <= a->bound ? "yes" : "**no**");
			fprintf(csv, "%s,%s,%s,%.6g,%.6g\n", mech[v], a->backend, a->dtype, a->err, a->bound);
		}
	fprintf(f, "\n");
}

/* The long decode of bench/drift.c, under the bound tests/check_drift
 * holds it to (lcattn(7), Accuracy). */
static void drift_table(FILE *f, const struct results *r)
{
	static const double bound[2] = { DRIFT_BOUND_DELTANET, DRIFT_BOUND_LIGHTNING };

	fprintf(f, "## Long-run drift of a float32 decode (measured)\n\n"
		"Single-token steps through a cache (H 1, dk = dv = %d; lightning slope %g, "
		"deltanet g in [-0.01, 0]), cpu f32 against ref f64 on the same inputs; the "
		"largest |o32 - o64| over all tokens. Bound: lcattn(7), ten times the drift "
		"measured over 1M tokens.\n\n| mechanism | tokens | max abs drift | max abs o | "
		"bound | within |\n|---|---|---|---|---|---|\n", DRIFT_DK, DRIFT_SLOPE);
	for (int i = 0; i < 2; i++) {
		const struct drift *d = &r->drift[i];

		if (r->drift_status[i] != LCA_OK)
			fprintf(f, "| %s | not run: %s | | | | |\n", mech[LCA_DELTANET + i],
				lca_strerror(r->drift_status[i]));
		else
			fprintf(f, "| %s | %lld | %.2e | %.3g | %.0e | %s |\n",
				mech[LCA_DELTANET + i], (long long)d->T, d->maxabs, d->maxref,
				bound[i], d->maxabs <= bound[i] ? "yes" : "**no**");
	}
	fprintf(f, "\n");
}

static void gf_cell(FILE *f, double x)
{
	if (isnan(x))
		fprintf(f, " n/a |");
	else if (x == 0)
		fprintf(f, " 0 (underflow) |");
	else
		fprintf(f, " %.2e |", x);
}

static void gradflow_table(FILE *f, const struct results *r)
{
	fprintf(f, "## Training signal (measured: one layer, random inputs)\n\n"
		"`lcattn probe gradflow` (lcattn-probes(7), Gradient flow): the gradient that the "
		"output of the last token of one layer sends back to the value (grad_v) and the key "
		"(grad_k) of a token d tokens earlier, through the reference backward calls, on "
		"random unit q, k and v (T = %lld, 8 heads, dk = dv = 64, %lld seed%s). grad_v is "
		"||d o_{T-1} / d v_t||_F / sqrt(dv), exact in each draw; grad_k the same norm for "
		"the keys, estimated from a random unit cotangent; both the root mean square over "
		"heads and seeds. mla has no per-head key or value: its rows are per head too, "
		"grad_v the gradient reaching the latent ckv_t (dc numbers that all heads "
		"decompress into keys and values; dn = 48 non-rotary and dr = 16 rotary key "
		"coordinates, DeepSeek-V2's 128 and 64 scaled to dk = 64; weights of variance 1/dc, "
		"dc = 64 or 16) and grad_k the rotary key k_rope_t: per head, grad_v compares with softmax's "
		"(both are the attention weight p_t times a norm-preserving map of u on average) "
		"and grad_k with softmax's on dr of dk coordinates (about half of it); what the "
		"latent of a token receives from the whole layer is the sum over the heads.\n\n"
		"What it measures: how fast, in the mechanism alone with a preset's gates, the "
		"sensitivity of one output to an earlier token falls with distance: lightning as "
		"e^{-s d} per head, Gated DeltaNet as the product of its gates and erasures, "
		"softmax not at all on random inputs (its weights are about 1/T at every distance: "
		"it dilutes the gradient over the context instead of decaying it). What it cannot "
		"say: it is the gradient of a single output of a single layer at random inputs, not "
		"a trained model's training signal, which flows through many layers, residual paths "
		"and MLPs, from every token's loss, with trained queries and keys that concentrate "
		"attention and trained gates that are not random draws.\n\n"
		"| curve | grad_v d=1 | d=10 | d=100 | d=1000 | grad_k d=1 | d=10 | d=100 | d=1000 |\n"
		"|---|---|---|---|---|---|---|---|---|\n", (long long)r->gf_T, (long long)r->gf_seeds,
		r->gf_seeds > 1 ? "s" : "");
	for (int c = 0; c < gradflow_ncurves && c < GF_MAX; c++) {
		fprintf(f, "| %s (%s) |", gradflow_curves[c].name, gradflow_curves[c].what);
		if (r->gf_status[c]) {
			fprintf(f, " not run: %s | | | | | | | |\n", lca_strerror(r->gf_status[c]));
			continue;
		}
		for (int j = 0; j < GF_ND; j++)
			gf_cell(f, r->gf_v[c][j]);
		for (int j = 0; j < GF_ND; j++)
			gf_cell(f, r->gf_k[c][j]);
		fprintf(f, "\n");
	}
	fprintf(f, "\nn/a: the distance does not fit in T tokens. 0 (underflow): below the "
		"smallest double.\n\n");
}

static void gradflow_measure(const struct opts *o, struct results *r)
{
	static const int64_t dist[GF_ND] = { 1, 10, 100, 1000 };
	int nd = 0;

	r->gf_T = o->quick ? 256 : 1024;
	r->gf_seeds = o->quick ? 1 : 2;
	while (nd < GF_ND && dist[nd] < r->gf_T)
		nd++;
	for (int c = 0; c < gradflow_ncurves && c < GF_MAX; c++) {
		progress("training signal: gradient flow of %s, T = %lld", gradflow_curves[c].name,
			(long long)r->gf_T);
		for (int j = 0; j < GF_ND; j++)
			r->gf_v[c][j] = r->gf_k[c][j] = NAN;
		r->gf_status[c] = gradflow_run(&gradflow_curves[c], r->gf_T, 8, 64, 64,
			r->gf_seeds, 1, nd, dist, r->gf_v[c], r->gf_k[c]);
	}
}

static FILE *open_in(const char *dir, const char *name)
{
	char path[4096];

	snprintf(path, sizeof path, "%s/%s", dir, name);
	return fopen(path, "w");
}

static const struct fit_row *fit_find(const struct fit_row *r, int n, const char *name,
	int64_t ctx)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(r[i].name, name) && r[i].ctx == ctx)
			return &r[i];
	return NULL;
}

/* DeepSeek-V2's serving claim, then the sessions-that-fit table of the
 * presets (bench/sessions.c): measured at reduced width, modelled at
 * production width. */
static void sessions_section(FILE *f)
{
	static const int64_t ctx[] = { 32768, 131072 };
	const double budget = 64.0 * 1073741824.0;
	struct fit_row rows[32];
	const struct fit_row *mla, *mha;
	int n;

	progress("sessions that fit in 64 GiB: filling paged pools at reduced width");
	n = bench_fit_rows(NULL, budget, ctx, 2, 1, rows, 32);
	fprintf(f, "### Sessions that fit, next to DeepSeek's serving claim\n\n"
		"DeepSeek-V2's claim: against DeepSeek 67B, MLA \"reduces the KV cache by 93.3%%, "
		"and boosts the maximum generation throughput to 5.76 times\" (DeepSeek-V2 "
		"abstract; DeepSeek 67B is a grouped-query model, not a preset here, and the "
		"deployed cache was also quantized). What the cache alone gives, at equal heads and "
		"head sizes:\n\n");
	if (n < 0) {
		fprintf(f, "(the table could not be computed: %s)\n\n", lca_last_error());
		return;
	}
	mla = fit_find(rows, n, "deepseek-v3", ctx[0]);
	mha = fit_find(rows, n, "deepseek-v3-mha", ctx[0]);
	if (mla && mha)
		fprintf(f, "- deepseek-v3 (MLA) holds %.2f%% of the bytes per sequence of "
			"deepseek-v3-mha (%.1f%% less; both bf16): %lld against %lld sequences of "
			"32K in 64 GiB (modelled), %lld against %lld measured. Sessions go as the "
			"inverse of the bytes per sequence; a larger batch is how a smaller cache "
			"becomes generation throughput, which is not modelled here.\n\n",
			100 * mla->seq_bytes[1] / mha->seq_bytes[1],
			100 * (1 - mla->seq_bytes[1] / mha->seq_bytes[1]),
			(long long)mla->model[1], (long long)mha->model[1],
			(long long)mla->meas[1], (long long)mha->meas[1]);
	bench_fit_print(f, 1, budget, rows, n);
	fprintf(f, "\n");
}

static void preset_section(FILE *f, FILE *csv)
{
	static const int64_t ns[] = { 65536, 100000, 1048576 };

	fprintf(f, "## Per preset: production shapes (modelled)\n\n"
		"Published shapes (sources and doubts: lcattn(1), the cost command). Attention FLOPs are "
		"lca_plan_cost(3) summed over the layers: one decode step at context n (per token) and "
		"its sum over contexts 1..n (a generation of n tokens, closed form); model FLOPs add "
		"2 x active parameters per token. Bytes: cache or state of one sequence, bf16.\n\n");
	for (int i = 0; i < tool_npresets; i++)
		fprintf(f, "- `%s`: %s, pattern %s x %lld layers, %.1fB active\n", tool_presets[i].name,
			tool_presets[i].what, tool_presets[i].pattern, (long long)tool_presets[i].layers,
			tool_presets[i].active / 1e9);
	fprintf(f, "\n");
	tool_cost_tables(f, csv, ns, 3);
	fprintf(f, "\n### Ratios between presets (modelled)\n\n");
	tool_cost_ratios(f, ns, 3);
	fprintf(f, "\n### MiniMax's claim against the model\n\n");
	tool_cost_claim(f);
	fprintf(f, "\n");
	sessions_section(f);
}

/* PNG plots through gnuplot, when it is there; silent otherwise. */
static void plots(const char *dir)
{
	char cmd[8192];

	snprintf(cmd, sizeof cmd,
		"command -v gnuplot >/dev/null 2>&1 && cd '%s' && gnuplot 2>/dev/null <<'EOF'\n"
		"set terminal pngcairo size 800,500\nset datafile separator ','\n"
		"set logscale xy\nset key left top\nset xlabel 'T'\nset ylabel 'seconds'\n"
		"set output 'stacks-prefill.png'\nset title 'prefill, measured (points) and roofline (lines)'\n"
		"plot for [s in 'DDDSDDDS LLLLLLLS MMMMMMMM SSSSSSSS'] '< grep ^'.s.',prefill stacks.csv' "
		"using 3:4 with points title s.' measured', "
		"for [s in 'DDDSDDDS LLLLLLLS MMMMMMMM SSSSSSSS'] '< grep ^'.s.',prefill stacks.csv' "
		"using 3:6 with lines title s.' roofline'\n"
		"set output 'presets-flops.png'\nset title 'attention FLOPs per token (modelled)'\n"
		"set xlabel 'context n'\nset ylabel 'FLOPs'\n"
		"plot for [p in 'deepseek-v3 deepseek-v3-mha qwen3-next qwen3-next-softmax minimax-m1 "
		"minimax-m1-softmax'] '< grep ^'.p.', presets.csv' using 2:3 with linespoints title p\n"
		"EOF\n", dir);
	if (system(cmd) != 0)
		return;  /* no gnuplot or no pngcairo: the report stands without plots */
}

static int usage(FILE *f)
{
	fprintf(f, "usage: lcattn report [--out DIR] [--quick] [--long]\n"
		"  Write DIR/report.md (default DIR report/) and CSV files (and PNG plots when\n"
		"  gnuplot is installed): the mechanisms and presets side by side, every number\n"
		"  measured here or modelled by lca_plan_cost(3). Progress goes to stderr.\n"
		"  --quick  small shapes only (T 256 and 1024), well under a minute\n"
		"  --long   also time T = 16384 and 65536 (hours on a small machine)\n");
	return f == stdout ? 0 : 2;
}

static int parse(int argc, char **argv, struct opts *o)
{
	o->out = "report";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return usage(stdout), 1;
		if (!strcmp(argv[i], "--quick"))
			o->quick = 1;
		else if (!strcmp(argv[i], "--long"))
			o->longer = 1;
		else if (!strcmp(argv[i], "--out") && i + 1 < argc)
			o->out = argv[++i];
		else
			return usage(stderr), 2;
	}
	if (o->quick) {
		o->T[0] = 256, o->T[1] = 1024, o->nT = 2, o->decode_steps = 9;
	} else {
		o->T[0] = 1024, o->T[1] = 2048, o->T[2] = 4096, o->nT = 3, o->decode_steps = 21;
		if (o->longer)
			o->T[o->nT++] = 16384, o->T[o->nT++] = 65536;
	}
	return 0;
}

static void measure(const struct opts *o, struct results *r)
{
	progress("measuring this machine's sgemm, dgemm, FMA loop and copy bandwidth");
	r->have_ceil = bench_ceilings(&r->ceil) == 0;
	for (int i = 0; i < o->nT; i++)
		for (int s = 0; s < NSCHED; s++) {
			double t0 = bench_now();
			struct bench_stack *b = &r->st[s][i];

			progress("stack %s (%s), T = %lld: prefill and %d decode steps (cpu, f32)",
				sched[s], sched_name[s], (long long)o->T[i], o->decode_steps);
			if (bench_stack_run(sched[s], &stack_shape, o->T[i], o->decode_steps, b))
				progress("  failed: %s", b->msg);
			else
				progress("  %.1f s", bench_now() - t0);
		}
	for (int v = 0; v < NMECH; v++) {
		lca_params s = reduced((lca_variant)v);
		int64_t T = o->T[o->nT - 1];

		progress("timing one %s layer, T = %lld (cpu, f32)", mech[v], (long long)T);
		time_layer((lca_variant)v, &s, T, o->decode_steps, &r->t[v]);
		if (!r->t[v].ok)
			progress("  %s T = %lld failed: %s", mech[v], (long long)T, lca_last_error());
	}
	for (int v = 0; v < NMECH; v++) {
		progress("probes and backend agreement: %s", mech[v]);
		run_probes((lca_variant)v, o->quick ? 32 : 64, &r->pr[v]);
		r->nag[v] = agreement((lca_variant)v, r->ag[v]);
		if (r->nag[v] < 0)
			r->nag[v] = 0;
	}
	for (int i = 0; i < 2; i++) {
		int64_t T = o->quick ? 20000 : 1000000;

		progress("drift of a float32 decode: %s, %lld tokens", mech[LCA_DELTANET + i],
			(long long)T);
		r->drift_status[i] = drift_run((lca_variant)(LCA_DELTANET + i), T, 1,
			&r->drift[i]);
	}
	gradflow_measure(o, r);
}

int tool_report(int argc, char **argv)
{
	struct opts o = { 0 };
	struct results *r;
	FILE *f, *c[4];
	int rc = parse(argc, argv, &o);

	if (rc)
		return rc == 1 ? 0 : rc;
	if (mkdir(o.out, 0777) && errno != EEXIST) {
		fprintf(stderr, "lcattn report: cannot create %s: %s\n", o.out, strerror(errno));
		return 2;
	}
	if (!(r = calloc(1, sizeof *r)))
		return 1;
	measure(&o, r);
	f = open_in(o.out, "report.md");
	c[0] = open_in(o.out, "mechanisms.csv"), c[1] = open_in(o.out, "presets.csv");
	c[2] = open_in(o.out, "stacks.csv"), c[3] = open_in(o.out, "agreement.csv");
	if (!f || !c[0] || !c[1] || !c[2] || !c[3]) {
		fprintf(stderr, "lcattn report: cannot write in %s: %s\n", o.out, strerror(errno));
		rc = 2;
	} else {
		fprintf(f, "# lcattn report\n\nlcattn %s%s. Every figure is labelled **measured** (on "
			"this machine, in this run) or **modelled** (lca_plan_cost(3)).\n\n",
			lca_version(), o.quick ? ", --quick (small shapes)" : "");
		if (r->have_ceil)
			fprintf(f, "Machine (measured): sgemm %.1f GFLOP/s, dgemm %.1f GFLOP/s (n = %d), "
				"%s FMA loop f32 %.1f GFLOP/s, f64 %.1f GFLOP/s (%d threads, flops = "
				"2 x lanes x FMAs), copy bandwidth %.1f GB/s (%d threads). Compute peak "
				"= max(sgemm, f32 FMA loop) = %.1f GFLOP/s.\n\n", r->ceil.sgemm_gflops,
				r->ceil.dgemm_gflops, r->ceil.gemm_n, r->ceil.fma_isa,
				r->ceil.fma_s_gflops, r->ceil.fma_d_gflops, r->ceil.fma_threads,
				r->ceil.bw_gbs, r->ceil.copy_threads, bench_peak_gflops(&r->ceil, 0));
		else
			fprintf(f, "Machine: the ceilings could not be measured; modelled times are NaN.\n\n");
		mech_table(f, c[0], &o, r);
		preset_section(f, c[1]);
		tool_report_ranks(f, r->have_ceil ? bench_peak_gflops(&r->ceil, 0) : NAN);
		stack_table(f, c[2], &o, r);
		agree_table(f, c[3], r);
		drift_table(f, r);
		gradflow_table(f, r);
	}
	for (int i = 0; i < 4; i++)
		if (c[i])
			fclose(c[i]);
	if (f)
		fclose(f);
	free(r);
	if (rc == 0) {
		plots(o.out);
		progress("wrote %s/report.md", o.out);
	}
	return rc;
}
