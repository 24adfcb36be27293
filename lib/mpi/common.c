/*
 * common.c - what the context-parallel algorithms share: counted
 * transport calls, the agreement step, the final status vote and the
 * layer's own error message (liblcattn keeps its message mechanism
 * private; a failing core call's message is copied in here).
 */
#include "cp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors --------------------------------------------------------------- */

static _Thread_local char cp_msg[512];

lca_status lcai_cp_fail(lca_status s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cp_msg, sizeof cp_msg, fmt, ap);
	va_end(ap);
	return s;
}

void lcai_cp_clear_error(void)
{
	cp_msg[0] = '\0';
}

const char *lcai_cp_last_error(void)
{
	return cp_msg;
}

size_t lcai_cp_mul(int *ovf, int64_t a, int64_t b, int64_t c, int64_t d)
{
	int64_t x[4] = { a, b, c, d };
	size_t n = 1;

	for (int i = 0; i < 4; i++) {
		if (x[i] < 0 || (x[i] > 0 && n > SIZE_MAX / (size_t)x[i])) {
			*ovf = 1;
			return 0;
		}
		n *= (size_t)x[i];
	}
	return n;
}

/* ---- counted transport calls ---------------------------------------------- */

int lcai_cp_allgather(struct lcai_cp_comm *c, int control, const void *send,
	size_t bytes, void *recv)
{
	uint64_t n = (uint64_t)bytes * (uint64_t)(c->size - 1);

	if (control)
		c->control_sent += n;
	else
		c->payload_sent += n;
	return c->allgather(c, send, bytes, recv);
}

int lcai_cp_allmax(struct lcai_cp_comm *c, int control, int64_t *v, int n)
{
	uint64_t b = (uint64_t)n * sizeof *v * (uint64_t)(c->size - 1);

	if (control)
		c->control_sent += b;
	else
		c->payload_sent += b;
	return c->allmax(c, v, n);
}

int lcai_cp_shift_start(struct lcai_cp_comm *c, const struct lcai_cp_seg *seg)
{
	for (int i = 0; i < LCAI_CP_NSEG; i++)
		c->payload_sent += seg[i].sbytes;
	return c->shift_start(c, seg);
}

int lcai_cp_shift_wait(struct lcai_cp_comm *c)
{
	return c->shift_wait(c);
}

/* ---- agreement ------------------------------------------------------------ */

/* The header each rank sends: int64 words, doubles by their bits, so the
 * bytes compare exactly and no padding travels. */
enum {
	W_MAGIC, W_STATUS, W_START, W_LEN,
	/* from here on every rank must send the same words */
	W_KIND, W_TDECL, W_NSEQ, W_CUHASH, W_CULAST, W_STATE0, W_VARIANT, W_DTYPE, W_H, W_HKV, W_HK, W_DK, W_DV, W_DN, W_DR, W_DC,
	W_CAUSAL, W_WINDOW, W_ROPE_DIM, W_ROPE_STYLE, W_L2NORM, W_SCALE, W_THETA,
	W_N
};
#define CP_MAGIC ((int64_t)0x6c636170u) /* "lcap" */

static int64_t bits(double x)
{
	int64_t b;

	memcpy(&b, &x, sizeof b);
	return b;
}

