/*
 * check_profile.c - lca_profile_enable(3), lca_profile_read(3) and
 * lca_profile_reset(3): off, nothing is counted; on, a cpu call's phases
 * are counted once per chunk, block or packed head, their time fits in the
 * call's wall time on its threads, and the outputs are bit for bit those
 * of the unprofiled call; reset clears; the arguments are checked; and a
 * thread that toggles and resets the profiler while calls run breaks
 * nothing.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAXPH = 64, NTHREADS = 2 };

/* Shapes with dk != dv, T not a multiple of the chunk or the block. */
static const int64_t H = 3, DK = 16, DV = 24, CHUNK = 64, BLOCK = 128;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct phases {
	lca_profile_phase p[MAXPH];
	int n;
};

static void read_all(struct phases *ph)
{
	tu_assert_ok(lca_profile_read(ph->p, MAXPH, &ph->n));
	ck_assert_int_gt(ph->n, 0);
	ck_assert_int_le(ph->n, MAXPH);
	for (int i = 0; i < ph->n; i++) {
		ck_assert_ptr_nonnull(ph->p[i].name);
		ck_assert_msg(ph->p[i].seconds >= 0 && ph->p[i].count >= 0,
			"%s: %g s, %lld intervals", ph->p[i].name, ph->p[i].seconds,
			(long long)ph->p[i].count);
	}
}

static const lca_profile_phase *find(const struct phases *ph, const char *name)
{
	for (int i = 0; i < ph->n; i++)
		if (!strcmp(ph->p[i].name, name))
			return &ph->p[i];
	ck_abort_msg("no phase named %s", name);
	return NULL;
}

