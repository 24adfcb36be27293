/*
 * tensors.c - allocate a call's tensors to the shapes lcattn.h documents.
 */
#include "tensors.h"

#include <stdlib.h>
#include <string.h>

#define SENTINEL 0xa5

/* a * b * c * d, or -1 if a factor is negative or the product overflows:
 * the library must refuse such a call before touching any buffer. */
static int64_t count(int64_t a, int64_t b, int64_t c, int64_t d)
{
	int64_t x;

	if (a < 0 || b < 0 || c < 0 || d < 0 || __builtin_mul_overflow(a, b, &x) ||
	    __builtin_mul_overflow(x, c, &x) || __builtin_mul_overflow(x, d, &x))
		return -1;
	return x;
}

static void add(struct fz_call *c, const char *name, int output, int64_t n)
{
	c->t[c->nt].name = name;
	c->t[c->nt].output = output;
	c->t[c->nt].n = n;
	c->t[c->nt].sign = strcmp(name, "g") == 0 ? -1 : strcmp(name, "slope") == 0;
	c->t[c->nt].data = NULL;
	c->nt++;
}

static void layout_states(struct fz_call *c)
{
	const lca_params *p = &c->p;

	if (c->step)
		return;
	add(c, "state0", 0, count(c->N, p->H, p->dk, p->dv));
	add(c, "state", 1, count(c->N, p->H, p->dk, p->dv));
}

/* The gradient of input name (lcattn.h's argument names), or NULL for
 * an input with none (lightning's slopes). */
static const char *grad_name(const char *name)
{
	static const char *const map[][2] = {
		{ "q", "dq" }, { "k", "dk" }, { "v", "dv" }, { "g", "dg" },
		{ "beta", "dbeta" }, { "state0", "dstate0" }, { "q_nope", "dq_nope" },
		{ "q_rope", "dq_rope" }, { "ckv", "dckv" }, { "k_rope", "dk_rope" },
		{ "w_uk", "dw_uk" }, { "w_uv", "dw_uv" },
	};

	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcmp(map[i][0], name) == 0)
			return map[i][1];
	return NULL;
}

/* The backward call's tensors from the forward's: its inputs, do shaped
 * like o, dstate like state, then one gradient per input that has one. */
static void layout_backward(struct fz_call *c)
{
	struct fz_tensor fwd[FZ_MAX_TENSORS];
	int n = c->nt;

	memcpy(fwd, c->t, sizeof fwd);
	c->nt = 0;
	for (int i = 0; i < n; i++)
		if (!fwd[i].output)
			add(c, fwd[i].name, 0, fwd[i].n);
	for (int i = 0; i < n; i++)
		if (strcmp(fwd[i].name, "o") == 0)
			add(c, "do", 0, fwd[i].n);
		else if (strcmp(fwd[i].name, "state") == 0)
			add(c, "dstate", 0, fwd[i].n);
	for (int i = 0; i < n; i++)
		if (!fwd[i].output && grad_name(fwd[i].name))
			add(c, grad_name(fwd[i].name), 1, fwd[i].n);
}

void fz_layout(struct fz_call *c)
{
	const lca_params *p = &c->p;
	int64_t T = c->Tq;

	c->nt = 0;
	switch (p->variant) {
	case LCA_SOFTMAX:
		add(c, "q", 0, count(c->Tq, p->H, p->dk, 1));
		add(c, "k", 0, count(c->Tk, p->Hkv, p->dk, 1));
		add(c, "v", 0, count(c->Tk, p->Hkv, p->dv, 1));
		add(c, "o", 1, count(c->Tq, p->H, p->dv, 1));
		add(c, "lse", 1, count(c->Tq, p->H, 1, 1));
		break;
	case LCA_MLA:
		add(c, "q_nope", 0, count(c->Tq, p->H, p->dn, 1));
		add(c, "q_rope", 0, count(c->Tq, p->H, p->dr, 1));
		add(c, "ckv", 0, count(c->Tk, p->dc, 1, 1));
		add(c, "k_rope", 0, count(c->Tk, p->dr, 1, 1));
		add(c, "w_uk", 0, count(p->H, p->dn, p->dc, 1));
		add(c, "w_uv", 0, count(p->H, p->dv, p->dc, 1));
		add(c, "o", 1, count(c->Tq, p->H, p->dv, 1));
		add(c, "lse", 1, count(c->Tq, p->H, 1, 1));
		break;
	case LCA_DELTANET:
		add(c, "q", 0, count(T, p->Hk, p->dk, 1));
		add(c, "k", 0, count(T, p->Hk, p->dk, 1));
		add(c, "v", 0, count(T, p->H, p->dv, 1));
		add(c, "g", 0, count(T, p->H, 1, 1));
		add(c, "beta", 0, count(T, p->H, 1, 1));
		add(c, "o", 1, count(T, p->H, p->dv, 1));
		layout_states(c);
		break;
	case LCA_LIGHTNING:
		add(c, "q", 0, count(T, p->H, p->dk, 1));
		add(c, "k", 0, count(T, p->H, p->dk, 1));
		add(c, "v", 0, count(T, p->H, p->dv, 1));
		add(c, "slope", 0, count(p->H, 1, 1, 1));
		add(c, "o", 1, count(T, p->H, p->dv, 1));
		layout_states(c);
		break;
	}
	if (c->backward)
		layout_backward(c);
}

