/*
 * failalloc.c - see failalloc.h. The counters are per thread, so the
 * ranks of the loopback transport (threads) can fail one at a time.
 */
#include "failalloc.h"

#include <stddef.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);

static _Thread_local long left;   /* allocations to the failing one; 0: off */
static _Thread_local int fired;

void fa_arm(long n)
{
	left = n;
	fired = 0;
}

int fa_disarm(void)
{
	left = 0;
	return fired;
}

/* Whether this allocation is the one to fail. */
static int fa_fail_now(void)
{
	if (left <= 0 || --left > 0)
		return 0;
	fired = 1;
	return 1;
}

void *__wrap_malloc(size_t n)
{
	return fa_fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return fa_fail_now() ? NULL : __real_calloc(n, size);
}
