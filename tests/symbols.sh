#!/bin/sh
# symbols.sh - the shared library exports exactly the lca_ calls of the
# public header: nothing internal leaks (symbols are hidden by default) and
# nothing declared is missing.
set -u
lib="$top_builddir/.libs/liblcattn.so"
[ -f "$lib" ] || { echo "skip: no shared library built"; exit 77; }
nm=${NM:-nm}
exported=$($nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//' | sort -u)
declared=$(grep -hoE '\blca_[a-z0-9_]+[[:space:]]*\(' "$top_srcdir/include/lcattn.h" |
	sed 's/[[:space:](]//g' | sort -u)
status=0
leaked=$(printf '%s\n' "$exported" | grep -v '^lca_' | grep -v '^_' || true)
if [ -n "$leaked" ]; then
	echo "FAIL: exported symbols outside the lca_ namespace:"; echo "$leaked"; status=1
fi
for f in $declared; do
	printf '%s\n' "$exported" | grep -qx "$f" || { echo "FAIL: $f declared but not exported"; status=1; }
done
for f in $(printf '%s\n' "$exported" | grep '^lca_'); do
	printf '%s\n' "$declared" | grep -qx "$f" || { echo "FAIL: $f exported but not in lcattn.h"; status=1; }
done
[ $status -eq 0 ] && echo "ok: $(printf '%s\n' "$declared" | wc -l) public calls exported, nothing else"
exit $status
