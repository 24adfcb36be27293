/*
 * gradflow.c - the gradient-flow probe (gradflow.h, lcattn-probes(7)).
 *
 * The gradient of the scalar <u, o_{T-1}> with respect to every input is
 * one backward call with dout = u at the last token and zero elsewhere.
 * For a unit u uniform on the sphere, E u u^T = I / dv, so
 *   E ||d<u, o>/dx_t||^2 = ||d o / dx_t||_F^2 / dv:
 * one pass per draw estimates the Frobenius norm without dv passes. For
 * the values the estimate is exact in each draw: in all three mechanisms
 * d o_{T-1} / d v_t is a multiple of the identity (softmax p_t I,
 * lightning lambda^d <q, k_t> I, deltanet beta_t <P^T q, k_t> I), so
 * ||d<u, o>/dv_t|| = ||d o / dv_t||_F / sqrt(dv) for every unit u.
 *
 * MLA (DeepSeek-V2 sec. 2.1) has no per-head value or key to differentiate:
 * its tokens are a latent ckv_t that all heads decompress into keys and
 * values, and a rotary key k_rope_t that all heads read. The probe asks
 * what the softmax curves ask, head by head: the gradient of <u_h, o_{T-1,h}>
 * with respect to ckv_t and k_rope_t, one backward call per head with a
 * one-head plan (the gradient of one head's output involves that head's
 * weights alone). With p_t head h's attention weight,
 *   d<u,o>/dckv_t   = p_t (w_uv^T u + scale <u, v_t - o> w_uk^T q_nope)
 *   d<u,o>/dk_rope_t = p_t scale <u, v_t - o> R_t^T R_{T-1} q_rope,
 * softmax's p_t u and p_t scale <u, v_t - o> q carried back through the
 * decompression: w_uv^T with rows of variance 1/dc keeps E||w_uv^T u||^2
 * = ||u||^2 = 1, so the latent's gradient compares with softmax's grad_v,
 * and the rotary key's with softmax's grad_k on dr of dk coordinates.
 */
#include "gradflow.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const struct gradflow_curve gradflow_curves[] = {
	{ "softmax", LCA_SOFTMAX, 0, GF_GATE_NONE, 0, "softmax, no RoPE", 0 },
	{ "softmax-rope", LCA_SOFTMAX, 1, GF_GATE_NONE, 0, "softmax, RoPE on all of dk", 0 },
	{ "deltanet-strong", LCA_DELTANET, 0, GF_GATE_STRONG, 0,
	  "deltanet, g = log sigmoid(x), x ~ U(-4.99, 5); beta ~ U(0, 1)", 0 },
	{ "deltanet-weak", LCA_DELTANET, 0, GF_GATE_WEAK, 0,
	  "deltanet, g ~ U(-0.05, 0); beta ~ U(0, 1)", 0 },
	{ "lightning-l0", LCA_LIGHTNING, 0, GF_GATE_NONE, 0,
	  "lightning, MiniMax slopes of layer 0 of 8", 0 },
	{ "lightning-l7", LCA_LIGHTNING, 0, GF_GATE_NONE, 7,
	  "lightning, MiniMax slopes of layer 7 of 8", 0 },
	/* appended: the curves above keep their numbers */
	{ "mla", LCA_MLA, 1, GF_GATE_NONE, 0,
	  "mla, dr = dk/4 with RoPE, dc = dk", 1 },
	{ "mla-compressed", LCA_MLA, 1, GF_GATE_NONE, 0,
	  "mla, dr = dk/4 with RoPE, dc = dk/4", 4 },
};
const int gradflow_ncurves = (int)(sizeof gradflow_curves / sizeof gradflow_curves[0]);

/* Streams of one seed, so that q, k, v and u never share numbers. */
enum { SALT_Q = 0x51, SALT_U = 0x75, SALT_GATE = 0x67, SALT_LATENT = 0x63, SALT_WUK = 0x4b,
	SALT_WUV = 0x56 };

