/*
 * check_bf16dot.c - the two ways the cpu backend runs a bf16 softmax, each
 * forced and held to the double reference by the bf16 rule of DESIGN.md
 * (2x the error of the float32 reference on the bf16-rounded inputs, its
 * outputs rounded to bf16):
 *
 *   widen  LCA_CPU_ISA=avx512: the inputs widened to float32 copies, the
 *          float32 engine, the outputs rounded (lib/cpu/bf16.c);
 *   dot    LCA_CPU_ISA=avx512bf16: the engine on the bf16 tensors, logits
 *          by AVX-512 BF16 dot products (lib/cpu/flash_bf16.h).
 *
 * The level is decided once per process, so every test sets LCA_CPU_ISA
 * in its own forked process before its first library call and checks
 * that lca_cpu_isa(3) names the path it meant to test. The dot path is
 * skipped, with a line saying so, on a CPU (or build) without AVX-512
 * BF16; under CK_FORK=no only the level the environment gives is run.
 * Shapes: T = 1, T not a multiple of the 64-key tiles, odd dk, dk != dv,
 * GQA and MQA, windows, fully masked rows, varlen batches with empty
 * sequences, large-magnitude q and k (logits in the hundreds), and a RoPE
 * plan (widened on both paths). Then that each path is the one taken: the
 * widen path gives the float32 path's bits rounded, the dot path does not;
 * and that partial attention refuses bf16 on both.
 */
#define CHECK_ON_CPU 1
/* the cases and the tolerance rule of check_cuda.c, whose own tests are
 * not used here */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"
#pragma GCC diagnostic ignored "-Wunused-const-variable"
#include "check_cuda.c"
#pragma GCC diagnostic pop

enum { PATH_WIDEN, PATH_DOT, NPATH };
static const char *const path_isa[NPATH] = { "avx512", "avx512bf16" };

static const int64_t cu_a[] = { 0, 50, 50, 123, 200 };	/* an empty sequence */
static const int64_t cu_b[] = { 0, 0, 64, 65, 200 };	/* empty first, one tile, one key */

static const struct dot_spec {
	const char *what;
	int64_t Tq, Tk, H, Hkv, dk, dv, window, rope_dim;
	int causal;
	double scale, sd;	/* scale 0: 1/sqrt(dk); sd of q and k */
	const int64_t *cu;
	int64_t nseq;
} specs[] = {
	{ "T 1 gqa d64", 1, 1, 4, 2, 64, 64, 0, 0, 1, 0, 1, NULL, 0 },
	{ "decode Tq 1 Tk 300 d128 mqa", 1, 300, 8, 1, 128, 128, 0, 0, 1, 0, 1, NULL, 0 },
	{ "gqa causal T 77 d40/24", 77, 77, 6, 2, 40, 24, 0, 0, 1, 0, 1, NULL, 0 },
	{ "non-causal odd dk 17/9 scale 0.3", 33, 71, 3, 3, 17, 9, 0, 0, 0, 0.3, 1, NULL, 0 },
	{ "dk 3 dv 130 T 65", 65, 65, 2, 1, 3, 130, 0, 0, 1, 0, 1, NULL, 0 },
	{ "dk 256 dv 64 T 130 gqa", 130, 130, 4, 2, 256, 64, 0, 0, 1, 0, 1, NULL, 0 },
	{ "window 37 T 150 mqa d64", 150, 150, 4, 1, 64, 64, 37, 0, 1, 0, 1, NULL, 0 },
	{ "varlen empty seq d48 window 16", 200, 200, 4, 4, 48, 48, 16, 0, 1, 0, 1, cu_a, 4 },
	{ "varlen empty first d128 gqa", 200, 200, 4, 2, 128, 128, 0, 0, 1, 0, 1, cu_b, 4 },
	{ "chunked prefill Tq 45 of Tk 130", 45, 130, 2, 2, 64, 64, 0, 0, 1, 0, 1, NULL, 0 },
	{ "Tq 20 > Tk 7: fully masked rows", 20, 7, 2, 2, 64, 64, 0, 0, 1, 0, 1, NULL, 0 },
	{ "T 600 d128 causal", 600, 600, 2, 1, 128, 128, 0, 0, 1, 0, 1, NULL, 0 },
	{ "large q k (sd 6) d128 causal", 200, 200, 2, 1, 128, 128, 0, 0, 1, 0, 6, NULL, 0 },
	{ "large q k (sd 12) d64 non-causal", 70, 150, 2, 2, 64, 32, 0, 0, 0, 0, 12, NULL, 0 },
	{ "rope 64 d64 gqa (widened)", 100, 100, 4, 2, 64, 64, 0, 64, 1, 0, 1, NULL, 0 },
};
#define N_SPEC ((int)(sizeof specs / sizeof specs[0]))

