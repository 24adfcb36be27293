/*
 * check_cuda.c - the cuda backend against the reference, per the tolerance
 * rule of DESIGN.md: for every mechanism, f32 and bf16, on fresh seeded
 * random inputs and odd shapes,
 *
 *   err(cuda) <= max(2 * err(baseline), 1e-6),  err(x) = ||x - R|| / ||R||
 *
 * where R is the double reference on the original inputs and the baseline
 * is the reference algorithm run in float32 (ref backend, LCA_F32) on the
 * inputs as the cuda run sees them: rounded to float, or to bf16 for the
 * bf16 runs, whose baseline outputs are then rounded to bf16 as well (a
 * bf16 path returns bf16). Recurrent state is f32 on the cuda backend and
 * is never rounded to bf16. Every cuda output buffer is filled with NaN
 * first, and a NaN left anywhere fails the test: each element must be
 * written. Covered: masks, GQA, RoPE at positions near 70K, fully masked
 * rows, varlen batches with an empty sequence, decode (Tq = 1, T = 1),
 * and the state hand-off between two calls through one aliased buffer.
 *
 * Without a usable GPU the program exits 77 (skipped). CUDA is probed in a
 * child process so that the forked Check tests each initialise CUDA
 * themselves (a CUDA context does not survive fork()).
 *
 * tests/check_bf16.c includes this file with CHECK_ON_CPU defined, to hold the cpu backend's bf16 path (which shares the
 * cuda backend's contract) to the same cases; it brings its own main.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef CHECK_ON_CPU
#define CHECK_TARGET LCA_BACKEND_CPU
#else
#define CHECK_TARGET LCA_BACKEND_CUDA
#endif
static const char *const target_name = CHECK_TARGET == LCA_BACKEND_CUDA ? "cuda" : "cpu";

/* ---- element types ---- */

static uint16_t f2bf(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof u);
	u += 0x7fffu + ((u >> 16) & 1u);	/* round to nearest even */
	return (uint16_t)(u >> 16);
}

static double bf2d(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float f;

	memcpy(&f, &u, sizeof f);
	return f;
}

static double round_to(double x, lca_dtype t)
{
	if (t == LCA_F32)
		return (float)x;
	if (t == LCA_BF16)
		return bf2d(f2bf((float)x));
	return x;
}

static size_t esize(lca_dtype t)
{
	return t == LCA_F64 ? 8 : t == LCA_F32 ? 4 : 2;
}

static void *host_cast(const double *x, int64_t n, lca_dtype t)
{
	void *y = malloc((size_t)(n > 0 ? n : 1) * esize(t));

	ck_assert(y != NULL);
	for (int64_t i = 0; i < n; i++) {
		if (t == LCA_F64)
			((double *)y)[i] = x[i];
		else if (t == LCA_F32)
			((float *)y)[i] = (float)x[i];
		else
			((uint16_t *)y)[i] = f2bf((float)x[i]);
	}
	return y;
}

static void host_uncast(const void *y, int64_t n, lca_dtype t, double *x)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = t == LCA_F64 ? ((const double *)y)[i] :
			t == LCA_F32 ? ((const float *)y)[i] : bf2d(((const uint16_t *)y)[i]);
}

/* ---- a test case: a plan's parameters, sizes and tensors ---- */

#define MAXIN 8

struct tensor {
	const char *name;
	int64_t n;
	int state;	/* recurrent state: f32 on the cuda backend */
	double *x;	/* inputs: values; NULL = optional and absent */
};

struct kase {
	char what[96];
	lca_params p;
	int64_t Tq, Tk, T, nseq;
	const int64_t *cu;
	int64_t split;	/* > 0: cuda runs tokens [0, split) and the rest in two calls */
	int nin, nout;
	struct tensor in[MAXIN], out[2];
};

static double *add_in(struct kase *c, const char *name, int64_t n, double sd)
{
	struct tensor *t = &c->in[c->nin++];

	t->name = name;
	t->n = n;
	t->x = tu_alloc(n);
	tu_fill_normal(t->x, n, sd);
	return t->x;
}

static void add_out(struct kase *c, const char *name, int64_t n, int state)
{
	struct tensor *t = &c->out[c->nout++];

	t->name = name;
	t->n = n;
	t->state = state;
}

