/*
 * cpcase.c - the cases of the context-parallel tests (cpcase.h).
 */
#include "cpcase.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Small heads, odd sizes, dk != dv, grouped heads, windows, partial RoPE
 * of both styles, chunks and blocks that the runs cut in the middle. */
const struct cp_conf cp_confs[] = {
	{ "softmax gqa causal rope", LCA_SOFTMAX, 4, 2, 8, 6, 0, 0, 0, 1, 0, 8,
		LCA_ROPE_HALF, 0, 0, 0 },
	{ "softmax window mqa", LCA_SOFTMAX, 3, 1, 8, 5, 0, 0, 0, 1, 9, 4,
		LCA_ROPE_INTERLEAVED, 0, 0, 0 },
	{ "softmax non-causal", LCA_SOFTMAX, 2, 2, 6, 3, 0, 0, 0, 0, 0, 6,
		LCA_ROPE_HALF, 0, 0, 0 },
	{ "mla absorbed causal", LCA_MLA, 3, 0, 0, 5, 6, 4, 7, 1, 0, LCA_ROPE_FULL,
		LCA_ROPE_INTERLEAVED, LCA_ALGO_ABSORBED, 0, 0 },
	{ "mla naive window", LCA_MLA, 2, 0, 0, 4, 5, 6, 8, 1, 11, 4,
		LCA_ROPE_HALF, LCA_ALGO_NAIVE, 0, 0 },
	{ "deltanet gqa state0 chunk 8", LCA_DELTANET, 4, 2, 8, 6, 0, 0, 0, 0, 0, 0,
		LCA_ROPE_HALF, 0, 8, 1 },
	{ "deltanet chunk 16", LCA_DELTANET, 2, 2, 5, 7, 0, 0, 0, 0, 0, 0,
		LCA_ROPE_HALF, 0, 16, 0 },
	{ "lightning state0 block 8", LCA_LIGHTNING, 3, 0, 6, 5, 0, 0, 0, 0, 0, 0,
		LCA_ROPE_HALF, 0, 8, 1 },
	{ "lightning block 16", LCA_LIGHTNING, 2, 0, 4, 8, 0, 0, 0, 0, 0, 0,
		LCA_ROPE_HALF, 0, 16, 0 },
};
const int cp_nconf = (int)(sizeof cp_confs / sizeof cp_confs[0]);

lca_params cp_params(const struct cp_conf *c, lca_backend b, lca_dtype t)
{
	lca_params p;

	lca_params_init(&p, c->v);
	p.backend = b;
	p.dtype = t;
	p.nthreads = 1;
	p.H = c->H;
	p.dv = c->dv;
	switch (c->v) {
	case LCA_SOFTMAX:
		p.Hkv = c->Hg;
		p.dk = c->dk;
		break;
	case LCA_MLA:
		p.dn = c->dn;
		p.dr = c->dr;
		p.dc = c->dc;
		p.scale = 1.0 / sqrt((double)(c->dn + c->dr));
		p.algo = c->algo;
		break;
	case LCA_DELTANET:
		p.Hk = c->Hg;
		p.dk = c->dk;
		p.chunk = c->tile;
		break;
	case LCA_LIGHTNING:
		p.dk = c->dk;
		p.block = c->tile;
		break;
	}
	if (c->v == LCA_SOFTMAX || c->v == LCA_MLA) {
		p.causal = c->causal;
		p.window = c->window;
		p.rope_dim = c->rope_dim;
		p.rope_style = c->style;
	}
	return p;
}

/* n doubles; no Check here: mpi_cp runs outside a Check suite. */
static double *dalloc(int64_t n)
{
	double *x = malloc((size_t)(n ? n : 1) * sizeof *x);

	if (!x)
		abort();
	return x;
}

static void *typed(lca_dtype t, const double *x, int64_t n)
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

static void untyped(lca_dtype t, const void *x, double *y, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = t == LCA_F64 ? ((const double *)x)[i] : ((const float *)x)[i];
}

void cp_make(struct cp_data *d, const struct cp_conf *c, lca_dtype t, int64_t T)
{
	cp_make_batch(d, c, t, T, 0, NULL, 1);
}

