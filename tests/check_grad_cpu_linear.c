/*
 * check_grad_cpu_linear.c - the cpu backward of Gated DeltaNet and
 * Lightning against the reference backward: float64 within 1e-12
 * normwise of the double reference, float32 within the tolerance rule
 * (2x the float32 reference's own error against the double reference,
 * floored at 1e-6), per gradient tensor, on odd shapes and gates; and the
 * same bits whatever the thread count.
 *
 * Inputs are rounded to float first, so every path sees the same numbers
 * and the float32 reference measures the algorithm's rounding alone. The
 * reference runs the chunked (blockwise) adjoint with the same chunk
 * (block) as the cpu plan.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum gates { G_NORMAL, G_STRONG, G_ZERO };
enum betas { B_NORMAL, B_EDGES };
enum slopes { S_RANDOM, S_LARGE, S_ZERO };

struct lc {
	const char *name;
	lca_variant variant;
	int64_t T, H, Hk, dk, dv, tile;  /* tile: chunk or block */
	int state0, dstate, l2;
	enum gates gates;
	enum betas betas;
	enum slopes slopes;
	int64_t nseq;                    /* 0: no cu_seqlens */
	int64_t cu[5];
};

/* Inputs and gradients in the order of the calls: q k v g beta state0
 * (deltanet); q k v slope state0 (lightning: no g, beta slots empty). */
enum { IQ, IK, IV, IG, IB, IS, NIN };

struct lio {
	int64_t n[NIN], nout;
	double *in[NIN], *dout, *dstate;
};

static int64_t nseq_of(const struct lc *c)
{
	return c->nseq ? c->nseq : 1;
}

static int is_dn(const struct lc *c)
{
	return c->variant == LCA_DELTANET;
}

static double f32r(double x)
{
	return (double)(float)x;
}

static void round_f32(double *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = f32r(x[i]);
}

static void fill_gates(const struct lc *c, double *g, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		switch (c->gates) {
		case G_NORMAL:
			g[i] = -tu_uniform(0.0, 0.5);
			break;
		case G_STRONG:  /* gates that zero the state, and ones near 0 */
			g[i] = i % 5 == 0 ? -1e30 : i % 5 == 1 ? -60.0 :
				i % 5 == 2 ? -tu_uniform(0.0, 1e-3) :
				-tu_uniform(0.0, 2.0);
			break;
		case G_ZERO:
			g[i] = 0.0;
			break;
		}
	}
}

static void fill_betas(const struct lc *c, double *b, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		b[i] = c->betas == B_NORMAL ? tu_uniform(0.1, 0.9) :
			i % 2 ? tu_uniform(1e-6, 1e-4) : 1.0 - tu_uniform(0.0, 1e-4);
}

static void fill_slopes(const struct lc *c, double *s)
{
	for (int64_t h = 0; h < c->H; h++)
		s[h] = c->slopes == S_RANDOM ? tu_uniform(0.0, 0.5) :
			c->slopes == S_LARGE ? (h % 2 ? 30.0 : 3.0) : 0.0;
}

static void lio_make(const struct lc *c, struct lio *x)
{
	int64_t Hq = is_dn(c) ? c->Hk : c->H;

	memset(x, 0, sizeof *x);
	x->n[IQ] = x->n[IK] = c->T * Hq * c->dk;
	x->n[IV] = x->nout = c->T * c->H * c->dv;
	x->n[IG] = is_dn(c) ? c->T * c->H : c->H;   /* lightning: slopes */
	x->n[IB] = is_dn(c) ? c->T * c->H : 0;
	x->n[IS] = nseq_of(c) * c->H * c->dk * c->dv;
	for (int i = 0; i < NIN; i++)
		x->in[i] = tu_alloc(x->n[i]);
	/* Without the L2 norm, keys of norm near 1, as lcattn gen draws them:
	 * with beta ||k||^2 > 2 the delta rule (I - beta k k^T) expands, the
	 * rounding error of any float32 kernel grows geometrically with T, and
	 * two float32 computations differ by whatever that growth makes of
	 * their first roundings (lca_deltanet_backward(3), CAVEATS). */
	double sd = is_dn(c) && !c->l2 ? 1 / sqrt((double)c->dk) : 1.0;

	tu_fill_normal(x->in[IQ], x->n[IQ], sd);
	tu_fill_normal(x->in[IK], x->n[IK], sd);
	tu_fill_normal(x->in[IV], x->n[IV], 1.0);
	if (is_dn(c)) {
		fill_gates(c, x->in[IG], x->n[IG]);
		fill_betas(c, x->in[IB], x->n[IB]);
	} else {
		fill_slopes(c, x->in[IG]);
	}
	tu_fill_normal(x->in[IS], x->n[IS], 0.5);
	x->dout = tu_alloc(x->nout);
	x->dstate = tu_alloc(x->n[IS]);
	tu_fill_normal(x->dout, x->nout, 1.0);
	tu_fill_normal(x->dstate, x->n[IS], 1.0);
	for (int i = 0; i < NIN; i++)
		round_f32(x->in[i], x->n[i]);
	round_f32(x->dout, x->nout);
	round_f32(x->dstate, x->n[IS]);
}

