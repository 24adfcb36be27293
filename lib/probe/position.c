/*
 * position.c - lca_probe_position: how much the read of a memory changes
 * when two neighbouring tokens trade places, against their distance from
 * the reader ("bag of words at scale", measured).
 *
 * Softmax without RoPE and Lightning with lambda = 1 are sums over the
 * tokens, blind to order; RoPE, decay and the delta rule's
 * non-commuting (I - b k k^T) factors are what make order visible.
 *
 * Softmax and mla reread all T keys per distance, but only the two swapped
 * tokens are rotated or compressed again. The recurrent mechanisms share
 * prefixes: tokens before the
 * swap give the same state, so the state is carried forward through the
 * cut points in order of position and only the last d + 1 tokens are
 * rewritten for distance d.
 */
#include "probe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Work buffers: copies of the tokens (swapped in place) and two reads. */
struct pos_work {
	double *k, *v, *beta, *g, *o, *od, *S;
};

static void swap_rows(double *x, int64_t w, int64_t a)
{
	for (int64_t c = 0; x && c < w; c++) {
		double t = x[a * w + c];

		x[a * w + c] = x[(a + 1) * w + c];
		x[(a + 1) * w + c] = t;
	}
}

/* Swap tokens a and a + 1 in every per-token array of the work copy. */
static void swap_token(const struct lcai_mem *m, struct pos_work *w, int64_t a)
{
	swap_rows(w->k, m->dk, a);
	swap_rows(w->v, m->dv, a);
	swap_rows(w->beta, 1, a);
	swap_rows(w->g, 1, a);
}

static double rel_change(const double *od, const double *o, int64_t n)
{
	double d = 0, r = lcai_probe_norm(o, n);

	for (int64_t i = 0; i < n; i++)
		d += (od[i] - o[i]) * (od[i] - o[i]);
	d = sqrt(d);
	return r > 0 ? d / r : d > 0 ? INFINITY : 0;
}

/* softmax: keys rotated once at their positions; a swap re-rotates just
 * the two tokens that moved. */
static lca_status softmax_sweep(const char *fn, const struct lcai_mem *m, const lca_probe_seq *s,
	const double *q, struct pos_work *w, int64_t nd, const int64_t *dist, double *sens)
{
	int64_t T = s->T, dk = m->dk;
	double *kr = lcai_probe_alloc(T * dk), *qr = lcai_probe_alloc(dk);
	double *save = lcai_probe_alloc(2 * dk);
	lca_status st = LCA_OK;

	if (!kr || !qr || !save)
		st = lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
	for (int64_t t = 0; !st && t < T; t++) {
		memcpy(kr + t * dk, s->k + t * dk, (size_t)dk * sizeof *kr);
		lcai_mem_rotate(m, kr + t * dk, t);
	}
	if (!st) {
		memcpy(qr, q, (size_t)dk * sizeof *qr);
		lcai_mem_rotate(m, qr, T);
	}
	for (int64_t j = 0; !st && j < nd; j++) {
		int64_t a = T - dist[j] - 1;

		memcpy(save, kr + a * dk, (size_t)(2 * dk) * sizeof *kr);
		memcpy(kr + a * dk, s->k + (a + 1) * dk, (size_t)dk * sizeof *kr);
		memcpy(kr + (a + 1) * dk, s->k + a * dk, (size_t)dk * sizeof *kr);
		lcai_mem_rotate(m, kr + a * dk, a);
		lcai_mem_rotate(m, kr + (a + 1) * dk, a + 1);
		swap_rows(w->v, m->dv, a);
		st = lcai_mem_read_rotated(fn, m, T, kr, w->v, 1, qr, w->od);
		swap_rows(w->v, m->dv, a);
		memcpy(kr + a * dk, save, (size_t)(2 * dk) * sizeof *kr);
		if (!st)
			sens[j] = rel_change(w->od, w->o, m->dv);
	}
	free(kr), free(qr), free(save);
	return st;
}

/* mla: the latent map was fitted once to the unswapped tokens (a Gram
 * matrix does not see order), so a swap just swaps two latent rows. */
static lca_status latent_sweep(const char *fn, const struct lcai_mem *m, const lca_probe_seq *s,
	const double *q, struct pos_work *w, int64_t nd, const int64_t *dist, double *sens)
{
	int64_t dr = m->dr ? m->dr : 2;
	double *ckv, *kr;
	lca_status st = lcai_mem_latent(fn, m, s->T, s->k, s->v, &ckv, &kr);

	for (int64_t j = 0; !st && j < nd; j++) {
		int64_t a = s->T - dist[j] - 1;

		swap_rows(ckv, m->dc, a);
		swap_rows(kr, dr, a);
		st = lcai_mem_read_latent(fn, m, s->T, ckv, kr, 1, q, w->od);
		swap_rows(ckv, m->dc, a);
		swap_rows(kr, dr, a);
		if (!st)
			sens[j] = rel_change(w->od, w->o, m->dv);
	}
	free(ckv);
	free(kr);
	return st;
}

static int by_distance_desc(const void *x, const void *y)
{
	const int64_t *a = x, *b = y;

	return (a[0] < b[0]) - (a[0] > b[0]);
}

