/*
 * memory.c - one head of a mechanism run as a memory for the probes:
 * argument checks, the mla latent fit, and the writes and reads, all
 * through the public forward calls on a float64 plan of pp->backend: the
 * reference by default, so the probes measure exactly what the oracle
 * computes; or the cpu backend, which answers the same question within
 * the tolerance rule's 1e-12 of float64 paths and is what makes a
 * million-token probe take seconds: its deltanet and lightning writes run
 * vectorised (the reference's are plain loops), and its mla latent fit
 * runs on BLAS (lib/cpu/probe.c). A prefill of a decode cache would have
 * run the same cpu kernels with a cache to size and fill on top; the
 * forward calls were already here.
 *
 * Reads sit at position T, after the T written tokens, and write nothing:
 *   softmax, mla  one non-causal call with Tq = nq, Tk = T; RoPE is applied
 *                 here (queries at position T, key s at s) and the plan's
 *                 rope_dim is 0, because bottom-right alignment would put
 *                 the queries at T - nq .. T - 1
 *   deltanet      a second call from the written state with beta = 0 and
 *                 g = 0: u = 0, so S is unchanged and o = S^T q
 *   lightning     a second call from the written state with slope = 0 and
 *                 v = 0: S = S + q 0^T, so o = S^T q
 * The recurrent plans use scale 1 and (deltanet) no L2 norm: the keys
 * written are exactly the caller's.
 */
#include "probe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double *lcai_probe_alloc(int64_t n)
{
	if (n < 1 || (uint64_t)n > SIZE_MAX / sizeof(double))
		return NULL;
	return calloc((size_t)n, sizeof(double));
}

