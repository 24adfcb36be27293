/*
 * stack.c - one hybrid stack run end to end on the cpu backend (f32, one
 * sequence), for `lcattn report`: a prefill of T tokens through every
 * layer, then single-token decode steps through every layer's cache.
 *
 * The layers are joined by the least glue that makes one layer's output
 * the next layer's input and keeps the numbers bounded, a pre-norm
 * residual stream of width D = H dv:
 *
 *	h = x / rms(x)   (per token);   o = layer(h);   x += o
 *
 * where the layer's q, k and v heads are the head slices of h (so every
 * layer needs dk = dv and, for mla, dn = dv; the shapes of the report),
 * mla's q_rope, ckv and k_rope are the first dr values of each head, the
 * first dc values and the next dr values of h, deltanet's g and beta are
 * fixed random per token, and lightning's slopes are MiniMax's for the
 * layer's place in the stack. Included: the attention layers with their
 * caches and the glue (O(T D) per layer, not in the cost model). Excluded:
 * the q, k, v and output projections, MLP or MoE, output gates, short
 * convolutions, embeddings and the LM head.
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STACK_MAX = 64, STACK_WARM = 2, STACK_MAXSTEPS = 64 };

struct layer {
	lca_variant v;
	lca_plan *pl;
	lca_cache *c;
	float *w_uk, *w_uv, *slope;
};

struct stack {
	const struct bench_shape *s;
	int L;
	struct layer lay[STACK_MAX];
	int64_t D;
	float *x, *h, *o;          /* [T][D] stream, its norm, a layer's output */
	float *qr, *ckv, *kr;      /* mla inputs of T tokens */
	float *g, *beta;           /* deltanet, [cap][H] */
};

static float uniform(uint64_t *st, double lo, double hi)
{
	uint64_t z = (*st += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (float)(lo + (hi - lo) * (double)((z ^ (z >> 31)) >> 11) * 0x1p-53);
}

static float *draw(uint64_t *st, int64_t n, double lo, double hi)
{
	float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);

	for (int64_t i = 0; x && i < n; i++)
		x[i] = uniform(st, lo, hi);
	return x;
}

static int layer_variant(char c, lca_variant *v)
{
	const char *at = c ? strchr("SMDL", c) : NULL;

	if (!at)
		return -1;
	*v = (lca_variant)(at - "SMDL");
	return 0;
}

/* Plan, cache of cap tokens and fixed weights of layer l. */
static lca_status layer_init(struct stack *st, int l, int64_t cap, uint64_t *rs)
{
	const struct bench_shape *s = st->s;
	struct layer *y = &st->lay[l];
	double sl[1024];
	lca_params p;
	lca_status e;

	if ((e = lca_params_init(&p, y->v)))
		return e;
	p.backend = LCA_BACKEND_CPU, p.dtype = LCA_F32, p.check_finite = 0;
	p.H = s->H, p.dv = s->dv, p.chunk = s->chunk, p.block = s->block;
	if (y->v == LCA_MLA)
		p.dn = s->dn, p.dr = s->dr, p.dc = s->dc, p.scale = 1 / sqrt((double)(s->dn + s->dr));
	else
		p.dk = s->dk;
	if ((e = lca_plan_create(&p, &y->pl)) || (e = lca_cache_create(y->pl, 1, cap, &y->c)))
		return e;
	if (y->v == LCA_MLA) {
		double w = 1 / sqrt((double)s->dc);

		y->w_uk = draw(rs, s->H * s->dn * s->dc, -w, w);
		y->w_uv = draw(rs, s->H * s->dv * s->dc, -w, w);
		if (!y->w_uk || !y->w_uv)
			return LCA_ERR_NOMEM;
	}
	if (y->v == LCA_LIGHTNING) {
		if (s->H > 1024 || (e = lca_minimax_slopes(s->H, l, st->L, sl)))
			return e ? e : LCA_ERR_SIZE;
		if (!(y->slope = malloc((size_t)s->H * sizeof *y->slope)))
			return LCA_ERR_NOMEM;
		for (int64_t i = 0; i < s->H; i++)
			y->slope[i] = (float)sl[i];
	}
	return LCA_OK;
}

