-- Seed example "Replication Error Handling" (python-cloudant Replicator, seeds/000):
--
--     try:
--         repl_doc = replicator.create_replication(source_db='source_database',
--             target_db='non_existent_target', create_target=False)
--         for i in range(10):  # Check up to 10 times
--             state = replicator.replication_state(repl_id)
--             if repl_state == 'error': print(f"Replication failed: {error_reason}"); break
--             elif repl_state == 'completed': print("Replication completed successfully"); break
--             time.sleep(2)
--     except CloudantReplicatorException as e:
--         print(f"Replication setup failed: {e}")
--     for repl in replicator.list_replications():
--         print(f"Replication {repl_id}: {state}")
--
-- The couchlua way: follow the replication (no polling) and give up after a deadline
-- (FOLLOW_TIMEOUT seconds, default 20). Errors are values with a `kind`; pcall catches
-- them. What servers do with a missing target and create_target = false differs:
--   CouchDB 3: the job is "crashing" with "db_not_found: could not open .../non_existent_target/"
--              and retried with growing delays (never "error"); we stop it.
--   pouchdb-server: creates the target anyway and completes.
-- The target is deleted afterwards if this script's replication created it, so the
-- example behaves the same on the next run.
--
-- Run: couchlua examples/seed/10_replication_errors.lua [URL] [SOURCE] [MISSING_TARGET]
local couch = require "couch"

local a = { table.unpack(arg) }
local url = (a[1] and a[1]:match("^https?://")) and table.remove(a, 1)
  or os.getenv("COUCH_URL") or "http://127.0.0.1:5984"
local source, target = a[1] or "source_database", a[2] or "non_existent_target"
local deadline = tonumber(os.getenv("FOLLOW_TIMEOUT")) or 20

local srv = couch.connect(url)
pcall(srv.create_db, srv, "_replicator")
local rep = srv:replicator()

-- A state's numbers and its error. st.info is the scheduler's view (CouchDB 2.1+): stats,
-- {error = "..."}, or JSON null (couch.json.null, not nil) when it has nothing yet;
-- pouchdb-server and CouchDB 1.x write _replication_stats / _replication_state_reason
-- into the document instead.
local function reason_of(st)
  return tostring(type(st.info) == "table" and st.info.error or st._replication_state_reason or "no reason given")
end

local existed = srv:db(target):exists()
local ok, err = pcall(function()
  -- Try to replicate to a non-existent target without create_target
  local repl_doc = rep:create { source = source, target = target, create_target = false }
  local repl_id = repl_doc._id
  print(("Replication %s: %s -> %s (create_target = false; %s %s)"):format(repl_id, source, target,
    target, existed and "exists" or "does not exist"))

  -- A guard stops the replication at the deadline; the follow then ends with "deleted".
  local guard = couch.spawn(function()
    couch.sleep(deadline)
    print(("No verdict after %g s: stopping it"):format(deadline))
    rep:stop(repl_id)
  end)
  for st in rep:follow(repl_id) do
    if st.state == "error" or st.state == "failed" or st.state == "crashing" then
      print(("Replication failed (%s): %s"):format(st.state,
        reason_of(st)))
      rep:stop(repl_id) -- CouchDB would retry it for ever
      break
    elseif st.state == "completed" then
      print("Replication completed successfully")
      break
    end
  end
  guard:cancel()
end)
if not ok then
  print(("Replication setup failed: %s"):format(tostring(err)))
end
if not existed and srv:db(target):exists() then
  srv:delete_db(target)
  print(("(the server created %s although create_target was false; deleted it again)"):format(target))
end

-- List all replications to check status
for _, st in ipairs(rep:list()) do
  print(("Replication %s: %s"):format(st.id, st.state))
end
