/*
 * plan.c - parameter defaults, validation and plan creation.
 *
 * All slow decisions happen here, once (FFTW style): every option is
 * checked and every default resolved, so execution calls only check tensor
 * arguments and the kernels never see an unresolved value.
 */
#include "config.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *variant_name(lca_variant v)
{
	static const char *names[] = { "softmax", "mla", "deltanet", "lightning" };

	return (unsigned)v < 4 ? names[v] : "?";
}

lca_status lca_params_init(lca_params *p, lca_variant variant)
{
	lcai_clear_error();
	if (!p)
		return lcai_fail(LCA_ERR_NULL, "lca_params_init: p is NULL");
	if ((unsigned)variant > LCA_LIGHTNING)
		return lcai_fail(LCA_ERR_ARG, "lca_params_init: unknown variant %d", (int)variant);
	memset(p, 0, sizeof *p);
	p->variant = variant;
	p->backend = LCA_BACKEND_REF;
	p->dtype = LCA_F64;
	p->algo = LCA_ALGO_AUTO;
	p->causal = variant == LCA_SOFTMAX || variant == LCA_MLA;
	p->rope_dim = variant == LCA_MLA ? LCA_ROPE_FULL : 0;
	p->rope_theta = 10000.0;
	p->rope_style = variant == LCA_MLA ? LCA_ROPE_INTERLEAVED : LCA_ROPE_HALF;
	p->qk_l2norm = 1;
	p->chunk = 64;
	p->block = 256;
	p->check_finite = 1;
	return LCA_OK;
}

/* Fail unless 1 <= x; name is the field. */
static lca_status need_pos(int64_t x, const char *name, lca_variant v)
{
	if (x < 1)
		return lcai_fail(LCA_ERR_SIZE, "lca_plan_create: %s = %lld must be >= 1 for %s",
			name, (long long)x, variant_name(v));
	return LCA_OK;
}

/* Resolve a grouped head count (0 = H) and check that it divides H. */
static lca_status resolve_groups(int64_t H, int64_t *g, const char *name)
{
	if (*g == 0)
		*g = H;
	if (*g < 1 || *g > H || H % *g != 0)
		return lcai_fail(LCA_ERR_SIZE,
			"lca_plan_create: H = %lld is not a multiple of %s = %lld",
			(long long)H, name, (long long)*g);
	return LCA_OK;
}

/* rope_dim: LCA_ROPE_FULL means the whole rotary part of size full. */
static lca_status resolve_rope(lca_params *p, int64_t full)
{
	if (p->rope_dim == LCA_ROPE_FULL)
		p->rope_dim = full;
	if (p->rope_dim < 0 || p->rope_dim > full || p->rope_dim % 2 != 0)
		return lcai_fail(LCA_ERR_ARG,
			"lca_plan_create: rope_dim = %lld must be even and in [0, %lld]",
			(long long)p->rope_dim, (long long)full);
	if ((unsigned)p->rope_style > LCA_ROPE_INTERLEAVED)
		return lcai_fail(LCA_ERR_ARG, "lca_plan_create: unknown rope_style %d",
			(int)p->rope_style);
	if (p->rope_dim > 0 && !(isfinite(p->rope_theta) && p->rope_theta > 0))
		return lcai_fail(LCA_ERR_ARG, "lca_plan_create: rope_theta must be finite and > 0");
	return LCA_OK;
}

/* Masks shared by softmax and mla. */
static lca_status resolve_mask(lca_params *p)
{
	p->causal = p->causal != 0;
	if (p->window < 0)
		return lcai_fail(LCA_ERR_ARG, "lca_plan_create: window = %lld must be >= 0",
			(long long)p->window);
	if (p->window > 0 && !p->causal)
		return lcai_fail(LCA_ERR_ARG, "lca_plan_create: window > 0 requires causal");
	return LCA_OK;
}

