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

/* A transport over comm, or a status when comm is unusable (that can
 * only be known locally: MPI itself must be initialised to ask). */
static lca_status open_comm(const char *fn, MPI_Comm comm, struct mpi_impl *m,
	struct lcai_cp_comm *c)
{
	int init = 0, fin = 0;

	lcai_cp_clear_error();
	memset(c, 0, sizeof *c);
	memset(m, 0, sizeof *m);
	MPI_Initialized(&init);
	MPI_Finalized(&fin);
	if (!init || fin)
		return lcai_cp_fail(LCA_ERR_ARG, "%s: MPI is not initialised", fn);
	if (comm == MPI_COMM_NULL)
		return lcai_cp_fail(LCA_ERR_ARG, "%s: comm is MPI_COMM_NULL", fn);
	if (MPI_Comm_rank(comm, &c->rank) != MPI_SUCCESS ||
	    MPI_Comm_size(comm, &c->size) != MPI_SUCCESS)
		return lcai_cp_fail(LCA_ERR_ARG, "%s: comm is not a communicator", fn);
	m->comm = comm;
	c->impl = m;
	c->allgather = mpi_allgather;
	c->shift_start = mpi_shift_start;
	c->shift_wait = mpi_shift_wait;
	return LCA_OK;
}

static void report(const struct lcai_cp_comm *c, lca_mpi_stats *stats)
{
	if (stats) {
		stats->bytes_sent = c->payload_sent;
		stats->control_sent = c->control_sent;
	}
}

static void to_run(const lca_mpi_layout *l, struct lcai_cp_run *run)
{
	run->start = l->start;
	run->len = l->len;
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
	if (layout)
		to_run(layout, &run);
	s = lcai_cp_softmax(&c, fn, plan, layout ? &run : NULL, q, k, v, o, lse);
	report(&c, stats);
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
	if (layout)
		to_run(layout, &run);
	s = lcai_cp_mla(&c, fn, plan, layout ? &run : NULL, q_nope, q_rope, ckv, k_rope,
		w_uk, w_uv, o, lse);
	report(&c, stats);
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
	if (layout)
		to_run(layout, &run);
	s = lcai_cp_deltanet(&c, fn, plan, layout ? &run : NULL, q, k, v, g, beta, state0,
		o, state);
	report(&c, stats);
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
	if (layout)
		to_run(layout, &run);
	s = lcai_cp_lightning(&c, fn, plan, layout ? &run : NULL, q, k, v, slope, state0,
		o, state);
	report(&c, stats);
	return s;
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
	if (layout)
		to_run(layout, &run);
	s = lcai_cp_softmax_decode(&c, fn, plan, layout ? &run : NULL, tq, q, k, v, o, lse);
	report(&c, stats);
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
	if (layout)
		to_run(layout, &run);
	s = lcai_cp_mla_decode(&c, fn, plan, layout ? &run : NULL, tq, q_nope, q_rope, ckv,
		k_rope, w_uk, w_uv, o, lse);
	report(&c, stats);
	return s;
}
