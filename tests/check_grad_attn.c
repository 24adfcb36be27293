/*
 * check_grad_attn.c - the reference backward of softmax attention and of
 * MLA (both computations) is the gradient of L = sum(o * dout), o from the
 * forward call with the same plan: central finite differences over every
 * element of every input on tiny shapes, a directional derivative on a
 * larger one, MLA naive = absorbed, the f32 reference near the f64 one,
 * and the forward's refusals. Everything goes through the public API.
 *
 * Lines "FD <mechanism> <tensor> <case> <error>" in the log feed the
 * finite-difference table of the report.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXIN 6

/* Result lines must reach the log even from a forked test that fails. */
#define report(...) ((void)printf(__VA_ARGS__), (void)fflush(stdout))

/* One configuration of either mechanism. */
struct cfg {
	const char *name;
	lca_variant variant;       /* LCA_SOFTMAX or LCA_MLA */
	lca_algo algo;             /* mla: LCA_ALGO_NAIVE or LCA_ALGO_ABSORBED */
	int64_t Tq, Tk, H, Hkv, dk, dv, dn, dr, dc;
	int causal;
	int64_t window;
	int64_t rope_dim;          /* LCA_ROPE_FULL = all */
	lca_rope_style style;
	const int64_t *cu;         /* NULL = one sequence */
	int64_t nseq;
	unsigned zero;             /* bit i: input i's gradient is 0 exactly */
};

/* A configuration with drawn inputs and cotangent, and its plan. */
struct prob {
	struct cfg c;
	lca_plan *plan;
	int nin;
	const char *name[MAXIN];
	double *x[MAXIN];
	int64_t n[MAXIN];
	double *dout, *o;
	int64_t no;
};

static void add_input(struct prob *pb, const char *name, int64_t n,
	double sd)
{
	int i = pb->nin++;

	pb->name[i] = name;
	pb->n[i] = n;
	pb->x[i] = tu_alloc(n);
	tu_fill_normal(pb->x[i], n, sd);
}

static lca_params cfg_params(const struct cfg *c, lca_dtype dtype)
{
	lca_params p = tu_params(c->variant);

	p.dtype = dtype;
	p.H = c->H;
	p.dv = c->dv;
	p.causal = c->causal;
	p.window = c->window;
	p.rope_dim = c->rope_dim;
	p.rope_style = c->style;
	if (c->variant == LCA_SOFTMAX) {
		p.Hkv = c->Hkv;
		p.dk = c->dk;
	} else {
		p.algo = c->algo;
		p.dn = c->dn;
		p.dr = c->dr;
		p.dc = c->dc;
		/* MLA has no default scale; DeepSeek-V2's choice */
		p.scale = 1.0 / sqrt((double)(c->dn + c->dr));
	}
	return p;
}

static void prob_make(struct prob *pb, const struct cfg *c)
{
	const int64_t Tq = c->Tq, Tk = c->Tk, H = c->H;
	lca_params p = cfg_params(c, LCA_F64);

	memset(pb, 0, sizeof *pb);
	pb->c = *c;
	pb->plan = tu_plan(&p);
	if (c->variant == LCA_SOFTMAX) {
		add_input(pb, "q", Tq * H * c->dk, 1.0);
		add_input(pb, "k", Tk * c->Hkv * c->dk, 1.0);
		add_input(pb, "v", Tk * c->Hkv * c->dv, 1.0);
	} else {
		/* weights ~ 1/sqrt(dc): decompressed keys of size ~1 */
		double w = 1.0 / sqrt((double)c->dc);

		add_input(pb, "q_nope", Tq * H * c->dn, 1.0);
		add_input(pb, "q_rope", Tq * H * c->dr, 1.0);
		add_input(pb, "ckv", Tk * c->dc, 1.0);
		add_input(pb, "k_rope", Tk * c->dr, 1.0);
		add_input(pb, "w_uk", H * c->dn * c->dc, w);
		add_input(pb, "w_uv", H * c->dv * c->dc, w);
	}
	pb->no = Tq * H * c->dv;
	pb->o = tu_alloc(pb->no);
	pb->dout = tu_alloc(pb->no);
	tu_fill_normal(pb->dout, pb->no, 1.0);
}

static void prob_free(struct prob *pb)
{
	for (int i = 0; i < pb->nin; i++)
		free(pb->x[i]);
	free(pb->o);
	free(pb->dout);
	lca_plan_destroy(pb->plan);
}

