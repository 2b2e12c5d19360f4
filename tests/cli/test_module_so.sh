#!/bin/bash
# couch.so loads in the stock lua5.4 interpreter, and the embedded Lua submodules
# (couch.pretty, ...) are requirable there with no LUA_PATH.
. "$(dirname "$0")/check.sh"
: "${COUCHLUA_MODULE_DIR:?COUCHLUA_MODULE_DIR must be the directory holding couch.so}"
LUA=$(command -v lua5.4 || true)
if [ -z "$LUA" ]; then
  echo "SKIP: lua5.4 (the stock interpreter) is not installed" >&2
  exit 77
fi
if [ ! -f "$COUCHLUA_MODULE_DIR/couch.so" ]; then
  echo "couch.so missing from $COUCHLUA_MODULE_DIR" >&2
  exit 1
fi
cd "$tmp" || exit 1
export LUA_CPATH="$COUCHLUA_MODULE_DIR/?.so;;"
export LUA_PATH=";;" # nothing from the source tree: the Lua parts must be embedded
# A sanitized build: lua5.4 is not, so the ASan runtime must be loaded first.
preload=$(asan_preload_for "$COUCHLUA_MODULE_DIR/couch.so")
lua() { env ${preload:+LD_PRELOAD="$preload"} "$LUA" "$@"; }

run lua -e '
local c = require "couch"
assert(type(c) == "table", "module table")
assert(c.version, "couch.version")
local json = require "couch.json"
assert(json and json == c.json, "couch.json is the same table")
local pretty = require "couch.pretty"
assert(pretty.format({1, {a = "x"}}) == [[{ 1, { a = "x" } }]], pretty.format({1, {a = "x"}}))
assert(pretty.format(json.null) == "null")
print("ok " .. c.version)
' </dev/null
expect_rc 0 "couch.so works in lua5.4"
expect_in out "ok 0." "version printed"

run lua -e 'print(package.searchpath("couch", package.cpath))' </dev/null
expect_out "$COUCHLUA_MODULE_DIR/couch.so" "the module comes from the build"

# lua-cjson (when installed) shares its null with couch.json.
run lua -e '
local ok, cjson = pcall(require, "cjson")
if not ok then print("no cjson") return end
print(cjson.null == require("couch").json.null)' </dev/null
checks=$((checks + 1))
[ "$out" = "true" ] || [ "$out" = "no cjson" ] || fail "cjson.null == couch.json.null"

# Error objects made by the module print through __tostring in plain lua too.
run lua -e 'local c = require "couch"; print(c.is_error({}), c.is_error(nil))' </dev/null
expect_out "false	false" "couch.is_error"

finish
