/*
 * h5util.c - HDF5 helpers of lib/io: the short reason our one-line messages
 * end with (HDF5 itself is kept silent: H5Eset_auto2 off), and scalar
 * attribute writers used by the golden and checkpoint writers.
 */
#include "h5util.h"

#include <hdf5_hl.h>

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

/* HDF5 looks for its signature at 0, 512, 1024, 2048, ... (a user block
 * may come first). */
static int has_signature(const unsigned char *b, size_t len)
{
	static const unsigned char sig[8] = { 0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n' };

	for (size_t at = 0; at <= len && len - at >= sizeof sig; at = at ? 2 * at : 512)
		if (!memcmp(b + at, sig, sizeof sig))
			return 1;
	return 0;
}

hid_t lcio_open_image(const void *buf, size_t len, char why[160], int *not_hdf5)
{
	hid_t f;

	why[0] = 0;
	*not_hdf5 = !buf || !has_signature(buf, len);
	if (*not_hdf5)
		return -1;
	/* Read-only and in place: HDF5 neither copies nor frees the bytes. */
	f = H5LTopen_file_image((void *)buf, len,
		H5LT_FILE_IMAGE_DONT_COPY | H5LT_FILE_IMAGE_DONT_RELEASE);
	if (f < 0) {
		const char *w = lcio_h5why(why);

		if (w != why) /* HDF5 left no message: say so */
			snprintf(why, 160, "%s", w);
	}
	return f;
}
