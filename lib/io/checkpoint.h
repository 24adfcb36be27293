/*
 * checkpoint.h - decode-cache checkpoints in HDF5 (schema
 * "lcattn-checkpoint/1", lcattn-checkpoint(5)): the bytes of
 * lca_cache_save() as one dataset, beside attributes and a lengths dataset
 * that h5py or h5dump users can read without lcattn. Used by the tools and
 * tests; the library itself never touches HDF5, and this header does not
 * include hdf5.h.
 *
 * Files are parsed in a confined child process (sandbox.h); this process
 * only checks and uses its reply. Failures return -1 with a one-line message (no newline) naming the file
 * and the problem; HDF5 itself prints nothing.
 */
#ifndef LCATTN_CHECKPOINT_H
#define LCATTN_CHECKPOINT_H

#include "lcattn.h"

#include <stddef.h>
#include <stdint.h>

#define LCIO_CKPT_SCHEMA "lcattn-checkpoint/1"
/* The first 8 bytes of lca_cache_save()'s format. */
#define LCIO_RAW_MAGIC "LCACACHE"

/* What a checkpoint file says about itself (its attributes and /lengths). */
struct lcio_ckpt_info {
	char variant[16];     /* "softmax", "mla", "deltanet", "lightning" */
	char dtype[8];        /* "f64", "f32" */
	int64_t format;       /* format version of the lca_cache_save() bytes */
	int64_t nseq;
	int64_t capacity;     /* tokens per sequence of the saved cache */
	int64_t H, Hkv, Hk, dk, dv, dn, dr, dc; /* 0 where the variant has none */
	int64_t *lengths;     /* [nseq] tokens each sequence has seen (malloc'd) */
	size_t bytes;         /* size of the saved bytes (/cache) */
};

/* Write cache to a new file at path (replaced if it exists). Byte-
 * reproducible: no timestamps. On failure the partial file is removed. */
int lcio_checkpoint_write(const char *path, const lca_cache *cache, char *err,
	size_t errlen);

/* Read the checkpoint at path into cache with lca_cache_load(). *status
 * (may be NULL) receives lca_cache_load()'s status, or LCA_ERR_ARG when the
 * file cannot be opened, LCA_ERR_CORRUPT when it is not a well-formed
 * checkpoint file, LCA_ERR_NOMEM when out of memory. On any failure the
 * cache is untouched. */
int lcio_checkpoint_read(const char *path, lca_cache *cache, lca_status *status,
	char *err, size_t errlen);

/* The lca_cache_save() bytes of the file at path, read in the confined
 * child: /cache of an HDF5 checkpoint (*raw = 0), or the file itself when
 * it starts with LCIO_RAW_MAGIC (*raw = 1). Nothing is validated beyond
 * the container: hand the bytes to lca_cache_load(). *b (malloc'd, *n
 * bytes) is NULL on failure; *status as lcio_checkpoint_read() gives. */
int lcio_checkpoint_bytes(const char *path, unsigned char **b, size_t *n, int *raw,
	lca_status *status, char *err, size_t errlen);

/* lcio_checkpoint_read() in this process, without the confined child:
 * parse the HDF5 file image buf[len] (name is for messages). For fuzzing. */
int lcio_checkpoint_read_image(const void *buf, size_t len, const char *name,
	lca_cache *cache, lca_status *status, char *err, size_t errlen);

/* Read only the attributes and /lengths. Free with lcio_ckpt_info_free(). */
int lcio_checkpoint_info(const char *path, struct lcio_ckpt_info *info, char *err,
	size_t errlen);
void lcio_ckpt_info_free(struct lcio_ckpt_info *info);

#endif /* LCATTN_CHECKPOINT_H */
