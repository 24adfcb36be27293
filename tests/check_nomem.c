/*
 * check_nomem.c - every allocation failure is reported, never a crash,
 * an exit or a wrong result. For each mechanism on the ref and cpu
 * backends in f64 and f32, and for each call below, the 1st allocation
 * the call makes is failed, then (afresh) the 2nd, and so on until the
 * call makes fewer allocations than the one to fail. Each time:
 *   - the status is LCA_ERR_NOMEM,
 *   - the outputs are untouched (pre-filled with a sentinel),
 *   - a created plan or cache pointer is NULL,
 *   - a cache stepped is unchanged (its lca_cache_save bytes);
 * and when an injected failure is nevertheless answered LCA_OK (a
 * fallback), the outputs are those of the call without failures.
 * Calls: lca_plan_create, the forward call, lca_cache_create, a prefill
 * step on an empty cache and a single-token step that makes the cache
 * grow (softmax and mla), a fork into an empty sequence and a snapshot
 * (the per-sequence calls that allocate); the backward calls of every
 * mechanism; and the forward calls of cpu bf16 plans.
 *
 * What is covered: allocations made by liblcattn's own code (its malloc,
 * calloc, realloc, aligned_alloc, posix_memalign calls), including those
 * made inside its OpenMP regions (the cpu plans run two threads). What is
 * not: allocations made inside libgomp and OpenBLAS on the library's
 * behalf. libgomp calls exit() when its own malloc fails (gomp_malloc,
 * e.g. creating a thread team) and OpenBLAS may abort: failing those would
 * test them, not lcattn, and lcattn cannot recover from them. So only a
 * caller inside liblcattn's executable segment has its allocation failed.
 */
#define _GNU_SOURCE
#include "testutil.h"
#include "mechfix.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the interposed allocator ------------------------------------------ */

/* The next definitions in link order (glibc's, or a sanitizer's, whose
 * free() must then see its own pointers). */
static void *(*next_malloc)(size_t);
static void *(*next_calloc)(size_t, size_t);
static void *(*next_realloc)(void *, size_t);
static void *(*next_aligned_alloc)(size_t, size_t);
static int (*next_posix_memalign)(void **, size_t, size_t);

static uintptr_t lib_lo, lib_hi;   /* liblcattn's code, [lo, hi) */
static atomic_int armed;
static atomic_long nalloc;         /* liblcattn allocations while armed */
static atomic_long fail_at;        /* the one to fail (1-based) */

static void resolve(void)
{
	next_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
	next_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
	next_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	next_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT,
		"aligned_alloc");
	next_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT,
		"posix_memalign");
}

/* Should the allocation called from ra fail? Counts it when it is
 * liblcattn's and the injection is armed. */
static int inject(void *ra)
{
	uintptr_t a = (uintptr_t)ra;

	if (!atomic_load(&armed) || a < lib_lo || a >= lib_hi)
		return 0;
	return atomic_fetch_add(&nalloc, 1) + 1 == atomic_load(&fail_at);
}

void *malloc(size_t n)
{
	if (!next_malloc)
		resolve();
	if (inject(__builtin_return_address(0))) {
		errno = ENOMEM;
		return NULL;
	}
	return next_malloc(n);
}

void *calloc(size_t n, size_t size)
{
	if (!next_calloc)
		resolve();
	if (inject(__builtin_return_address(0))) {
		errno = ENOMEM;
		return NULL;
	}
	return next_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
	if (!next_realloc)
		resolve();
	if (inject(__builtin_return_address(0))) {
		errno = ENOMEM;
		return NULL;
	}
	return next_realloc(p, n);
}

void *aligned_alloc(size_t align, size_t n)
{
	if (!next_aligned_alloc)
		resolve();
	if (inject(__builtin_return_address(0))) {
		errno = ENOMEM;
		return NULL;
	}
	return next_aligned_alloc(align, n);
}

int posix_memalign(void **p, size_t align, size_t n)
{
	if (!next_posix_memalign)
		resolve();
	if (inject(__builtin_return_address(0)))
		return ENOMEM;
	return next_posix_memalign(p, align, n);
}

/* The executable segment of the object that holds lca_version. */
static int find_lib(struct dl_phdr_info *info, size_t size, void *data)
{
	uintptr_t want = (uintptr_t)data;

	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) &&
		    want >= lo && want < lo + ph->p_memsz) {
			lib_lo = lo;
			lib_hi = lo + ph->p_memsz;
			return 1;
		}
	}
	return 0;
}