static void kase_free(struct kase *c)
{
	for (int i = 0; i < c->nin; i++)
		free(c->in[i].x);
}

/* One forward call on already placed buffers. */
static lca_status call(const struct kase *c, const lca_plan *plan, int64_t T,
	const int64_t *cu, int64_t nseq, void **in, void **out)
{
	switch (c->p.variant) {
	case LCA_SOFTMAX:
		return lca_softmax_forward(plan, c->Tq, c->Tk, in[0], in[1], in[2],
			cu, nseq, out[0], out[1]);
	case LCA_MLA:
		return lca_mla_forward(plan, c->Tq, c->Tk, in[0], in[1], in[2], in[3],
			in[4], in[5], cu, nseq, out[0], out[1]);
	case LCA_DELTANET:
		return lca_deltanet_forward(plan, T, in[0], in[1], in[2], in[3], in[4],
			cu, nseq, in[5], out[0], out[1]);
	case LCA_LIGHTNING:
		return lca_lightning_forward(plan, T, in[0], in[1], in[2], in[3],
			cu, nseq, in[4], out[0], out[1]);
	}
	return LCA_ERR_ARG;
}

/* Per-token widths of the token-major tensors of a linear variant, for
 * the split run: q, k, v, (g, beta | -) and o. Non-token tensors get 0. */
static int64_t token_width(const struct kase *c, int i, int is_out)
{
	const lca_params *p = &c->p;

	if (is_out)
		return i == 0 ? p->H * p->dv : 0;
	if (c->p.variant == LCA_DELTANET) {
		int64_t w[6] = { p->Hk * p->dk, p->Hk * p->dk, p->H * p->dv, p->H, p->H, 0 };

		return w[i];
	}
	{
		int64_t w[5] = { p->H * p->dk, p->H * p->dk, p->H * p->dv, 0, 0 };

		return w[i];
	}
}

/* Recurrent state is f32 on the cuda backend, and in every bf16 run. */
static lca_dtype elem_type(const struct tensor *t, lca_backend b, lca_dtype d)
{
	return t->state && (b == LCA_BACKEND_CUDA || d == LCA_BF16) ? LCA_F32 : d;
}

/* Run case c on backend b, dtype d with inputs in (values per tensor) and
 * write the outputs as doubles to res[k]. Outputs on the target backend
 * are NaN-poisoned first and must come back without a NaN. */
