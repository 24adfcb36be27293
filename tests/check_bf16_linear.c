/*
 * check_bf16_linear.c - deltanet and lightning in bf16 on the cpu
 * backend read their bf16 tensors themselves (lib/cpu/deltanet.c,
 * lightning.c): widened as each chunk, block or token is packed, o formed
 * in float32 and rounded. That is the float32 kernel's arithmetic on the
 * same values, so a bf16 call must give, bit for bit, the float32 call on
 * the widened inputs with o rounded to the nearest bf16 (ties to even),
 * and the same float32 state: what lcattn(7) promises for bf16 and what
 * the former widen-everything path gave by construction.
 *
 * Shapes: T = 1, T not a multiple of the chunk or block, dk != dv (and dv
 * off the step kernels' vector widths), grouped heads (deltanet Hk < H),
 * packed batches with empty and 1-token sequences, state0 given and state
 * returned (also aliased), decode-sized calls (the fused step path), and
 * both algos. The accuracy of bf16 against the double reference is
 * check_bf16's. Last, the finite check's block scan of bf16 inputs: the
 * first non-finite element named wherever it lies, and the largest
 * magnitude found for the range rule.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* bf16 bits to float, and float to the nearest bf16 (ties to even); the
 * test's own, written from the definition (a bf16 is the high half of a
 * float). Values here are finite. */
static float widen(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float f;

	memcpy(&f, &u, sizeof f);
	return f;
}

static uint16_t nearest(float f)
{
	uint32_t u, lo;
	uint16_t hi;

	memcpy(&u, &f, sizeof u);
	hi = (uint16_t)(u >> 16);
	lo = u & 0xffffu;
	if (lo > 0x8000u || (lo == 0x8000u && (hi & 1u)))
		hi++;
	return hi;
}

/* One case: sizes, sequence lengths (at most 6), options. */
struct spec {
	const char *name;
	lca_variant v;
	lca_algo algo;
	int64_t H, Hk, dk, dv, chunk;  /* chunk: deltanet chunk, lightning block */
	int nseq;
	int64_t len[6];
	int state0, state, alias;      /* state0 given, state asked, the same buffer */
	int l2norm;                    /* deltanet qk_l2norm */
};

static const struct spec specs[] = {
	{ "dn chunked T=37 gqa state", LCA_DELTANET, LCA_ALGO_CHUNKED, 4, 2, 24, 40, 16,
		1, { 37 }, 1, 1, 0, 0 },
	{ "dn chunked T=1", LCA_DELTANET, LCA_ALGO_CHUNKED, 2, 2, 8, 12, 64,
		1, { 1 }, 0, 0, 0, 1 },
	{ "dn chunked varlen l2norm", LCA_DELTANET, LCA_ALGO_CHUNKED, 4, 1, 32, 20, 16,
		4, { 0, 33, 1, 64 }, 0, 1, 0, 1 },
	{ "dn chunked varlen state0 aliased", LCA_DELTANET, LCA_ALGO_CHUNKED, 3, 3, 16, 100, 8,
		5, { 9, 2, 0, 17, 1 }, 1, 1, 1, 1 },
	{ "dn recurrent varlen state", LCA_DELTANET, LCA_ALGO_RECURRENT, 2, 1, 16, 19, 64,
		4, { 5, 0, 1, 19 }, 1, 1, 0, 0 },
	{ "dn recurrent no state", LCA_DELTANET, LCA_ALGO_RECURRENT, 4, 2, 12, 28, 64,
		2, { 6, 3 }, 1, 0, 0, 1 },
	{ "dn steps", LCA_DELTANET, LCA_ALGO_CHUNKED, 4, 2, 40, 100, 64,
		4, { 1, 3, 0, 2 }, 1, 1, 0, 1 },
	{ "dn steps no state0", LCA_DELTANET, LCA_ALGO_RECURRENT, 8, 4, 64, 72, 64,
		2, { 1, 4 }, 0, 1, 0, 0 },
	{ "lt blockwise T=45 state", LCA_LIGHTNING, LCA_ALGO_CHUNKED, 3, 3, 20, 36, 16,
		1, { 45 }, 1, 1, 0, 0 },
	{ "lt blockwise T=1", LCA_LIGHTNING, LCA_ALGO_CHUNKED, 2, 2, 8, 8, 256,
		1, { 1 }, 0, 0, 0, 0 },
	{ "lt blockwise varlen tiles", LCA_LIGHTNING, LCA_ALGO_CHUNKED, 4, 4, 24, 40, 48,
		4, { 0, 70, 1, 17 }, 0, 1, 0, 0 },
	{ "lt blockwise varlen state0 aliased", LCA_LIGHTNING, LCA_ALGO_CHUNKED, 2, 2, 16, 33, 8,
		5, { 9, 2, 0, 20, 1 }, 1, 1, 1, 0 },
	{ "lt recurrent varlen state", LCA_LIGHTNING, LCA_ALGO_RECURRENT, 3, 3, 12, 21, 256,
		4, { 7, 0, 1, 12 }, 1, 1, 0, 0 },
	{ "lt steps", LCA_LIGHTNING, LCA_ALGO_CHUNKED, 4, 4, 40, 100, 256,
		3, { 2, 1, 0 }, 1, 1, 0, 0 },
	{ "lt steps no state0", LCA_LIGHTNING, LCA_ALGO_RECURRENT, 8, 8, 64, 72, 256,
		2, { 4, 1 }, 0, 1, 0, 0 },
};
enum { N_SPECS = sizeof specs / sizeof specs[0] };