/* h = x / sqrt(mean(x^2) + 1e-6), token by token. */
static void norm_rows(const float *x, int64_t T, int64_t D, float *h)
{
	for (int64_t t = 0; t < T; t++) {
		const float *a = x + t * D;
		double ss = 0;

		for (int64_t i = 0; i < D; i++)
			ss += (double)a[i] * a[i];
		float r = (float)(1 / sqrt(ss / (double)D + 1e-6));

		for (int64_t i = 0; i < D; i++)
			h[t * D + i] = a[i] * r;
	}
}

/* mla's q_rope, ckv and k_rope of T tokens, sliced out of h. */
static void mla_slices(struct stack *st, int64_t T)
{
	const struct bench_shape *s = st->s;

	for (int64_t t = 0; t < T; t++) {
		const float *a = st->h + t * st->D;

		for (int64_t i = 0; i < s->H; i++)
			memcpy(st->qr + (t * s->H + i) * s->dr, a + i * s->dv,
				(size_t)s->dr * sizeof(float));
		memcpy(st->ckv + t * s->dc, a, (size_t)s->dc * sizeof(float));
		memcpy(st->kr + t * s->dr, a + s->dc, (size_t)s->dr * sizeof(float));
	}
}

/* Layer l on T tokens of h (the first at position t0) into o. */
static lca_status layer_step(struct stack *st, int l, int64_t T, int64_t t0)
{
	struct layer *y = &st->lay[l];
	const float *h = st->h;
	int64_t H = st->s->H;

	switch (y->v) {
	case LCA_SOFTMAX:
		return lca_softmax_step(y->pl, y->c, T, h, h, h, NULL, st->o, NULL);
	case LCA_MLA:
		return lca_mla_step(y->pl, y->c, T, h, st->qr, st->ckv, st->kr, y->w_uk, y->w_uv,
			NULL, st->o, NULL);
	case LCA_DELTANET:
		return lca_deltanet_step(y->pl, y->c, T, h, h, h, st->g + t0 * H,
			st->beta + t0 * H, NULL, st->o);
	case LCA_LIGHTNING:
		return lca_lightning_step(y->pl, y->c, T, h, h, h, y->slope, NULL, st->o);
	}
	return LCA_ERR_ARG;
}

/* T tokens of the stream x through every layer; *glue receives the
 * seconds spent outside the layers' calls. */
static lca_status stack_pass(struct stack *st, int64_t T, int64_t t0, double *glue)
{
	double a = bench_now(), b;
	lca_status e;

	*glue = 0;
	for (int l = 0; l < st->L; l++) {
		norm_rows(st->x, T, st->D, st->h);
		if (st->lay[l].v == LCA_MLA)
			mla_slices(st, T);
		b = bench_now();
		*glue += b - a;
		if ((e = layer_step(st, l, T, t0)))
			return e;
		a = bench_now();
		for (int64_t i = 0; i < T * st->D; i++)
			st->x[i] += st->o[i];
	}
	*glue += bench_now() - a;
	return LCA_OK;
}

static int finite_all(const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return 0;
	return 1;
}

static void stack_free(struct stack *st)
{
	for (int l = 0; l < st->L; l++) {
		lca_cache_destroy(st->lay[l].c);
		lca_plan_destroy(st->lay[l].pl);
		free(st->lay[l].w_uk), free(st->lay[l].w_uv), free(st->lay[l].slope);
	}
	free(st->x), free(st->h), free(st->o), free(st->qr), free(st->ckv), free(st->kr);
	free(st->g), free(st->beta);
}

/* Allocate everything for T prefill tokens and cap in all; the message of
 * a failure goes to r->msg. */