static lca_status resolve_softmax(lca_params *p)
{
	lca_status s;

	if ((s = resolve_groups(p->H, &p->Hkv, "Hkv")) || (s = need_pos(p->dk, "dk", p->variant)) ||
	    (s = need_pos(p->dv, "dv", p->variant)) || (s = resolve_mask(p)) ||
	    (s = resolve_rope(p, p->dk)))
		return s;
	if (p->algo != LCA_ALGO_AUTO && p->algo != LCA_ALGO_NAIVE)
		return lcai_fail(LCA_ERR_ARG, "lca_plan_create: softmax takes algo AUTO or NAIVE");
	p->algo = LCA_ALGO_NAIVE;
	if (p->scale == 0)
		p->scale = 1.0 / sqrt((double)p->dk);
	return LCA_OK;
}

static lca_status resolve_mla(lca_params *p)
{
	lca_status s;

	if ((s = need_pos(p->dn, "dn", p->variant)) || (s = need_pos(p->dr, "dr", p->variant)) ||
	    (s = need_pos(p->dc, "dc", p->variant)) || (s = need_pos(p->dv, "dv", p->variant)) ||
	    (s = resolve_mask(p)) || (s = resolve_rope(p, p->dr)))
		return s;
	/* The cpu backend decides AUTO per call, by the call's shape
	 * (lcai_mla_pick); the others fold w_uk and w_uv. */
	if (p->algo == LCA_ALGO_AUTO && p->backend != LCA_BACKEND_CPU)
		p->algo = LCA_ALGO_ABSORBED;
	if (p->algo != LCA_ALGO_AUTO && p->algo != LCA_ALGO_NAIVE &&
	    p->algo != LCA_ALGO_ABSORBED)
		return lcai_fail(LCA_ERR_ARG, "lca_plan_create: mla takes algo AUTO, NAIVE or ABSORBED");
	if (p->scale == 0)
		return lcai_fail(LCA_ERR_ARG,
			"lca_plan_create: mla needs an explicit scale (DeepSeek-V3 is not 1/sqrt(dn+dr))");
	return LCA_OK;
}

/* Shared by the two recurrent variants: no RoPE, algo recurrent/chunked. */
static lca_status resolve_linear(lca_params *p, int64_t tile, const char *tile_name)
{
	if (p->rope_dim != 0)
		return lcai_fail(LCA_ERR_ARG, "lca_plan_create: %s takes no RoPE (rope_dim must be 0)",
			variant_name(p->variant));
	if (tile < 1)
		return lcai_fail(LCA_ERR_SIZE, "lca_plan_create: %s = %lld must be >= 1",
			tile_name, (long long)tile);
	if (p->algo == LCA_ALGO_AUTO)
		p->algo = p->backend == LCA_BACKEND_REF ? LCA_ALGO_RECURRENT : LCA_ALGO_CHUNKED;
	if (p->algo != LCA_ALGO_RECURRENT && p->algo != LCA_ALGO_CHUNKED)
		return lcai_fail(LCA_ERR_ARG,
			"lca_plan_create: %s takes algo AUTO, RECURRENT or CHUNKED",
			variant_name(p->variant));
	return LCA_OK;
}

static lca_status resolve_deltanet(lca_params *p)
{
	lca_status s;

	if ((s = resolve_groups(p->H, &p->Hk, "Hk")) || (s = need_pos(p->dk, "dk", p->variant)) ||
	    (s = need_pos(p->dv, "dv", p->variant)) || (s = resolve_linear(p, p->chunk, "chunk")))
		return s;
	p->qk_l2norm = p->qk_l2norm != 0;
	if (p->scale == 0)
		p->scale = 1.0 / sqrt((double)p->dk);
	return LCA_OK;
}

static lca_status resolve_lightning(lca_params *p)
{
	lca_status s;

	if ((s = need_pos(p->dk, "dk", p->variant)) || (s = need_pos(p->dv, "dv", p->variant)) ||
	    (s = resolve_linear(p, p->block, "block")))
		return s;
	if (p->scale == 0)
		p->scale = 1.0;
	return LCA_OK;
}

