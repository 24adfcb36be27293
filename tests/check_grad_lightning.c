/*
 * check_grad_lightning.c - lca_lightning_backward on the ref backend: the
 * gradients of L = sum(o * dout) + sum(state * dstate) against central
 * finite differences of the forward, element by element on tiny shapes and
 * along a direction on a larger one, for the recurrent and the blockwise
 * adjoint; the two adjoints against each other; the f32 reference against
 * f64; and the forward's statuses for bad input, gradients untouched.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum slopes { SL_RANDOM, SL_ZERO, SL_LARGE, SL_MINIMAX };

struct gc {
	const char *name;
	int64_t T, H, dk, dv;
	double scale;          /* 0 = default 1 */
	enum slopes slopes;
	int state0, dstate;    /* given (1) or NULL (0) */
	int64_t nseq;          /* 0 = no cu_seqlens */
	int64_t cu[4];
};

/* Every tensor of a call. state0 and dstate are always allocated (zeros
 * when the case passes NULL) so that finite differences can move them. */
struct gio {
	double *q, *k, *v, *slope, *state0, *dout, *dstate;
	double *dq, *dk, *dv, *dstate0;
	double *o, *state;
};

static int64_t nseq_of(const struct gc *c)
{
	return c->nseq ? c->nseq : 1;
}

static int64_t nq(const struct gc *c) { return c->T * c->H * c->dk; }
static int64_t nv(const struct gc *c) { return c->T * c->H * c->dv; }

static int64_t ns(const struct gc *c)
{
	return nseq_of(c) * c->H * c->dk * c->dv;
}

static void fill_slopes(const struct gc *c, double *slope)
{
	switch (c->slopes) {
	case SL_RANDOM:
		tu_fill_uniform(slope, c->H, 0.0, 1.0);
		break;
	case SL_ZERO:       /* lambda = 1: no decay at all */
		break;
	case SL_LARGE:      /* lambda from e^-3 down to e^-30 */
		for (int64_t h = 0; h < c->H; h++)
			slope[h] = h % 2 ? tu_uniform(20.0, 30.0) : tu_uniform(3.0, 5.0);
		break;
	case SL_MINIMAX:
		tu_assert_ok(lca_minimax_slopes(c->H, 0, 1, slope));
		break;
	}
}

static void gio_alloc(const struct gc *c, struct gio *x)
{
	x->q = tu_alloc(nq(c));
	x->k = tu_alloc(nq(c));
	x->v = tu_alloc(nv(c));
	x->slope = tu_alloc(c->H);
	x->state0 = tu_alloc(ns(c));
	x->dout = tu_alloc(nv(c));
	x->dstate = tu_alloc(ns(c));
	x->dq = tu_alloc(nq(c));
	x->dk = tu_alloc(nq(c));
	x->dv = tu_alloc(nv(c));
	x->dstate0 = tu_alloc(ns(c));
	x->o = tu_alloc(nv(c));
	x->state = tu_alloc(ns(c));
	tu_fill_normal(x->q, nq(c), 1.0);
	tu_fill_normal(x->k, nq(c), 1.0);
	tu_fill_normal(x->v, nv(c), 1.0);
	tu_fill_normal(x->dout, nv(c), 1.0);
	fill_slopes(c, x->slope);
	if (c->state0)
		tu_fill_normal(x->state0, ns(c), 1.0);
	if (c->dstate)
		tu_fill_normal(x->dstate, ns(c), 1.0);
}

static void gio_free(struct gio *x)
{
	double *all[] = { x->q, x->k, x->v, x->slope, x->state0, x->dout,
		x->dstate, x->dq, x->dk, x->dv, x->dstate0, x->o, x->state };

	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		free(all[i]);
}

static lca_plan *plan_for(const struct gc *c, lca_algo algo, int64_t block)
{
	lca_params p = tu_params(LCA_LIGHTNING);

	p.algo = algo;
	p.H = c->H;
	p.dk = c->dk;
	p.dv = c->dv;
	p.scale = c->scale;
	p.block = block;
	return tu_plan(&p);
}

static const int64_t *cu_of(const struct gc *c)
{
	return c->nseq ? c->cu : NULL;
}

