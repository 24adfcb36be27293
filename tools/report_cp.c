/*
 * report_cp.c - the report's "Beyond one machine" section: one sequence
 * of n tokens split over P ranks in contiguous runs, as liblcattn_mpi
 * runs it, for every preset of `lcattn cost` at 128K and 1M tokens over
 * 8, 64 and 512 ranks: what the busiest rank sends and in how many
 * sequential rounds (the formulas of `lcattn cost --ranks`, i.e. of
 * lca_mpi_softmax_forward(3)) against what the busiest rank computes
 * (lca_plan_cost(3) over its share). All modelled; the compute times use
 * the compute peak (max of sgemm and the FMA loop) measured in the same
 * report run, the transfer times a
 * stated link, since one machine cannot measure a network.
 */
#include "lcattn.h"
#include "tool.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The stated link: 200 Gb/s (InfiniBand HDR) per rank, 2 us a round;
 * and a stated accelerator rate, about an H100's dense bf16 peak. */
#define LINK_BYTES_S 25e9
#define LINK_ROUND_S 2e-6
#define ACCEL_FLOPS 1e15

static const int64_t report_ns[] = { 131072, 1048576 };
static const int report_ranks[] = { 8, 64, 512 };

static const lca_params *shape_of(const struct tool_preset *pr, lca_variant v)
{
	return v == LCA_SOFTMAX ? &pr->softmax : v == LCA_MLA ? &pr->mla :
		v == LCA_DELTANET ? &pr->deltanet : &pr->lightning;
}

/* One layer's prefill FLOPs over m tokens (0 for none). */
static double prefill(const lca_plan *plan, int64_t m)
{
	lca_cost c;

	if (m < 1 || lca_plan_cost(plan, LCA_PHASE_PREFILL, m, &c))
		return 0;
	return c.flops;
}

static int ceil_log2(int P)
{
	int k = 0;

	while ((1 << k) < P)
		k++;
	return k;
}

/*
 * FLOPs rank r of P computes in one layer of variant v over n tokens:
 *  - softmax, mla: its queries [a, b) over keys [0, b): F(b) - F(a), F
 *    the causal prefill count of lca_plan_cost(3) (the pairs a query sees
 *    depend on its position only);
 *  - deltanet, lightning: its forward F(b - a); its summary unless it is
 *    the last rank (deltanet about F(b - a) (dk + dv) / dv, a forward
 *    with dk + dv value columns, lca_deltanet_summary(3); lightning about
 *    F(b - a)); and the fold of the r summaries before it: r - 1
 *    compositions (deltanet 2 H dk^2 (dk + dv), lightning H (2 dk dv + 1))
 *    and one application (2 H dk^2 dv, lightning 2 H dk dv).
 */
static double rank_flops(lca_variant v, const lca_params *sh, const lca_plan *plan,
	int64_t n, int P, int r)
{
	const int64_t a = n * r / P, b = n * (r + 1) / P;
	const double H = (double)sh->H, dk = (double)sh->dk, dv = (double)sh->dv;
	double f, comp, app;

	if (v == LCA_SOFTMAX || v == LCA_MLA)
		return prefill(plan, b) - prefill(plan, a);
	f = prefill(plan, b - a);
	if (r < P - 1)
		f += v == LCA_DELTANET ? prefill(plan, b - a) * (dk + dv) / dv :
			prefill(plan, b - a);
	comp = v == LCA_DELTANET ? 2 * H * dk * dk * (dk + dv) : H * (2 * dk * dv + 1);
	app = v == LCA_DELTANET ? 2 * H * dk * dk * dv : 2 * H * dk * dv;
	if (r > 0)
		f += (r - 1) * comp + app;
	return f;
}

/* Sequential message rounds of one layer: the ring's P - 1 shifts, or
 * one all-gather of the summaries (ceil(log2 P) rounds, recursive
 * doubling), plus the four small all-gathers every call makes (header
 * and status votes). */
static double rounds(lca_variant v, int P)
{
	int lg = ceil_log2(P);

	return (v == LCA_SOFTMAX || v == LCA_MLA ? P - 1 : lg) + 4.0 * lg;
}