void cp_make_batch(struct cp_data *d, const struct cp_conf *c, lca_dtype t, int64_t T,
	int zigzag, const int64_t *cu, int64_t nseq)
{
	const int64_t H = c->H, dk = c->dk, dv = c->dv;

	memset(d, 0, sizeof *d);
	d->c = c;
	d->t = t;
	d->es = t == LCA_F64 ? 8 : 4;
	d->T = T;
	d->zigzag = zigzag;
	d->nseq = cu ? nseq : 1;
	if (cu) {
		d->cu = malloc((size_t)(nseq + 1) * sizeof *d->cu);
		if (!d->cu)
			abort();
		memcpy(d->cu, cu, (size_t)(nseq + 1) * sizeof *d->cu);
	}
	switch (c->v) {
	case LCA_SOFTMAX: {
		int64_t r[] = { H * dk, c->Hg * dk, c->Hg * dv };

		d->nin = 3;
		memcpy(d->row, r, sizeof r);
		break;
	}
	case LCA_MLA: {
		int64_t r[] = { H * c->dn, H * c->dr, c->dc, c->dr, 0, 0 };

		d->nin = 6;
		memcpy(d->row, r, sizeof r);
		d->n[4] = H * c->dn * c->dc;
		d->n[5] = H * dv * c->dc;
		break;
	}
	case LCA_DELTANET: {
		int64_t r[] = { c->Hg * dk, c->Hg * dk, H * dv, H, H };

		d->nin = 5;
		memcpy(d->row, r, sizeof r);
		break;
	}
	case LCA_LIGHTNING: {
		int64_t r[] = { H * dk, H * dk, H * dv, 0 };

		d->nin = 4;
		memcpy(d->row, r, sizeof r);
		d->n[3] = H;
		break;
	}
	}
	for (int i = 0; i < d->nin; i++) {
		if (d->row[i])
			d->n[i] = T * d->row[i];
		d->x[i] = dalloc(d->n[i]);
		tu_fill_normal(d->x[i], d->n[i], 1.0);
	}
	if (c->v == LCA_DELTANET) {
		tu_fill_uniform(d->x[3], d->n[3], -0.4, 0.0);   /* g <= 0 */
		tu_fill_uniform(d->x[4], d->n[4], 0.1, 1.0);    /* beta */
	}
	if (c->v == LCA_LIGHTNING)
		tu_fill_uniform(d->x[3], d->n[3], 0.05, 0.6);   /* slope */
	for (int i = 0; i < d->nin; i++)
		d->tx[i] = typed(t, d->x[i], d->n[i]);
	d->on = T * H * dv;
	d->ln = T * H;
	d->sn = d->nseq * H * dk * dv;
	if (c->state0) {
		d->state0 = dalloc(d->sn);
		tu_fill_normal(d->state0, d->sn, 0.5);
		d->tstate0 = typed(t, d->state0, d->sn);
	}
}

void cp_free(struct cp_data *d)
{
	for (int i = 0; i < d->nin; i++) {
		free(d->x[i]);
		free(d->tx[i]);
	}
	free(d->state0);
	free(d->tstate0);
	free(d->cu);
}

void cp_outputs(const struct cp_data *d, void **o, void **lse, void **state)
{
	*o = calloc((size_t)d->on + 1, d->es);
	*lse = calloc((size_t)d->ln + 1, d->es);
	*state = calloc((size_t)d->sn + 1, d->es);
	if (!*o || !*lse || !*state)
		abort();
}

void cp_split(int64_t T, int P, int r, int64_t *start, int64_t *len)
{
	*start = T * r / P;
	*len = T * (r + 1) / P - *start;
}

int cp_runs(const struct cp_data *d, int P, int r, int64_t g[2], int64_t n[2],
	struct cp_layout *lay)
{
	int64_t T = d->T, c = 2 * (int64_t)P;
	int k = 0;

	memset(lay, 0, sizeof *lay);
	lay->zigzag = d->zigzag;
	lay->T = T;
	lay->cu = d->cu;
	lay->nseq = d->cu ? d->nseq : 0;
	if (!d->zigzag) {
		if (d->cuts) {
			g[0] = d->cuts[r];
			n[0] = d->cuts[r + 1] - d->cuts[r];
		} else {
			cp_split(T, P, r, &g[0], &n[0]);
		}
		lay->start = g[0];
		lay->len = n[0];
		return n[0] > 0;
	}
	/* chunk i: [T i / 2P, T (i + 1) / 2P) */
	int64_t a0 = T * r / c, a1 = T * (r + 1) / c, b0 = T * (c - 1 - r) / c,
		b1 = T * (c - r) / c;

