#!/bin/bash
# The couchlua command's options behave like lua5.4's; errors print one line + traceback.
. "$(dirname "$0")/check.sh"
unset LUA_INIT LUA_INIT_5_4
cd "$tmp" || exit 1

# ---- running scripts: arg, ..., exit status ----
cat >args.lua <<'EOF'
local t = {}
for i = -3, #arg do t[#t + 1] = i .. "=" .. tostring(arg[i]) end
print(table.concat(t, " "))
print("...", select("#", ...), ...)
EOF
run "$COUCHLUA" args.lua a "b c" </dev/null
expect_rc 0 "script runs"
expect_out "-3=nil -2=nil -1=$COUCHLUA 0=args.lua 1=a 2=b c
...	2	a	b c" "arg table and ... for a script"

run "$COUCHLUA" -E -W args.lua x </dev/null
expect_out "-3=$COUCHLUA -2=-E -1=-W 0=args.lua 1=x
...	1	x" "options at negative indices of arg"

run "$COUCHLUA" -e 'print(#arg, arg[0] == os.getenv("COUCHLUA"), arg[1], arg[2])' </dev/null
expect_rc 0 "-e alone"
expect_out "2	true	-e	print(#arg, arg[0] == os.getenv(\"COUCHLUA\"), arg[1], arg[2])" \
  "without a script arg[0] is the program and the options follow"

run "$COUCHLUA" -e 'x = 1' -e 'print(x + 1)' </dev/null
expect_out "2" "several -e run in order"
run "$COUCHLUA" '-eprint("attached")' </dev/null
expect_out "attached" "-e with its argument attached"

run "$COUCHLUA" -e 'os.exit(3)' </dev/null
expect_rc 3 "os.exit status passes through"

# ---- -l mod and -l g=mod ----
mkdir -p mods
echo 'return { name = "mymod" }' >mods/mymod.lua
export LUA_PATH="$tmp/mods/?.lua;;"
run "$COUCHLUA" -l mymod -e 'print(mymod.name)' </dev/null
expect_out "mymod" "-l mod sets global mod"
run "$COUCHLUA" -l m=mymod -e 'print(m.name, mymod)' </dev/null
expect_out "mymod	nil" "-l g=mod sets global g"
run "$COUCHLUA" -lm=mymod -e 'print(m.name)' </dev/null
expect_out "mymod" "-lg=mod attached"
run "$COUCHLUA" -l couch -e 'print(couch.version)' </dev/null
expect_in out "0." "-l couch (the embedded module)"
run "$COUCHLUA" -l j=couch.json -e 'print(j.null ~= nil)' </dev/null
expect_out "true" "-l j=couch.json"
run "$COUCHLUA" -l nosuchmod </dev/null
expect_rc 1 "-l of a missing module fails"
expect_in err "couchlua: module 'nosuchmod' not found" "-l missing module message"

# ---- -E: LUA_INIT, LUA_PATH, LUA_CPATH ignored ----
LUA_INIT='print("from LUA_INIT")' run "$COUCHLUA" -e 'print("main")' </dev/null
expect_out "from LUA_INIT
main" "LUA_INIT runs first"
LUA_INIT='print("plain")' LUA_INIT_5_4='print("versioned")' run "$COUCHLUA" -e '' </dev/null
expect_out "versioned" "LUA_INIT_5_4 wins over LUA_INIT"
echo 'print("init file", ...)' >init.lua
LUA_INIT="@$tmp/init.lua" run "$COUCHLUA" -e '' </dev/null
expect_out "init file" "LUA_INIT=@file"
LUA_INIT='error("init failed")' run "$COUCHLUA" -e 'print("main")' </dev/null
expect_rc 1 "a failing LUA_INIT stops the run"
expect_in err "couchlua: LUA_INIT:1: init failed" "LUA_INIT error names it"
expect_not_in out "main" "nothing runs after a failing LUA_INIT"
LUA_INIT='print("from LUA_INIT")' LUA_CPATH="/from/env/?.so" run "$COUCHLUA" -E \
  -e 'print(package.path:find("/mods/", 1, true), package.cpath:find("/from/env/", 1, true))' </dev/null
