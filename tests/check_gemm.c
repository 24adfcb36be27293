/*
 * check_gemm.c - the float32 GEMM that deltanet and lightning run inside
 * their parallel regions (lcai_cpu_gemm_f32 with serial_blas set: our
 * own kernels at the AVX2 and AVX-512 levels, lib/cpu/gemm_small.c, and
 * BLAS pieces at SSE), against a double-precision product, at every ISA
 * level this CPU runs.
 *
 * The call is internal (hidden in the shared library), so this test links
 * the static archive, as check_decode_kv does. The level is decided once
 * per process, so every test sets LCA_CPU_ISA itself before its first
 * call into the library (Check forks one process per test); under
 * CK_FORK=no only the environment's level is run.
 *
 * Each product uses all four transposes, lda, ldb and ldc wider than
 * needed with NaN in the gaps of A and B (a read past the matrix would
 * show) and a sentinel in the gaps of C (a write past it would), alpha in
 * {1, -0.5} and beta in {0 over a C full of NaN, 1, 0.25}.
 *
 * The error bound, per entry of C (u = 2^-24, the unit roundoff of
 * float32, and eps = FLT_EPSILON = 2u): the exact value is alpha s + beta
 * c0 with s = sum_p a_ip b_pj over the float inputs (the reference forms
 * it in double from the same floats: its own error, about k 2^-53 of
 * sum |a||b|, is far below what is allowed here). Any order of the k
 * products and sums, fused or not, and however cut along k, computes s
 * with an error of at most gamma_k sum |a||b|, gamma_k = k u / (1 - k u)
 * (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., eq.
 * 3.5); alpha = 1 or -0.5 scales exactly, and beta c0 and the last sum
 * add at most two more roundings, of at most u each relative to
 * |alpha| sum |a||b| + |beta c0| (beta = 0.25 and 1 scale exactly). So
 *   |err| <= gamma_{k+2} (|alpha| sum |a||b| + |beta c0|)
 *         <= (k + 2) eps (|alpha| sum |a||b| + |beta c0|),
 * the last step because (k + 2) u <= 1/2 for every k here. A missing or
 * doubled term, a wrong row or column, or a stale C all break it by
 * orders of magnitude.
 *
 * The transposes beside the product (lcai_cpu_transpose_f32 and _bf16,
 * vector blocks of 8 x 8 at AVX2 and AVX-512, gemm.c) only move values:
 * every element of dst must have the bits of its source element (bf16:
 * the bits shifted into a float's high half), for sizes on and off the
 * block (1, 7, 8, 9, 15, 16, 17, 40, 65 rows and columns, and random),
 * a leading dimension wider than a row, and nothing written past dst.
 */
#include "gemm.h"
#include "testutil.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The levels, as LCA_CPU_ISA names them. */
static const char *const levels[] = { "sse", "avx2", "avx512" };
#define NLEVEL 3
/* Set by main under CK_FORK=no: keep the environment's level. */
static int keep_level;

static const CBLAS_TRANSPOSE trans[2] = { CblasNoTrans, CblasTrans };
static const float alphas[] = { 1.0f, -0.5f };
static const float betas[] = { 0.0f, 1.0f, 0.25f };

/* Sentinel in the gaps of C: a finite value no product writes. */
#define SENTINEL 12345.0f

/* Put this process on level L (the CPU may cap it lower); returns the
 * level the library runs. */
static const char *use_level(int L)
{
	if (!keep_level)
		ck_assert_int_eq(setenv("LCA_CPU_ISA", levels[L], 1), 0);
	return lca_cpu_isa();
}

/* Does this level run our kernels (rather than BLAS)? */
static int level_has_kernels(const char *isa)
{
	return !strcmp(isa, "avx2") || !strcmp(isa, "avx512") ||
		!strcmp(isa, "avx512bf16");
}

static float *falloc(int64_t n)
{
	float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);

	ck_assert_ptr_nonnull(x);
	return x;
}

