/*
 * layout.c - where the tokens of a batch lie: the zigzag split, the
 * sequences' boundaries, and the pieces (a rank's run cut at them) that
 * the algorithms walk. Every rank works this out from the same agreed
 * words, so all ranks see the same layout without sending it.
 */
#include "cp.h"

#include <stdlib.h>
#include <string.h>

int64_t lcai_cp_frac(int64_t T, int64_t c, int64_t n)
{
	/* T = q n + m: T c / n = q c + m c / n, and m c < n^2 fits 64 bits
	 * unsigned for any n of int's range (n = 2P < 2^32). */
	int64_t q = T / n, m = T % n;

	return q * c + (int64_t)((uint64_t)m * (uint64_t)c / (uint64_t)n);
}

int lcai_cp_zigzag_runs(int64_t T, int P, int r, int64_t g[2], int64_t n[2])
{
	const int64_t c = 2 * (int64_t)P;
	int64_t a0 = lcai_cp_frac(T, r, c), a1 = lcai_cp_frac(T, r + 1, c);
	int64_t b0 = lcai_cp_frac(T, c - 1 - r, c), b1 = lcai_cp_frac(T, c - r, c);
	int k = 0;

	/* rank P - 1 holds chunks P - 1 and P, which touch: one run */
	if (a1 == b0) {
		a1 = b1;
		b0 = b1;
	}
	if (a1 > a0) {
		g[k] = a0;
		n[k++] = a1 - a0;
	}
	if (b1 > b0) {
		g[k] = b0;
		n[k++] = b1 - b0;
	}
	return k;
}

int64_t lcai_cp_cu_hash(const int64_t *cu, int64_t nseq)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (int64_t i = 0; i <= nseq; i++) {
		uint64_t x = (uint64_t)cu[i];

		for (int b = 0; b < 8; b++) {
			h ^= (x >> (8 * b)) & 0xff;
			h *= 0x100000001b3ull;
		}
	}
	return (int64_t)h;
}

int64_t lcai_cp_seq_of(const int64_t *cu, int64_t nseq, int64_t t)
{
	int64_t lo = 0, hi = nseq - 1;

	/* the last s with cu[s] <= t: past the empty sequences at t */
	while (lo < hi) {
		int64_t mid = lo + (hi - lo + 1) / 2;

		if (cu[mid] <= t)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* The pieces of one run, written to out unless NULL; returns their number. */
static int64_t cut(const struct lcai_cp_view *vw, const struct lcai_cp_span *sp, int rank,
	struct lcai_cp_piece *out)
{
	int64_t k = 0, end = sp->g + sp->n;

	if (sp->n == 0)
		return 0;
	for (int64_t s = lcai_cp_seq_of(vw->cu, vw->nseq, sp->g);
	     s < vw->nseq && vw->cu[s] < end; s++) {
		int64_t a = vw->cu[s] > sp->g ? vw->cu[s] : sp->g;
		int64_t b = vw->cu[s + 1] < end ? vw->cu[s + 1] : end;

		if (b <= a)
			continue; /* an empty sequence */
		if (out)
			out[k] = (struct lcai_cp_piece){ a, b - a, sp->row + (a - sp->g), s,
				a - vw->cu[s], rank };
		k++;
	}
	return k;
}

struct order {
	int64_t g;
	int slot;
};

static int by_g(const void *x, const void *y)
{
	const struct order *a = x, *b = y;

	return (a->g > b->g) - (a->g < b->g);
}

int lcai_cp_view_layout(struct lcai_cp_view *vw, const int64_t *start)
{
	const int P = vw->P, nr = vw->nr, ns = P * nr;
	struct order *ord = malloc((size_t)ns * sizeof *ord);
	int64_t npc = 0, k = 0, *fill;

	vw->run = calloc((size_t)ns, sizeof *vw->run);
	vw->rpc0 = calloc((size_t)P + 1, sizeof *vw->rpc0);
	if (!ord || !vw->run || !vw->rpc0) {
		free(ord);
		return -1;
	}
	for (int j = 0; j < P; j++) {
		struct lcai_cp_span *sp = vw->run + (size_t)j * nr;

		if (nr == 2) {
			int64_t g[2], n[2], row = 0;
			int m = lcai_cp_zigzag_runs(vw->T, P, j, g, n);

			for (int i = 0; i < m; i++) {
				sp[i] = (struct lcai_cp_span){ g[i], n[i], row };
				row += n[i];
			}
		} else {
			sp[0] = (struct lcai_cp_span){ start[j], vw->len[j], 0 };
		}
	}
	for (int i = 0; i < ns; i++) {
		ord[i] = (struct order){ vw->run[i].g, i };
		npc += cut(vw, &vw->run[i], i / nr, NULL);
	}
	/* runs are disjoint and cover [0, T): in order of g, their pieces are
	 * the batch's tokens in order */
	qsort(ord, (size_t)ns, sizeof *ord, by_g);
	vw->pc = malloc((size_t)(npc ? npc : 1) * sizeof *vw->pc);
	vw->rpc = malloc((size_t)(npc ? npc : 1) * sizeof *vw->rpc);
	fill = calloc((size_t)P, sizeof *fill);
	if (!vw->pc || !vw->rpc || !fill) {
		free(ord);
		free(fill);
		return -1;
	}
	for (int i = 0; i < ns; i++)
		k += cut(vw, &vw->run[ord[i].slot], ord[i].slot / nr, vw->pc + k);
	vw->npc = npc;
	/* each rank's pieces in global order are in its row order (its first
	 * run lies before its second) */
	for (int64_t i = 0; i < npc; i++)
		vw->rpc0[vw->pc[i].rank + 1]++;
	for (int j = 0; j < P; j++)
		vw->rpc0[j + 1] += vw->rpc0[j];
	for (int64_t i = 0; i < npc; i++) {
		int j = vw->pc[i].rank;

		vw->rpc[vw->rpc0[j] + fill[j]++] = i;
	}
	free(ord);
	free(fill);
	return 0;
}
