/*
 * bench.c - `lcattn bench`: the cpu backend against this machine's own
 * ceilings, its own reference and, where installed, a PyTorch peer, all
 * measured in one run so that every ratio it prints compares like with like.
 */
#define _GNU_SOURCE /* sched_getaffinity: the CPUs this process may run on */
#include "bench.h"
#include "drift.h"
#include "../tools/tool.h"  /* tool_bench() */

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	MAX_T = 16,
	MAX_ROWS = 4 * MAX_T,
	LONG_RUN_S = 20     /* one call longer than this: no more repetitions */
};

static const char *const mech_names[] = { "softmax", "mla", "deltanet", "lightning" };
static const int64_t default_T[] = { 1024, 4096, 16384, 65536 };
static const int64_t quick_T[] = { 1024, 4096 };
static const int64_t peer_T[] = { 1024, 4096, 8192 };  /* it builds T x T logits */

struct options {
	int64_t T[MAX_T];
	int nT;
	int mech[4];        /* 1 = selected, indexed by lca_variant */
	lca_dtype dtype;
	int reps;
	int quick;
	int torch;
	int profile;        /* the phase table (prefill; --no-profile: none) */
	int check_finite;
	double ref_limit_s; /* run the reference when predicted under this */
	const char *csv;
	const char *peer_script;
	int decode;         /* --phase decode: bench/decode.c */
	int serve;          /* --phase serve: bench/serve.c */
	struct serve_opts so;
	int so_reps;        /* --reps given for serve */
	int backward;       /* --phase backward: softmax and mla gradients */
	int T_given;        /* --T was given */
};

struct row {
	lca_variant v;
	int64_t T;
	int for_peer;          /* T added only to compare with the peer */
	double flops, bytes;
	struct bench_result cpu;
	int cpu_rc;            /* bench_measure()'s return */
	double ref_s;          /* 0: not measured */
	double fwd_s;          /* --phase backward: the forward's seconds */
	double peer_s;         /* 0: not measured */
	double f32_s;          /* --dtype bf16: the f32 call's seconds; 0: not measured */
	struct bench_prof prof; /* the phase profile */
	int prof_rc;           /* bench_profile()'s return; 1: not run */
};

struct bench {
	struct options o;
	struct bench_shape s;
	struct bench_ceiling c;
	struct row rows[MAX_ROWS];
	int nrows;
};

/* ---- options ------------------------------------------------------------ */

static int usage(FILE *f)
{
	fprintf(f,
		"usage: lcattn bench [--phase prefill|decode|backward|serve] [--T 1024,4096,16384,65536]\n"
		"         [--mech softmax,mla,deltanet,lightning] [--dtype f32|f64|bf16] [--reps 3]\n"
		"         [--csv FILE] [--no-torch] [--torch-script FILE] [--ref-limit SECONDS]\n"
		"         [--no-finite-check] [--no-profile] [--quick]\n"
		"Times causal prefill on the cpu backend (H=8, d=128; mla dn=128 dr=64 dc=512\n"
		"dv=128; deltanet chunk 64, lightning block 256) against the sgemm/dgemm rate\n"
		"and copy bandwidth measured in the same run, the f64 reference where it\n"
		"is predicted to finish within --ref-limit (30 s) and a PyTorch peer where\n"
		"python3 can import torch. --quick: T=1024,4096, one call each, no\n"
		"reference over 2 s. --dtype bf16 (prefill only) also times f32 in the\n"
		"same run and prints bf16/f32. After the table, per mechanism and T, the\n"
		"share of the time in each phase of the kernels (lca_profile_read(3)) and\n"
		"the time profiling costs (--no-profile: none).\n"
		"--phase decode: seconds per generated token through the cache API at\n"
		"contexts T (default 1024..262144; --quick 1024,4096), median of 21 steps;\n"
		"deltanet and lightning beside one pass over their state (memcpy) and\n"
		"step/pass; then the drift of a f32 decode from f64 over 1M tokens\n"
		"(--quick 20K).\n"
		"--phase backward: the backward call of the prefill, flops as stated per\n"
		"mechanism (softmax, mla: FlashAttention-2's count), and the forward's\n"
		"time beside it (bwd/fwd); then the mla backward of 16 queries over T\n"
		"keys (AUTO's absorbed form against the named forms); no peer.\n"
		"--phase serve [--B 1,8,64] [--ctx MEDIAN,MAX] [--long-ctx N] [--seed S]\n"
		"         [--budget GIB] [--fit-ctx 32768,131072]: B sequences of lognormal\n"
		"lengths (median 8192, capped at 65536; --long-ctx: also 8 sequences of N\n"
		"tokens, default 32768, 0 none) decode one token each per step from a paged\n"
		"pool in f32 and bf16 storage: tokens/s, GB/s, GFLOP/s and roofline (as\n"
		"prefill's); then how many sequences at each --fit-ctx fit in --budget GiB\n"
		"(default 64) per mechanism and preset, modelled and measured (--quick:\n"
		"median 2048, max 8192, long 8192, 3 steps).\n");
	return f == stdout ? 0 : 2;
}

