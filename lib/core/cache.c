/*
 * cache.c - decode caches: what each mechanism keeps between tokens, the
 * step calls that extend it and exact memory accounting (the storage is
 * described in cache.h; checkpoints are in cache_save.c).
 *
 * A failed call leaves the cache as it was:
 *   - A step validates every argument, checks capacity and grows buffers
 *     before it computes anything. New keys are written past len, where
 *     nothing reads them until len advances, and len advances only after
 *     every kernel succeeded; states are updated in place by kernels that
 *     allocate before they write (internal.h). A NOMEM may leave some
 *     buffers grown, never changed; pages taken by a failed step go back
 *     to the pool.
 *   - Own buffers grow geometrically, so n single-token steps copy O(n) in
 *     all; a paged cache takes a page per LCA_CACHE_PAGE tokens
 *     (cache_store.c).
 */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

/* ---- shapes --------------------------------------------------------------- */

enum { D_H, D_HKV, D_HK, D_DK, D_DV, D_DN, D_DR, D_DC };
const char *const lcai_cache_dim_names[LCAI_NDIM] = {
	"H", "Hkv", "Hk", "dk", "dv", "dn", "dr", "dc"
};

void lcai_cache_dims(const lca_params *p, int64_t d[LCAI_NDIM])
{
	memset(d, 0, LCAI_NDIM * sizeof d[0]);
	d[D_H] = p->H;
	d[D_DV] = p->dv;
	switch (p->variant) {
	case LCA_SOFTMAX:
		d[D_HKV] = p->Hkv;
		d[D_DK] = p->dk;
		break;
	case LCA_MLA:
		d[D_DN] = p->dn;
		d[D_DR] = p->dr;
		d[D_DC] = p->dc;
		break;
	case LCA_DELTANET:
		d[D_HK] = p->Hk;
		d[D_DK] = p->dk;
		break;
	case LCA_LIGHTNING:
		d[D_DK] = p->dk;
		break;
	}
}

/* Element size of cache storage: the plan's dtype, but f32 for the cuda
 * backend's recurrent states (as lca_deltanet_forward() keeps them). */
static size_t cache_elt(const lca_params *p)
{
	if (p->backend == LCA_BACKEND_CUDA && !lcai_cache_has_kv(p->variant))
		return 4;
	return lcai_dtype_size(p->dtype);
}

/* Elements per token of the two buffers (softmax, mla) and of one state
 * (deltanet, lightning); 0 on int64_t overflow. */
static int layout(const lca_params *p, int64_t row[2], int64_t *nstate)
{
	row[0] = row[1] = *nstate = 0;
	switch (p->variant) {
	case LCA_SOFTMAX:
		return lcai_mul(p->Hkv, p->dk, &row[0]) && lcai_mul(p->Hkv, p->dv, &row[1]);
	case LCA_MLA:
		row[0] = p->dc;
		row[1] = p->dr;
		return 1;
	case LCA_DELTANET:
	case LCA_LIGHTNING:
		return lcai_mul_n(nstate, 3, p->H, p->dk, p->dv);
	}
	return 0;
}

int lcai_cache_bytes_of(int64_t n, size_t elt, int64_t *out)
{
	return lcai_mul(n, (int64_t)elt, out) && (uint64_t)*out <= SIZE_MAX;
}

lca_status lca_plan_cache_cost(const lca_plan *plan, int64_t *per_token,
	int64_t *per_seq)
{
	static const char fn[] = "lca_plan_cache_cost";
	int64_t row[2], nstate;
	size_t elt;

	lcai_clear_error();
	if (!plan || !per_token || !per_seq)
		return lcai_fail(LCA_ERR_NULL, "%s: %s is NULL", fn,
			!plan ? "plan" : !per_token ? "per_token" : "per_seq");
	elt = cache_elt(&plan->p);
	if (!layout(&plan->p, row, &nstate) || row[0] > INT64_MAX - row[1] ||
	    !lcai_cache_bytes_of(row[0] + row[1], elt, per_token) ||
	    !lcai_cache_bytes_of(nstate, elt, per_seq))
		return lcai_fail(LCA_ERR_OVERFLOW,
			"%s: cache size per token or sequence overflows", fn);
	return LCA_OK;
}

/* ---- create, destroy, reset, queries -------------------------------------- */

void lca_cache_destroy(lca_cache *cache)
{
	if (!cache)
		return;
	if (cache->seq)
		for (int64_t n = 0; n < cache->nseq; n++) {
			free(cache->seq[n].buf[0]);
			free(cache->seq[n].buf[1]);
			free(cache->seq[n].pt);
		}
	lcai_kv_pool_destroy(cache);
	free(cache->seq);
	free(cache->state);
	free(cache);
}

