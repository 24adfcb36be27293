/*
 * probe.c - `lcattn probe`: the probes of lcattn-probes(7) swept over
 * loads, lengths, similarities and distances on synthetic tokens
 * (lca_probe_draw), averaged over seeds.
 *
 *   lcattn probe retrieval|overwrite|dilution|position|token|gradflow [options]
 *   lcattn probe golden FILE.h5...          (probe_metrics.c)
 *
 * Each sweep prints a summary table as CSV on stdout and, with --csv FILE,
 * writes the full table (per age or per distance) to FILE. Seeds are shared
 * by the mechanisms, so their numbers compare pair by pair.
 */
#include "lcattn.h"
#include "tool.h"
#include "gradflow.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { RET = 1, OVW = 2, DIL = 4, POS = 8, TOK = 16, GRD = 32, ALL = 63 };

static const struct popt {
	const char *name;
	unsigned cmds;
} popts[] = {
	{ "dk", ALL }, { "dv", ALL }, { "rho", RET | DIL | POS | TOK }, { "seeds", ALL },
	{ "seed", ALL }, { "mech", RET | POS | TOK }, { "csv", ALL }, { "scale", RET | POS | TOK },
	{ "dc", RET | POS | TOK }, { "dr", RET | POS | TOK }, { "rope-dim", RET | POS | TOK },
	{ "rope-theta", RET | POS | TOK }, { "rope-style", RET | POS | TOK },
	{ "beta", RET | OVW | POS | TOK }, { "g", RET | OVW | POS | TOK },
	{ "slope", RET | POS | TOK }, { "loads", RET }, { "T", OVW | POS | TOK | GRD },
	{ "rhos", OVW }, { "lengths", DIL }, { "slopes", DIL }, { "dists", POS },
	{ "index", TOK }, { "threshold", TOK }, { "backend", TOK },
	{ "H", GRD }, { "curves", GRD },
};
#define NPOPT ((int)(sizeof popts / sizeof popts[0]))

struct opts {
	const char *val[NPOPT];
	int quiet, bad;
	unsigned cmd;
	const char *cmdname;
};

static const char *const mech_names[] = { "softmax", "mla", "deltanet", "lightning" };

static void bad(struct opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad(struct opts *o, const char *fmt, ...)
{
	va_list ap;

	if (!o->bad) {
		fprintf(stderr, "lcattn probe %s: ", o->cmdname);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	o->bad = 1;
}

static const char *val(const struct opts *o, const char *name)
{
	for (int i = 0; i < NPOPT; i++)
		if (!strcmp(popts[i].name, name))
			return o->val[i];
	return NULL;
}

static int64_t get_int(struct opts *o, const char *name, int64_t dflt, int64_t lo, int64_t hi)
{
	const char *s = val(o, name);
	char *end;
	long long x;

	if (!s)
		return dflt;
	x = strtoll(s, &end, 10);
	if (end == s || *end || x < lo || x > hi) {
		bad(o, "--%s %s: expected an integer in [%lld, %lld]", name, s, (long long)lo,
			(long long)hi);
		return dflt;
	}
	return x;
}

static double get_real(struct opts *o, const char *name, double dflt)
{
	const char *s = val(o, name);
	char *end;
	double x;

	if (!s)
		return dflt;
	x = strtod(s, &end);
	if (end == s || *end || !isfinite(x)) {
		bad(o, "--%s %s: expected a finite number", name, s);
		return dflt;
	}
	return x;
}

/* Comma-separated finite numbers (at most max) into x; the count. */
static int get_list(struct opts *o, const char *name, const char *dflt, double *x, int max)
{
	const char *s = val(o, name) ? val(o, name) : dflt;
	int n = 0;
	char *end;

	while (*s && n < max) {
		x[n] = strtod(s, &end);
		if (end == s || (*end && *end != ',') || !isfinite(x[n])) {
			bad(o, "--%s: expected numbers a,b,c", name);
			return 0;
		}
		n++;
		s = *end ? end + 1 : end;
	}
	if (*s || !n)
		bad(o, "--%s: between 1 and %d values", name, max);
	return n;
}

static int parse(int argc, char **argv, struct opts *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int k;

		if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
			o->quiet = 1;
			continue;
		}
		for (k = 0; k < NPOPT && (a[0] != '-' || a[1] != '-' || strcmp(a + 2, popts[k].name)); k++)
			;
		if (k == NPOPT)
			bad(o, "unknown argument %s (see --help)", a);
		else if (!(popts[k].cmds & o->cmd))
			bad(o, "%s does not apply here (see --help)", a);
		else if (i + 1 >= argc)
			bad(o, "%s needs a value", a);
		else
			o->val[k] = argv[++i];
		if (o->bad)
			return 2;
	}
	return 0;
}

/* --mech softmax,mla,... or all: a bit mask over the variants. */
static unsigned get_mechs(struct opts *o)
{
	const char *s = val(o, "mech");
	unsigned m = 0;

	if (!s || !strcmp(s, "all"))
		return 15;
	while (*s) {
		size_t n = strcspn(s, ",");
		int v;

		for (v = 0; v < 4 && (strlen(mech_names[v]) != n || strncmp(s, mech_names[v], n)); v++)
			;
		if (v == 4) {
			bad(o, "--mech: softmax, mla, deltanet, lightning or all");
			return 0;
		}
		m |= 1u << v;
		s += n + (s[n] == ',');
	}
	return m;
}

