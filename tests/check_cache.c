/*
 * check_cache.c - decode caches. For every mechanism on the ref backend
 * (f64, f32) and the cpu backend (f64, f32):
 *   - a prefill followed by single-token steps gives the outputs of one
 *     forward call over the whole sequence, across chunk (64) and block
 *     (256) boundaries, within the tolerance rule of DESIGN.md;
 *   - a packed batch stepping its sequences by different counts (0
 *     included) gives the outputs of one forward call per sequence;
 *   - a checkpoint loaded into a fresh cache continues bit for bit;
 *   - a damaged or mismatched checkpoint, a step past the capacity and a
 *     refused argument leave the cache exactly as it was (compared through
 *     lca_cache_save);
 *   - lca_cache_bytes follows the documented growth rule exactly.
 *
 * Built three times (Makefile.am): CACHE_STORE 0 gives softmax and mla
 * caches their own buffers (check_cache), 1 a paged pool sized for the
 * test's sequences (check_cache_paged), 2 the same pool storing bf16
 * (check_cache_bf16). With bf16 storage the keys and values a test draws
 * are first rounded to bf16 (round_bf16 below), so the references see what
 * the cache stores: the tolerance rule on inputs rounded to the storage
 * type. lca_cache_bytes then follows the pool's formula.
 */
#ifndef CACHE_STORE
#define CACHE_STORE 0
#endif
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- backends and dtypes under test --------------------------------------- */

struct conf {
	lca_backend backend;
	lca_dtype dtype;
	const char *name;
};

static const struct conf confs[] = {
	{ LCA_BACKEND_REF, LCA_F64, "ref f64" },
	{ LCA_BACKEND_CPU, LCA_F64, "cpu f64" },
	{ LCA_BACKEND_CPU, LCA_F32, "cpu f32" },
	{ LCA_BACKEND_REF, LCA_F32, "ref f32" },
};
#define NCONF ((int)(sizeof confs / sizeof confs[0]))

/* ---- the four mechanisms behind one interface ------------------------------ */

enum { MAXIN = 5, MAXFIX = 2 };

/* Cases: the variants, plus a sliding window and the naive mla. */
enum { C_SOFTMAX, C_WINDOW, C_MLA, C_MLA_NAIVE, C_DELTANET, C_LIGHTNING, NCASE };
static const char *const case_names[NCASE] = {
	"softmax", "softmax window", "mla", "mla naive", "deltanet", "lightning"
};

struct mech {
	lca_params p;            /* sizes and options; backend and dtype per conf */
	int nin;                 /* per-token inputs, in call order */
	int64_t row[MAXIN];      /* their elements per token */
	int nfix;                /* whole-call inputs: w_uk, w_uv (mla); slope */
	int64_t nfixel[MAXFIX];
	int64_t orow;            /* output elements per token: H dv */
	int has_lse;
	size_t elt;
};

static void mech_init(struct mech *m, int c, const struct conf *cf)
{
	static const lca_variant var[NCASE] = {
		LCA_SOFTMAX, LCA_SOFTMAX, LCA_MLA, LCA_MLA, LCA_DELTANET, LCA_LIGHTNING
	};
	lca_params *p = &m->p;

	memset(m, 0, sizeof *m);
	*p = tu_params(var[c]);
	p->backend = cf->backend;
	p->dtype = cf->dtype;
	p->H = 4;
	p->dv = 6;
	switch (var[c]) {
	case LCA_SOFTMAX:
		p->Hkv = 2;
		p->dk = 8;
		p->rope_dim = c == C_WINDOW ? 4 : LCA_ROPE_FULL;
		p->rope_style = c == C_WINDOW ? LCA_ROPE_INTERLEAVED : LCA_ROPE_HALF;
		p->window = c == C_WINDOW ? 37 : 0;
		m->nin = 3;
		m->row[0] = p->H * p->dk;
		m->row[1] = p->Hkv * p->dk;
		m->row[2] = p->Hkv * p->dv;
		break;
	case LCA_MLA:
		p->H = 3;
		p->dn = 6;
		p->dr = 4;
		p->dc = 10;
		p->scale = 1.0 / sqrt(10.0);
		p->algo = c == C_MLA_NAIVE ? LCA_ALGO_NAIVE : LCA_ALGO_ABSORBED;
		m->nin = 4;
		m->row[0] = p->H * p->dn;
		m->row[1] = p->H * p->dr;
		m->row[2] = p->dc;
		m->row[3] = p->dr;
		m->nfix = 2;
		m->nfixel[0] = p->H * p->dn * p->dc;
		m->nfixel[1] = p->H * p->dv * p->dc;
		break;
	case LCA_DELTANET:
		p->Hk = 2;
		p->dk = 8;
		m->nin = 5;
		m->row[0] = m->row[1] = p->Hk * p->dk;
		m->row[2] = p->H * p->dv;
		m->row[3] = m->row[4] = p->H;
		break;
	case LCA_LIGHTNING:
		p->dk = 8;
		m->nin = 3;
		m->row[0] = m->row[1] = p->H * p->dk;
		m->row[2] = p->H * p->dv;
		m->nfix = 1;
		m->nfixel[0] = p->H;
		break;
	}
	m->orow = p->H * p->dv;
	m->has_lse = var[c] == LCA_SOFTMAX || var[c] == LCA_MLA;
	m->elt = cf->dtype == LCA_F64 ? 8 : 4;
}

/* The same mechanism on another backend and dtype (the references). */
static struct mech mech_on(const struct mech *m, lca_backend b, lca_dtype t)
{
	struct mech r = *m;

	r.p.backend = b;
	r.p.dtype = t;
	if (r.p.variant == LCA_DELTANET || r.p.variant == LCA_LIGHTNING)
		r.p.algo = LCA_ALGO_AUTO;
	r.elt = t == LCA_F64 ? 8 : 4;
	return r;
}

/* Inputs of one sequence, drawn fresh: tok[i] is [T][row[i]]. */
struct data {
	int64_t T;
	double *tok[MAXIN];
	double *fix[MAXFIX];
};

static void data_as_stored(const struct mech *m, struct data *d);

static void data_make(const struct mech *m, struct data *d, int64_t T)
{
	lca_variant v = m->p.variant;

	memset(d, 0, sizeof *d);
	d->T = T;
	for (int i = 0; i < m->nin; i++) {
		d->tok[i] = tu_alloc(T * m->row[i]);
		tu_fill_normal(d->tok[i], T * m->row[i], 1.0);
	}
	if (v == LCA_DELTANET) {
		tu_fill_uniform(d->tok[3], T * m->p.H, -1.0, 0.0);   /* g <= 0 */
		tu_fill_uniform(d->tok[4], T * m->p.H, 0.05, 1.0);  /* beta */
	}
	for (int i = 0; i < m->nfix; i++) {
		d->fix[i] = tu_alloc(m->nfixel[i]);
		tu_fill_normal(d->fix[i], m->nfixel[i], 1.0 / sqrt((double)m->p.dc + 1));
	}
	if (v == LCA_LIGHTNING) {
		tu_fill_uniform(d->fix[0], m->p.H, 0.0, 0.5);
		d->fix[0][0] = 0.0; /* a head that never forgets */
	}
	data_as_stored(m, d);
}

/* x rounded to the nearest bf16 (8 significant bits), ties to even, by
 * arithmetic on the exponent (independent of the library's bit trick):
 * the bf16 values of x's binade are multiples of u = 2^(e - 8). */
static double round_bf16(double x)
{
	int e;
	double u, q, r;

	if (x == 0 || !isfinite(x))
		return x;
	frexp(x, &e);            /* |x| in [2^(e-1), 2^e) */
	u = ldexp(1.0, e - 8);
	q = floor(x / u);
	r = x / u - q;           /* exact: x / u has at most 53 bits */
	if (r > 0.5 || (r == 0.5 && fmod(q, 2.0) != 0))
		q += 1;
	return q * u;
}

