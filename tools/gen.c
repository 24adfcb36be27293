/*
 * gen.c - `lcattn gen`: draw the inputs of one attention case from a seeded
 * generator, compute its outputs with the double reference through the
 * public API, and write a golden file (lcattn-golden(5)).
 *
 * Same arguments, same bytes: the generator is our own (xoshiro256**
 * seeded by splitmix64), the reference is deterministic, and the writer
 * stores no timestamps. The exact command line goes into the file.
 */
#include "lcattn.h"
#include "golden.h"
#include "tool.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the generator ---- */

struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna 2018). */
static uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

/* Uniform in the open interval (0, 1): never 0, so log() below is safe. */
static double uniform(struct rng *r)
{
	return ((double)(rng_next(r) >> 11) + 0.5) * 0x1p-53;
}

/* Standard normal by Box-Muller (one of the pair; simplicity over speed). */
static double normal(struct rng *r)
{
	double u1 = uniform(r), u2 = uniform(r);

	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- arguments ---- */

enum { SM = 1, ML = 2, DN = 4, LT = 8, ALL = 15 };

/* Every option takes a value; `variants` says where it applies. */
static const struct opt {
	const char *name;
	unsigned variants;
} opts[] = {
	{ "variant", ALL }, { "case", ALL }, { "seed", ALL },
	{ "T", ALL }, { "Tq", SM | ML }, { "Tk", SM | ML },
	{ "H", ALL }, { "Hkv", SM }, { "Hk", DN },
	{ "dk", SM | DN | LT }, { "dv", ALL }, { "dn", ML }, { "dr", ML }, { "dc", ML },
	{ "scale", ALL }, { "causal", SM | ML }, { "window", SM | ML },
	{ "rope-dim", SM | ML }, { "rope-theta", SM | ML }, { "rope-style", SM | ML },
	{ "qk-l2norm", DN }, { "chunk", DN }, { "block", LT },
	{ "seqlens", ALL }, { "state0", DN | LT }, { "grads", ALL }, { "dstate", DN | LT },
	{ "gate", DN }, { "beta-range", DN }, { "logit-scale", SM | ML }, { "layer", LT },
};
#define NOPT ((int)(sizeof opts / sizeof opts[0]))

struct args {
	const char *val[NOPT];
	const char *out;
	int bad;
};

static const char *val(const struct args *a, const char *name)
{
	for (int i = 0; i < NOPT; i++)
		if (!strcmp(opts[i].name, name))
			return a->val[i];
	return NULL;
}

/* Report the first argument error (one line); later ones are consequences. */
static void bad(struct args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad(struct args *a, const char *fmt, ...)
{
	va_list ap;

	if (!a->bad) {
		fprintf(stderr, "lcattn gen: ");
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	a->bad = 1;
}

/* Integer option in [lo, hi], or dflt when absent. */
static int64_t get_int(struct args *a, const char *name, int64_t dflt, int64_t lo, int64_t hi)
{
	const char *s = val(a, name);
	char *end;
	long long x;

	if (!s)
		return dflt;
	x = strtoll(s, &end, 10);
	if (end == s || *end || x < lo || x > hi) {
		bad(a, "--%s: expected an integer in range", name);
		return dflt;
	}
	return x;
}

static double get_real(struct args *a, const char *name, double dflt)
{
	const char *s = val(a, name);
	char *end;
	double x;

	if (!s)
		return dflt;
	x = strtod(s, &end);
	if (end == s || *end || !isfinite(x)) {
		bad(a, "--%s: expected a finite number", name);
		return dflt;
	}
	return x;
}

/* "lo,hi" with lo < hi. */
static void get_pair(struct args *a, const char *name, double *lo, double *hi)
{
	const char *s = val(a, name);
	char *end, *end2;

	if (!s)
		return;
	*lo = strtod(s, &end);
	if (end == s || *end != ',' || (*hi = strtod(end + 1, &end2), end2 == end + 1) || *end2 ||
	    !isfinite(*lo) || !isfinite(*hi) || !(*lo < *hi))
		bad(a, "--%s: expected LO,HI with LO < HI", name);
}

static int parse_argv(int argc, char **argv, struct args *a)
{
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		int k;

		if (o[0] != '-' || o[1] != '-') {
			if (a->out)
				bad(a, "unexpected argument %s (one OUT.h5 only)", o);
			a->out = o;
			continue;
		}
		for (k = 0; k < NOPT && strcmp(o + 2, opts[k].name); k++)
			;
		if (k == NOPT)
			bad(a, "unknown option %s (see lcattn gen --help)", o);
		else if (i + 1 >= argc)
			bad(a, "%s needs a value", o);
		else if (a->val[k])
			bad(a, "%s given twice", o);
		else
			a->val[k] = argv[++i];
		if (a->bad)
			return 2;
	}
	if (!a->out)
		bad(a, "%s", "needs OUT.h5 (see lcattn gen --help)");
	return a->bad ? 2 : 0;
}

/* ---- the case ---- */

enum gate { GATE_STRONG, GATE_WEAK, GATE_ZERO, GATE_RANGE };

struct draw {
	enum gate gate;
	double glo, ghi, blo, bhi, logit_scale;
	int64_t layer, layers;
	int state0, dstate;
};

/* --seqlens a,b,c: cu_seqlens and T. */
static void get_seqlens(struct args *a, struct lcio_case *c)
{
	const char *s = val(a, "seqlens");
	int64_t n = 1, at = 0;
	char *end;

	if (!s)
		return;
	for (const char *p = s; *p; p++)
		n += *p == ',';
	if (n > LCIO_MAX_LEN || !(c->cu_seqlens = malloc((size_t)(n + 1) * sizeof(int64_t)))) {
		bad(a, "--seqlens %s: too many sequences", s);
		return;
	}
	c->cu_seqlens[0] = 0;
	for (int64_t i = 0; i < n; i++, s = end + 1) {
		long long len = strtoll(s, &end, 10);

		if (end == s || (*end && *end != ',') || len < 0 || len > LCIO_MAX_LEN - at) {
			bad(a, "--seqlens: %s", "expected non-negative lengths a,b,c");
			return;
		}
		c->cu_seqlens[i + 1] = at += len;
	}
	c->nseq = n;
	if (at < 1)
		bad(a, "--seqlens: %s", "the lengths must add up to at least 1");
}

/* Token counts: --seqlens decides T; else --T, or --Tq/--Tk for softmax and mla. */
static void get_lengths(struct args *a, struct lcio_case *c)
{
	int64_t T, cuT;

	get_seqlens(a, c);
	cuT = c->cu_seqlens ? c->cu_seqlens[c->nseq] : 0;
	T = get_int(a, "T", cuT ? cuT : 32, 1, LCIO_MAX_LEN);
	if (cuT && T != cuT)
		bad(a, "--T differs from the sum of %s", "--seqlens");
	c->Tq = get_int(a, "Tq", T, 1, LCIO_MAX_LEN);
	c->Tk = get_int(a, "Tk", val(a, "Tq") && !val(a, "T") ? c->Tq : T, 1, LCIO_MAX_LEN);
	if (cuT && (c->Tq != T || c->Tk != T))
		bad(a, "%s: Tq = Tk = T with packed sequences", "--seqlens");
}

static void get_gate(struct args *a, struct draw *d)
{
	const char *s = val(a, "gate");

	d->gate = GATE_STRONG;
	if (!s || !strcmp(s, "strong"))
		return;
	if (!strcmp(s, "weak"))
		d->gate = GATE_WEAK;
	else if (!strcmp(s, "zero"))
		d->gate = GATE_ZERO;
	else {
		d->gate = GATE_RANGE;
		get_pair(a, "gate", &d->glo, &d->ghi);
		if (d->ghi > 0)
			bad(a, "--gate %s: g is a log-decay, so HI <= 0", s);
	}
}

static void get_rope(struct args *a, lca_params *p)
{
	const char *s = val(a, "rope-dim"), *st = val(a, "rope-style");

	if (s && !strcmp(s, "full"))
		p->rope_dim = LCA_ROPE_FULL;
	else
		p->rope_dim = get_int(a, "rope-dim", p->rope_dim, 0, LCIO_MAX_SIZE);
	p->rope_theta = get_real(a, "rope-theta", p->rope_theta);
	if (st && !strcmp(st, "half"))
		p->rope_style = LCA_ROPE_HALF;
	else if (st && !strcmp(st, "interleaved"))
		p->rope_style = LCA_ROPE_INTERLEAVED;
	else if (st)
		bad(a, "--rope-style %s: half or interleaved", st);
}

/* Sizes and options with the per-variant defaults of lcattn(1). */
static void get_params(struct args *a, struct lcio_case *c, struct draw *d)
{
	lca_params *p = &c->p;
	int ml = p->variant == LCA_MLA;
	const int64_t S = LCIO_MAX_SIZE;

	get_lengths(a, c);
	p->H = get_int(a, "H", p->variant == LCA_SOFTMAX || p->variant == LCA_LIGHTNING ? 4 : 2, 1, S);
	p->Hkv = get_int(a, "Hkv", 0, 1, S);
	p->Hk = get_int(a, "Hk", 0, 1, S);
	p->dk = get_int(a, "dk", 16, 1, S);
	p->dv = get_int(a, "dv", 16, 1, S);
	p->dn = ml ? get_int(a, "dn", 16, 1, S) : 0;
	p->dr = ml ? get_int(a, "dr", 8, 1, S) : 0;
	p->dc = ml ? get_int(a, "dc", 32, 1, S) : 0;
	if (ml)
		p->dk = 0;
	p->scale = get_real(a, "scale", ml ? 1 / sqrt((double)(p->dn + p->dr)) : 0);
	if (p->scale < 0)
		bad(a, "--scale: %s", "must be >= 0 (0 = the variant's default)");
	p->causal = (int)get_int(a, "causal", p->causal, 0, 1);
	p->window = get_int(a, "window", 0, 0, INT64_MAX);
	get_rope(a, p);
	p->qk_l2norm = (int)get_int(a, "qk-l2norm", 1, 0, 1);
	p->chunk = get_int(a, "chunk", 64, 1, LCIO_MAX_LEN);
	p->block = get_int(a, "block", 256, 1, LCIO_MAX_LEN);
	d->state0 = (int)get_int(a, "state0", 0, 0, 1);
	c->grads = (int)get_int(a, "grads", 0, 0, 1);
	d->dstate = (int)get_int(a, "dstate", 0, 0, 1);
	if (d->dstate && !c->grads)
		bad(a, "--dstate: %s", "needs --grads 1");
	get_gate(a, d);
	d->blo = 0, d->bhi = 1;
	get_pair(a, "beta-range", &d->blo, &d->bhi);
	if (d->blo < 0 || d->bhi > 2)
		bad(a, "--beta-range: %s", "must lie in [0, 2]");
	d->logit_scale = get_real(a, "logit-scale", 1);
	d->layer = 0, d->layers = 8;
	if (val(a, "layer") && (sscanf(val(a, "layer"), "%" SCNd64 ",%" SCNd64, &d->layer, &d->layers) != 2 ||
	    d->layers < 1 || d->layer < 0 || d->layer >= d->layers))
		bad(a, "--layer %s: expected l,L with 0 <= l < L", val(a, "layer"));
}

/* ---- drawing the inputs ---- */

static double gate_value(struct rng *r, const struct draw *d)
{
	switch (d->gate) {
	case GATE_STRONG: /* log sigmoid(x), x ~ U(-4.99, 5): in [-5, -0.0067] */
		return -log1p(exp(-(-4.99 + 9.99 * uniform(r))));
	case GATE_WEAK:
		return -0.05 * uniform(r);
	case GATE_ZERO:
		return 0.0;
	case GATE_RANGE:
		return d->glo + (d->ghi - d->glo) * uniform(r);
	}
	return 0.0;
}

/* Fill one input tensor; the distribution is chosen by name. */
static int draw_tensor(struct rng *r, const struct lcio_case *c, const struct draw *d,
	struct lcio_tensor *t)
{
	const lca_params *p = &c->p;
	const char *n = t->name;
	double sd = 1.0;

	if (!strcmp(n, "slope"))
		return lca_minimax_slopes(p->H, d->layer, d->layers, t->data) ? -1 : 0;
	if (!strcmp(n, "q") || !strcmp(n, "q_nope") || !strcmp(n, "q_rope"))
		sd = p->variant <= LCA_MLA ? d->logit_scale : 1.0;
	if (p->variant == LCA_DELTANET && !p->qk_l2norm && (!strcmp(n, "q") || !strcmp(n, "k")))
		sd = 1 / sqrt((double)p->dk); /* ||k|| near 1 keeps the delta rule contractive */
	if (!strcmp(n, "w_uk") || !strcmp(n, "w_uv"))
		sd = 1 / sqrt((double)p->dc); /* unit-variance decompressed keys and values */
	for (int64_t i = 0; i < t->n; i++) {
		if (!strcmp(n, "g"))
			t->data[i] = gate_value(r, d);
		else if (!strcmp(n, "beta"))
			t->data[i] = d->blo + (d->bhi - d->blo) * uniform(r);
		else
			t->data[i] = sd * normal(r);
	}
	return 0;
}

/* ---- metrics ---- */

static void add_metric(struct lcio_case *c, const char *name, const char *def, double v)
{
	if (c->nmetric < LCIO_MAX_METRIC)
		c->metric[c->nmetric++] = (struct lcio_metric){ name, def, v };
}

/* The second computation of the mechanism, against the golden outputs. */
static int metric_second_form(struct lcio_case *c, char *why, size_t whylen)
{
	static const struct { lca_variant v; lca_algo algo; const char *name, *def; } forms[] = {
		{ LCA_MLA, LCA_ALGO_NAIVE, "naive_vs_absorbed",
		  "max over o and lse of the normwise error of the naive (decompressed K, V) "
		  "reference against these outputs (absorbed form)" },
		{ LCA_DELTANET, LCA_ALGO_CHUNKED, "chunked_vs_recurrent",
		  "max over o and state of the normwise error of the chunked (WY/UT, config chunk) "
		  "reference against these outputs (token recurrence)" },
		{ LCA_LIGHTNING, LCA_ALGO_CHUNKED, "blockwise_vs_recurrent",
		  "max over o and state of the normwise error of the blockwise (config block) "
		  "reference against these outputs (token recurrence)" },
	};
	double *buf[LCIO_MAX_OUT] = { 0 }, worst = 0, mx;
	int64_t mm;
	int rc = 0;

	for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
		if (forms[f].v != c->p.variant)
			continue;
		for (int i = 0; i < c->nout; i++)
			rc |= !(buf[i] = malloc((size_t)c->out[i].n * sizeof(double)));
		if (rc)
			snprintf(why, whylen, "out of memory");
		rc = rc || tool_compute(c, LCA_BACKEND_REF, LCA_F64, forms[f].algo, buf, NULL,
			why, whylen);
		for (int i = 0; !rc && i < c->nout; i++)
			worst = fmax(worst, tool_normwise(buf[i], c->out[i].data, c->out[i].n, &mx, &mm));
		if (!rc)
			add_metric(c, forms[f].name, c->grads ? "max over every output and "
				"gradient of the normwise error of the other computation of the "
				"reference (naive mla, chunked deltanet, blockwise lightning) "
				"against these (absorbed, recurrent)" : forms[f].def, worst);
	}
	for (int i = 0; i < c->nout; i++)
		free(buf[i]);
	return rc;
}

/* What the second computation and the probes (lcattn-probes(7)) say. */
static int add_metrics(struct lcio_case *c, char *why, size_t whylen)
{
	int n;

	if (c->p.variant <= LCA_MLA) {
		const struct lcio_tensor *lse = lcio_find(c, 1, "lse");
		double top = -INFINITY, masked = 0;

		for (int64_t i = 0; i < lse->n; i++) {
			if (lse->data[i] == -INFINITY)
				masked++;
			else
				top = fmax(top, lse->data[i]);
		}
		add_metric(c, "lse_max", "largest finite entry of /outputs/lse; it bounds the "
			"largest logit of its row from above (near 80 when logits reach 80)", top);
		add_metric(c, "masked_rows", "number of (query, head) rows with every key "
			"masked: lse = -inf and o = 0 there", masked);
	}
	if (metric_second_form(c, why, whylen))
		return -1;
	n = tool_probe_metrics(c, c->metric + c->nmetric, LCIO_MAX_METRIC - c->nmetric, why,
		whylen);
	if (n < 0)
		return -1;
	c->nmetric += n;
	return 0;
}

/* ---- the command ---- */

/* The command line as typed, shell-quoted where needed ("lcattn gen ..."). */
static char *command_line(int argc, char **argv)
{
	size_t n = 16;
	char *s, *at;

	for (int i = 1; i < argc; i++)
		n += 4 * strlen(argv[i]) + 3;
	if (!(s = malloc(n)))
		return NULL;
	at = s + sprintf(s, "lcattn gen");
	for (int i = 1; i < argc; i++) {
		const char *x = argv[i];
		int plain = *x && strspn(x, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			"0123456789-_.,/:=+") == strlen(x);

		*at++ = ' ';
		if (!plain)
			*at++ = '\'';
		for (; *x; x++)
			at += *x == '\'' && !plain ? sprintf(at, "'\\''") : sprintf(at, "%c", *x);
		if (!plain)
			*at++ = '\'';
	}
	*at = 0;
	return s;
}

/* Case name: --case, else OUT's file name without ".h5". */
static char *case_name(const struct args *a)
{
	const char *s = val(a, "case"), *b = strrchr(a->out, '/');
	size_t n;

	if (s)
		return strdup(s);
	b = b ? b + 1 : a->out;
	n = strlen(b);
	if (n > 3 && !strcmp(b + n - 3, ".h5"))
		n -= 3;
	return strndup(b, n);
}

static int usage(FILE *f)
{
	fprintf(f,
		"usage: lcattn gen --variant softmax|mla|deltanet|lightning --seed N [options] OUT.h5\n"
		"Draws the inputs of one case from a seeded generator, computes /outputs with\n"
		"the double reference and writes a golden file (lcattn-golden(5)).\n"
		"  --case NAME                 short name (default: OUT without .h5)\n"
		"  --T N | --Tq N --Tk N       tokens (default 32; Tq/Tk softmax and mla only)\n"
		"  --seqlens a,b,c             packed sequences (sets T)\n"
		"  --H --Hkv --Hk --dk --dv --dn --dr --dc N   heads and head sizes\n"
		"  --scale X                   0 = the variant's default (mla: 1/sqrt(dn+dr))\n"
		"  --causal 0|1 --window N     softmax, mla masks\n"
		"  --rope-dim N|full --rope-theta X --rope-style half|interleaved\n"
		"  --logit-scale X             multiply q (softmax, mla) by X\n"
		"  --qk-l2norm 0|1 --chunk N   deltanet\n"
		"  --gate strong|weak|zero|LO,HI --beta-range LO,HI   deltanet g and beta\n"
		"  --block N --layer l,L       lightning (MiniMax slopes of layer l of L)\n"
		"  --state0 0|1                deltanet, lightning: draw an initial state\n"
		"  --grads 0|1                 a gradient case: draw the cotangent do, add the\n"
		"                              reference gradients d<input> to /outputs\n"
		"  --dstate 0|1                deltanet, lightning gradient case: draw dstate\n");
	return f == stdout ? 0 : 2;
}

/* The optional inputs asked for: state0 (--state0 1), dstate (--dstate 1). */
static int alloc_optional(struct lcio_case *c, const struct draw *d, char *err,
	size_t errlen)
{
	for (int i = 0; i < c->nin; i++) {
		struct lcio_tensor *t = &c->in[i];
		int want = (!strcmp(t->name, "state0") && d->state0) ||
			(!strcmp(t->name, "dstate") && d->dstate);

		if (want && !(t->data = calloc((size_t)t->n, sizeof(double)))) {
			snprintf(err, errlen, "out of memory for %s", t->name);
			return -1;
		}
	}
	return 0;
}

/* Draw, compute, measure, write. */
static int generate(struct args *a, struct lcio_case *c, const struct draw *d, int argc, char **argv)
{
	double *bufs[LCIO_MAX_OUT];
	char err[512], why[400];
	struct rng r;
	lca_params res;
	lca_status s;

	rng_seed(&r, c->seed);
	if (lcio_layout(c, err, sizeof err) || lcio_alloc(c, 0, err, sizeof err) ||
	    alloc_optional(c, d, err, sizeof err)) {
		fprintf(stderr, "lcattn gen: %s\n", err);
		return 2;
	}
	for (int i = 0; i < c->nin; i++)
		if (c->in[i].data && draw_tensor(&r, c, d, &c->in[i])) {
			fprintf(stderr, "lcattn gen: slopes: %s\n", lca_last_error());
			return 2;
		}
	for (int i = 0; i < c->nout; i++)
		bufs[i] = c->out[i].data;
	if ((s = tool_compute(c, LCA_BACKEND_REF, LCA_F64, LCA_ALGO_AUTO, bufs, &res, why,
			sizeof why))) {
		fprintf(stderr, "lcattn gen: %s: %s\n", lca_strerror(s), why);
		return 2;
	}
	c->p.scale = res.scale, c->p.rope_dim = res.rope_dim; /* the file states what ran */
	if (add_metrics(c, why, sizeof why)) {
		fprintf(stderr, "lcattn gen: the second computation or a probe failed: %s\n", why);
		return 2;
	}
	c->command = command_line(argc, argv);
	c->name = case_name(a);
	if (!c->command || !c->name ||
	    lcio_write(a->out, c, LCIO_INPUTS | LCIO_OUTPUTS | LCIO_METRICS, err, sizeof err)) {
		fprintf(stderr, "lcattn gen: %s\n", c->name && c->command ? err : "out of memory");
		return 2;
	}
	return 0;
}

int tool_gen(int argc, char **argv)
{
	struct args a = { { 0 }, NULL, 0 };
	struct lcio_case c;
	struct draw d;
	char gen[64];
	lca_variant v;
	int rc;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return usage(stdout);
	if (parse_argv(argc, argv, &a))
		return 2;
	if (!val(&a, "variant") || lcio_variant_parse(val(&a, "variant"), &v)) {
		fprintf(stderr, "lcattn gen: --variant softmax|mla|deltanet|lightning is required\n");
		return 2;
	}
	for (int k = 0; k < NOPT; k++)
		if (a.val[k] && !(opts[k].variants & (1u << v))) {
			fprintf(stderr, "lcattn gen: --%s does not apply to %s\n", opts[k].name,
				lcio_variant_name(v));
			return 2;
		}
	lcio_case_init(&c, v);
	get_params(&a, &c, &d);
	c.seed = (uint64_t)get_int(&a, "seed", -1, 0, INT64_MAX);
	c.has_seed = 1;
	if (!a.bad && !val(&a, "seed"))
		bad(&a, "%s", "--seed N is required");
	snprintf(gen, sizeof gen, "lcattn %s ref", lca_version());
	c.generator = gen; /* borrowed */
	rc = a.bad ? 2 : generate(&a, &c, &d, argc, argv);
	c.generator = NULL;
	lcio_case_free(&c);
	return rc;
}