static int has_prefix(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

static void assert_all_zero(const struct phases *ph)
{
	for (int i = 0; i < ph->n; i++)
		ck_assert_msg(ph->p[i].seconds == 0 && ph->p[i].count == 0,
			"%s: %g s, %lld intervals with nothing to count", ph->p[i].name,
			ph->p[i].seconds, (long long)ph->p[i].count);
}

/* A cpu f64 call of variant v on T tokens with fresh random inputs. */
struct call {
	lca_variant v;
	int64_t T;
	lca_plan *plan;
	double *q, *k, *vv, *g, *beta, *slope, *o, *state;
};

static void call_init(struct call *c, lca_variant v, int64_t T)
{
	lca_params p = tu_params(v);

	c->v = v;
	c->T = T;
	p.backend = LCA_BACKEND_CPU;
	p.dtype = LCA_F64;
	p.H = H, p.dk = DK, p.dv = DV;
	p.nthreads = NTHREADS;
	if (v == LCA_DELTANET)
		p.chunk = CHUNK, p.algo = LCA_ALGO_CHUNKED;
	if (v == LCA_LIGHTNING)
		p.block = BLOCK, p.algo = LCA_ALGO_CHUNKED;
	c->plan = tu_plan(&p);
	c->q = tu_alloc(T * H * DK);
	c->k = tu_alloc(T * H * DK);
	c->vv = tu_alloc(T * H * DV);
	c->g = tu_alloc(T * H);
	c->beta = tu_alloc(T * H);
	c->slope = tu_alloc(H);
	c->o = tu_alloc(T * H * DV);
	c->state = tu_alloc(H * DK * DV);
	tu_fill_normal(c->q, T * H * DK, 1);
	tu_fill_normal(c->k, T * H * DK, 1);
	tu_fill_normal(c->vv, T * H * DV, 1);
	tu_fill_uniform(c->g, T * H, -0.2, 0);
	tu_fill_uniform(c->beta, T * H, 0, 1);
	tu_fill_uniform(c->slope, H, 0.01, 0.5);
}

static void call_free(struct call *c)
{
	lca_plan_destroy(c->plan);
	free(c->q), free(c->k), free(c->vv), free(c->g), free(c->beta);
	free(c->slope), free(c->o), free(c->state);
}

/* Run it; returns the wall time. */
static double call_run(struct call *c)
{
	double t0 = now();

	switch (c->v) {
	case LCA_DELTANET:
		tu_assert_ok(lca_deltanet_forward(c->plan, c->T, c->q, c->k, c->vv, c->g,
			c->beta, NULL, 0, NULL, c->o, c->state));
		break;
	case LCA_LIGHTNING:
		tu_assert_ok(lca_lightning_forward(c->plan, c->T, c->q, c->k, c->vv,
			c->slope, NULL, 0, NULL, c->o, c->state));
		break;
	default:
		tu_assert_ok(lca_softmax_forward(c->plan, c->T, c->T, c->q, c->k, c->vv,
			NULL, 0, c->o, NULL));
		break;
	}
	return now() - t0;
}

/* Phases with prefix were counted, the others were not, and their sum
 * fits in wall x threads. */
static double check_attributed(const struct phases *ph, const char *prefix,
	double wall)
{
	double sum = 0;

	for (int i = 0; i < ph->n; i++) {
		const lca_profile_phase *p = &ph->p[i];

		if (has_prefix(p->name, prefix))
			ck_assert_msg(p->count > 0 && p->seconds > 0, "%s: %g s, %lld intervals",
				p->name, p->seconds, (long long)p->count);
		else
			ck_assert_msg(p->count == 0 && p->seconds == 0,
				"%s counted in a call that does not run it", p->name);
		sum += p->seconds;
	}
	ck_assert_msg(sum <= wall * NTHREADS, "phases sum to %g s > wall %g s x %d threads",
		sum, wall, NTHREADS);
	return sum;
}

START_TEST(test_off_counts_nothing)
{
	struct call c;
	struct phases ph;

	call_init(&c, LCA_DELTANET, 300);
	tu_assert_ok(lca_profile_reset());
	call_run(&c);
	read_all(&ph);
	assert_all_zero(&ph);
	/* on, then off again: the calls made while off add nothing */
	tu_assert_ok(lca_profile_enable(1));
	tu_assert_ok(lca_profile_enable(0));
	call_run(&c);
	read_all(&ph);
	assert_all_zero(&ph);
	call_free(&c);
}
END_TEST

/* Deltanet at T = 300, chunk 64: 5 chunks of each of the H heads, so 5 H
 * intervals of each phase; output bit for bit the unprofiled one. */
START_TEST(test_deltanet_phases)
{
	static const char *const names[] = { "deltanet.gather", "deltanet.wy",
		"deltanet.inverse", "deltanet.u_minus_ws", "deltanet.output",
		"deltanet.state" };
	const int64_t T = 300, chunks = (T + CHUNK - 1) / CHUNK;
	struct call c;
	struct phases ph;
	double *o_off, *s_off, wall;

	call_init(&c, LCA_DELTANET, T);
	call_run(&c);
	o_off = tu_copy(c.o, T * H * DV);
	s_off = tu_copy(c.state, H * DK * DV);
	tu_assert_ok(lca_profile_reset());
	tu_assert_ok(lca_profile_enable(1));
	wall = call_run(&c);
	tu_assert_ok(lca_profile_enable(0));
	read_all(&ph);
	check_attributed(&ph, "deltanet.", wall);
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		const lca_profile_phase *p = find(&ph, names[i]);

		/* wy is opened twice a chunk: before and after the inverse */
		ck_assert_msg(p->count == (i == 1 ? 2 : 1) * chunks * H,
			"%s: %lld intervals, expected %lld", names[i], (long long)p->count,
			(long long)((i == 1 ? 2 : 1) * chunks * H));
	}
	ck_assert_msg(!memcmp(o_off, c.o, (size_t)(T * H * DV) * sizeof(double)),
		"profiling changed deltanet's output");
	ck_assert_msg(!memcmp(s_off, c.state, (size_t)(H * DK * DV) * sizeof(double)),
		"profiling changed deltanet's state");
	/* reset clears what was counted */
	tu_assert_ok(lca_profile_reset());
	read_all(&ph);
	assert_all_zero(&ph);
	free(o_off), free(s_off);
	call_free(&c);
}
END_TEST

/* Lightning at T = 300, block 128: 3 blocks of each head, pack and state
 * once a block; softmax: one packed kv head per head, time in the tiles. */
