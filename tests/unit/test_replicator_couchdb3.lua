-- The replication surface against a FAKE Apache CouchDB 3 (tests/fakes/fake_couchdb3.js):
-- it plays the states, /_scheduler/*, /_active_tasks and /_replicate exactly as recorded
-- from CouchDB 3.4.3 (tests/fixtures/couchdb-3.4.3), which pouchdb-server does not have.
local lu = require "luaunit"
local couch = require "couch"
local fake = require "fake_couchdb3"

local f, srv, rep

local function seed(name, n)
  local db = srv:db(name)
  db:create { exist_ok = true }
  local docs = {}
  for i = 1, n do docs[i] = { _id = ("d%03d"):format(i), i = i } end
  db:bulk_docs(docs)
  return db
end

local counter = 0
local function fresh(label)
  counter = counter + 1
  return ("%s_%d"):format(label, counter)
end

TestCouchDB3 = {}

function TestCouchDB3:setUp()
  f = fake.start { time_scale = 0.01 }
  srv = couch.connect(f.admin_url)
  rep = srv:replicator()
end

function TestCouchDB3:tearDown() f:stop() end

function TestCouchDB3:test_one_shot_through_its_states_to_completed()
  local src = seed(fresh("src"), 20)
  local id = fresh("oneshot")
  local doc = rep:create { id = id, source = src.name, target = fresh("tgt"), create_target = true }
  -- the database name became a full endpoint with the credentials in an auth object
  lu.assertStrContains(doc.source.url, f.url)
  lu.assertNotStrContains(doc.source.url, "@")
  lu.assertEquals(doc.source.auth.basic.password, "***", "returned documents are masked")
  local seen = {}
  local last
  for st in rep:follow(id, { interval = 0.05 }) do
    seen[#seen + 1] = st.state
    last = st
  end
  lu.assertEquals(last.state, "completed")
  lu.assertEquals(last._replication_state, "completed")
  lu.assertEquals(last._replication_stats.docs_written, 20)
  lu.assertEquals(seen[#seen], "completed")
  -- the scheduler's view is merged in
  local st = rep:state(id)
  lu.assertEquals(st.state, "completed")
  lu.assertNotNil(st.info)
  lu.assertEquals(st.info.docs_written, 20)
end

function TestCouchDB3:test_unreachable_source_is_crashing_with_an_error_count()
  local id = fresh("unreach")
  rep:create { id = id, source = "http://127.0.0.1:9/nope", target = fresh("tgt"), create_target = true }
  local st
  local deadline = couch.now() + 10
  repeat
    couch.sleep(0.05)
    st = rep:state(id)
  until st.state == "crashing" or couch.now() > deadline
  lu.assertEquals(st.state, "crashing")
  lu.assertTrue(st.error_count >= 1)
  lu.assertStrContains(st.info.error, "127.0.0.1:9")
  lu.assertStrContains(tostring(st), "crashing")
end

function TestCouchDB3:test_missing_filter_is_error_and_duplicate_is_failed()
  local src = seed(fresh("src"), 5)
  local tgt = fresh("tgt")
  local bad = fresh("badfilter")
  rep:create { id = bad, source = src.name, target = tgt, create_target = true, filter = "nope/nothing" }
  local first = fresh("first")
  rep:create { id = first, source = src.name, target = tgt, create_target = true, continuous = true }
  local deadline = couch.now() + 10
  repeat couch.sleep(0.05) until rep:state(first).state == "running" or couch.now() > deadline
  local dup = fresh("dup")
  rep:create { id = dup, source = src.name, target = tgt, create_target = true, continuous = true }
  local final = rep:wait(dup, { timeout = 10, interval = 0.05 })
  lu.assertEquals(final.state, "failed")
  lu.assertEquals(final._replication_state, "failed")
  lu.assertIsString(final._replication_state_reason)
  repeat couch.sleep(0.05) until rep:state(bad).state == "error" or couch.now() > deadline
  lu.assertEquals(rep:state(bad).state, "error")
  rep:stop(first)
end

function TestCouchDB3:test_pending_when_max_jobs_is_reached()
  f:stop()
  f = fake.start { time_scale = 0.01, max_jobs = 1 }
  srv = couch.connect(f.admin_url)
  rep = srv:replicator()
  local src = seed(fresh("src"), 3)
  local ids = {}
  for i = 1, 3 do
    ids[i] = fresh("cont")
    rep:create { id = ids[i], source = src.name, target = fresh("tgt"), create_target = true, continuous = true }
  end
  couch.sleep(0.2)
  local states = {}
  for i = 1, 3 do states[rep:state(ids[i]).state] = (states[rep:state(ids[i]).state] or 0) + 1 end
  lu.assertTrue((states.pending or 0) >= 2, "two of three wait for a slot")
  local pend = srv:scheduler():docs { states = { "pending" } }
  lu.assertTrue(#pend.docs >= 2)
  for _, d in ipairs(pend.docs) do lu.assertEquals(d.state, "pending") end
end

function TestCouchDB3:test_scheduler_docs_jobs_paging_and_errors()
  local src = seed(fresh("src"), 3)
  for i = 1, 5 do
    rep:create { id = fresh("page"), source = src.name, target = fresh("tgt"), create_target = true, continuous = true }
  end
  couch.sleep(0.3)
  local sch = srv:scheduler()
  local page = sch:jobs { limit = 2 }
  lu.assertEquals(#page.jobs, 2)
  lu.assertTrue(page.total_rows >= 5)
  local all = {}
  for j in sch:jobs_iter { page_size = 2 } do all[#all + 1] = j.id end
  lu.assertEquals(#all, page.total_rows)
  lu.assertNil(sch:job(all[1]).state, "jobs carry no state field (as recorded)")
  lu.assertEquals(sch:job(all[1]).id, all[1])
  local n = 0
  for d in sch:docs_iter { page_size = 2, db = "_replicator" } do n = n + 1; lu.assertIsString(d.state) end
  lu.assertTrue(n >= 5)
  local ok, err = pcall(sch.job, sch, "nosuchjob")
  lu.assertEquals(err.kind, "not_found")
  ok, err = pcall(sch.docs, sch, { states = { "bogus" } })
  lu.assertFalse(ok)
  lu.assertEquals(err.status, 400)
  lu.assertEquals(sch:doc(all and rep:list()[1].id).doc_id, rep:list()[1].id)
end

function TestCouchDB3:test_active_tasks_and_redaction()
  local src = seed(fresh("src"), 3)
  rep:create { id = fresh("task"), source = f:endpoint(src.name), target = fresh("tgt"), create_target = true, continuous = true }
  couch.sleep(0.3)
  local tasks = srv:active_tasks { type = "replication" }
  lu.assertTrue(#tasks >= 1)
  for _, t in ipairs(tasks) do
    lu.assertEquals(t.type, "replication")
    lu.assertNotStrContains(t.source, f.password)
    lu.assertNotNil(t.docs_written)
  end
  -- CouchDB hands the password back in clear to an admin; we never do
  for _, st in ipairs(rep:list()) do
    lu.assertNotStrContains(couch.json.encode(st.doc), ":" .. f.password .. "@")
    lu.assertNotStrContains(couch.json.encode(st.doc), '"' .. f.password .. '"')
  end
end

function TestCouchDB3:test_replicate_one_shot_continuous_and_cancel()
  local src = seed(fresh("src"), 7)
  local tgt = fresh("tgt")
  local res = srv:replicate { source = src.name, target = tgt, create_target = true }
  lu.assertTrue(res.ok)
  lu.assertIsString(res.session_id)
  lu.assertEquals(res.history[1].docs_written, 7)
  lu.assertTrue(srv:replicate { source = src.name, target = tgt }.no_changes)
  local cont = srv:replicate { source = src.name, target = tgt, continuous = true }
  lu.assertIsString(cont.id)
  local jobs = srv:scheduler():jobs()
  local found = false
  for _, j in ipairs(jobs.jobs) do if j.id == cont.id then found = true; lu.assertEquals(j.database, couch.json.null) end end
  lu.assertTrue(found, "a transient job shows in /_scheduler/jobs")
  lu.assertTrue(srv:cancel_replication(cont.id).ok)
  local ok, err = pcall(srv.cancel_replication, srv, cont.id)
  lu.assertFalse(ok)
  lu.assertEquals(err.status, 404)
  ok, err = pcall(srv.replicate, srv, { source = "missing_db_x", target = tgt })
  lu.assertFalse(ok)
  lu.assertEquals(err.status, 500)
  lu.assertEquals(err.error, "db_not_found")
end

function TestCouchDB3:test_every_option_reaches_the_document_as_given()
  local src = seed(fresh("src"), 2)
  local id = fresh("opts")
  local opts = {
    id = id, source = src.name, target = fresh("tgt"), create_target = true, continuous = true,
    selector = { i = { ["$gt"] = 0 } }, since_seq = "0", checkpoint_interval = 5000, use_checkpoints = true,
    worker_processes = 2, worker_batch_size = 100, batch_timeout = 1000, http_connections = 5,
    connection_timeout = 30000, retries_per_request = 3, socket_options = "[{keepalive, true}]",
    source_proxy = "http://proxy.example:3128", target_proxy = "http://proxy.example:3128",
    user_ctx = { name = "admin", roles = { "_admin" } }, winning_revs_only = true,
    extra = { custom_field = "kept" }, -- fields couchlua does not know go through `extra`
  }
  rep:create(opts)
  local doc = srv:db("_replicator"):get(id)
  for k, v in pairs(opts) do
    if k ~= "id" and k ~= "source" and k ~= "target" and k ~= "extra" then
      lu.assertEquals(couch.json.encode(doc[k], { sort_keys = true }), couch.json.encode(v, { sort_keys = true }), k)
    end
  end
  lu.assertEquals(doc.custom_field, "kept")
  lu.assertNil(doc.extra)
  lu.assertEquals(doc.source.url, f.url .. "/" .. src.name)
  lu.assertEquals(doc.source.auth.basic.username, "admin")
  rep:stop(id)
  local filtered = fresh("filt")
  rep:create { id = filtered, source = src.name, target = fresh("tgt"), filter = "app/by_i",
               query_params = { min = 1 }, doc_ids = nil }
  lu.assertEquals(srv:db("_replicator"):get(filtered).query_params.min, 1)
  local ids = fresh("ids")
  rep:create { id = ids, source = src.name, target = fresh("tgt"), doc_ids = { "d001" } }
  lu.assertEquals(srv:db("_replicator"):get(ids).doc_ids, { "d001" })
end

-- ONE changes feed and ONE /_scheduler/docs request per interval feed every follower.
function TestCouchDB3:test_many_followers_share_one_feed_and_one_poll()
  local src = seed(fresh("src"), 5)
  local n = 40
  local ids = {}
  for i = 1, n do ids[i] = fresh("many") end
  local list = {}
  for i = 1, n do list[i] = { id = ids[i], source = src.name, target = fresh("tgt"), create_target = true } end
  f:freeze()
  local res = rep:create_many(list)
  for i = 1, n do lu.assertTrue(res[i].ok) end
  local before = srv:stats().requests
  local tasks = {}
  for i = 1, n do tasks[i] = couch.spawn(function() return rep:wait(ids[i], { interval = 0.1 }).state end) end
  couch.sleep(0.3)
  f:thaw()
  local states = couch.all(tasks)
  for i = 1, n do lu.assertEquals(states[i], "completed") end
  local used = srv:stats().requests - before
  -- per follower: one GET of its document and one scheduler read to start; the rest is shared
  print(("note: %d followers to completion with %d requests"):format(n, used))
  lu.assertTrue(used < n * 3 + 40, ("%d requests for %d followers"):format(used, n))
end

os.exit(lu.LuaUnit.run())
