/*
 * summary.c - range summaries of the two linear mechanisms on the CPU
 * (context parallelism), float32 and float64, computed by the forward
 * kernels themselves (lib/cpu/deltanet.c, lightning.c: chunked WY/UT and
 * blockwise, BLAS) rather than a second implementation.
 *
 *   lightning  b is the final state of the range run from a zero state;
 *              a = exp(-slope T).
 *   deltanet   the map S -> A S + B acts on each column of S alone, so a
 *              forward over values [0 | v] (dk + dv columns) started
 *              from the state [I | 0] ends in [A | B].
 *
 * The range runs in pieces of about SUMMARY_PIECE tokens, the state
 * carried from piece to piece (state0 == state is allowed), so the
 * scratch (outputs nobody reads, and deltanet's widened values) stays
 * O(piece) at any T.
 */
#include "internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SUMMARY_PIECE 4096

/* Tokens per piece: a whole number of the kernel's tiles. */
static int64_t piece_len(int64_t tile, int64_t T)
{
	int64_t n = tile >= SUMMARY_PIECE ? tile : SUMMARY_PIECE / tile * tile;

	return n < T ? n : T;
}

static void *alloc_elts(int64_t n, size_t es)
{
	if (n < 1)
		n = 1;
	if ((uint64_t)n > SIZE_MAX / es)
		return NULL;
	return malloc((size_t)n * es);
}

lca_status lcai_cpu_lightning_summary(const lca_params *p, int64_t T,
	const void *k, const void *v, const void *slope, void *a, void *b)
{
	const size_t es = lcai_dtype_size(p->dtype);
	const int64_t H = p->H, dk = p->dk, dv = p->dv;
	const int64_t P = piece_len(p->block, T);
	int64_t no;
	void *o;
	lca_status st = LCA_OK;

	if (!lcai_mul_n(&no, 3, P, H, dv) || !(o = alloc_elts(no, es)))
		return lcai_fail(LCA_ERR_NOMEM, "cpu lightning summary: no memory for %lld outputs",
			(long long)P);
	for (int64_t t0 = 0; t0 < T && st == LCA_OK; t0 += P) {
		const int64_t n = T - t0 < P ? T - t0 : P, cu[2] = { 0, n };
		const char *kt = (const char *)k + (size_t)(t0 * H * dk) * es;
		const char *vt = (const char *)v + (size_t)(t0 * H * dv) * es;

		/* q is not needed: the keys stand in for it */
		st = lcai_cpu_lightning(p, cu, 1, kt, kt, vt, slope, t0 ? b : NULL, o, b);
	}
	free(o);
	if (st != LCA_OK)
		return st;
	for (int64_t h = 0; h < H; h++) {
		double s = p->dtype == LCA_F64 ? ((const double *)slope)[h] :
			((const float *)slope)[h];

		if (p->dtype == LCA_F64)
			((double *)a)[h] = exp(-s * (double)T);
		else
			((float *)a)[h] = (float)exp(-s * (double)T);
	}
	return LCA_OK;
}

/* Values [0 | v] of tokens t0 .. t0+n-1 into w [n][H][dk + dv]. */
static void widen_values(const lca_params *p, const void *v, int64_t t0,
	int64_t n, void *w)
{
	const size_t es = lcai_dtype_size(p->dtype);
	const int64_t H = p->H, dk = p->dk, dv = p->dv, dw = dk + dv;

	for (int64_t r = 0; r < n * H; r++) {
		char *row = (char *)w + (size_t)(r * dw) * es;

		memset(row, 0, (size_t)dk * es);
		memcpy(row + (size_t)dk * es, (const char *)v + (size_t)((t0 * H + r) * dv) * es,
			(size_t)dv * es);
	}
}

/* [A | B] [H][dk][dk + dv] from [I | 0] through the range, then split. */
lca_status lcai_cpu_deltanet_summary(const lca_params *p, int64_t T,
	const void *k, const void *v, const void *g, const void *beta,
	void *A, void *B)
{
	const size_t es = lcai_dtype_size(p->dtype);
	const int64_t H = p->H, Hk = p->Hk, dk = p->dk, dv = p->dv, dw = dk + dv;
	const int64_t P = piece_len(p->chunk, T);
	lca_params wide = *p;
	int64_t nw, ns;
	void *w = NULL, *o = NULL, *S = NULL;
	lca_status st = LCA_OK;

	wide.dv = dw;
	if (!lcai_mul_n(&nw, 3, P, H, dw) || !lcai_mul_n(&ns, 3, H, dk, dw) ||
	    !(w = alloc_elts(nw, es)) || !(o = alloc_elts(nw, es)) ||
	    !(S = alloc_elts(ns, es))) {
		st = lcai_fail(LCA_ERR_NOMEM, "cpu deltanet summary: no memory for %lld "
			"tokens of %lld columns", (long long)P, (long long)dw);
		goto out;
	}
	memset(S, 0, (size_t)ns * es);
	for (int64_t h = 0; h < H; h++)
		for (int64_t i = 0; i < dk; i++) {
			const int64_t at = (h * dk + i) * dw + i;

			if (p->dtype == LCA_F64)
				((double *)S)[at] = 1.0;
			else
				((float *)S)[at] = 1.0f;
		}
	for (int64_t t0 = 0; t0 < T && st == LCA_OK; t0 += P) {
		const int64_t n = T - t0 < P ? T - t0 : P, cu[2] = { 0, n };
		const char *kt = (const char *)k + (size_t)(t0 * Hk * dk) * es;

		widen_values(p, v, t0, n, w);
		/* q is not needed: the keys stand in for it */
		st = lcai_cpu_deltanet(&wide, cu, 1, kt, kt, w,
			(const char *)g + (size_t)(t0 * H) * es,
			(const char *)beta + (size_t)(t0 * H) * es, S, o, S);
	}
	if (st != LCA_OK)
		goto out;
	for (int64_t r = 0; r < H * dk; r++) {
		const char *row = (const char *)S + (size_t)(r * dw) * es;

		memcpy((char *)A + (size_t)(r * dk) * es, row, (size_t)dk * es);
		memcpy((char *)B + (size_t)(r * dv) * es, row + (size_t)dk * es, (size_t)dv * es);
	}
out:
	free(S);
	free(o);
	free(w);
	return st;
}
