/*
 * check_cp_loop.c - context parallelism on P simulated ranks (the
 * loopback transport of lib/mpi, threads of this process), running the
 * code liblcattn_mpi runs over MPI. One rank is the plain call bit for
 * bit; P = 2, 3, 4, 7 ranks, contiguous and zigzag, one sequence or a
 * packed batch whose sequences span ranks (runs cut mid-chunk and
 * mid-block, windows, grouped heads, more ranks than tokens) agree with
 * the double reference by the tolerance rule (DESIGN.md); each rank sends
 * the bytes lca_mpi_softmax_forward(3) states; ranks that disagree on the
 * plan or the layout all fail, and so do all when one runs out of memory
 * anywhere in the call (no rank left waiting). cpu backend, one thread
 * per rank.
 */
#include "testutil.h"
#include "cpcase.h"
#include "cp.h"
#include "failalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXP 8

static const int ranks[] = { 2, 3, 4, 7 };

/* The batches: T = 5 leaves ranks empty at P = 7 (zigzag: at P >= 3);
 * 37 and 53 cut chunks (8, 16) and blocks in the middle at every P; the
 * packed ones have sequences over several ranks, a one-token one and
 * empty ones: inside a run, at token 20 (a zigzag chunk boundary at P = 2
 * and 4) and at the end. */
static const int64_t cu41[] = { 0, 3, 3, 20, 20, 41, 41 };
static const int64_t cu53[] = { 0, 1, 30, 53 };
static const struct batch {
	int64_t T;
	const int64_t *cu;
	int64_t nseq;
} batches[] = {
	{ 5, NULL, 1 }, { 37, NULL, 1 }, { 53, NULL, 1 }, { 41, cu41, 6 }, { 53, cu53, 3 },
};
#define NBATCH ((int)(sizeof batches / sizeof batches[0]))

/* The loopback transport's call: ctx is the rank's struct lcai_cp_comm. */
static lca_status loop_call(void *ctx, lca_variant v, const lca_plan *plan,
	const struct cp_layout *lay, const void *const *in, const void *state0, void *o,
	void *lse, void *state, uint64_t *bytes)
{
	struct lcai_cp_comm *c = ctx;
	const struct lcai_cp_run run = { lay->start, lay->len, lay->zigzag, lay->T, lay->cu,
		lay->nseq };
	lca_status s;

	switch (v) {
	case LCA_SOFTMAX:
		s = lcai_cp_softmax(c, "softmax", plan, &run, in[0], in[1], in[2], o, lse);
		break;
	case LCA_MLA:
		s = lcai_cp_mla(c, "mla", plan, &run, in[0], in[1], in[2], in[3], in[4], in[5],
			o, lse);
		break;
	case LCA_DELTANET:
		s = lcai_cp_deltanet(c, "deltanet", plan, &run, in[0], in[1], in[2], in[3],
			in[4], state0, o, state);
		break;
	default:
		s = lcai_cp_lightning(c, "lightning", plan, &run, in[0], in[1], in[2], in[3],
			state0, o, state);
		break;
	}
	*bytes = c->payload_sent;
	return s;
}

/* The ways a test makes rank 1 (or 2) disagree. */
enum twist {
	TW_NONE, TW_LATE, TW_NO_Q, TW_KIND, TW_OVERLAP, TW_GAP, TW_CU, TW_T, TW_ZZ_START,
	TW_NO_CU, TW_N
};
static const char *const twist_name[TW_N] = {
	"none", "rank 1 one token late", "rank 1 without q", "rank 1 says zigzag, the others "
	"contiguous", "rank 1's run overlaps rank 0's", "a gap before rank 1's run",
	"rank 1 with other cu_seqlens", "rank 1 says another T (zigzag)",
	"rank 1 with another zigzag start", "rank 1 without cu_seqlens",
};

/* What the P threads share. plan[r] lets a test give a rank another plan;
 * twist changes one rank's arguments. */
struct job {
	const struct cp_data *d;
	const lca_plan *plan[MAXP];
	void *o, *lse, *state;
	lca_status s[MAXP];
	uint64_t bytes[MAXP];
	struct lcai_cp_comm comm[MAXP]; /* each rank's transport after the call */
	char msg[MAXP][512];
	int P;
	enum twist twist;
};

/* The job's twist (the threads of one job only read it). */
static enum twist the_twist;