/* Sizes of a new cache; every later size follows from these checks. */
static lca_status create_sizes(const char *fn, lca_cache *c)
{
	int64_t b;

	if (!layout(&c->p, c->row, &c->nstate))
		return lcai_fail(LCA_ERR_OVERFLOW, "%s: cache row size overflows", fn);
	for (int j = 0; j < 2; j++)
		if (!lcai_mul(c->capacity, c->row[j], &b) ||
		    !lcai_cache_bytes_of(b, c->elt > c->selt ? c->elt : c->selt, &b))
			return lcai_fail(LCA_ERR_OVERFLOW,
				"%s: capacity %lld tokens of %lld elements overflows", fn,
				(long long)c->capacity, (long long)c->row[j]);
	if (!lcai_mul(c->nseq, c->nstate, &b) || !lcai_cache_bytes_of(b, c->elt, &b) ||
	    (uint64_t)c->nseq > SIZE_MAX / sizeof(struct lcai_cache_seq))
		return lcai_fail(LCA_ERR_OVERFLOW, "%s: nseq = %lld sequences overflow", fn,
			(long long)c->nseq);
	return LCA_OK;
}

lca_status lca_cache_opts_init(const lca_plan *plan, lca_cache_opts *opts)
{
	static const char fn[] = "lca_cache_opts_init";

	lcai_clear_error();
	if (!plan || !opts)
		return lcai_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, plan ? "opts" : "plan");
	memset(opts, 0, sizeof *opts);
	opts->nseq = 1;
	opts->storage = plan->p.dtype;
	return LCA_OK;
}

/* What the plan and opts ask for, before anything is allocated. */
static lca_status create_check(const char *fn, const lca_plan *plan,
	const lca_cache_opts *o)
{
	const lca_params *p = &plan->p;
	const int kv = lcai_cache_has_kv(p->variant);

	if (p->backend == LCA_BACKEND_CUDA)
		return lcai_fail(LCA_ERR_UNSUPPORTED,
			"%s: caches are not offered on the cuda backend yet (use ref or cpu)", fn);
	if (p->dtype == LCA_BF16)
		return lcai_fail(LCA_ERR_UNSUPPORTED,
			"%s: caches are not offered under bf16 plans yet (use an f32 plan, "
			"with storage = LCA_BF16 for a softmax or mla cache)", fn);
	if (o->nseq < 1 || o->capacity < 1)
		return lcai_fail(LCA_ERR_SIZE, "%s: %s = %lld must be >= 1", fn,
			o->nseq < 1 ? "nseq" : "capacity",
			(long long)(o->nseq < 1 ? o->nseq : o->capacity));
	if (o->storage != p->dtype && o->storage != LCA_BF16)
		return lcai_fail(LCA_ERR_ARG,
			"%s: storage must be the plan's dtype or LCA_BF16 (got %d)", fn,
			(int)o->storage);
	if (!kv && (o->storage != p->dtype || o->pool_bytes > 0))
		return lcai_fail(LCA_ERR_ARG,
			"%s: a %s cache keeps one fixed state per sequence: pool_bytes and "
			"storage apply to softmax and mla caches only", fn,
			p->variant == LCA_DELTANET ? "deltanet" : "lightning");
	return LCA_OK;
}

/* lca_cache_create_ex, its messages naming fn (the call the caller made). */
static lca_status cache_make(const char *fn, const lca_plan *plan,
	const lca_cache_opts *opts, lca_cache **cache)
{
	lca_cache *c;
	lca_status s;

	if (!cache)
		return lcai_fail(LCA_ERR_NULL, "%s: cache is NULL", fn);
	*cache = NULL;
	if (!plan || !opts)
		return lcai_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, plan ? "opts" : "plan");
	if ((s = create_check(fn, plan, opts)))
		return s;
	if (!(c = calloc(1, sizeof *c)))
		return lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
	c->p = plan->p;
	c->nseq = opts->nseq;
	c->capacity = opts->capacity;
	c->elt = cache_elt(&c->p);
	c->store = opts->storage;
	c->selt = lcai_dtype_size(c->store);
	if ((s = create_sizes(fn, c))) {
		free(c);
		return s;
	}
	c->seq = calloc((size_t)c->nseq, sizeof *c->seq);
	if (c->seq && c->nstate > 0)
		c->state = calloc((size_t)(c->nseq * c->nstate), c->elt);
	if (!c->seq || (c->nstate > 0 && !c->state)) {
		lca_cache_destroy(c);
		return lcai_fail(LCA_ERR_NOMEM, "%s: no memory for %lld sequences", fn,
			(long long)opts->nseq);
	}
	if (opts->pool_bytes > 0 && (s = lcai_kv_pool_create(fn, c, opts->pool_bytes))) {
		lca_cache_destroy(c);
		return s;
	}
	*cache = c;
	return LCA_OK;
}

lca_status lca_cache_create_ex(const lca_plan *plan, const lca_cache_opts *opts,
	lca_cache **cache)
{
	lcai_clear_error();
	return cache_make("lca_cache_create_ex", plan, opts, cache);
}

lca_status lca_cache_create(const lca_plan *plan, int64_t nseq,
	int64_t capacity, lca_cache **cache)
{
	lca_cache_opts o;

	lcai_clear_error();
	memset(&o, 0, sizeof o);
	o.nseq = nseq;
	o.capacity = capacity;
	if (plan)
		o.storage = plan->p.dtype;
	return cache_make("lca_cache_create", plan, &o, cache);
}

