/*
 * check_grad_deltanet.c - lca_deltanet_backward on the ref backend: every
 * element of every gradient (dq, dk, dv, dg, dbeta, dstate0) against
 * central finite differences of L = sum(o * dout) + sum(state * dstate) on
 * tiny shapes, for the recurrent and the chunked adjoint; the two adjoints
 * against each other; a directional derivative across chunk boundaries;
 * the float32 reference; and the forward's refusals, which write nothing.
 *
 * Each finite-difference line printed ("fd CASE ALGO TENSOR ERR") is one
 * row of the table the report quotes.
 */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { IQ, IK, IV, IG, IB, IS, NIN };
static const char *const in_name[NIN] = {
	"dq", "dk", "dv", "dg", "dbeta", "dstate0"
};

/* One shape and input distribution. */
struct gc {
	const char *name;
	int64_t T, H, Hk, dk, dv;
	int l2;                 /* qk_l2norm */
	int state0, dstate;     /* given (1) or NULL (0) */
	const int64_t *cu;      /* NULL: one sequence */
	int64_t nseq;
	double glo, ghi;        /* g uniform in [glo, ghi] */
	double blo, bhi;        /* beta uniform in [blo, bhi] */
	int g_zero;             /* every third gate exactly 0 */
};

/* Inputs (state0 always allocated: zeros when not given), cotangents,
 * gradients. */
struct gio {
	double *in[NIN], *dout, *dstate, *grad[NIN];
	int64_t n[NIN], no;
};

static int64_t nstates(const struct gc *c)
{
	return (c->cu ? c->nseq : 1) * c->H * c->dk * c->dv;
}

static void gio_alloc(const struct gc *c, struct gio *x)
{
	x->n[IQ] = x->n[IK] = c->T * c->Hk * c->dk;
	x->n[IV] = x->no = c->T * c->H * c->dv;
	x->n[IG] = x->n[IB] = c->T * c->H;
	x->n[IS] = nstates(c);
	for (int i = 0; i < NIN; i++) {
		x->in[i] = tu_alloc(x->n[i]);
		x->grad[i] = tu_alloc(x->n[i]);
	}
	x->dout = tu_alloc(x->no);
	x->dstate = tu_alloc(x->n[IS]);
	tu_fill_normal(x->in[IQ], x->n[IQ], 1.0);
	tu_fill_normal(x->in[IK], x->n[IK], 1.0);
	tu_fill_normal(x->in[IV], x->n[IV], 1.0);
	tu_fill_uniform(x->in[IG], x->n[IG], c->glo, c->ghi);
	tu_fill_uniform(x->in[IB], x->n[IB], c->blo, c->bhi);
	if (c->g_zero)
		for (int64_t i = 0; i < x->n[IG]; i += 3)
			x->in[IG][i] = 0.0;
	if (c->state0)
		tu_fill_normal(x->in[IS], x->n[IS], 0.5);
	tu_fill_normal(x->dout, x->no, 1.0);
	tu_fill_normal(x->dstate, x->n[IS], 1.0);
}

static void gio_free(struct gio *x)
{
	for (int i = 0; i < NIN; i++) {
		free(x->in[i]);
		free(x->grad[i]);
	}
	free(x->dout);
	free(x->dstate);
}

static lca_plan *gc_plan(const struct gc *c, lca_algo algo, int64_t chunk,
	lca_dtype dtype)
{
	lca_params p = tu_params(LCA_DELTANET);

	p.algo = algo;
	p.dtype = dtype;
	p.H = c->H;
	p.Hk = c->Hk;
	p.dk = c->dk;
	p.dv = c->dv;
	p.qk_l2norm = c->l2;
	if (chunk)
		p.chunk = chunk;
	return tu_plan(&p);
}

/* L = sum(o * dout) + sum(state * dstate); state0 as given in x->in[IS]
 * (passed even when zero: the call equates NULL with zeros). */
static double loss(const lca_plan *plan, const struct gc *c,
	const struct gio *x, const double *const in[NIN])
{
	double *o = tu_alloc(x->no), *s = tu_alloc(x->n[IS]), L = 0.0;

	tu_assert_ok(lca_deltanet_forward(plan, c->T, in[IQ], in[IK], in[IV],
		in[IG], in[IB], c->cu, c->nseq, in[IS], o, s));
	for (int64_t i = 0; i < x->no; i++)
		L += o[i] * x->dout[i];
	if (c->dstate)
		for (int64_t i = 0; i < x->n[IS]; i++)
			L += s[i] * x->dstate[i];
	free(o);
	free(s);
	return L;
}

