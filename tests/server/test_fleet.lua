-- Fleet operations on a real server: create_many in chunks (a result per document,
-- nothing lost when a chunk fails, resumable), stop_many, and repair (delete + re-create
-- with the same options) of the replications in a bad state or matching a pattern.
local lu = require "luaunit"
local couch = require "couch"
local internal = require "couch.internal"
local ts = require "testserver"

local srv = ts.connect()
local rep = srv:replicator()
pcall(srv.create_db, srv, "_replicator")
local tag = internal.random_hex(4)

local made = {}
local function opts_list(n, label, extra)
  local list = {}
  for i = 1, n do
    local o = { id = ("couchlua_fleet_%s_%s_%d"):format(tag, label, i), source = "couchlua_fleet_src_" .. tag,
                target = ("couchlua_fleet_tgt_%s_%s_%d"):format(tag, label, i), create_target = true }
    for k, v in pairs(extra or {}) do o[k] = v end
    list[i] = o
    made[#made + 1] = o.id
  end
  return list
end

local function ids_of(list)
  local out = {}
  for i, o in ipairs(list) do out[i] = o.id end
  return out
end

local function exists(id) return (pcall(rep.state, rep, id)) end

TestFleet = {}

function TestFleet:setUp()
  self.src = srv:db("couchlua_fleet_src_" .. tag)
  self.src:create { exist_ok = true }
  self.src:bulk_docs { { _id = "a" }, { _id = "b" } }
end

function TestFleet:tearDown()
  rep:stop_many(made)
  made = {}
  for _, name in ipairs(srv:all_dbs()) do
    if name:find("couchlua_fleet_", 1, true) then pcall(srv.delete_db, srv, name) end
  end
end

function TestFleet:test_create_many_in_chunks_with_a_result_per_document()
  local list = opts_list(25, "chunk", { continuous = true })
  local calls = {}
  local before = srv:stats().requests
  local res = rep:create_many(list, { chunk = 10, on_chunk = function(done, total) calls[#calls + 1] = done .. "/" .. total end })
  lu.assertEquals(srv:stats().requests - before, 3, "one _bulk_docs per chunk")
  lu.assertEquals(calls, { "10/25", "20/25", "25/25" })
  lu.assertEquals(res.ok_count, 25)
  lu.assertEquals(res.failed_count, 0)
  for i, r in ipairs(res) do
    lu.assertTrue(r.ok)
    lu.assertEquals(r.id, list[i].id)
  end
  lu.assertTrue(exists(list[25].id))
end

function TestFleet:test_a_partial_failure_loses_nothing_and_resumes()
  local list = opts_list(6, "part", { continuous = true })
  rep:create(list[4]) -- exists already: that one document fails
  local res = rep:create_many(list, { chunk = 4 })
  lu.assertEquals(res.ok_count, 5)
  lu.assertEquals(res.failed, { 4 })
  lu.assertEquals(res[4].error, "conflict")
  lu.assertEquals(res[4].id, list[4].id)
  -- the same list again, resumed: everything is there, nothing was created twice
  res = rep:create_many(list, { chunk = 4, resume = true })
  lu.assertEquals(res.ok_count, 6)
  for _, r in ipairs(res) do lu.assertTrue(r.existing) end
  -- a chunk whose request fails gives each of its documents an error result
  local missing = srv:replicator("couchlua_fleet_nodb_" .. tag)
  res = missing:create_many(opts_list(3, "nodb"), { chunk = 2 })
  lu.assertEquals(res.failed_count, 3)
  lu.assertEquals(res[3].error, "not_found")
  lu.assertEquals(res[3].id, ("couchlua_fleet_%s_nodb_3"):format(tag))
  -- resume needs ids
  local ok, err = pcall(rep.create_many, rep, { { source = "a", target = "b" } }, { resume = true })
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "usage")
end

function TestFleet:test_stop_many_by_ids_and_by_pattern()
  local list = opts_list(6, "stop", { continuous = true })
  rep:create_many(list)
  local ids = ids_of(list)
  local res = rep:stop_many({ ids[1], ids[2], "couchlua_fleet_no_such_" .. tag }, { chunk = 2 })
  lu.assertEquals(res.ok_count, 2)
  lu.assertEquals(res[3].error, "not_found")
  lu.assertFalse(exists(ids[1]))
  lu.assertTrue(exists(ids[3]))
  res = rep:stop_many { target = "fleet_tgt_" .. tag .. "_stop_[56]$" }
  lu.assertEquals(res.ok_count, 2)
  lu.assertFalse(exists(ids[5]))
  lu.assertTrue(exists(ids[4]))
end

function TestFleet:test_repair_restarts_the_broken_ones_with_the_same_options()
  if ts.is_pouchdb then
    -- pouchdb-server keeps retrying an unreachable or missing source ("triggered"): no
    -- replication of its ever gets to crashing/failed/error. Repair by pattern is checked.
    print("note: pouchdb-server never reports crashing/failed; checked repair by pattern only")
    local good = opts_list(1, "good", { continuous = true })
    rep:create_many(good)
    local report = rep:repair { target = "fleet_tgt_" .. tag .. "_good_1$" }
    lu.assertEquals(report.matched, 1)
    lu.assertEquals(report.restarted[1].id, good[1].id)
    lu.assertTrue(exists(good[1].id))
    return
  end
  local bad = opts_list(2, "bad", { source = "http://127.0.0.1:9/nope", continuous = true, worker_batch_size = 7 })
  local good = opts_list(1, "good", { continuous = true })
  rep:create_many(bad)
  rep:create_many(good)
  local deadline = couch.now() + 60
  local states
  repeat
    couch.sleep(0.2)
    states = { rep:state(bad[1].id).state, rep:state(bad[2].id).state }
  until (states[1] ~= "running" and states[1] ~= "initializing" and states[2] ~= "running"
         and states[2] ~= "initializing") or couch.now() > deadline
  local broken = { crashing = true, error = true, failed = true }
  lu.assertTrue(broken[states[1]] and broken[states[2]], table.concat(states, ","))
  local before = rep:state(bad[1].id).doc._rev

  local dry = rep:repair { dry_run = true }
  lu.assertTrue(dry.dry_run)
  local seen = {}
  for _, r in ipairs(dry.restarted) do seen[r.id] = r.state end
  lu.assertNotNil(seen[bad[1].id])
  lu.assertNil(seen[good[1].id])
  lu.assertEquals(rep:state(bad[1].id).doc._rev, before, "a dry run changes nothing")

  local report = rep:repair {}
  seen = {}
  for _, r in ipairs(report.restarted) do seen[r.id] = r end
  lu.assertEquals(#report.failed, 0)
  lu.assertTrue(broken[seen[bad[1].id].state])
  lu.assertNotNil(seen[bad[2].id])
  lu.assertNil(seen[good[1].id])
  local doc = rep:state(bad[1].id).doc
  lu.assertNotEquals(doc._rev, before)
  lu.assertEquals(doc.worker_batch_size, 7, "the same options")
  lu.assertEquals(doc.continuous, true)
  lu.assertStrContains(doc.source.url or doc.source, "127.0.0.1:9/nope")
  lu.assertNil(doc._replication_state_reason)

  -- by pattern, whatever the state
  report = rep:repair { target = "fleet_tgt_" .. tag .. "_good_1$" }
  lu.assertEquals(report.matched, 1)
  lu.assertEquals(report.restarted[1].id, good[1].id)
  lu.assertTrue(exists(good[1].id))
end

function TestFleet:test_follow_many_in_one_loop()
  local list = opts_list(5, "many")
  local cont = opts_list(1, "manyc", { continuous = true })
  rep:create_many(list)
  rep:create_many(cont)
  local ids = ids_of(list)
  ids[#ids + 1] = cont[1].id
  ids[#ids + 1] = "couchlua_fleet_never_" .. tag
  local last, seen, stopped = {}, 0, false
  for st in rep:follow_many(ids, { interval = 0.2, timeout = 60 }) do
    seen = seen + 1
    last[st.id] = st.state
    -- the continuous one runs until it is stopped
    if st.id == cont[1].id and st.state == "running" and not stopped then
      stopped = true
      rep:stop(cont[1].id)
    end
  end
  for i = 1, 5 do lu.assertEquals(last[list[i].id], "completed", list[i].id) end
  lu.assertEquals(last[cont[1].id], "deleted")
  lu.assertEquals(last["couchlua_fleet_never_" .. tag], "not_found")
  lu.assertTrue(seen >= 7)
  local ok, err = pcall(rep.follow_many, rep, ids, { intervall = 1 })
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "usage")
  lu.assertStrContains(tostring(err), "interval")
end

os.exit(lu.LuaUnit.run())
