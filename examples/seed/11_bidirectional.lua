-- Seed example "Bidirectional Replication" (python-cloudant Replicator, seeds/000):
--
--     repl1 = replicator.create_replication(source_db='primary_database',
--         target_db='secondary_database', continuous=True, create_target=True,
--         repl_id='primary_to_secondary')
--     repl2 = replicator.create_replication(source_db='secondary_database',
--         target_db='primary_database', continuous=True, repl_id='secondary_to_primary')
--     try:
--         while True:
--             for repl_id in repl_ids: print(f"{repl_id}: {docs_written} docs replicated")
--             time.sleep(30)
--     except KeyboardInterrupt:
--         for repl_id in repl_ids: replicator.stop_replication(repl_id)
--
-- The couchlua way: a task per direction follows its replication and prints each change
-- of state; the main script writes one document on each side and watches it arrive on
-- the other (changes feeds, no polling), then keeps the sync running until Ctrl-C, or
-- for --seconds N. Both replications are stopped at the end either way.
--
-- Run: couchlua examples/seed/11_bidirectional.lua [URL] [PRIMARY] [SECONDARY] [--seconds N]
local couch = require "couch"

local a, seconds = {}, nil
do
  local i = 1
  while arg[i] do
    if arg[i] == "--seconds" then seconds = tonumber(arg[i + 1]); i = i + 1 else a[#a + 1] = arg[i] end
    i = i + 1
  end
end
local url = (a[1] and a[1]:match("^https?://")) and table.remove(a, 1)
  or os.getenv("COUCH_URL") or "http://127.0.0.1:5984"
local primary, secondary = a[1] or "primary_database", a[2] or "secondary_database"

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

-- Fixed ids, as in the seed: a document left over from an earlier run is replaced.
for _, id in ipairs { "primary_to_secondary", "secondary_to_primary" } do pcall(rep.stop, rep, id) end
-- The second replication reads the secondary, which the first one creates: create it now
-- so the two do not race.
srv:db(secondary):create { exist_ok = true }

local repl1 = rep:create { source = primary, target = secondary, continuous = true, create_target = true,
                           repl_id = "primary_to_secondary" }
local repl2 = rep:create { source = secondary, target = primary, continuous = true,
                           repl_id = "secondary_to_primary" }
print("Bidirectional replication established")
print(("Primary->Secondary: %s"):format(repl1._id))
print(("Secondary->Primary: %s"):format(repl2._id))
local repl_ids = { repl1._id, repl2._id }

local function written(st)
  local s = st and stats_of(st) or {}
  return s.docs_written and tostring(s.docs_written) or "n/a"
end

local followers = {}
for i, repl_id in ipairs(repl_ids) do
  followers[i] = couch.spawn("follow " .. repl_id, function()
    for st in rep:follow(repl_id) do
      print(("  %s: %s, %s docs replicated"):format(repl_id, st.state, written(st)))
    end
  end)
end

-- One document on each side; each must show up on the other.
local stamp = ("%d-%d"):format(os.time(), math.random(1e6))
local function cross(from, to)
  local dst = srv:db(to)
  local since = dst:changes({ limit = 0, since = "now" }).last_seq
  local id = ("from-%s-%s"):format(from, stamp)
  local t0 = couch.now()
  srv:db(from):put { _id = id, written_on = from }
  for ch in dst:changes_feed { since = since, poll = 10 } do
    if ch.id == id then
      print(("%s -> %s: %s arrived after %.2f s"):format(from, to, id, couch.now() - t0))
      return true
    end
  end
end
local crossed = table.pack(pcall(couch.timeout, 60, couch.all,
  { function() return cross(primary, secondary) end, function() return cross(secondary, primary) end }))
if not crossed[1] then print(("The documents did not cross: %s"):format(tostring(crossed[2]))) end

-- Keep syncing until Ctrl-C (or --seconds). As in 07_monitoring.lua, Ctrl-C raises a
-- `cancelled` error at the wait and then "interrupted!" at the return of the inner pcall.
print(seconds and ("Syncing for %g s..."):format(seconds) or "Syncing until Ctrl-C...")
local ok, inner_ok, err = pcall(pcall, function()
  if seconds then couch.sleep(seconds) else while true do couch.sleep(3600) end end
end)
if not (ok and inner_ok) then print(("Interrupted (%s)"):format(tostring(ok and err or inner_ok))) end

for _, repl_id in ipairs(repl_ids) do
  local ok, st = pcall(rep.state, rep, repl_id)
  print(("%s: %s docs replicated"):format(repl_id, ok and written(st) or "?"))
end
print("Stopping bidirectional replication...")
for _, repl_id in ipairs(repl_ids) do rep:stop(repl_id) end
couch.all(followers)
print("Stopped")
os.exit(crossed[1] and 0 or 1)
