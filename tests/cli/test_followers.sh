#!/usr/bin/env bash
# Followers spawned in tasks, the shape users write (and the README's first example):
#   couch.spawn(function() for s in rep:follow(id) do ... end end)
# then either couch.run() or simply the end of the script (the command runs the loop).
# 1, 40 and 500 followers, plus a follower spawned from inside another task; each must see
# its replication reach "completed" and the script must end by itself, with status 0.
# Runs on a fresh pouchdb-server (or COUCHLUA_TEST_URL), on the fake CouchDB 3, and on the
# fake as a 3-node cluster.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../support/under-pouchdb.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/couchlua-followers.XXXXXX")
fds=()
cleanup() { local f; for f in "${fds[@]}"; do eval "exec $f>&-"; done 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
failures=0 checks=0

# followers.lua URL N REPLICATIONS ENDING
#   N followers spread over REPLICATIONS replication documents (fresh ids each run);
#   ENDING: run (couch.run()), end (the script ends), nested (each follower is spawned by
#   another task, which ends at once). Prints "seen N" when every follower has seen its
#   replication complete.
cat >"$tmp/followers.lua" <<'LUA'
local couch = require "couch"
local internal = require "couch.internal"
local url, n, reps, ending = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4]
local srv = couch.connect(url)
local tag = internal.random_hex(4)
local src = srv:db("followers_src")
src:create { exist_ok = true }
src:bulk_docs { { _id = "a" }, { _id = "b" } }
pcall(srv.create_db, srv, "_replicator")
local rep = srv:replicator()
local opts = {}
for r = 1, reps do
  opts[r] = { id = ("fl-%s-%d"):format(tag, r), source = "followers_src",
              target = ("followers_tgt_%s_%d"):format(tag, r), create_target = true }
end
for i = 1, reps, 100 do rep:create_many { table.unpack(opts, i, math.min(i + 99, reps)) } end

local completed = 0
local function follower(i)
  local id = opts[(i - 1) % reps + 1].id
  local last
  for s in rep:follow(id) do last = s.state end
  if last == "completed" then completed = completed + 1 end
end
for i = 1, n do
  if ending == "nested" then
    couch.spawn(function() couch.spawn(follower, i) end)
  else
    couch.spawn(follower, i)
  end
end
local function report() print(("seen %d of %d"):format(completed, n)) end
if ending == "run" or ending == "nested" then
  couch.run()
  report()
else
  -- the script ends here; the command runs the loop, then exits: report from a task
  -- that waits until the others are done
  couch.spawn(function()
    while completed < n do couch.sleep(0.05) end
    report()
  end)
end
LUA

check() { # LABEL URL N REPLICATIONS ENDING
  local label=$1 url=$2 n=$3 reps=$4 ending=$5 rc out
  checks=$((checks + 1))
  out=$(timeout -k 5 60 "$COUCHLUA" "$tmp/followers.lua" "$url" "$n" "$reps" "$ending" 2>&1 </dev/null)
  rc=$?
  if ((rc == 124)); then
    printf 'FAIL: %s: did not end within 60 s\n' "$label" >&2
  elif ((rc != 0)); then
    printf 'FAIL: %s: exit status %s\n' "$label" "$rc" >&2
  elif [[ $out != *"seen $n of $n"* ]]; then
    printf 'FAIL: %s: not every follower saw "completed"\n' "$label" >&2
  else
    printf 'ok: %s\n' "$label"
    return
  fi
  failures=$((failures + 1))
  printf '%s\n' "$out" | sed -n '1,20s/^/    | /p' >&2
}

suite() { # SERVER_LABEL URL MANY_REPS
  local s=$1 url=$2 many=$3
  check "$s: 1 follower, couch.run()" "$url" 1 1 run
  check "$s: 1 follower, script ends" "$url" 1 1 end
  check "$s: 1 follower spawned from a task" "$url" 1 1 nested
  check "$s: 40 followers, couch.run()" "$url" 40 40 run
  check "$s: 40 followers, script ends" "$url" 40 40 end
  check "$s: 40 followers spawned from tasks" "$url" 40 40 nested
  check "$s: 500 followers, couch.run()" "$url" 500 "$many" run
  check "$s: 500 followers, script ends" "$url" 500 "$many" end
}

# pouchdb-server runs every replication itself in node: 500 documents of its own would
# take minutes, so there the 500 followers share 25 replications (20 followers each).
if [[ ${COUCHLUA_TEST_SERVER:-} == pouchdb ]]; then
  suite pouchdb-server "$COUCHLUA_TEST_URL" 25
else
  suite "$COUCHLUA_TEST_SERVER" "$COUCHLUA_TEST_URL" 500
fi

# start_fake NAME [OPTION...]: a fake CouchDB 3 (its stdin is a pipe this shell holds, so
# it ends with the script); sets $port, or counts a failure
start_fake() {
  local name=$1
  shift
  eval "exec {fd}> >(exec node \"\$src/tests/fakes/fake_couchdb3.js\" \"\$@\" >\"\$tmp/\$name.out\" 2>&1)"
  fds+=("$fd")
  port=
  for _ in $(seq 100); do
    port=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$tmp/$name.out" 2>/dev/null)
    [[ -n $port ]] && break
    sleep 0.1
  done
  if [[ -z $port ]]; then
    failures=$((failures + 1))
    echo "FAIL: tests/fakes/fake_couchdb3.js $* did not start" >&2
    sed 's/^/    | /' "$tmp/$name.out" >&2
    return 1
  fi
}

if start_fake single --time-scale 0.05; then
  suite "fake CouchDB 3" "http://admin:pass@127.0.0.1:$port" 500
fi

# A 3-node cluster (as fixtures/couchdb-3.4.3-cluster recorded): a finishing job's row is
# missing for 1 s and the scheduler says "completed" 1 s before the document does (lags at
# their recorded length); every follower must still end with "completed".
if start_fake cluster --time-scale 0.05 --nodes 3 --lag-scale 1; then
  url="http://admin:pass@127.0.0.1:$port"
  check "fake cluster: 1 follower, couch.run()" "$url" 1 1 run
  check "fake cluster: 40 followers spawned from tasks" "$url" 40 40 nested
  check "fake cluster: 500 followers, script ends" "$url" 500 500 end
fi

echo "$((checks - failures)) passed, $failures failed"
((failures == 0))