static void run(const struct kase *c, lca_backend b, lca_dtype d,
	double *const *vals, double **res)
{
	lca_params p = c->p;
	lca_plan *plan;
	void *hin[MAXIN] = { 0 }, *din[MAXIN] = { 0 }, *hout[2] = { 0 }, *dout[2] = { 0 };
	int cuda = b == LCA_BACKEND_CUDA, target = b == CHECK_TARGET;

	p.backend = b;
	p.dtype = d;
	plan = tu_plan(&p);
	for (int i = 0; i < c->nin; i++) {
		lca_dtype t = elem_type(&c->in[i], b, d);
		size_t bytes = (size_t)c->in[i].n * esize(t);

		if (!vals[i])
			continue;
		hin[i] = host_cast(vals[i], c->in[i].n, t);
		din[i] = hin[i];
		if (cuda) {
			tu_assert_ok(lca_buffer_alloc(b, bytes, &din[i]));
			tu_assert_ok(lca_buffer_copy(b, din[i], hin[i], bytes, LCA_COPY_HOST_TO_DEVICE));
		}
	}
	for (int k = 0; k < c->nout; k++) {
		size_t bytes = (size_t)c->out[k].n * esize(elem_type(&c->out[k], b, d));

		hout[k] = malloc(bytes);
		ck_assert(hout[k] != NULL);
		memset(hout[k], 0xff, bytes);	/* all ones: NaN in f32 and bf16 */
		dout[k] = hout[k];
		if (cuda) {
			tu_assert_ok(lca_buffer_alloc(b, bytes, &dout[k]));
			tu_assert_ok(lca_buffer_copy(b, dout[k], hout[k], bytes, LCA_COPY_HOST_TO_DEVICE));
		}
	}
	if (target && c->split > 0) {
		/* Two calls; the state passes through dout[1], which is also the
		 * second call's state0 (the aliasing the API allows). */
		int64_t one[2] = { 0, c->split }, two[2] = { 0, c->T - c->split };
		void *in2[MAXIN], *out2[2];
		int si = c->nin - 1;	/* state0 is the last input */

		tu_assert_ok(call(c, plan, c->split, one, 1, din, dout));
		for (int i = 0; i < c->nin; i++)
			in2[i] = din[i] ? (char *)din[i] + (size_t)(c->split * token_width(c, i, 0)) *
				esize(elem_type(&c->in[i], b, d)) : NULL;
		in2[si] = dout[1];
		out2[0] = (char *)dout[0] + (size_t)(c->split * token_width(c, 0, 1)) * esize(d);
		out2[1] = dout[1];
		tu_assert_ok(call(c, plan, c->T - c->split, two, 1, in2, out2));
	} else {
		tu_assert_ok(call(c, plan, c->T, c->cu, c->nseq, din, dout));
	}
	for (int k = 0; k < c->nout; k++) {
		lca_dtype t = elem_type(&c->out[k], b, d);

		if (cuda)
			tu_assert_ok(lca_buffer_copy(b, hout[k], dout[k],
				(size_t)c->out[k].n * esize(t), LCA_COPY_DEVICE_TO_HOST));
		host_uncast(hout[k], c->out[k].n, t, res[k]);
		for (int64_t e = 0; target && e < c->out[k].n; e++)
			ck_assert_msg(!isnan(res[k][e]), "%s: %s left %s[%lld] unwritten (NaN)",
				c->what, target_name, c->out[k].name, (long long)e);
	}
	for (int i = 0; i < c->nin; i++) {
		if (cuda)
			lca_buffer_free(b, din[i]);
		free(hin[i]);
	}
	for (int k = 0; k < c->nout; k++) {
		if (cuda)
			lca_buffer_free(b, dout[k]);
		free(hout[k]);
	}
	lca_plan_destroy(plan);
}

/* -inf entries (lse of fully masked rows) must agree exactly in all three
 * results; they are then zeroed so that the norms measure the rest. */
static void match_infinities(const char *what, const char *name, double *x,
	double *base, double *ref, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (isinf(ref[i]) || isinf(x[i]) || isinf(base[i])) {
			ck_assert_msg(x[i] == ref[i] && base[i] == ref[i],
				"%s: %s[%lld] = %g (baseline %g), reference %g", what, name,
				(long long)i, x[i], base[i], ref[i]);
			x[i] = base[i] = ref[i] = 0.0;
		}
}

/* The tolerance rule for case c in dtype d (LCA_F32 or LCA_BF16). */
static void compare(struct kase *c, lca_dtype d)
{
	double *orig[MAXIN], *rounded[MAXIN], *R[2], *B[2], *X[2];

	for (int i = 0; i < c->nin; i++) {
		lca_dtype t = c->in[i].state ? LCA_F32 : d;

		orig[i] = c->in[i].x;
		rounded[i] = NULL;
		if (!orig[i])
			continue;
		rounded[i] = tu_alloc(c->in[i].n);
		for (int64_t e = 0; e < c->in[i].n; e++)
			rounded[i][e] = round_to(orig[i][e], t);
	}
	for (int k = 0; k < c->nout; k++) {
		R[k] = tu_alloc(c->out[k].n);
		B[k] = tu_alloc(c->out[k].n);
		X[k] = tu_alloc(c->out[k].n);
	}
	run(c, LCA_BACKEND_REF, LCA_F64, orig, R);
	run(c, LCA_BACKEND_REF, LCA_F32, rounded, B);
	run(c, CHECK_TARGET, d, rounded, X);
	for (int k = 0; k < c->nout; k++) {
		const char *name = c->out[k].name;
		double eb, ex, tol;

		if (d == LCA_BF16 && !c->out[k].state)
			for (int64_t e = 0; e < c->out[k].n; e++)
				B[k][e] = round_to(B[k][e], LCA_BF16);
		match_infinities(c->what, name, X[k], B[k], R[k], c->out[k].n);
		eb = tu_relerr(B[k], R[k], c->out[k].n);
		ex = tu_relerr(X[k], R[k], c->out[k].n);
		tol = 2.0 * eb > 1e-6 ? 2.0 * eb : 1e-6;
		printf("%-44s %-4s %-5s %s %.3e  baseline %.3e  ratio %.2f\n", c->what,
			d == LCA_BF16 ? "bf16" : "f32", name, target_name, ex, eb,
			eb > 0 ? ex / eb : 0.0);
		fflush(stdout);
		ck_assert_msg(ex <= tol, "%s %s %s: normwise error %.3e > %.3e (2x the "
			"float32 baseline %.3e; max-abs %.3e)", c->what,
			d == LCA_BF16 ? "bf16" : "f32", name, ex, tol, eb,
			tu_maxabs(X[k], R[k], c->out[k].n));
	}
	for (int i = 0; i < c->nin; i++)
		free(rounded[i]);
	for (int k = 0; k < c->nout; k++) {
		free(R[k]);
		free(B[k]);
		free(X[k]);
	}
}

