/*
 * probe.c - the BLAS half of the probes' mla latent fit (lib/probe/memory.c)
 * for probes run on the cpu backend (lca_probe_params.backend).
 *
 * The reference probe forms the Gram matrix X^T X and the latents X w,
 * X = [K_nope V] (T rows of dn + dv), in plain loops: at T = 2^20 and
 * dk = dv = 64 that is 1.7e10 and 8.6e9 multiply-adds, tens of seconds on
 * one core; a BLAS does them in about a second. Same products, another
 * summation order: the latent map moves by rounding over the eigenvalue
 * gap, which is why only a cpu-backend probe takes this path.
 *
 * Rows go in slabs so that every BLAS size fits an int whatever T; X is
 * never formed, K_nope is read in place (lda = dk).
 */
#include "internal.h"

#include <cblas.h>
#include <stdint.h>

#define SLAB ((int64_t)1 << 24)

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

void lcai_cpu_probe_gram(int64_t T, int64_t dk, int64_t dn, int64_t dv, const double *k,
	const double *v, double *G)
{
	int64_t n = dn + dv;

	for (int64_t t = 0; t < T; t += SLAB) {
		int rows = (int)min64(SLAB, T - t);
		double beta = t ? 1.0 : 0.0;

		cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)dn, rows, 1.0,
			k + t * dk, (int)dk, beta, G, (int)n);
		cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)dv, rows, 1.0,
			v + t * dv, (int)dv, beta, G + dn * n + dn, (int)n);
		cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)dn, (int)dv, rows,
			1.0, k + t * dk, (int)dk, v + t * dv, (int)dv, beta, G + dn, (int)n);
	}
	/* The eigen-solver wants the whole symmetric matrix. */
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < i; j++)
			G[i * n + j] = G[j * n + i];
}

void lcai_cpu_probe_latent(int64_t T, int64_t dk, int64_t dn, int64_t dv, int64_t dc,
	const double *k, const double *v, const double *w, double *ckv)
{
	for (int64_t t = 0; t < T; t += SLAB) {
		int rows = (int)min64(SLAB, T - t);

		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, (int)dc, (int)dn,
			1.0, k + t * dk, (int)dk, w, (int)dc, 0.0, ckv + t * dc, (int)dc);
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, (int)dc, (int)dv,
			1.0, v + t * dv, (int)dv, w + dn * dc, (int)dc, 1.0, ckv + t * dc, (int)dc);
	}
}