	lay->start = a0;
	lay->len = (a1 - a0) + (b1 - b0);
	if (a1 == b0) { /* rank P - 1: chunks P - 1 and P touch */
		a1 = b1;
		b0 = b1;
	}
	if (a1 > a0) {
		g[k] = a0;
		n[k++] = a1 - a0;
	}
	if (b1 > b0) {
		g[k] = b0;
		n[k++] = b1 - b0;
	}
	return k;
}

/* Copy the rows of x [T][row] that rank r holds (runs g, n) into y, or
 * back from y into x. */
static void rows_io(int k, const int64_t *g, const int64_t *n, size_t rb, void *x,
	void *y, int back)
{
	size_t at = 0;

	for (int i = 0; i < k; i++) {
		char *xs = (char *)x + (size_t)g[i] * rb;

		if (back)
			memcpy(xs, (char *)y + at, (size_t)n[i] * rb);
		else
			memcpy((char *)y + at, xs, (size_t)n[i] * rb);
		at += (size_t)n[i] * rb;
	}
}

lca_status cp_rank(const struct cp_data *d, const lca_plan *plan, int P, int r,
	cp_call_fn f, void *ctx, void *o, void *lse, void *state, uint64_t *bytes)
{
	const int64_t H = d->c->H, dv = d->c->dv;
	const void *in[6] = { NULL };
	void *mine[6] = { NULL }, *lo = NULL, *ll = NULL;
	struct cp_layout lay;
	int64_t g[2], n[2];
	int k = cp_runs(d, P, r, g, n, &lay);
	lca_status s;

	/* A rank without tokens passes NULL for its per-token tensors. */
	for (int i = 0; i < d->nin; i++) {
		in[i] = d->tx[i];
		if (!d->row[i])
			continue;
		in[i] = NULL;
		if (lay.len == 0)
			continue;
		mine[i] = malloc((size_t)(lay.len * d->row[i]) * d->es);
		if (!mine[i])
			abort();
		rows_io(k, g, n, (size_t)d->row[i] * d->es, d->tx[i], mine[i], 0);
		in[i] = mine[i];
	}
	if (lay.len) {
		lo = calloc((size_t)(lay.len * H * dv), d->es);
		ll = calloc((size_t)(lay.len * H), d->es);
		if (!lo || !ll)
			abort();
	}
	s = f(ctx, d->c->v, plan, &lay, in, d->tstate0, lo, ll, state, bytes);
	if (lay.len) {
		rows_io(k, g, n, (size_t)(H * dv) * d->es, o, lo, 1);
		rows_io(k, g, n, (size_t)H * d->es, lse, ll, 1);
	}
	for (int i = 0; i < d->nin; i++)
		free(mine[i]);
	free(lo);
	free(ll);
	return s;
}

static lca_status single_x(const struct cp_data *d, const lca_plan *plan,
	void *const *x, const void *state0, void *o, void *lse, void *state)
{
	const int64_t T = d->T, ns = d->nseq;
	const int64_t *cu = d->cu;

	switch (d->c->v) {
	case LCA_SOFTMAX:
		return lca_softmax_forward(plan, T, T, x[0], x[1], x[2], cu, ns, o, lse);
	case LCA_MLA:
		return lca_mla_forward(plan, T, T, x[0], x[1], x[2], x[3], x[4], x[5], cu, ns,
			o, lse);
	case LCA_DELTANET:
		return lca_deltanet_forward(plan, T, x[0], x[1], x[2], x[3], x[4], cu, ns,
			state0, o, state);
	default:
		return lca_lightning_forward(plan, T, x[0], x[1], x[2], x[3], cu, ns, state0,
			o, state);
	}
}

lca_status cp_single(const struct cp_data *d, const lca_plan *plan, void *o, void *lse,
	void *state)
{
	return single_x(d, plan, d->tx, d->tstate0, o, lse, state);
}

/* Token t's sequence and position in it. */
static int64_t seq_of(const struct cp_data *d, int64_t t, int64_t *pos)
{
	int64_t s = 0;

	if (d->cu)
		while (d->cu[s + 1] <= t)
			s++;
	*pos = t - (d->cu ? d->cu[s] : 0);
	return s;
}

