#!/bin/sh
# report-smoke.sh - `lcattn report --quick` finishes within 60 seconds and
# writes report.md with its tables and the CSV files. Timings are not
# judged here; the cost formulas are checked by check_cost.
# Environment: top_builddir (the tool is $top_builddir/tools/lcattn).

tool="${top_builddir:-.}/tools/lcattn"
tmp=$(mktemp -d 2>/dev/null) || { tmp=${TMPDIR:-/tmp}/lcattn-report.$$; mkdir "$tmp" || exit 99; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

fail() {
	echo "report-smoke: $*" >&2
	[ -f "$tmp/out/report.md" ] && cat "$tmp/out/report.md" >&2
	exit 1
}

start=$(date +%s)
"$tool" report --quick --out "$tmp/out" 2>"$tmp/stderr" || { cat "$tmp/stderr" >&2; fail "lcattn report exited with status $?"; }
took=$(($(date +%s) - start))
# The limit is the release build's; a sanitizer build (tests/asan.sh) runs
# several times slower and gives its own in LCA_REPORT_LIMIT.
limit=${LCA_REPORT_LIMIT:-60}
[ "$took" -lt "$limit" ] || fail "took $took s (limit $limit s)"
md="$tmp/out/report.md"
[ -f "$md" ] || fail "no report.md"
for h in '## Per mechanism' '## Per preset' '### MiniMax' '### Sessions that fit' '## Hybrid stacks' '## Agreement' '## Long-run drift' \
	'## Training signal' '| curve | grad_v d=1 |' \
	'| mechanism | stored between tokens | bytes at 1M (modelled) |' \
	'| preset (modelled) | n | attention FLOPs/token |' \
	'| schedule | phase | T | measured s |' \
	'| mechanism | backend | dtype | normwise error |' \
	'## Beyond one machine' '| preset | n | ranks | busiest rank sends | rounds |'; do
	grep -qF -- "$h" "$md" || fail "missing '$h'"
done
for m in softmax mla deltanet lightning; do
	grep -q "^| $m | " "$md" || fail "no row for $m"
done
for p in deepseek-v3 qwen3-next minimax-m1; do
	grep -q "^| $p | 100000 | " "$md" || fail "no row for preset $p"
done
for p in deepseek-v3 qwen3-next minimax-m1; do
	for n in 131072 1048576; do
		for P in 8 64 512; do
			grep -q "^| $p | $n | $P | [0-9]" "$md" || fail "no beyond-one-machine row for $p n=$n P=$P"
		done
	done
done
for s in DDDSDDDS LLLLLLLS MMMMMMMM SSSSSSSS; do
	grep -q "^| $s .* | decode | 1024 | [0-9]" "$md" || fail "no measured decode row for stack $s"
done
grep -E '^\| [SMDL]{8} .*nan' "$md" && fail "a stack run failed (nan in its row)"
for c in softmax softmax-rope deltanet-strong deltanet-weak lightning-l0 lightning-l7 mla mla-compressed; do
	grep -q "^| $c (.*) | [0-9]" "$md" || fail "no gradient-flow row for $c"
done
grep -q '\*\*no\*\*' "$md" && fail "a backend is outside the tolerance bound"
grep -q "progress\|lcattn report: " "$tmp/stderr" || fail "no progress on stderr"
for c in mechanisms presets stacks agreement; do
	[ -s "$tmp/out/$c.csv" ] || fail "no $c.csv"
done
echo "report-smoke: ok in $took s"