double lcai_probe_dot(const double *a, const double *b, int64_t n)
{
	double s = 0;

	for (int64_t i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

double lcai_probe_norm(const double *a, int64_t n)
{
	return sqrt(lcai_probe_dot(a, a, n));
}

/* min_a ||a o - v||^2 = ||v||^2 - <o,v>^2/<o,o> loses half the digits when
 * o is nearly parallel to v; the residual v - a o formed directly keeps
 * its error near eps ||v||, so exact retrieval shows as ~1e-16, not 1e-8. */
double lcai_probe_err(const double *o, const double *v, int64_t n)
{
	double oo = lcai_probe_dot(o, o, n), vv = lcai_probe_dot(v, v, n), a, r = 0;

	if (vv == 0)
		return 0;
	if (oo == 0)
		return 1;
	a = lcai_probe_dot(o, v, n) / oo;
	for (int64_t i = 0; i < n; i++) {
		double d = v[i] - a * o[i];

		r += d * d;
	}
	return sqrt(r / vv);
}

/* ---- checks ---- */

static lca_status check_params(const char *fn, const lca_probe_params *pp, lca_probe_params *r)
{
	*r = *pp;
	if ((unsigned)r->variant > LCA_LIGHTNING)
		return lcai_fail(LCA_ERR_ARG, "%s: unknown variant %d", fn, (int)r->variant);
	if (r->dk < 1 || r->dv < 1)
		return lcai_fail(LCA_ERR_SIZE, "%s: dk and dv must be >= 1", fn);
	if (!isfinite(r->scale) || r->scale < 0)
		return lcai_fail(LCA_ERR_ARG, "%s: scale must be finite and >= 0", fn);
	if (r->scale == 0)
		r->scale = sqrt((double)r->dk);
	if (r->variant == LCA_MLA && (r->dr < 0 || r->dr >= r->dk))
		return lcai_fail(LCA_ERR_SIZE, "%s: dr = %lld must lie in [0, dk)", fn, (long long)r->dr);
	if (r->variant == LCA_MLA && r->dc < 0)
		return lcai_fail(LCA_ERR_SIZE, "%s: dc must be >= 0 (0 = dk)", fn);
	if (r->dc == 0)
		r->dc = r->dk;
	if (r->rope_dim == LCA_ROPE_FULL)
		r->rope_dim = r->variant == LCA_MLA ? r->dr : r->variant == LCA_SOFTMAX ? r->dk : 0;
	if (r->rope_dim && r->variant >= LCA_DELTANET)
		return lcai_fail(LCA_ERR_ARG, "%s: deltanet and lightning take no RoPE (rope_dim 0)", fn);
	if (r->rope_dim < 0 || r->rope_dim % 2 ||
	    r->rope_dim > (r->variant == LCA_MLA ? r->dr : r->dk))
		return lcai_fail(LCA_ERR_ARG, "%s: rope_dim = %lld must be even and fit in %s", fn,
			(long long)r->rope_dim, r->variant == LCA_MLA ? "dr" : "dk");
	if (r->rope_dim && (!isfinite(r->rope_theta) || r->rope_theta <= 0 ||
	    (unsigned)r->rope_style > LCA_ROPE_INTERLEAVED))
		return lcai_fail(LCA_ERR_ARG, "%s: rope_theta must be > 0 and rope_style known", fn);
	if (!isfinite(r->beta) || !(r->g <= 0) || !isfinite(r->g))
		return lcai_fail(LCA_ERR_ARG, "%s: beta must be finite and g finite and <= 0", fn);
	if (!(r->slope >= 0) || !isfinite(r->slope))
		return lcai_fail(LCA_ERR_ARG, "%s: slope must be finite and >= 0", fn);
	/* Tensors here are host memory: the cuda backend would want device
	 * pointers. */
	if (r->backend != LCA_BACKEND_REF && r->backend != LCA_BACKEND_CPU)
		return lcai_fail(LCA_ERR_UNSUPPORTED,
			"%s: backend %d: probes run on LCA_BACKEND_REF or LCA_BACKEND_CPU", fn,
			(int)r->backend);
	return LCA_OK;
}

static lca_status check_finite(const char *fn, const char *name, const double *x, int64_t n,
	int need_nonpos)
{
	for (int64_t i = 0; x && i < n; i++) {
		if (!isfinite(x[i]))
			return lcai_fail(LCA_ERR_NONFINITE, "%s: s->%s[%lld] is not finite", fn, name,
				(long long)i);
		if (need_nonpos && x[i] > 0)
			return lcai_fail(LCA_ERR_ARG, "%s: s->g[%lld] > 0 (g is a log-decay)", fn,
				(long long)i);
	}
	return LCA_OK;
}

static lca_status check_seq(const char *fn, const lca_probe_params *pp, const lca_probe_seq *s)
{
	int64_t nk, nv;
	lca_status st;

	if (!s)
		return lcai_fail(LCA_ERR_NULL, "%s: s is NULL", fn);
	if (!s->k || !s->v)
		return lcai_fail(LCA_ERR_NULL, "%s: s->%s is NULL", fn, s->k ? "v" : "k");
	if (s->T < 1)
		return lcai_fail(LCA_ERR_SIZE, "%s: s->T = %lld must be >= 1", fn, (long long)s->T);
	if (!lcai_mul(s->T, pp->dk, &nk) || !lcai_mul(s->T, pp->dv, &nv) ||
	    (uint64_t)(nk > nv ? nk : nv) > SIZE_MAX / (4 * sizeof(double)))
		return lcai_fail(LCA_ERR_OVERFLOW, "%s: T * dk or T * dv overflows", fn);
	if ((st = check_finite(fn, "k", s->k, nk, 0)) || (st = check_finite(fn, "v", s->v, nv, 0)) ||
	    (st = check_finite(fn, "q", s->q, pp->dk, 0)))
		return st;
	if (pp->variant != LCA_DELTANET)
		return LCA_OK;
	if ((st = check_finite(fn, "beta", s->beta, s->T, 0)))
		return st;
	return check_finite(fn, "g", s->g, s->T, 1);
}

/* ---- the mla latent: the best rank-dc fit of X = [K_nope V] ---- */

/* One Jacobi rotation zeroing a[p][q] (Numerical Recipes' convention:
 * A <- J^T A J, vec <- vec J). */
static void jacobi_rotate(int64_t n, double *a, double *vec, int64_t p, int64_t q)
{
	double apq = a[p * n + q], th = (a[q * n + q] - a[p * n + p]) / (2 * apq);
	double t = (th >= 0 ? 1.0 : -1.0) / (fabs(th) + sqrt(th * th + 1)), c, s;

	if (fabs(th) > 1e150)
		t = 0.5 / th; /* th * th would overflow; t -> 1/(2 th) */
	c = 1 / sqrt(t * t + 1), s = t * c;
	for (int64_t k = 0; k < n; k++) {
		double x = a[k * n + p], y = a[k * n + q];

		a[k * n + p] = c * x - s * y;
		a[k * n + q] = s * x + c * y;
	}
	for (int64_t k = 0; k < n; k++) {
		double x = a[p * n + k], y = a[q * n + k];

		a[p * n + k] = c * x - s * y;
		a[q * n + k] = s * x + c * y;
	}
	a[p * n + q] = a[q * n + p] = 0;
	for (int64_t k = 0; k < n; k++) {
		double x = vec[k * n + p], y = vec[k * n + q];

		vec[k * n + p] = c * x - s * y;
		vec[k * n + q] = s * x + c * y;
	}
}

/* Cyclic Jacobi: quadratic convergence, and eigenvectors orthonormal to
 * rounding whatever the eigenvalue gaps (a Gram matrix has many near-equal
 * small ones). Stops when the off-diagonal mass is at rounding level. */
lca_status lcai_probe_eig(int64_t n, double *a, double *val, double *vec)
{
	double frob = 0, off;
	int64_t *idx;

	for (int64_t i = 0; i < n * n; i++) {
		frob += a[i] * a[i];
		vec[i] = i % (n + 1) == 0;
	}
	for (int sweep = 0; sweep < 100; sweep++) {
		off = 0;
		for (int64_t p = 0; p < n; p++)
			for (int64_t q = p + 1; q < n; q++)
				off += a[p * n + q] * a[p * n + q];
		if (off <= 1e-34 * frob)
			break;
		for (int64_t p = 0; p < n; p++)
			for (int64_t q = p + 1; q < n; q++)
				if (fabs(a[p * n + q]) > 1e-300)
					jacobi_rotate(n, a, vec, p, q);
	}
	if (!(idx = malloc((size_t)n * sizeof *idx)))
		return LCA_ERR_NOMEM;
	/* Order columns by descending eigenvalue (stable: ties keep order). */
	for (int64_t i = 0; i < n; i++)
		idx[i] = i;
	for (int64_t i = 1; i < n; i++)
		for (int64_t j = i; j > 0 && a[idx[j] * n + idx[j]] > a[idx[j - 1] * n + idx[j - 1]]; j--) {
			int64_t t = idx[j];

			idx[j] = idx[j - 1], idx[j - 1] = t;
		}
	for (int64_t i = 0; i < n; i++)
		val[i] = a[idx[i] * n + idx[i]];
	/* Permute the columns of vec in place through a copy into a. */
	memcpy(a, vec, (size_t)(n * n) * sizeof *a);
	for (int64_t r = 0; r < n; r++)
		for (int64_t j = 0; j < n; j++)
			vec[r * n + j] = a[r * n + idx[j]];
	free(idx);
	return LCA_OK;
}

/* w [n][dc] = the top dc eigenvectors of X^T X, n = dn + dv. dc >= n keeps
 * everything: the fit is then exact and mla equals softmax. */
static lca_status fit_latent(const char *fn, struct lcai_mem *m, const lca_probe_seq *s)
{
	int64_t n = m->dn + m->dv, T = s->T;
	double *G = lcai_probe_alloc(n * n), *vec = lcai_probe_alloc(n * n);
	double *val = lcai_probe_alloc(n), *x = lcai_probe_alloc(n);
	lca_status st = LCA_ERR_NOMEM;

	if (!G || !vec || !val || !x)
		goto out;
	if (m->pp.backend == LCA_BACKEND_CPU)
		lcai_cpu_probe_gram(T, m->dk, m->dn, m->dv, s->k, s->v, G);
	for (int64_t t = 0; m->pp.backend == LCA_BACKEND_REF && t < T; t++) {
		memcpy(x, s->k + t * m->dk, (size_t)m->dn * sizeof *x);
		memcpy(x + m->dn, s->v + t * m->dv, (size_t)m->dv * sizeof *x);
		for (int64_t i = 0; i < n; i++)
			for (int64_t j = 0; j < n; j++)
				G[i * n + j] += x[i] * x[j];
	}
	if ((st = lcai_probe_eig(n, G, val, vec)))
		goto out;
	if (m->dc > n)
		m->dc = n;
	if (!(m->w = lcai_probe_alloc(n * m->dc))) {
		st = LCA_ERR_NOMEM;
		goto out;
	}
	for (int64_t i = 0; i < n; i++)
		memcpy(m->w + i * m->dc, vec + i * n, (size_t)m->dc * sizeof *vec);
out:
	free(G), free(vec), free(val), free(x);
	return st ? lcai_fail(st, "%s: out of memory", fn) : LCA_OK;
}

lca_status lcai_mem_check(const char *fn, struct lcai_mem *m, const lca_probe_params *pp,
	const lca_probe_seq *s)
{
	lca_status st;

	memset(m, 0, sizeof *m);
	if (!pp)
		return lcai_fail(LCA_ERR_NULL, "%s: pp is NULL", fn);
	if ((st = check_params(fn, pp, &m->pp)) || (st = check_seq(fn, &m->pp, s)))
		return st;
	m->dk = m->pp.dk, m->dv = m->pp.dv;
	if (m->pp.variant == LCA_MLA)
		m->dr = m->pp.dr, m->dn = m->dk - m->dr, m->dc = m->pp.dc;
	return LCA_OK;
}

lca_status lcai_mem_fit(const char *fn, struct lcai_mem *m, const lca_probe_seq *s)
{
	return m->pp.variant == LCA_MLA ? fit_latent(fn, m, s) : LCA_OK;
}

lca_status lcai_mem_open(const char *fn, struct lcai_mem *m, const lca_probe_params *pp,
	const lca_probe_seq *s)
{
	lca_status st = lcai_mem_check(fn, m, pp, s);

	return st ? st : lcai_mem_fit(fn, m, s);
}

void lcai_mem_close(struct lcai_mem *m)
{
	free(m->w);
	m->w = NULL;
}

/* ---- plans ---- */

/* An f64 plan of pp->backend for one head of m's mechanism (see the top). */
static lca_status make_plan(const char *fn, const struct lcai_mem *m, lca_plan **plan)
{
	lca_params p;
	lca_status st;
	char why[512];

	lca_params_init(&p, m->pp.variant);
	p.backend = m->pp.backend;
	/* One head of one sequence is one work item for the cpu deltanet and
	 * lightning kernels; uncapped, they hand their 64- to 256-wide chunk
	 * GEMMs whole to BLAS, whose threads then cost more than they bring
	 * (lightning at T = 2^20 on the 2-core machine: 2.1 s capped, 5.8 to
	 * 7.4 s not). The cap cuts them into calling-thread pieces. */
	if (p.backend == LCA_BACKEND_CPU && m->pp.variant >= LCA_DELTANET)
		p.nthreads = 1;
	p.H = 1;
	p.dk = m->dk, p.dv = m->dv;
	p.rope_dim = 0;
	p.causal = 0;
	p.qk_l2norm = 0;
	p.scale = m->pp.variant <= LCA_MLA ? m->pp.scale : 1.0;
	p.check_finite = 0; /* checked once in lcai_mem_open */
	if (m->pp.variant == LCA_MLA)
		p.dk = 0, p.dn = m->dn, p.dr = m->dr ? m->dr : 2, p.dc = m->dc;
	if ((st = lca_plan_create(&p, plan))) {
		snprintf(why, sizeof why, "%s", lca_last_error());
		return lcai_fail(st, "%s: %s", fn, why);
	}
	return LCA_OK;
}

/* Re-label the failure of an inner public call with the probe's name. */
static lca_status inner(const char *fn, lca_status st)
{
	char why[512];

	if (st == LCA_OK)
		return st;
	snprintf(why, sizeof why, "%s", lca_last_error());
	return lcai_fail(st, "%s: %s", fn, why);
}

static void rotate_rows(const struct lcai_mem *m, double *x, int64_t rows, int64_t ld,
	int64_t off, int64_t pos0, int64_t step)
{
	for (int64_t i = 0; m->pp.rope_dim && i < rows; i++)
		lcai_rope_apply(x + i * ld + off, m->pp.rope_dim, m->pp.rope_style,
			m->pp.rope_theta, pos0 + i * step);
}

/* ---- softmax and mla ---- */

void lcai_mem_rotate(const struct lcai_mem *m, double *x, int64_t pos)
{
	rotate_rows(m, x, 1, m->dk, 0, pos, 0);
}

lca_status lcai_mem_read_rotated(const char *fn, const struct lcai_mem *m, int64_t T,
	const double *kr, const double *v, int64_t nq, const double *Qr, double *O)
{
	lca_plan *plan = NULL;
	lca_status st = make_plan(fn, m, &plan);

	if (!st)
		st = inner(fn, lca_softmax_forward(plan, nq, T, Qr, kr, v, NULL, 0, O, NULL));
	lca_plan_destroy(plan);
	return st;
}

static lca_status read_softmax(const char *fn, const struct lcai_mem *m, int64_t T,
	const double *k, const double *v, int64_t nq, const double *Q, double *O)
{
	double *kr, *qr;
	lca_status st;

	/* Nothing to rotate: read the caller's keys in place rather than copy
	 * T * dk doubles (512 MiB to fault in at T = 2^20, dk = 64). */
	if (!m->pp.rope_dim)
		return lcai_mem_read_rotated(fn, m, T, k, v, nq, Q, O);
	kr = lcai_probe_alloc(T * m->dk), qr = lcai_probe_alloc(nq * m->dk);
	if (kr && qr) {
		memcpy(kr, k, (size_t)(T * m->dk) * sizeof *kr);
		memcpy(qr, Q, (size_t)(nq * m->dk) * sizeof *qr);
		rotate_rows(m, kr, T, m->dk, 0, 0, 1);
		rotate_rows(m, qr, nq, m->dk, 0, T, 0);
		st = lcai_mem_read_rotated(fn, m, T, kr, v, nq, qr, O);
	} else {
		st = lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
	}
	free(kr), free(qr);
	return st;
}

/* Split rows [dn ; dr] into nope (unless NULL) and rotary parts (dr = 0:
 * a zero rotary part of 2, which adds nothing to any logit). */
static void split_rows(const struct lcai_mem *m, const double *x, int64_t rows, double *nope,
	double *rot)
{
	int64_t dr = m->dr ? m->dr : 2;

	for (int64_t i = 0; i < rows; i++) {
		if (nope)
			memcpy(nope + i * m->dn, x + i * m->dk, (size_t)m->dn * sizeof *x);
		if (m->dr)
			memcpy(rot + i * dr, x + i * m->dk + m->dn, (size_t)m->dr * sizeof *x);
	}
}

/* ckv = [K_nope V] w: the latent of each token, as DeepSeek's W_DKV would
 * produce had it been trained on this sequence; kr the rotary key parts,
 * not yet rotated. Row t depends on token t only, so swapping tokens swaps
 * rows. */
lca_status lcai_mem_latent(const char *fn, const struct lcai_mem *m, int64_t T,
	const double *k, const double *v, double **ckv, double **kr)
{
	int64_t dn = m->dn, dv = m->dv, dc = m->dc, dr = m->dr ? m->dr : 2;
	int cpu = m->pp.backend == LCA_BACKEND_CPU;
	double *kn = cpu ? NULL : lcai_probe_alloc(T * dn);

	*ckv = lcai_probe_alloc(T * dc), *kr = lcai_probe_alloc(T * dr);
	if ((!cpu && !kn) || !*ckv || !*kr) {
		free(kn), free(*ckv), free(*kr);
		*ckv = *kr = NULL;
		return lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
	}
	split_rows(m, k, T, kn, *kr);
	if (cpu)
		lcai_cpu_probe_latent(T, m->dk, dn, dv, dc, k, v, m->w, *ckv);
	for (int64_t t = 0; !cpu && t < T; t++)
		for (int64_t c = 0; c < dc; c++) {
			double acc = 0;

			for (int64_t i = 0; i < dn; i++)
				acc += kn[t * dn + i] * m->w[i * dc + c];
			for (int64_t i = 0; i < dv; i++)
				acc += v[t * dv + i] * m->w[(dn + i) * dc + c];
			(*ckv)[t * dc + c] = acc;
		}
	free(kn);
	return LCA_OK;
}

lca_status lcai_mem_read_latent(const char *fn, const struct lcai_mem *m, int64_t T,
	const double *ckv, const double *kr, int64_t nq, const double *Q, double *O)
{
	int64_t dn = m->dn, dc = m->dc, dr = m->dr ? m->dr : 2;
	double *krr = lcai_probe_alloc(T * dr), *qn = lcai_probe_alloc(nq * dn);
	double *qr = lcai_probe_alloc(nq * dr);
	lca_plan *plan = NULL;
	lca_status st = LCA_ERR_NOMEM;

	if (!krr || !qn || !qr) {
		st = lcai_fail(st, "%s: out of memory", fn);
		goto out;
	}
	if ((st = make_plan(fn, m, &plan)))
		goto out;
	memcpy(krr, kr, (size_t)(T * dr) * sizeof *krr);
	split_rows(m, Q, nq, qn, qr);
	rotate_rows(m, krr, T, dr, 0, 0, 1);
	rotate_rows(m, qr, nq, dr, 0, T, 0);
	/* w_uk = rows 0..dn-1 of w ([dn][dc]), w_uv = rows dn.. ([dv][dc]). */
	st = inner(fn, lca_mla_forward(plan, nq, T, qn, qr, ckv, krr, m->w, m->w + dn * dc,
		NULL, 0, O, NULL));
out:
	lca_plan_destroy(plan);
	free(krr), free(qn), free(qr);
	return st;
}

static lca_status read_mla(const char *fn, const struct lcai_mem *m, int64_t T,
	const double *k, const double *v, int64_t nq, const double *Q, double *O)
{
	double *ckv, *kr;
	lca_status st = lcai_mem_latent(fn, m, T, k, v, &ckv, &kr);

	if (!st)
		st = lcai_mem_read_latent(fn, m, T, ckv, kr, nq, Q, O);
	free(ckv), free(kr);
	return st;
}

/* ---- deltanet and lightning ---- */

/* beta and g arrays of T entries: the caller's, or the constants of pp. */
static lca_status gates(const struct lcai_mem *m, int64_t T, const double *beta,
	const double *g, double **bbuf, double **gbuf)
{
	*bbuf = *gbuf = NULL;
	if (!beta && !(*bbuf = lcai_probe_alloc(T)))
		return LCA_ERR_NOMEM;
	if (!g && !(*gbuf = lcai_probe_alloc(T)))
		return LCA_ERR_NOMEM;
	for (int64_t t = 0; t < T; t++) {
		if (*bbuf)
			(*bbuf)[t] = m->pp.beta;
		if (*gbuf)
			(*gbuf)[t] = m->pp.g;
	}
	return LCA_OK;
}

/* Tokens per forward call when the caller wants only the state: the
 * outputs of a slab are thrown away, so they need not all exist at once
 * (T * dv doubles, 512 MiB at T = 2^20). A multiple of every chunk and
 * block size, so the cpu kernels cut the sequence where one call would;
 * the state passes between calls exactly, so the reference's token loop
 * gives the same bits as one call. */
#define WRITE_SLAB ((int64_t)1 << 16)

lca_status lcai_mem_write_state(const char *fn, const struct lcai_mem *m, int64_t T,
	const double *k, const double *v, const double *beta, const double *g,
	const double *state0, double *state, double *now)
{
	int64_t slab = now || T <= WRITE_SLAB ? T : WRITE_SLAB;
	double *o = now ? now : lcai_probe_alloc(slab * m->dv), *bb = NULL, *gb = NULL;
	double *s0 = NULL;
	lca_plan *plan = NULL;
	lca_status st = LCA_ERR_NOMEM;

	if (!o || (slab < T && !(s0 = lcai_probe_alloc(m->dk * m->dv))))
		goto out;
	if ((st = make_plan(fn, m, &plan)))
		goto out;
	if (m->pp.variant == LCA_DELTANET && (st = gates(m, T, beta, g, &bb, &gb)))
		goto out;
	if (bb)
		beta = bb;
	if (gb)
		g = gb;
	for (int64_t t = 0; !st && t < T; t += slab) {
		int64_t n = T - t < slab ? T - t : slab;
		const double *kt = k + t * m->dk, *vt = v + t * m->dv;

		if (t) { /* s0 may not alias state: copy the state carried in */
			memcpy(s0, state, (size_t)(m->dk * m->dv) * sizeof *s0);
			state0 = s0;
		}
		if (m->pp.variant == LCA_LIGHTNING)
			st = inner(fn, lca_lightning_forward(plan, n, kt, kt, vt, &m->pp.slope,
				NULL, 0, state0, o, state));
		else
			st = inner(fn, lca_deltanet_forward(plan, n, kt, kt, vt, g + t, beta + t,
				NULL, 0, state0, o, state));
	}
out:
	lca_plan_destroy(plan);
	if (o != now)
		free(o);
	free(bb), free(gb), free(s0);
	return st == LCA_ERR_NOMEM ? lcai_fail(st, "%s: out of memory", fn) : st;
}

lca_status lcai_mem_read_state(const char *fn, const struct lcai_mem *m, const double *state,
	int64_t nq, const double *Q, double *O)
{
	double *zv = lcai_probe_alloc(nq * m->dv), *zg = lcai_probe_alloc(nq), zero = 0;
	lca_plan *plan = NULL;
	lca_status st = LCA_ERR_NOMEM;

	if (!zv || !zg)
		goto out;
	if ((st = make_plan(fn, m, &plan)))
		goto out;
	if (m->pp.variant == LCA_LIGHTNING)
		st = inner(fn, lca_lightning_forward(plan, nq, Q, Q, zv, &zero, NULL, 0, state, O,
			NULL));
	else
		st = inner(fn, lca_deltanet_forward(plan, nq, Q, Q, zv, zg, zg, NULL, 0, state, O,
			NULL));
out:
	lca_plan_destroy(plan);
	free(zv), free(zg);
	return st == LCA_ERR_NOMEM ? lcai_fail(st, "%s: out of memory", fn) : st;
}

lca_status lcai_mem_read(const char *fn, const struct lcai_mem *m, int64_t T, const double *k,
	const double *v, const double *beta, const double *g, int64_t nq, const double *Q,
	double *O)
{
	double *S;
	lca_status st;

	if (m->pp.variant >= LCA_DELTANET) {
		if (!(S = lcai_probe_alloc(m->dk * m->dv)))
			return lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
		st = lcai_mem_write_state(fn, m, T, k, v, beta, g, NULL, S, NULL);
		if (!st)
			st = lcai_mem_read_state(fn, m, S, nq, Q, O);
		free(S);
		return st;
	}
	if (m->pp.variant == LCA_MLA)
		return read_mla(fn, m, T, k, v, nq, Q, O);
	return read_softmax(fn, m, T, k, v, nq, Q, O);
}
