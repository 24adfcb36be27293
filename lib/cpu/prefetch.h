/*
 * prefetch.h - ask for the next chunk's rows while this one computes.
 *
 * The per-token tensors are [T][H][d]: one head's rows lie H d elements
 * apart, each in a page of its own at H d = 1024 floats, and the hardware
 * stream prefetchers stop at page boundaries. A work item walking one head
 * through T therefore met a cache miss on nearly every row it touched
 * (measured on the development machine: half of deltanet's gather time
 * waited on the first load of each q row). The chunked kernels run long
 * enough per chunk that asking for the next chunk's rows as they go hides
 * that latency completely; prefetching never faults and changes no result.
 */
#ifndef LCATTN_CPU_PREFETCH_H
#define LCATTN_CPU_PREFETCH_H

#include <stddef.h>

/* Bytes the hardware moves at once; one prefetch per line. */
#define LCAI_LINE 64

/* One row of `bytes` bytes from p, for reading (write = 0) or writing. */
static inline void lcai_prefetch_row(const void *p, size_t bytes, int write)
{
#if defined(__GNUC__)
	const char *c = p;
	size_t off;

	for (off = 0; off < bytes; off += LCAI_LINE) {
		if (write)
			__builtin_prefetch(c + off, 1, 3);
		else
			__builtin_prefetch(c + off, 0, 3);
	}
#else
	(void)p, (void)bytes, (void)write;
#endif
}

#endif /* LCATTN_CPU_PREFETCH_H */