/* A twisting call: changes rank 1's layout or inputs, then calls. */
static lca_status twist_call(void *ctx, lca_variant v, const lca_plan *plan,
	const struct cp_layout *lay, const void *const *in, const void *state0, void *o,
	void *lse, void *state, uint64_t *bytes)
{
	struct cp_layout l = *lay;
	const void *x[6];
	static const int64_t other_cu[] = { 0, 4, 4, 20, 20, 41, 41 };
	const int r = ((struct lcai_cp_comm *)ctx)->rank;
	const enum twist tw = the_twist;

	memcpy(x, in, sizeof x);
	if (r == 1) {
		switch (tw) {
		case TW_LATE: l.start += 1; break;
		case TW_NO_Q: x[0] = NULL; break;
		case TW_KIND: l.zigzag = !l.zigzag; break;
		case TW_OVERLAP: l.start -= 1; l.len += 1; break;
		case TW_GAP: l.start += 1; l.len -= 1; break;
		case TW_CU: l.cu = other_cu; break;
		case TW_T: l.T += 1; break;
		case TW_ZZ_START: l.start += 1; break;
		case TW_NO_CU: l.cu = NULL; l.nseq = 0; break;
		default: break;
		}
	}
	return loop_call(ctx, v, plan, &l, x, state0, o, lse, state, bytes);
}

/* The allocation of rank 1's call to fail (0: none), and whether it did. */
static long fail_at;
static int failed;

/* Rank 1 fails its fail_at-th allocation inside the library's call (the
 * test's own, around it, stay whole). */
static lca_status nomem_call(void *ctx, lca_variant v, const lca_plan *plan,
	const struct cp_layout *lay, const void *const *in, const void *state0, void *o,
	void *lse, void *state, uint64_t *bytes)
{
	const int r = ((struct lcai_cp_comm *)ctx)->rank;
	lca_status s;

	if (r == 1)
		fa_arm(fail_at);
	s = loop_call(ctx, v, plan, lay, in, state0, o, lse, state, bytes);
	if (r == 1)
		failed = fa_disarm();
	return s;
}

static void body(struct lcai_cp_comm *c, void *arg)
{
	struct job *j = arg;
	const int r = c->rank;

	if (fail_at > 0) {
		j->s[r] = cp_rank(j->d, j->plan[r], j->P, r, nomem_call, c, j->o, j->lse,
			j->state, &j->bytes[r]);
	} else if (j->twist == TW_NONE) {
		j->s[r] = cp_rank(j->d, j->plan[r], j->P, r, loop_call, c, j->o, j->lse,
			j->state, &j->bytes[r]);
	} else {
		j->s[r] = cp_rank(j->d, j->plan[r], j->P, r, twist_call, c, j->o, j->lse,
			j->state, &j->bytes[r]);
	}
	snprintf(j->msg[r], sizeof j->msg[r], "%s", lcai_cp_last_error());
}

/* Run d on P loopback ranks with plan on each; outputs in j. */
static void run_job(struct job *j, const struct cp_data *d, const lca_plan *plan, int P)
{
	j->d = d;
	j->P = P;
	for (int r = 0; r < P; r++)
		if (!j->plan[r])
			j->plan[r] = plan;
	cp_outputs(d, &j->o, &j->lse, &j->state);
	ck_assert_int_eq(lcai_loop_run(P, body, j, j->comm), 0);
}

static void free_job(struct job *j)
{
	free(j->o);
	free(j->lse);
	free(j->state);
}

static void assert_all_ok(const struct job *j, const char *what)
{
	for (int r = 0; r < j->P; r++)
		ck_assert_msg(j->s[r] == LCA_OK, "%s: rank %d of %d: %s (%s)", what, r, j->P,
			lca_strerror(j->s[r]), j->msg[r]);
}

static const lca_dtype dtypes[] = { LCA_F64, LCA_F32 };

static void name(char *what, size_t size, const struct cp_data *d, int P)
{
	snprintf(what, size, "%s %s %s P=%d T=%lld%s", d->c->name, d->t == LCA_F32 ? "f32" :
		"f64", d->zigzag ? "zigzag" : "contiguous", P, (long long)d->T,
		d->cu ? " packed" : "");
}