lca_status lca_cache_reset(lca_cache *cache)
{
	lcai_clear_error();
	if (!cache)
		return lcai_fail(LCA_ERR_NULL, "lca_cache_reset: cache is NULL");
	for (int64_t n = 0; n < cache->nseq; n++) {
		cache->seq[n].len = 0;
		cache->seq[n].amax[0] = cache->seq[n].amax[1] = 0;
		cache->seq[n].retired = 0;
		lcai_kv_release(cache, n, 0, 0);
		lcai_cache_bump(cache, n);
	}
	if (cache->state)
		memset(cache->state, 0, (size_t)(cache->nseq * cache->nstate) * cache->elt);
	return LCA_OK;
}

lca_status lca_cache_len(const lca_cache *cache, int64_t seq, int64_t *len)
{
	static const char fn[] = "lca_cache_len";

	lcai_clear_error();
	if (!cache || !len)
		return lcai_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, cache ? "len" : "cache");
	if (seq < 0 || seq >= cache->nseq)
		return lcai_fail(LCA_ERR_ARG, "%s: seq = %lld is outside [0, %lld)", fn,
			(long long)seq, (long long)cache->nseq);
	if (cache->seq[seq].retired)
		return lcai_fail(LCA_ERR_ARG, "%s: sequence %lld is retired", fn, (long long)seq);
	*len = cache->seq[seq].len;
	return LCA_OK;
}

lca_status lca_cache_bytes(const lca_cache *cache, size_t *bytes)
{
	static const char fn[] = "lca_cache_bytes";
	size_t total;

	lcai_clear_error();
	if (!cache || !bytes)
		return lcai_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, cache ? "bytes" : "cache");
	/* Every term was allocated, so fits size_t; the sum is checked. */
	total = (size_t)(cache->nseq * cache->nstate) * cache->elt;
	if (cache->pool) {
		size_t b = (size_t)cache->pool->npages * cache->pool->page_bytes;

		if (b > SIZE_MAX - total)
			return lcai_fail(LCA_ERR_OVERFLOW, "%s: total exceeds SIZE_MAX", fn);
		*bytes = total + b;
		return LCA_OK;
	}
	for (int64_t n = 0; n < cache->nseq; n++)
		for (int j = 0; j < 2; j++) {
			size_t b = (size_t)cache->seq[n].cap[j] * lcai_kv_row_bytes(cache, j);

			if (b > SIZE_MAX - total)
				return lcai_fail(LCA_ERR_OVERFLOW, "%s: total exceeds SIZE_MAX", fn);
			total += b;
		}
	*bytes = total;
	return LCA_OK;
}

lca_status lca_cache_pages(const lca_cache *cache, int64_t *used, int64_t *total)
{
	const struct lcai_pool *P;

	lcai_clear_error();
	if (!cache)
		return lcai_fail(LCA_ERR_NULL, "lca_cache_pages: cache is NULL");
	P = cache->pool;
	if (used)
		*used = P ? P->npages - P->nfree : 0;
	if (total)
		*total = P ? P->npages : 0;
	return LCA_OK;
}

/* ---- step machinery ------------------------------------------------------- */

/* Does plan compute the cache's numbers? A cache holds unrotated keys
 * whose meaning depends on the plan's RoPE, masks and scale (softmax, mla)
 * or a state built with its scale and L2 norm (deltanet, lightning): a
 * plan that differs there would continue another computation, so it is
 * refused with the field named. algo, chunk, block and threads change
 * only the rounding or the speed. */
struct field {
	const char *name;
	double plan, cache;
};

static lca_status check_numbers(const char *fn, const lca_params *a, const lca_params *b)
{
	const int kv = lcai_cache_has_kv(a->variant), rope = kv && b->rope_dim > 0;
	const struct field f[] = {
		{ "scale", a->scale, b->scale },
		{ kv ? "causal" : NULL, a->causal, b->causal },
		{ kv ? "window" : NULL, (double)a->window, (double)b->window },
		{ kv ? "rope_dim" : NULL, (double)a->rope_dim, (double)b->rope_dim },
		{ rope ? "rope_theta" : NULL, a->rope_theta, b->rope_theta },
		{ rope ? "rope_style" : NULL, a->rope_style, b->rope_style },
		{ a->variant == LCA_DELTANET ? "qk_l2norm" : NULL, a->qk_l2norm, b->qk_l2norm },
	};

	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
		if (f[i].name && f[i].plan != f[i].cache)
			return lcai_fail(LCA_ERR_ARG,
				"%s: plan %s = %.17g, the cache's is %.17g (a cache continues one "
				"computation: make the plan with the cache's %s)", fn, f[i].name,
				f[i].plan, f[i].cache, f[i].name);
	return LCA_OK;
}

/* Can plan drive cache? Same variant (checked by the caller), backend,
 * dtype, shapes and numbers. */
