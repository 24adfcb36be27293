/*
 * golden.h - the HDF5 golden-file schema "lcattn-golden/1" (see
 * lcattn-golden(5)): one attention case per file, with its /config, float64
 * /inputs and /outputs, and /metrics. Used by the lcattn tool; the library
 * itself never touches HDF5, and this header does not include hdf5.h.
 *
 * Files are read in a confined child process (sandbox.h): this process
 * never calls HDF5 on a file it did not write, and checks the child's
 * reply as it would check the file. Reading is written for hostile files: every size in /config is bounded
 * and overflow-checked, and every dataset's type and shape is checked
 * against /config, before anything is allocated. Failures return -1 with a
 * one-line message (no newline) that names the file and the problem; HDF5
 * itself prints nothing.
 */
#ifndef LCATTN_GOLDEN_H
#define LCATTN_GOLDEN_H

#include "lcattn.h"

#include <stddef.h>
#include <stdint.h>

#define LCIO_SCHEMA "lcattn-golden/1"

/* Sanity bounds for what a file may ask us to allocate. */
#define LCIO_MAX_LEN   ((int64_t)1 << 24) /* T, Tq, Tk, nseq, chunk, block */
#define LCIO_MAX_SIZE  ((int64_t)1 << 16) /* heads and head sizes */
#define LCIO_MAX_ELEMS ((int64_t)1 << 28) /* elements of one tensor (2 GiB) */

#define LCIO_MAX_IN     8
#define LCIO_MAX_OUT    2
#define LCIO_MAX_METRIC 16

/* One float64 tensor of the case; data == NULL while absent or unread. */
struct lcio_tensor {
	const char *name;  /* dataset name, from the schema table */
	int rank;
	int64_t dims[4];
	int64_t n;         /* product of dims, <= LCIO_MAX_ELEMS */
	int optional;      /* state0: may be absent from /inputs */
	double *data;
};

/* A scalar probe result kept in /metrics/NAME with a "definition". */
struct lcio_metric {
	const char *name;
	const char *definition;
	double value;
};

struct lcio_case {
	/* /config: variant, sizes and options; backend, dtype, algo are not
	 * part of a case and stay at their lca_params_init() defaults. */
	lca_params p;
	int64_t Tq, Tk;       /* deltanet, lightning: both equal T */
	int64_t nseq;         /* 1 without cu_seqlens */
	int64_t *cu_seqlens;  /* [nseq + 1] int64, or NULL */

	/* root attributes ("" / 0 when absent) */
	char *name;           /* "case" */
	char *generator;
	char *command;
	uint64_t seed;
	int has_seed;

	/* layout from lcio_layout(): the variant's tensors in schema order */
	struct lcio_tensor in[LCIO_MAX_IN];
	int nin;
	struct lcio_tensor out[LCIO_MAX_OUT];
	int nout;

	/* written only (gen); the strings are not owned */
	struct lcio_metric metric[LCIO_MAX_METRIC];
	int nmetric;
};

/* What lcio_read() loads and lcio_write() stores. */
enum {
	LCIO_INPUTS = 1,
	LCIO_OUTPUTS = 2,
	LCIO_METRICS = 4  /* lcio_write() only */
};

/* Zero *c and set p to the defaults of variant v. */
void lcio_case_init(struct lcio_case *c, lca_variant v);

/* Free every buffer of *c and zero it. */
void lcio_case_free(struct lcio_case *c);

/* From the configuration in *c (sizes, nseq, cu_seqlens), fill in[] and out[]
 * with the variant's tensor names and shapes; tensor data already there is
 * freed. -1 with a message if a size is out of bounds or overflows. */
int lcio_layout(struct lcio_case *c, char *err, size_t errlen);

/* Allocate every tensor of in[] (not the optional ones unless with_optional)
 * and out[], zero-filled. -1 with a message when out of memory. */
int lcio_alloc(struct lcio_case *c, int with_optional, char *err, size_t errlen);

/* The input or output tensor called name, or NULL. */
struct lcio_tensor *lcio_find(struct lcio_case *c, int output, const char *name);

/* Read a schema file: root attributes and /config always, plus /inputs
 * and/or /outputs by the what flags. */
int lcio_read(const char *path, unsigned what, struct lcio_case *c,
	char *err, size_t errlen);

/* Read a candidate's root attributes and /outputs, each output shaped as
 * in golden (whose configuration is copied into *cand). The candidate needs
 * no /config or /inputs; a variant attribute, if present, must match. */
int lcio_read_candidate(const char *path, const struct lcio_case *golden,
	struct lcio_case *cand, char *err, size_t errlen);

/* lcio_read() in this process, without the child: parse the HDF5 file
 * image buf[len] (name is for messages). For fuzzing, and what the child
 * runs. */
int lcio_read_image(const void *buf, size_t len, const char *name, unsigned what,
	struct lcio_case *c, char *err, size_t errlen);

/* Write *c: root attributes and /config always; /inputs, /outputs and
 * /metrics by the what flags. Byte-reproducible: no timestamps. On failure
 * the partial file is removed. */
int lcio_write(const char *path, const struct lcio_case *c, unsigned what,
	char *err, size_t errlen);

/* Read the scalar float64 /metrics/name of the file at path into *value:
 * 0 when read, 1 when the file has no such metric, -1 with a message. */
int lcio_read_metric(const char *path, const char *name, double *value,
	char *err, size_t errlen);

/* "softmax", "mla", "deltanet", "lightning"; NULL for others. */
const char *lcio_variant_name(lca_variant v);
/* 0 and *v set if s names a variant, else -1. */
int lcio_variant_parse(const char *s, lca_variant *v);

#endif /* LCATTN_GOLDEN_H */
