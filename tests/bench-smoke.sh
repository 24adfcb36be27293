#!/bin/sh
# bench-smoke.sh - `lcattn bench --quick` runs to the end and writes its CSV
# with the documented header and one well-formed row per mechanism and T
# (4 mechanisms x T in {1024, 4096}); `--phase decode` times every
# mechanism at 1024 tokens. Timings are not judged here.
# Environment: top_builddir (the tool is $top_builddir/tools/lcattn).

tool="${top_builddir:-.}/tools/lcattn"
csv="${TMPDIR:-/tmp}/lcattn-bench-smoke.$$.csv"
header='mechanism,phase,backend,dtype,T,H,dk,dv,seconds,flops,bytes,gflops,roofline_frac,speedup_vs_ref,peak_rss_mb'

trap 'rm -f "$csv"' EXIT
trap 'exit 1' INT TERM

fail() {
	echo "bench-smoke: $*" >&2
	[ -f "$csv" ] && cat "$csv" >&2
	exit 1
}

"$tool" bench --quick --no-torch --csv "$csv" || fail "lcattn bench exited with status $?"
[ -f "$csv" ] || fail "no CSV written"
[ "$(head -n 1 "$csv")" = "$header" ] || fail "unexpected header: $(head -n 1 "$csv")"

rows=$(($(wc -l < "$csv") - 1))
[ "$rows" -eq 8 ] || fail "expected 8 rows, got $rows"

# 15 fields; known mechanism; phase, backend, dtype; T an integer from the
# quick list; seconds empty (n/a) or a positive number.
awk -F, 'NR > 1 {
	if (NF != 15) { print "row " NR ": " NF " fields"; bad = 1 }
	if ($1 !~ /^(softmax|mla|deltanet|lightning)$/) { print "row " NR ": mechanism " $1; bad = 1 }
	if ($2 != "prefill" || $3 != "cpu" || $4 != "f32") { print "row " NR ": phase/backend/dtype"; bad = 1 }
	if ($5 != "1024" && $5 != "4096") { print "row " NR ": T " $5; bad = 1 }
	if ($9 != "" && !($9 + 0 > 0)) { print "row " NR ": seconds " $9; bad = 1 }
	seen[$1 "," $5] = 1
}
END {
	n = 0
	for (k in seen) n++
	if (n != 8) { print "expected 8 distinct (mechanism, T), got " n; bad = 1 }
	exit bad
}' "$csv" >&2 || fail "malformed rows"

# The decode phase measures every mechanism: a row that says n/a means a
# step was refused (a cache it could not fill, say), not a timing.
out=$("$tool" bench --phase decode --T 1024 --quick --no-torch 2>&1) ||
	fail "lcattn bench --phase decode exited with status $?"
for m in softmax mla deltanet lightning; do
	printf '%s\n' "$out" | grep -Eq "^$m +1024 +[0-9]" ||
		{ printf '%s\n' "$out" >&2; fail "decode: no timing for $m at 1024"; }
done

echo "bench-smoke: header and 8 rows ok; decode timed every mechanism"
exit 0
