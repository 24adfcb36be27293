/*
 * cp_linear.c - context parallelism for the two recurrent mechanisms.
 * A run of tokens maps the state entering it to a S + b (its summary,
 * lca_deltanet_summary(3), lca_lightning_summary(3)). One all-gather
 * gives every rank every summary; rank r composes those of ranks
 * 0 .. r-1 in rank order (lca_summary_compose(3): associative, not
 * commutative), applies the result to state0 and runs its own chunked
 * forward from that state. The fold always runs in rank order over the
 * same runs, so a rank's result does not depend on how many ranks share
 * the tokens before it beyond rounding, and rank 0 (and P = 1) runs the
 * plain forward call itself: bit for bit the single-process result.
 *
 * The last rank's summary is never used (no rank follows it): it sends
 * the identity instead of computing one. The final state is the last
 * rank's forward's own final state.
 */
#include "cp.h"

#include <stdlib.h>
#include <string.h>

struct lin_ops {
	lca_variant v;
	const void *q, *k, *v_, *x0, *x1; /* deltanet: g, beta; lightning: slope */
};

static lca_status summarise(const lca_plan *plan, const struct lin_ops *op, int64_t T,
	void *a, void *b)
{
	if (op->v == LCA_DELTANET)
		return lca_deltanet_summary(plan, T, op->k, op->v_, op->x0, op->x1, a, b);
	return lca_lightning_summary(plan, T, op->k, op->v_, op->x0, a, b);
}

static lca_status forward(const lca_plan *plan, const struct lin_ops *op, int64_t T,
	const void *state0, void *o, void *state)
{
	if (op->v == LCA_DELTANET)
		return lca_deltanet_forward(plan, T, op->q, op->k, op->v_, op->x0, op->x1, NULL,
			0, state0, o, state);
	return lca_lightning_forward(plan, T, op->q, op->k, op->v_, op->x0, NULL, 0, state0,
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

/* After agreement. o [len][H][dv]; state [H][dk][dv] on the last rank. */
static lca_status run_linear(struct lcai_cp_comm *c, const char *fn, const lca_plan *plan,
	const struct lcai_cp_view *vw, const struct lin_ops *op, const void *state0, void *o,
	void *state)
{
	const int P = vw->P, r = vw->r;
	const int64_t n = vw->len[r], H = vw->p.H, dk = vw->p.dk, dv = vw->p.dv;
	const size_t es = vw->es;
	int ovf = 0;
	const size_t an = lcai_cp_mul(&ovf, H, op->v == LCA_DELTANET ? dk : 1,
		op->v == LCA_DELTANET ? dk : 1, (int64_t)es);
	const size_t bn = lcai_cp_mul(&ovf, H, dk, dv, (int64_t)es);
	const size_t on = lcai_cp_mul(&ovf, n, H, dv, (int64_t)es);
	const size_t sb = an + bn; /* one summary: a then b */
	char *mine = NULL, *all = NULL, *acc = NULL, *st = NULL, *ob = NULL;
	const void *in = state0;
	lca_status s = LCA_OK;

	(void)lcai_cp_mul(&ovf, P, (int64_t)sb, 1, 1);
	if (ovf)
		s = lcai_cp_fail(LCA_ERR_OVERFLOW, "%s: buffer sizes overflow size_t", fn);
	else {
		mine = malloc(sb);
		all = malloc((size_t)P * sb);
		acc = malloc(sb);
		st = malloc(bn);
		ob = malloc(on + 1);
		if (!mine || !all || !acc || !st || !ob)
			s = lcai_cp_fail(LCA_ERR_NOMEM, "%s: no memory for the summaries", fn);
	}
	if (s == LCA_OK) {
		if (n > 0 && r < P - 1) {
			if ((s = summarise(plan, op, n, mine, mine + an)) != LCA_OK)
				lcai_cp_fail(s, "%s: %s", fn, lca_last_error());
		} else {
			identity(vw, op->v, mine, sb);
		}
	}
	if ((s = lcai_cp_all_ok(c, fn, s)) != LCA_OK)
		goto out;
	if (lcai_cp_allgather(c, 0, mine, sb, all)) {
		s = lcai_cp_fail(LCA_ERR_INTERNAL, "%s: the transport failed", fn);
		goto out;
	}
	/* Ranks 0 .. r-1 in order, then onto state0. */
	if (r > 0) {
		memcpy(acc, all, sb);
		for (int j = 1; j < r && s == LCA_OK; j++)
			s = lca_summary_compose(plan, acc, acc + an, all + (size_t)j * sb,
				all + (size_t)j * sb + an, acc, acc + an);
		if (s == LCA_OK)
			s = lca_summary_apply(plan, acc, acc + an, state0, st);
		if (s != LCA_OK)
			lcai_cp_fail(s, "%s: %s", fn, lca_last_error());
		in = st;
	}
	if (s == LCA_OK && n > 0) {
		/* in may be st itself: state0 and state may be one buffer. */
		if ((s = forward(plan, op, n, in, ob, r == P - 1 ? st : NULL)) != LCA_OK)
			lcai_cp_fail(s, "%s: %s", fn, lca_last_error());
	}
	if ((s = lcai_cp_all_ok(c, fn, s)) != LCA_OK)
		goto out;
	if (n > 0)
		memcpy(o, ob, on);
	/* The last rank holds the final state in st: its forward's, or, with
	 * no token of its own (T < P; then r > 0), the state it was handed. */
	if (r == P - 1 && state)
		memcpy(state, st, bn);
out:
	free(mine);
	free(all);
	free(acc);
	free(st);
	free(ob);
	return s;
}

static lca_status check_run(const char *fn, const struct lcai_cp_run *run)
{
	if (!run)
		return lcai_cp_fail(LCA_ERR_NULL, "%s: layout is NULL", fn);
	if (run->start < 0 || run->len < 0)
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: start %lld and len %lld must be >= 0",
			fn, (long long)run->start, (long long)run->len);
	return LCA_OK;
}

static lca_status linear(struct lcai_cp_comm *c, const char *fn, const lca_plan *plan,
	const struct lcai_cp_run *run, const struct lin_ops *op, const void *state0,
	void *o, void *state)
{
	struct lcai_cp_view vw;
	lca_status s;

	lcai_cp_clear_error();
	s = check_run(fn, run);
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
	s = run_linear(c, fn, plan, &vw, op, state0, o, state);
	lcai_cp_view_free(&vw);
	return s;
}

lca_status lcai_cp_deltanet(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, const struct lcai_cp_run *run, const void *q,
	const void *k, const void *v, const void *g, const void *beta,
	const void *state0, void *o, void *state)
{
	const struct lin_ops op = { LCA_DELTANET, q, k, v, g, beta };

	return linear(c, fn, plan, run, &op, state0, o, state);
}

lca_status lcai_cp_lightning(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, const struct lcai_cp_run *run, const void *q,
	const void *k, const void *v, const void *slope, const void *state0,
	void *o, void *state)
{
	const struct lin_ops op = { LCA_LIGHTNING, q, k, v, slope, NULL };

	return linear(c, fn, plan, run, &op, state0, o, state);
}
