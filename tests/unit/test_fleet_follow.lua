-- Following a fleet from one script, against the FAKE CouchDB 3 as a 3-node cluster
-- (tests/fakes/fake_couchdb3.js --nodes 3): 1,200 replications -- more than one page of
-- /_scheduler/docs -- followed to completion by one rep:follow_many loop and by a task
-- each (rep:follow). What a user checks: every replication is seen completed, with the
-- document's own fields; the requests sent are a handful per page of 1000 and per poll,
-- not one per follower; a follower's state changes arrive in order.
local lu = require "luaunit"
local couch = require "couch"
local fake = require "fake_couchdb3"

local N = 1200
local f, srv, rep

local function fleet(tag)
  local list, ids = {}, {}
  for i = 1, N do
    ids[i] = ("%s-%04d"):format(tag, i)
    list[i] = { id = ids[i], source = "src", target = ("t_%s_%04d"):format(tag, i), create_target = true }
  end
  f:freeze() -- nothing starts until every follower has its first state
  local res = rep:create_many(list)
  lu.assertEquals(res.ok_count, N)
  return ids
end

local RANK = { initializing = 0, pending = 1, running = 1, crashing = 1, error = 1, completed = 2, failed = 2 }

-- every replication completed, its states in order, the last one the document's own
local function check(last, order_broken)
  local completed = 0
  for _, st in pairs(last) do
    if st.state == "completed" then
      completed = completed + 1
      lu.assertEquals(st._replication_state, "completed", st.id .. ": the document says so too")
      lu.assertNil(st.node, st.id .. ": an ended job runs on no node")
    end
  end
  lu.assertEquals(completed, N)
  lu.assertNil(order_broken)
end

TestFleetFollow = {}
function TestFleetFollow:setUp()
  -- the recorded timeline (and the cluster's lags: row gone 1 s, document 1 s later) 20
  -- times faster
  f = fake.start { nodes = 3, time_scale = 0.05, max_jobs = N }
  srv = couch.connect(f.admin_url)
  rep = srv:replicator()
  srv:db("src"):create()
  srv:db("src"):bulk_docs { { _id = "a" }, { _id = "b" } }
  couch.sleep(0.3) -- the nodes boot
end
function TestFleetFollow:tearDown() f:stop() end

local function follow_and_count(run)
  local before = srv:stats().requests
  local last, changes, broken = {}, 0, nil
  local function seen(st)
    local prev = last[st.id]
    if prev and RANK[st.state] < RANK[prev.state] then broken = broken or (st.id .. ": " .. prev.state .. " -> " .. st.state) end
    last[st.id] = st
    changes = changes + 1
  end
  run(seen)
  return srv:stats().requests - before, last, changes, broken
end

function TestFleetFollow:test_follow_many_sends_a_handful_of_requests_not_one_per_follower()
  local ids = fleet("many")
  local requests, last, changes, broken = follow_and_count(function(seen)
    local started, first = 0, {}
    local t = couch.spawn(function()
      for st in rep:follow_many(ids, { interval = 0.2, timeout = 120 }) do
        if not first[st.id] then started, first[st.id] = started + 1, true end
        seen(st)
      end
    end)
    while started < N do couch.sleep(0.05) end -- every follower has its first state
    f:thaw()
    t:wait(120)
  end)
  check(last, broken)
  print(("    follow_many of %d: %d requests for %d state changes"):format(N, requests, changes))
  -- one per follower would be >= 1200; paged reads of the scheduler and the documents
  -- (2 pages each), a poll every 0.2 s and one _all_docs per 500 changed documents
  lu.assertTrue(requests < N / 4, ("%d requests for %d followers"):format(requests, N))
end

function TestFleetFollow:test_a_task_per_follower_shares_the_same_requests()
  local ids = fleet("tasks")
  local requests, last, changes, broken = follow_and_count(function(seen)
    local tasks, started = {}, 0
    for i = 1, N do
      tasks[i] = couch.spawn(function()
        local first = true
        for st in rep:follow(ids[i], { interval = 0.2, timeout = 120 }) do
          if first then started, first = started + 1, false end
          seen(st)
        end
      end)
    end
    while started < N do couch.sleep(0.05) end
    f:thaw()
    couch.all(tasks)
  end)
  check(last, broken)
  print(("    %d tasks in rep:follow: %d requests for %d state changes"):format(N, requests, changes))
  lu.assertTrue(requests < N / 4, ("%d requests for %d followers"):format(requests, N))
end

-- The scheduler poll compares rows by their text, split out of each page without decoding
-- it: ids with quotes, backslashes, the text a row starts with, and non-ASCII are still
-- the followers' own, and their jobs are seen running.
function TestFleetFollow:test_odd_ids_are_followed_through_the_poll()
  local odd = { 'quote"in id', "back\\slash\\", 'has {"database":"x" inside', "üñï-cødé", "tab\tand,comma]}" }
  local list = {}
  for i, id in ipairs(odd) do
    list[i] = { id = id, source = "src", target = "odd_t" .. i, create_target = true, continuous = true }
  end
  lu.assertEquals(rep:create_many(list).ok_count, #odd)
  local running, n = {}, 0
  for st in rep:follow_many(odd, { interval = 0.1, timeout = 30 }) do
    if st.state == "running" and st.info and not running[st.id] then
      running[st.id], n = true, n + 1
      lu.assertNotNil(st.node, st.id)
      if n == #odd then break end
    end
  end
  for _, id in ipairs(odd) do lu.assertTrue(running[id], id .. " was not seen running") end
  rep:stop_many(odd)
end

os.exit(lu.LuaUnit.run())