lca_status gradflow_alloc(struct gradflow_draw *d, int64_t T, int64_t H, int64_t dk,
	int64_t dv)
{
	size_t th = (size_t)T * (size_t)H;

	memset(d, 0, sizeof *d);
	if (T < 2 || H < 1 || dk < 1 || dv < 1 || T > (1 << 24) || H > 4096 || dk > 4096 ||
	    dv > 4096)
		return LCA_ERR_SIZE;
	d->T = T, d->H = H, d->dk = dk, d->dv = dv;
	d->q = calloc(th * (size_t)dk, sizeof(double));
	d->k = calloc(th * (size_t)dk, sizeof(double));
	d->v = calloc(th * (size_t)dv, sizeof(double));
	d->u = calloc((size_t)H * (size_t)dv, sizeof(double));
	d->g = calloc(th, sizeof(double));
	d->beta = calloc(th, sizeof(double));
	d->slope = calloc((size_t)H, sizeof(double));
	d->dout = calloc(th * (size_t)dv, sizeof(double));
	d->dq = calloc(th * (size_t)dk, sizeof(double));
	d->dkey = calloc(th * (size_t)dk, sizeof(double));
	d->dval = calloc(th * (size_t)dv, sizeof(double));
	d->dg = calloc(th, sizeof(double));
	d->dbeta = calloc(th, sizeof(double));
	if (!d->q || !d->k || !d->v || !d->u || !d->g || !d->beta || !d->slope || !d->dout ||
	    !d->dq || !d->dkey || !d->dval || !d->dg || !d->dbeta) {
		gradflow_free(d);
		return LCA_ERR_NOMEM;
	}
	return LCA_OK;
}

void gradflow_free(struct gradflow_draw *d)
{
	free(d->q), free(d->k), free(d->v), free(d->u), free(d->g), free(d->beta);
	free(d->slope), free(d->dout), free(d->dq), free(d->dkey), free(d->dval);
	free(d->dg), free(d->dbeta);
	free(d->ckv), free(d->k_rope), free(d->w_uk), free(d->w_uv), free(d->qn), free(d->qr);
	free(d->dqn), free(d->dqr), free(d->dckv), free(d->dk_rope), free(d->dw_uk);
	free(d->dw_uv);
	memset(d, 0, sizeof *d);
}

lca_status gradflow_mla_shape(const struct gradflow_curve *c, int64_t dk, int64_t *dr,
	int64_t *dc)
{
	if (c->variant != LCA_MLA || c->dc_div < 1)
		return LCA_ERR_ARG;
	if (dk < 8)
		return LCA_ERR_SIZE;
	*dr = dk / 8 * 2;
	*dc = dk / c->dc_div > 0 ? dk / c->dc_div : 1;
	return LCA_OK;
}

lca_status gradflow_alloc_mla(struct gradflow_draw *d, int64_t dr, int64_t dc)
{
	size_t T = (size_t)d->T, H = (size_t)d->H, dv = (size_t)d->dv, dn, c = (size_t)dc;

	if (!d->q || dr < 1 || dr >= d->dk || dc < 1 || dc > 65536)
		return LCA_ERR_SIZE;
	d->dr = dr, d->dn = d->dk - dr, d->dc = dc;
	dn = (size_t)d->dn;
	d->ckv = calloc(T * c, sizeof(double));
	d->k_rope = calloc(T * (size_t)dr, sizeof(double));
	d->w_uk = calloc(H * dn * c, sizeof(double));
	d->w_uv = calloc(H * dv * c, sizeof(double));
	d->qn = calloc(dn, sizeof(double));
	d->qr = calloc((size_t)dr, sizeof(double));
	d->dqn = calloc(dn, sizeof(double));
	d->dqr = calloc((size_t)dr, sizeof(double));
	d->dckv = calloc(T * c, sizeof(double));
	d->dk_rope = calloc(T * (size_t)dr, sizeof(double));
	d->dw_uk = calloc(dn * c, sizeof(double));
	d->dw_uv = calloc(dv * c, sizeof(double));
	if (!d->ckv || !d->k_rope || !d->w_uk || !d->w_uv || !d->qn || !d->qr || !d->dqn ||
	    !d->dqr || !d->dckv || !d->dk_rope || !d->dw_uk || !d->dw_uv) {
		gradflow_free(d);
		return LCA_ERR_NOMEM;
	}
	return LCA_OK;
}

/* splitmix64 (Steele, Lea and Flood 2014): the gates need uniforms only. */
static double uniform(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return ((double)(z >> 11) + 0.5) * 0x1p-53;
}

static void scale_by(double *x, int64_t n, double a)
{
	for (int64_t i = 0; i < n; i++)
		x[i] *= a;
}

/* gradflow.h: unit draws scaled so that the decompressed keys and values
 * have the coordinate variance 1/dk of softmax's unit rows, whatever dc. */
static lca_status fill_mla(struct gradflow_draw *d, uint64_t seed)
{
	lca_status st;

	if (!d->ckv)
		return LCA_ERR_ARG;
	if ((st = lca_probe_draw(d->T, d->dc, d->dr, 0, seed ^ ((uint64_t)SALT_LATENT << 56),
	    d->ckv, d->k_rope)) ||
	    (st = lca_probe_draw(d->H * d->dn, d->dc, 1, 0, seed ^ ((uint64_t)SALT_WUK << 56),
	    d->w_uk, NULL)) ||
	    (st = lca_probe_draw(d->H * d->dv, d->dc, 1, 0, seed ^ ((uint64_t)SALT_WUV << 56),
	    d->w_uv, NULL)))
		return st;
	scale_by(d->ckv, d->T * d->dc, sqrt((double)d->dc / (double)d->dk));
	scale_by(d->k_rope, d->T * d->dr, sqrt((double)d->dr / (double)d->dk));
	return LCA_OK;
}

