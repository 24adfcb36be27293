/*
 * check_threads.c - the library under many threads at once. For every
 * mechanism on the ref and cpu backends in f64 and f32, NTHREAD threads
 * run at the same time:
 *   - forward calls on one plan shared by all threads,
 *   - forward calls on a plan of their own, made in the thread,
 *   - a prefill then single-token steps on a cache of their own, made
 *     from the shared plan,
 * and each compares its outputs with those of the same calls made
 * beforehand by one thread: bit for bit on the ref backend (lcattn(7),
 * Determinism), within the accuracy rule's bounds on the cpu backend,
 * which promises no more. Run under ThreadSanitizer by tests/tsan.sh, this
 * is also the data-race check of the library (setup.sh test).
 */
#include "testutil.h"
#include "mechfix.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* T crosses deltanet chunks (64) and a lightning block (256), in the
 * forward call and in the prefill. */
enum { NTHREAD = 8, T = 300, PREFILL = 257 };

struct conf {
	lca_backend backend;
	lca_dtype dtype;
	const char *name;
};

static const struct conf confs[] = {
	{ LCA_BACKEND_REF, LCA_F64, "ref f64" },
	{ LCA_BACKEND_REF, LCA_F32, "ref f32" },
	{ LCA_BACKEND_CPU, LCA_F64, "cpu f64" },
	{ LCA_BACKEND_CPU, LCA_F32, "cpu f32" },
};
enum { NCONF = sizeof confs / sizeof confs[0], NCASE = 4 * NCONF };

/* One mechanism on one backend and dtype, with its single-thread results. */
struct tcase {
	struct mf m;
	const char *conf;
	lca_plan *plan;       /* shared by every thread */
	void *o, *aux;        /* forward outputs */
	void *so;             /* step outputs, [T][H dv] */
};

/* Prefill PREFILL tokens, then step the rest one at a time. */
static lca_status steps(const struct mf *m, const lca_plan *plan, void *o)
{
	lca_cache *c;
	lca_status s;
	size_t row = (size_t)(m->p.H * m->p.dv) * m->elt;

	if ((s = lca_cache_create(plan, 1, T, &c)) != LCA_OK)
		return s;
	s = mf_step(m, plan, c, 0, PREFILL, o);
	for (int64_t t = PREFILL; t < T && s == LCA_OK; t++)
		s = mf_step(m, plan, c, t, 1, (char *)o + (size_t)t * row);
	lca_cache_destroy(c);
	return s;
}

struct worker {
	struct tcase *cases;
	int id;
	char failure[160];    /* empty when every result matched */
};

static void note(struct worker *w, const struct tcase *c, const char *what,
	lca_status s)
{
	if (!w->failure[0])
		snprintf(w->failure, sizeof w->failure, "thread %d, %s %s: %s (%s)",
			w->id, mf_name(c->m.p.variant), c->conf, what,
			s == LCA_OK ? "different results" : lca_strerror(s));
}

/* Every call of one case, checked; stops at the first failure. */
static void run_case(struct worker *w, struct tcase *c)
{
	const struct mf *m = &c->m;
	void *o = malloc((size_t)m->no * m->elt);
	void *aux = malloc((size_t)m->naux * m->elt);
	lca_plan *own = NULL;
	lca_status s;

	if (!o || !aux) {
		note(w, c, "test buffers", LCA_ERR_NOMEM);
		goto out;
	}
	if ((s = mf_forward(m, c->plan, o, aux)) != LCA_OK ||
	    !mf_same(m, o, c->o, m->no) || !mf_same(m, aux, c->aux, m->naux)) {
		note(w, c, "forward on the shared plan", s);
		goto out;
	}
	if ((s = lca_plan_create(&m->p, &own)) != LCA_OK ||
	    (s = mf_forward(m, own, o, aux)) != LCA_OK ||
	    !mf_same(m, o, c->o, m->no) || !mf_same(m, aux, c->aux, m->naux)) {
		note(w, c, "forward on the thread's own plan", s);
		goto out;
	}
	if ((s = steps(m, c->plan, o)) != LCA_OK || !mf_same(m, o, c->so, m->no))
		note(w, c, "steps on the thread's own cache", s);
out:
	lca_plan_destroy(own);
	free(o);
	free(aux);
}

/* Start at a different case in each thread, so that all cases overlap. */
static void *work(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < NCASE && !w->failure[0]; i++)
		run_case(w, &w->cases[(i + w->id) % NCASE]);
	return NULL;
}

START_TEST(test_threads_match_one_thread)
{
	struct tcase cases[NCASE];
	struct worker w[NTHREAD];
	pthread_t th[NTHREAD];

	for (int i = 0; i < NCASE; i++) {
		struct tcase *c = &cases[i];
		const struct conf *cf = &confs[i % NCONF];

		mf_init(&c->m, mf_variants[i / NCONF], cf->backend, cf->dtype, T);
		/* Two OpenMP threads per caller: teams of several callers at once. */
		c->m.p.nthreads = 2;
		c->conf = cf->name;
		c->plan = tu_plan(&c->m.p);
		c->o = mf_alloc_out(&c->m, c->m.no);
		c->aux = mf_alloc_out(&c->m, c->m.naux);
		c->so = mf_alloc_out(&c->m, c->m.no);
		tu_assert_ok(mf_forward(&c->m, c->plan, c->o, c->aux));
		tu_assert_ok(steps(&c->m, c->plan, c->so));
	}
	for (int t = 0; t < NTHREAD; t++) {
		w[t].cases = cases;
		w[t].id = t;
		w[t].failure[0] = '\0';
		ck_assert_int_eq(pthread_create(&th[t], NULL, work, &w[t]), 0);
	}
	for (int t = 0; t < NTHREAD; t++)
		ck_assert_int_eq(pthread_join(th[t], NULL), 0);
	for (int t = 0; t < NTHREAD; t++)
		ck_assert_msg(!w[t].failure[0], "%s", w[t].failure);
	for (int i = 0; i < NCASE; i++) {
		lca_plan_destroy(cases[i].plan);
		free(cases[i].o);
		free(cases[i].aux);
		free(cases[i].so);
		mf_free(&cases[i].m);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("threads");
	TCase *tc = tu_tcase("threads");

	tu_init();
	tcase_add_test(tc, test_threads_match_one_thread);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