START_TEST(one_rank_is_the_plain_call_bit_for_bit)
{
	static const struct batch b1[] = { { 1, NULL, 1 }, { 13, NULL, 1 }, { 37, NULL, 1 },
		{ 41, cu41, 6 } };

	for (int ci = 0; ci < cp_nconf; ci++)
		for (int ti = 0; ti < 2; ti++)
			for (int li = 0; li < 8; li++) {
				const struct cp_conf *c = &cp_confs[ci];
				const struct batch *b = &b1[li / 2];
				lca_params p = cp_params(c, LCA_BACKEND_CPU, dtypes[ti]);
				lca_plan *plan = tu_plan(&p);
				struct cp_data d;
				struct job j;
				void *o, *lse, *state;
				char what[160];

				cp_make_batch(&d, c, dtypes[ti], b->T, li % 2, b->cu, b->nseq);
				memset(&j, 0, sizeof j);
				run_job(&j, &d, plan, 1);
				name(what, sizeof what, &d, 1);
				assert_all_ok(&j, what);
				cp_outputs(&d, &o, &lse, &state);
				tu_assert_ok(cp_single(&d, plan, o, c->v <= LCA_MLA ? lse : NULL,
					c->v <= LCA_MLA ? NULL : state));
				ck_assert_msg(!memcmp(o, j.o, (size_t)d.on * d.es), "%s: o differs", what);
				if (c->v <= LCA_MLA)
					ck_assert_msg(!memcmp(lse, j.lse, (size_t)d.ln * d.es),
						"%s: lse differs", what);
				else
					ck_assert_msg(!memcmp(state, j.state, (size_t)d.sn * d.es),
						"%s: state differs", what);
				free(o);
				free(lse);
				free(state);
				free_job(&j);
				cp_free(&d);
				lca_plan_destroy(plan);
			}
}
END_TEST

/* Every (conf, dtype, P, batch, layout) case; f judges one. */
static void each_case(int ndt, void (*f)(const struct cp_data *d, const struct job *j,
	const char *what))
{
	for (int ci = 0; ci < cp_nconf; ci++)
		for (int ti = 0; ti < ndt; ti++)
			for (int pi = 0; pi < 4; pi++)
				for (int bi = 0; bi < 2 * NBATCH; bi++) {
					const struct cp_conf *c = &cp_confs[ci];
					const struct batch *b = &batches[bi / 2];
					lca_params p = cp_params(c, LCA_BACKEND_CPU, dtypes[ti]);
					lca_plan *plan = tu_plan(&p);
					struct cp_data d;
					struct job j;
					char what[160];

					cp_make_batch(&d, c, dtypes[ti], b->T, bi % 2, b->cu, b->nseq);
					memset(&j, 0, sizeof j);
					run_job(&j, &d, plan, ranks[pi]);
					name(what, sizeof what, &d, ranks[pi]);
					assert_all_ok(&j, what);
					f(&d, &j, what);
					free_job(&j);
					cp_free(&d);
					lca_plan_destroy(plan);
				}
}

static void judge_case(const struct cp_data *d, const struct job *j, const char *what)
{
	char msg[256];

	ck_assert_msg(!cp_judge(d, j->o, j->lse, j->state, msg, sizeof msg), "%s: %s", what,
		msg);
	/* CP_SHOW_ERR=1: the errors, for the tables of the report */
	if (getenv("CP_SHOW_ERR"))
		printf("err|%s|%.3e|%.3e|%.3e|%.3e\n", what, cp_err[0], cp_tol[0], cp_err[1],
			cp_tol[1]);
}

START_TEST(ranks_agree_with_the_reference)
{
	each_case(2, judge_case);
}
END_TEST

/* control: one 216-byte header and four 8-byte status votes, each
 * delivered to the P - 1 others */
#define CONTROL(P) ((uint64_t)((P) - 1) * (216 + 4 * 8))

static void bytes_case(const struct cp_data *d, const struct job *j, const char *what)
{
	for (int r = 0; r < j->P; r++) {
		uint64_t span = cp_bytes_formula(d, j->P, r), closed;
		int ok;

		ck_assert_msg(j->bytes[r] == span, "%s: rank %d sent %llu bytes, the span "
			"rule says %llu", what, r, (unsigned long long)j->bytes[r],
			(unsigned long long)span);
		closed = cp_bytes_closed(d, j->P, r, &ok);
		ck_assert_msg(!ok || closed == span, "%s: rank %d: closed formula %llu, span "
			"rule %llu", what, r, (unsigned long long)closed, (unsigned long long)span);
		ck_assert_msg(j->comm[r].control_sent == CONTROL(j->P),
			"%s: rank %d sent %llu control bytes", what, r,
			(unsigned long long)j->comm[r].control_sent);
		/* CP_SHOW_BYTES=1: measured and modelled, for the report */
		if (getenv("CP_SHOW_BYTES"))
			printf("bytes|%s|%d|%llu|%llu|%lld\n", what, r,
				(unsigned long long)j->bytes[r], (unsigned long long)span,
				ok ? (long long)closed : -1LL);
	}
}

