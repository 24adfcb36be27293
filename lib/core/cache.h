/*
 * cache.h - the decode cache object, shared by cache.c (create, steps,
 * accounting), cache_store.c (where tokens live), cache_seq.c (per-sequence
 * control) and cache_save.c (checkpoints); never installed.
 *
 * Storage per sequence:
 *   softmax    buffer 0 = K rows [Hkv][dk], buffer 1 = V rows [Hkv][dv]
 *   mla        buffer 0 = ckv rows [dc], buffer 1 = k_rope rows [dr] (raw:
 *              RoPE is applied by the kernel at each key's position)
 *   deltanet,  one state [H][dk][dv] in the plan's dtype; the states of all
 *   lightning  sequences form one [nseq][H][dk][dv] block, so a step is one
 *              packed kernel call
 * softmax and mla rows hold elements of the storage type (the plan's dtype
 * or bf16), either in the sequence's own buffers (buf[j], cap[j] tokens,
 * grown geometrically) or in pages of the cache's pool (pt[], LCA_CACHE_PAGE
 * tokens a page: buffer 0's rows, then buffer 1's; a page may be shared by
 * forked sequences, copy-on-write). The first len tokens are valid.
 * len <= capacity, and capacity * row[j] * elt fits int64_t and size_t
 * (checked at create), so no size derived from these overflows.
 */
#ifndef LCATTN_CACHE_H
#define LCATTN_CACHE_H

#include "internal.h"

/* A sequence of a softmax or mla cache: buf[j] holds cap[j] tokens of
 * row[j] elements each (allocated), of which the first len are valid.
 * deltanet and lightning use len only. */
struct lcai_cache_seq {
	int64_t len;
	int64_t cap[2];  /* own buffers: tokens allocated */
	void *buf[2];
	int32_t *pt;     /* paged: pool page of tokens [64 i, 64 i + 64) */
	int64_t npt;     /* pages held (ceil(tokens reserved / 64)) */
	int64_t ptcap;   /* entries allocated in pt */
	double amax[2]; /* max |x| of the valid part of buf[j]: the range rule */
	int retired;    /* a free slot: holds nothing, steps may not feed it */
	uint64_t epoch; /* changes whenever the sequence loses a token it had
	                   (truncate, reset, restore, fork into, load...), so
	                   a softmax/mla snapshot, a length, can tell it is
	                   stale */
};

struct lca_cache {
	lca_params p;         /* the creating plan's resolved parameters */
	int64_t nseq;
	int64_t capacity;     /* tokens per sequence, at most */
	size_t elt;           /* bytes per element of the plan's tensors (and of
	                         the states) */
	lca_dtype store;      /* softmax, mla: element type of the stored rows */
	size_t selt;          /* its bytes */
	int64_t row[2];       /* softmax, mla: elements per token of buf[0], buf[1] */
	int64_t nstate;       /* deltanet, lightning: elements of one state */
	struct lcai_cache_seq *seq; /* [nseq] */
	void *state;          /* deltanet, lightning: [nseq][nstate] */
	uint64_t epochs;      /* epochs handed out so far (never reused) */
	struct lcai_pool *pool; /* softmax, mla: the paged pool, or NULL */
};

/* The pages of a paged cache: page i at mem + i * page_bytes, held by
 * ref[i] sequences (0: free, on the stack free[0 .. nfree)). */
struct lcai_pool {
	char *mem;
	int64_t npages, nfree;
	size_t page_bytes;
	int32_t *ref;
	int32_t *free;
};

/* A new epoch for sequence n: every snapshot of it taken so far is stale. */
static inline void lcai_cache_bump(lca_cache *c, int64_t n)
{
	c->seq[n].epoch = ++c->epochs;
}

/* Does the variant keep per-token buffers (softmax, mla) or states? */
static inline int lcai_cache_has_kv(lca_variant v)
{
	return v == LCA_SOFTMAX || v == LCA_MLA;
}

/* The sizes that shape a variant's cache and step arguments, in this
 * order, the others 0: H Hkv Hk dk dv dn dr dc. Two plans with equal dims,
 * variant, backend, dtype and numbers (scale, masks, RoPE, qk_l2norm: what
 * changes the outputs) can share a cache; algo, chunk, block and threads
 * may differ. */
enum { LCAI_NDIM = 8 };
void lcai_cache_dims(const lca_params *p, int64_t d[LCAI_NDIM]);
extern const char *const lcai_cache_dim_names[LCAI_NDIM];

/* Bytes of n elements of size elt as int64_t; 0 on overflow of int64_t or
 * size_t. */
