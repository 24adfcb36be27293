/*
 * mech.c - one benchmarked mechanism: its flop and byte model, its random
 * inputs, and timed prefill calls in a forked child.
 *
 * Every measurement runs in its own child process: its peak resident set
 * (VmHWM) is then that measurement's alone, a crash or a time limit cannot
 * take the whole benchmark down, and OpenMP/BLAS thread pools never start
 * in the parent (libgomp's pool does not survive fork()).
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
	MAX_TENSORS = 14,
	MAX_RUNS = 100
};

double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* ---- the model: flops and bytes -------------------------------------- */

/* Causal (query, key) pairs of a prefill with Tq = Tk = T: query i sees
 * keys 0..i, so sum_{i<T} (i + 1) = T (T + 1) / 2. */
static double causal_pairs(int64_t T)
{
	return (double)T * (double)(T + 1) / 2;
}

/* Gated DeltaNet, chunked WY/UT form, one chunk of c tokens of one head
 * (Yang et al., Gated Delta Networks, sec. 3). Products with a triangular
 * factor count only the entries the mask keeps, as softmax counts only
 * causal pairs: the work any implementation must do, not what a dense
 * GEMM over the full square would spend.
 *   A = K K^T, strictly lower     c (c - 1) dk
 *   (I + A)^-1, unit lower         c^3 / 3
 *   W = T (beta Gamma K), T lower  c (c + 1) dk
 *   U = T (beta V)                 c (c + 1) dv
 *   U -= W S                      2 c dk dv
 *   Q K^T, causal                  c (c + 1) dk
 *   (Q K^T . D) U                  c (c + 1) dv
 *   Q S                           2 c dk dv
 *   S = Gamma_c S + K^T (d . U)   2 c dk dv
 * Elementwise gating, L2 norms and exps are not counted. */
static double deltanet_chunk_flops(double c, double dk, double dv)
{
	return c * (c - 1) * dk + 2 * c * (c + 1) * (dk + dv) + 6 * c * dk * dv +
		c * c * c / 3;
}

/* Lightning attention, blockwise form, one block of b tokens of one head
 * (triangles counted as for DeltaNet):
 *   Q K^T, causal  b (b + 1) dk;
 *   (Q K^T . D) V  b (b + 1) dv;  Q S  2 b dk dv;
 *   S = lambda^b S + (lambda^(b-j) K)^T V  2 b dk dv. */
static double lightning_block_flops(double b, double dk, double dv)
{
	return b * (b + 1) * (dk + dv) + 4 * b * dk * dv;
}

/* Sum of f over the pieces of T tokens cut into pieces of size n (the last
 * one may be short). */
static double over_pieces(int64_t T, int64_t n, double dk, double dv,
	double (*f)(double, double, double))
{
	double sum = 0;

	for (int64_t t0 = 0; t0 < T; t0 += n)
		sum += f((double)(T - t0 < n ? T - t0 : n), dk, dv);
	return sum;
}

double bench_flops(lca_variant v, const struct bench_shape *s, int64_t T)
{
	double H = s->H, P = causal_pairs(T), t = (double)T;

	switch (v) {
	case LCA_SOFTMAX: /* q.k and p.v for every pair and head */
		return 2 * H * P * (s->dk + s->dv);
	case LCA_MLA: {
		/* naive: decompress every key (w_uk, w_uv), then q.k over
		 * dn + dr and p v over dv; absorbed: fold w_uk into every query,
		 * latent logits over dc + dr, the latent sum over dc, w_uv.
		 * The cpu backend's AUTO runs the cheaper one by
		 * lca_plan_cost(3)'s exact count (lca_mla_forward(3)): naive
		 * for a prefill at DeepSeek's shapes, as the smaller of these
		 * two leading-order counts also says; the timing measures it. */
		double dec = 2 * t * H * s->dc * (s->dn + s->dv);
		double naive = dec + 2 * H * P * (s->dn + s->dr + s->dv);
		double absorbed = dec + 2 * H * P * (2 * s->dc + s->dr);

		return naive < absorbed ? naive : absorbed;
	}
	case LCA_DELTANET:
		return H * over_pieces(T, s->chunk, s->dk, s->dv, deltanet_chunk_flops);
	case LCA_LIGHTNING:
		return H * over_pieces(T, s->block, s->dk, s->dv, lightning_block_flops);
	}
	return 0;
}

