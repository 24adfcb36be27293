/*
 * decode.c - attention of a few new queries over a long cache, for one
 * sequence or a batch of them: split-K ("flash-decoding") on the CPU,
 * float32 and float64, reading the cache where it lies (contiguous or
 * paged) and as it is stored (the plan's dtype, or bf16 under a float32
 * plan).
 *
 * Decode reads the whole cache to produce a handful of output rows: it is
 * mostly bound by memory bandwidth (absorbed MLA, 17 kflop per 2.3 KB
 * latent row at H = 8, sits near the balance point), and the prefill
 * engine (one work item per query head and query tile) would leave most
 * cores idle and read every kv head once per query head. Here every
 * cached key and value is read once, by one thread, for all the rows
 * that need it:
 *
 *   - The visible keys [klo, khi) (the union of the queries' causal and
 *     window ranges; ranges only move right with the position) are cut
 *     into chunks of whole key blocks. The chunk size depends only on the
 *     shapes, never on the thread count, and the chunks are merged in a
 *     fixed order, so results are bitwise the same for any thread count.
 *   - A chunk is one work item; a thread takes DEC_RUN consecutive ones
 *     at a time, so the last block of a chunk can request the first block
 *     of the next. It walks its key blocks; for each block
 *     and kv head it scores the block against all rows that read that kv
 *     head (the tq queries of each query head of the GQA group; for
 *     absorbed MLA all tq x H rows share the latent cache) and keeps per
 *     row the online-softmax triple of FlashAttention (Dao et al. 2022,
 *     alg. 1): running max m, sum l of exp(logit - m) and the unnormalised
 *     output, rescaled by exp(m_old - m_new) <= 1 when m grows.
 *   - The chunks' triples are merged with the log-sum-exp rule, in double:
 *       M = max_c m_c,  L = sum_c l_c e^(m_c - M),
 *       o = sum_c O_c e^(m_c - M) / L,  lse = M + log L.
 *   - A call of many sequences (a serving step: one new token for each
 *     of B sequences) is one job per sequence, but one parallel region
 *     for all their chunks and one for all their merges. Per-sequence
 *     regions cost a fork and a join each, and a join waits for the
 *     slowest thread: on a busy machine a whole time slice when a thread
 *     was descheduled, and even when quiet the last chunks of each
 *     sequence left a core idle. Measured (f32 softmax, 64 sequences of
 *     ~9K tokens, 2 cores shared with two compilers, alternating runs):
 *     0.66-1.4 s a step with a region per sequence, 0.25-0.35 s with one
 *     (about 0.12 s on the quiet machine). A job's chunks and
 *     their order are those of a call for it alone, so are its bits.
 *     MLA's projections (absorb, expand) stay one GEMM set per sequence:
 *     BLAS rounds a row differently with the number of rows it is given,
 *     and a sequence's bits must not depend on its neighbours.
 *
 * RoPE: a cache stores keys unrotated (plans sharing a cache may differ in
 * RoPE), so each key block is rotated on the fly, once for all the rows
 * of its kv head, with cos/sin computed once per block for all kv heads
 * at the reference's angle fl(s theta^(-2i/rd)): a vectorised sincos at
 * the block's first key, then a rotation per key, corrected to the
 * reference's rounding of the angle (see trig in decode.h: at s = 2^18
 * one ulp of the angle is 6e-11, far above the 1e-12 allowed a float64
 * path). Queries are rotated once, with libm, as lib/core/rope.c does.
 *
 * MLA (absorbed only; when lcai_mla_pick chooses naive, which decompresses
 * every key anyway, the call goes to the prefill path): q_lat =
 * w_uk[h]^T q_nope by BLAS, rows [rope(q_rope) ; q_lat] against keys
 * [rope(k_rope) ; ckv] streamed from the cache, the latent sum over ckv
 * itself, then o = w_uv[h] lat by BLAS.
 *
 * Many rows per kv head (MLA: H x tq >= 8 rows over 576-value keys) are
 * compute-bound unless each key is loaded once for all of them: logits and
 * values then go through register-blocked tiles (decode.h: qk_rows, QR
 * rows x QK keys; pv_tile, QR rows x PV vectors), the queries packed so
 * one pointer reaches a block's rows. Measured (f32, H = 8, dc 512, dr 64,
 * one token against 64K latent rows, one Zen 4 core): 28 ms per token
 * before, 16 ms with these tiles, the spread prefetch and the cross-chunk
 * request below, against 11.5 ms of FMAs at the sgemm rate.
 *
 * Where a token's time goes there now (the same shape, one thread, AMD
 * EPYC Zen 5 at ~4.2 GHz; rdtsc ticks of 2.6 GHz per latent row around
 * each phase of a block): with the cache in L3 (4K rows) logits 109,
 * values 91, RoPE 38 (the block's cos/sin 21, rotating the keys 17) and
 * the online softmax 13.5 (11.5 with its reductions as trees), against 89
 * and 79 of FMAs at two 16-lane FMAs a cycle; streamed from DRAM (64K
 * rows) about 60 more, mostly in a block's first touches (logits,
 * rotation). The inner loops sit near the ports' limits (logits: 11
 * loads and 5 prefetches per 24 FMAs; values: 3 loads and 8 broadcasts
 * per 24 FMAs); the rest is per tile (the logits' reduction trees and
 * the scattered stores of their sums) and the RoPE. Tried and dropped:
 * 8 x 2 logit tiles (10 loads and 5 prefetches per 16 FMAs: the logits
 * took 1.25x as long), requesting the block after next rather than the
 * next (slower), rotating each key as soon as its cos/sin are known (no
 * change). One core reads ~34 GB/s, and one at the FMA peak would need
 * 2.3 KB per 168 ticks, ~36 GB/s: at H = 8 a thread is bound as much by
 * its FMAs as by its reads, so bf16 storage (half the bytes) gains ~1.1x,
 * not 2x, and the per-tile work above is what is left to take. End to
 * end (one thread, fastest of 15 steps, 64K rows, AVX-512): f32 125-142
 * GFLOP/s before the trees and the two-vector value tile (decode.h), 135-143
 * after; bf16 storage 154-160 before, 160-164 after: within the spread of
 * this shared machine, as were 2-thread `lcattn bench` runs.
 *
 * Memory: within a block, a kv head's rows are strided (Hkv (dk + dv)
 * values apart) and the demand stream alone reached half the bandwidth,
 * so each pass (one kv head of one block) requests the rows of the next
 * pass into L2 while it computes: a few rows per key tile, or, in the
 * register-blocked kernels, a line or two per step of their inner loops
 * (a burst of requests stalled on the full miss queue). Measured (f32,
 * H = 8, d = 128, one token against 64K keys, 16-core Xeon): 104-127 GB/s
 * read against a 87 GB/s (2 x bytes) copy, 30x the prefill path.
 *
 * Cache layouts (struct lcai_kv, lib/core/internal.h): a sequence's tokens
 * are either contiguous rows or pages of LCA_CACHE_PAGE tokens from a
 * shared pool, found through a per-sequence page table (copy-on-write
 * forks share pages). The kernels walk a key block's rows at a fixed
 * stride, so a block must never straddle a page: the union's start klo is
 * aligned down to a multiple of DEC_BK (a divisor of the page), so every
 * chunk and block starts on a page boundary. The keys this adds before a
 * query's lo are masked to -inf like any other unseen key (windows stay
 * exact); at most DEC_BK - 1 extra keys are read. Every row address goes
 * through one helper, dec_row (segment, token, kv head -> pointer), so a
 * paged cache runs the same chunks in the same order as a contiguous one
 * and gives the same bits.
 *
 * bf16 storage (float32 plans): keys and values are bf16 bits, widened on
 * load to float32 (zero-extend, shift left 16: bf16 is the top half of a
 * float32) inside the kernels: the logit and value loops, their scalar
 * tails, and the rotation, which writes float32 rotated keys into the kr
 * scratch; queries, logits and accumulators stay float32. Decode is bound
 * by the bytes it reads, so halving them is the point; these are separate
 * instances (DEC_WIDE), so the float32 and float64 ones are unchanged. No
 * float64 kernels over bf16 are built: lcai_cpu_decode_direct() says 0
 * and the caller gathers such a cache (as it does for calls that go to
 * the prefill engine, which reads contiguous rows of the plan's dtype).
 * AVX-512 BF16 (vdpbf16ps) is not used: it would round the queries to
 * bf16, and the widening loads are cheap beside the memory they save.
 *
 * The typed kernels (decode.h) are built per (element type, storage type)
 * for AVX-512, AVX2+FMA and SSE2 and chosen at run time. More than
 * DEC_MAX_TQ queries, or the naive MLA, go to the prefill kernels.
 */
