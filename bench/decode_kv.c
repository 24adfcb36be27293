/*
 * decode_kv.c - one decode step (one query, as lca_*_step makes it) over
 * n cached tokens, read by the cpu decode kernels (lib/cpu/decode.c) from
 * each storage a cache can have (struct lcai_kv):
 *   f32        contiguous, the plan's dtype (the baseline)
 *   f32 paged  the same tokens in pages of LCA_CACHE_PAGE tokens placed
 *              by a shuffled page table
 *   bf16       stored as bf16 (f32 plan: widened on load), contiguous
 *   bf16 paged both
 * The kernels are internal, so this program links the static archive and
 * calls them directly: it runs before the cache API offers these layouts.
 *
 * Bytes read per step = n x per-token bytes of the storage type:
 *   softmax  Hkv (dk + dv) x esize     mla  (dc + dr) x esize
 * with esize 4 (f32) or 2 (bf16); the query, weights and outputs are
 * noise beside them at these n. tokens/s = n / step time. The layouts
 * run in interleaved rounds (one step of each per round, so a busy
 * machine slows them alike) and each reports its median; the ratios are
 * of tokens/s against f32 contiguous, measured in the same run.
 *
 * Usage: bench/decode_kv [n ...] (default 32768 65536); environment
 * LCA_CPU_ISA caps the kernels' ISA, LCA_BENCH_REPS the rounds (15).
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NLAY 4

static const char *const lay_name[NLAY] = {
	"f32", "f32 paged", "bf16", "bf16 paged",
};

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float uniform(float lo, float hi)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return lo + (hi - lo) * (float)((double)(rng >> 11) * 0x1p-53);
}

static uint16_t bf16_of(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof u);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

/* n values in [lo, hi) as f32, or as bf16 bits; NULL if out of memory. */
static void *fill(int64_t n, int bf, float lo, float hi)
{
	char *x = malloc((size_t)(n > 0 ? n : 1) * (bf ? 2 : 4));

	for (int64_t i = 0; x && i < n; i++) {
		float f = uniform(lo, hi);

		if (bf)
			((uint16_t *)x)[i] = bf16_of(f);
		else
			((float *)x)[i] = f;
	}
	return x;
}

/* The cached tokens of one layout and the kv that points at them. */
struct store {
	void *buf[2];
	char *pool;
	int32_t *pt;
	struct lcai_kv kv;
};

/* Layout l of n tokens with rows row[0], row[1]; 0 if out of memory. */
static int store_make(struct store *s, int l, int64_t n, const int64_t row[2])
{
	const int bf = l >= 2, paged = l % 2;
	const size_t es = bf ? 2 : 4;
	const int64_t npg = (n + LCA_CACHE_PAGE - 1) / LCA_CACHE_PAGE;
	const size_t pb = (size_t)(LCA_CACHE_PAGE * (row[0] + row[1])) * es;

	memset(s, 0, sizeof *s);
	for (int j = 0; j < 2; j++)
		if (!(s->buf[j] = fill(n * row[j], bf, -1, 1)))
			return 0;
	s->kv = (struct lcai_kv){ bf ? LCA_BF16 : LCA_F32, { row[0], row[1] },
		{ s->buf[0], s->buf[1] }, NULL, NULL, 0, { 0, 0 } };
	if (!paged)
		return 1;
	if (!(s->pool = malloc((size_t)npg * pb)) ||
	    !(s->pt = malloc((size_t)npg * sizeof *s->pt)))
		return 0;
	for (int64_t i = 0; i < npg; i++)
		s->pt[i] = (int32_t)i;
	for (int64_t i = npg - 1; i > 0; i--) {
		int64_t k = (int64_t)(uniform(0, 1) * (float)(i + 1));
		int32_t x;

		k = k > i ? i : k;
		x = s->pt[i];
		s->pt[i] = s->pt[k];
		s->pt[k] = x;
	}
	s->kv.buf[0] = s->kv.buf[1] = NULL;
	s->kv.pool = s->pool;
	s->kv.pt = s->pt;
	s->kv.page_bytes = pb;
	s->kv.off[1] = (size_t)(LCA_CACHE_PAGE * row[0]) * es;
	for (int j = 0; j < 2; j++)
		for (int64_t t = 0; t < n; t++)
			memcpy(s->pool + (size_t)s->pt[t / LCA_CACHE_PAGE] * pb + s->kv.off[j] +
				(size_t)((t % LCA_CACHE_PAGE) * row[j]) * es,
				(const char *)s->buf[j] + (size_t)(t * row[j]) * es,
				(size_t)row[j] * es);
	free(s->buf[0]);
	free(s->buf[1]);
	s->buf[0] = s->buf[1] = NULL;
	return 1;
}

