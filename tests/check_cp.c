/*
 * check_cp.c - the pieces of context parallelism. Partial attention over
 * split key ranges, merged, is the single call (softmax, mla); a
 * deltanet or lightning sequence cut anywhere (mid-chunk, mid-block,
 * one-token pieces), its pieces' summaries composed in order and applied
 * to state0, each piece's forward started from its incoming state, is the
 * single call; composition is associative; bad input writes nothing.
 *
 * Tolerance (DESIGN.md): f64 within 1e-12 of the double reference's single
 * call; f32 within twice the error of the float32 reference's single call,
 * floored at 1e-6.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- typed buffers ------------------------------------------------------ */

struct path {
	lca_backend b;
	lca_dtype t;
	const char *name;
};

static const struct path paths[] = {
	{ LCA_BACKEND_REF, LCA_F64, "ref f64" }, { LCA_BACKEND_CPU, LCA_F64, "cpu f64" },
	{ LCA_BACKEND_REF, LCA_F32, "ref f32" }, { LCA_BACKEND_CPU, LCA_F32, "cpu f32" },
};
#define NPATH 4

/* A copy of x [n] in dtype t. */
static void *typed(lca_dtype t, const double *x, int64_t n)
{
	void *y = malloc((size_t)(n ? n : 1) * (t == LCA_F64 ? 8 : 4));

	ck_assert_ptr_nonnull(y);
	for (int64_t i = 0; i < n; i++)
		if (t == LCA_F64)
			((double *)y)[i] = x[i];
		else
			((float *)y)[i] = (float)x[i];
	return y;
}

/* x [n] of dtype t into y as doubles. */
static void untyped(lca_dtype t, const void *x, double *y, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = t == LCA_F64 ? ((const double *)x)[i] : ((const float *)x)[i];
}

static double rule(lca_dtype t, const double *r32, const double *r64, int64_t n)
{
	double e;

	if (t == LCA_F64)
		return 1e-12;
	e = 2.0 * tu_relerr(r32, r64, n);
	return e > 1e-6 ? e : 1e-6;
}

/* P >= 1 pieces of [0, T): cut[0] = 0 < cut[1] < ... < cut[P] = T. */
static int64_t draw_cuts(int64_t T, int64_t maxp, int64_t *cut)
{
	int64_t P = tu_randint(1, maxp < T ? maxp : T);

	cut[0] = 0;
	cut[P] = T;
	for (int64_t i = 1; i < P; i++) {
		int64_t c;
		int fresh;

		do { /* distinct cut points, sorted by insertion */
			c = tu_randint(1, T - 1);
			fresh = 1;
			for (int64_t j = 1; j < i; j++)
				fresh &= cut[j] != c;
		} while (!fresh);
		cut[i] = c;
		for (int64_t j = i; j > 1 && cut[j - 1] > cut[j]; j--) {
			int64_t x = cut[j];

			cut[j] = cut[j - 1];
			cut[j - 1] = x;
		}
	}
	return P;
}

/* ---- softmax and mla: split keys, merge ----------------------------------- */

struct attn_conf {
	const char *name;
	lca_variant v;
	int64_t H, Hkv, dk, dv;       /* mla: dk unused */
	int64_t dn, dr, dc;           /* mla only */
	int causal;
	int64_t window, rope_dim;
	lca_rope_style style;
	lca_algo algo;
};

static const struct attn_conf attn_confs[] = {
	{ "softmax gqa causal", LCA_SOFTMAX, 4, 2, 8, 6, 0, 0, 0, 1, 0, 0, LCA_ROPE_HALF, 0 },
	{ "softmax window rope half", LCA_SOFTMAX, 3, 1, 8, 5, 0, 0, 0, 1, 9, 8, LCA_ROPE_HALF, 0 },
	{ "softmax rope partial interleaved", LCA_SOFTMAX, 2, 2, 8, 8, 0, 0, 0, 1, 0, 4,
		LCA_ROPE_INTERLEAVED, 0 },
	{ "softmax non-causal rope", LCA_SOFTMAX, 4, 1, 6, 3, 0, 0, 0, 0, 0, 6, LCA_ROPE_HALF, 0 },
	{ "mla absorbed", LCA_MLA, 3, 0, 0, 5, 6, 4, 7, 1, 0, LCA_ROPE_FULL,
		LCA_ROPE_INTERLEAVED, LCA_ALGO_ABSORBED },
	{ "mla naive window partial rope", LCA_MLA, 2, 0, 0, 4, 5, 6, 8, 1, 11, 4,
		LCA_ROPE_HALF, LCA_ALGO_NAIVE },
};
#define NATTN (int)(sizeof attn_confs / sizeof attn_confs[0])

/* Inputs of one sequence of T tokens, double. */
struct attn_data {
	int64_t T;
	int nin;
	double *x[6];   /* softmax q k v; mla q_nope q_rope ckv k_rope w_uk w_uv */
	int64_t row[6]; /* per token (0: whole-call weights) */
	int64_t n[6];
};

static lca_params attn_params(const struct attn_conf *c, const struct path *pa)
{
	lca_params p = tu_params(c->v);

	p.backend = pa->b;
	p.dtype = pa->t;
	p.H = c->H;
	p.dv = c->dv;
	p.causal = c->causal;
	p.window = c->window;
	p.rope_dim = c->rope_dim;
	p.rope_style = c->style;
	if (c->v == LCA_SOFTMAX) {
		p.Hkv = c->Hkv;
		p.dk = c->dk;
	} else {
		p.dn = c->dn;
		p.dr = c->dr;
		p.dc = c->dc;
		p.scale = 1.0 / sqrt((double)(c->dn + c->dr));
		if (pa->b == LCA_BACKEND_REF)
			p.algo = c->algo;
	}
	return p;
}

static void attn_data_make(const struct attn_conf *c, int64_t T, struct attn_data *d)
{
	memset(d, 0, sizeof *d);
	d->T = T;
	if (c->v == LCA_SOFTMAX) {
		int64_t r[3] = { c->H * c->dk, c->Hkv * c->dk, c->Hkv * c->dv };

		d->nin = 3;
		for (int i = 0; i < 3; i++)
			d->row[i] = r[i];
	} else {
		int64_t r[4] = { c->H * c->dn, c->H * c->dr, c->dc, c->dr };

		d->nin = 6;
		for (int i = 0; i < 4; i++)
			d->row[i] = r[i];
		d->n[4] = c->H * c->dn * c->dc;
		d->n[5] = c->H * c->dv * c->dc;
	}
	for (int i = 0; i < d->nin; i++) {
		if (d->row[i])
			d->n[i] = T * d->row[i];
		d->x[i] = tu_alloc(d->n[i]);
		tu_fill_normal(d->x[i], d->n[i], 1.0);
	}
}

