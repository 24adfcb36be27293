/*
 * check_cp_decode.c - decode over a sequence-sharded cache on P simulated
 * ranks (the loopback transport of lib/mpi), the code
 * lca_mpi_softmax_decode(3) and lca_mpi_mla_decode(3) run over MPI. One
 * rank is the single call (lca_softmax_forward / lca_mla_forward with Tq
 * = tq, Tk = T) bit for bit; P = 2, 3, 4, 7 (empty runs, all keys on one
 * rank, zigzag chunks, windows, grouped heads, RoPE) agree with the double reference by
 * the tolerance rule, every rank returns the same bits, and each sends
 * the stated bytes; ranks that disagree all fail, and so do all when one
 * runs out of memory anywhere in the call. cpu backend.
 */
#include "testutil.h"
#include "cpdec.h"
#include "cp_decode.h"
#include "failalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXP 8

static const int ranks[] = { 1, 2, 3, 4, 7 };
static const int64_t lengths[] = { 1, 5, 37, 53 };
static const int64_t tqs[] = { 1, 3, 8 };

static int give_cu;

static lca_status loop_call(void *ctx, lca_variant v, const lca_plan *plan, int zigzag,
	int64_t T, int64_t start, int64_t len, int64_t tq, const void *const *in, void *o,
	void *lse, uint64_t *bytes, uint64_t *control)
{
	struct lcai_cp_comm *c = ctx;
	const int64_t cu[2] = { 0, T };
	/* give_cu: a layout with cu_seqlens, which decode refuses */
	const struct lcai_cp_run run = { start, len, zigzag ? LCAI_CP_ZIGZAG : 0,
		zigzag ? T : 0, give_cu ? cu : NULL, give_cu ? 1 : 0 };
	lca_status s;

	if (v == LCA_SOFTMAX)
		s = lcai_cp_softmax_decode(c, "softmax", plan, &run, tq, in[0], in[1], in[2], o,
			lse);
	else
		s = lcai_cp_mla_decode(c, "mla", plan, &run, tq, in[0], in[1], in[2], in[3],
			in[4], in[5], o, lse);
	*bytes = c->payload_sent;
	*control = c->control_sent;
	return s;
}

struct job {
	const struct cp_data *d;
	const lca_plan *plan;
	int P, mode;
	int64_t tq;
	int twist;     /* 0 none; 1 rank 1 asks another tq; 2 rank 1 has no q;
	                  3 every rank asks for more queries than tokens */
	void *o[MAXP], *lse[MAXP];
	lca_status s[MAXP];
	uint64_t bytes[MAXP], control[MAXP];
	char msg[MAXP][512];
};

/* The allocation of rank 1's call to fail (0: none), and whether it did. */
static long fail_at;
static int failed;

static lca_status twisted(void *ctx, lca_variant v, const lca_plan *plan, int zigzag,
	int64_t T, int64_t start, int64_t len, int64_t tq, const void *const *in, void *o,
	void *lse, uint64_t *bytes, uint64_t *control)
{
	struct lcai_cp_comm *c = ctx;
	const void *x[6];
	lca_status s;

	memcpy(x, in, sizeof x);
	if (fail_at > 0) {
		if (c->rank == 1)
			fa_arm(fail_at);
		s = loop_call(ctx, v, plan, zigzag, T, start, len, tq, x, o, lse, bytes, control);
		if (c->rank == 1)
			failed = fa_disarm();
		return s;
	}
	if (c->rank == 1 && tq > 1)
		tq -= 1;
	else if (c->rank == 1)
		x[0] = NULL;
	return loop_call(ctx, v, plan, zigzag, T, start, len, tq, x, o, lse, bytes, control);
}

static void body(struct lcai_cp_comm *c, void *arg)
{
	struct job *j = arg;
	const int r = c->rank;

	j->s[r] = dec_rank(j->d, j->plan, j->P, r, j->mode, j->tq,
		j->twist ? twisted : loop_call, c, j->o[r], j->lse[r], &j->bytes[r],
		&j->control[r]);
	snprintf(j->msg[r], sizeof j->msg[r], "%s", lcai_cp_last_error());
}

static void run_job(struct job *j, const struct cp_data *d, const lca_plan *plan, int P,
	int mode, int64_t tq)
{
	const size_t on = (size_t)(tq * d->c->H * d->c->dv), ln = (size_t)(tq * d->c->H);

	j->d = d;
	j->plan = plan;
	j->P = P;
	j->mode = mode;
	j->tq = tq;
	for (int r = 0; r < P; r++) {
		j->o[r] = calloc(on + 1, d->es);
		j->lse[r] = calloc(ln + 1, d->es);
		ck_assert(j->o[r] && j->lse[r]);
	}
	ck_assert_int_eq(lcai_loop_run(P, body, j, NULL), 0);
}

static void free_job(struct job *j)
{
	for (int r = 0; r < j->P; r++) {
		free(j->o[r]);
		free(j->lse[r]);
	}
}

