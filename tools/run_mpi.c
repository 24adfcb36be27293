/*
 * run_mpi.c - `mpirun -np P lcattn run --mpi IN OUT`: the case of IN split
 * over the ranks, each sequence in contiguous runs, run through
 * liblcattn_mpi, the outputs gathered to rank 0, which writes the file a
 * single `lcattn run` writes (run.c does the reading and writing; this
 * file only computes). Every rank reads IN itself.
 *
 * What each case becomes:
 *   - softmax, mla, Tq = Tk: the ring forward (lca_mpi_softmax_forward(3)),
 *     each rank its run of queries, keys and rows of o and lse; a packed
 *     batch goes in one call with its cu_seqlens, split by token over the
 *     whole batch, so that at -np 1 the library makes the very call a
 *     single `lcattn run` makes (one call per sequence gave other bits:
 *     OpenBLAS's Haswell dgemm, which Zen 5 gets, rounds a row differently
 *     with the number of rows of the call);
 *   - Tq < Tk (decode, prefill onto a cache): the keys split over the
 *     ranks, every rank the queries (lca_mpi_softmax_decode(3));
 *   - Tq > Tk, causal: the first Tq - Tk queries sit before every key
 *     (o = 0, lse = -inf, as the single call gives them), the last Tk are
 *     a Tq = Tk forward;
 *   - deltanet, lightning: the summaries' all-gather
 *     (lca_mpi_deltanet_forward(3)); the final state of the rank holding
 *     the last token goes to rank 0.
 * Gradient cases are refused: liblcattn_mpi has no backward.
 *
 * Without MPI (configure found none) the tool is built without this
 * file's MPI half, and --mpi fails with a message and status 2.
 */
#include "lcattn.h"
#include "golden.h"
#include "tool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef LCA_TOOL_MPI

int tool_mpi_begin(char *why, size_t whylen)
{
	snprintf(why, whylen, "--mpi: this lcattn was built without MPI (configure found "
		"none; Debian packages libopenmpi-dev openmpi-bin, then rebuild)");
	return -1;
}

int tool_mpi_rank(void)
{
	return 0;
}

int tool_mpi_all(int ok)
{
	return ok;
}

void tool_mpi_end(void)
{
}

lca_status tool_compute_mpi(const struct lcio_case *c, lca_backend backend,
	lca_dtype dtype, lca_algo algo, int zigzag, double *const out[],
	lca_params *resolved, char *why, size_t whylen)
{
	(void)c, (void)backend, (void)dtype, (void)algo, (void)zigzag, (void)out;
	(void)resolved;
	snprintf(why, whylen, "built without MPI");
	return LCA_ERR_UNSUPPORTED;
}

#else /* LCA_TOOL_MPI */

#include <lcattn_mpi.h>

#include <limits.h>

static int mpi_started;

int tool_mpi_begin(char *why, size_t whylen)
{
	int init = 0;

	MPI_Initialized(&init);
	if (!init && MPI_Init(NULL, NULL) != MPI_SUCCESS) {
		snprintf(why, whylen, "--mpi: MPI_Init failed");
		return -1;
	}
	mpi_started = !init;
	/* The transport's errors come back as statuses, not aborts. */
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	return 0;
}

int tool_mpi_rank(void)
{
	int r = 0;

	MPI_Comm_rank(MPI_COMM_WORLD, &r);
	return r;
}

int tool_mpi_all(int ok)
{
	int all = 0;

	MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
	return all;
}

void tool_mpi_end(void)
{
	if (mpi_started)
		MPI_Finalize();
	mpi_started = 0;
}

/* What one rank works with: the ranks, the dtype, typed inputs. */
struct job {
	const struct lcio_case *c;
	const lca_plan *plan;
	int P, r;
	int zigzag;              /* --layout zigzag */
	lca_dtype t;
	size_t es;
	void *in[LCIO_MAX_IN];   /* typed copies of the inputs (or NULL) */
	int64_t row[LCIO_MAX_IN]; /* values per token; 0: a whole-call tensor */
	char *why;
	size_t whylen;
};

/* Rank q's layout of a sequence of n tokens, and where its rows lie:
 * rows 0 .. cnt[0] - 1 are tokens g[0] .., the next cnt[1] tokens g[1] ..
 * (the public helpers of lcattn_mpi.h, so the tool splits as the library
 * documents). */