/* The inputs a cache stores: softmax k, v; mla ckv, k_rope. */
static int stored_input(const struct mech *m, int i)
{
	if (m->p.variant == LCA_SOFTMAX)
		return i == 1 || i == 2;
	return m->p.variant == LCA_MLA && (i == 2 || i == 3);
}

static int is_kv(const struct mech *m)
{
	return m->p.variant == LCA_SOFTMAX || m->p.variant == LCA_MLA;
}

/* With bf16 storage, what the cache will hold, for the references too. */
static void data_as_stored(const struct mech *m, struct data *d)
{
	for (int i = 0; i < m->nin && CACHE_STORE == 2; i++)
		if (stored_input(m, i))
			for (int64_t j = 0; j < d->T * m->row[i]; j++)
				d->tok[i][j] = round_bf16(d->tok[i][j]);
}

static void data_free(struct data *d)
{
	for (int i = 0; i < MAXIN; i++)
		free(d->tok[i]);
	for (int i = 0; i < MAXFIX; i++)
		free(d->fix[i]);
}

/* ---- calls in the mechanism's dtype ----------------------------------------- */

static void *typed(const double *x, int64_t n, size_t elt)
{
	void *y = calloc(n > 0 ? (size_t)n : 1, elt);

	ck_assert_ptr_nonnull(y);
	for (int64_t i = 0; i < n; i++) {
		if (elt == 8)
			((double *)y)[i] = x[i];
		else
			((float *)y)[i] = (float)x[i];
	}
	return y;
}

static void untyped(double *x, const void *y, int64_t n, size_t elt)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = elt == 8 ? ((const double *)y)[i] : ((const float *)y)[i];
}

/* Typed copies of T rows of inputs (pointers into packed double tensors)
 * and output buffers; run() fills them by a step or forward call. */
struct call {
	void *tok[MAXIN], *fix[MAXFIX], *o, *lse;
	int64_t T;  /* tokens the buffers hold */
};

static void call_open(const struct mech *m, struct call *c, int64_t T,
	double *const tok[], double *const fix[])
{
	memset(c, 0, sizeof *c);
	c->T = T;
	for (int i = 0; i < m->nin; i++)
		c->tok[i] = typed(tok[i], T * m->row[i], m->elt);
	for (int i = 0; i < m->nfix; i++)
		c->fix[i] = typed(fix[i], m->nfixel[i], m->elt);
	c->o = calloc((size_t)(T * m->orow), m->elt);
	c->lse = calloc((size_t)(T * m->p.H), m->elt);
	ck_assert(c->o && c->lse);
}

/* Outputs back to double (o [T][H dv], lse [T][H] when wanted), then free. */
static void call_close(const struct mech *m, struct call *c, int64_t T, double *o, double *lse)
{
	if (o)
		untyped(o, c->o, T * m->orow, m->elt);
	if (lse && m->has_lse)
		untyped(lse, c->lse, T * m->p.H, m->elt);
	for (int i = 0; i < MAXIN; i++)
		free(c->tok[i]);
	for (int i = 0; i < MAXFIX; i++)
		free(c->fix[i]);
	free(c->o);
	free(c->lse);
}

static lca_status step_typed(const struct mech *m, const lca_plan *plan, lca_cache *cache,
	int64_t T, const struct call *c, const int64_t *cu)
{
	void *const *x = c->tok;

	switch (m->p.variant) {
	case LCA_SOFTMAX:
		return lca_softmax_step(plan, cache, T, x[0], x[1], x[2], cu, c->o, c->lse);
	case LCA_MLA:
		return lca_mla_step(plan, cache, T, x[0], x[1], x[2], x[3], c->fix[0], c->fix[1],
			cu, c->o, c->lse);
	case LCA_DELTANET:
		return lca_deltanet_step(plan, cache, T, x[0], x[1], x[2], x[3], x[4], cu, c->o);
	case LCA_LIGHTNING:
		return lca_lightning_step(plan, cache, T, x[0], x[1], x[2], c->fix[0], cu, c->o);
	}
	return LCA_ERR_INTERNAL;
}

/* One step of T packed tokens; returns the status, outputs in o, lse. */
static lca_status step(const struct mech *m, const lca_plan *plan, lca_cache *cache,
	int64_t T, double *const tok[], double *const fix[], const int64_t *cu,
	double *o, double *lse)
{
	struct call c;
	lca_status s;

	call_open(m, &c, T, tok, fix);
	s = step_typed(m, plan, cache, T, &c, cu);
	call_close(m, &c, T, s == LCA_OK ? o : NULL, s == LCA_OK ? lse : NULL);
	return s;
}

/* One forward call over the T tokens of one sequence. */
static void forward(const struct mech *m, int64_t T, double *const tok[],
	double *const fix[], double *o, double *lse)
{
	lca_plan *plan = tu_plan(&m->p);
	struct call c;
	void *const *x;

	call_open(m, &c, T, tok, fix);
	x = c.tok;
	switch (m->p.variant) {
	case LCA_SOFTMAX:
		tu_assert_ok(lca_softmax_forward(plan, T, T, x[0], x[1], x[2], NULL, 0, c.o, c.lse));
		break;
	case LCA_MLA:
		tu_assert_ok(lca_mla_forward(plan, T, T, x[0], x[1], x[2], x[3], c.fix[0], c.fix[1],
			NULL, 0, c.o, c.lse));
		break;
	case LCA_DELTANET:
		tu_assert_ok(lca_deltanet_forward(plan, T, x[0], x[1], x[2], x[3], x[4], NULL, 0,
			NULL, c.o, NULL));
		break;
	case LCA_LIGHTNING:
		tu_assert_ok(lca_lightning_forward(plan, T, x[0], x[1], x[2], c.fix[0], NULL, 0,
			NULL, c.o, NULL));
		break;
	}
	call_close(m, &c, T, o, lse);
	lca_plan_destroy(plan);
}

/* Row pointers of d from token t0. */
static void rows(const struct mech *m, const struct data *d, int64_t t0, double *tok[MAXIN])
{
	for (int i = 0; i < MAXIN; i++)
		tok[i] = i < m->nin ? d->tok[i] + t0 * m->row[i] : NULL;
}

/* Pages of a pool that holds nseq sequences of capacity tokens, and one
 * page for a copy-on-write. */
static int64_t pool_pages(int64_t nseq, int64_t capacity)
{
	return nseq * ((capacity + LCA_CACHE_PAGE - 1) / LCA_CACHE_PAGE) + 1;
}

/* Bytes per token of the plan's cache as CACHE_STORE stores it. */
static int64_t stored_per_token(const lca_plan *plan)
{
	int64_t pt, ps;
	lca_params p;

	tu_assert_ok(lca_plan_cache_cost(plan, &pt, &ps));
	tu_assert_ok(lca_plan_params(plan, &p));
	return CACHE_STORE == 2 ? pt / (p.dtype == LCA_F64 ? 4 : 2) : pt;
}

static lca_cache *new_cache(const lca_plan *plan, int64_t nseq, int64_t capacity)
{
	lca_cache *c = NULL;
	lca_cache_opts o;
	lca_params p;

	tu_assert_ok(lca_plan_params(plan, &p));
	tu_assert_ok(lca_cache_opts_init(plan, &o));
	o.nseq = nseq;
	o.capacity = capacity;
	if (CACHE_STORE > 0 && (p.variant == LCA_SOFTMAX || p.variant == LCA_MLA)) {
		o.storage = CACHE_STORE == 2 ? LCA_BF16 : p.dtype;
		o.pool_bytes = (size_t)(pool_pages(nseq, capacity) * LCA_CACHE_PAGE *
			stored_per_token(plan));
	}
	tu_assert_ok(lca_cache_create_ex(plan, &o, &c));
	ck_assert_ptr_nonnull(c);
	return c;
}