static void attn_data_free(struct attn_data *d)
{
	for (int i = 0; i < d->nin; i++)
		free(d->x[i]);
}

/* Typed copies of the inputs, per-token ones from token t0 on. */
static void attn_typed(const struct attn_data *d, lca_dtype t, int64_t t0, int64_t n,
	void *x[6])
{
	for (int i = 0; i < d->nin; i++)
		x[i] = d->row[i] ? typed(t, d->x[i] + t0 * d->row[i], n * d->row[i]) :
			typed(t, d->x[i], d->n[i]);
}

static void free_all(void *x[], int n)
{
	for (int i = 0; i < n; i++)
		free(x[i]);
}

/* The single call over all T tokens: o [T][H][dv] and lse [T][H], double. */
static void attn_single(const struct attn_conf *c, const struct path *pa,
	const struct attn_data *d, double *o, double *lse)
{
	lca_params p = attn_params(c, pa);
	lca_plan *plan = tu_plan(&p);
	const int64_t T = d->T, no = T * c->H * c->dv, nl = T * c->H;
	void *x[6], *to = typed(pa->t, o, no), *tl = typed(pa->t, lse, nl);

	attn_typed(d, pa->t, 0, T, x);
	if (c->v == LCA_SOFTMAX)
		tu_assert_ok(lca_softmax_forward(plan, T, T, x[0], x[1], x[2], NULL, 0, to, tl));
	else
		tu_assert_ok(lca_mla_forward(plan, T, T, x[0], x[1], x[2], x[3], x[4], x[5],
			NULL, 0, to, tl));
	untyped(pa->t, to, o, no);
	untyped(pa->t, tl, lse, nl);
	free_all(x, d->nin);
	free(to);
	free(tl);
	lca_plan_destroy(plan);
}

/* A partial call: queries [qa, qa + tq), keys [ka, ka + tk) of d, at
 * positions qpos and kpos. */
static lca_status attn_partial_at(const lca_plan *plan, const struct attn_conf *c,
	lca_dtype t, const struct attn_data *d, int64_t qa, int64_t tq, int64_t qpos,
	int64_t ka, int64_t tk, int64_t kpos, void *o, void *lse)
{
	void *x[6];
	lca_status s;

	if (c->v == LCA_SOFTMAX) {
		x[0] = typed(t, d->x[0] + qa * d->row[0], tq * d->row[0]);
		x[1] = typed(t, d->x[1] + ka * d->row[1], tk * d->row[1]);
		x[2] = typed(t, d->x[2] + ka * d->row[2], tk * d->row[2]);
		s = lca_softmax_partial(plan, tq, qpos, tk, kpos, x[0], x[1], x[2], o, lse);
	} else {
		x[0] = typed(t, d->x[0] + qa * d->row[0], tq * d->row[0]);
		x[1] = typed(t, d->x[1] + qa * d->row[1], tq * d->row[1]);
		x[2] = typed(t, d->x[2] + ka * d->row[2], tk * d->row[2]);
		x[3] = typed(t, d->x[3] + ka * d->row[3], tk * d->row[3]);
		x[4] = typed(t, d->x[4], d->n[4]);
		x[5] = typed(t, d->x[5], d->n[5]);
		s = lca_mla_partial(plan, tq, qpos, tk, kpos, x[0], x[1], x[2], x[3], x[4],
			x[5], o, lse);
	}
	free_all(x, d->nin);
	return s;
}

/* The same with the tokens' own indices as positions. */
static lca_status attn_partial(const lca_plan *plan, const struct attn_conf *c,
	lca_dtype t, const struct attn_data *d, int64_t qa, int64_t tq, int64_t ka,
	int64_t tk, void *o, void *lse)
{
	return attn_partial_at(plan, c, t, d, qa, tq, qa, ka, tk, ka, o, lse);
}

/* _i = conf * NPATH + path */
START_TEST(test_partial_key_ranges_merged_equal_single_call)
{
	const struct attn_conf *c = &attn_confs[_i / NPATH];
	const struct path *pa = &paths[_i % NPATH];
	const struct path r64 = { LCA_BACKEND_REF, LCA_F64, "" }, r32 = { LCA_BACKEND_REF, LCA_F32, "" };
	const int64_t T = 150, H = c->H, dv = c->dv;
	lca_params p = attn_params(c, pa);
	lca_plan *plan = tu_plan(&p);
	double *o64 = tu_alloc(T * H * dv), *l64 = tu_alloc(T * H);
	double *o32 = tu_alloc(T * H * dv), *l32 = tu_alloc(T * H);
	struct attn_data d;

	attn_data_make(c, T, &d);
	attn_single(c, &r64, &d, o64, l64);
	attn_single(c, &r32, &d, o32, l32);
	for (int rep = 0; rep < 4; rep++) {
		/* local queries [qa, qa + tq), keys cut in P ranges */
		const int64_t qa = tu_randint(0, T - 1), tq = tu_randint(1, T - qa);
		int64_t cut[8], P = draw_cuts(T, 7, cut);
		const int64_t no = tq * H * dv, nl = tq * H;
		void *op[7], *lp[7], *o = typed(p.dtype, o64, no), *l = typed(p.dtype, l64, nl);
		double *od = tu_alloc(no), *ld = tu_alloc(nl);
		char what[160];

		for (int64_t j = 0; j < P; j++) {
			op[j] = typed(p.dtype, o64, no);
			lp[j] = typed(p.dtype, l64, nl);
			tu_assert_ok(attn_partial(plan, c, p.dtype, &d, qa, tq, cut[j],
				cut[j + 1] - cut[j], op[j], lp[j]));
		}
		tu_assert_ok(lca_attn_merge(plan, tq, P, (const void *const *)op,
			(const void *const *)lp, o, l));
		untyped(p.dtype, o, od, no);
		untyped(p.dtype, l, ld, nl);
		snprintf(what, sizeof what, "%s %s queries %lld+%lld, %lld key ranges: o",
			c->name, pa->name, (long long)qa, (long long)tq, (long long)P);
		ck_assert(tu_all_finite(od, no) && tu_all_finite(ld, nl));
		tu_assert_close(od, o64 + qa * H * dv, no,
			rule(p.dtype, o32 + qa * H * dv, o64 + qa * H * dv, no), what);
		strcat(what, " lse");
		tu_assert_close(ld, l64 + qa * H, nl,
			rule(p.dtype, l32 + qa * H, l64 + qa * H, nl), what);
		free_all(op, (int)P);
		free_all(lp, (int)P);
		free(o);
		free(l);
		free(od);
		free(ld);
	}
	attn_data_free(&d);
	free(o64);
	free(l64);
	free(o32);
	free(l32);
	lca_plan_destroy(plan);
}
END_TEST

