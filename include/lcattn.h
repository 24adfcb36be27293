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
 *     LCA_F64 = double, LCA_F32 = float, LCA_BF16 = uint16_t (bfloat16 bits;
 *     recurrent state0 and state stay float). ref: f64, f32; cpu: f64,
 *     f32, bf16 (forward calls); cuda: f32, bf16 (forward calls).
 *     cu_seqlens is always int64_t. Tensors are untyped pointers, so float
 *     data given to a double plan cannot be detected (it is read as other
 *     numbers, often finite): match the plan's dtype.
 *   - Output buffers must not overlap any input buffer (LCA_ERR_ARG).
 *   - Packed variable-length batches: cu_seqlens[nseq + 1] with cu[0] = 0,
 *     non-decreasing, cu[nseq] = T. The array must hold nseq + 1 entries:
 *     the library reads exactly that many and cannot see a shorter one.
 *     Sequences never see each other and their positions restart at 0.
 *     cu_seqlens == NULL means one sequence (nseq is then ignored and
 *     taken as 1).
 *   - Queries are the last Tq of Tk positions (bottom-right alignment):
 *     query i sits at position Tk - Tq + i and key s at position s. Prefill,
 *     chunked prefill and decode are the same call with different Tq.
 *   - Every call but the destroy calls (which return nothing and accept
 *     NULL) returns an lca_status. On failure lca_last_error() gives a
 *     per-thread message that names the offending argument, and output
 *     buffers are left untouched unless the status is LCA_ERR_NOMEM or
 *     LCA_ERR_INTERNAL.
 *   - cuda backend: tensors are device pointers; cu_seqlens stays a host
 *     pointer (the host plans the launches from it).
 *   - Non-finite inputs (NaN, +-Inf) are refused with LCA_ERR_NONFINITE
 *     before any output is written (params.check_finite, on by default);
 *     softmax and mla inputs so large that a logit or a sum could overflow
 *     the working type are refused with LCA_ERR_RANGE by the same scan.
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
	LCA_ERR_CORRUPT,     /* a serialized object is damaged, or intact but
	                        saved from a cache this one does not match */
	LCA_ERR_INTERNAL,    /* a bug in lcattn: please report it */
	LCA_ERR_RANGE        /* finite inputs whose logits could overflow the dtype */
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

/* Largest lca_params.nthreads a plan accepts (LCA_ERR_ARG above it). */
#define LCA_MAX_THREADS 4096

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
	/* Grouped heads. The two names differ on purpose: softmax groups its
	 * keys and values (Hkv <= H, GQA), Gated DeltaNet its queries and keys
	 * (Hk <= H value heads, as Qwen3-Next). */
	int64_t Hkv;           /* softmax: key/value heads; 0 = H */
	int64_t Hk;            /* deltanet: query/key heads; 0 = H */
	int64_t dk;            /* softmax, deltanet, lightning: q/k head size */
	int64_t dv;            /* value / output head size (all variants) */
	int64_t dn;            /* mla: non-rotary q/k head size */
	int64_t dr;            /* mla: rotary q/k head size (shared k_rope) */
	int64_t dc;            /* mla: latent (compressed kv) size */

	double scale;          /* what it multiplies differs: the logits
	                          (softmax, mla), the query after its L2 norm
	                          (deltanet), the output S^T q (lightning).
	                          0 = the variant's default: 1/sqrt(dk) softmax
	                          and deltanet, 1 lightning; mla has no default
	                          and needs it > 0 (DeepSeek's is not
	                          1/sqrt(dn + dr); `lcattn gen` alone fills in
	                          1/sqrt(dn + dr) when asked for 0) */
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
	/* The tile of the two linear mechanisms' parallel forms; two names
	 * because the papers use two (chunk: DeltaNet's WY/UT form; block:
	 * Lightning's intra/inter-block split). Each is read by its variant
	 * only; results do not depend on it beyond rounding. */
	int64_t chunk;         /* deltanet chunked form: tokens per chunk (default 64) */
	int64_t block;         /* lightning blockwise form: tokens per block (default 256) */

	int nthreads;          /* cpu backend: OpenMP threads, 0 = OpenMP default,
	                        * at most LCA_MAX_THREADS; teams never exceed
	                        * the processors */
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

