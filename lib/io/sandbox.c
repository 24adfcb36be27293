/*
 * sandbox.c - parse untrusted files in a confined child (sandbox.h).
 *
 * The parent maps the file without reading it, forks, and from then on
 * only decodes the child's reply. A reply is one tag byte: 'K' and the
 * reader's data, 'E' and a verdict on the file, 'I' and a message about
 * the reader itself. Anything else (no reply, a crash, a timeout, a reply
 * the parent's checks refuse) is reported as such, never as data.
 */
#define _GNU_SOURCE
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#define HAVE_FILTER 1
#endif

/* The largest message a reply may carry. */
#define MAX_MSG 1024

static int failf(const char *path, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int failf(const char *path, char *err, size_t errlen, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (errlen)
		snprintf(err, errlen, "%s: %s", path, msg);
	return -1;
}

/* ---- the wire ---- */

int lcio_wput(FILE *f, const void *p, size_t n)
{
	return n && fwrite(p, 1, n, f) != n ? -1 : 0;
}

int lcio_wget(FILE *f, void *p, size_t n)
{
	return n && fread(p, 1, n, f) != n ? -1 : 0;
}

int lcio_wput_i64(FILE *f, int64_t x)
{
	return lcio_wput(f, &x, sizeof x);
}

int lcio_wget_i64(FILE *f, int64_t *x)
{
	return lcio_wget(f, x, sizeof *x);
}

/* Length -1 stands for NULL. */
int lcio_wput_str(FILE *f, const char *s)
{
	int64_t n = s ? (int64_t)strlen(s) : -1;

	return lcio_wput_i64(f, n) || (s && lcio_wput(f, s, (size_t)n)) ? -1 : 0;
}

int lcio_wget_str(FILE *f, size_t max, char **s)
{
	int64_t n;

	*s = NULL;
	if (lcio_wget_i64(f, &n) || n < -1 || n > (int64_t)max)
		return -1;
	if (n < 0)
		return 0;
	if (!(*s = malloc((size_t)n + 1)))
		return -1;
	if (lcio_wget(f, *s, (size_t)n) || memchr(*s, 0, (size_t)n)) {
		free(*s);
		*s = NULL;
		return -1;
	}
	(*s)[n] = 0;
	return 0;
}

/* ---- confinement ---- */

#ifdef HAVE_FILTER
#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#else
#define ARCH AUDIT_ARCH_AARCH64
#endif

/* System calls the child has no use for and an exploited parser could
 * abuse: opening files (a plugin path of HDF5 included), sockets, new
 * programs and processes, io_uring (which opens files past seccomp),
 * changing files, signalling or writing into other processes. */
static const int denied[] = {
#ifdef __NR_open
	__NR_open, __NR_creat, __NR_fork, __NR_vfork, __NR_unlink, __NR_rename,
	__NR_mkdir, __NR_rmdir, __NR_link, __NR_symlink, __NR_chmod,
	__NR_chown, __NR_lchown, __NR_mknod,
#endif
	__NR_openat, __NR_openat2, __NR_open_by_handle_at, __NR_socket,
	__NR_socketpair, __NR_connect, __NR_bind, __NR_listen, __NR_accept,
	__NR_accept4, __NR_execve, __NR_execveat, __NR_clone, __NR_clone3,
	__NR_ptrace, __NR_kill, __NR_tkill, __NR_unlinkat, __NR_renameat2,
	__NR_mkdirat, __NR_linkat, __NR_symlinkat, __NR_truncate,
	__NR_ftruncate, __NR_fchmod, __NR_fchmodat, __NR_fchown,
	__NR_fchownat, __NR_mknodat, __NR_mount, __NR_umount2, __NR_setxattr,
	__NR_fsetxattr, __NR_lsetxattr, __NR_process_vm_writev,
	__NR_io_uring_setup, __NR_bpf, __NR_perf_event_open,
	__NR_memfd_create,
};

#define NDENIED (sizeof denied / sizeof denied[0])

/* Deny with EACCES, so that a library meeting one fails cleanly. tgkill
 * stays allowed for this process only (abort() raises SIGABRT with it). */
static int filter(void)
{
	struct sock_filter prog[10 + 2 * NDENIED], *p = prog;
	struct sock_fprog fp;
	pid_t self = getpid();

	*p++ = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		offsetof(struct seccomp_data, arch));
	*p++ = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0);
	*p++ = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	*p++ = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		offsetof(struct seccomp_data, nr));
	for (size_t i = 0; i < NDENIED; i++) {
		*p++ = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
			(unsigned)denied[i], 0, 1);
		*p++ = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
			SECCOMP_RET_ERRNO | EACCES);
	}
	/* tgkill(tgid, tid, sig): only to ourselves. The x32 ABI's numbers
	 * (bit 30 set) would bypass the list above: they fall to the end. */
	*p++ = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_tgkill, 0, 2);
	*p++ = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		offsetof(struct seccomp_data, args[0]));
	*p++ = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)self, 1, 2);
	*p++ = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 1, 0);
	*p++ = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	*p++ = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES);
	fp.len = (unsigned short)(p - prog);
	fp.filter = prog;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp) ? -1 : 0;
}
#else
static int filter(void)
{
	errno = ENOSYS;
	return -1;
}
#endif