/* With q_pos0 = Tk - Tq and k_pos0 = 0 a partial call is the forward. */
START_TEST(test_partial_bottom_right_is_forward)
{
	const struct attn_conf *c = &attn_confs[_i / NPATH];
	const struct path *pa = &paths[_i % NPATH];
	const int64_t Tk = 70, Tq = 23, H = c->H, dv = c->dv;
	lca_params p = attn_params(c, pa);
	lca_plan *plan = tu_plan(&p);
	struct attn_data d;
	void *x[6], *o1, *l1, *o2, *l2;
	double *a = tu_alloc(Tq * H * dv), *b = tu_alloc(Tq * H * dv);
	double *la = tu_alloc(Tq * H), *lb = tu_alloc(Tq * H);

	attn_data_make(c, Tk, &d);
	o1 = typed(p.dtype, a, Tq * H * dv);
	o2 = typed(p.dtype, a, Tq * H * dv);
	l1 = typed(p.dtype, la, Tq * H);
	l2 = typed(p.dtype, la, Tq * H);
	attn_typed(&d, p.dtype, 0, Tk, x);
	/* the queries are rows Tk - Tq .. of the same draw */
	tu_assert_ok(attn_partial(plan, c, p.dtype, &d, Tk - Tq, Tq, 0, Tk, o1, l1));
	if (c->v == LCA_SOFTMAX) {
		void *q = typed(p.dtype, d.x[0] + (Tk - Tq) * d.row[0], Tq * d.row[0]);

		tu_assert_ok(lca_softmax_forward(plan, Tq, Tk, q, x[1], x[2], NULL, 0, o2, l2));
		free(q);
	} else {
		void *qn = typed(p.dtype, d.x[0] + (Tk - Tq) * d.row[0], Tq * d.row[0]);
		void *qr = typed(p.dtype, d.x[1] + (Tk - Tq) * d.row[1], Tq * d.row[1]);

		tu_assert_ok(lca_mla_forward(plan, Tq, Tk, qn, qr, x[2], x[3], x[4], x[5],
			NULL, 0, o2, l2));
		free(qn);
		free(qr);
	}
	/* same kernels, same positions: the same bits */
	ck_assert_msg(memcmp(o1, o2, (size_t)(Tq * H * dv) * (p.dtype == LCA_F64 ? 8 : 4)) == 0,
		"%s %s: o differs from the forward", c->name, pa->name);
	ck_assert(memcmp(l1, l2, (size_t)(Tq * H) * (p.dtype == LCA_F64 ? 8 : 4)) == 0);
	free_all(x, d.nin);
	attn_data_free(&d);
	free(o1), free(o2), free(l1), free(l2), free(a), free(b), free(la), free(lb);
	lca_plan_destroy(plan);
}
END_TEST

/* Queries far from their keys (a gap of a million positions): a causal
 * range long before the queries is seen whole, a range after them not at
 * all; RoPE at large positions still agrees with the reference. */
START_TEST(test_partial_far_positions)
{
	const struct attn_conf *c = &attn_confs[2]; /* causal, RoPE */
	const struct path *pa = &paths[_i];
	const struct path *ps[3] = { pa, &paths[0], &paths[2] };
	const int64_t Tq = 5, Tk = 70, far = 1000000, no = Tq * c->H * c->dv, nl = Tq * c->H;
	double *o[3], *l[3];
	struct attn_data d;

	attn_data_make(c, Tk, &d);
	/* keys long before: every query sees all of them */
	for (int i = 0; i < 3; i++) {
		lca_params p = attn_params(c, ps[i]);
		lca_plan *plan = tu_plan(&p);
		void *to, *tl;

		o[i] = tu_alloc(no), l[i] = tu_alloc(nl);
		to = typed(p.dtype, o[i], no), tl = typed(p.dtype, l[i], nl);
		tu_assert_ok(attn_partial_at(plan, c, p.dtype, &d, 0, Tq, far, 0, Tk, 3, to, tl));
		untyped(p.dtype, to, o[i], no);
		untyped(p.dtype, tl, l[i], nl);
		free(to), free(tl);
		lca_plan_destroy(plan);
	}
	tu_assert_close(o[0], o[1], no, rule(pa->t, o[2], o[1], no), "far keys: o");
	tu_assert_close(l[0], l[1], nl, rule(pa->t, l[2], l[1], nl), "far keys: lse");
	/* keys after the queries: causal hides them all */
	{
		lca_params p = attn_params(c, pa);
		lca_plan *plan = tu_plan(&p);
		void *to = typed(p.dtype, o[0], no), *tl = typed(p.dtype, l[0], nl);

		tu_assert_ok(attn_partial_at(plan, c, p.dtype, &d, 0, Tq, 3, 0, Tk, far, to, tl));
		untyped(p.dtype, to, o[0], no);
		untyped(p.dtype, tl, l[0], nl);
		for (int64_t i = 0; i < nl; i++)
			ck_assert(l[0][i] == -INFINITY);
		for (int64_t i = 0; i < no; i++)
			ck_assert(o[0][i] == 0);
		free(to), free(tl);
		lca_plan_destroy(plan);
	}
	for (int i = 0; i < 3; i++)
		free(o[i]), free(l[i]);
	attn_data_free(&d);
}
END_TEST

/* ---- the merge alone ------------------------------------------------------- */

static lca_plan *merge_plan(lca_dtype t, int64_t H, int64_t dv)
{
	lca_params p = tu_params(LCA_SOFTMAX);

	p.dtype = t;
	p.H = H;
	p.dk = 4;
	p.dv = dv;
	return tu_plan(&p);
}

/* An empty range (every lse -inf, o anything finite) changes nothing; a
 * row no part saw is o = 0, lse = -inf; huge lse do not overflow. */