/* ---- failing each allocation of a call in turn ------------------------- */

/* One call under test with its arguments and what it must leave alone. */
struct trial {
	const struct mf *m;
	const lca_plan *plan;
	lca_cache *cache;          /* stepped (NULL: not a step) */
	int64_t t0, T;             /* the step's tokens */
	lca_plan *made_plan;       /* out of lca_plan_create */
	lca_cache *made_cache;     /* out of lca_cache_create */
	lca_snapshot *made_snap;   /* out of lca_cache_snapshot */
	const lca_cache_opts *opts; /* caches made with lca_cache_create_ex */
	void *o, *aux;             /* outputs; NULL where the call has none */
	const void *want_o, *want_aux;  /* the outputs without failures */
};

enum { PLAN_CREATE, FORWARD, CACHE_CREATE, STEP, FORK, SNAPSHOT };
static const char *const call_names[] = {
	"lca_plan_create", "forward", "lca_cache_create", "step", "lca_cache_fork",
	"lca_cache_snapshot"
};

static lca_status call(struct trial *t, int what)
{
	switch (what) {
	case PLAN_CREATE:
		return lca_plan_create(&t->m->p, &t->made_plan);
	case FORWARD:
		return mf_forward(t->m, t->plan, t->o, t->aux);
	case CACHE_CREATE:
		if (t->opts)
			return lca_cache_create_ex(t->plan, t->opts, &t->made_cache);
		return lca_cache_create(t->plan, 1, t->m->T, &t->made_cache);
	case STEP:
		return mf_step(t->m, t->plan, t->cache, t->t0, t->T, t->o);
	case FORK:
		return lca_cache_fork(t->cache, 0, 1);
	case SNAPSHOT:
		return lca_cache_snapshot(t->cache, 0, &t->made_snap);
	}
	return LCA_ERR_INTERNAL;
}

enum { SENTINEL = 0xa5 };

static int untouched(const void *x, int64_t n, size_t elt)
{
	const unsigned char *b = x;

	for (size_t i = 0; i < (size_t)n * elt; i++)
		if (b[i] != SENTINEL)
			return 0;
	return 1;
}

static long injected_total;

/* Fail the 1st, 2nd, ... liblcattn allocation of the call until it makes
 * no more; returns the allocations of a run without failures. */
static long fail_each(struct trial *t, int what, const char *name)
{
	const struct mf *m = t->m;
	int64_t no = what == STEP ? t->T * m->p.H * m->p.dv : m->no;
	size_t nb = 0, nb2;
	void *before = t->cache ? mf_cache_bytes(t->cache, &nb) : NULL;
	long k, injected = 0;

	for (k = 1;; k++) {
		lca_status s;
		long made;

		if (t->o)
			memset(t->o, SENTINEL, (size_t)no * m->elt);
		if (t->aux)
			memset(t->aux, SENTINEL, (size_t)m->naux * m->elt);
		atomic_store(&nalloc, 0);
		atomic_store(&fail_at, k);
		atomic_store(&armed, 1);
		s = call(t, what);
		atomic_store(&armed, 0);
		made = atomic_load(&nalloc);
		if (made < k) {      /* nothing failed: the call is done */
			tu_assert_ok(s);
			break;
		}
		injected++;
		if (s == LCA_OK) {   /* a fallback: its results must be right */
			ck_assert_msg(mf_same(m, t->o, t->want_o, no) &&
				(!t->aux || mf_same(m, t->aux, t->want_aux, m->naux)),
				"%s %s: allocation %ld failed, LCA_OK, wrong outputs",
				name, call_names[what], k);
		} else {
			ck_assert_msg(s == LCA_ERR_NOMEM, "%s %s: allocation %ld "
				"failed, got %s (%s)", name, call_names[what], k,
				lca_strerror(s), lca_last_error());
			ck_assert_msg((!t->o || untouched(t->o, no, m->elt)) &&
				(!t->aux || untouched(t->aux, m->naux, m->elt)),
				"%s %s: allocation %ld failed, outputs written",
				name, call_names[what], k);
			ck_assert_ptr_null(t->made_plan);
			ck_assert_ptr_null(t->made_cache);
			ck_assert_ptr_null(t->made_snap);
		}
		if (t->cache) {
			void *after = mf_cache_bytes(t->cache, &nb2);

			ck_assert_msg(s == LCA_OK || (nb2 == nb &&
				memcmp(after, before, nb) == 0),
				"%s %s: allocation %ld failed, cache changed", name,
				call_names[what], k);
			free(after);
			if (s == LCA_OK)   /* back to before, to fail the next one */
				tu_assert_ok(lca_cache_load(t->cache, before, nb));
		}
		lca_plan_destroy(t->made_plan);
		lca_cache_destroy(t->made_cache);
		lca_snapshot_destroy(t->made_snap);
		t->made_plan = NULL;
		t->made_cache = NULL;
		t->made_snap = NULL;
	}
	if (t->o && what != PLAN_CREATE && what != CACHE_CREATE)
		ck_assert_msg(mf_same(m, t->o, t->want_o, no),
			"%s %s: wrong outputs", name, call_names[what]);
	lca_plan_destroy(t->made_plan);
	lca_cache_destroy(t->made_cache);
	lca_snapshot_destroy(t->made_snap);
	t->made_plan = NULL;
	t->made_cache = NULL;
	t->made_snap = NULL;
	free(before);
	printf("nomem: %-24s %-16s %3ld allocations, %3ld failed in turn\n",
		name, call_names[what], k - 1, injected);
	injected_total += injected;
	return k - 1;
}

