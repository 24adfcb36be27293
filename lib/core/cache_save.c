/*
 * cache_save.c - checkpoints of a decode cache: lca_cache_save() and
 * lca_cache_load().
 *
 * Format 1, every integer little-endian, tensors as little-endian IEEE 754
 * elements of the cache's dtype, for softmax and mla its storage type (f64,
 * f32 or bf16; lca_cache_save(3) documents it):
 *
 *   off  size
 *     0     8  magic "LCACACHE"
 *     8     4  u32 format version (1)
 *    12     4  u32 variant (lca_variant)
 *    16     4  u32 dtype of the saved elements (lca_dtype)
 *    20     4  u32 flags, 0
 *    24     8  u64 total bytes, checksum included
 *    32     8  i64 nseq
 *    40     8  i64 capacity
 *    48    64  i64 H Hkv Hk dk dv dn dr dc (0 where the variant has no such size)
 *   112  8 nseq  i64 length of each sequence
 *     .     .  payload: softmax, mla: per sequence buf[0] [len][row0] then
 *              buf[1] [len][row1]; deltanet, lightning: states [nseq][H][dk][dv]
 *   end-8   8  u64 FNV-1a 64 of every byte before it
 *
 * The total size sits in the header so that truncation is named as such
 * before the checksum is computed; the checksum then vouches for the rest,
 * and the layout is still re-derived from the cache's own shapes, so that
 * a forged but well-summed buffer cannot make us read out of bounds; nor
 * can it bring in a NaN or an infinity.
 * A load validates everything and allocates everything it needs before it
 * writes a byte of the cache.
 */
#include "cache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CK_MAGIC "LCACACHE"
#define CK_VERSION 1u
#define CK_HEADER 112
#define CK_SUM 8

/* ---- bytes ---------------------------------------------------------------- */

static int host_le(void)
{
	const uint16_t one = 1;

	return *(const unsigned char *)&one == 1;
}

static void put_u64(unsigned char *b, uint64_t x)
{
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(x >> (8 * i));
}

static void put_u32(unsigned char *b, uint32_t x)
{
	for (int i = 0; i < 4; i++)
		b[i] = (unsigned char)(x >> (8 * i));
}

static uint64_t get_u64(const unsigned char *b)
{
	uint64_t x = 0;

	for (int i = 7; i >= 0; i--)
		x = (x << 8) | b[i];
	return x;
}

static uint32_t get_u32(const unsigned char *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
		(uint32_t)b[3] << 24;
}

/* Length of sequence n as saved in checkpoint b. */
static int64_t saved_len(const unsigned char *b, int64_t n)
{
	return (int64_t)get_u64(b + CK_HEADER + 8 * n);
}

/* n elements of size elt between host order and little-endian (the same
 * bytes on little-endian hosts, each element reversed on big-endian ones). */
static void copy_le(void *dst, const void *src, size_t n, size_t elt)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (host_le()) {
		memcpy(d, s, n * elt);
		return;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < elt; j++)
			d[i * elt + j] = s[i * elt + elt - 1 - j];
}