/* Name of the x86-64 level the cpu backend's vector kernels run at in this
 * process: "avx512bf16" (AVX-512 plus the bf16 dot products of the bf16
 * softmax), "avx512", "avx2" or "sse" ("generic" off x86-64). The widest
 * level the CPU runs, capped by the environment variable
 * LCA_CPU_ISA=sse|avx2|avx512|avx512bf16 (other values ignored), read
 * once, at the first cpu call; never NULL. */
LCA_API const char *lca_cpu_isa(void);

/* ---- profiling ----------------------------------------------------------
 * Where the cpu backend's time goes: with profiling on, the prefill kernels
 * of deltanet (chunked), lightning (blockwise) and the flash engine of
 * softmax and mla time their phases (per chunk, block or tile) on every
 * thread, and lca_profile_read() returns each phase's seconds summed over
 * the threads. Off (the default), a phase boundary costs one relaxed load
 * and a branch. Process-wide; enabling or resetting while a call runs is
 * not supported: it never crashes, but that call's figures are unreliable.
 */

typedef struct lca_profile_phase {
	const char *name;  /* "deltanet.wy", ...: static, never NULL */
	double seconds;    /* summed over the threads that ran the phase */
	int64_t count;     /* intervals timed */
} lca_profile_phase;

/* Turn the profiler on (1) or off (0); LCA_ERR_ARG for other values. What
 * was counted stays until lca_profile_reset(). */
LCA_API lca_status lca_profile_enable(int on);

/* Zero every phase's seconds and count. */
LCA_API lca_status lca_profile_reset(void);

/* *n receives the number of phases; the first min(max, *n) of them, in a
 * fixed order, are written to phases (NULL allowed when max is 0). */
LCA_API lca_status lca_profile_read(lca_profile_phase *phases, int max, int *n);

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
 * (LCA_ALGO_ABSORBED) computation; AUTO is absorbed on the ref and cuda
 * backends and, on the cpu backend, the one with fewer flops for each
 * call's shape: naive for a prefill, absorbed for a decode step.
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
 * On the cuda backend, and in bf16 plans, state0 and state are float32.
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

/* ---- backward calls (gradients) --------------------------------------
 *
 * Each takes the plan and the inputs of its forward call, the cotangent
 * dout of o (and, for deltanet and lightning, dstate of the final state;
 * NULL = zeros), and writes the gradients of
 *   L = sum(o * dout) + sum(state * dstate)
 * with respect to every floating input, each shaped like its input:
 * d<name> for input <name>. lse is not differentiated; lightning's slopes
 * are constants. Every gradient buffer is required except dstate0 (NULL =
 * not wanted), is overwritten (never accumulated into), and is written
 * only on success. The call recomputes what it needs from the inputs (no
 * saved activations); the plan's algo picks the computation whose adjoint
 * runs (mla naive or absorbed; deltanet, lightning recurrent or chunked),
 * as for the forward. Everything the forward accepts is accepted:
 * cu_seqlens with empty sequences, windows, bottom-right alignment,
 * grouped heads (dk, dv of a shared head sum over its group), partial and
 * interleaved RoPE, qk L2 norm, state0. Backends: ref (f64, and f32 for
 * the tolerance rule), all four mechanisms; cpu (f32, f64), all four:
 * softmax and mla by FlashAttention-2's backward, which reruns the
 * forward for o and lse (about 3.5 forward calls' work, memory O(T); mla
 * runs the naive form's adjoint whatever the algo, the same gradient),
 * deltanet and lightning by the chunked/blockwise adjoint whatever the
 * algo (cpu deltanet keeps the state entering every chunk: ceil(T /
 * chunk) dk dv elements per thread); every cpu backward is bitwise the
 * same for every nthreads. cuda, and bf16 plans, return
 * LCA_ERR_UNSUPPORTED.
 */
LCA_API lca_status lca_softmax_backward(const lca_plan *plan,
	int64_t Tq, int64_t Tk, const void *q, const void *k, const void *v,
	const int64_t *cu_seqlens, int64_t nseq, const void *dout,
	void *dq, void *dk, void *dv);
LCA_API lca_status lca_mla_backward(const lca_plan *plan,
	int64_t Tq, int64_t Tk, const void *q_nope, const void *q_rope,
	const void *ckv, const void *k_rope, const void *w_uk, const void *w_uv,
	const int64_t *cu_seqlens, int64_t nseq, const void *dout,
	void *dq_nope, void *dq_rope, void *dckv, void *dk_rope, void *dw_uk,
	void *dw_uv);