/* The mechanism's probe parameters: library defaults, the shape, then
 * every option given. The position probe defaults to RoPE on softmax (all
 * of dk) and on mla (a rotary part of dk/4, DeepSeek's proportion of
 * about a third of the nope part). */
static lca_probe_params mech_params(struct opts *o, lca_variant v, int position)
{
	lca_probe_params pp;
	const char *rd = val(o, "rope-dim"), *st = val(o, "rope-style");

	lca_probe_params_init(&pp, v);
	pp.dk = get_int(o, "dk", 64, 1, 1 << 16);
	pp.dv = get_int(o, "dv", 64, 1, 1 << 16);
	if (v == LCA_MLA) {
		pp.dr = get_int(o, "dr", position ? pp.dk / 8 * 2 : 0, 0, pp.dk - 1);
		pp.dc = get_int(o, "dc", 0, 0, 1 << 16);
	}
	if (v <= LCA_MLA) {
		pp.scale = get_real(o, "scale", 0);
		pp.rope_dim = position ? LCA_ROPE_FULL : 0;
		if (rd)
			pp.rope_dim = !strcmp(rd, "full") ? LCA_ROPE_FULL : get_int(o, "rope-dim", 0, 0, 1 << 16);
		pp.rope_theta = get_real(o, "rope-theta", pp.rope_theta);
		if (st && (!strcmp(st, "half") || !strcmp(st, "interleaved")))
			pp.rope_style = !strcmp(st, "half") ? LCA_ROPE_HALF : LCA_ROPE_INTERLEAVED;
		else if (st)
			bad(o, "--rope-style %s: half or interleaved", st);
	}
	pp.beta = get_real(o, "beta", pp.beta);
	pp.g = get_real(o, "g", pp.g);
	pp.slope = get_real(o, "slope", pp.slope);
	return pp;
}

/* ---- progress on stderr, for runs that take more than two seconds ---- */

struct progress {
	struct timespec t0;
	int on, shown;
	const char *what;
};

static void progress_start(struct progress *p, const struct opts *o, const char *what)
{
	clock_gettime(CLOCK_MONOTONIC, &p->t0);
	p->on = !o->quiet && isatty(2);
	p->shown = 0;
	p->what = what;
}

static void progress(struct progress *p, double done, const char *label)
{
	struct timespec t;
	double el;

	if (!p->on)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t);
	el = (double)(t.tv_sec - p->t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - p->t0.tv_nsec);
	if (el < 2 && !p->shown)
		return;
	fprintf(stderr, "\rlcattn probe %s: %3.0f%% %-40s", p->what, 100 * done, label);
	p->shown = 1;
}

static void progress_end(struct progress *p)
{
	if (p->shown)
		fprintf(stderr, "\r%-75s\r", "");
}

/* ---- shared pieces ---- */

struct run {
	struct opts *o;
	FILE *csv;
	int64_t dk, dv, seeds;
	uint64_t seed;
	double rho;
};

static int run_init(struct run *r, struct opts *o)
{
	const char *path = val(o, "csv");

	r->o = o;
	r->dk = get_int(o, "dk", 64, 1, 1 << 16);
	r->dv = get_int(o, "dv", 64, 1, 1 << 16);
	r->seeds = get_int(o, "seeds", o->cmd & (RET | POS) ? 16 : o->cmd == TOK ? 4 : 8, 1, 1000);
	r->seed = (uint64_t)get_int(o, "seed", 1, 0, INT64_MAX);
	r->rho = get_real(o, "rho", 0);
	if (!(r->rho >= 0 && r->rho < 1))
		bad(o, "--rho must lie in [0, 1)");
	r->csv = NULL;
	for (int v = 0; v < 4; v++) /* every option's value, before any work */
		(void)mech_params(o, (lca_variant)v, o->cmd == POS);
	if (o->bad)
		return 2;
	if (path && !(r->csv = fopen(path, "w"))) {
		bad(o, "--csv %s: cannot write", path);
		return 2;
	}
	return 0;
}

static int run_end(struct run *r, int rc)
{
	if (r->csv && fclose(r->csv) && !rc) {
		fprintf(stderr, "lcattn probe %s: error writing the CSV file\n", r->o->cmdname);
		rc = 2;
	}
	return rc;
}

static int fail_call(const struct opts *o, lca_status s)
{
	fprintf(stderr, "lcattn probe %s: %s: %s\n", o->cmdname, lca_strerror(s), lca_last_error());
	return 2;
}

/* Tokens of one draw: k [T][dk], v [T][dv] (and a spare key row). */
struct draw {
	int64_t T;
	double *k, *v, *out, *out2, *sum, *sum2;
};