static lca_status check_match(const char *fn, const lca_plan *plan,
	const lca_cache *cache)
{
	int64_t a[LCAI_NDIM], b[LCAI_NDIM];

	if (!cache)
		return lcai_fail(LCA_ERR_NULL, "%s: cache is NULL", fn);
	if (plan->p.variant != cache->p.variant)
		return lcai_fail(LCA_ERR_ARG, "%s: the cache was made for another variant", fn);
	if (plan->p.backend != cache->p.backend || plan->p.dtype != cache->p.dtype)
		return lcai_fail(LCA_ERR_ARG,
			"%s: the cache was made for another backend or dtype", fn);
	lcai_cache_dims(&plan->p, a);
	lcai_cache_dims(&cache->p, b);
	for (int i = 0; i < LCAI_NDIM; i++)
		if (a[i] != b[i])
			return lcai_fail(LCA_ERR_ARG, "%s: plan %s = %lld, the cache's is %lld",
				fn, lcai_cache_dim_names[i], (long long)a[i], (long long)b[i]);
	return check_numbers(fn, &plan->p, &cache->p);
}

/* Checks shared by the four step calls, up to the tensor arguments:
 * plan, cache, T and cu_seqlens over the cache's sequences. */
static lca_status step_begin(const char *fn, const lca_plan *plan,
	const lca_cache *cache, lca_variant v, int64_t T,
	const int64_t *cu_seqlens, int64_t one[2], const int64_t **cu)
{
	int64_t n;
	lca_status s;

	if ((s = lcai_check_plan(fn, plan, v)) || (s = check_match(fn, plan, cache)) ||
	    (s = lcai_check_len(fn, "T", T)))
		return s;
	if (!cu_seqlens && cache->nseq != 1)
		return lcai_fail(LCA_ERR_SIZE,
			"%s: cu_seqlens is NULL but the cache holds %lld sequences", fn,
			(long long)cache->nseq);
	if ((s = lcai_resolve_cu(fn, cu_seqlens, cache->nseq, T, one, cu, &n)))
		return s;
	for (n = 0; n < cache->nseq; n++)
		if (cache->seq[n].retired && (*cu)[n + 1] > (*cu)[n])
			return lcai_fail(LCA_ERR_ARG,
				"%s: sequence %lld is retired: it takes no tokens until "
				"lca_cache_admit() gives it out again", fn, (long long)n);
	return LCA_OK;
}

/* Would any sequence pass the capacity? Checked before anything changes. */
static lca_status check_room(const char *fn, const lca_cache *c, const int64_t *cu)
{
	for (int64_t n = 0; n < c->nseq; n++) {
		int64_t t = cu[n + 1] - cu[n];

		if (t > c->capacity - c->seq[n].len)
			return lcai_fail(LCA_ERR_CAPACITY,
				"%s: sequence %lld holds %lld tokens; %lld more exceed "
				"the capacity %lld", fn, (long long)n, (long long)c->seq[n].len,
				(long long)t, (long long)c->capacity);
	}
	return LCA_OK;
}

/* Copy the new tokens of every sequence past its valid part (room was
 * reserved): a packed [T][row] tensor per buffer, in the plan's dtype.
 * Nothing reads them until len advances. */
static void append(lca_cache *c, const int64_t *cu, const void *x0, const void *x1)
{
	const char *x[2] = { x0, x1 };

	for (int64_t n = 0; n < c->nseq; n++) {
		int64_t t = cu[n + 1] - cu[n];

		for (int j = 0; j < 2 && t > 0; j++)
			lcai_kv_put(c, n, j, c->seq[n].len, t,
				x[j] + (size_t)(cu[n] * c->row[j]) * c->elt);
	}
}

/* The appended tokens become valid; softmax and mla fold their magnitude
 * into amax, which the range rule of the next steps reads. */
static void advance(lca_cache *c, const int64_t *cu)
{
	for (int64_t n = 0; n < c->nseq; n++) {
		struct lcai_cache_seq *s = &c->seq[n];
		int64_t t = cu[n + 1] - cu[n];

		for (int j = 0; j < 2 && t > 0 && lcai_cache_has_kv(c->p.variant); j++) {
			double m = lcai_kv_maxabs(c, n, j, s->len, s->len + t);

			if (m > s->amax[j])
				s->amax[j] = m;
		}
		s->len += t;
	}
}

void lcai_cache_rescan_seq(lca_cache *c, int64_t n)
{
	for (int j = 0; j < 2 && lcai_cache_has_kv(c->p.variant); j++)
		c->seq[n].amax[j] = lcai_kv_maxabs(c, n, j, 0, c->seq[n].len);
}

void lcai_cache_rescan(lca_cache *c)
{
	for (int64_t n = 0; n < c->nseq; n++)
		lcai_cache_rescan_seq(c, n);
}

/* Largest magnitude in the cache's j-th buffers and in x (the new tokens'
 * max |x|), and the most keys any stepped sequence will hold. */
static double cached_max(const lca_cache *c, int j, double x)
{
	for (int64_t n = 0; n < c->nseq; n++)
		if (c->seq[n].amax[j] > x)
			x = c->seq[n].amax[j];
	return x;
}

