/*
 * partial.c - the attention pieces of context parallelism: softmax and mla
 * attention of local queries over one range of keys at global positions,
 * and the merge of such partial results (o, lse) over disjoint key ranges.
 *
 * Why it is exact: a softmax row over keys K1 u K2 is the lse-weighted mix
 * of the rows over K1 and over K2, o = (e^l1 o1 + e^l2 o2) / (e^l1 + e^l2)
 * and l = log(e^l1 + e^l2) (FlashAttention's rescaling, done once per
 * range rather than per tile). The kernels are the forward's, told where
 * the queries and keys sit (struct lcai_pos).
 */
#include "internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What both partial calls check first: the plan, sizes and positions
 * (query i at q_pos0 + i and key s at k_pos0 + s must be int64), and a
 * backend that has the kernels. */
static lca_status check_partial(const char *fn, const lca_plan *plan,
	lca_variant v, int64_t Tq, int64_t q_pos0, int64_t Tk, int64_t k_pos0)
{
	lca_status s;

	if ((s = lcai_check_plan(fn, plan, v)) || (s = lcai_check_len(fn, "Tq", Tq)) ||
	    (s = lcai_check_len(fn, "Tk", Tk)))
		return s;
	if (q_pos0 < 0 || k_pos0 < 0)
		return lcai_fail(LCA_ERR_SIZE, "%s: q_pos0 = %lld and k_pos0 = %lld must be >= 0",
			fn, (long long)q_pos0, (long long)k_pos0);
	if (q_pos0 > INT64_MAX - Tq || k_pos0 > INT64_MAX - Tk)
		return lcai_fail(LCA_ERR_OVERFLOW, "%s: a position past q_pos0 + Tq or "
			"k_pos0 + Tk overflows int64", fn);
	if (plan->p.backend == LCA_BACKEND_CUDA)
		return lcai_fail(LCA_ERR_UNSUPPORTED, "%s: the cuda backend has no "
			"partial attention yet (ref and cpu have)", fn);
	return LCA_OK;
}

lca_status lca_softmax_partial(const lca_plan *plan, int64_t Tq, int64_t q_pos0,
	int64_t Tk, int64_t k_pos0, const void *q, const void *k, const void *v,
	void *o, void *lse)
{
	static const char fn[] = "lca_softmax_partial";
	const struct lcai_pos at = { q_pos0, k_pos0 };
	double m[3]; /* max |q|, |k|, |v| */
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = check_partial(fn, plan, LCA_SOFTMAX, Tq, q_pos0, Tk, k_pos0)))
		return s;
	p = &plan->p;
	struct lcai_targ a[] = {
		{ "q", q, 0, 0, 0 }, { "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 },
		{ "o", o, 0, 0, 0 }, { "lse", lse, 0, 0, 0 },
	};
	if ((s = lcai_count(fn, "q", &a[0].n, Tq, p->H, p->dk, 1)) ||
	    (s = lcai_count(fn, "k", &a[1].n, Tk, p->Hkv, p->dk, 1)) ||
	    (s = lcai_count(fn, "v", &a[2].n, Tk, p->Hkv, p->dv, 1)) ||
	    (s = lcai_count(fn, "o", &a[3].n, Tq, p->H, p->dv, 1)) ||
	    (s = lcai_count(fn, "lse", &a[4].n, Tq, p->H, 1, 1)) ||
	    (s = lcai_check_targs(fn, p, a, 5)) ||
	    (s = lcai_check_overlap(fn, p, a, 3, 5)) || (s = lcai_check_finite(fn, p, a, 3, m)) ||
	    (s = lcai_check_range_softmax(fn, p, m, Tk)))
		return s;
	if (p->backend == LCA_BACKEND_CPU)
		return lcai_cpu_softmax_at(p, &at, Tq, Tk, q, k, v, o, lse);
	if (p->dtype == LCA_F32)
		return lcai_ref32_softmax_at(p, &at, Tq, Tk, q, k, v, o, lse);
	return lcai_ref_softmax_at(p, &at, Tq, Tk, q, k, v, o, lse);
}