/* The checkpoint of a cache, in a new buffer of *size bytes. */
static unsigned char *saved(const lca_cache *c, size_t *size)
{
	unsigned char *b;

	tu_assert_ok(lca_cache_save(c, NULL, 0, size));
	b = malloc(*size);
	ck_assert_ptr_nonnull(b);
	tu_assert_ok(lca_cache_save(c, b, *size, size));
	return b;
}

/* Fail unless the cache's checkpoint is still want[0 .. n). */
static void assert_unchanged(const lca_cache *c, const unsigned char *want, size_t n,
	const char *after)
{
	size_t m;
	unsigned char *now = saved(c, &m);

	ck_assert_msg(m == n && memcmp(now, want, n) == 0,
		"the cache changed after %s", after);
	free(now);
}

/* ---- tolerance ------------------------------------------------------------- */

/* DESIGN.md: f64 within 1e-12 of the reference; f32 within twice the error
 * of the reference algorithm run in f32 (ref32 vs ref64), floored at 1e-6. */
static double tolerance(const struct mech *m, const double *ref32, const double *ref64,
	int64_t n)
{
	double e;

	if (m->p.dtype == LCA_F64)
		return 1e-12;
	e = 2.0 * tu_relerr(ref32, ref64, n);
	return e > 1e-6 ? e : 1e-6;
}

/* Compare x with the ref f64 outputs, using ref f32 outputs for the rule. */
static void assert_rule(const struct mech *m, const double *x, const double *r64,
	const double *r32, int64_t n, const char *what)
{
	double tol = tolerance(m, r32, r64, n);

	ck_assert(tu_all_finite(x, n));
	tu_assert_close(x, r64, n, tol, what);
}

/* ---- prefill then steps == one forward call -------------------------------- */

struct split {
	int64_t T, k;  /* T tokens: a prefill of T - k (in two steps) then k single steps */
};

static const struct split splits[] = {
	{ 5, 5 },     /* from an empty cache, one token at a time */
	{ 70, 10 },   /* across the deltanet chunk (64) */
	{ 70, 3 },    /* prefill past the chunk, steps inside the next */
	{ 260, 8 },   /* across the lightning block (256) */
};

/* Run d through one cache: a prefill of T - k tokens in two steps, then k
 * steps of one token. */
static void run_split(const struct mech *m, const struct data *d, int64_t k,
	double *o, double *lse)
{
	lca_plan *plan = tu_plan(&m->p);
	lca_cache *c = new_cache(plan, 1, d->T);
	int64_t a = (d->T - k) / 3, t = 0, len;
	double *tok[MAXIN];

	while (t < d->T) {
		int64_t n = t < a ? a : t < d->T - k ? d->T - k - t : 1;

		rows(m, d, t, tok);
		tu_assert_ok(step(m, plan, c, n, tok, d->fix, NULL, o + t * m->orow,
			lse + t * m->p.H));
		t += n;
		tu_assert_ok(lca_cache_len(c, 0, &len));
		ck_assert_int_eq(len, t);
	}
	lca_cache_destroy(c);
	lca_plan_destroy(plan);
}

/* _i = case * NCONF + conf */
START_TEST(test_prefill_then_steps_equals_forward)
{
	struct mech m, m64, m32;

	mech_init(&m, _i / NCONF, &confs[_i % NCONF]);
	m64 = mech_on(&m, LCA_BACKEND_REF, LCA_F64);
	m32 = mech_on(&m, LCA_BACKEND_REF, LCA_F32);
	for (size_t j = 0; j < sizeof splits / sizeof splits[0]; j++) {
		int64_t T = splits[j].T, no = T * m.orow, nl = T * m.p.H;
		double *o = tu_alloc(no), *l = tu_alloc(nl), *o64 = tu_alloc(no);
		double *l64 = tu_alloc(nl), *o32 = tu_alloc(no), *l32 = tu_alloc(nl);
		double *tok[MAXIN];
		struct data d;
		char what[128];

		data_make(&m, &d, T);
		rows(&m, &d, 0, tok);
		forward(&m64, T, tok, d.fix, o64, l64);
		forward(&m32, T, tok, d.fix, o32, l32);
		run_split(&m, &d, splits[j].k, o, l);
		snprintf(what, sizeof what, "%s %s T=%lld k=%lld: o", case_names[_i / NCONF],
			confs[_i % NCONF].name, (long long)T, (long long)splits[j].k);
		assert_rule(&m, o, o64, o32, no, what);
		if (m.has_lse) {
			strcat(what, " lse");
			assert_rule(&m, l, l64, l32, nl, what);
		}
		data_free(&d);
		free(o);
		free(l);
		free(o64);
		free(l64);
		free(o32);
		free(l32);
	}
}
END_TEST

/*
 * Heads wide enough for the cpu backend's vector step kernels
 * (lib/cpu/state_step.c): dv = 155 gives, for each element type and ISA
 * level, two or more whole column blocks (run pipelined), single vectors
 * and leftover columns, and dk = 37 rows no vector multiple. Decode-sized calls (up to 4 tokens:
 * the prefill's first piece of 2, then single steps) run those kernels.
 */
static const struct split wide_splits[] = {
	{ 12, 4 },
	{ 75, 5 },
};

/* _i = (0 deltanet, 1 lightning) * NCONF + conf */
START_TEST(test_wide_head_steps_equal_forward)
{
	const int c = _i / NCONF ? C_LIGHTNING : C_DELTANET;
	struct mech m, m64, m32;

	mech_init(&m, c, &confs[_i % NCONF]);
	m.p.dk = 37;
	m.p.dv = 155;
	m.row[0] = m.row[1] = (c == C_DELTANET ? m.p.Hk : m.p.H) * m.p.dk;
	m.row[2] = m.orow = m.p.H * m.p.dv;
	m64 = mech_on(&m, LCA_BACKEND_REF, LCA_F64);
	m32 = mech_on(&m, LCA_BACKEND_REF, LCA_F32);
	for (size_t j = 0; j < sizeof wide_splits / sizeof wide_splits[0]; j++) {
		int64_t T = wide_splits[j].T, no = T * m.orow, nl = T * m.p.H;
		double *o = tu_alloc(no), *l = tu_alloc(nl), *o64 = tu_alloc(no);
		double *l64 = tu_alloc(nl), *o32 = tu_alloc(no), *l32 = tu_alloc(nl);
		double *tok[MAXIN];
		struct data d;
		char what[128];

		data_make(&m, &d, T);
		rows(&m, &d, 0, tok);
		forward(&m64, T, tok, d.fix, o64, l64);
		forward(&m32, T, tok, d.fix, o32, l32);
		run_split(&m, &d, wide_splits[j].k, o, l);
		snprintf(what, sizeof what, "%s %s dk=37 dv=155 T=%lld k=%lld: o", case_names[c],
			confs[_i % NCONF].name, (long long)T, (long long)wide_splits[j].k);
		assert_rule(&m, o, o64, o32, no, what);
		data_free(&d);
		free(o);
		free(l);
		free(o64);
		free(l64);
		free(o32);
		free(l32);
	}
}
END_TEST

/* ---- packed batches ----------------------------------------------------------- */

#define NSEQ 3
#define NSTEP 6
/* Tokens per sequence per step: 0 included, decode rounds of one each. */
static const int64_t sched[NSTEP][NSEQ] = {
	{ 20, 0, 5 }, { 1, 1, 1 }, { 0, 6, 1 }, { 10, 1, 0 }, { 1, 1, 1 }, { 5, 3, 13 },
};

static void seq_lengths(int64_t len[NSEQ])
{
	for (int n = 0; n < NSEQ; n++) {
		len[n] = 0;
		for (int s = 0; s < NSTEP; s++)
			len[n] += sched[s][n];
	}
}