/* ---- the calls of one mechanism ----------------------------------------- */

struct conf {
	lca_backend backend;
	lca_dtype dtype;
	const char *name;
};

static const struct conf confs[] = {
	{ LCA_BACKEND_REF, LCA_F64, "ref f64" },
	{ LCA_BACKEND_REF, LCA_F32, "ref f32" },
	{ LCA_BACKEND_CPU, LCA_F64, "cpu f64" },
	{ LCA_BACKEND_CPU, LCA_F32, "cpu f32" },
};

enum { T = 40, PREFILL = 23 };

static lca_cache *make_cache(const lca_plan *plan, const lca_cache_opts *opts,
	int64_t nseq, int64_t capacity);

/* Steps (a prefill, then one token), a fork into an empty sequence and a
 * snapshot, each allocation failed in turn, on caches made with opts (NULL:
 * lca_cache_create). */
static void cache_calls(struct trial *t, const struct mf *m, const lca_plan *plan,
	const lca_cache_opts *opts, const char *name, void *o, void *want_o)
{
	const size_t row = (size_t)(m->p.H * m->p.dv) * m->elt;
	lca_cache *c;

	/* The same tokens stepped without failures give the wanted outputs. */
	c = make_cache(plan, opts, 1, T);
	tu_assert_ok(mf_step(m, plan, c, 0, PREFILL, want_o));
	tu_assert_ok(mf_step(m, plan, c, PREFILL, 1, (char *)want_o + PREFILL * row));
	lca_cache_destroy(c);
	c = make_cache(plan, opts, 1, T);
	t->cache = c;
	t->o = o;
	t->want_o = want_o;
	t->aux = NULL;
	t->t0 = 0;
	t->T = PREFILL;
	fail_each(t, STEP, name);
	t->t0 = PREFILL;
	t->T = 1;
	t->o = (char *)o + PREFILL * row;
	t->want_o = (char *)want_o + PREFILL * row;
	fail_each(t, STEP, name);
	lca_cache_destroy(c);

	/* A fork into an empty sequence (which must allocate for softmax and
	 * mla), then a snapshot. */
	{
		const int64_t cu[3] = { 0, PREFILL, PREFILL };

		c = make_cache(plan, opts, 2, T);
		tu_assert_ok(mf_step_cu(m, plan, c, 0, PREFILL, cu, o));
	}
	t->cache = c;
	t->o = NULL;
	fail_each(t, FORK, name);
	fail_each(t, SNAPSHOT, name);
	lca_cache_destroy(c);
	t->cache = NULL;
}

/* A cache of nseq sequences of capacity tokens, as opts says (NULL: the
 * defaults). */
static lca_cache *make_cache(const lca_plan *plan, const lca_cache_opts *opts,
	int64_t nseq, int64_t capacity)
{
	lca_cache *c = NULL;
	lca_cache_opts o;

	if (opts)
		o = *opts;
	else
		tu_assert_ok(lca_cache_opts_init(plan, &o));
	o.nseq = nseq;
	o.capacity = capacity;
	tu_assert_ok(lca_cache_create_ex(plan, &o, &c));
	return c;
}