/* The forward of plan on inputs x (any dtype the plan names). */
static lca_status call_fwd(const lca_plan *plan, const struct cfg *c,
	void *const *x, void *o)
{
	if (c->variant == LCA_SOFTMAX)
		return lca_softmax_forward(plan, c->Tq, c->Tk, x[0], x[1], x[2],
			c->cu, c->nseq, o, NULL);
	return lca_mla_forward(plan, c->Tq, c->Tk, x[0], x[1], x[2], x[3],
		x[4], x[5], c->cu, c->nseq, o, NULL);
}

/* The backward of plan: gradients g[i] of inputs x[i]. */
static lca_status call_bwd(const lca_plan *plan, const struct cfg *c,
	void *const *x, const void *dout, void *const *g)
{
	if (c->variant == LCA_SOFTMAX)
		return lca_softmax_backward(plan, c->Tq, c->Tk, x[0], x[1], x[2],
			c->cu, c->nseq, dout, g[0], g[1], g[2]);
	return lca_mla_backward(plan, c->Tq, c->Tk, x[0], x[1], x[2], x[3],
		x[4], x[5], c->cu, c->nseq, dout, g[0], g[1], g[2], g[3], g[4],
		g[5]);
}

/* L = sum(o * dout) at the current inputs. */
static double loss(struct prob *pb)
{
	double l = 0.0;

	tu_assert_ok(call_fwd(pb->plan, &pb->c, (void *const *)pb->x, pb->o));
	for (int64_t j = 0; j < pb->no; j++)
		l += pb->o[j] * pb->dout[j];
	return l;
}

static void grads(struct prob *pb, double **g)
{
	for (int i = 0; i < pb->nin; i++)
		g[i] = tu_alloc(pb->n[i]);
	tu_assert_ok(call_bwd(pb->plan, &pb->c, (void *const *)pb->x,
		pb->dout, (void *const *)g));
}

static void free_all(double **g, int n)
{
	for (int i = 0; i < n; i++)
		free(g[i]);
}

static const char *mech(const struct cfg *c)
{
	if (c->variant == LCA_SOFTMAX)
		return "softmax";
	return c->algo == LCA_ALGO_NAIVE ? "mla-naive" : "mla-absorbed";
}

/*
 * Central differences (L(x + h) - L(x - h)) / 2h of every element. Inputs
 * are of unit scale, so h = 1e-5 (1 + |x|): the truncation error, O(h^2),
 * and the rounding error, O(eps |L| / h), then both stay near 1e-10,
 * far below the 1e-6 the comparison allows. The step actually taken,
 * (x + h) - (x - h) in floating point, is the divisor.
 */
static void fd_grads(struct prob *pb, double **fd)
{
	for (int i = 0; i < pb->nin; i++) {
		fd[i] = tu_alloc(pb->n[i]);
		for (int64_t j = 0; j < pb->n[i]; j++) {
			double x0 = pb->x[i][j], h = 1e-5 * (1.0 + fabs(x0));
			double xp = x0 + h, xm = x0 - h, lp, lm;

			pb->x[i][j] = xp;
			lp = loss(pb);
			pb->x[i][j] = xm;
			lm = loss(pb);
			pb->x[i][j] = x0;
			fd[i][j] = (lp - lm) / (xp - xm);
		}
	}
}

static double max_abs(const double *x, int64_t n)
{
	double m = 0.0;

	for (int64_t j = 0; j < n; j++)
		if (fabs(x[j]) > m)
			m = fabs(x[j]);
	return m;
}

/* Every gradient of the configuration against finite differences. */
static void check_fd(const struct cfg *c)
{
	struct prob pb;
	double *g[MAXIN], *fd[MAXIN];

	prob_make(&pb, c);
	grads(&pb, g);
	fd_grads(&pb, fd);
	for (int i = 0; i < pb.nin; i++) {
		ck_assert_msg(tu_all_finite(g[i], pb.n[i]), "%s %s: not finite",
			c->name, pb.name[i]);
		if (c->zero & (1u << i)) {
			/* Zero in exact arithmetic (a softmax over one logit
			 * has zero derivative): a relative error to a
			 * rounding-level reference means nothing, so the
			 * gradient itself must be at most 1e-12. */
			double e = max_abs(g[i], pb.n[i]);

			report("FD %s %s %s max-abs %.3e\n", mech(c), pb.name[i],
				c->name, e);
			ck_assert_msg(e <= 1e-12, "%s %s: max-abs %.3e > 1e-12 "
				"of a gradient that is zero", c->name,
				pb.name[i], e);
			continue;
		}
		report("FD %s %s %s %.3e\n", mech(c), pb.name[i], c->name,
			tu_relerr(g[i], fd[i], pb.n[i]));
		tu_assert_close(g[i], fd[i], pb.n[i], 1e-6, pb.name[i]);
	}
	free_all(g, pb.nin);
	free_all(fd, pb.nin);
	prob_free(&pb);
}

/* ---- finite differences: softmax --------------------------------------- */

