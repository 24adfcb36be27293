#!/bin/sh
# readme-example.sh README PREFIX - compile the README's C example against
# the library installed under PREFIX, through pkg-config, twice, and run
# each: linked to the shared library with the rpath the README's note
# gives (no LD_LIBRARY_PATH), and linked statically with
# `pkg-config --static`.
set -eu
readme=$1; prefix=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# The example is the ```c block of the README.
awk '/^```c$/ {on=1; next} /^```$/ {on=0} on' "$readme" >"$tmp/example.c"
[ -s "$tmp/example.c" ] || { echo "no \`\`\`c block in $readme"; exit 1; }
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
libdir=$(pkg-config --variable=libdir lcattn)
# shellcheck disable=SC2046
${CC:-cc} -o "$tmp/example" "$tmp/example.c" $(pkg-config --cflags --libs lcattn) \
	-Wl,-rpath,"$libdir"
env -u LD_LIBRARY_PATH "$tmp/example"
echo "ok: README example built with pkg-config and an rpath, and ran"
# glibc warns that a static program's dlopen (libgomp's) needs the same
# glibc at run time: expected, and said once here instead of on stderr.
# shellcheck disable=SC2046
${CC:-cc} -static -o "$tmp/example-static" "$tmp/example.c" \
	$(pkg-config --static --cflags --libs lcattn) 2>"$tmp/ld.log" ||
	{ cat "$tmp/ld.log"; exit 1; }
if ldd "$tmp/example-static" >/dev/null 2>&1; then
	echo "example-static is not static"; exit 1
fi
"$tmp/example-static"
echo "ok: README example linked statically with pkg-config --static, and ran"
