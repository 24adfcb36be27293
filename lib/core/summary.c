/*
 * summary.c - the recurrent pieces of context parallelism: the summary of
 * a token range of deltanet or lightning (the affine map S -> a S + b it
 * applies to the state entering it), the ordered composition of two
 * summaries, and the application of a summary to a state.
 *
 * A state S is [dk][dv] per head, as in state0 and state of the forward
 * calls. Range 1 then range 2 gives
 *   S -> a2 (a1 S + b1) + b2 = (a2 a1) S + (a2 b1 + b2),
 * a matrix product for deltanet (a [dk][dk] acting on the left of S), a
 * product of scalars for lightning (a [H], the total decay). Composition
 * is associative, which lets ranks combine summaries in any tree.
 *
 * Composition and application cost O(H dk^2 (dk + dv)) whatever the range
 * length; they run here in plain loops, accumulating in double whatever
 * the dtype and rounding each result once.
 */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the summaries of a range ------------------------------------------- */

static lca_status no_cuda(const char *fn, const lca_params *p)
{
	if (p->backend == LCA_BACKEND_CUDA)
		return lcai_fail(LCA_ERR_UNSUPPORTED, "%s: the cuda backend has no "
			"range summaries yet (ref and cpu have)", fn);
	return LCA_OK;
}

lca_status lca_lightning_summary(const lca_plan *plan, int64_t T,
	const void *k, const void *v, const void *slope, void *a, void *b)
{
	static const char fn[] = "lca_lightning_summary";
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = lcai_check_plan(fn, plan, LCA_LIGHTNING)) || (s = lcai_check_len(fn, "T", T)) ||
	    (s = no_cuda(fn, &plan->p)))
		return s;
	p = &plan->p;
	struct lcai_targ t[] = {
		{ "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 }, { "slope", slope, p->H, 0, 0 },
		{ "a", a, p->H, 0, 0 }, { "b", b, 0, 0, 0 },
	};
	if ((s = lcai_count(fn, "k", &t[0].n, T, p->H, p->dk, 1)) ||
	    (s = lcai_count(fn, "v", &t[1].n, T, p->H, p->dv, 1)) ||
	    (s = lcai_count(fn, "b", &t[4].n, p->H, p->dk, p->dv, 1)) ||
	    (s = lcai_check_targs(fn, p, t, 5)) || (s = lcai_check_overlap(fn, p, t, 3, 5)) ||
	    (s = lcai_check_finite(fn, p, t, 3, NULL)) ||
	    (s = lcai_check_sign(fn, "slope", slope, p->H, p, 1, "slope >= 0")))
		return s;
	if (p->backend == LCA_BACKEND_CPU)
		return lcai_cpu_lightning_summary(p, T, k, v, slope, a, b);
	if (p->dtype == LCA_F32)
		return lcai_ref32_lightning_summary(p, T, k, v, slope, a, b);
	return lcai_ref_lightning_summary(p, T, k, v, slope, a, b);
}

lca_status lca_deltanet_summary(const lca_plan *plan, int64_t T,
	const void *k, const void *v, const void *g, const void *beta, void *a,
	void *b)
{
	static const char fn[] = "lca_deltanet_summary";
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = lcai_check_plan(fn, plan, LCA_DELTANET)) || (s = lcai_check_len(fn, "T", T)) ||
	    (s = no_cuda(fn, &plan->p)))
		return s;
	p = &plan->p;
	struct lcai_targ t[] = {
		{ "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 }, { "g", g, 0, 0, 0 },
		{ "beta", beta, 0, 0, 0 }, { "a", a, 0, 0, 0 }, { "b", b, 0, 0, 0 },
	};
	if ((s = lcai_count(fn, "k", &t[0].n, T, p->Hk, p->dk, 1)) ||
	    (s = lcai_count(fn, "v", &t[1].n, T, p->H, p->dv, 1)) ||
	    (s = lcai_count(fn, "g", &t[2].n, T, p->H, 1, 1)) ||
	    (s = lcai_count(fn, "beta", &t[3].n, T, p->H, 1, 1)) ||
	    (s = lcai_count(fn, "a", &t[4].n, p->H, p->dk, p->dk, 1)) ||
	    (s = lcai_count(fn, "b", &t[5].n, p->H, p->dk, p->dv, 1)) ||
	    (s = lcai_check_targs(fn, p, t, 6)) || (s = lcai_check_overlap(fn, p, t, 4, 6)) ||
	    (s = lcai_check_finite(fn, p, t, 4, NULL)) ||
	    (s = lcai_check_sign(fn, "g", g, t[2].n, p, -1, "g <= 0")))
		return s;
	if (p->backend == LCA_BACKEND_CPU)
		return lcai_cpu_deltanet_summary(p, T, k, v, g, beta, a, b);
	if (p->dtype == LCA_F32)
		return lcai_ref32_deltanet_summary(p, T, k, v, g, beta, a, b);
	return lcai_ref_deltanet_summary(p, T, k, v, g, beta, a, b);
}

