#!/bin/sh
# readme-example.sh README PREFIX - compile the README's C example against
# the library installed under PREFIX, through pkg-config, and run it.
set -eu
readme=$1; prefix=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# The example is the ```c block of the README.
awk '/^```c$/ {on=1; next} /^```$/ {on=0} on' "$readme" >"$tmp/example.c"
[ -s "$tmp/example.c" ] || { echo "no \`\`\`c block in $readme"; exit 1; }
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
${CC:-cc} -o "$tmp/example" "$tmp/example.c" $(pkg-config --cflags --libs lcattn)
LD_LIBRARY_PATH="$prefix/lib" "$tmp/example"
echo "ok: README example built with pkg-config and ran"
