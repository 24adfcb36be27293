/*
 * retrieval.c - lca_probe_retrieval, lca_probe_retrieval_of: how much of
 * each stored value a query equal to its key gets back once all T tokens
 * are in the memory.
 *
 * The error min_a ||a o - v|| / ||v|| is the sine of the angle between o
 * and v: scale-free, because linear attention outputs are unnormalised and
 * a softmax output is shrunk by its other weights; what is lost is the
 * part of o that is not along v.
 */
#include "probe.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* The same error for the tokens idx[0..n-1] only. Each read depends on its
 * own query alone (softmax and mla rows are independent; a deltanet or
 * lightning read leaves the state as it found it: beta = 0, g = 0, resp.
 * slope = 0, v = 0), so reading n queries rather than T gives the same
 * bits. What is saved is the read: T queries over T keys are the O(T^2)
 * of softmax and mla; the write, the mla fit and the drawing of the tokens
 * stay O(T). */
lca_status lca_probe_retrieval_of(const lca_probe_params *pp, const lca_probe_seq *s,
	int64_t n, const int64_t *idx, double *err)
{
	static const char fn[] = "lca_probe_retrieval_of";
	struct lcai_mem m;
	double *Q, *o;
	lca_status st;

	lcai_clear_error();
	if (!idx || !err)
		return lcai_fail(LCA_ERR_NULL, "%s: %s is NULL", fn, idx ? "err" : "idx");
	if (n < 1)
		return lcai_fail(LCA_ERR_SIZE, "%s: n = %lld must be >= 1", fn, (long long)n);
	if ((st = lcai_mem_check(fn, &m, pp, s)))
		return st;
	for (int64_t j = 0; j < n; j++)
		if (idx[j] < 0 || idx[j] >= s->T)
			return lcai_fail(LCA_ERR_ARG, "%s: idx[%lld] = %lld outside [0, T = %lld)",
				fn, (long long)j, (long long)idx[j], (long long)s->T);
	if ((st = lcai_mem_fit(fn, &m, s)))
		return st;
	Q = lcai_probe_alloc(n > INT64_MAX / m.dk ? -1 : n * m.dk);
	o = lcai_probe_alloc(n > INT64_MAX / m.dv ? -1 : n * m.dv);
	if (!Q || !o) {
		st = lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
		goto out;
	}
	for (int64_t j = 0; j < n; j++)
		memcpy(Q + j * m.dk, s->k + idx[j] * m.dk, (size_t)m.dk * sizeof *Q);
	st = lcai_mem_read(fn, &m, s->T, s->k, s->v, s->beta, s->g, n, Q, o);
	for (int64_t j = 0; !st && j < n; j++)
		err[j] = lcai_probe_err(o + j * m.dv, s->v + idx[j] * m.dv, m.dv);
out:
	free(Q), free(o);
	lcai_mem_close(&m);
	return st;
}