static int64_t keys_after(const lca_cache *c, const int64_t *cu)
{
	int64_t most = 0;

	for (int64_t n = 0; n < c->nseq; n++)
		if (c->seq[n].len + cu[n + 1] - cu[n] > most)
			most = c->seq[n].len + cu[n + 1] - cu[n];
	return most;
}

/* bf16 storage: a new key or value that would round to infinity is refused
 * (from 0x1.fep127, halfway past the largest bf16, 0x1.fcp127). */
static lca_status check_storable(const char *fn, const lca_cache *c,
	const void *x0, const void *x1, const int64_t *cu)
{
	const void *x[2] = { x0, x1 };

	if (c->store == c->p.dtype)
		return LCA_OK;
	for (int j = 0; j < 2; j++) {
		double m = lcai_maxabs(x[j], cu[c->nseq] * c->row[j], c->p.dtype);

		if (m >= 0x1.fep127)
			return lcai_fail(LCA_ERR_RANGE,
				"%s: a new %s value of magnitude %g overflows the cache's bf16 "
				"storage", fn, j ? "buffer-1" : "buffer-0", m);
	}
	return LCA_OK;
}

/* Capacity, growth and the append of a softmax or mla step, after the
 * arguments were checked. */
static lca_status kv_prepare(const char *fn, lca_cache *c, const int64_t *cu,
	const void *x0, const void *x1)
{
	lca_status s;

	if ((s = check_room(fn, c, cu)) || (s = check_storable(fn, c, x0, x1, cu)) ||
	    (s = lcai_kv_reserve(fn, c, cu)))
		return s;
	append(c, cu, x0, x1);
	return LCA_OK;
}

/* After a failed step: pages taken for its tokens go back to the pool. */
static lca_status kv_undo(lca_cache *c, lca_status s)
{
	for (int64_t n = 0; n < c->nseq; n++)
		lcai_kv_release(c, n, c->seq[n].len, 0);
	return s;
}

/* ---- the tokens a kernel reads --------------------------------------------- */

/* The cpu decode kernels read a sequence's pages and bf16 rows where they
 * lie (lcai_cpu_decode_direct); otherwise: sequence n's first tk tokens,
 * contiguous in the plan's dtype, as the reference and the prefill kernels
 * read them: its own buffers when they
 * hold exactly that, else a copy gathered from the pages and widened from
 * the storage type into tmp[] (the caller frees it; an O(tk) copy beside
 * an attention of O(tk) work per query). */
static lca_status kv_contig(const char *fn, const lca_cache *c, int64_t n, int64_t tk,
	const void *kv[2], void *tmp[2])
{
	tmp[0] = tmp[1] = NULL;
	if (!c->pool && c->store == c->p.dtype) {
		kv[0] = c->seq[n].buf[0];
		kv[1] = c->seq[n].buf[1];
		return LCA_OK;
	}
	for (int j = 0; j < 2; j++) {
		/* tk rows fit: tk <= capacity, checked at create */
		if (!(tmp[j] = malloc((size_t)(tk * c->row[j]) * c->elt + 1))) {
			free(tmp[0]);
			tmp[0] = NULL;
			return lcai_fail(LCA_ERR_NOMEM, "%s: no memory to gather %lld tokens",
				fn, (long long)tk);
		}
		lcai_kv_get(c, n, j, 0, tk, tmp[j]);
		kv[j] = tmp[j];
	}
	return LCA_OK;
}

/* kv[], contiguous in the plan's dtype, as a struct lcai_kv. */
static void flat_kv(const lca_cache *c, const void *const kv[2], struct lcai_kv *w)
{
	memset(w, 0, sizeof *w);
	w->store = c->p.dtype;
	w->row[0] = c->row[0];
	w->row[1] = c->row[1];
	w->buf[0] = kv[0];
	w->buf[1] = kv[1];
}

/* ---- the sequences of a step ------------------------------------------------ */

/*
 * Sequence n's new queries, t = cu[n + 1] - cu[n] of them, over its len + t
 * keys (the new keys already appended): bottom-right alignment puts them at
 * positions len .. len + t - 1, which is where they sit in the whole
 * sequence. x receives where its keys lie and its slices of the packed
 * tensors (q: q or q_nope, qr: q_rope or NULL, of dq and dr values per
 * head; o of dv), and is returned nonzero when the cpu decode kernels read
 * it as it lies.
 */
static int seq_call(const lca_cache *c, const lca_params *p, const int64_t *cu,
	int64_t n, const void *q, int64_t dq, const void *qr, void *o, void *lse,
	struct lcai_dec_seq *x)
{
	const int64_t t = cu[n + 1] - cu[n], i0 = cu[n];