LCA_API lca_status lca_deltanet_backward(const lca_plan *plan, int64_t T,
	const void *q, const void *k, const void *v, const void *g,
	const void *beta, const int64_t *cu_seqlens, int64_t nseq,
	const void *state0, const void *dout, const void *dstate, void *dq,
	void *dk, void *dv, void *dg, void *dbeta, void *dstate0);
LCA_API lca_status lca_lightning_backward(const lca_plan *plan, int64_t T,
	const void *q, const void *k, const void *v, const void *slope,
	const int64_t *cu_seqlens, int64_t nseq, const void *state0,
	const void *dout, const void *dstate, void *dq, void *dk, void *dv,
	void *dstate0);

/* ---- decode caches ------------------------------------------------------
 *
 * What each mechanism keeps between tokens, per sequence:
 *   softmax:   K [len][Hkv][dk] and V [len][Hkv][dv]
 *   mla:       the latent ckv [len][dc] and k_rope [len][dr] (dc + dr
 *              numbers per token, shared by all heads)
 *   deltanet:  one state [H][dk][dv]
 *   lightning: one state [H][dk][dv]
 * A cache holds nseq independent sequences, in nseq slots fixed at
 * creation. Storage is in the plan's dtype (states of a f32 plan in f32);
 * it grows on demand up to `capacity` tokens per sequence, or, made with
 * lca_cache_create_ex(), softmax and mla tokens come from one paged pool
 * shared by all sequences and may be stored in bf16. Any plan of the
 * same variant, backend, dtype, sizes and numbers (scale, causal, window,
 * RoPE, qk_l2norm) may drive a cache (see the step calls); a cache is not
 * thread-safe: one writer at a time.
 */
typedef struct lca_cache lca_cache;

/* New empty cache for nseq sequences of at most capacity tokens each
 * (capacity also bounds deltanet/lightning positions, so a caller can cap a
 * generation). softmax and mla allocate nothing up front and grow per
 * sequence to min(capacity, max(needed, 2 x allocated)) tokens;
 * deltanet and lightning allocate their zeroed states here. ref and cpu
 * plans only for now (cuda: LCA_ERR_UNSUPPORTED). */
LCA_API lca_status lca_cache_create(const lca_plan *plan, int64_t nseq,
	int64_t capacity, lca_cache **cache);

/* Free a cache; NULL is a no-op. */
LCA_API void lca_cache_destroy(lca_cache *cache);

/*
 * How a softmax or mla cache stores its tokens (lca_cache_create_ex). Fill
 * with lca_cache_opts_init(), then set what you need:
 *   nseq        slots (>= 1; default 1)
 *   capacity    tokens per sequence at most (>= 1; default 0: must be set)
 *   pool_bytes  0 (default): each sequence grows on its own, as
 *               lca_cache_create() does. > 0: one paged pool of
 *               floor(pool_bytes / page bytes) pages of LCA_CACHE_PAGE
 *               tokens, allocated here and shared by every sequence
 *               (page bytes = LCA_CACHE_PAGE x per-token bytes); a step
 *               that needs more pages than are free fails with
 *               LCA_ERR_CAPACITY and changes nothing; lca_cache_fork()
 *               shares the source's pages copy-on-write. softmax and mla
 *               only (deltanet, lightning keep one fixed state per
 *               sequence: LCA_ERR_ARG).
 *   storage     element type of the stored keys and values: the plan's
 *               dtype (default), or LCA_BF16 under an f32 or f64 plan
 *               (half or a quarter of the bytes a decode step reads; new
 *               tokens are rounded to nearest bf16, ties to even, when
 *               appended, and the kernels compute in the plan's dtype).
 *               softmax and mla only.
 */
#define LCA_CACHE_PAGE 64
typedef struct lca_cache_opts {
	int64_t nseq;
	int64_t capacity;
	size_t pool_bytes;
	lca_dtype storage;
} lca_cache_opts;

/* Defaults for plan (storage = the plan's dtype). */
LCA_API lca_status lca_cache_opts_init(const lca_plan *plan,
	lca_cache_opts *opts);

/* New empty cache as opts says; lca_cache_create(plan, n, cap, &c) is
 * lca_cache_create_ex() with nseq = n, capacity = cap and the defaults. */
LCA_API lca_status lca_cache_create_ex(const lca_plan *plan,
	const lca_cache_opts *opts, lca_cache **cache);

