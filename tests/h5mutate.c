/*
 * h5mutate.c - damage a golden file in one chosen way, in place, for
 * tests/malformed.sh. A test helper: it may print and exit.
 *
 *   h5mutate FILE rootstr NAME VALUE    set root string attribute NAME
 *   h5mutate FILE rmattr OBJ NAME       delete attribute NAME of OBJ
 *   h5mutate FILE cfgint NAME VALUE     set /config attribute NAME to int64 VALUE
 *   h5mutate FILE cfgstr NAME VALUE     set /config attribute NAME to a string
 *   h5mutate FILE rm PATH               unlink a dataset or group
 *   h5mutate FILE shape PATH            replace a dataset by a float64 [2][3]
 *   h5mutate FILE type PATH int32|float32   same shape, another type
 *   h5mutate FILE i64 PATH a,b,c        replace a dataset by a 1-D int64 array
 *   h5mutate FILE nan PATH              set the first element of a float64 dataset to NaN
 *   h5mutate FILE scale PATH FACTOR     multiply a float64 dataset by FACTOR
 *   h5mutate FILE bf16 PATH             round a float64 dataset to bfloat16
 */
#include <hdf5.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
	fprintf(stderr, "h5mutate: %s failed\n", what);
	exit(99);
}

static void ok(herr_t e, const char *what)
{
	if (e < 0)
		die(what);
}

static void set_attr(hid_t obj, const char *name, hid_t type, const void *val)
{
	hid_t sp = H5Screate(H5S_SCALAR), a;

	if (H5Aexists(obj, name) > 0)
		ok(H5Adelete(obj, name), "H5Adelete");
	if ((a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0)
		die("H5Acreate2");
	ok(H5Awrite(a, type, val), "H5Awrite");
	H5Aclose(a);
	H5Sclose(sp);
}

static void set_str(hid_t obj, const char *name, const char *s)
{
	hid_t t = H5Tcopy(H5T_C_S1);

	H5Tset_size(t, strlen(s) + 1);
	set_attr(obj, name, t, s);
	H5Tclose(t);
}

/* Replace dataset path by a new one of the given type and shape (data zero
 * except as given). */
static void replace(hid_t f, const char *path, hid_t type, int rank, const hsize_t *dims,
	const void *data)
{
	hid_t sp = H5Screate_simple(rank, dims, NULL), d;

	if (H5Lexists(f, path, H5P_DEFAULT) > 0)
		ok(H5Ldelete(f, path, H5P_DEFAULT), "H5Ldelete");
	if ((d = H5Dcreate2(f, path, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0)
		die("H5Dcreate2");
	if (data)
		ok(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "H5Dwrite");
	H5Dclose(d);
	H5Sclose(sp);
}

static void retype(hid_t f, const char *path, const char *tname)
{
	hid_t d = H5Dopen2(f, path, H5P_DEFAULT), sp;
	hsize_t dims[8];
	int rank;

	if (d < 0)
		die("H5Dopen2");
	sp = H5Dget_space(d);
	rank = H5Sget_simple_extent_dims(sp, dims, NULL);
	H5Sclose(sp);
	H5Dclose(d);
	replace(f, path, strcmp(tname, "int32") ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32, rank, dims, NULL);
}

static void first_nan(hid_t f, const char *path)
{
	hid_t d = H5Dopen2(f, path, H5P_DEFAULT), sp, msp;
	hsize_t one = 1, at[8] = { 0 };
	double x = NAN;

	if (d < 0)
		die("H5Dopen2");
	sp = H5Dget_space(d);
	msp = H5Screate_simple(1, &one, NULL);
	ok(H5Sselect_elements(sp, H5S_SELECT_SET, 1, at), "H5Sselect_elements");
	ok(H5Dwrite(d, H5T_NATIVE_DOUBLE, msp, sp, H5P_DEFAULT, &x), "H5Dwrite");
	H5Sclose(msp);
	H5Sclose(sp);
	H5Dclose(d);
}

/* x rounded to the nearest bfloat16 (ties to even), for finite x. */
static double bf16(double x)
{
	float f = (float)x;
	uint32_t u;

	memcpy(&u, &f, sizeof u);
	u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* Every element of the float64 dataset PATH through scale (factor) or,
 * with factor 0, through bf16 rounding. */
static void rewrite(hid_t f, const char *path, double factor)
{
	hid_t d = H5Dopen2(f, path, H5P_DEFAULT), sp;
	hssize_t n;
	double *x;

	if (d < 0)
		die("H5Dopen2");
	sp = H5Dget_space(d);
	if ((n = H5Sget_simple_extent_npoints(sp)) < 0 || !(x = malloc((size_t)n * sizeof *x + 1)))
		die("H5Sget_simple_extent_npoints");
	ok(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), "H5Dread");
	for (hssize_t i = 0; i < n; i++)
		x[i] = factor != 0 ? x[i] * factor : bf16(x[i]);
	ok(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), "H5Dwrite");
	free(x);
	H5Sclose(sp);
	H5Dclose(d);
}

static void int_list(hid_t f, const char *path, const char *list)
{
	long long v[64];
	hsize_t n = 0;
	char *end;

	for (const char *s = list; n < 64; s = end + 1) {
		v[n++] = strtoll(s, &end, 10);
		if (*end != ',')
			break;
	}
	replace(f, path, H5T_NATIVE_LLONG, 1, &n, v);
}

int main(int argc, char **argv)
{
	const char *op = argc > 2 ? argv[2] : "", *a = argc > 3 ? argv[3] : "";
	const char *b = argc > 4 ? argv[4] : "";
	hid_t f;

	if (argc < 4) {
		fprintf(stderr, "usage: h5mutate FILE OP ARGS (see the source)\n");
		return 99;
	}
	if ((f = H5Fopen(argv[1], H5F_ACC_RDWR, H5P_DEFAULT)) < 0)
		die("H5Fopen");
	if (!strcmp(op, "rootstr")) {
		set_str(f, a, b);
	} else if (!strcmp(op, "rmattr")) {
		ok(H5Adelete_by_name(f, a, b, H5P_DEFAULT), "H5Adelete_by_name");
	} else if (!strcmp(op, "cfgint") || !strcmp(op, "cfgstr")) {
		hid_t g = H5Gopen2(f, "config", H5P_DEFAULT);
		long long x = strtoll(b, NULL, 10);

		if (g < 0)
			die("H5Gopen2");
		if (op[3] == 'i')
			set_attr(g, a, H5T_NATIVE_LLONG, &x);
		else
			set_str(g, a, b);
		H5Gclose(g);
	} else if (!strcmp(op, "rm")) {
		ok(H5Ldelete(f, a, H5P_DEFAULT), "H5Ldelete");
	} else if (!strcmp(op, "shape")) {
		hsize_t dims[2] = { 2, 3 };
		double zero[6] = { 0 };

		replace(f, a, H5T_NATIVE_DOUBLE, 2, dims, zero);
	} else if (!strcmp(op, "type")) {
		retype(f, a, b);
	} else if (!strcmp(op, "i64")) {
		int_list(f, a, b);
	} else if (!strcmp(op, "nan")) {
		first_nan(f, a);
	} else if (!strcmp(op, "scale")) {
		rewrite(f, a, strtod(b, NULL));
	} else if (!strcmp(op, "bf16")) {
		rewrite(f, a, 0);
	} else {
		fprintf(stderr, "h5mutate: unknown operation %s\n", op);
		return 99;
	}
	ok(H5Fclose(f), "H5Fclose");
	return 0;
}