/* The base case: two heads of size 4, values of size 3, causal, no RoPE. */
static struct cfg sm_base(const char *name, int64_t Tq, int64_t Tk)
{
	struct cfg c = {
		.name = name, .variant = LCA_SOFTMAX, .Tq = Tq, .Tk = Tk,
		.H = 2, .Hkv = 2, .dk = 4, .dv = 3, .causal = 1,
		.rope_dim = 0, .style = LCA_ROPE_HALF,
	};
	return c;
}

START_TEST(test_softmax_single_token_has_zero_dq_dk)
{
	struct cfg c = sm_base("T1", 1, 1);

	c.rope_dim = LCA_ROPE_FULL;
	c.zero = 1u << 0 | 1u << 1;  /* q, k: one key, P = 1 whatever q.k */
	check_fd(&c);
}
END_TEST

START_TEST(test_softmax_causal_matches_fd)
{
	struct cfg c = sm_base("T5-causal", 5, 5);

	c.rope_dim = LCA_ROPE_FULL;
	check_fd(&c);
}
END_TEST

START_TEST(test_softmax_non_causal_matches_fd)
{
	struct cfg c = sm_base("T5-noncausal", 5, 5);

	c.causal = 0;
	c.rope_dim = LCA_ROPE_FULL;
	c.style = LCA_ROPE_INTERLEAVED;
	check_fd(&c);
}
END_TEST

START_TEST(test_softmax_fewer_queries_bottom_right_matches_fd)
{
	struct cfg c = sm_base("Tq3<Tk6", 3, 6);

	c.rope_dim = LCA_ROPE_FULL;
	check_fd(&c);
}
END_TEST

START_TEST(test_softmax_masked_rows_matches_fd)
{
	/* Queries at -2 and -1 see no key: o = 0, no gradient. */
	struct cfg c = sm_base("Tq5>Tk3", 5, 3);

	c.rope_dim = LCA_ROPE_FULL;
	check_fd(&c);
}
END_TEST

START_TEST(test_softmax_negative_positions_non_causal_matches_fd)
{
	/* Without the mask, queries at -2 and -1 attend, rotated by negative
	 * angles. */
	struct cfg c = sm_base("Tq5>Tk3-noncausal", 5, 3);

	c.causal = 0;
	c.rope_dim = LCA_ROPE_FULL;
	check_fd(&c);
}
END_TEST

START_TEST(test_softmax_window_matches_fd)
{
	struct cfg c = sm_base("window2", 6, 6);

	c.window = 2;
	c.rope_dim = LCA_ROPE_FULL;
	check_fd(&c);
}
END_TEST

START_TEST(test_softmax_gqa_matches_fd)
{
	struct cfg c = sm_base("GQA4/2", 5, 5);

	c.H = 4;
	c.Hkv = 2;
	check_fd(&c);
}
END_TEST

START_TEST(test_softmax_mqa_matches_fd)
{
	struct cfg c = sm_base("MQA3/1", 5, 5);

	c.H = 3;
	c.Hkv = 1;
	c.rope_dim = LCA_ROPE_FULL;
	check_fd(&c);
}
END_TEST

START_TEST(test_softmax_partial_rope_half_matches_fd)
{
	struct cfg c = sm_base("rope2/6-half", 5, 5);

	c.dk = 6;
	c.rope_dim = 2;
	check_fd(&c);
}
END_TEST

START_TEST(test_softmax_partial_rope_interleaved_matches_fd)
{
	struct cfg c = sm_base("rope4/6-inter", 5, 5);

	c.dk = 6;
	c.rope_dim = 4;
	c.style = LCA_ROPE_INTERLEAVED;
	check_fd(&c);
}
END_TEST

static const int64_t cu_empty[] = { 0, 3, 3, 7 };

START_TEST(test_softmax_varlen_with_empty_sequence_matches_fd)
{
	struct cfg c = sm_base("varlen3,0,4", 7, 7);

	c.rope_dim = LCA_ROPE_FULL;
	c.cu = cu_empty;
	c.nseq = 3;
	check_fd(&c);
}
END_TEST

/* ---- finite differences: MLA, both computations ------------------------ */

/* The base case: two heads, dn 3, dr 4, dc 5, dv 2 (dv != dn). */
static struct cfg mla_base(const char *name, int64_t Tq, int64_t Tk)
{
	struct cfg c = {
		.name = name, .variant = LCA_MLA, .Tq = Tq, .Tk = Tk, .H = 2,
		.dn = 3, .dr = 4, .dc = 5, .dv = 2, .causal = 1,
		.rope_dim = LCA_ROPE_FULL, .style = LCA_ROPE_INTERLEAVED,
	};
	return c;
}

