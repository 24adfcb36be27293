/*
 * cache_store.c - where the tokens of a softmax or mla sequence live: in
 * the sequence's own buffers, grown geometrically up to the capacity, or
 * in pages of one pool that every sequence of the cache draws from, the
 * way vLLM's paged attention and FlashMLA keep their caches.
 *
 * Pages: the pool is allocated at creation (one byte budget for all
 * sequences) and cut into pages of LCA_CACHE_PAGE tokens; a page holds the
 * page's rows of buffer 0, then of buffer 1, so one page-table entry
 * locates both. Each sequence has a page table pt[] (entry i: its tokens
 * [64 i, 64 i + 64)) and each page a count of the sequences holding it: a
 * fork copies the page table and counts one more holder per page, so a
 * shared prompt is stored once. A page is written only by a sequence that
 * holds it alone; a step that would write into a shared last page (a fork
 * that both sides extend) first copies it (copy-on-write). Whole pages
 * are never written after they fill, so only the last page is ever copied.
 *
 * Storage type: rows are stored in the plan's dtype or in bf16 (f32 and f64
 * plans): put rounds to nearest bf16, ties to even, get widens exactly.
 */
#include "cache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GROWTH 2 /* own buffers grow to at least GROWTH x their allocation */

/* ---- bf16 ------------------------------------------------------------------- */

/* Nearest bf16 of a finite or infinite float, ties to even (NaN never
 * reaches here: step inputs are checked finite). */
static uint16_t to_bf16(float f)
{
	uint32_t b;

	memcpy(&b, &f, sizeof b);
	b += 0x7fffu + ((b >> 16) & 1u);
	return (uint16_t)(b >> 16);
}

static float from_bf16(uint16_t h)
{
	uint32_t b = (uint32_t)h << 16;
	float f;

	memcpy(&f, &b, sizeof f);
	return f;
}

/* x rounded to float with round-to-odd: toward zero, the last bit set when
 * inexact. With 24 >= 8 + 2 bits, rounding that to bf16 to nearest gives
 * the nearest bf16 of x itself (no double rounding). */
static float to_float_odd(double x)
{
	float f = (float)x;
	uint32_t b;

	if ((double)f == x || !isfinite(f))
		return f;
	if (fabs((double)f) > fabs(x))
		f = nextafterf(f, 0.0f);
	memcpy(&b, &f, sizeof b);
	b |= 1u;
	memcpy(&f, &b, sizeof f);
	return f;
}

/* n elements from the plan's dtype (f32 or f64) to bf16, and back. */
static void round_row(uint16_t *dst, const void *src, int64_t n, lca_dtype t)
{
	for (int64_t i = 0; i < n; i++)
		dst[i] = to_bf16(t == LCA_F32 ? ((const float *)src)[i] :
			to_float_odd(((const double *)src)[i]));
}

static void widen_row(void *dst, const uint16_t *src, int64_t n, lca_dtype t)
{
	for (int64_t i = 0; i < n; i++)
		if (t == LCA_F32)
			((float *)dst)[i] = from_bf16(src[i]);
		else
			((double *)dst)[i] = from_bf16(src[i]);
}

/* ---- rows ------------------------------------------------------------------- */

static char *page(const struct lcai_pool *P, int32_t i)
{
	return P->mem + (size_t)i * P->page_bytes;
}

/* Offset of buffer j's rows in a page. */
static size_t page_off(const lca_cache *c, int j)
{
	return j ? (size_t)LCA_CACHE_PAGE * lcai_kv_row_bytes(c, 0) : 0;
}

void *lcai_kv_row(const lca_cache *c, int64_t n, int j, int64_t s)
{
	const struct lcai_cache_seq *q = &c->seq[n];

	if (!c->pool)
		return (char *)q->buf[j] + (size_t)s * lcai_kv_row_bytes(c, j);
	return page(c->pool, q->pt[s / LCA_CACHE_PAGE]) + page_off(c, j) +
		(size_t)(s % LCA_CACHE_PAGE) * lcai_kv_row_bytes(c, j);
}

void lcai_kv_put(lca_cache *c, int64_t n, int j, int64_t s, int64_t t, const void *x)
{
	const size_t in = (size_t)c->row[j] * c->elt;

	for (int64_t i = 0; i < t; i++) {
		void *dst = lcai_kv_row(c, n, j, s + i);
		const char *src = (const char *)x + (size_t)i * in;

		if (c->store == c->p.dtype)
			memcpy(dst, src, in);
		else
			round_row(dst, src, c->row[j], c->p.dtype);
	}
}

