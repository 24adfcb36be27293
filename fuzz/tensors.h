/*
 * tensors.h - the tensor arguments of one forward or step call, allocated
 * to exactly the sizes the plan and the call's sizes imply, so that
 * AddressSanitizer reports any access outside what the API promises to
 * touch.
 */
#ifndef LCATTN_FUZZ_TENSORS_H
#define LCATTN_FUZZ_TENSORS_H

#include "bytes.h"
#include "lcattn.h"

#define FZ_MAX_TENSORS 16

/* Largest call the fuzzer runs: bigger ones are skipped, not refused,
 * since the library may rightly accept them (a fuzz input must stay fast). */
#define FZ_MAX_BYTES ((int64_t)1 << 20)

struct fz_tensor {
	const char *name;
	int output;    /* compared against its sentinel after a failed call */
	int sign;      /* g: -1 (g <= 0), slope: +1 (slope >= 0), else 0 */
	int64_t n;     /* elements; -1 when a size is negative or overflows */
	void *data;    /* malloc'd n elements (1 byte when n <= 0) */
};

struct fz_call {
	lca_params p;  /* the plan's resolved parameters */
	int64_t Tq, Tk, N; /* N: sequences of the states (deltanet, lightning) */
	int step;      /* a cache step: no state0/state, mla keeps weights */
	int backward;  /* the backward call: the forward's inputs, do (and
	                  dstate), a gradient per floating input */
	int raw_signs; /* fill g and slope ignoring their sign rule */
	struct fz_tensor t[FZ_MAX_TENSORS];
	int nt;
};

/* Name and size every tensor of the call (c->p, Tq, Tk, N, step and
 * backward set). */
void fz_layout(struct fz_call *c);

/* Allocate every tensor and fill inputs from the value stream `in`,
 * outputs with a sentinel. 0 when done, -1 when the call is too big to
 * run or memory ran out (nothing allocated then). */
int fz_alloc(struct fz_call *c, struct fz_in *in);

/* Did a failed call leave every output as fz_alloc() filled it? */
int fz_outputs_untouched(const struct fz_call *c);

void fz_free(struct fz_call *c);

/* The tensor called name (NULL pointer data when absent). */
void *fz_data(const struct fz_call *c, const char *name);

#endif /* LCATTN_FUZZ_TENSORS_H */
