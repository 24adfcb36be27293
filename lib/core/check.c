/*
 * check.c - argument checks shared by the forward calls (forward.c) and
 * the cache step calls (cache.c), so that both refuse the same things with
 * the same messages.
 */
#include "internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Element type of a tensor argument: the plan's dtype, except that the
 * cuda backend keeps recurrent state in f32 whatever the input dtype, and
 * so does every backend for bf16 (cpu and cuda). */
static lca_dtype targ_dtype(const lca_params *p, const struct lcai_targ *a)
{
	return a->is_state && (p->backend == LCA_BACKEND_CUDA || p->dtype == LCA_BF16) ?
		LCA_F32 : p->dtype;
}

size_t lcai_dtype_size(lca_dtype t)
{
	return t == LCA_F64 ? 8 : t == LCA_F32 ? 4 : 2;
}

/* Elements per block of the fast scan: a constant trip count, so that
 * the compiler vectorises the loops below without an epilogue (a decode
 * step checks a few thousand elements; element by element, with the
 * dtype switch inside, that was 14% of a deltanet step of 0.5 MiB). */
#define FIN_BLOCK 64

/*
 * Whether x[0 .. FIN_BLOCK) are all finite; *bm = their max |x|. On the
 * bits: clearing the sign gives |x|, whose order as an unsigned integer
 * is its order as a number, and inf and every NaN lie above the largest
 * finite value: one integer max answers both questions.
 */
static int block_finite_f32(const float *x, double *bm)
{
	uint32_t b[FIN_BLOCK], m = 0;
	float f;

	memcpy(b, x, sizeof b);
	for (int j = 0; j < FIN_BLOCK; j++) {
		uint32_t a = b[j] & 0x7fffffffu;

		m = a > m ? a : m;
	}
	memcpy(&f, &m, sizeof f);
	*bm = f;
	return m < 0x7f800000u;
}

static int block_finite_f64(const double *x, double *bm)
{
	uint64_t b[FIN_BLOCK], m = 0;
	double d;

	memcpy(b, x, sizeof b);
	for (int j = 0; j < FIN_BLOCK; j++) {
		uint64_t a = b[j] & 0x7fffffffffffffffu;

		m = a > m ? a : m;
	}
	memcpy(&d, &m, sizeof d);
	*bm = d;
	return m < 0x7ff0000000000000u;
}

/* bfloat16, the high half of a float: the same integer max on 16 bits
 * (inf is 0x7f80, every NaN above it), the max widened to a float. */
static int block_finite_bf16(const uint16_t *x, double *bm)
{
	uint16_t b[FIN_BLOCK], m = 0;
	uint32_t w;
	float f;

	memcpy(b, x, sizeof b);
	for (int j = 0; j < FIN_BLOCK; j++) {
		uint16_t a = b[j] & 0x7fffu;

		m = a > m ? a : m;
	}
	w = (uint32_t)m << 16;
	memcpy(&f, &w, sizeof f);
	*bm = f;
	return m < 0x7f80u;
}

/* The fast scan of one whole block of dtype t at element i. */
static int block_finite(const void *x, int64_t i, lca_dtype t, double *bm)
{
	if (t == LCA_F32)
		return block_finite_f32((const float *)x + i, bm);
	if (t == LCA_F64)
		return block_finite_f64((const double *)x + i, bm);
	return block_finite_bf16((const uint16_t *)x + i, bm);
}

/* Index of the first non-finite element, or -1; *amax gets max |x| of
 * the elements before it (all of them when every one is finite). Whole
 * blocks go through the fast scan until one holds a non-finite element,
 * which the element loop then finds. */
static int64_t first_nonfinite(const void *x, int64_t n, lca_dtype t,
	double *amax)
{
	double m = 0, bm;
	int64_t i = 0;

	for (; i + FIN_BLOCK <= n; i += FIN_BLOCK) {
		if (!block_finite(x, i, t, &bm))
			break;
		if (bm > m)
			m = bm;
	}
	for (; i < n; i++) {
		double v;

		if (t == LCA_F64)
			v = ((const double *)x)[i];
		else if (t == LCA_F32)
			v = ((const float *)x)[i];
		else { /* bfloat16: the high half of a float */
			uint32_t b = (uint32_t)((const uint16_t *)x)[i] << 16;
			float f;

			memcpy(&f, &b, sizeof f);
			v = f;
		}
		if (!isfinite(v)) {
			*amax = m;
			return i;
		}
		v = fabs(v);
		if (v > m)
			m = v;
	}
	*amax = m;
	return -1;
}

