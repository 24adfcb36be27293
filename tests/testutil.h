/*
 * testutil.h - shared helpers for the Check unit tests: a seeded random
 * generator, error norms, orthonormal rows, an independent RoPE and plan
 * helpers.
 *
 * Reproducibility: the seed comes from LCA_TEST_SEED (else the clock) and is
 * printed once; every test starts its generator afresh from that seed (a
 * checked fixture), so a failing test replays alone, in any order, forked
 * or not.
 */
#ifndef LCATTN_TESTUTIL_H
#define LCATTN_TESTUTIL_H

#include <check.h>
#include <stdint.h>

#include "lcattn.h"

/* ---- random numbers ---- */

/* Read the seed (LCA_TEST_SEED or the time), print "seed = N" once. */
uint64_t tu_init(void);
/* Restart the generator from the seed; a checked fixture of every TCase. */
void tu_reset(void);
uint64_t tu_next(void);
double tu_uniform(double lo, double hi);  /* in [lo, hi) */
double tu_normal(void);                   /* standard normal */
int64_t tu_randint(int64_t lo, int64_t hi); /* in [lo, hi] */
void tu_fill_normal(double *x, int64_t n, double sd);
void tu_fill_uniform(double *x, int64_t n, double lo, double hi);

/* ---- buffers and norms ---- */

/* Zeroed array of n doubles; fails the test if out of memory. */
double *tu_alloc(int64_t n);
double *tu_copy(const double *x, int64_t n);
/* ||x - ref||_2 / ||ref||_2 (the plain norm of x - ref when ref == 0). */
double tu_relerr(const double *x, const double *ref, int64_t n);
double tu_maxabs(const double *x, const double *ref, int64_t n);
int tu_all_finite(const double *x, int64_t n);
/* Replace rows x rows of a [rows][cols] array (rows <= cols) by
 * orthonormal ones (modified Gram-Schmidt, twice for full accuracy). */
void tu_orthonormal_rows(double *a, int64_t rows, int64_t cols);

/* ---- RoPE written independently of lib/core/rope.c ----
 * Rotate x[0 .. rope_dim) as at position pos; style 0 half, 1 interleaved. */
void tu_rope(double *x, int64_t rope_dim, lca_rope_style style, double theta,
	int64_t pos);

/* ---- plans and messages ---- */

/* lca_params_init() that must succeed. */
lca_params tu_params(lca_variant variant);
/* lca_plan_create() that must succeed (the failure message is shown). */
lca_plan *tu_plan(const lca_params *p);
/* Does the thread's last error mention name as a whole word? */
int tu_msg_names(const char *name);

/* Assert a status, showing the detail message on failure. */
#define tu_assert_ok(expr) do { \
	lca_status tu_s_ = (expr); \
	ck_assert_msg(tu_s_ == LCA_OK, "%s returned %s (%s)", #expr, \
		lca_strerror(tu_s_), lca_last_error()); \
} while (0)

/* Assert normwise relative error <= tol, naming what was compared. */
#define tu_assert_close(x, ref, n, tol, what) do { \
	double tu_e_ = tu_relerr((x), (ref), (n)); \
	ck_assert_msg(tu_e_ <= (tol), "%s: normwise error %.3e > %.1e " \
		"(max-abs %.3e)", (what), tu_e_, (double)(tol), \
		tu_maxabs((x), (ref), (n))); \
} while (0)

/* New TCase with the reseeding fixture and a timeout suited to the ref. */
TCase *tu_tcase(const char *name);
/* Run the suite (CK_NORMAL) and give main()'s exit status. */
int tu_run(Suite *s);

#endif /* LCATTN_TESTUTIL_H */
