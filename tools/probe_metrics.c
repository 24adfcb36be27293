/*
 * probe_metrics.c - the probes' numbers for a golden case (its /metrics)
 * and `lcattn probe golden`, which recomputes them from a file's own
 * /inputs and compares.
 *
 * The probes run on one head of one sequence as a memory (lcattn-probes(7),
 * GOLDEN METRICS): head 0 (its key/value head), the first sequence with a
 * token, its keys and values written from an empty memory (state0, masks
 * and windows play no part), read at position T. The query of the position
 * probe is the sequence's last query of head 0. deltanet keys and that
 * query are L2-normalised first when the case says qk_l2norm, exactly as
 * the mechanism does.
 */
#include "lcattn.h"
#include "golden.h"
#include "tool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Head 0 of one sequence, unpacked into probe form. */
struct head0 {
	lca_probe_params pp;
	int64_t T;
	double *k, *v, *beta, *g, *q;
};

static void head0_free(struct head0 *h)
{
	free(h->k), free(h->v), free(h->beta), free(h->g), free(h->q);
	memset(h, 0, sizeof *h);
}

/* Tokens [t0, t0 + T) of the first non-empty sequence; the last query row. */
static void first_sequence(const struct lcio_case *c, int64_t *t0, int64_t *T, int64_t *qrow)
{
	int64_t n = 0;

	*t0 = 0, *T = c->Tk, *qrow = c->Tq - 1;
	if (!c->cu_seqlens)
		return;
	while (n < c->nseq - 1 && c->cu_seqlens[n + 1] == c->cu_seqlens[n])
		n++;
	*t0 = c->cu_seqlens[n];
	*T = c->cu_seqlens[n + 1] - *t0;
	*qrow = c->cu_seqlens[n + 1] - 1;
}

static double *rows(const struct lcio_case *c, const char *name, int64_t t0, int64_t T,
	int64_t stride, int64_t w)
{
	const struct lcio_tensor *x = lcio_find((struct lcio_case *)c, 0, name);
	double *r = malloc((size_t)(T * w) * sizeof *r);

	for (int64_t t = 0; r && t < T; t++)
		memcpy(r + t * w, x->data + (t0 + t) * stride, (size_t)w * sizeof *r);
	return r;
}

/* x / sqrt(sum x^2 + 1e-6) per row: DESIGN.md's deltanet normalisation. */
static void l2norm_rows(double *x, int64_t T, int64_t w)
{
	for (int64_t t = 0; t < T; t++) {
		double s = 0;

		for (int64_t i = 0; i < w; i++)
			s += x[t * w + i] * x[t * w + i];
		s = sqrt(s + 1e-6);
		for (int64_t i = 0; i < w; i++)
			x[t * w + i] /= s;
	}
}

/* mla: keys [w_uk[0] ckv ; k_rope], values w_uv[0] ckv, query [q_nope ; q_rope]. */
static int mla_head0(const struct lcio_case *c, struct head0 *h, int64_t t0, int64_t qrow)
{
	const lca_params *p = &c->p;
	int64_t dn = p->dn, dr = p->dr, dc = p->dc, dv = p->dv, dk = dn + dr;
	double *ckv = rows(c, "ckv", t0, h->T, dc, dc), *kr = rows(c, "k_rope", t0, h->T, dr, dr);
	const double *wk = lcio_find((struct lcio_case *)c, 0, "w_uk")->data;
	const double *wv = lcio_find((struct lcio_case *)c, 0, "w_uv")->data;
	const double *qn = lcio_find((struct lcio_case *)c, 0, "q_nope")->data;
	const double *qr = lcio_find((struct lcio_case *)c, 0, "q_rope")->data;
	int rc = -1;

	h->k = malloc((size_t)(h->T * dk) * sizeof(double));
	h->v = malloc((size_t)(h->T * dv) * sizeof(double));
	h->q = malloc((size_t)dk * sizeof(double));
	if (!ckv || !kr || !h->k || !h->v || !h->q)
		goto out;
	for (int64_t t = 0; t < h->T; t++) {
		for (int64_t i = 0; i < dn; i++) {
			double s = 0;

			for (int64_t j = 0; j < dc; j++)
				s += wk[i * dc + j] * ckv[t * dc + j];
			h->k[t * dk + i] = s;
		}
		memcpy(h->k + t * dk + dn, kr + t * dr, (size_t)dr * sizeof(double));
		for (int64_t i = 0; i < dv; i++) {
			double s = 0;

			for (int64_t j = 0; j < dc; j++)
				s += wv[i * dc + j] * ckv[t * dc + j];
			h->v[t * dv + i] = s;
		}
	}
	memcpy(h->q, qn + qrow * p->H * dn, (size_t)dn * sizeof(double));
	memcpy(h->q + dn, qr + qrow * p->H * dr, (size_t)dr * sizeof(double));
	h->pp.dk = dk, h->pp.dr = dr, h->pp.dc = dc;
	rc = 0;
out:
	free(ckv), free(kr);
	return rc;
}