/* Gather the step's tokens of every sequence into packed tensors. */
static int64_t gather(const struct mech *m, const struct data *d, const int64_t *at,
	const int64_t *cnt, double *tok[MAXIN], int64_t cu[NSEQ + 1])
{
	int64_t T = 0;

	cu[0] = 0;
	for (int n = 0; n < NSEQ; n++)
		cu[n + 1] = (T += cnt[n]);
	for (int i = 0; i < m->nin; i++) {
		tok[i] = tu_alloc(T * m->row[i]);
		for (int n = 0; n < NSEQ; n++)
			memcpy(tok[i] + cu[n] * m->row[i], d[n].tok[i] + at[n] * m->row[i],
				(size_t)(cnt[n] * m->row[i]) * sizeof(double));
	}
	return T;
}

/* Run the schedule through one cache of NSEQ sequences; o[n], lse[n]
 * receive each sequence's outputs in token order. */
static void run_packed(const struct mech *m, const struct data *d, double *o[NSEQ],
	double *lse[NSEQ])
{
	lca_plan *plan = tu_plan(&m->p);
	int64_t len[NSEQ], at[NSEQ] = { 0 }, cu[NSEQ + 1];
	lca_cache *c;

	seq_lengths(len);
	c = new_cache(plan, NSEQ, 37);
	for (int s = 0; s < NSTEP; s++) {
		double *tok[MAXIN] = { 0 };
		int64_t T = gather(m, d, at, sched[s], tok, cu);
		double *so = tu_alloc(T * m->orow), *sl = tu_alloc(T * m->p.H);

		tu_assert_ok(step(m, plan, c, T, tok, d[0].fix, cu, so, sl));
		for (int n = 0; n < NSEQ; n++) {
			int64_t t = sched[s][n], got;

			memcpy(o[n] + at[n] * m->orow, so + cu[n] * m->orow,
				(size_t)(t * m->orow) * sizeof(double));
			memcpy(lse[n] + at[n] * m->p.H, sl + cu[n] * m->p.H,
				(size_t)(t * m->p.H) * sizeof(double));
			at[n] += t;
			tu_assert_ok(lca_cache_len(c, n, &got));
			ck_assert_int_eq(got, at[n]);
		}
		for (int i = 0; i < MAXIN; i++)
			free(tok[i]);
		free(so);
		free(sl);
	}
	lca_cache_destroy(c);
	lca_plan_destroy(plan);
}

/* Concatenate per-sequence arrays of len[n] * w elements. */
static double *concat(double *const x[NSEQ], const int64_t len[NSEQ], int64_t w, int64_t *n)
{
	double *y;

	*n = 0;
	for (int s = 0; s < NSEQ; s++)
		*n += len[s] * w;
	y = tu_alloc(*n);
	for (int s = 0, off = 0; s < NSEQ; off += (int)(len[s] * w), s++)
		memcpy(y + off, x[s], (size_t)(len[s] * w) * sizeof(double));
	return y;
}

START_TEST(test_packed_steps_equal_forward_per_sequence)
{
	struct mech m, m64, m32;
	struct data d[NSEQ];
	int64_t len[NSEQ], n;
	double *o[3][NSEQ], *l[3][NSEQ], *cat[3][2];
	char what[96];

	mech_init(&m, _i / NCONF, &confs[_i % NCONF]);
	m64 = mech_on(&m, LCA_BACKEND_REF, LCA_F64);
	m32 = mech_on(&m, LCA_BACKEND_REF, LCA_F32);
	seq_lengths(len);
	for (int s = 0; s < NSEQ; s++) {
		double *tok[MAXIN];

		data_make(&m, &d[s], len[s]);
		if (s > 0) /* weights and slopes belong to the layer, not the sequence */
			for (int i = 0; i < m.nfix; i++)
				memcpy(d[s].fix[i], d[0].fix[i], (size_t)m.nfixel[i] * sizeof(double));
		for (int r = 0; r < 3; r++) {
			o[r][s] = tu_alloc(len[s] * m.orow);
			l[r][s] = tu_alloc(len[s] * m.p.H);
		}
		rows(&m, &d[s], 0, tok);
		forward(&m64, len[s], tok, d[0].fix, o[1][s], l[1][s]);
		forward(&m32, len[s], tok, d[0].fix, o[2][s], l[2][s]);
	}
	run_packed(&m, d, o[0], l[0]);
	for (int r = 0; r < 3; r++) {
		cat[r][0] = concat(o[r], len, m.orow, &n);
		cat[r][1] = concat(l[r], len, m.p.H, &n);
	}
	snprintf(what, sizeof what, "%s %s packed o", case_names[_i / NCONF], confs[_i % NCONF].name);
	n = (len[0] + len[1] + len[2]) * m.orow;
	assert_rule(&m, cat[0][0], cat[1][0], cat[2][0], n, what);
	if (m.has_lse) {
		strcat(what, " lse");
		n = (len[0] + len[1] + len[2]) * m.p.H;
		assert_rule(&m, cat[0][1], cat[1][1], cat[2][1], n, what);
	}
	for (int r = 0; r < 3; r++) {
		free(cat[r][0]);
		free(cat[r][1]);
		for (int s = 0; s < NSEQ; s++) {
			free(o[r][s]);
			free(l[r][s]);
		}
	}
	for (int s = 0; s < NSEQ; s++)
		data_free(&d[s]);
}
END_TEST

/* ---- checkpoints ------------------------------------------------------------- */

/* Steps of a two-sequence cache: {tokens of seq 0, tokens of seq 1}. */
static const int64_t ck_before[][2] = { { 20, 9 }, { 1, 0 }, { 1, 1 } };
static const int64_t ck_after[][2] = { { 3, 2 }, { 1, 1 }, { 0, 1 }, { 4, 4 } };
#define CK_LEN0 29  /* tokens per sequence at most: 22 + 8 and 10 + 8 */
#define CK_CAP 40

/* One step of the two-sequence schedule, tokens taken from d[0], d[1] at
 * at[]; the outputs go to o (packed [T][H dv]) and lse. */
static lca_status step2(const struct mech *m, const lca_plan *plan, lca_cache *c,
	const struct data *d, int64_t at[2], const int64_t cnt[2], double *o, double *lse)
{
	int64_t cu[3] = { 0, cnt[0], cnt[0] + cnt[1] }, T = cu[2];
	double *tok[MAXIN];
	lca_status s;

	for (int i = 0; i < m->nin; i++) {
		tok[i] = tu_alloc(T * m->row[i]);
		for (int n = 0; n < 2; n++)
			memcpy(tok[i] + cu[n] * m->row[i], d[n].tok[i] + at[n] * m->row[i],
				(size_t)(cnt[n] * m->row[i]) * sizeof(double));
	}
	s = step(m, plan, c, T, tok, d[0].fix, cu, o, lse);
	for (int i = 0; i < m->nin; i++)
		free(tok[i]);
	if (s == LCA_OK) {
		at[0] += cnt[0];
		at[1] += cnt[1];
	}
	return s;
}

static void make_pair(const struct mech *m, struct data d[2])
{
	data_make(m, &d[0], CK_CAP);
	data_make(m, &d[1], CK_CAP);
}

/* A cache of two sequences after the ck_before steps. */
static lca_cache *filled(const struct mech *m, const lca_plan *plan, const struct data *d,
	int64_t at[2])
{
	lca_cache *c = new_cache(plan, 2, CK_CAP);
	double *o = tu_alloc(CK_CAP * 2 * m->orow), *l = tu_alloc(CK_CAP * 2 * m->p.H);

	at[0] = at[1] = 0;
	for (size_t s = 0; s < sizeof ck_before / sizeof ck_before[0]; s++)
		tu_assert_ok(step2(m, plan, c, d, at, ck_before[s], o, l));
	free(o);
	free(l);
	return c;
}