static int draw_alloc(struct draw *d, int64_t T, int64_t dk, int64_t dv)
{
	d->T = T;
	d->k = calloc((size_t)((T + 1) * dk), sizeof(double));
	d->v = calloc((size_t)((T + 1) * dv), sizeof(double));
	d->out = calloc((size_t)T, sizeof(double));
	d->out2 = calloc((size_t)T, sizeof(double));
	d->sum = calloc((size_t)T * 4, sizeof(double));
	d->sum2 = calloc((size_t)T * 4, sizeof(double));
	return d->k && d->v && d->out && d->out2 && d->sum && d->sum2 ? 0 : -1;
}

static void draw_free(struct draw *d)
{
	free(d->k), free(d->v), free(d->out), free(d->out2), free(d->sum), free(d->sum2);
	memset(d, 0, sizeof *d);
}

/* lo..max on a grid a person reads easily: every integer to 10, then
 * 12 15 20 25 30 40 50 60 80 in each decade; always max. The count (at
 * most 200). */
static int age_grid(int64_t lo, int64_t max, int64_t *g)
{
	static const int steps[] = { 10, 12, 15, 20, 25, 30, 40, 50, 60, 80 };
	int n = 0;

	for (int64_t x = lo; x <= max && x < 10; x++)
		g[n++] = x;
	for (int64_t dec = 1; dec <= max / 10 && n < 180; dec *= 10)
		for (int i = 0; i < 10; i++)
			if (steps[i] * dec <= max && steps[i] * dec >= lo)
				g[n++] = steps[i] * dec;
	if (!n || g[n - 1] != max)
		g[n++] = max;
	return n;
}

static double mean_of(const double *x, int64_t n)
{
	double s = 0;

	for (int64_t i = 0; i < n; i++)
		s += x[i];
	return s / (double)n;
}

/* ---- retrieval ---- */

static int cmd_retrieval(struct opts *o)
{
	double loads[32];
	int nl = get_list(o, "loads", "0.125,0.25,0.5,1,2,4,8", loads, 32), rc;
	unsigned mechs = get_mechs(o);
	struct progress pg;
	struct run r;

	if ((rc = run_init(&r, o)))
		return rc;
	for (int l = 0; l < nl; l++)
		if (!(loads[l] > 0 && loads[l] * (double)r.dk <= 1 << 20))
			bad(o, "--loads: each N/dk must be > 0 and N <= 2^20");
	if (o->bad)
		return run_end(&r, 2);
	printf("mechanism,dk,dv,rho,load,N,err_mean,err_newest,err_oldest\n");
	if (r.csv)
		fprintf(r.csv, "mechanism,dk,dv,rho,load,N,age,err_mean,err_sd\n");
	progress_start(&pg, o, "retrieval");
	for (int v = 0; v < 4 && !rc; v++) {
		lca_probe_params pp = mech_params(o, (lca_variant)v, 0);

		if (!(mechs >> v & 1))
			continue;
		for (int l = 0; l < nl && !rc; l++) {
			int64_t N = (int64_t)llround(fmax(1, loads[l] * (double)r.dk));
			struct draw d;
			char lab[64];

			if (draw_alloc(&d, N, r.dk, r.dv)) {
				draw_free(&d);
				return run_end(&r, fail_call(o, LCA_ERR_NOMEM));
			}
			for (int64_t s = 0; s < r.seeds && !rc; s++) {
				lca_probe_seq q = { N, d.k, d.v, NULL, NULL, NULL };
				lca_status st;

				snprintf(lab, sizeof lab, "%s N=%lld seed %lld", mech_names[v],
					(long long)N, (long long)s + 1);
				progress(&pg, (v + (l + (double)s / r.seeds) / nl) / 4, lab);
				if ((st = lca_probe_draw(N, r.dk, r.dv, r.rho, r.seed + s, d.k, d.v)) ||
				    (st = lca_probe_retrieval(&pp, &q, d.out)))
					rc = fail_call(o, st);
				for (int64_t i = 0; !rc && i < N; i++)
					d.sum[i] += d.out[i], d.sum2[i] += d.out[i] * d.out[i];
			}
			for (int64_t i = 0; !rc && i < N; i++) {
				double m = d.sum[i] / r.seeds, var = d.sum2[i] / r.seeds - m * m;

				d.out[i] = m;
				if (r.csv)
					fprintf(r.csv, "%s,%lld,%lld,%g,%g,%lld,%lld,%.6g,%.3g\n", mech_names[v],
						(long long)r.dk, (long long)r.dv, r.rho, loads[l], (long long)N,
						(long long)(N - 1 - i), m, sqrt(fmax(var, 0)));
			}
			if (!rc)
				printf("%s,%lld,%lld,%g,%g,%lld,%.6g,%.6g,%.6g\n", mech_names[v],
					(long long)r.dk, (long long)r.dv, r.rho, loads[l], (long long)N,
					mean_of(d.out, N), d.out[N - 1], d.out[0]);
			draw_free(&d);
		}
	}
	progress_end(&pg);
	return run_end(&r, rc);
}

/* ---- overwrite (deltanet) ---- */