/* Inputs read once, outputs written once (lse and initial state not used:
 * the benchmark asks for o, and for the final state of the linear ones). */
double bench_bytes(lca_variant v, const struct bench_shape *s, int64_t T,
	size_t esize)
{
	double H = s->H, t = (double)T, e = (double)esize;

	switch (v) {
	case LCA_SOFTMAX:
		return e * t * H * (2 * s->dk + 2 * s->dv);
	case LCA_MLA:
		return e * (t * H * (s->dn + s->dr + s->dv) + t * (s->dc + s->dr) +
			H * s->dc * (s->dn + s->dv));
	case LCA_DELTANET:
		return e * (t * H * (2 * s->dk + 2 * s->dv + 2) + H * s->dk * s->dv);
	case LCA_LIGHTNING:
		return e * (t * H * (2 * s->dk + 2 * s->dv) + H + H * s->dk * s->dv);
	}
	return 0;
}

const char *const *bench_formulas(void)
{
	static const char *const f[] = {
		"P = T(T+1)/2 causal (q,k) pairs; e = bytes per element; flops count GEMM multiply-adds as 2",
		"softmax   flops 2 H P (dk+dv)                                  bytes e T H (2dk+2dv)",
		"mla       flops min(naive 2TH dc(dn+dv) + 2HP(dn+dr+dv),       bytes e [TH(dn+dr+dv) + T(dc+dr) + H dc(dn+dv)]",
		"                absorbed 2TH dc(dn+dv) + 2HP(2dc+dr)): the one the cpu AUTO runs (naive at these shapes)",
		"deltanet  flops H sum_chunks [c(c-1)dk + 2c(c+1)(dk+dv) + 6c dk dv + c^3/3]  bytes e [TH(2dk+2dv+2) + H dk dv]",
		"lightning flops H sum_blocks [b(b+1)(dk+dv) + 4b dk dv]        bytes e [TH(2dk+2dv) + H + H dk dv]",
		"(triangular products count the entries their causal mask keeps, as P does for softmax)",
		NULL
	};

	return f;
}

/* ---- the model of a backward call ------------------------------------- */

/*
 * Gated DeltaNet backward as lib/cpu/deltanet_bwd.c computes it, one
 * chunk of c tokens (triangles counted as for the forward):
 *   recomputed forward: A c(c-1)dk, (I+A)^-1 c^3/3, X = T R c(c+1)(dk+dv),
 *     U -= W S 2c dk dv
 *   (5) dU = (d K) dS, Y = U dS^T           4 c dk dv
 *   (4) Z = dO S^T, dS += (gamma Q)^T dO    4 c dk dv
 *       P = Q K^T, dP = dO U^T              c(c+1)(dk+dv)
 *       dU += P^T dO, dQ += dP K, dK += dP^T Q   c(c+1)(2dk+dv)
 *   (3) dW = -dU S^T, dS -= W^T dU           4 c dk dv
 *   solve dR = T^T dX c(c+1)(dk+dv), dA = -dR X^T c(c-1)(dk+dv),
 *       dK += (dKK + dKK^T) K 2c^2 dk
 * plus, for every chunk but the last of the sequence, the forward sweep
 * that keeps the chunk's entering state: A, (I+A)^-1, X, U and
 * S = gamma S + K^T U, c(c-1)dk + c^3/3 + c(c+1)(dk+dv) + 4c dk dv.
 */
