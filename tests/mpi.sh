#!/bin/sh
# mpi.sh - liblcattn_mpi under real MPI: tests/mpi_cp (the cases of
# check_cp_loop: contiguous and zigzag, one sequence and packed batches,
# byte counts, ranks that disagree; plus MPI_COMM_SELF, the caller's
# messages and error handler, the layout helpers) under
# `mpirun --oversubscribe -np P`, P = 2, 3, 4, one thread per rank.
# Skipped (77) when configure found no MPI.
#
# Environment (from AM_TESTS_ENVIRONMENT): top_builddir, MPIRUN.
set -u
top_builddir=${top_builddir:-.}
prog="$top_builddir/tests/mpi_cp"
if [ -z "${MPIRUN:-}" ] || [ ! -x "$prog" ]; then
	echo "skip: built without MPI (Debian packages libopenmpi-dev openmpi-bin)"
	exit 77
fi
# Open MPI refuses root without these (CI containers run as root), and
# needs --oversubscribe for more ranks than cores; one OpenMP thread per
# rank keeps the ranks from fighting over the cores.
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM OMP_NUM_THREADS OPENBLAS_NUM_THREADS
# Under the sanitizers (tests/asan.sh) leaks are not checked here: Open
# MPI keeps about 120 KB of start-up allocations per rank past
# MPI_Finalize, many in components it has already unloaded (so no
# suppression can name them). lcattn's own allocations in this path are
# those of lib/mpi, which tests/check_cp_loop runs with leak checking on;
# lib/mpi/mpi.c allocates nothing.
if [ -n "${LCA_SANITIZED:-}" ]; then
	ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0"
	export ASAN_OPTIONS
fi
# A seed for every rank (mpi_cp broadcasts rank 0's anyway).
LCA_TEST_SEED=${LCA_TEST_SEED:-$(date +%s)}
export LCA_TEST_SEED
status=0
for np in 2 3 4; do
	echo "== mpirun -np $np"
	# libtool's wrapper script finds the uninstalled libraries.
	if ! timeout 300 "$MPIRUN" --oversubscribe -np "$np" "$prog"; then
		echo "FAIL: mpirun -np $np"
		status=1
	fi
done
exit $status
