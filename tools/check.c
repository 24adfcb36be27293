/*
 * check.c - `lcattn check`: compare a candidate's /outputs with a golden
 * file's by the tolerance rule of DESIGN.md: normwise error
 * ||x - ref||_2 / ||ref||_2 per tensor, within
 *   f64:  1e-12
 *   f32:  2x the error of the reference algorithm itself run in float32 on
 *         the same inputs (the FlashAttention rule), floored at 1e-6
 *   bf16: 2x the error of a bf16-input, float32-accumulate naive run: the
 *         reference in float32 on the inputs rounded to bfloat16 as the
 *         bf16 backends (cpu, cuda) receive them, its outputs rounded to
 *         bfloat16 as they return them (recurrent state stays float32).
 * NaN never passes; -inf entries of lse (fully masked rows) must match
 * exactly and the finite entries are compared.
 */
#include "lcattn.h"
#include "golden.h"
#include "tool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>

#define F64_BOUND 1e-12
#define F32_FLOOR 1e-6

#ifndef LCA_GOLDEN_DIR
#define LCA_GOLDEN_DIR "/usr/share/lcattn/golden"
#endif

double tool_normwise(const double *x, const double *ref, int64_t n,
	double *maxabs, int64_t *mismatch)
{
	double s = 0, num = 0, den = 0;
	int nan = 0;

	*mismatch = -1;
	/* First pass: the scale, so that the sums of squares cannot overflow
	 * or underflow whatever the magnitudes (as BLAS nrm2 does). */
	for (int64_t i = 0; i < n; i++) {
		int xm = x[i] == -INFINITY, rm = ref[i] == -INFINITY;

		if (xm || rm) {
			if (xm != rm && *mismatch < 0)
				*mismatch = i;
			continue;
		}
		nan |= isnan(x[i]) || isnan(ref[i]);
		s = fmax(s, fmax(fabs(x[i] - ref[i]), fabs(ref[i])));
	}
	*maxabs = 0;
	for (int64_t i = 0; s > 0 && isfinite(s) && i < n; i++) {
		double d = x[i] - ref[i];

		if (x[i] == -INFINITY || ref[i] == -INFINITY)
			continue;
		num += (d / s) * (d / s);
		den += (ref[i] / s) * (ref[i] / s);
		*maxabs = fmax(*maxabs, fabs(d));
	}
	if (nan) {
		*maxabs = NAN;
		return NAN;
	}
	if (!isfinite(s)) { /* an infinite difference */
		*maxabs = INFINITY;
		return INFINITY;
	}
	if (*mismatch >= 0)
		return INFINITY;
	return den > 0 ? sqrt(num / den) : sqrt(num) * s;
}

/* The bf16 copy of a case: the inputs rounded to bfloat16 wherever a
 * bf16 plan takes them in bf16 (everything but state0). Shares all
 * else with g; free with bf16_case_free. */
static int bf16_case(const struct lcio_case *g, struct lcio_case *r)
{
	*r = *g;
	for (int i = 0; i < g->nin; i++)
		r->in[i].data = NULL;
	for (int i = 0; i < g->nin; i++) {
		const struct lcio_tensor *t = &g->in[i];

		if (!t->data || !tool_bf16_stored(t->name))
			continue;
		if (!(r->in[i].data = malloc((size_t)t->n * sizeof(double))))
			return -1;
		for (int64_t j = 0; j < t->n; j++)
			r->in[i].data[j] = tool_bf16_round(t->data[j]);
	}
	for (int i = 0; i < g->nin; i++)
		if (!r->in[i].data)
			r->in[i].data = g->in[i].data;
	return 0;
}

static void bf16_case_free(const struct lcio_case *g, struct lcio_case *r)
{
	for (int i = 0; i < g->nin; i++)
		if (r->in[i].data != g->in[i].data)
			free(r->in[i].data);
}

/* The float32 bound (bf16 = 0): run the reference in float32 on the golden
 * inputs and measure its own error against the golden outputs. The bf16
 * bound (bf16 = 1): the same on the bf16 copy of the case, the outputs
 * rounded to bfloat16 where a bf16 plan returns bf16. */
