/*
 * cache_seq.c - per-sequence control of a decode cache, for servers that
 * admit and retire sequences while others run, fork them, roll them back
 * and seed or read recurrent states (lca_cache_admit(3) and the pages it
 * names).
 *
 * Every call touches its own sequence (fork: the destination) and nothing
 * else, so the other sequences continue bit for bit as in a cache that
 * never saw the call. Every call validates and allocates before it writes:
 * on any error the cache is as it was.
 *
 * Slots: a cache has nseq slots, fixed at creation, all live and empty. A
 * retired slot holds nothing (its buffers are freed, its state is zero)
 * and steps may not feed it; lca_cache_admit() gives the lowest retired
 * slot out again, empty; a fork may also write into a retired slot.
 *
 * Forks: in a paged cache the destination shares the source's pages
 * (copy-on-write, cache_store.c), so a shared prompt is stored once; a
 * cache without a pool copies the tokens into the destination's own
 * buffers.
 */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

/* cache non-NULL, seq a slot of it and, when live, not retired. */
static lca_status check_seq(const char *fn, const lca_cache *c, const char *name,
	int64_t seq, int live)
{
	if (!c)
		return lcai_fail(LCA_ERR_NULL, "%s: cache is NULL", fn);
	if (seq < 0 || seq >= c->nseq)
		return lcai_fail(LCA_ERR_ARG, "%s: %s = %lld is outside [0, %lld)", fn, name,
			(long long)seq, (long long)c->nseq);
	if (live && c->seq[seq].retired)
		return lcai_fail(LCA_ERR_ARG,
			"%s: %s = %lld is a retired sequence (lca_cache_admit() gives it out again)",
			fn, name, (long long)seq);
	return LCA_OK;
}

/* The calls that make sense for one kind of cache only. */
static lca_status check_kind(const char *fn, const lca_cache *c, int want_kv)
{
	static const char *const names[] = { "a softmax", "an mla", "a deltanet", "a lightning" };

	if (lcai_cache_has_kv(c->p.variant) == want_kv)
		return LCA_OK;
	return lcai_fail(LCA_ERR_UNSUPPORTED, want_kv ?
		"%s: %s cache keeps a state, not tokens: use lca_cache_snapshot() and "
		"lca_cache_restore() to go back" :
		"%s: %s cache keeps keys and values, not a state", fn,
		names[c->p.variant]);
}

/* Sequence n loses every token: length 0, state zero, storage kept. */
static void empty(lca_cache *c, int64_t n)
{
	struct lcai_cache_seq *s = &c->seq[n];

	s->len = 0;
	s->amax[0] = s->amax[1] = 0;
	if (lcai_cache_has_kv(c->p.variant))
		lcai_kv_release(c, n, 0, 0);
	if (c->state)
		memset(lcai_cache_state(c, n), 0, (size_t)c->nstate * c->elt);
	lcai_cache_bump(c, n);
}

lca_status lca_cache_reset_seq(lca_cache *cache, int64_t seq)
{
	lca_status s;

	lcai_clear_error();
	if ((s = check_seq("lca_cache_reset_seq", cache, "seq", seq, 1)))
		return s;
	empty(cache, seq);
	return LCA_OK;
}

/* ---- slots ----------------------------------------------------------------- */

lca_status lca_cache_retire(lca_cache *cache, int64_t seq)
{
	struct lcai_cache_seq *q;
	lca_status s;

	lcai_clear_error();
	if ((s = check_seq("lca_cache_retire", cache, "seq", seq, 1)))
		return s;
	empty(cache, seq);
	q = &cache->seq[seq];
	if (lcai_cache_has_kv(cache->p.variant))
		lcai_kv_release(cache, seq, 0, 1);
	q->retired = 1;
	return LCA_OK;
}

lca_status lca_cache_admit(lca_cache *cache, int64_t *seq)
{
	static const char fn[] = "lca_cache_admit";

	lcai_clear_error();
	if (!cache || !seq)
		return lcai_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, cache ? "seq" : "cache");
	for (int64_t n = 0; n < cache->nseq; n++)
		if (cache->seq[n].retired) {
			cache->seq[n].retired = 0;
			*seq = n;
			return LCA_OK;
		}
	return lcai_fail(LCA_ERR_CAPACITY,
		"%s: every slot holds a live sequence (%lld of %lld; retire one first)", fn,
		(long long)cache->nseq, (long long)cache->nseq);
}