/* A paged cache's pool: *used pages hold tokens (a page shared by forked
 * sequences counts once), of *total (both 0 for a cache without a pool).
 * Either pointer may be NULL. */
LCA_API lca_status lca_cache_pages(const lca_cache *cache, int64_t *used,
	int64_t *total);

/* Empty every sequence (length 0, states zero); keeps the allocation;
 * retired slots become live again, as at creation. */
LCA_API lca_status lca_cache_reset(lca_cache *cache);

/* *len receives the number of tokens sequence seq has seen (LCA_ERR_ARG
 * for a retired slot). */
LCA_API lca_status lca_cache_len(const lca_cache *cache, int64_t seq,
	int64_t *len);

/* *bytes receives the exact bytes of tensor storage the cache holds now
 * (allocated, not only used): per_token x (tokens allocated, summed over
 * sequences) + per_seq x nseq, with lca_plan_cache_cost()'s numbers. */
LCA_API lca_status lca_cache_bytes(const lca_cache *cache, size_t *bytes);

/* Sizing before allocating: a sequence of n tokens holds
 * per_token * n + per_seq bytes of tensor storage for this plan
 * (softmax: per_token = Hkv (dk + dv) elt; mla: (dc + dr) elt; deltanet,
 * lightning: per_seq = H dk dv elt; elt = 8 for f64, 4 for f32). */
LCA_API lca_status lca_plan_cache_cost(const lca_plan *plan,
	int64_t *per_token, int64_t *per_seq);

/*
 * Step calls: append T new tokens (packed by cu_seqlens over the cache's
 * nseq sequences; NULL when the cache has one sequence; a sequence may get
 * 0 tokens) and compute their outputs against everything the sequence has
 * seen. Tensor arguments are those of the forward call, for the new tokens
 * only (mla also takes the weights). A prefill is one step with many
 * tokens; a decode step gives each of the nseq sequences one token (T =
 * nseq, cu_seqlens = 0, 1, ..., nseq). prefill then steps gives
 * the same outputs as one forward call over the whole sequence (causal
 * softmax/mla; without causal a new query sees every token up to the end
 * of its step). T >= 1. The plan must have the cache's variant, backend,
 * dtype, sizes and numbers: a plan whose scale, causal, window, rope_dim,
 * rope_theta, rope_style (softmax, mla) or qk_l2norm (deltanet) differs
 * from the creating plan's is refused (LCA_ERR_ARG, the field named);
 * algo, chunk, block and nthreads may differ (a chunked prefill plan and
 * a recurrent decode plan may share one cache). A retired sequence must
 * get 0 tokens (LCA_ERR_ARG). On any error the cache is left unchanged.
 */
LCA_API lca_status lca_softmax_step(const lca_plan *plan, lca_cache *cache,
	int64_t T, const void *q, const void *k, const void *v,
	const int64_t *cu_seqlens, void *o, void *lse);
LCA_API lca_status lca_mla_step(const lca_plan *plan, lca_cache *cache,
	int64_t T, const void *q_nope, const void *q_rope, const void *ckv,
	const void *k_rope, const void *w_uk, const void *w_uv,
	const int64_t *cu_seqlens, void *o, void *lse);
LCA_API lca_status lca_deltanet_step(const lca_plan *plan, lca_cache *cache,
	int64_t T, const void *q, const void *k, const void *v, const void *g,
	const void *beta, const int64_t *cu_seqlens, void *o);
LCA_API lca_status lca_lightning_step(const lca_plan *plan, lca_cache *cache,
	int64_t T, const void *q, const void *k, const void *v,
	const void *slope, const int64_t *cu_seqlens, void *o);

/*
 * Per-sequence control, for servers (continuous batching, parallel
 * sampling, speculative decoding). Each call changes its own sequence
 * (fork: dst) and no other: the others continue bit for bit. On any error
 * the cache is unchanged. A sequence id is a slot in [0, nseq); a retired
 * slot holds nothing, takes no tokens in a step and is refused by every
 * call below but lca_cache_admit and lca_cache_fork's dst (LCA_ERR_ARG).
 */

/* Empty sequence seq (length 0, state zero), keeping its own buffers (a
 * paged sequence gives its pages back to the pool). */
LCA_API lca_status lca_cache_reset_seq(lca_cache *cache, int64_t seq);

