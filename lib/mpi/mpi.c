/*
 * mpi.c - the MPI transport and the public calls of lcattn_mpi.h: each
 * wraps its communicator in a struct lcai_cp_comm and runs the algorithm
 * the loopback tests run.
 */
#include "cp.h"
#include "cp_decode.h"

#include <lcattn_mpi.h>

#include <limits.h>
#include <string.h>

struct mpi_impl {
	MPI_Comm comm;
	MPI_Request req[2 * LCAI_CP_NSEG];
	int nreq;
};

/* MPI counts are int: a message over INT_MAX bytes (a block of more than
 * 2 GiB) is refused as a transport failure rather than split. */
static int count_ok(size_t bytes)
{
	return bytes <= (size_t)INT_MAX;
}

static int mpi_allgather(struct lcai_cp_comm *c, const void *send, size_t bytes,
	void *recv)
{
	struct mpi_impl *m = c->impl;

	if (!count_ok(bytes))
		return -1;
	return MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE,
		m->comm) == MPI_SUCCESS ? 0 : -1;
}

static int mpi_allmax(struct lcai_cp_comm *c, int64_t *v, int n)
{
	struct mpi_impl *m = c->impl;

	return MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_MAX, m->comm) ==
		MPI_SUCCESS ? 0 : -1;
}

/* Segment i travels with tag i (MPI keeps the order of messages with the
 * same source, tag and communicator, so consecutive shifts cannot mix). */
static int mpi_shift_start(struct lcai_cp_comm *c, const struct lcai_cp_seg *seg)
{
	struct mpi_impl *m = c->impl;
	const int next = (c->rank + 1) % c->size, prev = (c->rank - 1 + c->size) % c->size;

	m->nreq = 0;
	for (int i = 0; i < LCAI_CP_NSEG; i++) {
		if (!count_ok(seg[i].sbytes) || !count_ok(seg[i].rbytes))
			return -1;
		if (seg[i].rbytes && MPI_Irecv(seg[i].recv, (int)seg[i].rbytes, MPI_BYTE, prev,
		    i, m->comm, &m->req[m->nreq++]) != MPI_SUCCESS)
			return -1;
		/* MPI-3 takes a const buffer. */
		if (seg[i].sbytes && MPI_Isend(seg[i].send, (int)seg[i].sbytes, MPI_BYTE,
		    next, i, m->comm, &m->req[m->nreq++]) != MPI_SUCCESS)
			return -1;
	}
	return 0;
}

static int mpi_shift_wait(struct lcai_cp_comm *c)
{
	struct mpi_impl *m = c->impl;
	int rc = m->nreq ? MPI_Waitall(m->nreq, m->req, MPI_STATUSES_IGNORE) : MPI_SUCCESS;

	m->nreq = 0;
	return rc == MPI_SUCCESS ? 0 : -1;
}

/* A transport over a duplicate of comm, or a status when comm is unusable
 * (that can only be known locally: MPI itself must be initialised to
 * ask). The duplicate keeps the call's messages apart from the caller's
 * (whose pending sends on comm might otherwise match ours), and its
 * MPI_ERRORS_RETURN turns an MPI error into a status rather than an
 * abort. close_comm() frees it. */
static lca_status open_comm(const char *fn, MPI_Comm comm, struct mpi_impl *m,
	struct lcai_cp_comm *c)
{
	int init = 0, fin = 0;

	lcai_cp_clear_error();
	memset(c, 0, sizeof *c);
	memset(m, 0, sizeof *m);
	m->comm = MPI_COMM_NULL;
	MPI_Initialized(&init);
	MPI_Finalized(&fin);
	if (!init || fin)
		return lcai_cp_fail(LCA_ERR_ARG, "%s: MPI is not initialised", fn);
	if (comm == MPI_COMM_NULL)
		return lcai_cp_fail(LCA_ERR_ARG, "%s: comm is MPI_COMM_NULL", fn);
	if (MPI_Comm_dup(comm, &m->comm) != MPI_SUCCESS) {
		m->comm = MPI_COMM_NULL;
		return lcai_cp_fail(LCA_ERR_INTERNAL, "%s: MPI_Comm_dup failed", fn);
	}
	if (MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN) != MPI_SUCCESS ||
	    MPI_Comm_rank(m->comm, &c->rank) != MPI_SUCCESS ||
	    MPI_Comm_size(m->comm, &c->size) != MPI_SUCCESS) {
		MPI_Comm_free(&m->comm);
		return lcai_cp_fail(LCA_ERR_INTERNAL, "%s: comm's duplicate is unusable", fn);
	}
	c->impl = m;
	c->allgather = mpi_allgather;
	c->allmax = mpi_allmax;
	c->shift_start = mpi_shift_start;
	c->shift_wait = mpi_shift_wait;
	return LCA_OK;
}

