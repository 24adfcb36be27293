/*
 * checkpoint.c - `lcattn checkpoint info|verify|convert`: decode-cache
 * checkpoints, as HDF5 files (lcattn-checkpoint(5)) or as the raw bytes of
 * lca_cache_save(3).
 *
 * Every file is read by the confined child of lib/io/sandbox.c, which
 * hands back the lca_cache_save() bytes; this process then validates them
 * the only complete way there is, by loading them with lca_cache_load()
 * into a cache made from their own header (its sizes bounded by the byte
 * count first, so a forged header cannot ask for a huge allocation).
 */
#include "lcattn.h"
#include "checkpoint.h"
#include "tool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RAW_HEADER 112   /* lca_cache_save(3), format 1 */
#define RAW_SUM 8

static const char *const variants[] = { "softmax", "mla", "deltanet", "lightning" };
static const char *const dim_names[8] = { "H", "Hkv", "Hk", "dk", "dv", "dn", "dr", "dc" };

static uint64_t le64(const unsigned char *b)
{
	uint64_t x = 0;

	for (int i = 7; i >= 0; i--)
		x = (x << 8) | b[i];
	return x;
}

static uint32_t le32(const unsigned char *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
		(uint32_t)b[3] << 24;
}

/* What the header of the bytes says, each field range-checked so that it
 * can be printed and used to size things. */
struct header {
	uint32_t format, variant, dtype;
	uint64_t total;
	int64_t nseq, capacity, dims[8];
	const unsigned char *lengths; /* nseq little-endian i64 */
};

static int read_header(const unsigned char *b, size_t n, struct header *h, char *why,
	size_t whylen)
{
	if (n < RAW_HEADER + RAW_SUM || memcmp(b, LCIO_RAW_MAGIC, 8) != 0) {
		snprintf(why, whylen, n < RAW_HEADER + RAW_SUM ?
			"%zu bytes are too few for a checkpoint (truncated?)" :
			"not an lcattn cache checkpoint (bad magic)", n);
		return -1;
	}
	h->format = le32(b + 8);
	h->variant = le32(b + 12);
	h->dtype = le32(b + 16);
	h->total = le64(b + 24);
	h->nseq = (int64_t)le64(b + 32);
	h->capacity = (int64_t)le64(b + 40);
	for (int i = 0; i < 8; i++)
		h->dims[i] = (int64_t)le64(b + 48 + 8 * i);
	h->lengths = b + RAW_HEADER;
	if (h->variant > LCA_LIGHTNING || h->dtype > LCA_BF16 ||
	    (h->dtype == LCA_BF16 && h->variant > LCA_MLA))
		snprintf(why, whylen, "unknown %s %u in the header",
			h->variant > LCA_LIGHTNING ? "variant" : "dtype",
			(unsigned)(h->variant > LCA_LIGHTNING ? h->variant : h->dtype));
	else if (h->nseq < 1 || (uint64_t)h->nseq > (n - RAW_HEADER - RAW_SUM) / 8)
		snprintf(why, whylen, "nseq = %lld does not fit in %zu bytes", (long long)h->nseq, n);
	else
		return 0;
	return -1;
}

/* The header's element type, as printed. */
static const char *dtype_name(uint32_t t)
{
	return t == LCA_F64 ? "f64" : t == LCA_F32 ? "f32" : "bf16";
}

/* A plan of the header's variant, dtype and sizes on the ref backend
 * (bf16 elements: an f32 plan whose cache stores bf16). */
static lca_status header_plan(const struct header *h, lca_plan **plan)
{
	lca_params p;
	lca_status s;

	if ((s = lca_params_init(&p, (lca_variant)h->variant)))
		return s;
	p.dtype = h->dtype == LCA_BF16 ? LCA_F32 : (lca_dtype)h->dtype;
	p.H = h->dims[0];
	p.Hkv = h->dims[1];
	p.Hk = h->dims[2];
	p.dk = h->dims[3];
	p.dv = h->dims[4];
	p.dn = h->dims[5];
	p.dr = h->dims[6];
	p.dc = h->dims[7];
	if (p.variant == LCA_MLA)
		p.scale = 1.0;  /* any: the cache does not depend on it */
	return lca_plan_create(&p, plan);
}

/* Would nseq states of the plan fit in n bytes? They are allocated when
 * the cache is made, before the load looks at the payload. */
static int states_fit(const lca_plan *plan, int64_t nseq, size_t n)
{
	int64_t per_token, per_seq;

	if (lca_plan_cache_cost(plan, &per_token, &per_seq))
		return 0;
	return per_seq == 0 || (nseq <= INT64_MAX / per_seq && (uint64_t)(nseq * per_seq) <= n);
}

/* An empty cache for the header: its sequences and capacity, storing the
 * header's element type. */