static double deltanet_bwd_chunk_flops(double c, double dk, double dv)
{
	return c * (c - 1) * dk + c * c * c / 3 + c * (c + 1) * (dk + dv) +
		2 * c * dk * dv + 12 * c * dk * dv + c * (c + 1) * (3 * dk + 2 * dv) +
		c * (c + 1) * (dk + dv) + c * (c - 1) * (dk + dv) + 2 * c * c * dk;
}

static double deltanet_sweep_chunk_flops(double c, double dk, double dv)
{
	return c * (c - 1) * dk + c * c * c / 3 + c * (c + 1) * (dk + dv) +
		4 * c * dk * dv;
}

/*
 * Lightning backward as lib/cpu/lightning_bwd.c computes it, one block of
 * b tokens: forward scan P = dO V^T b(b+1)dv, dQ = [dO | P][S^T ; K]
 * 2b dk dv + b(b+1)dk, S^T update 2b dk dv; reverse scan V dO^T and
 * K Q^T b(b+1)(dv+dk), dK and dV [.. | ..][.. ; G] 4b dk dv + b(b+1)(dk+dv),
 * dS = lambda^b dS + Q^T (lambda dO) 2b dk dv.
 */
static double lightning_bwd_block_flops(double b, double dk, double dv)
{
	return 3 * b * (b + 1) * (dk + dv) + 10 * b * dk * dv;
}

/* The backward (FlashAttention-2, Dao 2023, sec. 3.2): recompute S = Q K^T,
 * then dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q: 2.5 times the
 * forward's two products (the usual count, which leaves out the forward
 * the API's backward must rerun for o and lse: the times include it).
 * mla adds its naive decompression (w_uk, w_uv: as the forward) and the
 * adjoint's two products per decompression (dckv; dw_uk, dw_uv). */
double bench_flops_bwd(lca_variant v, const struct bench_shape *s, int64_t T)
{
	double H = s->H, P = causal_pairs(T), t = (double)T;

	switch (v) {
	case LCA_SOFTMAX:
		return 2.5 * 2 * H * P * (s->dk + s->dv);
	case LCA_MLA:
		return 2.5 * 2 * H * P * (s->dn + s->dr + s->dv) +
			3 * 2 * t * H * s->dc * (s->dn + s->dv);
	case LCA_DELTANET:
		return H * (over_pieces(T, s->chunk, s->dk, s->dv,
			deltanet_bwd_chunk_flops) + (T > s->chunk ?
			over_pieces(T - s->chunk, s->chunk, s->dk, s->dv,
			deltanet_sweep_chunk_flops) : 0));
	case LCA_LIGHTNING:
		return H * over_pieces(T, s->block, s->dk, s->dv,
			lightning_bwd_block_flops);
	default:
		return 0;
	}
}

/* Inputs and dout read once, gradients (shaped like the inputs) written
 * once. */
double bench_bytes_bwd(lca_variant v, const struct bench_shape *s, int64_t T,
	size_t esize)
{
	double H = s->H, t = (double)T, e = (double)esize;

	switch (v) {
	case LCA_SOFTMAX:
		return e * t * H * (4 * s->dk + 3 * s->dv);
	case LCA_MLA:
		return e * (2 * (t * H * (s->dn + s->dr) + t * (s->dc + s->dr) +
			H * s->dc * (s->dn + s->dv)) + t * H * s->dv);
	case LCA_DELTANET:
		return e * t * H * (4 * s->dk + 3 * s->dv + 4);
	case LCA_LIGHTNING:
		return e * (t * H * (4 * s->dk + 3 * s->dv) + H);
	default:
		return 0;
	}
}

