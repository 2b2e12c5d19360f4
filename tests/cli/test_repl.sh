#!/bin/bash
# The REPL: piped (couchlua -i < input) and on a pseudo-terminal (libedit, history, Ctrl-C).
. "$(dirname "$0")/check.sh"
unset LUA_INIT LUA_INIT_5_4
cd "$tmp" || exit 1

# Feed stdin to `couchlua -i`; $out loses the version line and the prompts, which a piped
# REPL prints as lua5.4 does.
repl() {
  run "$COUCHLUA" -i "$@" <"$tmp/in"
  out=$(sed -n '2,$p' <<<"$out" | sed -E 's/^((couch|>)> )+//')
}

cat >in <<'EOF'
1+1
=2*3
1, "x", nil
"a\tb\n"
function twice(n)
  return n * 2
end
twice(21)
local hidden = 5
hidden
x = 10
x
{1, 2, {a = 1, b = "two"}}
{a = {b = {c = {d = {e = 1}}}}}
t = {} t.self = t
t
{[1] = "one", name = "n", [10] = 10, ["with space"] = true}
error("boom")
"still here"
error(setmetatable({}, {__tostring = function() return "couch: http 404 not_found" end}))
{e = setmetatable({}, {__tostring = function() return "E!" end})}
couch.version == require("couch").version
couch.json.null
{couch.json.null}
print("printed")
for i = 1, 2 do
  print(i)
end
0.1, 1.0, 2^63, -7
EOF
repl
expect_rc 0 "the piped REPL ends well"
expected='2
6
1	"x"	nil
"a\tb\n"
42
nil
10
{ 1, 2, { a = 1, b = "two" } }
{ a = { b = { c = { d = {...} } } } }
{ self = <cycle: table: 0x'
case "$out" in
"$expected"*) ;;
*) fail "REPL results, in order" ;;
esac
expect_in out '{ "one", name = "n", ["with space"] = true, [10] = 10 }' "array part first, keys sorted"
expect_in out '"still here"' "an error does not end the REPL"
expect_in out '{ e = E! }' "nested __tostring values"
expect_in out 'true' "global couch is require 'couch'"
expect_in out 'null
{ null }' "couch.json.null prints as null"
expect_in out 'printed' "print works"
expect_in out '1
2' "multi-line loop"
expect_in out '0.1	1.0	9.223372036854776e+18	-7' "numbers (floats exact)"
expect_in err 'stdin:1: boom
stack traceback:' "REPL errors: message and traceback"
expect_not_in err 'couchlua: stdin:1: boom' "no program name in front of REPL errors"
expect_in err 'couch: http 404 not_found' "error objects through __tostring"

# A wide table is spread over lines, indented.
cat >in <<'EOF'
{list = {"aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccc", "dddddddddd"}, n = 1}
EOF
repl
expect_out '{
  list = {
    "aaaaaaaaaaaaaaaaaaaa",
    "bbbbbbbbbbbbbbbbbbbb",
    "cccccccccccccccccccc",
    "dddddddddd"
  },
  n = 1
}' "wide tables are indented"

# An unfinished chunk at end of input is a syntax error, reported; the exit is still clean.
printf 'function f(\n' >in
repl
expect_rc 0 "EOF inside a chunk"
expect_in err "<eof>" "unfinished chunk reported"

# -i after a script: the script's globals are there; -i prints the version first.
echo 'from_script = "yes"' >s.lua
echo 'from_script' >in
run "$COUCHLUA" -i s.lua <in
expect_in out "couchlua 0.1.0" "-i shows the version"
expect_in out '"yes"' "-i after a script"

# _PROMPT is honoured as in lua5.4.
printf '_PROMPT = "P> "\n1\n' >in
run "$COUCHLUA" -i <in
expect_in out "P> 1" "_PROMPT"

# ---- on a pseudo-terminal ----
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import pty, select' 2>/dev/null; then
  echo "SKIP pty part: python3 with the pty module is not available" >&2
  finish
fi
mkdir -p home
cat >pty_session.py <<'EOF'
# Drive couchlua on a pseudo-terminal; print what it showed, as text.
import os, pty, select, sys, time
exe, home = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.environ["HOME"] = home
    os.environ["TERM"] = "dumb"
    os.execv(exe, [exe])
seen = b""
def wait_for(text, timeout=10):
    global seen
    end = time.time() + timeout
    while time.time() < end and text.encode() not in seen:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:  # the terminal closed: couchlua has exited
                data = b""
            if not data:
                break
            seen += data
    if text.encode() in seen:
        return
    sys.stdout.write(seen.decode(errors="replace"))
    done, status = os.waitpid(pid, os.WNOHANG)
    sys.exit("waiting for %r: %s" % (text, "couchlua ended, status %d" % status if done
                                             else "timed out"))
