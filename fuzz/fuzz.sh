#!/bin/sh
# fuzz/fuzz.sh MODE [BUILDDIR] - build lcattn's libFuzzer targets with clang
# (-fsanitize=fuzzer,address,undefined) in BUILDDIR (default ./_build-fuzz),
# then:
#   ci     run each target over its committed corpus plus FUZZ_RUNS new
#          inputs (a fixed count, so CI time does not depend on luck); any
#          crash, leak, timeout or sanitizer report fails
#   long   run each target for FUZZ_SECONDS (default 300); new inputs go
#          to BUILDDIR/corpus/<target>, crashes to BUILDDIR/crash-*
#   seeds  rewrite the generated seeds under fuzz/corpus (commit them)
# A crash input goes into fuzz/corpus/<target>/ as a regression input,
# once its bug is fixed.
set -eu
mode=${1:-ci}
case $mode in ci|long|seeds) ;; *) echo "usage: $0 ci|long|seeds [BUILDDIR]" >&2; exit 2 ;; esac
src=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-_build-fuzz}
mkdir -p "$build"
build=$(cd "$build" && pwd)
jobs=$(nproc 2>/dev/null || echo 2)
[ "$jobs" -gt 2 ] || jobs=2
targets="api cache_load"

command -v clang >/dev/null || { echo "fuzz.sh: clang is needed (Debian package: clang)" >&2; exit 1; }
cd "$build"
if [ ! -f Makefile ]; then
	# Static: the targets are plain executables, not libtool wrappers.
	# -O1 -g: the usual libFuzzer build, fast enough and still debuggable.
	"$src/configure" --quiet --disable-shared CC=clang \
		CFLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
fi
progs=""
for t in $targets; do progs="$progs fuzz/fuzz_$t"; done
[ "$mode" = seeds ] && progs="$progs fuzz/seeds"
make -j"$jobs" $progs >make.log 2>&1 || { tail -n 40 make.log; exit 1; }

# Single-threaded BLAS: the targets pick their own OpenMP threads (<= 2).
export OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

if [ "$mode" = seeds ]; then
	mkdir -p "$src/fuzz/corpus/api" "$src/fuzz/corpus/cache_load"
	./fuzz/seeds "$src/fuzz/corpus"
	exit 0
fi

for t in $targets; do
	new="$build/corpus/$t"
	mkdir -p "$new"
	if [ "$mode" = ci ]; then
		limit="-runs=${FUZZ_RUNS:-20000}"
	else
		limit="-max_total_time=${FUZZ_SECONDS:-300}"
	fi
	echo "== fuzz_$t ($limit)"
	# New inputs land in $new, never in the source tree's corpus; the
	# seeds are fixed-seeded so a CI run is reproducible.
	./fuzz/fuzz_$t $limit -seed=1 -timeout=10 -rss_limit_mb=2048 \
		-max_len=4096 -print_final_stats=1 -artifact_prefix="$build/crash-$t-" \
		"$new" "$src/fuzz/corpus/$t" 2>"$build/fuzz_$t.log" ||
		{ tail -n 60 "$build/fuzz_$t.log"; exit 1; }
	grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' \
		"$build/fuzz_$t.log" | tr '\n' ' '
	echo
done