START_TEST(test_checkpoint_resumes_bit_for_bit)
{
	struct mech m;
	struct data d[2];
	lca_plan *plan;
	lca_cache *a, *b, *busy;
	int64_t at[2], atb[2], atc[2];
	unsigned char *buf, *sa, *sb;
	size_t n, na, nb;
	int64_t no;

	mech_init(&m, _i / NCONF, &confs[_i % NCONF]);
	no = CK_CAP * 2 * m.orow;
	make_pair(&m, d);
	plan = tu_plan(&m.p);
	a = filled(&m, plan, d, at);
	buf = saved(a, &n);
	/* A fresh cache, and one that already holds other tokens (its
	 * buffers are reused or replaced). */
	b = new_cache(plan, 2, CK_CAP);
	tu_assert_ok(lca_cache_load(b, buf, n));
	{
		struct data other[2];

		make_pair(&m, other);
		busy = filled(&m, plan, other, atc);
		data_free(&other[0]);
		data_free(&other[1]);
	}
	tu_assert_ok(lca_cache_load(busy, buf, n));
	atb[0] = atc[0] = at[0];
	atb[1] = atc[1] = at[1];
	for (size_t s = 0; s < sizeof ck_after / sizeof ck_after[0]; s++) {
		double *oa = tu_alloc(no), *ob = tu_alloc(no), *oc = tu_alloc(no);
		double *la = tu_alloc(2 * CK_CAP * m.p.H), *lb = tu_alloc(2 * CK_CAP * m.p.H);
		int64_t T = ck_after[s][0] + ck_after[s][1];

		tu_assert_ok(step2(&m, plan, a, d, at, ck_after[s], oa, la));
		tu_assert_ok(step2(&m, plan, b, d, atb, ck_after[s], ob, lb));
		tu_assert_ok(step2(&m, plan, busy, d, atc, ck_after[s], oc, lb + T * m.p.H));
		ck_assert_msg(memcmp(oa, ob, (size_t)(T * m.orow) * sizeof(double)) == 0,
			"resumed outputs differ at step %zu", s);
		ck_assert_msg(memcmp(oa, oc, (size_t)(T * m.orow) * sizeof(double)) == 0,
			"outputs after loading over a used cache differ at step %zu", s);
		ck_assert(memcmp(la, lb, (size_t)(T * m.p.H) * sizeof(double)) == 0);
		free(oa);
		free(ob);
		free(oc);
		free(la);
		free(lb);
	}
	sa = saved(a, &na);
	sb = saved(b, &nb);
	ck_assert(na == nb && memcmp(sa, sb, na) == 0);
	free(sb);
	sb = saved(busy, &nb);
	ck_assert(na == nb && memcmp(sa, sb, na) == 0);
	free(sa);
	free(sb);
	free(buf);
	lca_cache_destroy(a);
	lca_cache_destroy(b);
	lca_cache_destroy(busy);
	lca_plan_destroy(plan);
	data_free(&d[0]);
	data_free(&d[1]);
}
END_TEST

/* Load buf into c, expecting status want, and check that c did not change. */
static void refuse(lca_cache *c, const unsigned char *buf, size_t n, lca_status want,
	const char *what)
{
	size_t m;
	unsigned char *before = saved(c, &m);
	lca_status s = lca_cache_load(c, buf, n);

	ck_assert_msg(s == want, "%s: got %s, want %s (%s)", what, lca_strerror(s),
		lca_strerror(want), lca_last_error());
	ck_assert_msg(lca_last_error()[0] != '\0', "%s: no message", what);
	assert_unchanged(c, before, m, what);
	free(before);
}

/* A cache of another kind (variant or shape) with some tokens, saved. */
static unsigned char *foreign(const struct mech *m, size_t *n)
{
	lca_plan *plan = tu_plan(&m->p);
	struct data d[2];
	int64_t at[2];
	lca_cache *c;
	unsigned char *b;

	make_pair(m, d);
	c = filled(m, plan, d, at);
	b = saved(c, n);
	lca_cache_destroy(c);
	lca_plan_destroy(plan);
	data_free(&d[0]);
	data_free(&d[1]);
	return b;
}

/* Write the FNV-1a 64 of b's first n - 8 bytes into its last 8. */
static void reseal(unsigned char *b, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i + 8 < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	for (int i = 0; i < 8; i++)
		b[n - 8 + i] = (unsigned char)(h >> (8 * i));
}

START_TEST(test_damaged_checkpoint_is_refused_and_cache_untouched)
{
	struct mech m;
	struct data d[2], e[2];
	lca_plan *plan;
	lca_cache *src, *dst;
	int64_t at[2];
	unsigned char *buf, *bad;
	size_t n;

	mech_init(&m, _i / NCONF, &confs[_i % NCONF]);
	plan = tu_plan(&m.p);
	make_pair(&m, d);
	make_pair(&m, e);
	src = filled(&m, plan, d, at);
	dst = filled(&m, plan, e, at);
	buf = saved(src, &n);
	bad = malloc(n + 1);
	ck_assert_ptr_nonnull(bad);
	/* Every single byte flipped, header, lengths, payload and checksum. */
	for (size_t i = 0; i < n; i++) {
		memcpy(bad, buf, n);
		bad[i] ^= (unsigned char)(1u << (i % 8));
		if (lca_cache_load(dst, bad, n) != LCA_ERR_CORRUPT)
			ck_abort_msg("byte %zu of %zu flipped: not refused", i, n);
	}
	refuse(dst, bad, n, LCA_ERR_CORRUPT, "last byte flipped");
	memcpy(bad, buf, n);
	refuse(dst, bad, n - 1, LCA_ERR_CORRUPT, "truncated by one byte");
	refuse(dst, bad, n / 2, LCA_ERR_CORRUPT, "truncated by half");
	refuse(dst, bad, 100, LCA_ERR_CORRUPT, "truncated in the header");
	refuse(dst, bad, 0, LCA_ERR_CORRUPT, "empty");
	bad[n] = 0;
	refuse(dst, bad, n + 1, LCA_ERR_CORRUPT, "one byte too many");
	/* A NaN, then an infinity, in the last payload element, the
	 * checksum made good again (lca_cache_save(3): FNV-1a 64). */
	for (int k = 0; k < 2; k++) {
		size_t es = CACHE_STORE == 2 && is_kv(&m) ? 2 : m.elt, last = n - 8 - es;

		memcpy(bad, buf, n);
		memset(bad + last, 0, es);
		bad[last + es - 1] = 0x7f;       /* sign 0, exponent all ones */
		bad[last + es - 2] = es == 8 ? 0xf0 : 0x80;
		if (k == 0)
			bad[last] |= 1;              /* a mantissa bit: NaN */
		reseal(bad, n);
		refuse(dst, bad, n, LCA_ERR_CORRUPT, k ? "an infinity" : "a NaN");
	}
	free(bad);
	free(buf);
	lca_cache_destroy(src);
	lca_cache_destroy(dst);
	lca_plan_destroy(plan);
	for (int s = 0; s < 2; s++) {
		data_free(&d[s]);
		data_free(&e[s]);
	}
}
END_TEST