lca_status gradflow_fill(struct gradflow_draw *d, const struct gradflow_curve *c,
	uint64_t seed)
{
	int64_t th = d->T * d->H;
	uint64_t x = seed ^ ((uint64_t)SALT_GATE << 56);
	lca_status st;

	if ((st = lca_probe_draw(th, d->dk, d->dv, 0, seed, d->k, d->v)) ||
	    (st = lca_probe_draw(th, d->dk, 1, 0, seed ^ ((uint64_t)SALT_Q << 56), d->q, NULL)) ||
	    (st = lca_probe_draw(d->H, d->dv, 1, 0, seed ^ ((uint64_t)SALT_U << 56), d->u, NULL)))
		return st;
	for (int64_t i = 0; i < th; i++) {
		double a = uniform(&x), b = uniform(&x);

		/* tools/gen.c, gate_value: strong is log sigmoid of U(-4.99, 5),
		 * g in [-5, -0.0067]; weak is U(-0.05, 0); beta ~ U(0, 1). */
		if (c->gate == GF_GATE_STRONG)
			d->g[i] = -log1p(exp(-(-4.99 + 9.99 * a)));
		else if (c->gate == GF_GATE_WEAK)
			d->g[i] = -0.05 * a;
		else
			d->g[i] = 0;
		d->beta[i] = b;
	}
	if (c->variant == LCA_LIGHTNING)
		return lca_minimax_slopes(d->H, c->layer, 8, d->slope);
	memset(d->slope, 0, (size_t)d->H * sizeof(double));
	return c->variant == LCA_MLA ? fill_mla(d, seed) : LCA_OK;
}

static lca_status plan_for(const struct gradflow_draw *d, const struct gradflow_curve *c,
	lca_plan **pl)
{
	lca_params p;
	lca_status st;

	if ((st = lca_params_init(&p, c->variant)))
		return st;
	p.backend = LCA_BACKEND_REF;
	p.dtype = LCA_F64;
	p.H = d->H;
	p.dk = d->dk;
	p.dv = d->dv;
	if (c->variant == LCA_SOFTMAX)
		p.rope_dim = c->rope ? LCA_ROPE_FULL : 0;
	if (c->variant == LCA_MLA) {
		/* one head per call (gradflow_pass); RoPE on all of the rotary
		 * part, DeepSeek's interleaved style, theta 1e4; softmax's scale */
		p.H = 1;
		p.dk = 0;
		p.dn = d->dn, p.dr = d->dr, p.dc = d->dc;
		p.rope_dim = c->rope ? LCA_ROPE_FULL : 0;
		p.scale = 1 / sqrt((double)d->dk);
	}
	return lca_plan_create(&p, pl);
}

/* ||x||, scaled so that squares of numbers near the bottom of the double
 * range (Gated DeltaNet's products of strong gates) do not underflow. */
static double norm(const double *x, int64_t n)
{
	double m = 0, s = 0;

	for (int64_t i = 0; i < n; i++)
		m = fmax(m, fabs(x[i]));
	if (m == 0)
		return 0;
	for (int64_t i = 0; i < n; i++)
		s += (x[i] / m) * (x[i] / m);
	return m * sqrt(s);
}

/* gradflow_pass for mla: head h's last query, weights and cotangent, the
 * shared tokens; one call per head. */
static lca_status pass_mla(struct gradflow_draw *d, const lca_plan *pl, double *nv,
	double *nk)
{
	int64_t T = d->T, H = d->H, dk = d->dk, dv = d->dv, dn = d->dn, dr = d->dr, dc = d->dc;
	lca_status st;

	for (int64_t h = 0; h < H; h++) {
		const double *q = d->q + ((T - 1) * H + h) * dk;

		memcpy(d->qn, q, (size_t)dn * sizeof(double));
		memcpy(d->qr, q + dn, (size_t)dr * sizeof(double));
		if ((st = lca_mla_backward(pl, 1, T, d->qn, d->qr, d->ckv, d->k_rope,
		    d->w_uk + h * dn * dc, d->w_uv + h * dv * dc, NULL, 0, d->u + h * dv, d->dqn,
		    d->dqr, d->dckv, d->dk_rope, d->dw_uk, d->dw_uv)))
			return st;
		for (int64_t t = 0; t < T; t++) {
			nv[t * H + h] = norm(d->dckv + t * dc, dc);
			nk[t * H + h] = norm(d->dk_rope + t * dr, dr);
		}
	}
	return LCA_OK;
}