#include "flash.h"
#include "gemm.h"
#include "../ref/rowsoftmax.h" /* lcai_ref_key_range: masks defined once */

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "isa.h"
#ifdef LCAI_X86
#define DEC_X86 1
#endif

/* Most queries per call handled here; more go to the prefill engine. */
#define DEC_MAX_TQ 16
/* Keys per block: the logits of a block stay in L1 next to its keys. */
#define DEC_BK 64
/* Vectors per key row from which the register-blocked logits (qk_many)
 * pay for reducing their QR QK accumulators per tile. Measured on one
 * AVX-512 core, f32, GQA groups of 8: rows of 8 vectors (dk 128) 1.24x
 * slower than the 2-row tiles, rows of 16 (dk 256) 1.1x faster; MLA rows
 * are 36. */
#define DEC_MANY_MIN 16
/* Chunk bounds: at least DEC_CHUNK_MIN keys (amortise the partial's
 * write and merge), at most DEC_MAX_CHUNKS chunks (bound the merge). */
#define DEC_CHUNK_MIN 256
#define DEC_MAX_CHUNKS 256
/* Chunks a thread takes at a time: consecutive, so that the last block of
 * one can request the first of the next; a few at a time, so that a thread
 * on a busy core takes fewer (measured, 2 threads on 2 shared cores: 5-15%
 * faster than the static schedule's halves). */
#define DEC_RUN 4
/* Rows of angles are padded to a multiple of the widest double vector. */
#define DEC_PAD 8
/* Largest angle the vector sincos reduces exactly (k pi/2 with k < 2^20
 * against a 33-bit first part of pi/2); larger ones go to libm. */
#define DEC_ANGLE_MAX 1.0e6
#define DEC_ALIGN 64

/* A block never straddles a page: its keys' rows are then a fixed stride
 * apart, contiguous or paged, and the kernels keep their pointer walks. */
_Static_assert(LCA_CACHE_PAGE % DEC_BK == 0, "a page holds whole key blocks");

/* Part of a key or value row: in buffer buf of the cache (struct lcai_kv),
 * element s of kv head g starts off + g * hs elements (of the storage
 * type) into token s's row and has n elements. */
struct dec_seg {
	int buf;
	int64_t off, hs, n;
};

struct dec_ops;

/* Everything fixed for one call; read-only while chunks run. Rows: kv
 * head g is read by R = tq * G rows, row r being query r / G of query
 * head g * G + r % G. A query row is [rot ; a ; b] of dq = rd + a.n + b.n
 * values, matching the key parts. */
struct dec_job {
	const lca_params *p;
	const struct dec_ops *ops;
	const struct lcai_kv *kv;  /* where the cached tokens lie */
	int64_t kes;            /* bytes of a stored element */
	int64_t tq, tk, nkv, G, R;
	int64_t rd, hp;         /* rotated coordinates; rd / 2 padded to DEC_PAD */
	int interleaved;
	struct dec_seg rot, a, b, v;
	int64_t dq, dvv;        /* query row, value row */
	void *q;                /* [nkv][R][dq] rotated, scaled queries */
	void *qpk;              /* the same, packed for the register-blocked
	                         * logits (pack_q in decode.h) */
	int64_t pw;             /* packed values per row: each non-empty key
	                         * part rounded up to whole vectors */
	double *freq;           /* [5][hp] per pair: theta^(-2i/rd) (0 past
	                         * rd / 2), its two halves, cos and sin */
	double fmax;            /* largest frequency */
	int64_t lo[DEC_MAX_TQ], hi[DEC_MAX_TQ]; /* visible keys per query */
	int64_t klo, khi;       /* union of the ranges */
	int64_t inner_lo, inner_hi; /* keys every query sees */
	int64_t chunk, nch;
	void *po;               /* [nch][nkv * R][dvv] partial outputs */
	void *pml;              /* [nch][nkv * R][2] partial m, l */
};

