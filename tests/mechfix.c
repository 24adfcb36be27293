/*
 * mechfix.c - see mechfix.h.
 */
#include "mechfix.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

const lca_variant mf_variants[4] = {
	LCA_SOFTMAX, LCA_MLA, LCA_DELTANET, LCA_LIGHTNING
};

const char *mf_name(lca_variant v)
{
	switch (v) {
	case LCA_SOFTMAX: return "softmax";
	case LCA_MLA: return "mla";
	case LCA_DELTANET: return "deltanet";
	case LCA_LIGHTNING: return "lightning";
	}
	return "?";
}

/* Small sizes with every head-sharing option on (GQA, mla's shared
 * latent, deltanet's shared qk heads): cheap under sanitizers, yet every
 * kernel's loops run more than once. */
static void sizes(struct mf *m)
{
	lca_params *p = &m->p;
	int64_t *r = m->row;

	p->H = 4;
	p->dv = 6;
	switch (p->variant) {
	case LCA_SOFTMAX:
		p->Hkv = 2;
		p->dk = 8;
		p->rope_dim = LCA_ROPE_FULL;
		m->nin = 3;
		r[0] = p->H * p->dk;
		r[1] = p->Hkv * p->dk;
		r[2] = p->Hkv * p->dv;
		break;
	case LCA_MLA:
		p->dn = 6;
		p->dr = 4;
		p->dc = 10;
		p->scale = 1.0 / sqrt(10.0);
		m->nin = 6;
		r[0] = p->H * p->dn;
		r[1] = p->H * p->dr;
		r[2] = p->dc;
		r[3] = p->dr;
		r[4] = p->H * p->dn * p->dc;
		r[5] = p->H * p->dv * p->dc;
		m->perm[4] = m->perm[5] = 1;
		break;
	case LCA_DELTANET:
		p->Hk = 2;
		p->dk = 8;
		m->nin = 5;
		r[0] = r[1] = p->Hk * p->dk;
		r[2] = p->H * p->dv;
		r[3] = r[4] = p->H;
		break;
	case LCA_LIGHTNING:
		p->dk = 8;
		m->nin = 4;
		r[0] = r[1] = p->H * p->dk;
		r[2] = p->H * p->dv;
		r[3] = p->H;
		m->perm[3] = 1;
		break;
	}
}

/* Draw input i in double, in its valid range, and store it typed. */
static void draw(struct mf *m, int i)
{
	int64_t n = m->perm[i] ? m->row[i] : m->T * m->row[i];
	double *x = tu_alloc(n);
	lca_variant v = m->p.variant;

	/* mla's weights scaled so that their products stay O(1). */
	tu_fill_normal(x, n, v == LCA_MLA && m->perm[i] ?
		1.0 / sqrt((double)m->p.dc) : 1.0);
	if (v == LCA_DELTANET && i == 3)
		tu_fill_uniform(x, n, -1.0, 0.0);   /* g <= 0 */
	if (v == LCA_DELTANET && i == 4)
		tu_fill_uniform(x, n, 0.05, 1.0);   /* beta */
	if (v == LCA_LIGHTNING && i == 3)
		tu_fill_uniform(x, n, 0.0, 0.5);    /* slopes */
	m->in[i] = mf_alloc_out(m, n);
	for (int64_t j = 0; j < n; j++) {
		if (m->elt == 8)
			((double *)m->in[i])[j] = x[j];
		else
			((float *)m->in[i])[j] = (float)x[j];
	}
	free(x);
}

void mf_init(struct mf *m, lca_variant v, lca_backend b, lca_dtype t,
	int64_t T)
{
	memset(m, 0, sizeof *m);
	m->p = tu_params(v);
	m->p.backend = b;
	m->p.dtype = t;
	m->T = T;
	m->elt = t == LCA_F64 ? 8 : 4;
	sizes(m);
	for (int i = 0; i < m->nin; i++)
		draw(m, i);
	m->no = T * m->p.H * m->p.dv;
	m->naux = v == LCA_SOFTMAX || v == LCA_MLA ? T * m->p.H
		: m->p.H * m->p.dk * m->p.dv;
}