static void check_fd_both(struct cfg c)
{
	c.algo = LCA_ALGO_NAIVE;
	check_fd(&c);
	c.algo = LCA_ALGO_ABSORBED;
	check_fd(&c);
}

START_TEST(test_mla_single_token_has_zero_query_key_grads)
{
	struct cfg c = mla_base("T1", 1, 1);

	/* q_nope, q_rope, k_rope, w_uk only move the one logit */
	c.zero = 1u << 0 | 1u << 1 | 1u << 3 | 1u << 4;
	check_fd_both(c);
}
END_TEST

START_TEST(test_mla_causal_matches_fd)
{
	check_fd_both(mla_base("T5-causal", 5, 5));
}
END_TEST

START_TEST(test_mla_non_causal_matches_fd)
{
	struct cfg c = mla_base("T5-noncausal", 5, 5);

	c.causal = 0;
	check_fd_both(c);
}
END_TEST

START_TEST(test_mla_fewer_queries_bottom_right_matches_fd)
{
	check_fd_both(mla_base("Tq3<Tk6", 3, 6));
}
END_TEST

START_TEST(test_mla_masked_rows_matches_fd)
{
	check_fd_both(mla_base("Tq5>Tk3", 5, 3));
}
END_TEST

START_TEST(test_mla_negative_positions_non_causal_matches_fd)
{
	struct cfg c = mla_base("Tq5>Tk3-noncausal", 5, 3);

	c.causal = 0;
	check_fd_both(c);
}
END_TEST

START_TEST(test_mla_window_matches_fd)
{
	struct cfg c = mla_base("window2", 6, 6);

	c.window = 2;
	check_fd_both(c);
}
END_TEST

START_TEST(test_mla_partial_rope_both_styles_matches_fd)
{
	struct cfg c = mla_base("rope2/4-half", 5, 5);

	c.rope_dim = 2;
	c.style = LCA_ROPE_HALF;
	check_fd_both(c);
	c.name = "rope2/4-inter";
	c.style = LCA_ROPE_INTERLEAVED;
	check_fd_both(c);
}
END_TEST

START_TEST(test_mla_varlen_with_empty_sequence_matches_fd)
{
	struct cfg c = mla_base("varlen3,0,4", 7, 7);

	c.cu = cu_empty;
	c.nseq = 3;
	check_fd_both(c);
}
END_TEST

/* ---- structure -------------------------------------------------------- */

/* GQA is MHA with each kv head repeated over its group, so the gradient
 * of a shared kv head is the sum of the gradients of its copies. */
START_TEST(test_softmax_gqa_grads_sum_over_the_group)
{
	struct cfg c = sm_base("GQA6/2", 5, 5), m;
	struct prob pb;
	const int64_t T = 5, G = 3, dk = 4, dv = 3;
	double *g[MAXIN], *gm[MAXIN], *xm[MAXIN];
	lca_params p;
	lca_plan *mha;

	c.H = 6;
	c.Hkv = 2;
	c.rope_dim = LCA_ROPE_FULL;
	m = c;
	m.Hkv = c.H;
	prob_make(&pb, &c);
	grads(&pb, g);
	xm[0] = tu_copy(pb.x[0], pb.n[0]);
	xm[1] = tu_alloc(T * c.H * dk);
	xm[2] = tu_alloc(T * c.H * dv);
	for (int64_t s = 0; s < T; s++)
		for (int64_t h = 0; h < c.H; h++) {
			const int64_t to = s * c.H + h, from = s * c.Hkv + h / G;

			memcpy(xm[1] + to * dk, pb.x[1] + from * dk,
				(size_t)dk * sizeof(double));
			memcpy(xm[2] + to * dv, pb.x[2] + from * dv,
				(size_t)dv * sizeof(double));
		}
	gm[0] = tu_alloc(pb.n[0]);
	gm[1] = tu_alloc(T * c.H * dk);
	gm[2] = tu_alloc(T * c.H * dv);
	p = cfg_params(&m, LCA_F64);
	mha = tu_plan(&p);
	tu_assert_ok(call_bwd(mha, &m, (void *const *)xm, pb.dout,
		(void *const *)gm));
	tu_assert_close(g[0], gm[0], pb.n[0], 1e-12, "dq");
	/* fold the copies' gradients onto their shared head */
	for (int i = 1; i <= 2; i++) {
		const int64_t d = i == 1 ? dk : dv;
		double *sum = tu_alloc(pb.n[i]);

		for (int64_t s = 0; s < T; s++)
			for (int64_t h = 0; h < c.H; h++)
				for (int64_t j = 0; j < d; j++)
					sum[(s * c.Hkv + h / G) * d + j] +=
						gm[i][(s * c.H + h) * d + j];
		tu_assert_close(g[i], sum, pb.n[i], 1e-12, pb.name[i]);
		free(sum);
	}
	lca_plan_destroy(mha);
	free_all(g, 3);
	free_all(gm, 3);
	free_all(xm, 3);
	prob_free(&pb);
}
END_TEST