/* ---- softmax ---- */

static const int64_t cu_sm[] = { 0, 50, 50, 123, 200 };	/* one empty sequence */

static const struct sm_spec {
	const char *what;
	int64_t Tq, Tk, H, Hkv, dk, dv, window, rope_dim;
	int causal;
	lca_rope_style style;
	double scale;
	const int64_t *cu;
	int64_t nseq;
} sm_specs[] = {
	{ "softmax gqa causal rope-half d40/24", 77, 77, 6, 2, 40, 24, 0, 40, 1, LCA_ROPE_HALF, 0, NULL, 0 },
	{ "softmax prefill d128 gqa causal", 200, 200, 4, 2, 128, 128, 0, 0, 1, LCA_ROPE_HALF, 0, NULL, 0 },
	{ "softmax d64 window 37 rope-interleaved 32", 150, 150, 4, 1, 64, 64, 37, 32, 1, LCA_ROPE_INTERLEAVED, 0, NULL, 0 },
	{ "softmax chunked prefill Tq 45 of Tk 130", 45, 130, 2, 2, 64, 64, 0, 0, 1, LCA_ROPE_HALF, 0, NULL, 0 },
	{ "softmax Tq 20 > Tk 7: fully masked rows", 20, 7, 2, 2, 64, 64, 0, 0, 1, LCA_ROPE_HALF, 0, NULL, 0 },
	{ "softmax non-causal d17/9 scale 0.3", 33, 71, 3, 3, 17, 9, 0, 0, 0, LCA_ROPE_HALF, 0.3, NULL, 0 },
	{ "softmax decode Tq 1 Tk 1000 d128 rope 64", 1, 1000, 8, 2, 128, 128, 0, 64, 1, LCA_ROPE_HALF, 0, NULL, 0 },
	{ "softmax varlen d64 rope (empty sequence)", 200, 200, 4, 2, 64, 64, 0, 64, 1, LCA_ROPE_HALF, 0, cu_sm, 4 },
	{ "softmax varlen d48 window 16", 200, 200, 4, 4, 48, 48, 16, 0, 1, LCA_ROPE_HALF, 0, cu_sm, 4 },
	{ "softmax positions ~70K rope window 1000", 8, 70000, 2, 1, 64, 64, 1000, 64, 1, LCA_ROPE_HALF, 0, NULL, 0 },
	{ "softmax 70K keys d128 rope", 4, 70000, 2, 1, 128, 128, 0, 128, 1, LCA_ROPE_HALF, 0, NULL, 0 },
};
#define N_SM ((int)(sizeof sm_specs / sizeof sm_specs[0]))

static void sm_kase(const struct sm_spec *s, struct kase *c)
{
	lca_params p = tu_params(LCA_SOFTMAX);

	memset(c, 0, sizeof *c);
	snprintf(c->what, sizeof c->what, "%s", s->what);
	p.H = s->H;
	p.Hkv = s->Hkv;
	p.dk = s->dk;
	p.dv = s->dv;
	p.causal = s->causal;
	p.window = s->window;
	p.rope_dim = s->rope_dim;
	p.rope_style = s->style;
	p.scale = s->scale;
	c->p = p;
	c->Tq = s->Tq;
	c->Tk = s->Tk;
	c->cu = s->cu;
	c->nseq = s->nseq;
	add_in(c, "q", s->Tq * s->H * s->dk, 1.0);
	add_in(c, "k", s->Tk * s->Hkv * s->dk, 1.0);
	add_in(c, "v", s->Tk * s->Hkv * s->dv, 1.0);
	add_out(c, "o", s->Tq * s->H * s->dv, 0);
	add_out(c, "lse", s->Tq * s->H, 0);
}