const char *const *bench_formulas_bwd(void)
{
	static const char *const f[] = {
		"P = T(T+1)/2 causal (q,k) pairs; e = bytes per element; backward = FlashAttention-2's count:",
		"2.5 x the forward's attention products (S=QK^T, dP=dO V^T, dV=P^T dO, dQ=dS K, dK=dS^T Q);",
		"the times include the forward the call reruns for o and lse (not counted)",
		"softmax   flops 2.5 x 2 H P (dk+dv)                           bytes e T H (4dk+3dv)",
		"mla       flops 2.5 x 2 H P (dn+dr+dv) + 3 x 2TH dc(dn+dv)    bytes e [2(TH(dn+dr) + T(dc+dr) + H dc(dn+dv)) + TH dv]",
		"          (naive adjoint: decompression, then dckv and dw_uk, dw_uv by BLAS)",
		"deltanet and lightning: flops as lib/cpu computes them, recomputation included; no state0, no dstate",
		"deltanet  flops H [sum_chunks (c(c-1)(2dk+dv) + c^3/3 + c(c+1)(5dk+4dv) + 2c^2 dk + 14c dk dv)",
		"                + sum_chunks but the last (c(c-1)dk + c^3/3 + c(c+1)(dk+dv) + 4c dk dv)]",
		"                bytes e TH(4dk+3dv+4)",
		"lightning flops H sum_blocks [3b(b+1)(dk+dv) + 10b dk dv]   bytes e [TH(4dk+3dv) + H]",
		NULL
	};

	return f;
}

/* ---- inputs ------------------------------------------------------------ */

enum tensor_kind { IN, OUT, SLOPE };

struct tensor {
	int64_t n;
	double lo, hi;         /* IN: uniform in [lo, hi) */
	enum tensor_kind kind;
};

/* The tensors of v in the argument order of its forward call; returns how
 * many. Values are mild enough that no path over- or underflows. */
static int tensor_list(lca_variant v, const struct bench_shape *s, int64_t T,
	struct tensor *t)
{
	int64_t H = s->H, qk = T * H * s->dk, vo = T * H * s->dv, st = H * s->dk * s->dv;
	double w = 1 / sqrt((double)s->dc);

	switch (v) {
	case LCA_SOFTMAX: /* q k v -> o */
		t[0] = (struct tensor){ qk, -1, 1, IN };
		t[1] = (struct tensor){ qk, -1, 1, IN };
		t[2] = (struct tensor){ vo, -1, 1, IN };
		t[3] = (struct tensor){ vo, 0, 0, OUT };
		return 4;
	case LCA_MLA: /* q_nope q_rope ckv k_rope w_uk w_uv -> o */
		t[0] = (struct tensor){ T * H * s->dn, -1, 1, IN };
		t[1] = (struct tensor){ T * H * s->dr, -1, 1, IN };
		t[2] = (struct tensor){ T * s->dc, -1, 1, IN };
		t[3] = (struct tensor){ T * s->dr, -1, 1, IN };
		t[4] = (struct tensor){ H * s->dn * s->dc, -w, w, IN };
		t[5] = (struct tensor){ H * s->dv * s->dc, -w, w, IN };
		t[6] = (struct tensor){ T * H * s->dv, 0, 0, OUT };
		return 7;
	case LCA_DELTANET: /* q k v g beta -> o state */
		t[0] = (struct tensor){ qk, -1, 1, IN };
		t[1] = (struct tensor){ qk, -1, 1, IN };
		t[2] = (struct tensor){ vo, -1, 1, IN };
		t[3] = (struct tensor){ T * H, -0.1, 0, IN };  /* g < 0 */
		t[4] = (struct tensor){ T * H, 0, 1, IN };     /* beta */
		t[5] = (struct tensor){ vo, 0, 0, OUT };
		t[6] = (struct tensor){ st, 0, 0, OUT };
		return 7;
	case LCA_LIGHTNING: /* q k v slope -> o state */
		t[0] = (struct tensor){ qk, -1, 1, IN };
		t[1] = (struct tensor){ qk, -1, 1, IN };
		t[2] = (struct tensor){ vo, -1, 1, IN };
		t[3] = (struct tensor){ H, 0, 0, SLOPE };
		t[4] = (struct tensor){ vo, 0, 0, OUT };
		t[5] = (struct tensor){ st, 0, 0, OUT };
		return 6;
	}
	return 0;
}

