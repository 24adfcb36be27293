/*
 * sessions.c - how many sequences of a given context fit in a byte budget,
 * per mechanism and per production preset, with f32 and bf16 storage of
 * the keys and values: modelled at production width, and measured by
 * filling real paged pools (lca_cache_create_ex(3)) at a reduced width.
 *
 * Modelled: a sequence of ctx tokens holds, in each softmax or mla layer,
 * ceil(ctx / LCA_CACHE_PAGE) pages of LCA_CACHE_PAGE x per_token bytes
 * (lca_plan_cache_cost(3); half of the f32 bytes in bf16), and in each
 * deltanet or lightning layer one state of per_seq bytes (H dk dv, f32:
 * states are not stored in bf16). n = floor(budget / that).
 *
 * Measured: head sizes (dk, dv, dn, dr, dc) divided by DIM_DIV, and for
 * the recurrent layers the heads too, so that a token's bytes shrink by
 * DIM_DIV and a state's by DIM_DIV^3 = CTX_DIV x DIM_DIV; contexts divided
 * by CTX_DIV; the budget divided by CTX_DIV x DIM_DIV. Every layer of a
 * kind has the same shape, so one layer stands for all of them: its pool
 * gets the budget's share of one layer. A stack of token layers only:
 * sequences are prefilled one after another (one step of ctx tokens
 * each) until the pool refuses one with LCA_ERR_CAPACITY. A hybrid: the
 * states of n sequences are real caches (lca_cache_bytes(3)), the rest of
 * the budget is split over the softmax layers' pools, and n fits if all
 * n sequences can be prefilled; the count is the largest such n (found by
 * doubling, then bisection: fitting is monotone in n).
 *
 * When ctx / CTX_DIV is a whole number of pages and every size divides,
 * the measurement is the model at 1/(CTX_DIV DIM_DIV) scale and the two
 * counts must be equal (floor(floor(b / L) / p) = floor(b / (L p)) for
 * whole b, L, p). Otherwise a reduced sequence rounds to pages
 * differently from a full one and the counts may differ; the row says so.
 *
 * The prefill uses a plan with window 1 (each new token reads one key):
 * the pool's accounting does not depend on what attention reads, and the
 * fill then costs O(tokens).
 */
#include "bench.h"
#include "../tools/tool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DIM_DIV = 8, CTX_DIV = 64, MAX_MECH_ROWS = 4 };

/* The stack's token layers (softmax or mla) and state layers (deltanet
 * or lightning): one shape per kind, as in every preset. */
struct stack {
	const char *name;
	int64_t nkv, nlin;
	lca_variant kv, lin;
	lca_params kvs, lins;
};

static int stack_of(const struct tool_preset *pr, struct stack *s)
{
	size_t len = strlen(pr->pattern);

	memset(s, 0, sizeof *s);
	s->name = pr->name;
	for (int64_t l = 0; l < pr->layers; l++) {
		lca_variant v;

		if (tool_layer_variant(pr->pattern[l % (int64_t)len], &v))
			return -1;
		if (v == LCA_SOFTMAX || v == LCA_MLA) {
			if (s->nkv++ && s->kv != v)
				return -1;  /* two kinds of token layer: not one pool */
			s->kv = v;
			s->kvs = v == LCA_SOFTMAX ? pr->softmax : pr->mla;
		} else {
			if (s->nlin++ && s->lin != v)
				return -1;
			s->lin = v;
			s->lins = v == LCA_DELTANET ? pr->deltanet : pr->lightning;
		}
	}
	return 0;
}

/* The bench's mechanisms alone, one layer at shape b (no GQA). */
static int mech_presets(const struct bench_shape *b, struct tool_preset *pr)
{
	static const char *const names[] = { "softmax", "mla", "deltanet", "lightning" };
	static const char *const pats[] = { "S", "M", "D", "L" };

	for (int m = 0; m < MAX_MECH_ROWS; m++) {
		memset(&pr[m], 0, sizeof pr[m]);
		pr[m].name = names[m];
		pr[m].pattern = pats[m];
		pr[m].layers = 1;
		pr[m].what = "one layer at the bench's shape";
		pr[m].softmax = (lca_params){ .H = b->H, .Hkv = b->H, .dk = b->dk, .dv = b->dv };
		pr[m].mla = (lca_params){ .H = b->H, .dn = b->dn, .dr = b->dr, .dc = b->dc,
			.dv = b->dv };
		pr[m].deltanet = (lca_params){ .H = b->H, .Hk = b->H, .dk = b->dk, .dv = b->dv };
		pr[m].lightning = (lca_params){ .H = b->H, .dk = b->dk, .dv = b->dv };
	}
	return MAX_MECH_ROWS;
}