/* Parse a comma list of T values into o->T (ascending, no repeats). */
static int parse_T(const char *s, struct options *o)
{
	char *end;

	o->nT = 0;
	for (;;) {
		long long t = strtoll(s, &end, 10);

		if (end == s || t < 1 || t > ((int64_t)1 << 24) || o->nT == MAX_T)
			return -1;
		o->T[o->nT++] = t;
		if (*end == '\0')
			break;
		if (*end != ',')
			return -1;
		s = end + 1;
	}
	for (int i = 1; i < o->nT; i++)  /* insertion sort: a handful of values */
		for (int j = i; j > 0 && o->T[j - 1] >= o->T[j]; j--) {
			int64_t x = o->T[j];

			if (o->T[j - 1] == x)
				return -1;
			o->T[j] = o->T[j - 1], o->T[j - 1] = x;
		}
	return 0;
}

static int parse_mech(const char *s, struct options *o)
{
	memset(o->mech, 0, sizeof o->mech);
	while (*s) {
		size_t n = strcspn(s, ",");
		int found = 0;

		for (int m = 0; m < 4; m++)
			if (strlen(mech_names[m]) == n && !strncmp(s, mech_names[m], n))
				o->mech[m] = found = 1;
		if (!found)
			return -1;
		s += n + (s[n] == ',');
	}
	return o->mech[0] + o->mech[1] + o->mech[2] + o->mech[3] ? 0 : -1;
}

/* A comma list of at most max integers in [lo, hi]; the count, or -1. */
static int parse_list(const char *s, int64_t *x, int max, int64_t lo, int64_t hi)
{
	int n = 0;
	char *end;

	for (;;) {
		long long t = strtoll(s, &end, 10);

		if (end == s || t < lo || t > hi || n == max)
			return -1;
		x[n++] = t;
		if (*end == '\0')
			return n;
		if (*end != ',')
			return -1;
		s = end + 1;
	}
}

/* The options of --phase serve: 0 taken, 1 not one of them, -1 bad value. */
static int serve_option(const char *a, const char *val, struct serve_opts *so)
{
	int64_t x[4];
	char *end;
	int n;

	if (!strcmp(a, "--B"))
		return (so->nB = parse_list(val, so->B, 8, 1, 4096)) < 1 ? -1 : 0;
	if (!strcmp(a, "--ctx")) {
		if (parse_list(val, x, 2, 1, (int64_t)1 << 24) != 2 || x[0] > x[1])
			return -1;
		return so->ctx_median = x[0], so->ctx_max = x[1], 0;
	}
	if (!strcmp(a, "--long-ctx"))
		return parse_list(val, &so->long_ctx, 1, 0, (int64_t)1 << 24) == 1 ? 0 : -1;
	if (!strcmp(a, "--fit-ctx"))
		return (so->nfit = parse_list(val, so->fit_ctx, 4, 1, (int64_t)1 << 30)) < 1 ? -1 : 0;
	if (!strcmp(a, "--seed")) {
		if ((n = parse_list(val, x, 1, 0, INT64_MAX)) != 1)
			return -1;
		return so->seed = (uint64_t)x[0], 0;
	}
	if (!strcmp(a, "--budget")) {
		so->budget = strtod(val, &end) * 1073741824.0;
		return *end || !(so->budget >= 1 && so->budget <= 1e18) ? -1 : 0;
	}
	return 1;
}

/* One option with its value; returns 0, or -1 for a bad value. */
static int option_value(const char *a, const char *val, struct options *o,
	int *T_given, int *reps_given)
{
	char *end;

	if (!strcmp(a, "--T"))
		return *T_given = 1, parse_T(val, o);
	if (!strcmp(a, "--mech"))
		return parse_mech(val, o);
	if (!strcmp(a, "--dtype")) {
		return tool_parse_dtype(val, &o->dtype);
	}
	if (!strcmp(a, "--reps")) {
		o->reps = (int)strtol(val, &end, 10);
		*reps_given = 1;
		return *end || o->reps < 1 || o->reps > 50 ? -1 : 0;
	}
	if (!strcmp(a, "--ref-limit")) {
		o->ref_limit_s = strtod(val, &end);
		return *end || !(o->ref_limit_s >= 0 && o->ref_limit_s <= 3600) ? -1 : 0;
	}
	if (!strcmp(a, "--phase")) {
		o->decode = !strcmp(val, "decode");
		o->backward = !strcmp(val, "backward");
		o->serve = !strcmp(val, "serve");
		return o->decode || o->backward || o->serve || !strcmp(val, "prefill") ? 0 : -1;
	}
	if (!serve_option(a, val, &o->so))
		return 0;
	if (!strcmp(a, "--csv"))
		return o->csv = val, 0;
	if (!strcmp(a, "--torch-script"))
		return o->peer_script = val, 0;
	return -1;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	int T_given = 0, reps_given = 0, ref_given = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return usage(stdout) ? 2 : 1;
		if (!strcmp(a, "--quick"))
			o->quick = 1;
		else if (!strcmp(a, "--no-torch"))
			o->torch = 0;
		else if (!strcmp(a, "--no-finite-check"))
			o->check_finite = 0;
		else if (!strcmp(a, "--no-profile"))
			o->profile = 0;
		else if (i + 1 >= argc ||
			 option_value(a, argv[i + 1], o, &T_given, &reps_given)) {
			fprintf(stderr, "lcattn bench: bad or incomplete option '%s'%s%s%s\n", a,
				i + 1 < argc ? " (value '" : "", i + 1 < argc ? argv[i + 1] : "",
				i + 1 < argc ? "')" : "");
			return usage(stderr);
		} else {
			ref_given |= !strcmp(a, "--ref-limit");
			i++;
		}
	}
	o->T_given = T_given;
	if (o->serve && (o->dtype != LCA_F32 || o->decode || o->backward)) {
		fprintf(stderr, "lcattn bench: --phase serve runs f32 plans (bf16 is a storage "
			"column of its own)\n");
		return usage(stderr);
	}
	o->so_reps = reps_given;
	if (o->dtype == LCA_BF16 && (o->decode || o->backward)) {
		fprintf(stderr, "lcattn bench: --dtype bf16 times prefill only (no bf16 "
			"backward or cache on the cpu backend)\n");
		return usage(stderr);
	}
	if (o->dtype == LCA_BF16)
		o->torch = 0;  /* the peer runs f32 and f64 */
	if (o->backward)
		o->torch = 0;  /* the peer times forward calls only */
	if (o->quick) {
		if (!T_given)
			memcpy(o->T, quick_T, sizeof quick_T), o->nT = 2;
		if (!reps_given)
			o->reps = 1;
		if (!ref_given)
			o->ref_limit_s = 2;
	}
	return 0;
}

