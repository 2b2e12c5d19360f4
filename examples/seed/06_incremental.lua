-- Seed example "Incremental Replication" (python-cloudant Replicator, seeds/000):
--
--     target_db = client['target_database']
--     if target_db.exists():
--         last_seq = target_db.metadata().get('update_seq', 0)
--     else:
--         last_seq = 0
--     repl_doc = replicator.create_replication(source_db='source_database',
--         target_db='target_database', since_seq=last_seq, create_target=True)
--     print(f"Incremental replication from sequence {last_seq}")
--
-- One correction: since_seq is a sequence of the *source*, and the seed reads the
-- target's update_seq (on CouchDB 2+ sequences are opaque strings of one database and
-- mean nothing to another). Here the script remembers the source's update_seq of its
-- previous run in a _local document on the target (_local docs do not replicate), and
-- starts from there. (Plain re-runs without since_seq are incremental too, through the
-- replicator's checkpoints; since_seq is for when those were lost.)
-- pouchdb-server ignores since_seq and re-checks everything (harmless, just slower).
--
-- Run: couchlua examples/seed/06_incremental.lua [URL] [SOURCE] [TARGET]
local couch = require "couch"
local json = couch.json

local a = { table.unpack(arg) }
local url = (a[1] and a[1]:match("^https?://")) and table.remove(a, 1)
  or os.getenv("COUCH_URL") or "http://127.0.0.1:5984"
local source, target = a[1] or "source_database", a[2] or "incremental_target"

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

local src, tgt = srv:db(source), srv:db(target)
local mark_id = "_local/couchlua-incremental-" .. source

local last_seq = 0
if tgt:exists() then
  local ok, mark = pcall(tgt.get, tgt, mark_id)
  if ok then last_seq = mark.source_seq end
end
-- Everything up to here will be in the target once this run completes.
local upto = src:info().update_seq

local repl_doc = rep:create { source = source, target = target, since_seq = last_seq, create_target = true }
print(("Incremental replication from sequence %s"):format(json.encode(last_seq)))

local final, gave_up = follow_until_done(repl_doc._id, 300)
local stats = stats_of(final)
print(("Replication %s: %s%s, docs_written=%s"):format(repl_doc._id, final.state,
  gave_up and " (gave up after 300 s: stopped it)" or "", tostring(stats.docs_written)))
if final.state ~= "completed" then os.exit(1) end

-- Remember where the source was, for the next run.
local ok, old = pcall(tgt.get, tgt, mark_id)
tgt:put { _id = mark_id, _rev = ok and old._rev or nil, source_seq = upto, at = os.date("!%Y-%m-%dT%H:%M:%SZ") }
print(("Next run starts from sequence %s"):format(json.encode(upto)))
