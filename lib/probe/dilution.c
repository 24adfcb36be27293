/*
 * dilution.c - lca_probe_dilution: how far a Lightning memory's crosstalk
 * drowns each stored value.
 *
 * After T tokens the state is S = sum_j lambda^(T-1-j) k_j v_j^T, so the
 * read of key i is signal plus crosstalk:
 *	S^T k_i = lambda^(T-1-i) (k_i.k_i) v_i + sum_{j != i} lambda^(T-1-j) (k_i.k_j) v_j.
 * The read comes from the reference (lca_lightning_forward); the signal is
 * formed here and the crosstalk is the difference. Both are of the size of
 * the read or smaller, so the subtraction loses nothing that matters to a
 * ratio; once lambda^(T-1-i) underflows the signal is 0 and the ratio +inf.
 */
#include "probe.h"

#include <math.h>
#include <stdlib.h>

lca_status lca_probe_dilution(const lca_probe_params *pp, const lca_probe_seq *s,
	double *ratio)
{
	static const char fn[] = "lca_probe_dilution";
	struct lcai_mem m;
	double *o;
	lca_status st;

	lcai_clear_error();
	if (pp && pp->variant != LCA_LIGHTNING)
		return lcai_fail(LCA_ERR_ARG, "%s: pp->variant must be LCA_LIGHTNING", fn);
	if (!ratio)
		return lcai_fail(LCA_ERR_NULL, "%s: ratio is NULL", fn);
	if ((st = lcai_mem_open(fn, &m, pp, s)))
		return st;
	if (!(o = lcai_probe_alloc(s->T * m.dv))) {
		lcai_mem_close(&m);
		return lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
	}
	st = lcai_mem_read(fn, &m, s->T, s->k, s->v, NULL, NULL, s->T, s->k, o);
	for (int64_t i = 0; !st && i < s->T; i++) {
		const double *k = s->k + i * m.dk, *v = s->v + i * m.dv;
		/* lambda^(T-1-i) as exp(-slope (T-1-i)): no repeated products. */
		double a = exp(-m.pp.slope * (double)(s->T - 1 - i)) * lcai_probe_dot(k, k, m.dk);
		double cross = 0, sig = fabs(a) * lcai_probe_norm(v, m.dv);

		for (int64_t c = 0; c < m.dv; c++) {
			double d = o[i * m.dv + c] - a * v[c];

			cross += d * d;
		}
		cross = sqrt(cross);
		ratio[i] = sig > 0 ? cross / sig : cross > 0 ? INFINITY : 0;
	}
	free(o);
	lcai_mem_close(&m);
	return st;
}