static void backward(const lca_plan *plan, const struct gc *c,
	struct gio *x)
{
	tu_assert_ok(lca_deltanet_backward(plan, c->T, x->in[IQ], x->in[IK],
		x->in[IV], x->in[IG], x->in[IB], c->cu, c->nseq,
		c->state0 ? x->in[IS] : NULL, x->dout,
		c->dstate ? x->dstate : NULL, x->grad[IQ], x->grad[IK],
		x->grad[IV], x->grad[IG], x->grad[IB], x->grad[IS]));
}

/*
 * dL/dx_j for every element of input `which` by central differences,
 * (L(x + h) - L(x - h)) / 2h, h = 1e-5: inputs are O(1) and L is smooth,
 * so the truncation error is O(h^2) ~ 1e-10 and the rounding error
 * eps |L| / h ~ 1e-11, both far below the 1e-6 tolerance (h = eps^(1/3)
 * ~ 6e-6 balances them). A gate within h of 0 cannot step up (g > 0 is
 * refused): it takes the one-sided second-order difference
 * (3 L(x) - 4 L(x - h) + L(x - 2h)) / 2h, also O(h^2).
 */
static void fd_grad(const lca_plan *plan, const struct gc *c,
	const struct gio *x, int which, double *fd)
{
	const double h = 1e-5;
	double *in[NIN];
	double *xi = x->in[which];

	memcpy(in, x->in, sizeof in);
	for (int64_t j = 0; j < x->n[which]; j++) {
		double x0 = xi[j], lp, lm, l0, lm2;

		if (which == IG && x0 + h > 0.0) {
			l0 = loss(plan, c, x, (const double *const *)in);
			xi[j] = x0 - h;
			lm = loss(plan, c, x, (const double *const *)in);
			xi[j] = x0 - 2 * h;
			lm2 = loss(plan, c, x, (const double *const *)in);
			fd[j] = (3 * l0 - 4 * lm + lm2) / (2 * h);
		} else {
			xi[j] = x0 + h;
			lp = loss(plan, c, x, (const double *const *)in);
			xi[j] = x0 - h;
			lm = loss(plan, c, x, (const double *const *)in);
			fd[j] = (lp - lm) / (2 * h);
		}
		xi[j] = x0;
	}
}

/* ---- finite differences, every element of every input ------------------ */

static const int64_t cu_empty[] = { 0, 5, 5, 11 };

static const struct gc fd_cases[] = {
	{ "T = 1", 1, 2, 2, 3, 2, 1, 1, 1, NULL, 0,
		-1.0, -0.1, 0.1, 1.0, 0 },
	{ "T = 5, no L2 norm", 5, 2, 1, 3, 3, 0, 1, 1, NULL, 0,
		-1.0, -0.1, 0.1, 1.0, 0 },
	{ "GVA H = 4, Hk = 2, dk != dv", 9, 4, 2, 4, 2, 1, 1, 1, NULL, 0,
		-1.0, -0.1, 0.1, 1.0, 0 },
	{ "state0 absent", 6, 2, 1, 3, 2, 1, 0, 1, NULL, 0,
		-1.0, -0.1, 0.1, 1.0, 0 },
	{ "dstate absent", 6, 2, 2, 2, 3, 1, 1, 0, NULL, 0,
		-1.0, -0.1, 0.1, 1.0, 0 },
	{ "state0 and dstate absent", 5, 2, 1, 3, 2, 0, 0, 0, NULL, 0,
		-1.0, -0.1, 0.1, 1.0, 0 },
	{ "varlen with an empty sequence", 11, 2, 1, 3, 2, 1, 1, 1, cu_empty, 3,
		-1.0, -0.1, 0.1, 1.0, 0 },
	{ "strong gates, beta near 1", 9, 2, 1, 3, 2, 1, 1, 1, NULL, 0,
		-5.2, -4.8, 0.95, 1.0, 0 },
	{ "weak gates, g = 0, beta near 0", 9, 2, 1, 3, 2, 1, 1, 1, NULL, 0,
		-0.02, 0.0, 1e-3, 0.02, 1 },
	{ "weak gates, g = 0, beta near 1", 9, 2, 1, 2, 3, 0, 1, 1, NULL, 0,
		-0.02, 0.0, 0.95, 1.0, 1 },
};
#define NFD ((int)(sizeof fd_cases / sizeof fd_cases[0]))