void lcai_kv_get(const lca_cache *c, int64_t n, int j, int64_t s, int64_t t, void *x)
{
	const size_t out = (size_t)c->row[j] * c->elt;

	for (int64_t i = 0; i < t; i++) {
		const void *src = lcai_kv_row(c, n, j, s + i);
		char *dst = (char *)x + (size_t)i * out;

		if (c->store == c->p.dtype)
			memcpy(dst, src, out);
		else
			widen_row(dst, src, c->row[j], c->p.dtype);
	}
}

double lcai_kv_maxabs(const lca_cache *c, int64_t n, int j, int64_t s0, int64_t s1)
{
	double m = 0;

	for (int64_t s = s0; s < s1; s++) {
		double x = lcai_maxabs(lcai_kv_row(c, n, j, s), c->row[j], c->store);

		if (x > m)
			m = x;
	}
	return m;
}

void lcai_kv_where(const lca_cache *c, int64_t n, struct lcai_kv *kv)
{
	memset(kv, 0, sizeof *kv);
	kv->store = c->store;
	kv->row[0] = c->row[0];
	kv->row[1] = c->row[1];
	if (!c->pool) {
		kv->buf[0] = c->seq[n].buf[0];
		kv->buf[1] = c->seq[n].buf[1];
		return;
	}
	kv->pool = c->pool->mem;
	kv->pt = c->seq[n].pt;
	kv->page_bytes = c->pool->page_bytes;
	kv->off[0] = page_off(c, 0);
	kv->off[1] = page_off(c, 1);
}

/* ---- the pool --------------------------------------------------------------- */

lca_status lcai_kv_pool_create(const char *fn, lca_cache *c, size_t pool_bytes)
{
	struct lcai_pool *P;
	int64_t pb;

	/* LCA_CACHE_PAGE rows of both buffers: fits, as capacity >= 1 rows do
	 * not guarantee it, so checked here */
	if (!lcai_mul(LCA_CACHE_PAGE, c->row[0] + c->row[1], &pb) ||
	    !lcai_cache_bytes_of(pb, c->selt, &pb))
		return lcai_fail(LCA_ERR_OVERFLOW, "%s: a page of %d tokens overflows", fn,
			LCA_CACHE_PAGE);
	if (pool_bytes / (size_t)pb < 1)
		return lcai_fail(LCA_ERR_SIZE,
			"%s: pool_bytes = %zu holds no page (a page of %d tokens is %lld bytes)",
			fn, pool_bytes, LCA_CACHE_PAGE, (long long)pb);
	if (pool_bytes / (size_t)pb > INT32_MAX)
		return lcai_fail(LCA_ERR_SIZE, "%s: pool_bytes = %zu makes more than %d pages",
			fn, pool_bytes, INT32_MAX);
	if (!(P = calloc(1, sizeof *P)))
		return lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
	c->pool = P;
	P->page_bytes = (size_t)pb;
	P->npages = (int64_t)(pool_bytes / (size_t)pb);
	P->mem = malloc((size_t)P->npages * P->page_bytes);
	P->ref = calloc((size_t)P->npages, sizeof *P->ref);
	P->free = malloc((size_t)P->npages * sizeof *P->free);
	if (!P->mem || !P->ref || !P->free)
		return lcai_fail(LCA_ERR_NOMEM, "%s: no memory for a pool of %lld pages (%zu bytes)",
			fn, (long long)P->npages, (size_t)P->npages * P->page_bytes);
	/* lowest page on top: a fresh pool fills from its start */
	for (int64_t i = 0; i < P->npages; i++)
		P->free[i] = (int32_t)(P->npages - 1 - i);
	P->nfree = P->npages;
	return LCA_OK;
}

void lcai_kv_pool_destroy(lca_cache *c)
{
	if (!c->pool)
		return;
	free(c->pool->mem);
	free(c->pool->ref);
	free(c->pool->free);
	free(c->pool);
	c->pool = NULL;
}

static int32_t take_page(struct lcai_pool *P)
{
	int32_t i = P->free[--P->nfree];

	P->ref[i] = 1;
	return i;
}

static void drop_page(struct lcai_pool *P, int32_t i)
{
	if (--P->ref[i] == 0)
		P->free[P->nfree++] = i;
}

