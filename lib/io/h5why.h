/* h5why.h - the one-line reason HDF5 gives for a failure (lib/io). */
#ifndef LCATTN_IO_H5WHY_H
#define LCATTN_IO_H5WHY_H

/* The innermost message on HDF5's error stack (where it went wrong), or
 * "no detail from HDF5"; written into why[160], which is returned. */
const char *lcio_h5why(char why[160]);

#endif