/* Loop index: case _i / 2, recurrent (even) or chunked with chunk 4, so
 * T = 5, 6, 9, 11 cross chunk boundaries and end in a partial chunk. */
START_TEST(test_every_gradient_matches_finite_differences)
{
	const struct gc *c = &fd_cases[_i / 2];
	lca_algo algo = _i % 2 ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT;
	lca_plan *plan = gc_plan(c, algo, 4, LCA_F64);
	struct gio x;

	gio_alloc(c, &x);
	backward(plan, c, &x);
	for (int i = 0; i < NIN; i++) {
		double *fd = tu_alloc(x.n[i]), e;

		fd_grad(plan, c, &x, i, fd);
		e = tu_relerr(x.grad[i], fd, x.n[i]);
		printf("fd %-32s %-9s %-7s %.3e\n", c->name,
			_i % 2 ? "chunked" : "recurrent", in_name[i], e);
		fflush(stdout);
		ck_assert_msg(tu_all_finite(x.grad[i], x.n[i]),
			"%s: %s not finite", c->name, in_name[i]);
		tu_assert_close(x.grad[i], fd, x.n[i], 1e-6, in_name[i]);
		free(fd);
	}
	gio_free(&x);
	lca_plan_destroy(plan);
}
END_TEST

/* ---- the two adjoints agree --------------------------------------------- */

/* Gradients of the chunked adjoint (chunk `chunk`) equal the recurrent
 * ones to 1e-12 normwise, each tensor finite. */
static void check_adjoints_agree(const struct gc *c, struct gio *x,
	int64_t chunk)
{
	lca_plan *pr = gc_plan(c, LCA_ALGO_RECURRENT, 0, LCA_F64);
	lca_plan *pc = gc_plan(c, LCA_ALGO_CHUNKED, chunk, LCA_F64);
	struct gio y = *x;

	for (int i = 0; i < NIN; i++)
		y.grad[i] = tu_alloc(x->n[i]);
	backward(pr, c, x);
	backward(pc, c, &y);
	for (int i = 0; i < NIN; i++) {
		printf("agree %s chunk %lld %-7s %.3e\n", c->name,
			(long long)chunk, in_name[i],
			tu_relerr(y.grad[i], x->grad[i], x->n[i]));
		ck_assert_msg(tu_all_finite(y.grad[i], x->n[i]) &&
			tu_all_finite(x->grad[i], x->n[i]), "%s not finite",
			in_name[i]);
		tu_assert_close(y.grad[i], x->grad[i], x->n[i], 1e-12,
			in_name[i]);
		free(y.grad[i]);
	}
	fflush(stdout);
	lca_plan_destroy(pr);
	lca_plan_destroy(pc);
}

static const int64_t cu_long[] = { 0, 47, 47, 130 };

/* Loop index: chunk 64 or 32, one sequence or varlen. */
START_TEST(test_chunked_adjoint_equals_recurrent_adjoint)
{
	struct gc c = { "T = 130", 130, 4, 2, 16, 12, 1, 1, 1, NULL, 0,
		-2.0, 0.0, 0.05, 1.5, 1 };
	struct gio x;

	if (_i / 2) {
		c.name = "T = 130 varlen";
		c.cu = cu_long;
		c.nseq = 3;
	}
	gio_alloc(&c, &x);
	check_adjoints_agree(&c, &x, _i % 2 ? 32 : 64);
	gio_free(&x);
}
END_TEST

/*
 * exp(g) underflows to 0 (a full reset), or nearly so, at scattered tokens
 * and in a run inside one chunk: an adjoint that divides by a decay, or
 * takes exp of a difference of cumulative sums, meets 0 * inf or
 * inf - inf there.
 */
START_TEST(test_extreme_gates_adjoints_agree)
{
	static const double extreme[] = { -1e30, -800.0, -1e300, -60.0, -1e4 };
	const struct gc c = { "extreme gates", 150, 2, 2, 6, 4, 0, 1, 1, NULL,
		0, -3.0, 0.0, 0.05, 2.0, 0 };
	struct gio x;

	gio_alloc(&c, &x);
	for (int64_t j = 0; j < x.n[IG]; j++)
		if (tu_uniform(0, 1) < 0.15)
			x.in[IG][j] = extreme[tu_randint(0, 4)];
	for (int64_t t = 100; t < 106; t++)
		x.in[IG][t * c.H] = -1e30;
	check_adjoints_agree(&c, &x, 64);
	gio_free(&x);
}
END_TEST

