/*
 * probe.h - pieces shared by the probes (lib/probe), never installed.
 *
 * A probe treats one head of one mechanism as a memory: the T tokens of an
 * lca_probe_seq are written in order into an empty memory, then queries read
 * it at position T without writing (lcattn-probes(7)). Every write and read
 * runs through the public forward calls on a float64 plan of pp->backend:
 * by default the reference, so a probe measures exactly what the reference
 * computes; the cpu backend where the caller asks for speed.
 */
#ifndef LCATTN_PROBE_H
#define LCATTN_PROBE_H

#include "internal.h"

#include <stdint.h>

/* A probe's mechanism, ready to run: the checked parameters and, for mla,
 * the latent map fitted to one sequence. */
struct lcai_mem {
	lca_probe_params pp;  /* rope_dim resolved (never LCA_ROPE_FULL) */
	int64_t dk, dv;
	/* mla: keys are [k_nope (dn) ; k_rot (dr)], and the latent map w
	 * [dn + dv][dc] has orthonormal columns spanning the top dc
	 * eigenvectors of X^T X, X = [K_nope V] (the best rank-dc fit). */
	int64_t dn, dr, dc;
	double *w;
};

/* Check *pp and s (fn names the public call in messages) and prepare m;
 * for mla, fit the latent map to s (needs s->k and s->v). */
lca_status lcai_mem_open(const char *fn, struct lcai_mem *m,
	const lca_probe_params *pp, const lca_probe_seq *s);
/* lcai_mem_open in two steps, for callers with arguments of their own to
 * check before the mla fit (O(T (dn + dv)^2)): the checks, then the fit. */
lca_status lcai_mem_check(const char *fn, struct lcai_mem *m,
	const lca_probe_params *pp, const lca_probe_seq *s);
lca_status lcai_mem_fit(const char *fn, struct lcai_mem *m, const lca_probe_seq *s);
void lcai_mem_close(struct lcai_mem *m);

/* Write the T tokens (k [T][dk], v [T][dv], beta/g [T] or NULL for the
 * constants of pp) and read them with the nq queries Q [nq][dk] at
 * position T: O [nq][dv]. */
lca_status lcai_mem_read(const char *fn, const struct lcai_mem *m, int64_t T,
	const double *k, const double *v, const double *beta, const double *g,
	int64_t nq, const double *Q, double *O);

/* softmax only: rotate x [dk] in place as a key at position pos (nothing
 * without RoPE), and the read of pre-rotated queries Qr (at position T)
 * from pre-rotated keys kr [T][dk]. */
void lcai_mem_rotate(const struct lcai_mem *m, double *x, int64_t pos);
lca_status lcai_mem_read_rotated(const char *fn, const struct lcai_mem *m, int64_t T,
	const double *kr, const double *v, int64_t nq, const double *Qr, double *O);

/* mla only: the latent ckv [T][dc] of each token and its rotary key part
 * kr [T][max(dr, 2)] (not rotated; zeros when dr = 0), both new buffers;
 * and the read of Q at position T from them. Row t depends on token t
 * only, so a reordering of the tokens is the same reordering of rows. */
lca_status lcai_mem_latent(const char *fn, const struct lcai_mem *m, int64_t T,
	const double *k, const double *v, double **ckv, double **kr);
lca_status lcai_mem_read_latent(const char *fn, const struct lcai_mem *m, int64_t T,
	const double *ckv, const double *kr, int64_t nq, const double *Q, double *O);

/* deltanet, lightning only: write T tokens from state0 (NULL = empty) into
 * state [dk][dv]; now [T][dv], if not NULL, receives the read of each key
 * right after its own write. */
lca_status lcai_mem_write_state(const char *fn, const struct lcai_mem *m,
	int64_t T, const double *k, const double *v, const double *beta,
	const double *g, const double *state0, double *state, double *now);
/* deltanet, lightning only: read state [dk][dv] with Q [nq][dk]. */
lca_status lcai_mem_read_state(const char *fn, const struct lcai_mem *m,
	const double *state, int64_t nq, const double *Q, double *O);

/* Retrieval error min_a ||a o - v|| / ||v|| (closed form a = <o,v>/<o,o>;
 * 1 when o = 0), computed as sqrt(1 - cos^2) without cancellation. */
double lcai_probe_err(const double *o, const double *v, int64_t n);

double lcai_probe_dot(const double *a, const double *b, int64_t n);
double lcai_probe_norm(const double *a, int64_t n);

/* Eigenvectors of the symmetric n x n matrix a (destroyed) by cyclic
 * Jacobi: val [n] descending, vec [n][n] with eigenvector j in column j. */
lca_status lcai_probe_eig(int64_t n, double *a, double *val, double *vec);

/* calloc of n doubles with overflow check; NULL on failure. */
double *lcai_probe_alloc(int64_t n);

#endif /* LCATTN_PROBE_H */
