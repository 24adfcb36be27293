/*
 * lcattn.h - long-context attention: softmax, DeepSeek MLA, Gated DeltaNet
 * (Qwen3-Next) and Lightning Attention (MiniMax), each as a double-precision
 * reference, an OpenMP/BLAS CPU path and a CUDA path, behind one API.
 *
 * This header is the documentation of the API; every call also has a man3
 * page and lcattn(7) gives the overview.
 *
 * Conventions (see lcattn(7)):
 *   - Tensors are dense, row-major (C order). Per-token tensors are
 *     [T][heads][dim]: token-major.
 *   - The element type of every tensor argument is the plan's dtype:
 *     LCA_F64 = double, LCA_F32 = float, LCA_BF16 = uint16_t (bfloat16 bits).
 *     cu_seqlens is always int64_t.
 *   - Packed variable-length batches: cu_seqlens[nseq + 1] with cu[0] = 0,
 *     non-decreasing, cu[nseq] = T. Sequences never see each other and their
 *     positions restart at 0. cu_seqlens == NULL means one sequence (nseq
 *     is then ignored and taken as 1).
 *   - Queries are the last Tq of Tk positions (bottom-right alignment):
 *     query i sits at position Tk - Tq + i and key s at position s. Prefill,
 *     chunked prefill and decode are the same call with different Tq.
 *   - Every call returns an lca_status. On failure lca_last_error() gives a
 *     per-thread message that names the offending argument, and output
 *     buffers are left untouched unless the status is LCA_ERR_NOMEM or
 *     LCA_ERR_INTERNAL.
 *   - cuda backend: tensors are device pointers; cu_seqlens stays a host
 *     pointer (the host plans the launches from it).
 *   - Non-finite inputs (NaN, +-Inf) are refused with LCA_ERR_NONFINITE
 *     before any output is written (params.check_finite, on by default).
 *   - The library never prints, aborts or exits, and keeps no global mutable
 *     state. A plan is immutable after creation; execution calls may run
 *     concurrently on one plan from many threads.
 */
#ifndef LCATTN_H
#define LCATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(LCA_BUILDING_LIBRARY) && defined(__GNUC__)
#define LCA_API __attribute__((visibility("default")))
#else
#define LCA_API
#endif

/* Compile-time version; lca_version() gives the run-time one. */
#define LCA_VERSION_MAJOR 0
#define LCA_VERSION_MINOR 1
#define LCA_VERSION_PATCH 0
#define LCA_VERSION_STRING "0.1.0"

/* ---- status codes ------------------------------------------------------ */

typedef enum lca_status {
	LCA_OK = 0,
	LCA_ERR_NULL,        /* a required pointer argument is NULL */
	LCA_ERR_SIZE,        /* a size is zero, negative or inconsistent */
	LCA_ERR_OVERFLOW,    /* a product of sizes overflows int64 or size_t */
	LCA_ERR_ARG,         /* an option or value is out of its domain */
	LCA_ERR_NONFINITE,   /* an input holds NaN or Inf */
	LCA_ERR_UNSUPPORTED, /* this backend/dtype/algorithm is not built or not offered */
	LCA_ERR_NO_DEVICE,   /* the CUDA backend is built but no GPU is usable */
	LCA_ERR_NOMEM,       /* an allocation failed */
	LCA_ERR_CAPACITY,    /* a cache would grow past its capacity */
	LCA_ERR_CORRUPT,     /* a serialized object is damaged or does not match */
	LCA_ERR_INTERNAL     /* a bug in lcattn: please report it */
} lca_status;

/* Short constant name of a status ("LCA_ERR_SIZE: size zero, negative or
 * inconsistent"); never NULL, also for values outside the enum. */
LCA_API const char *lca_strerror(lca_status status);

/* Detail message of the last failing call made by this thread ("" if none).
 * The pointer stays valid until this thread's next lcattn call. */
LCA_API const char *lca_last_error(void);

/* Run-time version string, e.g. "0.1.0". */
LCA_API const char *lca_version(void);

/* ---- enums ------------------------------------------------------------- */

typedef enum lca_variant {
	LCA_SOFTMAX = 0,  /* full softmax attention (RoPE, GQA, causal, window) */
	LCA_MLA,          /* DeepSeek multi-head latent attention */
	LCA_DELTANET,     /* Gated DeltaNet (Qwen3-Next) */
	LCA_LIGHTNING     /* Lightning attention with per-head decay (MiniMax) */
} lca_variant;

typedef enum lca_backend {
	LCA_BACKEND_REF = 0, /* naive double-precision reference: the ground truth */
	LCA_BACKEND_CPU,     /* OpenMP + BLAS */
	LCA_BACKEND_CUDA     /* NVIDIA GPU; tensor arguments are device pointers */
} lca_backend;

typedef enum lca_dtype {
	LCA_F64 = 0, /* double */
	LCA_F32,     /* float */
	LCA_BF16     /* bfloat16 stored as uint16_t */
} lca_dtype;

