/* tool.h - shared pieces of the lcattn command (not part of the library). */
#ifndef LCATTN_TOOL_H
#define LCATTN_TOOL_H

#include "lcattn.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct lcio_case;

/* Subcommands: each takes argc/argv from the subcommand name on and returns
 * the process exit status (0 ok, 1 numerical failure, 2 usage/input error). */
int tool_demo(int argc, char **argv);
int tool_gen(int argc, char **argv);
int tool_run(int argc, char **argv);
int tool_check(int argc, char **argv);
int tool_bench(int argc, char **argv);
int tool_probe(int argc, char **argv);
int tool_cost(int argc, char **argv);
int tool_report(int argc, char **argv);
int tool_checkpoint(int argc, char **argv);

/* ---- run.c: names and one forward pass over a golden case ---- */

/* 0 and *out set if s names a backend ("ref", "cpu", "cuda") / dtype
 * ("f64", "f32", "bf16") / algo ("auto", "naive", "absorbed", "recurrent",
 * "chunked"), else -1. */
int tool_parse_backend(const char *s, lca_backend *out);
int tool_parse_dtype(const char *s, lca_dtype *out);
int tool_parse_algo(const char *s, lca_algo *out);
const char *tool_backend_name(lca_backend b);
const char *tool_dtype_name(lca_dtype d);

/* x rounded to bfloat16 (nearest even; x finite), as a double. */
double tool_bf16_round(double x);
/* 1 if the cuda backend keeps tensor name in the plan's dtype when that is
 * bf16; 0 for the recurrent state (state0, state), kept in float32. */
int tool_bf16_stored(const char *name);

/* Run the inputs of c (float64, converted to dtype on the way in) through
 * backend/dtype/algo and store the outputs, converted back to float64, in
 * out[i] (c->out[i].n doubles each). Tensors travel through
 * lca_buffer_alloc/copy, so the cuda backend gets device memory (and its
 * float32 recurrent state). resolved, if not NULL, receives the plan's
 * parameters. On failure why receives lca_last_error()'s message. */
lca_status tool_compute(const struct lcio_case *c, lca_backend backend,
	lca_dtype dtype, lca_algo algo, double *const out[], lca_params *resolved,
	char *why, size_t whylen);

/* ---- run_mpi.c: lcattn run --mpi (liblcattn_mpi when configure found
 * MPI; else every call below says so) ---- */

/* MPI_Init unless MPI is running; -1 with a message when the tool was
 * built without MPI or MPI_Init failed. tool_mpi_end() finalizes what
 * tool_mpi_begin() initialised. */
int tool_mpi_begin(char *why, size_t whylen);
void tool_mpi_end(void);
int tool_mpi_rank(void);
/* 1 on every rank when ok is 1 on every rank. */
int tool_mpi_all(int ok);
/* tool_compute() over the ranks of MPI_COMM_WORLD: each sequence split in
 * contiguous runs or (zigzag) zigzag chunks, the outputs in out[] on rank
 * 0 only; every rank returns the same status. */
lca_status tool_compute_mpi(const struct lcio_case *c, lca_backend backend,
	lca_dtype dtype, lca_algo algo, int zigzag, double *const out[],
	lca_params *resolved, char *why, size_t whylen);

/* ---- check.c: the tolerance rule's error measure ---- */

/* Normwise error ||x - ref||_2 / ||ref||_2 (||x - ref||_2 when ref is all
 * zero) over the entries where ref is finite, and the max-abs error in
 * *maxabs. -inf entries must match exactly: the first index where only one
 * of x, ref is -inf goes to *mismatch (else -1) and makes the error +inf.
 * Any NaN makes both results NaN, which never passes a bound. */
double tool_normwise(const double *x, const double *ref, int64_t n,
	double *maxabs, int64_t *mismatch);

/* ---- probe_metrics.c: the probes' numbers for golden files ---- */

struct lcio_metric;

/* Probe metrics of case c computed from its own inputs (lcattn-probes(7),
 * GOLDEN METRICS) into m[0 .. max); the count, or -1 with a message in why. */
int tool_probe_metrics(const struct lcio_case *c, struct lcio_metric *m, int max,
	char *why, size_t whylen);
/* `lcattn probe golden FILE...`: recompute and compare to 1e-12. */
int tool_probe_golden(int argc, char **argv);

/* ---- cost.c: presets of the cost model (lcattn cost, lcattn report) ---- */

/* A hybrid stack: layer l runs pattern[l % strlen(pattern)] (S softmax,
 * M mla, D deltanet, L lightning) with that mechanism's shape (H, Hkv, Hk,
 * dk, dv, dn, dr, dc of the matching member). */
struct tool_preset {
	const char *name, *pattern;
	int64_t layers;
	double active;        /* active parameters per token */
	const char *what;
	lca_params softmax, mla, deltanet, lightning;
};

/* Modelled answers of a preset at context / generation length n. */
struct tool_answers {
	double attn_token, model_token;  /* FLOPs per generated token at context n */
	double attn_gen, model_gen;      /* summed over a generation of n tokens */
	double share;                    /* attention share of model_token */
	double state_bytes;              /* cache/state per sequence, bf16 */
};

extern const struct tool_preset tool_presets[];
extern const int tool_npresets;
int tool_layer_variant(char c, lca_variant *v);
lca_status tool_shape_plan(lca_variant v, const lca_params *shape, lca_backend be,
	lca_dtype dt, lca_plan **plan);
int tool_preset_cost(const struct tool_preset *pr, lca_phase ph, int64_t n,
	lca_cost *sum);
int tool_preset_answers(const struct tool_preset *pr, int64_t n,
	struct tool_answers *a);
int tool_cost_tables(FILE *f, FILE *csv, const int64_t *ns, int nn);
int tool_cost_ratios(FILE *f, const int64_t *ns, int nn);
int tool_cost_claim(FILE *f);
/* The bf16 bytes rank r of P sends over the preset's layers in a causal
 * prefill of n tokens split in contiguous runs or (zigzag, n >= 2P) zigzag
 * chunks (`lcattn cost --ranks [--zigzag]`); NaN for a bad pattern. */
double tool_preset_rank_bytes(const struct tool_preset *pr, int64_t n, int P, int r,
	int zigzag);

/* ---- report_cp.c: the report's "Beyond one machine" section ---- */

/* Modelled communication against compute per rank for every preset at
 * 128K and 1M tokens over 8, 64 and 512 ranks; peak_gflops the rate the
 * compute times use (max of sgemm and the FMA loop; NaN: no times). */
void tool_report_ranks(FILE *f, double peak_gflops);

#endif