static int cmd_overwrite(struct opts *o)
{
	double rhos[32];
	int nr = get_list(o, "rhos", "0,0.2,0.4,0.6,0.8", rhos, 32), rc;
	lca_probe_params pp = mech_params(o, LCA_DELTANET, 0);
	int64_t T = get_int(o, "T", 4096, 2, 1 << 20), grid[200];
	int ng = age_grid(0, T - 1, grid);
	struct progress pg;
	struct run r;
	struct draw d;

	if ((rc = run_init(&r, o)))
		return rc;
	for (int i = 0; i < nr; i++)
		if (!(rhos[i] >= 0 && rhos[i] < 1))
			bad(o, "--rhos: each must lie in [0, 1)");
	if (o->bad || draw_alloc(&d, T, r.dk, r.dv))
		return run_end(&r, o->bad ? 2 : fail_call(o, LCA_ERR_NOMEM));
	printf("dk,dv,beta,g,rho,T,overwrite_mean,overwrite_age_dk,overwrite_oldest,"
		"decay_oldest,err_now_mean,err_end_mean\n");
	if (r.csv)
		fprintf(r.csv, "dk,dv,beta,g,rho,T,age,overwrite,decay,err_now,err_end\n");
	progress_start(&pg, o, "overwrite");
	for (int k = 0; k < nr && !rc; k++) {
		double *now = d.sum + T, *end = d.sum + 2 * T, *dec = d.sum + 3 * T;

		memset(d.sum, 0, (size_t)(4 * T) * sizeof(double));
		for (int64_t s = 0; s < r.seeds && !rc; s++) {
			lca_probe_seq q = { T, d.k, d.v, NULL, NULL, NULL };
			lca_status st;
			char lab[64];

			snprintf(lab, sizeof lab, "rho %g seed %lld", rhos[k], (long long)s + 1);
			progress(&pg, (k + (double)s / r.seeds) / nr, lab);
			if ((st = lca_probe_draw(T, r.dk, r.dv, rhos[k], r.seed + s, d.k, d.v)) ||
			    (st = lca_probe_overwrite(&pp, &q, d.out, d.sum2 + 3 * T, d.sum2 + T,
				d.sum2 + 2 * T)))
				rc = fail_call(o, st);
			for (int64_t i = 0; !rc && i < T; i++) {
				d.sum[i] += d.out[i] / r.seeds, now[i] += d.sum2[T + i] / r.seeds;
				end[i] += d.sum2[2 * T + i] / r.seeds, dec[i] += d.sum2[3 * T + i] / r.seeds;
			}
		}
		for (int j = 0; !rc && r.csv && j < ng; j++) {
			int64_t i = T - 1 - grid[j];

			fprintf(r.csv, "%lld,%lld,%g,%g,%g,%lld,%lld,%.6g,%.6g,%.6g,%.6g\n",
				(long long)r.dk, (long long)r.dv, pp.beta, pp.g, rhos[k], (long long)T,
				(long long)grid[j], d.sum[i], dec[i], now[i], end[i]);
		}
		if (!rc)
			printf("%lld,%lld,%g,%g,%g,%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n", (long long)r.dk,
				(long long)r.dv, pp.beta, pp.g, rhos[k], (long long)T, mean_of(d.sum, T),
				T - 1 - r.dk >= 0 ? d.sum[T - 1 - r.dk] : NAN, d.sum[0], dec[0],
				mean_of(now, T), mean_of(end, T));
	}
	progress_end(&pg);
	draw_free(&d);
	return run_end(&r, rc);
}

/* ---- dilution (lightning) ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int cmd_dilution(struct opts *o)
{
	double lens[32], slopes[16];
	int nt = get_list(o, "lengths", "16,32,64,128,256,512,1024,2048,4096", lens, 32);
	int ns = get_list(o, "slopes", "0,0.00390625", slopes, 16), rc;
	lca_probe_params pp = mech_params(o, LCA_LIGHTNING, 0);
	struct progress pg;
	struct run r;

	if ((rc = run_init(&r, o)))
		return rc;
	for (int i = 0; i < nt; i++)
		if (lens[i] != floor(lens[i]) || lens[i] < 2 || lens[i] > 1 << 20)
			bad(o, "--lengths: integers in [2, 2^20]");
	for (int i = 0; i < ns; i++)
		if (!(slopes[i] >= 0))
			bad(o, "--slopes: each must be >= 0");
	if (o->bad)
		return run_end(&r, 2);
	printf("dk,dv,rho,slope,T,load,ratio_mean,ratio_median,ratio_newest,ratio_oldest,"
		"sqrt_T1_over_dk\n");
	if (r.csv)
		fprintf(r.csv, "dk,dv,rho,slope,T,load,age,ratio\n");
	progress_start(&pg, o, "dilution");
	for (int a = 0; a < ns && !rc; a++)
		for (int b = 0; b < nt && !rc; b++) {
			int64_t T = (int64_t)lens[b], grid[200];
			int ng = age_grid(0, T - 1, grid);
			struct draw d;

			pp.slope = slopes[a];
			if (draw_alloc(&d, T, r.dk, r.dv)) {
				draw_free(&d);
				return run_end(&r, fail_call(o, LCA_ERR_NOMEM));
			}
			for (int64_t s = 0; s < r.seeds && !rc; s++) {
				lca_probe_seq q = { T, d.k, d.v, NULL, NULL, NULL };
				lca_status st;
				char lab[64];

				snprintf(lab, sizeof lab, "slope %g T=%lld seed %lld", slopes[a],
					(long long)T, (long long)s + 1);
				progress(&pg, (a + (b + (double)s / r.seeds) / nt) / ns, lab);
				if ((st = lca_probe_draw(T, r.dk, r.dv, r.rho, r.seed + s, d.k, d.v)) ||
				    (st = lca_probe_dilution(&pp, &q, d.out)))
					rc = fail_call(o, st);
				for (int64_t i = 0; !rc && i < T; i++)
					d.sum[i] += d.out[i] / r.seeds;
			}
			for (int j = 0; !rc && r.csv && j < ng; j++)
				fprintf(r.csv, "%lld,%lld,%g,%g,%lld,%g,%lld,%.6g\n", (long long)r.dk,
					(long long)r.dv, r.rho, slopes[a], (long long)T, (double)T / r.dk,
					(long long)grid[j], d.sum[T - 1 - grid[j]]);
			if (!rc) {
				double m = mean_of(d.sum, T), newest = d.sum[T - 1], oldest = d.sum[0];

				memcpy(d.out, d.sum, (size_t)T * sizeof(double));
				qsort(d.out, (size_t)T, sizeof(double), cmp_double);
				printf("%lld,%lld,%g,%g,%lld,%g,%.6g,%.6g,%.6g,%.6g,%.6g\n", (long long)r.dk,
					(long long)r.dv, r.rho, slopes[a], (long long)T, (double)T / r.dk, m,
					T % 2 ? d.out[T / 2] : 0.5 * (d.out[T / 2 - 1] + d.out[T / 2]),
					newest, oldest, sqrt((double)(T - 1) / r.dk));
			}
			draw_free(&d);
		}
	progress_end(&pg);
	return run_end(&r, rc);
}

/* ---- position ---- */