	x->tq = t;
	x->tk = c->seq[n].len + t;
	lcai_kv_where(c, n, &x->kv);
	x->q = (const char *)q + (size_t)(i0 * p->H * dq) * c->elt;
	x->q_rope = qr ? (const char *)qr + (size_t)(i0 * p->H * p->dr) * c->elt : NULL;
	x->o = (char *)o + (size_t)(i0 * p->H * p->dv) * c->elt;
	x->lse = lse ? (char *)lse + (size_t)(i0 * p->H) * c->elt : NULL;
	return p->backend == LCA_BACKEND_CPU &&
		lcai_cpu_decode_direct(p, t, x->tk, &x->kv);
}

/* Room for the calls of a step's sequences with new tokens (a cache of
 * many slots may step a few). */
static struct lcai_dec_seq *seq_calls(const char *fn, const lca_cache *c,
	const int64_t *cu)
{
	struct lcai_dec_seq *d;
	int64_t k = 0;

	for (int64_t n = 0; n < c->nseq; n++)
		k += cu[n + 1] > cu[n];
	if (!(d = malloc((size_t)(k > 0 ? k : 1) * sizeof *d)))
		lcai_fail(LCA_ERR_NOMEM, "%s: no memory for %lld sequences", fn,
			(long long)k);
	return d;
}

/* Tensor arguments of a softmax or mla step (softmax: q; mla: q is q_nope). */
struct step_args {
	const void *q, *q_rope, *w_uk, *w_uv;
	void *o, *lse;
};

/* Sequence n of call x, which the decode kernels do not read where it lies:
 * gathered, then the cpu path or the reference. */
static lca_status seq_gathered(const char *fn, const lca_cache *c, int64_t n,
	const lca_params *p, const struct lcai_dec_seq *x, const struct step_args *a)
{
	const int64_t cq[2] = { 0, x->tq }, ck[2] = { 0, x->tk };
	const int naive = p->algo == LCA_ALGO_NAIVE;
	const void *kv[2];
	void *tmp[2];
	struct lcai_dec_seq y = *x;
	lca_status s;

	if ((s = kv_contig(fn, c, n, x->tk, kv, tmp)))
		return s;
	if (p->backend == LCA_BACKEND_CPU) {
		flat_kv(c, kv, &y.kv);
		s = p->variant == LCA_MLA ? lcai_cpu_mla_decode(p, 1, &y, a->w_uk, a->w_uv) :
			lcai_cpu_softmax_decode(p, 1, &y);
	} else if (p->variant != LCA_MLA && p->dtype == LCA_F32) {
		s = lcai_ref32_softmax(p, cq, ck, 1, x->q, kv[0], kv[1], x->o, x->lse);
	} else if (p->variant != LCA_MLA) {
		s = lcai_ref_softmax(p, cq, ck, 1, x->q, kv[0], kv[1], x->o, x->lse);
	} else if (p->dtype == LCA_F32) {
		s = (naive ? lcai_ref32_mla_naive : lcai_ref32_mla_absorbed)(p, cq, ck, 1,
			x->q, x->q_rope, kv[0], kv[1], a->w_uk, a->w_uv, x->o, x->lse);
	} else {
		s = (naive ? lcai_ref_mla_naive : lcai_ref_mla_absorbed)(p, cq, ck, 1,
			x->q, x->q_rope, kv[0], kv[1], a->w_uk, a->w_uv, x->o, x->lse);
	}
	free(tmp[0]);
	free(tmp[1]);
	return s;
}

/* Every sequence with new tokens of a softmax or mla step: those the decode
 * kernels read where they lie in one call (their keys shared out in one
 * parallel region), the others one by one. */
static lca_status steps_run(const char *fn, const lca_params *p,
	const lca_cache *c, const int64_t *cu, const struct step_args *a)
{
	const int mla = p->variant == LCA_MLA;
	struct lcai_dec_seq *d = seq_calls(fn, c, cu);
	int64_t nd = 0;
	lca_status s = LCA_OK;

	if (!d)
		return LCA_ERR_NOMEM;
	for (int64_t n = 0; n < c->nseq && !s; n++) {
		if (cu[n + 1] == cu[n])
			continue;
		if (seq_call(c, p, cu, n, a->q, mla ? p->dn : p->dk, a->q_rope, a->o,
		    a->lse, &d[nd]))
			nd++;
		else
			s = seq_gathered(fn, c, n, p, &d[nd], a);
	}
	if (!s && nd > 0)
		s = mla ? lcai_cpu_mla_decode(p, nd, d, a->w_uk, a->w_uv) :
			lcai_cpu_softmax_decode(p, nd, d);
	free(d);
	return s;
}

/* ---- softmax -------------------------------------------------------------- */