static void lio_free(struct lio *x)
{
	for (int i = 0; i < NIN; i++)
		free(x->in[i]);
	free(x->dout);
	free(x->dstate);
}

static lca_plan *lc_plan(const struct lc *c, lca_backend be, lca_dtype dt,
	int nthreads)
{
	lca_params p = tu_params(c->variant);

	p.backend = be;
	p.dtype = dt;
	p.algo = LCA_ALGO_CHUNKED;
	p.H = c->H;
	p.dk = c->dk;
	p.dv = c->dv;
	p.nthreads = nthreads;
	if (is_dn(c)) {
		p.Hk = c->Hk;
		p.qk_l2norm = c->l2;
		p.chunk = c->tile;
	} else {
		p.block = c->tile;
	}
	return tu_plan(&p);
}

/* Buffers of one element type: a copy of x's inputs and room for the
 * gradients (gradient i shaped like input i). */
struct lbuf {
	int f32;
	void *in[NIN], *dout, *dstate, *grad[NIN];
};

static void *conv(const double *x, int64_t n, int f32)
{
	size_t es = f32 ? sizeof(float) : sizeof(double);
	void *b = malloc((size_t)(n ? n : 1) * es);

	ck_assert_ptr_nonnull(b);
	for (int64_t i = 0; i < n; i++) {
		if (f32)
			((float *)b)[i] = (float)x[i];
		else
			((double *)b)[i] = x[i];
	}
	return b;
}

static void lbuf_make(const struct lio *x, int f32, struct lbuf *b)
{
	b->f32 = f32;
	for (int i = 0; i < NIN; i++) {
		double *z = tu_alloc(x->n[i]);

		b->in[i] = conv(x->in[i], x->n[i], f32);
		b->grad[i] = conv(z, x->n[i], f32);
		free(z);
	}
	b->dout = conv(x->dout, x->nout, f32);
	b->dstate = conv(x->dstate, x->n[IS], f32);
}

static void lbuf_free(struct lbuf *b)
{
	for (int i = 0; i < NIN; i++) {
		free(b->in[i]);
		free(b->grad[i]);
	}
	free(b->dout);
	free(b->dstate);
}

/* Gradient i of b as doubles (a new array). */
static double *grad_f64(const struct lio *x, const struct lbuf *b, int i)
{
	double *d = tu_alloc(x->n[i]);

	for (int64_t j = 0; j < x->n[i]; j++)
		d[j] = b->f32 ? ((float *)b->grad[i])[j] :
			((double *)b->grad[i])[j];
	return d;
}

static void run_bwd(const struct lc *c, const lca_plan *plan, struct lbuf *b)
{
	const int64_t *cu = c->nseq ? c->cu : NULL;
	const void *s0 = c->state0 ? b->in[IS] : NULL;
	const void *ds = c->dstate ? b->dstate : NULL;

	if (is_dn(c))
		tu_assert_ok(lca_deltanet_backward(plan, c->T, b->in[IQ],
			b->in[IK], b->in[IV], b->in[IG], b->in[IB], cu, c->nseq,
			s0, b->dout, ds, b->grad[IQ], b->grad[IK], b->grad[IV],
			b->grad[IG], b->grad[IB], b->grad[IS]));
	else
		tu_assert_ok(lca_lightning_backward(plan, c->T, b->in[IQ],
			b->in[IK], b->in[IV], b->in[IG], cu, c->nseq, s0,
			b->dout, ds, b->grad[IQ], b->grad[IK], b->grad[IV],
			b->grad[IS]));
}

/* Run backend be, dtype dt, nthreads nt on x into a fresh lbuf. */
static void run(const struct lc *c, const struct lio *x, lca_backend be,
	lca_dtype dt, int nt, struct lbuf *b)
{
	lca_plan *plan = lc_plan(c, be, dt, nt);

	lbuf_make(x, dt == LCA_F32, b);
	run_bwd(c, plan, b);
	lca_plan_destroy(plan);
}

