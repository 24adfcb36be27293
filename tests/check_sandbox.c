/*
 * check_sandbox.c - files from outside are parsed only in a confined child
 * (lib/io/sandbox.c): this process never opens them with HDF5, the child
 * can neither write, open, connect nor start anything, and a reader that
 * fails for its own reasons is told apart from a bad file.
 */
#define _GNU_SOURCE
#include "testutil.h"
#include "checkpoint.h"
#include "golden.h"
#include "sandbox.h"

#include <hdf5.h>
#include <hdf5_hl.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- who opens files with HDF5: calls counted per process ---------------- */

/* Shared with the children: [0] opens in this process, [1] elsewhere. */
static volatile long *opens;
static pid_t tester;

static void count_open(void)
{
	if (opens)
		__atomic_fetch_add(&opens[getpid() == tester ? 0 : 1], 1, __ATOMIC_SEQ_CST);
}

/* These definitions take the place of HDF5's for lib/io, which is linked
 * into this program; they count and pass the call on. */
hid_t H5Fopen(const char *name, unsigned flags, hid_t fapl)
{
	hid_t (*real)(const char *, unsigned, hid_t) =
		(hid_t (*)(const char *, unsigned, hid_t))dlsym(RTLD_NEXT, "H5Fopen");

	count_open();
	return real(name, flags, fapl);
}

hid_t H5LTopen_file_image(void *buf, size_t len, unsigned flags)
{
	hid_t (*real)(void *, size_t, unsigned) =
		(hid_t (*)(void *, size_t, unsigned))dlsym(RTLD_NEXT, "H5LTopen_file_image");

	count_open();
	return real(buf, len, flags);
}