/* Per-thread scratch of a chunk. */
struct dec_ws {
	void *kr;       /* [BK][rd] rotated keys of one kv head */
	void *tab;      /* [BK][4 hp] cos, sin of the block */
	void *s;        /* [R][BK] logits, then weights */
	double *st;     /* [3][hp] trig: rotation state and anchor error */
};

/* The typed kernels of one instance. */
struct dec_ops {
	size_t esize;
	int64_t vw, qr;  /* elements per vector; rows per register block */
	void (*pack_q)(const struct dec_job *J);
	void (*chunk)(const struct dec_job *J, int64_t c, struct dec_ws *ws);
	double (*merge_row)(const struct dec_job *J, int64_t row, double *w,
		double *acc);
};

/* Taylor coefficients of sin r / r and cos r in z = r^2 on |r| <= pi/4:
 * the first omitted terms, (pi/4)^18/19! and (pi/4)^20/20!, are below
 * 1e-19, far under half an ulp. */
static const double dec_sin_c[9] = {
	1.0, -1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880,
	-1.0 / 39916800, 1.0 / 6227020800.0, -1.0 / 1307674368000.0,
	1.0 / 355687428096000.0,
};
static const double dec_cos_c[10] = {
	1.0, -1.0 / 2, 1.0 / 24, -1.0 / 720, 1.0 / 40320, -1.0 / 3628800,
	1.0 / 479001600, -1.0 / 87178291200.0, 1.0 / 20922789888000.0,
	-1.0 / 6402373705728000.0,
};

/* Start of part sg of token s, kv head g: the one place that knows
 * where tokens lie (contiguous, or through the page table). */
static inline const void *dec_row(const struct dec_job *J,
	const struct dec_seg *sg, int64_t s, int64_t g)
{
	const struct lcai_kv *kv = J->kv;
	const int b = sg->buf;
	const char *row;

	if (kv->pt)
		row = kv->pool + (size_t)kv->pt[s / LCA_CACHE_PAGE] * kv->page_bytes +
			kv->off[b] + (size_t)((s % LCA_CACHE_PAGE) * kv->row[b] * J->kes);
	else
		row = (const char *)kv->buf[b] + (size_t)(s * kv->row[b] * J->kes);
	return row + (sg->off + g * sg->hs) * J->kes;
}

/* ---- the typed kernels (decode.h), one instance per (element type,
 * storage type) and vector width; FT, FI, KT, FN and VFMA (and DEC_WIDE
 * where set) are consumed by each inclusion. */

#define DEC_VB 16
#define DEC_NB 2
#define DEC_QR 4
#define DEC_QK 2
#define DEC_PV 2
#define DEC_TARGET
#define FT float
#define FI int32_t
#define KT float
#define FN(name) name##_f32_sse
#define VFMA(a, b, c) ((a) * (b) + (c))
#include "decode.h"
#define FT double
#define FI int64_t
#define KT double
#define FN(name) name##_f64_sse
#define VFMA(a, b, c) ((a) * (b) + (c))
#include "decode.h"
#define FT float
#define FI int32_t
#define KT uint16_t
#define DEC_WIDE 1
#ifdef DEC_X86 /* bf16 bits into the high halves of zeroed lanes */
#define DEC_KWIDEN(x) _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), \
	_mm_loadl_epi64((const __m128i *)(const void *)(x))))
#endif
#define FN(name) name##_bf16_sse
#define VFMA(a, b, c) ((a) * (b) + (c))
#include "decode.h"
#undef DEC_VB
#undef DEC_NB
#undef DEC_QR
#undef DEC_QK
#undef DEC_PV
#undef DEC_TARGET

#ifdef DEC_X86
#define DEC_VB 32
#define DEC_NB 2
#define DEC_QR 4
#define DEC_QK 2
#define DEC_PV 2
#define DEC_TARGET __attribute__((target("avx2,fma")))
#define FT float
#define FI int32_t
#define KT float
#define FN(name) name##_f32_avx2
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#include "decode.h"
#define FT double
#define FI int64_t
#define KT double
#define FN(name) name##_f64_avx2
#define VFMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#include "decode.h"
#define FT float
#define FI int32_t
#define KT uint16_t
#define DEC_WIDE 1
#define DEC_KWIDEN(x) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32( \
	_mm_loadu_si128((const __m128i *)(const void *)(x))), 16))
#define FN(name) name##_bf16_avx2
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#include "decode.h"
#undef DEC_VB
#undef DEC_NB
#undef DEC_QR
#undef DEC_QK
#undef DEC_PV
#undef DEC_TARGET

#define DEC_VB 64
#define DEC_NB 4
#define DEC_QR 8
#define DEC_QK 3
#define DEC_PV 3
#define DEC_TARGET __attribute__((target("avx512f")))
#define FT float
#define FI int32_t
#define KT float
#define FN(name) name##_f32_avx512
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#include "decode.h"
#define FT double
#define FI int64_t
#define KT double
#define FN(name) name##_f64_avx512
#define VFMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#include "decode.h"
#define FT float
#define FI int32_t
#define KT uint16_t
#define DEC_WIDE 1
#define DEC_KWIDEN(x) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32( \
	_mm256_loadu_si256((const __m256i *)(const void *)(x))), 16))
#define FN(name) name##_bf16_avx512
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#include "decode.h"
#undef DEC_VB
#undef DEC_NB
#undef DEC_QR
#undef DEC_QK
#undef DEC_PV
#undef DEC_TARGET
#endif /* DEC_X86 */

/* The widest build this CPU runs, for the plan's dtype and the cache's
 * storage (bf16 storage: f32 plans only). */