/* ---- softmax, mla: truncate ------------------------------------------------ */

/* Keep the first n tokens of live sequence seq (n <= its length). The
 * magnitudes of the kept tokens are amax when given (a snapshot's: O(1)),
 * else found by a pass over them. */
static void cut(lca_cache *c, int64_t seq, int64_t n, const double *amax)
{
	struct lcai_cache_seq *s = &c->seq[seq];

	if (n == s->len)
		return;
	s->len = n;
	lcai_kv_release(c, seq, n, 0);
	if (amax) {
		s->amax[0] = amax[0];
		s->amax[1] = amax[1];
	} else {
		lcai_cache_rescan_seq(c, seq);
	}
	lcai_cache_bump(c, seq);
}

lca_status lca_cache_truncate(lca_cache *cache, int64_t seq, int64_t n)
{
	static const char fn[] = "lca_cache_truncate";
	lca_status s;

	lcai_clear_error();
	if ((s = check_seq(fn, cache, "seq", seq, 1)) || (s = check_kind(fn, cache, 1)))
		return s;
	if (n < 0 || n > cache->seq[seq].len)
		return lcai_fail(LCA_ERR_ARG, "%s: n = %lld is outside [0, %lld], the length of "
			"sequence %lld", fn, (long long)n, (long long)cache->seq[seq].len,
			(long long)seq);
	cut(cache, seq, n, NULL);
	return LCA_OK;
}

/* ---- fork ------------------------------------------------------------------ */

lca_status lca_cache_fork(lca_cache *cache, int64_t src, int64_t dst)
{
	static const char fn[] = "lca_cache_fork";
	struct lcai_cache_seq *a, *d;
	lca_status s;

	lcai_clear_error();
	if ((s = check_seq(fn, cache, "src", src, 1)) ||
	    (s = check_seq(fn, cache, "dst", dst, 0)))
		return s;
	if (src == dst)
		return lcai_fail(LCA_ERR_ARG, "%s: src and dst are both %lld", fn, (long long)src);
	a = &cache->seq[src];
	d = &cache->seq[dst];
	if (lcai_cache_has_kv(cache->p.variant)) {
		if ((s = lcai_kv_share(fn, cache, src, dst)))
			return s;
		d->amax[0] = a->amax[0];
		d->amax[1] = a->amax[1];
	}
	if (cache->state)
		memcpy(lcai_cache_state(cache, dst), lcai_cache_state(cache, src),
			(size_t)cache->nstate * cache->elt);
	d->len = a->len;
	d->retired = 0;
	lcai_cache_bump(cache, dst);
	return LCA_OK;
}

/* ---- deltanet, lightning: states ------------------------------------------- */

lca_status lca_cache_get_state(const lca_cache *cache, int64_t seq, void *state)
{
	static const char fn[] = "lca_cache_get_state";
	lca_status s;

	lcai_clear_error();
	if ((s = check_seq(fn, cache, "seq", seq, 1)) || (s = check_kind(fn, cache, 0)))
		return s;
	if (!state)
		return lcai_fail(LCA_ERR_NULL, "%s: state is NULL", fn);
	memcpy(state, lcai_cache_state(cache, seq), (size_t)cache->nstate * cache->elt);
	return LCA_OK;
}

lca_status lca_cache_set_state(lca_cache *cache, int64_t seq, const void *state,
	int64_t len)
{
	static const char fn[] = "lca_cache_set_state";
	struct lcai_targ t = { "state", state, 0, 0, 1 };
	lca_status s;

	lcai_clear_error();
	if ((s = check_seq(fn, cache, "seq", seq, 1)) || (s = check_kind(fn, cache, 0)))
		return s;
	if (!state)
		return lcai_fail(LCA_ERR_NULL, "%s: state is NULL", fn);
	if (len < 0 || len > cache->capacity)
		return lcai_fail(LCA_ERR_ARG, "%s: len = %lld is outside [0, capacity %lld]", fn,
			(long long)len, (long long)cache->capacity);
	t.n = cache->nstate;
	if ((s = lcai_check_finite(fn, &cache->p, &t, 1, NULL)))
		return s;
	memcpy(lcai_cache_state(cache, seq), state, (size_t)cache->nstate * cache->elt);
	cache->seq[seq].len = len;
	lcai_cache_bump(cache, seq);
	return LCA_OK;
}

