/*
 * cp_attn.c - ring attention for softmax and mla (Liu et al., "Ring
 * Attention with Blockwise Transformers", 2023): each rank keeps its
 * queries, the key blocks (a rank's keys: one run, or two under the
 * zigzag layout) travel rank r -> r + 1, and each rank merges the partial
 * (o, lse) of its queries over every block it sees (lca_attn_merge(3):
 * exact up to rounding).
 *
 * A rank's tokens are cut into pieces at the sequences' boundaries
 * (layout.c); a query piece attends only to key pieces of its own
 * sequence, at positions within that sequence. A block travels only as
 * far as some rank still needs it, and of each key piece only the span
 * some later query needs: with a causal mask keys after every later query
 * stay behind, with a window keys before every later query's window do.
 * Fully masked pieces are neither computed nor sent. The sender and the
 * receiver decide from the same agreed layout, so they agree on every
 * message. While a block is sent on, the rank computes on it (both only
 * read it): the transfer overlaps the compute.
 *
 * softmax blocks are [L][Hkv][dk] keys then [L][Hkv][dv] values (kv
 * heads only: GQA sends Hkv, not H, heads); mla blocks are the latent,
 * [L][dc] ckv then [L][dr] k_rope, never the decompressed K and V.
 *
 * One rank runs the plain forward call itself (bit for bit the
 * single-process result).
 */
#include "cp.h"

#include <stdlib.h>
#include <string.h>

/* The keys of key piece kp that query piece qp sees: offsets [*a, *b)
 * within kp (empty: *a >= *b). Same sequence required. */
static void needs(const struct lcai_cp_view *vw, const struct lcai_cp_piece *qp,
	const struct lcai_cp_piece *kp, int64_t *a, int64_t *b)
{
	const int64_t W = vw->p.window;

	*a = 0;
	*b = qp->seq == kp->seq ? kp->n : 0;
	if (*b == 0 || !vw->p.causal)
		return;
	/* keys at or before the last query, and within W of the first */
	if (qp->pos + qp->n - kp->pos < *b)
		*b = qp->pos + qp->n - kp->pos;
	if (W > 0 && qp->pos - W + 1 - kp->pos > *a)
		*a = qp->pos - W + 1 - kp->pos;
}

/* The span of key piece ki (rank j's) that block j carries at hop e of
 * its path: what the ranks at hops e .. P - 1 need (hop 0: all of it). */
static void held(const struct lcai_cp_view *vw, int j, int e, int64_t ki, int64_t *lo,
	int64_t *hi)
{
	const struct lcai_cp_piece *kp = &vw->pc[ki];
	int64_t i0 = ki, i1 = ki;

	*lo = 0;
	*hi = kp->n;
	if (e == 0)
		return;
	*lo = kp->n;
	*hi = 0;
	/* the pieces of kp's sequence lie next to it in global order */
	while (i0 > 0 && vw->pc[i0 - 1].seq == kp->seq)
		i0--;
	while (i1 + 1 < vw->npc && vw->pc[i1 + 1].seq == kp->seq)
		i1++;
	for (int64_t i = i0; i <= i1; i++) {
		int64_t a, b;

		if ((vw->pc[i].rank - j + vw->P) % vw->P < e)
			continue;
		needs(vw, &vw->pc[i], kp, &a, &b);
		if (a < b) {
			*lo = a < *lo ? a : *lo;
			*hi = b > *hi ? b : *hi;
		}
	}
	if (*lo >= *hi)
		*lo = *hi = 0;
}

/* A block as held: rank j's key pieces, piece i's span [lo, hi) at
 * token offset off within each part of the buffer, L tokens in all. */
struct blk {
	int j;
	int64_t L, *lo, *hi, *off;
};

static void block_at(const struct lcai_cp_view *vw, int j, int e, struct blk *b)
{
	int64_t k = 0;

	b->j = j;
	for (int64_t i = vw->rpc0[j]; i < vw->rpc0[j + 1]; i++, k++) {
		held(vw, j, e, vw->rpc[i], &b->lo[k], &b->hi[k]);
		b->off[k] = k ? b->off[k - 1] + (b->hi[k - 1] - b->lo[k - 1]) : 0;
	}
	b->L = k ? b->off[k - 1] + (b->hi[k - 1] - b->lo[k - 1]) : 0;
}