START_TEST(test_lightning_softmax_phases)
{
	const int64_t T = 300, blocks = (T + BLOCK - 1) / BLOCK;
	struct call c;
	struct phases ph;
	double *o_off, wall;

	call_init(&c, LCA_LIGHTNING, T);
	call_run(&c);
	o_off = tu_copy(c.o, T * H * DV);
	tu_assert_ok(lca_profile_reset());
	tu_assert_ok(lca_profile_enable(1));
	wall = call_run(&c);
	tu_assert_ok(lca_profile_enable(0));
	read_all(&ph);
	check_attributed(&ph, "lightning.", wall);
	ck_assert_int_eq(find(&ph, "lightning.pack")->count, blocks * H);
	ck_assert_int_eq(find(&ph, "lightning.state")->count, blocks * H);
	ck_assert_msg(!memcmp(o_off, c.o, (size_t)(T * H * DV) * sizeof(double)),
		"profiling changed lightning's output");
	free(o_off);
	call_free(&c);

	call_init(&c, LCA_SOFTMAX, T);
	tu_assert_ok(lca_profile_reset());
	tu_assert_ok(lca_profile_enable(1));
	wall = call_run(&c);
	tu_assert_ok(lca_profile_enable(0));
	read_all(&ph);
	check_attributed(&ph, "flash.", wall);
	ck_assert_int_eq(find(&ph, "flash.pack")->count, H);
	call_free(&c);
}
END_TEST

START_TEST(test_arguments)
{
	lca_profile_phase p[2];
	int n = -1, n2 = -1;

	tu_assert_ok(lca_profile_read(NULL, 0, &n));
	ck_assert_int_gt(n, 2);
	tu_assert_ok(lca_profile_read(p, 2, &n2));
	ck_assert_int_eq(n, n2);
	ck_assert_ptr_nonnull(p[1].name);
	ck_assert_int_eq(lca_profile_read(NULL, 1, &n), LCA_ERR_NULL);
	ck_assert(tu_msg_names("phases"));
	ck_assert_int_eq(lca_profile_read(p, 2, NULL), LCA_ERR_NULL);
	ck_assert(tu_msg_names("n"));
	ck_assert_int_eq(lca_profile_read(p, -1, &n), LCA_ERR_ARG);
	ck_assert(tu_msg_names("max"));
	ck_assert_int_eq(lca_profile_enable(2), LCA_ERR_ARG);
	ck_assert_int_eq(lca_profile_enable(-1), LCA_ERR_ARG);
	ck_assert(tu_msg_names("on"));
}
END_TEST

static atomic_int stop;

static void *toggler(void *arg)
{
	lca_profile_phase p[MAXPH];
	unsigned i = 0;
	int n;

	(void)arg;
	while (!atomic_load(&stop)) {
		lca_profile_enable((int)(i & 1));
		if (i % 3 == 0)
			lca_profile_reset();
		lca_profile_read(p, MAXPH, &n);
		i++;
	}
	return NULL;
}

/* Documented as unsupported while a call runs: it must only not crash nor
 * change the outputs. */
START_TEST(test_toggle_while_running)
{
	const lca_variant vs[] = { LCA_DELTANET, LCA_LIGHTNING, LCA_SOFTMAX };
	pthread_t th;

	ck_assert_int_eq(pthread_create(&th, NULL, toggler, NULL), 0);
	for (int i = 0; i < 3; i++) {
		struct call c;
		double *o_ref;

		call_init(&c, vs[i], 200);
		call_run(&c);
		o_ref = tu_copy(c.o, c.T * H * DV);
		for (int r = 0; r < 3; r++) {
			call_run(&c);
			ck_assert_msg(!memcmp(o_ref, c.o, (size_t)(c.T * H * DV) * sizeof(double)),
				"toggling the profiler changed an output");
		}
		free(o_ref);
		call_free(&c);
	}
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("profile");
	TCase *tc = tu_tcase("profile");

	tu_init();
	tcase_add_test(tc, test_off_counts_nothing);
	tcase_add_test(tc, test_deltanet_phases);
	tcase_add_test(tc, test_lightning_softmax_phases);
	tcase_add_test(tc, test_arguments);
	tcase_add_test(tc, test_toggle_while_running);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
