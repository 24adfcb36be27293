#!/bin/sh
# malformed.sh - damaged and hostile files never crash or hang `lcattn run`
# or `lcattn check`: each one gives exit status 2 and exactly one line on
# stderr that names the problem (HDF5 itself prints nothing). A NaN in a
# candidate is a numerical failure (exit 1), never a pass.
#
# Needs the helper tests/h5mutate (built by `make check`) to edit files;
# $H5MUTATE overrides its path.
set -u
tool="$top_builddir/tools/lcattn"
mutate=${H5MUTATE:-"$top_builddir/tests/h5mutate"}
golden="$top_srcdir/golden"
[ -x "$mutate" ] || { echo "ERROR: helper $mutate not built"; exit 99; }
tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
status=0 n=0

sm="$golden/softmax-varlen.h5"       # softmax with cu_seqlens
dn="$golden/deltanet-varlen-state0.h5" # deltanet with cu_seqlens and state0
lt="$golden/lightning-t1-state0.h5"
"$tool" run "$sm" "$tmp/sm.c.h5" && "$tool" run "$dn" "$tmp/dn.c.h5" ||
	{ echo "ERROR: cannot make candidates"; exit 99; }

# expect STATUS WHAT PATTERN -- CMD...: run CMD under a timeout; its exit
# status must be STATUS, stderr one line matching PATTERN (grep -E, case-blind).
expect() {
	want=$1 what=$2 pat=$3
	shift 4
	n=$((n + 1))
	timeout 30 "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	lines=$(wc -l <"$tmp/err")
	if [ "$rc" -ne "$want" ] || [ "$lines" -ne 1 ] || ! grep -qiE -- "$pat" "$tmp/err"; then
		echo "FAIL: $what: exit $rc (want $want), $lines stderr lines (want 1 matching '$pat'):"
		sed 's/^/    /' "$tmp/err" | head -20
		status=1
	else
		echo "ok: $what: exit $rc: $(cat "$tmp/err")"
	fi
}

# bad FILE-MAKING-COMMANDS: a copy of $1 damaged by h5mutate ARGS.
damaged() {
	src=$1 out=$2
	shift 2
	cp "$src" "$out" && chmod u+w "$out" && "$mutate" "$out" "$@" ||
		{ echo "ERROR: h5mutate $*"; exit 99; }
}

# ---- files that are not golden files at all ----
expect 2 "missing file" "no such file" -- "$tool" run "$tmp/nope.h5" "$tmp/x.h5"
expect 2 "missing candidate" "no such file" -- "$tool" check "$sm" "$tmp/nope.h5"
printf 'this is not HDF5\n' >"$tmp/text.h5"
expect 2 "non-HDF5 file" "not an HDF5 file" -- "$tool" run "$tmp/text.h5" "$tmp/x.h5"
expect 2 "non-HDF5 candidate" "not an HDF5 file" -- "$tool" check "$sm" "$tmp/text.h5"
: >"$tmp/empty.h5"
expect 2 "empty file" "not an HDF5 file" -- "$tool" run "$tmp/empty.h5" "$tmp/x.h5"
expect 2 "directory" "not a regular file" -- "$tool" run "$tmp" "$tmp/x.h5"
for f in "$sm" "$tmp/sm.c.h5"; do
	size=$(wc -c <"$f")
	for keep in 40 700 $((size / 2)) $((size - 1)); do
		head -c "$keep" "$f" >"$tmp/trunc.h5"
		if [ "$f" = "$sm" ]; then
			expect 2 "golden truncated to $keep of $size bytes" "truncated|damaged|not an HDF5" -- \
				"$tool" run "$tmp/trunc.h5" "$tmp/x.h5"
		else
			expect 2 "candidate truncated to $keep of $size bytes" "truncated|damaged|not an HDF5" -- \
				"$tool" check "$sm" "$tmp/trunc.h5"
		fi
	done