static uint64_t fnv1a64(const unsigned char *b, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* ---- sizes ---------------------------------------------------------------- */

/* Payload bytes of cache c with the lengths saved in checkpoint b, or with
 * its own lengths when b is NULL; 0 on overflow or a negative length. */
static int payload_bytes(const lca_cache *c, const unsigned char *b, int64_t *out)
{
	int64_t total = 0, row = c->row[0] + c->row[1], x;

	if (!lcai_cache_has_kv(c->p.variant))
		return lcai_mul(c->nseq, c->nstate, &x) && lcai_cache_bytes_of(x, c->elt, out);
	for (int64_t n = 0; n < c->nseq; n++) {
		int64_t len = b ? saved_len(b, n) : c->seq[n].len;

		if (len < 0 || !lcai_mul(len, row, &x) || !lcai_cache_bytes_of(x, c->selt, &x) ||
		    x > INT64_MAX - total)
			return 0;
		total += x;
	}
	*out = total;
	return 1;
}

/* Header plus lengths plus payload plus checksum; 0 on overflow. */
static int frame_bytes(int64_t nseq, int64_t payload, int64_t *out)
{
	int64_t lens;

	if (!lcai_mul(nseq, 8, &lens) || lens > INT64_MAX - CK_HEADER - CK_SUM ||
	    payload > INT64_MAX - CK_HEADER - CK_SUM - lens)
		return 0;
	*out = CK_HEADER + lens + payload + CK_SUM;
	return (uint64_t)*out <= SIZE_MAX;
}

/* ---- save ----------------------------------------------------------------- */

/* The dtype of the saved elements: a softmax/mla cache's storage type
 * (bf16 rows are saved as they are stored), else the plan's. */
static lca_dtype saved_dtype(const lca_cache *c)
{
	return lcai_cache_has_kv(c->p.variant) ? c->store : c->p.dtype;
}

static void write_header(const lca_cache *c, unsigned char *b, int64_t total)
{
	int64_t d[LCAI_NDIM];

	memcpy(b, CK_MAGIC, 8);
	put_u32(b + 8, CK_VERSION);
	put_u32(b + 12, (uint32_t)c->p.variant);
	put_u32(b + 16, (uint32_t)saved_dtype(c));
	put_u32(b + 20, 0);
	put_u64(b + 24, (uint64_t)total);
	put_u64(b + 32, (uint64_t)c->nseq);
	put_u64(b + 40, (uint64_t)c->capacity);
	lcai_cache_dims(&c->p, d);
	for (int i = 0; i < LCAI_NDIM; i++)
		put_u64(b + 48 + 8 * i, (uint64_t)d[i]);
	for (int64_t n = 0; n < c->nseq; n++)
		put_u64(b + CK_HEADER + 8 * n, (uint64_t)c->seq[n].len);
}

/* The payload in the documented order; returns the byte after it. */
static unsigned char *write_payload(const lca_cache *c, unsigned char *b)
{
	if (!lcai_cache_has_kv(c->p.variant)) {
		size_t n = (size_t)(c->nseq * c->nstate);

		copy_le(b, c->state, n, c->elt);
		return b + n * c->elt;
	}
	for (int64_t n = 0; n < c->nseq; n++)
		for (int j = 0; j < 2; j++)
			for (int64_t t = 0; t < c->seq[n].len; t++) {
				copy_le(b, lcai_kv_row(c, n, j, t), (size_t)c->row[j], c->selt);
				b += lcai_kv_row_bytes(c, j);
			}
	return b;
}

lca_status lca_cache_save(const lca_cache *cache, void *buf, size_t size,
	size_t *needed)
{
	static const char fn[] = "lca_cache_save";
	int64_t payload, total;
	unsigned char *b = buf, *end;

	lcai_clear_error();
	if (!cache || !needed)
		return lcai_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, cache ? "needed" : "cache");
	if (!payload_bytes(cache, NULL, &payload) || !frame_bytes(cache->nseq, payload, &total))
		return lcai_fail(LCA_ERR_OVERFLOW, "%s: checkpoint size overflows", fn);
	*needed = (size_t)total;
	if (!buf)
		return LCA_OK;
	if (size < (size_t)total)
		return lcai_fail(LCA_ERR_SIZE, "%s: size = %zu, the checkpoint needs %zu bytes",
			fn, size, (size_t)total);
	write_header(cache, b, total);
	end = write_payload(cache, b + CK_HEADER + 8 * (size_t)cache->nseq);
	put_u64(end, fnv1a64(b, (size_t)(end - b)));
	return LCA_OK;
}

/* ---- load: validate everything, then stage, then commit ------------------- */

static const char *variant_name(uint32_t v)
{
	static const char *const names[] = { "softmax", "mla", "deltanet", "lightning" };

	return v <= LCA_LIGHTNING ? names[v] : "unknown";
}

/* Is the buffer an intact checkpoint of format 1? */
static lca_status check_frame(const char *fn, const unsigned char *b, size_t size)
{
	uint64_t total;

	if (size < CK_HEADER + CK_SUM)
		return lcai_fail(LCA_ERR_CORRUPT,
			"%s: %zu bytes are too few for a checkpoint (truncated?)", fn, size);
	if (memcmp(b, CK_MAGIC, 8) != 0)
		return lcai_fail(LCA_ERR_CORRUPT,
			"%s: not an lcattn cache checkpoint (bad magic)", fn);
	if (get_u32(b + 8) != CK_VERSION)
		return lcai_fail(LCA_ERR_CORRUPT, "%s: checkpoint format %u, this library reads %u",
			fn, (unsigned)get_u32(b + 8), CK_VERSION);
	total = get_u64(b + 24);
	if (total != (uint64_t)size)
		return lcai_fail(LCA_ERR_CORRUPT,
			"%s: size = %zu but the checkpoint says %llu bytes (truncated or extended)",
			fn, size, (unsigned long long)total);
	if (fnv1a64(b, size - CK_SUM) != get_u64(b + size - CK_SUM))
		return lcai_fail(LCA_ERR_CORRUPT,
			"%s: checksum mismatch: the checkpoint is damaged", fn);
	if (get_u32(b + 20) != 0)
		return lcai_fail(LCA_ERR_CORRUPT, "%s: unknown checkpoint flags %#x", fn,
			(unsigned)get_u32(b + 20));
	return LCA_OK;
}

