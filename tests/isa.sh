#!/bin/sh
# isa.sh - the cpu backend's vector kernels are built for several x86-64
# levels and run at the widest the machine has, so every other test sees
# only that one. Here each narrower level is forced with LCA_CPU_ISA
# (lca_cpu_isa(3)) and the Check programs that hold the cpu softmax and
# mla engines (forward, backward, decode; check_decode_kv: the decode
# kernels' tiles and tails over every cache layout), the bf16 calls (check_bf16:
# below avx512bf16 the bf16 softmax widens its inputs) and the deltanet
# and lightning steps (lib/cpu/state_step.c: caches, segments, short
# forward calls, the 1M-token drift bound) to the reference are rerun
# under it. (check_bf16dot forces its two bf16 softmax paths itself, and
# check_gemm the float32 GEMM of deltanet and lightning at every level.)
# Levels the
# CPU lacks are reported as skipped; a cap never raises the level, and an
# unknown value is ignored.
# Environment: top_builddir.
set -u
unset LCA_CPU_ISA
tool="$top_builddir/tools/lcattn"
progs="check_softmax check_mla check_grad_cpu_attn check_cache check_decode_kv check_segments
	check_deltanet check_lightning check_drift check_bf16"
tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
status=0

fail() { echo "FAIL: $*"; status=1; }

# The level the library runs at with LCA_CPU_ISA set to $1.
level() {
	LCA_CPU_ISA=$1 "$tool" --version | sed -n 's/^cpu isa: //p'
}

best=$("$tool" --version | sed -n 's/^cpu isa: //p')
case $best in
sse | avx2 | avx512 | avx512bf16) ;;
generic) echo "skip: not an x86-64 build (cpu isa: generic)"; exit 77 ;;
*) echo "FAIL: lcattn --version names no known cpu isa: '$best'"; exit 1 ;;
esac
echo "widest level of this machine: $best (the rest of the suite runs at it)"
for bogus in avx1024 AVX2 " " ""; do
	got=$(level "$bogus")
	[ "$got" = "$best" ] || fail "LCA_CPU_ISA='$bogus' gives $got, want $best (ignored)"
done

ran=0 above=0
for l in sse avx2 avx512 avx512bf16; do
	got=$(level "$l")
	if [ $above -eq 1 ]; then
		echo "$l: skipped, this CPU lacks it (LCA_CPU_ISA=$l runs $got)"
		[ "$got" = "$best" ] || fail "LCA_CPU_ISA=$l gives $got, want $best"
		continue
	fi
	if [ "$l" = "$best" ]; then
		echo "$l: the default level, checked by the rest of the suite"
		above=1
		continue
	fi
	[ "$got" = "$l" ] || { fail "LCA_CPU_ISA=$l gives $got on a machine that runs $best"; continue; }
	for p in $progs; do
		# check_decode_kv links the static archive: built only with one
		if [ "$p" = check_decode_kv ] && [ ! -x "$top_builddir/tests/$p" ]; then
			echo "$l: $p not built (no static archive), skipped"
			continue
		fi
		if LCA_CPU_ISA=$l "$top_builddir/tests/$p" >"$tmp/out" 2>&1; then
			echo "$l: $p passed ($(grep -o 'Checks: [0-9]*' "$tmp/out" | tail -1))"
		else
			fail "$l: $p:"
			grep -v ':P:' "$tmp/out" | tail -20 | sed 's/^/    /'
		fi
	done
	ran=$((ran + 1))
done
echo "isa: $ran narrower level(s) rerun against the reference"
exit $status
