-- Self-test of the FAKE CouchDB 3's cluster mode (tests/fakes/fake_couchdb3.js --nodes 3)
-- against fixtures/couchdb-3.4.3-cluster (a real 3-node CouchDB 3.4.3, recorded): placement
-- by document id, `node` only while a job is pending or running, the finishing job's row
-- missing for a while (still counted in total_rows), the document's state lagging the
-- scheduler's, 202 to a DELETE of the replicator's own revision, /_membership, and jobs
-- starting only 5 s after a node boots. Only srv:request is used: this tests the fake.
if not pcall(require, "luaunit") then package.path = package.path .. ";/usr/share/lua/5.4/?.lua" end
local here = debug.getinfo(1, "S").source:match("^@(.*)/tests/unit/[^/]*$") or "."
package.path = package.path .. ";" .. here .. "/tests/support/?.lua"
local lu = require "luaunit"
local couch = require "couch"
local fake = require "fake_couchdb3"
local recorded = require "recorded"
local json = couch.json
local NULL = json.null

local FIXTURES = recorded.open("couchdb-3.4.3-cluster")
local function fx(no)
  if not FIXTURES then lu.skip("fixtures/couchdb-3.4.3-cluster was not found") end
  return FIXTURES:get(no)
end

local F, srv

local function call(method, path, o)
  o = o or {}
  o.allow = true
  o.retries = 0
  return srv:request(method, path, o)
end

local function shape(no, got, loose)
  local ok, why = recorded.same_shape(fx(no).body, got, "$", loose)
  lu.assertTrue(ok, fx(no).file .. ": " .. tostring(why))
end

local function make_db(name, n)
  call("PUT", "/" .. name)
  local docs = {}
  for i = 1, n do docs[i] = { _id = ("d%04d"):format(i) } end
  call("POST", "/" .. name .. "/_bulk_docs", { body = { docs = docs } })
end

local function rows()
  local out = {}
  local page = call("GET", "/_scheduler/docs/_replicator", { query = { limit = 1000, skip = 0 } })
  for _, d in ipairs(page.docs) do out[d.doc_id] = d end
  return out, page.total_rows
end

local function put_rep(id, src, tgt, extra)
  local body = { source = F:endpoint(src), target = F:endpoint(tgt), create_target = true }
  for k, v in pairs(extra or {}) do body[k] = v end
  local res, status = call("PUT", "/_replicator/" .. id, { body = body })
  lu.assertEquals(status, 201)
  return res
end

TestFakeCluster = {}
function TestFakeCluster:setUp()
  F = fake.start { nodes = 3 }
  srv = couch.connect(F.admin_url)
end
function TestFakeCluster:tearDown() F:stop() end

function TestFakeCluster:test_membership_and_cluster_config_as_recorded()
  local m, status = call("GET", "/_membership")
  lu.assertEquals(status, 200)
  lu.assertEquals(m, fx(1656).body)
  local c = call("GET", "/_node/_local/_config/cluster")
  lu.assertEquals(c, fx(1657).body)
  lu.assertEquals(call("GET", "/_node/n2@127.0.0.1").name, "n2@127.0.0.1")
end

function TestFakeCluster:test_jobs_run_on_the_nodes_the_recording_shows()
  -- the 30 fleet replications of recording 539, created with the same ids: each runs on
  -- the node the real cluster ran it on
  local rec = fx(539).body
  make_db("fleet_src", 5)
  F:freeze()
  F:advance(10) -- the nodes have booted
  local want = {}
  for _, d in ipairs(rec.docs) do
    if d.node then
      want[d.doc_id] = d.node
      put_rep(d.doc_id, "fleet_src", d.target:match("/([^/]+)/$"))
    end
  end
  F:advance(0.1)
  local got = rows()
  local per_node = {}
  for id, node in pairs(want) do
    lu.assertEquals(got[id].state, "running", id)
    lu.assertEquals(got[id].node, node, id)
    per_node[node] = (per_node[node] or 0) + 1
    shape(539, { total_rows = 1, offset = 0, docs = json.array { got[id] } })
  end
  lu.assertEquals(per_node, { ["n1@127.0.0.1"] = 10, ["n2@127.0.0.1"] = 9, ["n3@127.0.0.1"] = 11 })
  -- the job and its task name the same node
  local one = got["fleet-12-616117848"]
  lu.assertEquals(call("GET", "/_scheduler/jobs/" .. one.id).node, "n1@127.0.0.1")