/* Room for want entries in q's page table (contents kept). */
static lca_status pt_room(const char *fn, struct lcai_cache_seq *q, int64_t want)
{
	int32_t *np;
	int64_t cap = q->ptcap;

	if (want <= cap)
		return LCA_OK;
	cap = cap > INT64_MAX / GROWTH ? want : GROWTH * cap;
	if (cap < want)
		cap = want;
	if ((uint64_t)cap > SIZE_MAX / sizeof *np ||
	    !(np = realloc(q->pt, (size_t)cap * sizeof *np)))
		return lcai_fail(LCA_ERR_NOMEM, "%s: no memory for a page table of %lld pages",
			fn, (long long)want);
	q->pt = np;
	q->ptcap = cap;
	return LCA_OK;
}

/* Would sequence q, holding len valid tokens, write into a shared page
 * when it appends? Only its last, partly filled page can be shared and
 * written. */
static int needs_copy(const lca_cache *c, const struct lcai_cache_seq *q, int64_t t)
{
	return t > 0 && q->len % LCA_CACHE_PAGE != 0 &&
		c->pool->ref[q->pt[q->len / LCA_CACHE_PAGE]] > 1;
}

/* The copies a step makes of shared pages: the sequences that write into a
 * shared page copy it in order, but when all its holders write, the last
 * finds itself alone and writes in place (as reserve_pages does). */
static int64_t copies(const lca_cache *c, const int64_t *cu)
{
	int64_t k = 0;

	for (int64_t n = 0; n < c->nseq; n++) {
		const struct lcai_cache_seq *q = &c->seq[n];
		int64_t writers = 0, later = 0;
		int32_t pg;

		if (!needs_copy(c, q, cu[n + 1] - cu[n]))
			continue;
		pg = q->pt[q->len / LCA_CACHE_PAGE];
		for (int64_t m = 0; m < c->nseq; m++)
			if (needs_copy(c, &c->seq[m], cu[m + 1] - cu[m]) &&
			    c->seq[m].pt[c->seq[m].len / LCA_CACHE_PAGE] == pg) {
				writers++;
				later += m > n;
			}
		k += !(writers == c->pool->ref[pg] && later == 0);
	}
	return k;
}

static lca_status reserve_pages(const char *fn, lca_cache *c, const int64_t *cu)
{
	struct lcai_pool *P = c->pool;
	int64_t need = copies(c, cu);
	lca_status s;

	for (int64_t n = 0; n < c->nseq; n++) {
		struct lcai_cache_seq *q = &c->seq[n];
		int64_t t = cu[n + 1] - cu[n], pages = lcai_kv_pages(q->len + t);

		if ((s = pt_room(fn, q, pages)))
			return s;
		need += pages > q->npt ? pages - q->npt : 0;
	}
	if (need > P->nfree)
		return lcai_fail(LCA_ERR_CAPACITY,
			"%s: the pool is exhausted: the step needs %lld more pages, %lld of %lld "
			"are free (retire, truncate or reset sequences, or make a larger pool)",
			fn, (long long)need, (long long)P->nfree, (long long)P->npages);
	for (int64_t n = 0; n < c->nseq; n++) {
		struct lcai_cache_seq *q = &c->seq[n];
		int64_t t = cu[n + 1] - cu[n], pages = lcai_kv_pages(q->len + t);

		if (needs_copy(c, q, t)) {
			int64_t i = q->len / LCA_CACHE_PAGE;
			int32_t fresh = take_page(P);

			memcpy(page(P, fresh), page(P, q->pt[i]), P->page_bytes);
			drop_page(P, q->pt[i]);
			q->pt[i] = fresh;
		}
		while (q->npt < pages)
			q->pt[q->npt++] = take_page(P);
	}
	return LCA_OK;
}

/* ---- own buffers ------------------------------------------------------------ */

/* Room for need tokens in buffer j of q: at least GROWTH times the current
 * allocation, at most the capacity (all sizes fit: create). */
static lca_status grow_buf(const char *fn, const lca_cache *c, struct lcai_cache_seq *q,
	int j, int64_t need)
{
	int64_t cap = q->cap[j];
	void *nb;

	if (need <= cap)
		return LCA_OK;
	cap = cap > c->capacity / GROWTH ? c->capacity : GROWTH * cap;
	if (cap < need)
		cap = need;
	nb = realloc(q->buf[j], (size_t)cap * lcai_kv_row_bytes(c, j));
	if (!nb)
		return lcai_fail(LCA_ERR_NOMEM, "%s: no memory to grow a cache to %lld tokens",
			fn, (long long)cap);
	q->buf[j] = nb;
	q->cap[j] = cap;
	return LCA_OK;
}

