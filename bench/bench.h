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

/* Run fn(arg, res) in a forked child and copy size bytes of *res back
 * through a pipe. Returns 0 if the child reported, -2 if alarm_s ran out,
 * -1 if it failed otherwise; *res is then left as the caller set it. */
int bench_fork(void (*fn)(void *arg, void *res), void *arg, void *res,
	size_t size, unsigned alarm_s);

/* Peak resident set of the calling process in MiB (VmHWM), or -1. */
double bench_peak_rss_mb(void);

double bench_now(void);

/* ---- ceiling.c ---- */

/* Measure sgemm/dgemm rates and the copy bandwidth in a forked child.
 * Returns 0 on success. */
int bench_ceilings(struct bench_ceiling *c);

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

#endif