lca_status lca_mla_partial(const lca_plan *plan, int64_t Tq, int64_t q_pos0,
	int64_t Tk, int64_t k_pos0, const void *q_nope, const void *q_rope,
	const void *ckv, const void *k_rope, const void *w_uk, const void *w_uv,
	void *o, void *lse)
{
	static const char fn[] = "lca_mla_partial";
	const struct lcai_pos at = { q_pos0, k_pos0 };
	double m[6]; /* max |x| of the inputs, in argument order */
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = check_partial(fn, plan, LCA_MLA, Tq, q_pos0, Tk, k_pos0)))
		return s;
	p = &plan->p;
	struct lcai_targ a[] = {
		{ "q_nope", q_nope, 0, 0, 0 }, { "q_rope", q_rope, 0, 0, 0 }, { "ckv", ckv, 0, 0, 0 },
		{ "k_rope", k_rope, 0, 0, 0 }, { "w_uk", w_uk, 0, 0, 0 }, { "w_uv", w_uv, 0, 0, 0 },
		{ "o", o, 0, 0, 0 }, { "lse", lse, 0, 0, 0 },
	};
	if ((s = lcai_count(fn, "q_nope", &a[0].n, Tq, p->H, p->dn, 1)) ||
	    (s = lcai_count(fn, "q_rope", &a[1].n, Tq, p->H, p->dr, 1)) ||
	    (s = lcai_count(fn, "ckv", &a[2].n, Tk, p->dc, 1, 1)) ||
	    (s = lcai_count(fn, "k_rope", &a[3].n, Tk, p->dr, 1, 1)) ||
	    (s = lcai_count(fn, "w_uk", &a[4].n, p->H, p->dn, p->dc, 1)) ||
	    (s = lcai_count(fn, "w_uv", &a[5].n, p->H, p->dv, p->dc, 1)) ||
	    (s = lcai_count(fn, "o", &a[6].n, Tq, p->H, p->dv, 1)) ||
	    (s = lcai_count(fn, "lse", &a[7].n, Tq, p->H, 1, 1)) ||
	    (s = lcai_check_targs(fn, p, a, 8)) ||
	    (s = lcai_check_overlap(fn, p, a, 6, 8)) || (s = lcai_check_finite(fn, p, a, 6, m)) ||
	    (s = lcai_check_range_mla(fn, p, m, Tk)))
		return s;
	if (p->backend == LCA_BACKEND_CPU)
		return lcai_cpu_mla_at(p, &at, Tq, Tk, q_nope, q_rope, ckv, k_rope, w_uk, w_uv,
			o, lse);
	if (p->dtype == LCA_F32)
		return (p->algo == LCA_ALGO_NAIVE ? lcai_ref32_mla_naive_at :
			lcai_ref32_mla_absorbed_at)(p, &at, Tq, Tk, q_nope, q_rope, ckv, k_rope,
			w_uk, w_uv, o, lse);
	return (p->algo == LCA_ALGO_NAIVE ? lcai_ref_mla_naive_at : lcai_ref_mla_absorbed_at)(
		p, &at, Tq, Tk, q_nope, q_rope, ckv, k_rope, w_uk, w_uv, o, lse);
}

/* ---- the merge ------------------------------------------------------------ */

static double elt(const void *x, lca_dtype t, int64_t i)
{
	return t == LCA_F64 ? ((const double *)x)[i] : (double)((const float *)x)[i];
}

static void put(void *x, lca_dtype t, int64_t i, double v)
{
	if (t == LCA_F64)
		((double *)x)[i] = v;
	else
		((float *)x)[i] = (float)v;
}

/* An lse may be -inf (a row that saw no key); NaN and +inf are refused. */
static lca_status check_lse(const char *fn, const lca_params *p, const void *lse,
	int64_t n, int64_t part)
{
	if (!p->check_finite)
		return LCA_OK;
	for (int64_t i = 0; i < n; i++) {
		double l = elt(lse, p->dtype, i);

		if (isnan(l) || l == INFINITY)
			return lcai_fail(LCA_ERR_NONFINITE, "%s: lse_parts[%lld][%lld] is %s "
				"(only -inf, a row that saw no key, is allowed)", fn,
				(long long)part, (long long)i, isnan(l) ? "NaN" : "+inf");
	}
	return LCA_OK;
}

/* Bytes [lo, hi) of n elements at x, as integers (comparing pointers into
 * different objects is undefined in C). */
static void span_of(const void *x, int64_t n, size_t es, uintptr_t *lo, uintptr_t *hi)
{
	*lo = (uintptr_t)x;
	*hi = *lo + (uintptr_t)n * es;
}

static int overlaps(const void *x, int64_t nx, const void *y, int64_t ny, size_t es)
{
	uintptr_t a, b, c, d;

	span_of(x, nx, es, &a, &b);
	span_of(y, ny, es, &c, &d);
	return a < d && c < b;
}

/* o and lse may each be exactly one part's buffer (a running merge
 * accumulates in place), as long as it is the same part; otherwise no
 * output overlaps anything. */
static lca_status check_merge_overlap(const char *fn, size_t es, int64_t nparts,
	const void *const *o_parts, const void *const *lse_parts, int64_t no,
	int64_t nl, void *o, void *lse)
{
	if (overlaps(o, no, lse, nl, es))
		return lcai_fail(LCA_ERR_ARG, "%s: output o overlaps output lse", fn);
	for (int64_t i = 0; i < nparts; i++) {
		const int same_o = o_parts[i] == o, same_l = lse_parts[i] == lse;

		if (same_o != same_l || (!same_o && (overlaps(o, no, o_parts[i], no, es) ||
		    overlaps(lse, nl, lse_parts[i], nl, es))))
			return lcai_fail(LCA_ERR_ARG, "%s: o and lse overlap part %lld "
				"(they may only be o_parts[j] and lse_parts[j] themselves, "
				"for one j)", fn, (long long)i);
		if (overlaps(o, no, lse_parts[i], nl, es) || overlaps(lse, nl, o_parts[i], no, es))
			return lcai_fail(LCA_ERR_ARG, "%s: an output overlaps an input of part %lld",
				fn, (long long)i);
	}
	return LCA_OK;
}