static const lca_dtype dtypes[] = { LCA_F64, LCA_F32 };

/* Every (attention conf, dtype, P, T, tq <= T, split); f judges one. */
static void each_case(void (*f)(const struct cp_data *d, const struct job *j,
	const char *what))
{
	for (int ci = 0; ci < cp_nconf; ci++) {
		if (cp_confs[ci].v > LCA_MLA)
			continue;
		for (int ti = 0; ti < 2; ti++)
			for (int li = 0; li < 4; li++) {
				const struct cp_conf *c = &cp_confs[ci];
				lca_params p = cp_params(c, LCA_BACKEND_CPU, dtypes[ti]);
				lca_plan *plan = tu_plan(&p);
				struct cp_data d;

				cp_make(&d, c, dtypes[ti], lengths[li]);
				for (int pi = 0; pi < 5; pi++)
					for (int qi = 0; qi < 3; qi++)
						for (int mode = 0; mode < DEC_NSPLIT; mode++) {
							struct job j;
							char what[192];

							if (tqs[qi] > d.T)
								continue;
							memset(&j, 0, sizeof j);
							run_job(&j, &d, plan, ranks[pi], mode, tqs[qi]);
							snprintf(what, sizeof what, "%s %s P=%d T=%lld tq=%lld "
								"split %d", c->name, ti ? "f32" : "f64", ranks[pi],
								(long long)d.T, (long long)tqs[qi], mode);
							for (int r = 0; r < j.P; r++)
								ck_assert_msg(j.s[r] == LCA_OK, "%s: rank %d: %s (%s)",
									what, r, lca_strerror(j.s[r]), j.msg[r]);
							f(&d, &j, what);
							free_job(&j);
						}
				cp_free(&d);
				lca_plan_destroy(plan);
			}
	}
}

static void judge_case(const struct cp_data *d, const struct job *j, const char *what)
{
	const size_t on = (size_t)(j->tq * d->c->H * d->c->dv), ln = (size_t)(j->tq * d->c->H);
	char msg[256];

	ck_assert_msg(!dec_judge(d, j->tq, j->o[0], j->lse[0], msg, sizeof msg), "%s: %s",
		what, msg);
	for (int r = 1; r < j->P; r++) {
		ck_assert_msg(!memcmp(j->o[0], j->o[r], on * d->es), "%s: rank %d's o differs "
			"from rank 0's", what, r);
		ck_assert_msg(!memcmp(j->lse[0], j->lse[r], ln * d->es), "%s: rank %d's lse "
			"differs from rank 0's", what, r);
	}
}

START_TEST(ranks_agree_with_the_reference_and_each_other)
{
	each_case(judge_case);
}
END_TEST

static void bytes_case(const struct cp_data *d, const struct job *j, const char *what)
{
	for (int r = 0; r < j->P; r++) {
		ck_assert_msg(j->bytes[r] == dec_bytes(d, j->P, j->tq), "%s: rank %d sent %llu "
			"bytes, the formula says %llu", what, r, (unsigned long long)j->bytes[r],
			(unsigned long long)dec_bytes(d, j->P, j->tq));
		ck_assert_msg(j->control[r] == dec_control(j->P), "%s: rank %d sent %llu "
			"control bytes, not %llu", what, r, (unsigned long long)j->control[r],
			(unsigned long long)dec_control(j->P));
	}
}

START_TEST(each_rank_sends_the_stated_bytes)
{
	each_case(bytes_case);
}
END_TEST

START_TEST(one_rank_is_the_single_call_bit_for_bit)
{
	for (int ci = 0; ci < cp_nconf; ci++) {
		if (cp_confs[ci].v > LCA_MLA)
			continue;
		for (int ti = 0; ti < 2; ti++)
			for (int li = 0; li < 4; li++)
				for (int qi = 0; qi < 3; qi++) {
					const struct cp_conf *c = &cp_confs[ci];
					lca_params p = cp_params(c, LCA_BACKEND_CPU, dtypes[ti]);
					lca_plan *plan = tu_plan(&p);
					const size_t on = (size_t)(tqs[qi] * c->H * c->dv);
					const size_t ln = (size_t)(tqs[qi] * c->H);
					struct cp_data d;
					struct job j;
					void *o, *lse;

					cp_make(&d, c, dtypes[ti], lengths[li]);
					if (tqs[qi] <= d.T) {
						memset(&j, 0, sizeof j);
						run_job(&j, &d, plan, 1, DEC_EVEN, tqs[qi]);
						ck_assert_msg(j.s[0] == LCA_OK, "%s: %s", c->name, j.msg[0]);
						o = calloc(on, d.es);
						lse = calloc(ln, d.es);
						tu_assert_ok(dec_single(&d, plan, tqs[qi], o, lse));
						ck_assert_msg(!memcmp(o, j.o[0], on * d.es), "%s T=%lld: o differs",
							c->name, (long long)d.T);
						ck_assert_msg(!memcmp(lse, j.lse[0], ln * d.es), "%s T=%lld: lse "
							"differs", c->name, (long long)d.T);
						free(o);
						free(lse);
						free_job(&j);
					}
					cp_free(&d);
					lca_plan_destroy(plan);
				}
	}
}
END_TEST

