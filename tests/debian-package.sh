#!/bin/sh
# debian-package.sh TARBALL README - build lcattn's Debian packages from the
# release tarball (dpkg-buildpackage -b), hold them to lintian (no errors),
# install them, and use them as a user would: the README example built
# against liblcattn-dev through pkg-config, and `lcattn check --suite`
# against the suite that lcattn-golden installs. The packages are purged
# again at the end, pass or fail. Run as root (CI, setup.sh test).
set -eu
tarball=$(realpath "$1") readme=$(realpath "$2")
pkgs="liblcattn0 liblcattn-dev lcattn-tools lcattn-golden"
tmp=$(mktemp -d)
cleanup() {
	DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq $pkgs >/dev/null 2>&1 || :
	rm -rf "$tmp"
}
trap cleanup EXIT
tar -xzf "$tarball" -C "$tmp"
cd "$tmp"/lcattn-*/

# make check ran on this very tree already: nocheck.
if ! DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" dpkg-buildpackage -b -us -uc \
	>"$tmp/build.log" 2>&1; then
	tail -n 60 "$tmp/build.log"
	exit 1
fi
cd "$tmp"
echo "built: $(ls ./*.deb | tr '\n' ' ')"
lintian --fail-on error --suppress-tags-from-file /dev/null ./*.changes >"$tmp/lintian.log" 2>&1 ||
	{ cat "$tmp/lintian.log"; echo "lintian reports errors"; exit 1; }
echo "lintian: $(grep -c '^E:' "$tmp/lintian.log" || :) errors," \
	"$(grep -c '^W:' "$tmp/lintian.log" || :) warnings"
grep '^W:' "$tmp/lintian.log" | sed 's/^/    /' || :
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ./*.deb >/dev/null
echo "installed: $(dpkg-query -W -f='${Package} ${Version}, ' $pkgs)"

# The README example against the installed development package.
awk '/^```c$/ {on=1; next} /^```$/ {on=0} on' "$readme" >example.c
# shellcheck disable=SC2046
env -u PKG_CONFIG_PATH ${CC:-cc} -o example example.c \
	$(env -u PKG_CONFIG_PATH pkg-config --cflags --libs lcattn)
env -u LD_LIBRARY_PATH ./example
[ -f /usr/share/man/man3/lca_softmax_forward.3.gz ] || { echo "man3 pages not installed"; exit 1; }

# The installed suite, checked in one command.
mkdir cand
for f in /usr/share/lcattn/golden/*.h5; do
	c="cand/$(basename "$f")"
	# The float32 reference where the cpu backend has no kernel (gradients).
	if ! /usr/bin/lcattn run --backend cpu --dtype f32 "$f" "$c" 2>err; then
		grep -q unavailable err && /usr/bin/lcattn run --backend ref --dtype f32 "$f" "$c" ||
			{ cat err; exit 1; }
	fi
done
/usr/bin/lcattn check --suite cand | tail -n 3
echo "ok: packages built, lintian clean of errors, installed and used"
