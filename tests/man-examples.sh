#!/bin/sh
# man-examples.sh - every man3 page's EXAMPLES program compiles against the
# built library with the link line the page prints (its "Build it with"
# line: -lm only where it says so) and runs successfully, and every page
# under man/ is
# `mandoc -Tlint -W warning` clean (that part is skipped without mandoc).
#
# The pages of lcattn_mpi.h (lca_mpi_*) link liblcattn_mpi and run under
# `$MPIRUN --oversubscribe -np 2`; without MPI they are skipped (named).
#
# Environment (from AM_TESTS_ENVIRONMENT): top_srcdir, top_builddir
# (absolute), CC, CFLAGS, MPIRUN, MPI_CFLAGS, MPI_LIBS.
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
CC=${CC:-cc}
CFLAGS=${CFLAGS:-}
libtool="$top_builddir/libtool"
lib="$top_builddir/liblcattn.la"
mpilib="$top_builddir/liblcattn_mpi.la"
MPIRUN=${MPIRUN:-}
MPI_CFLAGS=${MPI_CFLAGS:-}
MPI_LIBS=${MPI_LIBS:-}
# Open MPI refuses root without these (CI runs as root).
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM OMP_NUM_THREADS
status=0

tmp=$(mktemp -d 2>/dev/null) || {
	tmp=${TMPDIR:-/tmp}/lcattn-man.$$
	mkdir "$tmp" || exit 99
}
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# Print the literal displays of the EXAMPLES section of mdoc page $1 as C:
# the text between `.Bd -literal` and `.Ed`, with the mdoc escapes used in
# code undone (\& dropped, \- to -, \e to a backslash; \e last so that an
# escaped backslash never starts another escape).
extract() {
	awk '
		/^\.Sh[ \t]/ { sec = $0; sub(/^\.Sh[ \t]+/, "", sec); lit = 0; next }
		sec != "EXAMPLES" { next }
		/^\.Bd[ \t]+-literal/ { lit = 1; next }
		/^\.Ed([ \t]|$)/ { lit = 0; next }
		lit {
			line = $0
			out = ""
			while ((i = index(line, "\\")) > 0) {
				out = out substr(line, 1, i - 1)
				c = substr(line, i + 1, 1)
				if (c == "e")
					out = out "\\"
				else if (c == "-")
					out = out "-"
				else if (c != "&")
					out = out "\\" c
				line = substr(line, i + 2)
			}
			print out line
		}
	' "$1"
}

# The link flags after the pkg-config call of the page's build line
# (`.Dl cc example.c $(pkg-config --cflags --libs lcattn) ...`, or
# lcattn_mpi for the pages of lcattn_mpi.h), or the word "none" when the
# page has no such line.
build_flags() {
	awk '
		/^\.Sh[ \t]/ { sec = $0; sub(/^\.Sh[ \t]+/, "", sec); next }
		sec == "EXAMPLES" && /^\.Dl cc example\.c / {
			line = $0
			gsub(/\\-/, "-", line)
			sub(/^.*--libs lcattn(_mpi)?\)/, "", line)
			print line " ok"
			found = 1
		}
		END { if (!found) print "none" }
	' "$1"
}

# ---- lint every page ----
if command -v mandoc >/dev/null 2>&1; then
	for page in "$top_srcdir"/man/man*/*.[1-9]; do
		[ -f "$page" ] || continue
		out=$(mandoc -Tlint -W warning "$page" 2>&1)
		if [ -n "$out" ]; then
			echo "FAIL: mandoc -Tlint: ${page#"$top_srcdir"/}"
			printf '%s\n' "$out"
			status=1
		fi
	done
else
	echo "skip: mandoc not installed, pages not linted"
fi

# ---- compile and run every man3 example ----
if [ ! -f "$lib" ] || [ ! -x "$libtool" ]; then
	echo "skip: $lib or $libtool not built, examples not compiled"
	[ $status -eq 0 ] && exit 77
	exit $status
fi
# Stack variables start as a non-zero pattern where the compiler can do
# it: an example that leaves a field unset (a layout's cu_seqlens) then
# fails every time, not only where the stack happens to hold garbage.
if echo 'int main(void) { return 0; }' |
    $CC -ftrivial-auto-var-init=pattern -x c -o "$tmp/probe" - 2>/dev/null; then
	CFLAGS="$CFLAGS -ftrivial-auto-var-init=pattern"
fi
n=0
for page in "$top_srcdir"/man/man3/*.3; do
	[ -f "$page" ] || continue
	name=$(basename "$page" .3)
	# lcattn_mpi pages: MPI's flags and library, run under mpirun
	plib=$lib pflags= plibs= run=
	case $name in
	lca_mpi_*)
		if [ -z "$MPIRUN" ] || [ ! -f "$mpilib" ]; then
			echo "skip: $name.3 (built without MPI)"
			continue
		fi
		# lcattn_mpi.pc requires lcattn: both libraries
		plib=$mpilib pflags=$MPI_CFLAGS plibs="$lib $MPI_LIBS"
		run="$MPIRUN --oversubscribe -np 2"
		# Open MPI's own start-up leaks (see tests/mpi.sh)
		[ -n "${LCA_SANITIZED:-}" ] && run="env ASAN_OPTIONS=${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0 $run"
		;;
	esac
	dir="$tmp/$name"
	mkdir "$dir" || exit 99
	extract "$page" >"$dir/ex.c"
	if [ ! -s "$dir/ex.c" ]; then
		echo "FAIL: $name.3: no .Bd -literal block in EXAMPLES"
		status=1
		continue
	fi
	flags=$(build_flags "$page")
	if [ "$flags" = none ]; then
		echo "FAIL: $name.3: EXAMPLES has no build line (.Dl cc example.c ...)"
		status=1
		continue
	fi
	flags=${flags% ok}
	# CC, CFLAGS and the page's flags may hold several words: split them.
	# shellcheck disable=SC2086
	if ! "$libtool" --mode=link --tag=CC $CC $CFLAGS -I"$top_srcdir/include" $pflags \
	    -o "$dir/ex" "$dir/ex.c" "$plib" $plibs $flags >"$dir/build.log" 2>&1; then
		echo "FAIL: $name.3: example does not compile or link with the printed line"
		cat "$dir/build.log"
		status=1
		continue
	fi
	echo "== $name.3"
	# libtool's wrapper script sets the library path, also under mpirun.
	# shellcheck disable=SC2086
	if ! $run "$libtool" --mode=execute "$dir/ex"; then
		echo "FAIL: $name.3: example exited with an error"
		status=1
		continue
	fi
	n=$((n + 1))
done
[ $status -eq 0 ] && echo "ok: $n man3 examples compiled and ran"
exit $status
