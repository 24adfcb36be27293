/*
 * fuzz_golden.c - libFuzzer target for the golden-file reader: the input
 * is an HDF5 file image, parsed in this process by lcio_read_image().
 *
 * A refused file must say why. An accepted one must hold every tensor its
 * layout names, and must be safe to hand to the API: a small enough case
 * runs through the reference forward call on the tensors as read, so a
 * tensor the reader sized differently from what the API reads shows up
 * under AddressSanitizer (the status itself may be any refusal).
 */
#include "golden.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Cases bigger than this are read but not run (the run must stay fast). */
#define RUN_MAX_ELEMS ((int64_t)1 << 16)

static void expect(int ok, const char *what, const char *err)
{
	if (ok)
		return;
	fprintf(stderr, "fuzz_golden: %s (%s)\n", what, err);
	abort();
}

static const void *in(struct lcio_case *c, const char *name)
{
	struct lcio_tensor *t = lcio_find(c, 0, name);

	return t ? t->data : NULL;
}

static void *out(struct lcio_case *c, const char *name)
{
	struct lcio_tensor *t = lcio_find(c, 1, name);

	return t ? t->data : NULL;
}

/* The case's forward call on the double reference, into its own /outputs
 * buffers (shaped by the reader's layout, as the tool's `run` does). */
static lca_status run(struct lcio_case *c)
{
	lca_plan *plan = NULL;
	lca_status s;

	c->p.backend = LCA_BACKEND_REF;
	c->p.dtype = LCA_F64;
	if ((s = lca_plan_create(&c->p, &plan)))
		return s;
	switch (c->p.variant) {
	case LCA_SOFTMAX:
		s = lca_softmax_forward(plan, c->Tq, c->Tk, in(c, "q"), in(c, "k"),
			in(c, "v"), c->cu_seqlens, c->nseq, out(c, "o"), out(c, "lse"));
		break;
	case LCA_MLA:
		s = lca_mla_forward(plan, c->Tq, c->Tk, in(c, "q_nope"), in(c, "q_rope"),
			in(c, "ckv"), in(c, "k_rope"), in(c, "w_uk"), in(c, "w_uv"),
			c->cu_seqlens, c->nseq, out(c, "o"), out(c, "lse"));
		break;
	case LCA_DELTANET:
		s = lca_deltanet_forward(plan, c->Tq, in(c, "q"), in(c, "k"), in(c, "v"),
			in(c, "g"), in(c, "beta"), c->cu_seqlens, c->nseq,
			in(c, "state0"), out(c, "o"), out(c, "state"));
		break;
	default:
		s = lca_lightning_forward(plan, c->Tq, in(c, "q"), in(c, "k"), in(c, "v"),
			in(c, "slope"), c->cu_seqlens, c->nseq, in(c, "state0"),
			out(c, "o"), out(c, "state"));
	}
	lca_plan_destroy(plan);
	return s;
}

/* Every tensor but the optional ones is read, and the case is small. */
static int complete_and_small(const struct lcio_case *c)
{
	int64_t total = 0;

	for (int i = 0; i < c->nin + c->nout; i++) {
		const struct lcio_tensor *t = i < c->nin ? &c->in[i] : &c->out[i - c->nin];

		expect(t->data || t->optional, "an accepted file lacks a tensor", t->name);
		total += t->n;
	}
	return total <= RUN_MAX_ELEMS;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lcio_case c;
	char err[256] = "";

	if (lcio_read_image(data, size, "fuzz.h5", LCIO_INPUTS | LCIO_OUTPUTS, &c, err,
			sizeof err)) {
		if (getenv("FUZZ_VERBOSE"))
			fprintf(stderr, "fuzz_golden: refused: %s\n", err);
		expect(err[0] != '\0', "a refused file without a message", "");
		expect(memchr(err, '\0', sizeof err) != NULL, "an unterminated message", "");
		return 0;
	}
	if (complete_and_small(&c)) {
		lca_status s = run(&c);

		if (getenv("FUZZ_VERBOSE"))  /* how far did this input get? */
			fprintf(stderr, "fuzz_golden: run: %s %s\n", lca_strerror(s),
				lca_last_error());
	}
	lcio_case_free(&c);
	return 0;
}