START_TEST(each_rank_sends_the_stated_bytes)
{
	each_case(1, bytes_case);
}
END_TEST

/* A failing job: every rank fails with the same status, no output written. */
static void assert_all_fail(const struct job *j, const struct cp_data *d, const char *what)
{
	char *zero = calloc((size_t)d->on + 1, d->es);

	for (int r = 0; r < j->P; r++) {
		ck_assert_msg(j->s[r] != LCA_OK, "%s: rank %d succeeded", what, r);
		ck_assert_msg(j->s[r] == j->s[0], "%s: rank %d says %s, rank 0 %s", what, r,
			lca_strerror(j->s[r]), lca_strerror(j->s[0]));
		ck_assert_msg(j->msg[r][0] != '\0', "%s: rank %d gave no message", what, r);
	}
	ck_assert_msg(!memcmp(zero, j->o, (size_t)d->on * d->es), "%s: o written", what);
	free(zero);
}

/* One disagreement on 4 ranks: plan_dv gives rank 2 another dv. */
static void disagree(const struct cp_conf *c, enum twist tw, int zigzag, int packed,
	int plan_dv)
{
	lca_params p = cp_params(c, LCA_BACKEND_CPU, LCA_F64), p2 = p;
	lca_plan *plan = tu_plan(&p), *other = NULL;
	struct cp_data d;
	struct job j;
	char what[200];

	cp_make_batch(&d, c, LCA_F64, 41, zigzag, packed ? cu41 : NULL, 6);
	memset(&j, 0, sizeof j);
	if (plan_dv) {
		p2.dv += 1;
		other = tu_plan(&p2);
		j.plan[2] = other;
	}
	j.twist = tw;
	the_twist = tw;
	run_job(&j, &d, plan, 4);
	snprintf(what, sizeof what, "%s, %s %s: %s", c->name, zigzag ? "zigzag" :
		"contiguous", packed ? "packed" : "one sequence",
		plan_dv ? "rank 2 with another dv" : twist_name[tw]);
	assert_all_fail(&j, &d, what);
	free_job(&j);
	cp_free(&d);
	lca_plan_destroy(plan);
	lca_plan_destroy(other);
}

START_TEST(ranks_that_disagree_on_the_plan_all_fail)
{
	for (int ci = 0; ci < cp_nconf; ci++)
		for (int zz = 0; zz < 2; zz++) {
			disagree(&cp_confs[ci], TW_NONE, zz, 0, 1);
			disagree(&cp_confs[ci], TW_NO_Q, zz, 1, 0);
		}
}
END_TEST

START_TEST(ranks_that_disagree_on_the_layout_all_fail)
{
	for (int ci = 0; ci < cp_nconf; ci++) {
		const struct cp_conf *c = &cp_confs[ci];

		disagree(c, TW_LATE, 0, 0, 0);
		disagree(c, TW_OVERLAP, 0, 1, 0);
		disagree(c, TW_GAP, 0, 0, 0);
		disagree(c, TW_KIND, 0, 0, 0);
		disagree(c, TW_KIND, 1, 1, 0);
		disagree(c, TW_CU, 0, 1, 0);
		disagree(c, TW_CU, 1, 1, 0);
		disagree(c, TW_NO_CU, 1, 1, 0);
		disagree(c, TW_T, 1, 0, 0);
		disagree(c, TW_ZZ_START, 1, 0, 0);
	}
}
END_TEST

START_TEST(more_ranks_than_tokens)
{
	for (int ci = 0; ci < cp_nconf; ci++)
		for (int64_t T = 1; T <= 3; T++)
			for (int zz = 0; zz < 2; zz++) {
				const struct cp_conf *c = &cp_confs[ci];
				lca_params p = cp_params(c, LCA_BACKEND_CPU, LCA_F64);
				lca_plan *plan = tu_plan(&p);
				struct cp_data d;
				struct job j;
				char what[160];

				cp_make_batch(&d, c, LCA_F64, T, zz, NULL, 1);
				memset(&j, 0, sizeof j);
				run_job(&j, &d, plan, 7);
				name(what, sizeof what, &d, 7);
				assert_all_ok(&j, what);
				judge_case(&d, &j, what);
				bytes_case(&d, &j, what);
				free_job(&j);
				cp_free(&d);
				lca_plan_destroy(plan);
			}
}
END_TEST