/* _i = 2 * case + (0 f32, 1 bf16) */
START_TEST(softmax_matches_reference)
{
	struct kase c;

	sm_kase(&sm_specs[_i / 2], &c);
	compare(&c, _i % 2 ? LCA_BF16 : LCA_F32);
	kase_free(&c);
}
END_TEST

/* ---- mla ---- */

static const int64_t cu_mla[] = { 0, 30, 31, 90 };

static const struct mla_spec {
	const char *what;
	int64_t Tq, Tk, H, dn, dr, dc, dv, window;
	lca_algo algo;
	const int64_t *cu;
	int64_t nseq;
} mla_specs[] = {
	{ "mla absorbed causal", 60, 60, 4, 16, 8, 40, 12, 0, LCA_ALGO_ABSORBED, NULL, 0 },
	{ "mla naive causal", 60, 60, 4, 16, 8, 40, 12, 0, LCA_ALGO_NAIVE, NULL, 0 },
	{ "mla absorbed decode Tq 1 Tk 500 H 16", 1, 500, 16, 32, 16, 64, 32, 0, LCA_ALGO_ABSORBED, NULL, 0 },
	{ "mla absorbed varlen window 20", 90, 90, 3, 24, 8, 48, 20, 20, LCA_ALGO_ABSORBED, cu_mla, 3 },
	{ "mla absorbed deepseek dims", 40, 40, 4, 128, 64, 512, 128, 0, LCA_ALGO_ABSORBED, NULL, 0 },
};
#define N_MLA ((int)(sizeof mla_specs / sizeof mla_specs[0]))

static void mla_kase(const struct mla_spec *s, struct kase *c)
{
	lca_params p = tu_params(LCA_MLA);

	memset(c, 0, sizeof *c);
	snprintf(c->what, sizeof c->what, "%s", s->what);
	p.H = s->H;
	p.dn = s->dn;
	p.dr = s->dr;
	p.dc = s->dc;
	p.dv = s->dv;
	p.window = s->window;
	p.algo = s->algo;
	p.scale = 1.0 / sqrt((double)(s->dn + s->dr));
	c->p = p;
	c->Tq = s->Tq;
	c->Tk = s->Tk;
	c->cu = s->cu;
	c->nseq = s->nseq;
	add_in(c, "q_nope", s->Tq * s->H * s->dn, 1.0);
	add_in(c, "q_rope", s->Tq * s->H * s->dr, 1.0);
	add_in(c, "ckv", s->Tk * s->dc, 1.0);
	add_in(c, "k_rope", s->Tk * s->dr, 1.0);
	/* w_uk ckv then has unit-size entries, like the rope part */
	add_in(c, "w_uk", s->H * s->dn * s->dc, 1.0 / sqrt((double)s->dc));
	add_in(c, "w_uv", s->H * s->dv * s->dc, 1.0 / sqrt((double)s->dc));
	add_out(c, "o", s->Tq * s->H * s->dv, 0);
	add_out(c, "lse", s->Tq * s->H, 0);
}

START_TEST(mla_matches_reference)
{
	struct kase c;

	mla_kase(&mla_specs[_i / 2], &c);
	compare(&c, _i % 2 ? LCA_BF16 : LCA_F32);
	kase_free(&c);
}
END_TEST

/* ---- deltanet and lightning ---- */

static const int64_t cu_lin[] = { 0, 70, 70, 150 };