/* What differs between softmax and mla. */
struct ring_ops {
	size_t row[2];          /* bytes per token of the block's two parts */
	size_t qrow[2];         /* bytes per token of x[0], x[1] (queries) */
	const void *own[2];     /* this rank's two parts */
	/* Partial attention of Tq queries from row qr at q_pos0 over a block
	 * of Tk keys at k_pos0 (parts kb0, kb1) into o, lse. */
	lca_status (*partial)(const struct ring_ops *ops, const lca_plan *plan,
		int64_t qr, int64_t Tq, int64_t q_pos0, int64_t Tk, int64_t k_pos0,
		const void *kb0, const void *kb1, void *o, void *lse);
	/* The plain forward call on the whole batch (one rank). */
	lca_status (*whole)(const struct ring_ops *ops, const lca_plan *plan,
		const struct lcai_cp_view *vw, void *o, void *lse);
	const void *x[4];       /* the call's other inputs (queries, weights) */
};

/* Part p of a held block of L tokens at token offset t. */
static char *part(const struct ring_ops *ops, char *buf, int64_t L, int p, int64_t t)
{
	return buf + (p ? (size_t)L * ops->row[0] : 0) + (size_t)t * ops->row[p];
}

/* Copy the spans of nb (a sub-span of each of cb's) out of cur into out. */
static void pack(const struct ring_ops *ops, const struct blk *cb, const char *cur,
	const struct blk *nb, char *out, int64_t np)
{
	for (int64_t k = 0; k < np; k++) {
		int64_t n = nb->hi[k] - nb->lo[k], d = nb->lo[k] - cb->lo[k];

		for (int p = 0; p < 2 && n > 0; p++)
			memcpy(part(ops, out, nb->L, p, nb->off[k]),
				part(ops, (char *)cur, cb->L, p, cb->off[k] + d),
				(size_t)n * ops->row[p]);
	}
}

/* Scratch of one rank's ring. */
struct ring_mem {
	char *buf[2], *snd, *acc;   /* held blocks, the packed send, o|lse|po|pl */
	struct blk b[3];            /* the block held, arriving, sent */
	int64_t *arr;
	unsigned char *have;        /* [query pieces] a partial merged yet */
	size_t ob, lb, pob;         /* bytes: o, lse of the rank; one piece's o */
};

/* This rank's queries over block cb (held in cur): a partial per pair of
 * same-sequence pieces that see each other, merged into acc. */
static lca_status compute(const lca_plan *plan, const struct lcai_cp_view *vw,
	const struct ring_ops *ops, const struct blk *cb, char *cur, struct ring_mem *m)
{
	const int r = vw->r;
	const int64_t Hd = vw->p.H * vw->p.dv, H = vw->p.H, es = (int64_t)vw->es;
	lca_status s = LCA_OK;

	for (int64_t qi = vw->rpc0[r]; qi < vw->rpc0[r + 1] && s == LCA_OK; qi++) {
		const struct lcai_cp_piece *qp = &vw->pc[vw->rpc[qi]];
		const int64_t q = qi - vw->rpc0[r];
		char *o = m->acc + (size_t)(qp->row * Hd * es);
		char *l = m->acc + m->ob + (size_t)(qp->row * H * es);

		for (int64_t k = 0; k < vw->rpc0[cb->j + 1] - vw->rpc0[cb->j] && s == LCA_OK; k++) {
			const struct lcai_cp_piece *kp = &vw->pc[vw->rpc[vw->rpc0[cb->j] + k]];
			char *po = m->have[q] ? m->acc + m->ob + m->lb : o;
			char *pl = m->have[q] ? m->acc + m->ob + m->lb + m->pob : l;
			int64_t a, b;

			needs(vw, qp, kp, &a, &b);
			a = a > cb->lo[k] ? a : cb->lo[k];
			b = b < cb->hi[k] ? b : cb->hi[k];
			if (a >= b)
				continue;
			s = ops->partial(ops, plan, qp->row, qp->n, qp->pos, b - a, kp->pos + a,
				part(ops, cur, cb->L, 0, cb->off[k] + a - cb->lo[k]),
				part(ops, cur, cb->L, 1, cb->off[k] + a - cb->lo[k]), po, pl);
			if (s == LCA_OK && m->have[q]) {
				const void *op[2] = { o, po }, *lp[2] = { l, pl };

				s = lca_attn_merge(plan, qp->n, 2, op, lp, o, l);
			}
			m->have[q] = 1;
		}
	}
	return s;
}

static void ring_free(struct ring_mem *m)
{
	free(m->buf[0]);
	free(m->buf[1]);
	free(m->snd);
	free(m->acc);
	free(m->arr);
	free(m->have);
}