/* g = -DBL_MAX is a valid input; two in one chunk sum to -inf. */
START_TEST(test_most_negative_gates_adjoints_agree)
{
	const struct gc c = { "g = -DBL_MAX", 70, 1, 1, 4, 3, 0, 1, 1, NULL,
		0, -3.0, 0.0, 0.05, 2.0, 0 };
	struct gio x;

	gio_alloc(&c, &x);
	x.in[IG][3] = x.in[IG][5] = -DBL_MAX;
	x.in[IG][40] = x.in[IG][41] = -DBL_MAX;
	check_adjoints_agree(&c, &x, 16);
	gio_free(&x);
}
END_TEST

/* dstate0 = NULL (not wanted) leaves the other gradients as they were,
 * bit for bit; buffers full of garbage are overwritten, not added to. */
START_TEST(test_dstate0_is_optional_and_buffers_are_overwritten)
{
	const struct gc c = { "optional", 13, 2, 1, 4, 3, 1, 1, 1, NULL, 0,
		-2.0, 0.0, 0.05, 1.0, 0 };
	lca_algo algo = _i ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT;
	lca_plan *plan = gc_plan(&c, algo, 4, LCA_F64);
	double *gr[NIN];
	struct gio x;

	gio_alloc(&c, &x);
	backward(plan, &c, &x);
	for (int i = 0; i < NIN; i++) {
		gr[i] = tu_alloc(x.n[i]);
		tu_fill_normal(gr[i], x.n[i], 1.0);
	}
	tu_assert_ok(lca_deltanet_backward(plan, c.T, x.in[IQ], x.in[IK],
		x.in[IV], x.in[IG], x.in[IB], NULL, 0, x.in[IS], x.dout,
		x.dstate, gr[IQ], gr[IK], gr[IV], gr[IG], gr[IB], NULL));
	for (int i = 0; i < IS; i++)
		ck_assert_msg(memcmp(gr[i], x.grad[i],
			(size_t)x.n[i] * sizeof(double)) == 0,
			"%s differs without dstate0", in_name[i]);
	for (int i = 0; i < NIN; i++)
		free(gr[i]);
	gio_free(&x);
	lca_plan_destroy(plan);
}
END_TEST

/* ---- directional derivative on a larger shape ------------------------ */

/*
 * dL(x + s D)/ds at s = 0 is sum_i <grad_i, D_i> for a random direction D
 * over all six inputs at once; central difference with s = 1e-5 (gates in
 * [-3, -0.1], so g + s D stays <= 0). T = 45 with chunk 8: five full
 * chunks and a partial one, in two sequences.
 */
START_TEST(test_directional_derivative_across_chunks)
{
	static const int64_t cu[] = { 0, 21, 45 };
	const struct gc c = { "directional", 45, 4, 2, 6, 5, 1, 1, 1, cu, 2,
		-3.0, -0.1, 0.05, 1.0, 0 };
	lca_algo algo = _i ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT;
	lca_plan *plan = gc_plan(&c, algo, 8, LCA_F64);
	const double s = 1e-5;
	double *d[NIN], *xp[NIN], *xm[NIN], dir = 0.0, fd;
	struct gio x;

	gio_alloc(&c, &x);
	backward(plan, &c, &x);
	for (int i = 0; i < NIN; i++) {
		d[i] = tu_alloc(x.n[i]);
		tu_fill_normal(d[i], x.n[i], 1.0);
		xp[i] = tu_copy(x.in[i], x.n[i]);
		xm[i] = tu_copy(x.in[i], x.n[i]);
		for (int64_t j = 0; j < x.n[i]; j++) {
			dir += x.grad[i][j] * d[i][j];
			xp[i][j] += s * d[i][j];
			xm[i][j] -= s * d[i][j];
		}
	}
	fd = (loss(plan, &c, &x, (const double *const *)xp) -
		loss(plan, &c, &x, (const double *const *)xm)) / (2 * s);
	printf("directional %s %.3e\n", _i ? "chunked" : "recurrent",
		fabs(fd - dir) / fabs(fd));
	ck_assert_msg(fabs(fd - dir) <= 1e-6 * fabs(fd),
		"directional derivative %.15e, gradients give %.15e", fd, dir);
	for (int i = 0; i < NIN; i++) {
		free(d[i]);
		free(xp[i]);
		free(xm[i]);
	}
	gio_free(&x);
	lca_plan_destroy(plan);
}
END_TEST

