/*
 * cp_decode.c - decode over a sequence-sharded softmax or mla cache: each
 * rank holds the cached keys of one run of the sequence, every rank has
 * the same tq new queries (the sequence's last tq positions), and each
 * rank attends over its own keys only. The partial (o, lse) of the ranks
 * travel, never the keys: one all-gather of tq H (dv + 1) values per
 * rank, which for a long cache is far less than the keys a ring would
 * move. Every rank then merges all P parts in rank order with
 * lca_attn_merge(3) from the same gathered bytes, so every rank returns
 * the same o and lse, bit for bit.
 *
 * The new tokens' own keys are part of the sequence: the caller appends
 * them to the run of the rank holding the last positions (normally the
 * last rank) before the call, so the queries sit at positions T - tq ..
 * T - 1 of the T tokens of the layout. Either layout works (a zigzag rank
 * merges the parts of its two chunks first); one sequence per call.
 */
#include "cp_decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* What differs between softmax and mla: the partial call and its inputs. */
struct dec_ops {
	/* Partial attention of the tq queries at q_pos0 over the Tk keys at
	 * k_pos0 held in rows row .. of this rank's key tensors, into o, lse. */
	lca_status (*partial)(const struct dec_ops *ops, const lca_plan *plan,
		int64_t tq, int64_t q_pos0, int64_t Tk, int64_t k_pos0, int64_t row, void *o,
		void *lse);
	const void *q[2];    /* softmax q; mla q_nope, q_rope */
	const void *key[2];  /* softmax k, v; mla ckv, k_rope */
	const void *w[2];    /* mla w_uk, w_uv */
	size_t krow[2];      /* bytes per token of key[0], key[1] */
};

static const void *key_at(const struct dec_ops *ops, int i, int64_t row)
{
	return (const char *)ops->key[i] + (size_t)row * ops->krow[i];
}

static lca_status check_args(const char *fn, const lca_plan *plan,
	const struct lcai_cp_run *run, int64_t tq, const char *const *names,
	const void *const *x, int nq, int nk)
{
	lca_status s;

	if (!plan)
		return lcai_cp_fail(LCA_ERR_NULL, "%s: plan is NULL", fn);
	if ((s = lcai_cp_check_run(fn, run)) != LCA_OK)
		return s;
	if (run->cu)
		return lcai_cp_fail(LCA_ERR_UNSUPPORTED, "%s: one sequence per call "
			"(cu_seqlens must be NULL)", fn);
	if (tq < 1)
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: tq %lld must be >= 1", fn, (long long)tq);
	/* the queries, weights and outputs on every rank, the keys where held */
	for (int i = 0; i < nq + nk; i++)
		if (!x[i] && (i < nq || run->len > 0))
			return lcai_cp_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, names[i]);
	return LCA_OK;
}

/*
 * The second agreement: every rank gives its tq and whether it got its
 * buffers; all reach the same verdict from the same two words. A rank
 * that failed keeps its own message.
 */
static lca_status agree_tq(struct lcai_cp_comm *c, const char *fn,
	const struct lcai_cp_view *vw, int64_t tq, lca_status mine)
{
	/* One allmax of two words, which needs no memory (a rank out of it
	 * still votes): the largest tq, or the vote of a failed rank, which
	 * lies above every tq; and minus the smallest tq. */
	int64_t w[2] = { 0, INT64_MIN };
	lca_status s;

	if (mine == LCA_OK && (tq < 1 || tq >= LCAI_CP_FAILED))
		mine = lcai_cp_fail(LCA_ERR_SIZE, "%s: tq %lld is out of range", fn, (long long)tq);
	if (mine == LCA_OK) {  /* 1 <= tq: -tq cannot overflow */
		w[0] = tq;
		w[1] = -tq;
	} else {
		w[0] = lcai_cp_vote_word(c, mine);
	}
	if (lcai_cp_allmax(c, 1, w, 2))
		return lcai_cp_fail(LCA_ERR_INTERNAL, "%s: the transport failed", fn);
	if ((s = lcai_cp_vote_read(fn, mine, w[0])) != LCA_OK)
		return s;
	if (w[0] != -w[1])
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: the ranks disagree on tq (from %lld "
			"to %lld)", fn, (long long)-w[1], (long long)w[0]);
	if (tq > vw->T)
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: tq %lld exceeds the %lld tokens of "
			"the sequence", fn, (long long)tq, (long long)vw->T);
	return LCA_OK;
}