static void every_call(lca_variant v, const struct conf *cf)
{
	struct mf m;
	struct trial t;
	char name[40];
	lca_plan *plan;
	void *o, *aux, *want_o, *want_aux;

	mf_init(&m, v, cf->backend, cf->dtype, T);
	m.p.nthreads = 2;  /* allocations inside OpenMP regions too */
	snprintf(name, sizeof name, "%s %s", mf_name(v), cf->name);
	plan = tu_plan(&m.p);
	o = mf_alloc_out(&m, m.no);
	aux = mf_alloc_out(&m, m.naux);
	want_o = mf_alloc_out(&m, m.no);
	want_aux = mf_alloc_out(&m, m.naux);

	memset(&t, 0, sizeof t);
	t.m = &m;
	t.plan = plan;
	fail_each(&t, PLAN_CREATE, name);
	fail_each(&t, CACHE_CREATE, name);

	tu_assert_ok(mf_forward(&m, plan, want_o, want_aux));
	t.o = o;
	t.aux = aux;
	t.want_o = want_o;
	t.want_aux = want_aux;
	fail_each(&t, FORWARD, name);

	cache_calls(&t, &m, plan, NULL, name, o, want_o);
	if (v == LCA_SOFTMAX || v == LCA_MLA) {
		/* the same over a paged pool storing bf16 (lca_cache_create_ex):
		 * the pool, page tables, gathers and copy-on-write allocate */
		lca_cache_opts co;
		int64_t pt, ps;
		char pname[48];

		tu_assert_ok(lca_cache_opts_init(plan, &co));
		tu_assert_ok(lca_plan_cache_cost(plan, &pt, &ps));
		co.nseq = 2;
		co.capacity = T;
		co.storage = LCA_BF16;
		co.pool_bytes = (size_t)(4 * LCA_CACHE_PAGE * pt);
		snprintf(pname, sizeof pname, "%s paged", name);
		t.cache = NULL;
		t.o = t.aux = NULL;
		t.opts = &co;
		fail_each(&t, CACHE_CREATE, pname);
		cache_calls(&t, &m, plan, &co, pname, o, want_o);
		t.opts = NULL;
	}
	lca_plan_destroy(plan);
	free(o);
	free(aux);
	free(want_o);
	free(want_aux);
	mf_free(&m);
}

static void every_conf(lca_variant v)
{
	ck_assert_msg(dl_iterate_phdr(find_lib, (void *)(uintptr_t)lca_version),
		"liblcattn's code not found");
	injected_total = 0;
	for (size_t i = 0; i < sizeof confs / sizeof confs[0]; i++)
		every_call(v, &confs[i]);
	printf("nomem: %s: %ld allocation failures injected\n", mf_name(v),
		injected_total);
	/* Each call of each mechanism allocates (plans, caches, workspaces):
	 * zero would mean the injection never reached the library. */
	ck_assert_int_gt(injected_total, 0);
}

/* ---- the backward calls ------------------------------------------------- */

/* The gradients a backward call writes: one per input (lightning's slopes
 * have none), then dstate0 for the two linear mechanisms. */
static int ngrad(const struct mf *m)
{
	switch (m->p.variant) {
	case LCA_DELTANET:
		return m->nin + 1;
	case LCA_LIGHTNING:
		return m->nin;       /* q k v, not slope; dstate0 */
	default:
		return m->nin;
	}
}

static lca_status backward(const struct mf *m, const lca_plan *plan,
	const void *dout, void *const *g)
{
	void *const *x = m->in;

	switch (m->p.variant) {
	case LCA_SOFTMAX:
		return lca_softmax_backward(plan, m->T, m->T, x[0], x[1], x[2], NULL,
			0, dout, g[0], g[1], g[2]);
	case LCA_MLA:
		return lca_mla_backward(plan, m->T, m->T, x[0], x[1], x[2], x[3], x[4],
			x[5], NULL, 0, dout, g[0], g[1], g[2], g[3], g[4], g[5]);
	case LCA_DELTANET:
		return lca_deltanet_backward(plan, m->T, x[0], x[1], x[2], x[3], x[4],
			NULL, 0, NULL, dout, NULL, g[0], g[1], g[2], g[3], g[4], g[5]);
	default:
		return lca_lightning_backward(plan, m->T, x[0], x[1], x[2], x[3], NULL,
			0, NULL, dout, NULL, g[0], g[1], g[2], g[3]);
	}
}

/* Elements of gradient i: shaped like input i; the last one of a linear
 * mechanism is dstate0, shaped like the final state. */
static int64_t in_count(const struct mf *m, int i)
{
	if (m->p.variant >= LCA_DELTANET && i == ngrad(m) - 1)
		return m->naux;
	return m->perm[i] ? m->row[i] : m->row[i] * m->T;
}