START_TEST(test_mismatched_checkpoint_is_refused_and_cache_untouched)
{
	struct mech m, other;
	struct data d[2];
	lca_plan *plan;
	lca_cache *dst, *small, *three;
	int64_t at[2];
	unsigned char *buf;
	size_t n;
	int c = _i / NCONF;

	mech_init(&m, c, &confs[_i % NCONF]);
	plan = tu_plan(&m.p);
	make_pair(&m, d);
	dst = filled(&m, plan, d, at);
	/* Another variant. */
	mech_init(&other, (c + 2) % NCASE, &confs[_i % NCONF]);
	buf = foreign(&other, &n);
	refuse(dst, buf, n, LCA_ERR_CORRUPT, "another variant");
	free(buf);
	/* The same variant, another shape. */
	other = m;
	other.p.dv += 1;
	other.orow = other.p.H * other.p.dv;
	if (other.p.variant != LCA_MLA)
		other.row[2] = other.p.variant == LCA_SOFTMAX ? other.p.Hkv * other.p.dv : other.orow;
	else
		other.nfixel[1] = other.p.H * other.p.dv * other.p.dc;
	buf = foreign(&other, &n);
	refuse(dst, buf, n, LCA_ERR_CORRUPT, "another dv");
	free(buf);
	/* Another dtype. */
	other = mech_on(&m, m.p.backend, m.p.dtype == LCA_F64 ? LCA_F32 : LCA_F64);
	other.p.algo = m.p.algo;
	buf = foreign(&other, &n);
	if (CACHE_STORE == 2 && is_kv(&m)) {
		/* both store bf16: the checkpoint holds the same kind of
		 * elements, and a plan of either dtype may continue them */
		size_t nkeep;
		unsigned char *keep = saved(dst, &nkeep);

		tu_assert_ok(lca_cache_load(dst, buf, n));
		tu_assert_ok(lca_cache_load(dst, keep, nkeep));
		free(keep);
	} else {
		refuse(dst, buf, n, LCA_ERR_CORRUPT, "another dtype");
	}
	free(buf);
	/* Another number of sequences; lengths past the capacity. */
	buf = saved(dst, &n);
	three = new_cache(plan, 3, CK_CAP);
	refuse(three, buf, n, LCA_ERR_CORRUPT, "another nseq");
	small = new_cache(plan, 2, 10);
	refuse(small, buf, n, LCA_ERR_CAPACITY, "lengths past the capacity");
	free(buf);
	lca_cache_destroy(three);
	lca_cache_destroy(small);
	lca_cache_destroy(dst);
	lca_plan_destroy(plan);
	data_free(&d[0]);
	data_free(&d[1]);
}
END_TEST

/* A checkpoint may move between backends of the same dtype (host memory),
 * and a larger capacity takes it. */
START_TEST(test_checkpoint_moves_to_larger_capacity_and_other_backend)
{
	struct mech m, mc;
	struct data d[2];
	lca_plan *plan, *pc;
	lca_cache *a, *b;
	int64_t at[2], len;
	unsigned char *buf;
	size_t n;

	mech_init(&m, _i, &confs[0]);
	mc = mech_on(&m, LCA_BACKEND_CPU, LCA_F64);
	mc.p.algo = m.p.algo;
	plan = tu_plan(&m.p);
	pc = tu_plan(&mc.p);
	make_pair(&m, d);
	a = filled(&m, plan, d, at);
	buf = saved(a, &n);
	b = new_cache(pc, 2, 1000);
	tu_assert_ok(lca_cache_load(b, buf, n));
	tu_assert_ok(lca_cache_len(b, 0, &len));
	ck_assert_int_eq(len, at[0]);
	tu_assert_ok(lca_cache_len(b, 1, &len));
	ck_assert_int_eq(len, at[1]);
	free(buf);
	lca_cache_destroy(a);
	lca_cache_destroy(b);
	lca_plan_destroy(plan);
	lca_plan_destroy(pc);
	data_free(&d[0]);
	data_free(&d[1]);
}
END_TEST

/* ---- capacity and refusals leave the cache untouched ------------------------- */

START_TEST(test_capacity_exceeded_leaves_cache_untouched)
{
	struct mech m;
	struct data d[2];
	lca_plan *plan;
	lca_cache *c;
	int64_t at[2] = { 0, 0 }, len;
	double *o, *l;
	unsigned char *before;
	size_t n;

	mech_init(&m, _i / NCONF, &confs[_i % NCONF]);
	o = tu_alloc(64 * m.orow);
	l = tu_alloc(64 * m.p.H);
	plan = tu_plan(&m.p);
	make_pair(&m, d);
	c = new_cache(plan, 2, 10);
	tu_assert_ok(step2(&m, plan, c, d, at, (const int64_t[2]){ 8, 2 }, o, l));
	before = saved(c, &n);
	ck_assert_int_eq(step2(&m, plan, c, d, at, (const int64_t[2]){ 3, 0 }, o, l),
		LCA_ERR_CAPACITY);
	assert_unchanged(c, before, n, "a step past the capacity");
	/* One sequence over the capacity refuses the whole packed step. */
	ck_assert_int_eq(step2(&m, plan, c, d, at, (const int64_t[2]){ 3, 1 }, o, l),
		LCA_ERR_CAPACITY);
	ck_assert(tu_msg_names("capacity"));
	assert_unchanged(c, before, n, "a packed step past the capacity");
	free(before);
	tu_assert_ok(step2(&m, plan, c, d, at, (const int64_t[2]){ 2, 8 }, o, l));
	tu_assert_ok(lca_cache_len(c, 0, &len));
	ck_assert_int_eq(len, 10);
	ck_assert_int_eq(step2(&m, plan, c, d, at, (const int64_t[2]){ 1, 0 }, o, l),
		LCA_ERR_CAPACITY);
	lca_cache_destroy(c);
	lca_plan_destroy(plan);
	data_free(&d[0]);
	data_free(&d[1]);
	free(o);
	free(l);
}
END_TEST

/* Poison element idx of per-token input i of a typed call. */
static void poison(const struct mech *m, struct call *c, int i, double x)
{
	if (m->elt == 8)
		((double *)c->tok[i])[1] = x;
	else
		((float *)c->tok[i])[1] = (float)x;
}

/* A refused step: status want, a message naming arg (when given), the
 * cache and o unchanged. */
static void refuse_step(const struct mech *m, const lca_plan *plan, lca_cache *c,
	int64_t T, struct call *k, const int64_t *cu, lca_status want, const char *arg,
	const char *what)
{
	size_t n, ob = (size_t)(k->T * m->orow) * m->elt;
	unsigned char *before = saved(c, &n), *o0 = malloc(ob);
	lca_status s;

	ck_assert_ptr_nonnull(o0);
	if (k->o)
		memset(k->o, 0x5a, ob);
	memset(o0, 0x5a, ob);
	s = step_typed(m, plan, c, T, k, cu);
	ck_assert_msg(s == want, "%s: got %s, want %s (%s)", what, lca_strerror(s),
		lca_strerror(want), lca_last_error());
	ck_assert_msg(lca_last_error()[0] != '\0', "%s: no message", what);
	ck_assert_msg(!arg || tu_msg_names(arg), "%s: the message \"%s\" does not name %s",
		what, lca_last_error(), arg);
	assert_unchanged(c, before, n, what);
	if (k->o)
		ck_assert_msg(memcmp(k->o, o0, ob) == 0, "%s: o was written", what);
	free(before);
	free(o0);
}

