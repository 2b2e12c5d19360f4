#!/usr/bin/env bash
# examples/top.lua, the live view of a server's replications, against the fake CouchDB 3 as
# a 3-node cluster: through a pseudo-terminal (script(1)) it draws counts by state and by
# node, the busiest jobs, the crashing one with its reason, follows the `s` key (filter by
# state) and quits on `q` with status 0; without a terminal it prints plain lines. No
# credential (the server's password, one inside a replication's source URL) is ever shown.
set -uo pipefail

src=${COUCHLUA_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
COUCHLUA=${COUCHLUA:-$src/build/couchlua}
export COUCHLUA_SOURCE_DIR=$src COUCHLUA

if [[ ${COUCHLUA_TEST_SERVER:-} != couchdb3cluster ]]; then
  if ! command -v node >/dev/null 2>&1; then echo "SKIPPED: node is not installed"; exit 77; fi
  if ! command -v script >/dev/null 2>&1; then echo "SKIPPED: script(1) (util-linux) is not installed"; exit 77; fi
  exec "$src/tests/support/with-server" couchdb3cluster bash "${BASH_SOURCE[0]}" "$@"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/couchlua-top.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { printf 'FAIL: %s\n' "$*" >&2; failures=$((failures + 1)); }
url=$COUCHLUA_TEST_URL
password=${url#*://*:}
password=${password%%@*}

cat >"$tmp/setup.lua" <<'LUA'
local couch = require "couch"
local srv = couch.connect(arg[1])
srv:create_db("top_src", { exist_ok = true }):bulk_docs { { _id = "a" }, { _id = "b" } }
local rep = srv:replicator()
local list = {}
for i = 1, 6 do
  list[i] = { id = "top-" .. i, source = "top_src", target = "top_t" .. i, create_target = true, continuous = true }
end
list[7] = { id = "top-broken", source = "http://admin:sekrit-in-url@127.0.0.1:9/nope", target = "top_x", continuous = true }
assert(rep:create_many(list).ok_count == 7)
while rep:state("top-broken").state ~= "crashing" do couch.sleep(0.05) end
LUA
"$COUCHLUA" "$tmp/setup.lua" "$url" || { echo "FAIL: setup"; exit 1; }

# ---- no terminal: plain lines
out=$(timeout -k 5 30 "$COUCHLUA" "$src/examples/top.lua" "$url" --interval 0.3 --seconds 1 </dev/null 2>&1)
rc=$?
((rc == 0)) || fail "plain mode: exit status $rc"
[[ $out == *"top: 7 replications: running "* ]] || fail "plain mode: no summary line"
[[ $out == *"n1@127.0.0.1["*"n2@127.0.0.1["*"n3@127.0.0.1["* ]] || fail "plain mode: not by node"
[[ $out != *$'\e['* ]] || fail "plain mode: escape sequences"
[[ $out != *"$password"* && $out != *sekrit* ]] || fail "plain mode: a credential is shown"
printf '%s\n' "$out" | sed -n '1,3s/^/    | /p'

# ---- a terminal: keys s (filter: running) then q
(sleep 2; printf s; sleep 1; printf q) |
  COUCH_URL=$url timeout -k 5 30 script -qfec "$(printf '%q ' "$COUCHLUA" "$src/examples/top.lua" --interval 0.5)" "$tmp/screen" >/dev/null 2>&1
rc=$?
((rc == 0)) || fail "terminal: exit status $rc (q must quit)"
screen=$(tr -d '\r' <"$tmp/screen" | grep -v '^Script \(started\|done\)')   # script(1)'s own lines
for want in "couchlua top" "replications 7:" "n1@127.0.0.1" "n2@127.0.0.1" "n3@127.0.0.1" \
  "busiest jobs" "docs/s" "crashing / in error" "top-broken" "http_request_failed" "errors since start:" \
  "s filter: running" "jobs running:"; do
  [[ $screen == *"$want"* ]] || fail "terminal: '$want' is not on the screen"
done
[[ $screen == *$'\e[H'* ]] || fail "terminal: not redrawn in place"
[[ $screen != *"$password"* && $screen != *sekrit* ]] || fail "terminal: a credential is on the screen"

if ((failures == 0)); then echo "ok: top.lua (plain lines, terminal, keys, no credentials)"; fi
((failures == 0))
