#!/bin/sh
# generate.sh - regenerate the golden suite with the lcattn built in this tree.
#
#   golden/generate.sh [DIR]
#
# writes every case below as DIR/NAME.h5 (DIR defaults to this script's
# directory) and then DIR/SHA256SUMS. The tool is $LCATTN if set, else
# ./tools/lcattn, else tools/lcattn at the top of the tree. Each file
# records the exact `lcattn gen` command, so the command is run inside DIR
# with a bare file name: the bytes do not depend on where DIR is, and two
# runs on one machine give identical files (check: cd DIR && sha256sum -c
# SHA256SUMS).
#
# The cases aim at the bugs users hit: T not a multiple of the chunk or
# block, T = 1, T just past a 256-token lightning block and a 64-token
# DeltaNet chunk, dk != dv, grouped heads, windows, partial and interleaved
# RoPE, three packed sequences, initial states, strong/weak/zero gates,
# beta in (1,2), logits near +-80, fully masked rows.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here}
tool=${LCATTN:-}
if [ -z "$tool" ]; then
	if [ -x ./tools/lcattn ]; then tool=./tools/lcattn; else tool=$here/../tools/lcattn; fi
fi
case $tool in /*) ;; *) tool=$(pwd)/$tool ;; esac
[ -x "$tool" ] || { echo "generate.sh: no lcattn at $tool (build first or set LCATTN)" >&2; exit 2; }
mkdir -p "$dir"
cd "$dir"

seed=0
files=
# g NAME VARIANT [OPTIONS]: one case, the next seed.
g() {
	name=$1 variant=$2
	shift 2
	seed=$((seed + 1))
	"$tool" gen --variant "$variant" --case "$name" "$@" --seed "$seed" "$name.h5"
	files="$files $name.h5"
}

# softmax (defaults: H 4, dk = dv = 16, causal, no RoPE)
g softmax-gqa-t33             softmax --T 33 --Hkv 2
g softmax-t1                  softmax --T 1 --H 2
g softmax-decode-mqa          softmax --Tq 1 --Tk 40 --Hkv 1
g softmax-prefill-rope-half   softmax --Tq 7 --Tk 29 --rope-dim full --rope-style half
g softmax-dkdv-window         softmax --T 50 --H 6 --Hkv 3 --dk 24 --dv 8 --window 7
g softmax-rope-partial-inter  softmax --T 40 --rope-dim 8 --rope-style interleaved --rope-theta 500
g softmax-varlen              softmax --seqlens 5,17,11 --Hkv 2 --rope-dim 8 --window 6
g softmax-logits80            softmax --T 24 --H 2 --causal 0 --logit-scale 25
g softmax-masked-rows         softmax --Tq 6 --Tk 4 --H 2
g softmax-cross-noncausal     softmax --Tq 5 --Tk 21 --causal 0 --rope-dim full

# mla (defaults: H 2, dn 16, dr 8, dc 32, dv 16, scale 1/sqrt(dn+dr), full interleaved RoPE)
g mla-t33                     mla --T 33
g mla-t1                      mla --T 1
g mla-decode                  mla --Tq 1 --Tk 37 --H 4
g mla-window-dv               mla --T 45 --H 3 --dv 24 --dc 48 --window 9
g mla-varlen                  mla --seqlens 9,1,20
g mla-rope-partial-half       mla --T 30 --rope-dim 4 --rope-style half --rope-theta 50000
g mla-logits80                mla --T 20 --logit-scale 27
g mla-masked-rows             mla --Tq 5 --Tk 3

# deltanet (defaults: H 2, dk = dv = 16, chunk 64, strong gate, beta in (0,1), L2-normalised q, k)
g deltanet-t65                deltanet --T 65 --dk 8 --dv 8
g deltanet-t1-state0          deltanet --T 1 --state0 1
g deltanet-gqa-dkdv-weak      deltanet --T 70 --H 4 --Hk 2 --dk 8 --dv 12 --chunk 16 --gate weak
g deltanet-gzero-beta12       deltanet --T 40 --dk 8 --dv 8 --gate zero --beta-range 1,2
g deltanet-varlen-state0      deltanet --seqlens 20,1,44 --dk 8 --dv 8 --chunk 16 --state0 1
g deltanet-t130-state0        deltanet --T 130 --dk 8 --dv 8 --state0 1
g deltanet-nol2norm-weak      deltanet --T 50 --dk 8 --dv 8 --qk-l2norm 0 --gate weak --beta-range 0.5,1
g deltanet-t128-chunk32       deltanet --T 128 --dk 8 --dv 8 --chunk 32 --gate -1,0

# lightning (defaults: H 4, dk = dv = 16, block 256, MiniMax slopes of layer 0 of 8, scale 1)
g lightning-t257              lightning --T 257 --H 2 --dk 8 --dv 8
g lightning-t1-state0         lightning --T 1 --state0 1
g lightning-dkdv-block32      lightning --T 100 --dk 8 --dv 12 --block 32
g lightning-varlen-state0     lightning --seqlens 30,7,60 --dk 8 --dv 8 --block 16 --state0 1
g lightning-h6-layer3         lightning --T 40 --H 6 --layer 3,8
g lightning-last-layer        lightning --T 300 --H 2 --dk 8 --dv 8 --block 64 --layer 7,8
g lightning-t64-scale         lightning --T 64 --block 64 --scale 0.125 --state0 1

# Gradient cases (--grads 1: root attribute grads, /inputs/do and dstate,
# /outputs/d<input> from the reference backward). Self-attention with a
# single token would make dq and dk zero in exact arithmetic but not after
# rounding, which no relative rule can judge: T = 1 appears as decode
# (Tq = 1 against many keys) for softmax and mla instead.
g softmax-grad-gqa-t33        softmax --T 33 --Hkv 2 --rope-dim 8 --grads 1
g softmax-grad-decode         softmax --Tq 1 --Tk 9 --Hkv 1 --rope-dim full --grads 1
g softmax-grad-varlen-window  softmax --seqlens 6,0,13 --window 5 --rope-dim full --rope-style interleaved --grads 1
g softmax-grad-cross-dkdv     softmax --Tq 5 --Tk 21 --causal 0 --dk 24 --dv 8 --grads 1
g mla-grad-t33                mla --T 33 --grads 1
g mla-grad-decode             mla --Tq 1 --Tk 20 --H 4 --grads 1
g mla-grad-varlen-window      mla --seqlens 7,0,12 --window 6 --grads 1
g mla-grad-dv-rope-partial    mla --T 17 --H 3 --dv 24 --dc 48 --rope-dim 4 --rope-style half --grads 1
g deltanet-grad-t65-state0    deltanet --T 65 --dk 8 --dv 8 --state0 1 --dstate 1 --grads 1
g deltanet-grad-t1            deltanet --T 1 --state0 1 --dstate 1 --grads 1
g deltanet-grad-varlen-weak   deltanet --seqlens 9,0,14 --dk 8 --dv 8 --chunk 8 --gate weak --state0 1 --grads 1
g deltanet-grad-gva-nol2norm  deltanet --T 37 --H 4 --Hk 2 --dk 8 --dv 12 --qk-l2norm 0 --gate weak --beta-range 0.02,0.98 --chunk 16 --dstate 1 --grads 1
g lightning-grad-t257-state0  lightning --T 257 --H 2 --dk 8 --dv 8 --state0 1 --dstate 1 --grads 1
g lightning-grad-t1           lightning --T 1 --state0 1 --dstate 1 --grads 1
g lightning-grad-varlen       lightning --seqlens 10,0,21 --dk 8 --dv 8 --block 8 --layer 7,8 --grads 1
g lightning-grad-dkdv-scale   lightning --T 70 --dk 8 --dv 12 --block 32 --scale 0.5 --dstate 1 --grads 1

# shellcheck disable=SC2086 # $files is a list of plain names
sha256sum $files > SHA256SUMS
echo "generate.sh: wrote $(echo $files | wc -w | tr -d ' ') cases and SHA256SUMS in $dir"
