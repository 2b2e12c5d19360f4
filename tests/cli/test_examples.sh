#!/usr/bin/env bash
# The example scripts users copy from: every examples/seed/*.lua (the python-cloudant
# Replicator examples, translated), repair.lua, fleet.lua, migrate.lua, reshape.lua and
# couchlua-backup.lua run against a fresh pouchdb-server, each checked for its exit status and a
# key line of its output. repair.lua, fleet.lua and a few seed examples also run against
# the FAKE CouchDB 3 replicator (tests/fakes/fake_couchdb3.js), because pouchdb-server has
# no /_scheduler and never reports "crashing" or "failed": that is where the scheduler
# path of repair.lua and its create_target / duplicate / missing-source diagnoses are
# exercised.
#
# Runs itself under tests/support/with-server pouchdb unless COUCHLUA_TEST_URL is set.
# Exits 77 (skipped) when node or pouchdb-server is missing.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../support/under-pouchdb.sh"

URL=$COUCHLUA_TEST_URL
POUCHDB=0
[[ ${COUCHLUA_TEST_SERVER:-} == pouchdb ]] && POUCHDB=1
ex=$src/examples
unset COUCH_URL TARGET_URL TARGET_USER TARGET_PASSWORD EXTERNAL_URL EXTERNAL_USER EXTERNAL_PASSWORD \
  IAM_TARGET_URL IAM_API_KEY REPAIR_USER REPAIR_PASSWORD FOLLOW_TIMEOUT