/* The tensors of v's backward call in argument order: the forward's
 * inputs, dout, a gradient per input (lightning's slope gets one it does
 * not use: no state0, dstate or dstate0). */
static int tensor_list_bwd(lca_variant v, const struct bench_shape *s,
	int64_t T, struct tensor *t)
{
	int nin = 0, n = tensor_list(v, s, T, t);

	while (nin < n && t[nin].kind != OUT)
		nin++;
	/* dout takes o's place (the first output); state is not needed */
	t[nin] = (struct tensor){ t[nin].n, -1, 1, IN };
	for (int i = 0; i < nin; i++)
		t[nin + 1 + i] = (struct tensor){ t[i].n, 0, 0, OUT };
	return 2 * nin + 1;
}

/* splitmix64: seedable, fast enough for a billion values. */
static double rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (double)(z >> 11) * 0x1p-53;
}

static void store(void *x, lca_dtype dt, int64_t i, double val)
{
	if (dt == LCA_F32) {
		((float *)x)[i] = (float)val;
	} else if (dt == LCA_BF16) { /* nearest, ties to even: finite values */
		float f = (float)val;
		uint32_t u;

		memcpy(&u, &f, sizeof u);
		((uint16_t *)x)[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
	} else {
		((double *)x)[i] = val;
	}
}

/* Allocate and fill one tensor; outputs are zeroed so that their pages
 * are touched before any timing. A bf16 plan's outputs get float room:
 * its recurrent state is float32. */
static void *make_tensor(const struct tensor *t, lca_dtype dt, int64_t H,
	uint64_t *seed)
{
	size_t es = dt == LCA_F64 ? 8 : dt == LCA_F32 || t->kind == OUT ? 4 : 2;
	void *x = malloc((size_t)t->n * es);
	double *sl;

	if (!x)
		return NULL;
	if (t->kind == OUT) {
		memset(x, 0, (size_t)t->n * es);
	} else if (t->kind == SLOPE) {
		/* MiniMax slopes, first layer of eight */
		if (!(sl = malloc((size_t)H * sizeof *sl)) ||
		    lca_minimax_slopes(H, 0, 8, sl) != LCA_OK) {
			free(sl), free(x);
			return NULL;
		}
		for (int64_t i = 0; i < H; i++)
			store(x, dt, i, sl[i]);
		free(sl);
	} else {
		for (int64_t i = 0; i < t->n; i++)
			store(x, dt, i, t->lo + (t->hi - t->lo) * rnd(seed));
	}
	return x;
}

/* ---- plans and calls ---------------------------------------------------- */

static lca_status make_plan(lca_variant v, const struct bench_shape *s,
	lca_backend be, lca_dtype dt, int check_finite, lca_plan **plan)
{
	lca_params p;
	lca_status st = lca_params_init(&p, v);

	if (st != LCA_OK)
		return st;
	p.backend = be;
	p.dtype = dt;
	p.H = s->H;
	p.dk = s->dk;
	p.dv = s->dv;
	p.check_finite = check_finite;
	if (v == LCA_MLA) {
		p.dk = 0;
		p.dn = s->dn, p.dr = s->dr, p.dc = s->dc;
		p.scale = 1 / sqrt((double)(s->dn + s->dr));
	}
	if (v == LCA_DELTANET)
		p.chunk = s->chunk;
	if (v == LCA_LIGHTNING)
		p.block = s->block;
	return lca_plan_create(&p, plan);
}

/* Causal prefill, no cu_seqlens, no lse, no initial state. */
static lca_status forward(const lca_plan *plan, lca_variant v, int64_t T,
	void *const *b)
{
	switch (v) {
	case LCA_SOFTMAX:
		return lca_softmax_forward(plan, T, T, b[0], b[1], b[2], NULL, 0, b[3], NULL);
	case LCA_MLA:
		return lca_mla_forward(plan, T, T, b[0], b[1], b[2], b[3], b[4], b[5],
			NULL, 0, b[6], NULL);
	case LCA_DELTANET:
		return lca_deltanet_forward(plan, T, b[0], b[1], b[2], b[3], b[4],
			NULL, 0, NULL, b[5], b[6]);
	case LCA_LIGHTNING:
		return lca_lightning_forward(plan, T, b[0], b[1], b[2], b[3],
			NULL, 0, NULL, b[4], b[5]);
	}
	return LCA_ERR_ARG;
}

/* The backward of a causal prefill, tensors as tensor_list_bwd lays them
 * out. */
static lca_status backward(const lca_plan *plan, lca_variant v, int64_t T,
	void *const *b)
{
	switch (v) {
	case LCA_SOFTMAX:
		return lca_softmax_backward(plan, T, T, b[0], b[1], b[2], NULL, 0,
			b[3], b[4], b[5], b[6]);
	case LCA_MLA:
		return lca_mla_backward(plan, T, T, b[0], b[1], b[2], b[3], b[4], b[5],
			NULL, 0, b[6], b[7], b[8], b[9], b[10], b[11], b[12]);
	case LCA_DELTANET:
		return lca_deltanet_backward(plan, T, b[0], b[1], b[2], b[3], b[4],
			NULL, 0, NULL, b[5], NULL, b[6], b[7], b[8], b[9], b[10],
			NULL);
	case LCA_LIGHTNING:
		return lca_lightning_backward(plan, T, b[0], b[1], b[2], b[3],
			NULL, 0, NULL, b[4], NULL, b[5], b[6], b[7], NULL);
	default:
		return LCA_ERR_UNSUPPORTED;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Time calls until there are tm->reps of them (and tm->min_total_s of
 * time), or one took longer than tm->long_s. A first call under a second
 * is a warm-up and not counted: it starts the thread pools. */
static lca_status time_calls(const lca_plan *plan, lca_variant v, int64_t T,
	void *const *b, const struct bench_timing *tm, struct bench_result *r)
{
	double t[MAX_RUNS], total = 0;
	int n = 0;

	for (int call = 0; n < MAX_RUNS; call++) {
		double t0 = bench_now(), dt;
		lca_status st = tm->backward ? backward(plan, v, T, b) :
			forward(plan, v, T, b);

		if (st != LCA_OK)
			return st;
		dt = bench_now() - t0;
		if (call == 0 && dt < 1.0)
			continue;
		t[n++] = dt;
		total += dt;
		if (dt > tm->long_s || (n >= tm->reps && total >= tm->min_total_s))
			break;
	}
	qsort(t, (size_t)n, sizeof *t, cmp_double);
	r->runs = n;
	r->seconds = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
	return LCA_OK;
}

struct job {
	lca_variant v;
	const struct bench_shape *s;
	int64_t T;
	lca_backend be;
	lca_dtype dt;
	const struct bench_timing *tm;
};

static void measure_child(void *arg, void *res)
{
	const struct job *j = arg;
	struct bench_result *r = res;
	struct tensor t[MAX_TENSORS];
	void *b[MAX_TENSORS] = { 0 };
	int nt = j->tm->backward ? tensor_list_bwd(j->v, j->s, j->T, t) :
		tensor_list(j->v, j->s, j->T, t);
	uint64_t seed = 20250101u + (uint64_t)j->T;
	lca_plan *plan = NULL;

	r->status = make_plan(j->v, j->s, j->be, j->dt, j->tm->check_finite, &plan);
	for (int i = 0; i < nt && r->status == LCA_OK; i++)
		if (!(b[i] = make_tensor(&t[i], j->dt, j->s->H, &seed))) {
			r->status = LCA_ERR_NOMEM;
			snprintf(r->msg, sizeof r->msg, "bench: out of memory for the inputs");
		}
	if (r->status == LCA_OK)
		r->status = time_calls(plan, j->v, j->T, b, j->tm, r);
	if (r->status != LCA_OK && !r->msg[0])
		snprintf(r->msg, sizeof r->msg, "%s", lca_last_error());
	r->rss_mb = bench_peak_rss_mb();
	lca_plan_destroy(plan);
	for (int i = 0; i < nt; i++)
		free(b[i]);
}

int bench_measure(lca_variant v, const struct bench_shape *s, int64_t T,
	lca_backend backend, lca_dtype dtype, const struct bench_timing *tm,
	unsigned alarm_s, struct bench_result *r)
{
	struct job j = { v, s, T, backend, dtype, tm };

	memset(r, 0, sizeof *r);
	r->status = -1;
	r->rss_mb = -1;
	return bench_fork(measure_child, &j, r, sizeof *r, alarm_s);
}

/* ---- phase profile ------------------------------------------------------ */

struct prof_job {
	lca_variant v;
	const struct bench_shape *s;
	int64_t T;
	lca_dtype dt;
	int check_finite;
	double budget_s;
};

/* Nanoseconds of one clock_gettime(CLOCK_MONOTONIC), best of 5 runs of
 * 100000: what a profiled phase boundary costs at least. */
static double clock_cost_ns(void)
{
	double best = INFINITY;
	struct timespec ts;
	long sink = 0;

	for (int rep = 0; rep < 5; rep++) {
		double t0 = bench_now();

		for (int i = 0; i < 100000; i++) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			sink += ts.tv_nsec & 1;
		}
		best = fmin(best, (bench_now() - t0) * 1e4);
	}
	return sink < 0 ? 0 : best;
}

/* One call, timed, with the profiler on or off. */
static lca_status prof_call(const lca_plan *plan, const struct prof_job *j,
	void *const *b, int on, double *dt)
{
	double t0;
	lca_status st = lca_profile_enable(on);

	t0 = bench_now();
	if (st == LCA_OK)
		st = forward(plan, j->v, j->T, b);
	*dt = bench_now() - t0;
	lca_profile_enable(0);
	return st;
}

/* A warm-up call (unless it is long), then unprofiled and profiled calls
 * in turn: pairs of them while the pairs take under budget_s, at least
 * one. */
static lca_status prof_calls(const lca_plan *plan, const struct prof_job *j,
	void *const *b, struct bench_prof *r)
{
	lca_profile_phase ph[BENCH_MAX_PHASES];
	double dt, spent = 0;
	lca_status st;
	int n;

	if ((st = prof_call(plan, j, b, 0, &dt)) != LCA_OK)
		return st;
	r->on_s = r->off_s = INFINITY;
	if (dt > 1.0)
		r->off_s = dt;  /* long: the first call is the unprofiled one */
	if ((st = lca_profile_reset()) != LCA_OK)
		return st;
	do {
		if (r->off_s == INFINITY || r->calls > 0) {
			if ((st = prof_call(plan, j, b, 0, &dt)) != LCA_OK)
				return st;
			r->off_s = fmin(r->off_s, dt);
			spent += dt;
		}
		if ((st = prof_call(plan, j, b, 1, &dt)) != LCA_OK)
			return st;
		r->on_s = fmin(r->on_s, dt);
		r->wall_s += dt;
		r->calls++;
		spent += dt;
	} while (spent < j->budget_s && r->calls < 8);
	if ((st = lca_profile_read(ph, BENCH_MAX_PHASES, &n)) != LCA_OK)
		return st;
	r->clock_ns = clock_cost_ns();
	for (int i = 0; i < n && i < BENCH_MAX_PHASES; i++)
		if (ph[i].count > 0) {
			snprintf(r->name[r->nphase], sizeof r->name[0], "%s", ph[i].name);
			r->seconds[r->nphase] = ph[i].seconds;
			r->count[r->nphase++] = ph[i].count;
		}
	return LCA_OK;
}

static void profile_child(void *arg, void *res)
{
	const struct prof_job *j = arg;
	struct bench_prof *r = res;
	struct tensor t[MAX_TENSORS];
	void *b[MAX_TENSORS] = { 0 };
	int nt = tensor_list(j->v, j->s, j->T, t);
	uint64_t seed = 20250101u + (uint64_t)j->T;
	lca_plan *plan = NULL;

	r->status = make_plan(j->v, j->s, LCA_BACKEND_CPU, j->dt, j->check_finite, &plan);
	for (int i = 0; i < nt && r->status == LCA_OK; i++)
		if (!(b[i] = make_tensor(&t[i], j->dt, j->s->H, &seed))) {
			r->status = LCA_ERR_NOMEM;
			snprintf(r->msg, sizeof r->msg, "bench: out of memory for the inputs");
		}
	if (r->status == LCA_OK)
		r->status = prof_calls(plan, j, b, r);
	if (r->status != LCA_OK && !r->msg[0])
		snprintf(r->msg, sizeof r->msg, "%s", lca_last_error());
	lca_plan_destroy(plan);
	for (int i = 0; i < nt; i++)
		free(b[i]);
}

int bench_profile(lca_variant v, const struct bench_shape *s, int64_t T,
	lca_dtype dtype, int check_finite, double budget_s, unsigned alarm_s,
	struct bench_prof *r)
{
	struct prof_job j = { v, s, T, dtype, check_finite, budget_s };

	memset(r, 0, sizeof *r);
	r->status = -1;
	return bench_fork(profile_child, &j, r, sizeof *r, alarm_s);
}

/* ---- processes --------------------------------------------------------- */

double bench_peak_rss_mb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long long kb = -1;
	struct rusage ru;

	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "VmHWM:", 6)) {
			kb = strtoll(line + 6, NULL, 10);
			break;
		}
	if (f)
		fclose(f);
	if (kb < 0 && getrusage(RUSAGE_SELF, &ru) == 0)
		kb = ru.ru_maxrss;  /* Linux reports kilobytes */
	return kb < 0 ? -1 : kb / 1024.0;
}

