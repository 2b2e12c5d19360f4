-- Seed example "Filtered Replication" (python-cloudant Replicator, seeds/000):
--
--     replicator.create_replication(source_db='main_database', target_db='user_database',
--         selector={'type': 'user', 'status': 'active'})
--     replicator.create_replication(source_db='main_database', target_db='selected_users',
--         doc_ids=['user123', 'user456', 'user789'])
--     replicator.create_replication(source_db='main_database', target_db='filtered_database',
--         filter='filters/by_department', query_params={'department': 'engineering'})
--
-- The couchlua way: the three replications are followed at the same time, one task each,
-- each given up (stopped) after FOLLOW_TIMEOUT seconds (default 60). Then each target's
-- ids are listed.
--
-- pouchdb-server does not run selector replications from _replicator documents (the
-- document stays "triggered" and nothing is copied): the selector one then ends by
-- timeout and is stopped; on CouchDB 2+ all three complete.
--
-- Run: couchlua examples/seed/04_filtered.lua [URL] [SOURCE] [SELECTOR_TARGET] [IDS_TARGET] [FILTER_TARGET]
local couch = require "couch"

local a = { table.unpack(arg) }
local url = (a[1] and a[1]:match("^https?://")) and table.remove(a, 1)
  or os.getenv("COUCH_URL") or "http://127.0.0.1:5984"
local source = a[1] or "main_database"
local targets = { selector = a[2] or "user_database", doc_ids = a[3] or "selected_users",
                  filter = a[4] or "filtered_database" }
local follow_timeout = tonumber(os.getenv("FOLLOW_TIMEOUT")) or 60

local srv = couch.connect(url)
pcall(srv.create_db, srv, "_replicator")
local rep = srv:replicator()

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
local main = srv:db(source)
local is_pouchdb = srv:info()["express-pouchdb"] ~= nil

-- The filter function the third replication names, in the source's _design/filters.
local ok, ddoc = pcall(main.get, main, "_design/filters")
if not ok then
  main:put { _id = "_design/filters", language = "javascript",
             filters = { by_department = "function(doc, req) { return doc.department === req.query.department; }" } }
  print("Created _design/filters with the by_department filter in " .. source)
end

-- The seed's targets exist beforehand (none of the three sets create_target).
for _, name in pairs(targets) do srv:db(name):create { exist_ok = true } end

local started = {}
local function start(label, opts)
  local ok, doc = pcall(rep.create, rep, opts)
  if not ok then
    print(("%-8s could not be created: %s"):format(label, tostring(doc)))
    return
  end
  print(("%-8s %s -> %s: replication %s"):format(label, source, opts.target, doc._id))
  started[#started + 1] = { label = label, id = doc._id, target = opts.target }
end

-- Replicate only specific document types using a selector
start("selector", { source = source, target = targets.selector, selector = { type = "user", status = "active" } })
-- Replicate specific documents by id
start("doc_ids", { source = source, target = targets.doc_ids, doc_ids = { "user123", "user456", "user789" } })
-- Replicate using a filter function with parameters
start("filter", { source = source, target = targets.filter, filter = "filters/by_department",
                  query_params = { department = "engineering" } })

-- Follow all of them at once, one task each.
local tasks = {}
for i, r in ipairs(started) do
  tasks[i] = couch.spawn("follow " .. r.label, follow_until_done, r.id, follow_timeout)
end

for i, r in ipairs(started) do
  local st, gave_up = tasks[i]:wait()
  if gave_up then
    print(("%-8s still %s after %g s: stopped it%s"):format(r.label, st and st.state or "initializing",
      follow_timeout, (r.label == "selector" and is_pouchdb) and " (pouchdb-server never runs selector replications)" or ""))
  else
    print(("%-8s %s"):format(r.label, tostring(st)))
  end
  local ids = {}
  for row in srv:db(r.target):all_docs_iter() do ids[#ids + 1] = row.id end
  print(("%-8s %s holds: %s"):format(r.label, r.target, #ids > 0 and table.concat(ids, ", ") or "(nothing)"))
end
