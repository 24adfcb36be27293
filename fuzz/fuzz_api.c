/*
 * fuzz_api.c - libFuzzer target for the API's argument checks.
 *
 * The input is decoded into lca_params fields (each one kept at its
 * lca_params_init() default unless the input overrides it, so most inputs
 * give a valid plan and reach the kernels) and call sizes; then
 * lca_plan_create, one forward call, and a cache create (lca_cache_create
 * or lca_cache_create_ex with a paged pool and a storage type), a step, a few
 * per-sequence calls (ids in range or not), a step and a save/load round
 * trip, every tensor allocated to exactly what the plan and sizes imply,
 * and the backward call of another forward-shaped call. The library must
 * return a status for each call, a
 * failed call must leave its outputs alone (lcattn.h), and AddressSanitizer
 * and UBSan watch everything else.
 */
#include "tensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A broken promise of the API: report it the way libFuzzer records a crash. */
static void expect(int ok, const char *what, lca_status s)
{
	if (ok)
		return;
	fprintf(stderr, "fuzz_api: %s (status %d: %s; %s)\n", what, (int)s,
		lca_strerror(s), lca_last_error());
	abort();
}

/* Every status is one of the enum's, and a failure explains itself.
 * FUZZ_VERBOSE=1 prints each one: where did this input stop? */
static void check_status(lca_status s)
{
	static int verbose = -1;

	if (verbose < 0)
		verbose = getenv("FUZZ_VERBOSE") != NULL;
	if (verbose)
		fprintf(stderr, "fuzz_api: %s %s\n", lca_strerror(s), lca_last_error());
	/* Every status but LCA_ERR_INTERNAL (a bug) is a valid answer. */
	expect(s >= LCA_OK && s <= LCA_ERR_RANGE && s != LCA_ERR_INTERNAL,
		"status out of range or INTERNAL", s);
	expect(s == LCA_OK || lca_last_error()[0] != '\0', "failure without a message", s);
}

/* An enum field: mostly a valid value, sometimes one past the end or any
 * 32 bits (the plan must refuse those). */
static int fz_enum(struct fz_in *in, int nvalid)
{
	uint8_t b = fz_u8(in);

	if (b < 240)
		return b % nvalid;
	if (b < 250)
		return nvalid + b % 3;
	return (int)(uint32_t)fz_u64(in);
}

/* Override the fields picked by the 32-bit mask; the rest keep defaults. */
static void decode_params(struct fz_in *in, lca_params *p)
{
	uint32_t m = (uint32_t)fz_u64(in);
	int f = 0;

#define PICK(field, expr) do { if (m >> f++ & 1) p->field = (expr); } while (0)
	PICK(backend, (lca_backend)fz_enum(in, 2));
	PICK(dtype, (lca_dtype)fz_enum(in, 3));
	PICK(algo, (lca_algo)fz_enum(in, 5));
	PICK(H, fz_size(in));
	PICK(Hkv, fz_size(in));
	PICK(Hk, fz_size(in));
	PICK(dk, fz_size(in));
	PICK(dv, fz_size(in));
	PICK(dn, fz_size(in));
	PICK(dr, fz_size(in));
	PICK(dc, fz_size(in));
	PICK(scale, fz_double(in));
	PICK(causal, fz_enum(in, 2));
	PICK(window, fz_size(in));
	PICK(rope_dim, fz_u8(in) < 32 ? LCA_ROPE_FULL : fz_size(in));
	PICK(rope_theta, fz_double(in));
	PICK(rope_style, (lca_rope_style)fz_enum(in, 2));
	PICK(qk_l2norm, fz_enum(in, 2));
	PICK(chunk, fz_size(in));
	PICK(block, fz_size(in));
	PICK(nthreads, fz_enum(in, 3));
	PICK(check_finite, fz_enum(in, 2));
	PICK(variant, (lca_variant)fz_enum(in, 4));
#undef PICK
	/* The cpu backend's threads: at most 2 on a 2-core CI machine
	 * (negative counts go through: the plan must refuse them). */
	if (p->nthreads > 2)
		p->nthreads = 1 + (p->nthreads & 1);
}

/* cu_seqlens[0..nseq]: usually a valid split of T (the argument is then
 * accepted), sometimes arbitrary values (it must be refused). */
