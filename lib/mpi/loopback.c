/*
 * loopback.c - a transport that simulates P ranks in one process: each
 * rank is a thread, and every collective is two barriers around a copy
 * (post the buffer; barrier; read the peers' posted buffers; barrier, so
 * no rank reuses a buffer a peer still reads). Transfers do not overlap
 * the compute here; the algorithm cannot tell, which is the point: the
 * tests run through it the code the MPI transport runs.
 */
#include "cp.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct slot {
	const void *send;
	size_t bytes;
};

struct loop {
	int P;
	pthread_barrier_t bar;
	struct slot *slot;  /* [P] what each rank posted */
};

struct rank_impl {
	struct loop *lp;
	struct slot seg[LCAI_CP_NSEG];    /* the pending shift's sends */
	struct lcai_cp_seg want[LCAI_CP_NSEG]; /* and receives */
};

static int loop_allgather(struct lcai_cp_comm *c, const void *send, size_t bytes,
	void *recv)
{
	struct rank_impl *ri = c->impl;
	struct loop *lp = ri->lp;
	int bad = 0;

	lp->slot[c->rank].send = send;
	lp->slot[c->rank].bytes = bytes;
	pthread_barrier_wait(&lp->bar);
	for (int j = 0; j < lp->P; j++) {
		/* Every rank gathers the same size, or the caller has a bug. */
		bad |= lp->slot[j].bytes != bytes;
		if (!bad && bytes)
			memcpy((char *)recv + (size_t)j * bytes, lp->slot[j].send, bytes);
	}
	pthread_barrier_wait(&lp->bar);
	return bad ? -1 : 0;
}

static int loop_allmax(struct lcai_cp_comm *c, int64_t *v, int n)
{
	struct rank_impl *ri = c->impl;
	struct loop *lp = ri->lp;
	int64_t m[LCAI_CP_MAXW];
	int bad = n < 1 || n > LCAI_CP_MAXW;

	lp->slot[c->rank].send = v;
	lp->slot[c->rank].bytes = (size_t)n * sizeof *v;
	pthread_barrier_wait(&lp->bar);
	for (int j = 0; j < lp->P && !bad; j++) {
		const int64_t *x = lp->slot[j].send;

		bad |= lp->slot[j].bytes != (size_t)n * sizeof *v;
		for (int i = 0; i < n && !bad; i++)
			m[i] = j == 0 || x[i] > m[i] ? x[i] : m[i];
	}
	pthread_barrier_wait(&lp->bar);
	if (!bad)
		memcpy(v, m, (size_t)n * sizeof *v);
	return bad ? -1 : 0;
}

static int loop_shift_start(struct lcai_cp_comm *c, const struct lcai_cp_seg *seg)
{
	struct rank_impl *ri = c->impl;

	for (int i = 0; i < LCAI_CP_NSEG; i++) {
		ri->seg[i].send = seg[i].send;
		ri->seg[i].bytes = seg[i].sbytes;
		ri->want[i] = seg[i];
	}
	return 0;
}

/* The sends posted by rank - 1 are read straight from its rank_impl. */
static int loop_shift_wait(struct lcai_cp_comm *c)
{
	struct rank_impl *ri = c->impl;
	struct loop *lp = ri->lp;
	const struct rank_impl *left = ri - c->rank + (c->rank - 1 + lp->P) % lp->P;
	int bad = 0;

	pthread_barrier_wait(&lp->bar);
	for (int i = 0; i < LCAI_CP_NSEG; i++) {
		/* sender and receiver must agree on every size */
		bad |= left->seg[i].bytes != ri->want[i].rbytes;
		if (!bad && ri->want[i].rbytes)
			memcpy(ri->want[i].recv, left->seg[i].send, ri->want[i].rbytes);
	}
	pthread_barrier_wait(&lp->bar);
	return bad ? -1 : 0;
}

struct thread_arg {
	struct lcai_cp_comm *c;
	void (*body)(struct lcai_cp_comm *c, void *arg);
	void *arg;
};

static void *thread_main(void *x)
{
	struct thread_arg *ta = x;

	ta->body(ta->c, ta->arg);
	return NULL;
}

int lcai_loop_run(int P, void (*body)(struct lcai_cp_comm *c, void *arg),
	void *arg, struct lcai_cp_comm *comms)
{
	struct loop lp;
	struct lcai_cp_comm *c = calloc((size_t)P, sizeof *c);
	struct rank_impl *ri = calloc((size_t)P, sizeof *ri);
	struct thread_arg *ta = calloc((size_t)P, sizeof *ta);
	pthread_t *th = calloc((size_t)P, sizeof *th);
	int rc = -1, started = 0;

	lp.P = P;
	lp.slot = calloc((size_t)P, sizeof *lp.slot);
	if (P < 1 || !c || !ri || !ta || !th || !lp.slot ||
	    pthread_barrier_init(&lp.bar, NULL, (unsigned)P))
		goto out;
	for (int r = 0; r < P; r++) {
		ri[r].lp = &lp;
		c[r].rank = r;
		c[r].size = P;
		c[r].impl = &ri[r];
		c[r].allgather = loop_allgather;
		c[r].allmax = loop_allmax;
		c[r].shift_start = loop_shift_start;
		c[r].shift_wait = loop_shift_wait;
		ta[r].c = &c[r];
		ta[r].body = body;
		ta[r].arg = arg;
	}
	/* All P threads must start, or those started would wait forever at
	 * the first barrier: a failed start is a failed run (tests only). */
	for (started = 0; started < P; started++)
		if (pthread_create(&th[started], NULL, thread_main, &ta[started]))
			break;
	for (int r = 0; r < started; r++)
		pthread_join(th[r], NULL);
	pthread_barrier_destroy(&lp.bar);
	if (started == P) {
		rc = 0;
		if (comms)
			memcpy(comms, c, (size_t)P * sizeof *c);
	}
out:
	free(c);
	free(ri);
	free(ta);
	free(th);
	free(lp.slot);
	return rc;
}
