#!/bin/sh
# cuda-check.sh - the GPU check of the cuda backend, in one run (< 8 min):
#   1. configure --enable-cuda in a fresh build directory and build
#   2. tests/check_cuda: every mechanism, f32 and bf16, against the
#      reference by the tolerance rule (decode, varlen, state hand-off)
#   3. every golden case through `lcattn run --backend cuda` and
#      `lcattn check`, f32 and bf16 (when golden files and the tool exist)
#   4. bench/cuda_bench: each mechanism at T = 4K, 16K, 64K against the
#      measured bf16 GEMM rate and copy bandwidth (roofline_frac), and
#      PyTorch's scaled_dot_product_attention where torch is installed
#   5. a short table, last
# Usage: tests/cuda-check.sh [BUILD_DIR]
#   CUDA_CHECK_PREBUILT=DIR  use an existing --enable-cuda build in DIR
#                            (DIR/.libs/liblcattn.so, DIR/tests/check_cuda)
#                            instead of configuring and building
#   CUDA_CHECK_BUDGET=S      skip a timing expected to take over S seconds
#                            (default 40)
# Exit status: 0 all ran and passed, 1 a check failed, 77 no GPU.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 4)
t_start=$(date +%s)
fail=0
summary=""

note() { summary="$summary$1
"; }
elapsed() { echo $(( $(date +%s) - t_start )); }
step() { echo; echo "== [$(elapsed) s] $*"; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
	echo "cuda-check: no GPU (nvidia-smi finds none): nothing to check"
	exit 77
fi
nvidia-smi -L
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}

# ---- 1. build ----
if [ -n "${CUDA_CHECK_PREBUILT:-}" ]; then
	build=$CUDA_CHECK_PREBUILT
	step "using the build in $build"
else
	build=${1:-$top/_build_cuda}
	step "configure --enable-cuda and build in $build"
	if [ ! -x "$top/configure" ]; then
		(cd "$top" && timeout 120 autoreconf -fi >/dev/null 2>&1) ||
			{ echo "cuda-check: autoreconf failed"; exit 1; }
	fi
	rm -rf "$build" && mkdir -p "$build" || exit 1
	(cd "$build" && timeout 120 "$top/configure" --quiet --enable-cuda) ||
		{ echo "cuda-check: configure --enable-cuda failed (see $build/config.log)"; exit 1; }
	(cd "$build" && timeout 400 make -j"$jobs" >make.out 2>&1 &&
		timeout 120 make -j"$jobs" tests/check_cuda >>make.out 2>&1) ||
		{ tail -n 40 "$build/make.out"; echo "cuda-check: build failed"; exit 1; }
fi
libdir=$build/.libs
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
work=$build/cuda-check
mkdir -p "$work"

# ---- 2. the Check suite ----
step "tests/check_cuda (seed ${LCA_TEST_SEED:-from the clock})"
timeout 300 "$build/tests/check_cuda" >"$work/check_cuda.out" 2>&1
st=$?
cat "$work/check_cuda.out"
tests_line=$(grep -E '^[0-9]+%: Checks' "$work/check_cuda.out" | tail -n 1)
case $st in
0) note "check_cuda      PASS  $tests_line" ;;
77) note "check_cuda      SKIP  (no usable device)"; echo "cuda-check: the library sees no GPU"; exit 77 ;;
124) note "check_cuda      FAIL  timed out"; fail=1 ;;
*) note "check_cuda      FAIL  $tests_line"; fail=1 ;;
esac
worst=$(awk '$0 ~ / ratio / { r = $NF; if (r > m) { m = r; w = $0 } } END { if (m != "") print m }' \
	"$work/check_cuda.out")
[ -n "$worst" ] && note "                worst error ratio to the f32/bf16 baseline: $worst (limit 2)"

