-- Seed example "Replication with Custom Settings" (python-cloudant Replicator, seeds/000):
--
--     repl_doc = replicator.create_replication(source_db='large_database',
--         target_db='replica_database',
--         batch_size=1000,           # Process 1000 docs per batch
--         batch_timeout=10000,       # 10 second batch timeout
--         checkpoint_interval=5000,  # Checkpoint every 5 seconds
--         connection_timeout=60000,  # 60 second connection timeout
--         retries_per_request=5,     # Retry failed requests 5 times
--         use_checkpoints=True)      # Enable checkpointing
--     print(f"High-performance replication: {repl_doc['_id']}")
--
-- couchlua keeps python-cloudant's batch_size as an alias of CouchDB's worker_batch_size;
-- the other names are CouchDB's own. The options are checked before anything is sent
-- (a wrong type is a `usage` error naming the option). The replication is then followed
-- to the end and the document printed as the server stored it.
--
-- Run: couchlua examples/seed/05_custom_settings.lua [URL] [SOURCE] [TARGET]
local couch = require "couch"

local a = { table.unpack(arg) }
local url = (a[1] and a[1]:match("^https?://")) and table.remove(a, 1)
  or os.getenv("COUCH_URL") or "http://127.0.0.1:5984"
local source, target = a[1] or "large_database", a[2] or "replica_database"

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

-- The seed does not ask for create_target: the replica exists beforehand.
srv:db(target):create { exist_ok = true }

local repl_doc = rep:create {
  source = source, target = target,
  batch_size = 1000,            -- documents per batch (worker_batch_size)
  batch_timeout = 10000,        -- ms
  checkpoint_interval = 5000,   -- ms
  connection_timeout = 60000,   -- ms
  retries_per_request = 5,
  use_checkpoints = true,
}
local repl_id = repl_doc._id
print(("High-performance replication: %s"):format(repl_id))

local doc = srv:db("_replicator"):get(repl_id)
local settings = {}
for _, k in ipairs { "worker_batch_size", "batch_timeout", "checkpoint_interval", "connection_timeout",
                     "retries_per_request", "use_checkpoints" } do
  settings[#settings + 1] = ("%s=%s"):format(k, tostring(doc[k]))
end
print("Stored settings: " .. table.concat(settings, " "))

-- A bad option fails before any request, naming the option:
local ok, err = pcall(rep.create, rep, { source = source, target = target, batch_size = "big" })
print(("Wrong option type: %s"):format(tostring(err)))

local final, gave_up = follow_until_done(repl_id, 300)
local stats = stats_of(final)
print(("Replication %s: %s%s, docs_written=%s"):format(repl_id, final.state,
  gave_up and " (gave up after 300 s: stopped it)" or "", tostring(stats.docs_written)))
os.exit(final.state == "completed" and 0 or 1)
