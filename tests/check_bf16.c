/*
 * check_bf16.c - bf16 inputs on the cpu backend (plan dtype LCA_BF16):
 * every mechanism against the double reference by the bf16 rule of
 * DESIGN.md (2x the error of the float32 reference run on the
 * bf16-rounded inputs, its outputs rounded to bf16), and float32 by the
 * f32 rule, on the odd shapes of check_cuda.c, whose harness this file
 * includes: GQA, RoPE near position 70K, windows, fully masked rows,
 * varlen batches with an empty sequence, Tq = 1 and T = 1, dk != dv, and
 * the state handed between two calls through one aliased f32 buffer.
 * Then what bf16 means on this backend: the float32 path's numbers on the
 * widened inputs, rounded; recurrent state in float32; outputs untouched
 * on a refused call; no backward kernel and no cache in bf16 yet.
 */
#define CHECK_ON_CPU 1
#include "check_cuda.c"

/* The softmax case used by the API tests below. */
static void small_softmax(struct kase *c)
{
	sm_kase(&sm_specs[0], c);
	c->p.backend = LCA_BACKEND_CPU;
}

/* A bf16 call gives the f32 call's outputs on the same (widened) inputs,
 * rounded to the nearest bf16: the contract of lcattn(7). (This case has
 * RoPE, so it holds at every level; without RoPE, the avx512bf16 level's
 * dot products sum in another order: check_bf16dot.) */
START_TEST(bf16_is_f32_on_widened_inputs_rounded)
{
	struct kase c;
	double *rounded[3], *X[2], *F[2];

	small_softmax(&c);
	for (int i = 0; i < 3; i++) {
		rounded[i] = tu_alloc(c.in[i].n);
		for (int64_t e = 0; e < c.in[i].n; e++)
			rounded[i][e] = round_to(c.in[i].x[e], LCA_BF16);
	}
	for (int k = 0; k < 2; k++) {
		X[k] = tu_alloc(c.out[k].n);
		F[k] = tu_alloc(c.out[k].n);
	}
	run(&c, LCA_BACKEND_CPU, LCA_BF16, rounded, X);
	run(&c, LCA_BACKEND_CPU, LCA_F32, rounded, F);
	for (int k = 0; k < 2; k++)
		for (int64_t e = 0; e < c.out[k].n; e++)
			ck_assert_msg(X[k][e] == round_to(F[k][e], LCA_BF16),
				"%s[%lld]: bf16 %a, f32 %a", c.out[k].name, (long long)e,
				X[k][e], F[k][e]);
	for (int i = 0; i < 3; i++)
		free(rounded[i]);
	for (int k = 0; k < 2; k++) {
		free(X[k]);
		free(F[k]);
	}
	kase_free(&c);
}
END_TEST

/* A NaN among bf16 inputs is refused before any output is written. */
START_TEST(bf16_nonfinite_input_leaves_outputs_untouched)
{
	struct kase c;
	lca_plan *plan;
	void *in[3];
	uint16_t *o;
	const int64_t bad = 57;

	small_softmax(&c);
	c.p.dtype = LCA_BF16;
	plan = tu_plan(&c.p);
	for (int i = 0; i < 3; i++)
		in[i] = host_cast(c.in[i].x, c.in[i].n, LCA_BF16);
	((uint16_t *)in[2])[bad] = 0x7fc0;	/* a bf16 NaN in v */
	o = malloc((size_t)c.out[0].n * 2);
	ck_assert(o != NULL);
	memset(o, 0x5a, (size_t)c.out[0].n * 2);
	ck_assert_int_eq(lca_softmax_forward(plan, c.Tq, c.Tk, in[0], in[1], in[2], NULL, 0,
		o, NULL), LCA_ERR_NONFINITE);
	ck_assert_msg(strstr(lca_last_error(), "v[57]") != NULL, "message: %s", lca_last_error());
	for (int64_t e = 0; e < c.out[0].n; e++)
		ck_assert_uint_eq(o[e], 0x5a5a);
	for (int i = 0; i < 3; i++)
		free(in[i]);
	free(o);
	lca_plan_destroy(plan);
	kase_free(&c);
}
END_TEST

/* No backward kernel takes bf16 yet (nor does the cuda backend's). */
START_TEST(bf16_backward_is_unsupported)
{
	struct kase c;
	lca_plan *plan;
	void *in[3], *grad[3], *dout;
	double *x;

	small_softmax(&c);
	c.p.dtype = LCA_BF16;
	plan = tu_plan(&c.p);
	for (int i = 0; i < 3; i++) {
		in[i] = host_cast(c.in[i].x, c.in[i].n, LCA_BF16);
		grad[i] = host_cast(c.in[i].x, c.in[i].n, LCA_BF16);
	}
	x = tu_alloc(c.out[0].n);
	tu_fill_normal(x, c.out[0].n, 1.0);
	dout = host_cast(x, c.out[0].n, LCA_BF16);
	ck_assert_int_eq(lca_softmax_backward(plan, c.Tq, c.Tk, in[0], in[1], in[2], NULL, 0,
		dout, grad[0], grad[1], grad[2]), LCA_ERR_UNSUPPORTED);
	ck_assert_msg(strstr(lca_last_error(), "bf16") != NULL, "message: %s", lca_last_error());
	for (int i = 0; i < 3; i++) {
		free(in[i]);
		free(grad[i]);
	}
	free(dout);
	free(x);
	lca_plan_destroy(plan);
	kase_free(&c);
}
END_TEST

/* Caches (and so the step calls) are not offered in bf16 yet. */
START_TEST(bf16_cache_is_unsupported)
{
	for (int v = LCA_SOFTMAX; v <= LCA_LIGHTNING; v++) {
		lca_params p = tu_params((lca_variant)v);
		lca_plan *plan;
		lca_cache *cache = (lca_cache *)&p;

		p.backend = LCA_BACKEND_CPU;
		p.dtype = LCA_BF16;
		p.H = 2;
		p.dk = p.dv = p.dn = p.dr = p.dc = 8;
		p.scale = 0.5;
		plan = tu_plan(&p);
		ck_assert_int_eq(lca_cache_create(plan, 1, 16, &cache), LCA_ERR_UNSUPPORTED);
		ck_assert_ptr_null(cache);
		lca_plan_destroy(plan);
	}
}
END_TEST

static TCase *tcase(const char *name)
{
	TCase *tc = tu_tcase(name);

	/* the double reference of the 70K-key cases takes a few seconds */
	tcase_set_timeout(tc, 300);
	return tc;
}

int main(void)
{
	Suite *s;
	TCase *tc;

	tu_init();
	s = suite_create("bf16");
	tc = tcase("softmax");
	tcase_add_loop_test(tc, softmax_matches_reference, 0, 2 * N_SM);
	suite_add_tcase(s, tc);
	tc = tcase("mla");
	tcase_add_loop_test(tc, mla_matches_reference, 0, 2 * N_MLA);
	suite_add_tcase(s, tc);
	tc = tcase("linear");
	tcase_add_loop_test(tc, linear_matches_reference, 0, 2 * N_LIN);
	suite_add_tcase(s, tc);
	tc = tcase("api");
	tcase_add_test(tc, bf16_is_f32_on_widened_inputs_rounded);
	tcase_add_test(tc, bf16_nonfinite_input_leaves_outputs_untouched);
	tcase_add_test(tc, bf16_backward_is_unsupported);
	tcase_add_test(tc, bf16_cache_is_unsupported);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