static int64_t *decode_cu(struct fz_in *in, int64_t nseq, int64_t T)
{
	int64_t *cu = malloc((size_t)(nseq + 1) * sizeof *cu);
	int raw = fz_u8(in) < 32;

	if (!cu)
		return NULL;
	cu[0] = 0;
	for (int64_t i = 1; i <= nseq; i++) {
		uint64_t left = T > cu[i - 1] ? (uint64_t)T - (uint64_t)cu[i - 1] : 0;

		if (raw)
			cu[i] = fz_size(in);
		else if (i == nseq)
			cu[i] = T;
		else
			cu[i] = cu[i - 1] + (int64_t)(fz_u8(in) % (left + 1));
	}
	return cu;
}

static lca_status forward(const lca_plan *plan, const struct fz_call *c,
	const int64_t *cu, int64_t nseq)
{
#define D(name) fz_data(c, name)
	switch (c->p.variant) {
	case LCA_SOFTMAX:
		return lca_softmax_forward(plan, c->Tq, c->Tk, D("q"), D("k"), D("v"),
			cu, nseq, D("o"), D("lse"));
	case LCA_MLA:
		return lca_mla_forward(plan, c->Tq, c->Tk, D("q_nope"), D("q_rope"),
			D("ckv"), D("k_rope"), D("w_uk"), D("w_uv"), cu, nseq, D("o"),
			D("lse"));
	case LCA_DELTANET:
		return lca_deltanet_forward(plan, c->Tq, D("q"), D("k"), D("v"), D("g"),
			D("beta"), cu, nseq, D("state0"), D("o"), D("state"));
	default:
		return lca_lightning_forward(plan, c->Tq, D("q"), D("k"), D("v"),
			D("slope"), cu, nseq, D("state0"), D("o"), D("state"));
	}
}

static lca_status backward(const lca_plan *plan, const struct fz_call *c,
	const int64_t *cu, int64_t nseq)
{
	switch (c->p.variant) {
	case LCA_SOFTMAX:
		return lca_softmax_backward(plan, c->Tq, c->Tk, D("q"), D("k"), D("v"),
			cu, nseq, D("do"), D("dq"), D("dk"), D("dv"));
	case LCA_MLA:
		return lca_mla_backward(plan, c->Tq, c->Tk, D("q_nope"), D("q_rope"),
			D("ckv"), D("k_rope"), D("w_uk"), D("w_uv"), cu, nseq, D("do"),
			D("dq_nope"), D("dq_rope"), D("dckv"), D("dk_rope"), D("dw_uk"),
			D("dw_uv"));
	case LCA_DELTANET:
		return lca_deltanet_backward(plan, c->Tq, D("q"), D("k"), D("v"),
			D("g"), D("beta"), cu, nseq, D("state0"), D("do"), D("dstate"),
			D("dq"), D("dk"), D("dv"), D("dg"), D("dbeta"), D("dstate0"));
	default:
		return lca_lightning_backward(plan, c->Tq, D("q"), D("k"), D("v"),
			D("slope"), cu, nseq, D("state0"), D("do"), D("dstate"), D("dq"),
			D("dk"), D("dv"), D("dstate0"));
	}
}

static lca_status step(const lca_plan *plan, lca_cache *cache,
	const struct fz_call *c, const int64_t *cu)
{
	switch (c->p.variant) {
	case LCA_SOFTMAX:
		return lca_softmax_step(plan, cache, c->Tq, D("q"), D("k"), D("v"), cu,
			D("o"), D("lse"));
	case LCA_MLA:
		return lca_mla_step(plan, cache, c->Tq, D("q_nope"), D("q_rope"),
			D("ckv"), D("k_rope"), D("w_uk"), D("w_uv"), cu, D("o"), D("lse"));
	case LCA_DELTANET:
		return lca_deltanet_step(plan, cache, c->Tq, D("q"), D("k"), D("v"),
			D("g"), D("beta"), cu, D("o"));
	default:
		return lca_lightning_step(plan, cache, c->Tq, D("q"), D("k"), D("v"),
			D("slope"), cu, D("o"));
	}
#undef D
}

/* Sometimes drop one tensor pointer: the library must say LCA_ERR_NULL,
 * or accept it where the argument is optional. */
static void maybe_null(struct fz_in *in, struct fz_call *c)
{
	uint8_t b = fz_u8(in);

	if (b < 24 && c->nt > 0) {
		free(c->t[b % c->nt].data);
		c->t[b % c->nt].data = NULL;
	}
}

/* The cache's checkpoint bytes (malloc'd, *n of them), or NULL. */
static unsigned char *saved(const lca_cache *cache, size_t *n)
{
	unsigned char *b;
	size_t again;

	if (!cache || lca_cache_save(cache, NULL, 0, n) || *n > (size_t)FZ_MAX_BYTES ||
	    !(b = malloc(*n)))
		return NULL;
	if (lca_cache_save(cache, b, *n, &again) == LCA_OK)
		return b;
	free(b);
	return NULL;
}

