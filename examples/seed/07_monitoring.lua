-- Seed example "Monitoring Replication Progress" (python-cloudant Replicator, seeds/000):
--
--     repl_doc = replicator.create_replication(source_db='large_database',
--                                              target_db='backup_database')
--     try:
--         for state_update in replicator.follow_replication(repl_id):
--             if repl_state == 'triggered': print("Replication started")
--             elif repl_state == 'running': print(f"Progress: {docs_written}/{docs_read} documents")
--             elif repl_state == 'completed': print(f"Replication completed: {total_docs} documents"); break
--             elif repl_state == 'error': print(f"Replication failed: {error_msg}"); break
--             time.sleep(2)
--     except KeyboardInterrupt:
--         replicator.stop_replication(repl_id)
--
-- The couchlua way: a task follows the replication (it wakes on each change; there is no
-- sleep) while the main script waits for it. Ctrl-C stops the wait with a `cancelled`
-- error; the script then stops the replication, which ends the follow with "deleted".
-- States are CouchDB 3's (initializing, running, pending, crashing, error, completed,
-- failed); pouchdb-server's "triggered" shows up as running.
--
-- Run: couchlua examples/seed/07_monitoring.lua [URL] [SOURCE] [TARGET]
local couch = require "couch"

local a = { table.unpack(arg) }
local url = (a[1] and a[1]:match("^https?://")) and table.remove(a, 1)
  or os.getenv("COUCH_URL") or "http://127.0.0.1:5984"
local source, target = a[1] or "large_database", a[2] or "backup_database"

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

-- The seed replicates into an existing backup database (no create_target).
srv:db(target):create { exist_ok = true }

local repl_id = rep:create { source = source, target = target }._id
print("Monitoring replication progress... (Ctrl-C stops the replication)")

local follower = couch.spawn("monitor " .. repl_id, function()
  for st in rep:follow(repl_id) do
    local stats = stats_of(st)
    if st.state == "initializing" then
      print("Replication started")
    elseif st.state == "pending" then
      print("Replication waits for a free scheduler slot")
    elseif st.state == "running" then
      print(("Progress: %s/%s documents"):format(tostring(stats.docs_written or 0), tostring(stats.docs_read or 0)))
    elseif st.state == "completed" then
      print(("Replication completed: %s documents"):format(tostring(stats.docs_written or 0)))
      return "completed"
    elseif st.state == "crashing" then
      print(("Replication crashing, the server retries: %s"):format(reason_of(st)))
    elseif st.state == "error" or st.state == "failed" then
      print(("Replication failed: %s"):format(reason_of(st)))
      return st.state
    elseif st.state == "deleted" then
      print("Replication document deleted: monitoring ends")
      return "deleted"
    end
  end
end)

-- Ctrl-C while waiting raises a `cancelled` error at the wait. The second pcall is
-- there because the couchlua command, besides that error, also raises "interrupted!"
-- at the next Lua instruction, which is the return of the inner pcall.
local ok, inner_ok, result = pcall(pcall, follower.wait, follower)
if not (ok and inner_ok) then
  local err = ok and result or inner_ok
  print(("Stopping replication monitoring... (%s)"):format(tostring(err)))
  rep:stop(repl_id)
  follower:wait(30)
  os.exit(130)
end
os.exit((result == "completed") and 0 or 1)