/* One tensor input: bf16 bits and their float32 widening. */
struct pair {
	int64_t n;
	uint16_t *b;
	float *f;
};

/* n values drawn by gen (or from x), rounded to bf16, and widened. */
static void pair_make(struct pair *t, int64_t n, const double *x)
{
	t->n = n;
	t->b = malloc((size_t)(n > 0 ? n : 1) * sizeof *t->b);
	t->f = malloc((size_t)(n > 0 ? n : 1) * sizeof *t->f);
	ck_assert(t->b && t->f);
	for (int64_t i = 0; i < n; i++) {
		t->b[i] = nearest((float)x[i]);
		t->f[i] = widen(t->b[i]);
	}
}

static void pair_free(struct pair *t)
{
	free(t->b);
	free(t->f);
}

/* Inputs of a spec, in the forward call's order: q k v g beta (deltanet)
 * or q k v slope (lightning). Gates run from 0 (no decay) to -1e30 (the
 * state forgotten) as lib/ref's traps list; slopes >= 0. */
static int make_inputs(const struct spec *s, int64_t T, struct pair *in)
{
	const int dn = s->v == LCA_DELTANET;
	const int64_t Hq = dn ? s->Hk : s->H;
	const int64_t n[5] = { T * Hq * s->dk, T * Hq * s->dk, T * s->H * s->dv,
		dn ? T * s->H : s->H, T * s->H };
	const int nin = dn ? 5 : 4;

	for (int i = 0; i < nin; i++) {
		double *x = tu_alloc(n[i] > 0 ? n[i] : 1);

		if (i < 3)
			tu_fill_normal(x, n[i], 1.0);
		else if (!dn)
			tu_fill_uniform(x, n[i], 0.0, 1.0);
		else if (i == 3)
			for (int64_t e = 0; e < n[i]; e++) {
				double u = tu_uniform(0, 1);

				x[e] = u < 0.05 ? 0.0 : u < 0.1 ? -1e30 :
					-tu_uniform(0.0, 1.5);
			}
		else
			tu_fill_uniform(x, n[i], 0.0, 1.0);
		pair_make(&in[i], n[i], x);
		free(x);
	}
	return nin;
}

static lca_plan *make_plan(const struct spec *s, lca_dtype t)
{
	lca_params p = tu_params(s->v);

	p.backend = LCA_BACKEND_CPU;
	p.dtype = t;
	p.algo = s->algo;
	p.H = s->H;
	p.dk = s->dk;
	p.dv = s->dv;
	p.scale = 0.25;
	if (s->v == LCA_DELTANET) {
		p.Hk = s->Hk;
		p.chunk = s->chunk;
		p.qk_l2norm = s->l2norm;
	} else {
		p.block = s->chunk;
	}
	return tu_plan(&p);
}

/* The forward call of s on typed inputs x[], state0 and state (NULL when
 * not asked; state may be state0). */
static lca_status forward(const struct spec *s, const lca_plan *plan, int64_t T,
	const int64_t *cu, void *const *x, const float *state0, void *o,
	float *state)
{
	if (s->v == LCA_DELTANET)
		return lca_deltanet_forward(plan, T, x[0], x[1], x[2], x[3], x[4], cu,
			s->nseq, state0, o, state);
	return lca_lightning_forward(plan, T, x[0], x[1], x[2], x[3], cu, s->nseq,
		state0, o, state);
}

