#!/bin/sh
# cost-ranks.sh - `lcattn cost --ranks P`: the modelled bytes of a
# context-parallel prefill follow the formulas of lca_mpi_softmax_forward(3)
# (worked by hand below), contiguous and --zigzag, one rank sends nothing,
# a bad P is refused.
# Environment: top_builddir (the tool is $top_builddir/tools/lcattn).
tool="${top_builddir:-.}/tools/lcattn"
status=0
check() { # preset column expected
	got=$(printf '%s\n' "$out" | awk -F, -v p="$1" -v c="$2" '$1 == p { print $c }')
	if [ "$got" != "$3" ]; then
		echo "FAIL: $1, column $2: $got, expected $3"
		status=1
	fi
}
out=$("$tool" cost --ranks 8 --n 1048576 --csv) || { echo "FAIL: lcattn cost --ranks 8"; exit 1; }
# deepseek-v3: 61 mla layers; the busiest rank is rank 6, whose run ends at
# 7/8 n = 917504 tokens; (dc + dr) 2 = 1152 bytes a token:
# 61 x 917504 x 1152 = 64474841088. All ranks: 61 x 1152 x n/8 x (1 + ... + 7)
# = 61 x 1152 x 131072 x 28 = 257899364352.
check deepseek-v3 4 6.44748e+10
check deepseek-v3 5 2.57899e+11
# qwen3-next: 12 softmax layers (Hkv 2, d 256: 2048 bytes a token) and 36
# deltanet layers (H 32, dk = dv = 128: 7 x 32 x 128 x 256 x 2 = 14680064
# bytes each rank); rank 6: 12 x 917504 x 2048 + 36 x 14680064
# = 22548578304 + 528482304 = 23077060608.
check qwen3-next 4 2.30771e+10
# --zigzag: 16 chunks of 65536 tokens; ranks 0..6 send 7 A chunks and 6 B
# chunks, rank 7 (whose successor is rank 0) 7 and 7: the busiest sends 14
# chunks = 917504 tokens, all ranks 7 x 13 + 14 = 105 chunks = 6881280.
# deepseek-v3: 61 x 1152 x 917504 = 64474841088; 61 x 1152 x 6881280 =
# 483561308160. qwen3-next: rank 7 sends 12 x 917504 x 2048 plus two
# summaries a rank: 36 x 2 x 14680064, 22548578304 + 1056964608 =
# 23605542912.
out=$("$tool" cost --ranks 8 --n 1048576 --csv --zigzag) || { echo "FAIL: lcattn cost --ranks 8 --zigzag"; exit 1; }
check deepseek-v3 4 6.44748e+10
check deepseek-v3 5 4.83561e+11
check qwen3-next 4 2.36055e+10
if "$tool" cost --ranks 8 --n 15 --zigzag >/dev/null 2>&1; then
	echo "FAIL: --zigzag with n < 2P accepted"
	status=1
fi
out=$("$tool" cost --ranks 1 --n 4096 --csv) || { echo "FAIL: lcattn cost --ranks 1"; exit 1; }
check minimax-m1 4 0
check minimax-m1 5 0
if "$tool" cost --ranks 0 >/dev/null 2>&1; then
	echo "FAIL: --ranks 0 accepted"
	status=1
fi
[ $status -eq 0 ] && echo "ok: lcattn cost --ranks follows the stated formulas"
exit $status
