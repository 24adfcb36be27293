#!/bin/sh
# setup.sh [demo|test] - set up a fresh Debian machine (run as root), build
# lcattn from scratch, then either write the report or run every test.
#   demo  (default) the main job: lcattn report, into report/ (a few minutes)
#   test  make check, make distcheck, the README example through pkg-config,
#         the Debian packages (built, lintian, installed, used),
#         make check under ASan + UBSan, tests/check_threads under TSan,
#         and a CUDA build with its tests (they skip without a GPU) when nvcc
#         is installed
set -eu
mode=${1:-demo}
case $mode in demo|test) ;; *) echo "usage: $0 [demo|test]" >&2; exit 2 ;; esac
cd "$(dirname "$0")"
top=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

deps="build-essential autoconf automake libtool pkg-config libopenblas-dev libhdf5-dev check mandoc gnuplot-nox"
# libopenmpi-dev, openmpi-bin: liblcattn_mpi and its mpirun tests (tests/mpi.sh).
deps="$deps libopenmpi-dev openmpi-bin"
# python3-h5py: the test that a file written by another program (h5py) is accepted.
[ "$mode" = test ] && deps="$deps python3-h5py"
# debhelper, lintian: the Debian packages are built, checked and installed.
[ "$mode" = test ] && deps="$deps debhelper lintian"
# clang, libomp-dev: the ThreadSanitizer run (LLVM's OpenMP is TSan-aware);
# libclang-rt: libFuzzer for fuzz/fuzz.sh.
[ "$mode" = test ] && deps="$deps clang libclang-rt-14-dev libomp-dev"
missing=""
for p in $deps; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "setup.sh: missing Debian packages:$missing (run as root, or install them)" >&2
		exit 1
	fi
	echo "== installing:$missing"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

echo "== autoreconf"
autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
# Out-of-tree builds keep the source tree clean for make distcheck.
# Test mode installs into _inst/ to build the README example against it.
rm -rf _build _inst && mkdir _build && cd _build
if [ "$mode" = test ]; then ../configure --quiet --prefix="$top/_inst"; else ../configure --quiet; fi
make -j"$jobs" >/dev/null

if [ "$mode" = demo ]; then
	./tools/lcattn report --out "$top/report"
	echo "== the report is in $top/report/report.md (CSV and plots beside it)"
	exit 0
fi

echo "== make check"
make -j"$jobs" check
grep -h "^[0-9]*%: Checks:" tests/*.log | awk -F'[ ,]+' '{n+=$3; f+=$5; e+=$7} END {print "checks: " n - f - e " passed, " f + e " failed"}'
echo "== make distcheck"
make -j"$jobs" distcheck >distcheck.out 2>&1 || { tail -n 60 distcheck.out; exit 1; }
tail -n 4 distcheck.out
echo "== README example through pkg-config"
make install >/dev/null
sh "$top/tests/readme-example.sh" "$top/README.md" "$top/_inst"
echo "== Debian packages: build, lintian, install, use"
sh "$top/tests/debian-package.sh" "$(ls lcattn-*.tar.gz)" "$top/README.md"

echo "== ASan + UBSan build: make check"
sh "$top/tests/asan.sh" "$top" "$jobs"
echo "== TSan: tests/check_threads (clang, libomp with Archer)"
sh "$top/tests/tsan.sh" "$top" "$jobs"

echo "== fuzz: each target over its corpus plus a fixed count of new inputs (fuzz/fuzz.sh)"
cd "$top" && rm -rf _build-fuzz && sh fuzz/fuzz.sh ci _build-fuzz

if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
	echo "== CUDA build (tests skip without a GPU)"
	cd "$top" && rm -rf _build-cuda && mkdir _build-cuda && cd _build-cuda
	../configure --quiet --enable-cuda
	make -j"$jobs" >/dev/null
	# The tests that reach the cuda backend; the rest run the same cpu
	# code the three builds above have checked, and a fourth full run
	# cost CI five minutes. On a GPU, tests/cuda-check.sh checks the backend.
	make -j"$jobs" check TESTS="tests/check_cuda tests/check_api tests/check_bf16 \
		tests/check_probe tests/golden.sh"
else
	echo "== no nvcc: CUDA build not tried"
fi
echo "== all tests passed"