/* A failed call leaves the cache as it was (lca_cache_create(3)). */
static void expect_unchanged(const lca_cache *cache, const unsigned char *before,
	size_t n, lca_status s)
{
	size_t m = 0;
	unsigned char *after = saved(cache, &m);

	if (before && after)
		expect(m == n && memcmp(before, after, n) == 0,
			"a failed call changed the cache", s);
	free(after);
}

/* Run one call (forward, or backward with bwd, when cache is NULL, else a
 * step) with sizes Tq, Tk over nseq sequences, decoded from in. */
static void run_call(const lca_plan *plan, const lca_params *p, lca_cache *cache,
	int64_t cache_nseq, int bwd, struct fz_in *in)
{
	struct fz_call c = { .p = *p, .step = cache != NULL, .backward = bwd };
	int64_t nseq = cache ? cache_nseq : fz_size(in), *cu = NULL;
	int use_cu = cache ? cache_nseq > 1 || fz_u8(in) < 32 : fz_u8(in) < 96;
	lca_status s;

	c.Tq = fz_size(in);
	c.Tk = p->variant <= LCA_MLA && !cache ? fz_size(in) : c.Tq;
	c.N = use_cu ? nseq : 1;
	c.raw_signs = fz_u8(in) < 64;
	/* cu_seqlens is read up to [nseq]: the caller's promise, not a check. */
	if (use_cu && (nseq < 0 || nseq > 64 || !(cu = decode_cu(in, nseq, c.Tq))))
		return;
	fz_layout(&c);
	if (fz_alloc(&c, in) == 0) {
		size_t n = 0;
		unsigned char *before = saved(cache, &n);

		maybe_null(in, &c);
		s = cache ? step(plan, cache, &c, cu) : bwd ? backward(plan, &c, cu, nseq) :
			forward(plan, &c, cu, nseq);
		check_status(s);
		if (s != LCA_OK && s != LCA_ERR_NOMEM) {
			expect(fz_outputs_untouched(&c), "a failed call wrote an output", s);
			expect_unchanged(cache, before, n, s);
		}
		free(before);
		fz_free(&c);
	}
	free(cu);
}

/* A loaded checkpoint of the cache saves to the same bytes it was loaded
 * from, and loads back into its own cache. */
static void round_trip(lca_cache *cache)
{
	size_t need = 0, again = 0;
	unsigned char *a, *b;
	lca_status s;

	check_status(s = lca_cache_save(cache, NULL, 0, &need));
	if (s || need > (size_t)FZ_MAX_BYTES)
		return;
	a = malloc(need);
	b = malloc(need);
	if (a && b) {
		s = lca_cache_save(cache, a, need, &again);
		expect(s == LCA_OK, "save", s);
		s = lca_cache_load(cache, a, need);
		/* lca_cache_load(3): a checkpoint holding a NaN or an infinity
		 * is refused; a cache holds one only when a step was given one
		 * with check_finite off, or a state overflowed */
		if (s == LCA_ERR_CORRUPT && strstr(lca_last_error(), "NaN or an infinity")) {
			free(a);
			free(b);
			return;
		}
		expect(s == LCA_OK, "load of a save", s);
		s = lca_cache_save(cache, b, need, &again);
		expect(s == LCA_OK, "save after a load", s);
		expect(memcmp(a, b, need) == 0, "load then save changed the bytes", s);
	}
	free(a);
	free(b);
}

/* The state argument of get/set_state: H dk dv elements of the plan's
 * dtype (what a deltanet or lightning cache wants), or NULL when too big. */
static void *state_buf(const lca_params *p)
{
	int64_t n;

	if (p->H < 1 || p->dk < 1 || p->dv < 1 || p->H > FZ_MAX_BYTES / p->dk ||
	    p->H * p->dk > FZ_MAX_BYTES / p->dv || (n = p->H * p->dk * p->dv) > FZ_MAX_BYTES / 8)
		return NULL;
	return calloc((size_t)n, 8);
}