START_TEST(test_merge_empty_parts_and_large_lse)
{
	const lca_dtype t = _i ? LCA_F32 : LCA_F64;
	const int64_t Tq = 3, H = 2, dv = 5, no = Tq * H * dv, nl = Tq * H;
	lca_plan *plan = merge_plan(t, H, dv);
	double *o1 = tu_alloc(no), *l1 = tu_alloc(nl), *o2 = tu_alloc(no), *l2 = tu_alloc(nl);
	double *o = tu_alloc(no), *l = tu_alloc(nl);
	void *to1, *tl1, *to2, *tl2, *to, *tl;
	const void *op[2], *lp[2];

	tu_fill_normal(o1, no, 1.0);
	tu_fill_normal(o2, no, 1.0);
	tu_fill_uniform(l1, nl, -1000.0, 1000.0);
	for (int64_t i = 0; i < nl; i++)
		l2[i] = -INFINITY;
	l1[nl - 1] = -INFINITY; /* the last row: nobody saw a key */
	to1 = typed(t, o1, no), tl1 = typed(t, l1, nl), to2 = typed(t, o2, no);
	tl2 = typed(t, l2, nl), to = typed(t, o, no), tl = typed(t, l, nl);
	op[0] = to1, op[1] = to2, lp[0] = tl1, lp[1] = tl2;
	tu_assert_ok(lca_attn_merge(plan, Tq, 2, op, lp, to, tl));
	untyped(t, to, o, no);
	untyped(t, tl, l, nl);
	for (int64_t r = 0; r < nl; r++) {
		ck_assert(l[r] == l1[r] || (t == LCA_F32 && fabs(l[r] - l1[r]) <= 1e-6 * fabs(l1[r])));
		for (int64_t c = 0; c < dv; c++) {
			double want = r == nl - 1 ? 0 : o1[r * dv + c];

			ck_assert_msg(fabs(o[r * dv + c] - want) <= (t == LCA_F64 ? 1e-15 : 1e-6) *
				(1 + fabs(want)), "row %lld: %g != %g", (long long)r, o[r * dv + c], want);
		}
	}
	/* two parts at lse 1000 and 1000 + log 3: weights 1/4 and 3/4 */
	for (int64_t i = 0; i < nl; i++)
		l1[i] = 1000, l2[i] = 1000 + log(3.0);
	free(tl1), free(tl2);
	tl1 = typed(t, l1, nl), tl2 = typed(t, l2, nl);
	lp[0] = tl1, lp[1] = tl2;
	tu_assert_ok(lca_attn_merge(plan, Tq, 2, op, lp, to, tl));
	untyped(t, to, o, no);
	untyped(t, tl, l, nl);
	untyped(t, tl1, l1, nl);
	untyped(t, tl2, l2, nl);
	untyped(t, to1, o1, no);
	untyped(t, to2, o2, no);
	for (int64_t r = 0; r < nl; r++) {
		/* weights 1/4 and 3/4 up to the rounding of the stored lse */
		const double w = exp(l1[r] - l2[r]), tol = t == LCA_F64 ? 1e-14 : 1e-6;

		ck_assert(fabs(l[r] - (l2[r] + log1p(w))) <= tol * l[r]);
		ck_assert(fabs(w - 1.0 / 3) < (t == LCA_F64 ? 1e-12 : 1e-4));
		for (int64_t c = 0; c < dv; c++) {
			double want = (w * o1[r * dv + c] + o2[r * dv + c]) / (w + 1);

			ck_assert(fabs(o[r * dv + c] - want) <= tol * (1 + fabs(want)));
		}
	}
	free(to1), free(tl1), free(to2), free(tl2), free(to), free(tl);
	free(o1), free(l1), free(o2), free(l2), free(o), free(l);
	lca_plan_destroy(plan);
}
END_TEST

/* Merging into part 0's own buffers equals merging into fresh ones, and a
 * merge is order-free: (p0 p1) p2 = p0 (p1 p2) = all three at once. */
START_TEST(test_merge_in_place_and_in_any_grouping)
{
	const int64_t Tq = 4, H = 3, dv = 2, no = Tq * H * dv, nl = Tq * H;
	lca_plan *plan = merge_plan(LCA_F64, H, dv);
	double *o[3], *l[3], *all_o = tu_alloc(no), *all_l = tu_alloc(nl);
	double *t_o = tu_alloc(no), *t_l = tu_alloc(nl);

	for (int i = 0; i < 3; i++) {
		o[i] = tu_alloc(no);
		l[i] = tu_alloc(nl);
		tu_fill_normal(o[i], no, 1.0);
		tu_fill_normal(l[i], nl, 3.0);
	}
	l[1][2] = -INFINITY;
	tu_assert_ok(lca_attn_merge(plan, Tq, 3, (const void *const *)o,
		(const void *const *)l, all_o, all_l));
	/* p1 p2 into fresh buffers, then p0 (t) into p0's own buffers */
	{
		const void *op[2] = { o[1], o[2] }, *lp[2] = { l[1], l[2] };

		tu_assert_ok(lca_attn_merge(plan, Tq, 2, op, lp, t_o, t_l));
	}
	{
		const void *op[2] = { o[0], t_o }, *lp[2] = { l[0], t_l };

		tu_assert_ok(lca_attn_merge(plan, Tq, 2, op, lp, o[0], l[0]));
	}
	tu_assert_close(o[0], all_o, no, 1e-14, "grouped, in place: o");
	tu_assert_close(l[0], all_l, nl, 1e-14, "grouped, in place: lse");
	for (int i = 0; i < 3; i++)
		free(o[i]), free(l[i]);
	free(all_o), free(all_l), free(t_o), free(t_l);
	lca_plan_destroy(plan);
}
END_TEST

/* ---- deltanet and lightning: summaries ------------------------------------ */

struct lin {
	lca_variant v;
	int64_t T, H, Hk, dk, dv;
	double *q, *k, *v_, *g, *beta, *slope, *state0;
};

static int64_t lin_hk(const struct lin *r)
{
	return r->v == LCA_DELTANET ? r->Hk : r->H;
}

static int64_t lin_na(const struct lin *r)
{
	return r->v == LCA_DELTANET ? r->H * r->dk * r->dk : r->H;
}

static int64_t lin_ns(const struct lin *r)
{
	return r->H * r->dk * r->dv;
}

