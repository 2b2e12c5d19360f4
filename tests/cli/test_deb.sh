#!/bin/bash
# The Debian packages (packaging/build-deb: cpack -G DEB from a build for /usr): their
# versions, file lists and dependencies (dpkg-deb), an install into a throwaway root with
# dpkg --root, the installed couchlua and couch.so (found by a stock lua5.4 in its own
# package.cpath) running from there, examples/embed.c built against libcouchlua-dev,
# removal, and lintian without errors or unhardened binaries. The build is kept in
# $COUCHLUA_BUILD_DIR/deb, so a second run only rebuilds what changed.
. "$(dirname "$0")/check.sh"
. "$(dirname "$0")/pkg_lib.sh"
: "${COUCHLUA_BUILD_DIR:?}" "${COUCHLUA_SOURCE_DIR:?}"
need cmake
need cpack cmake
need dpkg-deb dpkg
need dpkg-shlibdeps dpkg-dev
need lua5.4
need cc build-essential
need pkg-config
version=$(project_version)
major=${version%%.*}
lib=libcouchlua$major     # the library's package, named after its soname
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)

# Two compile jobs: the test holds two of ctest's slots (tests/CMakeLists.txt, PROCESSORS).
run env COUCHLUA_BUILD_JOBS=2 "$COUCHLUA_SOURCE_DIR/packaging/build-deb" "$COUCHLUA_BUILD_DIR/deb" </dev/null
expect_rc 0 "packaging/build-deb"
[ "$rc" = 0 ] || finish
arch=$(dpkg --print-architecture)
debs=()
for p in couchlua "$lib" libcouchlua-dev; do
  deb="$COUCHLUA_BUILD_DIR/deb/${p}_${version}_${arch}.deb"
  checks=$((checks + 1))
  if [ -f "$deb" ]; then debs+=("$deb"); else fail "no $deb"; fi
done
[ "${#debs[@]}" = 3 ] || finish
cli_deb=${debs[0]} lib_deb=${debs[1]} dev_deb=${debs[2]}

# Control fields: name, the one version, dependencies.
fields() { dpkg-deb -f "$1" "$2"; }
for deb in "${debs[@]}"; do
  out=$(fields "$deb" Version) err= rc=0
  expect_out "$version" "$(basename "$deb"): Version is the project's"
done
out=$(fields "$cli_deb" Depends) err= rc=0
for dep in liblua5.4-0 libcurl4 libyajl2 libedit2 libssl3; do
  expect_in out "$dep" "couchlua depends on $dep"
done
out=$(fields "$lib_deb" Depends)
for dep in liblua5.4-0 libcurl4 libyajl2 libssl3; do
  expect_in out "$dep" "$lib depends on $dep"
done
out=$(fields "$dev_deb" Depends)
expect_in out "$lib (= $version)" "libcouchlua-dev depends on this $lib"
for dep in liblua5.4-dev libyajl-dev libssl-dev; do
  expect_in out "$dep" "libcouchlua-dev depends on $dep (couchlua.pc's Requires)"
done
# Every dependency names a real package: the ones this machine has installed.
for deb in "$cli_deb" "$lib_deb"; do
  for dep in $(fields "$deb" Depends | tr ',' '\n' | sed 's/(.*//; s/ //g'); do
    checks=$((checks + 1))
    dpkg-query -W "$dep" >/dev/null 2>&1 || fail "$(basename "$deb"): dependency $dep is not an installed package"
  done
done
out=$(dpkg-deb -I "$lib_deb" shlibs 2>&1)
expect_in out "libcouchlua $major $lib" "$lib has a shlibs file"

# File lists.
list() { dpkg-deb -c "$1" | awk '{print $6}' | sed 's|^\./|/|'; }
out=$(list "$cli_deb")
for f in /usr/bin/couchlua "/usr/lib/$multiarch/lua/5.4/couch.so" /usr/share/man/man1/couchlua.1.gz \
         /usr/share/doc/couchlua/copyright /usr/share/doc/couchlua/changelog.gz; do
  expect_in out "$f" "couchlua holds $f"
