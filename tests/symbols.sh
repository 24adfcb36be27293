#!/bin/sh
# symbols.sh - the shared library exports exactly the lca_ calls of the
# public header: nothing internal leaks (symbols are hidden by default) and
# nothing declared is missing.
set -u
# check LIB HEADER: LIB exports exactly the lca_ calls HEADER declares.
check() {
	lib=$1 header=$2
	exported=$($nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//' | sort -u)
	# the names of the LCA_API prototypes (not those a comment mentions)
	declared=$(grep -h '^LCA_API' "$header" | grep -oE '\blca_[a-z0-9_]+[[:space:]]*\(' |
		sed 's/[[:space:](]//g' | sort -u)
	leaked=$(printf '%s\n' "$exported" | grep -v '^lca_' | grep -v '^_' || true)
	if [ -n "$leaked" ]; then
		echo "FAIL: ${lib##*/} exports symbols outside the lca_ namespace:"; echo "$leaked"; status=1
	fi
	for f in $declared; do
		printf '%s\n' "$exported" | grep -qx "$f" || { echo "FAIL: $f declared but not exported"; status=1; }
	done
	for f in $(printf '%s\n' "$exported" | grep '^lca_'); do
		printf '%s\n' "$declared" | grep -qx "$f" || { echo "FAIL: $f exported but not in ${header##*/}"; status=1; }
	done
	echo "${lib##*/}: $(printf '%s\n' "$declared" | wc -l) public calls declared"
}
lib="$top_builddir/.libs/liblcattn.so"
[ -f "$lib" ] || { echo "skip: no shared library built"; exit 77; }
nm=${NM:-nm}
status=0
check "$lib" "$top_srcdir/include/lcattn.h"
# liblcattn_mpi, when built, against its own header.
mpilib="$top_builddir/.libs/liblcattn_mpi.so"
[ -f "$mpilib" ] && check "$mpilib" "$top_srcdir/include/lcattn_mpi.h"
[ $status -eq 0 ] && echo "ok: the public calls exported, nothing else"
exit $status