/* Is the (backend, dtype) pair offered by this build on this machine? */
static lca_status check_backend(const lca_params *p)
{
	switch (p->backend) {
	case LCA_BACKEND_REF:
		if (p->dtype == LCA_BF16)
			return lcai_fail(LCA_ERR_UNSUPPORTED,
				"lca_plan_create: dtype bf16: the ref backend takes LCA_F64 (the ground truth) or LCA_F32");
		return LCA_OK;
	case LCA_BACKEND_CPU:
		/* Here, once, rather than per call: a failed thread creation
		 * inside libgomp is an exit(1). */
		return lcai_cpu_probe_threads(p);
	case LCA_BACKEND_CUDA:
#ifndef LCA_HAVE_CUDA
		return lcai_fail(LCA_ERR_UNSUPPORTED,
			"lca_plan_create: this lcattn was built without CUDA (configure --enable-cuda)");
#else
		if (p->dtype == LCA_F64)
			return lcai_fail(LCA_ERR_UNSUPPORTED,
				"lca_plan_create: dtype f64: the cuda backend takes LCA_F32 or LCA_BF16");
		if (lcai_cuda_device_count() == 0)
			return lcai_fail(LCA_ERR_NO_DEVICE, "lca_plan_create: no usable CUDA device");
		return LCA_OK;
#endif
	}
	return lcai_fail(LCA_ERR_ARG, "lca_plan_create: unknown backend %d", (int)p->backend);
}

static lca_status resolve(lca_params *p)
{
	if ((unsigned)p->variant > LCA_LIGHTNING)
		return lcai_fail(LCA_ERR_ARG, "lca_plan_create: unknown variant %d", (int)p->variant);
	if ((unsigned)p->backend > LCA_BACKEND_CUDA)
		return lcai_fail(LCA_ERR_ARG, "lca_plan_create: unknown backend %d", (int)p->backend);
	if ((unsigned)p->dtype > LCA_BF16)
		return lcai_fail(LCA_ERR_ARG, "lca_plan_create: unknown dtype %d", (int)p->dtype);
	if ((unsigned)p->algo > LCA_ALGO_CHUNKED)
		return lcai_fail(LCA_ERR_ARG, "lca_plan_create: unknown algo %d", (int)p->algo);
	if (p->H < 1)
		return lcai_fail(LCA_ERR_SIZE, "lca_plan_create: H = %lld must be >= 1", (long long)p->H);
	if (!isfinite(p->scale) || p->scale < 0)
		return lcai_fail(LCA_ERR_ARG, "lca_plan_create: scale must be finite and >= 0 (0 = default)");
	if (p->nthreads < 0 || p->nthreads > LCA_MAX_THREADS)
		return lcai_fail(LCA_ERR_ARG,
			"lca_plan_create: nthreads = %d must be in [0, %d]",
			p->nthreads, LCA_MAX_THREADS);
	p->check_finite = p->check_finite != 0;
	switch (p->variant) {
	case LCA_SOFTMAX: return resolve_softmax(p);
	case LCA_MLA: return resolve_mla(p);
	case LCA_DELTANET: return resolve_deltanet(p);
	case LCA_LIGHTNING: return resolve_lightning(p);
	}
	return LCA_ERR_INTERNAL;
}

lca_status lca_plan_create(const lca_params *p, lca_plan **plan)
{
	lca_params r;
	lca_status s;

	lcai_clear_error();
	if (!plan)
		return lcai_fail(LCA_ERR_NULL, "lca_plan_create: plan is NULL");
	*plan = NULL;
	if (!p)
		return lcai_fail(LCA_ERR_NULL, "lca_plan_create: p is NULL");
	r = *p;
	if ((s = resolve(&r)) || (s = check_backend(&r)))
		return s;
	*plan = malloc(sizeof **plan);
	if (!*plan)
		return lcai_fail(LCA_ERR_NOMEM, "lca_plan_create: out of memory");
	(*plan)->p = r;
	return LCA_OK;
}

void lca_plan_destroy(lca_plan *plan)
{
	free(plan);
}

lca_status lca_plan_params(const lca_plan *plan, lca_params *p)
{
	lcai_clear_error();
	if (!plan || !p)
		return lcai_fail(LCA_ERR_NULL, "lca_plan_params: %s is NULL", plan ? "p" : "plan");
	*p = plan->p;
	return LCA_OK;
}

int lca_backend_available(lca_backend backend)
{
	switch (backend) {
	case LCA_BACKEND_REF: return 1;
	case LCA_BACKEND_CPU: return 1;
	case LCA_BACKEND_CUDA: return lcai_cuda_device_count() > 0;
	}
	return 0;
}