/* Fail each allocation of the backward call in turn: LCA_ERR_NOMEM with
 * every gradient untouched, or LCA_OK with the gradients of a run without
 * failures. */
static void backward_fail_each(lca_variant v, const struct conf *cf,
	lca_algo algo)
{
	struct mf m;
	void *g[MF_MAXIN], *want[MF_MAXIN], *dout;
	char name[40];
	lca_plan *plan;
	long k, injected = 0;

	mf_init(&m, v, cf->backend, cf->dtype, T);
	m.p.nthreads = 2;
	if (algo != LCA_ALGO_AUTO)
		m.p.algo = algo;
	snprintf(name, sizeof name, "%s %s%s", mf_name(v), cf->name,
		algo == LCA_ALGO_ABSORBED ? " absorbed" : algo == LCA_ALGO_NAIVE ?
		" naive" : "");
	plan = tu_plan(&m.p);
	dout = mf_alloc_out(&m, m.no);
	tu_assert_ok(mf_forward(&m, plan, dout, NULL));  /* any cotangent */
	for (int i = 0; i < ngrad(&m); i++) {
		g[i] = mf_alloc_out(&m, in_count(&m, i));
		want[i] = mf_alloc_out(&m, in_count(&m, i));
	}
	tu_assert_ok(backward(&m, plan, dout, want));
	for (k = 1;; k++) {
		lca_status s;
		long made;

		for (int i = 0; i < ngrad(&m); i++)
			memset(g[i], SENTINEL, (size_t)in_count(&m, i) * m.elt);
		atomic_store(&nalloc, 0);
		atomic_store(&fail_at, k);
		atomic_store(&armed, 1);
		s = backward(&m, plan, dout, g);
		atomic_store(&armed, 0);
		made = atomic_load(&nalloc);
		if (made < k) {
			tu_assert_ok(s);
			break;
		}
		injected++;
		for (int i = 0; i < ngrad(&m); i++)
			if (s == LCA_OK)
				ck_assert_msg(mf_same(&m, g[i], want[i], in_count(&m, i)),
					"%s backward: allocation %ld failed, LCA_OK, wrong "
					"gradient %d", name, k, i);
			else
				ck_assert_msg(s == LCA_ERR_NOMEM && untouched(g[i],
					in_count(&m, i), m.elt), "%s backward: allocation "
					"%ld failed: %s, gradient %d %s", name, k,
					lca_strerror(s), i, "written or wrong status");
	}
	printf("nomem: %-24s %-16s %3ld allocations, %3ld failed in turn\n",
		name, "backward", k - 1, injected);
	ck_assert_int_gt(injected, 0);
	for (int i = 0; i < ngrad(&m); i++) {
		free(g[i]);
		free(want[i]);
	}
	free(dout);
	lca_plan_destroy(plan);
	mf_free(&m);
}

START_TEST(test_backward_reports_every_failed_allocation)
{
	ck_assert_msg(dl_iterate_phdr(find_lib, (void *)(uintptr_t)lca_version),
		"liblcattn's code not found");
	for (size_t i = 0; i < sizeof confs / sizeof confs[0]; i++) {
		for (int v = 0; v < 4; v++)
			backward_fail_each(mf_variants[v], &confs[i],
				mf_variants[v] == LCA_MLA ? LCA_ALGO_NAIVE : LCA_ALGO_AUTO);
		backward_fail_each(LCA_MLA, &confs[i], LCA_ALGO_ABSORBED);
	}
}
END_TEST

/* ---- bf16 forward calls (cpu) ------------------------------------------ */

/* The float's nearest bf16 bits (ties to even; the values are finite). */
static uint16_t to_bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof u);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/*
 * The forward call of m in a cpu bf16 plan over its first ntok tokens, each
 * allocation failed in turn: LCA_ERR_NOMEM with o and aux untouched, or
 * LCA_OK with the bits of a run without failures. aux is lse (bf16) or,
 * for deltanet and lightning, the final state (float32, as bf16 plans
 * take it); ntok <= 4 takes their decode-sized step path.
 */
