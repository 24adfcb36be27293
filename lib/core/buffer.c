/*
 * buffer.c - backend-agnostic allocation and copies, so callers of the cuda
 * backend need no CUDA headers. Host backends use plain malloc and memcpy.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static int host_backend(lca_backend b)
{
	return b == LCA_BACKEND_REF || b == LCA_BACKEND_CPU;
}

lca_status lca_buffer_alloc(lca_backend backend, size_t bytes, void **ptr)
{
	lcai_clear_error();
	if (!ptr)
		return lcai_fail(LCA_ERR_NULL, "lca_buffer_alloc: ptr is NULL");
	*ptr = NULL;
	if (bytes == 0)
		return lcai_fail(LCA_ERR_SIZE, "lca_buffer_alloc: bytes must be > 0");
	if (backend == LCA_BACKEND_CUDA)
		return lcai_cuda_alloc(bytes, ptr);
	if (!host_backend(backend))
		return lcai_fail(LCA_ERR_ARG, "lca_buffer_alloc: unknown backend %d", (int)backend);
	*ptr = malloc(bytes);
	if (!*ptr)
		return lcai_fail(LCA_ERR_NOMEM, "lca_buffer_alloc: %zu bytes", bytes);
	return LCA_OK;
}

void lca_buffer_free(lca_backend backend, void *ptr)
{
	if (!ptr)
		return;
	if (backend == LCA_BACKEND_CUDA)
		lcai_cuda_free(ptr);
	else if (host_backend(backend))
		free(ptr);
}

lca_status lca_buffer_copy(lca_backend backend, void *dst, const void *src,
	size_t bytes, lca_copy_kind kind)
{
	lcai_clear_error();
	if (!dst || !src)
		return lcai_fail(LCA_ERR_NULL, "lca_buffer_copy: %s is NULL", dst ? "src" : "dst");
	if ((unsigned)kind > LCA_COPY_DEVICE_TO_DEVICE)
		return lcai_fail(LCA_ERR_ARG, "lca_buffer_copy: unknown copy kind %d", (int)kind);
	if (bytes == 0)
		return LCA_OK;
	if (backend == LCA_BACKEND_CUDA)
		return lcai_cuda_copy(dst, src, bytes, kind);
	if (!host_backend(backend))
		return lcai_fail(LCA_ERR_ARG, "lca_buffer_copy: unknown backend %d", (int)backend);
	memmove(dst, src, bytes);
	return LCA_OK;
}