static const struct lin_spec {
	const char *what;
	lca_variant v;
	int64_t T, H, Hk, dk, dv, chunk, split;
	lca_algo algo;
	int l2norm, state0;
	const int64_t *cu;
	int64_t nseq;
} lin_specs[] = {
	{ "deltanet chunked gqa dv 40", LCA_DELTANET, 150, 4, 2, 32, 40, 0, 0, LCA_ALGO_CHUNKED, 1, 1, NULL, 0 },
	{ "deltanet recurrent gqa dv 40", LCA_DELTANET, 150, 4, 2, 32, 40, 0, 0, LCA_ALGO_RECURRENT, 1, 1, NULL, 0 },
	{ "deltanet chunked varlen (empty sequence)", LCA_DELTANET, 150, 2, 1, 32, 32, 0, 0, LCA_ALGO_CHUNKED, 1, 1, cu_lin, 3 },
	{ "deltanet chunked no l2norm chunk 16", LCA_DELTANET, 50, 2, 2, 16, 24, 16, 0, LCA_ALGO_CHUNKED, 0, 0, NULL, 0 },
	{ "deltanet recurrent decode T 1", LCA_DELTANET, 1, 4, 2, 64, 64, 0, 0, LCA_ALGO_RECURRENT, 1, 1, NULL, 0 },
	{ "deltanet chunked decode T 1", LCA_DELTANET, 1, 4, 2, 64, 64, 0, 0, LCA_ALGO_CHUNKED, 1, 1, NULL, 0 },
	{ "deltanet chunked d128 T 300", LCA_DELTANET, 300, 2, 1, 128, 128, 0, 0, LCA_ALGO_CHUNKED, 1, 1, NULL, 0 },
	{ "deltanet chunked state hand-off 70+130", LCA_DELTANET, 200, 2, 2, 32, 48, 0, 70, LCA_ALGO_CHUNKED, 1, 1, NULL, 0 },
	{ "deltanet recurrent state hand-off 99+1", LCA_DELTANET, 100, 2, 1, 32, 32, 0, 99, LCA_ALGO_RECURRENT, 1, 1, NULL, 0 },
	{ "deltanet chunked dk 160 (no prefetch)", LCA_DELTANET, 90, 2, 1, 160, 40, 0, 0, LCA_ALGO_CHUNKED, 1, 1, NULL, 0 },
	{ "lightning blockwise dv 40", LCA_LIGHTNING, 150, 4, 0, 32, 40, 0, 0, LCA_ALGO_CHUNKED, 0, 1, NULL, 0 },
	{ "lightning recurrent dv 40", LCA_LIGHTNING, 150, 4, 0, 32, 40, 0, 0, LCA_ALGO_RECURRENT, 0, 1, NULL, 0 },
	{ "lightning blockwise varlen (empty sequence)", LCA_LIGHTNING, 150, 2, 0, 32, 32, 0, 0, LCA_ALGO_CHUNKED, 0, 1, cu_lin, 3 },
	{ "lightning blockwise no state0 block 16", LCA_LIGHTNING, 50, 2, 0, 16, 24, 16, 0, LCA_ALGO_CHUNKED, 0, 0, NULL, 0 },
	{ "lightning recurrent decode T 1", LCA_LIGHTNING, 1, 4, 0, 64, 64, 0, 0, LCA_ALGO_RECURRENT, 0, 1, NULL, 0 },
	{ "lightning blockwise d128 T 300", LCA_LIGHTNING, 300, 2, 0, 128, 128, 0, 0, LCA_ALGO_CHUNKED, 0, 1, NULL, 0 },
	{ "lightning blockwise state hand-off 70+130", LCA_LIGHTNING, 200, 2, 0, 32, 48, 0, 70, LCA_ALGO_CHUNKED, 0, 1, NULL, 0 },
	{ "lightning blockwise dk 160 (no prefetch)", LCA_LIGHTNING, 90, 2, 0, 160, 40, 0, 0, LCA_ALGO_CHUNKED, 0, 1, NULL, 0 },
};
#define N_LIN ((int)(sizeof lin_specs / sizeof lin_specs[0]))