static int stack_init(struct stack *st, const char *sched, const struct bench_shape *s,
	int64_t T, int64_t cap, struct bench_stack *r)
{
	uint64_t rs = 2024;
	int64_t D = s->H * s->dv;
	lca_status e = LCA_OK;

	memset(st, 0, sizeof *st);
	st->s = s, st->D = D;
	if (s->dk != s->dv || s->dn != s->dv || s->dr > s->dv || s->dc + s->dr > D) {
		snprintf(r->msg, sizeof r->msg, "shape does not fit the glue (dk = dn = dv, dc + dr <= H dv)");
		return -1;
	}
	for (; sched[st->L]; st->L++)
		if (st->L == STACK_MAX || layer_variant(sched[st->L], &st->lay[st->L].v)) {
			snprintf(r->msg, sizeof r->msg, "bad schedule '%s'", sched);
			return -1;
		}
	for (int l = 0; l < st->L && !e; l++)
		e = layer_init(st, l, cap, &rs);
	st->x = draw(&rs, T * D, -1, 1);
	st->h = malloc((size_t)(T * D) * sizeof(float));
	st->o = malloc((size_t)(T * D) * sizeof(float));
	st->qr = malloc((size_t)(T * s->H * s->dr + 1) * sizeof(float));
	st->ckv = malloc((size_t)(T * s->dc + 1) * sizeof(float));
	st->kr = malloc((size_t)(T * s->dr + 1) * sizeof(float));
	st->g = draw(&rs, cap * s->H, -0.1, 0);
	st->beta = draw(&rs, cap * s->H, 0, 1);
	if (!e && !(st->x && st->h && st->o && st->qr && st->ckv && st->kr && st->g && st->beta))
		e = LCA_ERR_NOMEM;
	if (e) {
		snprintf(r->msg, sizeof r->msg, "%s: %s", lca_strerror(e), lca_last_error());
		return -1;
	}
	return 0;
}

/* Modelled cost of the stack: every layer's prefill of T tokens and its
 * decode step at context n. */
static void stack_model(const struct stack *st, int64_t T, int64_t n, struct bench_stack *r)
{
	for (int l = 0; l < st->L; l++) {
		lca_cost p, d;

		if (lca_plan_cost(st->lay[l].pl, LCA_PHASE_PREFILL, T, &p) ||
		    lca_plan_cost(st->lay[l].pl, LCA_PHASE_DECODE, n, &d)) {
			r->prefill_flops = r->decode_flops = NAN;
			return;
		}
		r->prefill_flops += p.flops, r->prefill_bytes += p.bytes;
		r->decode_flops += d.flops, r->decode_bytes += d.bytes;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int bench_stack_run(const char *sched, const struct bench_shape *s, int64_t T, int steps,
	struct bench_stack *r)
{
	struct stack st;
	double dt[STACK_MAXSTEPS], t0, glue;
	uint64_t rs = 77;
	lca_status e = LCA_OK;
	int rc = -1;

	memset(r, 0, sizeof *r);
	r->prefill_s = r->decode_s = NAN;
	if (steps < 1 || steps > STACK_MAXSTEPS || T < 1) {
		snprintf(r->msg, sizeof r->msg, "T = %lld, steps = %d out of range", (long long)T, steps);
		return -1;
	}
	if (stack_init(&st, sched, s, T, T + STACK_WARM + steps, r))
		goto out;
	stack_model(&st, T, T + STACK_WARM + steps / 2 + 1, r);
	t0 = bench_now();
	if ((e = stack_pass(&st, T, 0, &r->prefill_glue_s)))
		goto fail;
	r->prefill_s = bench_now() - t0;
	if (!finite_all(st.x, T * st.D))
		goto nonfinite;
	/* two untimed steps first: the first single-token call after a prefill
	 * pays for thread pools switching between BLAS and OpenMP */
	for (int j = 0; j < STACK_WARM + steps; j++) {
		for (int64_t i = 0; i < st.D; i++)
			st.x[i] = uniform(&rs, -1, 1);  /* the next token's embedding */
		t0 = bench_now();
		if ((e = stack_pass(&st, 1, T + j, &glue)))
			goto fail;
		if (j >= STACK_WARM) {
			dt[j - STACK_WARM] = bench_now() - t0;
			r->decode_glue_s += glue / steps;
		}
	}
	if (!finite_all(st.x, st.D))
		goto nonfinite;
	qsort(dt, (size_t)steps, sizeof *dt, cmp_double);
	r->decode_s = dt[steps / 2];
	rc = 0;
	goto out;
fail:
	snprintf(r->msg, sizeof r->msg, "%s: %s", lca_strerror(e), lca_last_error());
	goto out;
nonfinite:
	snprintf(r->msg, sizeof r->msg, "the stream left the finite range");
out:
	if (rc)
		r->prefill_s = r->decode_s = NAN;
	stack_free(&st);
	return rc;
}