/* L = sum(o * dout) + sum(state * dstate), through the public forward. */
static double loss(const struct gc *c, const lca_plan *plan, struct gio *x)
{
	double L = 0.0;

	tu_assert_ok(lca_lightning_forward(plan, c->T, x->q, x->k, x->v,
		x->slope, cu_of(c), c->nseq, x->state0, x->o, x->state));
	for (int64_t i = 0; i < nv(c); i++)
		L += x->o[i] * x->dout[i];
	for (int64_t i = 0; i < ns(c); i++)
		L += x->state[i] * x->dstate[i];
	return L;
}

/* The backward under test, NULL where the case says so. The gradients
 * start as NaN: a gradient accumulated into, or left unwritten, fails. */
static void backward(const struct gc *c, const lca_plan *plan, struct gio *x,
	double *dstate0)
{
	double *g[] = { x->dq, x->dk, x->dv, x->dstate0 };
	int64_t n[] = { nq(c), nq(c), nv(c), ns(c) };

	for (int j = 0; j < 4; j++)
		for (int64_t i = 0; i < n[j]; i++)
			g[j][i] = NAN;
	tu_assert_ok(lca_lightning_backward(plan, c->T, x->q, x->k, x->v,
		x->slope, cu_of(c), c->nseq, c->state0 ? x->state0 : NULL,
		x->dout, c->dstate ? x->dstate : NULL, x->dq, x->dk, x->dv,
		dstate0));
}

/*
 * Central differences of L in each element of x[0 .. n). Every term of o
 * and of the final state is a product of distinct inputs (one q, one k,
 * one v or state0 entry), so L is affine in any single element: the
 * truncation error of the central difference, h^2 L'''/6, is exactly
 * zero, and the step only trades rounding, about eps |L| / h. A large
 * step, 2^-4 against inputs of size 1, keeps that near 1e-14; dividing by
 * the step actually taken, (x + h) - (x - h), removes the rounding of
 * x +- h itself.
 */
static void fd_grad(const struct gc *c, const lca_plan *plan, struct gio *x,
	double *t, int64_t n, double *fd)
{
	const double h = 0x1p-4;

	for (int64_t i = 0; i < n; i++) {
		double x0 = t[i], xp = x0 + h, xm = x0 - h, lp, lm;

		t[i] = xp;
		lp = loss(c, plan, x);
		t[i] = xm;
		lm = loss(c, plan, x);
		t[i] = x0;
		fd[i] = (lp - lm) / (xp - xm);
	}
}

/* ---- finite differences, every element of every input -------------------- */

/* Block 4 makes every T > 4 cross a block boundary, none a multiple. */
static const struct gc fd_cases[] = {
	{ "T = 1", 1, 2, 3, 2, 0, SL_RANDOM, 1, 1, 0, { 0 } },
	{ "T = 6, no state0 or dstate", 6, 2, 3, 2, 0, SL_RANDOM, 0, 0, 0, { 0 } },
	{ "state0 and dstate, scale", 6, 2, 2, 5, 0.37, SL_RANDOM, 1, 1, 0, { 0 } },
	{ "dstate without state0", 7, 2, 3, 4, 0, SL_RANDOM, 0, 1, 0, { 0 } },
	{ "state0 without dstate", 5, 2, 4, 3, 0, SL_RANDOM, 1, 0, 0, { 0 } },
	{ "slope 0", 6, 2, 3, 2, 0, SL_ZERO, 1, 1, 0, { 0 } },
	{ "large slopes", 6, 2, 3, 2, 0.8, SL_LARGE, 1, 1, 0, { 0 } },
	{ "MiniMax slopes", 6, 4, 2, 3, 0, SL_MINIMAX, 1, 1, 0, { 0 } },
	{ "varlen, empty middle", 9, 2, 3, 2, 0, SL_RANDOM, 1, 1, 3, { 0, 3, 3, 9 } },
	{ "varlen, empty first", 6, 2, 2, 3, 1.5, SL_RANDOM, 0, 1, 3, { 0, 0, 5, 6 } },
};
#define N_FD_CASES (int)(sizeof fd_cases / sizeof fd_cases[0])