static int ref_bounds(const char *path, const struct lcio_case *g, int bf16, double bound[])
{
	double *buf[LCIO_MAX_OUT] = { 0 };
	struct lcio_case r = *g;
	lca_status s = LCA_OK;
	char why[400] = "out of memory";
	int rc = 0;

	for (int i = 0; !s && i < g->nout; i++)
		s = (buf[i] = malloc((size_t)g->out[i].n * sizeof(double))) ? LCA_OK : LCA_ERR_NOMEM;
	if (!s && bf16 && bf16_case(g, &r))
		s = LCA_ERR_NOMEM;
	if (!s)
		s = tool_compute(&r, LCA_BACKEND_REF, LCA_F32, LCA_ALGO_AUTO, buf, NULL, why, sizeof why);
	if (bf16)
		bf16_case_free(g, &r);
	if (s == LCA_ERR_UNSUPPORTED) {
		fprintf(stderr, "lcattn check: no float32 reference in this build, "
			"so no %s bound (ref backend, dtype f32: %s)\n", bf16 ? "bf16" : "f32", why);
		rc = 2;
	} else if (s) {
		fprintf(stderr, "lcattn check: %s: the float32 reference failed: %s: %s\n",
			path, lca_strerror(s), why);
		rc = 2;
	}
	for (int i = 0; !rc && i < g->nout; i++) {
		double mx, e;
		int64_t mm;

		for (int64_t j = 0; bf16 && tool_bf16_stored(g->out[i].name) && j < g->out[i].n; j++)
			buf[i][j] = tool_bf16_round(buf[i][j]);
		e = tool_normwise(buf[i], g->out[i].data, g->out[i].n, &mx, &mm);
		if (!isfinite(e)) {
			fprintf(stderr, "lcattn check: %s: the %s reference run gives a "
				"non-finite error on %s: no bound for this case\n",
				path, bf16 ? "bf16-input" : "float32", g->out[i].name);
			rc = 2;
		}
		bound[i] = fmax(2 * e, F32_FLOOR);
	}
	for (int i = 0; i < g->nout; i++)
		free(buf[i]);
	return rc;
}

/* The dtype whose rule applies: --dtype, else the last word of the
 * candidate's generator ("lcattn 0.1.0 cpu f32"), else f64. */
static lca_dtype candidate_dtype(const struct lcio_case *cand)
{
	const char *g = cand->generator, *w;
	lca_dtype d;

	if (!g || !(w = strrchr(g, ' ')))
		return LCA_F64;
	return tool_parse_dtype(w + 1, &d) ? LCA_F64 : d;
}

/* Per output tensor of one comparison. */
struct verdict {
	double err[LCIO_MAX_OUT], maxabs[LCIO_MAX_OUT], bound[LCIO_MAX_OUT];
	int64_t mismatch[LCIO_MAX_OUT];
	int pass;
};

static void compare(const struct lcio_case *g, const struct lcio_case *cand,
	struct verdict *v)
{
	v->pass = 1;
	for (int i = 0; i < g->nout; i++) {
		v->err[i] = tool_normwise(cand->out[i].data, g->out[i].data, g->out[i].n,
			&v->maxabs[i], &v->mismatch[i]);
		v->pass &= v->err[i] <= v->bound[i];
	}
}

static void print_tensors(const struct lcio_case *g, const struct verdict *v)
{
	for (int i = 0; i < g->nout; i++) {
		printf("%-6s normwise %.3e  max-abs %.3e  bound %.1e  %s", g->out[i].name,
			v->err[i], v->maxabs[i], v->bound[i],
			v->err[i] <= v->bound[i] ? "PASS" : "FAIL");
		if (v->mismatch[i] >= 0)
			printf("  (-inf pattern differs at flat index %lld)",
				(long long)v->mismatch[i]);
		printf("\n");
	}
}

/* Check one candidate against one golden file: 0 pass, 1 a numerical
 * failure, 2 unusable input (the message on stderr). The dtype is
 * *dt when have_dt, else the candidate's; *dt returns the one used. */
