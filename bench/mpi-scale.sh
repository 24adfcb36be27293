#!/bin/sh
# mpi-scale.sh [BUILDDIR] - liblcattn_mpi's forward calls at P = 1 and
# P = 2 ranks (mpirun), one OpenMP/BLAS thread a rank, f32, cpu backend,
# one causal prefill per mechanism at a size that takes 0.5 to 1 s on one
# core (bench/mpi_scale.c states the sizes, the timing and the formulas),
# contiguous runs, and zigzag chunks for softmax and mla ("-zz").
# Each mechanism runs at -np 1 and then at once at -np 2, so the ratio is
# measured in one run under the same load; the machine's cores and its
# load average are printed with it, since other programs share the cores.
#
# Columns: seconds per call (the slowest rank's, median of 3), the
# sequence's GFLOP/s (lca_plan_cost(3)'s prefill count / seconds), the
# measured speedup t1 / t2, the speedup the busiest rank's share allows
# by the same count ("ideal"), the bytes rank 0 sent at P = 2, and the
# least CPU share a rank got during its calls at P = 1 and P = 2 (CPU
# time over wall time: below 1 when other programs took the cores).
set -eu
b=${1:-_build}
prog="$b/bench/mpi_scale"
[ -x "$prog" ] || { echo "mpi-scale.sh: no $prog (configure with MPI, then make)" >&2; exit 2; }
mpirun=${MPIRUN:-mpirun}
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM OMP_NUM_THREADS OPENBLAS_NUM_THREADS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "machine: $(grep -c ^processor /proc/cpuinfo) cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# contiguous runs for every mechanism; zigzag for the causal ones, whose
# contiguous split leaves the last rank most of the work
for m in softmax mla deltanet lightning --zigzag:softmax --zigzag:mla; do
	for np in 1 2; do
		case $m in
		--zigzag:*) set -- --zigzag "${m#--zigzag:}" ;;
		*) set -- "$m" ;;
		esac
		"$mpirun" --oversubscribe -np "$np" "$prog" "$@" 0 >>"$tmp/np$np" 2>"$tmp/err" ||
			{ cat "$tmp/err" >&2; exit 1; }
	done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-12s %6s %9s %9s %7s %7s %7s %6s %10s %6s %6s %s\n' mechanism T "s P=1" "s P=2" \
	"GF/s 1" "GF/s 2" speedup ideal "bytes r0" "cpu 1" "cpu 2" isa
# the two files list the mechanisms in the same order
paste -d' ' "$tmp/np1" "$tmp/np2" | awk '{
	printf "%-12s %6d %9.4f %9.4f %7.2f %7.2f %7.2f %6.2f %10d %6.2f %6.2f %s\n",
		$1, $2, $4, $13, $5, $14, $4 / $13, $15, $16, $9, $18, $8 }'
