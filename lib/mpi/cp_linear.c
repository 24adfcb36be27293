/*
 * cp_linear.c - context parallelism for the two recurrent mechanisms.
 * A run of tokens of one sequence maps the state entering it to a S + b
 * (its summary, lca_deltanet_summary(3), lca_lightning_summary(3)).
 *
 * A rank's run (one, or two under the zigzag layout) is cut by the
 * sequences' boundaries. Only its last piece can belong to a sequence
 * that goes on after the run: the rank summarises that piece (the
 * identity when the sequence ends in the run) and one all-gather gives
 * every rank every run's summary. A run whose first piece continues a
 * sequence composes the summaries of the earlier runs that hold a part of
 * that sequence, in global order (lca_summary_compose(3): associative,
 * not commutative), applies the result to the sequence's state0, and runs
 * its chunked forward over its pieces (as a packed batch) from that state
 * and the other sequences' own state0.
 *
 * Each sequence's final state is written by the rank holding its last
 * token; an empty sequence's (its state0) by the rank holding the token
 * after it, or the batch's last token. One rank runs the plain forward
 * call itself: bit for bit the single-process result.
 */
#include "cp.h"

#include <stdlib.h>
#include <string.h>

struct lin_ops {
	lca_variant v;
	const void *q, *k, *v_, *x0, *x1; /* deltanet: g, beta; lightning: slope */
	size_t rq, rv, rg;                /* bytes a token: q and k, v, g and beta */
};

/* Input x's rows from row on. */
static const void *rows(const void *x, size_t rb, int64_t row)
{
	return x ? (const char *)x + (size_t)row * rb : NULL;
}

/* The summary of n tokens from row on. */
static lca_status summarise(const lca_plan *plan, const struct lin_ops *op, int64_t row,
	int64_t n, void *a, void *b)
{
	if (op->v == LCA_DELTANET)
		return lca_deltanet_summary(plan, n, rows(op->k, op->rq, row),
			rows(op->v_, op->rv, row), rows(op->x0, op->rg, row),
			rows(op->x1, op->rg, row), a, b);
	return lca_lightning_summary(plan, n, rows(op->k, op->rq, row),
		rows(op->v_, op->rv, row), op->x0, a, b);
}

/* The forward call on n tokens from row on, packed by cu [nseq + 1]. */
static lca_status forward(const lca_plan *plan, const struct lin_ops *op, int64_t row,
	int64_t n, const int64_t *cu, int64_t nseq, const void *state0, void *o, void *state)
{
	if (op->v == LCA_DELTANET)
		return lca_deltanet_forward(plan, n, rows(op->q, op->rq, row),
			rows(op->k, op->rq, row), rows(op->v_, op->rv, row),
			rows(op->x0, op->rg, row), rows(op->x1, op->rg, row), cu, nseq, state0, o,
			state);
	return lca_lightning_forward(plan, n, rows(op->q, op->rq, row),
		rows(op->k, op->rq, row), rows(op->v_, op->rv, row), op->x0, cu, nseq, state0,
		o, state);
}

/* The identity summary (a = I or 1, b = 0) in the plan's dtype. */
static void identity(const struct lcai_cp_view *vw, lca_variant v, void *a, size_t sb)
{
	const int64_t H = vw->p.H, dk = vw->p.dk;

	memset(a, 0, sb);
	for (int64_t h = 0; h < H; h++)
		for (int64_t i = 0; i < (v == LCA_DELTANET ? dk : 1); i++) {
			size_t at = v == LCA_DELTANET ? (size_t)((h * dk + i) * dk + i) : (size_t)h;

			if (vw->es == 8)
				((double *)a)[at] = 1.0;
			else
				((float *)a)[at] = 1.0f;
		}
}

/* One run of this rank, as the local forward sees it: sequences
 * lo .. hi (nloc of them, empty ones anchored here included); head: the
 * first continues a sequence begun before the run; tail: the last goes
 * on after it. */