/* First tested distance from which the mean sensitivity stays below 1%;
 * -1 if the largest distance is still at or above it. */
static int64_t below_1pct(const int64_t *dist, const double *sens, int n)
{
	int j = n;

	while (j > 0 && sens[j - 1] < 0.01)
		j--;
	return j < n ? dist[j] : -1;
}

static double at_dist(const int64_t *dist, const double *sens, int n, int64_t d)
{
	for (int j = 0; j < n; j++)
		if (dist[j] == d)
			return sens[j];
	return NAN;
}

static int position_dists(struct opts *o, int64_t T, int64_t **dist)
{
	const char *s = val(o, "dists");
	int64_t n = 0;

	if (s && !strcmp(s, "all")) {
		if (!(*dist = malloc((size_t)(T - 1) * sizeof **dist)))
			return -1;
		for (int64_t d = 1; d < T; d++)
			(*dist)[n++] = d;
		return (int)n;
	}
	if (s && strcmp(s, "log"))
		bad(o, "--dists: log (a geometric grid, the default) or all");
	if (!(*dist = malloc(200 * sizeof **dist)))
		return -1;
	return age_grid(1, T - 1, *dist);
}

static void position_report(struct run *r, int v, int64_t T, const int64_t *dist,
	const double *mean, const double *max, int nd)
{
	int64_t b = below_1pct(dist, mean, nd);
	double far = 0;
	int nfar = 0;

	for (int j = 0; r->csv && j < nd; j++)
		fprintf(r->csv, "%s,%lld,%lld,%g,%lld,%lld,%.6g,%.6g\n", mech_names[v],
			(long long)r->dk, (long long)r->dv, r->rho, (long long)T, (long long)dist[j],
			mean[j], max[j]);
	printf("%s,%lld,%lld,%g,%lld,", mech_names[v], (long long)r->dk, (long long)r->dv, r->rho,
		(long long)T);
	if (b < 0)
		printf("NA");
	else
		printf("%lld", (long long)b);
	for (int64_t d = 1; d <= 1000; d *= 10) {
		double x = at_dist(dist, mean, nd, d);

		if (isnan(x))
			printf(",NA");
		else
			printf(",%.6g", x);
	}
	for (int j = 0; j < nd; j++)
		if (4 * dist[j] >= T)
			far += mean[j], nfar++;
	printf(",%.6g\n", far / nfar);
}