/* ---- float32 reference ------------------------------------------------- */

static float *to_f32(const double *x, int64_t n)
{
	float *f = malloc((size_t)(n ? n : 1) * sizeof(*f));

	ck_assert_ptr_nonnull(f);
	for (int64_t i = 0; i < n; i++)
		f[i] = (float)x[i];
	return f;
}

/*
 * The same adjoint in float32 on inputs rounded to float: finite, and
 * within 1e-4 normwise of float64 on every gradient. Float rounding is
 * 6e-8 per operation; over T = 20 tokens of sums of dk, dv <= 8 terms with
 * gates <= 1 and beta <= 1 (a contraction), errors of 1e-6 are expected:
 * 1e-4 is a sanity bound, not the tolerance rule's 2x.
 */
START_TEST(test_float32_gradients_are_close_to_float64)
{
	const struct gc c = { "f32", 20, 2, 1, 8, 6, 1, 1, 1, NULL, 0,
		-1.0, 0.0, 0.05, 1.0, 0 };
	lca_algo algo = _i ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT;
	lca_plan *p64 = gc_plan(&c, algo, 8, LCA_F64);
	lca_plan *p32 = gc_plan(&c, algo, 8, LCA_F32);
	float *in[NIN], *gr[NIN], *dout, *dstate;
	struct gio x;

	gio_alloc(&c, &x);
	/* Round the inputs first so both runs see the same numbers. */
	for (int i = 0; i < NIN; i++)
		for (int64_t j = 0; j < x.n[i]; j++)
			x.in[i][j] = (float)x.in[i][j];
	backward(p64, &c, &x);
	for (int i = 0; i < NIN; i++) {
		in[i] = to_f32(x.in[i], x.n[i]);
		gr[i] = to_f32(x.grad[i], x.n[i]);
	}
	dout = to_f32(x.dout, x.no);
	dstate = to_f32(x.dstate, x.n[IS]);
	tu_assert_ok(lca_deltanet_backward(p32, c.T, in[IQ], in[IK], in[IV],
		in[IG], in[IB], NULL, 0, in[IS], dout, dstate, gr[IQ], gr[IK],
		gr[IV], gr[IG], gr[IB], gr[IS]));
	for (int i = 0; i < NIN; i++) {
		double *g = tu_alloc(x.n[i]);

		for (int64_t j = 0; j < x.n[i]; j++)
			g[j] = gr[i][j];
		ck_assert_msg(tu_all_finite(g, x.n[i]), "%s not finite",
			in_name[i]);
		printf("f32 %s %-7s %.3e\n", _i ? "chunked" : "recurrent",
			in_name[i], tu_relerr(g, x.grad[i], x.n[i]));
		tu_assert_close(g, x.grad[i], x.n[i], 1e-4, in_name[i]);
		free(g);
		free(in[i]);
		free(gr[i]);
	}
	fflush(stdout);
	free(dout);
	free(dstate);
	gio_free(&x);
	lca_plan_destroy(p64);
	lca_plan_destroy(p32);
}
END_TEST

/* ---- refusals write nothing ------------------------------------------ */

static const struct gc bad = { "bad", 5, 2, 1, 3, 2, 1, 1, 1, NULL, 0,
	-1.0, -0.1, 0.1, 1.0, 0 };

/* Fill the gradient buffers with a random pattern and keep a copy. */
static void poison(struct gio *x, double *keep[NIN])
{
	for (int i = 0; i < NIN; i++) {
		tu_fill_normal(x->grad[i], x->n[i], 1.0);
		keep[i] = tu_copy(x->grad[i], x->n[i]);
	}
}

static void assert_untouched(struct gio *x, double *keep[NIN])
{
	for (int i = 0; i < NIN; i++) {
		ck_assert_msg(memcmp(x->grad[i], keep[i],
			(size_t)x->n[i] * sizeof(double)) == 0,
			"%s written by a failing call", in_name[i]);
		free(keep[i]);
	}
}

static lca_status bwd_status(const lca_plan *plan, const struct gio *x,
	const double *dout, const double *dstate, const double *g,
	double *dq)
{
	return lca_deltanet_backward(plan, bad.T, x->in[IQ], x->in[IK],
		x->in[IV], g, x->in[IB], NULL, 0, x->in[IS], dout, dstate, dq,
		x->grad[IK], x->grad[IV], x->grad[IG], x->grad[IB],
		x->grad[IS]);
}