/* ---- snapshots ------------------------------------------------------------- */

void lca_snapshot_destroy(lca_snapshot *snap)
{
	if (!snap)
		return;
	free(snap->state);
	free(snap);
}

lca_status lca_cache_snapshot(const lca_cache *cache, int64_t seq, lca_snapshot **snap)
{
	static const char fn[] = "lca_cache_snapshot";
	lca_snapshot *x;
	lca_status s;

	lcai_clear_error();
	if (!snap)
		return lcai_fail(LCA_ERR_NULL, "%s: snap is NULL", fn);
	*snap = NULL;
	if ((s = check_seq(fn, cache, "seq", seq, 1)))
		return s;
	if (!(x = calloc(1, sizeof *x)))
		return lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
	x->variant = cache->p.variant;
	x->dtype = cache->p.dtype;
	lcai_cache_dims(&cache->p, x->dims);
	x->cache = cache;
	x->seq = seq;
	x->epoch = cache->seq[seq].epoch;
	x->len = cache->seq[seq].len;
	x->amax[0] = cache->seq[seq].amax[0];
	x->amax[1] = cache->seq[seq].amax[1];
	if (cache->state) {
		x->bytes = (size_t)cache->nstate * cache->elt;
		if (!(x->state = malloc(x->bytes))) {
			free(x);
			return lcai_fail(LCA_ERR_NOMEM, "%s: no memory for a state of %zu bytes",
				fn, (size_t)cache->nstate * cache->elt);
		}
		memcpy(x->state, lcai_cache_state(cache, seq), x->bytes);
	}
	*snap = x;
	return LCA_OK;
}

/* Can snapshot x go back into sequence seq of c? */
static lca_status check_snapshot(const char *fn, const lca_cache *c, int64_t seq,
	const lca_snapshot *x)
{
	int64_t d[LCAI_NDIM];

	lcai_cache_dims(&c->p, d);
	if (x->variant != c->p.variant || x->dtype != c->p.dtype ||
	    memcmp(d, x->dims, sizeof d) != 0)
		return lcai_fail(LCA_ERR_ARG,
			"%s: the snapshot was taken of a cache of another variant, dtype or size", fn);
	if (!lcai_cache_has_kv(c->p.variant)) {
		if (x->len > c->capacity)
			return lcai_fail(LCA_ERR_CAPACITY,
				"%s: the snapshot holds %lld tokens, more than the capacity %lld",
				fn, (long long)x->len, (long long)c->capacity);
		return LCA_OK;
	}
	if (x->cache != c || x->seq != seq)
		return lcai_fail(LCA_ERR_ARG, "%s: a %s snapshot is a length: it goes back into "
			"the sequence it was taken of (%lld), not %lld", fn,
			c->p.variant == LCA_SOFTMAX ? "softmax" : "mla", (long long)x->seq,
			(long long)seq);
	if (x->epoch != c->seq[seq].epoch || x->len > c->seq[seq].len)
		return lcai_fail(LCA_ERR_ARG, "%s: the snapshot is stale: sequence %lld lost "
			"tokens since it was taken", fn, (long long)seq);
	return LCA_OK;
}

lca_status lca_cache_restore(lca_cache *cache, int64_t seq, const lca_snapshot *snap)
{
	static const char fn[] = "lca_cache_restore";
	lca_status s;

	lcai_clear_error();
	if ((s = check_seq(fn, cache, "seq", seq, 1)))
		return s;
	if (!snap)
		return lcai_fail(LCA_ERR_NULL, "%s: snap is NULL", fn);
	if ((s = check_snapshot(fn, cache, seq, snap)))
		return s;
	if (lcai_cache_has_kv(cache->p.variant)) {
		cut(cache, seq, snap->len, snap->amax);
		return LCA_OK;
	}
	memcpy(lcai_cache_state(cache, seq), snap->state, snap->bytes);
	cache->seq[seq].len = snap->len;
	lcai_cache_bump(cache, seq);
	return LCA_OK;
}
