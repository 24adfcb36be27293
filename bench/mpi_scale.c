/*
 * mpi_scale.c - time liblcattn_mpi's forward calls on the ranks this
 * program runs on (bench/mpi-scale.sh runs it at -np 1 and -np 2 and
 * prints the speedup). One causal prefill of T tokens per mechanism, f32,
 * the cpu backend, one thread a rank (nthreads = 1), contiguous runs.
 *
 * A call's time is the slowest rank's, from a barrier before it to the
 * barrier after it (MPI_Wtime), the median of REPS calls after one
 * warm-up. FLOPs are lca_plan_cost(3)'s count of the whole single-process
 * prefill (so GFLOP/s at P ranks is the sequence's rate, not a rank's);
 * "ideal" is the speedup the busiest rank allows by the same count:
 * F(T) / max over ranks of the rank's share, summed over its runs [a, b)
 * (softmax, mla: the run's queries over keys [0, b), F(b) - F(a);
 * deltanet, lightning: its forward F(b - a) plus, on every rank but the
 * last, its summary, about F(b - a) (dk + dv) / dv for deltanet,
 * F(b - a) for lightning, the fold not counted).
 *
 * usage: mpi_scale [--zigzag] [softmax|mla|deltanet|lightning T]...
 * (T 0: the default)
 * Prints one line a mechanism on rank 0:
 *   mech[-zz] T P seconds gflops ideal bytes_sent_rank0 isa cpu_share
 * cpu_share: the least, over the ranks, of the CPU time a rank's process
 * got during its calls over their wall time: below 1 when other programs
 * took the cores (the development machine is shared).
 */
#include <lcattn_mpi.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { REPS = 3, NMECH = 4 };

static const char *const names[NMECH] = { "softmax", "mla", "deltanet", "lightning" };
/* Defaults: 0.5 to 1 s a call on one core of the development machine
 * (AVX-512, f32). */
static int64_t Ts[NMECH] = { 5120, 4096, 32768, 8192 };
static int zigzag;

/* Rank r's layout of T tokens and its runs g[k] .. g[k] + n[k] - 1. */
static lca_status layout(int64_t T, int P, int r, lca_mpi_layout *lay, int64_t g[2],
	int64_t n[2])
{
	int nr;
	lca_status s = zigzag ? lca_mpi_layout_zigzag(T, P, r, lay) :
		lca_mpi_layout_contiguous(T, P, r, lay);

	return s == LCA_OK ? lca_mpi_layout_runs(lay, P, r, g, n, &nr) : s;
}

static lca_params shape(lca_variant v)
{
	lca_params p;

	lca_params_init(&p, v);
	p.backend = LCA_BACKEND_CPU;
	p.dtype = LCA_F32;
	p.nthreads = 1;
	p.H = 8;
	p.dv = 128;
	if (v == LCA_MLA) {
		p.dn = 128;
		p.dr = 64;
		p.dc = 512;
		p.scale = 1 / sqrt(192.0);
	} else {
		p.dk = 128;
	}
	if (v == LCA_SOFTMAX)
		p.Hkv = 8;
	if (v == LCA_DELTANET)
		p.Hk = 8;
	return p;
}

/* n floats uniform in [lo, hi), the same on every rank (a fixed LCG). */
static float *fill(int64_t n, double lo, double hi, uint64_t seed)
{
	float *x = malloc((size_t)(n ? n : 1) * sizeof *x);

	for (int64_t i = 0; x && i < n; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		x[i] = (float)(lo + (hi - lo) * (double)(seed >> 11) / 9007199254740992.0);
	}
	return x;
}

static double prefill(const lca_plan *plan, int64_t m)
{
	lca_cost c;

	return m > 0 && lca_plan_cost(plan, LCA_PHASE_PREFILL, m, &c) == LCA_OK ? c.flops : 0;
}

static double ideal(lca_variant v, const lca_params *p, const lca_plan *plan, int64_t T,
	int P)
{
	double worst = 0;

	for (int r = 0; r < P; r++) {
		lca_mpi_layout lay;
		int64_t g[2], n[2];
		double f = 0;

		if (layout(T, P, r, &lay, g, n) != LCA_OK)
			return NAN;
		for (int k = 0; k < 2; k++) {
			if (n[k] == 0)
				continue;
			if (v <= LCA_MLA) {
				f += prefill(plan, g[k] + n[k]) - prefill(plan, g[k]);
			} else {
				f += prefill(plan, n[k]);
				if (g[k] + n[k] < T)
					f += v == LCA_DELTANET ? prefill(plan, n[k]) *
						(double)(p->dk + p->dv) / (double)p->dv : prefill(plan, n[k]);
			}
		}
		worst = f > worst ? f : worst;
	}
	return prefill(plan, T) / worst;
}

/* Per-token values of each input of v (0: whole-call tensors), in call order. */
static int inputs(lca_variant v, const lca_params *p, int64_t *row, int64_t *fixed)
{
	const int64_t H = p->H, dk = p->dk, dv = p->dv;

	memset(row, 0, 6 * sizeof *row);
	memset(fixed, 0, 6 * sizeof *fixed);
	switch (v) {
	case LCA_SOFTMAX:
		row[0] = H * dk, row[1] = p->Hkv * dk, row[2] = p->Hkv * dv;
		return 3;
	case LCA_MLA:
		row[0] = H * p->dn, row[1] = H * p->dr, row[2] = p->dc, row[3] = p->dr;
		fixed[4] = H * p->dn * p->dc, fixed[5] = H * dv * p->dc;
		return 6;
	case LCA_DELTANET:
		row[0] = p->Hk * dk, row[1] = p->Hk * dk, row[2] = H * dv, row[3] = H, row[4] = H;
		return 5;
	default:
		row[0] = H * dk, row[1] = H * dk, row[2] = H * dv;
		fixed[3] = H;
		return 4;
	}
}