/* Whether query token t sees key token u. */
static int sees(const struct cp_data *d, int64_t t, int64_t u)
{
	int64_t pt, pu;

	if (seq_of(d, t, &pt) != seq_of(d, u, &pu))
		return 0;
	if (!d->c->causal)
		return 1;
	return pu <= pt && (d->c->window == 0 || pt - pu < d->c->window);
}

/* A rank's tokens in row order into tok (at most T). */
static int64_t tokens(const struct cp_data *d, int P, int r, int64_t *tok)
{
	struct cp_layout lay;
	int64_t g[2], n[2], m = 0;
	int k = cp_runs(d, P, r, g, n, &lay);

	for (int i = 0; i < k; i++)
		for (int64_t t = g[i]; t < g[i] + n[i]; t++)
			tok[m++] = t;
	return m;
}

/*
 * The span rule, token by token: rank r passes block j (rank j's keys) on
 * at every step but the one that would bring it back to j; of each piece
 * of j (consecutive tokens of one sequence) it sends the span from the
 * first to the last key that some query of a rank further along j's path
 * sees. Summaries: one per run slot (zigzag two) to each of P - 1 ranks.
 */
uint64_t cp_bytes_formula(const struct cp_data *d, int P, int r)
{
	const struct cp_conf *c = d->c;
	const uint64_t es = d->es, nr = d->zigzag ? 2 : 1;
	uint64_t row, sum = 0;
	int64_t *kt, *qt;

	if (P == 1)
		return 0;
	if (c->v == LCA_DELTANET)
		return (uint64_t)(P - 1) * nr * (uint64_t)(c->H * c->dk * (c->dk + c->dv)) * es;
	if (c->v == LCA_LIGHTNING)
		return (uint64_t)(P - 1) * nr * (uint64_t)(c->H * (1 + c->dk * c->dv)) * es;
	row = c->v == LCA_SOFTMAX ? (uint64_t)(c->Hg * (c->dk + c->dv)) * es :
		(uint64_t)(c->dc + c->dr) * es;
	kt = malloc((size_t)(d->T + 1) * sizeof *kt);
	qt = malloc((size_t)(d->T + 1) * sizeof *qt);
	if (!kt || !qt)
		abort();
	for (int st = 0; st < P - 1; st++) {
		const int j = (r - st + P) % P;
		const int64_t nk = tokens(d, P, j, kt);

		/* pieces of j: consecutive tokens of one sequence */
		for (int64_t a = 0, b; a < nk; a = b) {
			int64_t lo = -1, hi = -1, p0, p1;

			for (b = a + 1; b < nk && kt[b] == kt[b - 1] + 1 &&
			     seq_of(d, kt[b], &p0) == seq_of(d, kt[a], &p1); b++)
				;
			for (int e = st + 1; e < P; e++) {
				const int64_t nq = tokens(d, P, (j + e) % P, qt);

				for (int64_t x = a; x < b; x++)
					for (int64_t y = 0; y < nq; y++)
						if (sees(d, qt[y], kt[x])) {
							lo = lo < 0 || x < lo ? x : lo;
							hi = x > hi ? x : hi;
						}
			}
			if (lo >= 0)
				sum += (uint64_t)(hi - lo + 1) * row;
		}
	}
	free(kt);
	free(qt);
	return sum;
}