def step(keys, expect):
    global seen
    seen = b""
    # Let libedit switch the terminal to raw mode after its prompt: keys typed ahead of
    # that go through the terminal's cooked mode (echoed twice; ^D there is lost).
    time.sleep(0.1)
    os.write(fd, keys)
    wait_for(expect)
    return seen.decode(errors="replace")
log = []
wait_for("couch> ")
log.append(step(b"1+2\r", "3\r\ncouch> "))
log.append(step(b"history_marker = 'hm'\r", "couch> "))
log.append(step(b"secret_url = 'http://admin:TopSecret@127.0.0.1:9/db'\r", "couch> "))
log.append(step(b"abc", "abc"))
log.append(step(b"\x03", "couch> "))                       # Ctrl-C drops the typed line
log.append(step(b"function g()\r", ">> "))
log.append(step(b"\x03", "couch> "))                       # ... and an unfinished chunk
# Ctrl-C once the loop surely runs (the marker is printed by the evaluated chunk).
log.append(step(b"io.write('spin', 'ning\\n') io.flush() while true do end\r", "spinning"))
log.append(step(b"\x03", "couch> "))                       # interrupts a running loop
log.append(step(b"'alive'\r", "\"alive\"\r\ncouch> "))
# Tab completion: fields, and methods after a colon.
log.append(step(b"string.for\t", "string.format"))
log.append(step(b"\x15srv = couch.connect('http://127.0.0.1:9')\r", "couch> "))
log.append(step(b"srv:sched\t", "srv:scheduler"))
log.append(step(b"\x15", ""))
# Tasks run while the prompt waits for a key; their output lands above the line being typed.
log.append(step(b"t = couch.spawn(function() for i = 1, 3 do couch.sleep(0.3) print('tick', i) end end)\r",
                "couch> "))
log.append(step(b"typed", "tick\t3"))
end = time.time() + 3                                     # the typed text is drawn again
while time.time() < end and seen.rfind(b"typed") < seen.find(b"tick\t3"):
    if select.select([fd], [], [], 0.05)[0]:
        seen += os.read(fd, 4096)
if seen.rfind(b"typed") > seen.find(b"tick\t3"):
    log.append("REDRAWN")
log.append(step(b"\x15x = couch.spawn(function() couch.sleep(100) end)\r", "couch> "))
log.append(step(b"\x04", "Ctrl-D again"))                  # a task is still running: say so
log.append(step(b"\x04", "cancelled 1 task"))              # the second Ctrl-D cancels and quits
_, status = os.waitpid(pid, 0)
print("".join(log))
print("EXIT", os.waitstatus_to_exitcode(status))
EOF
run python3 pty_session.py "$COUCHLUA" "$tmp/home" </dev/null
expect_rc 0 "pty session ran"
expect_in out "EXIT 0" "Ctrl-D exits with status 0"
expect_in out "3" "expression result on the terminal"
expect_in out "interrupted" "Ctrl-C interrupts a running call"
expect_in out '"alive"' "the REPL goes on after Ctrl-C"
expect_in out "tick	3" "a task spawned at the prompt runs while the prompt waits"
expect_in out "string.format" "Tab completes a table's field"
expect_in out "srv:scheduler" "Tab completes a method after a colon"
expect_in out "REDRAWN" "the line being typed is drawn again below the task's output"
expect_in out "1 task is still running: Ctrl-D again cancels it and quits" "Ctrl-D with a task running says so"
expect_in out "cancelled 1 task" "a second Ctrl-D cancels the task"
hist="$tmp/home/.couchlua_history"
checks=$((checks + 1))
if [ -f "$hist" ]; then
  out=$(cat "$hist")
  expect_in out "1+2" "history has the first line"
  expect_in out "history_marker" "history has a later line"
  expect_not_in out "abc" "an interrupted line is not in the history"
  expect_in out "secret_url\\040=\\040'http://127.0.0.1:9/db'" "history keeps the line, without its credentials"
  expect_not_in out "TopSecret" "history has no password"
else
  fail "no $hist after the session"
fi

# An unwritable HOME does not stop the REPL.
chmod 500 "$tmp/home" 2>/dev/null
rm -f "$hist" 2>/dev/null
run python3 pty_session.py "$COUCHLUA" "/nonexistent/home" </dev/null
expect_in out "EXIT 0" "REPL works without a writable history"
chmod 700 "$tmp/home" 2>/dev/null

finish