expect_out "nil	nil" "-E ignores LUA_INIT, LUA_PATH and LUA_CPATH"
run "$COUCHLUA" -e 'print(package.path:find("/mods/", 1, true) ~= nil)' </dev/null
expect_out "true" "without -E LUA_PATH is used"
run "$COUCHLUA" -E -e 'print(require("couch").version ~= nil)' </dev/null
expect_out "true" "couch needs no path, even with -E"
unset LUA_PATH

# ---- -W ----
run "$COUCHLUA" -W -e 'warn("careful")' </dev/null
expect_rc 0 "-W"
expect_in err "Lua warning: careful" "-W turns warnings on"
run "$COUCHLUA" -e 'warn("careful")' </dev/null
expect_err "" "warnings are off by default"

# ---- -v, --help, bad options ----
run "$COUCHLUA" -v </dev/null
expect_rc 0 "-v"
expect_in out "couchlua 0.1.0" "-v names couchlua"
expect_in out "Lua 5.4" "-v names Lua"
expect_in out "Copyright" "-v has Lua's copyright line"
run "$COUCHLUA" -v -e 'print("then")' </dev/null
expect_in out "then" "-v does not stop -e"

run "$COUCHLUA" --help </dev/null
expect_rc 0 "--help"
expect_in out "usage: couchlua [options] [script [args]]" "--help prints usage on stdout"
expect_in out "-l g=mod" "--help lists -l g=mod"
expect_err "" "--help prints nothing on stderr"

run "$COUCHLUA" -x </dev/null
expect_rc 2 "unknown option"
expect_in err "couchlua: unrecognized option '-x'" "unknown option is named"
expect_in err "usage: couchlua" "unknown option shows usage"
expect_out "" "unknown option prints nothing on stdout"
run "$COUCHLUA" --nope </dev/null
expect_rc 2 "unknown long option"
expect_in err "unrecognized option '--nope'" "unknown long option is named"
run "$COUCHLUA" -e </dev/null
expect_rc 2 "-e without argument"
expect_in err "'-e' needs argument" "-e without argument message"
run "$COUCHLUA" -vx </dev/null
expect_rc 2 "-v with extra characters"

# ---- -, --, stdin, #! ----
run "$COUCHLUA" - a b <<<'print("stdin", ...)'
expect_out "stdin	a	b" "- runs stdin with arguments"
echo 'print("file named -", ...)' >./-
run "$COUCHLUA" -- - z </dev/null
expect_out "file named -	z" "-- then - is a file named -"
rm ./-
echo 'print("dashed")' >-dash.lua
run "$COUCHLUA" -- -dash.lua </dev/null
expect_out "dashed" "-- stops option handling"
run "$COUCHLUA" <<<'print("piped script")'
expect_rc 0 "no script and stdin not a terminal"
expect_out "piped script" "stdin runs as the script"

printf '#!/usr/bin/env couchlua\nprint("shebang ok", ...)\n' >sb.lua
run "$COUCHLUA" sb.lua 1 </dev/null
expect_out "shebang ok	1" "#! first line is skipped"
chmod +x sb.lua
PATH="$(dirname "$COUCHLUA"):$PATH" run ./sb.lua 2 </dev/null
expect_out "shebang ok	2" "an executable #! script"

# ---- errors: one line, then the traceback; exit 1 ----
cat >err.lua <<'EOF'
local function inner() error("something broke") end
local function outer() inner() end
outer()
EOF
run "$COUCHLUA" err.lua </dev/null
expect_rc 1 "runtime error exits 1"
expect_out "" "nothing on stdout"
first=$(head -n 1 <<<"$err")
[ "$first" = "couchlua: err.lua:1: something broke" ] || fail "error first line: '$first'"
second=$(sed -n 2p <<<"$err")
[ "$second" = "stack traceback:" ] || fail "traceback follows the message: '$second'"
expect_in err "in local 'outer'" "traceback names the functions"
expect_in err "err.lua:3: in main chunk" "traceback reaches the main chunk"

cat >obj.lua <<'EOF'
local E = { __tostring = function(e) return "couch: usage: bad argument 'id': " .. e.why end }
error(setmetatable({ why = "expected a string" }, E))
EOF
run "$COUCHLUA" obj.lua </dev/null
expect_rc 1 "error object exits 1"
first=$(head -n 1 <<<"$err")
[ "$first" = "couchlua: couch: usage: bad argument 'id': expected a string" ] ||
  fail "error object printed through __tostring: '$first'"
expect_in err "stack traceback:" "error object has a traceback"

