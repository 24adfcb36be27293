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
	int rope;                 /* softmax: RoPE on all of dk (theta 1e4, half); mla: on
	                             all of dr (theta 1e4, interleaved) */
	enum gradflow_gate gate;  /* deltanet: the golden generator's g (tools/gen.c) */
	int layer;                /* lightning: MiniMax slopes of layer `layer` of 8 */
	const char *what;
	int dc_div;               /* mla: latent dc = dk / dc_div (gradflow_mla_shape) */
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
	/* mla, after gradflow_alloc_mla (zero and NULL otherwise): the
	 * per-token latent and rotary key shared by the heads, and each
	 * head's decompression; q_h = [q_nope ; q_rope] is q's row split
	 * after dn = dk - dr coordinates. */
	int64_t dn, dr, dc;
	double *ckv;         /* [T][dc] */
	double *k_rope;      /* [T][dr] */
	double *w_uk;        /* [H][dn][dc] */
	double *w_uv;        /* [H][dv][dc] */
	double *qn, *qr, *dqn, *dqr, *dckv, *dk_rope, *dw_uk, *dw_uv;  /* one head's work */
};

lca_status gradflow_alloc(struct gradflow_draw *d, int64_t T, int64_t H, int64_t dk,
	int64_t dv);
void gradflow_free(struct gradflow_draw *d);

/* The mla shape of curve c for a probe's dk: a rotary part dr = dk/4
 * (rounded down to even, DeepSeek-V2's dr/(dn + dr) is 1/3), dn = dk - dr,
 * latent dc = dk / c->dc_div. LCA_ERR_SIZE where dk < 8. */
lca_status gradflow_mla_shape(const struct gradflow_curve *c, int64_t dk, int64_t *dr,
	int64_t *dc);

/* Add the mla arrays to a draw from gradflow_alloc (freed by gradflow_free). */
lca_status gradflow_alloc_mla(struct gradflow_draw *d, int64_t dr, int64_t dc);

/* Draw the inputs of curve c from seed: q, k, v and u come from
 * lca_probe_draw and are the same for every curve at one seed (curves
 * compare draw by draw); g, beta and slope are the curve's own. mla
 * (the draw needs gradflow_alloc_mla) draws, from streams of its own,
 * ckv_t and k_rope_t uniform on spheres of radii sqrt(dc/dk) and
 * sqrt(dr/dk), and the rows of w_uk[h] and w_uv[h] uniform on the unit
 * sphere of R^dc (entries of variance 1/dc, as tools/gen.c's): the
 * decompressed coordinates have variance 1/dk, as those of the unit
 * rows that softmax reads. */
lca_status gradflow_fill(struct gradflow_draw *d, const struct gradflow_curve *c,
	uint64_t seed);

/* One backward pass with dout zero except u at the last token: nv and nk
 * [T][H] receive ||d<u_h, o_{T-1,h}>/dv_{t,h}|| and ||d<u_h, o_{T-1,h}>/dk_{t,h}||.
 * mla, whose tokens are shared by the heads: one pass per head h, with
 * u_h alone, and nv, nk receive ||d<u_h, o_{T-1,h}>/dckv_t|| and
 * ||d<u_h, o_{T-1,h}>/dk_rope_t||. */
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
