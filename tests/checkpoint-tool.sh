#!/bin/sh
# checkpoint-tool.sh - `lcattn checkpoint info|verify|convert` on decode-
# cache checkpoints, as HDF5 files (lcattn-checkpoint(5)) and as the raw
# bytes of lca_cache_save(3):
#   - every variant and dtype converts raw -> HDF5 -> raw back to the same
#     bytes, and both forms verify (exit 0) and show their header;
#   - a damaged, truncated, foreign or inconsistent file gives exit status
#     2 and exactly one line on stderr naming the problem, never a crash.
#
# Needs the helpers tests/ckmake (writes lca_cache_save bytes) and
# tests/h5mutate, built by `make check`.
set -u
tool="$top_builddir/tools/lcattn"
make="$top_builddir/tests/ckmake"
mutate="$top_builddir/tests/h5mutate"
[ -x "$make" ] && [ -x "$mutate" ] || { echo "ERROR: helpers not built"; exit 99; }
tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
status=0 n=0

fail() {
	echo "FAIL: $*"
	status=1
}

# expect STATUS WHAT PATTERN -- CMD...: exit status STATUS and stderr one
# line matching PATTERN (grep -E, case-blind).
expect() {
	want=$1 what=$2 pat=$3
	shift 4
	n=$((n + 1))
	timeout 60 "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	lines=$(wc -l <"$tmp/err")
	if [ "$rc" -ne "$want" ] || [ "$lines" -ne 1 ] || ! grep -qiE -- "$pat" "$tmp/err"; then
		fail "$what: exit $rc (want $want), $lines stderr lines (want 1 matching '$pat'):"
		sed 's/^/    /' "$tmp/err" | head -20
	else
		echo "ok: $what: exit $rc: $(cat "$tmp/err")"
	fi
}

# ok WHAT CMD...: exit status 0, nothing on stderr.
ok() {
	what=$1
	shift
	n=$((n + 1))
	if timeout 60 "$@" >"$tmp/out" 2>"$tmp/err" && [ ! -s "$tmp/err" ]; then
		echo "ok: $what"
	else
		fail "$what: exit $?:"
		sed 's/^/    /' "$tmp/err" | head -20
	fi
}

# ---- good files, every variant and dtype ----
for v in softmax mla deltanet lightning; do
	dtypes="f64 f32"
	# an f32 plan's softmax or mla cache stored in bf16
	case $v in softmax|mla) dtypes="$dtypes bf16" ;; esac
	for t in $dtypes; do
		raw="$tmp/$v-$t.raw" h5="$tmp/$v-$t.h5"
		"$make" "$v" "$t" "$raw" || { echo "ERROR: ckmake $v $t"; exit 99; }
		ok "$v $t: verify raw" "$tool" checkpoint verify "$raw"
		ok "$v $t: raw -> h5" "$tool" checkpoint convert "$raw" "$h5"
		ok "$v $t: verify h5" "$tool" checkpoint verify "$h5"
		grep -q "checksum good" "$tmp/out" || fail "$v $t: verify says $(cat "$tmp/out")"
		ok "$v $t: info h5" "$tool" checkpoint info "$h5"
		grep -q "^variant  *$v\$" "$tmp/out" && grep -q "^dtype  *$t\$" "$tmp/out" &&
			grep -q "^lengths  *5 3\$" "$tmp/out" && grep -q "^kind  *hdf5" "$tmp/out" ||
			{ fail "$v $t: info h5 prints:"; cat "$tmp/out"; }
		ok "$v $t: h5 -> raw" "$tool" checkpoint convert "$h5" "$tmp/back.raw"
		cmp -s "$raw" "$tmp/back.raw" || fail "$v $t: raw -> h5 -> raw changed the bytes"
		ok "$v $t: h5 -> h5" "$tool" checkpoint convert --to h5 "$h5" "$tmp/again.h5"
		cmp -s "$h5" "$tmp/again.h5" || fail "$v $t: writing the same cache twice differs"
	done
done
ok "info raw" "$tool" checkpoint info "$tmp/mla-f32.raw"
grep -q "^kind  *raw" "$tmp/out" && grep -q "^dc  *6\$" "$tmp/out" ||
	{ fail "info raw prints:"; cat "$tmp/out"; }

# ---- usage ----
expect 2 "no verb" "usage" -- "$tool" checkpoint
expect 2 "unknown verb" "usage" -- "$tool" checkpoint frobnicate "$tmp/x"
expect 2 "bad --to" "--to" -- "$tool" checkpoint convert --to zip "$tmp/softmax-f64.raw" "$tmp/x"

# ---- files that are no checkpoint ----
sm="$tmp/softmax-f64.raw" smh="$tmp/softmax-f64.h5"
expect 2 "missing file" "no such file" -- "$tool" checkpoint verify "$tmp/nope"
expect 2 "directory" "not a regular file" -- "$tool" checkpoint info "$tmp"
printf 'this is not a checkpoint\n' >"$tmp/text"
expect 2 "text file" "not an HDF5 file" -- "$tool" checkpoint verify "$tmp/text"
: >"$tmp/empty"
expect 2 "empty file" "not an HDF5 file" -- "$tool" checkpoint info "$tmp/empty"
expect 2 "a golden file" "schema" -- "$tool" checkpoint verify "$top_srcdir/golden/softmax-varlen.h5"