START_TEST(test_gradients_match_finite_differences)
{
	const struct gc *c = &fd_cases[_i / 2];
	lca_algo algo = _i % 2 ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT;
	const char *an = _i % 2 ? "blockwise" : "recurrent";
	static const char *names[] = { "dq", "dk", "dv", "dstate0" };
	lca_plan *plan = plan_for(c, algo, 4);
	struct gio x;
	double err[4];

	gio_alloc(c, &x);
	backward(c, plan, &x, x.dstate0);
	{
		double *in[] = { x.q, x.k, x.v, x.state0 };
		double *g[] = { x.dq, x.dk, x.dv, x.dstate0 };
		int64_t n[] = { nq(c), nq(c), nv(c), ns(c) };

		for (int j = 0; j < 4; j++) {
			double *fd = tu_alloc(n[j]);

			fd_grad(c, plan, &x, in[j], n[j], fd);
			err[j] = tu_relerr(g[j], fd, n[j]);
			ck_assert_msg(err[j] <= 1e-6, "%s, %s: %s normwise error "
				"%.3e > 1e-6 (max-abs %.3e)", c->name, an, names[j],
				err[j], tu_maxabs(g[j], fd, n[j]));
			free(fd);
		}
	}
	/* One line per case for the logs: the table of the actual errors. */
	printf("fd %-28s %-9s dq %.1e dk %.1e dv %.1e dstate0 %.1e\n",
		c->name, an, err[0], err[1], err[2], err[3]);
	lca_plan_destroy(plan);
	gio_free(&x);
}
END_TEST

START_TEST(test_dstate0_is_optional)
{
	static const struct gc c = { "", 9, 2, 3, 4, 0, SL_RANDOM, 1, 1, 0, { 0 } };
	struct gio x;
	double *want[3];

	gio_alloc(&c, &x);
	for (int a = 0; a < 2; a++) {
		lca_plan *plan = plan_for(&c, a ? LCA_ALGO_CHUNKED :
			LCA_ALGO_RECURRENT, 4);

		backward(&c, plan, &x, x.dstate0);
		want[0] = tu_copy(x.dq, nq(&c));
		want[1] = tu_copy(x.dk, nq(&c));
		want[2] = tu_copy(x.dv, nv(&c));
		backward(&c, plan, &x, NULL);
		tu_assert_close(x.dq, want[0], nq(&c), 0.0, "dq without dstate0");
		tu_assert_close(x.dk, want[1], nq(&c), 0.0, "dk without dstate0");
		tu_assert_close(x.dv, want[2], nv(&c), 0.0, "dv without dstate0");
		for (int j = 0; j < 3; j++)
			free(want[j]);
		lca_plan_destroy(plan);
	}
	gio_free(&x);
}
END_TEST

/* ---- the two adjoints against each other ---------------------------------- */

struct agree {
	int64_t T, block, nseq;
	int64_t cu[4];
};

static const struct agree agree_cases[] = {
	{ 257, 256, 0, { 0 } },
	{ 257, 32, 0, { 0 } },
	{ 1, 32, 0, { 0 } },
	{ 300, 32, 3, { 0, 100, 100, 300 } },
};

START_TEST(test_recurrent_and_blockwise_adjoints_agree)
{
	/* One head without decay, one ordinary, one with a large slope. */
	const struct agree *a = &agree_cases[_i];
	struct gc c = { "", a->T, 3, 5, 7, 0.5, SL_RANDOM, 1, 1, a->nseq,
		{ a->cu[0], a->cu[1], a->cu[2], a->cu[3] } };
	lca_plan *rp = plan_for(&c, LCA_ALGO_RECURRENT, a->block);
	lca_plan *bp = plan_for(&c, LCA_ALGO_CHUNKED, a->block);
	static const char *names[] = { "dq", "dk", "dv", "dstate0" };
	struct gio x;
	double *r[4];
	int64_t n[] = { nq(&c), nq(&c), nv(&c), ns(&c) };

	gio_alloc(&c, &x);
	x.slope[0] = 0.0;
	x.slope[2] = 20.0;
	backward(&c, rp, &x, x.dstate0);
	r[0] = tu_copy(x.dq, n[0]);
	r[1] = tu_copy(x.dk, n[1]);
	r[2] = tu_copy(x.dv, n[2]);
	r[3] = tu_copy(x.dstate0, n[3]);
	backward(&c, bp, &x, x.dstate0);
	{
		double *b[] = { x.dq, x.dk, x.dv, x.dstate0 };

		for (int j = 0; j < 4; j++) {
			ck_assert_msg(tu_all_finite(b[j], n[j]), "%s not finite",
				names[j]);
			printf("agree T %lld block %lld nseq %lld: %s %.1e\n",
				(long long)a->T, (long long)a->block,
				(long long)a->nseq, names[j],
				tu_relerr(b[j], r[j], n[j]));
			tu_assert_close(b[j], r[j], n[j], 1e-12, names[j]);
			free(r[j]);
		}
	}
	lca_plan_destroy(rp);
	lca_plan_destroy(bp);
	gio_free(&x);
}
END_TEST