/* Logits near +-1e4: the adjoint recomputes the softmax with the maximum
 * subtracted, so nothing overflows; and since the weights of a row sum to
 * one, the value gradients of a row sum to its cotangent. */
START_TEST(test_softmax_huge_logits_give_finite_gradients)
{
	struct cfg c = sm_base("huge", 1, 6);
	struct prob pb;
	double *g[MAXIN], sum[3] = { 0 };

	c.H = 1;
	c.Hkv = 1;
	c.causal = 0;
	prob_make(&pb, &c);
	for (int i = 0; i < 2; i++)
		for (int64_t j = 0; j < pb.n[i]; j++)
			pb.x[i][j] *= 100.0;
	grads(&pb, g);
	for (int i = 0; i < pb.nin; i++)
		ck_assert_msg(tu_all_finite(g[i], pb.n[i]), "%s not finite",
			pb.name[i]);
	for (int64_t s = 0; s < c.Tk; s++)
		for (int64_t j = 0; j < c.dv; j++)
			sum[j] += g[2][s * c.dv + j];
	tu_assert_close(sum, pb.dout, c.dv, 1e-12, "sum of dv");
	free_all(g, pb.nin);
	prob_free(&pb);
}
END_TEST

START_TEST(test_mla_huge_logits_give_finite_gradients)
{
	struct cfg c = mla_base("huge", 4, 6);

	c.causal = 0;
	for (int a = 0; a < 2; a++) {
		struct prob pb;
		double *g[MAXIN];

		c.algo = a ? LCA_ALGO_ABSORBED : LCA_ALGO_NAIVE;
		prob_make(&pb, &c);
		for (int i = 0; i < 4; i++)
			for (int64_t j = 0; j < pb.n[i]; j++)
				pb.x[i][j] *= 100.0;
		grads(&pb, g);
		for (int i = 0; i < pb.nin; i++)
			ck_assert_msg(tu_all_finite(g[i], pb.n[i]), "%s %s not "
				"finite", mech(&c), pb.name[i]);
		free_all(g, pb.nin);
		prob_free(&pb);
	}
}
END_TEST

/* ---- directional derivative on a larger shape ------------------------- */

/*
 * A random direction d (unit elements) over all inputs, not nearly
 * orthogonal to g: <g, d> has standard deviation ||g||, and a draw far
 * below it would leave the relative comparison below measuring only the
 * rounding of the difference quotient. Redrawn until |<g, d>| >= ||g|| / 2
 * (a draw fails with probability 0.38; 30 in a row, never in practice).
 * Returns <g, d>.
 */
static double draw_direction(const struct prob *pb, double *const *g,
	double **d)
{
	double gg = 0.0, dot = 0.0;

	for (int i = 0; i < pb->nin; i++) {
		d[i] = tu_alloc(pb->n[i]);
		for (int64_t j = 0; j < pb->n[i]; j++)
			gg += g[i][j] * g[i][j];
	}
	for (int tries = 0; tries < 30; tries++) {
		dot = 0.0;
		for (int i = 0; i < pb->nin; i++) {
			tu_fill_normal(d[i], pb->n[i], 1.0);
			for (int64_t j = 0; j < pb->n[i]; j++)
				dot += g[i][j] * d[i][j];
		}
		if (fabs(dot) >= 0.5 * sqrt(gg))
			return dot;
	}
	ck_abort_msg("no direction with |<g, d>| >= ||g|| / 2 in 30 draws");
	return dot;
}

/* x = x0 + a d over every input */
static void move(struct prob *pb, double *const *x0, double *const *d,
	double a)
{
	for (int i = 0; i < pb->nin; i++)
		for (int64_t j = 0; j < pb->n[i]; j++)
			pb->x[i][j] = x0[i][j] + a * d[i][j];
}

/*
 * <grad L, d> against (L(x + h d) - L(x - h d)) / 2h along one direction
 * over all inputs at once: the gradient as a whole, at a size where an
 * element-wise sweep would be slow. The step moves all N inputs (N ~ 1e4
 * here) by ~h each, so the truncation error, which grows with N, wants a
 * smaller h than the element-wise 1e-5, and the rounding error,
 * O(eps |L| / h), a larger one: h = 3e-6 balances them (measured: <= 1e-9
 * relative over 40 seeds; 1e-5 and 1e-6 give ~4e-9).
 */
