/*
 * bench.h - `lcattn bench`: pieces shared by bench.c (the command),
 * ceiling.c (the machine's own limits) and mech.c (one timed mechanism).
 * Part of the tool, not of the library.
 */
#ifndef LCATTN_BENCH_H
#define LCATTN_BENCH_H

#include "lcattn.h"

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

/* Head shape of every benchmarked mechanism (one set for all T). */
struct bench_shape {
	int64_t H;      /* heads (query and key/value heads: no GQA here) */
	int64_t dk, dv; /* softmax, deltanet, lightning head sizes; mla dv */
	int64_t dn, dr, dc; /* mla: no-rope q/k part, rope part, latent */
	int64_t chunk;  /* deltanet chunk */
	int64_t block;  /* lightning block */
};

/* How one (mechanism, T, backend) measurement is timed. */
struct bench_timing {
	int reps;           /* median of at least this many calls */
	double long_s;      /* ... unless one call takes longer: stop there */
	double min_total_s; /* fast cases: keep calling until this much time */
	int check_finite;   /* params.check_finite of the plan */
	int backward;       /* time the backward call (softmax, mla) */
};

/* What a measurement child reports back. */
struct bench_result {
	int status;     /* lca_status of the calls; -1 the child died */
	int runs;       /* calls in the median */
	double seconds; /* median seconds per call */
	double rss_mb;  /* the child's peak resident set, MiB */
	char msg[200];  /* lca_last_error() or why the child died */
};

/* The machine's ceilings, measured in this run. */
struct bench_ceiling {
	int gemm_n;          /* m = n = k of the GEMM */
	double sgemm_gflops; /* best of 5 cblas_sgemm, 2 m n k flops */
	double dgemm_gflops;
	double copy_mib;     /* size of the copy */
	int copy_threads;    /* threads sharing the copy */
	double bw_gbs;       /* best of 5, bytes = 2 x size (read + write) */
	char fma_isa[16];    /* lca_cpu_isa(): the width of the FMA loop */
	int fma_threads;     /* threads of the FMA loop: those a cpu plan gets */
	int fma_acc;         /* independent vector accumulators of the loop */
	int fma_s_lanes, fma_d_lanes; /* f32, f64 lanes of one vector */
	double fma_s_gflops; /* best of 5 register-only FMA loop, f32: */
	double fma_d_gflops; /* flops = 2 x lanes x FMAs, over all threads */
};

/* ---- mech.c ---- */

/* Model flops of one causal prefill of T tokens (see the comments in mech.c
 * and bench_formulas()). */
double bench_flops(lca_variant v, const struct bench_shape *s, int64_t T);

/* Lower bound on memory traffic: every input read once, every output
 * written once, esize bytes an element. */
double bench_bytes(lca_variant v, const struct bench_shape *s, int64_t T,
	size_t esize);

/* Human-readable statement of both formulas, one line each. */
const char *const *bench_formulas(void);

/* The same for the backward call (--phase backward; softmax and mla):
 * FlashAttention-2's count, 2.5 times the forward's attention products,
 * plus for mla the decompression and its adjoint. */
double bench_flops_bwd(lca_variant v, const struct bench_shape *s, int64_t T);
double bench_bytes_bwd(lca_variant v, const struct bench_shape *s, int64_t T,
	size_t esize);
const char *const *bench_formulas_bwd(void);

/* Time prefill of T tokens (its backward with tm->backward) on
 * backend/dtype in a forked child (so the
 * peak RSS is this measurement's own); alarm_s > 0 kills it after that
 * many seconds. Fills *r; returns as bench_fork(). */
int bench_measure(lca_variant v, const struct bench_shape *s, int64_t T,
	lca_backend backend, lca_dtype dtype, const struct bench_timing *tm,
	unsigned alarm_s, struct bench_result *r);

/* A profiled prefill (lca_profile_read(3)): the phases with time in
 * them, their seconds summed over the threads, and the wall time of the
 * profiled calls; on/off is the fastest profiled call over the fastest
 * unprofiled one, alternated in the same child. */
enum { BENCH_MAX_PHASES = 32 };
struct bench_prof {
	int status;                 /* lca_status; -1 the child died */
	int nphase;
	char name[BENCH_MAX_PHASES][32];
	double seconds[BENCH_MAX_PHASES];
	int64_t count[BENCH_MAX_PHASES];
	int calls;                  /* profiled calls summed */
	double wall_s;              /* their wall time, summed */
	double on_s, off_s;         /* fastest profiled and unprofiled call */
	double clock_ns;            /* one CLOCK_MONOTONIC read, the cost of a mark */
	char msg[200];
};

/* Profile prefill of T tokens on the cpu backend in a forked child:
 * pairs of calls while they took under budget_s seconds, at least one. */
int bench_profile(lca_variant v, const struct bench_shape *s, int64_t T,
	lca_dtype dtype, int check_finite, double budget_s, unsigned alarm_s,
	struct bench_prof *r);

/* Run fn(arg, res) in a forked child and copy size bytes of *res back
 * through a pipe. Returns 0 if the child reported, -2 if alarm_s ran out,
 * -1 if it failed otherwise; *res is then left as the caller set it. */
int bench_fork(void (*fn)(void *arg, void *res), void *arg, void *res,
	size_t size, unsigned alarm_s);

/* Peak resident set of the calling process in MiB (VmHWM), or -1. */
double bench_peak_rss_mb(void);

double bench_now(void);

/* ---- ceiling.c ---- */

/* Measure sgemm/dgemm rates, the FMA loop's f32/f64 rates and the copy
 * bandwidth in a forked child. Returns 0 on success. */
