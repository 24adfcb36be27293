#!/bin/sh
# tests/asan.sh TOP [JOBS] - make check of an AddressSanitizer and
# UndefinedBehaviorSanitizer build of lcattn in TOP/_build-asan (run by
# setup.sh test). Any report fails the run: ASan and LeakSanitizer stop at
# the first error, UBSan is built not to recover. Every test runs,
# including the tool's scripts (the lcattn command is instrumented too).
# No suppressions: none was needed (OpenBLAS, libgomp and HDF5 leak
# nothing that LeakSanitizer reports); a third-party one would go in a
# commented file here, never one for lcattn's own code.
set -eu
top=$(cd "$1" && pwd)
jobs=${2:-2}
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
rm -rf "$top/_build-asan" && mkdir "$top/_build-asan" && cd "$top/_build-asan"
# CFLAGS reach every compile and, through libtool, every link (the shared
# library and the programs); LDFLAGS puts the runtimes first in programs.
"$top/configure" --quiet CFLAGS="-O1 -g -fno-omit-frame-pointer $san" \
	LDFLAGS="$san"
make -j"$jobs" >make.out 2>&1 || { tail -n 40 make.out; exit 1; }
# report-smoke.sh times `lcattn report --quick` against 60 s, a limit
# for the release build: instrumented, it measured 82 s on two busy cores.
# LCA_SANITIZED: scripts skip what a sanitizer cannot run under (ulimit -v:
# ASan reserves terabytes of shadow memory at start; the release build's
# make check runs those cases).
ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:strict_string_checks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 LCA_REPORT_LIMIT=240 \
LCA_SANITIZED=address \
	make -j"$jobs" check >check.out 2>&1 || {
	grep -E "^(FAIL|ERROR|XPASS):" check.out; exit 1; }
grep -E "^# (TOTAL|PASS|SKIP):" test-suite.log | tr '\n' ' ' | sed 's/# //g; s/ *$/\n/'
grep -h "^[0-9]*%: Checks:" tests/*.log | awk -F'[ ,]+' \
	'{n+=$3; f+=$5; e+=$7}
	END {print "asan checks: " n - f - e " passed, " f + e " failed"}'