/* Read exactly size bytes unless the writer goes away first. */
static size_t read_all(int fd, void *buf, size_t size)
{
	size_t got = 0;

	while (got < size) {
		ssize_t n = read(fd, (char *)buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

static int write_all(int fd, const void *buf, size_t size)
{
	size_t put = 0;

	while (put < size) {
		ssize_t n = write(fd, (const char *)buf + put, size - put);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		put += (size_t)n;
	}
	return 0;
}

int bench_fork(void (*fn)(void *arg, void *res), void *arg, void *res,
	size_t size, unsigned alarm_s)
{
	void *tmp = malloc(size);
	int fd[2], wst = 0, ok;
	pid_t pid;

	if (!tmp || pipe(fd)) {
		free(tmp);
		return -1;
	}
	fflush(stdout), fflush(stderr);  /* nothing buffered is written twice */
	if ((pid = fork()) < 0) {
		close(fd[0]), close(fd[1]), free(tmp);
		return -1;
	}
	if (pid == 0) {
		close(fd[0]);
		if (alarm_s)
			alarm(alarm_s);  /* SIGALRM's default action ends the child */
		fn(arg, res);
		_exit(write_all(fd[1], res, size) ? 1 : 0);
	}
	close(fd[1]);
	ok = read_all(fd[0], tmp, size) == size;
	close(fd[0]);
	while (waitpid(pid, &wst, 0) < 0 && errno == EINTR)
		;
	/* a child that died mid-write leaves *res as the caller set it */
	if (ok && WIFEXITED(wst) && WEXITSTATUS(wst) == 0)
		memcpy(res, tmp, size);
	else
		ok = WIFSIGNALED(wst) && WTERMSIG(wst) == SIGALRM ? -2 : 0;
	free(tmp);
	return ok == 1 ? 0 : ok == -2 ? -2 : -1;
}