/* ---- composition and application ----------------------------------------- */

/* Elements of a per head: 1 (lightning's decay) or dk * dk (deltanet). */
static int64_t a_len(const lca_params *p)
{
	return p->variant == LCA_LIGHTNING ? 1 : p->dk * p->dk;
}

/* Plan of a linear variant, not on cuda; *na and *nb the element counts
 * of a whole a and b (H heads), overflow checked. */
static lca_status check_summary_plan(const char *fn, const lca_plan *plan,
	int64_t *na, int64_t *nb)
{
	lca_status s;

	if (!plan)
		return lcai_fail(LCA_ERR_NULL, "%s: plan is NULL", fn);
	if (plan->p.variant != LCA_DELTANET && plan->p.variant != LCA_LIGHTNING)
		return lcai_fail(LCA_ERR_ARG, "%s: the plan is not for deltanet or lightning", fn);
	if ((s = no_cuda(fn, &plan->p)) ||
	    (s = lcai_count(fn, "b", nb, plan->p.H, plan->p.dk, plan->p.dv, 1)))
		return s;
	if (plan->p.variant == LCA_LIGHTNING) {
		*na = plan->p.H;
		return LCA_OK;
	}
	return lcai_count(fn, "a", na, plan->p.H, plan->p.dk, plan->p.dk, 1);
}

/* Bytes [lo, hi) of a tensor argument as integers (comparing pointers into
 * different objects is undefined in C). */
static int overlaps(const struct lcai_targ *x, const struct lcai_targ *y, size_t es)
{
	uintptr_t a = (uintptr_t)x->ptr, b = a + (uintptr_t)x->n * es;
	uintptr_t c = (uintptr_t)y->ptr, d = c + (uintptr_t)y->n * es;

	return x->ptr && y->ptr && x->n && y->n && a < d && c < b;
}

/* Outputs t[nin .. nt) overlap nothing, except that output i may be
 * exactly an input listed in may[i] (a bit per input): the kernels read
 * all of a head's inputs before writing its outputs. */
static lca_status check_alias(const char *fn, const lca_params *p,
	const struct lcai_targ *t, int nin, int nt, const unsigned *may)
{
	const size_t es = lcai_dtype_size(p->dtype);

	for (int i = nin; i < nt; i++)
		for (int j = 0; j < nt; j++) {
			if (j == i || !overlaps(&t[i], &t[j], es))
				continue;
			if (j < nin && (may[i - nin] >> j & 1u) && t[i].ptr == t[j].ptr &&
			    t[i].n == t[j].n)
				continue;
			return lcai_fail(LCA_ERR_ARG, "%s: output %s overlaps %s %s%s", fn,
				t[i].name, j < nin ? "input" : "output", t[j].name,
				j < nin && (may[i - nin] >> j & 1u) ?
				" (it may only be that very buffer)" : "");
		}
	return LCA_OK;
}

/* Load n elements of x (the plan's dtype) at element offset off into d. */
static void load(const lca_params *p, const void *x, int64_t off, int64_t n, double *d)
{
	for (int64_t i = 0; i < n; i++)
		d[i] = p->dtype == LCA_F64 ? ((const double *)x)[off + i] :
			(double)((const float *)x)[off + i];
}

static void store(const lca_params *p, void *x, int64_t off, int64_t n, const double *d)
{
	for (int64_t i = 0; i < n; i++)
		if (p->dtype == LCA_F64)
			((double *)x)[off + i] = d[i];
		else
			((float *)x)[off + i] = (float)d[i];
}

/* y [dk][n] = a x + c for one head: a is a scalar (na == 1) or [dk][dk],
 * x and c [dk][n]; c may be NULL (zeros). */
static void affine(int64_t na, const double *a, const double *x, const double *c,
	int64_t dk, int64_t n, double *y)
{
	for (int64_t i = 0; i < dk; i++)
		for (int64_t j = 0; j < n; j++) {
			double acc = 0;

			if (na == 1)
				acc = a[0] * x[i * n + j];
			else
				for (int64_t m = 0; m < dk; m++)
					acc += a[i * dk + m] * x[m * n + j];
			y[i * n + j] = acc + (c ? c[i * n + j] : 0);
		}
}