/* Retire sequence seq: its storage is freed or its pages go back to the
 * pool (a recurrent state is zeroed; the block of states stays allocated)
 * and its slot becomes free. */
LCA_API lca_status lca_cache_retire(lca_cache *cache, int64_t seq);

/* *seq receives the lowest retired slot, now live and empty
 * (LCA_ERR_CAPACITY when every slot is live). */
LCA_API lca_status lca_cache_admit(lca_cache *cache, int64_t *seq);

/* softmax, mla: keep the first n tokens of sequence seq, 0 <= n <= its
 * length (deltanet, lightning: LCA_ERR_UNSUPPORTED; use snapshots). */
LCA_API lca_status lca_cache_truncate(lca_cache *cache, int64_t seq,
	int64_t n);

/* Sequence dst (live or retired, != src) becomes a copy of sequence src:
 * its tokens or state, and its length; dst's own are dropped. In a paged
 * cache dst shares src's pages, copied on write (a shared prompt is
 * stored once); otherwise each sequence keeps its own storage. */
LCA_API lca_status lca_cache_fork(lca_cache *cache, int64_t src,
	int64_t dst);

/* deltanet, lightning: the state of sequence seq, [H][dk][dv] in the
 * cache's dtype (softmax, mla: LCA_ERR_UNSUPPORTED). set_state also sets
 * the number of tokens it stands for, len (0 <= len <= capacity); a step
 * from a set state gives the forward call's outputs with that state0. */
LCA_API lca_status lca_cache_get_state(const lca_cache *cache, int64_t seq,
	void *state);
LCA_API lca_status lca_cache_set_state(lca_cache *cache, int64_t seq,
	const void *state, int64_t len);

/* A snapshot of one sequence, to go back to it (speculative decoding).
 * softmax, mla: the length (O(1)); restoring truncates the same sequence
 * of the same cache to it (O(1), where lca_cache_truncate makes a pass over
 * the tokens kept), refused once the sequence lost tokens since
 * (truncate, restore, reset...: take a new snapshot after a restore).
 * deltanet, lightning: a copy of the state, H dk dv elements; restoring
 * copies it back into any sequence of a cache of the same variant, dtype
 * and sizes, any number of times. Free with lca_snapshot_destroy. */
typedef struct lca_snapshot lca_snapshot;
LCA_API lca_status lca_cache_snapshot(const lca_cache *cache, int64_t seq,
	lca_snapshot **snap);
LCA_API lca_status lca_cache_restore(lca_cache *cache, int64_t seq,
	const lca_snapshot *snap);
/* Free a snapshot; NULL is a no-op. */
LCA_API void lca_snapshot_destroy(lca_snapshot *snap);

/* Checkpoint: lca_cache_save writes the cache into buf (size bytes) and
 * stores the bytes needed in *needed; with buf == NULL or size too small
 * it only reports *needed (LCA_ERR_SIZE when buf was given but too small).
 * lca_cache_load restores into a cache of the same variant, dtype, sizes
 * and nseq (the backend may differ) whose capacity holds the saved lengths
 * (else LCA_ERR_CAPACITY); a damaged buffer, or an intact one saved from
 * a cache of another variant, dtype, size or nseq, gives LCA_ERR_CORRUPT
 * (the detail message says which). On any error the cache is untouched. A loaded cache
 * continues bit-identically; the format keeps no slot states: a retired
 * slot is saved as an empty sequence and every slot is live after a load. The format (versioned, little-endian,
 * checksummed) is in lca_cache_save(3). */
LCA_API lca_status lca_cache_save(const lca_cache *cache, void *buf,
	size_t size, size_t *needed);
LCA_API lca_status lca_cache_load(lca_cache *cache, const void *buf,
	size_t size);

/* ---- context parallelism: the pieces ------------------------------------
 *
 * One sequence split over many workers (ranks), each holding a range of
 * its tokens. These calls are the local computations; the caller moves
 * the results between ranks (liblcattn itself never communicates). All
 * take one sequence (no cu_seqlens), positions are global, and the ref
 * and cpu backends offer them (cuda: LCA_ERR_UNSUPPORTED). See lcattn(7),
 * "Context parallelism".
 *
 * softmax, mla: a rank's queries attend to each rank's key range with a
 * partial call, and lca_attn_merge() joins the partial (o, lse) of the
 * same queries into the full attention.
 */

