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
	W_MAGIC, W_STATUS, W_START, W_LEN, W_STATE0,
	/* from here on every rank must send the same words */
	W_VARIANT, W_DTYPE, W_H, W_HKV, W_HK, W_DK, W_DV, W_DN, W_DR, W_DC,
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
	"magic", "status", "start", "len", "state0", "variant", "dtype", "H", "Hkv",
	"Hk", "dk", "dv", "dn", "dr", "dc", "causal", "window", "rope_dim",
	"rope_style", "qk_l2norm", "scale", "rope_theta",
};

/* The verdict on the gathered headers all [P][W_N]: the same on every rank. */
static lca_status judge(const char *fn, const int64_t *all, int P)
{
	int64_t next = 0;

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

		for (int i = W_STATE0; i < W_N; i++)
			if (w[i] != all[i])
				return lcai_cp_fail(i == W_VARIANT ? LCA_ERR_ARG : LCA_ERR_SIZE,
					"%s: ranks 0 and %d disagree on %s", fn, j, word_name[i]);
		if (w[W_START] != next)
			return lcai_cp_fail(LCA_ERR_SIZE, "%s: rank %d starts at token %lld, "
				"not %lld (contiguous runs in rank order from token 0)", fn, j,
				(long long)w[W_START], (long long)next);
		if (w[W_LEN] > INT64_MAX - next)
			return lcai_cp_fail(LCA_ERR_OVERFLOW, "%s: the runs' total length "
				"overflows int64", fn);
		next += w[W_LEN];
	}
	if (next < 1)
		return lcai_cp_fail(LCA_ERR_SIZE, "%s: the sequence has no token", fn);
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
	/* P headers of 176 bytes: the one allocation whose failure a rank
	 * cannot tell its peers (they then wait in the exchange). */
	if (!all)
		return lcai_cp_fail(LCA_ERR_NOMEM, "%s: no memory for %d headers", fn, P);
	if (lcai_cp_allgather(c, 1, mine, sizeof mine, all)) {
		free(all);
		return lcai_cp_fail(LCA_ERR_INTERNAL, "%s: the transport failed", fn);
	}
	/* A rank that failed keeps its own message; the others name it. */
	s = local != LCA_OK ? local : judge(fn, all, P);
	if (s == LCA_OK) {
		vw->start = malloc((size_t)P * sizeof *vw->start);
		vw->len = malloc((size_t)P * sizeof *vw->len);
		if (!vw->start || !vw->len)
			s = lcai_cp_fail(LCA_ERR_NOMEM, "%s: no memory for the layout", fn);
	}
	/* A local allocation failure must reach the others too. */
	s = lcai_cp_all_ok(c, fn, s);
	if (s != LCA_OK) {
		free(all);
		lcai_cp_view_free(vw);
		return s;
	}
	vw->P = P;
	vw->r = c->rank;
	vw->p = p;
	vw->es = p.dtype == LCA_F64 ? 8 : 4;
	vw->has_state0 = has_state0;
	vw->T = 0;
	for (int j = 0; j < P; j++) {
		vw->start[j] = all[(size_t)j * W_N + W_START];
		vw->len[j] = all[(size_t)j * W_N + W_LEN];
		vw->T += vw->len[j];
	}
	free(all);
	return LCA_OK;
}

void lcai_cp_view_free(struct lcai_cp_view *vw)
{
	free(vw->start);
	free(vw->len);
	vw->start = vw->len = NULL;
}

lca_status lcai_cp_all_ok(struct lcai_cp_comm *c, const char *fn, lca_status mine)
{
	int64_t st = mine, *all = malloc((size_t)c->size * sizeof *all);
	char keep[sizeof cp_msg];

	if (!all) /* cannot vote; a peer may then wait: the one unsafe spot */
		return lcai_cp_fail(LCA_ERR_NOMEM, "%s: no memory for the status vote", fn);
	memcpy(keep, cp_msg, sizeof keep);
	if (lcai_cp_allgather(c, 1, &st, sizeof st, all)) {
		free(all);
		return lcai_cp_fail(LCA_ERR_INTERNAL, "%s: the transport failed", fn);
	}
	for (int j = 0; j < c->size; j++)
		if (all[j] != LCA_OK) {
			lca_status s = (lca_status)all[j];

			free(all);
			if (mine != LCA_OK) {
				memcpy(cp_msg, keep, sizeof keep);
				return mine;
			}
			return lcai_cp_fail(s, "%s: rank %d failed (%s)", fn, j, lca_strerror(s));
		}
	free(all);
	return LCA_OK;
}