/* One per-sequence call, ids from the input (in range or not). */
static lca_status seq_op(lca_cache *cache, const lca_params *p, int64_t nseq,
	lca_snapshot **snap, struct fz_in *in)
{
	int op = fz_u8(in) % 9;
	int64_t a = (int64_t)(fz_u8(in) % (nseq + 2)) - 1;
	int64_t b = (int64_t)(fz_u8(in) % (nseq + 2)) - 1, got;
	void *st;
	lca_status s;

	switch (op) {
	case 0:
		return lca_cache_reset_seq(cache, a);
	case 1:
		return lca_cache_retire(cache, a);
	case 2:
		return lca_cache_admit(cache, &got);
	case 3:
		return lca_cache_truncate(cache, a, fz_size(in));
	case 4:
		return lca_cache_fork(cache, a, b);
	case 5:
	case 6:
		st = state_buf(p);
		s = op == 5 ? lca_cache_get_state(cache, a, st) :
			lca_cache_set_state(cache, a, st, fz_size(in));
		free(st);
		return s;
	case 7:
		lca_snapshot_destroy(*snap);
		return lca_cache_snapshot(cache, a, snap);
	default:
		return lca_cache_restore(cache, a, *snap);
	}
}

/* A few per-sequence calls: each answers a valid status, and a refused
 * one leaves the cache as it was. */
static void run_seq_ops(lca_cache *cache, const lca_params *p, int64_t nseq,
	struct fz_in *in)
{
	lca_snapshot *snap = NULL;
	int nops = fz_u8(in) % 6;

	for (int i = 0; i < nops; i++) {
		size_t n = 0;
		unsigned char *before = saved(cache, &n);
		lca_status s = seq_op(cache, p, nseq, &snap, in);

		check_status(s);
		if (s != LCA_OK && s != LCA_ERR_NOMEM)
			expect_unchanged(cache, before, n, s);
		free(before);
	}
	lca_snapshot_destroy(snap);
}

static void run_cache(const lca_plan *plan, const lca_params *p, struct fz_in *in)
{
	int64_t nseq = fz_size(in), cap = fz_size(in), per_token, per_seq;
	lca_cache *cache = NULL;
	lca_status s;

	check_status(s = lca_plan_cache_cost(plan, &per_token, &per_seq));
	/* Skip caches too big to allocate quickly; nothing to learn there. */
	if (s || nseq > 64 || (nseq > 0 && per_seq > FZ_MAX_BYTES / nseq))
		return;
	if (fz_u8(in) < 128) {
		check_status(s = lca_cache_create(plan, nseq, cap, &cache));
	} else {
		/* lca_cache_create_ex: a paged pool of a few pages (or none,
		 * or a size no page fits) and the storage type from the input */
		lca_cache_opts o;

		check_status(s = lca_cache_opts_init(plan, &o));
		if (s)
			return;
		o.nseq = nseq;
		o.capacity = cap;
		o.pool_bytes = (size_t)(fz_u8(in) % 8) * LCA_CACHE_PAGE *
			(size_t)(per_token > 0 && per_token < FZ_MAX_BYTES / 512 ? per_token : 1);
		if (fz_u8(in) < 64)
			o.pool_bytes += fz_u8(in);
		o.storage = (lca_dtype)(fz_u8(in) % 4);
		check_status(s = lca_cache_create_ex(plan, &o, &cache));
		expect(s == LCA_OK || cache == NULL, "a failed create left a cache", s);
		if (!s) {
			int64_t used = -1, total = -1;

			check_status(lca_cache_pages(cache, &used, &total));
			expect(used == 0 && total >= 0, "a new cache uses pages", LCA_OK);
		}
	}
	if (s)
		return;
	run_call(plan, p, cache, nseq, 0, in);
	run_seq_ops(cache, p, nseq, in);
	run_call(plan, p, cache, nseq, 0, in);
	round_trip(cache);
	check_status(lca_cache_reset(cache));
	lca_cache_destroy(cache);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	lca_params p, resolved;
	lca_plan *plan = NULL;
	lca_cost cost;
	lca_status s;

	check_status(lca_params_init(&p, (lca_variant)(fz_u8(&in) % 4)));
	decode_params(&in, &p);
	check_status(s = lca_plan_create(&p, &plan));
	if (s) {
		expect(plan == NULL, "a failed lca_plan_create left a plan", s);
		return 0;
	}
	check_status(s = lca_plan_params(plan, &resolved));
	expect(s == LCA_OK, "lca_plan_params of a valid plan", s);
	check_status(lca_plan_cost(plan, (lca_phase)(fz_u8(&in) % 4), fz_size(&in), &cost));
	run_call(plan, &resolved, NULL, 0, 0, &in);
	run_cache(plan, &resolved, &in);
	run_call(plan, &resolved, NULL, 0, 1, &in);
	lca_plan_destroy(plan);
	return 0;
}