static void watch_opens(void)
{
	/* A call of our own keeps libhdf5_hl linked (--as-needed would drop
	 * it: the one call lib/io makes into it is defined above). */
	ck_assert_int_eq(H5LTpath_valid(-1, "/", 0), -1);
	opens = mmap(NULL, 2 * sizeof *opens, PROT_READ | PROT_WRITE,
		MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(opens != MAP_FAILED);
	opens[0] = opens[1] = 0;
	tester = getpid();
}

static char *golden_path(const char *name)
{
	const char *top = getenv("top_srcdir");
	static char path[4096];

	snprintf(path, sizeof path, "%s/golden/%s", top ? top : "..", name);
	return path;
}

START_TEST(test_golden_files_are_parsed_only_by_the_child)
{
	struct lcio_case g, cand;
	char err[512];
	double value;
	const char *path = golden_path("deltanet-varlen-state0.h5");

	watch_opens();
	ck_assert_msg(lcio_read(path, LCIO_INPUTS | LCIO_OUTPUTS, &g, err, sizeof err) == 0,
		"%s", err);
	ck_assert_msg(lcio_read_candidate(path, &g, &cand, err, sizeof err) == 0, "%s", err);
	ck_assert_msg(lcio_read_metric(path, "probe_overwrite_mean", &value, err,
		sizeof err) == 0, "%s", err);
	ck_assert_msg(opens[0] == 0, "this process opened the file with HDF5 %ld times",
		opens[0]);
	ck_assert_int_ge(opens[1], 3); /* and H5LTopen_file_image calls H5Fopen */
	/* What came through the pipe is the file's content. */
	ck_assert_int_gt(g.nseq, 1);
	ck_assert_double_eq_tol(value, 0.30272842706092801, 1e-15);
	ck_assert_ptr_nonnull(g.in[5].data);   /* state0 */
	ck_assert_int_eq(memcmp(g.out[0].data, cand.out[0].data,
		(size_t)g.out[0].n * sizeof(double)), 0);
	lcio_case_free(&g);
	lcio_case_free(&cand);
}
END_TEST

START_TEST(test_checkpoints_are_parsed_only_by_the_child)
{
	lca_params p = tu_params(LCA_LIGHTNING);
	struct lcio_ckpt_info info;
	char path[] = "/tmp/lcattn-sandbox-XXXXXX", err[512];
	lca_status s;
	lca_plan *plan;
	lca_cache *a, *b;
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	close(fd);
	p.H = 2, p.dk = 4, p.dv = 3;
	plan = tu_plan(&p);
	ck_assert_int_eq(lca_cache_create(plan, 2, 8, &a), LCA_OK);
	ck_assert_int_eq(lca_cache_create(plan, 2, 8, &b), LCA_OK);
	ck_assert_msg(lcio_checkpoint_write(path, a, err, sizeof err) == 0, "%s", err);
	watch_opens();
	ck_assert_msg(lcio_checkpoint_info(path, &info, err, sizeof err) == 0, "%s", err);
	ck_assert_msg(lcio_checkpoint_read(path, b, &s, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(opens[0], 0);
	ck_assert_int_ge(opens[1], 2);
	ck_assert_int_eq(info.nseq, 2);
	ck_assert_str_eq(info.variant, "lightning");
	lcio_ckpt_info_free(&info);
	lca_cache_destroy(a);
	lca_cache_destroy(b);
	lca_plan_destroy(plan);
	unlink(path);
}
END_TEST

/* ---- what the confined child can do ----------------------------------- */

enum { TRY_OPEN_READ, TRY_OPEN_WRITE, TRY_SOCKET, TRY_FORK, TRY_KILL_PARENT,
	TRY_INHERITED_FD, TRY_CORE, NTRIES };

struct probe {
	const char *readable;  /* a file this process can read */
	int inherited;         /* a descriptor open in this process */
	int filtered;          /* the child ran under a seccomp filter */
	int ok[NTRIES];        /* 1: the child could do it */
	int mode;              /* for the failure tests below */
};

static int probe_parse(void *arg, void *image, size_t len, char *err, size_t errlen)
{
	struct probe *pr = arg;
	struct rlimit rl;
	int fd;
	pid_t pid;

	(void)image, (void)len, (void)err, (void)errlen;
	pr->filtered = prctl(PR_GET_SECCOMP) == 2;
	fd = open(pr->readable, O_RDONLY);
	pr->ok[TRY_OPEN_READ] = fd >= 0;
	fd = open("/tmp/lcattn-sandbox-written", O_WRONLY | O_CREAT, 0600);
	pr->ok[TRY_OPEN_WRITE] = fd >= 0;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	pr->ok[TRY_SOCKET] = fd >= 0;
	if ((pid = fork()) == 0)
		_exit(0);
	pr->ok[TRY_FORK] = pid > 0;
	pr->ok[TRY_KILL_PARENT] = kill(getppid(), 0) == 0;
	pr->ok[TRY_INHERITED_FD] = fcntl(pr->inherited, F_GETFD) >= 0;
	pr->ok[TRY_CORE] = getrlimit(RLIMIT_CORE, &rl) || rl.rlim_cur != 0;
	return LCIO_PARSED;
}

static int probe_send(void *arg, FILE *out)
{
	return lcio_wput(out, arg, sizeof(struct probe));
}

static int probe_take(void *arg, FILE *in, char *err, size_t errlen)
{
	(void)err, (void)errlen;
	return lcio_wget(in, arg, sizeof(struct probe)) ? LCIO_BAD_FILE : LCIO_PARSED;
}

START_TEST(test_the_child_cannot_open_connect_start_or_signal)
{
	static const char *what[NTRIES] = { "open a file to read", "create a file",
		"make a socket", "fork", "signal its parent", "use an inherited descriptor",
		"dump core" };
	struct lcio_reader rd = { probe_parse, probe_send, probe_take };
	struct probe pr = { .readable = golden_path("softmax-t1.h5") };
	char err[512];
	int fd[2];

	ck_assert_int_eq(pipe(fd), 0);
	pr.inherited = fd[0];
	ck_assert_msg(lcio_sandbox(pr.readable, &rd, &pr, err, sizeof err) == LCIO_PARSED,
		"%s", err);
	ck_assert_int_eq(pr.ok[TRY_INHERITED_FD], 0);
	ck_assert_int_eq(pr.ok[TRY_CORE], 0);
	if (!pr.filtered) {
		/* Kernels without seccomp filters: documented, checked here. */
		fprintf(stderr, "note: no seccomp filter on this kernel\n");
		return;
	}
	for (int i = 0; i < NTRIES; i++)
		ck_assert_msg(!pr.ok[i], "the confined child could %s", what[i]);
	ck_assert_int_ne(access("/tmp/lcattn-sandbox-written", F_OK), 0);
	close(fd[0]);
	close(fd[1]);
}
END_TEST

/* ---- the reader's own failures, told apart from the file's ---- */

enum { OWN_FAULT, BAD_FILE, CRASH, EXIT, REFUSED_REPLY };

static int fail_parse(void *arg, void *image, size_t len, char *err, size_t errlen)
{
	struct probe *pr = arg;

	(void)image, (void)len;
	switch (pr->mode) {
	case OWN_FAULT:
		snprintf(err, errlen, "out of memory for q");
		return LCIO_OWN_FAULT;
	case BAD_FILE:
		snprintf(err, errlen, "f.h5: /config H = 0 is out of range");
		return LCIO_BAD_FILE;
	case CRASH:
		raise(SIGABRT); /* as a failed assertion in HDF5 would */
		return LCIO_PARSED;
	case EXIT: /* as a library that exits, or a sanitizer's report */
		_exit(9);
	default:
		return LCIO_PARSED;
	}
}

static int refuse_take(void *arg, FILE *in, char *err, size_t errlen)
{
	(void)arg, (void)in;
	snprintf(err, errlen, "refused");
	return LCIO_BAD_FILE;
}

START_TEST(test_reader_failures_are_told_apart_from_bad_files)
{
	static const struct { int code; const char *says; } want[] = {
		{ LCIO_OWN_FAULT, "own reasons, not because of the file: out of memory for q" },
		{ LCIO_BAD_FILE, "f.h5: /config H = 0 is out of range" },
		{ LCIO_BAD_FILE, "the reader crashed" },
		{ LCIO_BAD_FILE, "ended with exit status 9 while parsing" },
		{ LCIO_BAD_FILE, "refused" },
	};
	struct lcio_reader rd = { fail_parse, probe_send, refuse_take };
	struct probe pr = { .readable = golden_path("softmax-t1.h5") };
	char err[512];

	pr.mode = _i;
	ck_assert_int_eq(lcio_sandbox(pr.readable, &rd, &pr, err, sizeof err), want[_i].code);
	ck_assert_msg(strstr(err, want[_i].says), "message \"%s\" lacks \"%s\"", err,
		want[_i].says);
}
END_TEST

START_TEST(test_a_missing_file_is_not_a_bad_file)
{
	struct lcio_reader rd = { fail_parse, probe_send, probe_take };
	struct probe pr = { .mode = BAD_FILE };
	char err[512];

	ck_assert_int_eq(lcio_sandbox("/nonexistent/f.h5", &rd, &pr, err, sizeof err),
		LCIO_NO_FILE);
	ck_assert_ptr_nonnull(strstr(err, "No such file"));
	ck_assert_int_eq(lcio_sandbox("/tmp", &rd, &pr, err, sizeof err), LCIO_NO_FILE);
	ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
}
END_TEST

/* ---- the child's memory is capped ---- */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

/* 16 GiB: less than this machine's memory, so that without the cap an
 * overcommitting kernel would hand it out. */
static int greedy_parse(void *arg, void *image, size_t len, char *err, size_t errlen)
{
	void *p = malloc((size_t)16 << 30);

	(void)arg, (void)image, (void)len;
	if (p) {
		free(p);
		return LCIO_PARSED;
	}
	snprintf(err, errlen, "out of memory for 16 GiB");
	return LCIO_OWN_FAULT;
}

START_TEST(test_the_child_cannot_take_gigabytes_for_a_small_file)
{
	struct lcio_reader rd = { greedy_parse, probe_send, probe_take };
	struct probe pr = { .readable = golden_path("softmax-t1.h5") };
	char err[512];

#ifdef SANITIZED
	return; /* sanitizers reserve terabytes: the cap is off there */
#endif
	ck_assert_int_eq(lcio_sandbox(pr.readable, &rd, &pr, err, sizeof err),
		LCIO_OWN_FAULT);
	ck_assert_msg(strstr(err, "out of memory for 16 GiB (the reader may map"), "%s", err);
}
END_TEST

static Suite *sandbox_suite(void)
{
	Suite *s = suite_create("sandbox");
	TCase *tc = tu_tcase("sandbox");

	tcase_add_test(tc, test_golden_files_are_parsed_only_by_the_child);
	tcase_add_test(tc, test_checkpoints_are_parsed_only_by_the_child);
	tcase_add_test(tc, test_the_child_cannot_open_connect_start_or_signal);
	tcase_add_loop_test(tc, test_reader_failures_are_told_apart_from_bad_files, 0, 5);
	tcase_add_test(tc, test_a_missing_file_is_not_a_bad_file);
	tcase_add_test(tc, test_the_child_cannot_take_gigabytes_for_a_small_file);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tu_init();
	return tu_run(sandbox_suite());
}