/* Which computation of a mechanism to run. All give the same numbers up to
 * rounding; the reference offers each one so they can be checked against
 * each other. */
typedef enum lca_algo {
	LCA_ALGO_AUTO = 0,   /* the backend's choice */
	LCA_ALGO_NAIVE,      /* mla: decompress K and V per head */
	LCA_ALGO_ABSORBED,   /* mla: fold w_uk into q, apply w_uv after the latent sum */
	LCA_ALGO_RECURRENT,  /* deltanet, lightning: token by token */
	LCA_ALGO_CHUNKED     /* deltanet: WY/UT chunks; lightning: blockwise */
} lca_algo;

typedef enum lca_rope_style {
	LCA_ROPE_HALF = 0,     /* pairs (i, i + rope_dim/2): NeoX, Qwen, MiniMax */
	LCA_ROPE_INTERLEAVED   /* pairs (2i, 2i + 1): DeepSeek, GPT-J */
} lca_rope_style;

/* rope_dim value meaning "rotate the whole rotary part" (dk for softmax,
 * dr for mla). */
#define LCA_ROPE_FULL ((int64_t)-1)

/* ---- parameters and plans --------------------------------------------- */

/*
 * Everything fixed for the life of a plan. Fill with lca_params_init() and
 * then set the fields you need: new fields get safe defaults there, so code
 * written against this version keeps working.
 *
 * Heads and sizes (0 in a *_kv/Hk field means "same as H"):
 *   softmax:   H query heads, Hkv key/value heads (H % Hkv == 0), dk, dv
 *   mla:       H heads, dn (no-rope q/k part), dr (rope part), dc (latent),
 *              dv; scale must be set (> 0)
 *   deltanet:  H value heads, Hk query/key heads (H % Hk == 0), dk, dv
 *   lightning: H heads, dk, dv
 */
typedef struct lca_params {
	lca_variant variant;
	lca_backend backend;   /* default LCA_BACKEND_REF */
	lca_dtype dtype;       /* default LCA_F64 */
	lca_algo algo;         /* default LCA_ALGO_AUTO */

	int64_t H;             /* query heads (value heads for deltanet) */
	int64_t Hkv;           /* softmax: key/value heads; 0 = H */
	int64_t Hk;            /* deltanet: query/key heads; 0 = H */
	int64_t dk;            /* softmax, deltanet, lightning: q/k head size */
	int64_t dv;            /* value / output head size (all variants) */
	int64_t dn;            /* mla: non-rotary q/k head size */
	int64_t dr;            /* mla: rotary q/k head size (shared k_rope) */
	int64_t dc;            /* mla: latent (compressed kv) size */

	double scale;          /* logit / query scale; 0 = the variant's default:
	                          1/sqrt(dk) softmax and deltanet, 1 lightning;
	                          mla has no default (must be > 0) */
	int causal;            /* softmax, mla: mask keys after the query (default 1) */
	int64_t window;        /* softmax, mla: 0 = none; W > 0 keeps keys with
	                          0 <= pos_q - pos_k < W (needs causal) */

	int64_t rope_dim;      /* leading coordinates rotated: 0 = no RoPE,
	                          LCA_ROPE_FULL = all; even. Default: 0 softmax,
	                          LCA_ROPE_FULL mla; must be 0 for deltanet and
	                          lightning */
	double rope_theta;     /* default 10000 */
	lca_rope_style rope_style; /* default HALF (softmax), INTERLEAVED (mla) */

	int qk_l2norm;         /* deltanet: L2-normalise q and k (default 1) */
	int64_t chunk;         /* deltanet chunked form: tokens per chunk (default 64) */
	int64_t block;         /* lightning blockwise form: tokens per block (default 256) */

	int nthreads;          /* cpu backend: OpenMP threads, 0 = OpenMP default */
	int check_finite;      /* refuse NaN/Inf inputs (default 1) */
} lca_params;

/* Set every field of *p to its default for the given variant. */
LCA_API lca_status lca_params_init(lca_params *p, lca_variant variant);

typedef struct lca_plan lca_plan;

/* Validate *p, resolve defaults and choose the kernels. *plan receives a new
 * plan (NULL on failure) that the caller frees with lca_plan_destroy(). */
LCA_API lca_status lca_plan_create(const lca_params *p, lca_plan **plan);

/* Free a plan; NULL is a no-op. */
LCA_API void lca_plan_destroy(lca_plan *plan);

/* Copy the plan's resolved parameters (defaults filled in) into *p. */
LCA_API lca_status lca_plan_params(const lca_plan *plan, lca_params *p);

/* 1 if the backend is built into this library and usable now (for CUDA:
 * a device is present), else 0. */
LCA_API int lca_backend_available(lca_backend backend);

/* ---- buffers ------------------------------------------------------------
 * The cuda backend takes device pointers, as cuBLAS does. These helpers
 * let a caller that does not include CUDA headers allocate and copy for any
 * backend: for ref and cpu they are malloc, free and memcpy. Forward calls
 * on the cuda backend run on the default stream and return after the
 * results are written.
 */

