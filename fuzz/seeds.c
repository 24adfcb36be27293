/*
 * seeds.c - write the seed corpora of fuzz_api and fuzz_cache_load:
 *   fuzz/seeds DIR   writes DIR/api/<case>, DIR/cache_load/<case>.bin and
 *                    DIR/checkpoint/<case>.h5
 * Run by hand (fuzz/fuzz.sh seeds); its output is committed. The api seeds
 * follow the decoder of fuzz_api.c byte for byte, so each one is a valid
 * plan and call of its variant, backend and dtype: the fuzzer starts from
 * the kernels, not from the first size check.
 */
#include "cases.h"
#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct out {
	unsigned char b[512];
	size_t n;
};

static void put(struct out *o, int x)
{
	o->b[o->n++] = (unsigned char)x;
}

static void put_mask(struct out *o, uint64_t m)
{
	for (int i = 0; i < 8; i++)
		put(o, (int)(m >> (8 * i) & 0xff));
}

static int write_file(const char *dir, const char *name, const void *b, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (!(f = fopen(path, "wb")) || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
		fprintf(stderr, "seeds: cannot write %s\n", path);
		return -1;
	}
	return 0;
}

/* One api seed: params (fields 0..10 and 18..20 of fuzz_api's mask), a
 * forward call over two sequences (or one, decode-shaped, without
 * cu_seqlens), then a two-sequence cache and two steps. */
static void api_seed(struct out *o, int variant, int backend, int dtype, int varlen)
{
	static const int fields[] = { 0, 1, 3, 4, 6, 7, 8, 9, 10, 11, 18, 19, 20 };
	uint64_t m = 0;

	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
		m |= (uint64_t)1 << fields[i];
	o->n = 0;
	put(o, variant);
	put_mask(o, m);
	put(o, backend); put(o, dtype);               /* backend, dtype */
	put(o, 2); put(o, 1); put(o, 4); put(o, 3);   /* H Hkv dk dv */
	put(o, 4); put(o, 2); put(o, 5);              /* dn dr dc */
	put(o, 2);                                    /* scale 0.5 */
	put(o, 2); put(o, 3); put(o, 1);              /* chunk block nthreads */
	put(o, 0); put(o, 7);                         /* cost: prefill, n 7 */
	/* forward: nseq, use_cu, Tq, Tk (softmax, mla), folded signs, cu */
	put(o, 2); put(o, varlen ? 0 : 200); put(o, varlen ? 5 : 2);
	if (variant <= LCA_MLA)
		put(o, 5);
	put(o, 200);
	if (varlen) {
		put(o, 200); put(o, 2);
	}
	put(o, 100);                                  /* keep every pointer */
	/* cache: nseq 2, capacity 8; steps of 3 and 2 tokens */
	put(o, 2); put(o, 8);
	put(o, 3); put(o, 200); put(o, 200); put(o, 1); put(o, 100);
	put(o, 2); put(o, 200); put(o, 200); put(o, 1); put(o, 100);
	for (int i = 0; i < 64; i++)                  /* tensor values */
		put(o, 60 + (i * 37) % 81);
}

static int api_seeds(const char *dir)
{
	static const char *const vname[] = { "softmax", "mla", "deltanet", "lightning" };
	struct out o;
	char name[64];

	for (int v = 0; v < 4; v++)
		for (int be = 0; be < 2; be++)
			for (int dt = 0; dt < 2; dt++) {
				snprintf(name, sizeof name, "%s-%s-%s%s", vname[v],
					be ? "cpu" : "ref", dt ? "f32" : "f64",
					v == 3 && dt ? "-decode" : "");
				api_seed(&o, v, be, dt, !(v == 3 && dt));
				if (write_file(dir, name, o.b, o.n))
					return -1;
			}
	return 0;
}

static int cache_seeds(const char *dir)
{
	static const char *const vname[] = { "softmax", "mla", "deltanet", "lightning" };
	unsigned char b[4096];
	char name[64];
	size_t n;

	for (int v = 0; v < 4; v++)
		for (int dt = 0; dt < 2; dt++) {
			lca_plan *plan = NULL;
			lca_cache *cache = NULL;
			int64_t nseq = 1 + dt;
			lca_status s = fz_seed_cache(v, dt, nseq, 1, &plan, &cache);

			if (!s)
				s = lca_cache_save(cache, b, sizeof b, &n);
			lca_cache_destroy(cache);
			lca_plan_destroy(plan);
			if (s) {
				fprintf(stderr, "seeds: %s: %s\n", vname[v], lca_last_error());
				return -1;
			}
			snprintf(name, sizeof name, "%s-%s-nseq%d.bin", vname[v],
				dt ? "f32" : "f64", (int)nseq);
			if (write_file(dir, name, b, n))
				return -1;
		}
	return 0;
}

/* The HDF5 checkpoint of the seed cache (v, dt), followed by one byte
 * (past the end HDF5 reads) that tells fuzz_checkpoint which cache to
 * load it into. */
static int checkpoint_seed(const char *dir, int v, int dt)
{
	static const char *const vname[] = { "softmax", "mla", "deltanet", "lightning" };
	char path[512], err[256] = "no cache";
	lca_plan *plan = NULL;
	lca_cache *cache = NULL;
	int bad = fz_seed_cache(v, dt, 1 + dt, 1, &plan, &cache) != LCA_OK;
	FILE *f;

	snprintf(path, sizeof path, "%s/%s-%s.h5", dir, vname[v], dt ? "f32" : "f64");
	bad = bad || lcio_checkpoint_write(path, cache, err, sizeof err);
	lca_cache_destroy(cache);
	lca_plan_destroy(plan);
	if (bad || !(f = fopen(path, "ab")) || fputc(2 * v + dt, f) == EOF || fclose(f)) {
		fprintf(stderr, "seeds: %s: %s\n", path, bad ? err : "cannot append");
		return -1;
	}
	return 0;
}

static int checkpoint_seeds(const char *dir)
{
	for (int v = 0; v < 4; v++)
		for (int dt = 0; dt < 2; dt++)
			if (checkpoint_seed(dir, v, dt))
				return -1;
	return 0;
}

int main(int argc, char **argv)
{
	char api[512], cache[512], ckpt[512];

	if (argc != 2) {
		fprintf(stderr, "usage: seeds DIR\n");
		return 2;
	}
	snprintf(api, sizeof api, "%s/api", argv[1]);
	snprintf(cache, sizeof cache, "%s/cache_load", argv[1]);
	snprintf(ckpt, sizeof ckpt, "%s/checkpoint", argv[1]);
	return api_seeds(api) || cache_seeds(cache) || checkpoint_seeds(ckpt) ? 1 : 0;
}
