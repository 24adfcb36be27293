/*
 * check_cp_loop.c - context parallelism on P simulated ranks (the
 * loopback transport of lib/mpi, threads of this process), running the
 * code liblcattn_mpi runs over MPI. One rank is the plain call bit for
 * bit; P = 2, 3, 4, 7 ranks (runs cut mid-chunk and mid-block, windows,
 * grouped heads, more ranks than tokens) agree with the double reference
 * by the tolerance rule (DESIGN.md); each rank sends the bytes
 * lca_mpi_softmax_forward(3) states; ranks that disagree all fail.
 * cpu backend, one thread per rank.
 */
#include "testutil.h"
#include "cpcase.h"
#include "cp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXP 8

static const int ranks[] = { 2, 3, 4, 7 };
/* T = 5 leaves ranks empty at P = 7; 37 and 53 cut chunks (8, 16) and
 * blocks in the middle at every P above. */
static const int64_t lengths[] = { 5, 37, 53 };

/* The loopback transport's call: ctx is the rank's struct lcai_cp_comm. */
static lca_status loop_call(void *ctx, lca_variant v, const lca_plan *plan,
	int64_t start, int64_t len, const void *const *in, const void *state0, void *o,
	void *lse, void *state, uint64_t *bytes)
{
	struct lcai_cp_comm *c = ctx;
	const struct lcai_cp_run run = { start, len };
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

/* What the P threads share. plan[r] lets a test give a rank another plan;
 * twist(r, ...) lets it change one rank's arguments. */
struct job {
	const struct cp_data *d;
	const lca_plan *plan[MAXP];
	void *o, *lse, *state;
	lca_status s[MAXP];
	uint64_t bytes[MAXP];
	struct lcai_cp_comm comm[MAXP]; /* each rank's transport after the call */
	char msg[MAXP][512];
	int P;
	int twist;   /* 0 none; 1 rank 1 starts one token late; 2 rank 1 has no q */
};

static void body(struct lcai_cp_comm *c, void *arg)
{
	struct job *j = arg;
	const struct cp_data *d = j->d;
	const int r = c->rank;

	if (j->twist == 0) {
		j->s[r] = cp_rank(d, j->plan[r], j->P, r, loop_call, c, j->o, j->lse, j->state,
			&j->bytes[r]);
	} else {
		/* the twisted rank's call, by hand */
		const void *in[6];
		int64_t start, len;

		cp_split(d->T, j->P, r, &start, &len);
		for (int i = 0; i < d->nin; i++)
			in[i] = (const char *)d->tx[i] + (size_t)(d->row[i] * start) * d->es;
		if (r == 1 && j->twist == 1)
			start += 1;
		if (r == 1 && j->twist == 2)
			in[0] = NULL;
		j->s[r] = loop_call(c, d->c->v, j->plan[r], start, len, in, d->tstate0,
			(char *)j->o + (size_t)(start * d->c->H * d->c->dv) * d->es,
			(char *)j->lse + (size_t)(start * d->c->H) * d->es, j->state, &j->bytes[r]);
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

START_TEST(one_rank_is_the_plain_call_bit_for_bit)
{
	static const int64_t T1[] = { 1, 13, 37 };

	for (int ci = 0; ci < cp_nconf; ci++)
		for (int ti = 0; ti < 2; ti++)
			for (int li = 0; li < 3; li++) {
				const struct cp_conf *c = &cp_confs[ci];
				lca_params p = cp_params(c, LCA_BACKEND_CPU, dtypes[ti]);
				lca_plan *plan = tu_plan(&p);
				struct cp_data d;
				struct job j;
				void *o, *lse, *state;
				char what[128];

				cp_make(&d, c, dtypes[ti], T1[li]);
				memset(&j, 0, sizeof j);
				run_job(&j, &d, plan, 1);
				snprintf(what, sizeof what, "%s %s T=%lld", c->name,
					ti ? "f32" : "f64", (long long)d.T);
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

/* Every (conf, dtype, P, T) case; f(c, d, j, what) judges one. */
static void each_case(void (*f)(const struct cp_data *d, const struct job *j,
	const char *what))
{
	for (int ci = 0; ci < cp_nconf; ci++)
		for (int ti = 0; ti < 2; ti++)
			for (int pi = 0; pi < 4; pi++)
				for (int li = 0; li < 3; li++) {
					const struct cp_conf *c = &cp_confs[ci];
					lca_params p = cp_params(c, LCA_BACKEND_CPU, dtypes[ti]);
					lca_plan *plan = tu_plan(&p);
					struct cp_data d;
					struct job j;
					char what[160];

					cp_make(&d, c, dtypes[ti], lengths[li]);
					memset(&j, 0, sizeof j);
					run_job(&j, &d, plan, ranks[pi]);
					snprintf(what, sizeof what, "%s %s P=%d T=%lld", c->name,
						ti ? "f32" : "f64", ranks[pi], (long long)d.T);
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
}

START_TEST(ranks_agree_with_the_reference)
{
	each_case(judge_case);
}
END_TEST

static void bytes_case(const struct cp_data *d, const struct job *j, const char *what)
{
	/* non-causal: the formula is stated for runs that are all non-empty */
	if (!d->c->causal && (d->c->v == LCA_SOFTMAX || d->c->v == LCA_MLA) && d->T < j->P)
		return;
	for (int r = 0; r < j->P; r++)
		ck_assert_msg(j->bytes[r] == cp_bytes_formula(d, j->P, r),
			"%s: rank %d sent %llu bytes, the formula says %llu", what, r,
			(unsigned long long)j->bytes[r],
			(unsigned long long)cp_bytes_formula(d, j->P, r));
	/* control: one 176-byte header and three 8-byte status votes, each
	 * delivered to the P - 1 others */
	for (int r = 0; r < j->P; r++)
		ck_assert_msg(j->comm[r].control_sent == (uint64_t)(j->P - 1) * (176 + 3 * 8),
			"%s: rank %d sent %llu control bytes", what, r,
			(unsigned long long)j->comm[r].control_sent);
}

START_TEST(each_rank_sends_the_stated_bytes)
{
	each_case(bytes_case);
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

START_TEST(ranks_that_disagree_all_fail)
{
	for (int ci = 0; ci < cp_nconf; ci++)
		for (int kind = 0; kind < 3; kind++) {
			const struct cp_conf *c = &cp_confs[ci];
			lca_params p = cp_params(c, LCA_BACKEND_CPU, LCA_F64), p2 = p;
			lca_plan *plan = tu_plan(&p), *other = NULL;
			struct cp_data d;
			struct job j;
			char what[128];

			cp_make(&d, c, LCA_F64, 23);
			memset(&j, 0, sizeof j);
			if (kind == 0) { /* rank 2 has a plan with other sizes */
				p2.dv += 1;
				other = tu_plan(&p2);
				j.plan[2] = other;
			}
			j.twist = kind; /* 1: rank 1 starts late; 2: rank 1 has no q */
			run_job(&j, &d, plan, 4);
			snprintf(what, sizeof what, "%s, %s", c->name,
				kind == 0 ? "rank 2 with another dv" :
				kind == 1 ? "rank 1 one token late" : "rank 1 without q");
			assert_all_fail(&j, &d, what);
			free_job(&j);
			cp_free(&d);
			lca_plan_destroy(plan);
			lca_plan_destroy(other);
		}
}
END_TEST

START_TEST(more_ranks_than_tokens)
{
	for (int ci = 0; ci < cp_nconf; ci++)
		for (int64_t T = 1; T <= 3; T++) {
			const struct cp_conf *c = &cp_confs[ci];
			lca_params p = cp_params(c, LCA_BACKEND_CPU, LCA_F64);
			lca_plan *plan = tu_plan(&p);
			struct cp_data d;
			struct job j;
			char what[128];

			cp_make(&d, c, LCA_F64, T);
			memset(&j, 0, sizeof j);
			run_job(&j, &d, plan, 7);
			snprintf(what, sizeof what, "%s P=7 T=%lld", c->name, (long long)T);
			assert_all_ok(&j, what);
			judge_case(&d, &j, what);
			free_job(&j);
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
	tcase_add_test(tc, ranks_that_disagree_all_fail);
	tcase_add_test(tc, more_ranks_than_tokens);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