/* Was the (intact) checkpoint made from a cache like this one? */
static lca_status check_match(const char *fn, const lca_cache *c, const unsigned char *b)
{
	uint32_t var = get_u32(b + 12), dt = get_u32(b + 16);
	int64_t nseq = (int64_t)get_u64(b + 32), d[LCAI_NDIM];

	if (var != (uint32_t)c->p.variant)
		return lcai_fail(LCA_ERR_CORRUPT,
			"%s: the checkpoint holds a %s cache, this is a %s cache", fn,
			variant_name(var), variant_name((uint32_t)c->p.variant));
	if (dt != (uint32_t)saved_dtype(c))
		return lcai_fail(LCA_ERR_CORRUPT,
			"%s: checkpoint elements of dtype %u, the cache stores dtype %u", fn,
			(unsigned)dt, (unsigned)saved_dtype(c));
	lcai_cache_dims(&c->p, d);
	for (int i = 0; i < LCAI_NDIM; i++)
		if ((int64_t)get_u64(b + 48 + 8 * i) != d[i])
			return lcai_fail(LCA_ERR_CORRUPT,
				"%s: checkpoint %s = %lld, the cache's is %lld", fn,
				lcai_cache_dim_names[i], (long long)get_u64(b + 48 + 8 * i),
				(long long)d[i]);
	if (nseq != c->nseq)
		return lcai_fail(LCA_ERR_CORRUPT,
			"%s: checkpoint of %lld sequences, the cache holds %lld", fn,
			(long long)nseq, (long long)c->nseq);
	return LCA_OK;
}

/* Do the saved lengths lie within the saved capacity (else the checkpoint
 * is inconsistent) and within this cache's (else it does not fit)? */
static lca_status check_lengths(const char *fn, const lca_cache *c, const unsigned char *b,
	size_t size)
{
	int64_t cap = (int64_t)get_u64(b + 40);

	if ((size - CK_HEADER - CK_SUM) / 8 < (uint64_t)c->nseq)
		return lcai_fail(LCA_ERR_CORRUPT, "%s: checkpoint too short for %lld lengths", fn,
			(long long)c->nseq);
	for (int64_t n = 0; n < c->nseq; n++) {
		int64_t len = saved_len(b, n);

		if (len < 0 || len > cap)
			return lcai_fail(LCA_ERR_CORRUPT,
				"%s: sequence %lld has length %lld outside [0, capacity %lld]", fn,
				(long long)n, (long long)len, (long long)cap);
		if (len > c->capacity)
			return lcai_fail(LCA_ERR_CAPACITY,
				"%s: sequence %lld holds %lld tokens, more than the capacity %lld", fn,
				(long long)n, (long long)len, (long long)c->capacity);
	}
	return LCA_OK;
}

/* Is every saved element finite? A well-summed checkpoint may still carry
 * a NaN or an infinity (written by hand, or by a buggy writer); a step
 * trusts what its cache holds, so one would spread into every later output
 * silently. The elements are little-endian IEEE 754: non-finite where the
 * exponent bits are all ones, tested on the bytes (no host order). */
static lca_status check_finite(const char *fn, const lca_cache *c, const unsigned char *x,
	size_t bytes)
{
	const lca_dtype t = saved_dtype(c);
	const size_t e = lcai_dtype_size(t);

	for (size_t i = 0; i + e <= bytes; i += e) {
		const unsigned char *v = x + i;
		int bad;

		if (t == LCA_F64) /* 11 exponent bits: byte 7 low 7, byte 6 high 4 */
			bad = (v[7] & 0x7f) == 0x7f && (v[6] & 0xf0) == 0xf0;
		else if (t == LCA_F32) /* 8: byte 3 low 7, byte 2 high 1 */
			bad = (v[3] & 0x7f) == 0x7f && (v[2] & 0x80);
		else /* bf16, the high half of a float */
			bad = (v[1] & 0x7f) == 0x7f && (v[0] & 0x80);
		if (bad)
			return lcai_fail(LCA_ERR_CORRUPT,
				"%s: the checkpoint holds a NaN or an infinity (element %zu of "
				"its payload)", fn, i / e);
	}
	return LCA_OK;
}

