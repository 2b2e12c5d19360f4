-- Seed example "Continuous Replication" (python-cloudant Replicator, seeds/000):
--
--     repl_doc = replicator.create_replication(source_db='live_database',
--                    target_db='backup_database', continuous=True, create_target=True)
--     for i in range(5):
--         time.sleep(10)
--         state = replicator.replication_state(repl_id)
--         print(f"Docs written: {stats.get('docs_written', 0)}") ...
--     replicator.stop_replication(repl_id)
--
-- The couchlua way: a task follows the replication and prints each change of state as it
-- happens (no sleep-polling), while the main script writes new documents into the source
-- and waits on the target's changes feed until they have arrived. Then it stops the
-- replication; the follower sees the document go ("deleted") and ends.
--
-- Run: couchlua examples/seed/02_continuous.lua [URL] [SOURCE] [TARGET]
local couch = require "couch"

local a = { table.unpack(arg) }
local url = (a[1] and a[1]:match("^https?://")) and table.remove(a, 1)
  or os.getenv("COUCH_URL") or "http://127.0.0.1:5984"
local source, target = a[1] or "live_database", a[2] or "backup_database"

local srv = couch.connect(url)
pcall(srv.create_db, srv, "_replicator")
local rep = srv:replicator()

-- A state's numbers and its error. st.info is the scheduler's view (CouchDB 2.1+): stats,
-- {error = "..."}, or JSON null (couch.json.null, not nil) when it has nothing yet;
-- pouchdb-server and CouchDB 1.x write _replication_stats / _replication_state_reason
-- into the document instead.
local function stats_of(st)
  if type(st.info) == "table" and st.info.error == nil then return st.info end
  return type(st._replication_stats) == "table" and st._replication_stats or {}
end

local function stats_line(st)
  -- CouchDB 3: live stats in the scheduler's info; pouchdb-server reports none for a
  -- continuous replication (its document only says "triggered").
  local s = stats_of(st)
  if not s.docs_written then return "no stats reported by the server" end
  return ("Docs written: %s  Docs read: %s"):format(tostring(s.docs_written), tostring(s.docs_read))
end

-- We watch the target's changes feed below, so make sure it exists now; create_target
-- stays in the document as in the seed.
srv:db(target):create { exist_ok = true }

local repl_doc = rep:create { source = source, target = target, continuous = true, create_target = true }
local repl_id = repl_doc._id
print(("Continuous replication started: %s"):format(repl_id))

local follower = couch.spawn("follow " .. repl_id, function()
  for st in rep:follow(repl_id) do
    if st.state == "deleted" then
      print(("  [%s] state deleted: the replication document is gone"):format(repl_id:sub(1, 8)))
    else
      print(("  [%s] state %s (%s)"):format(repl_id:sub(1, 8), st.state, stats_line(st)))
    end
  end
end)

-- New writes on the source travel on their own; wait for them on the target's feed.
local live, backup = srv:db(source), srv:db(target)
local since = backup:changes({ limit = 0, since = "now" }).last_seq
local stamp = tostring(os.time()) .. "-" .. tostring(math.random(1e6))
local wanted = {}
for i = 1, 3 do
  local id = ("live-%s-%d"):format(stamp, i)
  live:put { _id = id, written_at = os.date("!%Y-%m-%dT%H:%M:%SZ"), n = i }
  wanted[id] = true
end
print("Wrote 3 new documents into " .. source .. "; waiting for them in " .. target)
local t0 = couch.now()
local ok, err = pcall(couch.timeout, 60, function()
  local left = 3
  for ch in backup:changes_feed { since = since, poll = 10 } do
    if wanted[ch.id] then
      wanted[ch.id] = nil
      left = left - 1
      print(("  arrived in %s: %s (after %.2f s)"):format(target, ch.id, couch.now() - t0))
      if left == 0 then break end
    end
  end
end)
if not ok then
  -- A replication that never starts: on pouchdb-server this happens when an identical
  -- continuous replication was stopped before (it keeps the old one's signature and
  -- treats the new document as a duplicate of it).
  print(("The documents did not arrive: %s; replication %s"):format(tostring(err), tostring(rep:state(repl_id))))
  rep:stop(repl_id)
  os.exit(1)
end

local state = rep:state(repl_id)
print(stats_line(state))
print(("%s: %d documents, %s: %d documents"):format(source, live:info().doc_count, target, backup:info().doc_count))

-- Stop continuous replication (deletes its _replicator document).
rep:stop(repl_id)
follower:wait(30)
print("Continuous replication stopped")
