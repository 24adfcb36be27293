/*
 * sandbox.h - files from outside are parsed in a confined child process.
 *
 * HDF5 1.10 can crash, loop or read past its own buffers on a damaged
 * file, before any check of ours runs. So the tools never call HDF5 on a
 * file they did not write: lcio_sandbox() maps the file, forks, and the
 * child parses the image and sends what it found through a pipe; the
 * parent decodes that reply, checking every size and value again (the
 * child is as untrusted as the file), and never parses the file itself.
 *
 * The child holds nothing but the pipe and the image: every other
 * descriptor is closed, core dumps and file growth are off, and where
 * Linux offers seccomp it cannot open a file, create a socket, start a
 * program or process, or signal another process. An alarm ends a child
 * that loops.
 */
#ifndef LCATTN_IO_SANDBOX_H
#define LCATTN_IO_SANDBOX_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A child that takes longer is taken for a parser looping on a damaged file. */
#define LCIO_SANDBOX_SECONDS 120

/* What the child's parser, the parent's take and lcio_sandbox() return. */
enum {
	LCIO_PARSED = 0,      /* the reply follows */
	LCIO_BAD_FILE = -1,   /* the message is a verdict on the file */
	LCIO_OWN_FAULT = -2,  /* the reader failed for its own reasons (memory) */
	LCIO_NO_FILE = -3     /* lcio_sandbox(): the file cannot be opened */
};

/* A reader in three steps: parse and send run in the child, take in the
 * parent. parse reads image[len] (a private copy-on-write mapping of the
 * file) into arg and returns LCIO_PARSED, or another code with a one-line
 * message in err; send writes what parse found to out (0, or -1); take
 * decodes it from in into arg, trusting none of it (LCIO_PARSED, or
 * LCIO_BAD_FILE or LCIO_OWN_FAULT with a message in err). */
struct lcio_reader {
	int (*parse)(void *arg, void *image, size_t len, char *err, size_t errlen);
	int (*send)(void *arg, FILE *out);
	int (*take)(void *arg, FILE *in, char *err, size_t errlen);
};

/* Read the file at path with rd in a confined child. LCIO_PARSED (0) on
 * success, else a negative code above with a one-line message "path: ..."
 * that says whether the file was found bad (a verdict, a crash or a
 * timeout of the reader) or the reader failed for its own reasons (no
 * process, out of memory). */
int lcio_sandbox(const char *path, const struct lcio_reader *rd, void *arg,
	char *err, size_t errlen);

/* Confine the calling process as lcio_sandbox() confines its child, keeping
 * descriptor keep (moved to 3 if it is not; the new number is returned) and
 * 0, 1, 2 on /dev/null. -1 if a step that must work failed; seccomp itself
 * is skipped where the kernel lacks it (*filtered then says 0). */
int lcio_confine(int keep, int *filtered);

/* The reply's wire format: host-endian, one writer and one reader built
 * from the same binary. Each returns 0, or -1 at a short read or write. */
int lcio_wput(FILE *f, const void *p, size_t n);
int lcio_wget(FILE *f, void *p, size_t n);
int lcio_wput_i64(FILE *f, int64_t x);
int lcio_wget_i64(FILE *f, int64_t *x);
/* A string or NULL; lcio_wget_str() refuses one longer than max bytes and
 * returns a malloc'd copy in *s (NULL for NULL). */
int lcio_wput_str(FILE *f, const char *s);
int lcio_wget_str(FILE *f, size_t max, char **s);

#endif /* LCATTN_IO_SANDBOX_H */
