/*
 * cpdec.c - the cases of the sharded-decode tests (cpdec.h).
 */
#include "cpdec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

void dec_split(int64_t T, int P, int r, int mode, int64_t *start, int64_t *len)
{
	if (mode == DEC_LAST) {
		*start = 0;
		*len = r == P - 1 ? T : 0;
	} else if (mode == DEC_SKEW && P > 1 && T > 1) {
		if (r == 0) {
			*start = 0;
			*len = 1;
		} else {
			cp_split(T - 1, P - 1, r - 1, start, len);
			*start += 1;
		}
	} else {
		cp_split(T, P, r, start, len);
	}
}

/* Inputs of d that are queries (one per token, the last tq taken), keys
 * (the rank's rows) or whole-call weights. */
static int is_query(const struct cp_data *d, int i)
{
	return i < (d->c->v == LCA_SOFTMAX ? 1 : 2);
}

/* Zigzag chunk c of 2P over T tokens: [T c / 2P, T (c + 1) / 2P). */
static int64_t chunk(int64_t T, int P, int64_t c)
{
	return T * c / (2 * (int64_t)P);
}

lca_status dec_rank(const struct cp_data *d, const lca_plan *plan, int P, int r,
	int mode, int64_t tq, dec_call_fn f, void *ctx, void *o, void *lse,
	uint64_t *bytes, uint64_t *control)
{
	const void *in[6];
	void *own[6] = { 0 };
	int64_t start, len, g[2], n[2];
	lca_status s;

	if (mode == DEC_ZIGZAG) {
		g[0] = chunk(d->T, P, r);
		n[0] = chunk(d->T, P, r + 1) - g[0];
		g[1] = chunk(d->T, P, 2 * (int64_t)P - 1 - r);
		n[1] = chunk(d->T, P, 2 * (int64_t)P - r) - g[1];
		start = g[0];
		len = n[0] + n[1];
	} else {
		dec_split(d->T, P, r, mode, &start, &len);
	}
	for (int i = 0; i < d->nin; i++) {
		int64_t at = !d->row[i] ? 0 : is_query(d, i) ? d->T - tq : start;

		in[i] = d->row[i] && !is_query(d, i) && len == 0 ? NULL :
			(const char *)d->tx[i] + (size_t)(d->row[i] * at) * d->es;
		if (mode == DEC_ZIGZAG && d->row[i] && !is_query(d, i) && len > 0) {
			/* the rank's rows: chunk r's tokens, then chunk 2P - 1 - r's */
			size_t rb = (size_t)d->row[i] * d->es;
			char *b = malloc((size_t)len * rb);

			if (!b)
				abort();
			memcpy(b, (const char *)d->tx[i] + (size_t)g[0] * rb, (size_t)n[0] * rb);
			memcpy(b + (size_t)n[0] * rb, (const char *)d->tx[i] + (size_t)g[1] * rb,
				(size_t)n[1] * rb);
			in[i] = own[i] = b;
		}
	}
	s = f(ctx, d->c->v, plan, mode == DEC_ZIGZAG, d->T, start, len, tq, in, o, lse, bytes,
		control);
	for (int i = 0; i < d->nin; i++)
		free(own[i]);
	return s;
}

static lca_status single_x(const struct cp_data *d, const lca_plan *plan, int64_t tq,
	void *const *x, size_t es, void *o, void *lse)
{
	const int64_t T = d->T;
	const void *q[2];

	for (int i = 0; i < 2; i++)
		q[i] = (const char *)x[i] + (size_t)(d->row[i] * (T - tq)) * es;
	if (d->c->v == LCA_SOFTMAX)
		return lca_softmax_forward(plan, tq, T, q[0], x[1], x[2], NULL, 0, o, lse);
	return lca_mla_forward(plan, tq, T, q[0], q[1], x[2], x[3], x[4], x[5], NULL, 0, o,
		lse);
}

lca_status dec_single(const struct cp_data *d, const lca_plan *plan, int64_t tq,
	void *o, void *lse)
{
	return single_x(d, plan, tq, d->tx, d->es, o, lse);
}

static double *as_double(lca_dtype t, const void *x, int64_t n)
{
	double *y = malloc((size_t)(n ? n : 1) * sizeof *y);

	if (!y)
		abort();
	for (int64_t i = 0; i < n; i++)
		y[i] = t == LCA_F64 ? ((const double *)x)[i] : ((const float *)x)[i];
	return y;
}

static void *as_type(lca_dtype t, const double *x, int64_t n)
{
	void *y = malloc((size_t)(n ? n : 1) * (t == LCA_F64 ? 8 : 4));

	if (!y)
		abort();
	for (int64_t i = 0; i < n; i++)
		if (t == LCA_F64)
			((double *)y)[i] = x[i];
		else
			((float *)y)[i] = (float)x[i];
	return y;
}

/* One output against the reference r64 with the rule's bound from r32. */
static int judge1(const char *what, lca_dtype t, const void *x, const double *r64,
	const double *r32, int64_t n, char *msg, size_t size)
{
	double *y = as_double(t, x, n), tol = 1e-12, e;
	int bad;

	if (t == LCA_F32) {
		tol = 2.0 * tu_relerr(r32, r64, n);
		tol = tol > 1e-6 ? tol : 1e-6;
	}
	e = tu_relerr(y, r64, n);
	bad = !(e <= tol) || !tu_all_finite(y, n);
	if (bad)
		snprintf(msg, size, "%s: normwise error %.3e > %.1e", what, e, tol);
	free(y);
	return bad;
}

int dec_judge(const struct cp_data *d, int64_t tq, const void *o, const void *lse,
	char *msg, size_t size)
{
	const int64_t on = tq * d->c->H * d->c->dv, ln = tq * d->c->H;
	double *r[2][2];
	int bad = 0;

	msg[0] = '\0';
	for (int k = 0; k < 2; k++) {
		/* k = 0: the double reference; 1: the reference run in float32 */
		lca_dtype t = k ? LCA_F32 : LCA_F64;
		lca_params p = cp_params(d->c, LCA_BACKEND_REF, t);
		lca_plan *plan = NULL;
		void *x[6], *o_ = calloc((size_t)on, 8), *l_ = calloc((size_t)ln, 8);

		for (int i = 0; i < d->nin; i++)
			x[i] = as_type(t, d->x[i], d->n[i]);
		if (!o_ || !l_ || lca_plan_create(&p, &plan) != LCA_OK ||
		    single_x(d, plan, tq, x, t == LCA_F64 ? 8 : 4, o_, l_) != LCA_OK) {
			snprintf(msg, size, "reference: %s", lca_last_error());
			bad = 1;
		}
		lca_plan_destroy(plan);
		r[k][0] = as_double(t, o_, on);
		r[k][1] = as_double(t, l_, ln);
		for (int i = 0; i < d->nin; i++)
			free(x[i]);
		free(o_);
		free(l_);
	}
	if (!bad)
		bad = judge1("o", d->t, o, r[0][0], r[1][0], on, msg, size) ||
			judge1("lse", d->t, lse, r[0][1], r[1][1], ln, msg, size);
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < 2; i++)
			free(r[k][i]);
	return bad;
}

uint64_t dec_bytes(const struct cp_data *d, int P, int64_t tq)
{
	return (uint64_t)(P - 1) * (uint64_t)(tq * d->c->H * (d->c->dv + 1)) * d->es;
}

uint64_t dec_control(int P)
{
	/* the 216-byte header, tq and a status (16), four 8-byte votes */
	return (uint64_t)(P - 1) * (216 + 16 + 4 * 8);
}