static void header(int64_t *w, const lca_params *p, const struct lcai_cp_run *run,
	lca_variant variant, int has_state0, lca_status local)
{
	memset(w, 0, W_N * sizeof *w);
	w[W_MAGIC] = CP_MAGIC;
	w[W_STATUS] = local;
	w[W_START] = run ? run->start : -1;
	w[W_LEN] = run ? run->len : -1;
	if (run) {
		w[W_KIND] = run->kind;
		w[W_TDECL] = run->T;
		/* a NULL cu_seqlens is told apart from every array by nseq 0 */
		w[W_NSEQ] = run->cu ? run->nseq : 0;
		w[W_CUHASH] = run->cu && local == LCA_OK ? lcai_cp_cu_hash(run->cu, run->nseq) : 0;
		w[W_CULAST] = run->cu && local == LCA_OK ? run->cu[run->nseq] : 0;
	}
	w[W_STATE0] = has_state0;
	w[W_VARIANT] = variant;
	if (local != LCA_OK)
		return;
	w[W_DTYPE] = p->dtype;
	w[W_H] = p->H;
	w[W_HKV] = p->Hkv;
	w[W_HK] = p->Hk;
	w[W_DK] = p->dk;
	w[W_DV] = p->dv;
	w[W_DN] = p->dn;
	w[W_DR] = p->dr;
	w[W_DC] = p->dc;
	w[W_CAUSAL] = p->causal;
	w[W_WINDOW] = p->window;
	w[W_ROPE_DIM] = p->rope_dim;
	w[W_ROPE_STYLE] = p->rope_style;
	w[W_L2NORM] = p->qk_l2norm;
	w[W_SCALE] = bits(p->scale);
	w[W_THETA] = bits(p->rope_theta);
}

static const char *const word_name[W_N] = {
	"magic", "status", "start", "len", "the layout kind (contiguous, zigzag)",
	"the layout's T", "nseq", "cu_seqlens", "cu_seqlens", "state0", "variant", "dtype", "H", "Hkv",
	"Hk", "dk", "dv", "dn", "dr", "dc", "causal", "window", "rope_dim",
	"rope_style", "qk_l2norm", "scale", "rope_theta",
};

/* Contiguous runs: in rank order from token 0, no gap, no overlap; *T
 * their total (and the layout's T when given). */
static lca_status chain(const char *fn, const int64_t *all, int P, int64_t *T)
{
	int64_t next = 0, Td = all[W_TDECL];

	for (int j = 0; j < P; j++) {
		const int64_t *w = all + (size_t)j * W_N;

		if (w[W_START] != next)
			return lcai_cp_fail(LCA_ERR_SIZE, "%s: rank %d starts at token %lld, "
				"not %lld (contiguous runs in rank order from token 0)", fn, j,
				(long long)w[W_START], (long long)next);
		if (w[W_LEN] > INT64_MAX - next)
			return lcai_cp_fail(LCA_ERR_OVERFLOW, "%s: the runs' total length "
				"overflows int64", fn);
		next += w[W_LEN];
	}
	if (Td != 0 && Td != next)
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: the runs hold %lld tokens, the "
			"layout's T is %lld", fn, (long long)next, (long long)Td);
	*T = next;
	return LCA_OK;
}

/* Zigzag: each rank's start and len those of its chunks. */
static lca_status zigzag(const char *fn, const int64_t *all, int P, int64_t *T)
{
	const int64_t Td = all[W_TDECL];

	if (Td < 1)
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: the zigzag layout needs T >= 1 (T "
			"is %lld)", fn, (long long)Td);
	for (int j = 0; j < P; j++) {
		const int64_t *w = all + (size_t)j * W_N;
		int64_t g[2], n[2], len = 0, start = lcai_cp_frac(Td, j, 2 * (int64_t)P);
		int k = lcai_cp_zigzag_runs(Td, P, j, g, n);

		for (int i = 0; i < k; i++)
			len += n[i];
		if (w[W_START] != start || w[W_LEN] != len)
			return lcai_cp_fail(LCA_ERR_SIZE, "%s: rank %d says start %lld, len "
				"%lld; the zigzag layout of %lld tokens over %d ranks gives it "
				"start %lld, len %lld", fn, j, (long long)w[W_START],
				(long long)w[W_LEN], (long long)Td, P, (long long)start,
				(long long)len);
	}
	*T = Td;
	return LCA_OK;
}

/* The verdict on the gathered headers all [P][W_N]: the same on every
 * rank. *T: the batch's tokens. */
