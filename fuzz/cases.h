/*
 * cases.h - the small caches that the checkpoint seeds are saved from
 * (fuzz/seeds.c) and that fuzz_checkpoint loads into: the two must agree
 * on shapes for a seed to get past the reader's shape checks.
 */
#ifndef LCATTN_FUZZ_CASES_H
#define LCATTN_FUZZ_CASES_H

#include "lcattn.h"

/* Plan and cache of variant v (0..3), dtype f64 (dt 0) or f32 (dt 1), for
 * nseq sequences of capacity 8 on the ref backend; with fill, one step
 * of 5 tokens (split 2 + 3 over two sequences) from a fixed pattern. */
lca_status fz_seed_cache(int v, int dt, int64_t nseq, int fill, lca_plan **plan,
	lca_cache **cache);

#endif /* LCATTN_FUZZ_CASES_H */