/* Contiguous runs of any lengths, empty ones between full ones, one
 * sequence and packed: the reference, and the bytes by both rules. */
START_TEST(uneven_contiguous_runs)
{
	static const int64_t cuts[][5] = { { 0, 30, 30, 31, 41 }, { 0, 0, 0, 41, 41 },
		{ 0, 1, 2, 3, 41 }, { 0, 20, 20, 20, 41 } };

	for (int ci = 0; ci < cp_nconf; ci++)
		for (int ti = 0; ti < 2; ti++)
			for (int k = 0; k < 8; k++) {
				const struct cp_conf *c = &cp_confs[ci];
				lca_params p = cp_params(c, LCA_BACKEND_CPU, dtypes[ti]);
				lca_plan *plan = tu_plan(&p);
				struct cp_data d;
				struct job j;
				char what[200];

				cp_make_batch(&d, c, dtypes[ti], 41, 0, k % 2 ? cu41 : NULL, 6);
				d.cuts = cuts[k / 2];
				memset(&j, 0, sizeof j);
				run_job(&j, &d, plan, 4);
				name(what, sizeof what, &d, 4);
				snprintf(what + strlen(what), sizeof what - strlen(what),
					" runs %lld %lld %lld %lld", (long long)cuts[k / 2][1],
					(long long)cuts[k / 2][2], (long long)cuts[k / 2][3],
					(long long)cuts[k / 2][4]);
				assert_all_ok(&j, what);
				judge_case(&d, &j, what);
				bytes_case(&d, &j, what);
				free_job(&j);
				cp_free(&d);
				lca_plan_destroy(plan);
			}
}
END_TEST

/* Each allocation the library makes on rank 1 of 3 fails in turn, over
 * every conf, one sequence and a packed batch: every rank returns
 * LCA_ERR_NOMEM (rank 1 its own, the others the vote's), none waits
 * forever for rank 1 (a hang ends in the test's timeout), and the run
 * after the last allocation succeeds. */
START_TEST(a_rank_out_of_memory_fails_every_rank)
{
	for (int ci = 0; ci < cp_nconf; ci++)
		for (int bi = 0; bi < 2; bi++) {
			const struct cp_conf *c = &cp_confs[ci];
			lca_params p = cp_params(c, LCA_BACKEND_CPU, LCA_F64);
			lca_plan *plan = tu_plan(&p);
			struct cp_data d;
			char what[160];
			long n;

			cp_make_batch(&d, c, LCA_F64, 41, bi, bi ? cu41 : NULL, 6);
			name(what, sizeof what, &d, 3);
			for (n = 1;; n++) {
				struct job j;

				memset(&j, 0, sizeof j);
				fail_at = n;
				run_job(&j, &d, plan, 3);
				fail_at = 0;
				if (!failed) {
					assert_all_ok(&j, what);
					free_job(&j);
					break;
				}
				for (int r = 0; r < 3; r++)
					ck_assert_msg(j.s[r] == LCA_ERR_NOMEM, "%s, allocation %ld of "
						"rank 1 failed: rank %d returned %s (%s)", what, n, r,
						lca_strerror(j.s[r]), j.msg[r]);
				free_job(&j);
			}
			/* the header vote, the view, the algorithm's buffers */
			ck_assert_msg(n > 3, "%s: only %ld allocations failed", what, n - 1);
			cp_free(&d);
			lca_plan_destroy(plan);
		}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cp_loop");
	TCase *tc = tu_tcase("cp_loop");

	tcase_add_test(tc, one_rank_is_the_plain_call_bit_for_bit);
	tcase_add_test(tc, ranks_agree_with_the_reference);
	tcase_add_test(tc, each_rank_sends_the_stated_bytes);
	tcase_add_test(tc, ranks_that_disagree_on_the_plan_all_fail);
	tcase_add_test(tc, ranks_that_disagree_on_the_layout_all_fail);
	tcase_add_test(tc, more_ranks_than_tokens);
	tcase_add_test(tc, uneven_contiguous_runs);
	tcase_add_test(tc, a_rank_out_of_memory_fails_every_rank);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
