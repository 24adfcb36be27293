/*
 * gradflow.h - the gradient-flow probe (lcattn-probes(7), GRADIENT FLOW):
 * how much gradient the output of the last token sends back to the value
 * and the key of a token d tokens earlier, for each mechanism with the
 * gates of a preset, on random unit inputs, through the public backward
 * calls of the double reference. Used by `lcattn probe gradflow`,
 * `lcattn report` and tests/check_gradflow.
 */
#ifndef LCATTN_GRADFLOW_H
#define LCATTN_GRADFLOW_H

#include "lcattn.h"

#include <stdint.h>

enum gradflow_gate { GF_GATE_NONE, GF_GATE_STRONG, GF_GATE_WEAK };

/* One curve: a mechanism with the gates or the RoPE of a preset. */
struct gradflow_curve {
	const char *name;
	lca_variant variant;
	int rope;                 /* softmax: RoPE on all of dk (theta 1e4, half) */
	enum gradflow_gate gate;  /* deltanet: the golden generator's g (tools/gen.c) */
	int layer;                /* lightning: MiniMax slopes of layer `layer` of 8 */
	const char *what;
};

extern const struct gradflow_curve gradflow_curves[];
extern const int gradflow_ncurves;

/* One draw, one sequence, H heads, in the layouts of the forward calls. */
struct gradflow_draw {
	int64_t T, H, dk, dv;
	double *q, *k;       /* [T][H][dk] unit rows */
	double *v;           /* [T][H][dv] unit rows */
	double *u;           /* [H][dv] unit cotangent of each head of o_{T-1} */
	double *g, *beta;    /* [T][H] deltanet gates (zero otherwise) */
	double *slope;       /* [H] lightning slopes */
	double *dout, *dq, *dkey, *dval, *dg, *dbeta;  /* work */
};

lca_status gradflow_alloc(struct gradflow_draw *d, int64_t T, int64_t H, int64_t dk,
	int64_t dv);
void gradflow_free(struct gradflow_draw *d);

/* Draw the inputs of curve c from seed: q, k, v and u come from
 * lca_probe_draw and are the same for every curve at one seed (curves
 * compare draw by draw); g, beta and slope are the curve's own. */
lca_status gradflow_fill(struct gradflow_draw *d, const struct gradflow_curve *c,
	uint64_t seed);

/* One backward pass with dout zero except u at the last token: nv and nk
 * [T][H] receive ||d<u_h, o_{T-1,h}>/dv_{t,h}|| and ||d<u_h, o_{T-1,h}>/dk_{t,h}||. */
lca_status gradflow_pass(struct gradflow_draw *d, const struct gradflow_curve *c,
	double *nv, double *nk);

/* The probe: over the draws seed .. seed + seeds - 1, gv[j] and gk[j] are
 * the root mean square over draws and heads of those norms at distance
 * dist[j] = T - 1 - t (0 <= dist[j] < T); this estimates
 * ||d o_{T-1,h} / d x_t||_F / sqrt(dv), since E_u u u^T = I / dv. */
lca_status gradflow_run(const struct gradflow_curve *c, int64_t T, int64_t H, int64_t dk,
	int64_t dv, int64_t seeds, uint64_t seed, int nd, const int64_t *dist, double *gv,
	double *gk);

#endif /* LCATTN_GRADFLOW_H */
