/*
 * mpi_decode.c - the cases of check_cp_decode over real MPI ranks (run by
 * tests/mpi.sh under mpirun): each rank holds a run of the cache and calls
 * lca_mpi_softmax_decode() or lca_mpi_mla_decode() with the same queries;
 * rank 0 judges its result by the tolerance rule, every rank's o and lse
 * must be rank 0's bit for bit, and every rank's payload and control bytes
 * those of lca_mpi_softmax_decode(3). cpu backend, one thread per rank.
 * Exit 0 when all pass.
 */
#include <lcattn_mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpdec.h"
#include "testutil.h"

static lca_status mpi_call(void *ctx, lca_variant v, const lca_plan *plan, int zigzag,
	int64_t T, int64_t start, int64_t len, int64_t tq, const void *const *in, void *o,
	void *lse, uint64_t *bytes, uint64_t *control)
{
	MPI_Comm comm = *(MPI_Comm *)ctx;
	const lca_mpi_layout lay = { start, len, zigzag ? LCA_MPI_ZIGZAG : LCA_MPI_CONTIGUOUS,
		zigzag ? T : 0, NULL, 0 };
	lca_mpi_stats st = { 0, 0 };
	lca_status s;

	if (v == LCA_SOFTMAX)
		s = lca_mpi_softmax_decode(plan, comm, &lay, tq, in[0], in[1], in[2], o, lse, &st);
	else
		s = lca_mpi_mla_decode(plan, comm, &lay, tq, in[0], in[1], in[2], in[3], in[4],
			in[5], o, lse, &st);
	*bytes = st.bytes_sent;
	*control = st.control_sent;
	return s;
}

static int rank, nranks, failures, ncases;

static void report_fail(const char *what, const char *msg)
{
	if (rank == 0)
		printf("FAIL: %s: %s\n", what, msg);
	failures++;
}

/* 1 on every rank when x [bytes] is rank 0's on every rank. */
static int same_everywhere(const void *x, size_t bytes)
{
	char *mine = malloc(bytes + 1);
	int diff, any;

	if (!mine)
		abort();
	memcpy(mine, x, bytes);
	MPI_Bcast(mine, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
	diff = memcmp(mine, x, bytes) != 0;
	MPI_Allreduce(&diff, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	free(mine);
	return !any;
}

static void one_case(const struct cp_conf *c, lca_dtype t, int64_t T, int64_t tq, int mode)
{
	lca_params p = cp_params(c, LCA_BACKEND_CPU, t);
	lca_plan *plan = NULL;
	struct cp_data d;
	const size_t on = (size_t)(tq * c->H * c->dv), ln = (size_t)(tq * c->H);
	void *o, *lse;
	uint64_t bytes = 0, control = 0, nb[2], wb[2];
	MPI_Comm comm = MPI_COMM_WORLD;
	char what[192], msg[256];
	lca_status s;
	int st, worst;

	tu_reset();
	cp_make(&d, c, t, T);
	o = calloc(on + 1, d.es);
	lse = calloc(ln + 1, d.es);
	if (!o || !lse || lca_plan_create(&p, &plan) != LCA_OK)
		abort();
	ncases++;
	snprintf(what, sizeof what, "%s %s P=%d T=%lld tq=%lld split %d", c->name,
		t == LCA_F64 ? "f64" : "f32", nranks, (long long)T, (long long)tq, mode);
	s = dec_rank(&d, plan, nranks, rank, mode, tq, mpi_call, &comm, o, lse, &bytes,
		&control);
	st = s;
	MPI_Allreduce(&st, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	if (worst != LCA_OK) {
		snprintf(msg, sizeof msg, "%s (%s)", lca_strerror(s), lca_mpi_last_error());
		report_fail(what, msg);
	} else {
		int bad = rank == 0 && dec_judge(&d, tq, o, lse, msg, sizeof msg), any;

		MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
		if (bad)
			report_fail(what, msg);
		if (!same_everywhere(o, on * d.es) || !same_everywhere(lse, ln * d.es))
			report_fail(what, "a rank's o or lse differs from rank 0's");
		nb[0] = bytes != dec_bytes(&d, nranks, tq);
		nb[1] = control != dec_control(nranks);
		MPI_Allreduce(nb, wb, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
		any = wb[0] || wb[1];
		if (any) {
			snprintf(msg, sizeof msg, "a rank's bytes differ from the formula (rank %d: "
				"%llu payload, %llu control; formula %llu, %llu)", rank,
				(unsigned long long)bytes, (unsigned long long)control,
				(unsigned long long)dec_bytes(&d, nranks, tq),
				(unsigned long long)dec_control(nranks));
			report_fail(what, msg);
		}
	}
	free(o);
	free(lse);
	cp_free(&d);
	lca_plan_destroy(plan);
}

int main(int argc, char **argv)
{
	static const int64_t lengths[] = { 2, 5, 37, 53 };
	static const int64_t tqs[] = { 1, 2, 7 };
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
		if (cp_confs[ci].v > LCA_MLA)
			continue;
		for (int ti = 0; ti < 2; ti++)
			for (int li = 0; li < 4; li++)
				for (int qi = 0; qi < 3; qi++)
					for (int mode = 0; mode < DEC_NSPLIT; mode++)
						if (tqs[qi] <= lengths[li])
							one_case(&cp_confs[ci], ti ? LCA_F32 : LCA_F64,
								lengths[li], tqs[qi], mode);
	}
	MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	if (rank == 0)
		printf("%s: %d ranks, %d decode cases%s\n", total ? "FAIL" : "ok", nranks, ncases,
			total ? "" : ", all within the rule, the same on every rank, bytes as stated");
	MPI_Finalize();
	return total ? 1 : 0;
}