static size_t elt(lca_dtype t)
{
	return t == LCA_F64 ? 8 : t == LCA_F32 ? 4 : 2;
}

/* One input value: mostly small numbers of either sign (so decay and beta
 * checks see both sides), sometimes non-finite. */
static double value(struct fz_in *in, int64_t i)
{
	uint8_t b = in->n ? in->p[i % (int64_t)in->n] : (uint8_t)(i * 37);

	if (b == 255)
		return NAN;
	if (b == 254)
		return INFINITY;
	if (b == 253)
		return -INFINITY;
	return ((double)b - 100) / 64;
}

/* Fill with values; sign != 0 folds them onto the side the rule allows,
 * so that the kernels behind the sign checks are reached too. */
static void fill(void *data, int64_t n, lca_dtype t, int sign, struct fz_in *in)
{
	for (int64_t i = 0; i < n; i++) {
		double x = sign ? sign * fabs(value(in, i)) : value(in, i);
		float f = (float)x;
		uint32_t u;

		if (t == LCA_F64) {
			((double *)data)[i] = x;
		} else if (t == LCA_F32) {
			((float *)data)[i] = f;
		} else {
			memcpy(&u, &f, sizeof u);
			((uint16_t *)data)[i] = (uint16_t)(u >> 16);
		}
	}
}

/* Bytes of an element of tensor t: bf16 plans keep their states in
 * float32 (lcattn.h), and bf16 and unknown dtypes otherwise size by the
 * widest element, so an out-of-domain dtype cannot make the library read
 * past a buffer. */
static size_t tensor_elt(const struct fz_call *c, const struct fz_tensor *t)
{
	if (c->p.dtype == LCA_BF16 && strstr(t->name, "state"))
		return 4;
	return c->p.dtype == LCA_F32 || c->p.dtype == LCA_BF16 ? elt(c->p.dtype) : 8;
}

int fz_alloc(struct fz_call *c, struct fz_in *in)
{
	int64_t total = 0;

	for (int i = 0; i < c->nt; i++) {
		const int64_t e = (int64_t)tensor_elt(c, &c->t[i]);

		if (c->t[i].n > FZ_MAX_BYTES / e)
			return -1;
		total += c->t[i].n > 0 ? c->t[i].n * e : 0;
	}
	if (total > FZ_MAX_BYTES)
		return -1;
	for (int i = 0; i < c->nt; i++) {
		struct fz_tensor *t = &c->t[i];
		const size_t e = tensor_elt(c, t);
		size_t bytes = t->n > 0 ? (size_t)t->n * e : 1;

		if (!(t->data = malloc(bytes))) {
			fz_free(c);
			return -1;
		}
		memset(t->data, SENTINEL, bytes);
		if (!t->output && t->n > 0)
			fill(t->data, t->n, e == 4 && c->p.dtype == LCA_BF16 ? LCA_F32 :
				c->p.dtype, c->raw_signs ? 0 : t->sign, in);
	}
	return 0;
}

int fz_outputs_untouched(const struct fz_call *c)
{
	for (int i = 0; i < c->nt; i++) {
		const unsigned char *d = c->t[i].data;
		size_t bytes = c->t[i].n > 0 ? (size_t)c->t[i].n * tensor_elt(c, &c->t[i]) : 1;

		if (!c->t[i].output || !d)
			continue;
		for (size_t j = 0; j < bytes; j++)
			if (d[j] != SENTINEL)
				return 0;
	}
	return 1;
}

void fz_free(struct fz_call *c)
{
	for (int i = 0; i < c->nt; i++) {
		free(c->t[i].data);
		c->t[i].data = NULL;
	}
}

void *fz_data(const struct fz_call *c, const char *name)
{
	for (int i = 0; i < c->nt; i++)
		if (strcmp(c->t[i].name, name) == 0)
			return c->t[i].data;
	return NULL;
}