/* One row: the preset at n over P ranks. */
static int row(FILE *f, const struct tool_preset *pr, int64_t n, int P, double gflops)
{
	const size_t len = strlen(pr->pattern);
	double nl[4] = { 0, 0, 0, 0 }, steps = 0, maxf = 0, maxb = 0;
	lca_plan *plan[4] = { NULL, NULL, NULL, NULL };
	int rc = 0;

	/* layers of each variant, and a plan of each variant's shape */
	for (int64_t l = 0; l < pr->layers; l++) {
		lca_variant v;

		if (tool_layer_variant(pr->pattern[l % (int64_t)len], &v))
			return -1;
		nl[v] += 1;
	}
	for (int v = 0; v < 4 && !rc; v++)
		if (nl[v] > 0) {
			rc = tool_shape_plan((lca_variant)v, shape_of(pr, (lca_variant)v),
				LCA_BACKEND_REF, LCA_F64, &plan[v]) != LCA_OK;
			steps += nl[v] * rounds((lca_variant)v, P);
		}
	for (int r = 0; r < P && !rc; r++) {
		double fl = 0, by = tool_preset_rank_bytes(pr, n, P, r, 0);

		for (int v = 0; v < 4; v++)
			if (nl[v] > 0)
				fl += nl[v] * rank_flops((lca_variant)v, shape_of(pr, (lca_variant)v),
					plan[v], n, P, r);
		maxf = fl > maxf ? fl : maxf;
		maxb = by > maxb ? by : maxb;
	}
	if (!rc) {
		double tc = maxf / (gflops * 1e9), tn = maxb / LINK_BYTES_S + steps * LINK_ROUND_S;

		fprintf(f, "| %s | %lld | %d | %.3g GiB | %.0f | %.3g | %.3g | %.3g | %.2g | %.2g |\n",
			pr->name, (long long)n, P, maxb / 1073741824.0, steps, maxf, tc, tn, tn / tc,
			tn / (maxf / ACCEL_FLOPS));
	}
	for (int v = 0; v < 4; v++)
		lca_plan_destroy(plan[v]);
	return rc ? -1 : 0;
}

void tool_report_ranks(FILE *f, double gflops)
{
	fprintf(f, "## Beyond one machine: context parallelism (modelled)\n\n"
		"One sequence of n tokens in a causal prefill, split over P ranks in contiguous runs "
		"as liblcattn_mpi runs it (lcattn(7), lca_mpi_softmax_forward(3)), every layer of the "
		"preset. **Sends**: the bytes the busiest rank sends, bf16, summed over the layers: "
		"rank r of a softmax or mla layer passes on every earlier key block, end_r x Hkv (dk + dv) "
		"x 2 bytes (mla: end_r (dc + dr) x 2), end_r = n (r + 1) / P, nothing from the last rank; "
		"deltanet and lightning all-gather one summary per rank, (P - 1) H dk (dk + dv) x 2 and "
		"(P - 1) H (1 + dk dv) x 2 (the formulas of `lcattn cost --ranks`). **Rounds**: "
		"sequential message rounds over the layers: a ring's P - 1 shifts or an all-gather's "
		"ceil(log2 P), plus 4 ceil(log2 P) for the call's header and status votes. **FLOPs**: "
		"the busiest rank's, from lca_plan_cost(3): a softmax or mla rank's queries [a, b) over "
		"keys [0, b) cost F(b) - F(a), F the causal prefill count (the last rank is the "
		"busiest: about 2/P of the work, not 1/P, which the zigzag layout evens out; "
		"`lcattn cost --ranks P --zigzag` gives its bytes); a "
		"deltanet or lightning rank runs F(b - a), its summary (deltanet about F(b - a) "
		"(dk + dv) / dv, lightning about F(b - a)) and folds the summaries before it (r - 1 "
		"compositions of 2 H dk^2 (dk + dv), lightning H (2 dk dv + 1), and one application). "
		"**Times**: compute at the compute peak measured above (%.1f GFLOP/s, this machine's, "
		"all its threads), transfers over a stated, not measured, link: %.0f GB/s a rank "
		"(200 Gb/s InfiniBand HDR) and %.0f us a round; the last column puts the compute at a "
		"stated 1 PFLOP/s (about one H100's dense bf16 peak). The ring overlaps each block's transfer "
		"with the compute on it, so comm / compute below 1 means the transfers can hide; the "
		"summaries' all-gather cannot overlap (each rank needs them before its forward).\n\n",
		gflops, LINK_BYTES_S / 1e9, LINK_ROUND_S * 1e6);
	fprintf(f, "| preset | n | ranks | busiest rank sends | rounds | busiest rank FLOPs "
		"| compute s | comm s | comm / compute | at 1 PFLOP/s |\n"
		"|---|---|---|---|---|---|---|---|---|---|\n");
	for (int i = 0; i < tool_npresets; i++)
		for (int j = 0; j < 2; j++)
			for (int k = 0; k < 3; k++)
				if (row(f, &tool_presets[i], report_ns[j], report_ranks[k], gflops))
					fprintf(f, "| %s | %lld | %d | - | - | - | - | - | - | - |\n",
						tool_presets[i].name, (long long)report_ns[j], report_ranks[k]);
	fprintf(f, "\nThe linear mechanisms' bytes grow with P, not n: every rank receives all P "
		"summaries (an exclusive prefix scan would need log2 P of them), so at 512 ranks "
		"the deltanet and lightning layers send more than the softmax layers of the same "
		"hybrid.\n\nWhat the model leaves out: the keys' RoPE each rank redoes on the blocks it "
		"receives, the MPI library's own routing of the all-gathers, and any contention on the "
		"network; a real machine's compute rate is its accelerator's, so the ratio scales "
		"with it (a GPU 100x this CPU makes every transfer 100x harder to hide).\n\n");
}