double lcai_maxabs(const void *x, int64_t n, lca_dtype t)
{
	double m;

	first_nonfinite(x, n, t, &m);
	return m;
}

lca_status lcai_check_targs(const char *fn, const lca_params *p,
	const struct lcai_targ *a, int na)
{
	for (int i = 0; i < na; i++) {
		if (!a[i].ptr && !a[i].optional)
			return lcai_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, a[i].name);
		if (a[i].n > INT64_MAX / 8 ||
		    (uint64_t)a[i].n > SIZE_MAX / lcai_dtype_size(targ_dtype(p, &a[i])))
			return lcai_fail(LCA_ERR_OVERFLOW, "%s: %s has too many elements",
				fn, a[i].name);
	}
	return LCA_OK;
}

lca_status lcai_check_finite(const char *fn, const lca_params *p,
	const struct lcai_targ *a, int na, double *amax)
{
	if (!p->check_finite)
		return LCA_OK;
	for (int i = 0; i < na; i++) {
		int64_t at;
		double m = 0;

		if (!a[i].ptr) {
			if (amax)
				amax[i] = 0;
			continue;
		}
		if (p->backend != LCA_BACKEND_CUDA)
			at = first_nonfinite(a[i].ptr, a[i].n, targ_dtype(p, &a[i]), &m);
		else if ((at = lcai_cuda_find(a[i].ptr, a[i].n,
		    targ_dtype(p, &a[i]), 0)) == -1 && amax &&
		    lcai_cuda_maxabs(a[i].ptr, a[i].n, targ_dtype(p, &a[i]), &m))
			at = -2;
		if (at == -2)
			return lcai_fail(LCA_ERR_INTERNAL, "%s: CUDA error while scanning %s",
				fn, a[i].name);
		if (at >= 0)
			return lcai_fail(LCA_ERR_NONFINITE, "%s: %s[%lld] is not finite",
				fn, a[i].name, (long long)at);
		if (amax)
			amax[i] = m;
	}
	return LCA_OK;
}

lca_status lcai_count(const char *fn, const char *name, int64_t *out,
	int64_t a, int64_t b, int64_t c, int64_t d)
{
	if (!lcai_mul_n(out, 4, a, b, c, d))
		return lcai_fail(LCA_ERR_OVERFLOW, "%s: size of %s overflows", fn, name);
	return LCA_OK;
}

lca_status lcai_check_plan(const char *fn, const lca_plan *plan, lca_variant v)
{
	if (!plan)
		return lcai_fail(LCA_ERR_NULL, "%s: plan is NULL", fn);
	if (plan->p.variant != v)
		return lcai_fail(LCA_ERR_ARG, "%s: the plan is for another variant", fn);
	return LCA_OK;
}

lca_status lcai_check_len(const char *fn, const char *name, int64_t T)
{
	if (T < 1)
		return lcai_fail(LCA_ERR_SIZE, "%s: %s = %lld must be >= 1", fn, name,
			(long long)T);
	return LCA_OK;
}

lca_status lcai_resolve_cu(const char *fn, const int64_t *cu_seqlens,
	int64_t nseq, int64_t T, int64_t one[2], const int64_t **cu, int64_t *n)
{
	if (!cu_seqlens) {
		one[0] = 0;
		one[1] = T;
		*cu = one;
		*n = 1;
		return LCA_OK;
	}
	if (nseq < 1)
		return lcai_fail(LCA_ERR_SIZE, "%s: nseq = %lld must be >= 1", fn,
			(long long)nseq);
	if (cu_seqlens[0] != 0)
		return lcai_fail(LCA_ERR_SIZE, "%s: cu_seqlens[0] = %lld must be 0", fn,
			(long long)cu_seqlens[0]);
	for (int64_t i = 0; i < nseq; i++)
		if (cu_seqlens[i + 1] < cu_seqlens[i])
			return lcai_fail(LCA_ERR_SIZE, "%s: cu_seqlens decreases at index %lld "
				"(it must hold nseq + 1 = %llu entries rising from 0 to T)",
				fn, (long long)(i + 1), (unsigned long long)nseq + 1);
	if (cu_seqlens[nseq] != T)
		return lcai_fail(LCA_ERR_SIZE, "%s: cu_seqlens[nseq] = %lld must equal T = %lld "
			"(it must hold nseq + 1 = %llu entries)", fn,
			(long long)cu_seqlens[nseq], (long long)T, (unsigned long long)nseq + 1);
	*cu = cu_seqlens;
	*n = nseq;
	return LCA_OK;
}