START_TEST(test_null_dout_is_refused_and_writes_nothing)
{
	lca_plan *plan = gc_plan(&bad, LCA_ALGO_RECURRENT, 0, LCA_F64);
	double *keep[NIN];
	struct gio x;

	gio_alloc(&bad, &x);
	poison(&x, keep);
	ck_assert_int_eq(bwd_status(plan, &x, NULL, x.dstate, x.in[IG],
		x.grad[IQ]), LCA_ERR_NULL);
	assert_untouched(&x, keep);
	gio_free(&x);
	lca_plan_destroy(plan);
}
END_TEST

START_TEST(test_nan_in_dstate_is_refused_and_writes_nothing)
{
	lca_plan *plan = gc_plan(&bad, LCA_ALGO_CHUNKED, 2, LCA_F64);
	double *keep[NIN];
	struct gio x;

	gio_alloc(&bad, &x);
	x.dstate[tu_randint(0, x.n[IS] - 1)] = NAN;
	poison(&x, keep);
	ck_assert_int_eq(bwd_status(plan, &x, x.dout, x.dstate, x.in[IG],
		x.grad[IQ]), LCA_ERR_NONFINITE);
	assert_untouched(&x, keep);
	gio_free(&x);
	lca_plan_destroy(plan);
}
END_TEST

START_TEST(test_positive_gate_is_refused_and_writes_nothing)
{
	lca_plan *plan = gc_plan(&bad, LCA_ALGO_CHUNKED, 2, LCA_F64);
	double *keep[NIN];
	struct gio x;

	gio_alloc(&bad, &x);
	x.in[IG][tu_randint(0, x.n[IG] - 1)] = 1e-3;
	poison(&x, keep);
	ck_assert_int_eq(bwd_status(plan, &x, x.dout, x.dstate, x.in[IG],
		x.grad[IQ]), LCA_ERR_ARG);
	assert_untouched(&x, keep);
	gio_free(&x);
	lca_plan_destroy(plan);
}
END_TEST

/* dq aliasing q: q (the buffer dq) and every other gradient untouched. */
START_TEST(test_gradient_overlapping_an_input_is_refused)
{
	lca_plan *plan = gc_plan(&bad, LCA_ALGO_RECURRENT, 0, LCA_F64);
	double *keep[NIN], *q;
	struct gio x;

	gio_alloc(&bad, &x);
	poison(&x, keep);
	q = tu_copy(x.in[IQ], x.n[IQ]);
	ck_assert_int_eq(bwd_status(plan, &x, x.dout, x.dstate, x.in[IG],
		x.in[IQ]), LCA_ERR_ARG);
	ck_assert(memcmp(q, x.in[IQ], (size_t)x.n[IQ] * sizeof(double)) == 0);
	assert_untouched(&x, keep);
	free(q);
	gio_free(&x);
	lca_plan_destroy(plan);
}
END_TEST

static Suite *grad_deltanet_suite(void)
{
	Suite *s = suite_create("grad_deltanet");
	TCase *tc = tu_tcase("finite differences");

	tcase_add_loop_test(tc, test_every_gradient_matches_finite_differences,
		0, 2 * NFD);
	tcase_add_loop_test(tc, test_directional_derivative_across_chunks,
		0, 2);
	suite_add_tcase(s, tc);

	tc = tu_tcase("adjoints");
	tcase_add_loop_test(tc, test_chunked_adjoint_equals_recurrent_adjoint,
		0, 4);
	tcase_add_test(tc, test_extreme_gates_adjoints_agree);
	tcase_add_test(tc, test_most_negative_gates_adjoints_agree);
	tcase_add_loop_test(tc,
		test_dstate0_is_optional_and_buffers_are_overwritten, 0, 2);
	tcase_add_loop_test(tc, test_float32_gradients_are_close_to_float64,
		0, 2);
	suite_add_tcase(s, tc);

	tc = tu_tcase("refusals");
	tcase_add_test(tc, test_null_dout_is_refused_and_writes_nothing);
	tcase_add_test(tc, test_nan_in_dstate_is_refused_and_writes_nothing);
	tcase_add_test(tc, test_positive_gate_is_refused_and_writes_nothing);
	tcase_add_test(tc, test_gradient_overlapping_an_input_is_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(grad_deltanet_suite());
}