/* Every check of a load, in order: an intact frame, a matching cache,
 * lengths that fit, then the size re-derived from the cache's shapes. */
static lca_status check_load(const char *fn, const lca_cache *c, const unsigned char *b,
	size_t size)
{
	int64_t payload, total;
	lca_status s;

	if ((s = check_frame(fn, b, size)) || (s = check_match(fn, c, b)) ||
	    (s = check_lengths(fn, c, b, size)))
		return s;
	if (!payload_bytes(c, b, &payload) || !frame_bytes(c->nseq, payload, &total) ||
	    (uint64_t)total != size)
		return lcai_fail(LCA_ERR_CORRUPT,
			"%s: the checkpoint's size does not match its lengths and shapes", fn);
	return check_finite(fn, c, b + CK_HEADER + 8 * (size_t)c->nseq, (size_t)payload);
}

static void free_staged(void **f, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		free(f[i]);
	free(f);
}

/* New buffers for the sequences whose allocation is too small for their
 * saved length: fresh[2 n + j] (NULL where the present one is reused). All
 * or nothing: on failure everything staged is freed. */
static lca_status stage(const char *fn, const lca_cache *c, const unsigned char *b,
	void ***fresh)
{
	void **f = calloc((size_t)c->nseq * 2, sizeof *f);

	*fresh = NULL;
	if (!f)
		return lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
	for (int64_t n = 0; n < c->nseq; n++) {
		int64_t len = saved_len(b, n);

		for (int j = 0; j < 2; j++) {
			if (len <= c->seq[n].cap[j])
				continue;
			f[2 * n + j] = malloc((size_t)len * lcai_kv_row_bytes(c, j));
			if (!f[2 * n + j]) {
				free_staged(f, 2 * c->nseq);
				return lcai_fail(LCA_ERR_NOMEM,
					"%s: no memory for %lld tokens of sequence %lld", fn,
					(long long)len, (long long)n);
			}
		}
	}
	*fresh = f;
	return LCA_OK;
}

/* Nothing can fail from here on: set the lengths, swap in the staged
 * buffers (freeing the ones they replace) or refill the pages, and copy
 * the payload. */
static void commit(lca_cache *c, const unsigned char *b, void **fresh, const int64_t *lens,
	const int64_t *share)
{
	const unsigned char *x = b + CK_HEADER + 8 * (size_t)c->nseq;

	for (int64_t n = 0; n < c->nseq; n++) {
		c->seq[n].len = saved_len(b, n);
		c->seq[n].retired = 0; /* the format keeps no slot states */
		lcai_cache_bump(c, n);
	}
	if (!lcai_cache_has_kv(c->p.variant)) {
		copy_le(c->state, x, (size_t)(c->nseq * c->nstate), c->elt);
		return;
	}
	if (c->pool)
		lcai_kv_refill(c, lens, share);
	for (int64_t n = 0; n < c->nseq; n++) {
		struct lcai_cache_seq *s = &c->seq[n];

		for (int j = 0; j < 2; j++) {
			if (!c->pool && fresh[2 * n + j]) {
				free(s->buf[j]);
				s->buf[j] = fresh[2 * n + j];
				s->cap[j] = s->len;
			}
			for (int64_t t = 0; t < s->len; t++) {
				copy_le(lcai_kv_row(c, n, j, t), x, (size_t)c->row[j], c->selt);
				x += lcai_kv_row_bytes(c, j);
			}
		}
	}
}

/* Whether tokens [t0, t1) of sequences n and m (both holding them) are the
 * same bytes in the checkpoint's payload x; at[n] is where n's rows start
 * (its keys, then its values, each lens[n] rows). */
static int same_rows(const lca_cache *c, const unsigned char *x, const int64_t *lens,
	const size_t *at, int64_t n, int64_t m, int64_t t0, int64_t t1)
{
	for (int j = 0; j < 2; j++) {
		size_t rb = lcai_kv_row_bytes(c, j), skip = j ? lcai_kv_row_bytes(c, 0) : 0;
		const unsigned char *a = x + at[n] + skip * (size_t)lens[n] + rb * (size_t)t0;
		const unsigned char *b = x + at[m] + skip * (size_t)lens[m] + rb * (size_t)t0;

		if (memcmp(a, b, rb * (size_t)(t1 - t0)))
			return 0;
	}
	return 1;
}