/* Unpack head 0 of the first sequence; -1 when out of memory. */
static int head0_of(const struct lcio_case *c, struct head0 *h)
{
	const lca_params *p = &c->p;
	int64_t t0, qrow, hk = p->variant == LCA_SOFTMAX ? p->Hkv : p->variant == LCA_DELTANET ?
		p->Hk : p->H;

	memset(h, 0, sizeof *h);
	lca_probe_params_init(&h->pp, p->variant);
	first_sequence(c, &t0, &h->T, &qrow);
	h->pp.dk = p->dk, h->pp.dv = p->dv;
	h->pp.scale = p->scale;
	if (p->variant <= LCA_MLA) {
		h->pp.rope_dim = p->rope_dim, h->pp.rope_theta = p->rope_theta;
		h->pp.rope_style = p->rope_style;
	}
	if (p->variant == LCA_MLA)
		return mla_head0(c, h, t0, qrow);
	if (p->variant == LCA_LIGHTNING)
		h->pp.slope = lcio_find((struct lcio_case *)c, 0, "slope")->data[0];
	h->k = rows(c, "k", t0, h->T, hk * p->dk, p->dk);
	h->v = rows(c, "v", t0, h->T, (p->variant == LCA_SOFTMAX ? hk : p->H) * p->dv, p->dv);
	h->q = rows(c, "q", qrow, 1, (p->variant == LCA_DELTANET ? hk : p->H) * p->dk, p->dk);
	if (p->variant == LCA_DELTANET) {
		h->beta = rows(c, "beta", t0, h->T, p->H, 1);
		h->g = rows(c, "g", t0, h->T, p->H, 1);
	}
	if (!h->k || !h->v || !h->q || (p->variant == LCA_DELTANET && (!h->beta || !h->g)))
		return -1;
	if (p->variant == LCA_DELTANET && p->qk_l2norm) {
		l2norm_rows(h->k, h->T, p->dk);
		l2norm_rows(h->q, 1, p->dk);
	}
	return 0;
}

/* ---- the metrics ---- */

#define SCOPE "on head 0 of the first sequence as a probe memory (lcattn-probes(7), GOLDEN METRICS): "

static const char def_ret_mean[] = SCOPE "mean over its T tokens of the retrieval error "
	"min_a ||a o_i - v_i|| / ||v_i||, o_i the read by query k_i after all T tokens "
	"(lca_probe_retrieval(3))";
static const char def_ret_old[] = SCOPE "retrieval error of its first (oldest) token "
	"(lca_probe_retrieval(3))";
static const char def_pos_d1[] = SCOPE "order sensitivity at distance 1: ||o' - o|| / ||o||, "
	"o the read of the last query, o' the same with the two newest tokens swapped "
	"(lca_probe_position(3))";
static const char def_pos_old[] = SCOPE "order sensitivity at distance T - 1: the two "
	"oldest tokens swapped (lca_probe_position(3))";
static const char def_ow_mean[] = SCOPE "mean over tokens of the DeltaNet overwrite "
	"1 - ||P_i k_i|| / ||k_i||, P_i the product of the later (I - beta_j k_j k_j^T) "
	"(lca_probe_overwrite(3))";
static const char def_ow_old[] = SCOPE "DeltaNet overwrite of the first token "
	"(lca_probe_overwrite(3))";
static const char def_decay_old[] = SCOPE "decay of the first token, "
	"exp(g_1 + ... + g_{T-1}) (lca_probe_overwrite(3))";
static const char def_now_mean[] = SCOPE "mean over tokens of the retrieval error of "
	"each token read right after its own write (lca_probe_overwrite(3))";
static const char def_dil_med[] = SCOPE "median over tokens of the Lightning dilution, "
	"crosstalk ||sum_{j != i} lambda^(T-1-j) (k_i.k_j) v_j|| over signal "
	"||lambda^(T-1-i) (k_i.k_i) v_i|| (lca_probe_dilution(3))";
static const char def_dil_old[] = SCOPE "Lightning dilution of the first token "
	"(lca_probe_dilution(3))";

struct sink {
	struct lcio_metric *m;
	int n, max;
};

static void put(struct sink *s, const char *name, const char *def, double v)
{
	if (s->n < s->max)
		s->m[s->n++] = (struct lcio_metric){ name, def, v };
}

