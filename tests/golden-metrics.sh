#!/bin/sh
# golden-metrics.sh - the probe metrics stored in each golden file's
# /metrics (lcattn-probes(7), GOLDEN METRICS) reproduce to 1e-12 when
# recomputed from the file's own /inputs by this build; and the check
# catches a missing, mistyped or changed metric.
set -u
tool="$top_builddir/tools/lcattn"
mutate=${H5MUTATE:-"$top_builddir/tests/h5mutate"}
golden="$top_srcdir/golden"
tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
status=0

cases=$(awk '{print $2}' "$golden/SHA256SUMS")
[ -n "$cases" ] || { echo "FAIL: no cases in golden/SHA256SUMS"; exit 1; }
files=
for c in $cases; do files="$files $golden/$c"; done
# shellcheck disable=SC2086 # a list of plain paths
if ! "$tool" probe golden $files; then
	echo "FAIL: lcattn probe golden: some /metrics do not reproduce"
	status=1
fi

# Negative controls (h5mutate): a metric removed, or stored as float32,
# must fail the check; so must a RoPE base changed under the stored numbers
# (every probe of a RoPE case moves with it).
control() {
	cp "$golden/$1" "$tmp/m.h5" || exit 99
	shift
	"$mutate" "$tmp/m.h5" "$@" >/dev/null || exit 99
	if "$tool" probe golden "$tmp/m.h5" >"$tmp/out" 2>&1; then
		echo "FAIL: lcattn probe golden passed a file after h5mutate $*"
		status=1
	elif [ "$1" != type ] && ! grep -q "^FAIL" "$tmp/out"; then
		echo "FAIL: h5mutate $*: no FAIL line:"
		cat "$tmp/out"
		status=1
	fi
}
control softmax-gqa-t33.h5 rm /metrics/probe_position_d1
control softmax-gqa-t33.h5 type /metrics/probe_retrieval_mean float32
control softmax-prefill-rope-half.h5 cfgint rope_theta 100
[ $status -eq 0 ] && echo "ok: golden probe metrics reproduce; a missing, mistyped or changed one is caught"
exit $status