/* Scratch of n doubles, or NULL after recording LCA_ERR_NOMEM. */
static double *scratch(const char *fn, int64_t n)
{
	double *d = NULL;

	if (n >= 0 && (uint64_t)n <= SIZE_MAX / sizeof *d)
		d = malloc((size_t)(n ? n : 1) * sizeof *d);
	if (!d)
		lcai_fail(LCA_ERR_NOMEM, "%s: no memory for %lld values", fn, (long long)n);
	return d;
}

lca_status lca_summary_compose(const lca_plan *plan, const void *a1,
	const void *b1, const void *a2, const void *b2, void *a, void *b)
{
	static const char fn[] = "lca_summary_compose";
	/* a may be a1 or a2 itself, b may be b1 or b2 itself */
	static const unsigned may[2] = { 1u << 0 | 1u << 2, 1u << 1 | 1u << 3 };
	int64_t na, nb, ha, hb;
	const lca_params *p;
	double *w;
	lca_status s;

	lcai_clear_error();
	if ((s = check_summary_plan(fn, plan, &na, &nb)))
		return s;
	p = &plan->p;
	struct lcai_targ t[] = {
		{ "a1", a1, na, 0, 0 }, { "b1", b1, nb, 0, 0 }, { "a2", a2, na, 0, 0 },
		{ "b2", b2, nb, 0, 0 }, { "a", a, na, 0, 0 }, { "b", b, nb, 0, 0 },
	};
	if ((s = lcai_check_targs(fn, p, t, 6)) || (s = check_alias(fn, p, t, 4, 6, may)) ||
	    (s = lcai_check_finite(fn, p, t, 4, NULL)))
		return s;
	ha = a_len(p);
	hb = p->dk * p->dv;
	/* per head: a1 b1 a2 b2 and the results a b */
	if (!(w = scratch(fn, 3 * (ha + hb))))
		return LCA_ERR_NOMEM;
	for (int64_t h = 0; h < p->H; h++) {
		double *x1 = w, *y1 = x1 + ha, *x2 = y1 + hb, *y2 = x2 + ha;
		double *x = y2 + hb, *y = x + ha;

		load(p, a1, h * ha, ha, x1);
		load(p, b1, h * hb, hb, y1);
		load(p, a2, h * ha, ha, x2);
		load(p, b2, h * hb, hb, y2);
		if (ha == 1)
			x[0] = x2[0] * x1[0];
		else
			affine(ha, x2, x1, NULL, p->dk, p->dk, x);
		affine(ha, x2, y1, y2, p->dk, p->dv, y);
		store(p, a, h * ha, ha, x);
		store(p, b, h * hb, hb, y);
	}
	free(w);
	return LCA_OK;
}

lca_status lca_summary_apply(const lca_plan *plan, const void *a,
	const void *b, const void *state0, void *state)
{
	static const char fn[] = "lca_summary_apply";
	/* state may be state0 itself, or b itself */
	static const unsigned may[1] = { 1u << 1 | 1u << 2 };
	int64_t na, nb, ha, hb;
	const lca_params *p;
	double *w;
	lca_status s;

	lcai_clear_error();
	if ((s = check_summary_plan(fn, plan, &na, &nb)))
		return s;
	p = &plan->p;
	struct lcai_targ t[] = {
		{ "a", a, na, 0, 0 }, { "b", b, nb, 0, 0 }, { "state0", state0, nb, 1, 0 },
		{ "state", state, nb, 0, 0 },
	};
	if ((s = lcai_check_targs(fn, p, t, 4)) || (s = check_alias(fn, p, t, 3, 4, may)) ||
	    (s = lcai_check_finite(fn, p, t, 3, NULL)))
		return s;
	ha = a_len(p);
	hb = p->dk * p->dv;
	/* per head: a, b, state0 and the result */
	if (!(w = scratch(fn, ha + 3 * hb)))
		return LCA_ERR_NOMEM;
	for (int64_t h = 0; h < p->H; h++) {
		double *x = w, *y = x + ha, *s0 = y + hb, *r = s0 + hb;

		load(p, a, h * ha, ha, x);
		load(p, b, h * hb, hb, y);
		if (state0)
			load(p, state0, h * hb, hb, s0);
		else
			memset(s0, 0, (size_t)hb * sizeof *s0);
		affine(ha, x, s0, y, p->dk, p->dv, r);
		store(p, state, h * hb, hb, r);
	}
	free(w);
	return LCA_OK;
}