static void check_direction(const struct cfg *c)
{
	const double h = 3e-6;
	struct prob pb;
	double *g[MAXIN], *d[MAXIN], *x0[MAXIN], dot, lp, lm, fd, e;

	prob_make(&pb, c);
	grads(&pb, g);
	dot = draw_direction(&pb, g, d);
	for (int i = 0; i < pb.nin; i++)
		x0[i] = tu_copy(pb.x[i], pb.n[i]);
	move(&pb, x0, d, h);
	lp = loss(&pb);
	move(&pb, x0, d, -h);
	lm = loss(&pb);
	fd = (lp - lm) / (2 * h);
	e = fabs(fd - dot) / fabs(dot);
	report("DIR %s %s <g,d> = %.12e fd = %.12e rel %.3e\n", mech(c),
		c->name, dot, fd, e);
	ck_assert_msg(e <= 1e-6, "%s: directional derivative %.12e vs "
		"finite difference %.12e (relative %.3e > 1e-6)", mech(c), dot,
		fd, e);
	free_all(g, pb.nin);
	free_all(d, pb.nin);
	free_all(x0, pb.nin);
	prob_free(&pb);
}

START_TEST(test_softmax_directional_derivative_T70)
{
	struct cfg c = sm_base("T70", 70, 70);

	c.H = 4;
	c.Hkv = 2;
	c.dk = 16;
	c.dv = 8;
	c.window = 40;
	c.rope_dim = 8;
	check_direction(&c);
}
END_TEST

START_TEST(test_mla_directional_derivative_T70)
{
	struct cfg c = mla_base("T70", 70, 70);

	c.H = 4;
	c.dn = 8;
	c.dr = 4;
	c.dc = 16;
	c.dv = 6;
	c.algo = LCA_ALGO_NAIVE;
	check_direction(&c);
	c.algo = LCA_ALGO_ABSORBED;
	check_direction(&c);
}
END_TEST

/* ---- MLA: the two adjoints agree -------------------------------------- */

START_TEST(test_mla_naive_backward_equals_absorbed)
{
	double worst = 0.0;

	for (int r = 0; r < 8; r++) {
		struct cfg c = mla_base("random", 0, 0);
		struct prob pb;
		double *gn[MAXIN], *ga[MAXIN];
		lca_params p;
		lca_plan *abs;

		c.Tq = tu_randint(1, 12);
		c.Tk = c.Tq + tu_randint(-2, 6);
		if (c.Tk < 1)
			c.Tk = 1;
		c.H = tu_randint(1, 4);
		c.dn = tu_randint(1, 6);
		c.dr = 2 * tu_randint(1, 3);
		c.dc = tu_randint(1, 8);
		c.dv = tu_randint(1, 5);
		c.causal = (int)tu_randint(0, 1);
		c.window = c.causal ? tu_randint(0, 4) : 0;
		c.rope_dim = 2 * tu_randint(0, c.dr / 2);
		c.style = tu_randint(0, 1) ? LCA_ROPE_HALF : LCA_ROPE_INTERLEAVED;
		c.algo = LCA_ALGO_NAIVE;
		prob_make(&pb, &c);
		grads(&pb, gn);
		c.algo = LCA_ALGO_ABSORBED;
		p = cfg_params(&c, LCA_F64);
		abs = tu_plan(&p);
		for (int i = 0; i < pb.nin; i++)
			ga[i] = tu_alloc(pb.n[i]);
		tu_assert_ok(call_bwd(abs, &c, (void *const *)pb.x, pb.dout,
			(void *const *)ga));
		for (int i = 0; i < pb.nin; i++) {
			double e = tu_relerr(ga[i], gn[i], pb.n[i]);

			if (e > worst)
				worst = e;
			ck_assert_msg(e <= 1e-12, "draw %d (Tq %lld Tk %lld "
				"H %lld) %s: naive vs absorbed %.3e > 1e-12", r,
				(long long)c.Tq, (long long)c.Tk, (long long)c.H,
				pb.name[i], e);
		}
		lca_plan_destroy(abs);
		free_all(gn, pb.nin);
		free_all(ga, pb.nin);
		prob_free(&pb);
	}
	report("NAIVE-ABSORBED worst %.3e\n", worst);
}
END_TEST

/* ---- f32 reference ----------------------------------------------------- */

static float *to_float(const double *x, int64_t n)
{
	float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);

	ck_assert_ptr_nonnull(f);
	for (int64_t j = 0; j < n; j++)
		f[j] = (float)x[j];
	return f;
}

/*
 * The same backward run in float32 must be finite and near the double
 * one: a sanity bound of 1e-4 normwise (float32 rounding is 6e-8 per
 * operation; these rows are short and well conditioned), not the
 * tolerance rule, which measures other f32 paths against this one.
 */
