/*
 * mla_forms.c - the cpu MLA backward at decode shapes (a few new queries
 * over a long context), where AUTO runs the absorbed form's adjoint: its
 * time against the absorbed and naive forms named in the plan, so the
 * gain of not decompressing every head is measured, not asserted.
 * (--phase backward prints it after the prefill table.)
 */
#include "bench.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NQ 16       /* new queries: a speculative-decoding window */

/* Median of 3 backward calls after one warm-up; < 0 on failure. */
static double time_bwd(const struct bench_shape *s, lca_dtype dt,
	lca_algo algo, int64_t T, void *const *x)
{
	lca_params p;
	lca_plan *plan = NULL;
	double t[3];

	if (lca_params_init(&p, LCA_MLA) != LCA_OK)
		return -1;
	p.backend = LCA_BACKEND_CPU;
	p.dtype = dt;
	p.algo = algo;
	p.H = s->H, p.dn = s->dn, p.dr = s->dr, p.dc = s->dc, p.dv = s->dv;
	p.scale = 1 / sqrt((double)(s->dn + s->dr));
	if (lca_plan_create(&p, &plan) != LCA_OK)
		return -1;
	for (int i = -1; i < 3; i++) {
		double t0 = bench_now();

		if (lca_mla_backward(plan, NQ, T, x[0], x[1], x[2], x[3], x[4], x[5],
				NULL, 0, x[6], x[7], x[8], x[9], x[10], x[11], x[12]) != LCA_OK) {
			lca_plan_destroy(plan);
			return -1;
		}
		if (i >= 0)
			t[i] = bench_now() - t0;
	}
	lca_plan_destroy(plan);
	if (t[0] > t[1]) { double u = t[0]; t[0] = t[1]; t[1] = u; }
	if (t[1] > t[2]) { double u = t[1]; t[1] = t[2]; t[2] = u; }
	if (t[0] > t[1]) { double u = t[0]; t[0] = t[1]; t[1] = u; }
	return t[1];
}

void bench_mla_forms(const struct bench_shape *s, lca_dtype dt,
	const int64_t *Ts, int nT)
{
	const size_t es = dt == LCA_F32 ? sizeof(float) : sizeof(double);

	printf("\nmla backward at decode shapes: %d queries over T keys (cpu, %s),\n"
		"median of 3 calls; AUTO runs the absorbed adjoint here\n",
		NQ, dt == LCA_F32 ? "f32" : "f64");
	printf("%8s %10s %10s %10s %12s\n", "T", "auto s", "absorbed s",
		"naive s", "naive/auto");
	for (int i = 0; i < nT; i++) {
		const int64_t T = Ts[i], H = s->H;
		const int64_t n[7] = { NQ * H * s->dn, NQ * H * s->dr, T * s->dc,
			T * s->dr, H * s->dn * s->dc, H * s->dv * s->dc, NQ * H * s->dv };
		void *x[13] = { 0 };
		double ta = -1, tb = -1, tn = -1;
		uint64_t seed = 7;
		int ok = 1;

		/* inputs and dout uniform in [-0.5, 0.5); the gradients after */
		for (int k = 0; k < 13 && ok; k++) {
			const int64_t m = n[k < 7 ? k : k - 7];

			if (!(x[k] = malloc((size_t)m * es + 1))) {
				ok = 0;
				break;
			}
			for (int64_t j = 0; j < m; j++) {
				double u;

				seed = seed * 6364136223846793005ull + 1442695040888963407ull;
				u = (double)(seed >> 11) * 0x1p-53 - 0.5;
				if (dt == LCA_F32)
					((float *)x[k])[j] = (float)u;
				else
					((double *)x[k])[j] = u;
			}
		}
		if (ok) {
			ta = time_bwd(s, dt, LCA_ALGO_AUTO, T, x);
			tb = time_bwd(s, dt, LCA_ALGO_ABSORBED, T, x);
			tn = time_bwd(s, dt, LCA_ALGO_NAIVE, T, x);
		}
		if (ta > 0 && tb > 0 && tn > 0)
			printf("%8lld %10.4f %10.4f %10.4f %12.1f\n", (long long)T, ta, tb,
				tn, tn / ta);
		else
			printf("%8lld failed: %s\n", (long long)T, ok ? lca_last_error() :
				"out of memory");
		for (int k = 0; k < 13; k++)
			free(x[k]);
	}
}