done
expect_not_in out "libcouchlua.so" "couchlua holds no shared library ($lib does)"
out=$(list "$lib_deb")
expect_in out "/usr/lib/$multiarch/libcouchlua.so.$major" "$lib holds the shared library"
expect_not_in out "/usr/include" "$lib holds no header"
out=$(list "$dev_deb")
for f in /usr/include/couchlua.h /usr/include/couchlua_version.h "/usr/lib/$multiarch/libcouchlua.a" \
         "/usr/lib/$multiarch/libcouchlua.so" "/usr/lib/$multiarch/pkgconfig/couchlua.pc"; do
  expect_in out "$f" "libcouchlua-dev holds $f"
done

# Install into a throwaway root (the host provides the dependencies, hence --force-depends).
root="$tmp/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
dpkg_root() {
  dpkg --root="$root" --log=/dev/null --force-not-root --force-depends \
    --force-script-chrootless "$@"
}
run dpkg_root -i "${debs[@]}" </dev/null
expect_rc 0 "dpkg --root $root -i the three packages"
run dpkg_root -l couchlua "$lib" libcouchlua-dev </dev/null
checks=$((checks + 1))
[ "$(printf '%s\n' "$out" | grep -c '^ii ')" = 3 ] || fail "the three packages are not all installed (ii)"

cd "$tmp" || exit 1
run env -u LUA_PATH -u LUA_CPATH -u LUA_INIT "$root/usr/bin/couchlua" -e 'print(require"couch".version)' </dev/null
expect_rc 0 "the packaged couchlua -e runs"
expect_out "$version" "the packaged couchlua has couch $version"
run "$root/usr/bin/couchlua" -v </dev/null
expect_in out "couchlua $version" "couchlua -v shows $version"
# A stock lua5.4's own package.cpath, each directory moved under the root: couch.so is in
# one of the directories Debian's lua5.4 searches, so no cpath change is needed once installed.
cpath=$(env -u LUA_CPATH -u LUA_CPATH_5_4 lua5.4 -e 'io.write(package.cpath)')
rooted=$(printf '%s' "$cpath" | tr ';' '\n' | sed -n "s|^/|$root/|p" | paste -sd ';')
run env -u LUA_PATH -u LUA_INIT LUA_CPATH="$rooted" lua5.4 -e \
  'local c = require "couch"; print(c.version, package.searchpath("couch", package.cpath))' </dev/null
expect_rc 0 "lua5.4 -e 'require \"couch\"' with Debian's cpath"
expect_out "$version	$root/usr/lib/$multiarch/lua/5.4/couch.so" "lua5.4 loads the packaged couch.so"
if command -v man >/dev/null; then
  run env MANWIDTH=80 man -l "$root/usr/share/man/man1/couchlua.1.gz" </dev/null
  expect_in out "couchlua $version" "the packaged man page renders with its version"
fi

# libcouchlua-dev: the .pc (no rpath: /usr/lib/<multiarch> is the linker's own) builds
# examples/embed.c, which runs against $lib's library.
pcdir="$root/usr/lib/$multiarch/pkgconfig"
run env PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs couchlua </dev/null
expect_rc 0 "pkg-config couchlua from the packaged .pc"
expect_not_in out "rpath" "the packaged .pc sets no rpath"
flags=$out
run cc -o "$tmp/embed" "$COUCHLUA_SOURCE_DIR/examples/embed.c" $flags </dev/null
expect_rc 0 "examples/embed.c builds against libcouchlua-dev"
if [ "$rc" = 0 ]; then
  run env LD_LIBRARY_PATH="$root/usr/lib/$multiarch" "$tmp/embed" </dev/null
  expect_rc 0 "the embed example runs with the packaged library"
  expect_in out "embed: ok" "embed example says ok"
fi

# Removal leaves no file behind.
run dpkg_root -r couchlua libcouchlua-dev "$lib" </dev/null
expect_rc 0 "dpkg --root -r the three packages"
left=$(find "$root" -path "$root/var" -prune -o -type f -print -o -type l -print)
checks=$((checks + 1))
[ -z "$left" ] || fail "files left after removal: $left"

# lintian: no errors, and the binaries hardened (dpkg-buildflags); warnings and the other
# informational tags are printed, not failed on.
if command -v lintian >/dev/null; then
  run lintian --allow-root -I "${debs[@]}" </dev/null
  [ -n "$out" ] && printf 'lintian:\n%s\n' "$out"
  checks=$((checks + 1))
  if printf '%s\n' "$out" | grep -q '^E: '; then fail "lintian reports errors"; fi
  expect_not_in out "hardening-no-" "lintian finds every binary hardened"
else
  echo "lintian is not installed: not run (scripts/setup installs it)"
fi

finish