static const struct dec_ops *dec_pick(lca_dtype dtype, lca_dtype store)
{
	const int f32 = dtype == LCA_F32, bf = store == LCA_BF16;

#ifdef DEC_X86
	switch (lcai_isa_best()) {
	case LCAI_ISA_AVX512:
		return bf ? &dec_ops_bf16_avx512 :
			f32 ? &dec_ops_f32_avx512 : &dec_ops_f64_avx512;
	case LCAI_ISA_AVX2:
		return bf ? &dec_ops_bf16_avx2 :
			f32 ? &dec_ops_f32_avx2 : &dec_ops_f64_avx2;
	case LCAI_ISA_SSE:
		break;
	}
#endif
	return bf ? &dec_ops_bf16_sse : f32 ? &dec_ops_f32_sse : &dec_ops_f64_sse;
}

/* ---- set-up ------------------------------------------------------------- */

/* 64-byte aligned, at least one line, n >= 0 bytes. */
static void *dec_alloc(int64_t n)
{
	if (n < 0 || (uint64_t)n > SIZE_MAX - DEC_ALIGN)
		return NULL;
	n = (n + DEC_ALIGN - 1) / DEC_ALIGN * DEC_ALIGN;
	return aligned_alloc(DEC_ALIGN, n ? (size_t)n : DEC_ALIGN);
}

static void dec_free(struct dec_job *J)
{
	free(J->q);
	free(J->qpk);
	free(J->freq);
	free(J->po);
	free(J->pml);
	J->q = J->qpk = J->freq = J->po = J->pml = NULL;
}

/* Visible ranges per query, their union and intersection. */
static void dec_ranges(struct dec_job *J)
{
	for (int64_t i = 0; i < J->tq; i++)
		lcai_ref_key_range(J->p, J->tk - J->tq + i, J->tk, &J->lo[i],
			&J->hi[i]);
	J->klo = J->lo[0];
	J->khi = J->hi[J->tq - 1];
	J->inner_lo = J->lo[J->tq - 1];
	J->inner_hi = J->hi[0];
	if (J->khi < J->klo)
		J->khi = J->klo;
	/* Blocks start on multiples of DEC_BK, so that none straddles a page
	 * (and the chunks, hence the bits, are the same paged or not); the
	 * keys before lo[0] this adds are masked like any unseen key. An
	 * empty union stays empty. */
	if (J->khi > J->klo)
		J->klo = J->klo / DEC_BK * DEC_BK;
}

/* Chunks of whole blocks: at least DEC_CHUNK_MIN keys, at most
 * DEC_MAX_CHUNKS of them, and long enough that a chunk reads at least 4x
 * the bytes of the partial it writes (per_key: elements read per key). */
static void dec_chunks(struct dec_job *J, int64_t per_key)
{
	const int64_t n = J->khi - J->klo;
	const int64_t part = J->nkv * J->R * (J->dvv + 2);
	int64_t ch = DEC_CHUNK_MIN, want;

	want = (n + DEC_MAX_CHUNKS - 1) / DEC_MAX_CHUNKS;
	if (want > ch)
		ch = want;
	want = per_key > 0 ? (4 * part + per_key - 1) / per_key : 0;
	if (want > ch)
		ch = want;
	J->chunk = (ch + DEC_BK - 1) / DEC_BK * DEC_BK;
	J->nch = n > 0 ? (n + J->chunk - 1) / J->chunk : 0;
}

/* Per pair (padded with zeros to hp): the frequency exactly as
 * lib/core/rope.c forms it (same expression, so the same bits), its
 * Veltkamp split into two 26-bit halves (for the exact product error in
 * trig) and the cos and sin of one step. */
static int dec_freq(struct dec_job *J)
{
	const lca_params *p = J->p;
	const int64_t hp = (J->rd / 2 + DEC_PAD - 1) / DEC_PAD * DEC_PAD;
	double *f;

	J->hp = hp;
	if (!(J->freq = dec_alloc((hp ? 5 * hp : 1) * (int64_t)sizeof(double))))
		return 0;
	f = J->freq;
	J->fmax = 0;
	for (int64_t i = 0; i < hp; i++) {
		double big;

		f[i] = i < J->rd / 2 ? pow(p->rope_theta,
			-2.0 * (double)i / (double)J->rd) : 0.0;
		big = f[i] * 134217729.0; /* 2^27 + 1 */
		f[hp + i] = big - (big - f[i]);
		f[2 * hp + i] = f[i] - f[hp + i];
		f[3 * hp + i] = cos(f[i]);
		f[4 * hp + i] = sin(f[i]);
		if (f[i] > J->fmax)
			J->fmax = f[i];
	}
	return 1;
}

/* Fill the sizes-dependent parts of J (segments, rows, dq, dvv set by
 * the caller) and allocate its buffers. */
static lca_status dec_setup(struct dec_job *J, const char *who, int64_t per_key)
{
	const int64_t es = (int64_t)J->ops->esize, vw = J->ops->vw;
	int64_t nq, nqpk, npo, npml, nrow;

	J->interleaved = J->p->rope_style == LCA_ROPE_INTERLEAVED;
	dec_ranges(J);
	dec_chunks(J, per_key);
	nrow = J->nkv * J->R;
	J->pw = (J->rot.n + vw - 1) / vw * vw + (J->a.n + vw - 1) / vw * vw +
		(J->b.n + vw - 1) / vw * vw;
	if (!dec_freq(J) || !lcai_mul_n(&nq, 3, nrow, J->dq, es) ||
	    !lcai_mul_n(&nqpk, 3, nrow, J->pw, es) || !(J->qpk = dec_alloc(nqpk)) ||
	    !lcai_mul_n(&npo, 4, J->nch, nrow, J->dvv, es) ||
	    !lcai_mul_n(&npml, 4, J->nch, nrow, 2, es) ||
	    !(J->q = dec_alloc(nq)) || !(J->po = dec_alloc(npo)) ||
	    !(J->pml = dec_alloc(npml))) {
		dec_free(J);
		return lcai_fail(LCA_ERR_NOMEM, "cpu %s decode: no memory for %lld keys",
			who, (long long)J->tk);
	}
	return LCA_OK;
}