START_TEST(test_refused_steps_leave_cache_untouched)
{
	struct mech m;
	struct data d[2];
	lca_plan *plan, *wrong;
	lca_cache *c;
	int64_t at[2] = { 0, 0 }, cu[3] = { 0, 3, 5 }, bad_cu[3] = { 0, 4, 3 };
	double *o = NULL, *l = NULL, *tok[MAXIN];
	struct call k;
	struct mech mw;

	mech_init(&m, _i / NCONF, &confs[_i % NCONF]);
	o = tu_alloc(64 * m.orow);
	l = tu_alloc(64 * m.p.H);
	plan = tu_plan(&m.p);
	make_pair(&m, d);
	c = new_cache(plan, 2, 30);
	tu_assert_ok(step2(&m, plan, c, d, at, (const int64_t[2]){ 6, 4 }, o, l));
	rows(&m, &d[0], 20, tok);
	call_open(&m, &k, 5, tok, d[0].fix);

	refuse_step(&m, plan, c, 5, &k, bad_cu, LCA_ERR_SIZE, "cu_seqlens",
		"decreasing cu_seqlens");
	refuse_step(&m, plan, c, 5, &k, NULL, LCA_ERR_SIZE, "cu_seqlens",
		"cu_seqlens NULL with 2 sequences");
	refuse_step(&m, plan, c, 0, &k, cu, LCA_ERR_SIZE, "T", "T = 0");
	refuse_step(&m, plan, c, 6, &k, cu, LCA_ERR_SIZE, "T",
		"cu_seqlens[nseq] != T");
	refuse_step(&m, NULL, c, 5, &k, cu, LCA_ERR_NULL, "plan", "plan NULL");
	/* A plan of another shape, dtype or variant. */
	mw = m;
	mw.p.H *= 2;
	wrong = tu_plan(&mw.p);
	refuse_step(&m, wrong, c, 5, &k, cu, LCA_ERR_ARG, "H",
		"a plan with other heads");
	lca_plan_destroy(wrong);
	mw = mech_on(&m, m.p.backend, m.p.dtype == LCA_F64 ? LCA_F32 : LCA_F64);
	wrong = tu_plan(&mw.p);
	refuse_step(&m, wrong, c, 5, &k, cu, LCA_ERR_ARG, "dtype",
		"a plan of another dtype");
	lca_plan_destroy(wrong);
	mw = mech_on(&m, m.p.backend == LCA_BACKEND_REF ? LCA_BACKEND_CPU : LCA_BACKEND_REF,
		m.p.dtype);
	mw.p.algo = m.p.algo;
	wrong = tu_plan(&mw.p);
	refuse_step(&m, wrong, c, 5, &k, cu, LCA_ERR_ARG, "backend",
		"a plan of another backend");
	lca_plan_destroy(wrong);

	poison(&m, &k, 0, NAN);
	refuse_step(&m, plan, c, 5, &k, cu, LCA_ERR_NONFINITE, NULL,
		"NaN in the first input");
	poison(&m, &k, 0, 0.5);
	poison(&m, &k, 1, INFINITY);
	refuse_step(&m, plan, c, 5, &k, cu, LCA_ERR_NONFINITE, NULL,
		"Inf in the second input");
	poison(&m, &k, 1, 0.5);
	if (m.p.variant == LCA_DELTANET) {
		poison(&m, &k, 3, 0.25);
		refuse_step(&m, plan, c, 5, &k, cu, LCA_ERR_ARG, "g", "g > 0");
		poison(&m, &k, 3, -0.25);
	}
	if (m.p.variant == LCA_LIGHTNING) {
		void *slope = k.fix[0];

		k.fix[0] = typed((const double[]){ 0.1, -0.1, 0.2, 0.3 }, 4, m.elt);
		refuse_step(&m, plan, c, 5, &k, cu, LCA_ERR_ARG, "slope",
			"slope < 0");
		free(k.fix[0]);
		k.fix[0] = slope;
	}
	free(k.tok[0]);
	k.tok[0] = NULL;
	refuse_step(&m, plan, c, 5, &k, cu, LCA_ERR_NULL, NULL, "first input NULL");
	ck_assert_int_eq(step_typed(&m, plan, NULL, 5, &k, cu), LCA_ERR_NULL);
	ck_assert(tu_msg_names("cache"));
	call_close(&m, &k, 5, NULL, NULL);
	lca_cache_destroy(c);
	lca_plan_destroy(plan);
	data_free(&d[0]);
	data_free(&d[1]);
	free(o);
	free(l);
}
END_TEST

/* ---- memory accounting -------------------------------------------------------- */

/* The documented growth rule: a sequence that needs more than its
 * allocation gets min(capacity, max(needed, 2 x allocation)) tokens. */
static int64_t model_grow(int64_t cap, int64_t need, int64_t capacity)
{
	int64_t c = 2 * cap;

	if (need <= cap)
		return cap;
	if (c > capacity)
		c = capacity;
	return c < need ? need : c;
}

static int64_t elt_of(lca_dtype t)
{
	return t == LCA_F64 ? 8 : 4;
}

/* The per-token and per-sequence bytes of DESIGN: softmax Hkv (dk + dv),
 * mla dc + dr per token; deltanet, lightning H dk dv per sequence. */
static void expected_cost(const lca_params *p, int64_t *tok, int64_t *seq)
{
	int64_t e = elt_of(p->dtype), hkv = p->Hkv ? p->Hkv : p->H;

	*tok = *seq = 0;
	if (p->variant == LCA_SOFTMAX)
		*tok = hkv * (p->dk + p->dv) * e;
	else if (p->variant == LCA_MLA)
		*tok = (p->dc + p->dr) * e;
	else
		*seq = p->H * p->dk * p->dv * e;
}

START_TEST(test_cache_bytes_follow_the_formula)
{
	struct mech m;
	struct data d[2];
	lca_plan *plan;
	lca_cache *c;
	int64_t at[2] = { 0, 0 }, cap[2] = { 0, 0 }, pt, ps, et, es;
	const int64_t capacity = 37, cnt[][2] = {
		{ 5, 0 }, { 1, 1 }, { 1, 1 }, { 4, 1 }, { 1, 1 }, { 10, 2 }, { 15, 0 }, { 0, 31 },
	};
	double *o, *l;
	size_t bytes;

	mech_init(&m, _i / NCONF, &confs[_i % NCONF]);
	o = tu_alloc(64 * m.orow);
	l = tu_alloc(64 * m.p.H);
	plan = tu_plan(&m.p);
	tu_assert_ok(lca_plan_cache_cost(plan, &pt, &ps));
	expected_cost(&m.p, &et, &es);
	ck_assert_int_eq(pt, et);
	ck_assert_int_eq(ps, es);
	make_pair(&m, d);
	c = new_cache(plan, 2, capacity);
	tu_assert_ok(lca_cache_bytes(c, &bytes));
	if (CACHE_STORE > 0 && is_kv(&m)) {
		/* a pool: allocated whole at creation, whatever is stepped */
		const int64_t pool = pool_pages(2, capacity) * LCA_CACHE_PAGE *
			stored_per_token(plan);

		ck_assert_uint_eq(bytes, (size_t)pool);
		for (size_t s = 0; s < sizeof cnt / sizeof cnt[0]; s++)
			tu_assert_ok(step2(&m, plan, c, d, at, cnt[s], o, l));
		tu_assert_ok(lca_cache_bytes(c, &bytes));
		ck_assert_uint_eq(bytes, (size_t)pool);
		goto done;
	}
	ck_assert_uint_eq(bytes, (size_t)(2 * ps));
	for (size_t s = 0; s < sizeof cnt / sizeof cnt[0]; s++) {
		tu_assert_ok(step2(&m, plan, c, d, at, cnt[s], o, l));
		for (int n = 0; n < 2; n++)
			cap[n] = model_grow(cap[n], at[n], capacity);
		tu_assert_ok(lca_cache_bytes(c, &bytes));
		ck_assert_msg(bytes == (size_t)(pt * (cap[0] + cap[1]) + 2 * ps),
			"after step %zu: %zu bytes, the formula gives %lld", s, bytes,
			(long long)(pt * (cap[0] + cap[1]) + 2 * ps));
	}
	/* At capacity the allocation is exactly the formula of the capacity. */
	ck_assert_int_eq(at[0], capacity);
	ck_assert_int_eq(cap[0], capacity);
	tu_assert_ok(lca_cache_reset(c));
	tu_assert_ok(lca_cache_bytes(c, &bytes));
	ck_assert_uint_eq(bytes, (size_t)(pt * (cap[0] + cap[1]) + 2 * ps));
done:
	lca_cache_destroy(c);
	lca_plan_destroy(plan);
	data_free(&d[0]);
	data_free(&d[1]);
	free(o);
	free(l);
}
END_TEST

/* ---- reset, algorithms, arguments --------------------------------------------- */