/* ---- first pages: an index of prefixes by hash ---------------------------- */

/*
 * The first page of a sequence may share with any earlier sequence that
 * holds the same bytes for its t1 = min(LCA_CACHE_PAGE, len) tokens, and
 * comparing it with every earlier one is quadratic in the sequences
 * (4096 sequences whose first pages differ only past a shared 32-token
 * prompt: 8M comparisons of 32 rows). Instead each sequence's prefixes
 * [0, t) of its first page are hashed, row by row, and an open-addressed
 * table keeps, per (t, hash), the first sequence that had it; only the t
 * some sequence's t1 equals are entered. A hit is confirmed byte for byte;
 * a collision costs a missed share, never a wrong one.
 */
struct first_index {
	struct first_slot {
		uint64_t h;
		int64_t t, seq;  /* seq -1: empty */
	} *slot;
	uint64_t mask;
};

/* Token t's rows (key, then value) of sequence n in payload x, mixed into
 * h eight bytes at a time. */
static uint64_t row_hash(const lca_cache *c, const unsigned char *x, const int64_t *lens,
	const size_t *at, int64_t n, int64_t t, uint64_t h)
{
	for (int j = 0; j < 2; j++) {
		size_t rb = lcai_kv_row_bytes(c, j), skip = j ? lcai_kv_row_bytes(c, 0) : 0;
		const unsigned char *a = x + at[n] + skip * (size_t)lens[n] + rb * (size_t)t;

		for (size_t i = 0; i < rb; i += 8) {
			uint64_t w = 0;

			memcpy(&w, a + i, rb - i < 8 ? rb - i : 8);
			h = (h ^ w) * 0x9e3779b97f4a7c15ull;
			h ^= h >> 29;
		}
	}
	return h;
}

static struct first_slot *first_find(const struct first_index *ix, uint64_t h, int64_t t)
{
	uint64_t i = (h ^ (uint64_t)t * 0xff51afd7ed558ccdull) & ix->mask;

	while (ix->slot[i].seq >= 0 && (ix->slot[i].h != h || ix->slot[i].t != t))
		i = (i + 1) & ix->mask;
	return &ix->slot[i];
}

/* the sets of prefix lengths are bit masks of 64 bits */
_Static_assert(LCA_CACHE_PAGE <= 64, "a page's prefix lengths fit a uint64_t");

static int64_t first_len(int64_t len)
{
	return len < LCA_CACHE_PAGE ? len : LCA_CACHE_PAGE;
}

/* sh0[n]: the earliest sequence before n whose first page holds n's first
 * t1 tokens, or -1 (also for an empty sequence). */
static int first_pages(const lca_cache *c, const unsigned char *x, const int64_t *lens,
	const size_t *at, int64_t *sh0)
{
	uint64_t want = 0, cap = 2; /* bit t - 1: some sequence has t1 = t */
	int64_t entries = 0;
	struct first_index ix;

	for (int64_t n = 0; n < c->nseq; n++)
		if (lens[n] > 0)
			want |= 1ull << (first_len(lens[n]) - 1);
	for (int64_t n = 0; n < c->nseq; n++) {
		int64_t t1 = first_len(lens[n]);
		uint64_t held = want & (t1 == 64 ? ~0ull : (1ull << t1) - 1);

		entries += __builtin_popcountll(held);
	}
	while (cap < 2 * (uint64_t)entries && cap <= SIZE_MAX / 4 / sizeof *ix.slot)
		cap *= 2;
	if (cap < 2 * (uint64_t)entries || !(ix.slot = malloc(cap * sizeof *ix.slot)))
		return 0;
	ix.mask = cap - 1;
	for (uint64_t i = 0; i < cap; i++)
		ix.slot[i].seq = -1;
	for (int64_t n = 0; n < c->nseq; n++) {
		const int64_t t1 = first_len(lens[n]);
		uint64_t h = 0xcbf29ce484222325ull;

		sh0[n] = -1;
		for (int64_t t = 1; t <= t1; t++) {
			struct first_slot *e;

			h = row_hash(c, x, lens, at, n, t - 1, h);
			if (!(want >> (t - 1) & 1))
				continue;
			e = first_find(&ix, h, t);
			if (t == t1 && e->seq >= 0 && same_rows(c, x, lens, at, n, e->seq, 0, t1))
				sh0[n] = e->seq;
			if (e->seq < 0)
				*e = (struct first_slot){ h, t, n };
		}
	}
	free(ix.slot);
	return 1;
}