lca_status lcai_kv_reserve(const char *fn, lca_cache *c, const int64_t *cu)
{
	lca_status s;

	if (c->pool)
		return reserve_pages(fn, c, cu);
	for (int64_t n = 0; n < c->nseq; n++) {
		struct lcai_cache_seq *q = &c->seq[n];
		int64_t need = q->len + (cu[n + 1] - cu[n]);

		if ((s = grow_buf(fn, c, q, 0, need)) || (s = grow_buf(fn, c, q, 1, need)))
			return s;
	}
	return LCA_OK;
}

void lcai_kv_release(lca_cache *c, int64_t n, int64_t keep, int all)
{
	struct lcai_cache_seq *q = &c->seq[n];

	if (c->pool) {
		int64_t pages = lcai_kv_pages(keep);

		while (q->npt > pages)
			drop_page(c->pool, q->pt[--q->npt]);
		if (all) {
			free(q->pt);
			q->pt = NULL;
			q->ptcap = 0;
		}
		return;
	}
	if (!all)
		return;
	for (int j = 0; j < 2; j++) {
		free(q->buf[j]);
		q->buf[j] = NULL;
		q->cap[j] = 0;
	}
}

/* ---- fork ------------------------------------------------------------------- */

/* Own buffers: dst gets a copy of src's len tokens, in fresh buffers where
 * its own are too small (staged first: all or nothing). */
static lca_status copy_tokens(const char *fn, lca_cache *c, int64_t src, int64_t dst)
{
	struct lcai_cache_seq *a = &c->seq[src], *d = &c->seq[dst];
	void *fresh[2] = { NULL, NULL };

	for (int j = 0; j < 2; j++) {
		if (a->len <= d->cap[j])
			continue;
		if (!(fresh[j] = malloc((size_t)a->len * lcai_kv_row_bytes(c, j)))) {
			free(fresh[0]);
			return lcai_fail(LCA_ERR_NOMEM, "%s: no memory for %lld tokens", fn,
				(long long)a->len);
		}
	}
	for (int j = 0; j < 2; j++) {
		if (fresh[j]) {
			free(d->buf[j]);
			d->buf[j] = fresh[j];
			d->cap[j] = a->len;
		}
		if (a->len)
			memcpy(d->buf[j], a->buf[j], (size_t)a->len * lcai_kv_row_bytes(c, j));
	}
	return LCA_OK;
}

lca_status lcai_kv_share(const char *fn, lca_cache *c, int64_t src, int64_t dst)
{
	struct lcai_cache_seq *a = &c->seq[src], *d = &c->seq[dst];
	int64_t pages = lcai_kv_pages(a->len);
	lca_status s;

	if (!c->pool)
		return copy_tokens(fn, c, src, dst);
	if ((s = pt_room(fn, d, pages)))
		return s;
	/* take before dropping: a page both hold must not pass through 0 */
	for (int64_t i = 0; i < pages; i++)
		c->pool->ref[a->pt[i]]++;
	lcai_kv_release(c, dst, 0, 0);
	if (pages) /* an empty source: dst may have no page table yet */
		memcpy(d->pt, a->pt, (size_t)pages * sizeof *d->pt);
	d->npt = pages;
	return LCA_OK;
}

/* ---- load ------------------------------------------------------------------- */

lca_status lcai_kv_refill_check(const char *fn, lca_cache *c, const int64_t *lens,
	const int64_t *share)
{
	int64_t need = 0, p = 0;
	lca_status s;

	for (int64_t n = 0; n < c->nseq; n++) {
		if ((s = pt_room(fn, &c->seq[n], lcai_kv_pages(lens[n]))))
			return s;
		for (int64_t i = 0; i < lcai_kv_pages(lens[n]); i++)
			need += share[p++] < 0;
	}
	if (need > c->pool->npages)
		return lcai_fail(LCA_ERR_CAPACITY,
			"%s: the checkpoint's tokens need %lld pages, the pool has %lld", fn,
			(long long)need, (long long)c->pool->npages);
	return LCA_OK;
}

void lcai_kv_refill(lca_cache *c, const int64_t *lens, const int64_t *share)
{
	int64_t p = 0;

	for (int64_t n = 0; n < c->nseq; n++)
		lcai_kv_release(c, n, 0, 0);
	for (int64_t n = 0; n < c->nseq; n++) {
		struct lcai_cache_seq *q = &c->seq[n];

		while (q->npt < lcai_kv_pages(lens[n])) {
			int64_t m = share[p++];
			int32_t pg = m < 0 ? take_page(c->pool) : c->seq[m].pt[q->npt];

			if (m >= 0) /* sequence m < n holds it already: one more holder */
				c->pool->ref[pg]++;
			q->pt[q->npt++] = pg;
		}
	}
}