static lca_status judge(const char *fn, const int64_t *all, int P, int64_t *T)
{
	lca_status s;

	for (int j = 0; j < P; j++) {
		const int64_t *w = all + (size_t)j * W_N;

		if (w[W_MAGIC] != CP_MAGIC)
			return lcai_cp_fail(LCA_ERR_ARG, "%s: rank %d is not in the same "
				"lcattn_mpi call", fn, j);
		if (w[W_STATUS] != LCA_OK)
			return lcai_cp_fail((lca_status)w[W_STATUS], "%s: rank %d failed its "
				"local checks (%s)", fn, j, lca_strerror((lca_status)w[W_STATUS]));
	}
	for (int j = 0; j < P; j++) {
		const int64_t *w = all + (size_t)j * W_N;

		for (int i = W_KIND; i < W_N; i++)
			if (w[i] != all[i])
				return lcai_cp_fail(i == W_VARIANT ? LCA_ERR_ARG : LCA_ERR_SIZE,
					"%s: ranks 0 and %d disagree on %s", fn, j, word_name[i]);
	}
	s = all[W_KIND] == LCAI_CP_ZIGZAG ? zigzag(fn, all, P, T) : chain(fn, all, P, T);
	if (s != LCA_OK)
		return s;
	if (*T < 1)
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: the batch has no token", fn);
	if (all[W_NSEQ] > 0 && all[W_CULAST] != *T)
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: cu_seqlens[nseq] is %lld, the "
			"layout holds %lld tokens", fn, (long long)all[W_CULAST], (long long)*T);
	return LCA_OK;
}

/* A rank's own layout, before any exchange. */
lca_status lcai_cp_check_run(const char *fn, const struct lcai_cp_run *run)
{
	if (!run)
		return lcai_cp_fail(LCA_ERR_NULL, "%s: layout is NULL", fn);
	if (run->start < 0 || run->len < 0 || run->T < 0)
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: start %lld, len %lld and T %lld "
			"must be >= 0", fn, (long long)run->start, (long long)run->len,
			(long long)run->T);
	if (run->kind != 0 && run->kind != LCAI_CP_ZIGZAG)
		return lcai_cp_fail(LCA_ERR_ARG, "%s: layout kind %d is neither "
			"LCA_MPI_CONTIGUOUS nor LCA_MPI_ZIGZAG", fn, run->kind);
	if (!run->cu)
		return LCA_OK;
	if (run->nseq < 1 || run->nseq == INT64_MAX)
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: nseq %lld with cu_seqlens", fn,
			(long long)run->nseq);
	if (run->cu[0] != 0)
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: cu_seqlens[0] is %lld, not 0", fn,
			(long long)run->cu[0]);
	for (int64_t i = 0; i < run->nseq; i++)
		if (run->cu[i + 1] < run->cu[i])
			return lcai_cp_fail(LCA_ERR_SIZE, "%s: cu_seqlens decreases at %lld", fn,
				(long long)(i + 1));
	return LCA_OK;
}

