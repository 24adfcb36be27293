#!/bin/sh
# serve-bench.sh - `lcattn bench --phase serve` at tiny sizes: every
# throughput row is there and well formed (B, storage, positive time and
# rates, a bf16/f32 ratio on bf16 rows), and in the sessions-that-fit table
# the count measured by filling real paged pools equals the modelled count
# on every row whose reduction is exact (no '*'), for f32 and bf16
# storage. Timings are not judged.
# Environment: top_builddir (the tool is $top_builddir/tools/lcattn).

tool="${top_builddir:-.}/tools/lcattn"
out="${TMPDIR:-/tmp}/lcattn-serve-bench.$$.out"
err="${TMPDIR:-/tmp}/lcattn-serve-bench.$$.err"

trap 'rm -f "$out" "$err"' EXIT
trap 'exit 1' INT TERM

fail() {
	echo "serve-bench: $*" >&2
	[ -f "$out" ] && cat "$out" >&2
	[ -f "$err" ] && cat "$err" >&2
	exit 1
}

"$tool" bench --phase serve --B 1,5 --ctx 60,200 --long-ctx 100 --reps 1 \
	--budget 2 --fit-ctx 4096,16384,20000 >"$out" 2>"$err" || fail "exited with status $?"

# Throughput rows: mechanism B storage context MiB s tokens/s GB/s GFLOP/s roofline
# rss [ratio]
awk '
/^(softmax|mla|deltanet|lightning) +[0-9]+ +(f32|bf16|state) / && NF >= 11 {
	kv = $1 == "softmax" || $1 == "mla"
	if (kv && $3 == "state" || !kv && $3 != "state") { print "storage of " $0; bad = 1 }
	for (i = 4; i <= 10; i++) if (!($i + 0 > 0)) { print "field " i ": " $0; bad = 1 }
	if ($3 == "bf16" && (NF != 12 || !($12 + 0 > 0))) { print "no bf16/f32 ratio: " $0; bad = 1 }
	rows[$1 " " $2 " " $3]++
	n++
}
/ n\/a / { print "failed row: " $0; bad = 1 }
END {
	# B = 1, 5 (mixed) and 8 (--long-ctx): 2 kv x 2 storages + 2 states each
	for (b = 1; b <= 8; b++) {
		if (b != 1 && b != 5 && b != 8) continue
		if (!rows["softmax " b " f32"] || !rows["softmax " b " bf16"] ||
		    !rows["mla " b " f32"] || !rows["mla " b " bf16"] ||
		    !rows["deltanet " b " state"] || !rows["lightning " b " state"]) {
			print "missing rows for B = " b; bad = 1
		}
	}
	if (n != 18) { print n " throughput rows, expected 18"; bad = 1 }
	exit bad
}' "$out" >&2 || fail "malformed throughput rows"

grep -q '^B=5 mixed lengths: min [0-9]*, median [0-9]*, max [0-9]*, total [0-9]* tokens$' "$out" ||
	fail "no length summary for B=5"

# Sessions table: stack context MiB/seq model meas MiB/seq model meas [*]
awk '
/^stack +context +MiB\/seq f32/ { on = 1; next }
on && NF == 0 { on = 0 }
on && NF >= 8 {
	n++
	for (i = 2; i <= 8; i++) if ($i !~ /^[0-9.]+$/) { print "field " i ": " $0; bad = 1 }
	exact = NF == 8
	if (exact && ($4 != $5 || $7 != $8)) { print "measured != modelled: " $0; bad = 1 }
	if (!exact && $9 != "*") { print "trailing field: " $0; bad = 1 }
	if (!exact) inexact++
	if ($2 == 20000 && exact) { print "20000 is not whole pages at /64: " $0; bad = 1 }
	if ($4 > 0) nonzero++
	seen[$1]++
}
END {
	# 4 mechanisms + 6 presets, 3 contexts each
	if (n != 30) { print n " sessions rows, expected 30"; bad = 1 }
	split("softmax mla deltanet lightning deepseek-v3 deepseek-v3-mha qwen3-next " \
	      "qwen3-next-softmax minimax-m1 minimax-m1-softmax", names, " ")
	for (i in names) if (seen[names[i]] != 3) { print "rows of " names[i] ": " seen[names[i]]; bad = 1 }
	if (inexact != 10) { print inexact " rows marked inexact, expected 10 (the 20000 rows)"; bad = 1 }
	if (nonzero < 10) { print "only " nonzero " rows with a nonzero count"; bad = 1 }
	exit bad
}' "$out" >&2 || fail "sessions table"

echo "serve-bench: 18 throughput rows and 30 sessions rows ok"
exit 0