/* Bytes per token (kv) or per sequence (state) of a cpu f32 plan. */
static int sizes(lca_variant v, const lca_params *shape, int64_t *per_token,
	int64_t *per_seq)
{
	lca_plan *pl = NULL;
	int rc = serve_plan(v, shape, 0, &pl) || lca_plan_cache_cost(pl, per_token, per_seq);

	lca_plan_destroy(pl);
	return rc ? -1 : 0;
}

/* The reduced shape: head sizes / DIM_DIV; recurrent layers' heads too
 * (a state is H dk dv); softmax keeps its kv heads and gets as many query
 * heads (queries are not cached), mla one query head per DIM_DIV. */
static lca_params reduced(lca_variant v, const lca_params *s)
{
	lca_params r = *s;

	r.dk /= DIM_DIV, r.dv /= DIM_DIV, r.dn /= DIM_DIV, r.dr /= DIM_DIV, r.dc /= DIM_DIV;
	if (v == LCA_SOFTMAX)
		r.H = r.Hkv ? r.Hkv : r.H, r.Hkv = r.H;
	else
		r.H = r.H / DIM_DIV > 0 ? r.H / DIM_DIV : 1, r.Hk /= DIM_DIV;
	return r;
}

/* A measurement's working set: the token layer's fill plan and inputs. */
struct fill {
	lca_variant v;
	lca_plan *plan;
	struct serve_in in;
	int64_t ctx;           /* tokens per sequence (reduced) */
	lca_dtype storage;
	size_t page_bytes;     /* LCA_CACHE_PAGE x per-token bytes of storage */
	char *msg;             /* 160 bytes */
};

/* Sequences of f->ctx tokens prefilled one after another into a pool of
 * pool_bytes with nseq slots, until the pool refuses (LCA_ERR_CAPACITY)
 * or every slot is full. -1 on any other failure (f->msg says why). */
static int64_t fill_pool(struct fill *f, size_t pool_bytes, int64_t nseq)
{
	lca_cache_opts o;
	lca_cache *c = NULL;
	int64_t *cu, n = 0;
	lca_status s;

	if (pool_bytes < f->page_bytes)
		return 0;  /* not one page (and pool_bytes 0 would mean no pool) */
	if (!(cu = malloc((size_t)(nseq + 1) * sizeof *cu))) {
		snprintf(f->msg, 160, "out of memory");
		return -1;
	}
	if ((s = lca_cache_opts_init(f->plan, &o)) == LCA_OK) {
		o.nseq = nseq;
		o.capacity = f->ctx;
		o.pool_bytes = pool_bytes;
		o.storage = f->storage;
		s = lca_cache_create_ex(f->plan, &o, &c);
	}
	/* Sequence n gets all f->ctx tokens of the step: cu = 0 up to n, then
	 * ctx. */
	for (int64_t j = 0; j <= nseq; j++)
		cu[j] = f->ctx;
	cu[0] = 0;
	for (; s == LCA_OK && n < nseq; n++) {
		cu[n] = 0;
		s = serve_step(f->plan, c, f->v, f->ctx, &f->in, cu);
		if (s != LCA_OK)
			break;
	}
	if (s != LCA_OK && s != LCA_ERR_CAPACITY) {
		snprintf(f->msg, 160, "%s", lca_last_error());
		n = -1;
	}
	lca_cache_destroy(c);
	free(cu);
	return n;
}

/* Does a hybrid hold n sequences? Their states are a real cache of n
 * slots (its bytes as lca_cache_bytes(3) counts them, times the state
 * layers); what is left goes to the token layers' pools. 1 yes, 0 no,
 * -1 failed. */
static int hybrid_fits(const struct stack *st, const lca_plan *lin, struct fill *f,
	size_t budget, int64_t n)
{
	lca_cache *c = NULL;
	size_t lb = 0;
	int64_t got;
	int rc;

	if (n == 0)
		return 1;
	if (lca_cache_create(lin, n, f->ctx, &c) || lca_cache_bytes(c, &lb)) {
		snprintf(f->msg, 160, "%s", lca_last_error());
		lca_cache_destroy(c);
		return -1;
	}
	if (lb > budget / (size_t)st->nlin)
		rc = 0;
	else if (st->nkv == 0)
		rc = 1;
	else if ((got = fill_pool(f, (budget - lb * (size_t)st->nlin) / (size_t)st->nkv, n)) < 0)
		rc = -1;
	else
		rc = got == n;
	lca_cache_destroy(c);
	return rc;
}