static lca_status layout_of(const struct job *j, int64_t n, int q, lca_mpi_layout *lay,
	int64_t g[2], int64_t cnt[2])
{
	int nr;
	lca_status s = j->zigzag ? lca_mpi_layout_zigzag(n, j->P, q, lay) :
		lca_mpi_layout_contiguous(n, j->P, q, lay);

	if (s == LCA_OK)
		s = lca_mpi_layout_runs(lay, j->P, q, g, cnt, &nr);
	if (s != LCA_OK)
		snprintf(j->why, j->whylen, "layout: %s", lca_mpi_last_error());
	return s;
}

static void *typed(const double *x, int64_t n, lca_dtype t)
{
	void *y = malloc((size_t)(n ? n : 1) * (t == LCA_F64 ? 8 : 4));

	for (int64_t i = 0; y && i < n; i++) {
		if (t == LCA_F64)
			((double *)y)[i] = x[i];
		else
			((float *)y)[i] = (float)x[i];
	}
	return y;
}

static void untyped(const void *y, int64_t n, lca_dtype t, double *x)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = t == LCA_F64 ? ((const double *)y)[i] : ((const float *)y)[i];
}

/* Input i from token tok on (a whole-call tensor as it is); NULL for an
 * empty run, as the lca_mpi_ calls allow. */
static const void *at(const struct job *j, int i, int64_t tok, int64_t len)
{
	if (!j->in[i] || (j->row[i] && len == 0))
		return NULL;
	return (const char *)j->in[i] + (size_t)(j->row[i] * tok) * j->es;
}

/* This rank's rows of per-token input i, tokens b + g[k] .. (k = 0, 1):
 * a pointer into the input when they are one run, else a packed copy in
 * *own (freed by the caller). NULL with *own NULL when out of memory. */
static const void *rows_of(const struct job *j, int i, int64_t b, const int64_t g[2],
	const int64_t cnt[2], void **own)
{
	size_t rb = (size_t)j->row[i] * j->es;
	char *x;

	*own = NULL;
	if (!j->row[i] || cnt[1] == 0)
		return at(j, i, b + g[0], cnt[0]);
	if (!(x = malloc((size_t)(cnt[0] + cnt[1]) * rb)))
		return NULL;
	memcpy(x, at(j, i, b + g[0], 1), (size_t)cnt[0] * rb);
	memcpy(x + (size_t)cnt[0] * rb, at(j, i, b + g[1], 1), (size_t)cnt[1] * rb);
	return *own = x;
}

static lca_status mpi_fail(const struct job *j, lca_status s)
{
	snprintf(j->why, j->whylen, "%s", *lca_mpi_last_error() ? lca_mpi_last_error() :
		"the transport failed");
	return s;
}

/* Rows [b, b + n) of dst [.][w] from every rank's rows mine [len][w] under
 * the layout of n tokens: gathered to rank 0 in rank order, then put in
 * place there. */
static lca_status gather_rows(const struct job *j, const double *mine, int64_t b,
	int64_t n, int64_t w, double *dst)
{
	int *cnt = malloc((size_t)j->P * sizeof *cnt), *dsp = malloc((size_t)j->P * sizeof *dsp);
	double *all = j->r == 0 ? malloc((size_t)(n * w + 1) * sizeof *all) : NULL;
	int64_t g[2], c[2], off = 0, my = 0;
	lca_mpi_layout lay;
	lca_status s = LCA_OK;

	if (!cnt || !dsp || (j->r == 0 && !all))
		s = LCA_ERR_NOMEM;
	for (int q = 0; s == LCA_OK && q < j->P; q++) {
		if ((s = layout_of(j, n, q, &lay, g, c)) != LCA_OK)
			break;
		if ((c[0] + c[1]) * w > INT_MAX || off * w > INT_MAX)
			s = LCA_ERR_OVERFLOW;
		cnt[q] = (int)((c[0] + c[1]) * w);
		dsp[q] = (int)(off * w);
		off += c[0] + c[1];
		if (q == j->r)
			my = cnt[q];
	}
	if (s == LCA_OK && MPI_Gatherv(mine, (int)my, MPI_DOUBLE, all, cnt, dsp, MPI_DOUBLE, 0,
	    MPI_COMM_WORLD) != MPI_SUCCESS)
		s = LCA_ERR_INTERNAL;
	for (int q = 0; s == LCA_OK && j->r == 0 && q < j->P; q++) {
		const double *src = all + dsp[q];

		if ((s = layout_of(j, n, q, &lay, g, c)) != LCA_OK)
			break;
		for (int k = 0; k < 2; k++) {
			memcpy(dst + (b + g[k]) * w, src, (size_t)(c[k] * w) * sizeof *src);
			src += c[k] * w;
		}
	}
	if (s != LCA_OK)
		snprintf(j->why, j->whylen, "gathering the outputs: %s", lca_strerror(s));
	free(cnt);
	free(dsp);
	free(all);
	return s;
}

