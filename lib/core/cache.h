/*
 * cache.h - the decode cache object, shared by cache.c (create, steps,
 * accounting) and cache_save.c (checkpoints); never installed.
 *
 * Storage per sequence, in the plan's dtype:
 *   softmax    buf[0] = K [cap][Hkv][dk], buf[1] = V [cap][Hkv][dv]
 *   mla        buf[0] = ckv [cap][dc],    buf[1] = k_rope [cap][dr] (raw:
 *              RoPE is applied by the kernel at each key's position)
 *   deltanet,  one state [H][dk][dv]; the states of all sequences form one
 *   lightning  [nseq][H][dk][dv] block, so a step is one packed kernel call
 * The first len tokens of a buffer are valid, the rest is spare room.
 * len <= cap[j] <= capacity, and capacity * row[j] * elt fits int64_t and
 * size_t (checked at create), so no size derived from these overflows.
 */
#ifndef LCATTN_CACHE_H
#define LCATTN_CACHE_H

#include "internal.h"

/* A sequence of a softmax or mla cache: buf[j] holds cap[j] tokens of
 * row[j] elements each (allocated), of which the first len are valid.
 * deltanet and lightning use len only. */
struct lcai_cache_seq {
	int64_t len;
	int64_t cap[2];
	void *buf[2];
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
	size_t elt;           /* bytes per element */
	int64_t row[2];       /* softmax, mla: elements per token of buf[0], buf[1] */
	int64_t nstate;       /* deltanet, lightning: elements of one state */
	struct lcai_cache_seq *seq; /* [nseq] */
	void *state;          /* deltanet, lightning: [nseq][nstate] */
	uint64_t epochs;      /* epochs handed out so far (never reused) */
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

#endif /* LCATTN_CACHE_H */
