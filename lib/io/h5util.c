/*
 * h5util.c - HDF5 helpers of lib/io: the short reason our one-line messages
 * end with (HDF5 itself is kept silent: H5Eset_auto2 off), and scalar
 * attribute writers used by the golden and checkpoint writers.
 */
#include "h5util.h"

#include <stdio.h>
#include <string.h>

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

int lcio_put_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype,
	const void *val, char why[160])
{
	hid_t sp = H5Screate(H5S_SCALAR), a = -1;
	int r = 0;

	if (sp < 0 || (a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
	    H5Awrite(a, mtype, val) < 0) {
		lcio_h5why(why);
		r = -1;
	}
	if (a >= 0)
		H5Aclose(a);
	if (sp >= 0)
		H5Sclose(sp);
	return r;
}

int lcio_put_str(hid_t obj, const char *name, const char *s, char why[160])
{
	hid_t t = H5Tcopy(H5T_C_S1);
	int r;

	if (t < 0 || H5Tset_size(t, strlen(s) + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
	    H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
		snprintf(why, 160, "cannot make a string type");
		r = -1;
	} else {
		r = lcio_put_attr(obj, name, t, t, s, why);
	}
	if (t >= 0)
		H5Tclose(t);
	return r;
}