uint64_t cp_bytes_closed(const struct cp_data *d, int P, int r, int *ok)
{
	const struct cp_conf *c = d->c;
	const int64_t T = d->T, C = 2 * (int64_t)P;
	uint64_t row, toks = 0;
	int64_t start, len, next_len = 0;

	*ok = 1;
	if (P == 1 || c->v == LCA_DELTANET || c->v == LCA_LIGHTNING)
		return cp_bytes_formula(d, P, r);
	*ok = 0;
	if (d->cu)
		return 0;
	row = c->v == LCA_SOFTMAX ? (uint64_t)(c->Hg * (c->dk + c->dv)) * d->es :
		(uint64_t)(c->dc + c->dr) * d->es;
	if (!c->causal) {
		/* every rank sends every block but its successor's: all runs
		 * non-empty */
		for (int q = 0; q < P; q++) {
			struct cp_layout l;
			int64_t g[2], n[2];

			if (cp_runs(d, P, q, g, n, &l) == 0)
				return 0;
			if (q == (r + 1) % P)
				next_len = l.len;
		}
		*ok = 1;
		return (uint64_t)(T - next_len) * row;
	}
	if (!d->zigzag) {
		struct cp_layout l;
		int64_t g[2], n[2], end, keys;

		*ok = 1;
		cp_runs(d, P, r, g, n, &l);
		start = l.start;
		len = l.len;
		end = start + len;
		keys = end;
		if (end >= T)
			return 0; /* no query after this rank's run */
		if (c->window > 0 && c->window - 1 < keys)
			keys = c->window - 1;
		return (uint64_t)keys * row;
	}
	if (c->window > 0 || T < C)
		return 0;
	/* zigzag, causal: chunk A_j = j of every block but the successor's,
	 * chunk B_j = 2P - 1 - j of blocks 1 .. r and r + 2 .. P - 1 */
	*ok = 1;
	for (int j = 0; j < P; j++) {
		int64_t a = T * (j + 1) / C - T * j / C, b = T * (C - j) / C - T * (C - 1 - j) / C;

		if (j != (r + 1) % P)
			toks += (uint64_t)a;
		if ((j >= 1 && j <= r) || j >= r + 2)
			toks += (uint64_t)b;
	}
	return toks * row;
}

static double rule(lca_dtype t, const double *r32, const double *r64, int64_t n)
{
	double e;

	if (t == LCA_F64)
		return 1e-12;
	e = 2.0 * tu_relerr(r32, r64, n);
	return e > 1e-6 ? e : 1e-6;
}

double cp_err[2], cp_tol[2];

/* One output tensor against the reference; appends to msg on failure. */
static int judge1(int k, const char *what, lca_dtype t, const void *x, const double *r64,
	const double *r32, int64_t n, char *msg, size_t size)
{
	double *y = dalloc(n), tol = rule(t, r32, r64, n), e;
	int bad;

	untyped(t, x, y, n);
	e = tu_relerr(y, r64, n);
	cp_err[k] = e;
	cp_tol[k] = tol;
	bad = !(e <= tol) || !tu_all_finite(y, n);
	if (bad)
		snprintf(msg, size, "%s: normwise error %.3e > %.1e", what, e, tol);
	free(y);
	return bad;
}

int cp_judge(const struct cp_data *d, const void *o, const void *lse, const void *state,
	char *msg, size_t size)
{
	const int linear = d->c->v == LCA_DELTANET || d->c->v == LCA_LIGHTNING;
	double *r[2][3];
	int bad = 0;

	msg[0] = '\0';
	for (int k = 0; k < 2; k++) {
		/* k = 0: the double reference; 1: the reference run in float32 */
		lca_dtype t = k ? LCA_F32 : LCA_F64;
		lca_params p = cp_params(d->c, LCA_BACKEND_REF, t);
		lca_plan *plan = NULL;
		void *x[6], *o_ = calloc((size_t)d->on, 8), *l_ = calloc((size_t)d->ln, 8);
		void *s_ = calloc((size_t)d->sn, 8), *s0 = NULL;

		for (int i = 0; i < d->nin; i++)
			x[i] = typed(t, d->x[i], d->n[i]);
		if (d->state0)
			s0 = typed(t, d->state0, d->sn);
		if (lca_plan_create(&p, &plan) != LCA_OK ||
		    single_x(d, plan, x, s0, o_, linear ? NULL : l_, linear ? s_ : NULL) != LCA_OK) {
			snprintf(msg, size, "reference: %s", lca_last_error());
			bad = 1;
		}
		lca_plan_destroy(plan);
		r[k][0] = dalloc(d->on);
		r[k][1] = dalloc(d->ln);
		r[k][2] = dalloc(d->sn);
		untyped(t, o_, r[k][0], d->on);
		untyped(t, l_, r[k][1], d->ln);
		untyped(t, s_, r[k][2], d->sn);
		for (int i = 0; i < d->nin; i++)
			free(x[i]);
		free(s0);
		free(o_);
		free(l_);
		free(s_);
	}
	if (!bad)
		bad = judge1(0, "o", d->t, o, r[0][0], r[1][0], d->on, msg, size) ||
			(!linear && judge1(1, "lse", d->t, lse, r[0][1], r[1][1], d->ln, msg, size)) ||
			(linear && judge1(1, "state", d->t, state, r[0][2], r[1][2], d->sn, msg,
			size));
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < 3; i++)
			free(r[k][i]);
	return bad;
}