/* rows x cols in a [rows][ld] array, gaps NaN. */
static float *random_matrix(int64_t rows, int64_t cols, int64_t ld)
{
	float *x = falloc(rows * ld);

	for (int64_t i = 0; i < rows; i++)
		for (int64_t j = 0; j < ld; j++)
			x[i * ld + j] = j < cols ? (float)tu_normal() : NAN;
	return x;
}

/* One product: the stored matrices and how to read them. */
struct prod {
	int ta, tb;
	int64_t m, n, k, lda, ldb, ldc;
	float alpha, beta;
	float *A, *B, *C, *C0;
};

/* The exact C[i][j] (in double, from the float inputs) into *want, and
 * |alpha| sum_p |a_ip b_pj| + |beta c0| into *mag. */
static void exact_entry(const struct prod *x, int64_t i, int64_t j,
	double *want, double *mag)
{
	double s = 0, sa = 0, c0 = x->C0[i * x->ldc + j];

	for (int64_t p = 0; p < x->k; p++) {
		double a = x->ta ? x->A[p * x->lda + i] : x->A[i * x->lda + p];
		double b = x->tb ? x->B[j * x->ldb + p] : x->B[p * x->ldb + j];

		s += a * b;
		sa += fabs(a * b);
	}
	*want = x->alpha * s;
	*mag = fabs(x->alpha) * sa;
	if (x->beta != 0.0f) {
		*want += x->beta * c0;
		*mag += fabs(x->beta * c0);
	}
}

/* Every entry of C within the bound above, every gap untouched. */
static void check_result(const char *isa, const struct prod *x)
{
	for (int64_t i = 0; i < x->m; i++)
		for (int64_t j = 0; j < x->ldc; j++) {
			double want, mag, bound, got = x->C[i * x->ldc + j];

			if (j >= x->n) {
				ck_assert_msg(got == SENTINEL, "[%s] %c%c m=%lld "
					"n=%lld k=%lld: C[%lld][%lld], past n, "
					"written", isa, "NT"[x->ta], "NT"[x->tb],
					(long long)x->m, (long long)x->n,
					(long long)x->k, (long long)i,
					(long long)j);
				continue;
			}
			exact_entry(x, i, j, &want, &mag);
			bound = (double)(x->k + 2) * FLT_EPSILON * mag;
			ck_assert_msg(isfinite(got) && fabs(got - want) <= bound,
				"[%s] %c%c m=%lld n=%lld k=%lld lda=%lld "
				"ldb=%lld ldc=%lld alpha=%g beta=%g: "
				"C[%lld][%lld] = %.9g, want %.9g (bound %.3g)",
				isa, "NT"[x->ta], "NT"[x->tb], (long long)x->m,
				(long long)x->n, (long long)x->k,
				(long long)x->lda, (long long)x->ldb,
				(long long)x->ldc, x->alpha, x->beta,
				(long long)i, (long long)j, got, want, bound);
		}
}

/* One product C = alpha op(A) op(B) + beta C, m x n, through
 * lcai_cpu_gemm_f32(serial_blas = 1), with fresh inputs and leading
 * dimensions, checked by check_result. */
static void check_case(const char *isa, int ta, int tb, int64_t m,
	int64_t n, int64_t k, float alpha, float beta)
{
	/* stored shapes: op(A) m x k, op(B) k x n */
	struct prod x = { ta, tb, m, n, k, (ta ? m : k) + tu_randint(1, 5),
		(tb ? k : n) + tu_randint(1, 5), n + tu_randint(1, 5), alpha,
		beta, NULL, NULL, NULL, NULL };

	x.A = random_matrix(ta ? k : m, ta ? m : k, x.lda);
	x.B = random_matrix(tb ? n : k, tb ? k : n, x.ldb);
	x.C = falloc(m * x.ldc);
	x.C0 = falloc(m * x.ldc);
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < x.ldc; j++)
			x.C0[i * x.ldc + j] = j >= n ? SENTINEL :
				beta == 0.0f ? NAN : (float)tu_normal();
	memcpy(x.C, x.C0, (size_t)(m * x.ldc) * sizeof *x.C);
	lcai_cpu_gemm_f32(1, trans[ta], trans[tb], m, n, k, alpha, x.A, x.lda,
		x.B, x.ldb, beta, x.C, x.ldc);
	check_result(isa, &x);
	free(x.A);
	free(x.B);
	free(x.C);
	free(x.C0);
}

