/*
 * demo.c - `lcattn demo`: run the four mechanisms of one context on the
 * double reference and show what each keeps between tokens, what it costs
 * here, and that its two computations agree.
 */
#include "lcattn.h"
#include "tool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct shape {
	int64_t T, H, d;
	uint64_t seed;
};

/* splitmix64: a small, seedable generator so the demo is reproducible. */
static double rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (double)(z >> 11) * 0x1p-53;
}

/* n values uniform in [lo, hi); NULL on allocation failure. */
static double *draw(uint64_t *s, int64_t n, double lo, double hi)
{
	double *x = malloc((size_t)n * sizeof *x);

	for (int64_t i = 0; x && i < n; i++)
		x[i] = lo + (hi - lo) * rnd(s);
	return x;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double relerr(const double *x, const double *ref, int64_t n)
{
	double num = 0, den = 0;

	for (int64_t i = 0; i < n; i++) {
		num += (x[i] - ref[i]) * (x[i] - ref[i]);
		den += ref[i] * ref[i];
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* One table row: what is stored, its bytes, ref time, form agreement. */
static void row(const char *name, const char *stored, double bytes, double secs,
	const char *alt, double err)
{
	printf("%-10s %-28s %12.0f %9.3f  %-22s %.1e\n", name, stored, bytes, secs, alt, err);
}

/* Make a plan from p after switching to algo; prints the reason on failure. */
static lca_plan *plan_for(lca_params *p, lca_algo algo)
{
	lca_plan *plan;

	p->algo = algo;
	if (lca_plan_create(p, &plan) != LCA_OK) {
		fprintf(stderr, "lcattn demo: %s\n", lca_last_error());
		return NULL;
	}
	return plan;
}

static int demo_softmax(const struct shape *sh, uint64_t *s)
{
	int64_t T = sh->T, H = sh->H, d = sh->d, Hkv = H / 2 ? H / 2 : 1;
	double *q = draw(s, T * H * d, -1, 1), *k = draw(s, T * Hkv * d, -1, 1);
	double *v = draw(s, T * Hkv * d, -1, 1), *o = malloc(T * H * d * sizeof *o);
	lca_params p;
	lca_plan *plan;
	int rc = 2;
	double t0;

	lca_params_init(&p, LCA_SOFTMAX);
	p.H = H, p.Hkv = Hkv, p.dk = p.dv = d, p.rope_dim = LCA_ROPE_FULL;
	if (q && k && v && o && (plan = plan_for(&p, LCA_ALGO_AUTO))) {
		t0 = now();
		if (lca_softmax_forward(plan, T, T, q, k, v, NULL, 0, o, NULL) == LCA_OK) {
			row("softmax", "K,V of every token (GQA)", 8.0 * T * Hkv * 2 * d,
				now() - t0, "(single form)", 0);
			rc = 0;
		}
		lca_plan_destroy(plan);
	}
	free(q), free(k), free(v), free(o);
	return rc;
}

static int demo_mla(const struct shape *sh, uint64_t *s)
{
	int64_t T = sh->T, H = sh->H, dn = sh->d / 2, dr = sh->d / 2, dc = sh->d, dv = sh->d;
	double *qn = draw(s, T * H * dn, -1, 1), *qr = draw(s, T * H * dr, -1, 1);
	double *ckv = draw(s, T * dc, -1, 1), *kr = draw(s, T * dr, -1, 1);
	double *wuk = draw(s, H * dn * dc, -0.2, 0.2), *wuv = draw(s, H * dv * dc, -0.2, 0.2);
	double *o1 = malloc(T * H * dv * sizeof *o1), *o2 = malloc(T * H * dv * sizeof *o2);
	lca_plan *naive = NULL, *absorbed = NULL;
	lca_params p;
	int rc = 2;
	double t0, t;

	lca_params_init(&p, LCA_MLA);
	p.H = H, p.dn = dn, p.dr = dr, p.dc = dc, p.dv = dv, p.scale = 1 / sqrt((double)(dn + dr));
	if (qn && qr && ckv && kr && wuk && wuv && o1 && o2 &&
	    (naive = plan_for(&p, LCA_ALGO_NAIVE)) && (absorbed = plan_for(&p, LCA_ALGO_ABSORBED))) {
		t0 = now();
		if (lca_mla_forward(absorbed, T, T, qn, qr, ckv, kr, wuk, wuv, NULL, 0, o1, NULL) == LCA_OK) {
			t = now() - t0;
			if (lca_mla_forward(naive, T, T, qn, qr, ckv, kr, wuk, wuv, NULL, 0, o2, NULL) == LCA_OK) {
				row("mla", "latent ckv + k_rope", 8.0 * T * (dc + dr), t,
					"naive vs absorbed", relerr(o2, o1, T * H * dv));
				rc = 0;
			}
		}
	}
	lca_plan_destroy(naive), lca_plan_destroy(absorbed);
	free(qn), free(qr), free(ckv), free(kr), free(wuk), free(wuv), free(o1), free(o2);
	return rc;
}

/* deltanet and lightning: run the recurrence and the chunked form. */
static int run_linear(lca_params *p, const struct shape *sh, const double *q,
	const double *k, const double *v, const double *a, const double *b)
{
	int64_t n = sh->T * sh->H * sh->d, ns = sh->H * sh->d * sh->d;
	double *o[2] = { malloc(n * sizeof(double)), malloc(n * sizeof(double)) };
	double *st[2] = { malloc(ns * sizeof(double)), malloc(ns * sizeof(double)) };
	double secs = 0, t0;
	int rc = 2;

	for (int i = 0; i < 2 && o[i] && st[i]; i++) {
		lca_plan *plan = plan_for(p, i ? LCA_ALGO_CHUNKED : LCA_ALGO_RECURRENT);
		lca_status r;

		if (!plan)
			break;
		t0 = now();
		r = p->variant == LCA_DELTANET ?
			lca_deltanet_forward(plan, sh->T, q, k, v, a, b, NULL, 0, NULL, o[i], st[i]) :
			lca_lightning_forward(plan, sh->T, q, k, v, a, NULL, 0, NULL, o[i], st[i]);
		if (!i)
			secs = now() - t0;
		lca_plan_destroy(plan);
		if (r != LCA_OK) {
			fprintf(stderr, "lcattn demo: %s\n", lca_last_error());
			break;
		}
		if (i) {
			double e = fmax(relerr(o[1], o[0], n), relerr(st[1], st[0], ns));

			if (p->variant == LCA_DELTANET)
				row("deltanet", "one dk x dv state per head", 8.0 * ns, secs,
					"recurrent vs chunked", e);
			else
				row("lightning", "one dk x dv state per head", 8.0 * ns, secs,
					"recurrent vs blockwise", e);
			rc = 0;
		}
	}
	free(o[0]), free(o[1]), free(st[0]), free(st[1]);
	return rc;
}

static int demo_linear(const struct shape *sh, uint64_t *s, lca_variant var)
{
	int64_t T = sh->T, H = sh->H, d = sh->d;
	double *q = draw(s, T * H * d, -1, 1), *k = draw(s, T * H * d, -1, 1);
	double *v = draw(s, T * H * d, -1, 1);
	double *g = draw(s, T * H, -0.1, 0), *beta = draw(s, T * H, 0, 1);
	double *slope = malloc(H * sizeof *slope);
	lca_params p;
	int rc = 2;

	lca_params_init(&p, var);
	p.H = H, p.dk = p.dv = d;
	if (var == LCA_LIGHTNING)
		p.scale = 1 / (double)d; /* keeps the unnormalised sum readable */
	if (q && k && v && g && beta && slope &&
	    lca_minimax_slopes(H, 0, 8, slope) == LCA_OK)
		rc = run_linear(&p, sh, q, k, v, var == LCA_DELTANET ? g : slope, beta);
	free(q), free(k), free(v), free(g), free(beta), free(slope);
	return rc;
}

static int parse(int argc, char **argv, struct shape *sh)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--help")) {
			printf("usage: lcattn demo [--T N] [--H N] [--d N] [--seed N]\n"
			       "Runs softmax, mla, deltanet and lightning on one random context\n"
			       "with the double reference (defaults: T=1024 H=4 d=64 seed=1).\n");
			exit(0);
		}
		if (i + 1 >= argc)
			goto bad;
		long long val = strtoll(argv[++i], NULL, 10);
		if (val < 1 || val > (1 << 20))
			goto bad;
		if (!strcmp(a, "--T")) sh->T = val;
		else if (!strcmp(a, "--H")) sh->H = val;
		else if (!strcmp(a, "--d")) sh->d = val;
		else if (!strcmp(a, "--seed")) sh->seed = (uint64_t)val;
		else goto bad;
	}
	if (sh->d % 4 == 0 && sh->H <= 64 && sh->d <= 512)
		return 0;
bad:
	fprintf(stderr, "lcattn demo: bad arguments (see lcattn demo --help; d must be a multiple of 4, H <= 64, d <= 512)\n");
	return 2;
}

int tool_demo(int argc, char **argv)
{
	struct shape sh = { 1024, 4, 64, 1 };
	uint64_t s;
	int rc;

	if ((rc = parse(argc, argv, &sh)))
		return rc;
	s = sh.seed;
	printf("lcattn %s demo: T=%lld H=%lld d=%lld seed=%llu, double reference backend\n\n",
		lca_version(), (long long)sh.T, (long long)sh.H, (long long)sh.d,
		(unsigned long long)sh.seed);
	printf("%-10s %-28s %12s %9s  %-22s %s\n", "mechanism", "stored between tokens",
		"bytes(f64)", "ref s", "second computation", "rel.diff");
	rc = demo_softmax(&sh, &s);
	rc = rc ? rc : demo_mla(&sh, &s);
	rc = rc ? rc : demo_linear(&sh, &s, LCA_DELTANET);
	rc = rc ? rc : demo_linear(&sh, &s, LCA_LIGHTNING);
	if (!rc)
		printf("\nbytes: softmax 8*T*Hkv*(dk+dv), mla 8*T*(dc+dr), deltanet and lightning 8*H*dk*dv\n"
		       "rel.diff: ||x - x_ref||_2 / ||x_ref||_2 between the two computations\n");
	return rc;
}