int lcai_cache_bytes_of(int64_t n, size_t elt, int64_t *out);

/* Recompute every sequence's amax from its valid tokens (after a load). */
void lcai_cache_rescan(lca_cache *c);

/* A snapshot of one sequence (cache_seq.c): softmax and mla keep only the
 * length and the epoch it belongs to; deltanet and lightning a copy of the
 * state. */
struct lca_snapshot {
	lca_variant variant;
	lca_dtype dtype;
	int64_t dims[LCAI_NDIM]; /* lcai_cache_dims() of the cache */
	const lca_cache *cache; /* softmax, mla: the cache and sequence it */
	int64_t seq;          /* belongs to, and the epoch */
	uint64_t epoch;
	int64_t len;
	double amax[2];       /* softmax, mla: the sequence's amax then, exact
	                         again once it is cut back to len */
	size_t bytes;         /* of state */
	void *state;          /* deltanet, lightning: [H][dk][dv] */
};

/* Recompute the amax of sequence n from its valid tokens. */
void lcai_cache_rescan_seq(lca_cache *c, int64_t n);

/* The state of sequence n (deltanet, lightning). */
static inline void *lcai_cache_state(const lca_cache *c, int64_t n)
{
	return (char *)c->state + (size_t)(n * c->nstate) * c->elt;
}

/* ---- where tokens live (cache_store.c) ---- */

/* Row s of buffer j of sequence n (s < its reserved tokens). */
void *lcai_kv_row(const lca_cache *c, int64_t n, int j, int64_t s);

/* Bytes of one row of buffer j as stored. */
static inline size_t lcai_kv_row_bytes(const lca_cache *c, int j)
{
	return (size_t)c->row[j] * c->selt;
}

/* Make room for len + t[n] tokens in every sequence n (t[n] = cu[n + 1] -
 * cu[n]): grow own buffers, or take pool pages, copying a shared last page
 * that a new token would write (copy-on-write). All or nothing on pages
 * (LCA_ERR_CAPACITY, the pool named); a NOMEM may leave buffers grown or
 * page tables enlarged, never contents or lengths changed. */
lca_status lcai_kv_reserve(const char *fn, lca_cache *c, const int64_t *cu);

/* Sequence n keeps storage for its first keep tokens only: a paged
 * sequence gives back the pages past them (own buffers are kept, as
 * lca_cache_reset_seq() promises, unless all is set). */
void lcai_kv_release(lca_cache *c, int64_t n, int64_t keep, int all);

/* Sequence dst shares src's tokens (paged: the same pages, one more
 * holder each; own buffers: a copy). All or nothing. */
lca_status lcai_kv_share(const char *fn, lca_cache *c, int64_t src, int64_t dst);

/* Write t rows of buffer j of sequence n from s on, from x (t rows of the
 * plan's dtype), rounding to the storage type; and read them back widened
 * to the plan's dtype. */
void lcai_kv_put(lca_cache *c, int64_t n, int j, int64_t s, int64_t t, const void *x);
void lcai_kv_get(const lca_cache *c, int64_t n, int j, int64_t s, int64_t t, void *x);

/* Largest |x| of rows [s0, s1) of buffer j of sequence n. */
double lcai_kv_maxabs(const lca_cache *c, int64_t n, int j, int64_t s0, int64_t s1);

/* Where a step's kernel finds sequence n's tokens. */
void lcai_kv_where(const lca_cache *c, int64_t n, struct lcai_kv *kv);

/* A load into a paged cache: can every sequence n hold lens[n] tokens
 * once all pages are given back (page tables enlarged as needed)? Then
 * lcai_kv_refill gives every page back and takes lens[n]'s worth for each.
 * share[] has an entry per page of the load, sequence by sequence: -1 for
 * a fresh page, or the earlier sequence m whose page at the same index
 * holds the same tokens, to hold it too (as after lca_cache_fork(3)). */
lca_status lcai_kv_refill_check(const char *fn, lca_cache *c, const int64_t *lens,
	const int64_t *share);
void lcai_kv_refill(lca_cache *c, const int64_t *lens, const int64_t *share);

/* Create the pool for pool_bytes (cache.c's create); free it. */
lca_status lcai_kv_pool_create(const char *fn, lca_cache *c, size_t pool_bytes);
void lcai_kv_pool_destroy(lca_cache *c);

/* Pages a sequence of len tokens holds. */
static inline int64_t lcai_kv_pages(int64_t len)
{
	return (len + LCA_CACHE_PAGE - 1) / LCA_CACHE_PAGE;
}

#endif /* LCATTN_CACHE_H */