static const char *const gname[NIN] = { "dq", "dk", "dv", "dg", "dbeta",
	"dstate0" };

static int has_grad(const struct lc *c, int i)
{
	return is_dn(c) || (i != IG && i != IB);
}

static int same_bits(const struct lio *x, const struct lbuf *a,
	const struct lbuf *b, int i)
{
	size_t es = a->f32 ? sizeof(float) : sizeof(double);

	return memcmp(a->grad[i], b->grad[i], (size_t)x->n[i] * es) == 0;
}

static void check_case(const struct lc *c)
{
	struct lio x;
	struct lbuf ref64, ref32, cpu64[3], cpu32[3];

	lio_make(c, &x);
	run(c, &x, LCA_BACKEND_REF, LCA_F64, 0, &ref64);
	run(c, &x, LCA_BACKEND_REF, LCA_F32, 0, &ref32);
	for (int t = 0; t < 3; t++) {
		run(c, &x, LCA_BACKEND_CPU, LCA_F64, t + 1, &cpu64[t]);
		run(c, &x, LCA_BACKEND_CPU, LCA_F32, t + 1, &cpu32[t]);
	}
	for (int i = 0; i < NIN; i++) {
		double *r = grad_f64(&x, &ref64, i), *r32 = grad_f64(&x, &ref32, i);
		double *g64 = grad_f64(&x, &cpu64[0], i);
		double *g32 = grad_f64(&x, &cpu32[0], i);
		double e32, tol32;
		char what[160];

		if (!has_grad(c, i)) {
			free(r), free(r32), free(g64), free(g32);
			continue;
		}
		ck_assert_msg(tu_all_finite(g64, x.n[i]) && tu_all_finite(g32, x.n[i]),
			"%s: %s has a non-finite value", c->name, gname[i]);
		snprintf(what, sizeof what, "%s: cpu f64 %s", c->name, gname[i]);
		tu_assert_close(g64, r, x.n[i], 1e-12, what);
		e32 = tu_relerr(r32, r, x.n[i]);
		tol32 = 2 * e32 > 1e-6 ? 2 * e32 : 1e-6;
		snprintf(what, sizeof what, "%s: cpu f32 %s (f32 ref err %.2e)",
			c->name, gname[i], e32);
		tu_assert_close(g32, r, x.n[i], tol32, what);
		for (int t = 1; t < 3; t++) {
			ck_assert_msg(same_bits(&x, &cpu64[0], &cpu64[t], i),
				"%s: cpu f64 %s differs between 1 and %d threads",
				c->name, gname[i], t + 1);
			ck_assert_msg(same_bits(&x, &cpu32[0], &cpu32[t], i),
				"%s: cpu f32 %s differs between 1 and %d threads",
				c->name, gname[i], t + 1);
		}
		free(r), free(r32), free(g64), free(g32);
	}
	lbuf_free(&ref64);
	lbuf_free(&ref32);
	for (int t = 0; t < 3; t++) {
		lbuf_free(&cpu64[t]);
		lbuf_free(&cpu32[t]);
	}
	lio_free(&x);
}

/* ---- cases -------------------------------------------------------------- */

#define DN LCA_DELTANET
#define LT LCA_LIGHTNING