static void lin_make(struct lin *r, lca_variant v, int64_t T)
{
	memset(r, 0, sizeof *r);
	r->v = v;
	r->T = T;
	r->H = 4;
	r->Hk = v == LCA_DELTANET ? 2 : 4;
	r->dk = 6;
	r->dv = 5;
	r->q = tu_alloc(T * lin_hk(r) * r->dk);
	r->k = tu_alloc(T * lin_hk(r) * r->dk);
	r->v_ = tu_alloc(T * r->H * r->dv);
	r->state0 = tu_alloc(lin_ns(r));
	tu_fill_normal(r->q, T * lin_hk(r) * r->dk, 1.0);
	tu_fill_normal(r->k, T * lin_hk(r) * r->dk, 1.0);
	tu_fill_normal(r->v_, T * r->H * r->dv, 1.0);
	tu_fill_normal(r->state0, lin_ns(r), 1.0);
	if (v == LCA_DELTANET) {
		r->g = tu_alloc(T * r->H);
		r->beta = tu_alloc(T * r->H);
		tu_fill_uniform(r->g, T * r->H, -0.3, 0.0);
		tu_fill_uniform(r->beta, T * r->H, 0.05, 1.0);
	} else {
		r->slope = tu_alloc(r->H);
		tu_fill_uniform(r->slope, r->H, 0.0, 0.2);
		r->slope[0] = 0.0; /* one head that never forgets */
	}
}

static void lin_free(struct lin *r)
{
	free(r->q), free(r->k), free(r->v_), free(r->g), free(r->beta), free(r->slope);
	free(r->state0);
}

static lca_params lin_params(const struct lin *r, const struct path *pa, lca_algo algo)
{
	lca_params p = tu_params(r->v);

	p.backend = pa->b;
	p.dtype = pa->t;
	p.algo = algo;
	p.H = r->H;
	p.dk = r->dk;
	p.dv = r->dv;
	if (r->v == LCA_DELTANET) {
		p.Hk = r->Hk;
		p.chunk = 16;
	} else {
		p.block = 32;
	}
	return p;
}

/* Forward of tokens [t0, t0 + n) from state0 s0 (typed, may be NULL) into
 * typed o and state. */
static lca_status lin_forward(const lca_plan *plan, const struct lin *r, lca_dtype t,
	int64_t t0, int64_t n, const void *s0, void *o, void *state)
{
	const int64_t qk = lin_hk(r) * r->dk, hv = r->H * r->dv;
	void *q = typed(t, r->q + t0 * qk, n * qk), *k = typed(t, r->k + t0 * qk, n * qk);
	void *v = typed(t, r->v_ + t0 * hv, n * hv), *g = NULL, *b = NULL, *sl = NULL;
	lca_status s;

	if (r->v == LCA_DELTANET) {
		g = typed(t, r->g + t0 * r->H, n * r->H);
		b = typed(t, r->beta + t0 * r->H, n * r->H);
		s = lca_deltanet_forward(plan, n, q, k, v, g, b, NULL, 0, s0, o, state);
	} else {
		sl = typed(t, r->slope, r->H);
		s = lca_lightning_forward(plan, n, q, k, v, sl, NULL, 0, s0, o, state);
	}
	free(q), free(k), free(v), free(g), free(b), free(sl);
	return s;
}

/* Summary of tokens [t0, t0 + n) into typed a and b. */
static lca_status lin_summary(const lca_plan *plan, const struct lin *r, lca_dtype t,
	int64_t t0, int64_t n, void *a, void *b)
{
	const int64_t qk = lin_hk(r) * r->dk, hv = r->H * r->dv;
	void *k = typed(t, r->k + t0 * qk, n * qk), *v = typed(t, r->v_ + t0 * hv, n * hv);
	void *g = NULL, *be = NULL, *sl = NULL;
	lca_status s;

	if (r->v == LCA_DELTANET) {
		g = typed(t, r->g + t0 * r->H, n * r->H);
		be = typed(t, r->beta + t0 * r->H, n * r->H);
		s = lca_deltanet_summary(plan, n, k, v, g, be, a, b);
	} else {
		sl = typed(t, r->slope, r->H);
		s = lca_lightning_summary(plan, n, k, v, sl, a, b);
	}
	free(k), free(v), free(g), free(be), free(sl);
	return s;
}

/* The single call from state0: o [T][H][dv] and state, double. */
static void lin_single(const struct lin *r, const struct path *pa, lca_algo algo,
	double *o, double *state)
{
	lca_params p = lin_params(r, pa, algo);
	lca_plan *plan = tu_plan(&p);
	const int64_t no = r->T * r->H * r->dv;
	void *s0 = typed(pa->t, r->state0, lin_ns(r)), *to = typed(pa->t, o, no);
	void *ts = typed(pa->t, state, lin_ns(r));

	tu_assert_ok(lin_forward(plan, r, pa->t, 0, r->T, s0, to, ts));
	untyped(pa->t, to, o, no);
	untyped(pa->t, ts, state, lin_ns(r));
	free(s0), free(to), free(ts);
	lca_plan_destroy(plan);
}

/* The split run: summaries of every piece; piece j enters with the
 * composition of pieces 0 .. j-1 applied to state0 and runs its forward
 * from there; the last piece's final state is the sequence's. The
 * composition is built left to right as a rank would receive it. */
static void lin_split(const struct lin *r, const lca_plan *plan, lca_dtype t,
	const int64_t *cut, int64_t P, double *o, double *state)
{
	const int64_t na = lin_na(r), ns = lin_ns(r), hv = r->H * r->dv;
	double *za = tu_alloc(na), *zs = tu_alloc(ns);
	void *ca = typed(t, za, na), *cb = typed(t, zs, ns), *a = typed(t, za, na);
	void *b = typed(t, zs, ns), *s0 = typed(t, r->state0, ns), *in = typed(t, zs, ns);
	void *fin = typed(t, zs, ns);

	for (int64_t j = 0; j < P; j++) {
		const int64_t n = cut[j + 1] - cut[j];
		void *to = typed(t, o, n * hv);

		/* the incoming state: the prefix's summary applied to state0 */
		if (j == 0)
			memcpy(in, s0, (size_t)ns * (t == LCA_F64 ? 8 : 4));
		else
			tu_assert_ok(lca_summary_apply(plan, ca, cb, s0, in));
		tu_assert_ok(lin_forward(plan, r, t, cut[j], n, in, to, fin));
		untyped(t, to, o + cut[j] * hv, n * hv);
		free(to);
		/* extend the prefix by this piece */
		tu_assert_ok(lin_summary(plan, r, t, cut[j], n, a, b));
		if (j == 0) {
			memcpy(ca, a, (size_t)na * (t == LCA_F64 ? 8 : 4));
			memcpy(cb, b, (size_t)ns * (t == LCA_F64 ? 8 : 4));
		} else {
			tu_assert_ok(lca_summary_compose(plan, ca, cb, a, b, ca, cb));
		}
	}
	/* the last forward's state and the whole summary applied agree */
	untyped(t, fin, state, ns);
	tu_assert_ok(lca_summary_apply(plan, ca, cb, s0, fin));
	{
		double *viasum = tu_alloc(ns);

		untyped(t, fin, viasum, ns);
		tu_assert_close(viasum, state, ns, t == LCA_F64 ? 1e-12 : 1e-4,
			"summary of the whole sequence applied to state0 against the last piece's state");
		free(viasum);
	}
	free(za), free(zs), free(ca), free(cb), free(a), free(b), free(s0), free(in), free(fin);
}