static int cmd_position(struct opts *o)
{
	int64_t T = get_int(o, "T", 4096, 2, 1 << 20), *dist = NULL;
	unsigned mechs = get_mechs(o);
	double *mean = NULL, *max = NULL, *sens = NULL;
	int nd = 0, rc;
	struct progress pg;
	struct run r;
	struct draw d = { 0 };

	if ((rc = run_init(&r, o)))
		return rc;
	if ((nd = position_dists(o, T, &dist)) < 0 || !(mean = calloc((size_t)nd, sizeof *mean)) ||
	    !(max = calloc((size_t)nd, sizeof *max)) || !(sens = calloc((size_t)nd, sizeof *sens)) ||
	    draw_alloc(&d, T, r.dk, r.dv))
		rc = fail_call(o, LCA_ERR_NOMEM);
	if (o->bad)
		rc = 2;
	if (!rc) {
		printf("mechanism,dk,dv,rho,T,d_below_1pct,sens_d1,sens_d10,sens_d100,sens_d1000,"
			"sens_far_mean\n");
		if (r.csv)
			fprintf(r.csv, "mechanism,dk,dv,rho,T,d,sens_mean,sens_max\n");
	}
	progress_start(&pg, o, "position");
	for (int v = 0; v < 4 && !rc; v++) {
		lca_probe_params pp = mech_params(o, (lca_variant)v, 1);

		if (!(mechs >> v & 1))
			continue;
		memset(mean, 0, (size_t)nd * sizeof *mean);
		memset(max, 0, (size_t)nd * sizeof *max);
		for (int64_t s = 0; s < r.seeds && !rc; s++) {
			/* T + 1 draws: the last key, independent of the T tokens
			 * but as crowded (rho), is the query. */
			lca_probe_seq q = { T, d.k, d.v, NULL, NULL, d.k + T * r.dk };
			lca_status st;
			char lab[64];

			snprintf(lab, sizeof lab, "%s seed %lld", mech_names[v], (long long)s + 1);
			progress(&pg, (v + (double)s / r.seeds) / 4, lab);
			if ((st = lca_probe_draw(T + 1, r.dk, r.dv, r.rho, r.seed + s, d.k, d.v)) ||
			    (st = lca_probe_position(&pp, &q, nd, dist, sens)))
				rc = fail_call(o, st);
			for (int j = 0; !rc && j < nd; j++)
				mean[j] += sens[j] / r.seeds, max[j] = fmax(max[j], sens[j]);
		}
		if (!rc)
			position_report(&r, v, T, dist, mean, max, nd);
	}
	progress_end(&pg);
	free(dist), free(mean), free(max), free(sens);
	draw_free(&d);
	return run_end(&r, rc);
}

/* ---- token ---- */

static double seconds_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

/* The next seed's tokens, drawn on a second thread while the mechanisms
 * read the current one: at T = 2^20 a draw (2^28 normal deviates, each a
 * log and a cos) takes as long as the four mechanisms together. */
struct drawer {
	pthread_t th;
	int64_t T, dk, dv;
	double rho;
	uint64_t seed;
	double *k, *v;
	lca_status st;
	char msg[256];
};

static void *drawer_main(void *arg)
{
	struct drawer *w = arg;

	if ((w->st = lca_probe_draw(w->T, w->dk, w->dv, w->rho, w->seed, w->k, w->v)))
		snprintf(w->msg, sizeof w->msg, "%s", lca_last_error());
	return NULL;
}

/* Start drawing (or, where no thread can be had, draw now): 0 or -1. */
static int drawer_start(struct drawer *w, const struct run *r, const struct draw *d, int64_t s)
{
	w->T = d->T, w->dk = r->dk, w->dv = r->dv, w->rho = r->rho, w->seed = r->seed + s;
	w->k = d->k, w->v = d->v, w->msg[0] = 0;
	if (pthread_create(&w->th, NULL, drawer_main, w)) {
		drawer_main(w);
		return -1;
	}
	return 0;
}

/* One token's retrieval error per mechanism, averaged over the seeds. Only
 * that token is read (lca_probe_retrieval_of), each seed's tokens are drawn
 * once for every mechanism (the next seed's while this one is read), and
 * the writes run on --backend (cpu unless told: float64 within 1e-12 of
 * the reference, and at T = 2^20 seconds where the reference takes
 * minutes; the error is printed to 4 digits). */