/* Rows that saw nothing: o = 0, lse = -inf (lca_attn_merge(3) weighs
 * them as 0). */
static void nothing(const struct lcai_cp_view *vw, int64_t tq, char *o, char *lse)
{
	const int64_t n = tq * vw->p.H;

	memset(o, 0, (size_t)(n * vw->p.dv) * vw->es);
	for (int64_t i = 0; i < n; i++) {
		if (vw->es == 8)
			((double *)(void *)lse)[i] = -INFINITY;
		else
			((float *)(void *)lse)[i] = -INFINITY;
	}
}

/* This rank's part: the partial over each run of its keys (zigzag: two,
 * merged here in token order; the buffer tmp holds the second's), or, with
 * no key, rows that saw nothing. */
static lca_status my_part(const struct dec_ops *ops, const lca_plan *plan,
	const struct lcai_cp_view *vw, int64_t tq, size_t ob, char *o, char *tmp)
{
	const struct lcai_cp_span *sp = vw->run + (size_t)vw->r * (size_t)vw->nr;
	int have = 0;
	lca_status s = LCA_OK;

	for (int i = 0; i < vw->nr && s == LCA_OK; i++) {
		char *po = have ? tmp : o;

		if (sp[i].n == 0)
			continue;
		s = ops->partial(ops, plan, tq, vw->T - tq, sp[i].n, sp[i].g, sp[i].row, po,
			po + ob);
		if (s == LCA_OK && have) {
			const void *op[2] = { o, tmp }, *lp[2] = { o + ob, tmp + ob };

			s = lca_attn_merge(plan, tq, 2, op, lp, o, o + ob);
		}
		have = 1;
	}
	if (!have)
		nothing(vw, tq, o, o + ob);
	return s;
}

/* After the plan and layout agreement: parts, all-gather, merge. o and
 * lse are written only when every rank succeeded. */
static lca_status decode(struct lcai_cp_comm *c, const char *fn, const lca_plan *plan,
	const struct lcai_cp_view *vw, const struct dec_ops *ops, int64_t tq, void *o,
	void *lse)
{
	const int P = vw->P;
	int ovf = 0;
	const size_t ob = lcai_cp_mul(&ovf, tq, vw->p.H, vw->p.dv, (int64_t)vw->es);
	const size_t lb = lcai_cp_mul(&ovf, tq, vw->p.H, (int64_t)vw->es, 1);
	size_t part = ob + lb;
	char *mine = NULL, *all = NULL, *acc = NULL;
	const void **op = NULL, **lp = NULL;
	lca_status s = LCA_OK;

	if (ovf || part < ob || (size_t)P > SIZE_MAX / (2 * part + 2))
		s = lcai_cp_fail(LCA_ERR_OVERFLOW, "%s: buffer sizes overflow size_t", fn);
	if (s == LCA_OK) {
		mine = malloc(2 * part);  /* the part, then a second run's */
		all = malloc((size_t)P * part);
		acc = malloc(part);
		op = malloc((size_t)P * sizeof *op);
		lp = malloc((size_t)P * sizeof *lp);
		if (!mine || !all || !acc || !op || !lp)
			s = lcai_cp_fail(LCA_ERR_NOMEM, "%s: no memory for the parts", fn);
	}
	if ((s = agree_tq(c, fn, vw, tq, s)) != LCA_OK)
		goto out;
	s = my_part(ops, plan, vw, tq, ob, mine, mine + part);
	if (s != LCA_OK)
		lcai_cp_fail(s, "%s: %s", fn, lca_last_error());
	if ((s = lcai_cp_all_ok(c, fn, s)) != LCA_OK)
		goto out;
	if (lcai_cp_allgather(c, 0, mine, part, all)) {
		s = lcai_cp_fail(LCA_ERR_INTERNAL, "%s: the transport failed", fn);
		goto out;
	}
	if (P == 1) {
		/* the single call's bits: a merge of one part would round nothing,
		 * but need not be trusted to */
		memcpy(acc, all, part);
	} else {
		for (int j = 0; j < P; j++) {
			op[j] = all + (size_t)j * part;
			lp[j] = all + (size_t)j * part + ob;
		}
		s = lca_attn_merge(plan, tq, P, op, lp, acc, acc + ob);
		if (s != LCA_OK)
			lcai_cp_fail(s, "%s: %s", fn, lca_last_error());
	}
	if ((s = lcai_cp_all_ok(c, fn, s)) == LCA_OK) {
		memcpy(o, acc, ob);
		if (lse)
			memcpy(lse, acc + ob, lb);
	}
out:
	free(mine);
	free(all);
	free(acc);
	free(op);
	free(lp);
	return s;
}