START_TEST(test_reset_cache_equals_fresh_cache)
{
	struct mech m;
	struct data d[2], e[2];
	lca_plan *plan;
	lca_cache *a, *b;
	int64_t at[2], atb[2] = { 0, 0 }, len;
	unsigned char *sa, *sb;
	size_t na, nb;
	double *oa, *ob, *l;

	mech_init(&m, _i / NCONF, &confs[_i % NCONF]);
	oa = tu_alloc(64 * m.orow);
	ob = tu_alloc(64 * m.orow);
	l = tu_alloc(64 * m.p.H);
	plan = tu_plan(&m.p);
	make_pair(&m, d);
	make_pair(&m, e);
	a = filled(&m, plan, e, at);
	tu_assert_ok(lca_cache_reset(a));
	tu_assert_ok(lca_cache_len(a, 0, &len));
	ck_assert_int_eq(len, 0);
	b = new_cache(plan, 2, CK_CAP);
	at[0] = at[1] = 0;
	tu_assert_ok(step2(&m, plan, a, d, at, ck_before[0], oa, l));
	tu_assert_ok(step2(&m, plan, b, d, atb, ck_before[0], ob, l));
	ck_assert(memcmp(oa, ob, (size_t)((at[0] + at[1]) * m.orow) * sizeof(double)) == 0);
	sa = saved(a, &na);
	sb = saved(b, &nb);
	ck_assert(na == nb && memcmp(sa, sb, na) == 0);
	free(sa);
	free(sb);
	lca_cache_destroy(a);
	lca_cache_destroy(b);
	lca_plan_destroy(plan);
	for (int s = 0; s < 2; s++) {
		data_free(&d[s]);
		data_free(&e[s]);
	}
	free(oa);
	free(ob);
	free(l);
}
END_TEST

/* One cache, a chunked prefill plan and a recurrent decode plan (deltanet,
 * lightning), as a server would use them. _i: 0 deltanet, 1 lightning. */
START_TEST(test_plans_of_other_algorithms_share_a_cache)
{
	struct mech m, mr, m64;
	struct data d;
	lca_plan *pc, *pr;
	lca_cache *c;
	const int64_t T = 150, pre = 140;
	double *o = tu_alloc(T * 24), *l = tu_alloc(T * 4), *o64 = tu_alloc(T * 24), *tok[MAXIN];

	mech_init(&m, _i ? C_LIGHTNING : C_DELTANET, &confs[0]);
	m.p.algo = LCA_ALGO_CHUNKED;
	mr = m;
	mr.p.algo = LCA_ALGO_RECURRENT;
	m64 = mech_on(&m, LCA_BACKEND_REF, LCA_F64);
	pc = tu_plan(&m.p);
	pr = tu_plan(&mr.p);
	data_make(&m, &d, T);
	rows(&m, &d, 0, tok);
	forward(&m64, T, tok, d.fix, o64, l);
	c = new_cache(pc, 1, T);
	tu_assert_ok(step(&m, pc, c, pre, tok, d.fix, NULL, o, l));
	for (int64_t t = pre; t < T; t++) {
		rows(&m, &d, t, tok);
		tu_assert_ok(step(&mr, pr, c, 1, tok, d.fix, NULL, o + t * m.orow, l));
	}
	tu_assert_close(o, o64, T * m.orow, 1e-12, "chunked prefill, recurrent decode");
	lca_cache_destroy(c);
	lca_plan_destroy(pc);
	lca_plan_destroy(pr);
	data_free(&d);
	free(o);
	free(l);
	free(o64);
}
END_TEST

START_TEST(test_cache_calls_refuse_bad_arguments)
{
	struct mech m;
	lca_plan *plan;
	lca_cache *c = (lca_cache *)&m, *ok; /* not NULL: create must clear it */
	int64_t len, pt, ps;
	size_t bytes, need;
	unsigned char buf[16];

	mech_init(&m, _i, &confs[0]);
	plan = tu_plan(&m.p);
	ck_assert_int_eq(lca_cache_create(plan, 1, 10, NULL), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_create(NULL, 1, 10, &c), LCA_ERR_NULL);
	ck_assert_ptr_null(c);
	ck_assert(tu_msg_names("plan"));
	ck_assert_int_eq(lca_cache_create(plan, 0, 10, &c), LCA_ERR_SIZE);
	ck_assert(tu_msg_names("nseq"));
	ck_assert_int_eq(lca_cache_create(plan, 1, 0, &c), LCA_ERR_SIZE);
	ck_assert(tu_msg_names("capacity"));
	ck_assert_int_eq(lca_cache_create(plan, -3, 10, &c), LCA_ERR_SIZE);
	if (m.p.variant == LCA_SOFTMAX || m.p.variant == LCA_MLA) {
		ck_assert_int_eq(lca_cache_create(plan, 1, INT64_MAX, &c), LCA_ERR_OVERFLOW);
	} else {
		/* States need no room per token: any capacity will do. */
		tu_assert_ok(lca_cache_create(plan, 1, INT64_MAX, &c));
		lca_cache_destroy(c);
		ck_assert_int_eq(lca_cache_create(plan, INT64_MAX / 2, 1, &c), LCA_ERR_OVERFLOW);
	}
	ck_assert_ptr_null(c);
	ok = new_cache(plan, 2, 10);
	ck_assert_int_eq(lca_cache_len(NULL, 0, &len), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_len(ok, 0, NULL), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_len(ok, 2, &len), LCA_ERR_ARG);
	ck_assert(tu_msg_names("seq"));
	ck_assert_int_eq(lca_cache_len(ok, -1, &len), LCA_ERR_ARG);
	ck_assert_int_eq(lca_cache_bytes(NULL, &bytes), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_bytes(ok, NULL), LCA_ERR_NULL);
	ck_assert_int_eq(lca_plan_cache_cost(NULL, &pt, &ps), LCA_ERR_NULL);
	ck_assert_int_eq(lca_plan_cache_cost(plan, NULL, &ps), LCA_ERR_NULL);
	ck_assert_int_eq(lca_plan_cache_cost(plan, &pt, NULL), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_reset(NULL), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_save(NULL, NULL, 0, &need), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_save(ok, buf, sizeof buf, NULL), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_save(ok, buf, sizeof buf, &need), LCA_ERR_SIZE);
	ck_assert(tu_msg_names("size"));
	ck_assert_uint_gt(need, sizeof buf);
	ck_assert_int_eq(lca_cache_load(NULL, buf, sizeof buf), LCA_ERR_NULL);
	ck_assert_int_eq(lca_cache_load(ok, NULL, 0), LCA_ERR_NULL);
	ck_assert(tu_msg_names("buf"));
	lca_cache_destroy(NULL);
	lca_cache_destroy(ok);
	lca_plan_destroy(plan);
}
END_TEST

static Suite *cache_suite(void)
{
	Suite *s = suite_create("cache");
	TCase *tc = tu_tcase("steps");

	tcase_add_loop_test(tc, test_prefill_then_steps_equals_forward, 0, NCASE * NCONF);
	tcase_add_loop_test(tc, test_wide_head_steps_equal_forward, 0, 2 * NCONF);
	tcase_add_loop_test(tc, test_packed_steps_equal_forward_per_sequence, 0, NCASE * NCONF);
	tcase_add_loop_test(tc, test_plans_of_other_algorithms_share_a_cache, 0, 2);
	tcase_add_loop_test(tc, test_reset_cache_equals_fresh_cache, 0, NCASE * NCONF);
	suite_add_tcase(s, tc);

	tc = tu_tcase("checkpoint");
	tcase_add_loop_test(tc, test_checkpoint_resumes_bit_for_bit, 0, NCASE * NCONF);
	tcase_add_loop_test(tc, test_damaged_checkpoint_is_refused_and_cache_untouched, 0,
		NCASE * NCONF);
	tcase_add_loop_test(tc, test_mismatched_checkpoint_is_refused_and_cache_untouched, 0,
		NCASE * NCONF);
	tcase_add_loop_test(tc, test_checkpoint_moves_to_larger_capacity_and_other_backend, 0,
		NCASE);
	suite_add_tcase(s, tc);

	tc = tu_tcase("refusals");
	tcase_add_loop_test(tc, test_capacity_exceeded_leaves_cache_untouched, 0, NCASE * NCONF);
	tcase_add_loop_test(tc, test_refused_steps_leave_cache_untouched, 0, NCASE * NCONF);
	tcase_add_loop_test(tc, test_cache_calls_refuse_bad_arguments, 0, NCASE);
	suite_add_tcase(s, tc);

	tc = tu_tcase("bytes");
	tcase_add_loop_test(tc, test_cache_bytes_follow_the_formula, 0, NCASE * NCONF);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(cache_suite());
}