static void check_f32(const struct cfg *c)
{
	struct prob pb;
	double *g[MAXIN], *g32[MAXIN];
	float *xf[MAXIN] = { 0 }, *gf[MAXIN] = { 0 }, *doutf;
	lca_params p = cfg_params(c, LCA_F32);
	lca_plan *plan = tu_plan(&p);

	prob_make(&pb, c);
	grads(&pb, g);
	for (int i = 0; i < pb.nin; i++) {
		xf[i] = to_float(pb.x[i], pb.n[i]);
		gf[i] = to_float(pb.x[i], pb.n[i]);
	}
	doutf = to_float(pb.dout, pb.no);
	tu_assert_ok(call_bwd(plan, c, (void *const *)xf, doutf,
		(void *const *)gf));
	for (int i = 0; i < pb.nin; i++) {
		double e;

		g32[i] = tu_alloc(pb.n[i]);
		for (int64_t j = 0; j < pb.n[i]; j++)
			g32[i][j] = gf[i][j];
		ck_assert_msg(tu_all_finite(g32[i], pb.n[i]),
			"f32 %s: not finite", pb.name[i]);
		e = tu_relerr(g32[i], g[i], pb.n[i]);
		report("F32 %s %s %.3e\n", mech(c), pb.name[i], e);
		ck_assert_msg(e <= 1e-4, "f32 %s %s: %.3e from f64 > 1e-4",
			mech(c), pb.name[i], e);
		free(xf[i]);
		free(gf[i]);
	}
	free(doutf);
	free_all(g, pb.nin);
	free_all(g32, pb.nin);
	prob_free(&pb);
	lca_plan_destroy(plan);
}

START_TEST(test_softmax_f32_backward_near_f64)
{
	struct cfg c = sm_base("f32", 20, 20);

	c.H = 4;
	c.Hkv = 2;
	c.dk = 8;
	c.dv = 8;
	c.rope_dim = 4;
	check_f32(&c);
}
END_TEST

START_TEST(test_mla_f32_backward_near_f64)
{
	struct cfg c = mla_base("f32", 20, 20);

	c.dn = 8;
	c.dc = 12;
	c.dv = 6;
	c.algo = LCA_ALGO_NAIVE;
	check_f32(&c);
	c.algo = LCA_ALGO_ABSORBED;
	check_f32(&c);
}
END_TEST

/* ---- refusals ----------------------------------------------------------- */

/* Gradient buffers filled with a sentinel that a refused call must leave. */
static void sentinel(double **g, const struct prob *pb)
{
	for (int i = 0; i < pb->nin; i++) {
		g[i] = tu_alloc(pb->n[i]);
		for (int64_t j = 0; j < pb->n[i]; j++)
			g[i][j] = 7.0;
	}
}

static void assert_untouched(double **g, const struct prob *pb)
{
	for (int i = 0; i < pb->nin; i++)
		for (int64_t j = 0; j < pb->n[i]; j++)
			ck_assert_msg(g[i][j] == 7.0, "%s[%lld] written by a "
				"refused call", pb->name[i], (long long)j);
}

/* NULL dout, NaN in dout and a gradient buffer on top of its input are
 * refused as the forward refuses bad arguments, with nothing written. */
static void check_refusals(const struct cfg *c)
{
	struct prob pb;
	double *g[MAXIN];
	void *gv[MAXIN];

	prob_make(&pb, c);
	sentinel(g, &pb);
	ck_assert_int_eq(call_bwd(pb.plan, c, (void *const *)pb.x, NULL,
		(void *const *)g), LCA_ERR_NULL);
	assert_untouched(g, &pb);

	pb.dout[pb.no / 2] = NAN;
	ck_assert_int_eq(call_bwd(pb.plan, c, (void *const *)pb.x, pb.dout,
		(void *const *)g), LCA_ERR_NONFINITE);
	assert_untouched(g, &pb);
	pb.dout[pb.no / 2] = 0.5;

	for (int i = 0; i < pb.nin; i++)
		gv[i] = g[i];
	gv[0] = pb.x[0];  /* the first gradient written over its input */
	ck_assert_int_eq(call_bwd(pb.plan, c, (void *const *)pb.x, pb.dout,
		gv), LCA_ERR_ARG);
	assert_untouched(g, &pb);
	free_all(g, pb.nin);
	prob_free(&pb);
}

START_TEST(test_softmax_bad_input_refused_untouched)
{
	check_refusals(&(struct cfg){ .name = "bad", .variant = LCA_SOFTMAX,
		.Tq = 4, .Tk = 4, .H = 2, .Hkv = 1, .dk = 4, .dv = 3,
		.causal = 1 });
}
END_TEST