/* ---- a directional derivative across blocks -------------------------------- */

/* L(x + h d) - L(x - h d) over 2h for all inputs moved at once, along a
 * random direction d. */
static double fd_along(const struct gc *c, const lca_plan *plan,
	struct gio *x, double *const *in, double *const *dir,
	const int64_t *n, double h)
{
	double lp, lm;

	for (int j = 0; j < 4; j++)
		for (int64_t i = 0; i < n[j]; i++)
			in[j][i] += h * dir[j][i];
	lp = loss(c, plan, x);
	for (int j = 0; j < 4; j++)
		for (int64_t i = 0; i < n[j]; i++)
			in[j][i] -= 2.0 * h * dir[j][i];
	lm = loss(c, plan, x);
	for (int j = 0; j < 4; j++)
		for (int64_t i = 0; i < n[j]; i++)
			in[j][i] += h * dir[j][i];
	return (lp - lm) / (2.0 * h);
}

START_TEST(test_directional_derivative_across_blocks)
{
	/* Two sequences of 37 and 33 tokens in blocks of 16. */
	static const struct gc c = { "", 70, 3, 6, 5, 0.7, SL_RANDOM, 1, 1, 2,
		{ 0, 37, 70 } };
	lca_algo algo = _i ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT;
	lca_plan *plan = plan_for(&c, algo, 16);
	struct gio x;
	int64_t n[] = { nq(&c), nq(&c), nv(&c), ns(&c) };
	double *dir[4], g = 0.0, d1, d2, fd;

	gio_alloc(&c, &x);
	x.slope[2] = 8.0;
	backward(&c, plan, &x, x.dstate0);
	{
		double *in[] = { x.q, x.k, x.v, x.state0 };
		double *gr[] = { x.dq, x.dk, x.dv, x.dstate0 };

		for (int j = 0; j < 4; j++) {
			dir[j] = tu_alloc(n[j]);
			tu_fill_normal(dir[j], n[j], 1.0);
			for (int64_t i = 0; i < n[j]; i++)
				g += gr[j][i] * dir[j][i];
		}
		/*
		 * Along a line L is a cubic in h (q k v products), so the
		 * central difference is g + c h^2 exactly and one Richardson
		 * step, (4 D(h) - D(2h)) / 3, removes c h^2 entirely: what
		 * is left is rounding, about eps |L| / h.
		 */
		d1 = fd_along(&c, plan, &x, in, dir, n, 0x1p-5);
		d2 = fd_along(&c, plan, &x, in, dir, n, 0x1p-4);
		fd = (4.0 * d1 - d2) / 3.0;
	}
	printf("directional %s: <grad, d> %.15e, fd %.15e, rel %.1e\n",
		_i ? "blockwise" : "recurrent", g, fd, fabs(g - fd) / fabs(fd));
	ck_assert_msg(fabs(g - fd) <= 1e-10 * fabs(fd),
		"<grad, d> = %.17g, finite difference %.17g", g, fd);
	for (int j = 0; j < 4; j++)
		free(dir[j]);
	lca_plan_destroy(plan);
	gio_free(&x);
}
END_TEST

/* ---- float32 ----------------------------------------------------------- */

static float *to_f32(const double *x, int64_t n)
{
	float *f = malloc((size_t)n * sizeof *f);

	ck_assert_ptr_nonnull(f);
	for (int64_t i = 0; i < n; i++)
		f[i] = (float)x[i];
	return f;
}

