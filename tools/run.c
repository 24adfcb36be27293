/*
 * run.c - `lcattn run`: read the /config and /inputs of a golden file (ours
 * or anyone's, see lcattn-golden(5)), run one backend and dtype through the
 * public API, and write a candidate file with the same /config and the
 * backend's /outputs, for `lcattn check`.
 */
#include "lcattn.h"
#include "golden.h"
#include "tool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const backend_names[] = { "ref", "cpu", "cuda" };
static const char *const dtype_names[] = { "f64", "f32", "bf16" };
static const char *const algo_names[] = { "auto", "naive", "absorbed", "recurrent", "chunked" };

static int lookup(const char *s, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

int tool_parse_backend(const char *s, lca_backend *out)
{
	int i = lookup(s, backend_names, 3);

	if (i >= 0)
		*out = (lca_backend)i;
	return i >= 0 ? 0 : -1;
}

int tool_parse_dtype(const char *s, lca_dtype *out)
{
	int i = lookup(s, dtype_names, 3);

	if (i >= 0)
		*out = (lca_dtype)i;
	return i >= 0 ? 0 : -1;
}

int tool_parse_algo(const char *s, lca_algo *out)
{
	int i = lookup(s, algo_names, 5);

	if (i >= 0)
		*out = (lca_algo)i;
	return i >= 0 ? 0 : -1;
}

const char *tool_backend_name(lca_backend b)
{
	return (unsigned)b < 3 ? backend_names[b] : "?";
}

const char *tool_dtype_name(lca_dtype d)
{
	return (unsigned)d < 3 ? dtype_names[d] : "?";
}

/* float -> bfloat16 bits, round to nearest even (inputs are finite here:
 * the library refuses non-finite ones). */
static uint16_t bf16_from_float(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof u);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

double tool_bf16_round(double x)
{
	uint32_t u = (uint32_t)bf16_from_float((float)x) << 16;
	float f;

	memcpy(&f, &u, sizeof f);
	return f;
}

int tool_bf16_stored(const char *name)
{
	return strcmp(name, "state0") && strcmp(name, "state") &&
	    strcmp(name, "dstate") && strcmp(name, "dstate0");
}

static size_t dtype_size(lca_dtype t)
{
	return t == LCA_F64 ? 8 : t == LCA_F32 ? 4 : 2;
}

/* A copy of n doubles in dtype t (t != LCA_F64); NULL when out of memory. */
static void *to_dtype(const double *x, int64_t n, lca_dtype t)
{
	void *y = malloc((size_t)n * dtype_size(t));

	for (int64_t i = 0; y && i < n; i++) {
		if (t == LCA_F32)
			((float *)y)[i] = (float)x[i];
		else
			((uint16_t *)y)[i] = bf16_from_float((float)x[i]);
	}
	return y;
}

static void from_dtype(const void *y, int64_t n, lca_dtype t, double *x)
{
	for (int64_t i = 0; i < n; i++) {
		if (t == LCA_F32) {
			x[i] = ((const float *)y)[i];
		} else {
			uint32_t u = (uint32_t)((const uint16_t *)y)[i] << 16;
			float f;

			memcpy(&f, &u, sizeof f);
			x[i] = f;
		}
	}
}

/* Element type of a tensor on a backend: the plan's dtype, except that the
 * cuda backend keeps recurrent state (state0, state) in float32, and so
 * do bf16 plans on every backend. */
static lca_dtype elem_type(const struct lcio_tensor *t, lca_backend b, lca_dtype d)
{
	return (b == LCA_BACKEND_CUDA || d == LCA_BF16) && !tool_bf16_stored(t->name) ?
		LCA_F32 : d;
}

/* A backend buffer holding the n doubles of x converted to dtype t. */
static lca_status upload(lca_backend b, lca_dtype t, const double *x, int64_t n, void **dev)
{
	size_t bytes = (size_t)n * dtype_size(t);
	void *host = t == LCA_F64 ? (void *)x : to_dtype(x, n, t);
	lca_status s;

	*dev = NULL;
	if (!host)
		return LCA_ERR_NOMEM;
	s = lca_buffer_alloc(b, bytes, dev);
	if (!s)
		s = lca_buffer_copy(b, *dev, host, bytes, LCA_COPY_HOST_TO_DEVICE);
	if (host != x)
		free(host);
	return s;
}

/* The n elements of type t in backend buffer dev, as doubles in x. */
static lca_status download(lca_backend b, lca_dtype t, const void *dev, int64_t n, double *x)
{
	size_t bytes = (size_t)n * dtype_size(t);
	void *host;
	lca_status s;

	if (t == LCA_F64)
		return lca_buffer_copy(b, x, dev, bytes, LCA_COPY_DEVICE_TO_HOST);
	if (!(host = malloc(bytes)))
		return LCA_ERR_NOMEM;
	if (!(s = lca_buffer_copy(b, host, dev, bytes, LCA_COPY_DEVICE_TO_HOST)))
		from_dtype(host, n, t, x);
	free(host);
	return s;
}

static lca_status forward(const lca_plan *plan, const struct lcio_case *c,
	void *const in[], void *const o[])
{
	const int64_t *cu = c->cu_seqlens;
	int64_t ns = cu ? c->nseq : 0;

	switch (c->p.variant) {
	case LCA_SOFTMAX:
		return lca_softmax_forward(plan, c->Tq, c->Tk, in[0], in[1], in[2], cu, ns,
			o[0], o[1]);
	case LCA_MLA:
		return lca_mla_forward(plan, c->Tq, c->Tk, in[0], in[1], in[2], in[3], in[4],
			in[5], cu, ns, o[0], o[1]);
	case LCA_DELTANET:
		return lca_deltanet_forward(plan, c->Tq, in[0], in[1], in[2], in[3], in[4], cu,
			ns, in[5], o[0], o[1]);
	case LCA_LIGHTNING:
		return lca_lightning_forward(plan, c->Tq, in[0], in[1], in[2], in[3], cu, ns,
			in[4], o[0], o[1]);
	}
	return LCA_ERR_ARG;
}

/* A gradient case's backward: in[] holds the forward's inputs, then do
 * and (deltanet, lightning) dstate; o[2 ..] the gradients in input order
 * (lcattn-golden(5)). */
static lca_status backward(const lca_plan *plan, const struct lcio_case *c,
	void *const in[], void *const o[])
{
	const int64_t *cu = c->cu_seqlens;
	int64_t ns = cu ? c->nseq : 0;

	switch (c->p.variant) {
	case LCA_SOFTMAX:
		return lca_softmax_backward(plan, c->Tq, c->Tk, in[0], in[1], in[2], cu, ns,
			in[3], o[2], o[3], o[4]);
	case LCA_MLA:
		return lca_mla_backward(plan, c->Tq, c->Tk, in[0], in[1], in[2], in[3], in[4],
			in[5], cu, ns, in[6], o[2], o[3], o[4], o[5], o[6], o[7]);
	case LCA_DELTANET:
		return lca_deltanet_backward(plan, c->Tq, in[0], in[1], in[2], in[3], in[4],
			cu, ns, in[5], in[6], in[7], o[2], o[3], o[4], o[5], o[6], o[7]);
	case LCA_LIGHTNING:
		return lca_lightning_backward(plan, c->Tq, in[0], in[1], in[2], in[3], cu, ns,
			in[4], in[5], in[6], o[2], o[3], o[4], o[5]);
	}
	return LCA_ERR_ARG;
}

lca_status tool_compute(const struct lcio_case *c, lca_backend backend,
	lca_dtype dtype, lca_algo algo, double *const out[], lca_params *resolved,
	char *why, size_t whylen)
{
	void *in[LCIO_MAX_IN] = { 0 }, *o[LCIO_MAX_OUT] = { 0 };
	lca_params p = c->p;
	lca_plan *plan;
	lca_status s;

	p.backend = backend, p.dtype = dtype, p.algo = algo;
	if ((s = lca_plan_create(&p, &plan))) {
		snprintf(why, whylen, "%s", lca_last_error());
		return s;
	}
	if (resolved)
		lca_plan_params(plan, resolved);
	/* Every tensor goes through the buffer helpers: host memory for ref
	 * and cpu, device memory for cuda. cu_seqlens stays on the host. */
	/* what = the tensor or step a failure names (the status is printed
	 * by the caller, so why never repeats it) */
	const char *what = NULL, *step = NULL;

	for (int i = 0; !s && i < c->nin; i++)
		if (c->in[i].data && (s = upload(backend, elem_type(&c->in[i], backend,
		    dtype), c->in[i].data, c->in[i].n, &in[i])))
			what = c->in[i].name, step = "input";
	for (int i = 0; !s && i < c->nout; i++)
		if ((s = lca_buffer_alloc(backend, (size_t)c->out[i].n *
		    dtype_size(elem_type(&c->out[i], backend, dtype)), &o[i])))
			what = c->out[i].name, step = "output buffer";
	if (!s && (s = forward(plan, c, in, o)))
		step = "forward call";
	if (!s && c->grads && (s = backward(plan, c, in, o)))
		step = "backward call";
	for (int i = 0; !s && i < c->nout; i++)
		if ((s = download(backend, elem_type(&c->out[i], backend, dtype), o[i],
		    c->out[i].n, out[i])))
			what = c->out[i].name, step = "output copy";
	if (s) /* before any other lcattn call can replace the message */
		snprintf(why, whylen, "%s%s%s: %s", step, what ? " " : "",
			what ? what : "", *lca_last_error() ? lca_last_error() :
			"no memory for its dtype conversion");
	for (int i = 0; i < c->nin; i++)
		lca_buffer_free(backend, in[i]);
	for (int i = 0; i < c->nout; i++)
		lca_buffer_free(backend, o[i]);
	lca_plan_destroy(plan);
	return s;
}

static int usage(FILE *f)
{
	fprintf(f,
		"usage: lcattn run [--backend ref|cpu|cuda] [--dtype f64|f32|bf16]\n"
		"                  [--algo auto|naive|absorbed|recurrent|chunked]\n"
		"                  [--mpi [--layout contiguous|zigzag]] IN.h5 OUT.h5\n"
		"Reads /config and /inputs of IN.h5 (schema lcattn-golden/1, see\n"
		"lcattn-golden(5)), runs the backend with inputs converted to the dtype,\n"
		"and writes OUT.h5 with the same /config and the /outputs as float64.\n"
		"Defaults: --backend ref --dtype f64 --algo auto.\n"
		"--mpi (under mpirun): the tokens split over the ranks in contiguous\n"
		"runs (default) or zigzag chunks (softmax, mla: a packed batch at once;\n"
		"deltanet, lightning: each sequence in turn), run through liblcattn_mpi\n"
		"(ref or cpu, f64 or f32, no gradient cases); rank 0 writes OUT.h5.\n");
	return f == stdout ? 0 : 2;
}

struct run_args {
	lca_backend backend;
	lca_dtype dtype;
	lca_algo algo;
	const char *in, *out;
	int mpi;              /* --mpi: over the ranks (run_mpi.c) */
	const char *layout;   /* --layout */
};

static int parse(int argc, char **argv, struct run_args *a)
{
	int npos = 0;

	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int bad;

		if (!strcmp(o, "--help") || !strcmp(o, "-h"))
			return usage(stdout) - 1;
		if (!strcmp(o, "--mpi")) {
			a->mpi = 1;
			continue;
		}
		if (o[0] != '-' || !o[1]) {
			if (npos == 2) {
				fprintf(stderr, "lcattn run: unexpected argument %s\n", o);
				return 2;
			}
			*(npos++ ? &a->out : &a->in) = o;
			continue;
		}
		if (!v) {
			fprintf(stderr, "lcattn run: %s needs a value\n", o);
			return 2;
		}
		i++;
		if (!strcmp(o, "--backend"))
			bad = tool_parse_backend(v, &a->backend);
		else if (!strcmp(o, "--dtype"))
			bad = tool_parse_dtype(v, &a->dtype);
		else if (!strcmp(o, "--algo"))
			bad = tool_parse_algo(v, &a->algo);
		else if (!strcmp(o, "--layout")) {
			bad = strcmp(v, "contiguous") && strcmp(v, "zigzag");
			a->layout = v;
		} else
			bad = 1;
		if (bad) {
			fprintf(stderr, "lcattn run: bad option %s %s (see lcattn run --help)\n", o, v);
			return 2;
		}
	}
	if (a->layout && !a->mpi) {
		fprintf(stderr, "lcattn run: --layout needs --mpi\n");
		return 2;
	}
	if (npos == 2)
		return 0;
	fprintf(stderr, "lcattn run: needs IN.h5 and OUT.h5 (see lcattn run --help)\n");
	return 2;
}