static void lin_kase(const struct lin_spec *s, struct kase *c)
{
	int dn = s->v == LCA_DELTANET;
	lca_params p = tu_params(s->v);
	int64_t Hk = dn ? s->Hk : s->H, N = s->cu ? s->nseq : 1;
	double *x;

	memset(c, 0, sizeof *c);
	snprintf(c->what, sizeof c->what, "%s", s->what);
	p.H = s->H;
	p.dk = s->dk;
	p.dv = s->dv;
	p.algo = s->algo;
	if (dn) {
		p.Hk = s->Hk;
		p.qk_l2norm = s->l2norm;
		if (s->chunk)
			p.chunk = s->chunk;
	} else if (s->chunk) {
		p.block = s->chunk;
	}
	c->p = p;
	c->T = s->T;
	c->cu = s->cu;
	c->nseq = s->nseq;
	c->split = s->split;
	/* without the L2 norm the keys must stay small for S to stay bounded */
	add_in(c, "q", s->T * Hk * s->dk, 1.0);
	add_in(c, "k", s->T * Hk * s->dk, dn && !s->l2norm ? 0.2 : 1.0);
	add_in(c, "v", s->T * s->H * s->dv, 1.0);
	if (dn) {
		x = add_in(c, "g", s->T * s->H, 1.0);
		for (int64_t i = 0; i < s->T * s->H; i++)
			x[i] = -tu_uniform(0.005, 0.5);
		x = add_in(c, "beta", s->T * s->H, 1.0);
		for (int64_t i = 0; i < s->T * s->H; i++)
			x[i] = tu_uniform(0.1, 1.0);
	} else {
		x = add_in(c, "slope", s->H, 1.0);
		tu_assert_ok(lca_minimax_slopes(s->H, 2, 8, x));
	}
	x = add_in(c, "state0", N * s->H * s->dk * s->dv, 0.5);
	c->in[c->nin - 1].state = 1;
	if (!s->state0) {
		free(x);
		c->in[c->nin - 1].x = NULL;
	}
	add_out(c, "o", s->T * s->H * s->dv, 0);
	add_out(c, "state", N * s->H * s->dk * s->dv, 1);
}

START_TEST(linear_matches_reference)
{
	struct kase c;

	lin_kase(&lin_specs[_i / 2], &c);
	compare(&c, _i % 2 ? LCA_BF16 : LCA_F32);
	kase_free(&c);
}
END_TEST

#ifndef CHECK_ON_CPU
/* ---- errors and buffers ---- */

START_TEST(cuda_refuses_f64)
{
	lca_params p = tu_params(LCA_SOFTMAX);
	lca_plan *plan = NULL;

	p.H = 2;
	p.dk = p.dv = 8;
	p.backend = LCA_BACKEND_CUDA;
	p.dtype = LCA_F64;
	ck_assert_int_eq(lca_plan_create(&p, &plan), LCA_ERR_UNSUPPORTED);
	ck_assert_ptr_null(plan);
}
END_TEST

START_TEST(buffers_round_trip)
{
	const int64_t n = 1000;
	double *x = tu_alloc(n), *y = tu_alloc(n);
	void *a = NULL, *b = NULL;

	tu_fill_normal(x, n, 1.0);
	tu_assert_ok(lca_buffer_alloc(LCA_BACKEND_CUDA, n * sizeof *x, &a));
	tu_assert_ok(lca_buffer_alloc(LCA_BACKEND_CUDA, n * sizeof *x, &b));
	tu_assert_ok(lca_buffer_copy(LCA_BACKEND_CUDA, a, x, n * sizeof *x, LCA_COPY_HOST_TO_DEVICE));
	tu_assert_ok(lca_buffer_copy(LCA_BACKEND_CUDA, b, a, n * sizeof *x, LCA_COPY_DEVICE_TO_DEVICE));
	tu_assert_ok(lca_buffer_copy(LCA_BACKEND_CUDA, y, b, n * sizeof *x, LCA_COPY_DEVICE_TO_HOST));
	ck_assert(memcmp(x, y, n * sizeof *x) == 0);
	lca_buffer_free(LCA_BACKEND_CUDA, a);
	lca_buffer_free(LCA_BACKEND_CUDA, b);
	free(x);
	free(y);
}
END_TEST

