#!/bin/sh
# fuzz/fuzz.sh MODE [BUILDDIR] - build lcattn's libFuzzer targets with clang
# (-fsanitize=fuzzer,address,undefined) in BUILDDIR (default ./_build-fuzz),
# then:
#   ci     run each target over its committed corpus plus a fixed count
#          of new inputs (FUZZ_RUNS overrides the per-target counts below),
#          so CI time does not depend on luck; any crash, leak, timeout or
#          sanitizer report of lcattn's code fails (HDF5's are sorted out)
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
targets="api cache_load golden checkpoint"

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
# A malloc too big to serve returns NULL, as with glibc: HDF5 asks for
# sizes read from a damaged file, and then fails or crashes as it would
# without ASan (a request over -malloc_limit_mb, 2 GB by default, still
# stops the run; hdf5_crash() below tells whose it was).
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:allocator_may_return_null=1:suppressions=$src/fuzz/asan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$src/fuzz/lsan.supp:print_suppressions=0}

if [ "$mode" = seeds ]; then
	for t in api cache_load checkpoint golden; do mkdir -p "$src/fuzz/corpus/$t"; done
	./fuzz/seeds "$src/fuzz/corpus"
	# The smallest golden cases, one or two per variant (11 to 29 KB).
	for g in softmax-t1 softmax-masked-rows softmax-decode-mqa mla-t1 \
		deltanet-t1-state0 lightning-t1-state0; do
		cp "$src/golden/$g.h5" "$src/fuzz/corpus/golden/"
	done
	exit 0
fi

# Whose crash is the artifact $1 of target $2? HDF5's own when a libhdf5
# frame comes before any frame in lcattn's sources (file:line under $src)
# on the reported stack (HDF5 1.10 crashes, or asks for gigabytes,
# in-process on some damaged files: DESIGN.md); else ours, also when it
# does not reproduce. The rerun stops at any malloc of 1 GB, with its
# stack, before the RSS limit (which reports none) is reached.
hdf5_crash() {
	./fuzz/fuzz_$2 -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=1024 "$1" >"$1.log" 2>&1 &&
		return 1
	awk -v src="$src/" '/^ *#[0-9]+ / && /libhdf5/ { print "hdf5"; exit }
		/^ *#[0-9]+ / && index($0, src) &&
		$0 ~ /\/(lib|fuzz|tools)\/[a-z_0-9]+\.c:[0-9]+/ { print "lcattn"; exit }' \
		"$1.log" | grep -q hdf5
}

for t in $targets; do
	new="$build/corpus/$t"
	mkdir -p "$new"
	case $t in
	# HDF5 images: the seeds are 3 to 29 KB. The readers call HDF5, which
	# may crash in-process: run in fork mode and sort the crashes below.
	golden|checkpoint) max=65536 runs=3000 fork="-fork=1 -ignore_crashes=1" ;;
	api) max=4096 runs=20000 fork= ;;
	*) max=4096 runs=50000 fork= ;;
	esac
	if [ "$mode" = ci ]; then
		limit="-runs=${FUZZ_RUNS:-$runs}"
	else
		limit="-max_total_time=${FUZZ_SECONDS:-300}"
		# HDF5 leaks on every open (fuzz/lsan.supp), so with leak
		# detection on, every input is run twice and the heap scanned:
		# 2.7x slower. Long runs trade that check for executions; the
		# CI runs keep it.
		[ -z "$fork" ] || fork="$fork -detect_leaks=0"
	fi
	echo "== fuzz_$t ($limit)"
	rm -f "$build/crash-$t-"*
	# New inputs land in $new, never in the source tree's corpus; the
	# seed is fixed so that a CI run is reproducible.
	# In fork mode the exit status is the last job's, crash or not: a
	# run that got to its end is judged by its crash artifacts below.
	./fuzz/fuzz_$t $limit $fork -seed=1 -timeout=10 -rss_limit_mb=2048 \
		-max_len=$max -print_final_stats=1 -artifact_prefix="$build/crash-$t-" \
		"$new" "$src/fuzz/corpus/$t" 2>"$build/fuzz_$t.log" ||
		{ [ -n "$fork" ] && grep -q '^INFO: exiting:' "$build/fuzz_$t.log"; } ||
		{ tail -n 60 "$build/fuzz_$t.log"; exit 1; }
	# The last progress line (fork mode prints no final stats).
	grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' \
		"$build/fuzz_$t.log" | tr '\n' ' '
	[ -z "$fork" ] || grep -E '^#[0-9]+: cov' "$build/fuzz_$t.log" | tail -n 1
	echo
	for a in "$build/crash-$t-"*; do
		[ -f "$a" ] && [ "${a%.log}" = "$a" ] || continue
		if hdf5_crash "$a" "$t"; then
			echo "   HDF5's own crash (not lcattn's), kept: $a"
		else
			echo "   lcattn crash: $a"; tail -n 40 "$a.log"; exit 1
		fi
	done
done
