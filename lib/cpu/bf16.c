/*
 * bf16.c - bfloat16 inputs on the cpu backend (plan dtype LCA_BF16): the
 * same contract as the cuda backend's bf16 path. Every tensor of a
 * forward call is bfloat16 (uint16_t bits), outputs o and lse included,
 * except the recurrent state: state0 and state stay float32.
 *
 * Softmax and mla here: the portable path widens every bf16 input to
 * float32 (exact: a bf16 is the high half of a float), runs the float32
 * kernel of the mechanism, which accumulates in float32, and rounds its
 * outputs to bf16 (nearest, ties to even). So a bf16 call gives the
 * float32 path's numbers on the rounded inputs, within the bf16 rule of
 * lcattn(1) by construction. Widening costs a pass over the inputs,
 * O(T d) against the kernels' O(T^2 d) work.
 *
 * Deltanet and lightning do not come here: their kernels have a bf16
 * instance (lib/cpu/deltanet.c, lightning.c, elem_rows.h) that widens
 * the inputs as it packs each chunk or block and rounds o a row tile at
 * a time, with the same float32 arithmetic and so the same bits as this
 * path would give, without whole float32 copies: at O(T d^2) work those
 * copies' page faults and passes cost more than the kernel (a bf16 call
 * took 1.8-2.1x the float32 time).
 *
 * Softmax without RoPE on a CPU with AVX-512 BF16 skips the copies: the
 * engine reads the bf16 tensors and takes its logits as bf16 dot products
 * (lib/cpu/flash_bf16.h): the same exact products summed in another
 * order, so within the bf16 rule but not the float32 path's bits.
 *
 * All buffers are taken in one allocation before anything is written, so
 * a failed call leaves the caller's outputs untouched; a float32 kernel
 * that fails writes no state (internal.h), and the state buffers are the
 * caller's own.
 */
#include "internal.h"
#include "bf16.h"
#include "flash.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One tensor of a call: a bf16 input to widen (in) or a bf16 output to
 * round (out) of n elements, and its float32 copy f. */
struct bf_tensor {
	const uint16_t *in;
	uint16_t *out;
	int64_t n;
	float *f;
};

/* One 64-byte aligned block for the float32 copies of the nt tensors (a
 * tensor with no pointer gets none); NULL with *block NULL when the sizes
 * overflow or memory runs out. */
static lca_status bf_alloc(struct bf_tensor *t, int nt, float **block)
{
	int64_t total = 0, at = 0;

	*block = NULL;
	for (int i = 0; i < nt; i++) {
		int64_t n = (t[i].in || t[i].out) ? (t[i].n + 15) / 16 * 16 : 0;

		if (t[i].n < 0 || n > INT64_MAX / 4 - total)
			return lcai_fail(LCA_ERR_OVERFLOW, "bf16 copies: too many elements");
		total += n;
	}
	if ((uint64_t)total > SIZE_MAX / sizeof(float) - 16)
		return lcai_fail(LCA_ERR_OVERFLOW, "bf16 copies: too many elements");
	if (!(*block = aligned_alloc(64, (size_t)(total + 16) * sizeof(float))))
		return lcai_fail(LCA_ERR_NOMEM, "out of memory for the float32 copies of bf16 tensors");
	for (int i = 0; i < nt; i++) {
		t[i].f = (t[i].in || t[i].out) ? *block + at : NULL;
		at += t[i].f ? (t[i].n + 15) / 16 * 16 : 0;
	}
	return LCA_OK;
}

/* Widen the inputs (dir 0) or round the outputs (dir 1), every thread
 * on a contiguous share of each tensor. */
static void bf_convert(const lca_params *p, struct bf_tensor *t, int nt, int dir)
{
	int nth = lcai_cpu_threads(p);

	(void)nth; /* unused without OpenMP */
	for (int i = 0; i < nt; i++) {
		const int64_t n = t[i].n;
		const uint16_t *in = t[i].in;
		uint16_t *out = t[i].out;
		float *f = t[i].f;

		if (dir == 0 && in) {
			#pragma omp parallel for num_threads(nth) schedule(static) if (n > 65536)
			for (int64_t j = 0; j < n; j++)
				f[j] = lcai_bf16_widen(in[j]);
		} else if (dir == 1 && out) {
			#pragma omp parallel for num_threads(nth) schedule(static) if (n > 65536)
			for (int64_t j = 0; j < n; j++)
				out[j] = lcai_bf16_round(f[j]);
		}
	}
}

