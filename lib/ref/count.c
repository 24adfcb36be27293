/*
 * count.c - the counter of the counting build of the reference
 * (LCA_REF_COUNT, lib/ref/real.h): floating-point operations performed by
 * this thread's lcai_refc_* calls since the caller last set it to zero.
 * Per thread, so the counting build keeps the oracle's thread safety.
 */
#include "real.h"

_Thread_local int64_t lcai_refc_flops;