/* Cut points a = T - d - 1 in increasing order: carry S to a, then write
 * the swapped tokens a .. T-1 from it (the copy is swapped at a and back). */
static lca_status state_sweep(const char *fn, const struct lcai_mem *m, const lca_probe_seq *s,
	const double *q, struct pos_work *w, int64_t nd, const int64_t (*ord)[2], double *sens)
{
	int64_t at = 0, dk = m->dk, dv = m->dv;
	double *S2 = lcai_probe_alloc(dk * dv);
	lca_status st = S2 ? LCA_OK : lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);

	for (int64_t j = 0; !st && j < nd; j++) {
		int64_t a = s->T - ord[j][0] - 1;

		if (a > at)
			st = lcai_mem_write_state(fn, m, a - at, w->k + at * dk, w->v + at * dv,
				w->beta ? w->beta + at : NULL, w->g ? w->g + at : NULL,
				at ? w->S : NULL, w->S, NULL);
		at = a > at ? a : at;
		if (st)
			break;
		swap_token(m, w, a);
		st = lcai_mem_write_state(fn, m, s->T - a, w->k + a * dk, w->v + a * dv,
			w->beta ? w->beta + a : NULL, w->g ? w->g + a : NULL, a ? w->S : NULL, S2, NULL);
		swap_token(m, w, a);
		if (!st)
			st = lcai_mem_read_state(fn, m, S2, 1, q, w->od);
		if (!st)
			sens[ord[j][1]] = rel_change(w->od, w->o, dv);
	}
	free(S2);
	return st;
}

static lca_status copy_tokens(const struct lcai_mem *m, const lca_probe_seq *s, struct pos_work *w)
{
	int64_t T = s->T;

	w->k = lcai_probe_alloc(T * m->dk), w->v = lcai_probe_alloc(T * m->dv);
	w->o = lcai_probe_alloc(m->dv), w->od = lcai_probe_alloc(m->dv);
	w->S = lcai_probe_alloc(m->dk * m->dv);
	if (s->beta)
		w->beta = lcai_probe_alloc(T);
	if (s->g)
		w->g = lcai_probe_alloc(T);
	if (!w->k || !w->v || !w->o || !w->od || !w->S || (s->beta && !w->beta) || (s->g && !w->g))
		return LCA_ERR_NOMEM;
	memcpy(w->k, s->k, (size_t)(T * m->dk) * sizeof(double));
	memcpy(w->v, s->v, (size_t)(T * m->dv) * sizeof(double));
	if (w->beta)
		memcpy(w->beta, s->beta, (size_t)T * sizeof(double));
	if (w->g)
		memcpy(w->g, s->g, (size_t)T * sizeof(double));
	return LCA_OK;
}

static lca_status check_dist(const char *fn, const lca_probe_seq *s, int64_t nd,
	const int64_t *dist, const double *sens)
{
	if (nd < 0)
		return lcai_fail(LCA_ERR_SIZE, "%s: nd = %lld must be >= 0", fn, (long long)nd);
	if (nd && (!dist || !sens))
		return lcai_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, dist ? "sens" : "dist");
	for (int64_t j = 0; s && j < nd; j++)
		if (dist[j] < 1 || dist[j] > s->T - 1)
			return lcai_fail(LCA_ERR_ARG, "%s: dist[%lld] = %lld must lie in [1, T-1 = %lld]",
				fn, (long long)j, (long long)dist[j], (long long)(s->T - 1));
	return LCA_OK;
}

lca_status lca_probe_position(const lca_probe_params *pp, const lca_probe_seq *s, int64_t nd,
	const int64_t *dist, double *sens)
{
	static const char fn[] = "lca_probe_position";
	struct pos_work w = { 0 };
	int64_t (*ord)[2] = NULL;
	struct lcai_mem m;
	const double *q;
	lca_status st;

	lcai_clear_error();
	if ((st = lcai_mem_open(fn, &m, pp, s)))
		return st;
	if ((st = check_dist(fn, s, nd, dist, sens)) || nd == 0)
		goto out;
	q = s->q ? s->q : s->k + (s->T - 1) * m.dk;
	if (copy_tokens(&m, s, &w) || !(ord = malloc((size_t)nd * sizeof *ord))) {
		st = lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
		goto out;
	}
	if ((st = lcai_mem_read(fn, &m, s->T, s->k, s->v, s->beta, s->g, 1, q, w.o)))
		goto out;
	if (m.pp.variant == LCA_MLA) {
		st = latent_sweep(fn, &m, s, q, &w, nd, dist, sens);
		goto out;
	}
	if (m.pp.variant == LCA_SOFTMAX) {
		st = softmax_sweep(fn, &m, s, q, &w, nd, dist, sens);
		goto out;
	}
	for (int64_t j = 0; j < nd; j++)
		ord[j][0] = dist[j], ord[j][1] = j;
	qsort(ord, (size_t)nd, sizeof *ord, by_distance_desc);
	st = state_sweep(fn, &m, s, q, &w, nd, (const int64_t (*)[2])ord, sens);
out:
	free(w.k), free(w.v), free(w.beta), free(w.g), free(w.o), free(w.od), free(w.S);
	free(ord);
	lcai_mem_close(&m);
	return st;
}