/* ---- measuring ------------------------------------------------------------ */

static size_t esize(lca_dtype dt)
{
	return dt == LCA_F64 ? 8 : dt == LCA_F32 ? 4 : 2;
}

static int has_T(const struct options *o, int64_t T)
{
	for (int i = 0; i < o->nT; i++)
		if (o->T[i] == T)
			return 1;
	return 0;
}

/* The T values to measure: the list, plus the peer's (up to the largest
 * listed T) so that every peer time has an lcattn time beside it. */
static int measure_list(const struct options *o, int64_t *T)
{
	int n = 0;

	for (int i = 0; i < o->nT; i++)
		T[n++] = o->T[i];
	for (int i = 0; o->torch && !o->backward && i < 3; i++)
		if (!has_T(o, peer_T[i]) && peer_T[i] <= o->T[o->nT - 1] && n < MAX_T)
			T[n++] = peer_T[i];
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && T[j - 1] > T[j]; j--) {
			int64_t x = T[j];

			T[j] = T[j - 1], T[j - 1] = x;
		}
	return n;
}

static void progress(const struct row *r, const char *backend, double wall,
	const struct bench_result *res, int rc)
{
	fprintf(stderr, "bench: %-9s T=%-6lld %s %s ... ", mech_names[r->v],
		(long long)r->T, backend, backend[0] == 'r' ? "f64" : "");
	if (rc == -2)
		fprintf(stderr, "stopped after %.0f s\n", wall);
	else if (rc)
		fprintf(stderr, "child failed\n");
	else if (res->status != LCA_OK)
		fprintf(stderr, "%s\n", lca_strerror((lca_status)res->status));
	else
		fprintf(stderr, "%.3g s per call, %d call%s (%.1f s)\n", res->seconds,
			res->runs, res->runs == 1 ? "" : "s", wall);
}

/* The f64 reference, when its predicted time is under the limit. Its rate
 * (model flops per second) is learnt from its last run on this mechanism;
 * before the first run 1 GFLOP/s is assumed. */
static void measure_ref(struct bench *b, struct row *r, double *ref_rate)
{
	struct bench_timing tm = { 1, 0, 0, b->o.check_finite, b->o.backward };
	struct bench_result res;
	double rate = ref_rate[r->v] > 0 ? ref_rate[r->v] : 1e9, t0;
	int rc;

	if (r->flops / rate >= b->o.ref_limit_s)
		return;
	t0 = bench_now();
	rc = bench_measure(r->v, &b->s, r->T, LCA_BACKEND_REF, LCA_F64, &tm,
		(unsigned)(4 * b->o.ref_limit_s + 30), &res);
	progress(r, "ref", bench_now() - t0, &res, rc);
	if (rc == 0 && res.status == LCA_OK && res.seconds > 0) {
		r->ref_s = res.seconds;
		ref_rate[r->v] = r->flops / res.seconds;
	} else if (rc == -2) {
		ref_rate[r->v] = 1e-30;  /* it ran out of time: never again */
	}
}

static void measure_row(struct bench *b, struct row *r, double *ref_rate)
{
	struct bench_timing tm = { b->o.reps, LONG_RUN_S, b->o.quick ? 0 : 1.0,
		b->o.check_finite, b->o.backward };
	double t0 = bench_now();

	r->flops = b->o.backward ? bench_flops_bwd(r->v, &b->s, r->T) :
		bench_flops(r->v, &b->s, r->T);
	r->bytes = b->o.backward ? bench_bytes_bwd(r->v, &b->s, r->T, esize(b->o.dtype)) :
		bench_bytes(r->v, &b->s, r->T, esize(b->o.dtype));
	r->cpu_rc = bench_measure(r->v, &b->s, r->T, LCA_BACKEND_CPU, b->o.dtype,
		&tm, 3 * 3600, &r->cpu);
	progress(r, "cpu", bench_now() - t0, &r->cpu, r->cpu_rc);
	if (b->o.backward && r->cpu_rc == 0 && r->cpu.status == LCA_OK) {
		/* the forward of the same case, timed the same way, for the
		 * ratio bwd/fwd */
		struct bench_result fr;

		tm.backward = 0;
		if (bench_measure(r->v, &b->s, r->T, LCA_BACKEND_CPU, b->o.dtype,
				&tm, 3 * 3600, &fr) == 0 && fr.status == LCA_OK)
			r->fwd_s = fr.seconds;
		tm.backward = 1;
	}
	if (b->o.dtype == LCA_BF16 && r->cpu_rc == 0 && r->cpu.status == LCA_OK) {
		/* f32 on the same shape, timed the same way, for bf16/f32 */
		struct bench_result fr;

		if (bench_measure(r->v, &b->s, r->T, LCA_BACKEND_CPU, LCA_F32,
				&tm, 3 * 3600, &fr) == 0 && fr.status == LCA_OK)
			r->f32_s = fr.seconds;
	}
	r->prof_rc = 1;
	if (b->o.profile && !b->o.backward && !r->for_peer && r->cpu_rc == 0 && r->cpu.status == LCA_OK)
		r->prof_rc = bench_profile(r->v, &b->s, r->T, b->o.dtype, b->o.check_finite,
			b->o.quick ? 0 : 2.0, 3 * 3600, &r->prof);
	if (r->cpu_rc == 0 && r->cpu.status == LCA_OK)
		measure_ref(b, r, ref_rate);
}