lca_status lca_softmax_step(const lca_plan *plan, lca_cache *cache,
	int64_t T, const void *q, const void *k, const void *v,
	const int64_t *cu_seqlens, void *o, void *lse)
{
	static const char fn[] = "lca_softmax_step";
	int64_t one[2];
	double m[3] = { 0 }; /* max |q|, |k|, |v| */
	const int64_t *cu;
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = step_begin(fn, plan, cache, LCA_SOFTMAX, T, cu_seqlens, one, &cu)))
		return s;
	p = &plan->p;
	struct lcai_targ a[] = {
		{ "q", q, 0, 0, 0 }, { "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 },
		{ "o", o, 0, 0, 0 }, { "lse", lse, 0, 1, 0 },
	};
	if ((s = lcai_count(fn, "q", &a[0].n, T, p->H, p->dk, 1)) ||
	    (s = lcai_count(fn, "k", &a[1].n, T, p->Hkv, p->dk, 1)) ||
	    (s = lcai_count(fn, "v", &a[2].n, T, p->Hkv, p->dv, 1)) ||
	    (s = lcai_count(fn, "o", &a[3].n, T, p->H, p->dv, 1)) ||
	    (s = lcai_count(fn, "lse", &a[4].n, T, p->H, 1, 1)) ||
	    (s = lcai_check_targs(fn, p, a, 5)) ||
	    (s = lcai_check_overlap(fn, p, a, 3, 5)) || (s = lcai_check_finite(fn, p, a, 3, m)))
		return s;
	/* the keys and values already cached count as inputs */
	m[1] = cached_max(cache, 0, m[1]);
	m[2] = cached_max(cache, 1, m[2]);
	if ((s = lcai_check_range_softmax(fn, p, m, keys_after(cache, cu))) ||
	    (s = kv_prepare(fn, cache, cu, k, v)))
		return s;
	const struct step_args args = { q, NULL, NULL, NULL, o, lse };

	if ((s = steps_run(fn, p, cache, cu, &args)))
		return kv_undo(cache, s);
	advance(cache, cu);
	return LCA_OK;
}

/* ---- mla ------------------------------------------------------------------ */

lca_status lca_mla_step(const lca_plan *plan, lca_cache *cache,
	int64_t T, const void *q_nope, const void *q_rope, const void *ckv,
	const void *k_rope, const void *w_uk, const void *w_uv,
	const int64_t *cu_seqlens, void *o, void *lse)
{
	static const char fn[] = "lca_mla_step";
	int64_t one[2];
	double m[6] = { 0 }; /* max |x| of the tensors, in argument order */
	const int64_t *cu;
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = step_begin(fn, plan, cache, LCA_MLA, T, cu_seqlens, one, &cu)))
		return s;
	p = &plan->p;
	struct lcai_targ a[] = {
		{ "q_nope", q_nope, 0, 0, 0 }, { "q_rope", q_rope, 0, 0, 0 }, { "ckv", ckv, 0, 0, 0 },
		{ "k_rope", k_rope, 0, 0, 0 }, { "w_uk", w_uk, 0, 0, 0 }, { "w_uv", w_uv, 0, 0, 0 },
		{ "o", o, 0, 0, 0 }, { "lse", lse, 0, 1, 0 },
	};
	if ((s = lcai_count(fn, "q_nope", &a[0].n, T, p->H, p->dn, 1)) ||
	    (s = lcai_count(fn, "q_rope", &a[1].n, T, p->H, p->dr, 1)) ||
	    (s = lcai_count(fn, "ckv", &a[2].n, T, p->dc, 1, 1)) ||
	    (s = lcai_count(fn, "k_rope", &a[3].n, T, p->dr, 1, 1)) ||
	    (s = lcai_count(fn, "w_uk", &a[4].n, p->H, p->dn, p->dc, 1)) ||
	    (s = lcai_count(fn, "w_uv", &a[5].n, p->H, p->dv, p->dc, 1)) ||
	    (s = lcai_count(fn, "o", &a[6].n, T, p->H, p->dv, 1)) ||
	    (s = lcai_count(fn, "lse", &a[7].n, T, p->H, 1, 1)) ||
	    (s = lcai_check_targs(fn, p, a, 8)) ||
	    (s = lcai_check_overlap(fn, p, a, 6, 8)) || (s = lcai_check_finite(fn, p, a, 6, m)))
		return s;
	m[2] = cached_max(cache, 0, m[2]);
	m[3] = cached_max(cache, 1, m[3]);
	if ((s = lcai_check_range_mla(fn, p, m, keys_after(cache, cu))) ||
	    (s = kv_prepare(fn, cache, cu, ckv, k_rope)))
		return s;
	const struct step_args args = { q_nope, q_rope, w_uk, w_uv, o, lse };

	if ((s = steps_run(fn, p, cache, cu, &args)))
		return kv_undo(cache, s);
	advance(cache, cu);
	return LCA_OK;
}

/* ---- deltanet and lightning ----------------------------------------------- */

/*
 * The states of all sequences are one [nseq][H][dk][dv] block, so the step
 * is one packed forward call with state0 = state = that block: a sequence
 * with no new tokens passes its state through unchanged, and kernels read
 * a state slot whole before they write it, so the aliasing is safe.
 */