/* The largest n that fits: doubling, then bisection. */
static int64_t hybrid_count(const struct stack *st, const lca_plan *lin, struct fill *f,
	size_t budget)
{
	int64_t lo = 0, hi = 1;
	int r;

	while ((r = hybrid_fits(st, lin, f, budget, hi)) == 1) {
		lo = hi;
		if (hi > ((int64_t)1 << 40))
			return -1;
		hi *= 2;
	}
	if (r < 0)
		return -1;
	while (hi - lo > 1) {  /* lo fits, hi does not */
		int64_t mid = lo + (hi - lo) / 2;

		if ((r = hybrid_fits(st, lin, f, budget, mid)) < 0)
			return -1;
		if (r)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* Measured count of one stack, context ctx, storage (LCA_F32 or LCA_BF16). */
static int64_t measure(const struct stack *st, int64_t ctx, double budget,
	lca_dtype storage, char *msg)
{
	lca_params kvr = reduced(st->kv, &st->kvs), linr = reduced(st->lin, &st->lins);
	size_t b = (size_t)floor(budget / (CTX_DIV * DIM_DIV));
	struct fill f = { .v = st->kv, .storage = storage, .msg = msg,
		.ctx = (ctx + CTX_DIV - 1) / CTX_DIV };
	lca_plan *lin = NULL;
	int64_t pt = 0, ps, n = -1;

	if (st->nkv && (serve_plan(st->kv, &kvr, 1, &f.plan) || sizes(st->kv, &kvr, &pt, &ps) ||
	    serve_inputs(st->kv, &kvr, f.ctx, 7, &f.in))) {
		snprintf(msg, 160, "%s", lca_last_error());
		goto out;
	}
	f.page_bytes = (size_t)(LCA_CACHE_PAGE * pt / (storage == LCA_BF16 ? 2 : 1));
	if (st->nlin) {
		if (serve_plan(st->lin, &linr, 0, &lin)) {
			snprintf(msg, 160, "%s", lca_last_error());
			goto out;
		}
		n = hybrid_count(st, lin, &f, b);
	} else {
		size_t pool = b / (size_t)st->nkv;

		/* Each sequence needs at least ctx tokens' bytes: slots enough. */
		n = fill_pool(&f, pool, (int64_t)(pool / ((size_t)f.ctx * f.page_bytes /
			LCA_CACHE_PAGE)) + 2);
	}
out:
	lca_plan_destroy(lin);
	lca_plan_destroy(f.plan);
	serve_inputs_free(&f.in);
	return n;
}

/* Modelled bytes one sequence of ctx tokens holds; 0 on failure. Sets
 * *exact when the reduced sizes are the full ones / DIM_DIV (tokens) and
 * / DIM_DIV^3 (states) and ctx reduces to whole pages. */
static double model_bytes(const struct stack *st, int64_t ctx, lca_dtype storage,
	int *exact)
{
	int64_t pt = 0, ps = 0, ptr = 0, psr = 0, lt = 0, ls = 0, ltr = 0, lsr = 0;
	int64_t pages = (ctx + LCA_CACHE_PAGE - 1) / LCA_CACHE_PAGE;
	lca_params kvr = reduced(st->kv, &st->kvs), linr = reduced(st->lin, &st->lins);
	double bytes = 0;

	*exact = ctx % (CTX_DIV * LCA_CACHE_PAGE) == 0;
	if (st->nkv) {
		if (sizes(st->kv, &st->kvs, &pt, &ps) || sizes(st->kv, &kvr, &ptr, &psr))
			return 0;
		if (storage == LCA_BF16)
			pt /= 2, ptr /= 2;
		bytes += (double)st->nkv * (double)pages * LCA_CACHE_PAGE * (double)pt;
		*exact &= pt == DIM_DIV * ptr;
	}
	if (st->nlin) {
		if (sizes(st->lin, &st->lins, &lt, &ls) || sizes(st->lin, &linr, &ltr, &lsr))
			return 0;
		bytes += (double)st->nlin * (double)ls;
		*exact &= ls == CTX_DIV * DIM_DIV * lsr;
	}
	return bytes;
}

int bench_fit_rows(const struct bench_shape *s, double budget, const int64_t *ctx,
	int nctx, int measure_them, struct fit_row *rows, int max)
{
	struct tool_preset mech[MAX_MECH_ROWS];
	int nm = s ? mech_presets(s, mech) : 0, n = 0;

	for (int i = 0; i < nm + tool_npresets; i++) {
		const struct tool_preset *pr = i < nm ? &mech[i] : &tool_presets[i - nm];
		struct stack st;

		if (stack_of(pr, &st))
			return -1;
		for (int j = 0; j < nctx && n < max; j++) {
			struct fit_row *r = &rows[n++];
			int ex[2];

			memset(r, 0, sizeof *r);
			r->name = pr->name;
			r->ctx = ctx[j];
			for (int k = 0; k < 2; k++) {
				lca_dtype sto = k ? LCA_BF16 : LCA_F32;
				double t0 = bench_now();

				r->seq_bytes[k] = model_bytes(&st, ctx[j], sto, &ex[k]);
				if (!(r->seq_bytes[k] > 0))
					return -1;
				r->model[k] = (int64_t)floor(budget / r->seq_bytes[k]);
				r->meas[k] = measure_them ? measure(&st, ctx[j], budget, sto, r->msg) : -1;
				if (measure_them)
					fprintf(stderr, "fit %s ctx %lld %s: %lld sequences (%.1f s)\n",
						r->name, (long long)r->ctx, k ? "bf16" : "f32",
						(long long)r->meas[k], bench_now() - t0);
			}
			r->exact = ex[0] && ex[1] && fmod(budget, CTX_DIV * DIM_DIV) == 0;
		}
	}
	return n;
}

static void count(FILE *f, int md, int64_t x)
{
	if (x < 0)
		fprintf(f, md ? " - |" : " %10s", "-");
	else
		fprintf(f, md ? " %lld |" : " %10lld", (long long)x);
}

void bench_fit_print(FILE *f, int md, double budget, const struct fit_row *rows, int n)
{
	int inexact = 0, failed = 0;

	fprintf(f, "%ssessions that fit in %.4g GiB%s: modelled at production width = "
		"floor(budget / bytes a sequence holds), bytes = token layers x ceil(ctx / %d) "
		"pages x %d x per-token bytes (lca_plan_cache_cost(3); bf16 storage: half) + "
		"state layers x H dk dv x 4 (states stay f32); measured = sequences prefilled "
		"into real paged pools (lca_cache_create_ex(3)) at head sizes / %d (state layers: "
		"heads too), context / %d, budget / %d, until LCA_ERR_CAPACITY (hybrids: the "
		"largest n whose n states leave pools that hold n sequences)\n%s",
		md ? "" : "\n", budget / 1073741824.0, md ? " (measured and modelled)" : "",
		LCA_CACHE_PAGE, LCA_CACHE_PAGE, DIM_DIV, CTX_DIV, CTX_DIV * DIM_DIV,
		md ? "\n" : "");
	if (md)
		fprintf(f, "| stack | context | MiB/seq f32 | f32 modelled | f32 measured "
			"| MiB/seq bf16 | bf16 modelled | bf16 measured |\n"
			"|---|---|---|---|---|---|---|---|\n");
	else
		fprintf(f, "%-19s %8s %12s %10s %10s %12s %10s %10s\n", "stack", "context",
			"MiB/seq f32", "f32 model", "f32 meas", "MiB/seq bf16", "bf16 model",
			"bf16 meas");
	for (int i = 0; i < n; i++) {
		const struct fit_row *r = &rows[i];

		if (md)
			fprintf(f, "| %s%s | %lld | %.1f |", r->name, r->exact ? "" : " *",
				(long long)r->ctx, r->seq_bytes[0] / 1048576);
		else
			fprintf(f, "%-19s %8lld %12.1f", r->name, (long long)r->ctx,
				r->seq_bytes[0] / 1048576);
		count(f, md, r->model[0]);
		count(f, md, r->meas[0]);
		fprintf(f, md ? " %.1f |" : " %12.1f", r->seq_bytes[1] / 1048576);
		count(f, md, r->model[1]);
		count(f, md, r->meas[1]);
		fprintf(f, "%s\n", md || r->exact ? "" : "  *");
		inexact |= !r->exact;
		failed |= r->msg[0] != 0;
	}
	fprintf(f, "\n");  /* the table ends at the first empty line */
	if (inexact)
		fprintf(f, "* the reduction is not exact there (context not a multiple of %d, "
			"or a size not divisible by %d): a reduced sequence rounds to pages "
			"differently, so measured and modelled may differ\n",
			CTX_DIV * LCA_CACHE_PAGE, DIM_DIV);
	for (int i = 0; failed && i < n; i++)
		if (rows[i].msg[0])
			fprintf(f, "measurement of %s at %lld failed: %s\n",
				rows[i].name, (long long)rows[i].ctx, rows[i].msg);
}