static int cpu_ok(const struct row *r)
{
	return r->cpu_rc == 0 && r->cpu.status == LCA_OK && r->cpu.seconds > 0;
}

/* ---- output ------------------------------------------------------------- */

static double peak_gflops(const struct bench *b)
{
	return bench_peak_gflops(&b->c, b->o.dtype == LCA_F64);
}

/* max(flops / peak_flops, bytes / peak_bw) / seconds: the fraction of the
 * time the nearer of the two ceilings would need. peak_flops is the larger
 * of the BLAS GEMM and the FMA loop: a BLAS that dispatches to a narrower
 * ISA than the kernels (OpenBLAS's AVX2 kernels on an AVX-512 Zen 5) is
 * not a ceiling for them. */
static double roofline(const struct bench *b, const struct row *r)
{
	double tf = r->flops / (peak_gflops(b) * 1e9), tb = r->bytes / (b->c.bw_gbs * 1e9);

	return (tf > tb ? tf : tb) / r->cpu.seconds;
}

static void print_title(const struct bench *b)
{
	printf("lcattn %s bench: %s, causal, cpu backend, %s; H=%lld dk=dv=%lld; "
	       "mla dn=%lld dr=%lld dc=%lld dv=%lld; deltanet chunk %lld, lightning block %lld\n",
		lca_version(), b->o.decode ? "decode" : b->o.backward ? "backward of prefill" : "prefill",
		tool_dtype_name(b->o.dtype),
		(long long)b->s.H, (long long)b->s.dk, (long long)b->s.dn,
		(long long)b->s.dr, (long long)b->s.dc, (long long)b->s.dv,
		(long long)b->s.chunk, (long long)b->s.block);
	/* The level the cpu kernels dispatched to (LCA_CPU_ISA caps it): a
	 * bench read on another machine, or under a cap, says so. */
	printf("cpu isa: %s (lca_cpu_isa(3))\n", lca_cpu_isa());
}

static void print_ceiling(const char *when, const struct bench_ceiling *c)
{
	printf("ceilings %-9s sgemm %6.1f GFLOP/s, dgemm %6.1f GFLOP/s, "
	       "fma %s f32 %6.1f GFLOP/s, f64 %6.1f GFLOP/s, copy %5.1f GB/s\n",
		when, c->sgemm_gflops, c->dgemm_gflops, c->fma_isa, c->fma_s_gflops,
		c->fma_d_gflops, c->bw_gbs);
	fflush(stdout);
}

/* The ceilings are measured at the start and at the end of the run and
 * the larger of each is used: a machine busy with something else at one
 * of the two moments would otherwise set the bar too low. */
static void merge_ceilings(struct bench_ceiling *c, const struct bench_ceiling *end)
{
	if (end->sgemm_gflops > c->sgemm_gflops)
		c->sgemm_gflops = end->sgemm_gflops;
	if (end->dgemm_gflops > c->dgemm_gflops)
		c->dgemm_gflops = end->dgemm_gflops;
	if (end->bw_gbs > c->bw_gbs)
		c->bw_gbs = end->bw_gbs;
	if (end->fma_s_gflops > c->fma_s_gflops)
		c->fma_s_gflops = end->fma_s_gflops;
	if (end->fma_d_gflops > c->fma_d_gflops)
		c->fma_d_gflops = end->fma_d_gflops;
}

static void print_header(const struct bench *b)
{
	int dbl = b->o.dtype == LCA_F64;

	printf("peaks used (the larger of start and end): sgemm %.1f GFLOP/s, dgemm %.1f GFLOP/s "
	       "(n=%d, best of 5, 2n^3 flops); copy %.1f GB/s (%.0f MiB, %d threads, best of 5, "
	       "bytes = 2 x size)\n",
		b->c.sgemm_gflops, b->c.dgemm_gflops, b->c.gemm_n, b->c.bw_gbs,
		b->c.copy_mib, b->c.copy_threads);
	printf("  fma: %s loop of %d independent FMAs in registers on %d threads, best of 5, "
	       "flops = 2 x lanes x FMAs (%d f32, %d f64 lanes): f32 %.1f GFLOP/s, f64 %.1f GFLOP/s\n",
		b->c.fma_isa, b->c.fma_acc, b->c.fma_threads, b->c.fma_s_lanes, b->c.fma_d_lanes,
		b->c.fma_s_gflops, b->c.fma_d_gflops);
	for (const char *const *f = b->o.backward ? bench_formulas_bwd() : bench_formulas(); *f; f++)
		printf("  %s\n", *f);
	printf("seconds: median of >= %d calls (fewer when a call exceeds %d s); "
	       "roofline = max(flops/peak, bytes/bw) / seconds (peak = max(%s, fma %s) = %.1f GFLOP/s)\n\n",
		b->o.reps, LONG_RUN_S, dbl ? "dgemm" : "sgemm", dbl ? "f64" : "f32",
		peak_gflops(b));
	printf("%-9s %6s %5s %10s %9s %8s %10s %8s %9s%s\n", "mechanism", "T", "calls",
		"seconds", "GFLOP/s", "roofline", "ref f64 s", "vs ref", "peak MiB",
		b->o.backward ? "   fwd s  bwd/fwd" :
		b->o.dtype == LCA_BF16 ? "   f32 s bf16/f32" : "");
}

