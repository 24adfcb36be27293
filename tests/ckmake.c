/*
 * ckmake.c - write the lca_cache_save(3) bytes of a small cache, for
 * tests/checkpoint-tool.sh. A test helper: it may print and exit.
 *
 *   ckmake VARIANT DTYPE OUT    VARIANT softmax|mla|deltanet|lightning,
 *                               DTYPE f64|f32|bf16 (an f32 plan, softmax or
 *                               mla stored in bf16); two sequences, 5 and 3
 *                               tokens
 */
#include "lcattn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { T = 8, MAXEL = T * 4 * 16 };

static void die(const char *what, lca_status s)
{
	fprintf(stderr, "ckmake: %s: %s: %s\n", what, lca_strerror(s), lca_last_error());
	exit(1);
}

/* x [n] of the dtype, values from a fixed formula. */
static void *fill(int64_t n, int f32, double scale)
{
	void *x = calloc((size_t)n, 8);

	if (!x)
		exit(1);
	for (int64_t i = 0; i < n; i++) {
		double v = scale * (((i * 37 + 11) % 23) / 23.0 - 0.45);

		if (f32)
			((float *)x)[i] = (float)v;
		else
			((double *)x)[i] = v;
	}
	return x;
}

int main(int argc, char **argv)
{
	static const char *const names[] = { "softmax", "mla", "deltanet", "lightning" };
	const int64_t cu[3] = { 0, 5, T };
	lca_params p;
	lca_plan *plan;
	lca_cache *c;
	lca_cache_opts opts;
	lca_status s;
	int v = -1, f32, bf16;
	void *x[6], *o, *buf;
	size_t need;
	FILE *f;

	if (argc != 4) {
		fprintf(stderr, "usage: ckmake VARIANT f64|f32|bf16 OUT\n");
		return 2;
	}
	for (int i = 0; i < 4; i++)
		if (!strcmp(argv[1], names[i]))
			v = i;
	/* bf16: an f32 plan whose softmax/mla cache stores bf16 */
	bf16 = !strcmp(argv[2], "bf16");
	f32 = bf16 || !strcmp(argv[2], "f32");
	if (v < 0 || (!f32 && strcmp(argv[2], "f64")) || (bf16 && v > LCA_MLA))
		return 2;
	lca_params_init(&p, (lca_variant)v);
	p.dtype = f32 ? LCA_F32 : LCA_F64;
	p.H = 2;
	p.dk = 4;
	p.dv = 4;
	p.dn = 4;
	p.dr = 2;
	p.dc = 6;
	if (v == LCA_MLA)
		p.scale = 0.3;
	if ((s = lca_plan_create(&p, &plan)) || (s = lca_cache_opts_init(plan, &opts)))
		die("plan", s);
	opts.nseq = 2;
	opts.capacity = 32;
	if (bf16)
		opts.storage = LCA_BF16;
	if ((s = lca_cache_create_ex(plan, &opts, &c)))
		die("cache", s);
	for (int i = 0; i < 6; i++)
		x[i] = fill(MAXEL, f32, 1.0);
	o = fill(MAXEL, f32, 0.0);
	if (v == LCA_DELTANET) { /* g <= 0 */
		for (int64_t i = 0; i < MAXEL; i++) {
			if (f32)
				((float *)x[3])[i] = -0.1f;
			else
				((double *)x[3])[i] = -0.1;
		}
	}
	switch (v) {
	case LCA_SOFTMAX:
		s = lca_softmax_step(plan, c, T, x[0], x[1], x[2], cu, o, NULL);
		break;
	case LCA_MLA:
		s = lca_mla_step(plan, c, T, x[0], x[1], x[2], x[3], x[4], x[5], cu, o, NULL);
		break;
	case LCA_DELTANET:
		s = lca_deltanet_step(plan, c, T, x[0], x[1], x[2], x[3], x[4], cu, o);
		break;
	default: {
		void *slope = fill(2, f32, 0.0);

		s = lca_lightning_step(plan, c, T, x[0], x[1], x[2], slope, cu, o);
		free(slope);
	}
	}
	if (s)
		die("step", s);
	if ((s = lca_cache_save(c, NULL, 0, &need)) || !(buf = malloc(need)) ||
	    (s = lca_cache_save(c, buf, need, &need)))
		die("save", s);
	if (!(f = fopen(argv[3], "wb")) || fwrite(buf, 1, need, f) != need || fclose(f))
		return 1;
	for (int i = 0; i < 6; i++)
		free(x[i]);
	free(o);
	free(buf);
	lca_cache_destroy(c);
	lca_plan_destroy(plan);
	return 0;
}