START_TEST(test_mla_bad_input_refused_untouched)
{
	struct cfg c = mla_base("bad", 4, 4);

	c.algo = LCA_ALGO_NAIVE;
	check_refusals(&c);
	c.algo = LCA_ALGO_ABSORBED;
	check_refusals(&c);
}
END_TEST

/* The cpu backend's backward is this gradient too (its edge cases, f32
 * and thread counts: check_grad_cpu_attn.c). */
static void check_cpu_matches_ref(struct cfg c)
{
	struct prob pb;
	double *g[MAXIN], *gc[MAXIN];
	lca_params p = cfg_params(&c, LCA_F64);
	lca_plan *cpu;

	p.backend = LCA_BACKEND_CPU;
	cpu = tu_plan(&p);
	prob_make(&pb, &c);
	grads(&pb, g);
	for (int i = 0; i < pb.nin; i++)
		gc[i] = tu_alloc(pb.n[i]);
	tu_assert_ok(call_bwd(cpu, &c, (void *const *)pb.x, pb.dout,
		(void *const *)gc));
	for (int i = 0; i < pb.nin; i++)
		tu_assert_close(gc[i], g[i], pb.n[i], 1e-12, pb.name[i]);
	free_all(g, pb.nin);
	free_all(gc, pb.nin);
	prob_free(&pb);
	lca_plan_destroy(cpu);
}

START_TEST(test_cpu_backend_matches_ref)
{
	struct cfg c = mla_base("cpu", 4, 4);

	check_cpu_matches_ref(sm_base("cpu", 4, 4));
	c.algo = LCA_ALGO_ABSORBED;
	check_cpu_matches_ref(c);
}
END_TEST

static Suite *grad_suite(void)
{
	Suite *s = suite_create("grad_attn");
	TCase *tc = tu_tcase("softmax_fd");

	tcase_add_test(tc, test_softmax_single_token_has_zero_dq_dk);
	tcase_add_test(tc, test_softmax_causal_matches_fd);
	tcase_add_test(tc, test_softmax_non_causal_matches_fd);
	tcase_add_test(tc, test_softmax_fewer_queries_bottom_right_matches_fd);
	tcase_add_test(tc, test_softmax_masked_rows_matches_fd);
	tcase_add_test(tc, test_softmax_negative_positions_non_causal_matches_fd);
	tcase_add_test(tc, test_softmax_window_matches_fd);
	tcase_add_test(tc, test_softmax_gqa_matches_fd);
	tcase_add_test(tc, test_softmax_mqa_matches_fd);
	tcase_add_test(tc, test_softmax_partial_rope_half_matches_fd);
	tcase_add_test(tc, test_softmax_partial_rope_interleaved_matches_fd);
	tcase_add_test(tc, test_softmax_varlen_with_empty_sequence_matches_fd);
	suite_add_tcase(s, tc);

	tc = tu_tcase("mla_fd");
	tcase_add_test(tc, test_mla_single_token_has_zero_query_key_grads);
	tcase_add_test(tc, test_mla_causal_matches_fd);
	tcase_add_test(tc, test_mla_non_causal_matches_fd);
	tcase_add_test(tc, test_mla_fewer_queries_bottom_right_matches_fd);
	tcase_add_test(tc, test_mla_masked_rows_matches_fd);
	tcase_add_test(tc, test_mla_negative_positions_non_causal_matches_fd);
	tcase_add_test(tc, test_mla_window_matches_fd);
	tcase_add_test(tc, test_mla_partial_rope_both_styles_matches_fd);
	tcase_add_test(tc, test_mla_varlen_with_empty_sequence_matches_fd);
	suite_add_tcase(s, tc);

	tc = tu_tcase("structure");
	tcase_add_test(tc, test_softmax_gqa_grads_sum_over_the_group);
	tcase_add_test(tc, test_softmax_huge_logits_give_finite_gradients);
	tcase_add_test(tc, test_mla_huge_logits_give_finite_gradients);
	suite_add_tcase(s, tc);

	tc = tu_tcase("larger");
	tcase_add_test(tc, test_softmax_directional_derivative_T70);
	tcase_add_test(tc, test_mla_directional_derivative_T70);
	tcase_add_test(tc, test_mla_naive_backward_equals_absorbed);
	tcase_add_test(tc, test_softmax_f32_backward_near_f64);
	tcase_add_test(tc, test_mla_f32_backward_near_f64);
	suite_add_tcase(s, tc);

	tc = tu_tcase("refusals");
	tcase_add_test(tc, test_softmax_bad_input_refused_untouched);
	tcase_add_test(tc, test_mla_bad_input_refused_untouched);
	tcase_add_test(tc, test_cpu_backend_matches_ref);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(grad_suite());
}