struct local {
	const struct lcai_cp_span *sp;
	int64_t lo, hi, nloc;
	int head, tail;
	int64_t *cu;      /* [nloc + 1] local cu_seqlens */
	char *st0, *st;   /* [nloc] entering states (when head), final states */
};

static void local_of(const struct lcai_cp_view *vw, const struct lcai_cp_span *sp,
	struct local *l)
{
	const int64_t *cu = vw->cu, g = sp->g, end = sp->g + sp->n;
	int64_t sh = lcai_cp_seq_of(cu, vw->nseq, g), st = lcai_cp_seq_of(cu, vw->nseq, end - 1);

	l->sp = sp;
	l->head = cu[sh] < g;
	l->tail = cu[st + 1] > end;
	l->lo = sh;
	while (l->lo > 0 && cu[l->lo - 1] == g)
		l->lo--;
	l->hi = end == vw->T ? vw->nseq - 1 : st;
	l->nloc = l->hi - l->lo + 1;
}

/* The state entering run l's first piece into out: the summaries of the
 * earlier runs holding part of its sequence (all [P][nr] of sb bytes),
 * composed in global order, applied to the sequence's state0. */
static lca_status entering(const lca_plan *plan, const struct lcai_cp_view *vw,
	const struct local *l, const char *all, size_t an, size_t sb, size_t bn,
	const void *state0, char *acc, void *out)
{
	const int64_t s0 = vw->cu[l->lo], g = l->sp->g;
	int64_t at = -1;
	lca_status s = LCA_OK;

	/* the runs are disjoint: take them by increasing start */
	for (;;) {
		int64_t best = -1;

		for (int64_t i = 0; i < (int64_t)vw->P * vw->nr; i++) {
			const struct lcai_cp_span *y = &vw->run[i];

			if (y->n > 0 && y->g < g && y->g + y->n > s0 && y->g > at &&
			    (best < 0 || y->g < vw->run[best].g))
				best = i;
		}
		if (best < 0)
			break;
		if (at < 0)
			memcpy(acc, all + (size_t)best * sb, sb);
		else if ((s = lca_summary_compose(plan, acc, acc + an, all + (size_t)best * sb,
		    all + (size_t)best * sb + an, acc, acc + an)) != LCA_OK)
			return s;
		at = vw->run[best].g;
	}
	return lca_summary_apply(plan, acc, acc + an,
		state0 ? (const char *)state0 + (size_t)l->lo * bn : NULL, out);
}

/* Run l's forward into o (the rank's rows) and l->st. */
static lca_status run_local(const lca_plan *plan, const struct lcai_cp_view *vw,
	const struct lin_ops *op, struct local *l, const char *all, size_t an, size_t sb,
	size_t bn, const void *state0, char *acc, char *o)
{
	const void *in = state0 ? (const char *)state0 + (size_t)l->lo * bn : NULL;
	const size_t orow = (size_t)(vw->p.H * vw->p.dv) * vw->es;
	lca_status s;

	for (int64_t i = 0; i <= l->nloc; i++) {
		int64_t x = vw->cu[l->lo + i] - l->sp->g;

		l->cu[i] = x < 0 ? 0 : x > l->sp->n ? l->sp->n : x;
	}
	if (l->head) {
		if (state0)
			memcpy(l->st0, in, (size_t)l->nloc * bn);
		else
			memset(l->st0, 0, (size_t)l->nloc * bn);
		if ((s = entering(plan, vw, l, all, an, sb, bn, state0, acc, l->st0)) != LCA_OK)
			return s;
		in = l->st0;
	}
	return forward(plan, op, l->sp->row, l->sp->n, l->nloc > 1 ? l->cu : NULL, l->nloc,
		in, o + (size_t)l->sp->row * orow, l->st);
}

/* Scratch of run_linear. */
struct lin_mem {
	char *mine, *all, *acc, *ob, *st1;
	struct local l[2];
	int nl;
};

static void lin_free(struct lin_mem *m)
{
	free(m->mine);
	free(m->all);
	free(m->acc);
	free(m->ob);
	free(m->st1);
	for (int i = 0; i < m->nl; i++) {
		free(m->l[i].cu);
		free(m->l[i].st0);
		free(m->l[i].st);
	}
}

