#!/usr/bin/env bash
# Ctrl-C (SIGINT) in a script: a blocking call stops with one `cancelled` error that a
# single pcall catches, so the script can clean up; a task stuck in Lua code is stopped too.
set -u
COUCHLUA=${COUCHLUA:?set by ctest}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

cat > "$tmp/pcall.lua" <<'LUA'
local couch = require "couch"
local t = couch.spawn(function() couch.sleep(30) end)
io.stdout:write("ready\n"); io.stdout:flush()
local ok, err = pcall(t.wait, t)
print("caught", ok, err.kind)
t:cancel()
print("cleanup ran")
LUA
cat > "$tmp/spin.lua" <<'LUA'
local couch = require "couch"
couch.spawn("spinner", function() io.stdout:write("ready\n"); io.stdout:flush(); while true do end end)
couch.run()
LUA

run_and_interrupt() { # script -> output file; sends SIGINT once "ready" is printed
  "$COUCHLUA" "$1" > "$2" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do grep -q ready "$2" && break; sleep 0.05; done
  sleep 0.2
  kill -INT "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; echo "HUNG" >> "$2"; fi
  wait "$pid"
  echo "rc=$?" >> "$2"
}

run_and_interrupt "$tmp/pcall.lua" "$tmp/out1"
for want in "caught	false	cancelled" "cleanup ran" "rc=0"; do
  grep -qF "$want" "$tmp/out1" || { echo "FAIL: pcall around a blocking call: no '$want' in:"; cat "$tmp/out1"; fail=1; }
done

run_and_interrupt "$tmp/spin.lua" "$tmp/out2"
for want in "interrupted" "rc=130"; do
  grep -qF "$want" "$tmp/out2" || { echo "FAIL: a task spinning in Lua code: no '$want' in:"; cat "$tmp/out2"; fail=1; }
done
grep -q HUNG "$tmp/out2" && { echo "FAIL: the spinning task was not stopped"; fail=1; }

[ $fail -eq 0 ] && echo "interrupt checks passed"
exit $fail