static void print_row(const struct bench *b, const struct row *r)
{
	printf("%-9s %6lld ", mech_names[r->v], (long long)r->T);
	if (!cpu_ok(r)) {
		printf("%5s %10s   (%s)\n", "", "n/a", r->cpu_rc == -2 ? "time limit" :
			r->cpu_rc ? "child failed" : lca_strerror((lca_status)r->cpu.status));
		return;
	}
	printf("%5d %10.4g %9.1f %8.3f ", r->cpu.runs, r->cpu.seconds,
		r->flops / r->cpu.seconds / 1e9, roofline(b, r));
	if (r->ref_s > 0)
		printf("%10.4g %8.1f", r->ref_s, r->ref_s / r->cpu.seconds);
	else
		printf("%10s %8s", "-", "-");
	printf(" %9.1f", r->cpu.rss_mb);
	if (b->o.backward && r->fwd_s > 0)
		printf(" %8.4g %8.2f", r->fwd_s, r->cpu.seconds / r->fwd_s);
	if (r->f32_s > 0)
		printf(" %8.4g %8.3f", r->f32_s, r->cpu.seconds / r->f32_s);
	printf("%s\n", r->for_peer ? "  (for the peer)" : "");
	fflush(stdout);
}

static int write_csv(const struct bench *b, const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		fprintf(stderr, "lcattn bench: cannot write %s\n", path);
		return -1;
	}
	fprintf(f, "mechanism,phase,backend,dtype,T,H,dk,dv,seconds,flops,bytes,gflops,"
		"roofline_frac,speedup_vs_ref,peak_rss_mb\n");
	for (int i = 0; i < b->nrows; i++) {
		const struct row *r = &b->rows[i];
		int64_t dk = r->v == LCA_MLA ? b->s.dn + b->s.dr : b->s.dk;

		fprintf(f, "%s,%s,cpu,%s,%lld,%lld,%lld,%lld,", mech_names[r->v],
			b->o.backward ? "backward" : "prefill",
			tool_dtype_name(b->o.dtype), (long long)r->T,
			(long long)b->s.H, (long long)dk, (long long)b->s.dv);
		if (cpu_ok(r))
			fprintf(f, "%.6g,%.0f,%.0f,%.6g,%.4f,", r->cpu.seconds, r->flops,
				r->bytes, r->flops / r->cpu.seconds / 1e9, roofline(b, r));
		else
			fprintf(f, ",%.0f,%.0f,,,", r->flops, r->bytes);
		if (cpu_ok(r) && r->ref_s > 0)
			fprintf(f, "%.4g", r->ref_s / r->cpu.seconds);
		fprintf(f, ",");
		if (cpu_ok(r) && r->cpu.rss_mb > 0)
			fprintf(f, "%.1f", r->cpu.rss_mb);
		fprintf(f, "\n");
	}
	return fclose(f) ? -1 : 0;
}

static const struct row *find_row(const struct bench *b, lca_variant v, int64_t T)
{
	for (int i = 0; i < b->nrows; i++)
		if (b->rows[i].v == v && b->rows[i].T == T && cpu_ok(&b->rows[i]))
			return &b->rows[i];
	return NULL;
}

/* T=65536 over T=16384: ~16 for the quadratic mechanisms, ~4 for the
 * linear ones, when both were measured. */
static void print_scaling(const struct bench *b)
{
	int any = 0;

	for (int m = 0; m < 4; m++) {
		const struct row *lo = find_row(b, (lca_variant)m, 16384);
		const struct row *hi = find_row(b, (lca_variant)m, 65536);

		if (!lo || !hi)
			continue;
		printf("%s%s %.2f (expect ~%d)", any ? ", " : "\nscaling T=65536/T=16384: ",
			mech_names[m], hi->cpu.seconds / lo->cpu.seconds,
			m == LCA_SOFTMAX || m == LCA_MLA ? 16 : 4);
		any = 1;
	}
	if (any)
		printf("\n");
}

/* A kernel cannot beat a true ceiling: above 1 the ceiling was measured
 * low, most likely on a busy machine. */
static void print_roofline_note(const struct bench *b)
{
	for (int i = 0; i < b->nrows; i++)
		if (cpu_ok(&b->rows[i]) && roofline(b, &b->rows[i]) > 1) {
			printf("note: roofline > 1 means the ceilings were measured low "
			       "(a busy machine?): rerun on a quiet one\n");
			return;
		}
}

/* The phase table: each phase's seconds, summed over the threads, as a
 * share of wall x threads of the profiled calls; "other" is the rest:
 * waiting for the team (imbalance, wake-ups), allocation, work outside
 * the marked phases, and BLAS's own threads inside a phase that one
 * thread marks (mla.project). */