/* Close every descriptor from 4 up; close_range where the kernel has it. */
static void close_from_4(void)
{
	struct rlimit rl;
	long n = 65536;

#ifdef SYS_close_range
	if (syscall(SYS_close_range, 4u, ~0u, 0u) == 0)
		return;
#endif
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)n)
		n = (long)rl.rlim_cur;
	for (long fd = 4; fd < n; fd++)
		close((int)fd);
}

int lcio_confine(int keep, int *filtered)
{
	struct rlimit zero = { 0, 0 };
	int null;

	*filtered = 0;
	if (keep != 3 && (dup2(keep, 3) != 3 || close(keep)))
		return -1;
	close_from_4();
	if ((null = open("/dev/null", O_RDWR)) < 0)
		return -1;
	for (int fd = 0; fd < 3; fd++)
		if (null != fd && dup2(null, fd) != fd)
			return -1;
	if (null > 2)
		close(null);
	/* A crash leaves no core file; a write cannot grow a file. */
	if (setrlimit(RLIMIT_CORE, &zero) || setrlimit(RLIMIT_FSIZE, &zero))
		return -1;
	signal(SIGXFSZ, SIG_IGN);
	*filtered = filter() == 0;
	return 3;
}

/* ---- the child's memory ---- */

/* A damaged file of a few kilobytes can make HDF5 ask for tens of
 * gigabytes while opening it; with overcommit that can reach the OOM
 * killer. The child's address space is capped instead: what it has at the
 * fork, 1 GiB, and twice the largest data the file could expand to (deflate
 * stops near 1032:1). Sanitizer builds reserve terabytes of shadow memory
 * and are left uncapped. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
	__has_feature(memory_sanitizer)
#define SANITIZED 1
#endif
#endif

#define EXPANSION 1100

/* The cap in bytes for a file of len bytes, 0 for none. Reads
 * /proc/self/statm, so it runs before the confinement. */
static uint64_t memory_cap(size_t len)
{
#ifdef SANITIZED
	(void)len;
	return 0;
#else
	unsigned long long pages = 0;
	long page = sysconf(_SC_PAGESIZE);
	uint64_t have, grow;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%llu", &pages) != 1 || page <= 0)
		pages = 0;
	fclose(f);
	if (!pages || len > UINT64_MAX / (2 * EXPANSION) / 2)
		return 0;
	have = (uint64_t)pages * (uint64_t)page;
	grow = ((uint64_t)1 << 30) + 2 * EXPANSION * (uint64_t)len;
	return have > UINT64_MAX - grow ? 0 : have + grow;
#endif
}

/* ---- the two sides ---- */

/* Never returns. Exit codes past 0 tell the parent what went wrong when no
 * message could be sent. */
static void child(int fd, void *image, size_t len, const struct lcio_reader *rd,
	void *arg)
{
	char msg[MAX_MSG] = "";
	uint64_t cap = memory_cap(len);
	int filtered, r;
	FILE *out;

	if ((fd = lcio_confine(fd, &filtered)) < 0 || !(out = fdopen(fd, "w")))
		_exit(3);
	if (cap) {
		struct rlimit as = { (rlim_t)cap, (rlim_t)cap };

		setrlimit(RLIMIT_AS, &as);
	}
	alarm(LCIO_SANDBOX_SECONDS);
	r = rd->parse(arg, image, len, msg, sizeof msg);
	if (r == LCIO_OWN_FAULT && cap) {
		size_t at = strlen(msg);

		snprintf(msg + at, sizeof msg - at, " (the reader may map %llu MiB for "
			"this %zu-byte file)", (unsigned long long)(cap >> 20), len);
	}
	if (r == LCIO_PARSED) {
		if (lcio_wput(out, "K", 1) || rd->send(arg, out) || fflush(out))
			_exit(4);
		_exit(0);
	}
	if (lcio_wput(out, r == LCIO_BAD_FILE ? "E" : "I", 1) ||
	    lcio_wput_str(out, msg) || fflush(out))
		_exit(4);
	_exit(r == LCIO_BAD_FILE ? 2 : 5);
}

/* Map path privately: the child may scribble on its copy, the parent
 * never touches it. *len == 0 for an empty file (nothing mapped). */