static void dec_to_double(const void *src, int64_t n, int f32, double *dst)
{
	if (f32)
		for (int64_t i = 0; i < n; i++)
			dst[i] = ((const float *)src)[i];
	else
		memcpy(dst, src, (size_t)n * sizeof(double));
}

static void dec_from_double(const double *src, int64_t n, int f32, void *dst)
{
	if (f32)
		for (int64_t i = 0; i < n; i++)
			((float *)dst)[i] = (float)src[i];
	else
		memcpy(dst, src, (size_t)n * sizeof(double));
}

/*
 * qd holds the nkv * R query rows in double, unrotated. Rotate the first
 * rd values of each as at its query's position (the cos/sin of rope.c,
 * computed once per query), scale, and store in the plan's dtype in J->q.
 * cs: scratch of rd doubles.
 */
static void dec_queries(struct dec_job *J, double *qd, double *cs)
{
	const int64_t rd = J->rd, h = rd / 2, dq = J->dq;
	const int f32 = J->p->dtype == LCA_F32;

	for (int64_t i = 0; i < J->tq; i++) {
		const double pq = (double)(J->tk - J->tq + i);

		for (int64_t j = 0; j < h; j++) {
			cs[2 * j] = cos(pq * J->freq[j]);
			cs[2 * j + 1] = sin(pq * J->freq[j]);
		}
		for (int64_t g = 0; g < J->nkv; g++)
			for (int64_t r = i * J->G; r < (i + 1) * J->G; r++) {
				double *x = qd + (g * J->R + r) * dq;

				for (int64_t j = 0; j < h; j++) {
					int64_t ia = J->interleaved ? 2 * j : j;
					int64_t ib = J->interleaved ? 2 * j + 1 : j + h;
					double a = x[ia], b = x[ib];

					x[ia] = a * cs[2 * j] - b * cs[2 * j + 1];
					x[ib] = a * cs[2 * j + 1] + b * cs[2 * j];
				}
			}
	}
	for (int64_t n = 0; n < J->nkv * J->R * dq; n++)
		qd[n] *= J->p->scale;
	dec_from_double(qd, J->nkv * J->R * dq, f32, J->q);
}

/* Scratch bytes a chunk of job J needs: kr, tab, s, st (overflow: 0). */
static int dec_ws_sizes(const struct dec_job *J, int64_t n[4])
{
	const int64_t es = (int64_t)J->ops->esize;

	n[0] = DEC_BK * (J->rd ? J->rd : 1) * es;
	n[1] = DEC_BK * 4 * (J->hp ? J->hp : 1) * es;
	n[3] = 3 * (J->hp ? J->hp : 1) * (int64_t)sizeof(double);
	return lcai_mul_n(&n[2], 3, J->R, (int64_t)DEC_BK, es);
}

/*
 * Every chunk of the n jobs (sequences) of a call, in one parallel region:
 * a batch of sequences costs one fork and join, not one per sequence (on
 * a busy machine each join can wait a whole time slice for a descheduled
 * thread), and the last chunks of one sequence run beside the first of
 * the next. Chunk k of the call is chunk k - first[j] of job j; a job's
 * chunks, hence its bits, are those of a call for it alone.
 * LCA_ERR_NOMEM if a thread had no scratch.
 */
static lca_status dec_run(const struct dec_job *J, int64_t n, const char *who)
{
	int64_t big[4] = { 1, 1, 1, 1 }, total = 0, *first;
	int nomem = 0;

	if (!(first = malloc((size_t)(n + 1) * sizeof *first)))
		return lcai_fail(LCA_ERR_NOMEM, "cpu %s decode: no memory for %lld sequences",
			who, (long long)n);
	first[0] = 0;
	for (int64_t j = 0; j < n; j++) {
		int64_t w[4];

		if (!dec_ws_sizes(&J[j], w)) {
			free(first);
			return lcai_fail(LCA_ERR_NOMEM, "cpu %s decode: logit tile size overflows",
				who);
		}
		for (int i = 0; i < 4; i++)
			big[i] = w[i] > big[i] ? w[i] : big[i];
		J[j].ops->pack_q(&J[j]);
		first[j + 1] = total += J[j].nch;
	}
	#pragma omp parallel num_threads(lcai_flash_team(J[0].p, total))
	{
		struct dec_ws ws = { dec_alloc(big[0]), dec_alloc(big[1]), dec_alloc(big[2]),
			dec_alloc(big[3]) };
		int ok = ws.kr && ws.tab && ws.s && ws.st;
		int64_t j = 0; /* job of the thread's last chunk */

		if (!ok) {
			#pragma omp atomic write
			nomem = 1;
		}
		/* A thread without scratch still reaches the loop (every
		 * thread must) but skips its chunks. */
		#pragma omp for schedule(dynamic, DEC_RUN)
		for (int64_t c = 0; c < total; c++) {
			/* a thread's chunks come in increasing order in
			 * practice (the runtime's counter only grows), and
			 * the search is right in any order */
			while (c < first[j])
				j--;
			while (c >= first[j + 1])
				j++;
			if (ok)
				J[j].ops->chunk(&J[j], c - first[j], &ws);
		}
		free(ws.kr);
		free(ws.tab);
		free(ws.s);
		free(ws.st);
	}
	free(first);
	if (nomem)
		return lcai_fail(LCA_ERR_NOMEM, "cpu %s decode: no memory for a thread's blocks", who);
	return LCA_OK;
}

/* Where the merge of job j writes: row (g, r) goes to out[j] + dst * dvv
 * elements with dst = (i H + h) (softmax: o itself) or (h tq + i) (mla:
 * the latent buffer, head-major for the projection GEMMs); its lse to
 * lse[j][i H + h] when lse[j] is not NULL. */
struct dec_out {
	int head_major;
	void **out, **lse;
};

