-- The replicator API on a CouchDB cluster, against the FAKE CouchDB 3 as 3 nodes
-- (tests/fakes/fake_couchdb3.js --nodes 3, as fixtures/couchdb-3.4.3-cluster recorded),
-- its timeline driven by hand: a follower's last state is consistent although the
-- scheduler says "completed" before the document does; a finishing job's missing row is
-- not a deletion; where jobs run (state.node, rep:counts(), rep:list{ by = "node" },
-- srv:membership()); a wait that times out before any job started says so.
local lu = require "luaunit"
local couch = require "couch"
local fake = require "fake_couchdb3"

local f, srv, rep

local function seed(name, n)
  local db = srv:db(name)
  db:create { exist_ok = true }
  local docs = {}
  for i = 1, n do docs[i] = { _id = ("d%03d"):format(i) } end
  db:bulk_docs(docs)
end

-- let the followers' tasks (feed, scheduler poll every 0.05 s) see the timeline's state
local function settle() couch.sleep(0.25) end

TestCluster = {}
function TestCluster:setUp()
  f = fake.start { nodes = 3 }
  srv = couch.connect(f.admin_url)
  rep = srv:replicator()
  f:freeze()
  f:advance(10) -- the nodes have booted
end
function TestCluster:tearDown() f:stop() end

function TestCluster:test_follower_waits_for_the_document_and_never_goes_back()
  seed("src", 20)
  rep:create { id = "one", source = "src", target = "tgt", create_target = true }
  local seen, last = {}, nil
  local follower = couch.spawn(function()
    for st in rep:follow("one", { interval = 0.05 }) do
      seen[#seen + 1] = st.state
      last = st
    end
  end)
  settle()
  f:advance(2)
  settle()
  lu.assertEquals(last.state, "running")
  lu.assertEquals(last.node, "n3@127.0.0.1") -- where "one" runs (crc32 placement)
  f:advance(2) -- the job ended: its row is gone for a second
  settle()
  f:advance(1) -- the scheduler says completed; the document does not yet
  settle()
  lu.assertEquals(follower:status() ~= "done", true, "a follower does not end before the document says so")
  f:advance(1) -- now the document says so
  follower:wait(5)
  lu.assertEquals(last.state, "completed")
  lu.assertEquals(last._replication_state, "completed")
  lu.assertEquals(last._replication_stats.docs_written, 20)
  lu.assertNil(last.node, "a job that ended runs on no node")
  for i = 2, #seen do
    lu.assertNotEquals(seen[i], "initializing", "no step back: " .. table.concat(seen, ","))
  end
  -- the document the replicator wrote answers a DELETE with 202: stop still succeeds
  lu.assertTrue(rep:stop("one").ok)
end

function TestCluster:test_follow_many_waits_for_the_documents_too()
  seed("src", 5)
  local ids = {}
  for i = 1, 4 do
    ids[i] = "m" .. i
    rep:create { id = ids[i], source = "src", target = "tm" .. i, create_target = true }
  end
  local last, bad = {}, nil
  local t = couch.spawn(function()
    for st in rep:follow_many(ids, { interval = 0.05 }) do
      if last[st.id] == "running" and st.state == "initializing" then bad = st.id end
      last[st.id] = st.state
      if st.state == "completed" and st._replication_state ~= "completed" then bad = st.id end
    end
  end)
  settle()
  f:advance(2)
  settle()
  f:advance(2) -- ended: rows gone
  settle()
  f:advance(1) -- the scheduler says completed, the documents not yet
  settle()
  lu.assertNotEquals(t:status(), "done")
  f:advance(1)
  t:wait(5)
  lu.assertNil(bad)
  for _, id in ipairs(ids) do lu.assertEquals(last[id], "completed") end
end

function TestCluster:test_settle_bounds_the_wait_for_the_document()
  seed("src", 5)
  rep:create { id = "two", source = "src", target = "tgt2", create_target = true }
  local t = couch.spawn(function()
    local last
    for st in rep:follow("two", { interval = 0.05, settle = 0.3 }) do last = st end
    return last
  end)
  settle()
  f:advance(5) -- ended, row back as completed; the document lags (clock frozen here)
  local last = t:wait(5)
  lu.assertEquals(last.state, "completed", "after `settle` it reads the document once and ends")
end

function TestCluster:test_where_jobs_run()
  seed("src", 5)
  local list = {}
  for i = 1, 12 do list[i] = { id = "c" .. i, source = "src", target = "t" .. i, create_target = true, continuous = true } end
  lu.assertEquals(rep:create_many(list).ok_count, 12)
  f:advance(2)
  local m = srv:membership()
  lu.assertEquals(m.all_nodes, { "n1@127.0.0.1", "n2@127.0.0.1", "n3@127.0.0.1" })
  lu.assertEquals(m.cluster_nodes, m.all_nodes)
  local st = rep:state("c1")
  lu.assertEquals(st.state, "running")
  lu.assertStrMatches(st.node, "n%d@127%.0%.0%.1")
  local counts = rep:counts()
  lu.assertEquals(counts.total, 12)
  lu.assertEquals(counts.states.running, 12)
  local sum = 0
  for node, by_state in pairs(counts.nodes) do
    lu.assertStrMatches(node, "n%d@127%.0%.0%.1")
    sum = sum + by_state.running
  end
  lu.assertEquals(sum, 12)
  local groups = rep:list { by = "node" }
  for node, states in pairs(groups) do
    lu.assertEquals(#states, counts.nodes[node].running)
    for _, s in ipairs(states) do lu.assertEquals(s.node, node) end
  end
  local ok, err = pcall(rep.list, rep, { by = "colour" })
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "usage")
end

function TestCluster:test_wait_timeout_says_no_job_started()
  seed("src", 5)
  f:restart("all") -- jobs start 5 s (of the frozen timeline) after the nodes boot
  rep:create { id = "late", source = "src", target = "tgt3", create_target = true }
  local ok, err = pcall(rep.wait, rep, "late", { timeout = 0.5, interval = 0.05 })
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "timeout")
  lu.assertEquals(err.state, "initializing")
  lu.assertStrContains(tostring(err), "no job started within 0.5s")
  lu.assertStrContains(tostring(err), "5 s after it boots")
  ok, err = pcall(function()
    for _ in rep:follow_many({ "late" }, { timeout = 0.3, interval = 0.05 }) do end
  end)
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "timeout")
  lu.assertEquals(err.unfinished, 1)
  lu.assertStrContains(tostring(err), "1 of 1 replications: no job started within 0.3s")
  f:advance(6)
  ok, err = pcall(rep.wait, rep, "late", { timeout = 0.5, interval = 0.05 })
  lu.assertFalse(ok)
  lu.assertStrContains(tostring(err), "still running after 0.5s")
  f:thaw()
  lu.assertEquals(rep:wait("late", { timeout = 30 }).state, "completed")
end

os.exit(lu.LuaUnit.run())