/* _i = ((variant * 2 + algo) * NPATH + path) */
START_TEST(test_split_anywhere_equals_single_call)
{
	const lca_variant v = _i / (2 * NPATH) ? LCA_LIGHTNING : LCA_DELTANET;
	const lca_algo algo = (_i / NPATH) % 2 ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT;
	const struct path *pa = &paths[_i % NPATH];
	const struct path r64 = { LCA_BACKEND_REF, LCA_F64, "" }, r32 = { LCA_BACKEND_REF, LCA_F32, "" };
	const int64_t Ts[] = { 1, 7, 75 };

	for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++)
		for (int rep = 0; rep < (Ts[ti] > 1 ? 4 : 1); rep++) {
			struct lin r;
			lca_params p;
			lca_plan *plan;
			int64_t cut[8], P, no, ns;
			double *o, *s, *o64, *s64, *o32, *s32;
			char what[160];

			lin_make(&r, v, Ts[ti]);
			no = r.T * r.H * r.dv, ns = lin_ns(&r);
			o = tu_alloc(no), s = tu_alloc(ns), o64 = tu_alloc(no), s64 = tu_alloc(ns);
			o32 = tu_alloc(no), s32 = tu_alloc(ns);
			lin_single(&r, &r64, LCA_ALGO_RECURRENT, o64, s64);
			lin_single(&r, &r32, LCA_ALGO_RECURRENT, o32, s32);
			/* one-token pieces, or up to 7 pieces cut anywhere */
			if (rep == 3 && r.T <= 7) {
				P = r.T;
				for (int64_t j = 0; j <= P; j++)
					cut[j] = j;
			} else {
				P = draw_cuts(r.T, 7, cut);
			}
			p = lin_params(&r, pa, algo);
			plan = tu_plan(&p);
			lin_split(&r, plan, p.dtype, cut, P, o, s);
			snprintf(what, sizeof what, "%s %s %s T=%lld in %lld pieces: o",
				v == LCA_DELTANET ? "deltanet" : "lightning", pa->name,
				algo == LCA_ALGO_CHUNKED ? "chunked" : "recurrent",
				(long long)r.T, (long long)P);
			ck_assert(tu_all_finite(o, no) && tu_all_finite(s, ns));
			tu_assert_close(o, o64, no, rule(p.dtype, o32, o64, no), what);
			strcat(what, " state");
			tu_assert_close(s, s64, ns, rule(p.dtype, s32, s64, ns), what);
			lca_plan_destroy(plan);
			free(o), free(s), free(o64), free(s64), free(o32), free(s32);
			lin_free(&r);
		}
}
END_TEST

/* (x y) z = x (y z) for three ranges' summaries, f64, to 1e-12. */
START_TEST(test_composition_is_associative)
{
	const lca_variant v = _i / 2 ? LCA_LIGHTNING : LCA_DELTANET;
	const struct path *pa = &paths[_i % 2];
	struct lin r;
	lca_params p;
	lca_plan *plan;
	const int64_t cut[4] = { 0, 13, 14, 40 };
	void *a[3], *b[3], *xa, *xb, *ya, *yb;
	double *d1, *d2, *e1, *e2;
	int64_t na, ns;

	lin_make(&r, v, 40);
	na = lin_na(&r), ns = lin_ns(&r);
	p = lin_params(&r, pa, LCA_ALGO_CHUNKED);
	plan = tu_plan(&p);
	d1 = tu_alloc(na), d2 = tu_alloc(na), e1 = tu_alloc(ns), e2 = tu_alloc(ns);
	for (int j = 0; j < 3; j++) {
		a[j] = typed(LCA_F64, d1, na);
		b[j] = typed(LCA_F64, e1, ns);
		tu_assert_ok(lin_summary(plan, &r, LCA_F64, cut[j], cut[j + 1] - cut[j], a[j], b[j]));
	}
	xa = typed(LCA_F64, d1, na), xb = typed(LCA_F64, e1, ns);
	ya = typed(LCA_F64, d1, na), yb = typed(LCA_F64, e1, ns);
	/* (a0 a1) a2 */
	tu_assert_ok(lca_summary_compose(plan, a[0], b[0], a[1], b[1], xa, xb));
	tu_assert_ok(lca_summary_compose(plan, xa, xb, a[2], b[2], xa, xb));
	/* a0 (a1 a2), composed into a[1] in place */
	tu_assert_ok(lca_summary_compose(plan, a[1], b[1], a[2], b[2], a[1], b[1]));
	tu_assert_ok(lca_summary_compose(plan, a[0], b[0], a[1], b[1], ya, yb));
	untyped(LCA_F64, xa, d1, na), untyped(LCA_F64, ya, d2, na);
	untyped(LCA_F64, xb, e1, ns), untyped(LCA_F64, yb, e2, ns);
	tu_assert_close(d1, d2, na, 1e-12, "associativity: a");
	tu_assert_close(e1, e2, ns, 1e-12, "associativity: b");
	/* and both are the summary of the whole range */
	tu_assert_ok(lin_summary(plan, &r, LCA_F64, 0, 40, xa, xb));
	untyped(LCA_F64, xa, d2, na), untyped(LCA_F64, xb, e2, ns);
	tu_assert_close(d1, d2, na, 1e-12, "composed against whole: a");
	tu_assert_close(e1, e2, ns, 1e-12, "composed against whole: b");
	for (int j = 0; j < 3; j++)
		free(a[j]), free(b[j]);
	free(xa), free(xb), free(ya), free(yb), free(d1), free(d2), free(e1), free(e2);
	lca_plan_destroy(plan);
	lin_free(&r);
}
END_TEST