static void bf16_forward_fail_each(lca_variant v, int64_t ntok)
{
	struct mf m, b;
	const int linear = v == LCA_DELTANET || v == LCA_LIGHTNING;
	size_t no, naux;
	void *o, *aux, *want_o, *want_aux;
	lca_plan *plan;
	long k, injected = 0;

	mf_init(&m, v, LCA_BACKEND_CPU, LCA_F32, T);
	b = m;
	b.p.dtype = LCA_BF16;
	b.p.nthreads = 2;
	b.T = ntok;
	for (int i = 0; i < m.nin; i++) {
		int64_t n = m.perm[i] ? m.row[i] : m.row[i] * m.T;
		uint16_t *x = malloc((size_t)n * sizeof *x);

		ck_assert_ptr_nonnull(x);
		for (int64_t e = 0; e < n; e++)
			x[e] = to_bf16(((const float *)m.in[i])[e]);
		b.in[i] = x;
	}
	no = (size_t)(ntok * b.p.H * b.p.dv) * 2;
	naux = linear ? (size_t)m.naux * 4 : (size_t)(ntok * b.p.H) * 2;
	o = malloc(no);
	aux = malloc(naux);
	want_o = malloc(no);
	want_aux = malloc(naux);
	ck_assert(o && aux && want_o && want_aux);
	plan = tu_plan(&b.p);
	tu_assert_ok(mf_forward(&b, plan, want_o, want_aux));
	for (k = 1;; k++) {
		lca_status s;
		long made;

		memset(o, SENTINEL, no);
		memset(aux, SENTINEL, naux);
		atomic_store(&nalloc, 0);
		atomic_store(&fail_at, k);
		atomic_store(&armed, 1);
		s = mf_forward(&b, plan, o, aux);
		atomic_store(&armed, 0);
		made = atomic_load(&nalloc);
		if (made < k) {
			tu_assert_ok(s);
			break;
		}
		injected++;
		if (s == LCA_OK)
			ck_assert_msg(memcmp(o, want_o, no) == 0 &&
				memcmp(aux, want_aux, naux) == 0, "%s bf16 T=%lld: "
				"allocation %ld failed, LCA_OK, other bits", mf_name(v),
				(long long)ntok, k);
		else
			ck_assert_msg(s == LCA_ERR_NOMEM && untouched(o, (int64_t)no, 1) &&
				untouched(aux, (int64_t)naux, 1), "%s bf16 T=%lld: "
				"allocation %ld failed: %s, outputs %s", mf_name(v),
				(long long)ntok, k, lca_strerror(s),
				"written or wrong status");
	}
	ck_assert_msg(memcmp(o, want_o, no) == 0 && memcmp(aux, want_aux, naux) == 0,
		"%s bf16 T=%lld: wrong outputs", mf_name(v), (long long)ntok);
	printf("nomem: %-15s bf16 T=%-3lld forward          %3ld allocations, %3ld "
		"failed in turn\n", mf_name(v), (long long)ntok, k - 1, injected);
	ck_assert_int_gt(injected, 0);
	for (int i = 0; i < b.nin; i++)
		free(b.in[i]);
	free(o);
	free(aux);
	free(want_o);
	free(want_aux);
	lca_plan_destroy(plan);
	mf_free(&m);
}

START_TEST(test_bf16_forward_reports_every_failed_allocation)
{
	ck_assert_msg(dl_iterate_phdr(find_lib, (void *)(uintptr_t)lca_version),
		"liblcattn's code not found");
	for (int v = 0; v < 4; v++)
		bf16_forward_fail_each(mf_variants[v], T);
	/* decode-sized calls of the linear mechanisms take the step path */
	bf16_forward_fail_each(LCA_DELTANET, 2);
	bf16_forward_fail_each(LCA_LIGHTNING, 2);
}
END_TEST

START_TEST(test_softmax_reports_every_failed_allocation)
{
	every_conf(LCA_SOFTMAX);
}
END_TEST

START_TEST(test_mla_reports_every_failed_allocation)
{
	every_conf(LCA_MLA);
}
END_TEST

START_TEST(test_deltanet_reports_every_failed_allocation)
{
	every_conf(LCA_DELTANET);
}
END_TEST

START_TEST(test_lightning_reports_every_failed_allocation)
{
	every_conf(LCA_LIGHTNING);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("nomem");
	TCase *tc = tu_tcase("nomem");

	tu_init();
	tcase_add_test(tc, test_softmax_reports_every_failed_allocation);
	tcase_add_test(tc, test_mla_reports_every_failed_allocation);
	tcase_add_test(tc, test_deltanet_reports_every_failed_allocation);
	tcase_add_test(tc, test_lightning_reports_every_failed_allocation);
	tcase_add_test(tc, test_backward_reports_every_failed_allocation);
	tcase_add_test(tc, test_bf16_forward_reports_every_failed_allocation);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
