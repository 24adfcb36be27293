/*
 * fuzz_checkpoint.c - libFuzzer target for the HDF5 checkpoint reader: the
 * input is an HDF5 file image, parsed in this process by
 * lcio_checkpoint_read_image() into a cache.
 *
 * The seeds are checkpoints of the small caches of cases.h, so the reader
 * gets past the shape checks and into lca_cache_load. The input's last
 * byte picks which of those caches to load into (variant and dtype): HDF5
 * ignores bytes past the end of its file, while the first bytes must be
 * its signature. A refusal must say why, with a status.
 */
#include "cases.h"
#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>

static void expect(int ok, const char *what, const char *err)
{
	if (ok)
		return;
	fprintf(stderr, "fuzz_checkpoint: %s (%s)\n", what, err);
	abort();
}

static void read_into(const uint8_t *data, size_t size, lca_cache *cache)
{
	char err[256] = "";
	lca_status s = LCA_OK;

	int r = lcio_checkpoint_read_image(data, size, "fuzz.h5", cache, &s, err, sizeof err);

	if (getenv("FUZZ_VERBOSE"))  /* where did this input stop? */
		fprintf(stderr, "fuzz_checkpoint: %d %s %s\n", r, lca_strerror(s), err);
	if (r) {
		expect(err[0] != '\0', "a refused checkpoint without a message", "");
		expect(s != LCA_OK, "a refused checkpoint with status LCA_OK", err);
	} else {
		expect(s == LCA_OK, "an accepted checkpoint with a failing status", err);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int pick = size ? data[size - 1] % 8 : 0;
	lca_plan *plan = NULL;
	lca_cache *cache = NULL;

	if (fz_seed_cache(pick / 2, pick % 2, 1 + pick % 2, 0, &plan, &cache) == LCA_OK)
		read_into(data, size, cache);
	lca_cache_destroy(cache);
	lca_plan_destroy(plan);
	return 0;
}