/* The cpu summary (through the forward kernels) agrees with the
 * reference's recurrence; lightning's decay is exp(-slope T). */
START_TEST(test_cpu_summary_matches_reference)
{
	const lca_variant v = _i / 2 ? LCA_LIGHTNING : LCA_DELTANET;
	const struct path *pa = &paths[_i % 2 ? 3 : 1];
	const struct path r64 = paths[0], r32 = paths[2];
	struct lin r;
	lca_params p, p64, p32;
	lca_plan *plan, *pl64, *pl32;
	double *a[3], *b[3];
	void *ta, *tb;
	int64_t na, ns;
	const struct path *ps[3] = { pa, &r64, &r32 };
	lca_plan *pls[3];

	lin_make(&r, v, 100);
	na = lin_na(&r), ns = lin_ns(&r);
	p = lin_params(&r, pa, LCA_ALGO_CHUNKED);
	p64 = lin_params(&r, &r64, LCA_ALGO_RECURRENT);
	p32 = lin_params(&r, &r32, LCA_ALGO_RECURRENT);
	pls[0] = plan = tu_plan(&p), pls[1] = pl64 = tu_plan(&p64), pls[2] = pl32 = tu_plan(&p32);
	for (int i = 0; i < 3; i++) {
		a[i] = tu_alloc(na), b[i] = tu_alloc(ns);
		ta = typed(ps[i]->t, a[i], na), tb = typed(ps[i]->t, b[i], ns);
		tu_assert_ok(lin_summary(pls[i], &r, ps[i]->t, 0, r.T, ta, tb));
		untyped(ps[i]->t, ta, a[i], na), untyped(ps[i]->t, tb, b[i], ns);
		free(ta), free(tb);
	}
	tu_assert_close(a[0], a[1], na, rule(pa->t, a[2], a[1], na), "summary a");
	tu_assert_close(b[0], b[1], ns, rule(pa->t, b[2], b[1], ns), "summary b");
	if (v == LCA_LIGHTNING)
		for (int64_t h = 0; h < r.H; h++)
			ck_assert(fabs(a[1][h] - exp(-r.slope[h] * (double)r.T)) <= 1e-15);
	for (int i = 0; i < 3; i++)
		free(a[i]), free(b[i]);
	lca_plan_destroy(plan), lca_plan_destroy(pl64), lca_plan_destroy(pl32);
	lin_free(&r);
}
END_TEST

/* ---- bad input ---------------------------------------------------------- */

#define SENTINEL 12345.0

static int untouched(const double *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (x[i] != SENTINEL)
			return 0;
	return 1;
}

static double *sentinel(int64_t n)
{
	double *x = tu_alloc(n);

	for (int64_t i = 0; i < n; i++)
		x[i] = SENTINEL;
	return x;
}

START_TEST(test_partial_bad_input_writes_nothing)
{
	lca_params p = tu_params(LCA_SOFTMAX);
	lca_plan *plan, *other;
	double *q, *k, *v, *o, *l;
	lca_params pl = tu_params(LCA_LIGHTNING);

	p.H = 2, p.dk = 4, p.dv = 3;
	pl.H = 2, pl.dk = 4, pl.dv = 3;
	plan = tu_plan(&p);
	other = tu_plan(&pl);
	q = tu_alloc(5 * 2 * 4), k = tu_alloc(6 * 2 * 4), v = tu_alloc(6 * 2 * 3);
	tu_fill_normal(q, 40, 1), tu_fill_normal(k, 48, 1), tu_fill_normal(v, 36, 1);
	o = sentinel(5 * 2 * 3), l = sentinel(5 * 2);
	ck_assert_int_eq(lca_softmax_partial(NULL, 5, 0, 6, 0, q, k, v, o, l), LCA_ERR_NULL);
	ck_assert_int_eq(lca_softmax_partial(other, 5, 0, 6, 0, q, k, v, o, l), LCA_ERR_ARG);
	ck_assert_int_eq(lca_softmax_partial(plan, 0, 0, 6, 0, q, k, v, o, l), LCA_ERR_SIZE);
	ck_assert_int_eq(lca_softmax_partial(plan, 5, -1, 6, 0, q, k, v, o, l), LCA_ERR_SIZE);
	ck_assert(tu_msg_names("q_pos0"));
	ck_assert_int_eq(lca_softmax_partial(plan, 5, INT64_MAX - 2, 6, 0, q, k, v, o, l),
		LCA_ERR_OVERFLOW);
	ck_assert_int_eq(lca_softmax_partial(plan, 5, 0, 6, 0, q, NULL, v, o, l), LCA_ERR_NULL);
	ck_assert(tu_msg_names("k"));
	ck_assert_int_eq(lca_softmax_partial(plan, 5, 0, 6, 0, q, k, v, o, NULL), LCA_ERR_NULL);
	ck_assert(tu_msg_names("lse"));
	ck_assert_int_eq(lca_softmax_partial(plan, 5, 0, 6, 0, q, k, v, q, l), LCA_ERR_ARG);
	k[3] = NAN;
	ck_assert_int_eq(lca_softmax_partial(plan, 5, 0, 6, 0, q, k, v, o, l), LCA_ERR_NONFINITE);
	ck_assert(untouched(o, 30) && untouched(l, 10));
	free(q), free(k), free(v), free(o), free(l);
	lca_plan_destroy(plan);
	lca_plan_destroy(other);
}
END_TEST

