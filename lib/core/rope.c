/*
 * rope.c - rotary position embedding (RoFormer, Su et al. 2021, eq. 34),
 * shared by every backend's reference and by the golden generator.
 *
 * Pair i (0 <= i < rope_dim/2) turns by the angle pos * theta^(-2i/rope_dim).
 * The two styles differ only in which coordinates form a pair:
 *   LCA_ROPE_HALF         (i, i + rope_dim/2)   NeoX, Qwen, MiniMax
 *   LCA_ROPE_INTERLEAVED  (2i, 2i + 1)          DeepSeek, GPT-J
 * so one style is the other under a fixed permutation of coordinates.
 */
#include "internal.h"

#include <math.h>

/* Coordinates and rotation of pair i. The angle, cos and sin are always
 * computed in double with the textbook formula: no incremental angle
 * recurrences (their error grows with i and |pos|), and float callers get
 * the cos/sin table correctly rounded, as a float32 kernel with a
 * precomputed table would. */
static void rope_pair(int64_t i, int64_t rope_dim, lca_rope_style style,
	double theta, int64_t pos, int64_t *ia, int64_t *ib, double *c, double *s)
{
	double freq = pow(theta, -2.0 * (double)i / (double)rope_dim);
	double ang = (double)pos * freq;

	*c = cos(ang);
	*s = sin(ang);
	if (style == LCA_ROPE_INTERLEAVED) {
		*ia = 2 * i;
		*ib = 2 * i + 1;
	} else {
		*ia = i;
		*ib = i + rope_dim / 2;
	}
}

void lcai_rope_apply(double *x, int64_t rope_dim, lca_rope_style style,
	double theta, int64_t pos)
{
	for (int64_t i = 0; i < rope_dim / 2; i++) {
		int64_t ia, ib;
		double c, s;

		rope_pair(i, rope_dim, style, theta, pos, &ia, &ib, &c, &s);
		double a = x[ia], b = x[ib];

		x[ia] = a * c - b * s;
		x[ib] = a * s + b * c;
	}
}

void lcai_rope_apply_f(float *x, int64_t rope_dim, lca_rope_style style,
	double theta, int64_t pos)
{
	for (int64_t i = 0; i < rope_dim / 2; i++) {
		int64_t ia, ib;
		double c, s;

		rope_pair(i, rope_dim, style, theta, pos, &ia, &ib, &c, &s);
		float a = x[ia], b = x[ib], cf = (float)c, sf = (float)s;

		x[ia] = a * cf - b * sf;
		x[ib] = a * sf + b * cf;
	}
}