START_TEST(test_f32_reference_is_near_f64)
{
	/*
	 * A sanity bound, not the tolerance rule (which is relative to this
	 * very f32 reference): each gradient element is a sum of at most
	 * T (dk + dv) ~ 10^3 rounded products, so its error stays below
	 * ~10^3 x 2^-24 ~ 6e-5; 1e-4 catches a wrong f32 kernel, not noise.
	 */
	static const struct gc c = { "", 100, 2, 4, 5, 0.6, SL_RANDOM, 1, 1, 0,
		{ 0 } };
	static const char *names[] = { "dq", "dk", "dv", "dstate0" };
	int64_t n[] = { nq(&c), nq(&c), nv(&c), ns(&c) };
	struct gio x;

	gio_alloc(&c, &x);
	for (int a = 0; a < 2; a++) {
		lca_algo algo = a ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT;
		lca_plan *plan = plan_for(&c, algo, 16);
		lca_params p = tu_params(LCA_LIGHTNING);
		double *want[] = { x.dq, x.dk, x.dv, x.dstate0 };
		float *in[] = { to_f32(x.q, n[0]), to_f32(x.k, n[1]),
			to_f32(x.v, n[2]), to_f32(x.slope, c.H),
			to_f32(x.state0, n[3]), to_f32(x.dout, n[2]),
			to_f32(x.dstate, n[3]) };
		float *out[4];

		backward(&c, plan, &x, x.dstate0);
		lca_plan_destroy(plan);
		p.dtype = LCA_F32;
		p.algo = algo;
		p.H = c.H;
		p.dk = c.dk;
		p.dv = c.dv;
		p.scale = c.scale;
		p.block = 16;
		plan = tu_plan(&p);
		for (int j = 0; j < 4; j++) {
			out[j] = to_f32(want[j], n[j]);
			for (int64_t i = 0; i < n[j]; i++)
				out[j][i] = NAN;
		}
		tu_assert_ok(lca_lightning_backward(plan, c.T, in[0], in[1],
			in[2], in[3], NULL, 0, in[4], in[5], in[6], out[0],
			out[1], out[2], out[3]));
		for (int j = 0; j < 4; j++) {
			double *g = tu_alloc(n[j]);

			for (int64_t i = 0; i < n[j]; i++)
				g[i] = out[j][i];
			ck_assert_msg(tu_all_finite(g, n[j]), "f32 %s not finite",
				names[j]);
			printf("f32 %s %s: %.1e\n", a ? "blockwise" : "recurrent",
				names[j], tu_relerr(g, want[j], n[j]));
			tu_assert_close(g, want[j], n[j], 1e-4, names[j]);
			free(g);
			free(out[j]);
		}
		for (int j = 0; j < 7; j++)
			free(in[j]);
		lca_plan_destroy(plan);
	}
	gio_free(&x);
}
END_TEST

/* ---- bad input ----------------------------------------------------------- */

static const struct gc bad_case = { "", 6, 2, 3, 2, 0, SL_RANDOM, 1, 1, 0, { 0 } };

/* Copies of the gradient buffers, filled with random values first. */
static void snapshot(const struct gc *c, struct gio *x, double **s)
{
	double *g[] = { x->dq, x->dk, x->dv, x->dstate0 };
	int64_t n[] = { nq(c), nq(c), nv(c), ns(c) };

	for (int j = 0; j < 4; j++) {
		tu_fill_normal(g[j], n[j], 1.0);
		s[j] = tu_copy(g[j], n[j]);
	}
}

static void assert_untouched(const struct gc *c, struct gio *x, double **s)
{
	double *g[] = { x->dq, x->dk, x->dv, x->dstate0 };
	int64_t n[] = { nq(c), nq(c), nv(c), ns(c) };

	for (int j = 0; j < 4; j++) {
		ck_assert_msg(memcmp(g[j], s[j], (size_t)n[j] * sizeof(double)) == 0,
			"gradient %d written by a failed call", j);
		free(s[j]);
	}
}

static lca_status bad_call(const lca_plan *plan, struct gio *x,
	const double *dout, double *dv)
{
	return lca_lightning_backward(plan, bad_case.T, x->q, x->k, x->v,
		x->slope, NULL, 0, x->state0, dout, x->dstate, x->dq, x->dk, dv,
		x->dstate0);
}