/* Copy the final states this rank owns (all of them on one rank). */
static void put_states(const struct lcai_cp_view *vw, const struct lin_mem *m, size_t bn,
	void *state)
{
	if (!state)
		return;
	if (vw->P == 1) {
		memcpy(state, m->st1, (size_t)vw->nseq * bn);
		return;
	}
	for (int i = 0; i < m->nl; i++)
		for (int64_t k = 0; k < m->l[i].nloc - m->l[i].tail; k++)
			memcpy((char *)state + (size_t)(m->l[i].lo + k) * bn,
				m->l[i].st + (size_t)k * bn, bn);
}

/* After agreement. o [len][H][dv]; state [nseq][H][dk][dv], the entries
 * of the sequences this rank owns. */
static lca_status run_linear(struct lcai_cp_comm *c, const char *fn, const lca_plan *plan,
	const struct lcai_cp_view *vw, const struct lin_ops *op, const void *state0, void *o,
	void *state)
{
	const int P = vw->P, r = vw->r, nr = vw->nr;
	const int64_t n = vw->len[r], H = vw->p.H, dk = vw->p.dk, dv = vw->p.dv;
	const int64_t es = (int64_t)vw->es, ak = op->v == LCA_DELTANET ? dk : 1;
	int ovf = 0;
	const size_t an = lcai_cp_mul(&ovf, H, ak, ak, es), bn = lcai_cp_mul(&ovf, H, dk, dv, es);
	const size_t on = lcai_cp_mul(&ovf, n, H, dv, es), sb = an + bn; /* a then b */
	struct lin_mem m;
	lca_status s = LCA_OK;

	memset(&m, 0, sizeof m);
	(void)lcai_cp_mul(&ovf, P, nr, (int64_t)sb, 1);
	(void)lcai_cp_mul(&ovf, vw->nseq + 2, (int64_t)bn, 1, 1);
	if (ovf)
		s = lcai_cp_fail(LCA_ERR_OVERFLOW, "%s: buffer sizes overflow size_t", fn);
	if (s == LCA_OK && P == 1) {
		/* one rank: the plain call, bit for bit */
		m.ob = malloc(on + 1);
		m.st1 = malloc((size_t)vw->nseq * bn + 1);
		if (!m.ob || !m.st1)
			s = lcai_cp_fail(LCA_ERR_NOMEM, "%s: no memory for the outputs", fn);
		else if ((s = forward(plan, op, 0, n, vw->user_cu ? vw->cu : NULL, vw->nseq,
		    state0, m.ob, m.st1)) != LCA_OK)
			lcai_cp_fail(s, "%s: %s", fn, lca_last_error());
		goto vote;
	}
	if (s == LCA_OK) {
		m.mine = malloc((size_t)nr * sb);
		m.all = malloc((size_t)P * nr * sb);
		m.acc = malloc(sb);
		m.ob = malloc(on + 1);
		if (!m.mine || !m.all || !m.acc || !m.ob)
			s = lcai_cp_fail(LCA_ERR_NOMEM, "%s: no memory for the summaries", fn);
	}
	for (int i = 0; i < nr && s == LCA_OK; i++) {
		const struct lcai_cp_span *sp = &vw->run[(size_t)r * nr + i];
		struct local *l = &m.l[m.nl];

		identity(vw, op->v, m.mine + (size_t)i * sb, sb);
		if (sp->n == 0)
			continue;
		local_of(vw, sp, l);
		m.nl++;
		l->cu = malloc((size_t)(l->nloc + 1) * sizeof *l->cu);
		l->st0 = malloc((size_t)l->nloc * bn + 1);
		l->st = malloc((size_t)l->nloc * bn + 1);
		if (!l->cu || !l->st0 || !l->st) {
			s = lcai_cp_fail(LCA_ERR_NOMEM, "%s: no memory for the states", fn);
		} else if (l->tail) {
			/* the last piece: from its sequence's start (or the run's) on */
			int64_t a = vw->cu[l->hi] > sp->g ? vw->cu[l->hi] : sp->g;
			char *x = m.mine + (size_t)i * sb;

			if ((s = summarise(plan, op, sp->row + (a - sp->g), sp->g + sp->n - a, x,
			    x + an)) != LCA_OK)
				lcai_cp_fail(s, "%s: %s", fn, lca_last_error());
		}
	}
	if ((s = lcai_cp_all_ok(c, fn, s)) != LCA_OK)
		goto out;
	if (lcai_cp_allgather(c, 0, m.mine, (size_t)nr * sb, m.all)) {
		s = lcai_cp_fail(LCA_ERR_INTERNAL, "%s: the transport failed", fn);
		goto out;
	}
	for (int i = 0; i < m.nl && s == LCA_OK; i++)
		if ((s = run_local(plan, vw, op, &m.l[i], m.all, an, sb, bn, state0, m.acc,
		    m.ob)) != LCA_OK)
			lcai_cp_fail(s, "%s: %s", fn, lca_last_error());
vote:
	if ((s = lcai_cp_all_ok(c, fn, s)) != LCA_OK)
		goto out;
	if (n > 0)
		memcpy(o, m.ob, on);
	put_states(vw, &m, bn, state);
out:
	lin_free(&m);
	return s;
}