static int check_pair(const char *golden, const char *candidate, lca_dtype *dt,
	int have_dt, struct lcio_case *g, struct verdict *v)
{
	struct lcio_case cand;
	char err[512];
	int rc = 0;

	if (lcio_read(golden, LCIO_INPUTS | LCIO_OUTPUTS, g, err, sizeof err)) {
		fprintf(stderr, "lcattn check: %s\n", err);
		return 2;
	}
	if (lcio_read_candidate(candidate, g, &cand, err, sizeof err)) {
		fprintf(stderr, "lcattn check: %s\n", err);
		lcio_case_free(g);
		return 2;
	}
	*dt = have_dt ? *dt : candidate_dtype(&cand);
	if (*dt == LCA_BF16 || *dt == LCA_F32) {
		rc = ref_bounds(golden, g, *dt == LCA_BF16, v->bound);
	} else {
		for (int i = 0; i < g->nout; i++)
			v->bound[i] = F64_BOUND;
	}
	if (!rc) {
		compare(g, &cand, v);
		rc = !v->pass;
	}
	lcio_case_free(&cand);
	if (rc == 2)
		lcio_case_free(g);
	return rc;
}

static int usage(FILE *f)
{
	fprintf(f,
		"usage: lcattn check GOLDEN.h5 CANDIDATE.h5 [--dtype f64|f32|bf16]\n"
		"       lcattn check --suite [GOLDEN_DIR] CANDIDATE_DIR [--dtype f64|f32|bf16]\n"
		"Compares every output tensor of CANDIDATE.h5 with GOLDEN.h5 and prints\n"
		"name, normwise error, max-abs error, bound and PASS/FAIL per tensor.\n"
		"Bounds: f64 1e-12; f32 2x the float32 reference's own error (>= 1e-6);\n"
		"bf16 2x the error of the float32 reference on bf16-rounded inputs.\n"
		"The dtype defaults to the candidate's generator attribute, else f64.\n"
		"--suite checks each CANDIDATE_DIR/NAME.h5 against GOLDEN_DIR/NAME.h5\n"
		"(default %s), one line per golden case and a summary.\n"
		"Exit status: 0 all pass, 1 a numerical failure, 2 unusable input.\n",
		LCA_GOLDEN_DIR);
	return f == stdout ? 0 : 2;
}

/* ---- --suite: a directory of candidates against the golden suite ---- */

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The NAME.h5 entries of dir, sorted, in *names (free each and the array);
 * their count, or -1 with a message. */
static int list_h5(const char *dir, char ***names)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **v = NULL, **nv;
	int n = 0, cap = 0;

	*names = NULL;
	if (!d) {
		fprintf(stderr, "lcattn check --suite: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);

		if (len < 4 || strcmp(e->d_name + len - 3, ".h5"))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			if (!(nv = realloc(v, (size_t)cap * sizeof *v)))
				break;
			v = nv;
		}
		if (!(v[n] = strdup(e->d_name)))
			break;
		n++;
	}
	closedir(d);
	if (e) {
		fprintf(stderr, "lcattn check --suite: out of memory listing %s\n", dir);
		while (n)
			free(v[--n]);
		free(v);
		return -1;
	}
	if (n)
		qsort(v, (size_t)n, sizeof *v, by_name);
	*names = v;
	return n;
}

static int contains(char **v, int n, const char *name)
{
	return n > 0 && bsearch(&name, v, (size_t)n, sizeof *v, by_name) != NULL;
}

/* One line for a checked case: the dtype's rule and the worst tensor. */
static void case_line(const char *name, int rc, lca_dtype dt, const struct lcio_case *g,
	const struct verdict *v)
{
	int w = 0;

	if (rc == 2) {
		printf("ERROR %-36s unusable (message above)\n", name);
		return;
	}
	/* The tensor furthest from its bound; NaN counts as furthest. */
	for (int i = 1; i < g->nout; i++)
		if (!isnan(v->err[w]) && !(v->err[i] / v->bound[i] <= v->err[w] / v->bound[w]))
			w = i;
	printf("%s  %-36s %-4s worst: %s normwise %.3e, bound %.1e\n", rc ? "FAIL" : "PASS",
		name, tool_dtype_name(dt), g->out[w].name, v->err[w], v->bound[w]);
}