/*
 * Softmax attention of Tq queries over one range of Tk keys, query i at
 * global position q_pos0 + i and key s at k_pos0 + s (RoPE turns each
 * vector by its global position; the causal mask keeps keys at or before
 * the query and the window keys with 0 <= pos_q - pos_k < W). Shapes as
 * for lca_softmax_forward():
 *   q [Tq][H][dk]   k [Tk][Hkv][dk]   v [Tk][Hkv][dv]
 *   o [Tq][H][dv]   lse [Tq][H] (required)
 * lse is the log-sum-exp of the visible scaled logits; a row that sees no
 * key of the range gets o = 0 and lse = -inf. With q_pos0 = Tk - Tq and
 * k_pos0 = 0 this is lca_softmax_forward() without cu_seqlens.
 */
LCA_API lca_status lca_softmax_partial(const lca_plan *plan,
	int64_t Tq, int64_t q_pos0, int64_t Tk, int64_t k_pos0, const void *q,
	const void *k, const void *v, void *o, void *lse);

/*
 * The same for mla; shapes as for lca_mla_forward():
 *   q_nope [Tq][H][dn]  q_rope [Tq][H][dr]  ckv [Tk][dc]  k_rope [Tk][dr]
 *   w_uk [H][dn][dc]    w_uv [H][dv][dc]    o [Tq][H][dv]  lse [Tq][H]
 */
LCA_API lca_status lca_mla_partial(const lca_plan *plan,
	int64_t Tq, int64_t q_pos0, int64_t Tk, int64_t k_pos0,
	const void *q_nope, const void *q_rope, const void *ckv,
	const void *k_rope, const void *w_uk, const void *w_uv, void *o,
	void *lse);

/*
 * Join nparts partial results of the same Tq queries over disjoint key
 * ranges (softmax or mla plan: H and dv from it):
 *   o_parts[i] [Tq][H][dv]   lse_parts[i] [Tq][H]   i < nparts
 *   o [Tq][H][dv]            lse [Tq][H]
 *   o = sum_i exp(lse_i - lse) o_i,  lse = log sum_i exp(lse_i)
 * computed with every exponent <= 0. Parts with lse = -inf (rows that saw
 * no key) weigh nothing; a row no part saw gets o = 0 and lse = -inf.
 * o and lse may be o_parts[j] and lse_parts[j] themselves (one j), for a
 * running merge in place.
 */
LCA_API lca_status lca_attn_merge(const lca_plan *plan, int64_t Tq,
	int64_t nparts, const void *const *o_parts,
	const void *const *lse_parts, void *o, void *lse);

/*
 * deltanet, lightning: a range of tokens maps the state S entering it to
 *   S -> a S + b      per head, S [dk][dv] as state0 of the forward calls
 * (its summary). A rank summarises its range, the summaries of the ranks
 * before it are composed in order and applied to the sequence's state0,
 * and the rank's forward call started from that state gives its outputs
 * and final state.
 *
 * Lightning summary of T tokens of one sequence (positions do not
 * matter: lambda_h is the same at every token):
 *   k [T][H][dk]  v [T][H][dv]  slope [H]
 *   a [H]          the range's total decay lambda_h^T = exp(-slope_h T)
 *   b [H][dk][dv]  its contribution: the final state of the range run from
 *                  a zero state (as lca_lightning_forward() with state0
 *                  NULL would end)
 */
LCA_API lca_status lca_lightning_summary(const lca_plan *plan, int64_t T,
	const void *k, const void *v, const void *slope, void *a, void *b);

/*
 * Gated DeltaNet summary of T tokens of one sequence; each token maps
 * S -> exp(g) (I - beta k k^T) S + beta k v^T (k after the plan's L2 norm;
 * value head h reads qk head h / (H / Hk)), and the range their product
 * in order (later tokens on the left):
 *   k [T][Hk][dk]  v [T][H][dv]  g, beta [T][H]  (g <= 0)
 *   a [H][dk][dk]  A, acting on the left of S
 *   b [H][dk][dv]  B, the final state of the range run from zero
 */
LCA_API lca_status lca_deltanet_summary(const lca_plan *plan, int64_t T,
	const void *k, const void *v, const void *g, const void *beta, void *a,
	void *b);

