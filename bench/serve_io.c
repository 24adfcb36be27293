/*
 * serve_io.c - step inputs and one packed step of any mechanism at any
 * shape (GQA, grouped qk heads), shared by the serve bench (serve.c) and
 * the sessions-that-fit table (sessions.c). f32 plans only.
 */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t *st)
{
	uint64_t z = (*st += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

double serve_uniform(uint64_t *st)
{
	return (double)(mix(st) >> 11) * 0x1p-53;
}

/* n floats in [lo, hi); NULL when n would overflow or malloc fails. */
static float *draw(uint64_t *st, int64_t n, double lo, double hi)
{
	float *x;

	if (n < 0 || (uint64_t)n > SIZE_MAX / sizeof *x - 1)
		return NULL;
	if ((x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x)))
		for (int64_t i = 0; i < n; i++)
			x[i] = (float)(lo + (hi - lo) * serve_uniform(st));
	return x;
}

int serve_inputs(lca_variant v, const lca_params *p, int64_t rows, uint64_t seed,
	struct serve_in *in)
{
	int64_t H = p->H, Hkv = p->Hkv ? p->Hkv : H, Hk = p->Hk ? p->Hk : H;
	uint64_t st = seed;

	memset(in, 0, sizeof *in);
	switch (v) {
	case LCA_SOFTMAX:
		in->a = draw(&st, rows * H * p->dk, -1, 1);
		in->b = draw(&st, rows * Hkv * p->dk, -1, 1);
		in->c = draw(&st, rows * Hkv * p->dv, -1, 1);
		break;
	case LCA_MLA:
		in->a = draw(&st, rows * H * p->dn, -1, 1);
		in->b = draw(&st, rows * H * p->dr, -1, 1);
		in->c = draw(&st, rows * p->dc, -1, 1);
		in->d = draw(&st, rows * p->dr, -1, 1);
		in->e = draw(&st, H * p->dn * p->dc, -0.05, 0.05);
		in->f = draw(&st, H * p->dv * p->dc, -0.05, 0.05);
		break;
	case LCA_DELTANET:
		in->a = draw(&st, rows * Hk * p->dk, -1, 1);
		in->b = draw(&st, rows * Hk * p->dk, -1, 1);
		in->c = draw(&st, rows * H * p->dv, -1, 1);
		in->d = draw(&st, rows * H, -0.1, 0);
		in->e = draw(&st, rows * H, 0, 1);
		break;
	case LCA_LIGHTNING:
		in->a = draw(&st, rows * H * p->dk, -1, 1);
		in->b = draw(&st, rows * H * p->dk, -1, 1);
		in->c = draw(&st, rows * H * p->dv, -1, 1);
		in->d = draw(&st, H, 0.01, 0.5);
		break;
	}
	in->o = draw(&st, rows * H * p->dv, 0, 0);
	in->lse = draw(&st, rows * H, 0, 0);
	if (!in->a || !in->b || !in->c || !in->o || !in->lse ||
	    (v == LCA_MLA && (!in->d || !in->e || !in->f)) ||
	    (v == LCA_DELTANET && (!in->d || !in->e)) || (v == LCA_LIGHTNING && !in->d)) {
		serve_inputs_free(in);
		return -1;
	}
	return 0;
}

void serve_inputs_free(struct serve_in *in)
{
	float **p[] = { &in->a, &in->b, &in->c, &in->d, &in->e, &in->f, &in->o, &in->lse };

	for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
		free(*p[i]), *p[i] = NULL;
}

lca_status serve_step(const lca_plan *plan, lca_cache *c, lca_variant v, int64_t T,
	const struct serve_in *in, const int64_t *cu)
{
	switch (v) {
	case LCA_SOFTMAX:
		return lca_softmax_step(plan, c, T, in->a, in->b, in->c, cu, in->o, in->lse);
	case LCA_MLA:
		return lca_mla_step(plan, c, T, in->a, in->b, in->c, in->d, in->e, in->f, cu,
			in->o, in->lse);
	case LCA_DELTANET:
		return lca_deltanet_step(plan, c, T, in->a, in->b, in->c, in->d, in->e, cu, in->o);
	case LCA_LIGHTNING:
		return lca_lightning_step(plan, c, T, in->a, in->b, in->c, in->d, cu, in->o);
	}
	return LCA_ERR_ARG;
}

lca_status serve_plan(lca_variant v, const lca_params *shape, int64_t window,
	lca_plan **plan)
{
	lca_params p;
	lca_status s = lca_params_init(&p, v);

	if (s != LCA_OK)
		return s;
	p.backend = LCA_BACKEND_CPU;
	p.dtype = LCA_F32;
	p.H = shape->H, p.Hkv = shape->Hkv, p.Hk = shape->Hk;
	p.dv = shape->dv;
	if (v == LCA_MLA) {
		p.dn = shape->dn, p.dr = shape->dr, p.dc = shape->dc;
		p.scale = 1 / sqrt((double)(shape->dn + shape->dr));
	} else {
		p.dk = shape->dk;
	}
	if (v == LCA_SOFTMAX || v == LCA_MLA)
		p.window = window;
	return lca_plan_create(&p, plan);
}
