/*
 * mpi_cp.c - the cases of check_cp_loop over real MPI ranks (run by
 * tests/mpi.sh under mpirun): each rank calls lca_mpi_*_forward() on its
 * rows (contiguous or zigzag, one sequence or a packed batch), the rows
 * are summed into every rank (each row comes from one rank only, so the
 * sum is exact) and rank 0 judges them by the tolerance rule; every
 * rank's payload bytes must equal the span rule and, where one applies,
 * the closed formula of lca_mpi_softmax_forward(3); ranks that disagree
 * on the plan or the layout must all fail with one status; a
 * communicator of one rank is the plain call bit for bit; the caller's
 * pending messages and error handler on comm are left alone. cpu
 * backend, one thread per rank. Exit 0 when all pass.
 */
#include <lcattn_mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpcase.h"
#include "testutil.h"

static int rank, nranks, failures;

/* The ways rank 1 disagrees on the layout (check_cp_loop's twists). */
enum twist { TW_NONE, TW_KIND, TW_OVERLAP, TW_GAP, TW_CU, TW_T, TW_N };
static const char *const twist_name[TW_N] = {
	"none", "rank 1 says the other layout kind", "rank 1's run overlaps rank 0's",
	"a gap before rank 1's run", "rank 1 with other cu_seqlens",
	"rank 1 says another T",
};
static enum twist the_twist;

static void twist(lca_mpi_layout *l)
{
	static const int64_t other_cu[] = { 0, 4, 4, 20, 20, 41, 41 };

	if (rank != 1)
		return;
	switch (the_twist) {
	case TW_KIND: l->kind = l->kind == LCA_MPI_ZIGZAG ? LCA_MPI_CONTIGUOUS : LCA_MPI_ZIGZAG; break;
	case TW_OVERLAP: l->start -= 1; l->len += 1; break;
	case TW_GAP: l->start += 1; l->len -= 1; break;
	case TW_CU: l->cu_seqlens = other_cu; break;
	case TW_T: l->T += 1; break;
	default: break;
	}
}

static lca_status mpi_call(void *ctx, lca_variant v, const lca_plan *plan,
	const struct cp_layout *l, const void *const *in, const void *state0, void *o,
	void *lse, void *state, uint64_t *bytes)
{
	MPI_Comm comm = *(MPI_Comm *)ctx;
	lca_mpi_layout lay = { l->start, l->len, l->zigzag ? LCA_MPI_ZIGZAG :
		LCA_MPI_CONTIGUOUS, l->T, l->cu, l->nseq };
	lca_mpi_stats st = { 0, 0 };
	lca_status s;

	twist(&lay);
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

static const int64_t cu41[] = { 0, 3, 3, 20, 20, 41, 41 };
static const int64_t cu53[] = { 0, 1, 30, 53 };
static const struct batch {
	int64_t T;
	const int64_t *cu;
	int64_t nseq;
} batches[] = {
	{ 2, NULL, 1 }, { 5, NULL, 1 }, { 37, NULL, 1 }, { 53, NULL, 1 }, { 41, cu41, 6 },
	{ 53, cu53, 3 },
};
#define NBATCH ((int)(sizeof batches / sizeof batches[0]))

static void one_case(const struct cp_conf *c, lca_dtype t, const struct batch *b, int zz)
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
	cp_make_batch(&d, c, t, b->T, zz, b->cu, b->nseq);
	cp_outputs(&d, &o, &lse, &state);
	snprintf(what, sizeof what, "%s %s %s P=%d T=%lld%s", c->name,
		t == LCA_F64 ? "f64" : "f32", zz ? "zigzag" : "contiguous", nranks,
		(long long)b->T, b->cu ? " packed" : "");
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
		else if (rank == 0 && getenv("CP_SHOW_ERR"))
			printf("err|%s|%.3e|%.3e|%.3e|%.3e\n", what, cp_err[0], cp_tol[0],
				cp_err[1], cp_tol[1]);
		MPI_Allgather(&bytes, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
		for (int r = 0; r < nranks; r++) {
			uint64_t span = cp_bytes_formula(&d, nranks, r), closed;
			int ok;

			closed = cp_bytes_closed(&d, nranks, r, &ok);
			if (all[r] != span || (ok && closed != span)) {
				snprintf(msg, sizeof msg, "rank %d sent %llu bytes, span rule %llu, "
					"closed formula %llu", r, (unsigned long long)all[r],
					(unsigned long long)span, ok ? (unsigned long long)closed : 0ull);
				report_fail(what, msg);
			}
		}
	}
	free(all);
	free(o);
	free(lse);
	free(state);
	cp_free(&d);
	lca_plan_destroy(plan);
}