/* Scratch for the ring; LCA_OK or a status with its message. */
static lca_status ring_alloc(const char *fn, const struct lcai_cp_view *vw,
	const struct ring_ops *ops, struct ring_mem *m)
{
	const int64_t n = vw->len[vw->r], H = vw->p.H, dv = vw->p.dv, es = (int64_t)vw->es;
	const size_t rowb = ops->row[0] + ops->row[1];
	int64_t maxlen = 0, maxnp = 1, maxpc = 0;
	int ovf = 0;
	size_t bb, sc;

	memset(m, 0, sizeof *m);
	for (int j = 0; j < vw->P; j++) {
		maxlen = vw->len[j] > maxlen ? vw->len[j] : maxlen;
		maxnp = vw->rpc0[j + 1] - vw->rpc0[j] > maxnp ? vw->rpc0[j + 1] - vw->rpc0[j] : maxnp;
	}
	for (int64_t i = vw->rpc0[vw->r]; i < vw->rpc0[vw->r + 1]; i++)
		maxpc = vw->pc[vw->rpc[i]].n > maxpc ? vw->pc[vw->rpc[i]].n : maxpc;
	m->ob = lcai_cp_mul(&ovf, n, H, dv, es);
	m->lb = lcai_cp_mul(&ovf, n, H, es, 1);
	m->pob = lcai_cp_mul(&ovf, maxpc, H, dv, es);
	sc = lcai_cp_mul(&ovf, maxpc, H, es, 1);
	bb = lcai_cp_mul(&ovf, maxlen, (int64_t)rowb, 1, 1);
	(void)lcai_cp_mul(&ovf, maxnp, 9, sizeof(int64_t), 1);
	if (ovf || m->ob + m->lb + m->pob + sc < m->ob || SIZE_MAX - 1 - m->ob - m->lb < m->pob + sc)
		return lcai_cp_fail(LCA_ERR_OVERFLOW, "%s: buffer sizes overflow size_t", fn);
	m->buf[0] = malloc(bb + 1);
	m->buf[1] = malloc(bb + 1);
	m->snd = malloc(bb + 1);
	m->acc = malloc(m->ob + m->lb + m->pob + sc + 1);
	m->arr = malloc((size_t)maxnp * 9 * sizeof *m->arr);
	m->have = calloc((size_t)maxnp, 1);
	if (!m->buf[0] || !m->buf[1] || !m->snd || !m->acc || !m->arr || !m->have)
		return lcai_cp_fail(LCA_ERR_NOMEM, "%s: no memory for the ring buffers", fn);
	for (int i = 0; i < 3; i++) {
		m->b[i].lo = m->arr + (size_t)maxnp * (3 * i);
		m->b[i].hi = m->b[i].lo + maxnp;
		m->b[i].off = m->b[i].hi + maxnp;
	}
	return LCA_OK;
}

/* One step's messages: send nb packed in m->snd, receive ib into next. */
static void step_segs(const struct ring_ops *ops, const struct blk *nb, char *snd,
	const struct blk *ib, char *next, struct lcai_cp_seg *seg)
{
	memset(seg, 0, LCAI_CP_NSEG * sizeof *seg);
	for (int p = 0; p < 2; p++) {
		if (nb) {
			seg[p].send = part(ops, snd, nb->L, p, 0);
			seg[p].sbytes = (size_t)nb->L * ops->row[p];
		}
		if (ib) {
			seg[p].recv = part(ops, next, ib->L, p, 0);
			seg[p].rbytes = (size_t)ib->L * ops->row[p];
		}
	}
}

/* The ring proper, after agreement: o [len][H][dv] and lse [len][H] are
 * written only when every rank succeeded. */