static void store_free(struct store *s)
{
	free(s->buf[0]);
	free(s->buf[1]);
	free(s->pool);
	free(s->pt);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* One mechanism at n tokens: every layout, interleaved rounds. */
static int run(const lca_params *p, int64_t n, int reps)
{
	const int mla = p->variant == LCA_MLA;
	const int64_t row[2] = { mla ? p->dc : p->Hkv * p->dk,
		mla ? p->dr : p->Hkv * p->dv };
	const int64_t H = p->H, dq = mla ? p->dn : p->dk;
	float *q = fill(H * dq, 0, -1, 1), *qr = fill(H * p->dr, 0, -1, 1);
	float *wuk = fill(mla ? H * p->dn * p->dc : 0, 0, -0.05f, 0.05f);
	float *wuv = fill(mla ? H * p->dv * p->dc : 0, 0, -0.05f, 0.05f);
	float *o = fill(H * p->dv, 0, 0, 0), *lse = fill(H, 0, 0, 0);
	struct store st[NLAY];
	double *t = malloc((size_t)(NLAY * reps) * sizeof *t), med[NLAY];
	int ok = q && qr && wuk && wuv && o && lse && t;

	for (int l = 0; l < NLAY; l++)
		ok = store_make(&st[l], l, n, row) && ok;
	for (int r = -1; ok && r < reps; r++)
		for (int l = 0; ok && l < NLAY; l++) {
			double t0 = now();
			const struct lcai_dec_seq x = { 1, n, st[l].kv, q, qr, o, lse };
			lca_status s = mla ? lcai_cpu_mla_decode(p, 1, &x, wuk, wuv) :
				lcai_cpu_softmax_decode(p, 1, &x);

			if (s != LCA_OK) {
				fprintf(stderr, "decode_kv: %s\n", lca_last_error());
				ok = 0;
			}
			if (r >= 0) /* round -1 warms every layout */
				t[l * reps + r] = now() - t0;
		}
	for (int l = 0; ok && l < NLAY; l++) {
		const double bytes = (double)n * (double)(row[0] + row[1]) * (l >= 2 ? 2 : 4);

		qsort(t + l * reps, (size_t)reps, sizeof *t, cmp);
		med[l] = t[l * reps + reps / 2];
		printf("%-8s %7lld  %-10s %9.3f  %9.2f  %7.1f  %6.2fx\n",
			mla ? "mla" : "softmax", (long long)n, lay_name[l], 1e3 * med[l],
			(double)n / med[l] / 1e6, bytes / med[l] / 1e9, med[0] / med[l]);
	}
	for (int l = 0; l < NLAY; l++)
		store_free(&st[l]);
	free(q);
	free(qr);
	free(wuk);
	free(wuv);
	free(o);
	free(lse);
	free(t);
	if (!ok)
		fprintf(stderr, "decode_kv: no memory or a failed step at n = %lld\n",
			(long long)n);
	return ok;
}

static int plan_params(lca_variant v, lca_params *out)
{
	lca_params p;
	lca_plan *plan;

	lca_params_init(&p, v);
	p.backend = LCA_BACKEND_CPU;
	p.dtype = LCA_F32;
	p.H = 8;
	p.dv = 128;
	if (v == LCA_SOFTMAX) {
		p.Hkv = 8;
		p.dk = 128;
	} else {
		p.dn = 128;
		p.dr = 64;
		p.dc = 512;
		p.scale = 1.0 / sqrt(192.0);
		p.algo = LCA_ALGO_ABSORBED;
	}
	if (lca_plan_create(&p, &plan) != LCA_OK) {
		fprintf(stderr, "decode_kv: %s\n", lca_last_error());
		return 0;
	}
	*out = ((const struct lca_plan *)plan)->p;
	lca_plan_destroy(plan);
	return 1;
}

int main(int argc, char **argv)
{
	const char *e = getenv("LCA_BENCH_REPS");
	const int reps = e && atoi(e) > 0 ? atoi(e) : 15;
	int64_t ns[16] = { 32768, 65536 };
	int nn = 2;
	lca_params p[2];

	if (argc > 1)
		for (nn = 0; nn + 1 < argc && nn < 16; nn++)
			ns[nn] = atoll(argv[nn + 1]);
	if (!plan_params(LCA_SOFTMAX, &p[0]) || !plan_params(LCA_MLA, &p[1]))
		return 1;
	printf("cpu decode, one query over n cached tokens, f32 plan; isa: %s; "
		"median of %d interleaved rounds\n", lca_cpu_isa(), reps);
	printf("softmax H 8 Hkv 8 dk dv 128: bytes/token Hkv (dk + dv) esize = "
		"8192 (f32), 4096 (bf16)\n");
	printf("mla H 8 dn 128 dr 64 dc 512 dv 128 (absorbed): bytes/token "
		"(dc + dr) esize = 2304 (f32), 1152 (bf16)\n");
	printf("%-8s %7s  %-10s %9s  %9s  %7s  %7s\n", "mech", "n", "storage",
		"ms/step", "Mtok/s", "GB/s", "tok/s vs f32");
	for (int v = 0; v < 2; v++)
		for (int i = 0; i < nn; i++)
			if (!run(&p[v], ns[i], reps))
				return 1;
	return 0;
}