void mf_free(struct mf *m)
{
	for (int i = 0; i < m->nin; i++)
		free(m->in[i]);
}

void *mf_alloc_out(const struct mf *m, int64_t n)
{
	void *y = calloc(n > 0 ? (size_t)n : 1, m->elt);

	ck_assert_ptr_nonnull(y);
	return y;
}

lca_status mf_forward(const struct mf *m, const lca_plan *plan, void *o,
	void *aux)
{
	void *const *x = m->in;
	int64_t T = m->T;

	switch (m->p.variant) {
	case LCA_SOFTMAX:
		return lca_softmax_forward(plan, T, T, x[0], x[1], x[2], NULL, 0, o, aux);
	case LCA_MLA:
		return lca_mla_forward(plan, T, T, x[0], x[1], x[2], x[3], x[4], x[5],
			NULL, 0, o, aux);
	case LCA_DELTANET:
		return lca_deltanet_forward(plan, T, x[0], x[1], x[2], x[3], x[4],
			NULL, 0, NULL, o, aux);
	case LCA_LIGHTNING:
		return lca_lightning_forward(plan, T, x[0], x[1], x[2], x[3], NULL, 0,
			NULL, o, aux);
	}
	return LCA_ERR_INTERNAL;
}

lca_status mf_step_cu(const struct mf *m, const lca_plan *plan, lca_cache *c,
	int64_t t0, int64_t T, const int64_t *cu, void *o)
{
	const void *x[MF_MAXIN];

	for (int i = 0; i < m->nin; i++)
		x[i] = m->perm[i] ? m->in[i]
			: (const char *)m->in[i] + (size_t)(t0 * m->row[i]) * m->elt;
	switch (m->p.variant) {
	case LCA_SOFTMAX:
		return lca_softmax_step(plan, c, T, x[0], x[1], x[2], cu, o, NULL);
	case LCA_MLA:
		return lca_mla_step(plan, c, T, x[0], x[1], x[2], x[3], x[4], x[5],
			cu, o, NULL);
	case LCA_DELTANET:
		return lca_deltanet_step(plan, c, T, x[0], x[1], x[2], x[3], x[4],
			cu, o);
	case LCA_LIGHTNING:
		return lca_lightning_step(plan, c, T, x[0], x[1], x[2], x[3], cu, o);
	}
	return LCA_ERR_INTERNAL;
}

lca_status mf_step(const struct mf *m, const lca_plan *plan, lca_cache *c,
	int64_t t0, int64_t T, void *o)
{
	return mf_step_cu(m, plan, c, t0, T, NULL, o);
}

void *mf_cache_bytes(const lca_cache *c, size_t *n)
{
	void *buf;

	ck_assert_int_eq(lca_cache_save(c, NULL, 0, n), LCA_OK);
	buf = malloc(*n);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(lca_cache_save(c, buf, *n, n), LCA_OK);
	return buf;
}

int mf_same(const struct mf *m, const void *x, const void *ref, int64_t n)
{
	double *a, *b;
	double err;

	if (m->p.backend == LCA_BACKEND_REF)
		return memcmp(x, ref, (size_t)n * m->elt) == 0;
	a = malloc((size_t)n * sizeof *a);
	b = malloc((size_t)n * sizeof *b);
	if (!a || !b) {
		free(a);
		free(b);
		return 0;
	}
	for (int64_t i = 0; i < n; i++) {
		a[i] = m->elt == 8 ? ((const double *)x)[i] : ((const float *)x)[i];
		b[i] = m->elt == 8 ? ((const double *)ref)[i] : ((const float *)ref)[i];
	}
	err = tu_relerr(a, b, n);
	free(a);
	free(b);
	return err <= (m->elt == 8 ? 1e-12 : 1e-6);
}