static void dot_kase(const struct dot_spec *s, struct kase *c)
{
	lca_params p = tu_params(LCA_SOFTMAX);

	memset(c, 0, sizeof *c);
	snprintf(c->what, sizeof c->what, "%s", s->what);
	p.backend = LCA_BACKEND_CPU;
	p.H = s->H;
	p.Hkv = s->Hkv;
	p.dk = s->dk;
	p.dv = s->dv;
	p.causal = s->causal;
	p.window = s->window;
	p.rope_dim = s->rope_dim;
	p.scale = s->scale;
	c->p = p;
	c->Tq = s->Tq;
	c->Tk = s->Tk;
	c->cu = s->cu;
	c->nseq = s->nseq;
	add_in(c, "q", s->Tq * s->H * s->dk, s->sd);
	add_in(c, "k", s->Tk * s->Hkv * s->dk, s->sd);
	add_in(c, "v", s->Tk * s->Hkv * s->dv, 1.0);
	add_out(c, "o", s->Tq * s->H * s->dv, 0);
	add_out(c, "lse", s->Tq * s->H, 0);
}

/* Put this process on path's level; fails if the level was decided
 * before (a test run without fork). */
static void force_path(int path)
{
	const char *got;

	ck_assert_int_eq(setenv("LCA_CPU_ISA", path_isa[path], 1), 0);
	got = lca_cpu_isa();
	if (path == PATH_DOT)
		ck_assert_msg(!strcmp(got, "avx512bf16"), "LCA_CPU_ISA=avx512bf16 runs %s: "
			"the level was decided before this test set it", got);
	else
		ck_assert_msg(strcmp(got, "avx512bf16") != 0, "LCA_CPU_ISA=avx512 runs %s",
			got);
}

/* _i = 2 * spec + path */
START_TEST(bf16_softmax_path_matches_reference)
{
	struct kase c;
	const int path = _i % NPATH;

	force_path(path);
	dot_kase(&specs[_i / NPATH], &c);
	snprintf(c.what, sizeof c.what, "%s [%s]", specs[_i / NPATH].what,
		path == PATH_DOT ? "dot" : "widen");
	compare(&c, LCA_BF16);
	kase_free(&c);
}
END_TEST

/* How many elements of bf16 outputs differ from the float32 path's on the
 * same (widened) inputs, rounded: 0 is the widen path's contract. */
static int64_t differ_from_f32(const struct dot_spec *s)
{
	struct kase c;
	double *rounded[3], *X[2], *F[2];
	int64_t n = 0;

	dot_kase(s, &c);
	for (int i = 0; i < 3; i++) {
		rounded[i] = tu_alloc(c.in[i].n);
		for (int64_t e = 0; e < c.in[i].n; e++)
			rounded[i][e] = round_to(c.in[i].x[e], LCA_BF16);
	}
	for (int k = 0; k < 2; k++) {
		X[k] = tu_alloc(c.out[k].n);
		F[k] = tu_alloc(c.out[k].n);
	}
	run(&c, LCA_BACKEND_CPU, LCA_BF16, rounded, X);
	run(&c, LCA_BACKEND_CPU, LCA_F32, rounded, F);
	for (int k = 0; k < 2; k++)
		for (int64_t e = 0; e < c.out[k].n; e++)
			n += X[k][e] != round_to(F[k][e], LCA_BF16);
	for (int i = 0; i < 3; i++)
		free(rounded[i]);
	for (int k = 0; k < 2; k++) {
		free(X[k]);
		free(F[k]);
	}
	kase_free(&c);
	return n;
}

/* The widen path is the float32 path on the widened inputs, to the bit. */
START_TEST(widen_path_is_f32_rounded)
{
	force_path(PATH_WIDEN);
	ck_assert_int_eq(differ_from_f32(&specs[11]), 0);
}
END_TEST

/* The dot path sums the logits' products in pairs, so some outputs of a
 * 600-token d = 128 call round differently than the float32 path's: the
 * path really ran. A RoPE plan stays on the widen path, bit for bit. */
START_TEST(dot_path_is_taken_without_rope_only)
{
	int64_t n;

	force_path(PATH_DOT);
	n = differ_from_f32(&specs[11]);
	printf("dot path: %lld of %lld outputs differ from the float32 path's\n",
		(long long)n, (long long)(600 * 2 * 129));
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(differ_from_f32(&specs[N_SPEC - 1]), 0);
}
END_TEST

/* Partial attention (context parallelism) is not offered in bf16 on the
 * cpu backend, on either path: refused before any output is written (it
 * once ran the float64 engine on bf16 buffers). */