/* Every (transpose, alpha, beta) for one shape. */
static void check_shape(const char *isa, int64_t m, int64_t n, int64_t k)
{
	for (int t = 0; t < 4; t++)
		for (int a = 0; a < 2; a++)
			for (int b = 0; b < 3; b++)
				check_case(isa, t >> 1, t & 1, m, n, k, alphas[a],
					betas[b]);
}

/* The sizes at the vector and tile edges of both kernels (16 and 8
 * lanes; 8 and 4 rows; the 64 of the BLAS pieces), every triple. The
 * transposes, alpha and beta rotate with the triple to keep it short. */
static const int64_t edges[] = { 1, 15, 16, 17, 63, 64, 65 };
#define NEDGE 7

START_TEST(serial_gemm_meets_bound_at_edge_sizes)
{
	const char *isa = use_level(_i);
	int r = 0;

	for (int x = 0; x < NEDGE; x++)
		for (int y = 0; y < NEDGE; y++)
			for (int z = 0; z < NEDGE; z++, r++)
				for (int t = 0; t < 4; t++)
					check_case(isa, t >> 1, t & 1, edges[x],
						edges[y], edges[z],
						alphas[(r + t) % 2],
						betas[(r + t) % 3]);
}
END_TEST

START_TEST(serial_gemm_meets_bound_at_random_sizes)
{
	const char *isa = use_level(_i);

	for (int r = 0; r < 40; r++)
		check_shape(isa, tu_randint(1, 80), tu_randint(1, 80),
			tu_randint(1, 80));
}
END_TEST

/* Wider than the callers' row tiles and longer along k than one BLAS
 * piece (dk = dv = 128 state updates, dk + C columns of the output
 * product): the kernels take the whole k in registers. */
START_TEST(serial_gemm_meets_bound_at_large_sizes)
{
	const char *isa = use_level(_i);

	check_shape(isa, 128, 128, 64);
	for (int r = 0; r < 4; r++)
		check_shape(isa, tu_randint(65, 160), tu_randint(65, 160),
			tu_randint(100, 300));
}
END_TEST

/* BLAS's rule: alpha 0 gives beta C, reading neither A nor B (both NaN
 * here), and with beta 0 not reading C either. (k >= 1 is the caller's
 * side of the contract, gemm.h.) */
START_TEST(alpha_zero_only_scales_c)
{
	const char *isa = use_level(_i);
	float A[4 * 5], B[5 * 6], C[4 * 6];

	for (int i = 0; i < 20; i++)
		A[i] = NAN;
	for (int i = 0; i < 30; i++)
		B[i] = NAN;
	for (int b = 0; b < 3; b++) {
		for (int i = 0; i < 24; i++)
			C[i] = betas[b] == 0.0f ? NAN : (float)(i - 7);
		lcai_cpu_gemm_f32(1, CblasNoTrans, CblasNoTrans, 4, 6, 5, 0.0,
			A, 5, B, 6, betas[b], C, 6);
		for (int i = 0; i < 24; i++)
			ck_assert_msg(C[i] == (betas[b] == 0.0f ? 0.0f :
				betas[b] * (float)(i - 7)), "[%s] beta %g: "
				"C[%d] = %g", isa, betas[b], i, C[i]);
	}
}
END_TEST

/* The AVX2 and AVX-512 levels run our kernels, SSE leaves the product to
 * BLAS: lcai_cpu_gemm_small_f32 says whether it did it. */
