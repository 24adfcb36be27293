/*
 * prof.c - the phase profiler (prof.h) and its public calls,
 * lca_profile_enable(3), lca_profile_reset(3) and lca_profile_read(3).
 *
 * Each thread that marks a phase takes a slot of its own, once, from a
 * static pool of LCA_MAX_THREADS slots, each on its own cache lines, so
 * threads never share a line while they count. Only the owner writes a
 * slot's open phase; the sums are atomics (relaxed: on x86-64 plain moves)
 * because lca_profile_read() and lca_profile_reset() touch them from
 * other threads, which the manual pages document as racy but harmless.
 *
 * A generation number, bumped by every enable and reset, tells a thread
 * that the phase it opened began before: that interval is dropped rather
 * than charged with the time profiling was off or with time before the
 * reset.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "internal.h"
#include "prof.h"

#include <stdint.h>
#include <time.h>

struct prof_slot {
	_Atomic int64_t ns[LCAI_PH_COUNT];    /* nanoseconds, summed */
	_Atomic int64_t count[LCAI_PH_COUNT]; /* intervals summed */
	int64_t t0;       /* owner only: when the open phase began */
	unsigned gen;     /* owner only: the generation it began in */
	int cur;          /* owner only: the open phase, -1 none */
} __attribute__((aligned(64)));

static const char *const phase_names[LCAI_PH_COUNT] = {
	"deltanet.gather", "deltanet.wy", "deltanet.inverse",
	"deltanet.u_minus_ws", "deltanet.output", "deltanet.state",
	"lightning.pack", "lightning.scores", "lightning.output",
	"lightning.state",
	"flash.pack", "flash.rows", "flash.qk", "flash.softmax", "flash.pv",
	"mla.project",
};

atomic_int lcai_prof_on;
static atomic_uint prof_gen;
static atomic_int prof_used;   /* slots handed out (may pass the pool) */
static struct prof_slot prof_slots[LCA_MAX_THREADS];
static _Thread_local struct prof_slot *prof_mine;
static _Thread_local int prof_tried;

static int64_t prof_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The calling thread's slot; NULL once the pool is spent (that thread's
 * phases are then not timed: lca_profile_read(3)). */
static struct prof_slot *prof_slot(void)
{
	if (!prof_tried) {
		int i = atomic_fetch_add_explicit(&prof_used, 1, memory_order_relaxed);

		prof_tried = 1;
		if (i < LCA_MAX_THREADS) {
			prof_mine = &prof_slots[i];
			prof_mine->cur = -1;
		}
	}
	return prof_mine;
}

void lcai_prof_mark(int phase)
{
	struct prof_slot *s = prof_slot();
	unsigned g = atomic_load_explicit(&prof_gen, memory_order_relaxed);
	int64_t t;

	if (!s)
		return;
	t = prof_now();
	if (s->cur >= 0 && s->gen == g) {
		atomic_store_explicit(&s->ns[s->cur], t - s->t0 +
			atomic_load_explicit(&s->ns[s->cur], memory_order_relaxed),
			memory_order_relaxed);
		atomic_store_explicit(&s->count[s->cur], 1 +
			atomic_load_explicit(&s->count[s->cur], memory_order_relaxed),
			memory_order_relaxed);
	}
	s->cur = phase;
	s->gen = g;
	s->t0 = t;
}

static int prof_nslots(void)
{
	int n = atomic_load_explicit(&prof_used, memory_order_relaxed);

	return n < LCA_MAX_THREADS ? n : LCA_MAX_THREADS;
}

lca_status lca_profile_enable(int on)
{
	lcai_clear_error();
	if (on != 0 && on != 1)
		return lcai_fail(LCA_ERR_ARG, "lca_profile_enable: on = %d must be 0 or 1", on);
	if (on)  /* a phase left open while off must not count */
		atomic_fetch_add_explicit(&prof_gen, 1, memory_order_relaxed);
	atomic_store_explicit(&lcai_prof_on, on, memory_order_relaxed);
	return LCA_OK;
}

lca_status lca_profile_reset(void)
{
	int n = prof_nslots();

	lcai_clear_error();
	atomic_fetch_add_explicit(&prof_gen, 1, memory_order_relaxed);
	for (int i = 0; i < n; i++)
		for (int ph = 0; ph < LCAI_PH_COUNT; ph++) {
			atomic_store_explicit(&prof_slots[i].ns[ph], 0, memory_order_relaxed);
			atomic_store_explicit(&prof_slots[i].count[ph], 0, memory_order_relaxed);
		}
	return LCA_OK;
}

lca_status lca_profile_read(lca_profile_phase *phases, int max, int *n)
{
	int ns = prof_nslots();

	lcai_clear_error();
	if (!n)
		return lcai_fail(LCA_ERR_NULL, "lca_profile_read: n is NULL");
	if (max < 0)
		return lcai_fail(LCA_ERR_ARG, "lca_profile_read: max = %d is negative", max);
	if (max > 0 && !phases)
		return lcai_fail(LCA_ERR_NULL, "lca_profile_read: phases is NULL with max = %d",
			max);
	*n = LCAI_PH_COUNT;
	for (int ph = 0; ph < LCAI_PH_COUNT && ph < max; ph++) {
		int64_t t = 0, c = 0;

		for (int i = 0; i < ns; i++) {
			t += atomic_load_explicit(&prof_slots[i].ns[ph], memory_order_relaxed);
			c += atomic_load_explicit(&prof_slots[i].count[ph], memory_order_relaxed);
		}
		phases[ph].name = phase_names[ph];
		phases[ph].seconds = (double)t * 1e-9;
		phases[ph].count = c;
	}
	return LCA_OK;
}
