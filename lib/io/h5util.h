/* h5util.h - small HDF5 helpers shared by golden files and checkpoints. */
#ifndef LCATTN_IO_H5UTIL_H
#define LCATTN_IO_H5UTIL_H

#include <hdf5.h>

/* The innermost message on HDF5's error stack (where it went wrong), or
 * "no detail from HDF5"; written into why[160], which is returned. */
const char *lcio_h5why(char why[160]);

/* Write the scalar attribute name (file type ftype, memory type mtype) on
 * obj. 0 on success; -1 with the reason in why[160]. */
int lcio_put_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype,
	const void *val, char why[160]);

/* A fixed-length, NUL-terminated UTF-8 string attribute (h5py and h5dump
 * read it as text); returns as lcio_put_attr(). */
int lcio_put_str(hid_t obj, const char *name, const char *s, char why[160]);

/* Open the HDF5 file image buf[len] read-only, without copying it. A file
 * id, or -1 with *not_hdf5 set when the bytes hold no HDF5 signature, else
 * the reason in why[160]. */
hid_t lcio_open_image(const void *buf, size_t len, char why[160], int *not_hdf5);

#endif
