/*
 * check_overlap.c - an output that overlaps an input or another output is
 * refused with LCA_ERR_ARG before anything is written, by every forward
 * and step call on the ref and cpu backends; a final state written exactly
 * over its initial state is the one sharing allowed, and gives the numbers
 * of separate buffers.
 */
#include "testutil.h"

#include <string.h>

enum { T = 7, H = 2, D = 4 };

/* One arena for every tensor of a call, so that a test can point an output
 * anywhere inside it; filled with seeded values (g <= 0, beta in (0, 1),
 * slopes >= 0 are kept where those tensors sit). */
#define ARENA 4096
static double arena[ARENA];

static double *at(int64_t off)
{
	return arena + off;
}

/* Inputs at 0, 100, 200, ... (each at most T H D = 56 values); outputs at
 * 2000 and 2100 unless a test moves them. */
#define IN(i) at(100 * (i))
#define OUT 2000
#define OUT2 2100

/* deltanet's g (<= 0) and beta sit at IN(3) and IN(4), lightning's slopes
 * (>= 0) at IN(6); mla reads IN(0) to IN(5) as they are. */
static void fill(void)
{
	tu_fill_normal(arena, ARENA, 1.0);
	tu_fill_uniform(IN(3), T * H, -1.0, 0.0);
	tu_fill_uniform(IN(4), T * H, 0.1, 0.9);
	tu_fill_uniform(IN(6), H, 0.0, 1.0);
}

static lca_plan *plan_for(lca_variant v, lca_backend b)
{
	lca_params p = tu_params(v);

	p.backend = b;
	p.H = H, p.dk = D, p.dv = D;
	if (v == LCA_MLA) {
		p.dn = D, p.dr = 2, p.dc = D;
		p.scale = 0.5;
	}
	return tu_plan(&p);
}

static lca_status softmax(const lca_plan *pl, double *o, double *lse)
{
	return lca_softmax_forward(pl, T, T, IN(0), IN(1), IN(2), NULL, 0, o, lse);
}

static lca_status mla(const lca_plan *pl, double *o, double *lse)
{
	return lca_mla_forward(pl, T, T, IN(0), IN(1), IN(2), IN(3), IN(4), IN(5),
		NULL, 0, o, lse);
}

static lca_status deltanet(const lca_plan *pl, const double *s0, double *o, double *s)
{
	return lca_deltanet_forward(pl, T, IN(0), IN(1), IN(2), IN(3), IN(4), NULL, 0,
		s0, o, s);
}

static lca_status lightning(const lca_plan *pl, const double *s0, double *o, double *s)
{
	return lca_lightning_forward(pl, T, IN(0), IN(1), IN(2), IN(6), NULL, 0, s0, o, s);
}

static void refused(lca_status s, const char *what)
{
	ck_assert_msg(s == LCA_ERR_ARG, "%s: %s", what, lca_strerror(s));
	ck_assert_msg(strstr(lca_last_error(), "overlaps"), "%s: %s", what, lca_last_error());
}

static const lca_backend backends[] = { LCA_BACKEND_REF, LCA_BACKEND_CPU };

START_TEST(test_softmax_and_mla_outputs_may_not_overlap)
{
	lca_plan *sm = plan_for(LCA_SOFTMAX, backends[_i]);
	lca_plan *ml = plan_for(LCA_MLA, backends[_i]);
	double keep[56];

	fill();
	memcpy(keep, IN(0), sizeof keep);
	refused(softmax(sm, IN(0), at(OUT2)), "softmax o = q");
	ck_assert_int_eq(memcmp(keep, IN(0), sizeof keep), 0);
	refused(softmax(sm, IN(2) + 50, at(OUT2)), "softmax o over the tail of v");
	refused(softmax(sm, at(OUT), at(OUT) + 3), "softmax lse inside o");
	ck_assert_int_eq(softmax(sm, at(OUT), at(OUT2)), LCA_OK);
	refused(mla(ml, IN(5), at(OUT2)), "mla o = w_uv");
	refused(mla(ml, at(OUT), IN(1) + 1), "mla lse inside q_rope");
	ck_assert_int_eq(mla(ml, at(OUT), at(OUT2)), LCA_OK);
	lca_plan_destroy(sm);
	lca_plan_destroy(ml);
}
END_TEST