end

function TestFakeCluster:test_a_finishing_job_row_goes_then_completed_before_the_document()
  make_db("c_src", 20)
  F:freeze()
  F:advance(10)
  local put = put_rep("c_one", "c_src", "c_tgt")
  F:advance(2)
  local r = rows()
  lu.assertEquals(r.c_one.state, "running")
  lu.assertEquals(r.c_one.node, "n3@127.0.0.1") -- crc32 placement of "c_one"
  F:advance(2) -- the one-shot ended (3 s after it started)
  local now, total = rows()
  lu.assertNil(now.c_one, "a finishing job's row is missing for a while")
  lu.assertEquals(total, 1, "and still counted (recording 842: 32 rows counted, 30 shown)")
  local _, status = call("GET", "/_scheduler/docs/_replicator/c_one")
  lu.assertEquals(status, 404)
  F:advance(1)
  now = rows()
  lu.assertEquals(now.c_one.state, "completed")
  lu.assertNil(now.c_one.node, "no node once completed (recording 539)")
  lu.assertEquals(now.c_one.info.docs_written, 20)
  shape(539, { total_rows = 1, offset = 0, docs = json.array { now.c_one } })
  local doc = call("GET", "/_replicator/c_one")
  lu.assertEquals(doc._rev, put.rev, "the document lags the scheduler")
  lu.assertNil(doc._replication_state)
  F:advance(1)
  doc = call("GET", "/_replicator/c_one")
  lu.assertEquals(doc._replication_state, "completed")
  lu.assertEquals(rows().c_one.state, "completed")
  -- deleting the revision the replicator wrote: 202, as recorded (62); a user's own: 200 (64)
  local res, st = call("DELETE", "/_replicator/c_one", { query = { rev = doc._rev } })
  lu.assertEquals(st, fx(62).status)
  shape(62, res)
  put = put_rep("c_two", "c_src", "c_tgt2", { continuous = true })
  res, st = call("DELETE", "/_replicator/c_two", { query = { rev = put.rev } })
  lu.assertEquals(st, fx(64).status)
  shape(64, res)
end

function TestFakeCluster:test_jobs_start_only_5_s_after_a_node_boots()
  make_db("b_src", 3)
  F:freeze()
  F:restart("all")
  put_rep("b_one", "b_src", "b_tgt")
  F:advance(4)
  local r, total = rows()
  lu.assertNil(r.b_one, "no row while the node boots")
  lu.assertEquals(total, 1)
  lu.assertEquals(call("GET", "/_scheduler/jobs").total_rows, 0)
  F:advance(1.01)
  lu.assertEquals(rows().b_one.state, "initializing")
  F:advance(0.1)
  r = rows()
  lu.assertEquals(r.b_one.state, "running")
  lu.assertEquals(r.b_one.info, NULL)
  -- restarting the node it runs on stops it until that node has booted again
  F:restart(r.b_one.node)
  lu.assertNil(rows().b_one)
  F:advance(5.2)
  lu.assertEquals(rows().b_one.state, "running")
end

function TestFakeCluster:test_one_node_answers_as_before()
  local one = fake.start {}
  local s1 = couch.connect(one.admin_url)
  local m = s1:request("GET", "/_membership")
  lu.assertEquals(m.all_nodes, { "couchdb@127.0.0.1" })
  one:stop()
end

os.exit(lu.LuaUnit.run())