/* Merge the chunks of every row of the n jobs, in one parallel loop. */
static lca_status dec_merge(const struct dec_job *J, int64_t n, const char *who,
	const struct dec_out *to)
{
	const int f32 = J[0].p->dtype == LCA_F32;
	const size_t es = J[0].ops->esize;
	int64_t nrow = 0, per = 1, work = 0, *first, bytes;
	double *scr = NULL;
	int nt;

	if (!(first = malloc((size_t)(n + 1) * sizeof *first)))
		return lcai_fail(LCA_ERR_NOMEM, "cpu %s decode: no memory for %lld sequences",
			who, (long long)n);
	first[0] = 0;
	for (int64_t j = 0; j < n; j++) {
		first[j + 1] = nrow += J[j].nkv * J[j].R;
		per = J[j].nch + J[j].dvv > per ? J[j].nch + J[j].dvv : per;
		work += J[j].nkv * J[j].R * J[j].nch * J[j].dvv;
	}
	/* A thread per 2^15 elements merged, at most one per row: a short
	 * decode is not worth waking the team. */
	work = work / 32768 + 1;
	nt = lcai_flash_team(J[0].p, work < nrow ? work : nrow);
	if (!lcai_mul_n(&bytes, 3, (int64_t)nt, per, (int64_t)sizeof(double)) ||
	    !(scr = dec_alloc(bytes))) {
		free(first);
		return lcai_fail(LCA_ERR_NOMEM, "cpu %s decode: no memory to merge %lld rows",
			who, (long long)nrow);
	}
	#pragma omp parallel num_threads(nt)
	{
#ifdef _OPENMP
		double *w = scr + (int64_t)omp_get_thread_num() * per;
#else
		double *w = scr;
#endif
		int64_t j = 0; /* job of the thread's last row */

		#pragma omp for schedule(static)
		for (int64_t k = 0; k < nrow; k++) {
			const struct dec_job *Jj;
			int64_t row, g, r, i, h, dst;
			double l;

			while (k < first[j])
				j--;
			while (k >= first[j + 1])
				j++;
			Jj = &J[j];
			row = k - first[j];
			g = row / Jj->R;
			r = row % Jj->R;
			i = r / Jj->G;
			h = g * Jj->G + r % Jj->G;
			dst = to->head_major ? h * Jj->tq + i : i * Jj->p->H + h;
			l = Jj->ops->merge_row(Jj, row, w, w + Jj->nch);
			dec_from_double(w + Jj->nch, Jj->dvv, f32,
				lcai_flash_at_w(to->out[j], es, dst * Jj->dvv));
			if (to->lse[j])
				dec_from_double(&l, 1, f32,
					lcai_flash_at_w(to->lse[j], es, i * Jj->p->H + h));
		}
	}
	free(scr);
	free(first);
	return LCA_OK;
}

/* ---- softmax ------------------------------------------------------------ */

/* Query rows of a softmax call into qd: row (g, r) is query r / G of head
 * g G + r % G, in order, so rotated coordinates come first. */
static void softmax_rows(const struct dec_job *J, const void *q, double *qd)
{
	const lca_params *p = J->p;
	const size_t es = J->ops->esize;

	for (int64_t g = 0; g < J->nkv; g++)
		for (int64_t r = 0; r < J->R; r++) {
			int64_t i = r / J->G, h = g * J->G + r % J->G;

			dec_to_double(lcai_flash_at(q, es, (i * p->H + h) * p->dk), p->dk,
				p->dtype == LCA_F32, qd + (g * J->R + r) * J->dq);
		}
}

/* ---- which calls run here ------------------------------------------- */

/* The split-K kernels serve this call (before the storage is asked). */
static int dec_shape_ok(const lca_params *p, int64_t tq, int64_t tk)
{
	if (tq > DEC_MAX_TQ || tq > tk)
		return 0;
	if (p->variant != LCA_MLA)
		return 1;
	return lcai_mla_pick(p, (double)tq, (double)tk,
		lcai_mla_pairs(p, tq, tk)) != LCA_ALGO_NAIVE &&
		p->H * tq <= INT_MAX && p->dc <= INT_MAX && p->H * p->dn <= INT_MAX &&
		p->H * p->dv <= INT_MAX;
}

/* Storage the kernels read: the plan's dtype, or bf16 under an f32 plan
 * (no f64 kernels over bf16 storage are built: such a cache is gathered). */
static int dec_store_ok(const lca_params *p, const struct lcai_kv *kv)
{
	return kv->store == p->dtype ||
		(kv->store == LCA_BF16 && p->dtype == LCA_F32);
}

int lcai_cpu_decode_direct(const lca_params *p, int64_t tq, int64_t tk,
	const struct lcai_kv *kv)
{
	return dec_shape_ok(p, tq, tk) && dec_store_ok(p, kv);
}

/* A call the kernels do not serve goes to the prefill engine, which needs
 * the tokens contiguous in the plan's dtype (the caller gathers others). */
static int dec_prefill_ok(const lca_params *p, const struct lcai_kv *kv,
	const char *who)
{
	if (!kv->pt && kv->store == p->dtype)
		return 1;
	lcai_fail(LCA_ERR_INTERNAL, "cpu %s decode: a %s cache the kernels cannot "
		"read directly was not gathered", who, kv->pt ? "paged" : "converted");
	return 0;
}

/* Job J for the direct softmax call q (tq queries over tk keys at kv):
 * rows, rotated and scaled queries (w_uk, lat: mla's; unused). */