/* Rows that see no key: o = 0, lse = -inf (the single call's masked rows). */
static void masked_rows(const struct job *j, double *const out[], int64_t rows)
{
	const int64_t H = j->c->p.H, dv = j->c->p.dv;

	memset(out[0], 0, (size_t)(rows * H * dv) * sizeof **out);
	for (int64_t i = 0; i < rows * H; i++)
		out[1][i] = -INFINITY;
}

/* softmax or mla, one sequence: queries [qb, qb + nq) over keys
 * [kb, kb + nk), bottom-right, nq <= nk; out rows from qb. With cu (ns
 * sequences; then qb = kb = 0, nq = nk) the whole packed batch instead. */
static lca_status attn_seq(const struct job *j, int64_t qb, int64_t nq, int64_t kb,
	int64_t nk, const int64_t *cu, int64_t ns, double *const out[])
{
	const lca_params *p = &j->c->p;
	const int mla = p->variant == LCA_MLA, decode = nq < nk;
	const int64_t H = p->H, dv = p->dv;
	int64_t g[2], cnt[2], len, rows;
	lca_mpi_layout lay;
	void *o = NULL, *lse = NULL, *own[4] = { NULL, NULL, NULL, NULL };
	const void *x[4];
	lca_status s;

	/* decode: the keys split, every rank all queries and o; forward: each
	 * rank its rows of queries, keys and o */
	if ((s = layout_of(j, nk, j->r, &lay, g, cnt)) != LCA_OK)
		return s;
	lay.cu_seqlens = cu;
	lay.nseq = cu ? ns : 0;
	len = cnt[0] + cnt[1];
	rows = decode ? nq : len;
	o = malloc((size_t)(rows * H * dv + 1) * j->es);
	lse = malloc((size_t)(rows * H + 1) * j->es);
	for (int i = 0; i < (mla ? 4 : 3); i++) {
		int query = i < (mla ? 2 : 1);

		x[i] = decode && query ? at(j, i, qb, nq) :
			rows_of(j, i, query ? qb : kb, g, cnt, &own[i]);
		if (len > 0 && !x[i] && !own[i] && !(decode && query))
			o = NULL; /* a copy failed */
	}
	if (!o || !lse) {
		s = LCA_ERR_NOMEM;
		snprintf(j->why, j->whylen, "no memory for the outputs");
	} else if (decode && !mla) {
		s = lca_mpi_softmax_decode(j->plan, MPI_COMM_WORLD, &lay, nq, x[0], x[1], x[2], o,
			lse, NULL);
	} else if (decode) {
		s = lca_mpi_mla_decode(j->plan, MPI_COMM_WORLD, &lay, nq, x[0], x[1], x[2], x[3],
			j->in[4], j->in[5], o, lse, NULL);
	} else if (!mla) {
		s = lca_mpi_softmax_forward(j->plan, MPI_COMM_WORLD, &lay, x[0], x[1], x[2],
			len ? o : NULL, len ? lse : NULL, NULL);
	} else {
		s = lca_mpi_mla_forward(j->plan, MPI_COMM_WORLD, &lay, x[0], x[1], x[2], x[3],
			j->in[4], j->in[5], len ? o : NULL, len ? lse : NULL, NULL);
	}
	if (o && lse && s != LCA_OK) {
		mpi_fail(j, s);
	} else if (s == LCA_OK && decode) {
		/* every rank has the result: rank 0 keeps its own */
		if (j->r == 0) {
			untyped(o, nq * H * dv, j->t, out[0] + qb * H * dv);
			untyped(lse, nq * H, j->t, out[1] + qb * H);
		}
	} else if (s == LCA_OK) {
		double *d = malloc((size_t)(len * H * (dv + 1) + 1) * sizeof *d);

		if (!d) {
			/* the other ranks wait in the gather: a local failure the
			 * tool cannot report to them (as liblcattn_mpi's headers) */
			snprintf(j->why, j->whylen, "no memory for the outputs");
			s = LCA_ERR_NOMEM;
		} else {
			untyped(o, len * H * dv, j->t, d);
			untyped(lse, len * H, j->t, d + len * H * dv);
			s = gather_rows(j, d, qb, nq, H * dv, out[0]);
			if (s == LCA_OK)
				s = gather_rows(j, d + len * H * dv, qb, nq, H, out[1]);
			free(d);
		}
	}
	for (int i = 0; i < 4; i++)
		free(own[i]);
	free(o);
	free(lse);
	return s;
}