START_TEST(test_merge_bad_input_writes_nothing)
{
	lca_plan *plan = merge_plan(LCA_F64, 2, 3), *other;
	lca_params pl = tu_params(LCA_DELTANET);
	double *o1 = tu_alloc(12), *l1 = tu_alloc(4), *o2 = tu_alloc(12), *l2 = tu_alloc(4);
	double *o = sentinel(12), *l = sentinel(4);
	const void *op[2] = { o1, o2 }, *lp[2] = { l1, l2 }, *bad[2] = { o1, NULL };

	pl.H = 2, pl.dk = 4, pl.dv = 3;
	other = tu_plan(&pl);
	ck_assert_int_eq(lca_attn_merge(NULL, 2, 2, op, lp, o, l), LCA_ERR_NULL);
	ck_assert_int_eq(lca_attn_merge(other, 2, 2, op, lp, o, l), LCA_ERR_ARG);
	ck_assert_int_eq(lca_attn_merge(plan, 2, 0, op, lp, o, l), LCA_ERR_SIZE);
	ck_assert_int_eq(lca_attn_merge(plan, 2, 2, bad, lp, o, l), LCA_ERR_NULL);
	ck_assert(tu_msg_names("o_parts"));
	ck_assert_int_eq(lca_attn_merge(plan, 2, 2, op, NULL, o, l), LCA_ERR_NULL);
	/* o may be part 0's buffer only together with lse being part 0's */
	ck_assert_int_eq(lca_attn_merge(plan, 2, 2, op, lp, o1, l), LCA_ERR_ARG);
	ck_assert_int_eq(lca_attn_merge(plan, 2, 2, op, lp, o1 + 1, l1), LCA_ERR_ARG);
	l2[1] = INFINITY;
	ck_assert_int_eq(lca_attn_merge(plan, 2, 2, op, lp, o, l), LCA_ERR_NONFINITE);
	l2[1] = NAN;
	ck_assert_int_eq(lca_attn_merge(plan, 2, 2, op, lp, o, l), LCA_ERR_NONFINITE);
	l2[1] = 0;
	o2[5] = NAN;
	ck_assert_int_eq(lca_attn_merge(plan, 2, 2, op, lp, o, l), LCA_ERR_NONFINITE);
	ck_assert(untouched(o, 12) && untouched(l, 4));
	free(o1), free(l1), free(o2), free(l2), free(o), free(l);
	lca_plan_destroy(plan);
	lca_plan_destroy(other);
}
END_TEST

START_TEST(test_summary_bad_input_writes_nothing)
{
	struct lin r;
	lca_params p, ps = tu_params(LCA_SOFTMAX);
	lca_plan *plan, *soft;
	double *a, *b, *a2, *b2, *sa, *sb;
	int64_t na, ns;

	lin_make(&r, LCA_DELTANET, 9);
	na = lin_na(&r), ns = lin_ns(&r);
	p = lin_params(&r, &paths[0], LCA_ALGO_RECURRENT);
	plan = tu_plan(&p);
	ps.H = 4, ps.dk = 6, ps.dv = 5;
	soft = tu_plan(&ps);
	a = tu_alloc(na), b = tu_alloc(ns), a2 = tu_alloc(na), b2 = tu_alloc(ns);
	tu_assert_ok(lca_deltanet_summary(plan, 9, r.k, r.v_, r.g, r.beta, a, b));
	sa = sentinel(na), sb = sentinel(ns);
	ck_assert_int_eq(lca_deltanet_summary(NULL, 9, r.k, r.v_, r.g, r.beta, sa, sb),
		LCA_ERR_NULL);
	ck_assert_int_eq(lca_deltanet_summary(soft, 9, r.k, r.v_, r.g, r.beta, sa, sb),
		LCA_ERR_ARG);
	ck_assert_int_eq(lca_lightning_summary(plan, 9, r.k, r.v_, r.g, sa, sb), LCA_ERR_ARG);
	ck_assert_int_eq(lca_deltanet_summary(plan, 0, r.k, r.v_, r.g, r.beta, sa, sb),
		LCA_ERR_SIZE);
	ck_assert_int_eq(lca_deltanet_summary(plan, 9, r.k, r.v_, r.g, NULL, sa, sb),
		LCA_ERR_NULL);
	ck_assert(tu_msg_names("beta"));
	r.g[4] = 0.5;
	ck_assert_int_eq(lca_deltanet_summary(plan, 9, r.k, r.v_, r.g, r.beta, sa, sb),
		LCA_ERR_ARG);
	ck_assert(tu_msg_names("g"));
	ck_assert_int_eq(lca_summary_compose(soft, a, b, a, b, sa, sb), LCA_ERR_ARG);
	ck_assert_int_eq(lca_summary_compose(plan, a, NULL, a, b, sa, sb), LCA_ERR_NULL);
	/* an output may be its own input, not another one */
	ck_assert_int_eq(lca_summary_compose(plan, a, b, a2, b2, b, sb), LCA_ERR_ARG);
	ck_assert_int_eq(lca_summary_compose(plan, a, b, a2, b2, sa, sa), LCA_ERR_ARG);
	ck_assert_int_eq(lca_summary_apply(plan, a, b, r.state0, a), LCA_ERR_ARG);
	ck_assert_int_eq(lca_summary_apply(plan, a, b, r.state0, NULL), LCA_ERR_NULL);
	b2[3] = INFINITY;
	ck_assert_int_eq(lca_summary_compose(plan, a, b, a2, b2, sa, sb), LCA_ERR_NONFINITE);
	ck_assert_int_eq(lca_summary_apply(plan, a2, b2, r.state0, sb), LCA_ERR_NONFINITE);
	ck_assert(untouched(sa, na) && untouched(sb, ns));
	free(a), free(b), free(a2), free(b2), free(sa), free(sb);
	lca_plan_destroy(plan);
	lca_plan_destroy(soft);
	lin_free(&r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cp");
	TCase *tc;

	tu_init();
	tc = tu_tcase("partial");
	tcase_add_loop_test(tc, test_partial_key_ranges_merged_equal_single_call, 0,
		NATTN * NPATH);
	tcase_add_loop_test(tc, test_partial_bottom_right_is_forward, 0, NATTN * NPATH);
	tcase_add_loop_test(tc, test_partial_far_positions, 0, NPATH);
	suite_add_tcase(s, tc);
	tc = tu_tcase("merge");
	tcase_add_loop_test(tc, test_merge_empty_parts_and_large_lse, 0, 2);
	tcase_add_test(tc, test_merge_in_place_and_in_any_grouping);
	suite_add_tcase(s, tc);
	tc = tu_tcase("summary");
	tcase_add_loop_test(tc, test_split_anywhere_equals_single_call, 0, 2 * 2 * NPATH);
	tcase_add_loop_test(tc, test_composition_is_associative, 0, 4);
	tcase_add_loop_test(tc, test_cpu_summary_matches_reference, 0, 4);
	suite_add_tcase(s, tc);
	tc = tu_tcase("bad input");
	tcase_add_test(tc, test_partial_bad_input_writes_nothing);
	tcase_add_test(tc, test_merge_bad_input_writes_nothing);
	tcase_add_test(tc, test_summary_bad_input_writes_nothing);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
