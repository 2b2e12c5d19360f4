-- Seed example "Managing Multiple Replications" (python-cloudant Replicator, seeds/000):
--
--     replications = [('db1', 'backup_db1'), ('db2', 'backup_db2'), ('db3', 'backup_db3')]
--     for source, target in replications:
--         repl_doc = replicator.create_replication(source_db=source, target_db=target,
--                                                  create_target=True)
--         print(f"Started replication: {source} -> {target}")
--     while repl_ids:
--         for repl_id in repl_ids: state = replicator.replication_state(repl_id) ...
--         time.sleep(5)
--     print("All replications completed")
--
-- The couchlua way: one task per replication follows it; all of them share one long-poll
-- of the _replicator database (and, on CouchDB 2+, one /_scheduler/docs request per
-- interval), however many there are. couch.all waits for every task.
--
-- Run: couchlua examples/seed/08_multiple.lua [URL] [SOURCE...]   (default db1 db2 db3;
--      each SOURCE goes to backup_SOURCE)
local couch = require "couch"

local a = { table.unpack(arg) }
local url = (a[1] and a[1]:match("^https?://")) and table.remove(a, 1)
  or os.getenv("COUCH_URL") or "http://127.0.0.1:5984"
local sources = #a > 0 and a or { "db1", "db2", "db3" }

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
local function reason_of(st)
  return tostring(type(st.info) == "table" and st.info.error or st._replication_state_reason or "no reason given")
end

local repl_ids = {}
for _, source in ipairs(sources) do
  local target = "backup_" .. source
  local doc = rep:create { source = source, target = target, create_target = true }
  repl_ids[#repl_ids + 1] = doc._id
  print(("Started replication: %s -> %s (%s)"):format(source, target, doc._id))
end

local tasks = {}
for i, repl_id in ipairs(repl_ids) do
  tasks[i] = couch.spawn("follow " .. repl_id, function()
    for st in rep:follow(repl_id) do
      if st.state == "completed" then
        local stats = stats_of(st)
        print(("Replication %s completed - %s documents"):format(repl_id, tostring(stats.docs_written or 0)))
        return true
      elseif st.state == "failed" or st.state == "error" or st.state == "crashing" or st.state == "deleted" then
        print(("Replication %s failed: %s"):format(repl_id,
          st.state == "deleted" and "its document was deleted" or reason_of(st)))
        return false
      end
    end
  end)
end

local results = couch.all(tasks)
local failed = 0
for _, ok in ipairs(results) do if not ok then failed = failed + 1 end end
if failed == 0 then
  print("All replications completed")
else
  print(("%d of %d replications failed"):format(failed, #results))
  os.exit(1)
end