/* The rank holding the last of n tokens (it writes the final state:
 * the last rank's run, zigzag rank 0's second chunk); -1 on error. */
static int last_holder(const struct job *j, int64_t n)
{
	lca_mpi_layout lay;
	int64_t g[2], c[2];

	for (int q = 0; q < j->P; q++) {
		if (layout_of(j, n, q, &lay, g, c) != LCA_OK)
			return -1;
		for (int k = 0; k < 2; k++)
			if (c[k] > 0 && g[k] + c[k] == n)
				return q;
	}
	return -1;
}

/* deltanet or lightning, sequence `seq` of n tokens from b. */
static lca_status linear_seq(const struct job *j, int64_t seq, int64_t b, int64_t n,
	double *const out[])
{
	const lca_params *p = &j->c->p;
	const int dn = p->variant == LCA_DELTANET;
	const int64_t H = p->H, dv = p->dv, sn = H * p->dk * dv;
	const int s0 = dn ? 5 : 4;  /* state0's index */
	const void *state0 = j->in[s0] ? (const char *)j->in[s0] + (size_t)(seq * sn) * j->es :
		NULL;
	double *state_out = out[1] + seq * sn;
	int64_t g[2], cnt[2], len;
	lca_mpi_layout lay;
	void *o, *state, *own[5] = { NULL, NULL, NULL, NULL, NULL };
	const void *x[5];
	int nx = dn ? 5 : 3, bad = 0;
	lca_status s;

	if (n == 0) {
		/* no token: the state passes through (in the plan's dtype) */
		if (state0)
			untyped(state0, sn, j->t, state_out);
		else
			memset(state_out, 0, (size_t)sn * sizeof *state_out);
		return LCA_OK;
	}
	if ((s = layout_of(j, n, j->r, &lay, g, cnt)) != LCA_OK)
		return s;
	len = cnt[0] + cnt[1];
	for (int i = 0; i < nx; i++) {
		x[i] = rows_of(j, i, b, g, cnt, &own[i]);
		bad |= len > 0 && !x[i];
	}
	o = malloc((size_t)(len * H * dv + 1) * j->es);
	state = malloc((size_t)sn * j->es);
	if (!o || !state || bad) {
		s = LCA_ERR_NOMEM;
		snprintf(j->why, j->whylen, "no memory for the outputs");
	} else if (dn) {
		s = lca_mpi_deltanet_forward(j->plan, MPI_COMM_WORLD, &lay, x[0], x[1], x[2], x[3],
			x[4], state0, len ? o : NULL, state, NULL);
	} else {
		s = lca_mpi_lightning_forward(j->plan, MPI_COMM_WORLD, &lay, x[0], x[1], x[2],
			j->in[3], state0, len ? o : NULL, state, NULL);
	}
	if (o && state && !bad && s != LCA_OK) {
		mpi_fail(j, s);
	} else if (s == LCA_OK) {
		double *d = malloc((size_t)(len * H * dv > sn ? len * H * dv : sn) * sizeof *d);

		if (!d) {
			snprintf(j->why, j->whylen, "no memory for the outputs");
			s = LCA_ERR_NOMEM;
		} else {
			untyped(o, len * H * dv, j->t, d);
			s = gather_rows(j, d, b, n, H * dv, out[0]);
			/* the final state is the one of the rank holding the last token */
			int last = s == LCA_OK ? last_holder(j, n) : -1;

			if (s == LCA_OK && last < 0)
				s = LCA_ERR_INTERNAL;
			if (s == LCA_OK) {
				if (j->r == last)
					untyped(state, sn, j->t, state_out);
				if (MPI_Bcast(state_out, (int)sn, MPI_DOUBLE, last,
				    MPI_COMM_WORLD) != MPI_SUCCESS) {
					snprintf(j->why, j->whylen, "sending the final state failed");
					s = LCA_ERR_INTERNAL;
				}
			}
			free(d);
		}
	}
	for (int i = 0; i < 5; i++)
		free(own[i]);
	free(o);
	free(state);
	return s;
}