START_TEST(kernels_run_at_avx2_and_avx512)
{
	const char *isa = use_level(_i);
	float A[3 * 2] = { 1, 2, 3, 4, 5, 6 }, B[2 * 2] = { 1, 0, 0, 1 };
	float C[3 * 2] = { 0 };
	int did = lcai_cpu_gemm_small_f32(CblasNoTrans, CblasNoTrans, 3, 2, 2,
		1.0f, A, 2, B, 2, 0.0f, C, 2);

	ck_assert_msg(did == level_has_kernels(isa), "level %s: "
		"lcai_cpu_gemm_small_f32 returned %d", isa, did);
	if (did)
		for (int i = 0; i < 6; i++)
			ck_assert_msg(C[i] == A[i], "[%s] A I: C[%d] = %g", isa,
				i, C[i]);
}
END_TEST

/* Sizes on and off the transpose's 8 x 8 block. */
static const int64_t tr_edges[] = { 1, 7, 8, 9, 15, 16, 17, 40, 65 };
#define TR_NEDGE 9

/* dst [m][n] against src [n][m] (rows ld apart): bit for bit, and the
 * sentinel after dst untouched. */
static void check_transpose(const char *isa, int64_t n, int64_t m, int bf16)
{
	int64_t ld = m + tu_randint(0, 3), i, j;
	float *src = malloc((size_t)(n * ld) * sizeof *src);
	uint16_t *sb = malloc((size_t)(n * ld) * sizeof *sb);
	float *dst = malloc((size_t)(m * n + 4) * sizeof *dst);

	ck_assert(src && sb && dst);
	for (i = 0; i < n * ld; i++) {
		src[i] = (float)tu_normal();
		sb[i] = (uint16_t)tu_randint(0, 65535);
	}
	for (i = 0; i < m * n + 4; i++)
		dst[i] = SENTINEL;
	if (bf16)
		lcai_cpu_transpose_bf16(n, m, sb, ld, dst);
	else
		lcai_cpu_transpose_f32(n, m, src, ld, dst);
	for (i = 0; i < n; i++)
		for (j = 0; j < m; j++) {
			uint32_t want, got;

			if (bf16)
				want = (uint32_t)sb[i * ld + j] << 16;
			else
				memcpy(&want, src + i * ld + j, sizeof want);
			memcpy(&got, dst + j * n + i, sizeof got);
			ck_assert_msg(got == want, "[%s] %s transpose %lld x "
				"%lld (ld %lld): dst[%lld][%lld] = %08x, "
				"want %08x", isa, bf16 ? "bf16" : "f32",
				(long long)n, (long long)m, (long long)ld,
				(long long)j, (long long)i, got, want);
		}
	for (i = m * n; i < m * n + 4; i++)
		ck_assert_msg(dst[i] == SENTINEL, "[%s] transpose %lld x %lld "
			"wrote past dst", isa, (long long)n, (long long)m);
	free(src);
	free(sb);
	free(dst);
}

START_TEST(transposes_move_every_bit)
{
	const char *isa = use_level(_i);

	for (int bf = 0; bf < 2; bf++) {
		for (int x = 0; x < TR_NEDGE; x++)
			for (int y = 0; y < TR_NEDGE; y++)
				check_transpose(isa, tr_edges[x], tr_edges[y],
					bf);
		for (int r = 0; r < 10; r++)
			check_transpose(isa, tu_randint(1, 200),
				tu_randint(1, 200), bf);
	}
}
END_TEST

int main(void)
{
	const char *fork_env = getenv("CK_FORK");
	int lo = 0, hi = NLEVEL;
	Suite *s;
	TCase *tc;

	tu_init();
	if (fork_env && !strcmp(fork_env, "no")) {
		printf("CK_FORK=no: only the level of the environment is run\n");
		keep_level = 1;
		hi = 1;
	}
	s = suite_create("gemm");
	tc = tu_tcase("serial f32 gemm");
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, serial_gemm_meets_bound_at_edge_sizes, lo, hi);
	tcase_add_loop_test(tc, serial_gemm_meets_bound_at_random_sizes, lo, hi);
	tcase_add_loop_test(tc, serial_gemm_meets_bound_at_large_sizes, lo, hi);
	tcase_add_loop_test(tc, alpha_zero_only_scales_c, lo, hi);
	tcase_add_loop_test(tc, kernels_run_at_avx2_and_avx512, lo, hi);
	tcase_add_loop_test(tc, transposes_move_every_bit, lo, hi);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
