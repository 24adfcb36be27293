/*
 * mechfix.h - one small seeded case of each mechanism behind one
 * interface, for the tests that call every mechanism the same way
 * (tests/check_threads.c, tests/check_nomem.c): typed inputs, a forward
 * call and a step call on a cache.
 *
 * Inputs are drawn with testutil's generator, which is not thread-safe:
 * draw every case before starting threads. The calls themselves only read
 * the case, so many threads may share one.
 */
#ifndef LCATTN_MECHFIX_H
#define LCATTN_MECHFIX_H

#include <stddef.h>
#include <stdint.h>

#include "lcattn.h"

enum { MF_MAXIN = 7 };

struct mf {
	lca_params p;            /* sizes and options; backend, dtype as asked */
	int64_t T;               /* tokens of the case (Tq = Tk = T) */
	size_t elt;              /* bytes per element: 8 f64, 4 f32 */
	int nin;
	int64_t row[MF_MAXIN];   /* elements per token, or per call (perm) */
	int perm[MF_MAXIN];      /* 1: a whole-call input (weights, slopes) */
	void *in[MF_MAXIN];      /* typed inputs, in the forward call's order */
	int64_t no;              /* elements of o: T H dv */
	int64_t naux;            /* lse [T][H] (softmax, mla) or the final
	                            state [H][dk][dv] (deltanet, lightning) */
};

/* The four variants, in this order, for loops over mechanisms. */
extern const lca_variant mf_variants[4];
/* "softmax", "mla", "deltanet", "lightning". */
const char *mf_name(lca_variant v);

/* Draw a case of T tokens; fails the test on allocation failure. */
void mf_init(struct mf *m, lca_variant v, lca_backend b, lca_dtype t,
	int64_t T);
void mf_free(struct mf *m);

/* Output buffers of a forward call (o, aux) or of a step (o only). */
void *mf_alloc_out(const struct mf *m, int64_t n);

/* Forward over all T tokens into o [T][H dv] and aux (lse or state). */
lca_status mf_forward(const struct mf *m, const lca_plan *plan, void *o,
	void *aux);

/* A step of tokens [t0, t0 + T) of the case on a one-sequence cache,
 * their outputs into o (lse, for softmax and mla, is not asked for). */
lca_status mf_step(const struct mf *m, const lca_plan *plan, lca_cache *c,
	int64_t t0, int64_t T, void *o);

/* The same over a cache of several sequences, packed by cu (NULL: one). */
lca_status mf_step_cu(const struct mf *m, const lca_plan *plan, lca_cache *c,
	int64_t t0, int64_t T, const int64_t *cu, void *o);

/* Is x [n] the result ref [n] again? Bit for bit on the ref backend
 * (lcattn(7), Determinism); on the cpu backend, which promises only
 * accuracy, within the rule's bounds (f64 1e-12, f32 its 1e-6 floor). */
int mf_same(const struct mf *m, const void *x, const void *ref, int64_t n);

/* lca_cache_save of c into a new buffer; its size in *n. */
void *mf_cache_bytes(const lca_cache *c, size_t *n);

#endif /* LCATTN_MECHFIX_H */