int bench_ceilings(struct bench_ceiling *c);

/* The compute peak every roofline uses: max(sgemm, FMA loop) in f32
 * (dbl = 0), max(dgemm, FMA loop) in f64. */
double bench_peak_gflops(const struct bench_ceiling *c, int dbl);

/* Threads a cpu plan with nthreads 0 runs on (OMP_NUM_THREADS, else the
 * CPUs of the affinity mask, capped by those CPUs). */
int bench_kernel_threads(void);

/* ---- decode.c ---- */

/* --phase decode: time per generated token at each context length in Ts
 * for the variants vs (cpu backend, dtype), median of reps steps; prints a
 * table and, with csv, rows in the prefill bench's columns. */
int bench_decode(const struct bench_shape *s, const int64_t *Ts, int nT,
	const lca_variant *vs, int nv, lca_dtype dtype, int reps,
	const struct bench_ceiling *c, FILE *csv);

/* ---- stack.c ---- */

/* A hybrid stack timed end to end (what it includes: stack.c). */
struct bench_stack {
	double prefill_s;     /* measured: the prefill of T tokens, all layers */
	double decode_s;      /* measured: median single-token step, all layers */
	double prefill_glue_s, decode_glue_s; /* of which outside the layers'
	                         calls (norms, residual adds, slices; decode: mean) */
	double prefill_flops, prefill_bytes;  /* modelled: lca_plan_cost(3) */
	double decode_flops, decode_bytes;    /* summed over the layers */
	char msg[200];        /* why the run failed */
};

/* Run the layers of sched (one letter a layer: S softmax, M mla, D
 * deltanet, L lightning) at shape s (dk = dn = dv) on the cpu backend in
 * f32: a prefill of T tokens, two untimed decode steps, then `steps`
 * (<= 64) timed ones. The decode model is taken at the context of the
 * median step. Returns 0, or -1 with r->msg set and the times NaN. */
int bench_stack_run(const char *sched, const struct bench_shape *s, int64_t T,
	int steps, struct bench_stack *r);

/* The cpu mla backward of a few queries over each T keys, in the form
 * AUTO picks and in both named forms (mla_forms.c). */
void bench_mla_forms(const struct bench_shape *s, lca_dtype dtype,
	const int64_t *T, int nT);

/* ---- serve_io.c: inputs and steps shared by serve.c and sessions.c ---- */

/* A step's tensors (f32), in the step call's order: softmax q k v;
 * mla q_nope q_rope ckv k_rope w_uk w_uv; deltanet q k v g beta;
 * lightning q k v slope; then the outputs o and lse. */
struct serve_in {
	float *a, *b, *c, *d, *e, *f, *o, *lse;
};

/* Inputs of `rows` new tokens at shape p (seeded, finite); -1 if out of
 * memory (nothing left allocated). */
int serve_inputs(lca_variant v, const lca_params *p, int64_t rows, uint64_t seed,
	struct serve_in *in);
void serve_inputs_free(struct serve_in *in);
/* One step of T tokens packed by cu (NULL: one sequence). */
lca_status serve_step(const lca_plan *plan, lca_cache *c, lca_variant v, int64_t T,
	const struct serve_in *in, const int64_t *cu);
/* A cpu f32 plan of shape (H, Hkv, Hk, dk, dv, dn, dr, dc read from it);
 * window (softmax, mla) > 0 masks all but the last `window` keys. */
lca_status serve_plan(lca_variant v, const lca_params *shape, int64_t window,
	lca_plan **plan);
/* A uniform draw in [0, 1) from the generator state *st. */
double serve_uniform(uint64_t *st);

/* ---- serve.c: --phase serve ---- */

struct serve_opts {
	int64_t B[8];          /* batch sizes (sequences decoding together) */
	int nB;
	int64_t ctx_median;    /* lognormal median of the mixed lengths */
	int64_t ctx_max;       /* ... capped here */
	double ctx_sigma;      /* ... log-space spread */
	int64_t long_ctx;      /* also every sequence at this length (B long_B); 0: no */
	int64_t long_B;
	uint64_t seed;
	int reps;              /* timed steps (median) */
	int mech[4];           /* 1 = selected, indexed by lca_variant */
	double budget;         /* bytes, sessions-that-fit table */
	int64_t fit_ctx[4];    /* contexts of that table */
	int nfit;
};

/* Throughput rows, then the sessions-that-fit table; 0 if every row ran. */
int bench_serve(const struct bench_shape *s, const struct serve_opts *o,
	const struct bench_ceiling *c);

/* ---- sessions.c: how many sequences fit in a byte budget ---- */

/* One stack (a mechanism alone or a preset) at one context. */
struct fit_row {
	const char *name;
	int64_t ctx;
	double seq_bytes[2];   /* modelled bytes a sequence holds: f32, bf16 storage */
	int64_t model[2];      /* floor(budget / seq_bytes) */
	int64_t meas[2];       /* measured at reduced width; -1: failed */
	int exact;             /* the reduction scales every size exactly */
	char msg[160];         /* why a measurement failed */
};

/* Rows for the four mechanisms at shape s (NULL: none) and every preset
 * of `lcattn cost` at each of the nctx contexts; measure = 0 leaves
 * meas at -1. Returns the rows written (at most max), -1 on a failed
 * plan. */
int bench_fit_rows(const struct bench_shape *s, double budget, const int64_t *ctx,
	int nctx, int measure, struct fit_row *rows, int max);
/* The table: plain text (md = 0) or Markdown, with its formulas. */
void bench_fit_print(FILE *f, int md, double budget, const struct fit_row *rows, int n);

#endif
