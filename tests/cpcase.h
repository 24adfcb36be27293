/*
 * cpcase.h - the cases of the context-parallel tests, shared by the
 * loopback test (check_cp_loop.c) and the mpirun test (mpi_cp.c): inputs
 * of one sequence drawn from the test seed, each rank's run, the rank's
 * call through a transport-specific function, the single-process call,
 * the tolerance rule and the bytes each rank must send.
 */
#ifndef LCATTN_CPCASE_H
#define LCATTN_CPCASE_H

#include <stddef.h>
#include <stdint.h>

#include "lcattn.h"

struct cp_conf {
	const char *name;
	lca_variant v;
	int64_t H, Hg, dk, dv;   /* Hg: softmax Hkv, deltanet Hk */
	int64_t dn, dr, dc;      /* mla */
	int causal;
	int64_t window, rope_dim;
	lca_rope_style style;
	lca_algo algo;           /* mla on every backend */
	int64_t tile;            /* deltanet chunk, lightning block */
	int state0;              /* deltanet, lightning: give state0 */
};

extern const struct cp_conf cp_confs[];
extern const int cp_nconf;

/* A batch of T tokens (one sequence, or packed by cu [nseq + 1]) and how
 * the ranks split it: double inputs, and typed copies. */
struct cp_data {
	const struct cp_conf *c;
	lca_dtype t;
	size_t es;
	int64_t T;
	int zigzag;              /* the layout: contiguous (0) or zigzag */
	int64_t *cu, nseq;       /* NULL, 1: one sequence */
	const int64_t *cuts;     /* contiguous: rank r holds [cuts[r], cuts[r + 1]);
	                            NULL: near-equal runs (cp_split) */
	int nin;
	double *x[6];
	int64_t row[6];          /* values per token (0: a whole-call tensor) */
	int64_t n[6];
	void *tx[6];
	double *state0;
	void *tstate0;
	int64_t on, ln, sn;      /* values of o, lse, state (all sequences) */
};

/* A rank's layout as the tests hand it to a transport. */
struct cp_layout {
	int64_t start, len;
	int zigzag;
	int64_t T;
	const int64_t *cu;
	int64_t nseq;
};

lca_params cp_params(const struct cp_conf *c, lca_backend b, lca_dtype t);
void cp_make(struct cp_data *d, const struct cp_conf *c, lca_dtype t, int64_t T);
/* The same with a layout kind and a packed batch (cu NULL: one sequence;
 * copied). */
void cp_make_batch(struct cp_data *d, const struct cp_conf *c, lca_dtype t, int64_t T,
	int zigzag, const int64_t *cu, int64_t nseq);
void cp_free(struct cp_data *d);

/* Rank r of P's run: near-equal contiguous runs (empty when T < P). */
void cp_split(int64_t T, int P, int r, int64_t *start, int64_t *len);

/* Rank r of P's runs under d's layout (zigzag: chunks r and 2P - 1 - r
 * of 2P, touching chunks one run): their number, g[] and n[]; *lay the
 * layout the rank passes. */
int cp_runs(const struct cp_data *d, int P, int r, int64_t g[2], int64_t n[2],
	struct cp_layout *lay);

/* A transport's call for rank r: in[] the rank's own inputs in argument
 * order (the variant's), outputs its own rows; *bytes its payload sent. */
typedef lca_status (*cp_call_fn)(void *ctx, lca_variant v, const lca_plan *plan,
	const struct cp_layout *lay, const void *const *in, const void *state0, void *o,
	void *lse, void *state, uint64_t *bytes);

/* Run rank r's call (its rows gathered from the batch) and put its rows
 * into the global typed o [T][H][dv] and lse [T][H]; state
 * [nseq][H][dk][dv] is passed on every rank (each writes those it owns). */
lca_status cp_rank(const struct cp_data *d, const lca_plan *plan, int P, int r,
	cp_call_fn f, void *ctx, void *o, void *lse, void *state, uint64_t *bytes);

/* The plain single-process call of plan on the whole sequence. */
lca_status cp_single(const struct cp_data *d, const lca_plan *plan, void *o, void *lse,
	void *state);

/* The payload rank r of P must send by the span rule of
 * lca_mpi_softmax_forward(3), worked token by token. */
uint64_t cp_bytes_formula(const struct cp_data *d, int P, int r);

/* The closed formulas of lca_mpi_softmax_forward(3) (and lcattn cost
 * --ranks), where one applies (one sequence; zigzag: causal without a
 * window and T >= 2P, or not causal); 0 with *ok = 0 elsewhere. */
uint64_t cp_bytes_closed(const struct cp_data *d, int P, int r, int *ok);

/* Typed outputs against the double reference by the tolerance rule;
 * 0 when within, else 1 with a message in msg. */
int cp_judge(const struct cp_data *d, const void *o, const void *lse, const void *state,
	char *msg, size_t size);

/* The last cp_judge's normwise errors and tolerances: o, then lse
 * (softmax, mla) or state (deltanet, lightning). */
extern double cp_err[2], cp_tol[2];

/* Typed buffers for o, lse, state of d's sizes, zero-filled. */
void cp_outputs(const struct cp_data *d, void **o, void **lse, void **state);

#endif
