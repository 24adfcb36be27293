#!/bin/sh
# golden.sh - the golden suite: every committed case, run by every backend
# and dtype this build offers, passes `lcattn check` (DESIGN.md's tolerance
# rule); the double reference, in each of its computations, reproduces every
# golden file to 1e-12. Backends or dtypes the build lacks are reported as
# skipped; the double reference may never be missing.
set -u
tool="$top_builddir/tools/lcattn"
golden="$top_srcdir/golden"
tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
status=0 pass=0 skip=0 fail=0

# The committed files are intact (and SHA256SUMS names the suite).
if ! (cd "$golden" && sha256sum -c --quiet SHA256SUMS); then
	echo "FAIL: golden files differ from golden/SHA256SUMS"
	status=1
fi
cases=$(awk '{print $2}' "$golden/SHA256SUMS")
[ -n "$cases" ] || { echo "FAIL: no cases in golden/SHA256SUMS"; exit 1; }

# The second computation of the reference, by variant (from the case name).
second_form() {
	case $1 in
	mla-*) echo naive ;;
	deltanet-* | lightning-*) echo chunked ;;
	*) echo "" ;;
	esac
}

# one CASE BACKEND DTYPE ALGO: run, then check; records pass/skip/fail.
one() {
	f="$golden/$1" label="$1 $2 $3 $4"
	if ! timeout 300 "$tool" run --backend "$2" --dtype "$3" --algo "$4" "$f" "$tmp/c.h5" 2>"$tmp/err"; then
		if grep -q "unavailable" "$tmp/err" && ! { [ "$2" = ref ] && [ "$3" = f64 ]; }; then
			skip=$((skip + 1))
			grep -q "^$2 $3:" "$tmp/skipped" 2>/dev/null ||
				echo "$2 $3: $(cat "$tmp/err")" >>"$tmp/skipped"
			return
		fi
		echo "FAIL: $label: lcattn run: $(cat "$tmp/err")"
		fail=$((fail + 1))
		return
	fi
	if timeout 300 "$tool" check "$f" "$tmp/c.h5" >"$tmp/out" 2>&1; then
		pass=$((pass + 1))
	else
		echo "FAIL: $label:"
		sed 's/^/    /' "$tmp/out"
		fail=$((fail + 1))
	fi
}

for c in $cases; do
	one "$c" ref f64 auto
	alt=$(second_form "$c")
	[ -n "$alt" ] && one "$c" ref f64 "$alt"
	for combo in "ref f32" "cpu f64" "cpu f32" "cuda f64" "cuda f32"; do
		# shellcheck disable=SC2086 # two words on purpose
		one "$c" $combo auto
	done
done

if [ -s "$tmp/skipped" ]; then
	echo "skipped (not in this build or on this machine):"
	sed 's/^/    /' "$tmp/skipped"
fi
echo "golden: $pass runs passed, $fail failed, $skip skipped, over $(echo $cases | wc -w) cases"
[ $fail -eq 0 ] || status=1
exit $status
