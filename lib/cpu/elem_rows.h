/*
 * elem_rows.h - how a kernel template (deltanet.c, lightning.c) reads
 * tensors of element type `elem` and writes rows of o, once per instance.
 * Not a standalone header; each inclusion consumes
 *
 *   real       the type the instance computes in
 *   elem       the type of the call's tensors: real, or uint16_t (bf16
 *              bits) with real = float
 *   ELEM_BF16  1 when elem is bf16, else 0
 *   FN(name)   names the instance's functions
 *
 * and defines LD(x), one element as real. The float instances read and
 * write their tensors in place; bf16 widens (exact: a bf16 is the high
 * half of a float) into scratch and forms rows of o in float32 scratch,
 * rounded once into o (nearest, ties to even). Both then do the same
 * float32 arithmetic on the same values.
 */

#if ELEM_BF16
#define LD(x) lcai_bf16_widen(x)
#else
#define LD(x) (x)
#endif

/* x [n] as real: x itself, or widened into buf. */
static inline const real *FN(el_real)(const elem *x, int64_t n, real *buf)
{
#if ELEM_BF16
	#pragma omp simd
	for (int64_t i = 0; i < n; i++)
		buf[i] = LD(x[i]);
	return buf;
#else
	(void)n, (void)buf;
	return x;
#endif
}

/*
 * Ask for x [n] in the cache ahead of its use. The kernels read their
 * rows H d elements apart (one row of 128 floats per 4 KiB page at H =
 * 8), too short a run of lines for the hardware's stream prefetcher to
 * ramp up on before the row ends: read one by one, every row waited on
 * memory.
 */
static inline void FN(el_prefetch)(const elem *x, int64_t n)
{
	const char *c = (const char *)x;
	int64_t bytes = n * (int64_t)sizeof(*x);

	for (int64_t b = 0; b < bytes; b += 64)
		__builtin_prefetch(c + b, 0, 3);
	/* GCC 12 takes a function of nothing but prefetches for a const
	 * one and drops its calls (measured: dn_prefetch gone from the
	 * object); an empty volatile asm is a side effect it must keep. */
	__asm__ __volatile__("" : : "r"(c));
}

/* dst [n] = x [n] as real. */
static inline void FN(el_load)(real *dst, const elem *x, int64_t n)
{
#if ELEM_BF16
	FN(el_real)(x, n, dst);
#else
	memcpy(dst, x, (size_t)n * sizeof(real));
#endif
}

/* rows x n of x (rows ldx apart) as real: x itself, or widened into buf
 * (rows n apart); *ld gets the distance of the rows returned. */
static inline const real *FN(el_tile)(const elem *x, int64_t ldx,
	int64_t rows, int64_t n, real *buf, int64_t *ld)
{
#if ELEM_BF16
	for (int64_t r = 0; r < rows; r++)
		FN(el_real)(x + r * ldx, n, buf + r * n);
	*ld = n;
	return buf;
#else
	(void)rows, (void)n, (void)buf;
	*ld = ldx;
	return x;
#endif
}

/*
 * Where rows of o are formed: in o itself (rows ldo elements apart, the
 * leading dimension el_ld gives) by the float instances; by bf16 in the
 * scratch x (rows n apart), which el_put then rounds into o, `rows` rows
 * of n.
 */
static inline real *FN(el_orow)(elem *o, real *x)
{
#if ELEM_BF16
	(void)o;
	return x;
#else
	(void)x;
	return o;
#endif
}

static inline int64_t FN(el_ld)(int64_t ldo, int64_t n)
{
	return ELEM_BF16 ? n : ldo;
}

static inline void FN(el_put)(elem *o, int64_t ldo, const real *x,
	int64_t rows, int64_t n)
{
#if ELEM_BF16
	for (int64_t r = 0; r < rows; r++) {
		#pragma omp simd
		for (int64_t j = 0; j < n; j++)
			o[r * ldo + j] = lcai_bf16_round(x[r * n + j]);
	}
#else
	(void)o, (void)ldo, (void)x, (void)rows, (void)n;
#endif
}

/*
 * The single-token steps (state_step.c) read float32 vectors: bf16 steps
 * widen a token's q, k and v into *tok and form its o there, 2 dk + 2 dv
 * floats for each of nt threads, taken here before the call writes
 * anything. The float instances need none (*tok stays NULL).
 */
static inline lca_status FN(el_tok_alloc)(real **tok, int64_t dk,
	int64_t dv, int nt, const char *who)
{
#if ELEM_BF16
	int64_t n;

	if (!lcai_mul(2 * (dk + dv), nt, &n) ||
	    (uint64_t)n > SIZE_MAX / sizeof(real))
		return lcai_fail(LCA_ERR_NOMEM, "%s: step scratch size "
			"overflows", who);
	if (!(*tok = malloc((size_t)n * sizeof(real))))
		return lcai_fail(LCA_ERR_NOMEM, "%s: cannot allocate %zu "
			"bytes of step scratch", who, (size_t)n * sizeof(real));
#else
	(void)tok, (void)dk, (void)dv, (void)nt, (void)who;
#endif
	return LCA_OK;
}

/* Thread tid's share of tok: q [dk], k [dk], v [dv] and o [dv]. */
static inline void FN(el_tok)(real *tok, int tid, int64_t dk, int64_t dv,
	real **q, real **k, real **v, real **o)
{
#if ELEM_BF16
	*q = tok + (int64_t)tid * 2 * (dk + dv);
	*k = *q + dk, *v = *k + dk, *o = *v + dv;
#else
	(void)tok, (void)tid, (void)dk, (void)dv;
	*q = *k = *v = *o = NULL;
#endif
}
