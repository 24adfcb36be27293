/*
 * cases.c - the small caches of cases.h.
 */
#include "cases.h"

lca_status fz_seed_cache(int v, int dt, int64_t nseq, int fill, lca_plan **plan,
	lca_cache **cache)
{
	enum { T = 5 };
	double x[256];
	float xf[256];
	int64_t cu[3] = { 0, 2, T };
	const void *d = dt ? (const void *)xf : (const void *)x;
	lca_params p;
	lca_status s;

	for (int i = 0; i < 256; i++) {
		x[i] = -((double)((i * 37) % 17) / 17);  /* <= 0: g; -x: slope */
		xf[i] = (float)x[i];
	}
	lca_params_init(&p, (lca_variant)v);
	p.dtype = dt ? LCA_F32 : LCA_F64;
	p.H = 2; p.dk = 3; p.dv = 2; p.dn = 2; p.dr = 2; p.dc = 3; p.scale = 0.5;
	if ((s = lca_plan_create(&p, plan)) || (s = lca_cache_create(*plan, nseq, 8, cache)) ||
	    !fill)
		return s;
	const int64_t *c = nseq > 1 ? cu : NULL;
	double o[64];
	switch (v) {
	case LCA_SOFTMAX:
		return lca_softmax_step(*plan, *cache, T, d, d, d, c, o, NULL);
	case LCA_MLA:
		return lca_mla_step(*plan, *cache, T, d, d, d, d, d, d, c, o, NULL);
	case LCA_DELTANET:
		return lca_deltanet_step(*plan, *cache, T, d, d, d, d, d, c, o);
	default:
		for (int i = 0; i < 256; i++) {
			x[i] = -x[i];
			xf[i] = -xf[i];
		}
		return lca_lightning_step(*plan, *cache, T, d, d, d, d, c, o);
	}
}