static lca_status header_cache(const lca_plan *plan, const struct header *h,
	lca_cache **cache)
{
	lca_cache_opts o;
	lca_status s;

	if ((s = lca_cache_opts_init(plan, &o)))
		return s;
	o.nseq = h->nseq;
	o.capacity = h->capacity;
	if (h->dtype == LCA_BF16)
		o.storage = LCA_BF16;
	return lca_cache_create_ex(plan, &o, cache);
}

/* Load the bytes into a cache made from their header: every check of
 * lca_cache_load() (frame, checksum, lengths, sizes). *cache on success. */
static int load_bytes(const unsigned char *b, size_t n, lca_cache **cache, char *why,
	size_t whylen)
{
	struct header h;
	lca_plan *plan = NULL;
	lca_status s;

	*cache = NULL;
	if (read_header(b, n, &h, why, whylen))
		return -1;
	if (header_plan(&h, &plan)) {
		snprintf(why, whylen, "the header's sizes make no %s plan: %s",
			variants[h.variant], lca_last_error());
		return -1;
	}
	if (!states_fit(plan, h.nseq, n)) {
		snprintf(why, whylen, "the states of %lld sequences do not fit in %zu bytes",
			(long long)h.nseq, n);
		lca_plan_destroy(plan);
		return -1;
	}
	if ((s = header_cache(plan, &h, cache)) || (s = lca_cache_load(*cache, b, n))) {
		snprintf(why, whylen, "%s", lca_last_error());
		lca_cache_destroy(*cache);
		*cache = NULL;
	}
	lca_plan_destroy(plan);
	return s ? -1 : 0;
}

/* ---- the three verbs ------------------------------------------------------ */

static int usage(FILE *f)
{
	if (f != stdout) {
		fprintf(f, "lcattn checkpoint: usage: lcattn checkpoint info|verify FILE, "
			"or convert [--to h5|raw] IN OUT (--help says more)\n");
		return 2;
	}
	fprintf(f,
		"usage: lcattn checkpoint info FILE\n"
		"       lcattn checkpoint verify FILE\n"
		"       lcattn checkpoint convert [--to h5|raw] IN OUT\n"
		"\n"
		"FILE is a decode-cache checkpoint: an HDF5 file of schema lcattn-checkpoint/1\n"
		"(lcattn-checkpoint(5)) or the raw bytes of lca_cache_save(3).\n"
		"  info     print the header: format, variant, dtype, sizes, lengths\n"
		"  verify   check the checksum and the structure by loading it into a cache\n"
		"  convert  verify IN and write it to OUT in the other form (or --to's)\n"
		"Exit status: 0 ok, 2 a usage error or an unusable or damaged file.\n");
	return 0;
}

/* The bytes of a file, or exit status 2 with one line. */
static int get_bytes(const char *path, unsigned char **b, size_t *n, int *raw)
{
	char err[512];

	if (lcio_checkpoint_bytes(path, b, n, raw, NULL, err, sizeof err)) {
		fprintf(stderr, "lcattn checkpoint: %s\n", err);
		return 2;
	}
	return 0;
}

static int info(const char *path)
{
	unsigned char *b;
	size_t n;
	int raw, rc;
	struct header h;
	char why[400] = "";

	if ((rc = get_bytes(path, &b, &n, &raw)))
		return rc;
	if (read_header(b, n, &h, why, sizeof why)) {
		fprintf(stderr, "lcattn checkpoint: %s: %s\n", path, why);
		free(b);
		return 2;
	}
	printf("file      %s\n", path);
	printf("kind      %s\n", raw ? "raw (lca_cache_save bytes)" : "hdf5 (" LCIO_CKPT_SCHEMA ")");
	printf("format    %u\n", (unsigned)h.format);
	printf("variant   %s\n", variants[h.variant]);
	printf("dtype     %s\n", dtype_name(h.dtype));
	printf("bytes     %zu (header says %llu)\n", n, (unsigned long long)h.total);
	printf("nseq      %lld\n", (long long)h.nseq);
	printf("capacity  %lld\n", (long long)h.capacity);
	for (int i = 0; i < 8; i++)
		if (h.dims[i])
			printf("%-9s %lld\n", dim_names[i], (long long)h.dims[i]);
	printf("lengths  ");
	for (int64_t i = 0; i < h.nseq; i++)
		printf(" %lld", (long long)le64(h.lengths + 8 * i));
	printf("\n");
	free(b);
	return 0;
}

/* An HDF5 file's attributes and /lengths must repeat what its bytes say
 * (the bytes were loaded, so their header is sound). */