lca_status lcai_check_attn_call(const char *fn, const lca_plan *plan, lca_variant v,
	int64_t Tq, int64_t Tk, const int64_t *cu_seqlens, int64_t nseq,
	int64_t oneq[2], int64_t onek[2], const int64_t **cuq, const int64_t **cuk,
	int64_t *n)
{
	lca_status s;

	if ((s = lcai_check_plan(fn, plan, v)) || (s = lcai_check_len(fn, "Tq", Tq)) ||
	    (s = lcai_check_len(fn, "Tk", Tk)))
		return s;
	if (cu_seqlens && Tq != Tk)
		return lcai_fail(LCA_ERR_SIZE, "%s: with cu_seqlens Tq (%lld) must equal Tk (%lld)",
			fn, (long long)Tq, (long long)Tk);
	if ((s = lcai_resolve_cu(fn, cu_seqlens, nseq, Tq, oneq, cuq, n)))
		return s;
	return lcai_resolve_cu(fn, cu_seqlens, nseq, Tk, onek, cuk, n);
}

lca_status lcai_check_linear_call(const char *fn, const lca_plan *plan, lca_variant v,
	int64_t T, const int64_t *cu_seqlens, int64_t nseq, int64_t one[2],
	const int64_t **cu, int64_t *n)
{
	lca_status s;

	if ((s = lcai_check_plan(fn, plan, v)) || (s = lcai_check_len(fn, "T", T)))
		return s;
	return lcai_resolve_cu(fn, cu_seqlens, nseq, T, one, cu, n);
}

lca_status lcai_check_sign(const char *fn, const char *name, const void *x,
	int64_t n, const lca_params *p, int sign, const char *rule)
{
	lca_dtype t = p->dtype;

	if (p->backend == LCA_BACKEND_CUDA) {
		/* sign -1 (x <= 0) fails on x > 0: mode 1; sign 1 fails on x < 0. */
		int64_t at = lcai_cuda_find(x, n, t, sign < 0 ? 1 : -1);

		if (at == -2)
			return lcai_fail(LCA_ERR_INTERNAL, "%s: CUDA error while scanning %s",
				fn, name);
		if (at >= 0)
			return lcai_fail(LCA_ERR_ARG, "%s: %s[%lld] breaks %s", fn, name,
				(long long)at, rule);
		return LCA_OK;
	}
	for (int64_t i = 0; i < n; i++) {
		double v;

		if (t == LCA_F64)
			v = ((const double *)x)[i];
		else if (t == LCA_F32)
			v = ((const float *)x)[i];
		else { /* bfloat16: the sign bit decides, except for zeros */
			uint16_t b = ((const uint16_t *)x)[i];

			v = (b & 0x7fffu) == 0 ? 0.0 : (b & 0x8000u) ? -1.0 : 1.0;
		}
		if (sign * v < 0)
			return lcai_fail(LCA_ERR_ARG, "%s: %s[%lld] = %g breaks %s", fn, name,
				(long long)i, v, rule);
	}
	return LCA_OK;
}

/* Bytes [lo, hi) of a tensor argument, as integers: comparing pointers
 * into different objects is undefined in C, comparing addresses is not. */
static void span(const lca_params *p, const struct lcai_targ *a, uintptr_t *lo,
	uintptr_t *hi)
{
	*lo = (uintptr_t)a->ptr;
	*hi = *lo + (uintptr_t)a->n * lcai_dtype_size(targ_dtype(p, a));
}