static double mean(const double *x, int64_t n)
{
	double s = 0;

	for (int64_t i = 0; i < n; i++)
		s += x[i];
	return s / (double)n;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median (sorts x). */
static double median(double *x, int64_t n)
{
	qsort(x, (size_t)n, sizeof *x, cmp_double);
	return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static lca_status variant_metrics(const struct head0 *h, const lca_probe_seq *s,
	struct sink *out, double *buf, double *buf2)
{
	lca_status st = LCA_OK;

	if (h->pp.variant == LCA_DELTANET &&
	    !(st = lca_probe_overwrite(&h->pp, s, buf, buf2, NULL, NULL))) {
		put(out, "probe_overwrite_mean", def_ow_mean, mean(buf, h->T));
		put(out, "probe_overwrite_oldest", def_ow_old, buf[0]);
		put(out, "probe_decay_oldest", def_decay_old, buf2[0]);
		if (!(st = lca_probe_overwrite(&h->pp, s, NULL, NULL, buf, NULL)))
			put(out, "probe_err_now_mean", def_now_mean, mean(buf, h->T));
	}
	if (h->pp.variant == LCA_LIGHTNING && !(st = lca_probe_dilution(&h->pp, s, buf))) {
		put(out, "probe_dilution_oldest", def_dil_old, buf[0]);
		put(out, "probe_dilution_median", def_dil_med, median(buf, h->T));
	}
	return st;
}

int tool_probe_metrics(const struct lcio_case *c, struct lcio_metric *m, int max,
	char *why, size_t whylen)
{
	struct sink out = { m, 0, max };
	struct head0 h;
	double *buf = NULL, *buf2 = NULL, sens[2];
	int64_t dist[2];
	lca_status st = LCA_ERR_NOMEM;

	if (head0_of(c, &h) || !(buf = malloc((size_t)h.T * sizeof *buf)) ||
	    !(buf2 = malloc((size_t)h.T * sizeof *buf2)))
		goto out;
	lca_probe_seq s = { h.T, h.k, h.v, h.beta, h.g, h.q };
	if ((st = lca_probe_retrieval(&h.pp, &s, buf)))
		goto out;
	put(&out, "probe_retrieval_mean", def_ret_mean, mean(buf, h.T));
	put(&out, "probe_retrieval_oldest", def_ret_old, buf[0]);
	dist[0] = 1, dist[1] = h.T - 1;
	if (h.T >= 2 && !(st = lca_probe_position(&h.pp, &s, 2, dist, sens))) {
		put(&out, "probe_position_d1", def_pos_d1, sens[0]);
		put(&out, "probe_position_oldest", def_pos_old, sens[1]);
	}
	if (!st)
		st = variant_metrics(&h, &s, &out, buf, buf2);
out:
	if (st)
		snprintf(why, whylen, "%s: %s", lca_strerror(st),
			st == LCA_ERR_NOMEM && !*lca_last_error() ? "out of memory" : lca_last_error());
	free(buf), free(buf2);
	head0_free(&h);
	return st ? -1 : out.n;
}

/* ---- lcattn probe golden ---- */

/* Equal to 1e-12, relative above 1 and absolute below; +-inf must match. */
static int close_enough(double x, double ref)
{
	if (isinf(ref) || isinf(x))
		return x == ref;
	return fabs(x - ref) <= 1e-12 * fmax(1.0, fabs(ref));
}

static int check_file(const char *path, int verbose)
{
	struct lcio_metric m[LCIO_MAX_METRIC];
	struct lcio_case c;
	char err[512], why[512];
	int n, bad = 0;

	if (lcio_read(path, LCIO_INPUTS, &c, err, sizeof err)) {
		fprintf(stderr, "lcattn probe golden: %s\n", err);
		return 2;
	}
	if ((n = tool_probe_metrics(&c, m, LCIO_MAX_METRIC, why, sizeof why)) < 0) {
		fprintf(stderr, "lcattn probe golden: %s: %s\n", path, why);
		lcio_case_free(&c);
		return 2;
	}
	for (int i = 0; i < n; i++) {
		double have;
		int r = lcio_read_metric(path, m[i].name, &have, err, sizeof err);

		if (r < 0) {
			fprintf(stderr, "lcattn probe golden: %s\n", err);
			bad = 2;
		} else if (r == 1 || !close_enough(m[i].value, have)) {
			printf("FAIL %s: /metrics/%s %s%.17g, recomputed %.17g\n", path, m[i].name,
				r == 1 ? "missing; " : "", r == 1 ? NAN : have, m[i].value);
			bad = bad ? bad : 1;
		} else if (verbose) {
			printf("ok   %s: /metrics/%s = %.17g\n", path, m[i].name, have);
		}
	}
	lcio_case_free(&c);
	return bad;
}

int tool_probe_golden(int argc, char **argv)
{
	int verbose = 0, rc = 0, files = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: lcattn probe golden [--verbose] FILE.h5...\n"
				"Recomputes the probe metrics of each golden file from its own /inputs\n"
				"and compares them with its /metrics (to 1e-12); exit 1 on a mismatch.\n");
			return 0;
		}
		if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
			verbose = 1;
			continue;
		}
		int r = check_file(argv[i], verbose);

		rc = r > rc ? r : rc;
		files++;
	}
	if (!files) {
		fprintf(stderr, "lcattn probe golden: needs FILE.h5 (see --help)\n");
		return 2;
	}
	if (!rc)
		printf("probe golden: the probe metrics of %d file%s reproduce to 1e-12\n", files,
			files == 1 ? "" : "s");
	return rc;
}