run "$COUCHLUA" -e 'error({})' </dev/null
expect_rc 1 "table without __tostring"
expect_in err "(error object is a table value)" "table error is described"

run "$COUCHLUA" -e 'error(require("couch").json == nil and "x" or setmetatable({}, {__tostring = function() return "obj" end}))' </dev/null
expect_in err "couchlua: obj" "error objects from -e"

run "$COUCHLUA" nosuch.lua </dev/null
expect_rc 1 "missing script"
expect_in err "couchlua: cannot open nosuch.lua" "missing script message"

printf 'local x = 1\nx = = 2\n' >syntax.lua
run "$COUCHLUA" syntax.lua </dev/null
expect_rc 1 "syntax error exits 1"
expect_in err "couchlua: syntax.lua:2:" "syntax error names file and line"
run "$COUCHLUA" -e 'x =' </dev/null
expect_rc 1 "syntax error in -e"
expect_in err "(command line):1:" "-e syntax error names the command line"

run "$COUCHLUA" -e 'error("first")' -e 'print("never")' </dev/null
expect_not_in out "never" "an error stops later options"
run "$COUCHLUA" -e 'error("e")' args.lua </dev/null
expect_not_in out "..." "an error in -e stops the script"

# ---- couch errors: one line, the user's frames only, the exit status by kind ----
cat >couch_err.lua <<'EOF'
local couch = require "couch"
local srv = couch.connect("http://127.0.0.1:9", { retries = 0 })
local function read() local info = srv:db("x"):info(); return info end
read()
EOF
run "$COUCHLUA" couch_err.lua </dev/null
expect_rc 1 "a network error exits 1"
first=$(head -n 1 <<<"$err")
case $first in "couchlua: couch: network: "*"(GET http://127.0.0.1:9/x)") ;; *) fail "network error line: '$first'" ;; esac
expect_in err "couch_err.lua:3: in local 'read'" "the user's frames are shown"
expect_in err "couch_err.lua:4: in main chunk" "down to the main chunk"
expect_not_in err "lua/couch/" "no frames of couch's own Lua half"
expect_not_in err "[C]" "no C frames"

run "$COUCHLUA" -e 'require("couch").connect(42)' </dev/null
expect_rc 2 "a couch usage error exits 2"
expect_in err "couch: usage: bad argument 'url'" "the usage error is named"
run "$COUCHLUA" -e 'local srv = require("couch").connect("http://127.0.0.1:9"); srv.info()' </dev/null
expect_rc 2 "a method called with a dot exits 2"
expect_in err "write srv:info(...)" "and says to use a colon"

cat >task_err.lua <<'EOF'
local couch = require "couch"
couch.spawn(function() couch.sleep(0.01); error("boom in a task") end)
EOF
run "$COUCHLUA" task_err.lua </dev/null
expect_rc 1 "a failed task exits 1"
expect_in err "couchlua: task 1 failed: task_err.lua:2: boom in a task" "the task's error is one line"
checks=$((checks + 1))
[ "$(grep -c 'stack traceback:' <<<"$err")" = 1 ] || fail "one traceback for a failed task"
expect_not_in err "lua/couch/" "no frames of couch's own Lua half in a task's traceback"
cat >task_obj_err.lua <<'EOF'
local couch = require "couch"
couch.spawn("nightly import", function() couch.sleep(0.01); error(couch.error("http", "boom")) end)
EOF
run "$COUCHLUA" task_obj_err.lua </dev/null
expect_rc 1 "a task failed with an error object exits 1"
expect_in err "couchlua: nightly import failed: couch: http: boom" "an error object names its task too"

# ---- the at-exit hook of the couch module ----
run "$COUCHLUA" -e 'require "couch"; require("couch.internal").at_exit = function() print("at exit") end' \
  -e 'print("main")' </dev/null
expect_out "main
at exit" "the module's at_exit runs after the main chunk"
cat >ae.lua <<'EOF'
require "couch"; require("couch.internal").at_exit = function() error("pending task failed") end
print("script done")
EOF
run "$COUCHLUA" ae.lua </dev/null
expect_rc 1 "an error in the module's at_exit exits 1"
expect_in err "couchlua: ae.lua:1: pending task failed" "an at-exit error is reported"
run "$COUCHLUA" -e 'require "couch"; require("couch.internal").at_exit = function() print("no") end error("x")' </dev/null
expect_not_in out "no" "no at-exit after an error"

finish