static const struct lc dn_cases[] = {
	/* name                  var T   H  Hk dk dv tile s0 ds l2 gates     betas     slopes */
	{ "dn T=1",              DN, 1,  2, 2, 8, 8,  8, 0, 0, 1, G_NORMAL, B_NORMAL, 0, 0, {0} },
	{ "dn T=1 state",        DN, 1,  2, 1, 8, 6,  8, 1, 1, 1, G_NORMAL, B_NORMAL, 0, 0, {0} },
	{ "dn odd T",            DN, 37, 2, 2, 12, 10, 8, 1, 1, 1, G_NORMAL, B_NORMAL, 0, 0, {0} },
	{ "dn chunk boundary",   DN, 32, 2, 2, 8, 8,  16, 1, 0, 1, G_NORMAL, B_NORMAL, 0, 0, {0} },
	{ "dn one past chunk",   DN, 17, 1, 1, 8, 8,  16, 0, 1, 1, G_NORMAL, B_NORMAL, 0, 0, {0} },
	{ "dn no l2norm dk!=dv", DN, 29, 2, 2, 6, 11, 8, 1, 1, 0, G_NORMAL, B_NORMAL, 0, 0, {0} },
	{ "dn GVA",              DN, 27, 4, 2, 8, 12, 8, 1, 1, 1, G_NORMAL, B_NORMAL, 0, 0, {0} },
	{ "dn GVA Hk=1 no l2",   DN, 21, 3, 1, 10, 6, 8, 0, 1, 0, G_NORMAL, B_NORMAL, 0, 0, {0} },
	{ "dn strong gates",     DN, 45, 2, 2, 8, 8,  8, 1, 1, 1, G_STRONG, B_NORMAL, 0, 0, {0} },
	{ "dn strong no l2",     DN, 45, 2, 1, 8, 8,  16, 1, 1, 0, G_STRONG, B_NORMAL, 0, 0, {0} },
	{ "dn g = 0",            DN, 40, 2, 2, 8, 8,  8, 1, 1, 1, G_ZERO, B_NORMAL, 0, 0, {0} },
	{ "dn beta near 0 and 1", DN, 35, 2, 2, 8, 8, 8, 1, 1, 1, G_NORMAL, B_EDGES, 0, 0, {0} },
	{ "dn varlen empty",     DN, 30, 2, 2, 8, 8,  8, 1, 1, 1, G_NORMAL, B_NORMAL, 0, 4, {0, 11, 11, 12, 30} },
	{ "dn varlen no state",  DN, 30, 4, 2, 8, 8,  8, 0, 0, 1, G_STRONG, B_EDGES, 0, 4, {0, 0, 9, 25, 30} },
	{ "dn big chunk",        DN, 70, 2, 2, 16, 16, 64, 1, 1, 1, G_NORMAL, B_NORMAL, 0, 0, {0} },
};

static const struct lc lt_cases[] = {
	{ "lt T=1",              LT, 1,  2, 0, 8, 8,  16, 0, 0, 0, 0, 0, S_RANDOM, 0, {0} },
	{ "lt T=1 state",        LT, 1,  2, 0, 8, 6,  16, 1, 1, 0, 0, 0, S_RANDOM, 0, {0} },
	{ "lt odd T",            LT, 53, 2, 0, 12, 10, 16, 1, 1, 0, 0, 0, S_RANDOM, 0, {0} },
	{ "lt block boundary",   LT, 64, 2, 0, 8, 8,  32, 1, 0, 0, 0, 0, S_RANDOM, 0, {0} },
	{ "lt one past block",   LT, 33, 1, 0, 8, 8,  32, 0, 1, 0, 0, 0, S_RANDOM, 0, {0} },
	{ "lt dk!=dv",           LT, 45, 3, 0, 6, 13, 16, 1, 1, 0, 0, 0, S_RANDOM, 0, {0} },
	{ "lt large slopes",     LT, 70, 2, 0, 8, 8,  32, 1, 1, 0, 0, 0, S_LARGE, 0, {0} },
	{ "lt zero slopes",      LT, 70, 2, 0, 8, 8,  32, 1, 1, 0, 0, 0, S_ZERO, 0, {0} },
	{ "lt varlen empty",     LT, 50, 2, 0, 8, 8,  16, 1, 1, 0, 0, 0, S_RANDOM, 4, {0, 17, 17, 18, 50} },
	{ "lt varlen no state",  LT, 50, 2, 0, 8, 8,  16, 0, 0, 0, 0, 0, S_RANDOM, 4, {0, 0, 33, 40, 50} },
	{ "lt big block",        LT, 300, 2, 0, 16, 16, 256, 1, 1, 0, 0, 0, S_RANDOM, 0, {0} },
};

START_TEST(test_cpu_deltanet_backward_matches_reference)
{
	check_case(&dn_cases[_i]);
}
END_TEST

START_TEST(test_cpu_lightning_backward_matches_reference)
{
	check_case(&lt_cases[_i]);
}
END_TEST

static Suite *cpu_linear_suite(void)
{
	Suite *s = suite_create("grad_cpu_linear");
	TCase *tc = tu_tcase("cpu backward");

	tcase_add_loop_test(tc, test_cpu_deltanet_backward_matches_reference, 0,
		(int)(sizeof dn_cases / sizeof dn_cases[0]));
	tcase_add_loop_test(tc, test_cpu_lightning_backward_matches_reference, 0,
		(int)(sizeof lt_cases / sizeof lt_cases[0]));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(cpu_linear_suite());
}
