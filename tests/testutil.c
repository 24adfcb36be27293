/*
 * testutil.c - see testutil.h.
 */
#include "testutil.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- random numbers: xoshiro256** seeded through splitmix64 ---- */

static uint64_t seed_value;
static uint64_t st[4];

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t tu_next(void)
{
	uint64_t r = rotl(st[1] * 5, 7) * 9, t = st[1] << 17;

	st[2] ^= st[0];
	st[3] ^= st[1];
	st[1] ^= st[2];
	st[0] ^= st[3];
	st[2] ^= t;
	st[3] = rotl(st[3], 45);
	return r;
}

void tu_reset(void)
{
	uint64_t x = seed_value;

	for (int i = 0; i < 4; i++)
		st[i] = splitmix64(&x);
}

uint64_t tu_init(void)
{
	const char *env = getenv("LCA_TEST_SEED");

	if (env && *env)
		seed_value = strtoull(env, NULL, 0);
	else
		seed_value = (uint64_t)time(NULL);
	printf("seed = %llu\n", (unsigned long long)seed_value);
	fflush(stdout);
	tu_reset();
	return seed_value;
}

/* 53 random bits as a double in [0, 1). */
static double unit(void)
{
	return (double)(tu_next() >> 11) * 0x1.0p-53;
}

double tu_uniform(double lo, double hi)
{
	return lo + (hi - lo) * unit();
}

double tu_normal(void)
{
	/* Box-Muller; 1 - unit() lies in (0, 1], so the log is finite. */
	double r = sqrt(-2.0 * log(1.0 - unit()));
	double a = 6.283185307179586 * unit();

	return r * cos(a);
}

int64_t tu_randint(int64_t lo, int64_t hi)
{
	return lo + (int64_t)(tu_next() % (uint64_t)(hi - lo + 1));
}

void tu_fill_normal(double *x, int64_t n, double sd)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = sd * tu_normal();
}

void tu_fill_uniform(double *x, int64_t n, double lo, double hi)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = tu_uniform(lo, hi);
}

/* ---- buffers and norms ---- */

double *tu_alloc(int64_t n)
{
	double *x = calloc(n > 0 ? (size_t)n : 1, sizeof *x);

	ck_assert_msg(x != NULL, "test allocation of %lld doubles failed", (long long)n);
	return x;
}

double *tu_copy(const double *x, int64_t n)
{
	double *y = tu_alloc(n);

	memcpy(y, x, (size_t)n * sizeof *y);
	return y;
}

double tu_relerr(const double *x, const double *ref, int64_t n)
{
	double num = 0.0, den = 0.0;

	for (int64_t i = 0; i < n; i++) {
		double d = x[i] - ref[i];

		num += d * d;
		den += ref[i] * ref[i];
	}
	if (isnan(num))
		return NAN;
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

double tu_maxabs(const double *x, const double *ref, int64_t n)
{
	double m = 0.0;

	for (int64_t i = 0; i < n; i++) {
		double d = fabs(x[i] - ref[i]);

		if (isnan(d))
			return NAN;
		if (d > m)
			m = d;
	}
	return m;
}

int tu_all_finite(const double *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return 0;
	return 1;
}

void tu_orthonormal_rows(double *a, int64_t rows, int64_t cols)
{
	ck_assert(rows <= cols);
	for (int64_t i = 0; i < rows; i++) {
		double *r = a + i * cols;

		/* Two passes of modified Gram-Schmidt ("twice is enough"):
		 * orthogonality to rounding, not to the condition number. */
		for (int pass = 0; pass < 2; pass++)
			for (int64_t j = 0; j < i; j++) {
				const double *b = a + j * cols;
				double d = 0.0;

				for (int64_t c = 0; c < cols; c++)
					d += r[c] * b[c];
				for (int64_t c = 0; c < cols; c++)
					r[c] -= d * b[c];
			}
		double nrm = 0.0;

		for (int64_t c = 0; c < cols; c++)
			nrm += r[c] * r[c];
		nrm = sqrt(nrm);
		ck_assert(nrm > 1e-8);
		for (int64_t c = 0; c < cols; c++)
			r[c] /= nrm;
	}
}

/* ---- RoPE ---- */

void tu_rope(double *x, int64_t rope_dim, lca_rope_style style, double theta,
	int64_t pos)
{
	int64_t half = rope_dim / 2;

	for (int64_t i = 0; i < half; i++) {
		/* theta^(-2i/d) as exp(-(2i/d) ln theta): a different route
		 * from the library's pow(), equal to within rounding. */
		double ang = (double)pos * exp(-(2.0 * (double)i / (double)rope_dim) * log(theta));
		int64_t a = style == LCA_ROPE_INTERLEAVED ? 2 * i : i;
		int64_t b = style == LCA_ROPE_INTERLEAVED ? 2 * i + 1 : i + half;
		double xa = x[a], xb = x[b];

		x[a] = cos(ang) * xa - sin(ang) * xb;
		x[b] = sin(ang) * xa + cos(ang) * xb;
	}
}

/* ---- plans and messages ---- */

lca_params tu_params(lca_variant variant)
{
	lca_params p;

	tu_assert_ok(lca_params_init(&p, variant));
	return p;
}

lca_plan *tu_plan(const lca_params *p)
{
	lca_plan *plan = NULL;

	tu_assert_ok(lca_plan_create(p, &plan));
	ck_assert_ptr_nonnull(plan);
	return plan;
}

static int ident_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

int tu_msg_names(const char *name)
{
	const char *msg = lca_last_error();
	size_t n = strlen(name);

	for (const char *s = strstr(msg, name); s; s = strstr(s + 1, name)) {
		int before = s > msg && ident_char(s[-1]);
		int after = ident_char(s[n]);

		if (!before && !after)
			return 1;
	}
	return 0;
}

TCase *tu_tcase(const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, tu_reset, NULL);
	tcase_set_timeout(tc, 60);
	return tc;
}

int tu_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
