/*
 * drift.h - how far a float32 decode drifts from float64 over a long run:
 * deltanet and lightning stepped one token at a time through a cache, the
 * cpu backend in f32 against the double reference, on the same inputs.
 * Used by `lcattn bench`, `lcattn report` and tests/check_drift, which
 * holds the result to the bounds below (lcattn(7), Accuracy).
 */
#ifndef LCATTN_DRIFT_H
#define LCATTN_DRIFT_H

#include <stdint.h>

#include "lcattn.h"

/* The shape: one head, dk = dv = 16; lightning's slope 1e-3 (lambda =
 * 0.999: a memory of about a thousand tokens, near-1 like MiniMax's
 * deeper layers), deltanet's gate g in [-0.01, 0] and beta in [0, 1]. */
enum { DRIFT_DK = 16, DRIFT_DV = 16 };
#define DRIFT_SLOPE 1e-3

/* Absolute bounds on the largest |o32 - o64| over 1M tokens: ten times
 * the largest drift measured over four seeds, rounded up (deltanet
 * 2.3e-7 with |o| <= 0.8; lightning 2.6e-5 with |o| <= 38, i.e. 7e-7 of
 * its outputs' size: the state sums about a thousand tokens). The margin
 * covers other seeds, compilers and the ISA the cpu backend picks. */
#define DRIFT_BOUND_DELTANET 3e-6
#define DRIFT_BOUND_LIGHTNING 3e-4

struct drift {
	int64_t T;          /* tokens decoded */
	double maxabs;      /* max over tokens and outputs of |o32 - o64| */
	double lastabs;     /* the same over the last token's outputs */
	double maxref;      /* max |o64|, for scale */
	double seconds;     /* wall time of both runs */
};

/* Decode T tokens of v (LCA_DELTANET or LCA_LIGHTNING) drawn from seed. */
lca_status drift_run(lca_variant v, int64_t T, uint64_t seed, struct drift *d);

#endif /* LCATTN_DRIFT_H */