static lca_status linear(struct lcai_cp_comm *c, const char *fn, const lca_plan *plan,
	const struct lcai_cp_run *run, const struct lin_ops *op, const void *state0,
	void *o, void *state)
{
	struct lcai_cp_view vw;
	struct lin_ops ops = *op;
	lca_status s;

	lcai_cp_clear_error();
	s = lcai_cp_check_run(fn, run);
	if (s == LCA_OK && !plan)
		s = lcai_cp_fail(LCA_ERR_NULL, "%s: plan is NULL", fn);
	if (s == LCA_OK && run->len > 0) {
		/* The arguments a rank with tokens must give. */
		const void *dx[] = { op->q, op->k, op->v_, op->x0, op->x1, o };
		const void *lx[] = { op->q, op->k, op->v_, op->x0, o };
		static const char *const dn[] = { "q", "k", "v", "g", "beta", "o" };
		static const char *const ln[] = { "q", "k", "v", "slope", "o" };
		const int dnet = op->v == LCA_DELTANET;

		for (int i = 0; i < (dnet ? 6 : 5) && s == LCA_OK; i++)
			if (!(dnet ? dx : lx)[i])
				s = lcai_cp_fail(LCA_ERR_NULL, "%s: %s is NULL", fn,
					(dnet ? dn : ln)[i]);
	}
	if ((s = lcai_cp_agree(c, fn, plan, op->v, run, state0 != NULL, s, &vw)) != LCA_OK)
		return s;
	ops.rq = (size_t)((op->v == LCA_DELTANET ? vw.p.Hk : vw.p.H) * vw.p.dk) * vw.es;
	ops.rv = (size_t)(vw.p.H * vw.p.dv) * vw.es;
	ops.rg = (size_t)vw.p.H * vw.es;
	s = run_linear(c, fn, plan, &vw, &ops, state0, o, state);
	lcai_cp_view_free(&vw);
	return s;
}

lca_status lcai_cp_deltanet(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, const struct lcai_cp_run *run, const void *q,
	const void *k, const void *v, const void *g, const void *beta,
	const void *state0, void *o, void *state)
{
	const struct lin_ops op = { LCA_DELTANET, q, k, v, g, beta, 0, 0, 0 };

	return linear(c, fn, plan, run, &op, state0, o, state);
}

lca_status lcai_cp_lightning(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, const struct lcai_cp_run *run, const void *q,
	const void *k, const void *v, const void *slope, const void *state0,
	void *o, void *state)
{
	const struct lin_ops op = { LCA_LIGHTNING, q, k, v, slope, NULL, 0, 0, 0 };

	return linear(c, fn, plan, run, &op, state0, o, state);
}
