#!/bin/sh
# golden-regen.sh - golden/generate.sh with the tool of this tree
# reproduces the committed golden files byte for byte (same machine, same
# libm): a change to the generator, the reference or the writer that moves
# any number or byte shows up here, and `make golden` then refreshes the
# suite (commit the new files with the change that explains them).
set -u
tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
LCATTN="$top_builddir/tools/lcattn" sh "$top_srcdir/golden/generate.sh" "$tmp" >/dev/null ||
	{ echo "FAIL: golden/generate.sh failed"; exit 1; }
if (cd "$tmp" && sha256sum -c --quiet "$top_srcdir/golden/SHA256SUMS") &&
   cmp -s "$tmp/SHA256SUMS" "$top_srcdir/golden/SHA256SUMS"; then
	echo "ok: $(wc -l <"$tmp/SHA256SUMS") golden files regenerate byte-identically"
	exit 0
fi
echo "FAIL: regenerated golden files differ from golden/SHA256SUMS (run make golden if the change is intended)"
diff "$tmp/SHA256SUMS" "$top_srcdir/golden/SHA256SUMS" | head -20
exit 1