# ---- 3. golden cases ----
step "golden cases through the cuda backend"
tool=$build/tools/lcattn
[ -x "$tool" ] || tool=$build/tools/.libs/lcattn
goldens=$(ls "$top"/golden/*.h5 2>/dev/null)
if [ -z "$goldens" ]; then
	note "golden          SKIP  no golden/*.h5 files"
elif [ ! -x "$tool" ] || ! "$tool" run --help >/dev/null 2>&1 || ! "$tool" check --help >/dev/null 2>&1; then
	note "golden          SKIP  lcattn run/check not available in this build"
else
	gp=0; gf=0
	for g in $goldens; do
		for dt in f32 bf16; do
			out="$work/$(basename "$g" .h5).$dt.h5"
			if ! timeout 60 "$tool" run --backend cuda --dtype $dt "$g" "$out" >"$work/run.log" 2>&1; then
				gf=$((gf + 1))
				echo "FAIL run $(basename "$g") $dt:"; tail -n 5 "$work/run.log"
				continue
			fi
			if timeout 60 "$tool" check --dtype $dt "$g" "$out" >"$work/chk.log" 2>&1; then
				gp=$((gp + 1))
			else
				gf=$((gf + 1))
				echo "FAIL check $(basename "$g") $dt:"; tail -n 5 "$work/chk.log"
			fi
		done
	done
	echo "golden: $gp passed, $gf failed (f32 and bf16 runs)"
	if [ $gf -eq 0 ]; then note "golden          PASS  $gp runs (f32 and bf16)"
	else note "golden          FAIL  $gf of $((gp + gf)) runs"; fail=1; fi
fi

# ---- 4. timings ----
step "bench/cuda_bench (T = 4K, 8K, 16K, 64K)"
bench=$work/cuda_bench
if timeout 180 "$nvcc" -O2 -arch=sm_90 -I"$top/include" "$top/bench/cuda_bench.cu" \
	-o "$bench" "$libdir/liblcattn.so" -lcublas -Xlinker -rpath -Xlinker "$libdir" \
	>"$work/bench-build.log" 2>&1; then
	timeout 240 "$bench" --tsv "$work/bench.tsv" --budget "${CUDA_CHECK_BUDGET:-40}" \
		4096 8192 16384 65536
	[ $? -eq 0 ] || { note "bench           FAIL  (see above)"; fail=1; }
else
	cat "$work/bench-build.log"; note "bench           FAIL  did not build"; fail=1
fi

have_torch=0
# our LD_LIBRARY_PATH is for the library alone; python keeps its own
if timeout 60 env -u LD_LIBRARY_PATH python3 -c 'import torch; assert torch.cuda.is_available()' >/dev/null 2>&1; then
	have_torch=1
	step "PyTorch scaled_dot_product_attention (bf16, causal, H=32 Hkv=8 d=128)"
	timeout 120 env -u LD_LIBRARY_PATH PYTHONUNBUFFERED=1 python3 - "$work/sdpa.tsv" <<'PY'
import sys, time, torch
import torch.nn.functional as F
out = open(sys.argv[1], "w")
print("torch", torch.__version__)
for T in (4096, 8192, 16384, 65536):
    q = torch.randn(1, 32, T, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 8, T, 128, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, 8, T, 128, device="cuda", dtype=torch.bfloat16)
    try:
        f = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        f()
    except TypeError:
        k2, v2 = k.repeat_interleave(4, 1), v.repeat_interleave(4, 1)
        f = lambda: F.scaled_dot_product_attention(q, k2, v2, is_causal=True)
        f()
    torch.cuda.synchronize()
    best = 1e30
    for _ in range(5):
        t0 = time.perf_counter(); f(); torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    print(f"sdpa T={T}: {best * 1e3:.3f} ms")
    out.write(f"{T}\t{best:.6e}\n")
PY
fi

# ---- 5. the table ----
step "summary ($(elapsed) s)"
printf '%s' "$summary"
if [ -s "$work/bench.tsv" ]; then
	echo
	printf '%-10s %7s %10s %9s %9s %10s\n' mechanism T ms TFLOP/s roofline "vs SDPA"
	awk -F'\t' -v sdpa="$work/sdpa.tsv" '
		BEGIN { while ((getline line < sdpa) > 0) { split(line, a, "\t"); s[a[1]] = a[2] } }
		{
			if ($3 == "nan") { printf "%-10s %7d %10s\n", $1, $2, "skipped"; next }
			rel = "-"
			if ($1 == "softmax" && ($2 in s)) rel = sprintf("%.2f", s[$2] / $3)
			if ($1 != "softmax" && ($2 in sm)) rel = sprintf("%.2fx sm", sm[$2] / $3)
			if ($1 == "softmax") sm[$2] = $3
			printf "%-10s %7d %10.3f %9.1f %9.3f %10s\n", $1, $2, $3 * 1e3, $4, $5, rel
		}' "$work/bench.tsv"
	echo "(vs SDPA: SDPA time / our time for softmax, 1.00 = as fast; for the"
	echo " linear mechanisms: softmax time / their time at the same T)"
	[ $have_torch -eq 1 ] || echo "(PyTorch not installed: no SDPA comparison)"
fi
echo "total $(elapsed) s"
exit $fail
