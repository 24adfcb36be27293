/*
 * cp_attn.c - ring attention for softmax and mla over contiguous runs
 * (Liu et al., "Ring Attention with Blockwise Transformers", 2023): each
 * rank keeps its queries, the key blocks travel rank r -> r + 1, and each
 * rank merges the partial (o, lse) of its queries over every block it
 * sees (lca_attn_merge(3): exact up to rounding).
 *
 * A block travels only as far as some rank still sees it: with a causal
 * mask rank j's keys never reach ranks before j (the wrap-around of the
 * ring carries nothing), and with a window only the keys some later
 * query can reach travel (a block's tail, shorter at every hop). The
 * sender and the receiver decide from the same agreed layout, so they
 * agree on every message. While a block is sent on, the rank computes
 * on it (both only read it): the transfer overlaps the compute.
 *
 * softmax blocks are [len][Hkv][dk] keys then [len][Hkv][dv] values (kv
 * heads only: GQA sends Hkv, not H, heads); mla blocks are the latent,
 * [len][dc] ckv then [len][dr] k_rope, never the decompressed K and V.
 */
#include "cp.h"

#include <stdlib.h>
#include <string.h>

/* Whether some query of rank q sees some key of rank j. */
static int sees(const struct lcai_cp_view *vw, int q, int j)
{
	int64_t q0 = vw->start[q], q1 = q0 + vw->len[q] - 1;
	int64_t k0 = vw->start[j], k1 = k0 + vw->len[j] - 1;

	if (vw->len[q] == 0 || vw->len[j] == 0)
		return 0;
	if (!vw->p.causal)
		return 1;
	if (k0 > q1)
		return 0;
	return vw->p.window == 0 || q0 - k1 < vw->p.window;
}

/* Whether rank r sends block j on to r + 1: a rank further along j's
 * path round the ring (r + 1, ..., j - 1 mod P) sees it. */
static int carries(const struct lcai_cp_view *vw, int r, int j)
{
	int P = vw->P;

	for (int e = (r + 1 - j + P) % P; e > 0 && e < P; e++)
		if (sees(vw, (j + e) % P, j))
			return 1;
	return 0;
}

/* The first key of block j that rank q or any rank after it can see: with
 * a window, keys before start_q - W + 1 are out of reach of every query
 * from rank q on (their positions only grow), so they are not sent. Rank
 * q holds keys [keep(q, j), end_j) of block j. */
static int64_t keep(const struct lcai_cp_view *vw, int q, int j)
{
	int64_t k0 = vw->start[j], w = vw->p.window;

	if (vw->p.causal && w > 0 && vw->start[q] - w + 1 > k0)
		return vw->start[q] - w + 1;
	return k0;
}

/* Whether rank r sends (a tail of) block j to r + 1 at a step before the
 * last; the receiver asks the same question about r = its rank - 1. */
static int sends(const struct lcai_cp_view *vw, int r, int j)
{
	int q = (r + 1) % vw->P;

	return carries(vw, r, j) && keep(vw, q, j) < vw->start[j] + vw->len[j];
}

/* What differs between softmax and mla. */
struct ring_ops {
	size_t row[2];          /* bytes per token of the block's two parts */
	const void *own[2];     /* this rank's two parts */
	/* Partial attention of this rank's queries over a block of Tk keys
	 * at k_pos0 (parts kb[0], kb[1]) into o, lse. */
	lca_status (*partial)(const struct ring_ops *ops, const lca_plan *plan,
		int64_t Tq, int64_t q_pos0, int64_t Tk, int64_t k_pos0,
		const void *kb0, const void *kb1, void *o, void *lse);
	const void *x[4];       /* the call's other inputs (queries, weights) */
};

/* Block buffer layout: part 0 of len tokens, then part 1. */
static void *part1(const struct ring_ops *ops, void *b, int64_t len)
{
	return (char *)b + (size_t)len * ops->row[0];
}

/* The ring proper, after agreement: o [len][H][dv] and lse [len][H] are
 * written only when every rank succeeded. */
