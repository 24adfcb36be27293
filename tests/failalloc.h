/*
 * failalloc.h - fail one allocation of the calling thread, for the tests
 * of what a rank does when it runs out of memory. Only code linked into
 * the test program itself is affected (it is linked with
 * -Wl,--wrap=malloc,--wrap=calloc: libcp.la, the loopback transport),
 * not liblcattn, whose own failures tests/check_nomem covers.
 */
#ifndef LCATTN_FAILALLOC_H
#define LCATTN_FAILALLOC_H

/* From now on, the n-th (n >= 1) malloc or calloc of this thread returns
 * NULL; the others, before and after it, succeed. */
void fa_arm(long n);

/* Stop; whether the armed failure happened (else the thread made fewer
 * than n allocations since fa_arm). */
int fa_disarm(void);

#endif
