#!/bin/bash
# One version number: CMakeLists.txt's project(VERSION) is what couchlua -v, couch.version,
# couchlua_version(), the header macros (couchlua_version.h, generated), couchlua.pc, the
# rockspec (its name, version and tag), the man page and CHANGELOG.md's latest release
# show. (The Debian packages' version is checked by test_deb.)
. "$(dirname "$0")/check.sh"
. "$(dirname "$0")/pkg_lib.sh"
: "${COUCHLUA_BUILD_DIR:?}" "${COUCHLUA_SOURCE_DIR:?}"
version=$(project_version)
checks=$((checks + 1))
if ! printf '%s' "$version" | grep -qE '^[0-9]+\.[0-9]+\.[0-9]+$'; then
  fail "project(couchlua VERSION x.y.z) not found in CMakeLists.txt (got '$version')"
  finish
fi
IFS=. read -r major minor patch <<<"$version"

run "$COUCHLUA" -v </dev/null
expect_in out "couchlua $version -- Lua 5.4" "couchlua -v"
run "$COUCHLUA" -e 'print(require"couch".version)' </dev/null
expect_out "$version" "couch.version"

# The generated header: its macros, and couchlua_version() of the library built with them.
hdr="$COUCHLUA_BUILD_DIR/gen/include/couchlua_version.h"
checks=$((checks + 1))
[ -f "$hdr" ] || fail "no generated $hdr"
checks=$((checks + 1))
grep -q "COUCHLUA_VERSION_MAJOR/_MINOR" "$COUCHLUA_SOURCE_DIR/include/couchlua.h" &&
  ! grep -qE '^#define COUCHLUA_VERSION(_MAJOR|_MINOR|_PATCH)? ' "$COUCHLUA_SOURCE_DIR/include/couchlua.h" ||
  fail "include/couchlua.h defines version macros by hand (they come from couchlua_version.h)"
if command -v cc >/dev/null && command -v pkg-config >/dev/null; then
  cat >"$tmp/v.c" <<'C'
#include <couchlua.h>
#include <stdio.h>
int main(void) {
  printf("%s %d %d %d %d %s\n", COUCHLUA_VERSION, COUCHLUA_VERSION_MAJOR, COUCHLUA_VERSION_MINOR,
         COUCHLUA_VERSION_PATCH, COUCHLUA_VERSION_NUM, couchlua_version());
  return 0;
}
C
  run cc -o "$tmp/v" "$tmp/v.c" -I"$COUCHLUA_SOURCE_DIR/include" -I"$(dirname "$hdr")" \
    "$COUCHLUA_BUILD_DIR/libcouchlua.a" $(pkg-config --cflags --libs lua5.4 libcurl yajl libcrypto) -lm \
    $( [ -n "${COUCHLUA_SANITIZE:-}" ] && echo -fsanitize=address,undefined ) </dev/null
  expect_rc 0 "a program using the header's macros builds"
  if [ "$rc" = 0 ]; then
    run "$tmp/v" </dev/null
    expect_out "$version $major $minor $patch $((major * 10000 + minor * 100 + patch)) $version" \
      "COUCHLUA_VERSION, _MAJOR/_MINOR/_PATCH, _NUM and couchlua_version()"
  fi
fi

out=$(sed -n 's/^Version: //p' "$COUCHLUA_BUILD_DIR/couchlua.pc")
expect_out "$version" "couchlua.pc's Version"

rockspec="$COUCHLUA_SOURCE_DIR/couch-$version-1.rockspec"
checks=$((checks + 1))
if [ -f "$rockspec" ]; then
  out=$(sed -n 's/^version = "\(.*\)"/\1/p' "$rockspec")
  expect_out "$version-1" "the rockspec's version"
  out=$(sed -n 's/^ *tag = "\(.*\)",/\1/p' "$rockspec")
  expect_out "v$version" "the rockspec's source tag"
else
  fail "no couch-$version-1.rockspec"
fi
out=$(cd "$COUCHLUA_SOURCE_DIR" && ls couch-*.rockspec)
expect_out "couch-$version-1.rockspec" "one rockspec, the current version's (rename it with the version)"

out=$(sed -n 's/^\.TH .*"couchlua \([^"]*\)".*/\1/p' "$COUCHLUA_BUILD_DIR/man/couchlua.1")
expect_out "$version" "the man page's version"

out=$(grep -m1 -oE '^## \[[0-9][^]]*\]' "$COUCHLUA_SOURCE_DIR/CHANGELOG.md")
expect_out "## [$version]" "CHANGELOG.md's latest release"

finish