/* The plan the float32 kernels see. */
static lca_params bf_f32_plan(const lca_params *p)
{
	lca_params q = *p;

	q.dtype = LCA_F32;
	return q;
}

/* Allocate, widen, and hand back the float32 plan; on failure nothing is
 * held. */
static lca_status bf_begin(const lca_params *p, struct bf_tensor *t, int nt,
	float **block, lca_params *p32)
{
	lca_status s = bf_alloc(t, nt, block);

	if (s)
		return s;
	bf_convert(p, t, nt, 0);
	*p32 = bf_f32_plan(p);
	return LCA_OK;
}

/* Round the outputs when the kernel succeeded; free the copies. */
static lca_status bf_end(const lca_params *p, struct bf_tensor *t, int nt,
	float *block, lca_status s)
{
	if (s == LCA_OK)
		bf_convert(p, t, nt, 1);
	free(block);
	return s;
}

lca_status lcai_cpu_bf16_softmax(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q, const void *k,
	const void *v, void *o, void *lse)
{
	const int64_t tq = cu_q[nseq], tk = cu_k[nseq];
	struct bf_tensor t[] = {
		{ q, NULL, tq * p->H * p->dk, NULL }, { k, NULL, tk * p->Hkv * p->dk, NULL },
		{ v, NULL, tk * p->Hkv * p->dv, NULL },
		{ NULL, o, tq * p->H * p->dv, NULL }, { NULL, lse, tq * p->H, NULL },
	};
	const int nt = sizeof t / sizeof t[0];
	lca_params p32;
	float *block;
	lca_status s;

	/* With AVX-512 BF16 the engine reads the bf16 tensors themselves
	 * (lib/cpu/flash_bf16.h): no copies, logits by bf16 dot products. */
	if (lcai_cpu_softmax_bf16dot(p))
		return lcai_cpu_softmax(p, cu_q, cu_k, nseq, q, k, v, o, lse);
	if ((s = bf_begin(p, t, nt, &block, &p32)))
		return s;
	s = lcai_cpu_softmax(&p32, cu_q, cu_k, nseq, t[0].f, t[1].f, t[2].f, t[3].f, t[4].f);
	return bf_end(p, t, nt, block, s);
}

lca_status lcai_cpu_bf16_mla(const lca_params *p, const int64_t *cu_q,
	const int64_t *cu_k, int64_t nseq, const void *q_nope,
	const void *q_rope, const void *ckv, const void *k_rope,
	const void *w_uk, const void *w_uv, void *o, void *lse)
{
	const int64_t tq = cu_q[nseq], tk = cu_k[nseq];
	struct bf_tensor t[] = {
		{ q_nope, NULL, tq * p->H * p->dn, NULL }, { q_rope, NULL, tq * p->H * p->dr, NULL },
		{ ckv, NULL, tk * p->dc, NULL }, { k_rope, NULL, tk * p->dr, NULL },
		{ w_uk, NULL, p->H * p->dn * p->dc, NULL }, { w_uv, NULL, p->H * p->dv * p->dc, NULL },
		{ NULL, o, tq * p->H * p->dv, NULL }, { NULL, lse, tq * p->H, NULL },
	};
	const int nt = sizeof t / sizeof t[0];
	lca_params p32;
	float *block;
	lca_status s;

	if ((s = bf_begin(p, t, nt, &block, &p32)))
		return s;
	s = lcai_cpu_mla(&p32, cu_q, cu_k, nseq, t[0].f, t[1].f, t[2].f, t[3].f, t[4].f,
		t[5].f, t[6].f, t[7].f);
	return bf_end(p, t, nt, block, s);
}
