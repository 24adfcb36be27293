/*
 * h5why.c - turn HDF5's error stack into the short reason our one-line
 * messages end with (the library itself is kept silent: H5Eset_auto2 off).
 */
#include "h5why.h"

#include <hdf5.h>
#include <stdio.h>

static herr_t first_error(unsigned n, const H5E_error2_t *e, void *data)
{
	char *why = data;

	if (n == 0 && e->desc)
		snprintf(why, 160, "%s", e->desc);
	return 0;
}

const char *lcio_h5why(char why[160])
{
	why[0] = 0;
	H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_error, why);
	return why[0] ? why : "no detail from HDF5";
}