START_TEST(test_null_dout_is_null)
{
	lca_plan *plan = plan_for(&bad_case, LCA_ALGO_RECURRENT, 4);
	struct gio x;
	double *s[4];

	gio_alloc(&bad_case, &x);
	snapshot(&bad_case, &x, s);
	ck_assert_int_eq(bad_call(plan, &x, NULL, x.dv), LCA_ERR_NULL);
	ck_assert_msg(tu_msg_names("dout"), "message: %s", lca_last_error());
	assert_untouched(&bad_case, &x, s);
	lca_plan_destroy(plan);
	gio_free(&x);
}
END_TEST

START_TEST(test_nan_in_dstate_is_nonfinite)
{
	lca_plan *plan = plan_for(&bad_case, LCA_ALGO_CHUNKED, 4);
	struct gio x;
	double *s[4];

	gio_alloc(&bad_case, &x);
	x.dstate[ns(&bad_case) - 1] = NAN;
	snapshot(&bad_case, &x, s);
	ck_assert_int_eq(bad_call(plan, &x, x.dout, x.dv), LCA_ERR_NONFINITE);
	ck_assert_msg(tu_msg_names("dstate"), "message: %s", lca_last_error());
	assert_untouched(&bad_case, &x, s);
	lca_plan_destroy(plan);
	gio_free(&x);
}
END_TEST

START_TEST(test_negative_slope_is_arg)
{
	lca_plan *plan = plan_for(&bad_case, LCA_ALGO_RECURRENT, 4);
	struct gio x;
	double *s[4];

	gio_alloc(&bad_case, &x);
	x.slope[1] = -0.25;
	snapshot(&bad_case, &x, s);
	ck_assert_int_eq(bad_call(plan, &x, x.dout, x.dv), LCA_ERR_ARG);
	ck_assert_msg(tu_msg_names("slope"), "message: %s", lca_last_error());
	assert_untouched(&bad_case, &x, s);
	lca_plan_destroy(plan);
	gio_free(&x);
}
END_TEST

START_TEST(test_gradient_overlapping_an_input_is_arg)
{
	/* dv shifted one element into dout: they share all but one. */
	lca_plan *plan = plan_for(&bad_case, LCA_ALGO_CHUNKED, 4);
	int64_t n = nv(&bad_case);
	double *both = tu_alloc(n + 1), *before;
	struct gio x;
	double *s[4];

	gio_alloc(&bad_case, &x);
	memcpy(both, x.dout, (size_t)n * sizeof *both);
	before = tu_copy(both, n + 1);
	snapshot(&bad_case, &x, s);
	ck_assert_int_eq(bad_call(plan, &x, both, both + 1), LCA_ERR_ARG);
	ck_assert_msg(memcmp(both, before, (size_t)(n + 1) * sizeof *both) == 0,
		"overlapping dv/dout written");
	assert_untouched(&bad_case, &x, s);
	free(both);
	free(before);
	lca_plan_destroy(plan);
	gio_free(&x);
}
END_TEST

static Suite *grad_lightning_suite(void)
{
	Suite *s = suite_create("grad_lightning");
	TCase *tc = tu_tcase("finite differences");

	tcase_add_loop_test(tc, test_gradients_match_finite_differences, 0,
		2 * N_FD_CASES);
	tcase_add_test(tc, test_dstate0_is_optional);
	tcase_add_loop_test(tc, test_directional_derivative_across_blocks, 0, 2);
	suite_add_tcase(s, tc);

	tc = tu_tcase("adjoints");
	tcase_add_loop_test(tc, test_recurrent_and_blockwise_adjoints_agree, 0,
		(int)(sizeof agree_cases / sizeof agree_cases[0]));
	tcase_add_test(tc, test_f32_reference_is_near_f64);
	suite_add_tcase(s, tc);

	tc = tu_tcase("bad input");
	tcase_add_test(tc, test_null_dout_is_null);
	tcase_add_test(tc, test_nan_in_dstate_is_nonfinite);
	tcase_add_test(tc, test_negative_slope_is_arg);
	tcase_add_test(tc, test_gradient_overlapping_an_input_is_arg);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(grad_lightning_suite());
}