/* ---- softmax ------------------------------------------------------------------ */

static lca_status softmax_part(const struct dec_ops *ops, const lca_plan *plan,
	int64_t tq, int64_t q_pos0, int64_t Tk, int64_t k_pos0, int64_t row, void *o,
	void *lse)
{
	return lca_softmax_partial(plan, tq, q_pos0, Tk, k_pos0, ops->q[0], key_at(ops, 0, row),
		key_at(ops, 1, row), o, lse);
}

lca_status lcai_cp_softmax_decode(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, const struct lcai_cp_run *run, int64_t tq, const void *q,
	const void *k, const void *v, void *o, void *lse)
{
	static const char *const names[] = { "q", "o", "k", "v" };
	const void *x[] = { q, o, k, v };
	struct lcai_cp_view vw;
	struct dec_ops ops;
	lca_status s;

	lcai_cp_clear_error();
	s = check_args(fn, plan, run, tq, names, x, 2, 2);
	if ((s = lcai_cp_agree(c, fn, plan, LCA_SOFTMAX, run, 0, s, &vw)) != LCA_OK)
		return s;
	memset(&ops, 0, sizeof ops);
	ops.partial = softmax_part;
	ops.q[0] = q;
	ops.key[0] = k;
	ops.key[1] = v;
	ops.krow[0] = (size_t)(vw.p.Hkv * vw.p.dk) * vw.es;
	ops.krow[1] = (size_t)(vw.p.Hkv * vw.p.dv) * vw.es;
	s = decode(c, fn, plan, &vw, &ops, tq, o, lse);
	lcai_cp_view_free(&vw);
	return s;
}

/* ---- mla ---------------------------------------------------------------------- */

static lca_status mla_part(const struct dec_ops *ops, const lca_plan *plan,
	int64_t tq, int64_t q_pos0, int64_t Tk, int64_t k_pos0, int64_t row, void *o,
	void *lse)
{
	return lca_mla_partial(plan, tq, q_pos0, Tk, k_pos0, ops->q[0], ops->q[1],
		key_at(ops, 0, row), key_at(ops, 1, row), ops->w[0], ops->w[1], o, lse);
}

lca_status lcai_cp_mla_decode(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, const struct lcai_cp_run *run, int64_t tq,
	const void *q_nope, const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, void *o, void *lse)
{
	static const char *const names[] = { "q_nope", "q_rope", "w_uk", "w_uv", "o",
		"ckv", "k_rope" };
	const void *x[] = { q_nope, q_rope, w_uk, w_uv, o, ckv, k_rope };
	struct lcai_cp_view vw;
	struct dec_ops ops;
	lca_status s;

	lcai_cp_clear_error();
	s = check_args(fn, plan, run, tq, names, x, 5, 2);
	if ((s = lcai_cp_agree(c, fn, plan, LCA_MLA, run, 0, s, &vw)) != LCA_OK)
		return s;
	memset(&ops, 0, sizeof ops);
	ops.partial = mla_part;
	ops.q[0] = q_nope;
	ops.q[1] = q_rope;
	ops.key[0] = ckv;
	ops.key[1] = k_rope;
	ops.w[0] = w_uk;
	ops.w[1] = w_uv;
	ops.krow[0] = (size_t)vw.p.dc * vw.es;
	ops.krow[1] = (size_t)vw.p.dr * vw.es;
	s = decode(c, fn, plan, &vw, &ops, tq, o, lse);
	lcai_cp_view_free(&vw);
	return s;
}
