/*
 * bytes.h - read a fuzz input as a stream of decisions. Every reader
 * returns a value even past the end of the input (zero bytes), so a short
 * input is still a complete, if dull, test case: libFuzzer then grows the
 * inputs whose extra bytes reach new code.
 */
#ifndef LCATTN_FUZZ_BYTES_H
#define LCATTN_FUZZ_BYTES_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fz_in {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t fz_u8(struct fz_in *in)
{
	uint8_t b = 0;

	if (in->n) {
		b = *in->p++;
		in->n--;
	}
	return b;
}

static inline uint64_t fz_u64(struct fz_in *in)
{
	uint64_t x = 0;

	for (int i = 0; i < 8; i++)
		x |= (uint64_t)fz_u8(in) << (8 * i);
	return x;
}

/* A size as a caller might pass it: mostly 0..8 (small enough to run), with
 * the edge values an argument checker must refuse or survive. */
static inline int64_t fz_size(struct fz_in *in)
{
	static const int64_t edge[] = {
		-1, -2, INT64_MIN, INT64_MAX, INT64_MAX / 2 + 1, (int64_t)1 << 31,
		(int64_t)1 << 32, (int64_t)3 << 40, 16, 17, 32, 63, 64, 256, 4096,
	};
	uint8_t b = fz_u8(in);

	if (b < 256 - sizeof edge / sizeof edge[0] - 1)
		return b % 9;
	if (b == 255)
		return (int64_t)fz_u64(in);
	return edge[b - (256 - sizeof edge / sizeof edge[0] - 1)];
}

/* A double option (scale, rope_theta): ordinary values, the non-finite
 * and extreme ones, or any 64 bits. */
static inline double fz_double(struct fz_in *in)
{
	static const double pick[] = {
		0, 1, 0.5, 0.125, -1, 10000, 1e-300, 1e300, -0.0, 2, 1e6,
	};
	uint8_t b = fz_u8(in);
	uint64_t bits;
	double x;

	if (b < 200)
		return pick[b % (sizeof pick / sizeof pick[0])];
	if (b < 220)
		return NAN;
	if (b < 240)
		return b & 1 ? INFINITY : -INFINITY;
	bits = fz_u64(in);
	memcpy(&x, &bits, sizeof x);
	return x;
}

#endif /* LCATTN_FUZZ_BYTES_H */