static void print_phases(const struct bench *b)
{
	int nt = bench_kernel_threads(), any = 0;
	int64_t marks = 0;

	for (int i = 0; i < b->nrows; i++) {
		const struct row *r = &b->rows[i];
		const struct bench_prof *p = &r->prof;
		double whole = p->wall_s * nt, sum = 0;

		if (r->prof_rc == 1 || r->for_peer)
			continue;
		if (!any)
			printf("\nphases (lca_profile_read(3), cpu isa %s, %d threads): share of "
			       "wall x threads of the profiled calls per phase; other = the rest "
			       "(team waits, allocation, unmarked work, BLAS threads under "
			       "mla.project); on/off = fastest profiled / unprofiled call; marks = "
			       "phase boundaries timed, est. = marks x one clock read / (wall x threads)\n",
				lca_cpu_isa(), nt);
		any = 1;
		printf("%-9s %6lld ", mech_names[r->v], (long long)r->T);
		if (r->prof_rc || p->status != LCA_OK || !(whole > 0)) {
			printf("n/a (%s)\n", r->prof_rc == -2 ? "time limit" : r->prof_rc ?
				"child failed" : p->msg[0] ? p->msg : "no time");
			continue;
		}
		for (int k = 0; k < p->nphase; k++) {
			const char *dot = strchr(p->name[k], '.');

			/* the mechanism's own prefix is implied by the row */
			printf(" %s %.1f%%", dot && !strncmp(p->name[k], mech_names[r->v],
				(size_t)(dot - p->name[k])) ? dot + 1 : p->name[k],
				100 * p->seconds[k] / whole);
			sum += p->seconds[k];
			marks += p->count[k];
		}
		printf("  other %.1f%%  (%d calls, %.3g s; on/off %.3f; marks %lld, est. %.2f%% "
		       "at %.0f ns)\n", 100 * (whole - sum) / whole, p->calls, p->wall_s,
			p->on_s / p->off_s, (long long)marks, 100 * marks * p->clock_ns * 1e-9 / whole,
			p->clock_ns);
		marks = 0;
	}
}

/* Softmax keeps no T x T buffer: its peak memory against its own inputs
 * and outputs at the largest T measured. */
static void print_memory(const struct bench *b)
{
	const struct row *r = NULL;

	for (int i = 0; i < b->nrows; i++)
		if (b->rows[i].v == LCA_SOFTMAX && cpu_ok(&b->rows[i]) && b->rows[i].cpu.rss_mb > 0)
			r = &b->rows[i];
	if (r)
		printf("memory: softmax T=%lld peak RSS %.0f MiB = %.2f x its %s (%.0f MiB)\n",
			(long long)r->T, r->cpu.rss_mb, r->cpu.rss_mb * 1048576 / r->bytes,
			b->o.backward ? "inputs + dout + gradients" : "inputs + outputs",
			r->bytes / 1048576);
}

/* ---- the PyTorch peer -------------------------------------------------- */

/* The peer script: --torch-script, $LCATTN_TORCH_PEER, the path compiled in
 * (LCA_TORCH_PEER: the source tree's bench/torch_peer.py), or the build
 * tree above the executable (tools/lcattn or libtool's tools/.libs/). */
static const char *peer_path(const struct options *o, char *buf, size_t size)
{
	static const char *const rel[] = { "/../bench/torch_peer.py", "/../../bench/torch_peer.py" };
	const char *env = getenv("LCATTN_TORCH_PEER");
	char exe[PATH_MAX], *slash;
	ssize_t n;

	if (o->peer_script)
		return o->peer_script;
	if (env && *env)
		return env;
#ifdef LCA_TORCH_PEER
	if (access(LCA_TORCH_PEER, R_OK) == 0)
		return LCA_TORCH_PEER;
#endif
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	if (!(slash = strrchr(exe, '/')))
		return NULL;
	*slash = '\0';
	for (int i = 0; i < 2; i++) {
		int len = snprintf(buf, size, "%s%s", exe, rel[i]);

		if (len > 0 && (size_t)len < size && access(buf, R_OK) == 0)
			return buf;
	}
	return NULL;
}

/* The threads OpenMP gives lcattn (its plans ask for nthreads 0, i.e.
 * omp_get_max_threads()), found as libgomp does: OMP_NUM_THREADS if set,
 * else the CPUs in this process's affinity mask (taskset), so that a peer
 * pinned with lcattn gets the same number of threads. */