lca_status lcai_check_overlap(const char *fn, const lca_params *p,
	const struct lcai_targ *a, int nin, int na)
{
	for (int i = nin; i < na; i++) {
		uintptr_t lo, hi, lo2, hi2;

		if (!a[i].ptr || !a[i].n)
			continue;
		span(p, &a[i], &lo, &hi);
		for (int j = 0; j < na; j++) {
			if (j == i || !a[j].ptr || !a[j].n)
				continue;
			span(p, &a[j], &lo2, &hi2);
			/* The one sharing allowed: a final state written over its
			 * own initial state, exactly. */
			if (a[i].is_state && a[j].is_state && lo == lo2 && hi == hi2)
				continue;
			if (lo < hi2 && lo2 < hi)
				return lcai_fail(LCA_ERR_ARG, "%s: output %s overlaps %s %s", fn,
					a[i].name, j < nin ? "input" : "output", a[j].name);
		}
	}
	return LCA_OK;
}

/* ---- the range rule (lca_softmax_forward(3), LCA_ERR_RANGE) ---- */

/* a b without the NaN of 0 * inf: a bound of 0 times anything is 0. */
static double bmul(double a, double b)
{
	return a == 0 || b == 0 ? 0 : a * b;
}

static double bmax(double a, double b)
{
	return a > b ? a : b;
}

/* Largest magnitude the working type of p holds, over 4 for slack
 * (log2(e) scalings, rounding): the kernels of every backend stay finite
 * below it. f32 and bf16 work in float. */
static double range_limit(const lca_params *p)
{
	return (p->dtype == LCA_F64 ? DBL_MAX : FLT_MAX) / 4;
}

static lca_status range_verdict(const char *fn, const lca_params *p,
	double bound, const char *what)
{
	if (bound <= range_limit(p))
		return LCA_OK;
	return lcai_fail(LCA_ERR_RANGE,
		"%s: %s could reach %g, over %s/4: scale, head sizes and input "
		"magnitudes too large", fn, what, bound,
		p->dtype == LCA_F64 ? "DBL_MAX" : "FLT_MAX");
}

lca_status lcai_check_range_softmax(const char *fn, const lca_params *p,
	const double m[3], int64_t nkeys)
{
	/* a rotated coordinate is at most twice the largest one */
	const double c = p->rope_dim > 0 ? 2 : 1, s1 = bmax(p->scale, 1);
	double logit = bmul(bmul(bmul(p->scale, c * (double)p->dk), m[0]), m[1]);
	double vec = bmax(bmul(s1 * c, m[0]), c * m[1]);
	lca_status s;

	if (!p->check_finite) /* m was not scanned */
		return LCA_OK;
	if (p->window > 0 && p->window < nkeys)
		nkeys = p->window;
	if ((s = range_verdict(fn, p, logit, "a logit")) ||
	    (s = range_verdict(fn, p, vec, "a rotated or scaled q or k")))
		return s;
	/* the unnormalised sum of up to nkeys weights <= 1 times v */
	return range_verdict(fn, p, bmul((double)nkeys, m[2]), "a sum of values");
}

lca_status lcai_check_range_mla(const char *fn, const lca_params *p,
	const double m[6], int64_t nkeys)
{
	const double c = p->rope_dim > 0 ? 2 : 1, s1 = bmax(p->scale, 1);
	const double dn = (double)p->dn, dr = (double)p->dr, dc = (double)p->dc;
	/* m: q_nope q_rope ckv k_rope w_uk w_uv */
	double qabs = bmul(bmul(dn, m[4]), m[0]);   /* w_uk folded in q */
	double knope = bmul(bmul(dc, m[4]), m[2]);  /* decompressed key */
	double logit = bmul(p->scale, bmul(qabs, dc * m[2]) +
		bmul(bmul(c * dr, m[1]), m[3]));
	double vec = bmax(bmax(bmul(s1, qabs), bmul(s1, m[0])),
		bmax(bmax(bmul(s1 * c, m[1]), c * m[3]), knope));
	double sum;
	lca_status s;

	if (!p->check_finite) /* m was not scanned */
		return LCA_OK;
	if (p->window > 0 && p->window < nkeys)
		nkeys = p->window;
	sum = bmul(bmul((double)nkeys, dc), bmul(m[5], m[2]));
	if ((s = range_verdict(fn, p, logit, "a logit")) ||
	    (s = range_verdict(fn, p, vec, "a projected, rotated or scaled "
	    "query or key")))
		return s;
	/* values w_uv ckv summed over nkeys, in either order */
	return range_verdict(fn, p, bmax(sum, bmul((double)nkeys, m[2])),
		"a sum of values");
}