/* Run spec i in f32 on the widened inputs and in bf16 on the bits; the
 * bf16 o must be the f32 o rounded, the states equal, bit for bit. */
START_TEST(bf16_is_f32_on_widened_inputs_bit_for_bit)
{
	const struct spec *s = &specs[_i];
	struct pair in[5];
	void *xb[5], *xf[5];
	int64_t cu[7] = { 0 }, T, no, ns;
	float *s0 = NULL, *sf = NULL, *sb = NULL, *of;
	uint16_t *ob;
	lca_plan *pf = make_plan(s, LCA_F32), *pb = make_plan(s, LCA_BF16);
	int nin;

	for (int n = 0; n < s->nseq; n++)
		cu[n + 1] = cu[n] + s->len[n];
	T = cu[s->nseq];
	nin = make_inputs(s, T, in);
	for (int i = 0; i < nin; i++) {
		xb[i] = in[i].b;
		xf[i] = in[i].f;
	}
	no = T * s->H * s->dv;
	ns = s->nseq * s->H * s->dk * s->dv;
	of = malloc((size_t)no * sizeof *of);
	ob = malloc((size_t)no * sizeof *ob);
	ck_assert(of && ob);
	if (s->state0) {
		double *x = tu_alloc(ns);

		tu_fill_normal(x, ns, 0.5);
		s0 = malloc((size_t)ns * sizeof *s0);
		ck_assert(s0 != NULL);
		for (int64_t e = 0; e < ns; e++)
			s0[e] = (float)x[e];
		free(x);
	}
	if (s->state) {
		sf = malloc((size_t)ns * sizeof *sf);
		sb = malloc((size_t)ns * sizeof *sb);
		ck_assert(sf && sb);
		memset(sf, 0x5a, (size_t)ns * sizeof *sf);
		memset(sb, 0x5a, (size_t)ns * sizeof *sb);
		if (s->alias) { /* state0 is overwritten: each call its own copy */
			memcpy(sf, s0, (size_t)ns * sizeof *sf);
			memcpy(sb, s0, (size_t)ns * sizeof *sb);
		}
	}
	memset(of, 0x5a, (size_t)no * sizeof *of);
	memset(ob, 0x5a, (size_t)no * sizeof *ob);
	tu_assert_ok(forward(s, pf, T, s->nseq > 1 ? cu : NULL, xf,
		s->alias ? sf : s0, of, sf));
	tu_assert_ok(forward(s, pb, T, s->nseq > 1 ? cu : NULL, xb,
		s->alias ? sb : s0, ob, sb));
	for (int64_t e = 0; e < no; e++)
		ck_assert_msg(ob[e] == nearest(of[e]), "%s: o[%lld] bf16 %#06x (%a), "
			"f32 %a rounds to %#06x", s->name, (long long)e, ob[e],
			(double)widen(ob[e]), (double)of[e], nearest(of[e]));
	for (int64_t e = 0; s->state && e < ns; e++)
		ck_assert_msg(memcmp(&sb[e], &sf[e], sizeof *sb) == 0,
			"%s: state[%lld] bf16 call %a, f32 call %a", s->name,
			(long long)e, (double)sb[e], (double)sf[e]);
	for (int i = 0; i < nin; i++)
		pair_free(&in[i]);
	free(of);
	free(ob);
	free(s0);
	free(sf);
	free(sb);
	lca_plan_destroy(pf);
	lca_plan_destroy(pb);
}
END_TEST

/* ---- the finite check's scan of bf16 inputs (lib/core/check.c) ---- */

/* Where the scan is tried: the first and last element of a 64-element
 * block, the first of the next, a block far in, and the tail past the
 * last whole block (n is not a multiple of 64). */
static int64_t scan_at(int i, int64_t n)
{
	const int64_t at[] = { 0, 63, 64, 700, n - 1 };

	return at[i];
}

enum { SCAN_T = 50, SCAN_H = 2, SCAN_D = 16 };  /* q: 1600 elements */

/* A NaN, +inf or -inf at each place of q in a bf16 deltanet call is
 * refused, named at its index, with o untouched. */
