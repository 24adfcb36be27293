/*
 * error.c - status names and the per-thread detail message.
 *
 * The detail lives in thread-local storage so concurrent callers never see
 * each other's messages and the library keeps no global mutable state.
 */
#include "internal.h"

#include <stdio.h>

static _Thread_local char detail[512];

lca_status lcai_fail(lca_status status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	return status;
}

void lcai_clear_error(void)
{
	detail[0] = '\0';
}

const char *lca_last_error(void)
{
	return detail;
}

const char *lca_strerror(lca_status status)
{
	switch (status) {
	case LCA_OK: return "LCA_OK: success";
	case LCA_ERR_NULL: return "LCA_ERR_NULL: required pointer is NULL";
	case LCA_ERR_SIZE: return "LCA_ERR_SIZE: size zero, negative or inconsistent";
	case LCA_ERR_OVERFLOW: return "LCA_ERR_OVERFLOW: size product overflows";
	case LCA_ERR_ARG: return "LCA_ERR_ARG: option or value out of its domain";
	case LCA_ERR_NONFINITE: return "LCA_ERR_NONFINITE: input holds NaN or Inf";
	case LCA_ERR_UNSUPPORTED: return "LCA_ERR_UNSUPPORTED: backend, dtype or algorithm not available";
	case LCA_ERR_NO_DEVICE: return "LCA_ERR_NO_DEVICE: no usable CUDA device";
	case LCA_ERR_NOMEM: return "LCA_ERR_NOMEM: out of memory";
	case LCA_ERR_CAPACITY: return "LCA_ERR_CAPACITY: cache capacity exceeded";
	case LCA_ERR_CORRUPT: return "LCA_ERR_CORRUPT: serialized data damaged or mismatched";
	case LCA_ERR_RANGE: return "LCA_ERR_RANGE: values could overflow the working type";
	case LCA_ERR_INTERNAL: return "LCA_ERR_INTERNAL: internal error (a bug in lcattn)";
	}
	return "LCA_ERR_?: unknown status code";
}

const char *lca_version(void)
{
	return LCA_VERSION_STRING;
}