lca_status gradflow_pass(struct gradflow_draw *d, const struct gradflow_curve *c,
	double *nv, double *nk)
{
	int64_t T = d->T, H = d->H, dk = d->dk, dv = d->dv;
	lca_plan *pl = NULL;
	lca_status st;

	if (c->variant != LCA_SOFTMAX && c->variant != LCA_DELTANET &&
	    c->variant != LCA_LIGHTNING && c->variant != LCA_MLA)
		return LCA_ERR_UNSUPPORTED;
	if (c->variant == LCA_MLA && !d->ckv)
		return LCA_ERR_ARG;
	if ((st = plan_for(d, c, &pl)))
		return st;
	if (c->variant == LCA_MLA) {
		st = pass_mla(d, pl, nv, nk);
		lca_plan_destroy(pl);
		return st;
	}
	memset(d->dout, 0, (size_t)(T * H * dv) * sizeof(double));
	memcpy(d->dout + (T - 1) * H * dv, d->u, (size_t)(H * dv) * sizeof(double));
	if (c->variant == LCA_SOFTMAX) /* the last query alone (bottom-right alignment) */
		st = lca_softmax_backward(pl, 1, T, d->q + (T - 1) * H * dk, d->k, d->v, NULL, 0,
			d->u, d->dq, d->dkey, d->dval);
	else if (c->variant == LCA_DELTANET)
		st = lca_deltanet_backward(pl, T, d->q, d->k, d->v, d->g, d->beta, NULL, 0, NULL,
			d->dout, NULL, d->dq, d->dkey, d->dval, d->dg, d->dbeta, NULL);
	else
		st = lca_lightning_backward(pl, T, d->q, d->k, d->v, d->slope, NULL, 0, NULL,
			d->dout, NULL, d->dq, d->dkey, d->dval, NULL);
	lca_plan_destroy(pl);
	if (st)
		return st;
	for (int64_t i = 0; i < T * H; i++) {
		nv[i] = norm(d->dval + i * dv, dv);
		nk[i] = norm(d->dkey + i * dk, dk);
	}
	return LCA_OK;
}

/* sqrt(mean of x[i]^2), i < n, scaled like norm(). */
static double rms(const double *x, int64_t n)
{
	return norm(x, n) / sqrt((double)n);
}

lca_status gradflow_run(const struct gradflow_curve *c, int64_t T, int64_t H, int64_t dk,
	int64_t dv, int64_t seeds, uint64_t seed, int nd, const int64_t *dist, double *gv,
	double *gk)
{
	struct gradflow_draw d;
	double *nv = NULL, *nk = NULL, *sv = NULL, *sk = NULL;
	int64_t n = seeds * H;
	lca_status st;

	for (int j = 0; j < nd; j++)
		if (dist[j] < 0 || dist[j] >= T)
			return LCA_ERR_ARG;
	if (seeds < 1 || seeds > 1000000)
		return LCA_ERR_ARG;
	if ((st = gradflow_alloc(&d, T, H, dk, dv)))
		return st;
	if (c->variant == LCA_MLA) {
		int64_t dr, dc;

		if ((st = gradflow_mla_shape(c, dk, &dr, &dc)) ||
		    (st = gradflow_alloc_mla(&d, dr, dc))) {
			gradflow_free(&d);
			return st;
		}
	}
	/* nv, nk: one pass's norms [T][H]; sv, sk: the samples [nd][seeds][H] */
	if (!(nv = calloc((size_t)(T * H), sizeof *nv)) || !(nk = calloc((size_t)(T * H), sizeof *nk)) ||
	    !(sv = calloc((size_t)nd * (size_t)n, sizeof *sv)) ||
	    !(sk = calloc((size_t)nd * (size_t)n, sizeof *sk)))
		st = LCA_ERR_NOMEM;
	for (int64_t s = 0; s < seeds && !st; s++) {
		if ((st = gradflow_fill(&d, c, seed + (uint64_t)s)) ||
		    (st = gradflow_pass(&d, c, nv, nk)))
			break;
		for (int j = 0; j < nd; j++)
			for (int64_t h = 0; h < H; h++) {
				sv[j * n + s * H + h] = nv[(T - 1 - dist[j]) * H + h];
				sk[j * n + s * H + h] = nk[(T - 1 - dist[j]) * H + h];
			}
	}
	for (int j = 0; j < nd && !st; j++) {
		gv[j] = rms(sv + j * n, n);
		gk[j] = rms(sk + j * n, n);
	}
	free(nv), free(nk), free(sv), free(sk);
	gradflow_free(&d);
	return st;
}
