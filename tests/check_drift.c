/*
 * check_drift.c - a long decode stays close to float64. deltanet and
 * lightning are stepped one token at a time for 1M tokens through a cache
 * (H = 1, dk = dv = 16), the cpu backend in f32 against the double
 * reference on the same inputs (bench/drift.c), and the largest absolute
 * difference of any output is held to the bound of lcattn(7), Accuracy.
 * The tolerance rule alone cannot judge such a run: it is relative to the
 * float32 reference, which itself drifts over a million tokens.
 */
#include "testutil.h"
#include "drift.h"

#include <stdio.h>

enum { DRIFT_T = 1000000 };

static void check_drift(lca_variant v, double bound, const char *name)
{
	struct drift d;

	tu_assert_ok(drift_run(v, DRIFT_T, tu_next(), &d));
	printf("drift: %s f32 vs f64, %lld tokens: max |o32 - o64| %.3e "
		"(last token %.3e, max |o| %.3g), bound %.0e, %.1f s\n", name,
		(long long)d.T, d.maxabs, d.lastabs, d.maxref, bound, d.seconds);
	ck_assert_int_eq(d.T, DRIFT_T);
	ck_assert_msg(d.maxabs <= bound, "%s drifts %.3e > %.0e", name,
		d.maxabs, bound);
}

START_TEST(test_deltanet_f32_decode_stays_within_bound)
{
	check_drift(LCA_DELTANET, DRIFT_BOUND_DELTANET, "deltanet");
}
END_TEST

START_TEST(test_lightning_f32_decode_stays_within_bound)
{
	check_drift(LCA_LIGHTNING, DRIFT_BOUND_LIGHTNING, "lightning");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("drift");
	TCase *tc = tu_tcase("drift");

	tu_init();
	/* 2M steps per test, about 5 s here; sanitizer builds are slower. */
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_deltanet_f32_decode_stays_within_bound);
	tcase_add_test(tc, test_lightning_f32_decode_stays_within_bound);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