/* One row: every exponent is lse_i - max <= 0, so no term overflows and
 * the largest weight is 1; rows no part saw stay o = 0, lse = -inf. acc
 * holds dv doubles. All of the row's inputs are read before it is
 * written, so an output may be one part's buffer. */
static void merge_row(const lca_params *p, int64_t nparts,
	const void *const *o_parts, const void *const *lse_parts, int64_t r,
	double *acc, void *o, void *lse)
{
	const int64_t dv = p->dv;
	double m = -INFINITY, sum = 0;

	for (int64_t i = 0; i < nparts; i++) {
		double l = elt(lse_parts[i], p->dtype, r);

		if (l > m)
			m = l;
	}
	for (int64_t c = 0; c < dv; c++)
		acc[c] = 0;
	if (m == -INFINITY) {
		for (int64_t c = 0; c < dv; c++)
			put(o, p->dtype, r * dv + c, 0);
		put(lse, p->dtype, r, -INFINITY);
		return;
	}
	for (int64_t i = 0; i < nparts; i++) {
		double w = exp(elt(lse_parts[i], p->dtype, r) - m);

		if (w == 0) /* -inf: an empty part; its o is not read */
			continue;
		sum += w;
		for (int64_t c = 0; c < dv; c++)
			acc[c] += w * elt(o_parts[i], p->dtype, r * dv + c);
	}
	/* sum >= 1: the part at the maximum weighs exactly 1 */
	for (int64_t c = 0; c < dv; c++)
		put(o, p->dtype, r * dv + c, acc[c] / sum);
	put(lse, p->dtype, r, m + log(sum));
}

lca_status lca_attn_merge(const lca_plan *plan, int64_t Tq, int64_t nparts,
	const void *const *o_parts, const void *const *lse_parts, void *o, void *lse)
{
	static const char fn[] = "lca_attn_merge";
	const lca_params *p;
	int64_t no, nl;
	double *acc;
	size_t es;
	lca_status s;

	lcai_clear_error();
	if (!plan)
		return lcai_fail(LCA_ERR_NULL, "%s: plan is NULL", fn);
	p = &plan->p;
	if (p->variant != LCA_SOFTMAX && p->variant != LCA_MLA)
		return lcai_fail(LCA_ERR_ARG, "%s: the plan is not for softmax or mla", fn);
	if ((s = lcai_check_len(fn, "Tq", Tq)) || (s = lcai_check_len(fn, "nparts", nparts)))
		return s;
	if (p->backend == LCA_BACKEND_CUDA)
		return lcai_fail(LCA_ERR_UNSUPPORTED, "%s: the cuda backend has no merge "
			"yet (ref and cpu have)", fn);
	if ((s = lcai_count(fn, "o", &no, Tq, p->H, p->dv, 1)) ||
	    (s = lcai_count(fn, "lse", &nl, Tq, p->H, 1, 1)))
		return s;
	struct lcai_targ a[] = { { "o", o, no, 0, 0 }, { "lse", lse, nl, 0, 0 } };
	if ((s = lcai_check_targs(fn, p, a, 2)))
		return s;
	if (!o_parts || !lse_parts)
		return lcai_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, o_parts ? "lse_parts" : "o_parts");
	for (int64_t i = 0; i < nparts; i++)
		if (!o_parts[i] || !lse_parts[i])
			return lcai_fail(LCA_ERR_NULL, "%s: %s[%lld] is NULL", fn,
				o_parts[i] ? "lse_parts" : "o_parts", (long long)i);
	es = lcai_dtype_size(p->dtype);
	if ((s = check_merge_overlap(fn, es, nparts, o_parts, lse_parts, no, nl, o, lse)))
		return s;
	for (int64_t i = 0; i < nparts; i++) {
		char name[48];
		struct lcai_targ t = { name, o_parts[i], no, 0, 0 };

		snprintf(name, sizeof name, "o_parts[%lld]", (long long)i);
		if ((s = lcai_check_finite(fn, p, &t, 1, NULL)) ||
		    (s = check_lse(fn, p, lse_parts[i], nl, i)))
			return s;
	}
	if ((uint64_t)p->dv > SIZE_MAX / sizeof *acc || !(acc = malloc((size_t)p->dv * sizeof *acc)))
		return lcai_fail(LCA_ERR_NOMEM, "%s: no memory for a row of %lld values", fn,
			(long long)p->dv);
	for (int64_t r = 0; r < nl; r++)
		merge_row(p, nparts, o_parts, lse_parts, r, acc, o, lse);
	free(acc);
	return LCA_OK;
}