START_TEST(bf16_partial_is_unsupported)
{
	struct kase c;
	lca_plan *plan;
	void *in[6];
	uint16_t *o, *lse;
	int path = _i % NPATH;
	lca_variant var = _i / NPATH ? LCA_MLA : LCA_SOFTMAX;

	force_path(path);
	if (var == LCA_SOFTMAX) {
		dot_kase(&specs[2], &c);
	} else {
		lca_params p = tu_params(LCA_MLA);

		memset(&c, 0, sizeof c);
		p.backend = LCA_BACKEND_CPU;
		p.H = 2;
		p.dn = 16;
		p.dr = 8;
		p.dc = 32;
		p.dv = 8;
		p.scale = 0.2;
		c.p = p;
		c.Tq = c.Tk = 10;
		add_in(&c, "q_nope", 10 * 2 * 16, 1.0);
		add_in(&c, "q_rope", 10 * 2 * 8, 1.0);
		add_in(&c, "ckv", 10 * 32, 1.0);
		add_in(&c, "k_rope", 10 * 8, 1.0);
		add_in(&c, "w_uk", 2 * 16 * 32, 0.2);
		add_in(&c, "w_uv", 2 * 8 * 32, 0.2);
		add_out(&c, "o", 10 * 2 * 8, 0);
		add_out(&c, "lse", 10 * 2, 0);
	}
	c.p.dtype = LCA_BF16;
	plan = tu_plan(&c.p);
	for (int i = 0; i < c.nin; i++)
		in[i] = host_cast(c.in[i].x, c.in[i].n, LCA_BF16);
	o = malloc((size_t)c.out[0].n * 2);
	lse = malloc((size_t)c.out[1].n * 2);
	ck_assert(o && lse);
	memset(o, 0x5a, (size_t)c.out[0].n * 2);
	memset(lse, 0x5a, (size_t)c.out[1].n * 2);
	if (var == LCA_SOFTMAX)
		ck_assert_int_eq(lca_softmax_partial(plan, c.Tq, c.Tk - c.Tq, c.Tk, 0,
			in[0], in[1], in[2], o, lse), LCA_ERR_UNSUPPORTED);
	else
		ck_assert_int_eq(lca_mla_partial(plan, c.Tq, 0, c.Tk, 0, in[0], in[1],
			in[2], in[3], in[4], in[5], o, lse), LCA_ERR_UNSUPPORTED);
	ck_assert_msg(strstr(lca_last_error(), "bf16") != NULL, "message: %s",
		lca_last_error());
	for (int64_t e = 0; e < c.out[0].n; e++)
		ck_assert_uint_eq(o[e], 0x5a5a);
	for (int64_t e = 0; e < c.out[1].n; e++)
		ck_assert_uint_eq(lse[e], 0x5a5a);
	for (int i = 0; i < c.nin; i++)
		free(in[i]);
	free(o);
	free(lse);
	lca_plan_destroy(plan);
	kase_free(&c);
}
END_TEST

/* Is the dot path available? Asked in a child, so that this process never
 * decides its level. */
static int dot_available(void)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return 0;
	if (pid == 0) {
		unsetenv("LCA_CPU_ISA");
		_exit(strcmp(lca_cpu_isa(), "avx512bf16") == 0 ? 0 : 1);
	}
	if (waitpid(pid, &st, 0) < 0)
		return 0;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

int main(void)
{
	const char *fork_env = getenv("CK_FORK");
	int nofork = fork_env && !strcmp(fork_env, "no");
	int dot = dot_available(), paths[NPATH], np = 0;
	Suite *s;
	TCase *tc;

	tu_init();
	s = suite_create("bf16dot");
	tc = tu_tcase("paths");
	tcase_set_timeout(tc, 300);
	if (nofork) {
		/* one process, one level: the one the environment gives */
		const char *env = getenv("LCA_CPU_ISA");

		printf("CK_FORK=no: only the %s path is run\n",
			dot && !(env && strcmp(env, "avx512bf16")) ? "dot" : "widen");
		paths[np++] = dot && !(env && strcmp(env, "avx512bf16")) ? PATH_DOT : PATH_WIDEN;
	} else {
		paths[np++] = PATH_WIDEN;
		if (dot)
			paths[np++] = PATH_DOT;
	}
	if (!dot)
		printf("skip: the dot path (this CPU or build lacks AVX-512 BF16); "
			"the widen path is checked\n");
	for (int i = 0; i < np; i++)
		for (int k = 0; k < N_SPEC; k++)
			tcase_add_loop_test(tc, bf16_softmax_path_matches_reference,
				NPATH * k + paths[i], NPATH * k + paths[i] + 1);
	for (int i = 0; i < np; i++)
		tcase_add_test(tc, paths[i] == PATH_DOT ? dot_path_is_taken_without_rope_only :
			widen_path_is_f32_rounded);
	for (int i = 0; i < np; i++)
		for (int v = 0; v < 2; v++)
			tcase_add_loop_test(tc, bf16_partial_is_unsupported,
				NPATH * v + paths[i], NPATH * v + paths[i] + 1);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