/* Every rank fails with one status and a message; no output written. */
static void assert_all_fail(const struct job *j, const struct cp_data *d, const char *what)
{
	const size_t on = (size_t)(j->tq * d->c->H * d->c->dv);
	char *zero = calloc(on + 1, d->es);

	for (int r = 0; r < j->P; r++) {
		ck_assert_msg(j->s[r] != LCA_OK, "%s: rank %d succeeded", what, r);
		ck_assert_msg(j->s[r] == j->s[0], "%s: rank %d says %s, rank 0 %s", what, r,
			lca_strerror(j->s[r]), lca_strerror(j->s[0]));
		ck_assert_msg(j->msg[r][0] != '\0', "%s: rank %d gave no message", what, r);
		ck_assert_msg(!memcmp(zero, j->o[r], on * d->es), "%s: rank %d wrote o", what, r);
	}
	free(zero);
}

START_TEST(ranks_that_disagree_all_fail)
{
	for (int ci = 0; ci < cp_nconf; ci++) {
		if (cp_confs[ci].v > LCA_MLA)
			continue;
		for (int kind = 0; kind < 4; kind++) {
			const struct cp_conf *c = &cp_confs[ci];
			lca_params p = cp_params(c, LCA_BACKEND_CPU, LCA_F64);
			lca_plan *plan = tu_plan(&p);
			struct cp_data d;
			struct job j;
			char what[160];

			cp_make(&d, c, LCA_F64, 23);
			memset(&j, 0, sizeof j);
			/* kind 0: rank 1 asks tq - 1; 1: rank 1 passes no q (tq = 1);
			 * 2: tq = 24 > T on every rank; 3: a packed batch's layout */
			j.twist = kind < 2;
			give_cu = kind == 3;
			run_job(&j, &d, plan, 4, DEC_EVEN, kind == 0 ? 5 : kind == 1 ? 1 :
				kind == 2 ? 24 : 3);
			give_cu = 0;
			snprintf(what, sizeof what, "%s, %s", c->name, kind == 0 ?
				"rank 1 with another tq" : kind == 1 ? "rank 1 without q" :
				kind == 2 ? "tq > T" : "cu_seqlens");
			assert_all_fail(&j, &d, what);
			if (kind == 3)
				ck_assert_int_eq(j.s[0], LCA_ERR_UNSUPPORTED);
			free_job(&j);
			cp_free(&d);
			lca_plan_destroy(plan);
		}
	}
}
END_TEST

/* Each allocation of the library on rank 1 of 3 fails in turn (both
 * splits of the cache): every rank returns LCA_ERR_NOMEM without writing
 * o, none waits for rank 1 (a hang ends in the test's timeout), and the
 * run after the last allocation succeeds. */
START_TEST(a_rank_out_of_memory_fails_every_rank)
{
	for (int ci = 0; ci < cp_nconf; ci++) {
		if (cp_confs[ci].v > LCA_MLA)
			continue;
		for (int mode = 0; mode < DEC_NSPLIT; mode++) {
			const struct cp_conf *c = &cp_confs[ci];
			lca_params p = cp_params(c, LCA_BACKEND_CPU, LCA_F64);
			lca_plan *plan = tu_plan(&p);
			struct cp_data d;
			char what[160];
			long n;

			cp_make(&d, c, LCA_F64, 23);
			for (n = 1;; n++) {
				struct job j;

				memset(&j, 0, sizeof j);
				j.twist = 1;
				fail_at = n;
				run_job(&j, &d, plan, 3, mode, 3);
				fail_at = 0;
				snprintf(what, sizeof what, "%s split %d, allocation %ld of rank 1 "
					"failed", c->name, mode, n);
				if (!failed) {
					for (int r = 0; r < 3; r++)
						ck_assert_msg(j.s[r] == LCA_OK, "%s: rank %d: %s", what, r,
							j.msg[r]);
					free_job(&j);
					break;
				}
				assert_all_fail(&j, &d, what);
				ck_assert_msg(j.s[0] == LCA_ERR_NOMEM, "%s: %s", what,
					lca_strerror(j.s[0]));
				free_job(&j);
			}
			ck_assert_msg(n > 3, "%s: only %ld allocations failed", c->name, n - 1);
			cp_free(&d);
			lca_plan_destroy(plan);
		}
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cp_decode");
	TCase *tc = tu_tcase("cp_decode");

	tcase_add_test(tc, one_rank_is_the_single_call_bit_for_bit);
	tcase_add_test(tc, ranks_agree_with_the_reference_and_each_other);
	tcase_add_test(tc, each_rank_sends_the_stated_bytes);
	tcase_add_test(tc, ranks_that_disagree_all_fail);
	tcase_add_test(tc, a_rank_out_of_memory_fails_every_rank);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