/*
 * Which pages of a paged load can be shared (lcai_kv_refill): page i of
 * sequence n goes to the page i of an earlier sequence m that holds the
 * same bytes for all of n's tokens in it. Sequences forked from one
 * another share their prefix's pages in the pool, and a checkpoint stores
 * every sequence's tokens in full: without this, a pool filled by forks
 * could not load its own checkpoint. The first page may match any earlier
 * sequence (first_pages); a later one is tried against the sequence the
 * page before it shares (prefixes, as forks make them). Sharing equal
 * bytes is safe: a sequence that writes into a shared page copies it
 * first.
 */
static lca_status plan_sharing(const char *fn, const lca_cache *c, const unsigned char *b,
	const int64_t *lens, int64_t **share)
{
	const unsigned char *x = b + CK_HEADER + 8 * (size_t)c->nseq;
	size_t *at = malloc((size_t)c->nseq * sizeof *at), pos = 0;
	int64_t *sh0 = malloc((size_t)c->nseq * sizeof *sh0);
	int64_t total = 0, p = 0, *sh;

	for (int64_t n = 0; n < c->nseq; n++)
		total += lcai_kv_pages(lens[n]);
	sh = malloc((size_t)(total + 1) * sizeof *sh);
	for (int64_t n = 0; at && n < c->nseq; n++) {
		at[n] = pos;
		pos += (size_t)lens[n] * (lcai_kv_row_bytes(c, 0) + lcai_kv_row_bytes(c, 1));
	}
	if (!at || !sh0 || !sh || !first_pages(c, x, lens, at, sh0)) {
		free(at);
		free(sh0);
		free(sh);
		return lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
	}
	for (int64_t n = 0; n < c->nseq; n++)
		for (int64_t i = 0, prev = -1; i < lcai_kv_pages(lens[n]); i++, p++) {
			int64_t t0 = i * LCA_CACHE_PAGE, t1 = t0 + LCA_CACHE_PAGE;

			t1 = t1 < lens[n] ? t1 : lens[n];
			if (i == 0)
				sh[p] = sh0[n];
			else
				sh[p] = prev >= 0 && lens[prev] >= t1 &&
					same_rows(c, x, lens, at, n, prev, t0, t1) ? prev : -1;
			prev = sh[p];
		}
	free(at);
	free(sh0);
	*share = sh;
	return LCA_OK;
}

/* Stage a softmax/mla load: own buffers (stage) or pages
 * (lcai_kv_refill_check); lens receives the saved lengths, share the
 * pages' sharing (paged caches only). */
static lca_status stage_kv(const char *fn, lca_cache *c, const unsigned char *b,
	void ***fresh, int64_t **lens, int64_t **share)
{
	int64_t *l = malloc((size_t)c->nseq * sizeof *l);
	lca_status s;

	*fresh = NULL;
	*lens = NULL;
	*share = NULL;
	if (!l)
		return lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
	for (int64_t n = 0; n < c->nseq; n++)
		l[n] = saved_len(b, n);
	if (!c->pool)
		s = stage(fn, c, b, fresh);
	else if (!(s = plan_sharing(fn, c, b, l, share)) &&
	    (s = lcai_kv_refill_check(fn, c, l, *share))) {
		free(*share);
		*share = NULL;
	}
	if (s) {
		free(l);
		return s;
	}
	*lens = l;
	return LCA_OK;
}

lca_status lca_cache_load(lca_cache *cache, const void *buf, size_t size)
{
	static const char fn[] = "lca_cache_load";
	void **fresh = NULL;
	int64_t *lens = NULL, *share = NULL;
	lca_status s;

	lcai_clear_error();
	if (!cache || !buf)
		return lcai_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, cache ? "buf" : "cache");
	if ((s = check_load(fn, cache, buf, size)))
		return s;
	if (lcai_cache_has_kv(cache->p.variant) &&
	    (s = stage_kv(fn, cache, buf, &fresh, &lens, &share)))
		return s;
	commit(cache, buf, fresh, lens, share);
	lcai_cache_rescan(cache);
	free(fresh);
	free(lens);
	free(share);
	return LCA_OK;
}