static void close_comm(struct mpi_impl *m)
{
	if (m->comm != MPI_COMM_NULL)
		MPI_Comm_free(&m->comm);
}

static void report(const struct lcai_cp_comm *c, lca_mpi_stats *stats)
{
	if (stats) {
		stats->bytes_sent = c->payload_sent;
		stats->control_sent = c->control_sent;
	}
}

static const struct lcai_cp_run *to_run(const lca_mpi_layout *l, struct lcai_cp_run *run)
{
	if (!l)
		return NULL;
	run->start = l->start;
	run->len = l->len;
	run->kind = (int)l->kind;
	run->T = l->T;
	run->cu = l->cu_seqlens;
	run->nseq = l->nseq;
	return run;
}

lca_status lca_mpi_softmax_forward(const lca_plan *plan, MPI_Comm comm,
	const lca_mpi_layout *layout, const void *q, const void *k, const void *v,
	void *o, void *lse, lca_mpi_stats *stats)
{
	static const char fn[] = "lca_mpi_softmax_forward";
	struct lcai_cp_comm c;
	struct mpi_impl m;
	struct lcai_cp_run run;
	lca_status s;

	if ((s = open_comm(fn, comm, &m, &c)))
		return s;
	s = lcai_cp_softmax(&c, fn, plan, to_run(layout, &run), q, k, v, o, lse);
	report(&c, stats);
	close_comm(&m);
	return s;
}

lca_status lca_mpi_mla_forward(const lca_plan *plan, MPI_Comm comm,
	const lca_mpi_layout *layout, const void *q_nope, const void *q_rope,
	const void *ckv, const void *k_rope, const void *w_uk, const void *w_uv,
	void *o, void *lse, lca_mpi_stats *stats)
{
	static const char fn[] = "lca_mpi_mla_forward";
	struct lcai_cp_comm c;
	struct mpi_impl m;
	struct lcai_cp_run run;
	lca_status s;

	if ((s = open_comm(fn, comm, &m, &c)))
		return s;
	s = lcai_cp_mla(&c, fn, plan, to_run(layout, &run), q_nope, q_rope, ckv, k_rope,
		w_uk, w_uv, o, lse);
	report(&c, stats);
	close_comm(&m);
	return s;
}

lca_status lca_mpi_deltanet_forward(const lca_plan *plan, MPI_Comm comm,
	const lca_mpi_layout *layout, const void *q, const void *k, const void *v,
	const void *g, const void *beta, const void *state0, void *o, void *state,
	lca_mpi_stats *stats)
{
	static const char fn[] = "lca_mpi_deltanet_forward";
	struct lcai_cp_comm c;
	struct mpi_impl m;
	struct lcai_cp_run run;
	lca_status s;

	if ((s = open_comm(fn, comm, &m, &c)))
		return s;
	s = lcai_cp_deltanet(&c, fn, plan, to_run(layout, &run), q, k, v, g, beta, state0,
		o, state);
	report(&c, stats);
	close_comm(&m);
	return s;
}

lca_status lca_mpi_lightning_forward(const lca_plan *plan, MPI_Comm comm,
	const lca_mpi_layout *layout, const void *q, const void *k, const void *v,
	const void *slope, const void *state0, void *o, void *state,
	lca_mpi_stats *stats)
{
	static const char fn[] = "lca_mpi_lightning_forward";
	struct lcai_cp_comm c;
	struct mpi_impl m;
	struct lcai_cp_run run;
	lca_status s;

	if ((s = open_comm(fn, comm, &m, &c)))
		return s;
	s = lcai_cp_lightning(&c, fn, plan, to_run(layout, &run), q, k, v, slope, state0,
		o, state);
	report(&c, stats);
	close_comm(&m);
	return s;
}

/* ---- layouts ---- */

static lca_status layout_args(const char *fn, int64_t T, int P, int rank,
	const void *out)
{
	lcai_cp_clear_error();
	if (!out)
		return lcai_cp_fail(LCA_ERR_NULL, "%s: layout is NULL", fn);
	if (T < 0 || P < 1 || rank < 0 || rank >= P)
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: T %lld, P %d, rank %d (need T >= 0, "
			"P >= 1, 0 <= rank < P)", fn, (long long)T, P, rank);
	return LCA_OK;
}