/* Run and write; the message of a failure goes to stderr as one line. */
static int run_case(const struct run_args *a, struct lcio_case *c)
{
	struct lcio_case out;
	double *bufs[LCIO_MAX_OUT];
	char err[512], gen[96], why[400];
	lca_params resolved;
	lca_status s;
	int rc = 2, speak = !a->mpi || tool_mpi_rank() == 0;

	lcio_case_init(&out, c->p.variant);
	out.p = c->p, out.Tq = c->Tq, out.Tk = c->Tk, out.nseq = c->nseq;
	out.grads = c->grads;
	if (lcio_layout(&out, err, sizeof err) || lcio_alloc(&out, 0, err, sizeof err)) {
		fprintf(stderr, "lcattn run: %s: %s\n", a->in, err);
		goto done;
	}
	for (int i = 0; i < out.nout; i++)
		bufs[i] = out.out[i].data;
	if (a->mpi)
		s = tool_compute_mpi(c, a->backend, a->dtype, a->algo,
			a->layout && !strcmp(a->layout, "zigzag"), bufs, &resolved, why, sizeof why);
	else
		s = tool_compute(c, a->backend, a->dtype, a->algo, bufs, &resolved, why, sizeof why);
	if (s == LCA_ERR_UNSUPPORTED || s == LCA_ERR_NO_DEVICE) {
		if (speak)
			fprintf(stderr, "lcattn run: backend %s dtype %s unavailable%s: %s\n",
				tool_backend_name(a->backend), tool_dtype_name(a->dtype),
				a->mpi ? " over MPI" : "", why);
		goto done;
	}
	if (s) {
		if (speak)
			fprintf(stderr, "lcattn run: %s: %s: %s\n", a->in, lca_strerror(s), why);
		goto done;
	}
	if (!speak) { /* rank 0 writes the file */
		rc = 0;
		goto done;
	}
	/* The resolved parameters: the candidate states the scale and RoPE it ran. */
	out.p.scale = resolved.scale, out.p.rope_dim = resolved.rope_dim;
	snprintf(gen, sizeof gen, "lcattn %s %s %s", lca_version(),
		tool_backend_name(a->backend), tool_dtype_name(a->dtype));
	out.generator = gen;
	out.name = c->name;
	out.seed = c->seed, out.has_seed = c->has_seed;
	if (lcio_write(a->out, &out, LCIO_OUTPUTS, err, sizeof err))
		fprintf(stderr, "lcattn run: %s\n", err);
	else
		rc = 0;
	out.generator = NULL, out.name = NULL; /* borrowed */
done:
	lcio_case_free(&out);
	return rc;
}