tmp=$(mktemp -d "${TMPDIR:-/tmp}/couchlua-examples.XXXXXX")
bg_pid=
cleanup() {
  [[ -n $bg_pid ]] && kill -KILL "$bg_pid" 2>/dev/null
  exec 7>&- 2>/dev/null # the fake CouchDB 3 exits when its stdin closes
  exec 8>&- 2>/dev/null # and the fake cluster
  rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1

failures=0 checks=0 current= out= err= rc=
fail() {
  failures=$((failures + 1))
  printf 'FAIL: %s: %s\n' "$current" "$1" >&2
  printf '%s\n' "$out" | sed -n '1,40s/^/    stdout| /p' >&2
  printf '%s\n' "$err" | sed -n '1,40s/^/    stderr| /p' >&2
}
# run LABEL EXPECTED_STATUS CMD... : runs one example (60 s at most), keeps its output
run() {
  current=$1
  local want=$2
  shift 2
  timeout -k 5 60 "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  rc=$?
  out=$(<"$tmp/out") err=$(<"$tmp/err")
  checks=$((checks + 1))
  if ((rc == 124)); then
    fail "did not finish within 60 s"
  elif [[ $rc != "$want" ]]; then
    fail "exit status $rc, expected $want"
  fi
}
has() { # TEXT: stdout or stderr of the last run contains TEXT
  checks=$((checks + 1))
  [[ "$out"$'\n'"$err" == *"$1"* ]] || fail "output lacks '$1'"
}
lacks() {
  checks=$((checks + 1))
  [[ "$out"$'\n'"$err" != *"$1"* ]] || fail "output has '$1'"
}
lua() { "$COUCHLUA" "$@"; }

# interrupt LABEL TEXT N CMD... : starts CMD, sends SIGINT (Ctrl-C) once its output holds
# TEXT N times, and expects it to stop cleanly with status 0.
interrupt() {
  current=$1
  local text=$2 times=$3 i
  shift 3
  : >"$tmp/out"
  : >"$tmp/err" # before starting: the wait below must not see the last run's output
  "$@" >"$tmp/out" 2>"$tmp/err" </dev/null &
  bg_pid=$!
  for i in $(seq 150); do
    (($(cat "$tmp/out" "$tmp/err" | grep -cF -- "$text") >= times)) && break
    sleep 0.1
  done
  kill -INT "$bg_pid"
  for i in $(seq 150); do kill -0 "$bg_pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$bg_pid" 2>/dev/null && kill -KILL "$bg_pid"
  wait "$bg_pid"
  rc=$? bg_pid=
  out=$(<"$tmp/out") err=$(<"$tmp/err")
  checks=$((checks + 1))
  ((rc == 0)) || fail "exit status $rc after SIGINT, expected 0"
}

# ---- the databases the examples expect ------------------------------------------------
cat >setup.lua <<'EOF'
-- setup.lua URL MODE: seeds the databases the examples read (MODE: pouchdb | fake)
local couch = require "couch"
local json = couch.json
local url, mode = arg[1], arg[2]
local srv = couch.connect(url)
pcall(srv.create_db, srv, "_replicator")

local function fill(name, n, extra)
  local db = srv:db(name)
  db:create { exist_ok = true }
  local docs = {}
  for i = 1, n do docs[i] = { _id = ("doc%05d"):format(i), n = i } end
  for _, d in ipairs(extra or {}) do docs[#docs + 1] = d end
  for i = 1, #docs, 500 do db:bulk_docs({ table.unpack(docs, i, math.min(i + 499, #docs)) }) end
  return db
end

fill("source_database", 20)
fill("live_database", 5)
fill("large_database", 1500)
fill("db1", 10); fill("db2", 20); fill("db3", 30)
fill("local_database", 7)
fill("primary_database", 3)
fill("bidi_a", 3)
fill("main_database", 0, {
  { _id = "user123", type = "user", status = "active", department = "engineering" },
  { _id = "user456", type = "user", status = "inactive", department = "sales" },
  { _id = "user789", type = "user", status = "active", department = "engineering" },
  { _id = "user999", type = "user", status = "active", department = "sales" },
  { _id = "order1", type = "order" },
})
for _, name in ipairs { "fleet_a", "fleet_b", "fleet_c", "fleetc_a", "fleetc_b", "fleeti_a", "fleeti_b" } do
  fill(name, 25)
end

if mode == "pouchdb" then
  -- backup / migrate: conflicts, a deletion, an attachment, a design document, > 1 page
  local db = fill("bk_src", 450, { { _id = "_design/v", views = { all = { map = "function(doc){ emit(doc._id) }" } } } })
  db:bulk_docs({ { _id = "conflicted", _rev = "1-aaaa", v = "a" }, { _id = "conflicted", _rev = "1-bbbb", v = "b" } },
    { new_edits = false })
  local gone = db:get("doc00001")
  db:delete_doc("doc00001", gone._rev)
  local r = db:put { _id = "withatt", kind = "attachment" }
  db:put_attachment("withatt", "hello.txt", "hello world\n", "text/plain", r.rev)

  -- repair: a replication refused with 401. pouchdb-server checks basic credentials only
  -- for users it knows, so bob exists, and the document names him with a wrong password
  -- (in the URL: pouchdb-server's replicator ignores CouchDB 3's auth objects).
  srv:db("_users"):put { _id = "org.couchdb.user:bob", name = "bob", password = "s3cret-repair",
                         roles = json.array {}, type = "user" }
  local bad = url:gsub("^(https?://)", "%1bob:wrong-pw-123@")
  srv:db("_replicator"):put { _id = "repair_me", source = url .. "/source_database", target = bad .. "/repaired_target" }
else
  -- the fake CouchDB 3: what repair.lua must diagnose
  local rep = srv:replicator()
  rep:create { id = "r_missing_target", source = "source_database", target = "r_target_missing", create_target = false }
  rep:create { id = "r_missing_source", source = "no_such_source", target = "r_x", create_target = true }
  rep:create { id = "r_filter", source = "source_database", target = "r_y", create_target = true, filter = "nosuch/f" }
  rep:create { id = "r_dup_a", source = "db1", target = "r_dup", create_target = true, continuous = true }
  rep:create { id = "r_badauth", source = { url = srv.url .. "/db2", auth = { basic = { username = "admin", password = "wrong-pw-123" } } },
               target = "r_bad_target", create_target = true }
  couch.sleep(0.3)
  rep:create { id = "r_dup_b", source = "db1", target = "r_dup", create_target = true, continuous = true }
end

-- wait (10 s at most) until the broken replications show their problem
local want = mode == "pouchdb" and { repair_me = "error" }
  or { r_missing_target = "crashing", r_missing_source = "crashing", r_filter = "error", r_dup_b = "failed",
       r_badauth = "crashing" }
local rep = srv:replicator()
local deadline = couch.now() + 10
while true do
  local pending = {}
  for id, state in pairs(want) do
    local st = rep:state(id)
    if st.state ~= state then pending[#pending + 1] = ("%s is %s, not %s"):format(id, st.state, state) end
  end
  if #pending == 0 then break end
  if couch.now() > deadline then error("setup: " .. table.concat(pending, "; ")) end
  couch.sleep(0.1)
end
print("setup done")
EOF

current="setup (pouchdb-server)"
out=$(lua setup.lua "$URL" pouchdb 2>&1) || { fail "the setup script failed"; exit 1; }

# ---- examples/seed: every file is run; a file without a case here fails ----------------
for f in "$ex"/seed/*.lua; do
  name=$(basename "$f")
  case $name in
    01_basic.lua)
      run "$name" 0 "$COUCHLUA" "$f" "$URL"
      has "Started replication:"; has "Replication state: completed"; has "target_database now holds 20 documents" ;;
    02_continuous.lua)
      run "$name" 0 "$COUCHLUA" "$f" "$URL"
      has "Continuous replication started:"; has "arrived in backup_database: live-"; has "Continuous replication stopped" ;;
    03_cross_instance.lua)
      TARGET_USER=target_user TARGET_PASSWORD=target-pw-789 run "$name" 0 "$COUCHLUA" "$f" "$URL"
      has "Cross-instance replication:"; has '"password":"***"'; lacks "target-pw-789"
      has "source_database and target_database_remote hold the same 20 revisions" ;;
    04_filtered.lua)
      FOLLOW_TIMEOUT=3 run "$name" 0 "$COUCHLUA" "$f" "$URL"
      has "doc_ids  selected_users holds: user123, user456, user789"
      has "filter   filtered_database holds: user123, user789"
      if ((POUCHDB)); then has "selector still"; else has "selector user_database holds: user123, user789"; fi ;;
    05_custom_settings.lua)
      run "$name" 0 "$COUCHLUA" "$f" "$URL"
      has "worker_batch_size=1000 batch_timeout=10000 checkpoint_interval=5000"
      has "Wrong option type: couch: usage: bad argument"; has "completed, docs_written=1500" ;;
    06_incremental.lua)
      run "$name" 0 "$COUCHLUA" "$f" "$URL"
      has "Incremental replication from sequence 0"; has "Next run starts from sequence"
      run "$name (second run)" 0 "$COUCHLUA" "$f" "$URL"
      has "Incremental replication from sequence"; lacks "from sequence 0"; has ": completed" ;;
    07_monitoring.lua)
      run "$name" 0 "$COUCHLUA" "$f" "$URL" large_database monitored_backup
      has "Monitoring replication progress"; has "Replication completed: 1500 documents" ;;
    08_multiple.lua)
      run "$name" 0 "$COUCHLUA" "$f" "$URL"
      has "Started replication: db3 -> backup_db3"; has "completed - 30 documents"; has "All replications completed" ;;
    09_authentication.lua)
      run "$name" 0 "$COUCHLUA" "$f" "$URL"
      has '"password":"***"'; lacks "external_password"; has ": completed"; has "IAM target skipped" ;;
    10_replication_errors.lua)
      run "$name" 0 "$COUCHLUA" "$f" "$URL"
      has "source_database -> non_existent_target (create_target = false"
      if ((POUCHDB)); then has "Replication completed successfully"; fi
      has "Replication repair_me: error" ;;
    11_bidirectional.lua)
      run "$name" 0 "$COUCHLUA" "$f" "$URL" --seconds 1
      has "primary_database -> secondary_database: from-primary_database-"
      has "secondary_database -> primary_database: from-secondary_database-"; has "Stopped" ;;
    12_errors.lua)
      run "$name" 0 "$COUCHLUA" "$f" "$URL"
      has "Replication creation failed: couch: usage: bad argument 'source'"
      has "Replication not found: couch: not_found"; has "kind=not_found status=404" ;;
    *)
      current=$name
      fail "no test for this example in tests/cli/test_examples.sh" ;;
  esac
done

interrupt "11_bidirectional.lua, then Ctrl-C" "Syncing until Ctrl-C" 1 \
  "$COUCHLUA" "$ex/seed/11_bidirectional.lua" "$URL" bidi_a bidi_b
has "Interrupted"; has "Stopped"

# ---- migrate.lua ----------------------------------------------------------------------
run migrate.lua 0 "$COUCHLUA" "$ex/migrate.lua" "$URL/bk_src" "$URL/mig_copy"
has "read 454, written 454, failed 0"; has "bk_src and mig_copy hold the same 454 revisions"
run "migrate.lua (again: resumes)" 0 "$COUCHLUA" "$ex/migrate.lua" "$URL/bk_src" "$URL/mig_copy" --quiet
has "read 0, written 0"; has "hold the same 454 revisions"
U=$URL lua -e "local c = require 'couch'; c.connect(os.getenv('U')):db('mig_copy'):put{ _id = 'only-in-target' }" >/dev/null
run "migrate.lua (target has more)" 1 "$COUCHLUA" "$ex/migrate.lua" "$URL/bk_src" "$URL/mig_copy" --quiet
has "1 extra in it"
run "migrate.lua --continuous" 0 "$COUCHLUA" "$ex/migrate.lua" "$URL/db2" "$URL/mig_cont" --continuous --seconds 1
has "(continuous)"; has "db2 and mig_cont hold the same 20 revisions"
interrupt "migrate.lua --continuous, then Ctrl-C" "replicate db3 -> mig_int" 1 \
  "$COUCHLUA" "$ex/migrate.lua" "$URL/db3" "$URL/mig_int" --continuous
has "interrupted: finishing the batches in flight"; has "db3 and mig_int hold the same 30 revisions"
run "migrate.lua (bad arguments)" 2 "$COUCHLUA" "$ex/migrate.lua" "$URL"
has "usage: couchlua migrate.lua"

# ---- reshape.lua ----------------------------------------------------------------------
run reshape.lua 0 "$COUCHLUA" "$ex/reshape.lua" "$URL"
has "seeded reshape_posts with 20 sample posts"; has "skipped 4 (drafts), failed 0"
has '"headline":"Post number 2"'; has '"_id":"post:0002:body"'; has "draft post:0005 in the target: no (skipped)"
after=$(grep '^after' <<<"$out")
checks=$((checks + 1))
[[ -n $after && $after != *internal_notes* && $after != *'"title"'* ]] || fail "the 'after' line still has internal_notes or title: $after"

# ---- couchlua-backup / couchlua-restore, lossless (the former backup.lua example) -----
run "couchlua-backup --revisions all" 0 "$COUCHLUA" "$ex/couchlua-backup.lua" backup --url "$URL" --db bk_src \
  --revisions all --output "$tmp/bk.jsonl" --buffer-size 100 -q
checks=$((checks + 1))
grep -q '"1-aaaa"' "$tmp/bk.jsonl" && grep -q '"1-bbbb"' "$tmp/bk.jsonl" && grep -q '"data":"aGVsbG8gd29ybGQK"' "$tmp/bk.jsonl" ||
  fail "the backup file lacks a conflict revision or the attachment"
U=$URL lua -e "require('couch').connect(os.getenv('U')):create_db('bk_restored')" || fail "cannot create bk_restored"
run "couchlua-restore" 0 "$COUCHLUA" "$ex/couchlua-backup.lua" restore --url "$URL" --db bk_restored \
  --input "$tmp/bk.jsonl" -q
run "the restored copy" 0 env U="$URL" "$COUCHLUA" -e "local c = require 'couch'; local s = c.connect(os.getenv('U'))
  print(c.compare(s:db('bk_src'), s:db('bk_restored')))"
has "bk_src and bk_restored hold the same 454 revisions"

# ---- fleet.lua ------------------------------------------------------------------------
count_fleet_docs() {
  U=$1 lua -e "local c = require 'couch'; local n = 0
    for _, st in ipairs(c.connect(os.getenv('U')):replicator():list()) do if st.id:match('^fleet%-') then n = n + 1 end end
    print(n)"
}
run fleet.lua 0 "$COUCHLUA" "$ex/fleet.lua" "$URL" '^fleet_'
has "fleet: 3 one-shot replication(s) started"; has "fleet_c -> fleet_c_backup"; has "fleet: 3 replication(s): 3 completed"
checks=$((checks + 1))
[[ $(count_fleet_docs "$URL") == 0 ]] || fail "replication documents left behind"
run "fleet.lua --continuous --seconds 2" 0 "$COUCHLUA" "$ex/fleet.lua" "$URL" '^fleetc_' --continuous --seconds 2
has "fleet: 2 continuous replication(s) started"; has "fleet: 2 replication(s): 2 stopped"
# Ctrl-C: SIGINT while it follows two continuous replications
interrupt "fleet.lua --continuous, then Ctrl-C" ' running' 2 "$COUCHLUA" "$ex/fleet.lua" "$URL" '^fleeti_' --continuous
has "fleet: interrupted: stopping 2 replication(s)"; has "fleet: 2 replication(s): 2 stopped"
checks=$((checks + 1))
[[ $(count_fleet_docs "$URL") == 0 ]] || fail "replication documents left behind after Ctrl-C"

# ---- repair.lua (pouchdb-server: no scheduler, states from the documents) --------------
run "repair.lua --dry-run" 1 "$COUCHLUA" "$ex/repair.lua" "$URL" --dry-run
has "read from the replication documents"; has "repair_me: error -- Name or password is incorrect."
has "needs a human: credentials refused"
REPAIR_USER=bob REPAIR_PASSWORD=s3cret-repair run "repair.lua --dry-run (with REPAIR_USER)" 1 "$COUCHLUA" "$ex/repair.lua" "$URL" --dry-run
has "would recreate: credentials refused: using REPAIR_USER's"; has "dry run: nothing changed"; lacks "s3cret-repair"
REPAIR_USER=bob REPAIR_PASSWORD=s3cret-repair run "repair.lua" 0 "$COUCHLUA" "$ex/repair.lua" "$URL" --settle 10
has "recreated (attempt 1)"; has "repair_me after repair: completed"; lacks "s3cret-repair"; lacks "wrong-pw-123"
run "repair.lua (nothing left)" 0 "$COUCHLUA" "$ex/repair.lua" "$URL"
has "0 need attention"

# ---- the FAKE CouchDB 3: scheduler states pouchdb-server never shows -------------------
current="fake CouchDB 3"
# Time scale 0.2: a crash comes 0.6 s after a (re)start and the next restart 6.4 s after
# that, so the crashing states hold still while repair.lua looks at them.
exec 7> >(exec node "$src/tests/fakes/fake_couchdb3.js" --time-scale 0.2 >"$tmp/fake.out" 2>&1)
port=
for _ in $(seq 100); do
  port=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$tmp/fake.out" 2>/dev/null)
  [[ -n $port ]] && break
  sleep 0.1
done
if [[ -z $port ]]; then
  out=$(cat "$tmp/fake.out" 2>/dev/null) err=
  fail "tests/fakes/fake_couchdb3.js did not start"
else
  FAKE=http://admin:pass@127.0.0.1:$port
  current="setup (fake CouchDB 3)"
  out=$(lua setup.lua "$FAKE" fake 2>&1) || fail "the setup script failed"

  run "repair.lua (CouchDB 3)" 1 "$COUCHLUA" "$ex/repair.lua" "$FAKE" --settle 5
  has "read from /_scheduler/docs"
  has "r_missing_target: crashing -- db_not_found: could not open"
  has "recreated (attempt 1): the target database is missing"
  has "r_missing_source: crashing"; has "needs a human: the source database is missing"
  has "needs a human: the filter's design document is missing"
  has "r_dup_b: failed"; has "removed: a duplicate"
  has "needs a human: credentials refused"
  lacks "wrong-pw-123"; lacks "admin:pass"
  checks=$((checks + 1))
  [[ $out =~ r_missing_target\ after\ repair:\ (running|completed) ]] || fail "r_missing_target did not recover"
  REPAIR_USER=admin REPAIR_PASSWORD=still-wrong run "repair.lua (CouchDB 3, wrong new credentials)" 1 \
    "$COUCHLUA" "$ex/repair.lua" "$FAKE" --settle 5
  has "recreated (attempt 1): credentials refused"; has "r_badauth after repair: crashing"; lacks "still-wrong"
  REPAIR_USER=admin REPAIR_PASSWORD=pass run "repair.lua (CouchDB 3, backing off)" 1 "$COUCHLUA" "$ex/repair.lua" "$FAKE"
  has "backing off until"; lacks "r_missing_target:"; lacks "r_dup_b:"

  run "fleet.lua (CouchDB 3)" 0 "$COUCHLUA" "$ex/fleet.lua" "$FAKE" '^fleet_'
  has "fleet: 3 replication(s): 3 completed"; lacks "admin:pass"
  run "01_basic.lua (CouchDB 3)" 0 "$COUCHLUA" "$ex/seed/01_basic.lua" "$FAKE"
  has "Replication state: completed"; has "target_database now holds 20 documents"
  run "07_monitoring.lua (CouchDB 3)" 0 "$COUCHLUA" "$ex/seed/07_monitoring.lua" "$FAKE"
  has "Replication completed: 1500 documents"
  run "08_multiple.lua (CouchDB 3)" 0 "$COUCHLUA" "$ex/seed/08_multiple.lua" "$FAKE"
  has "All replications completed"
  run "10_replication_errors.lua (CouchDB 3)" 0 "$COUCHLUA" "$ex/seed/10_replication_errors.lua" "$FAKE"
  has "Replication failed (crashing): db_not_found: could not open"
  run "12_errors.lua (CouchDB 3)" 0 "$COUCHLUA" "$ex/seed/12_errors.lua" "$FAKE"
  has "kind=not_found status=404"
fi

# ---- the FAKE CouchDB 3 as a 3-node cluster: jobs on three nodes, a finishing job's row
# missing for a second, the scheduler saying "completed" before the document does (lags at
# their recorded length), 202 deletes
current="fake CouchDB 3 cluster"
exec 8> >(exec node "$src/tests/fakes/fake_couchdb3.js" --time-scale 0.2 --nodes 3 --lag-scale 1 >"$tmp/cluster.out" 2>&1)
port=
for _ in $(seq 100); do
  port=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$tmp/cluster.out" 2>/dev/null)
  [[ -n $port ]] && break
  sleep 0.1
done
if [[ -z $port ]]; then
  out=$(cat "$tmp/cluster.out" 2>/dev/null) err=
  fail "tests/fakes/fake_couchdb3.js --nodes 3 did not start"
else
  CLUSTER=http://admin:pass@127.0.0.1:$port
  current="setup (fake cluster)"
  out=$(lua setup.lua "$CLUSTER" fake 2>&1) || fail "the setup script failed"
  run "fleet.lua (cluster)" 0 "$COUCHLUA" "$ex/fleet.lua" "$CLUSTER" '^fleet_'
  has "fleet: 3 replication(s): 3 completed"; lacks "admin:pass"
  run "01_basic.lua (cluster)" 0 "$COUCHLUA" "$ex/seed/01_basic.lua" "$CLUSTER"
  has "Replication state: completed"; has "target_database now holds 20 documents"
  run "08_multiple.lua (cluster)" 0 "$COUCHLUA" "$ex/seed/08_multiple.lua" "$CLUSTER"
  has "All replications completed"
fi

if ((failures > 0)); then
  echo "$failures of $checks checks failed" >&2
  exit 1
fi
echo "all $checks checks passed"