START_TEST(bf16_scan_names_the_first_nonfinite_element)
{
	const uint16_t bad[3] = { 0x7fc1, 0x7f80, 0xff80 };
	const int64_t n = SCAN_T * SCAN_H * SCAN_D;
	struct spec sp = { "scan", LCA_DELTANET, LCA_ALGO_CHUNKED, SCAN_H, SCAN_H,
		SCAN_D, SCAN_D, 16, 1, { SCAN_T }, 0, 0, 0, 0 };
	lca_plan *plan = make_plan(&sp, LCA_BF16);
	struct pair in[5];
	void *x[5];
	uint16_t *o = malloc((size_t)n * sizeof *o);
	int nin = make_inputs(&sp, SCAN_T, in);

	ck_assert_ptr_nonnull(o);
	for (int i = 0; i < nin; i++)
		x[i] = in[i].b;
	for (int b = 0; b < 3; b++)
		for (int i = 0; i < 5; i++) {
			int64_t at = scan_at(i, n);
			uint16_t keep = in[0].b[at];
			char name[32];

			/* a second bad value later must not be the one named */
			in[0].b[n - 1 == at ? at : n - 1] = 0x7f80;
			in[0].b[at] = bad[b];
			memset(o, 0x5a, (size_t)n * sizeof *o);
			ck_assert_int_eq(forward(&sp, plan, SCAN_T, NULL, x, NULL, o,
				NULL), LCA_ERR_NONFINITE);
			snprintf(name, sizeof name, "q[%lld]", (long long)at);
			ck_assert_msg(strstr(lca_last_error(), name) != NULL,
				"%#06x at %lld: %s", bad[b], (long long)at, lca_last_error());
			for (int64_t e = 0; e < n; e++)
				ck_assert_uint_eq(o[e], 0x5a5a);
			in[0].b[at] = keep;
			in[0].b[n - 1] = nearest(0.5f);
		}
	for (int i = 0; i < nin; i++)
		pair_free(&in[i]);
	free(o);
	lca_plan_destroy(plan);
}
END_TEST

/* The scan's max |x| feeds the range rule of softmax: 1e20 in q at each
 * place (negative at odd places), with 1e20 in k, makes a logit that
 * could reach 16 1e40, over FLT_MAX/4: LCA_ERR_RANGE; without it the
 * call runs. */
START_TEST(bf16_scan_finds_the_largest_magnitude)
{
	const int64_t n = SCAN_T * SCAN_H * SCAN_D;
	lca_params p = tu_params(LCA_SOFTMAX);
	lca_plan *plan;
	uint16_t *q, *k, *v, *o;
	double *x = tu_alloc(n);

	p.backend = LCA_BACKEND_CPU;
	p.dtype = LCA_BF16;
	p.H = SCAN_H;
	p.dk = p.dv = SCAN_D;
	p.scale = 1.0;
	plan = tu_plan(&p);
	q = malloc((size_t)n * sizeof *q);
	k = malloc((size_t)n * sizeof *k);
	v = malloc((size_t)n * sizeof *v);
	o = malloc((size_t)n * sizeof *o);
	ck_assert(q && k && v && o);
	tu_fill_uniform(x, n, -1, 1);
	for (int64_t e = 0; e < n; e++) {
		q[e] = nearest((float)x[e]);
		k[e] = nearest((float)x[n - 1 - e]);
		v[e] = nearest((float)x[e]);
	}
	k[5] = nearest(1e20f);
	tu_assert_ok(lca_softmax_forward(plan, SCAN_T, SCAN_T, q, k, v, NULL, 0, o,
		NULL));
	for (int i = 0; i < 5; i++) {
		int64_t at = scan_at(i, n);
		uint16_t keep = q[at];

		q[at] = nearest(i % 2 ? -1e20f : 1e20f);
		ck_assert_msg(lca_softmax_forward(plan, SCAN_T, SCAN_T, q, k, v, NULL,
			0, o, NULL) == LCA_ERR_RANGE, "1e20 at q[%lld]: %s",
			(long long)at, lca_last_error());
		q[at] = keep;
	}
	free(q);
	free(k);
	free(v);
	free(o);
	free(x);
	lca_plan_destroy(plan);
}
END_TEST

int main(void)
{
	Suite *s;
	TCase *tc;

	tu_init();
	s = suite_create("bf16_linear");
	tc = tu_tcase("widened");
	tcase_add_loop_test(tc, bf16_is_f32_on_widened_inputs_bit_for_bit, 0, N_SPECS);
	suite_add_tcase(s, tc);
	tc = tu_tcase("scan");
	tcase_add_test(tc, bf16_scan_names_the_first_nonfinite_element);
	tcase_add_test(tc, bf16_scan_finds_the_largest_magnitude);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