/* Whether the case can run over MPI; a message in why if not. */
static lca_status supported(const struct lcio_case *c, lca_dtype dtype, char *why,
	size_t whylen)
{
	if (c->grads) {
		snprintf(why, whylen, "a gradient case: liblcattn_mpi offers forward calls "
			"only (run it without --mpi)");
		return LCA_ERR_UNSUPPORTED;
	}
	if (dtype != LCA_F64 && dtype != LCA_F32) {
		snprintf(why, whylen, "liblcattn_mpi offers f64 and f32 only");
		return LCA_ERR_UNSUPPORTED;
	}
	if (c->cu_seqlens && c->Tq != c->Tk) {
		snprintf(why, whylen, "a packed batch with Tq != Tk");
		return LCA_ERR_UNSUPPORTED;
	}
	if (c->p.variant <= LCA_MLA && c->Tq > c->Tk && !c->p.causal) {
		snprintf(why, whylen, "Tq > Tk without the causal mask is not offered over MPI");
		return LCA_ERR_UNSUPPORTED;
	}
	if (c->cu_seqlens && c->nseq > INT_MAX) {
		snprintf(why, whylen, "too many sequences");
		return LCA_ERR_SIZE;
	}
	return LCA_OK;
}

/* The sequences in turn (softmax and mla: a packed batch at once); out[]
 * is complete on rank 0 only. */
static lca_status run_all(const struct job *j, double *const out[])
{
	const struct lcio_case *c = j->c;
	const int64_t ns = c->cu_seqlens ? c->nseq : 1;
	lca_status s = LCA_OK;

	if (c->cu_seqlens && c->p.variant < LCA_DELTANET)
		return c->Tq > 0 ? attn_seq(j, 0, c->Tq, 0, c->Tq, c->cu_seqlens, c->nseq, out) :
			LCA_OK;
	for (int64_t q = 0; q < ns && s == LCA_OK; q++) {
		int64_t b = c->cu_seqlens ? c->cu_seqlens[q] : 0;
		int64_t n = c->cu_seqlens ? c->cu_seqlens[q + 1] - b : c->Tq;

		if (c->p.variant >= LCA_DELTANET) {
			s = linear_seq(j, q, b, n, out);
		} else if (!c->cu_seqlens && c->Tq > c->Tk) {
			/* queries before every key, then a Tk x Tk forward */
			if (j->r == 0)
				masked_rows(j, out, c->Tq - c->Tk);
			s = attn_seq(j, c->Tq - c->Tk, c->Tk, 0, c->Tk, NULL, 0, out);
		} else {
			s = attn_seq(j, 0, c->Tq, 0, c->Tk, NULL, 0, out);
		}
	}
	return s;
}

lca_status tool_compute_mpi(const struct lcio_case *c, lca_backend backend,
	lca_dtype dtype, lca_algo algo, int zigzag, double *const out[],
	lca_params *resolved, char *why, size_t whylen)
{
	struct job j;
	lca_params p = c->p;
	lca_plan *plan = NULL;
	lca_status s;

	memset(&j, 0, sizeof j);
	j.c = c, j.t = dtype, j.es = dtype == LCA_F64 ? 8 : 4, j.zigzag = zigzag;
	j.why = why, j.whylen = whylen;
	MPI_Comm_size(MPI_COMM_WORLD, &j.P);
	MPI_Comm_rank(MPI_COMM_WORLD, &j.r);
	p.backend = backend, p.dtype = dtype, p.algo = algo;
	if ((s = supported(c, dtype, why, whylen)) == LCA_OK &&
	    (s = lca_plan_create(&p, &plan)) != LCA_OK)
		snprintf(why, whylen, "%s", lca_last_error());
	if (s == LCA_OK && resolved)
		lca_plan_params(plan, resolved);
	j.plan = plan;
	for (int i = 0; s == LCA_OK && i < c->nin; i++) {
		const struct lcio_tensor *t = &c->in[i];

		/* per-token tensors have Tq (or Tk) rows of n / rows values */
		j.row[i] = t->rank > 1 && t->dims[0] > 0 && strcmp(t->name, "state0") &&
			strcmp(t->name, "w_uk") && strcmp(t->name, "w_uv") ? t->n / t->dims[0] : 0;
		if (t->data && !(j.in[i] = typed(t->data, t->n, dtype))) {
			snprintf(why, whylen, "no memory for input %s", t->name);
			s = LCA_ERR_NOMEM;
		}
	}
	/* Every rank read the same file: local failures are the same on every
	 * rank but memory; the ranks agree before the collective calls. */
	if (!tool_mpi_all(s == LCA_OK) && s == LCA_OK) {
		snprintf(why, whylen, "another rank failed to set up (see its message)");
		s = LCA_ERR_INTERNAL;
	}
	if (s == LCA_OK)
		s = run_all(&j, out);
	for (int i = 0; i < c->nin; i++)
		free(j.in[i]);
	lca_plan_destroy(plan);
	return s;
}

#endif /* LCA_TOOL_MPI */