static lca_status softmax_job(const lca_params *p, const struct lcai_dec_seq *sq,
	const void *w_uk, struct dec_job *J, void **lat)
{
	const int64_t Hkv = p->Hkv, dk = p->dk, dv = p->dv, rd = p->rope_dim;
	double *qd;
	int64_t nqd;
	lca_status st;

	(void)w_uk, (void)lat;
	memset(J, 0, sizeof *J);
	J->p = p;
	J->ops = dec_pick(p->dtype, sq->kv.store);
	J->kv = &sq->kv;
	J->kes = (int64_t)lcai_dtype_size(sq->kv.store);
	J->tq = sq->tq;
	J->tk = sq->tk;
	J->nkv = Hkv;
	J->G = p->H / Hkv;
	J->R = sq->tq * J->G;
	J->rd = rd;
	/* Rotated coordinates from the rotated copy, the rest in place. */
	J->rot = (struct dec_seg){ 0, 0, dk, rd };
	J->a = (struct dec_seg){ 0, rd, dk, dk - rd };
	J->b = (struct dec_seg){ 0, 0, 0, 0 };
	J->v = (struct dec_seg){ 1, 0, dv, dv };
	J->dq = dk;
	J->dvv = dv;
	if ((st = dec_setup(J, "softmax", Hkv * (dk + dv))) != LCA_OK)
		return st;
	if (!lcai_mul_n(&nqd, 3, p->H * sq->tq + 1, dk + rd, (int64_t)sizeof(double)) ||
	    !(qd = dec_alloc(nqd))) {
		dec_free(J);
		return lcai_fail(LCA_ERR_NOMEM, "cpu softmax decode: no memory for %lld queries",
			(long long)sq->tq);
	}
	softmax_rows(J, sq->q, qd);
	dec_queries(J, qd, qd + p->H * sq->tq * dk);
	free(qd);
	return LCA_OK;
}

/* The jobs and output pointers of a call of n sequences. */
struct dec_batch {
	struct dec_job *J;
	void **out, **lse, **lat;
	int64_t n;
};

/* Room for n jobs (none when n is 0). */
static lca_status batch_alloc(struct dec_batch *B, int64_t n, const char *who)
{
	memset(B, 0, sizeof *B);
	if (n == 0)
		return LCA_OK;
	B->J = calloc((size_t)n, sizeof *B->J);
	B->out = calloc((size_t)n, sizeof *B->out);
	B->lse = calloc((size_t)n, sizeof *B->lse);
	B->lat = calloc((size_t)n, sizeof *B->lat);
	if (!B->J || !B->out || !B->lse || !B->lat)
		return lcai_fail(LCA_ERR_NOMEM, "cpu %s decode: no memory for %lld sequences",
			who, (long long)n);
	return LCA_OK;
}

static void batch_free(struct dec_batch *B)
{
	for (int64_t j = 0; B->J && j < B->n; j++)
		dec_free(&B->J[j]);
	for (int64_t j = 0; B->lat && j < B->n; j++)
		free(B->lat[j]);
	free(B->J);
	free(B->out);
	free(B->lse);
	free(B->lat);
}

/* Sequences of a call the decode kernels read where they lie. */
static int64_t n_direct(const lca_params *p, int64_t n, const struct lcai_dec_seq *seq)
{
	int64_t nd = 0;

	for (int64_t i = 0; i < n; i++)
		nd += lcai_cpu_decode_direct(p, seq[i].tq, seq[i].tk, &seq[i].kv);
	return nd;
}

/* What a mechanism brings to a call: its job for a sequence the kernels
 * read (mla: with its latent buffer, where the merge writes), its prefill
 * call for one they do not, and the layout of the merge's output. */
struct dec_kind {
	const char *who;
	int head_major;
	lca_status (*job)(const lca_params *p, const struct lcai_dec_seq *sq,
		const void *w_uk, struct dec_job *J, void **lat);
	lca_status (*prefill)(const lca_params *p, const struct lcai_dec_seq *sq,
		const void *w_uk, const void *w_uv);
};

/*
 * A call of n sequences: the jobs of the direct ones are made first (all
 * their memory but the threads' scratch), then the others go to the
 * prefill engine one by one, then the jobs run and merge. A call of one
 * sequence that fails for want of memory has written no output. B is the
 * caller's to finish (mla's expansion) and to free, also on failure.
 */
static lca_status dec_call(const lca_params *p, int64_t n,
	const struct lcai_dec_seq *seq, const struct dec_kind *k,
	const void *w_uk, const void *w_uv, struct dec_batch *B)
{
	struct dec_out to = { k->head_major, NULL, NULL };
	lca_status st;

	if ((st = batch_alloc(B, n_direct(p, n, seq), k->who)))
		return st;
	for (int64_t i = 0; i < n; i++) {
		if (!lcai_cpu_decode_direct(p, seq[i].tq, seq[i].tk, &seq[i].kv))
			continue;
		if ((st = k->job(p, &seq[i], w_uk, &B->J[B->n], &B->lat[B->n])))
			return st;
		B->out[B->n] = B->lat[B->n] ? B->lat[B->n] : seq[i].o;
		B->lse[B->n++] = seq[i].lse;
	}
	for (int64_t i = 0; i < n; i++) {
		if (lcai_cpu_decode_direct(p, seq[i].tq, seq[i].tk, &seq[i].kv))
			continue;
		if (!dec_prefill_ok(p, &seq[i].kv, k->who))
			return LCA_ERR_INTERNAL;
		if ((st = k->prefill(p, &seq[i], w_uk, w_uv)))
			return st;
	}
	to.out = B->out;
	to.lse = B->lse;
	if (B->n > 0 && (st = dec_run(B->J, B->n, k->who)) == LCA_OK)
		st = dec_merge(B->J, B->n, k->who, &to);
	return st;
}

static lca_status softmax_prefill(const lca_params *p, const struct lcai_dec_seq *sq,
	const void *w_uk, const void *w_uv)
{
	const int64_t cq[2] = { 0, sq->tq }, ck[2] = { 0, sq->tk };

	(void)w_uk, (void)w_uv;
	return lcai_cpu_softmax(p, cq, ck, 1, sq->q, sq->kv.buf[0], sq->kv.buf[1],
		sq->o, sq->lse);
}

lca_status lcai_cpu_softmax_decode(const lca_params *p, int64_t n,
	const struct lcai_dec_seq *seq)
{
	static const struct dec_kind kind = { "softmax", 0, softmax_job, softmax_prefill };
	struct dec_batch B;
	lca_status st = dec_call(p, n, seq, &kind, NULL, NULL, &B);

	batch_free(&B);
	return st;
}

/* ---- mla (absorbed) ----------------------------------------------------- */

/* lat[h][i][dc] = q_nope[i][h] w_uk[h] (dn x dc), one GEMM per head; BLAS
 * may use its own threads here (outside any OpenMP region). */