static int map_file(const char *path, void **image, size_t *len, char *err,
	size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*image = NULL, *len = 0;
	if (fd < 0)
		return failf(path, err, errlen, "%s", strerror(errno)), LCIO_NO_FILE;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return failf(path, err, errlen, "not a regular file"), LCIO_NO_FILE;
	}
	if (st.st_size > 0 && (uint64_t)st.st_size <= SIZE_MAX) {
		*len = (size_t)st.st_size;
		*image = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		if (*image == MAP_FAILED) {
			*image = NULL;
			close(fd);
			failf(path, err, errlen, "cannot map the file (%s)", strerror(errno));
			return LCIO_NO_FILE;
		}
	}
	close(fd);
	return 0;
}

/* What the reply said (a code of sandbox.h), or 1 when there was none. */
static int reply(FILE *in, const struct lcio_reader *rd, void *arg, const char *path,
	char *err, size_t errlen, int *complete)
{
	char tag, *msg = NULL;
	int r;

	*complete = 0;
	if (lcio_wget(in, &tag, 1))
		return 1; /* the exit status says why */
	if (tag == 'K') {
		if ((r = rd->take(arg, in, err, errlen)) != LCIO_PARSED)
			return r == LCIO_OWN_FAULT ? r : LCIO_BAD_FILE;
		if (!(*complete = fgetc(in) == EOF))
			return failf(path, err, errlen, "the reader's reply has trailing "
				"bytes (a bug in lcattn)"), LCIO_BAD_FILE;
		return LCIO_PARSED;
	}
	if ((tag != 'E' && tag != 'I') || lcio_wget_str(in, MAX_MSG, &msg) || !msg)
		return failf(path, err, errlen, "the reader sent a malformed reply "
			"(a bug in lcattn, or a reader subverted by the file)"), LCIO_BAD_FILE;
	if (tag == 'E')
		snprintf(err, errlen, "%s", msg);
	else
		failf(path, err, errlen, "the reader failed for its own reasons, "
			"not because of the file: %s", msg);
	free(msg);
	return tag == 'E' ? LCIO_BAD_FILE : LCIO_OWN_FAULT;
}

/* The child's end, when it left no message of its own. */
static int status_msg(int st, const char *path, char *err, size_t errlen)
{
	if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
		return failf(path, err, errlen, "reading did not finish in %d s "
			"(a damaged file that makes HDF5 loop?)", LCIO_SANDBOX_SECONDS),
			LCIO_BAD_FILE;
	if (WIFSIGNALED(st))
		return failf(path, err, errlen, "the reader crashed (%s): the file is "
			"damaged, or HDF5 or lcattn has a bug; nothing of it was used",
			strsignal(WTERMSIG(st))), LCIO_BAD_FILE;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
		return failf(path, err, errlen, "the reader could not confine itself "
			"(not because of the file)"), LCIO_OWN_FAULT;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 4)
		return failf(path, err, errlen, "the reader could not send its reply "
			"(not because of the file)"), LCIO_OWN_FAULT;
	/* The child itself exits only with the codes above: another came from
	 * code it called while parsing (a sanitizer's report, a library that
	 * exits), as a crash does. */
	return failf(path, err, errlen, "the reader was ended with exit status %d "
		"while parsing: the file is damaged, or HDF5 or lcattn has a bug; "
		"nothing of it was used", WIFEXITED(st) ? WEXITSTATUS(st) : -1),
		LCIO_BAD_FILE;
}

int lcio_sandbox(const char *path, const struct lcio_reader *rd, void *arg,
	char *err, size_t errlen)
{
	void *image;
	size_t len;
	int fd[2], st, r, complete;
	pid_t pid;
	FILE *in;

	if ((r = map_file(path, &image, &len, err, errlen)))
		return r;
	if (pipe(fd)) {
		r = errno;
		if (image)
			munmap(image, len);
		failf(path, err, errlen, "cannot start the reader (pipe: %s)", strerror(r));
		return LCIO_OWN_FAULT;
	}
	fflush(NULL);
	if ((pid = fork()) == 0) {
		close(fd[0]);
		child(fd[1], image, len, rd, arg);
	}
	r = errno;
	close(fd[1]);
	if (image)
		munmap(image, len);
	if (pid < 0) {
		close(fd[0]);
		failf(path, err, errlen, "cannot start the reader (fork: %s)", strerror(r));
		return LCIO_OWN_FAULT;
	}
	if (!(in = fdopen(fd[0], "r"))) {
		close(fd[0]);
		kill(pid, SIGKILL);
		failf(path, err, errlen, "cannot read the reader's reply");
		r = LCIO_OWN_FAULT;
	} else {
		r = reply(in, rd, arg, path, err, errlen, &complete);
		if (!complete)
			kill(pid, SIGKILL); /* it may be blocked writing */
		fclose(in);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return failf(path, err, errlen, "lost the reader (waitpid: %s)",
				strerror(errno)), LCIO_OWN_FAULT;
	if (r == 1)
		return status_msg(st, path, err, errlen);
	if (r == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
		return status_msg(st, path, err, errlen);
	return r;
}