START_TEST(test_a_state_may_be_written_over_its_own_initial_state)
{
	lca_plan *dn = plan_for(LCA_DELTANET, backends[_i]);
	lca_plan *lt = plan_for(LCA_LIGHTNING, backends[_i]);
	double o1[T * H * D], s1[H * D * D], o2[T * H * D];
	double *s0 = at(3000);
	const int64_t ns = H * D * D;

	fill();
	memcpy(s1, s0, sizeof s1);
	ck_assert_int_eq(deltanet(dn, s1, o1, s1), LCA_OK);     /* in place */
	ck_assert_int_eq(deltanet(dn, s0, o2, at(OUT)), LCA_OK); /* separate */
	ck_assert_int_eq(memcmp(s1, at(OUT), sizeof s1), 0);
	ck_assert_int_eq(memcmp(o1, o2, sizeof o1), 0);
	refused(deltanet(dn, s0, o2, s0 + 1), "deltanet state shifted over state0");
	refused(deltanet(dn, s0, IN(2), at(OUT)), "deltanet o = v");
	refused(deltanet(dn, s0, at(OUT), at(OUT) + T * H * D - 1), "deltanet state over o");

	memcpy(s1, s0, sizeof s1);
	ck_assert_int_eq(lightning(lt, s1, o1, s1), LCA_OK);
	ck_assert_int_eq(lightning(lt, s0, o2, at(OUT)), LCA_OK);
	ck_assert_int_eq(memcmp(s1, at(OUT), (size_t)ns * sizeof(double)), 0);
	ck_assert_int_eq(memcmp(o1, o2, sizeof o1), 0);
	refused(lightning(lt, s0, o2, s0 + ns - 1), "lightning state over state0's tail");
	refused(lightning(lt, s0, IN(6), at(OUT)), "lightning o over slope");
	lca_plan_destroy(dn);
	lca_plan_destroy(lt);
}
END_TEST

START_TEST(test_step_outputs_may_not_overlap_and_leave_the_cache_alone)
{
	lca_plan *sm = plan_for(LCA_SOFTMAX, backends[_i]);
	lca_plan *dn = plan_for(LCA_DELTANET, backends[_i]);
	lca_cache *cs, *cd;
	int64_t len;

	fill();
	ck_assert_int_eq(lca_cache_create(sm, 1, 64, &cs), LCA_OK);
	ck_assert_int_eq(lca_cache_create(dn, 1, 64, &cd), LCA_OK);
	refused(lca_softmax_step(sm, cs, T, IN(0), IN(1), IN(2), NULL, IN(1), at(OUT2)),
		"softmax step o = k");
	ck_assert_int_eq(lca_cache_len(cs, 0, &len), LCA_OK);
	ck_assert_int_eq(len, 0);
	refused(lca_deltanet_step(dn, cd, T, IN(0), IN(1), IN(2), IN(3), IN(4), NULL, IN(4)),
		"deltanet step o over beta");
	ck_assert_int_eq(lca_cache_len(cd, 0, &len), LCA_OK);
	ck_assert_int_eq(len, 0);
	ck_assert_int_eq(lca_softmax_step(sm, cs, T, IN(0), IN(1), IN(2), NULL, at(OUT),
		at(OUT2)), LCA_OK);
	lca_cache_destroy(cs);
	lca_cache_destroy(cd);
	lca_plan_destroy(sm);
	lca_plan_destroy(dn);
}
END_TEST

static Suite *overlap_suite(void)
{
	Suite *s = suite_create("overlap");
	TCase *tc = tu_tcase("overlap");

	tcase_add_loop_test(tc, test_softmax_and_mla_outputs_may_not_overlap, 0, 2);
	tcase_add_loop_test(tc, test_a_state_may_be_written_over_its_own_initial_state, 0, 2);
	tcase_add_loop_test(tc, test_step_outputs_may_not_overlap_and_leave_the_cache_alone, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(overlap_suite());
}
