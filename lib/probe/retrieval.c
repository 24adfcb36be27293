/*
 * retrieval.c - lca_probe_retrieval: how much of each stored value a query
 * equal to its key gets back once all T tokens are in the memory.
 *
 * The error min_a ||a o - v|| / ||v|| is the sine of the angle between o
 * and v: scale-free, because linear attention outputs are unnormalised and
 * a softmax output is shrunk by its other weights; what is lost is the
 * part of o that is not along v.
 */
#include "probe.h"

#include <stdlib.h>

lca_status lca_probe_retrieval(const lca_probe_params *pp, const lca_probe_seq *s,
	double *err)
{
	static const char fn[] = "lca_probe_retrieval";
	struct lcai_mem m;
	double *o;
	lca_status st;

	lcai_clear_error();
	if (!err)
		return lcai_fail(LCA_ERR_NULL, "%s: err is NULL", fn);
	if ((st = lcai_mem_open(fn, &m, pp, s)))
		return st;
	if (!(o = lcai_probe_alloc(s->T * m.dv))) {
		lcai_mem_close(&m);
		return lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
	}
	/* The queries are the keys themselves, all read at position T. */
	st = lcai_mem_read(fn, &m, s->T, s->k, s->v, s->beta, s->g, s->T, s->k, o);
	for (int64_t i = 0; !st && i < s->T; i++)
		err[i] = lcai_probe_err(o + i * m.dv, s->v + i * m.dv, m.dv);
	free(o);
	lcai_mem_close(&m);
	return st;
}