static void mla_absorb(const lca_params *p, int64_t tq, const void *q_nope,
	const void *w_uk, void *lat)
{
	const int64_t H = p->H, dn = p->dn, dc = p->dc;

	for (int64_t h = 0; h < H; h++) {
		if (p->dtype == LCA_F32)
			lcai_cpu_gemm_f32(0, CblasNoTrans, CblasNoTrans, tq, dc, dn, 1.0,
				(const float *)q_nope + h * dn, H * dn,
				(const float *)w_uk + h * dn * dc, dc, 0.0,
				(float *)lat + h * tq * dc, dc);
		else
			lcai_cpu_gemm_f64(0, CblasNoTrans, CblasNoTrans, tq, dc, dn, 1.0,
				(const double *)q_nope + h * dn, H * dn,
				(const double *)w_uk + h * dn * dc, dc, 0.0,
				(double *)lat + h * tq * dc, dc);
	}
}

/* o[i][h] = w_uv[h] (dv x dc) lat[h][i], one GEMM per head. */
static void mla_expand(const lca_params *p, int64_t tq, const void *lat,
	const void *w_uv, void *o)
{
	const int64_t H = p->H, dv = p->dv, dc = p->dc;

	for (int64_t h = 0; h < H; h++) {
		if (p->dtype == LCA_F32)
			lcai_cpu_gemm_f32(0, CblasNoTrans, CblasTrans, tq, dv, dc, 1.0,
				(const float *)lat + h * tq * dc, dc,
				(const float *)w_uv + h * dv * dc, dc, 0.0,
				(float *)o + h * dv, H * dv);
		else
			lcai_cpu_gemm_f64(0, CblasNoTrans, CblasTrans, tq, dv, dc, 1.0,
				(const double *)lat + h * tq * dc, dc,
				(const double *)w_uv + h * dv * dc, dc, 0.0,
				(double *)o + h * dv, H * dv);
	}
}

/* Query rows [q_rope[:rd] ; q_lat ; q_rope[rd:]] into qd, row r = i H + h. */
static void mla_rows(const struct dec_job *J, const void *q_rope,
	const void *lat, double *qd)
{
	const lca_params *p = J->p;
	const size_t es = J->ops->esize;
	const int64_t dr = p->dr, dc = p->dc, rd = J->rd;
	const int f32 = p->dtype == LCA_F32;

	for (int64_t r = 0; r < J->R; r++) {
		int64_t i = r / p->H, h = r % p->H;
		const void *qr = lcai_flash_at(q_rope, es, (i * p->H + h) * dr);
		double *x = qd + r * J->dq;

		dec_to_double(qr, rd, f32, x);
		dec_to_double(lcai_flash_at(lat, es, (h * J->tq + i) * dc), dc, f32,
			x + rd);
		dec_to_double(lcai_flash_at(qr, es, rd), dr - rd, f32, x + rd + dc);
	}
}

/* Job J and its latent buffer *lat for the direct mla call sq. */
static lca_status mla_job(const lca_params *p, const struct lcai_dec_seq *sq,
	const void *w_uk, struct dec_job *J, void **lat)
{
	const int64_t H = p->H, dc = p->dc, dr = p->dr, rd = p->rope_dim;
	double *qd;
	int64_t nqd, nlat;
	lca_status st;

	memset(J, 0, sizeof *J);
	J->p = p;
	J->ops = dec_pick(p->dtype, sq->kv.store);
	J->kv = &sq->kv;
	J->kes = (int64_t)lcai_dtype_size(sq->kv.store);
	J->tq = sq->tq;
	J->tk = sq->tk;
	J->nkv = 1;
	J->G = H;
	J->R = sq->tq * H;
	J->rd = rd;
	J->rot = (struct dec_seg){ 1, 0, 0, rd };
	J->a = (struct dec_seg){ 0, 0, 0, dc };
	J->b = (struct dec_seg){ 1, rd, 0, dr - rd };
	J->v = (struct dec_seg){ 0, 0, 0, dc };
	J->dq = rd + dc + (dr - rd);
	J->dvv = dc;
	if ((st = dec_setup(J, "mla", dc + dr)) != LCA_OK)
		return st;
	qd = NULL;
	if (!lcai_mul_n(&nqd, 3, J->R + 1, J->dq + rd, (int64_t)sizeof(double)) ||
	    !lcai_mul_n(&nlat, 3, J->R, dc, (int64_t)J->ops->esize) ||
	    !(qd = dec_alloc(nqd)) || !(*lat = dec_alloc(nlat))) {
		free(qd);
		dec_free(J);
		return lcai_fail(LCA_ERR_NOMEM, "cpu mla decode: no memory for %lld queries",
			(long long)sq->tq);
	}
	mla_absorb(p, sq->tq, sq->q, w_uk, *lat);
	mla_rows(J, sq->q_rope, *lat, qd);
	dec_queries(J, qd, qd + J->R * J->dq);
	free(qd);
	return LCA_OK;
}

static lca_status mla_prefill(const lca_params *p, const struct lcai_dec_seq *sq,
	const void *w_uk, const void *w_uv)
{
	const int64_t cq[2] = { 0, sq->tq }, ck[2] = { 0, sq->tk };

	return lcai_cpu_mla(p, cq, ck, 1, sq->q, sq->q_rope, sq->kv.buf[0],
		sq->kv.buf[1], w_uk, w_uv, sq->o, sq->lse);
}

lca_status lcai_cpu_mla_decode(const lca_params *p, int64_t n,
	const struct lcai_dec_seq *seq, const void *w_uk, const void *w_uv)
{
	static const struct dec_kind kind = { "mla", 1, mla_job, mla_prefill };
	struct dec_batch B;
	lca_status st = dec_call(p, n, seq, &kind, w_uk, w_uv, &B);

	/* each latent output through w_uv, in the order of the jobs */
	for (int64_t j = 0, i = 0; st == LCA_OK && j < B.n; i++)
		if (lcai_cpu_decode_direct(p, seq[i].tq, seq[i].tk, &seq[i].kv))
			mla_expand(p, seq[i].tq, B.lat[j++], w_uv, seq[i].o);
	batch_free(&B);
	return st;
}