int tool_run(int argc, char **argv)
{
	struct run_args a = { LCA_BACKEND_REF, LCA_F64, LCA_ALGO_AUTO, NULL, NULL, 0, NULL };
	struct lcio_case c;
	char err[512];
	int rc;

	if ((rc = parse(argc, argv, &a)))
		return rc < 0 ? 0 : rc;
	/* MPI only when asked for: a plain run never initialises it */
	if (a.mpi && tool_mpi_begin(err, sizeof err)) {
		fprintf(stderr, "lcattn run: %s\n", err);
		return 2;
	}
	rc = lcio_read(a.in, LCIO_INPUTS, &c, err, sizeof err) ? 2 : 0;
	if (rc && (!a.mpi || tool_mpi_rank() == 0))
		fprintf(stderr, "lcattn run: %s\n", err);
	/* every rank reads the file: all go on, or none */
	if (a.mpi && !tool_mpi_all(rc == 0)) {
		if (rc == 0 && tool_mpi_rank() == 0)
			fprintf(stderr, "lcattn run: %s: another rank could not read it\n", a.in);
		rc = 2;
	}
	if (rc == 0)
		rc = run_case(&a, &c);
	lcio_case_free(&c);
	if (a.mpi)
		tool_mpi_end();
	return rc;
}
