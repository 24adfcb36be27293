#!/bin/sh
# tests/tsan.sh TOP [JOBS] - tests/check_threads (many threads on shared
# and separate plans and caches) under ThreadSanitizer, in TOP/_build-tsan
# (run by setup.sh test), then check_cp_loop and check_profile. Only the
# library and those tests are built.
#
# OpenMP: GCC's libgomp is not instrumented, so TSan would not see its
# barriers and would report its workers' accesses as races. clang with
# LLVM's libomp is TSan-aware through its OMPT tool Archer (libarcher, in
# Debian's libomp-dev), loaded by OMP_TOOL_LIBRARIES: the cpu backend runs
# with real OpenMP teams and no suppression file is needed. Archer asks for
# ignore_noninstrumented_modules=1: libomp's own bookkeeping (its
# allocator's memset, seen from two team threads) is then not reported,
# nor is any access made inside another uninstrumented library (OpenBLAS,
# Check); lcattn's code, all instrumented, is still watched everywhere.
# OpenBLAS (Debian's pthreads build, compiled without TSan) hands work to
# its own thread pool through spin-waits TSan cannot see:
# OPENBLAS_NUM_THREADS=1 keeps each BLAS call on its calling thread, so
# its memory traffic is the caller's and the report is about lcattn.
set -eu
top=$(cd "$1" && pwd)
jobs=${2:-2}
archer=/usr/lib/llvm-14/lib/libarcher.so
[ -r "$archer" ] || archer=$(find /usr/lib -name libarcher.so 2>/dev/null | head -n 1)
[ -n "$archer" ] || {
	echo "tsan.sh: libarcher.so not found (Debian package: libomp-dev)" >&2
	exit 1
}
rm -rf "$top/_build-tsan" && mkdir "$top/_build-tsan" && cd "$top/_build-tsan"
"$top/configure" --quiet CC=clang CFLAGS="-O1 -g -fsanitize=thread" \
	LDFLAGS="-fsanitize=thread"
make -j"$jobs" liblcattn.la tests/check_threads tests/check_cp_loop tests/check_profile >make.out 2>&1 ||
	{ tail -n 40 make.out; exit 1; }
# CK_FORK=no: the threads run in the test process itself, as a user's would.
OMP_TOOL_LIBRARIES=$archer OPENBLAS_NUM_THREADS=1 CK_FORK=no \
TSAN_OPTIONS="halt_on_error=1 ignore_noninstrumented_modules=1" \
	./tests/check_threads >check.out 2>&1 || { tail -n 80 check.out; exit 1; }
grep "^[0-9]*%: Checks:" check.out | sed 's/^/tsan check_threads: /'
# The loopback transport of lib/mpi: P ranks as threads exchanging
# through barriers.
OMP_TOOL_LIBRARIES=$archer OPENBLAS_NUM_THREADS=1 CK_FORK=no \
TSAN_OPTIONS="halt_on_error=1 ignore_noninstrumented_modules=1" \
	./tests/check_cp_loop >check_cp.out 2>&1 || { tail -n 80 check_cp.out; exit 1; }
grep "^[0-9]*%: Checks:" check_cp.out | sed 's/^/tsan check_cp_loop: /'
# the profiler's counters, read, reset and toggled by one thread while
# another's calls count into them
OMP_TOOL_LIBRARIES=$archer OPENBLAS_NUM_THREADS=1 CK_FORK=no \
TSAN_OPTIONS="halt_on_error=1 ignore_noninstrumented_modules=1" \
	./tests/check_profile >check_profile.out 2>&1 || { tail -n 80 check_profile.out; exit 1; }
grep "^[0-9]*%: Checks:" check_profile.out | sed 's/^/tsan check_profile: /'