static int tool_check_suite(const char *gdir, const char *cdir, lca_dtype dt, int have_dt)
{
	char **gold, **cand, gp[4096], cp[4096];
	int ng = list_h5(gdir, &gold), nc, n[4] = { 0 }, rc;
	struct lcio_case g;
	struct verdict v;

	if (ng <= 0) {
		if (ng == 0)
			fprintf(stderr, "lcattn check --suite: no golden files (*.h5) in %s\n", gdir);
		free(gold);
		return 2;
	}
	if ((nc = list_h5(cdir, &cand)) < 0) {
		nc = 0;
		n[2]++;
	}
	for (int i = 0; i < ng; i++) {
		lca_dtype d = dt;

		if (!contains(cand, nc, gold[i])) {
			printf("----  %-36s no candidate\n", gold[i]);
			n[3]++;
			continue;
		}
		snprintf(gp, sizeof gp, "%s/%s", gdir, gold[i]);
		snprintf(cp, sizeof cp, "%s/%s", cdir, gold[i]);
		fflush(stdout);
		rc = check_pair(gp, cp, &d, have_dt, &g, &v);
		case_line(gold[i], rc, d, &g, &v);
		if (rc != 2)
			lcio_case_free(&g);
		n[rc]++;
	}
	for (int i = 0; i < nc; i++)
		if (!contains(gold, ng, cand[i]))
			printf("----  %-36s ignored: no golden case of this name\n", cand[i]);
	printf("suite: %d passed, %d failed, %d unusable, %d golden cases without a candidate"
		" (golden: %s)\n", n[0], n[1], n[2], n[3], gdir);
	for (int i = 0; i < ng; i++)
		free(gold[i]);
	for (int i = 0; i < nc; i++)
		free(cand[i]);
	free(gold);
	free(cand);
	if (n[0] + n[1] + n[2] == 0) {
		fprintf(stderr, "lcattn check --suite: no file in %s is named like a golden case\n",
			cdir);
		return 2;
	}
	return n[2] ? 2 : n[1] ? 1 : 0;
}

/* Options and up to two paths; *suite set by --suite. */
static int parse(int argc, char **argv, const char **path, int *npos, lca_dtype *dt,
	int *have_dt, int *suite)
{
	*npos = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return usage(stdout) - 1;
		if (!strcmp(argv[i], "--suite")) {
			*suite = 1;
		} else if (!strcmp(argv[i], "--dtype")) {
			if (i + 1 >= argc || tool_parse_dtype(argv[++i], dt)) {
				fprintf(stderr, "lcattn check: --dtype takes f64, f32 or bf16\n");
				return 2;
			}
			*have_dt = 1;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "lcattn check: unknown option %s (see lcattn check --help)\n", argv[i]);
			return 2;
		} else if (*npos < 2) {
			path[(*npos)++] = argv[i];
		} else {
			fprintf(stderr, "lcattn check: unexpected argument %s\n", argv[i]);
			return 2;
		}
	}
	if (*npos == 2 || (*suite && *npos == 1))
		return 0;
	fprintf(stderr, *suite ? "lcattn check --suite: needs CANDIDATE_DIR (see lcattn check --help)\n" :
		"lcattn check: needs GOLDEN.h5 and CANDIDATE.h5 (see lcattn check --help)\n");
	return 2;
}

int tool_check(int argc, char **argv)
{
	struct lcio_case g;
	struct verdict v;
	const char *path[2];
	lca_dtype dt = LCA_F64;
	int have_dt = 0, suite = 0, npos, rc;

	if ((rc = parse(argc, argv, path, &npos, &dt, &have_dt, &suite)))
		return rc < 0 ? 0 : rc;
	if (suite)
		return tool_check_suite(npos == 2 ? path[0] : LCA_GOLDEN_DIR, path[npos - 1],
			dt, have_dt);
	if ((rc = check_pair(path[0], path[1], &dt, have_dt, &g, &v)) == 2)
		return rc;
	print_tensors(&g, &v);
	lcio_case_free(&g);
	return rc;
}
