#!/bin/bash
# `cmake --install` gives a working package: the couchlua command (runnable from anywhere),
# the library with its header and pkg-config file (examples/embed.c builds against them),
# and couch.so for stock lua5.4.
. "$(dirname "$0")/check.sh"
: "${COUCHLUA_BUILD_DIR:?}" "${COUCHLUA_SOURCE_DIR:?}"
for tool in cmake cc pkg-config; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool is not installed" >&2
    exit 77
  fi
done
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
expect_out "0.1.0" "installed couchlua finds couch"
run env -u LUA_PATH "$prefix/bin/couchlua" -e 'print(require"couch.pretty".format({1}))' </dev/null
expect_out "{ 1 }" "installed couchlua has the embedded Lua parts"

# The header, the library and the .pc (lib/ or lib/<multiarch>/).
checks=$((checks + 1))
[ -f "$prefix/include/couchlua.h" ] || fail "couchlua.h not installed"
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
  preload=$(asan_preload_for "$libdir/libcouchlua.so")
  run env LD_LIBRARY_PATH="$libdir" ${preload:+LD_PRELOAD="$preload"} "$tmp/embed" </dev/null
  expect_rc 0 "the installed embed example runs"
  expect_in out "embed: ok" "embed example says ok"
  run env LD_LIBRARY_PATH="$libdir" ldd "$tmp/embed" </dev/null
  expect_in out "$libdir/libcouchlua.so" "it uses the installed shared library"
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
  expect_out "0.1.0" "installed couch.so loads in lua5.4"
fi

finish