static lca_status deltanet_run(const lca_params *p, lca_cache *c, const int64_t *cu,
	const void *q, const void *k, const void *v, const void *g, const void *beta,
	void *o)
{
	int64_t n = c->nseq;
	void *S = c->state;

	if (p->backend == LCA_BACKEND_CPU)
		return lcai_cpu_deltanet(p, cu, n, q, k, v, g, beta, S, o, S);
	if (p->dtype == LCA_F32)
		return (p->algo == LCA_ALGO_CHUNKED ? lcai_ref32_deltanet_chunked :
			lcai_ref32_deltanet_recurrent)(p, cu, n, q, k, v, g, beta, S, o, S);
	return (p->algo == LCA_ALGO_CHUNKED ? lcai_ref_deltanet_chunked :
		lcai_ref_deltanet_recurrent)(p, cu, n, q, k, v, g, beta, S, o, S);
}

lca_status lca_deltanet_step(const lca_plan *plan, lca_cache *cache,
	int64_t T, const void *q, const void *k, const void *v, const void *g,
	const void *beta, const int64_t *cu_seqlens, void *o)
{
	static const char fn[] = "lca_deltanet_step";
	int64_t one[2];
	const int64_t *cu;
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = step_begin(fn, plan, cache, LCA_DELTANET, T, cu_seqlens, one, &cu)))
		return s;
	p = &plan->p;
	struct lcai_targ a[] = {
		{ "q", q, 0, 0, 0 }, { "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 }, { "g", g, 0, 0, 0 },
		{ "beta", beta, 0, 0, 0 }, { "o", o, 0, 0, 0 },
	};
	if ((s = lcai_count(fn, "q", &a[0].n, T, p->Hk, p->dk, 1)) ||
	    (s = lcai_count(fn, "k", &a[1].n, T, p->Hk, p->dk, 1)) ||
	    (s = lcai_count(fn, "v", &a[2].n, T, p->H, p->dv, 1)) ||
	    (s = lcai_count(fn, "g", &a[3].n, T, p->H, 1, 1)) ||
	    (s = lcai_count(fn, "beta", &a[4].n, T, p->H, 1, 1)) ||
	    (s = lcai_count(fn, "o", &a[5].n, T, p->H, p->dv, 1)) ||
	    (s = lcai_check_targs(fn, p, a, 6)) ||
	    (s = lcai_check_overlap(fn, p, a, 5, 6)) || (s = lcai_check_finite(fn, p, a, 5, NULL)) ||
	    (s = lcai_check_sign(fn, "g", g, a[3].n, p, -1, "g <= 0")) ||
	    (s = check_room(fn, cache, cu)) ||
	    (s = deltanet_run(p, cache, cu, q, k, v, g, beta, o)))
		return s;
	advance(cache, cu);
	return LCA_OK;
}

static lca_status lightning_run(const lca_params *p, lca_cache *c, const int64_t *cu,
	const void *q, const void *k, const void *v, const void *slope, void *o)
{
	int64_t n = c->nseq;
	void *S = c->state;

	if (p->backend == LCA_BACKEND_CPU)
		return lcai_cpu_lightning(p, cu, n, q, k, v, slope, S, o, S);
	if (p->dtype == LCA_F32)
		return (p->algo == LCA_ALGO_CHUNKED ? lcai_ref32_lightning_blockwise :
			lcai_ref32_lightning_recurrent)(p, cu, n, q, k, v, slope, S, o, S);
	return (p->algo == LCA_ALGO_CHUNKED ? lcai_ref_lightning_blockwise :
		lcai_ref_lightning_recurrent)(p, cu, n, q, k, v, slope, S, o, S);
}

lca_status lca_lightning_step(const lca_plan *plan, lca_cache *cache,
	int64_t T, const void *q, const void *k, const void *v,
	const void *slope, const int64_t *cu_seqlens, void *o)
{
	static const char fn[] = "lca_lightning_step";
	int64_t one[2];
	const int64_t *cu;
	const lca_params *p;
	lca_status s;

	lcai_clear_error();
	if ((s = step_begin(fn, plan, cache, LCA_LIGHTNING, T, cu_seqlens, one, &cu)))
		return s;
	p = &plan->p;
	struct lcai_targ a[] = {
		{ "q", q, 0, 0, 0 }, { "k", k, 0, 0, 0 }, { "v", v, 0, 0, 0 },
		{ "slope", slope, p->H, 0, 0 }, { "o", o, 0, 0, 0 },
	};
	if ((s = lcai_count(fn, "q", &a[0].n, T, p->H, p->dk, 1)) ||
	    (s = lcai_count(fn, "k", &a[1].n, T, p->H, p->dk, 1)) ||
	    (s = lcai_count(fn, "v", &a[2].n, T, p->H, p->dv, 1)) ||
	    (s = lcai_count(fn, "o", &a[4].n, T, p->H, p->dv, 1)) ||
	    (s = lcai_check_targs(fn, p, a, 5)) ||
	    (s = lcai_check_overlap(fn, p, a, 4, 5)) || (s = lcai_check_finite(fn, p, a, 4, NULL)) ||
	    (s = lcai_check_sign(fn, "slope", slope, p->H, p, 1, "slope >= 0")) ||
	    (s = check_room(fn, cache, cu)) ||
	    (s = lightning_run(p, cache, cu, q, k, v, slope, o)))
		return s;
	advance(cache, cu);
	return LCA_OK;
}
