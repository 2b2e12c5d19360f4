#!/bin/bash
# `cmake --install` into any prefix gives a working package with no help from the
# environment: the couchlua command (runnable from anywhere), the library with its headers
# and pkg-config file (examples/embed.c builds against them, and runs without
# LD_LIBRARY_PATH: the .pc gives it an rpath to the prefix's library directory), couch.so
# for stock lua5.4, and the man page.
. "$(dirname "$0")/check.sh"
. "$(dirname "$0")/pkg_lib.sh"
: "${COUCHLUA_BUILD_DIR:?}" "${COUCHLUA_SOURCE_DIR:?}"
need cmake
need cc build-essential
need pkg-config
version=$(project_version)
prefix="$tmp/prefix"
run cmake --install "$COUCHLUA_BUILD_DIR" --prefix "$prefix" </dev/null
expect_rc 0 "cmake --install"
[ "$rc" = 0 ] || finish

# The installed command, from another directory, with no help from the environment.
mkdir -p "$tmp/elsewhere"
cd "$tmp/elsewhere" || exit 1
checks=$((checks + 1))
[ -x "$prefix/bin/couchlua" ] || fail "no $prefix/bin/couchlua"
run env -u LUA_PATH -u LUA_CPATH -u LUA_INIT "$prefix/bin/couchlua" \
  -e 'print(require"couch".version)' </dev/null
expect_rc 0 "installed couchlua runs"
expect_out "$version" "installed couchlua finds couch"
run env -u LUA_PATH "$prefix/bin/couchlua" -e 'print(require"couch.pretty".format({1}))' </dev/null
expect_out "{ 1 }" "installed couchlua has the embedded Lua parts"

# The man page.
checks=$((checks + 1))
[ -f "$prefix/share/man/man1/couchlua.1.gz" ] || fail "no $prefix/share/man/man1/couchlua.1.gz"
if command -v man >/dev/null; then
  run env MANPATH="$prefix/share/man" MANWIDTH=80 man couchlua </dev/null
  expect_rc 0 "man couchlua finds the installed page through MANPATH"
  expect_in out "couchlua [options] [script [args]]" "the installed page's synopsis"
fi

# The headers, the library and the .pc (lib/ or lib/<multiarch>/).
checks=$((checks + 1))
[ -f "$prefix/include/couchlua.h" ] || fail "couchlua.h not installed"
checks=$((checks + 1))
[ -f "$prefix/include/couchlua_version.h" ] || fail "couchlua_version.h (included by couchlua.h) not installed"
pc=$(find "$prefix" -name couchlua.pc | head -n 1)
checks=$((checks + 1))
if [ -z "$pc" ]; then
  fail "couchlua.pc not installed"
  finish
fi
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")
run env PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs couchlua </dev/null
expect_rc 0 "pkg-config couchlua"
flags=$out
checks=$((checks + 1))
found=
for f in $flags; do
  case "$f" in
  -I*) [ "$(realpath -m "${f#-I}")" = "$(realpath "$prefix/include")" ] && found=1 ;;
  esac
done
[ -n "$found" ] || fail "Cflags do not point at $prefix/include (a .pc with a fixed prefix?)"

run cc -o "$tmp/embed" "$COUCHLUA_SOURCE_DIR/examples/embed.c" $flags </dev/null
expect_rc 0 "examples/embed.c builds against the installed package"
if [ "$rc" = 0 ]; then
  # No LD_LIBRARY_PATH: the rpath from the .pc's Libs finds the library.
  preload=$(asan_preload_for "$libdir/libcouchlua.so")
  run env -u LD_LIBRARY_PATH ${preload:+LD_PRELOAD="$preload"} "$tmp/embed" </dev/null
  expect_rc 0 "the installed embed example runs without LD_LIBRARY_PATH"
  expect_in out "embed: ok" "embed example says ok"
  run env -u LD_LIBRARY_PATH ldd "$tmp/embed" </dev/null
  used=$(printf '%s\n' "$out" | sed -n 's/^[[:space:]]*libcouchlua\.so\.0 => \([^ ]*\) .*/\1/p')
  checks=$((checks + 1))
  [ -n "$used" ] && [ "$(realpath "$used")" = "$(realpath "$libdir/libcouchlua.so.0")" ] ||
    fail "the example does not use the installed $libdir/libcouchlua.so.0"
fi

# couch.so for stock lua5.4.
so=$(find "$prefix" -path '*/lua/5.4/couch.so' | head -n 1)
checks=$((checks + 1))
if [ -z "$so" ]; then
  fail "couch.so not installed under lib*/lua/5.4"
elif command -v lua5.4 >/dev/null; then
  preload=$(asan_preload_for "$so")
  run env LUA_CPATH="$(dirname "$so")/?.so" ${preload:+LD_PRELOAD="$preload"} \
    lua5.4 -e 'print(require"couch".version)' </dev/null
  expect_out "$version" "installed couch.so loads in lua5.4"
fi

# No installed program or library keeps a run path into the build tree.
if command -v readelf >/dev/null; then
  for f in "$prefix/bin/couchlua" "$libdir/libcouchlua.so.0" "$so"; do
    [ -f "$f" ] || continue
    run readelf -d "$f" </dev/null
    expect_not_in out "$COUCHLUA_BUILD_DIR" "$(basename "$f") has no RPATH/RUNPATH into the build tree"
  done
fi

# The prefix can be moved as a whole: the .pc is relative to itself, the command and
# couch.so need nothing from the prefix's path.
moved="$tmp/moved-prefix"
mv "$prefix" "$moved"
run env -u LUA_PATH -u LUA_CPATH "$moved/bin/couchlua" -e 'print(require"couch".version)' </dev/null
expect_out "$version" "the moved prefix's couchlua runs"
run env PKG_CONFIG_PATH="$moved/${pcdir#"$prefix"/}" pkg-config --variable=includedir couchlua </dev/null
checks=$((checks + 1))
[ "$(realpath -m "$out")" = "$(realpath "$moved/include")" ] ||
  fail "the moved couchlua.pc's includedir is not $moved/include"

finish
