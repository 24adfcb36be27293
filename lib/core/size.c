/*
 * size.c - overflow-checked size arithmetic, used before any allocation or
 * any pointer offset so that absurd shapes are refused instead of wrapping.
 */
#include "internal.h"

int lcai_mul(int64_t a, int64_t b, int64_t *out)
{
	if (a < 0 || b < 0)
		return 0;
	if (a != 0 && b > INT64_MAX / a)
		return 0;
	*out = a * b;
	return 1;
}

int lcai_mul_n(int64_t *out, int n, ...)
{
	va_list ap;
	int64_t acc = 1;
	int ok = 1;

	va_start(ap, n);
	for (int i = 0; i < n; i++)
		if (ok && !lcai_mul(acc, va_arg(ap, int64_t), &acc))
			ok = 0;
	va_end(ap);
	if (ok)
		*out = acc;
	return ok;
}