/*
 * Summary of range 1 followed by range 2 (deltanet or lightning plan;
 * every tensor of the summary's shapes above):
 *   a = a2 a1,  b = a2 b1 + b2
 * (matrix products for deltanet, scalars times matrices for lightning).
 * Associative, not commutative. a may be a1 or a2 itself, b may be b1 or
 * b2 itself.
 */
LCA_API lca_status lca_summary_compose(const lca_plan *plan,
	const void *a1, const void *b1, const void *a2, const void *b2,
	void *a, void *b);

/*
 * state = a state0 + b for every head: the state after the summarised
 * range, entered with state0 [H][dk][dv] (NULL = zeros). state [H][dk][dv]
 * may be state0 or b itself.
 */
LCA_API lca_status lca_summary_apply(const lca_plan *plan, const void *a,
	const void *b, const void *state0, void *state);

/* ---- probes (measured costs of each mechanism; see lcattn-probes(7)) ---- */

/*
 * A probe measures, on the double reference (or, where pp->backend says
 * so, the cpu backend in float64), what a mechanism gives up. It
 * runs one head as a memory: the T tokens of an lca_probe_seq are written
 * in order into an empty memory, then queries read it at position T
 * without writing. Every number is scale-free, so the mechanisms compare.
 *
 * The mechanism, from lca_probe_params_init() plus the fields you set:
 *   softmax:   logits scale * <rope(q), rope(k)>, all T keys, no mask
 *   mla:       softmax whose K_nope and V (first dn = dk - dr key coordinates,
 *              and the values) are replaced by their best rank-dc fit (the
 *              latent); the last dr key coordinates are the uncompressed
 *              rotary part; run through lca_mla_forward()
 *   deltanet:  S = exp(g) S; S += beta k (v - S^T k)^T; read S^T q
 *              (keys taken as given: no L2 normalisation)
 *   lightning: S = lambda S + k v^T, lambda = exp(-slope); read S^T q
 */
typedef struct lca_probe_params {
	lca_variant variant;
	int64_t dk;            /* key and query size (default 64) */
	int64_t dv;            /* value size (default 64) */
	double scale;          /* softmax, mla: logit multiplier; 0 = sqrt(dk), the
	                          logit of a perfect match of unit vectors as for
	                          norm-sqrt(dk) q and k under the usual 1/sqrt(dk) */
	int64_t rope_dim;      /* softmax: leading q/k coordinates rotated; mla: of
	                          the rotary part; 0 = none (default), LCA_ROPE_FULL */
	double rope_theta;     /* default 10000 */
	lca_rope_style rope_style; /* default HALF (softmax), INTERLEAVED (mla) */
	int64_t dr;            /* mla: rotary key coordinates, 0 <= dr < dk (default 0) */
	int64_t dc;            /* mla: latent rank; 0 = dk (default) */
	double beta;           /* deltanet: write strength of every token when the
	                          sequence has no beta array (default 1) */
	double g;              /* deltanet: log-decay <= 0 likewise (default 0) */
	double slope;          /* lightning: lambda = exp(-slope), slope >= 0 (default 0) */
	lca_backend backend;   /* where the writes and reads run, in float64:
	                          LCA_BACKEND_REF (default) the double reference;
	                          LCA_BACKEND_CPU the cpu backend, within 1e-12
	                          of it by the tolerance rule and much faster on
	                          long sequences (mla fits its latent by BLAS) */
} lca_probe_params;

/* Set every field of *pp to its default for the given variant. */
LCA_API lca_status lca_probe_params_init(lca_probe_params *pp,
	lca_variant variant);

/*
 * The tokens a probe writes (double precision, one head):
 *   k    [T][dk]  keys
 *   v    [T][dv]  values
 *   beta [T], g [T]  deltanet: per-token write strength and log-decay, or
 *                    NULL for the constants of lca_probe_params
 *   q    [dk]     lca_probe_position(): the query that reads the memory,
 *                 or NULL for the last key
 */
typedef struct lca_probe_seq {
	int64_t T;
	const double *k;
	const double *v;
	const double *beta;
	const double *g;
	const double *q;
} lca_probe_seq;

/*
 * Draw T unit keys whose pairwise cosines average about rho (0 <= rho < 1):
 * k_i = normalize(sqrt(rho) c + sqrt(1 - rho) z_i), c and z_i uniform on the
 * unit sphere; and T unit values, independent and uniform on the sphere.
 * The same arguments give the same numbers on every machine with IEEE
 * doubles and a correctly rounded sqrt, log and cos.
 *   k [T][dk], v [T][dv]; either may be NULL (not drawn, same stream)
 */
