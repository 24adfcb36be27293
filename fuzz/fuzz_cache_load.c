/*
 * fuzz_cache_load.c - libFuzzer target for lca_cache_load() on raw bytes.
 *
 * The input is a checkpoint in the lca_cache_save(3) format. To get past
 * the header checks, the cache it is loaded into is made from the
 * header's own variant, dtype, sizes, nseq and capacity (when they are
 * small; else a fixed small cache). Each input is loaded twice: as given,
 * and with its size field and FNV-1a checksum repaired, since a mutated
 * input almost never keeps a valid checksum and the checks behind it are
 * the interesting ones. A load that succeeds must save back to the same
 * bytes, and a failed one must leave the cache as it was.
 */
#include "lcattn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER 112
#define SUM 8
#define MAX_SEQ 8
#define MAX_CAP 64
#define MAX_DIM 16

static void expect(int ok, const char *what, lca_status s)
{
	if (ok)
		return;
	fprintf(stderr, "fuzz_cache_load: %s (status %d: %s; %s)\n", what, (int)s,
		lca_strerror(s), lca_last_error());
	abort();
}

static uint64_t get_u64(const uint8_t *b)
{
	uint64_t x = 0;

	for (int i = 7; i >= 0; i--)
		x = x << 8 | b[i];
	return x;
}

static void put_u64(uint8_t *b, uint64_t x)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(x >> (8 * i));
}

/* A header field as a size, or fallback when it is out of the small
 * range a fuzz case can afford. */
static int64_t field(const uint8_t *b, size_t off, int64_t lo, int64_t hi,
	int64_t fallback)
{
	int64_t x = (int64_t)get_u64(b + off);

	return x >= lo && x <= hi ? x : fallback;
}

/* A plan shaped like the checkpoint's header says (ref or cpu backend by
 * the header's flags byte, which a load must refuse anyway when nonzero). */
static lca_plan *plan_for(const uint8_t *b)
{
	lca_params p;
	lca_plan *plan = NULL;

	if (lca_params_init(&p, (lca_variant)(b[12] % 4)))
		return NULL;
	p.dtype = b[16] % 2 ? LCA_F32 : LCA_F64;
	p.backend = b[21] % 2 ? LCA_BACKEND_CPU : LCA_BACKEND_REF;
	p.nthreads = 1;
	p.H = field(b, 48, 1, MAX_DIM, 2);
	p.Hkv = field(b, 56, 0, MAX_DIM, 0);
	p.Hk = field(b, 64, 0, MAX_DIM, 0);
	p.dk = field(b, 72, 1, MAX_DIM, 4);
	p.dv = field(b, 80, 1, MAX_DIM, 4);
	p.dn = field(b, 88, 1, MAX_DIM, 4);
	p.dr = field(b, 96, 2, MAX_DIM, 2) & ~(int64_t)1;
	p.dc = field(b, 104, 1, MAX_DIM, 4);
	if (p.variant == LCA_MLA)
		p.scale = 0.5;
	if (lca_plan_create(&p, &plan) != LCA_OK)
		return NULL;
	return plan;
}

/* Equal checkpoints but for the saved capacity (the loading cache's own,
 * which may differ) and so the checksum. */
static int same_but_capacity(const uint8_t *a, const uint8_t *b, size_t size)
{
	return memcmp(a, b, 40) == 0 &&
		memcmp(a + 48, b + 48, size - 48 - SUM) == 0;
}

/* Load buf into cache; on success it must save to the same bytes, on
 * failure the cache must save as before. */
static void load_once(lca_cache *cache, const uint8_t *buf, size_t size)
{
	size_t need = 0, got = 0;
	uint8_t *before, *after = NULL;
	lca_status s;

	expect(lca_cache_save(cache, NULL, 0, &need) == LCA_OK, "sizing a save", 0);
	before = malloc(need);
	expect(before && lca_cache_save(cache, before, need, &got) == LCA_OK, "save", 0);
	s = lca_cache_load(cache, buf, size);
	if (getenv("FUZZ_VERBOSE"))  /* where did this input stop? */
		fprintf(stderr, "fuzz_cache_load: %s %s\n", lca_strerror(s), lca_last_error());
	expect(s == LCA_OK || lca_last_error()[0], "a failure without a message", s);
	expect(s == LCA_OK || s == LCA_ERR_CORRUPT || s == LCA_ERR_CAPACITY ||
	       s == LCA_ERR_NOMEM, "a status lca_cache_load(3) does not list", s);
	if (s == LCA_OK) {
		expect(lca_cache_save(cache, NULL, 0, &got) == LCA_OK && got == size,
			"a loaded cache saves to another size", s);
		after = malloc(size);
		expect(after && lca_cache_save(cache, after, size, &got) == LCA_OK &&
		       same_but_capacity(after, buf, size), "a loaded cache saves other bytes", s);
	} else {
		after = malloc(need);
		expect(after && lca_cache_save(cache, after, need, &got) == LCA_OK &&
		       got == need && memcmp(after, before, need) == 0,
		       "a failed load changed the cache", s);
	}
	free(before);
	free(after);
}

/* The input with its size field and checksum made right. */
static uint8_t *repaired(const uint8_t *data, size_t size)
{
	uint8_t *b = malloc(size);
	uint64_t h = 0xcbf29ce484222325ull;

	if (!b)
		return NULL;
	memcpy(b, data, size);
	put_u64(b + 24, size);
	for (size_t i = 0; i < size - SUM; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	put_u64(b + size - SUM, h);
	return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t head[HEADER] = { 0 }, *fixed;
	lca_plan *plan;
	lca_cache *cache = NULL;

	memcpy(head, data, size < HEADER ? size : HEADER);
	if (!(plan = plan_for(head)))
		return 0;
	if (lca_cache_create(plan, field(head, 32, 1, MAX_SEQ, 1),
			field(head, 40, 1, MAX_CAP, MAX_CAP), &cache) == LCA_OK) {
		load_once(cache, data, size);
		if (size >= HEADER + SUM && (fixed = repaired(data, size))) {
			load_once(cache, fixed, size);
			/* again, now into a cache whose buffers may be reused */
			load_once(cache, fixed, size);
			free(fixed);
		}
		lca_cache_destroy(cache);
	}
	lca_plan_destroy(plan);
	return 0;
}