static lca_status call(lca_variant v, const lca_plan *plan, const lca_mpi_layout *lay,
	void *const *x, void *o, void *aux, lca_mpi_stats *st)
{
	switch (v) {
	case LCA_SOFTMAX:
		return lca_mpi_softmax_forward(plan, MPI_COMM_WORLD, lay, x[0], x[1], x[2], o, aux, st);
	case LCA_MLA:
		return lca_mpi_mla_forward(plan, MPI_COMM_WORLD, lay, x[0], x[1], x[2], x[3], x[4],
			x[5], o, aux, st);
	case LCA_DELTANET:
		return lca_mpi_deltanet_forward(plan, MPI_COMM_WORLD, lay, x[0], x[1], x[2], x[3],
			x[4], NULL, o, aux, st);
	default:
		return lca_mpi_lightning_forward(plan, MPI_COMM_WORLD, lay, x[0], x[1], x[2], x[3],
			NULL, o, aux, st);
	}
}

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Time mechanism v at T; 0 or -1 (printed on rank 0). */
static int run(lca_variant v, int64_t T, int rank, int P)
{
	lca_params p = shape(v);
	lca_plan *plan = NULL;
	lca_mpi_layout lay;
	int64_t row[6], fixed[6], g[2] = { 0, 0 }, n[2] = { 0, 0 }, a, len;
	int nin = inputs(v, &p, row, fixed), rc = 0;
	void *x[6] = { 0 }, *o = NULL, *aux = NULL;
	double t[REPS], cpu = 0, wall = 0, share;
	lca_mpi_stats st = { 0, 0 };
	lca_status s = lca_plan_create(&p, &plan);

	if (s == LCA_OK)
		s = layout(T, P, rank, &lay, g, n);
	a = g[0], len = n[0] + n[1];
	/* this rank's rows only (positions are global; the values are drawn,
	 * so a zigzag rank's two chunks need no gathering) */
	for (int i = 0; i < nin && s == LCA_OK; i++) {
		double lo = v == LCA_DELTANET && i == 3 ? -0.3 : v == LCA_DELTANET && i == 4 ?
			0.1 : v == LCA_LIGHTNING && i == 3 ? 0.05 : -1;
		double hi = v == LCA_DELTANET && i == 3 ? 0 : v == LCA_DELTANET && i == 4 ? 1 :
			v == LCA_LIGHTNING && i == 3 ? 0.5 : 1;

		x[i] = fill(row[i] ? row[i] * len : fixed[i], lo, hi, 7 + 31 * (uint64_t)i +
			1000003 * (uint64_t)a);
		if (!x[i])
			s = LCA_ERR_NOMEM;
	}
	o = malloc((size_t)(len * p.H * p.dv + 1) * sizeof(float));
	aux = malloc((size_t)(v <= LCA_MLA ? len * p.H + 1 : p.H * p.dk * p.dv) * sizeof(float));
	if (s == LCA_OK && (!o || !aux))
		s = LCA_ERR_NOMEM;
	for (int k = -1; k < REPS && s == LCA_OK; k++) {
		double t0, c0, dt;

		MPI_Barrier(MPI_COMM_WORLD);
		t0 = MPI_Wtime();
		c0 = cpu_now();
		s = call(v, plan, &lay, x, len ? o : NULL, v <= LCA_MLA && !len ? NULL : aux, &st);
		/* the rank's own call: its CPU share before it waits for the others */
		cpu += cpu_now() - c0;
		wall += MPI_Wtime() - t0;
		MPI_Barrier(MPI_COMM_WORLD);
		dt = MPI_Wtime() - t0;
		MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
		if (k >= 0)
			t[k] = dt;
	}
	share = wall > 0 ? cpu / wall : 0;
	MPI_Allreduce(MPI_IN_PLACE, &share, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
	if (s != LCA_OK) {
		if (rank == 0)
			fprintf(stderr, "mpi_scale: %s T=%lld: %s (%s)\n", names[v], (long long)T,
				lca_strerror(s), lca_mpi_last_error());
		rc = -1;
	} else if (rank == 0) {
		qsort(t, REPS, sizeof *t, cmp);
		printf("%s%s %lld %d %.4f %.2f %.3f %llu %s %.2f\n", names[v], zigzag ? "-zz" : "",
			(long long)T, P,
			t[REPS / 2], prefill(plan, T) / t[REPS / 2] / 1e9, ideal(v, &p, plan, T, P),
			(unsigned long long)st.bytes_sent, lca_cpu_isa(), share);
		fflush(stdout);
	}
	for (int i = 0; i < nin; i++)
		free(x[i]);
	free(o);
	free(aux);
	lca_plan_destroy(plan);
	return rc;
}

int main(int argc, char **argv)
{
	int rank, P, rc = 0, want[NMECH] = { 1, 1, 1, 1 };

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &P);
	if (argc > 1 && !strcmp(argv[1], "--zigzag"))
		zigzag = 1, argc--, argv++;
	if (argc > 1)
		memset(want, 0, sizeof want);
	for (int i = 1; i + 1 < argc; i += 2)
		for (int v = 0; v < NMECH; v++)
			if (!strcmp(argv[i], names[v])) {
				want[v] = 1;
				if (atoll(argv[i + 1]) > 0) /* 0: the default */
					Ts[v] = atoll(argv[i + 1]);
			}
	for (int v = 0; v < NMECH; v++)
		if (want[v] && Ts[v] > 0 && run((lca_variant)v, Ts[v], rank, P))
			rc = 1;
	MPI_Finalize();
	return rc;
}
