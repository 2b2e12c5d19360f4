-- Seed example "Cross-Instance Replication" (python-cloudant Replicator, seeds/000):
--
--     target_config = {'url': 'https://target_account.cloudant.com/target_database',
--                      'auth': {'username': 'target_user', 'password': 'target_password'}}
--     repl_doc = replicator.create_replication(source_db='source_database',
--                    target_db=target_config, continuous=False, create_target=True)
--     print(f"Cross-instance replication: {repl_doc['_id']}")
--
-- The other instance is a second couch.connect. With only one server at hand it is a
-- second connection to the same URL (TARGET_URL unset), which is how the test runs it; set
-- TARGET_URL (and TARGET_USER / TARGET_PASSWORD for its credentials) for a real second
-- instance. The endpoint's credentials go in CouchDB's auth object
-- ({url=, auth={basic={username=, password=}}}); what rep:create returns masks them.
--
-- Run: couchlua examples/seed/03_cross_instance.lua [URL] [SOURCE] [TARGET]
local couch = require "couch"
local json = couch.json

local a = { table.unpack(arg) }
local url = (a[1] and a[1]:match("^https?://")) and table.remove(a, 1)
  or os.getenv("COUCH_URL") or "http://127.0.0.1:5984"
local source, target = a[1] or "source_database", a[2] or "target_database_remote"

local srv = couch.connect(url)                                   -- the source account
local other = couch.connect(os.getenv("TARGET_URL") or url)      -- the target account
pcall(srv.create_db, srv, "_replicator")
local rep = srv:replicator()

-- A state's numbers and its error. st.info is the scheduler's view (CouchDB 2.1+): stats,
-- {error = "..."}, or JSON null (couch.json.null, not nil) when it has nothing yet;
-- pouchdb-server and CouchDB 1.x write _replication_stats / _replication_state_reason
-- into the document instead.
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

-- other.url never holds credentials; they travel in the auth object only.
local target_config = { url = other.url .. "/" .. couch.escape(target) }
if os.getenv("TARGET_USER") then
  target_config.auth = { basic = { username = os.getenv("TARGET_USER"), password = os.getenv("TARGET_PASSWORD") or "" } }
end

local repl_doc = rep:create { source = source, target = target_config, continuous = false, create_target = true }
print(("Cross-instance replication: %s"):format(repl_doc._id))
print(("  target as stored: %s"):format(json.encode(repl_doc.target, { sort_keys = true })))

local final, gave_up = follow_until_done(repl_doc._id, 120)
print(("Replication %s: %s"):format(repl_doc._id, final.state) .. (gave_up and " (gave up after 120 s: stopped it)" or ""))
if final.state ~= "completed" then
  print(("Reason: %s"):format(reason_of(final)))
  os.exit(1)
end

-- Check the copy through the target's own connection.
local report = couch.compare(srv:db(source), other:db(target))
print(tostring(report))
os.exit(report.equal and 0 or 1)