static lca_status ring(struct lcai_cp_comm *c, const char *fn, const lca_plan *plan,
	const struct lcai_cp_view *vw, const struct ring_ops *ops, void *o, void *lse)
{
	const int P = vw->P, r = vw->r;
	const int64_t n = vw->len[r], H = vw->p.H, dv = vw->p.dv;
	const size_t es = vw->es, rowb = ops->row[0] + ops->row[1];
	int64_t maxlen = 0;
	size_t ob, lb;
	int ovf = 0, have = 0;
	char *buf[2] = { NULL, NULL }, *acc = NULL;
	lca_status s = LCA_OK;

	for (int j = 0; j < P; j++)
		maxlen = vw->len[j] > maxlen ? vw->len[j] : maxlen;
	ob = lcai_cp_mul(&ovf, n, H, dv, (int64_t)es);
	lb = lcai_cp_mul(&ovf, n, H, (int64_t)es, 1);
	(void)lcai_cp_mul(&ovf, maxlen, (int64_t)rowb, 2, 1);
	if (ovf || 2 * (ob + lb) < ob)
		s = lcai_cp_fail(LCA_ERR_OVERFLOW, "%s: buffer sizes overflow size_t", fn);
	if (s == LCA_OK) {
		buf[0] = malloc(maxlen * rowb + 1);
		buf[1] = malloc(maxlen * rowb + 1);
		acc = malloc(2 * (ob + lb) + 1); /* o, lse, then a partial's o, lse */
		if (!buf[0] || !buf[1] || !acc)
			s = lcai_cp_fail(LCA_ERR_NOMEM, "%s: no memory for the ring buffers", fn);
	}
	/* Every rank learns whether all can run the ring before any shift. */
	if ((s = lcai_cp_all_ok(c, fn, s)) != LCA_OK)
		goto out;
	if (n > 0) {
		memcpy(buf[0], ops->own[0], (size_t)n * ops->row[0]);
		memcpy(part1(ops, buf[0], n), ops->own[1], (size_t)n * ops->row[1]);
	}

	for (int st = 0; st < P; st++) {
		const int j = (r - st + P) % P;         /* the block held now */
		const int jin = (r - 1 - st + P) % P;   /* the block arriving */
		const int prev = (r - 1 + P) % P, nxt = (r + 1) % P;
		char *cur = buf[st % 2], *next = buf[(st + 1) % 2];
		const int64_t end = vw->start[j] + vw->len[j], k0 = keep(vw, r, j);
		const int64_t L = end - k0;             /* tokens held */
		struct lcai_cp_seg seg[LCAI_CP_NSEG];

		memset(seg, 0, sizeof seg);
		if (st < P - 1 && sends(vw, r, j)) {
			/* the tail from keep(r + 1, j): contiguous in each part */
			int64_t d = keep(vw, nxt, j) - k0;

			seg[0].send = cur + (size_t)d * ops->row[0];
			seg[0].sbytes = (size_t)(L - d) * ops->row[0];
			seg[1].send = (char *)part1(ops, cur, L) + (size_t)d * ops->row[1];
			seg[1].sbytes = (size_t)(L - d) * ops->row[1];
		}
		if (st < P - 1 && sends(vw, prev, jin)) {
			int64_t Lin = vw->start[jin] + vw->len[jin] - keep(vw, r, jin);

			seg[0].recv = next;
			seg[0].rbytes = (size_t)Lin * ops->row[0];
			seg[1].recv = part1(ops, next, Lin);
			seg[1].rbytes = (size_t)Lin * ops->row[1];
		}
		if (lcai_cp_shift_start(c, seg)) {
			s = lcai_cp_fail(LCA_ERR_INTERNAL, "%s: the transport failed", fn);
			goto out;
		}
		if (s == LCA_OK && sees(vw, r, j)) {
			void *po = have ? acc + ob + lb : acc, *pl = (char *)po + ob;

			s = ops->partial(ops, plan, n, vw->start[r], L, k0, cur,
				part1(ops, cur, L), po, pl);
			if (s == LCA_OK && have) {
				const void *op[2] = { acc, po }, *lp[2] = { acc + ob, pl };

				s = lca_attn_merge(plan, n, 2, op, lp, acc, acc + ob);
			}
			if (s != LCA_OK)
				lcai_cp_fail(s, "%s: %s", fn, lca_last_error());
			have = 1;
		}
		if (lcai_cp_shift_wait(c)) {
			s = lcai_cp_fail(LCA_ERR_INTERNAL, "%s: the transport failed", fn);
			goto out;
		}
	}
	if ((s = lcai_cp_all_ok(c, fn, s)) == LCA_OK && n > 0) {
		memcpy(o, acc, ob);
		if (lse)
			memcpy(lse, acc + ob, lb);
	}
out:
	free(buf[0]);
	free(buf[1]);
	free(acc);
	return s;
}