done

# ---- root attributes ----
damaged "$sm" "$tmp/b.h5" rootstr schema lcattn-golden/9
expect 2 "wrong schema string" "schema" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"
damaged "$sm" "$tmp/b.h5" rmattr / schema
expect 2 "no schema attribute" "schema" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"
damaged "$sm" "$tmp/b.h5" rootstr variant flash
expect 2 "unknown variant" "variant" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"
expect 2 "candidate of another variant" "variant" -- "$tool" check "$sm" "$tmp/dn.c.h5"

# ---- missing pieces ----
damaged "$sm" "$tmp/b.h5" rm /inputs/k
expect 2 "missing dataset /inputs/k" "missing dataset /inputs/k" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"
damaged "$sm" "$tmp/b.h5" rm /config
expect 2 "missing /config" "/config" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"
damaged "$dn" "$tmp/b.h5" rmattr /config dk
expect 2 "missing /config dk" "dk" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"
damaged "$tmp/sm.c.h5" "$tmp/b.h5" rm /outputs/lse
expect 2 "candidate without /outputs/lse" "missing dataset /outputs/lse" -- "$tool" check "$sm" "$tmp/b.h5"
damaged "$sm" "$tmp/b.h5" rm /outputs/o
expect 2 "golden without /outputs/o" "missing dataset /outputs/o" -- "$tool" check "$tmp/b.h5" "$tmp/sm.c.h5"

# ---- wrong shapes and types ----
damaged "$sm" "$tmp/b.h5" shape /inputs/q
expect 2 "wrong shape /inputs/q" "/inputs/q has shape" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"
damaged "$dn" "$tmp/b.h5" shape /inputs/state0
expect 2 "wrong shape /inputs/state0" "state0 has shape" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"
damaged "$tmp/dn.c.h5" "$tmp/b.h5" shape /outputs/state
expect 2 "candidate state of wrong shape" "state has shape" -- "$tool" check "$dn" "$tmp/b.h5"
expect 2 "candidate of another case" "has shape" -- "$tool" check "$golden/softmax-t1.h5" "$tmp/sm.c.h5"
damaged "$sm" "$tmp/b.h5" type /inputs/v int32
expect 2 "int32 /inputs/v" "float64" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"
damaged "$sm" "$tmp/b.h5" type /inputs/q float32
expect 2 "float32 /inputs/q" "float64" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"
damaged "$tmp/sm.c.h5" "$tmp/b.h5" type /outputs/o float32
expect 2 "float32 candidate /outputs/o" "float64" -- "$tool" check "$sm" "$tmp/b.h5"
damaged "$sm" "$tmp/b.h5" cfgstr H four
expect 2 "string /config H" "H is a string" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"
damaged "$sm" "$tmp/b.h5" cfgstr rope_style sideways
expect 2 "unknown rope_style" "rope_style" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"

# ---- absurd sizes: refused before anything is allocated ----
for spec in "Tq 1099511627776" "Tk -5" "H 0" "H -3" "H 4611686018427387904" \
	"dk 65537" "dv 4611686018427387904" "Hkv 3" "nseq 1073741824" "window -1"; do
	set -- $spec
	damaged "$sm" "$tmp/b.h5" cfgint "$1" "$2"
	expect 2 "/config $1 = $2" "$1|range|multiple|larger than|nseq" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"
done
# sizes that are each fine but whose products are not
damaged "$lt" "$tmp/b.h5" cfgint dk 65536
"$mutate" "$tmp/b.h5" cfgint dv 65536 || exit 99
"$mutate" "$tmp/b.h5" cfgint H 65536 || exit 99
expect 2 "state of 2^48 elements" "larger than" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"
damaged "$dn" "$tmp/b.h5" i64 /inputs/cu_seqlens 0,30,20,65
expect 2 "decreasing cu_seqlens" "cu_seqlens" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"
damaged "$dn" "$tmp/b.h5" i64 /inputs/cu_seqlens 0,65
expect 2 "cu_seqlens against nseq" "cu_seqlens" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"

