-- Seed example "Basic Replication Setup" (python-cloudant Replicator, seeds/000):
--
--     repl_doc = replicator.create_replication(source_db='source_database',
--                    target_db='target_database', create_target=True)
--     repl_id = repl_doc['_id']
--     state = replicator.replication_state(repl_id)
--     print(f"Replication state: {state['_replication_state']}")
--     print(f"Progress: {state.get('_replication_stats', {})}")
--
-- The couchlua way: create the replication document, look at its state once, then follow
-- it to the end instead of stopping at a single snapshot.
--
-- Run: couchlua examples/seed/01_basic.lua [URL] [SOURCE] [TARGET]
--      (URL defaults to $COUCH_URL; credentials may be in the URL and are never printed)
local couch = require "couch"

local a = { table.unpack(arg) }
local url = (a[1] and a[1]:match("^https?://")) and table.remove(a, 1)
  or os.getenv("COUCH_URL") or "http://127.0.0.1:5984"
local source, target = a[1] or "source_database", a[2] or "target_database"

local srv = couch.connect(url)
pcall(srv.create_db, srv, "_replicator") -- CouchDB 3 has it already; pouchdb-server does not
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

-- Follow `id` to its end, giving up after `secs` seconds by stopping the replication (the
-- follow then ends with the state "deleted"). Returns the last state seen before that.
-- (Not rep:wait(id, {timeout = secs}): a task cancelled inside a follow loop does not
-- close the loop, so the shared _replicator watcher would keep the script alive.)
local function follow_until_done(id, secs)
  local guard = couch.spawn("give up on " .. id, function()
    couch.sleep(secs)
    pcall(rep.stop, rep, id)
  end)
  local last
  for st in rep:follow(id) do
    if st.state ~= "deleted" then last = st end
  end
  guard:cancel()
  return last or { id = id, state = "deleted" }, guard:status() == "done"
end

-- One-time replication; the server creates the target if it does not exist.
local repl_doc = rep:create { source = source, target = target, create_target = true }
local repl_id = repl_doc._id
print(("Started replication: %s"):format(repl_id))

-- A snapshot right after creating it: usually initializing / running.
local state = rep:state(repl_id)
print(("Replication state: %s"):format(state.state))

-- Follow it to a terminal state (completed or failed). The follow waits between updates:
-- one long-poll on _replicator wakes every follower, nothing polls on a timer.
local final, gave_up = follow_until_done(repl_id, 120)
print(("Replication state: %s"):format(final.state) .. (gave_up and " (gave up after 120 s: stopped it)" or ""))
local stats = stats_of(final)
print(("Progress: docs_read=%s docs_written=%s doc_write_failures=%s"):format(
  tostring(stats.docs_read), tostring(stats.docs_written), tostring(stats.doc_write_failures)))
if final.state ~= "completed" then
  print(("Reason: %s"):format(reason_of(final)))
  os.exit(1)
end
print(("%s now holds %d documents"):format(target, srv:db(target):info().doc_count))