static int cmd_token(struct opts *o)
{
	int64_t T = get_int(o, "T", 4096, 1, 1 << 20), idx = get_int(o, "index", 0, 0, T - 1);
	double thr = get_real(o, "threshold", 0.5), sum[4] = { 0 }, lo[4], hi[4], sec[4] = { 0 };
	double draw_sec = 0;
	const char *bk = val(o, "backend");
	lca_backend be = LCA_BACKEND_CPU;
	unsigned mechs = get_mechs(o);
	int64_t got[4] = { 0 };
	struct progress pg;
	struct timespec t0;
	struct run r;
	struct draw d, d2;
	struct drawer w;
	int rc, threaded = -1;

	if (!val(o, "index"))
		bad(o, "--index N is required (0-based, 0 <= N < T)");
	if (bk && strcmp(bk, "cpu") && strcmp(bk, "ref"))
		bad(o, "--backend %s: cpu or ref", bk);
	if (bk && !strcmp(bk, "ref"))
		be = LCA_BACKEND_REF;
	if ((rc = run_init(&r, o)))
		return rc;
	memset(&d2, 0, sizeof d2);
	if (draw_alloc(&d, T, r.dk, r.dv) || (r.seeds > 1 && draw_alloc(&d2, T, r.dk, r.dv))) {
		draw_free(&d), draw_free(&d2);
		return run_end(&r, fail_call(o, LCA_ERR_NOMEM));
	}
	for (int v = 0; v < 4; v++)
		lo[v] = INFINITY, hi[v] = 0;
	printf("token %lld of %lld (age %lld), dk %lld, dv %lld, rho %g, %lld seeds\n"
		"retrievable: mean error < %g, error = min_a ||a o - v|| / ||v|| = sin(angle(o, v))\n\n"
		"%-10s %10s %10s %10s %10s  %s\n", (long long)idx, (long long)T,
		(long long)(T - 1 - idx), (long long)r.dk, (long long)r.dv, r.rho, (long long)r.seeds,
		thr, "mechanism", "error", "min", "max", "retrieved", "retrievable");
	fflush(stdout);
	if (r.csv)
		fprintf(r.csv, "mechanism,dk,dv,rho,T,index,age,seeds,threshold,err_mean,err_min,"
			"err_max,retrieved,retrievable\n");
	progress_start(&pg, o, "token");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	threaded = drawer_start(&w, &r, &d, 0);
	for (int64_t s = 0; s < r.seeds && !rc; s++) {
		lca_probe_seq q = { T, d.k, d.v, NULL, NULL, NULL };
		lca_status st;
		char lab[64];
		struct draw tmp;

		snprintf(lab, sizeof lab, "drawing seed %lld", (long long)s + 1);
		progress(&pg, (double)s / r.seeds, lab);
		if (!threaded)
			pthread_join(w.th, NULL);
		threaded = -1;
		draw_sec += seconds_since(&t0); /* the wait for this seed's tokens */
		if (w.st) {
			fprintf(stderr, "lcattn probe token: %s: %s\n", lca_strerror(w.st), w.msg);
			rc = 2;
			break;
		}
		if (s + 1 < r.seeds)
			threaded = drawer_start(&w, &r, &d2, s + 1);
		for (int v = 0; v < 4 && !rc; v++) {
			lca_probe_params pp = mech_params(o, (lca_variant)v, 0);
			double e;

			if (!(mechs >> v & 1))
				continue;
			pp.backend = be;
			snprintf(lab, sizeof lab, "%s seed %lld", mech_names[v], (long long)s + 1);
			progress(&pg, (s + (v + 1) / 5.0) / r.seeds, lab);
			clock_gettime(CLOCK_MONOTONIC, &t0);
			if ((st = lca_probe_retrieval_of(&pp, &q, 1, &idx, &e)))
				rc = fail_call(o, st);
			sec[v] += seconds_since(&t0);
			if (!rc) {
				sum[v] += e, lo[v] = fmin(lo[v], e), hi[v] = fmax(hi[v], e);
				got[v] += e < thr;
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &t0);
		tmp = d, d = d2, d2 = tmp;
	}
	if (!threaded)
		pthread_join(w.th, NULL);
	progress_end(&pg);
	for (int v = 0; v < 4 && !rc; v++) {
		double m = sum[v] / r.seeds;

		if (!(mechs >> v & 1))
			continue;
		printf("%-10s %10.4f %10.4f %10.4f %6lld/%-3lld  %s\n", mech_names[v], m, lo[v],
			hi[v], (long long)got[v], (long long)r.seeds, m < thr ? "yes" : "no");
		if (r.csv)
			fprintf(r.csv, "%s,%lld,%lld,%g,%lld,%lld,%lld,%lld,%g,%.6g,%.6g,%.6g,%lld,%s\n",
				mech_names[v], (long long)r.dk, (long long)r.dv, r.rho, (long long)T,
				(long long)idx, (long long)(T - 1 - idx), (long long)r.seeds, thr, m,
				lo[v], hi[v], (long long)got[v], m < thr ? "yes" : "no");
	}
	fflush(stdout);
	if (!rc && !o->quiet) {
		fprintf(stderr, "lcattn probe token: %s backend, seconds over %lld seeds: "
			"waiting for draws %.1f",
			be == LCA_BACKEND_CPU ? "cpu" : "ref", (long long)r.seeds, draw_sec);
		for (int v = 0; v < 4; v++)
			if (mechs >> v & 1)
				fprintf(stderr, ", %s %.1f", mech_names[v], sec[v]);
		fputc('\n', stderr);
	}
	draw_free(&d), draw_free(&d2);
	return run_end(&r, rc);
}

/* ---- gradient flow ---- */

/* --curves a,b or all: a bit mask over gradflow_curves. */
static unsigned get_curves(struct opts *o)
{
	const char *s = val(o, "curves");
	unsigned m = 0;

	if (!s || !strcmp(s, "all"))
		return (1u << gradflow_ncurves) - 1;
	while (*s) {
		size_t n = strcspn(s, ",");
		int c;

		for (c = 0; c < gradflow_ncurves && (strlen(gradflow_curves[c].name) != n ||
			strncmp(s, gradflow_curves[c].name, n)); c++)
			;
		if (c == gradflow_ncurves) {
			bad(o, "--curves: softmax, softmax-rope, deltanet-strong, deltanet-weak, "
				"lightning-l0, lightning-l7, mla, mla-compressed or all");
			return 0;
		}
		m |= 1u << c;
		s += n + (s[n] == ',');
	}
	return m;
}

static void gradflow_print(const double *x, const int64_t *dist, int nd)
{
	for (int64_t d = 1; d <= 1000; d *= 10) {
		double y = at_dist(dist, x, nd, d);

		if (isnan(y))
			printf(",NA");
		else
			printf(",%.6g", y);
	}
}

static int cmd_gradflow(struct opts *o)
{
	int64_t T = get_int(o, "T", 1024, 2, 1 << 20), H = get_int(o, "H", 8, 1, 256), dist[200];
	unsigned curves = get_curves(o);
	double gv[200], gk[200];
	int nd = age_grid(1, T - 1, dist), rc;
	struct progress pg;
	struct run r;

	if ((rc = run_init(&r, o)))
		return rc;
	printf("curve,mechanism,H,dk,dv,T,seeds,gv_d1,gv_d10,gv_d100,gv_d1000,"
		"gk_d1,gk_d10,gk_d100,gk_d1000\n");
	if (r.csv)
		fprintf(r.csv, "curve,mechanism,H,dk,dv,T,seeds,d,grad_v,grad_k\n");
	progress_start(&pg, o, "gradflow");
	for (int c = 0; c < gradflow_ncurves && !rc; c++) {
		const struct gradflow_curve *cu = &gradflow_curves[c];
		lca_status st;

		if (!(curves >> c & 1))
			continue;
		progress(&pg, (double)c / gradflow_ncurves, cu->name);
		if ((st = gradflow_run(cu, T, H, r.dk, r.dv, r.seeds, r.seed, nd, dist, gv, gk))) {
			rc = fail_call(o, st);
			break;
		}
		for (int j = 0; r.csv && j < nd; j++)
			fprintf(r.csv, "%s,%s,%lld,%lld,%lld,%lld,%lld,%lld,%.6g,%.6g\n", cu->name,
				mech_names[cu->variant], (long long)H, (long long)r.dk, (long long)r.dv,
				(long long)T, (long long)r.seeds, (long long)dist[j], gv[j], gk[j]);
		printf("%s,%s,%lld,%lld,%lld,%lld,%lld", cu->name, mech_names[cu->variant],
			(long long)H, (long long)r.dk, (long long)r.dv, (long long)T,
			(long long)r.seeds);
		gradflow_print(gv, dist, nd);
		gradflow_print(gk, dist, nd);
		printf("\n");
		fflush(stdout);
	}
	progress_end(&pg);
	return run_end(&r, rc);
}

/* ---- the command ---- */

static int usage(FILE *f)
{
	fprintf(f,
		"usage: lcattn probe retrieval|overwrite|dilution|position|token|gradflow [options]\n"
		"       lcattn probe golden [--verbose] FILE.h5...\n"
		"Measures what each mechanism gives up, on the double reference (token: the cpu\n"
		"backend in float64 unless --backend ref), over synthetic unit keys and values\n"
		"(lcattn-probes(7)). Prints a summary (CSV) on stdout;\n"
		"--csv FILE writes the full table. Defaults: dk = dv = 64, rho 0, seeds from 1.\n"
		"  retrieval  error against age and load N/dk   --loads a,b,c (default 1/8..8)\n"
		"  overwrite  deltanet overwrite at --T (4096) for --rhos (0,0.2,..,0.8)\n"
		"  dilution   lightning crosstalk/signal for --lengths and --slopes (0,2^-8)\n"
		"  position   order sensitivity against distance at --T (4096), --dists log|all\n"
		"  token      can token --index N of --T (4096, at most 2^20) still be read?\n"
		"             (--threshold 0.5; --backend cpu (default) or ref)\n"
		"  gradflow   gradient of the last output against distance at --T (1024), --H (8)\n"
		"             heads, --curves all|softmax,softmax-rope,deltanet-strong,...,mla\n"
		"  golden     recompute each golden file's probe metrics, compare to 1e-12\n"
		"options: --dk --dv N  --rho X  --seeds N  --seed N  --csv FILE  --quiet\n"
		"  --mech all|softmax,mla,deltanet,lightning   (retrieval, position, token)\n"
		"  softmax, mla: --scale X (0 = sqrt(dk)) --rope-dim N|full --rope-theta X\n"
		"                --rope-style half|interleaved; mla: --dc N (0 = dk) --dr N\n"
		"  deltanet: --beta X (1) --g X (0);  lightning: --slope X (0)\n"
		"position uses RoPE on softmax (all of dk) and mla (dr = dk/4) unless told.\n");
	return f == stdout ? 0 : 2;
}

int tool_probe(int argc, char **argv)
{
	static const struct { const char *name; unsigned bit; int (*run)(struct opts *); } cmds[] = {
		{ "retrieval", RET, cmd_retrieval }, { "overwrite", OVW, cmd_overwrite },
		{ "dilution", DIL, cmd_dilution }, { "position", POS, cmd_position },
		{ "token", TOK, cmd_token }, { "gradflow", GRD, cmd_gradflow },
	};
	struct opts o;

	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
		return usage(stdout);
	if (!strcmp(argv[1], "golden"))
		return tool_probe_golden(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		if (strcmp(argv[1], cmds[i].name))
			continue;
		for (int j = 2; j < argc; j++)
			if (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h"))
				return usage(stdout);
		memset(&o, 0, sizeof o);
		o.cmd = cmds[i].bit;
		o.cmdname = cmds[i].name;
		if (parse(argc - 1, argv + 1, &o))
			return 2;
		return cmds[i].run(&o);
	}
	fprintf(stderr, "lcattn probe: unknown probe '%s'\n", argv[1]);
	return usage(stderr);
}
