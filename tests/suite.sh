#!/bin/sh
# suite.sh - `lcattn check --suite`: a directory of candidates named like the
# golden cases is checked in one command, one line per case and a summary;
# the exit status is 0 only when every present candidate passes, 1 when one
# fails numerically, 2 when one is unusable or none is present.
set -u
tool="$top_builddir/tools/lcattn"
mutate="$top_builddir/tests/h5mutate"
golden="$top_srcdir/golden"
tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
status=0
mkdir "$tmp/c" "$tmp/empty"

fail() { echo "FAIL: $*"; status=1; }

# Every case as a float32 candidate of the cpu backend, or of the float32
# reference where the cpu backend has no kernel (gradient cases: no cpu
# backward yet).
for f in "$golden"/*.h5; do
	c="$tmp/c/$(basename "$f")"
	if ! "$tool" run --backend cpu --dtype f32 "$f" "$c" 2>"$tmp/err"; then
		grep -q unavailable "$tmp/err" && "$tool" run --backend ref --dtype f32 "$f" "$c" ||
			{ cat "$tmp/err"; echo "ERROR: lcattn run $f"; exit 99; }
	fi
done
ncase=$(ls "$golden"/*.h5 | wc -l)

"$tool" check --suite "$golden" "$tmp/c" >"$tmp/out" 2>&1
rc=$?
cat "$tmp/out"
[ $rc -eq 0 ] || fail "a full set of cpu f32 candidates: exit $rc, want 0"
[ "$(grep -c '^PASS ' "$tmp/out")" -eq "$ncase" ] || fail "want $ncase PASS lines"
grep -q "^suite: $ncase passed, 0 failed, 0 unusable, 0 golden cases without" "$tmp/out" ||
	fail "summary of the full set"

# One candidate wrong, one missing, one not HDF5, one stray file.
chmod u+w "$tmp/c"/*.h5
"$mutate" "$tmp/c/lightning-t257.h5" nan /outputs/o || exit 99
rm "$tmp/c/mla-t1.h5"
printf 'not HDF5\n' >"$tmp/c/softmax-t1.h5"
cp "$golden/deltanet-t65.h5" "$tmp/c/mine.h5"
"$tool" check --suite "$golden" "$tmp/c" >"$tmp/out" 2>"$tmp/err"
rc=$?
cat "$tmp/out" "$tmp/err"
[ $rc -eq 2 ] || fail "an unusable candidate: exit $rc, want 2"
grep -q '^FAIL  lightning-t257.h5 .*worst: o normwise nan' "$tmp/out" || fail "the NaN candidate's line"
grep -q '^----  mla-t1.h5 .*no candidate' "$tmp/out" || fail "the missing candidate's line"
grep -q '^ERROR softmax-t1.h5' "$tmp/out" || fail "the unusable candidate's line"
grep -q 'softmax-t1.h5: not an HDF5 file' "$tmp/err" || fail "the unusable candidate's message"
grep -q '^----  mine.h5 .*ignored' "$tmp/out" || fail "the stray file's line"
grep -q "^suite: $((ncase - 3)) passed, 1 failed, 1 unusable, 1 golden cases without" "$tmp/out" ||
	fail "summary of the damaged set"

# Only a numerical failure: exit 1.
rm "$tmp/c/softmax-t1.h5"
"$tool" check --suite "$golden" "$tmp/c" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "a numerical failure alone: exit $rc, want 1"

# No candidate at all, or no such directory: exit 2.
"$tool" check --suite "$golden" "$tmp/empty" >"$tmp/out" 2>&1
[ $? -eq 2 ] && grep -q "no file in .* is named like a golden case" "$tmp/out" ||
	fail "an empty candidate directory"
"$tool" check --suite "$golden" "$tmp/nope" >"$tmp/out" 2>&1
[ $? -eq 2 ] || fail "a missing candidate directory"
# The worked example of lcattn-golden(5): an independent NumPy kernel
# writes candidates for the single-sequence lightning cases; all pass.
py=""
for p in python3 /usr/bin/python3; do
	"$p" -c 'import h5py, numpy' 2>/dev/null && { py=$p; break; }
done
if [ -n "$py" ]; then
	awk '/^#!\/usr\/bin\/env python3$/ {on = 1} /^\.Ed/ {on = 0} on' \
		"$top_srcdir/man/man5/lcattn-golden.5" |
		sed 's/\\e/\\/g; s/\\-/-/g; s/\\&//g' >"$tmp/candidates.py"
	mkdir "$tmp/py"
	"$py" "$tmp/candidates.py" "$golden" "$tmp/py" || fail "the man page's candidates.py"
	"$tool" check --suite "$golden" "$tmp/py" >"$tmp/out" 2>&1
	rc=$?
	grep -v 'no candidate' "$tmp/out"
	[ $rc -eq 0 ] && grep -q '^suite: 6 passed, 0 failed, 0 unusable' "$tmp/out" ||
		fail "the man page's worked example: exit $rc"
else
	echo "skip: no python3 with h5py and numpy: the worked example not run"
fi
exit $status