typedef enum lca_copy_kind {
	LCA_COPY_HOST_TO_DEVICE = 0,
	LCA_COPY_DEVICE_TO_HOST,
	LCA_COPY_DEVICE_TO_DEVICE
} lca_copy_kind;

/* *ptr receives bytes of memory usable by the backend (NULL on failure). */
LCA_API lca_status lca_buffer_alloc(lca_backend backend, size_t bytes, void **ptr);

/* Free memory from lca_buffer_alloc() of the same backend; NULL is a no-op. */
LCA_API void lca_buffer_free(lca_backend backend, void *ptr);

/* Copy bytes between host and backend memory (for ref and cpu every kind
 * is a host memcpy). */
LCA_API lca_status lca_buffer_copy(lca_backend backend, void *dst,
	const void *src, size_t bytes, lca_copy_kind kind);

/* ---- forward calls ----------------------------------------------------- */

/*
 * Softmax attention.
 *   q   [Tq][H][dk]      queries
 *   k   [Tk][Hkv][dk]    keys;   head h reads kv head h / (H / Hkv)
 *   v   [Tk][Hkv][dv]    values
 *   o   [Tq][H][dv]      output
 *   lse [Tq][H]          natural-log sum of exp(logits); may be NULL
 * logits = scale * <rope(q), rope(k)>. Fully masked rows give o = 0 and
 * lse = -inf. With cu_seqlens, Tq must equal Tk (per sequence Tq = Tk).
 */
LCA_API lca_status lca_softmax_forward(const lca_plan *plan,
	int64_t Tq, int64_t Tk, const void *q, const void *k, const void *v,
	const int64_t *cu_seqlens, int64_t nseq, void *o, void *lse);

/*
 * Multi-head latent attention (DeepSeek-V2 sec. 2.1).
 *   q_nope [Tq][H][dn]   q_rope [Tq][H][dr]
 *   ckv    [Tk][dc]      latent cache, shared by all heads
 *   k_rope [Tk][dr]      rotary key, shared by all heads
 *   w_uk   [H][dn][dc]   k_nope_h = w_uk[h] ckv
 *   w_uv   [H][dv][dc]   v_h      = w_uv[h] ckv
 *   o      [Tq][H][dv]   lse [Tq][H] (may be NULL)
 * The plan's algo picks the naive (LCA_ALGO_NAIVE) or absorbed
 * (LCA_ALGO_ABSORBED, the AUTO choice) computation.
 */
LCA_API lca_status lca_mla_forward(const lca_plan *plan,
	int64_t Tq, int64_t Tk, const void *q_nope, const void *q_rope,
	const void *ckv, const void *k_rope, const void *w_uk, const void *w_uv,
	const int64_t *cu_seqlens, int64_t nseq, void *o, void *lse);

/*
 * Gated DeltaNet. Per token and value head h (qk head h / (H / Hk)):
 *   S = exp(g) S;  u = beta (v - S^T k);  S += k u^T;  o = S^T q
 * after optional L2 normalisation of q and k and q *= scale.
 *   q, k   [T][Hk][dk]    v [T][H][dv]    g, beta [T][H]  (g <= 0)
 *   state0 [N][H][dk][dv] initial state per sequence; NULL = zeros
 *   o      [T][H][dv]
 *   state  [N][H][dk][dv] final state per sequence; may be NULL
 * N = nseq with cu_seqlens, else 1. state0 and state may be the same buffer.
 * On the cuda backend state0 and state are float32 whatever the dtype.
 */
LCA_API lca_status lca_deltanet_forward(const lca_plan *plan, int64_t T,
	const void *q, const void *k, const void *v, const void *g,
	const void *beta, const int64_t *cu_seqlens, int64_t nseq,
	const void *state0, void *o, void *state);

/*
 * Lightning attention. Per token and head h, lambda_h = exp(-slope_h):
 *   S = lambda_h S + k v^T;  o = scale S^T q
 *   q, k [T][H][dk]   v [T][H][dv]   slope [H] (>= 0)
 *   state0, state, o as for lca_deltanet_forward().
 */
LCA_API lca_status lca_lightning_forward(const lca_plan *plan, int64_t T,
	const void *q, const void *k, const void *v, const void *slope,
	const int64_t *cu_seqlens, int64_t nseq, const void *state0, void *o,
	void *state);

/* ---- helpers ----------------------------------------------------------- */

/*
 * MiniMax decay slopes for layer `layer` of `L` (0 <= layer < L), H heads:
 *   s_h = base_h * (1 - layer / (L - 1) + 1e-5)   (the factor is 1 + 1e-5 when L = 1)
 * with base_h = 2^(-8 (h + 1) / H) when H is a power of two, else ALiBi's
 * interpolation (the power-of-two slopes of the largest power of two below
 * H, followed by every other slope of twice that size).
 *   slope [H] (double, always)
 */
LCA_API lca_status lca_minimax_slopes(int64_t H, int64_t layer, int64_t L,
	double *slope);

#ifdef __cplusplus
}
#endif

#endif /* LCATTN_H */