# ---- damaged raw bytes ----
size=$(wc -c <"$sm")
for keep in 8 100 $((size / 2)) $((size - 1)); do
	head -c "$keep" "$sm" >"$tmp/trunc.raw"
	expect 2 "raw truncated to $keep of $size bytes" "truncated|too few" -- \
		"$tool" checkpoint verify "$tmp/trunc.raw"
done
head -c 100 "$sm" >"$tmp/trunc.raw"
expect 2 "info of a raw header cut short" "too few" -- "$tool" checkpoint info "$tmp/trunc.raw"
# flip one byte at offset $2 of a copy of $1 into $3
flip() {
	cp "$1" "$3" && chmod u+w "$3" &&
		printf '\377' | dd of="$3" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
for at in 300 $((size - 3)); do
	flip "$sm" "$at" "$tmp/flip.raw"
	expect 2 "raw with byte $at flipped" "checksum" -- "$tool" checkpoint verify "$tmp/flip.raw"
	expect 2 "convert of raw with byte $at flipped" "checksum" -- \
		"$tool" checkpoint convert "$tmp/flip.raw" "$tmp/x.h5"
	[ -e "$tmp/x.h5" ] && fail "a refused convert wrote its output"
done
flip "$sm" 12 "$tmp/flip.raw"   # the variant
expect 2 "raw with an unknown variant" "variant" -- "$tool" checkpoint info "$tmp/flip.raw"
flip "$sm" 36 "$tmp/flip.raw"   # nseq, high byte
expect 2 "raw with a forged nseq" "nseq" -- "$tool" checkpoint verify "$tmp/flip.raw"
flip "$tmp/deltanet-f64.raw" 72 "$tmp/flip.raw"   # dk, low byte: 255
expect 2 "raw deltanet whose states outgrow the file" "fit" -- \
	"$tool" checkpoint verify "$tmp/flip.raw"
flip "$tmp/deltanet-f64.raw" 55 "$tmp/flip.raw"   # H, high byte: negative
expect 2 "raw with a negative H" "plan" -- "$tool" checkpoint verify "$tmp/flip.raw"
# every byte of the header and the lengths, flipped in turn: the values
# used before the checksum is checked (sizes, nseq, capacity) never crash
# or allocate wildly; verify refuses each file, info shows or refuses it
dn="$tmp/deltanet-f32.raw"
at=0
while [ $at -lt 136 ]; do
	flip "$dn" $at "$tmp/flip.raw"
	expect 2 "raw deltanet with header byte $at flipped" "." -- \
		"$tool" checkpoint verify "$tmp/flip.raw"
	n=$((n + 1))
	timeout 60 "$tool" checkpoint info "$tmp/flip.raw" >/dev/null 2>"$tmp/err"
	rc=$?
	if [ $rc -ne 0 ] && { [ $rc -ne 2 ] || [ "$(wc -l <"$tmp/err")" -ne 1 ]; }; then
		fail "info of raw deltanet with header byte $at flipped: exit $rc"
		cat "$tmp/err"
	fi
	at=$((at + 1))
done
cat "$sm" "$sm" >"$tmp/twice.raw"
expect 2 "raw with bytes appended" "extended" -- "$tool" checkpoint verify "$tmp/twice.raw"

# ---- damaged HDF5 checkpoints ----
off=$(grep -obUa LCACACHE "$smh" | head -n 1 | cut -d: -f1)
[ -n "$off" ] || { echo "ERROR: /cache not found in $smh"; exit 99; }
flip "$smh" $((off + 300)) "$tmp/flip.h5"
expect 2 "h5 with a byte of /cache flipped" "checksum" -- "$tool" checkpoint verify "$tmp/flip.h5"
hsize=$(wc -c <"$smh")
for keep in 40 $((hsize / 2)) $((hsize - 1)); do
	head -c "$keep" "$smh" >"$tmp/trunc.h5"
	expect 2 "h5 truncated to $keep of $hsize bytes" "truncated|damaged|not an HDF5" -- \
		"$tool" checkpoint verify "$tmp/trunc.h5"
done
damaged() {
	cp "$smh" "$tmp/b.h5" && chmod u+w "$tmp/b.h5" && "$mutate" "$tmp/b.h5" "$@" ||
		{ echo "ERROR: h5mutate $*"; exit 99; }
}
damaged rootstr schema lcattn-checkpoint/9
expect 2 "h5 of another schema" "schema" -- "$tool" checkpoint verify "$tmp/b.h5"
damaged rm /cache
expect 2 "h5 without /cache" "/cache" -- "$tool" checkpoint verify "$tmp/b.h5"
damaged shape /cache
expect 2 "h5 with /cache of another shape" "/cache" -- "$tool" checkpoint info "$tmp/b.h5"
damaged i64 /lengths 4,3
expect 2 "h5 whose /lengths disagree with its bytes" "lengths" -- \
	"$tool" checkpoint verify "$tmp/b.h5"
damaged rootstr variant mla
expect 2 "h5 whose variant disagrees with its bytes" "variant" -- \
	"$tool" checkpoint verify "$tmp/b.h5"
damaged rmattr / nseq
expect 2 "h5 without nseq" "nseq" -- "$tool" checkpoint verify "$tmp/b.h5"

# ---- files on which HDF5 itself crashes in-process: one line, exit 2 ----
for f in "$top_srcdir"/fuzz/hdf5-crashes/*.h5; do
	[ -f "$f" ] || continue
	expect 2 "HDF5 crasher ${f##*/}" "." -- "$tool" checkpoint verify "$f"
done

[ $status -eq 0 ] && echo "ok: all $n checkpoint-tool cases"
exit $status