LCA_API lca_status lca_probe_draw(int64_t T, int64_t dk, int64_t dv,
	double rho, uint64_t seed, double *k, double *v);

/*
 * Retrieval: after all T tokens, query i equal to key i reads o_i, and
 *   err[i] = min_a ||a o_i - v_i|| / ||v_i||      (0 exact, 1 nothing of v_i)
 * The age of token i is T - 1 - i.
 *   err [T]
 */
LCA_API lca_status lca_probe_retrieval(const lca_probe_params *pp,
	const lca_probe_seq *s, double *err);

/*
 * Retrieval of chosen tokens only: err[j] is err[idx[j]] of
 * lca_probe_retrieval(), bit for bit, from one read of the n queries
 * k_idx[j] (not T of them): O(T) per query rather than O(T^2) for softmax
 * and mla. Indices 0 <= idx[j] < T, repeats allowed.
 *   idx [n], err [n], n >= 1
 */
LCA_API lca_status lca_probe_retrieval_of(const lca_probe_params *pp,
	const lca_probe_seq *s, int64_t n, const int64_t *idx, double *err);

/*
 * DeltaNet overwrite (pp->variant LCA_DELTANET), per token i; each output
 * is [T] and may be NULL:
 *   overwrite[i] = 1 - ||P_i k_i|| / ||k_i||,
 *                  P_i = (I - b_{T-1} k_{T-1} k_{T-1}^T) ... (I - b_{i+1} k_{i+1} k_{i+1}^T)
 *   decay[i]     = exp(g_{i+1} + ... + g_{T-1})
 *   err_now[i]   retrieval error of token i read right after its write
 *   err_end[i]   retrieval error of token i read after all T tokens
 */
LCA_API lca_status lca_probe_overwrite(const lca_probe_params *pp,
	const lca_probe_seq *s, double *overwrite, double *decay,
	double *err_now, double *err_end);

/*
 * Lightning dilution (pp->variant LCA_LIGHTNING): for token i read after
 * all T tokens by query k_i,
 *   ratio[i] = ||sum_{j != i} lambda^(T-1-j) (k_i.k_j) v_j||
 *            / ||lambda^(T-1-i) (k_i.k_i) v_i||
 * crosstalk over signal (about sqrt((T-1)/dk) for lambda = 1 and random
 * unit keys; +inf once lambda^(T-1-i) underflows).
 *   ratio [T]
 */
LCA_API lca_status lca_probe_dilution(const lca_probe_params *pp,
	const lca_probe_seq *s, double *ratio);

/*
 * Order sensitivity: o is the read of s->q after the T tokens, o_d the same
 * with tokens T-d and T-d-1 swapped (every field of the token moves):
 *   sens[j] = ||o_d - o|| / ||o||,   d = dist[j], 1 <= d <= T - 1
 * The cost per distance is one read over the T keys (softmax, mla) or a
 * rewrite of the last d + 1 tokens (deltanet, lightning).
 *   dist [nd], sens [nd]
 */
LCA_API lca_status lca_probe_position(const lca_probe_params *pp,
	const lca_probe_seq *s, int64_t nd, const int64_t *dist, double *sens);

/* ---- cost model ------------------------------------------------------- */

/* What lca_plan_cost() counts: a prefill of n tokens (Tq = Tk = n, one
 * sequence, the plan's causal and window), one decode step whose query sees
 * a context of n tokens (itself included), or a whole generation: the sum
 * of the decode steps at contexts 1 .. n. */
typedef enum lca_phase {
	LCA_PHASE_PREFILL = 0,
	LCA_PHASE_DECODE,
	LCA_PHASE_GENERATE
} lca_phase;

/* Modelled cost of one layer (all heads, one sequence); formulas in
 * lca_plan_cost(3). */
typedef struct lca_cost {
	double flops;        /* floating-point operations the double reference
	                        executes, exactly (exp, divide... count 1) */
	double bytes;        /* lower bound on memory traffic, plan's element size */
	double state_bytes;  /* cache or state held after the phase */
} lca_cost;

/* *out receives the modelled FLOPs and bytes of one layer of plan for phase
 * at n tokens (n >= 1). */
LCA_API lca_status lca_plan_cost(const lca_plan *plan, lca_phase phase,
	int64_t n, lca_cost *out);

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