/* A NaN in a device tensor is found by the device scan and named. */
START_TEST(nonfinite_device_input_is_refused)
{
	struct kase c;
	lca_plan *plan;
	void *d[3], *o, *h;
	const int64_t bad = 123;

	sm_kase(&sm_specs[0], &c);
	c.in[1].x[bad] = NAN;
	c.p.backend = LCA_BACKEND_CUDA;
	c.p.dtype = LCA_F32;
	plan = tu_plan(&c.p);
	for (int i = 0; i < 3; i++) {
		h = host_cast(c.in[i].x, c.in[i].n, LCA_F32);
		tu_assert_ok(lca_buffer_alloc(LCA_BACKEND_CUDA, c.in[i].n * 4, &d[i]));
		tu_assert_ok(lca_buffer_copy(LCA_BACKEND_CUDA, d[i], h, c.in[i].n * 4,
			LCA_COPY_HOST_TO_DEVICE));
		free(h);
	}
	tu_assert_ok(lca_buffer_alloc(LCA_BACKEND_CUDA, c.out[0].n * 4, &o));
	ck_assert_int_eq(lca_softmax_forward(plan, c.Tq, c.Tk, d[0], d[1], d[2], NULL, 0, o, NULL),
		LCA_ERR_NONFINITE);
	ck_assert_msg(strstr(lca_last_error(), "k[123]") != NULL, "message: %s", lca_last_error());
	for (int i = 0; i < 3; i++)
		lca_buffer_free(LCA_BACKEND_CUDA, d[i]);
	lca_buffer_free(LCA_BACKEND_CUDA, o);
	lca_plan_destroy(plan);
	kase_free(&c);
}
END_TEST

/* g > 0 on the device is refused like on the host. */
START_TEST(positive_gate_on_device_is_refused)
{
	struct kase c;
	lca_plan *plan;
	void *d[6] = { 0 }, *o[2] = { 0 }, *h;

	lin_kase(&lin_specs[0], &c);
	c.in[3].x[7] = 0.25;
	c.p.backend = LCA_BACKEND_CUDA;
	c.p.dtype = LCA_F32;
	plan = tu_plan(&c.p);
	for (int i = 0; i < 6; i++) {
		h = host_cast(c.in[i].x, c.in[i].n, LCA_F32);
		tu_assert_ok(lca_buffer_alloc(LCA_BACKEND_CUDA, c.in[i].n * 4, &d[i]));
		tu_assert_ok(lca_buffer_copy(LCA_BACKEND_CUDA, d[i], h, c.in[i].n * 4,
			LCA_COPY_HOST_TO_DEVICE));
		free(h);
	}
	for (int k = 0; k < 2; k++)
		tu_assert_ok(lca_buffer_alloc(LCA_BACKEND_CUDA, c.out[k].n * 4, &o[k]));
	ck_assert_int_eq(call(&c, plan, c.T, NULL, 0, d, o), LCA_ERR_ARG);
	ck_assert(tu_msg_names("g"));
	for (int i = 0; i < 6; i++)
		lca_buffer_free(LCA_BACKEND_CUDA, d[i]);
	for (int k = 0; k < 2; k++)
		lca_buffer_free(LCA_BACKEND_CUDA, o[k]);
	lca_plan_destroy(plan);
	kase_free(&c);
}
END_TEST

/* ---- main ---- */

/* Is a GPU usable? Asked in a child so this process never touches CUDA. */
static int cuda_usable(void)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return 0;
	if (pid == 0)
		_exit(lca_backend_available(LCA_BACKEND_CUDA) ? 0 : 1);
	if (waitpid(pid, &st, 0) < 0)
		return 0;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static TCase *tcase(const char *name)
{
	TCase *tc = tu_tcase(name);

	/* the double reference of the 70K-key cases takes a few seconds */
	tcase_set_timeout(tc, 300);
	return tc;
}

int main(void)
{
	Suite *s;
	TCase *tc;

	if (!cuda_usable()) {
		printf("skip: no usable CUDA device (or built without CUDA)\n");
		return 77;
	}
	tu_init();
	s = suite_create("cuda");
	tc = tcase("softmax");
	tcase_add_loop_test(tc, softmax_matches_reference, 0, 2 * N_SM);
	suite_add_tcase(s, tc);
	tc = tcase("mla");
	tcase_add_loop_test(tc, mla_matches_reference, 0, 2 * N_MLA);
	suite_add_tcase(s, tc);
	tc = tcase("linear");
	tcase_add_loop_test(tc, linear_matches_reference, 0, 2 * N_LIN);
	suite_add_tcase(s, tc);
	tc = tcase("api");
	tcase_add_test(tc, cuda_refuses_f64);
	tcase_add_test(tc, buffers_round_trip);
	tcase_add_test(tc, nonfinite_device_input_is_refused);
	tcase_add_test(tc, positive_gate_on_device_is_refused);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
#endif /* CHECK_ON_CPU */
