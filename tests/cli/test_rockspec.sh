#!/bin/bash
# The rockspec: `luarocks make` builds couch.so for a stock Lua 5.4 against the system's
# libcurl, yajl and libcrypto (the project's CMake build in its rock mode, cmake/rock.cmake)
# into a local tree; lua5.4 with that tree's paths (`luarocks path`) requires couch and its
# embedded Lua parts; `luarocks remove` takes it away. The rock is built from a copy of
# only what it needs (CMakeLists.txt, cmake/, include/, src/, lua/, the rockspec), so the
# checkout is left alone and the rock is known not to need the rest.
. "$(dirname "$0")/check.sh"
. "$(dirname "$0")/pkg_lib.sh"
: "${COUCHLUA_SOURCE_DIR:?}"
need luarocks
need cmake
need lua5.4
need cc build-essential
version=$(project_version)
rockspec="couch-$version-1.rockspec"
checks=$((checks + 1))
if [ ! -f "$COUCHLUA_SOURCE_DIR/$rockspec" ]; then
  fail "no $rockspec for the project's version $version"
  finish
fi

src="$tmp/src"
mkdir -p "$src"
cp -R "$COUCHLUA_SOURCE_DIR/CMakeLists.txt" "$COUCHLUA_SOURCE_DIR/cmake" \
  "$COUCHLUA_SOURCE_DIR/include" "$COUCHLUA_SOURCE_DIR/src" "$COUCHLUA_SOURCE_DIR/lua" \
  "$COUCHLUA_SOURCE_DIR/$rockspec" "$src/"
cd "$src" || exit 1
rocks() { luarocks --lua-version 5.4 --tree "$tmp/tree" "$@"; }

run rocks lint "$rockspec" </dev/null
expect_rc 0 "luarocks lint $rockspec"
# Two compile jobs: the test holds two of ctest's slots (tests/CMakeLists.txt, PROCESSORS).
run env CMAKE_BUILD_PARALLEL_LEVEL=2 luarocks --lua-version 5.4 make "$rockspec" \
  --tree "$tmp/tree" </dev/null
expect_rc 0 "luarocks make $rockspec --tree"
[ "$rc" = 0 ] || finish
checks=$((checks + 1))
[ -f "$tmp/tree/lib/lua/5.4/couch.so" ] || fail "no couch.so in the tree's lib/lua/5.4"
run rocks list --porcelain </dev/null
expect_in out "couch	$version-1	installed" "luarocks list shows couch $version-1"

# lua5.4 with the tree's paths, as `eval "$(luarocks path)"` gives them, from elsewhere.
paths=$(rocks path)
cd "$tmp" || exit 1
run env -u LUA_INIT -u LUA_PATH_5_4 -u LUA_CPATH_5_4 bash -c "$paths"'
  lua5.4 -e "local c = require \"couch\"
             print(c.version, package.searchpath(\"couch\", package.cpath))
             print(require(\"couch.pretty\").format({1}), c.json.encode({a = {}}))"' </dev/null
expect_rc 0 "lua5.4 -e 'require \"couch\"' with the tree's paths"
expect_out "$version	$tmp/tree/lib/lua/5.4/couch.so
{ 1 }	{\"a\":{}}" "lua5.4 loads the rock's couch.so, with its embedded Lua parts"

run rocks remove couch </dev/null
expect_rc 0 "luarocks remove couch"
checks=$((checks + 1))
[ ! -e "$tmp/tree/lib/lua/5.4/couch.so" ] || fail "couch.so is still in the tree after luarocks remove"

finish