static long peer_threads(void)
{
	const char *e = getenv("OMP_NUM_THREADS");
	cpu_set_t set;
	long n;

	if (e && (n = strtol(e, NULL, 10)) > 0)
		return n;
	if (!sched_getaffinity(0, sizeof set, &set) && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n;
}

/* The peer's command line: the peer's T values up to the largest listed,
 * the selected mechanisms, as many threads as OpenMP gives lcattn. */
static int peer_command(const struct bench *b, const char *py, const char *path,
	char *cmd, size_t size)
{
	char Ts[64] = "", mechs[64] = "";

	if (strchr(path, '\''))
		return -1;  /* keeps the shell quoting below trivially right */
	for (int i = 0; i < 3; i++)
		if (peer_T[i] <= b->o.T[b->o.nT - 1])
			snprintf(Ts + strlen(Ts), sizeof Ts - strlen(Ts), "%s%lld",
				Ts[0] ? "," : "", (long long)peer_T[i]);
	for (int m = 0; m < 4; m++)
		if (b->o.mech[m])
			snprintf(mechs + strlen(mechs), sizeof mechs - strlen(mechs), "%s%s",
				mechs[0] ? "," : "", mech_names[m]);
	if (!Ts[0])
		return -1;
	snprintf(cmd, size, "'%s' '%s' --T %s --mech %s --reps %d --threads %ld --dtype %s",
		py, path, Ts, mechs, b->o.reps, peer_threads(),
		b->o.dtype == LCA_F32 ? "float32" : "float64");
	return 0;
}

/* Lines "mechanism,T,seconds" go into the rows; "# ..." lines describe the
 * peer and are shown as they are. */
static int read_peer(struct bench *b, FILE *p)
{
	char line[512], name[32];
	long long T;
	double secs;
	int got = 0;

	while (fgets(line, sizeof line, p)) {
		if (line[0] == '#') {
			printf("%s", line);
			continue;
		}
		if (sscanf(line, "%31[a-z],%lld,%lf", name, &T, &secs) != 3 || secs <= 0)
			continue;
		for (int i = 0; i < b->nrows; i++)
			if (!strcmp(mech_names[b->rows[i].v], name) && b->rows[i].T == T)
				b->rows[i].peer_s = secs, got++;
	}
	return got;
}

static void print_peer(const struct bench *b)
{
	printf("%-9s %6s %10s %10s %13s\n", "mechanism", "T", "lcattn s", "torch s", "lcattn/torch");
	for (int i = 0; i < b->nrows; i++) {
		const struct row *r = &b->rows[i];

		if (r->peer_s <= 0)
			continue;
		printf("%-9s %6lld ", mech_names[r->v], (long long)r->T);
		if (cpu_ok(r))
			printf("%10.4g %10.4g %13.3f\n", r->cpu.seconds, r->peer_s,
				r->cpu.seconds / r->peer_s);
		else
			printf("%10s %10.4g %13s\n", "n/a", r->peer_s, "-");
	}
}

/* A python that can import torch: $LCATTN_PYTHON, else python3 from PATH,
 * else Debian's /usr/bin/python3 (python3-torch installs there, and a
 * pyenv or venv python3 earlier in PATH does not see it). */
static const char *find_python(void)
{
	const char *cand[] = { getenv("LCATTN_PYTHON"), "python3", "/usr/bin/python3" };
	char cmd[PATH_MAX + 64];

	for (int i = 0; i < 3; i++) {
		if (!cand[i] || !*cand[i] || strchr(cand[i], '\''))
			continue;
		snprintf(cmd, sizeof cmd, "'%s' -c 'import torch' >/dev/null 2>&1", cand[i]);
		if (system(cmd) == 0)
			return cand[i];
		if (i == 0)
			return NULL;  /* the one asked for: no fallback */
	}
	return NULL;
}

static void run_peer(struct bench *b)
{
	char buf[PATH_MAX], cmd[2 * PATH_MAX + 256];
	const char *path, *py;
	FILE *p;
	int got;

	printf("\npeer: ");
	if (!b->o.torch) {
		printf("skipped (--no-torch)\n");
		return;
	}
	fflush(stdout);
	if (!(py = find_python())) {
		printf("skipped: no python3 can import torch (Debian package python3-torch)\n");
		return;
	}
	if (b->o.T[b->o.nT - 1] < peer_T[0]) {
		printf("skipped: it runs at T = 1024, 4096, 8192, up to the largest T listed\n");
		return;
	}
	if (!(path = peer_path(&b->o, buf, sizeof buf)) ||
	    peer_command(b, py, path, cmd, sizeof cmd)) {
		printf("skipped: bench/torch_peer.py not found (give --torch-script FILE)\n");
		return;
	}
	printf("%s\n", cmd);
	fflush(stdout);
	if (!(p = popen(cmd, "r"))) {
		printf("skipped: cannot run %s\n", py);
		return;
	}
	got = read_peer(b, p);
	if (pclose(p) != 0)
		printf("peer: exited with an error (its messages are on stderr)\n");
	if (got)
		print_peer(b);
	else
		printf("peer: no timings\n");
}

/* ---- the command ------------------------------------------------------- */

static void defaults(struct bench *b)
{
	b->o.nT = 4;
	memcpy(b->o.T, default_T, sizeof default_T);
	for (int m = 0; m < 4; m++)
		b->o.mech[m] = 1;
	b->o.dtype = LCA_F32;
	b->o.reps = 3;
	b->o.torch = 1;
	b->o.check_finite = 1;
	b->o.profile = 1;
	b->o.ref_limit_s = 30;
	b->o.so = (struct serve_opts){ .B = { 1, 8, 64 }, .nB = 3, .ctx_median = 8192,
		.ctx_max = 65536, .ctx_sigma = 0.5, .long_ctx = 32768, .long_B = 8, .seed = 1,
		.reps = 7, .budget = 64.0 * 1073741824.0, .fit_ctx = { 32768, 131072 },
		.nfit = 2 };
	/* DeepSeek-like MLA reduced to 8 heads; d = 128 everywhere else */
	b->s = (struct bench_shape){ .H = 8, .dk = 128, .dv = 128, .dn = 128,
		.dr = 64, .dc = 512, .chunk = 64, .block = 256 };
}

/* Every selected mechanism at every T, in increasing T so that the
 * reference's rate is known before its long runs are predicted. */
static int measure_all(struct bench *b)
{
	int64_t T[MAX_T];
	int nT = measure_list(&b->o, T), failed = 0;
	double ref_rate[4] = { 0 };

	for (int m = 0; m < 4; m++)
		for (int i = 0; b->o.mech[m] && i < nT && b->nrows < MAX_ROWS; i++) {
			struct row *r = &b->rows[b->nrows++];

			r->v = (lca_variant)m;
			r->T = T[i];
			r->for_peer = !has_T(&b->o, T[i]);
			measure_row(b, r, ref_rate);
			failed |= r->cpu_rc != 0;
		}
	return failed;
}

/* The f32 decode's drift from f64 over a long run (bench/drift.c). */
static void print_drift(lca_variant v, int64_t T)
{
	struct drift d;
	lca_status s = drift_run(v, T, 1, &d);
	const char *name = v == LCA_DELTANET ? "deltanet" : "lightning";

	if (s != LCA_OK) {
		printf("drift %-9s n/a (%s)\n", name, lca_strerror(s));
		return;
	}
	printf("drift %-9s f32 decode vs f64, %lld tokens (H=1, dk=dv=%d): "
		"max |o32 - o64| %.2e, max |o| %.3g, bound %.0e (lcattn(7))\n", name,
		(long long)d.T, DRIFT_DK, d.maxabs, d.maxref,
		v == LCA_DELTANET ? DRIFT_BOUND_DELTANET : DRIFT_BOUND_LIGHTNING);
}

/* --phase decode: the context lengths given (default 1K to 256K), every
 * selected mechanism, CSV in the prefill bench's columns. */
static int run_decode(struct bench *b)
{
	static const int64_t decode_T[] = { 1024, 4096, 16384, 65536, 262144 };
	const int64_t *T = b->o.T;
	int nT = b->o.nT, nv = 0, rc;
	lca_variant vs[4];
	FILE *csv = NULL;

	if (!b->o.T_given) {  /* --quick left its prefill list in o.T */
		T = decode_T;
		nT = b->o.quick ? 2 : 5;
	}
	for (int m = 0; m < 4; m++)
		if (b->o.mech[m])
			vs[nv++] = (lca_variant)m;
	if (b->o.csv) {
		if (!(csv = fopen(b->o.csv, "w"))) {
			fprintf(stderr, "lcattn bench: cannot write %s\n", b->o.csv);
			return 1;
		}
		fprintf(csv, "mechanism,phase,backend,dtype,T,H,dk,dv,seconds,flops,bytes,gflops,"
			"roofline_frac,speedup_vs_ref,peak_rss_mb\n");
	}
	rc = bench_decode(&b->s, T, nT, vs, nv, b->o.dtype, b->o.quick ? 5 : 21, &b->c, csv);
	for (int a = 0; a < nv; a++)
		if (vs[a] == LCA_DELTANET || vs[a] == LCA_LIGHTNING)
			print_drift(vs[a], b->o.quick ? 20000 : 1000000);
	if (csv && fclose(csv))
		rc = 1;
	return rc;
}

/* --phase serve: --quick shortens the lengths unless they were given. */
static int run_serve(struct bench *b)
{
	struct serve_opts *so = &b->o.so;

	memcpy(so->mech, b->o.mech, sizeof so->mech);
	if (b->o.so_reps)
		so->reps = b->o.reps;
	else if (b->o.quick)
		so->reps = 3;
	if (b->o.quick && so->ctx_median == 8192 && so->ctx_max == 65536)
		so->ctx_median = 2048, so->ctx_max = 8192;
	if (b->o.quick && so->long_ctx == 32768)
		so->long_ctx = 8192;
	return bench_serve(&b->s, so, &b->c);
}

int tool_bench(int argc, char **argv)
{
	struct bench *b = calloc(1, sizeof *b);
	struct bench_ceiling end;
	int rc;

	if (!b) {
		fprintf(stderr, "lcattn bench: out of memory\n");
		return 2;
	}
	defaults(b);
	if ((rc = parse_args(argc, argv, &b->o))) {
		free(b);
		return rc == 1 ? 0 : rc;
	}
	print_title(b);
	if (bench_ceilings(&b->c)) {
		fprintf(stderr, "lcattn bench: measuring the machine's ceilings failed\n");
		free(b);
		return 1;
	}
	print_ceiling("at start:", &b->c);
	if (b->o.decode) {
		rc = run_decode(b);
		free(b);
		return rc;
	}
	if (b->o.serve) {
		rc = run_serve(b);
		free(b);
		return rc;
	}
	rc = measure_all(b) ? 1 : 0;
	if (bench_ceilings(&end) == 0) {
		print_ceiling("at end:", &end);
		merge_ceilings(&b->c, &end);
	}
	print_header(b);
	for (int i = 0; i < b->nrows; i++)
		print_row(b, &b->rows[i]);
	print_scaling(b);
	print_memory(b);
	print_roofline_note(b);
	print_phases(b);
	if (b->o.backward && b->o.mech[LCA_MLA]) {
		int64_t T[MAX_T];

		bench_mla_forms(&b->s, b->o.dtype, T, measure_list(&b->o, T));
	}
	if (!b->o.backward)
		run_peer(b);
	if (b->o.csv && write_csv(b, b->o.csv))
		rc = 1;
	free(b);
	return rc;
}