# ---- values the library refuses ----
damaged "$dn" "$tmp/b.h5" nan /inputs/v
expect 2 "NaN input" "not finite" -- "$tool" run "$tmp/b.h5" "$tmp/x.h5"

# ---- a NaN in a candidate is a numerical failure: exit 1, never a pass ----
damaged "$tmp/dn.c.h5" "$tmp/b.h5" nan /outputs/o
n=$((n + 1))
timeout 30 "$tool" check "$dn" "$tmp/b.h5" >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 1 ] && grep -q '^o .*nan.*FAIL' "$tmp/out" && grep -q '^state .*PASS' "$tmp/out"; then
	echo "ok: NaN candidate: exit 1"
else
	echo "FAIL: NaN candidate: exit $rc (want 1, o FAIL):"; cat "$tmp/out" "$tmp/err"; status=1
fi

# The two cases below run under ulimit -v, which ASan cannot start under
# (it reserves terabytes of shadow memory): the release build runs them.
if [ -n "${LCA_SANITIZED:-}" ]; then
	echo "skip: ulimit -v cases under $LCA_SANITIZED (run by the release build)"
else
# ---- out of memory: one message, naming the tensor or step that failed ----
# A case whose state (8 MiB in f32) dwarfs its inputs, run under address
# space limits from ample to starved: every refusal must say once what
# failed and name it. One BLAS and OpenMP thread: a pthreads OpenBLAS
# worker spins forever on a failed allocation.
"$tool" gen --variant deltanet --seed 1 --T 2 --H 8 --dk 512 --dv 512 \
	"$tmp/big.h5" >/dev/null || exit 99
n=$((n + 1)) nomem=0 bad=
for kb in $(seq 200000 -2000 40000); do
	(ulimit -v "$kb" && OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
		timeout 30 "$tool" run --dtype f32 "$tmp/big.h5" "$tmp/x.h5") \
		>/dev/null 2>"$tmp/err"
	grep -q 'LCA_ERR_NOMEM' "$tmp/err" || continue
	nomem=$((nomem + 1))
	if [ "$(grep -o 'LCA_ERR_NOMEM' "$tmp/err" | wc -l)" -ne 1 ] ||
	   ! grep -Eq '(input|output buffer|output copy) [a-z_0-9]+:|forward call:' "$tmp/err"; then
		bad="$bad
ulimit -v $kb: $(cat "$tmp/err")"
	fi
done
if [ $nomem -gt 0 ] && [ -z "$bad" ]; then
	echo "ok: out of memory: $nomem limits, each message names what failed"
else
	echo "FAIL: out of memory: $nomem LCA_ERR_NOMEM runs, unclear messages:$bad"
	status=1
fi

# ---- a huge OMP_NUM_THREADS is capped, never a libgomp exit ----
n=$((n + 1))
(ulimit -v 2000000 && OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=100000 \
	timeout 60 "$tool" run --backend cpu "$sm" "$tmp/x.h5") >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 0 ] && ! grep -q libgomp "$tmp/err"; then
	echo "ok: OMP_NUM_THREADS=100000 under ulimit -v: teams kept to the processors"
else
	echo "FAIL: OMP_NUM_THREADS=100000 under ulimit -v: exit $rc:"; cat "$tmp/err"; status=1
fi
fi

# ---- files on which HDF5 itself crashes in-process (fuzz/fuzz_golden
# found them): the confined reader turns each into one line, exit 2 ----
for f in "$top_srcdir"/fuzz/hdf5-crashes/golden-*.h5; do
	expect 2 "HDF5 crasher ${f##*/}" "." -- "$tool" run "$f" "$tmp/x.h5"
done

[ $status -eq 0 ] && echo "ok: all $n malformed-input cases"
exit $status
