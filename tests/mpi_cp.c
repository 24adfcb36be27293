/*
 * mpi_cp.c - the cases of check_cp_loop over real MPI ranks (run by
 * tests/mpi.sh under mpirun): each rank calls lca_mpi_*_forward() on its
 * run, the rows are summed into every rank (each row comes from one rank
 * only, so the sum is exact) and rank 0 judges them by the tolerance
 * rule; every rank's payload bytes must equal the formula of
 * lca_mpi_softmax_forward(3); ranks that disagree must all fail with one
 * status. cpu backend, one thread per rank. Exit 0 when all pass.
 */
#include <lcattn_mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpcase.h"
#include "testutil.h"

static lca_status mpi_call(void *ctx, lca_variant v, const lca_plan *plan,
	const struct cp_layout *l, const void *const *in, const void *state0, void *o,
	void *lse, void *state, uint64_t *bytes)
{
	MPI_Comm comm = *(MPI_Comm *)ctx;
	const lca_mpi_layout lay = { l->start, l->len, l->zigzag ? LCA_MPI_ZIGZAG :
		LCA_MPI_CONTIGUOUS, l->T, l->cu, l->nseq };
	lca_mpi_stats st = { 0, 0 };
	lca_status s;

	switch (v) {
	case LCA_SOFTMAX:
		s = lca_mpi_softmax_forward(plan, comm, &lay, in[0], in[1], in[2], o, lse, &st);
		break;
	case LCA_MLA:
		s = lca_mpi_mla_forward(plan, comm, &lay, in[0], in[1], in[2], in[3], in[4],
			in[5], o, lse, &st);
		break;
	case LCA_DELTANET:
		s = lca_mpi_deltanet_forward(plan, comm, &lay, in[0], in[1], in[2], in[3], in[4],
			state0, o, state, &st);
		break;
	default:
		s = lca_mpi_lightning_forward(plan, comm, &lay, in[0], in[1], in[2], in[3],
			state0, o, state, &st);
		break;
	}
	*bytes = st.bytes_sent;
	return s;
}

static int rank, nranks, failures;

static void report_fail(const char *what, const char *msg)
{
	if (rank == 0)
		printf("FAIL: %s: %s\n", what, msg);
	failures++;
}

/* The sum over ranks of x [n] (dtype of d), in place on every rank. */
static void sum_all(const struct cp_data *d, void *x, int64_t n)
{
	MPI_Allreduce(MPI_IN_PLACE, x, (int)n, d->t == LCA_F64 ? MPI_DOUBLE : MPI_FLOAT,
		MPI_SUM, MPI_COMM_WORLD);
}

static void one_case(const struct cp_conf *c, lca_dtype t, int64_t T)
{
	lca_params p = cp_params(c, LCA_BACKEND_CPU, t);
	lca_plan *plan = NULL;
	struct cp_data d;
	void *o, *lse, *state;
	uint64_t bytes = 0, *all = calloc((size_t)nranks, sizeof *all);
	lca_status s;
	MPI_Comm comm = MPI_COMM_WORLD;
	char what[160], msg[256];
	int st, worst;

	tu_reset();
	cp_make(&d, c, t, T);
	cp_outputs(&d, &o, &lse, &state);
	snprintf(what, sizeof what, "%s %s P=%d T=%lld", c->name, t == LCA_F64 ? "f64" : "f32",
		nranks, (long long)T);
	if (lca_plan_create(&p, &plan) != LCA_OK || !all)
		abort();
	s = cp_rank(&d, plan, nranks, rank, mpi_call, &comm, o, lse, state, &bytes);
	st = s;
	MPI_Allreduce(&st, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	if (worst != LCA_OK) {
		snprintf(msg, sizeof msg, "%s (%s)", lca_strerror(s), lca_mpi_last_error());
		report_fail(what, msg);
	} else {
		sum_all(&d, o, d.on);
		sum_all(&d, lse, d.ln);
		sum_all(&d, state, d.sn);
		if (cp_judge(&d, o, lse, state, msg, sizeof msg))
			report_fail(what, msg);
		MPI_Allgather(&bytes, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
		for (int r = 0; r < nranks; r++)
			if (all[r] != cp_bytes_formula(&d, nranks, r) &&
			    (c->causal || c->v > LCA_MLA || T >= nranks)) {
				snprintf(msg, sizeof msg, "rank %d sent %llu bytes, formula %llu", r,
					(unsigned long long)all[r],
					(unsigned long long)cp_bytes_formula(&d, nranks, r));
				report_fail(what, msg);
			}
	}
	free(all);
	free(o);
	free(lse);
	free(state);
	cp_free(&d);
	lca_plan_destroy(plan);
}

/* Rank 1 has a plan with another dv: every rank fails, the same way. */
static void disagreement(const struct cp_conf *c)
{
	lca_params p = cp_params(c, LCA_BACKEND_CPU, LCA_F64);
	lca_plan *plan = NULL;
	struct cp_data d;
	void *o, *lse, *state;
	uint64_t bytes;
	MPI_Comm comm = MPI_COMM_WORLD;
	char what[160];
	int st[2], lo[2], hi[2];

	tu_reset();
	cp_make(&d, c, LCA_F64, 23);
	cp_outputs(&d, &o, &lse, &state);
	if (rank == 1)
		p.dv += 1;
	if (lca_plan_create(&p, &plan) != LCA_OK)
		abort();
	st[0] = cp_rank(&d, plan, nranks, rank, mpi_call, &comm, o, lse, state, &bytes);
	st[1] = -st[0];
	MPI_Allreduce(st, hi, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	lo[0] = -hi[1];
	snprintf(what, sizeof what, "%s: rank 1 with another dv", c->name);
	if (lo[0] == LCA_OK)
		report_fail(what, "a rank succeeded");
	else if (lo[0] != hi[0])
		report_fail(what, "the ranks returned different statuses");
	free(o);
	free(lse);
	free(state);
	cp_free(&d);
	lca_plan_destroy(plan);
}

int main(int argc, char **argv)
{
	static const int64_t lengths[] = { 2, 5, 37, 53 };
	unsigned long long seed = 0;
	char buf[32];
	int total;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	/* one seed for all ranks: rank 0's */
	if (rank == 0)
		seed = tu_init();
	MPI_Bcast(&seed, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
	if (rank != 0) {
		snprintf(buf, sizeof buf, "%llu", seed);
		setenv("LCA_TEST_SEED", buf, 1);
		fclose(stdout); /* tu_init prints the seed: rank 0 says it */
		stdout = fopen("/dev/null", "w");
		tu_init();
	}
	for (int ci = 0; ci < cp_nconf; ci++) {
		for (int ti = 0; ti < 2; ti++)
			for (int li = 0; li < 4; li++)
				one_case(&cp_confs[ci], ti ? LCA_F32 : LCA_F64, lengths[li]);
		if (nranks > 1)
			disagreement(&cp_confs[ci]);
	}
	MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	if (rank == 0)
		printf("%s: %d ranks, %d cases%s\n", total ? "FAIL" : "ok", nranks,
			cp_nconf * (2 * 4 + (nranks > 1)), total ? "" : ", all within the rule and the byte formulas");
	MPI_Finalize();
	return total ? 1 : 0;
}
