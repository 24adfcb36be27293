/*
 * prof.h - the phase profiler behind lca_profile_enable(3): where the time
 * of a cpu call goes, per phase of its kernels, summed over the threads.
 *
 * A kernel marks its phase boundaries with LCAI_PROF(phase) and closes the
 * last phase with LCAI_PROF_END(); the time between two marks of a thread
 * is charged to the phase the first one opened. Off, a mark is one relaxed
 * load and a predicted branch. Marks go at function-call boundaries (per
 * chunk, block or tile), never inside inner loops: one costs a clock read
 * when on.
 */
#ifndef LCATTN_CPU_PROF_H
#define LCATTN_CPU_PROF_H

#include <stdatomic.h>

/* The phases, in the order lca_profile_read(3) lists them; their names
 * are in prof.c. */
enum lcai_phase {
	LCAI_PH_DN_GATHER,    /* deltanet: rows, L2 norms, decays of a chunk */
	LCAI_PH_DN_WY,        /* A = diag(beta) K K^T (.) decays, W, U~ */
	LCAI_PH_DN_INVERSE,   /* (I + A)^-1 */
	LCAI_PH_DN_UPDATE_U,  /* U = U~ - W S0 */
	LCAI_PH_DN_OUTPUT,    /* O = [Q | Q K^T (.) M] [S0 ; U] */
	LCAI_PH_DN_STATE,     /* S_C = gamma S0 + K'^T U */
	LCAI_PH_LT_PACK,      /* lightning: K^T and V of a block */
	LCAI_PH_LT_SCORES,    /* Q K^T (.) D of a row tile */
	LCAI_PH_LT_OUTPUT,    /* [Q | P] [S0 ; V] of a row tile */
	LCAI_PH_LT_STATE,     /* S_b = lambda^b S0 + K'^T V */
	LCAI_PH_FL_PACK,      /* flash engine: keys and values into tiles */
	LCAI_PH_FL_ROWS,      /* query rows loaded, outputs finished */
	LCAI_PH_FL_QK,        /* logits of a key tile */
	LCAI_PH_FL_SOFTMAX,   /* scale, mask, exp and rescale of a tile */
	LCAI_PH_FL_PV,        /* weights times values of a tile */
	LCAI_PH_MLA_PROJECT,  /* mla: projections by BLAS around the engine */
	LCAI_PH_COUNT
};

/* 1 while lca_profile_enable(1) holds. */
extern atomic_int lcai_prof_on;

/* Close the calling thread's open phase and open phase (-1: none). */
void lcai_prof_mark(int phase);

#define LCAI_PROF(phase) do { \
	if (__builtin_expect(atomic_load_explicit(&lcai_prof_on, \
			memory_order_relaxed), 0)) \
		lcai_prof_mark(phase); \
} while (0)
#define LCAI_PROF_END() LCAI_PROF(-1)

#endif
