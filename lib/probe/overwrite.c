/*
 * overwrite.c - lca_probe_overwrite: how much of each DeltaNet write the
 * later writes erased.
 *
 * Gated DeltaNet updates S_j = exp(g_j) (I - b_j k_j k_j^T) S_{j-1} + b_j k_j v_j^T
 * (Yang et al., "Gated Delta Networks", arXiv:2412.06464, eq. 10), so what
 * is left at the end of token i's write b_i k_i v_i^T is
 *	exp(g_{i+1} + ... + g_{T-1}) P_i b_i k_i v_i^T,
 *	P_i = A_{T-1} ... A_{i+1},  A_j = I - b_j k_j k_j^T.
 * The decay scales every write alike and is reported apart; the overwrite
 * 1 - ||P_i k_i|| / ||k_i|| is the direction-dependent loss. The P_i come
 * from one backward sweep, P_{i-1} = P_i A_i, so the cost is T dk^2, not
 * T^2 dk.
 */
#include "probe.h"

#include <math.h>
#include <stdlib.h>

/* overwrite[i] from the backward sweep; M holds P_i (dk x dk, starts I). */
static void sweep(const lca_probe_seq *s, const struct lcai_mem *m, double *M, double *y,
	double *overwrite)
{
	int64_t dk = m->dk;

	for (int64_t i = 0; i < dk * dk; i++)
		M[i] = i % (dk + 1) == 0;
	for (int64_t i = s->T - 1; i >= 0; i--) {
		const double *k = s->k + i * dk;
		double b = s->beta ? s->beta[i] : m->pp.beta, nk = lcai_probe_norm(k, dk);

		for (int64_t r = 0; r < dk; r++)
			y[r] = lcai_probe_dot(M + r * dk, k, dk);
		/* A zero key writes nothing, so nothing of it can be lost. */
		overwrite[i] = nk > 0 ? 1 - lcai_probe_norm(y, dk) / nk : 0;
		/* P_{i-1} = P_i (I - b k k^T) = P_i - b (P_i k) k^T */
		for (int64_t r = 0; r < dk; r++)
			for (int64_t c = 0; c < dk; c++)
				M[r * dk + c] -= b * y[r] * k[c];
	}
}

/* err_now from the forward's own outputs, err_end from a read of the keys. */
static lca_status errors(const char *fn, const lca_probe_seq *s, const struct lcai_mem *m,
	double *err_now, double *err_end)
{
	int64_t T = s->T, dv = m->dv;
	double *S = lcai_probe_alloc(m->dk * dv), *o = lcai_probe_alloc(T * dv);
	lca_status st = LCA_ERR_NOMEM;

	if (!S || !o) {
		st = lcai_fail(st, "%s: out of memory", fn);
		goto out;
	}
	if ((st = lcai_mem_write_state(fn, m, T, s->k, s->v, s->beta, s->g, NULL, S, o)))
		goto out;
	for (int64_t i = 0; err_now && i < T; i++)
		err_now[i] = lcai_probe_err(o + i * dv, s->v + i * dv, dv);
	if (err_end && !(st = lcai_mem_read_state(fn, m, S, T, s->k, o)))
		for (int64_t i = 0; i < T; i++)
			err_end[i] = lcai_probe_err(o + i * dv, s->v + i * dv, dv);
out:
	free(S), free(o);
	return st;
}

lca_status lca_probe_overwrite(const lca_probe_params *pp, const lca_probe_seq *s,
	double *overwrite, double *decay, double *err_now, double *err_end)
{
	static const char fn[] = "lca_probe_overwrite";
	struct lcai_mem m;
	double *M = NULL, *y = NULL, acc = 0;
	lca_status st;

	lcai_clear_error();
	if (pp && pp->variant != LCA_DELTANET)
		return lcai_fail(LCA_ERR_ARG, "%s: pp->variant must be LCA_DELTANET", fn);
	if ((st = lcai_mem_open(fn, &m, pp, s)))
		return st;
	if (overwrite) {
		M = lcai_probe_alloc(m.dk * m.dk), y = lcai_probe_alloc(m.dk);
		if (!M || !y)
			st = lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
		else
			sweep(s, &m, M, y, overwrite);
	}
	/* decay[i] = exp(sum of the later g), summed from the end. */
	for (int64_t i = s->T - 1; !st && decay && i >= 0; i--) {
		decay[i] = exp(acc);
		acc += s->g ? s->g[i] : m.pp.g;
	}
	if (!st && (err_now || err_end))
		st = errors(fn, s, &m, err_now, err_end);
	free(M), free(y);
	lcai_mem_close(&m);
	return st;
}
