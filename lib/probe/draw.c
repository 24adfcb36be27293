/*
 * draw.c - probe parameters and the synthetic keys and values the probes
 * are usually run on (lca_probe_params_init, lca_probe_draw).
 *
 * The generator is our own, xoshiro256** seeded through splitmix64 (Blackman
 * and Vigna 2018), with Box-Muller normals: the same seed gives the same
 * numbers everywhere, so a probe's CSV can be regenerated bit for bit.
 */
#include "probe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

lca_status lca_probe_params_init(lca_probe_params *pp, lca_variant variant)
{
	lcai_clear_error();
	if (!pp)
		return lcai_fail(LCA_ERR_NULL, "lca_probe_params_init: pp is NULL");
	if ((unsigned)variant > LCA_LIGHTNING)
		return lcai_fail(LCA_ERR_ARG, "lca_probe_params_init: unknown variant %d",
			(int)variant);
	memset(pp, 0, sizeof *pp);
	pp->variant = variant;
	pp->dk = 64;
	pp->dv = 64;
	pp->rope_theta = 10000.0;
	pp->rope_style = variant == LCA_MLA ? LCA_ROPE_INTERLEAVED : LCA_ROPE_HALF;
	pp->beta = 1.0;
	return LCA_OK;
}

/* ---- the generator ---- */

struct rng {
	uint64_t s[4];
};

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

static uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

/* Uniform in (0, 1): never 0, so the log below is finite. */
static double uniform(struct rng *r)
{
	return ((double)(rng_next(r) >> 11) + 0.5) * 0x1p-53;
}

static double normal(struct rng *r)
{
	double u1 = uniform(r), u2 = uniform(r);

	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* x uniform on the unit sphere: a normalised standard normal vector. A
 * zero vector cannot come out of Box-Muller in practice; e_0 covers it. */
static void sphere(struct rng *r, double *x, int64_t n)
{
	double nrm;

	for (int64_t i = 0; i < n; i++)
		x[i] = normal(r);
	nrm = lcai_probe_norm(x, n);
	if (nrm == 0)
		x[0] = nrm = 1;
	for (int64_t i = 0; i < n; i++)
		x[i] /= nrm;
}

/*
 * k_i = normalize(sqrt(rho) c + sqrt(1 - rho) z_i). For large dk the
 * unnormalised vectors have norm near 1 and <k_i, k_j> near rho + (1 - rho)
 * <z_i, z_j>, whose mean is rho: the shared direction c sets the crowding.
 */
static void draw_keys(struct rng *r, int64_t T, int64_t dk, double rho, double *c,
	double *z, double *k)
{
	double a = sqrt(rho), b = sqrt(1 - rho), nrm;

	sphere(r, c, dk);
	for (int64_t i = 0; i < T; i++) {
		sphere(r, z, dk);
		for (int64_t j = 0; j < dk; j++)
			z[j] = a * c[j] + b * z[j];
		nrm = lcai_probe_norm(z, dk);
		for (int64_t j = 0; k && j < dk; j++)
			k[i * dk + j] = z[j] / nrm;
	}
}

lca_status lca_probe_draw(int64_t T, int64_t dk, int64_t dv, double rho,
	uint64_t seed, double *k, double *v)
{
	static const char fn[] = "lca_probe_draw";
	double *c, *z;
	int64_t n;
	struct rng r;

	lcai_clear_error();
	if (T < 1 || dk < 1 || dv < 1)
		return lcai_fail(LCA_ERR_SIZE, "%s: T, dk and dv must be >= 1", fn);
	if (!lcai_mul(T, dk > dv ? dk : dv, &n))
		return lcai_fail(LCA_ERR_OVERFLOW, "%s: T * dk overflows", fn);
	if (!(rho >= 0 && rho < 1))
		return lcai_fail(LCA_ERR_ARG, "%s: rho = %g must lie in [0, 1)", fn, rho);
	c = lcai_probe_alloc(dk);
	z = lcai_probe_alloc(dk > dv ? dk : dv);
	if (!c || !z) {
		free(c);
		free(z);
		return lcai_fail(LCA_ERR_NOMEM, "%s: out of memory", fn);
	}
	for (int i = 0; i < 4; i++)
		r.s[i] = splitmix64(&seed);
	draw_keys(&r, T, dk, rho, c, z, k);
	for (int64_t i = 0; v && i < T; i++)
		sphere(&r, v + i * dv, dv);
	free(c);
	free(z);
	return LCA_OK;
}