lca_status lcai_cp_agree(struct lcai_cp_comm *c, const char *fn,
	const lca_plan *plan, lca_variant variant, const struct lcai_cp_run *run,
	int has_state0, lca_status local, struct lcai_cp_view *vw)
{
	int64_t mine[W_N], *all;
	lca_params p;
	int P = c->size, ovf = 0;
	size_t n = lcai_cp_mul(&ovf, P, W_N, sizeof *all, 1);
	lca_status s;

	memset(vw, 0, sizeof *vw);
	memset(&p, 0, sizeof p);
	if (local == LCA_OK && (local = lca_plan_params(plan, &p)) != LCA_OK)
		lcai_cp_fail(local, "%s: %s", fn, lca_last_error());
	if (local == LCA_OK && p.variant != variant)
		local = lcai_cp_fail(LCA_ERR_ARG, "%s: the plan is not of this call's "
			"variant", fn);
	if (local == LCA_OK && p.dtype != LCA_F64 && p.dtype != LCA_F32)
		local = lcai_cp_fail(LCA_ERR_UNSUPPORTED, "%s: only f64 and f32 plans "
			"are offered", fn);
	header(mine, &p, run, variant, has_state0, local);
	all = ovf ? NULL : malloc(n);
	/* Every rank learns whether all have room for the P headers before
	 * the exchange: a rank that had none and left alone would leave its
	 * peers waiting in it. */
	if ((s = lcai_cp_all_ok(c, fn, all ? LCA_OK : lcai_cp_fail(LCA_ERR_NOMEM,
	    "%s: no memory for %d headers", fn, P))) != LCA_OK) {
		free(all);
		return s;
	}
	if (lcai_cp_allgather(c, 1, mine, sizeof mine, all)) {
		free(all);
		return lcai_cp_fail(LCA_ERR_INTERNAL, "%s: the transport failed", fn);
	}
	/* A rank that failed keeps its own message; the others name it. */
	s = local != LCA_OK ? local : judge(fn, all, P, &vw->T);
	if (s == LCA_OK) {
		int64_t *start = malloc((size_t)P * sizeof *start);

		vw->P = P;
		vw->r = c->rank;
		vw->p = p;
		vw->es = p.dtype == LCA_F64 ? 8 : 4;
		vw->has_state0 = has_state0;
		vw->nr = run->kind == LCAI_CP_ZIGZAG ? 2 : 1;
		vw->user_cu = run->cu != NULL;
		vw->cu1[0] = 0;
		vw->cu1[1] = vw->T;
		vw->cu = run->cu ? run->cu : vw->cu1;
		vw->nseq = run->cu ? run->nseq : 1;
		vw->len = malloc((size_t)P * sizeof *vw->len);
		if (start && vw->len)
			for (int j = 0; j < P; j++) {
				start[j] = all[(size_t)j * W_N + W_START];
				vw->len[j] = all[(size_t)j * W_N + W_LEN];
			}
		if (!start || !vw->len || lcai_cp_view_layout(vw, start))
			s = lcai_cp_fail(LCA_ERR_NOMEM, "%s: no memory for the layout", fn);
		free(start);
	}
	free(all);
	/* A local allocation failure must reach the others too. */
	s = lcai_cp_all_ok(c, fn, s);
	if (s != LCA_OK)
		lcai_cp_view_free(vw);
	return s;
}

void lcai_cp_view_free(struct lcai_cp_view *vw)
{
	free(vw->len);
	free(vw->run);
	free(vw->pc);
	free(vw->rpc);
	free(vw->rpc0);
	vw->len = vw->rpc = vw->rpc0 = NULL;
	vw->run = NULL;
	vw->pc = NULL;
}

int64_t lcai_cp_vote_word(const struct lcai_cp_comm *c, lca_status mine)
{
	return mine == LCA_OK ? 0 : LCAI_CP_FAILED + ((int64_t)mine << 32) +
		(int64_t)(UINT32_MAX - (uint32_t)c->rank);
}

lca_status lcai_cp_vote_read(const char *fn, lca_status mine, int64_t w)
{
	lca_status s;
	int j;

	if (w < LCAI_CP_FAILED)
		return LCA_OK;
	if (mine != LCA_OK)
		return mine;  /* with this rank's own message */
	w -= LCAI_CP_FAILED;
	s = (lca_status)(w >> 32);
	j = (int)(UINT32_MAX - (uint32_t)(w & UINT32_MAX));
	return lcai_cp_fail(s, "%s: rank %d failed (%s)", fn, j, lca_strerror(s));
}

lca_status lcai_cp_all_ok(struct lcai_cp_comm *c, const char *fn, lca_status mine)
{
	int64_t w = lcai_cp_vote_word(c, mine);

	if (lcai_cp_allmax(c, 1, &w, 1))
		return lcai_cp_fail(LCA_ERR_INTERNAL, "%s: the transport failed", fn);
	return lcai_cp_vote_read(fn, mine, w);
}