/* Rank 1 has a plan with another dv (dv) or twists the layout: every
 * rank fails, the same way. */
static void disagreement(const struct cp_conf *c, int dv, enum twist tw, int zz, int packed)
{
	lca_params p = cp_params(c, LCA_BACKEND_CPU, LCA_F64);
	lca_plan *plan = NULL;
	struct cp_data d;
	void *o, *lse, *state;
	uint64_t bytes;
	MPI_Comm comm = MPI_COMM_WORLD;
	char what[200];
	int st[2], hi[2];

	tu_reset();
	cp_make_batch(&d, c, LCA_F64, 41, zz, packed ? cu41 : NULL, 6);
	cp_outputs(&d, &o, &lse, &state);
	if (rank == 1 && dv)
		p.dv += 1;
	if (lca_plan_create(&p, &plan) != LCA_OK)
		abort();
	the_twist = tw;
	st[0] = cp_rank(&d, plan, nranks, rank, mpi_call, &comm, o, lse, state, &bytes);
	the_twist = TW_NONE;
	st[1] = -st[0];
	MPI_Allreduce(st, hi, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	snprintf(what, sizeof what, "%s, %s%s: %s", c->name, zz ? "zigzag" : "contiguous",
		packed ? " packed" : "", dv ? "rank 1 with another dv" : twist_name[tw]);
	if (-hi[1] == LCA_OK)
		report_fail(what, "a rank succeeded");
	else if (-hi[1] != hi[0])
		report_fail(what, "the ranks returned different statuses");
	free(o);
	free(lse);
	free(state);
	cp_free(&d);
	lca_plan_destroy(plan);
}

/* A communicator of one rank (MPI_COMM_SELF) holding the whole batch: the
 * plain call, bit for bit, on every rank. */
static void self_comm(const struct cp_conf *c, int zz)
{
	lca_params p = cp_params(c, LCA_BACKEND_CPU, LCA_F64);
	lca_plan *plan = NULL;
	struct cp_data d;
	void *o, *lse, *state, *o1, *lse1, *state1;
	uint64_t bytes;
	MPI_Comm comm = MPI_COMM_SELF;
	const int lin = c->v > LCA_MLA;
	char what[160];
	lca_status s;

	tu_reset();
	cp_make_batch(&d, c, LCA_F64, 41, zz, cu41, 6);
	cp_outputs(&d, &o, &lse, &state);
	cp_outputs(&d, &o1, &lse1, &state1);
	if (lca_plan_create(&p, &plan) != LCA_OK)
		abort();
	snprintf(what, sizeof what, "%s %s on MPI_COMM_SELF", c->name, zz ? "zigzag" :
		"contiguous");
	s = cp_rank(&d, plan, 1, 0, mpi_call, &comm, o, lse, state, &bytes);
	if (s != LCA_OK || cp_single(&d, plan, o1, lin ? NULL : lse1, lin ? state1 : NULL))
		report_fail(what, lca_mpi_last_error());
	else if (memcmp(o, o1, (size_t)d.on * d.es) ||
	    (lin ? memcmp(state, state1, (size_t)d.sn * d.es) :
	    memcmp(lse, lse1, (size_t)d.ln * d.es)) || bytes != 0)
		report_fail(what, "not the plain call bit for bit");
	free(o);
	free(lse);
	free(state);
	free(o1);
	free(lse1);
	free(state1);
	cp_free(&d);
	lca_plan_destroy(plan);
}

/* The caller's messages pending on comm (tags 0 and 1, the ring's own,
 * sent before the call and received after it) reach the caller intact,
 * and comm keeps its error handler (MPI_ERRORS_ARE_FATAL by default). */
static void callers_comm_untouched(void)
{
	int out[2] = { 1000 + rank, 2000 + rank }, in[2] = { -1, -1 }, eq = 0;
	const int next = (rank + 1) % nranks, prev = (rank - 1 + nranks) % nranks;
	MPI_Request rq[4];
	MPI_Errhandler eh;

	for (int i = 0; i < 2; i++)
		MPI_Isend(&out[i], 1, MPI_INT, next, i, MPI_COMM_WORLD, &rq[i]);
	one_case(&cp_confs[0], LCA_F64, &batches[2], 1);
	for (int i = 0; i < 2; i++)
		MPI_Irecv(&in[i], 1, MPI_INT, prev, i, MPI_COMM_WORLD, &rq[2 + i]);
	MPI_Waitall(4, rq, MPI_STATUSES_IGNORE);
	if (in[0] != 1000 + prev || in[1] != 2000 + prev)
		report_fail("caller's messages", "a pending message of the caller was taken");
	MPI_Comm_get_errhandler(MPI_COMM_WORLD, &eh);
	eq = eh == MPI_ERRORS_ARE_FATAL;
	MPI_Errhandler_free(&eh);
	if (!eq)
		report_fail("caller's error handler", "MPI_COMM_WORLD's handler changed");
}

/* The layout helpers give the tests' own split (cpcase.c) for every rank
 * count up to 9 and T up to 40, and refuse bad arguments. */
static void layout_helpers(void)
{
	for (int P = 1; P <= 9; P++)
		for (int64_t T = 0; T <= 40; T++)
			for (int zz = 0; zz < 2; zz++)
				for (int r = 0; r < P; r++) {
					struct cp_data d;
					struct cp_layout want;
					lca_mpi_layout got;
					int64_t g[2], n[2], wg[2] = { 0, 0 }, wn[2] = { 0, 0 };
					int k, wk;
					char what[96];

					if (zz && T == 0)
						continue;
					memset(&d, 0, sizeof d);
					d.T = T;
					d.zigzag = zz;
					wk = cp_runs(&d, P, r, wg, wn, &want);
					snprintf(what, sizeof what, "%s layout T=%lld P=%d rank %d",
						zz ? "zigzag" : "contiguous", (long long)T, P, r);
					if ((zz ? lca_mpi_layout_zigzag(T, P, r, &got) :
					    lca_mpi_layout_contiguous(T, P, r, &got)) != LCA_OK ||
					    lca_mpi_layout_runs(&got, P, r, g, n, &k) != LCA_OK)
						report_fail(what, lca_mpi_last_error());
					else if (got.start != want.start || got.len != want.len ||
					    got.T != T || got.cu_seqlens || k != wk ||
					    (k > 0 && (g[0] != wg[0] || n[0] != wn[0])) ||
					    (k > 1 && (g[1] != wg[1] || n[1] != wn[1])))
						report_fail(what, "not the split of cpcase.c");
				}
	{
		lca_mpi_layout l;
		int64_t g[2], n[2];
		int k;

		if (lca_mpi_layout_zigzag(0, 2, 0, &l) != LCA_ERR_SIZE ||
		    lca_mpi_layout_contiguous(5, 0, 0, &l) != LCA_ERR_SIZE ||
		    lca_mpi_layout_contiguous(5, 2, 2, &l) != LCA_ERR_SIZE ||
		    lca_mpi_layout_contiguous(-1, 2, 0, &l) != LCA_ERR_SIZE ||
		    lca_mpi_layout_zigzag(5, 2, 0, NULL) != LCA_ERR_NULL ||
		    lca_mpi_layout_runs(NULL, 2, 0, g, n, &k) != LCA_ERR_NULL ||
		    lca_mpi_layout_contiguous(5, 2, 0, &l) != LCA_OK ||
		    lca_mpi_layout_runs(&l, 2, 0, g, n, NULL) != LCA_ERR_NULL ||
		    lca_mpi_layout_runs(&l, 2, -1, g, n, &k) != LCA_ERR_SIZE ||
		    (l.kind = (lca_mpi_layout_kind)7,
		     lca_mpi_layout_runs(&l, 2, 0, g, n, &k) != LCA_ERR_ARG))
			report_fail("layout helpers", "a bad argument was not refused");
	}
}

int main(int argc, char **argv)
{
	unsigned long long seed = 0;
	char buf[32];
	int total, cases = 0;

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
		const struct cp_conf *c = &cp_confs[ci];

		for (int ti = 0; ti < 2; ti++)
			for (int bi = 0; bi < 2 * NBATCH; bi++, cases++)
				one_case(c, ti ? LCA_F32 : LCA_F64, &batches[bi / 2], bi % 2);
		for (int zz = 0; zz < 2; zz++, cases++)
			self_comm(c, zz);
		if (nranks == 1)
			continue;
		disagreement(c, 1, TW_NONE, 0, 0);
		disagreement(c, 0, TW_KIND, 0, 1);
		disagreement(c, 0, TW_KIND, 1, 0);
		disagreement(c, 0, TW_OVERLAP, 0, 0);
		disagreement(c, 0, TW_GAP, 0, 1);
		disagreement(c, 0, TW_CU, 1, 1);
		disagreement(c, 0, TW_T, 1, 0);
		cases += 7;
	}
	callers_comm_untouched();
	layout_helpers();
	cases += 2;
	MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	if (rank == 0)
		printf("%s: %d ranks, %d cases%s\n", total ? "FAIL" : "ok", nranks, cases,
			total ? "" : ", all within the rule and the byte formulas");
	MPI_Finalize();
	return total ? 1 : 0;
}