static int same_description(const char *path, const unsigned char *b, size_t n, char *why,
	size_t whylen)
{
	struct lcio_ckpt_info in;
	struct header h;
	const char *dt;
	char err[512];
	int bad = 0;

	if (lcio_checkpoint_info(path, &in, err, sizeof err)) {
		snprintf(why, whylen, "%s", err);
		return -1;
	}
	read_header(b, n, &h, why, whylen);
	dt = dtype_name(h.dtype);
	const int64_t got[8] = { in.H, in.Hkv, in.Hk, in.dk, in.dv, in.dn, in.dr, in.dc };

	for (int i = 0; i < 8 && !bad; i++)
		if (got[i] != h.dims[i])
			bad = snprintf(why, whylen, "attribute %s = %lld, the bytes say %lld",
				dim_names[i], (long long)got[i], (long long)h.dims[i]);
	if (!bad && (strcmp(in.variant, variants[h.variant]) || strcmp(in.dtype, dt)))
		bad = snprintf(why, whylen, "attributes variant, dtype = %s, %s; the bytes say %s, %s",
			in.variant, in.dtype, variants[h.variant], dt);
	if (!bad && (in.format != h.format || in.nseq != h.nseq || in.capacity != h.capacity ||
		     in.bytes != n))
		bad = snprintf(why, whylen,
			"attributes format, nseq, capacity or the size of /cache differ from the bytes");
	for (int64_t i = 0; !bad && i < h.nseq; i++)
		if (in.lengths[i] != (int64_t)le64(h.lengths + 8 * i))
			bad = snprintf(why, whylen, "/lengths[%lld] = %lld, the bytes say %lld",
				(long long)i, (long long)in.lengths[i],
				(long long)le64(h.lengths + 8 * i));
	lcio_ckpt_info_free(&in);
	return bad ? -1 : 0;
}

/* Read and validate path: bytes, kind and the loaded cache. */
static int verified(const char *path, unsigned char **b, size_t *n, int *raw,
	lca_cache **cache)
{
	char why[600] = "";
	int rc;

	*cache = NULL;
	if ((rc = get_bytes(path, b, n, raw)))
		return rc;
	if (load_bytes(*b, *n, cache, why, sizeof why) ||
	    (!*raw && same_description(path, *b, *n, why, sizeof why))) {
		fprintf(stderr, "lcattn checkpoint: %s: %s\n", path, why);
		lca_cache_destroy(*cache);
		*cache = NULL;
		free(*b);
		*b = NULL;
		return 2;
	}
	return 0;
}

static int verify(const char *path)
{
	unsigned char *b;
	size_t n;
	int raw, rc;
	lca_cache *c;
	struct header h;
	char why[200];
	int64_t tokens = 0;

	if ((rc = verified(path, &b, &n, &raw, &c)))
		return rc;
	read_header(b, n, &h, why, sizeof why);
	for (int64_t i = 0; i < h.nseq; i++)
		tokens += (int64_t)le64(h.lengths + 8 * i);
	printf("%s: ok: %s %s cache, %lld sequences, %lld tokens, %zu bytes, checksum good\n",
		path, variants[h.variant], dtype_name(h.dtype),
		(long long)h.nseq, (long long)tokens, n);
	lca_cache_destroy(c);
	free(b);
	return 0;
}

static int write_raw(const char *path, const unsigned char *b, size_t n, char *why,
	size_t whylen)
{
	FILE *f = fopen(path, "wb");
	int ok;

	if (!f) {
		snprintf(why, whylen, "%s: cannot create the file", path);
		return -1;
	}
	ok = fwrite(b, 1, n, f) == n;
	ok = (fclose(f) == 0) && ok;
	if (!ok) {
		unlink(path);
		snprintf(why, whylen, "%s: cannot write the file", path);
		return -1;
	}
	return 0;
}

static int convert(const char *in, const char *out, int to_raw)
{
	unsigned char *b;
	size_t n;
	int raw, rc;
	lca_cache *c;
	char why[600];

	if ((rc = verified(in, &b, &n, &raw, &c)))
		return rc;
	if (to_raw < 0)
		to_raw = !raw;
	rc = to_raw ? write_raw(out, b, n, why, sizeof why) :
		lcio_checkpoint_write(out, c, why, sizeof why);
	if (rc)
		fprintf(stderr, "lcattn checkpoint: %s\n", why);
	else
		printf("%s -> %s (%s)\n", in, out, to_raw ? "raw" : "hdf5");
	lca_cache_destroy(c);
	free(b);
	return rc ? 2 : 0;
}

int tool_checkpoint(int argc, char **argv)
{
	int to_raw = -1, a = 2;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
		return usage(stdout);
	if (argc < 3)
		return usage(stderr);
	if (!strcmp(argv[1], "info") && argc == 3)
		return info(argv[2]);
	if (!strcmp(argv[1], "verify") && argc == 3)
		return verify(argv[2]);
	if (strcmp(argv[1], "convert") != 0)
		return usage(stderr);
	if (argc > a + 1 && !strcmp(argv[a], "--to")) {
		if (!strcmp(argv[a + 1], "raw"))
			to_raw = 1;
		else if (!strcmp(argv[a + 1], "h5"))
			to_raw = 0;
		else {
			fprintf(stderr, "lcattn checkpoint: --to takes h5 or raw\n");
			return 2;
		}
		a += 2;
	}
	if (argc != a + 2)
		return usage(stderr);
	return convert(argv[a], argv[a + 1], to_raw);
}