lca_status lca_mpi_layout_contiguous(int64_t T, int P, int rank, lca_mpi_layout *layout)
{
	lca_status s = layout_args("lca_mpi_layout_contiguous", T, P, rank, layout);

	if (s != LCA_OK)
		return s;
	memset(layout, 0, sizeof *layout);
	layout->kind = LCA_MPI_CONTIGUOUS;
	layout->T = T;
	layout->start = lcai_cp_frac(T, rank, P);
	layout->len = lcai_cp_frac(T, rank + 1, P) - layout->start;
	return LCA_OK;
}

lca_status lca_mpi_layout_zigzag(int64_t T, int P, int rank, lca_mpi_layout *layout)
{
	static const char fn[] = "lca_mpi_layout_zigzag";
	lca_status s = layout_args(fn, T, P, rank, layout);
	int64_t g[2], n[2];
	int k;

	if (s != LCA_OK)
		return s;
	if (T < 1)
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: T is 0 (zigzag needs a token)", fn);
	memset(layout, 0, sizeof *layout);
	layout->kind = LCA_MPI_ZIGZAG;
	layout->T = T;
	layout->start = lcai_cp_frac(T, rank, 2 * (int64_t)P);
	k = lcai_cp_zigzag_runs(T, P, rank, g, n);
	for (int i = 0; i < k; i++)
		layout->len += n[i];
	return LCA_OK;
}

lca_status lca_mpi_layout_runs(const lca_mpi_layout *layout, int P, int rank,
	int64_t g[2], int64_t n[2], int *nruns)
{
	static const char fn[] = "lca_mpi_layout_runs";
	lca_status s = layout_args(fn, 0, P, rank, layout);

	if (s != LCA_OK)
		return s;
	if (!g || !n || !nruns)
		return lcai_cp_fail(LCA_ERR_NULL, "%s: g, n or nruns is NULL", fn);
	if (layout->kind == LCA_MPI_ZIGZAG) {
		int64_t zg[2] = { 0, 0 }, zn[2] = { 0, 0 };

		if (layout->T < 1)
			return lcai_cp_fail(LCA_ERR_SIZE, "%s: zigzag with T %lld", fn,
				(long long)layout->T);
		*nruns = lcai_cp_zigzag_runs(layout->T, P, rank, zg, zn);
		memcpy(g, zg, sizeof zg);
		memcpy(n, zn, sizeof zn);
		return LCA_OK;
	}
	if (layout->kind != LCA_MPI_CONTIGUOUS)
		return lcai_cp_fail(LCA_ERR_ARG, "%s: unknown layout kind %d", fn,
			(int)layout->kind);
	if (layout->start < 0 || layout->len < 0)
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: start %lld, len %lld", fn,
			(long long)layout->start, (long long)layout->len);
	g[0] = layout->len > 0 ? layout->start : 0;
	n[0] = layout->len;
	g[1] = n[1] = 0;
	*nruns = layout->len > 0;
	return LCA_OK;
}

const char *lca_mpi_last_error(void)
{
	return lcai_cp_last_error();
}

/* ---- decode over a sharded cache (cp_decode.c) ---------------------------- */

lca_status lca_mpi_softmax_decode(const lca_plan *plan, MPI_Comm comm,
	const lca_mpi_layout *layout, int64_t tq, const void *q, const void *k,
	const void *v, void *o, void *lse, lca_mpi_stats *stats)
{
	static const char fn[] = "lca_mpi_softmax_decode";
	struct lcai_cp_comm c;
	struct mpi_impl m;
	struct lcai_cp_run run;
	lca_status s;

	if ((s = open_comm(fn, comm, &m, &c)))
		return s;
	s = lcai_cp_softmax_decode(&c, fn, plan, to_run(layout, &run), tq, q, k, v, o, lse);
	report(&c, stats);
	close_comm(&m);
	return s;
}

lca_status lca_mpi_mla_decode(const lca_plan *plan, MPI_Comm comm,
	const lca_mpi_layout *layout, int64_t tq, const void *q_nope, const void *q_rope,
	const void *ckv, const void *k_rope, const void *w_uk, const void *w_uv,
	void *o, void *lse, lca_mpi_stats *stats)
{
	static const char fn[] = "lca_mpi_mla_decode";
	struct lcai_cp_comm c;
	struct mpi_impl m;
	struct lcai_cp_run run;
	lca_status s;

	if ((s = open_comm(fn, comm, &m, &c)))
		return s;
	s = lcai_cp_mla_decode(&c, fn, plan, to_run(layout, &run), tq, q_nope, q_rope, ckv,
		k_rope, w_uk, w_uv, o, lse);
	report(&c, stats);
	close_comm(&m);
	return s;
}
