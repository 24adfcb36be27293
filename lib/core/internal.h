/*
 * internal.h - declarations shared inside liblcattn; never installed.
 *
 * The public calls in lib/core validate every argument, resolve defaults
 * into the plan and then hand already-checked, double-precision tensors to
 * a backend kernel declared here. Kernels therefore never re-validate; they
 * may only fail with LCA_ERR_NOMEM (or LCA_ERR_INTERNAL for a broken
 * invariant), and a recurrent kernel that fails has written no state (it
 * allocates before it computes): the decode caches (lib/core/cache.c) rely
 * on this to update their states in place, state0 == state.
 */
#ifndef LCATTN_INTERNAL_H
#define LCATTN_INTERNAL_H

#include "lcattn.h"

#include <stdarg.h>
#include <stdint.h>

/* A plan is its parameters with every default resolved:
 * Hkv and Hk are set (never 0), scale > 0, rope_dim >= 0 and even,
 * chunk and block > 0, algo never LCA_ALGO_AUTO except for mla on the
 * cpu backend, where AUTO is decided per call by lcai_mla_pick(). */
struct lca_plan {
	lca_params p;
};

/* ---- errors (lib/core/error.c) ---- */

/* Record a printf-style detail message for this thread and return status. */
lca_status lcai_fail(lca_status status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Clear this thread's detail message (every public call starts with it). */
void lcai_clear_error(void);

/* ---- checked size arithmetic (lib/core/size.c) ---- */

/* *out = a * b; returns 0 on overflow of int64_t (a, b >= 0). */
int lcai_mul(int64_t a, int64_t b, int64_t *out);
/* Product of n non-negative factors; returns 0 on overflow. */
int lcai_mul_n(int64_t *out, int n, ...);

/* ---- argument checks (lib/core/check.c) ----
 * Shared by the forward calls and the cache step calls. fn names the public
 * call in messages. Every check returns LCA_OK or records a message that
 * names the argument and returns the error status.
 */

/* One tensor argument: its name for messages, pointer and element count. */
struct lcai_targ {
	const char *name;
	const void *ptr;
	int64_t n;
	int optional;
	int is_state;   /* recurrent state: f32 on the cuda backend */
};

/* Bytes of one element: 8 (f64), 4 (f32), 2 (bf16). */
size_t lcai_dtype_size(lca_dtype t);
/* NULL pointers (unless optional) and byte sizes that overflow size_t. */
lca_status lcai_check_targs(const char *fn, const lca_params *p,
	const struct lcai_targ *a, int na);
/* What a softmax or mla call (forward or backward) checks first: a plan of
 * variant v, Tq and Tk >= 1, Tq = Tk under cu_seqlens; then the query and
 * key offsets resolved as lcai_resolve_cu() does. */
lca_status lcai_check_attn_call(const char *fn, const lca_plan *plan, lca_variant v,
	int64_t Tq, int64_t Tk, const int64_t *cu_seqlens, int64_t nseq,
	int64_t oneq[2], int64_t onek[2], const int64_t **cuq, const int64_t **cuk,
	int64_t *n);
/* The same for deltanet and lightning: T >= 1, one set of offsets. */
lca_status lcai_check_linear_call(const char *fn, const lca_plan *plan, lca_variant v,
	int64_t T, const int64_t *cu_seqlens, int64_t nseq, int64_t one[2],
	const int64_t **cu, int64_t *n);
/* No output a[nin .. na) may share a byte with any other argument, since
 * kernels read inputs after writing outputs; the exception is a state
 * output that is exactly its state input (is_state both). LCA_ERR_ARG. */
lca_status lcai_check_overlap(const char *fn, const lca_params *p,
	const struct lcai_targ *a, int nin, int na);
/* With p->check_finite, the first NaN/Inf of a[0 .. na) (NULLs skipped);
 * in the same pass amax[i] (when amax is not NULL) gets max |a[i]| (0 for
 * a NULL tensor). Without check_finite nothing is scanned, amax untouched. */
lca_status lcai_check_finite(const char *fn, const lca_params *p,
	const struct lcai_targ *a, int na, double *amax);
/* max |x| of n host elements of type t, up to the first non-finite one. */
double lcai_maxabs(const void *x, int64_t n, lca_dtype t);
/* The range rule (LCA_ERR_RANGE): could a logit, a scaled, rotated or
 * projected vector or a sum of values overflow the working type, given
 * the inputs' max |x| (m, in argument order: softmax q k v; mla q_nope
 * q_rope ckv k_rope w_uk w_uv) and the keys a query row sees at most? */
lca_status lcai_check_range_softmax(const char *fn, const lca_params *p,
	const double m[3], int64_t nkeys);
lca_status lcai_check_range_mla(const char *fn, const lca_params *p,
	const double m[6], int64_t nkeys);
/* *out = a b c d, LCA_ERR_OVERFLOW naming the tensor on wrap. */
lca_status lcai_count(const char *fn, const char *name, int64_t *out,
	int64_t a, int64_t b, int64_t c, int64_t d);
/* plan != NULL and made for variant v. */
lca_status lcai_check_plan(const char *fn, const lca_plan *plan, lca_variant v);
/* A token count T >= 1. */
lca_status lcai_check_len(const char *fn, const char *name, int64_t T);
/* Validate cu_seqlens[nseq + 1] over T tokens, or make the single sequence
 * {0, T} in one[] when cu_seqlens is NULL; *cu and *n receive what the
 * kernels should use. */
lca_status lcai_resolve_cu(const char *fn, const int64_t *cu_seqlens,
	int64_t nseq, int64_t T, int64_t one[2], const int64_t **cu, int64_t *n);
/* Every one of the n elements of x (plan dtype) satisfies sign * x >= 0;
 * rule says so in the message ("g <= 0"). */
lca_status lcai_check_sign(const char *fn, const char *name, const void *x,
	int64_t n, const lca_params *p, int sign, const char *rule);

/* ---- RoPE (lib/core/rope.c) ---- */

/* Rotate the first rope_dim coordinates of x (in place) as at position pos:
 * frequency of pair i is theta^(-2i/rope_dim), pairs by style. rope_dim == 0
 * leaves x unchanged. Double precision, no tricks: the reference uses it. */
void lcai_rope_apply(double *x, int64_t rope_dim, lca_rope_style style,
	double theta, int64_t pos);
/* The same rotation on float data: cos and sin rounded to float, products
 * and sums in float. */
void lcai_rope_apply_f(float *x, int64_t rope_dim, lca_rope_style style,
	double theta, int64_t pos);

/* ---- reference kernels (lib/ref), double precision ----
 *
 * Sequences: sequence n covers queries cu_q[n] .. cu_q[n+1]-1 and keys
 * cu_k[n] .. cu_k[n+1]-1 (recurrent variants: one cu). cu arrays are never
 * NULL here; a single sequence arrives as {0, T}. Within a sequence query i
 * of tq sits at position tk - tq + i and key s at position s.
 * state0 may be NULL (zeros) and may alias state; state may be NULL.
 */
lca_status lcai_ref_softmax(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const double *q, const double *k,
	const double *v, double *o, double *lse);

lca_status lcai_ref_mla_naive(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const double *q_nope,
	const double *q_rope, const double *ckv, const double *k_rope,
	const double *w_uk, const double *w_uv, double *o, double *lse);
lca_status lcai_ref_mla_absorbed(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const double *q_nope,
	const double *q_rope, const double *ckv, const double *k_rope,
	const double *w_uk, const double *w_uv, double *o, double *lse);

lca_status lcai_ref_deltanet_recurrent(const lca_params *p, const int64_t *cu,
	int64_t nseq, const double *q, const double *k, const double *v,
	const double *g, const double *beta, const double *state0, double *o,
	double *state);
lca_status lcai_ref_deltanet_chunked(const lca_params *p, const int64_t *cu,
	int64_t nseq, const double *q, const double *k, const double *v,
	const double *g, const double *beta, const double *state0, double *o,
	double *state);

lca_status lcai_ref_lightning_recurrent(const lca_params *p, const int64_t *cu,
	int64_t nseq, const double *q, const double *k, const double *v,
	const double *slope, const double *state0, double *o, double *state);
lca_status lcai_ref_lightning_blockwise(const lca_params *p, const int64_t *cu,
	int64_t nseq, const double *q, const double *k, const double *v,
	const double *slope, const double *state0, double *o, double *state);

/* The same kernels compiled over float (lib/ref/real.h): the reference
 * algorithm run in float32, which sets the f32 tolerance of DESIGN.md. */
lca_status lcai_ref32_softmax(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const float *q, const float *k,
	const float *v, float *o, float *lse);

lca_status lcai_ref32_mla_naive(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const float *q_nope,
	const float *q_rope, const float *ckv, const float *k_rope,
	const float *w_uk, const float *w_uv, float *o, float *lse);
lca_status lcai_ref32_mla_absorbed(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const float *q_nope,
	const float *q_rope, const float *ckv, const float *k_rope,
	const float *w_uk, const float *w_uv, float *o, float *lse);

lca_status lcai_ref32_deltanet_recurrent(const lca_params *p, const int64_t *cu,
	int64_t nseq, const float *q, const float *k, const float *v,
	const float *g, const float *beta, const float *state0, float *o,
	float *state);
lca_status lcai_ref32_deltanet_chunked(const lca_params *p, const int64_t *cu,
	int64_t nseq, const float *q, const float *k, const float *v,
	const float *g, const float *beta, const float *state0, float *o,
	float *state);

lca_status lcai_ref32_lightning_recurrent(const lca_params *p, const int64_t *cu,
	int64_t nseq, const float *q, const float *k, const float *v,
	const float *slope, const float *state0, float *o, float *state);
lca_status lcai_ref32_lightning_blockwise(const lca_params *p, const int64_t *cu,
	int64_t nseq, const float *q, const float *k, const float *v,
	const float *slope, const float *state0, float *o, float *state);

/* ---- reference backward (lib/ref/NAME_bwd.c) ----
 *
 * Hand-written adjoints of the reference kernels above, in the same real
 * type: the gradients of L = sum(o * dout) + sum(state * dstate) (dstate
 * NULL = zeros) with respect to every input, each overwritten (never
 * accumulated into) and shaped like its input; dstate0 may be NULL (not
 * wanted); state0 NULL = zeros. Arguments, cu arrays and positions as for
 * the forward kernels. Each backward runs the adjoint of its own forward
 * computation (recurrent, chunked, naive, absorbed), so two computations
 * of one gradient check each other.
 */
lca_status lcai_ref_softmax_bwd(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const double *q, const double *k,
	const double *v, const double *dout, double *dq, double *dk, double *dv);
lca_status lcai_ref_mla_naive_bwd(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const double *q_nope,
	const double *q_rope, const double *ckv, const double *k_rope,
	const double *w_uk, const double *w_uv, const double *dout,
	double *dq_nope, double *dq_rope, double *dckv, double *dk_rope,
	double *dw_uk, double *dw_uv);
lca_status lcai_ref_mla_absorbed_bwd(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const double *q_nope,
	const double *q_rope, const double *ckv, const double *k_rope,
	const double *w_uk, const double *w_uv, const double *dout,
	double *dq_nope, double *dq_rope, double *dckv, double *dk_rope,
	double *dw_uk, double *dw_uv);
lca_status lcai_ref_deltanet_recurrent_bwd(const lca_params *p, const int64_t *cu,
	int64_t nseq, const double *q, const double *k, const double *v,
	const double *g, const double *beta, const double *state0,
	const double *dout, const double *dstate, double *dq, double *dk,
	double *dv, double *dg, double *dbeta, double *dstate0);
lca_status lcai_ref_deltanet_chunked_bwd(const lca_params *p, const int64_t *cu,
	int64_t nseq, const double *q, const double *k, const double *v,
	const double *g, const double *beta, const double *state0,
	const double *dout, const double *dstate, double *dq, double *dk,
	double *dv, double *dg, double *dbeta, double *dstate0);
lca_status lcai_ref_lightning_recurrent_bwd(const lca_params *p, const int64_t *cu,
	int64_t nseq, const double *q, const double *k, const double *v,
	const double *slope, const double *state0, const double *dout,
	const double *dstate, double *dq, double *dk, double *dv, double *dstate0);
lca_status lcai_ref_lightning_blockwise_bwd(const lca_params *p, const int64_t *cu,
	int64_t nseq, const double *q, const double *k, const double *v,
	const double *slope, const double *state0, const double *dout,
	const double *dstate, double *dq, double *dk, double *dv, double *dstate0);

/* The same over float: the f32 reference of the tolerance rule. */
lca_status lcai_ref32_softmax_bwd(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const float *q, const float *k,
	const float *v, const float *dout, float *dq, float *dk, float *dv);
lca_status lcai_ref32_mla_naive_bwd(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const float *q_nope,
	const float *q_rope, const float *ckv, const float *k_rope,
	const float *w_uk, const float *w_uv, const float *dout,
	float *dq_nope, float *dq_rope, float *dckv, float *dk_rope,
	float *dw_uk, float *dw_uv);
lca_status lcai_ref32_mla_absorbed_bwd(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const float *q_nope,
	const float *q_rope, const float *ckv, const float *k_rope,
	const float *w_uk, const float *w_uv, const float *dout,
	float *dq_nope, float *dq_rope, float *dckv, float *dk_rope,
	float *dw_uk, float *dw_uv);
lca_status lcai_ref32_deltanet_recurrent_bwd(const lca_params *p, const int64_t *cu,
	int64_t nseq, const float *q, const float *k, const float *v,
	const float *g, const float *beta, const float *state0,
	const float *dout, const float *dstate, float *dq, float *dk,
	float *dv, float *dg, float *dbeta, float *dstate0);
lca_status lcai_ref32_deltanet_chunked_bwd(const lca_params *p, const int64_t *cu,
	int64_t nseq, const float *q, const float *k, const float *v,
	const float *g, const float *beta, const float *state0,
	const float *dout, const float *dstate, float *dq, float *dk,
	float *dv, float *dg, float *dbeta, float *dstate0);
lca_status lcai_ref32_lightning_recurrent_bwd(const lca_params *p, const int64_t *cu,
	int64_t nseq, const float *q, const float *k, const float *v,
	const float *slope, const float *state0, const float *dout,
	const float *dstate, float *dq, float *dk, float *dv, float *dstate0);
lca_status lcai_ref32_lightning_blockwise_bwd(const lca_params *p, const int64_t *cu,
	int64_t nseq, const float *q, const float *k, const float *v,
	const float *slope, const float *state0, const float *dout,
	const float *dstate, float *dq, float *dk, float *dv, float *dstate0);

/* ---- context parallelism pieces (lib/core/partial.c, summary.c) ----
 *
 * Partial attention: one sequence whose query i sits at global position
 * at->q + i and key s at at->k + s. RoPE turns each vector by its own
 * position; the masks see the distance (query minus key position), so
 * with at = { tk - tq, 0 } these are the bottom-right kernels above.
 */
struct lcai_pos {
	int64_t q, k;
};

lca_status lcai_ref_softmax_at(const lca_params *p, const struct lcai_pos *at,
	int64_t tq, int64_t tk, const double *q, const double *k,
	const double *v, double *o, double *lse);
lca_status lcai_ref32_softmax_at(const lca_params *p, const struct lcai_pos *at,
	int64_t tq, int64_t tk, const float *q, const float *k,
	const float *v, float *o, float *lse);
lca_status lcai_ref_mla_naive_at(const lca_params *p, const struct lcai_pos *at,
	int64_t tq, int64_t tk, const double *q_nope, const double *q_rope,
	const double *ckv, const double *k_rope, const double *w_uk,
	const double *w_uv, double *o, double *lse);
lca_status lcai_ref_mla_absorbed_at(const lca_params *p,
	const struct lcai_pos *at, int64_t tq, int64_t tk,
	const double *q_nope, const double *q_rope, const double *ckv,
	const double *k_rope, const double *w_uk, const double *w_uv,
	double *o, double *lse);
lca_status lcai_ref32_mla_naive_at(const lca_params *p, const struct lcai_pos *at,
	int64_t tq, int64_t tk, const float *q_nope, const float *q_rope,
	const float *ckv, const float *k_rope, const float *w_uk,
	const float *w_uv, float *o, float *lse);
lca_status lcai_ref32_mla_absorbed_at(const lca_params *p,
	const struct lcai_pos *at, int64_t tq, int64_t tk,
	const float *q_nope, const float *q_rope, const float *ckv,
	const float *k_rope, const float *w_uk, const float *w_uv,
	float *o, float *lse);
lca_status lcai_cpu_softmax_at(const lca_params *p, const struct lcai_pos *at,
	int64_t tq, int64_t tk, const void *q, const void *k, const void *v,
	void *o, void *lse);
lca_status lcai_cpu_mla_at(const lca_params *p, const struct lcai_pos *at,
	int64_t tq, int64_t tk, const void *q_nope, const void *q_rope,
	const void *ckv, const void *k_rope, const void *w_uk,
	const void *w_uv, void *o, void *lse);

/* Range summaries of one sequence's T tokens (lca_lightning_summary(3),
 * lca_deltanet_summary(3)): the map S -> a S + b of the range per head.
 * lightning: a [H] the total decay, b [H][dk][dv] the state from zero;
 * deltanet: a [H][dk][dk], b [H][dk][dv]. ref in real; cpu through its
 * forward kernels run in double, tensors of the plan's dtype. */
lca_status lcai_ref_lightning_summary(const lca_params *p, int64_t T,
	const double *k, const double *v, const double *slope, double *a,
	double *b);
lca_status lcai_ref32_lightning_summary(const lca_params *p, int64_t T,
	const float *k, const float *v, const float *slope, float *a, float *b);
lca_status lcai_ref_deltanet_summary(const lca_params *p, int64_t T,
	const double *k, const double *v, const double *g, const double *beta,
	double *A, double *B);
lca_status lcai_ref32_deltanet_summary(const lca_params *p, int64_t T,
	const float *k, const float *v, const float *g, const float *beta,
	float *A, float *B);
lca_status lcai_cpu_lightning_summary(const lca_params *p, int64_t T,
	const void *k, const void *v, const void *slope, void *a, void *b);
lca_status lcai_cpu_deltanet_summary(const lca_params *p, int64_t T,
	const void *k, const void *v, const void *g, const void *beta,
	void *A, void *B);

/* ---- mla's per-call choice (lib/core/cost.c) ---- */

/* Visible (query, key) pairs of tq queries at the last tq of tk positions
 * under p's masks. */
double lcai_mla_pairs(const lca_params *p, int64_t tq, int64_t tk);
/* p->algo unless it is LCA_ALGO_AUTO; then the computation (NAIVE or
 * ABSORBED) with fewer modelled flops for nq queries, nk keys and `pairs`
 * visible pairs, as lca_plan_cost(3) counts them. */
lca_algo lcai_mla_pick(const lca_params *p, double nq, double nk, double pairs);

/* ---- CPU kernels (lib/cpu), OpenMP + CBLAS ----
 *
 * Same contract as the reference kernels, but tensors are of the plan's
 * dtype (LCA_F64: double, LCA_F32: float; LCA_BF16: bf16 bits, which
 * deltanet and lightning take themselves, with state0 and state float32,
 * while softmax and mla go through lcai_cpu_bf16_*() below, which call
 * them in float32)
 * and p->algo selects the computation (mla: NAIVE/ABSORBED, or AUTO:
 * lcai_mla_pick() per call; deltanet and lightning: RECURRENT/CHUNKED).
 * p->nthreads > 0 caps the OpenMP threads.
 * Kernels must not change any global state (no omp_set_num_threads, no
 * openblas_set_num_threads): a plan may be used from many threads.
 */
/* Threads a cpu kernel may ask for: p->nthreads (0: the OpenMP default),
 * never more than the processors; >= 1. */
int lcai_cpu_threads(const lca_params *p);
/* Can the process create the largest team a cpu plan's calls will ask
 * OpenMP for? LCA_ERR_NOMEM naming the count when it cannot. */
lca_status lcai_cpu_probe_threads(const lca_params *p);
lca_status lcai_cpu_softmax(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q, const void *k,
	const void *v, void *o, void *lse);
/* Backward kernels (lib/cpu/NAME_bwd.c): the reference backward's
 * contract (gradients overwritten, shaped like their inputs), written only
 * when the call succeeds. Bitwise the same for every p->nthreads. */
lca_status lcai_cpu_softmax_bwd(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q, const void *k,
	const void *v, const void *dout, void *dq, void *dk, void *dv);
lca_status lcai_cpu_mla_bwd(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, const void *dout, void *dq_nope,
	void *dq_rope, void *dckv, void *dk_rope, void *dw_uk, void *dw_uv);
lca_status lcai_cpu_mla(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, void *o, void *lse);
lca_status lcai_cpu_deltanet(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *g, const void *beta, const void *state0, void *o,
	void *state);
lca_status lcai_cpu_lightning(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *slope, const void *state0, void *o, void *state);
/* Backward kernels (lib/cpu/NAME_bwd.c): the reference adjoints' contract
 * (lib/ref/NAME_bwd.c), tensors of the plan's dtype; both algos run the
 * chunked/blockwise adjoint. Deterministic whatever the thread count. */
lca_status lcai_cpu_deltanet_bwd(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *g, const void *beta, const void *state0, const void *dout,
	const void *dstate, void *dq, void *dk, void *dv, void *dg,
	void *dbeta, void *dstate0);
lca_status lcai_cpu_lightning_bwd(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *slope, const void *state0, const void *dout,
	const void *dstate, void *dq, void *dk, void *dv, void *dstate0);

/* bf16 plans (lib/cpu/bf16.c): the float32 kernels above on inputs
 * widened from bf16, outputs o and lse rounded to bf16; state0 and state
 * are float32, as on the cuda backend. */
lca_status lcai_cpu_bf16_softmax(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q, const void *k,
	const void *v, void *o, void *lse);
lca_status lcai_cpu_bf16_mla(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, void *o, void *lse);

/* The probes' mla latent fit by BLAS (lib/cpu/probe.c), X = [K_nope V]
 * with K_nope the first dn of the dk columns of k [T][dk], v [T][dv]:
 * G [dn+dv][dn+dv] = X^T X (whole, symmetric); ckv [T][dc] = X w,
 * w [dn+dv][dc]. */
void lcai_cpu_probe_gram(int64_t T, int64_t dk, int64_t dn, int64_t dv,
	const double *k, const double *v, double *G);
void lcai_cpu_probe_latent(int64_t T, int64_t dk, int64_t dn, int64_t dv,
	int64_t dc, const double *k, const double *v, const double *w,
	double *ckv);

/* Where the cached tokens of one softmax/mla sequence lie (lib/core/cache.c
 * fills it for a step). Buffer j (softmax: 0 = K [Hkv][dk] rows, 1 = V
 * [Hkv][dv] rows; mla: 0 = ckv [dc], 1 = k_rope [dr]) holds row[j]
 * elements per token, of type store (the plan's dtype, or LCA_BF16 under an
 * f32/f64 plan); token s of buffer j starts at
 *   contiguous (pt == NULL): (char *)buf[j] + s * row[j] * esize(store)
 *   paged:  pool + pt[s / LCA_CACHE_PAGE] * page_bytes + off[j]
 *           + (s % LCA_CACHE_PAGE) * row[j] * esize(store)
 * (a page holds LCA_CACHE_PAGE tokens of buffer 0, then of buffer 1). */
struct lcai_kv {
	lca_dtype store;
	int64_t row[2];
	const void *buf[2];
	const char *pool;
	const int32_t *pt;
	size_t page_bytes, off[2];
};

/* ---- CPU decode kernels (lib/cpu/decode.c) ----
 * A call decodes n sequences (one lcai_dec_seq each): in sequence i, tq
 * new queries are the last tq positions of tk cached keys (bottom-right
 * alignment, tq <= tk); kv says where the cached tokens lie: rows
 * [Hkv][dk] / [Hkv][dv] (softmax) or [dc] / [dr] (mla, k_rope not yet
 * rotated), contiguous or paged, stored in the plan's dtype or (f32 plans)
 * bf16. Tuned for small tq over long caches: the work is split over keys,
 * not only over heads, and the keys of all n sequences are shared out in
 * one parallel region. Each sequence's results are the bits a call for it
 * alone gives.
 *
 * lcai_cpu_decode_direct() is 1 when the decode kernels read kv as it is
 * (tq <= 16, tq <= tk, mla's absorbed form; storage the plan's dtype or
 * bf16 under an f32 plan), 0 when the sequence goes to the prefill engine,
 * which needs the tokens contiguous in the plan's dtype: the caller then
 * gathers them first (the decode calls fail with LCA_ERR_INTERNAL on such
 * a kv that is not contiguous in the plan's dtype). f64 plans over bf16
 * storage are not direct. Same inputs give the same bits whether kv is
 * paged or contiguous, and for any thread count.
 */
struct lcai_dec_seq {
	int64_t tq, tk;
	struct lcai_kv kv;
	const void *q;      /* softmax: q [tq][H][dk]; mla: q_nope [tq][H][dn] */
	const void *q_rope; /* mla: [tq][H][dr] */
	void *o, *lse;      /* [tq][H][dv], [tq][H] or NULL */
};
int lcai_cpu_decode_direct(const lca_params *p, int64_t tq, int64_t tk,
	const struct lcai_kv *kv);
lca_status lcai_cpu_softmax_decode(const lca_params *p, int64_t n,
	const struct lcai_dec_seq *seq);
lca_status lcai_cpu_mla_decode(const lca_params *p, int64_t n,
	const struct lcai_dec_seq *seq, const void *w_uk, const void *w_uv);

/* ---- CUDA (lib/cuda/; lib/core/cuda_stub.c without --enable-cuda) ----
 *
 * Tensor pointers are device pointers; cu arrays are host pointers, already
 * validated. Kernels take f32 or bf16 tensors (p->dtype), accumulate in f32,
 * keep recurrent state in f32 (state0/state are f32 whatever the dtype), and
 * return after the results are written (default stream). Without CUDA every
 * call below returns LCA_ERR_UNSUPPORTED and the count is 0.
 */

/* Number of usable CUDA devices; 0 when built without CUDA or none found. */
int lcai_cuda_device_count(void);
lca_status lcai_cuda_alloc(size_t bytes, void **ptr);
void lcai_cuda_free(void *ptr);
lca_status lcai_cuda_copy(void *dst, const void *src, size_t bytes,
	lca_copy_kind kind);
/* First index i < n of device array x (dtype t) with: mode 0 x[i] not
 * finite, mode 1 x[i] > 0, mode -1 x[i] < 0; -1 if none, -2 on a CUDA
 * error. Lets lib/core apply the same input checks to device tensors. */
int64_t lcai_cuda_find(const void *x, int64_t n, lca_dtype t, int mode);
/* *amax = max |x| of n device elements of type t; 0, or -2 on CUDA error. */
int lcai_cuda_maxabs(const void *x, int64_t n, lca_dtype t, double *amax);

lca_status lcai_cuda_softmax(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q, const void *k,
	const void *v, void *o, void *lse);
lca_status lcai_cuda_mla(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, void *o, void *lse);
lca_status lcai_cuda_deltanet(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *g, const void *beta, const void *state0, void *o,
	void *state);
lca_status lcai_cuda_lightning(const lca_params *p, const int64_t *cu,
	int64_t nseq, const void *q, const void *k, const void *v,
	const void *slope, const void *state0, void *o, void *state);

#endif /* LCATTN_INTERNAL_H */