/* ---- softmax ---------------------------------------------------------------- */

static lca_status softmax_part(const struct ring_ops *ops, const lca_plan *plan,
	int64_t Tq, int64_t q_pos0, int64_t Tk, int64_t k_pos0, const void *kb0,
	const void *kb1, void *o, void *lse)
{
	return lca_softmax_partial(plan, Tq, q_pos0, Tk, k_pos0, ops->x[0], kb0, kb1, o, lse);
}

/* NULL checks of a rank's own arguments (a rank with no token may pass
 * NULL everywhere). */
static lca_status need(const char *fn, int64_t len, const char *const *names,
	const void *const *x, int n)
{
	if (len == 0)
		return LCA_OK;
	for (int i = 0; i < n; i++)
		if (!x[i])
			return lcai_cp_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, names[i]);
	return LCA_OK;
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

lca_status lcai_cp_softmax(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, const struct lcai_cp_run *run, const void *q,
	const void *k, const void *v, void *o, void *lse)
{
	static const char *const names[] = { "plan", "q", "k", "v", "o" };
	const void *x[] = { plan, q, k, v, o };
	struct lcai_cp_view vw;
	struct ring_ops ops;
	lca_status s;

	lcai_cp_clear_error();
	s = check_run(fn, run);
	if (s == LCA_OK)
		s = plan ? need(fn, run->len, names, x, 5) :
			lcai_cp_fail(LCA_ERR_NULL, "%s: plan is NULL", fn);
	if ((s = lcai_cp_agree(c, fn, plan, LCA_SOFTMAX, run, 0, s, &vw)) != LCA_OK)
		return s;
	memset(&ops, 0, sizeof ops);
	ops.row[0] = (size_t)(vw.p.Hkv * vw.p.dk) * vw.es;
	ops.row[1] = (size_t)(vw.p.Hkv * vw.p.dv) * vw.es;
	ops.own[0] = k;
	ops.own[1] = v;
	ops.x[0] = q;
	ops.partial = softmax_part;
	s = ring(c, fn, plan, &vw, &ops, o, lse);
	lcai_cp_view_free(&vw);
	return s;
}

/* ---- mla ---------------------------------------------------------------------- */

static lca_status mla_part(const struct ring_ops *ops, const lca_plan *plan,
	int64_t Tq, int64_t q_pos0, int64_t Tk, int64_t k_pos0, const void *kb0,
	const void *kb1, void *o, void *lse)
{
	return lca_mla_partial(plan, Tq, q_pos0, Tk, k_pos0, ops->x[0], ops->x[1], kb0, kb1,
		ops->x[2], ops->x[3], o, lse);
}

lca_status lcai_cp_mla(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, const struct lcai_cp_run *run, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope, const void *w_uk,
	const void *w_uv, void *o, void *lse)
{
	static const char *const names[] = { "plan", "q_nope", "q_rope", "ckv", "k_rope",
		"w_uk", "w_uv", "o" };
	const void *x[] = { plan, q_nope, q_rope, ckv, k_rope, w_uk, w_uv, o };
	struct lcai_cp_view vw;
	struct ring_ops ops;
	lca_status s;

	lcai_cp_clear_error();
	s = check_run(fn, run);
	if (s == LCA_OK)
		s = plan ? need(fn, run->len, names, x, 8) :
			lcai_cp_fail(LCA_ERR_NULL, "%s: plan is NULL", fn);
	if ((s = lcai_cp_agree(c, fn, plan, LCA_MLA, run, 0, s, &vw)) != LCA_OK)
		return s;
	memset(&ops, 0, sizeof ops);
	ops.row[0] = (size_t)vw.p.dc * vw.es;
	ops.row[1] = (size_t)vw.p.dr * vw.es;
	ops.own[0] = ckv;
	ops.own[1] = k_rope;
	ops.x[0] = q_nope;
	ops.x[1] = q_rope;
	ops.x[2] = w_uk;
	ops.x[3] = w_uv;
	ops.partial = mla_part;
	s = ring(c, fn, plan, &vw, &ops, o, lse);
	lcai_cp_view_free(&vw);
	return s;
}