static lca_status ring(struct lcai_cp_comm *c, const char *fn, const lca_plan *plan,
	const struct lcai_cp_view *vw, const struct ring_ops *ops, void *o, void *lse)
{
	const int P = vw->P, r = vw->r;
	const int64_t n = vw->len[r], np = vw->rpc0[r + 1] - vw->rpc0[r];
	struct ring_mem m;
	lca_status s = ring_alloc(fn, vw, ops, &m);

	/* One rank: the plain call, bit for bit. */
	if (s == LCA_OK && P == 1 && (s = ops->whole(ops, plan, vw, m.acc,
	    lse ? m.acc + m.ob : NULL)) != LCA_OK)
		lcai_cp_fail(s, "%s: %s", fn, lca_last_error());
	/* Every rank learns whether all can run the ring before any shift. */
	if ((s = lcai_cp_all_ok(c, fn, s)) != LCA_OK || P == 1)
		goto done;
	for (int p = 0; p < 2 && n > 0; p++)
		memcpy(part(ops, m.buf[0], n, p, 0), ops->own[p], (size_t)n * ops->row[p]);
	block_at(vw, r, 0, &m.b[0]);
	for (int st = 0; st < P; st++) {
		const int j = (r - st + P) % P;         /* the block held now */
		const int jin = (r - 1 - st + P) % P;   /* the block arriving */
		char *cur = m.buf[st % 2], *next = m.buf[(st + 1) % 2];
		struct lcai_cp_seg seg[LCAI_CP_NSEG];
		int snd = 0, rcv = 0;

		if (st < P - 1) {
			block_at(vw, j, st + 1, &m.b[2]);
			block_at(vw, jin, st + 1, &m.b[1]);
			snd = m.b[2].L > 0;
			rcv = m.b[1].L > 0;
			if (snd)
				pack(ops, &m.b[0], cur, &m.b[2], m.snd, vw->rpc0[j + 1] - vw->rpc0[j]);
		}
		step_segs(ops, snd ? &m.b[2] : NULL, m.snd, rcv ? &m.b[1] : NULL, next, seg);
		if (lcai_cp_shift_start(c, seg)) {
			s = lcai_cp_fail(LCA_ERR_INTERNAL, "%s: the transport failed", fn);
			goto out;
		}
		if (s == LCA_OK && (s = compute(plan, vw, ops, &m.b[0], cur, &m)) != LCA_OK)
			lcai_cp_fail(s, "%s: %s", fn, lca_last_error());
		if (lcai_cp_shift_wait(c)) {
			s = lcai_cp_fail(LCA_ERR_INTERNAL, "%s: the transport failed", fn);
			goto out;
		}
		if (st < P - 1) {
			struct blk t = m.b[0];

			m.b[0] = m.b[1];
			m.b[1] = t;
		}
	}
	/* every query sees itself, so every piece got a partial */
	for (int64_t q = 0; q < np; q++)
		if (s == LCA_OK && !m.have[q])
			s = lcai_cp_fail(LCA_ERR_INTERNAL, "%s: a query piece saw no key", fn);
	s = lcai_cp_all_ok(c, fn, s);
done:
	if (s == LCA_OK && n > 0) {
		memcpy(o, m.acc, m.ob);
		if (lse)
			memcpy(lse, m.acc + m.ob, m.lb);
	}
out:
	ring_free(&m);
	return s;
}

/* ---- softmax ---------------------------------------------------------------- */

static const char *at(const void *x, size_t row, int64_t r)
{
	return (const char *)x + (size_t)r * row;
}

static lca_status softmax_part(const struct ring_ops *ops, const lca_plan *plan,
	int64_t qr, int64_t Tq, int64_t q_pos0, int64_t Tk, int64_t k_pos0,
	const void *kb0, const void *kb1, void *o, void *lse)
{
	return lca_softmax_partial(plan, Tq, q_pos0, Tk, k_pos0, at(ops->x[0], ops->qrow[0], qr),
		kb0, kb1, o, lse);
}

static lca_status softmax_whole(const struct ring_ops *ops, const lca_plan *plan,
	const struct lcai_cp_view *vw, void *o, void *lse)
{
	return lca_softmax_forward(plan, vw->T, vw->T, ops->x[0], ops->own[0], ops->own[1],
		vw->user_cu ? vw->cu : NULL, vw->nseq, o, lse);
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
	s = lcai_cp_check_run(fn, run);
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
	ops.qrow[0] = (size_t)(vw.p.H * vw.p.dk) * vw.es;
	ops.partial = softmax_part;
	ops.whole = softmax_whole;
	s = ring(c, fn, plan, &vw, &ops, o, lse);
	lcai_cp_view_free(&vw);
	return s;
}

/* ---- mla ---------------------------------------------------------------------- */

static lca_status mla_part(const struct ring_ops *ops, const lca_plan *plan,
	int64_t qr, int64_t Tq, int64_t q_pos0, int64_t Tk, int64_t k_pos0,
	const void *kb0, const void *kb1, void *o, void *lse)
{
	return lca_mla_partial(plan, Tq, q_pos0, Tk, k_pos0, at(ops->x[0], ops->qrow[0], qr),
		at(ops->x[1], ops->qrow[1], qr), kb0, kb1, ops->x[2], ops->x[3], o, lse);
}

static lca_status mla_whole(const struct ring_ops *ops, const lca_plan *plan,
	const struct lcai_cp_view *vw, void *o, void *lse)
{
	return lca_mla_forward(plan, vw->T, vw->T, ops->x[0], ops->x[1], ops->own[0],
		ops->own[1], ops->x[2], ops->x[3], vw->user_cu ? vw->cu : NULL, vw->nseq, o, lse);
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
	s = lcai_cp_check_run(fn, run);
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
	ops.qrow[0] = (size_t)(vw.p.H * vw.p.dn) * vw.es;
	ops.qrow[1] = (size_t)(vw.p.H * vw.p.dr) * vw.es;
	ops.partial = mla_part;
	ops.whole = mla_whole;
	s = ring(c, fn, plan, &vw, &ops, o, lse);
	lcai_cp_view_free(&vw);
	return s;
}
