-- The API as python-cloudant users and new users write it: methods called with a dot,
-- python-cloudant's positional calls and endpoint shapes, re-creating a replication whose
-- id exists. Against the FAKE CouchDB 3 (tests/fakes/fake_couchdb3.js), which has
-- /_scheduler and stores replication documents as CouchDB does.
local lu = require "luaunit"
local couch = require "couch"
local fake = require "fake_couchdb3"

local f, srv, rep

TestApiShapes = {}

function TestApiShapes:setUp()
  f = fake.start { time_scale = 0.01 }
  srv = couch.connect(f.admin_url)
  rep = srv:replicator()
  srv:db("src"):create { exist_ok = true }
end

function TestApiShapes:tearDown() f:stop() end

local function usage_error(fn)
  local ok, err = pcall(fn)
  lu.assertFalse(ok)
  lu.assertTrue(couch.is_error(err), "not an error object: " .. tostring(err))
  lu.assertEquals(err.kind, "usage")
  return err
end

function TestApiShapes:test_a_method_called_with_a_dot_says_to_use_a_colon()
  local db, sched = srv:db("src"), srv:scheduler()
  lu.assertStrContains(tostring(usage_error(function() return srv.info() end)), "write srv:info(...)")
  lu.assertStrContains(tostring(usage_error(function() return db.get("a") end)), "write db:get(...)")
  lu.assertStrContains(tostring(usage_error(function() return rep.state("x") end)), "write rep:state(...)")
  lu.assertStrContains(tostring(usage_error(function() return sched.docs() end)), "write sched:docs(...)")
  -- and the colon form still works
  lu.assertEquals(db:info().db_name, "src")
end

-- db:delete() deletes the whole database. Written as a document delete (db:delete(id, rev),
-- as python-cloudant's doc.delete() or other clients' remove(id, rev) read), it used to
-- drop the database and all its documents: any argument is a usage error that points to
-- delete_doc, and the database is still there.
function TestApiShapes:test_db_delete_with_a_document_is_refused()
  local db = srv:db("src")
  local rev = db:put { _id = "keep" }.rev
  local err = usage_error(function() return db:delete("keep", rev) end)
  lu.assertStrContains(tostring(err), "delete_doc")
  lu.assertStrContains(tostring(usage_error(function() return db:delete { _id = "keep", _rev = rev } end)), "delete_doc")
  lu.assertEquals(db:get("keep")._rev, rev)
  lu.assertTrue(db:exists())
  db:delete_doc("keep", rev)
  lu.assertTrue(db:exists())
end

function TestApiShapes:test_python_cloudant_positional_calls()
  for i = 1, 3 do rep:create { id = "p" .. i, source = "src", target = "t" .. i, create_target = true } end
  local sched = srv:scheduler()
  local page = sched:list_docs(2, 0)
  lu.assertEquals(#page.docs, 2)
  lu.assertEquals(#sched:list_docs(10, 2).docs, #sched:list_docs().docs - 2)
  lu.assertNotNil(sched:list_jobs(10, 0).jobs)
  lu.assertEquals(#sched:list_docs { limit = 1 }.docs, 1) -- the table form still works
  usage_error(function() return sched:list_docs("ten") end)
  -- create_replication(source_db, target_db, repl_id, **kwargs)
  local doc = rep:create_replication("src", "t_pos", "positional", { create_target = true })
  lu.assertEquals(doc._id, "positional")
  lu.assertEquals(doc.create_target, true)
  lu.assertStrContains(doc.target.url, "/t_pos")
  usage_error(function() return rep:create_replication("src", "t", "x", { source = "other" }) end)
end

function TestApiShapes:test_python_cloudant_endpoint_auth_becomes_couchdbs()
  rep:create { id = "basic", source = "src", create_target = true,
               target = { url = f.url .. "/t_basic", auth = { username = "admin", password = "pass" } } }
  local stored = srv:db("_replicator"):get("basic")
  lu.assertEquals(stored.target.auth.basic.username, "admin")
  lu.assertEquals(stored.target.auth.basic.password, "pass")
  lu.assertNil(stored.target.auth.username)
  rep:create { id = "iam", source = "src", target = { url = f.url .. "/t_iam", auth = { api_key = "k" } } }
  lu.assertEquals(srv:db("_replicator"):get("iam").target.auth.iam.api_key, "k")
  -- CouchDB's own shape passes unchanged
  rep:create { id = "own", source = "src",
               target = { url = f.url .. "/t_own", auth = { basic = { username = "admin", password = "pass" } } } }
  lu.assertEquals(srv:db("_replicator"):get("own").target.auth.basic.username, "admin")
  -- anything else would be stored verbatim and crash the job as unauthorized
  local err = usage_error(function()
    rep:create { source = "src", target = { url = f.url .. "/t", auth = { token = "x" } } }
  end)
  lu.assertStrContains(tostring(err), "target.auth.token")
  usage_error(function()
    rep:create { source = "src", target = { url = f.url .. "/t", auth = { username = "u" } } }
  end)
  -- the basic-auth replication really runs with those credentials
  lu.assertEquals(rep:wait("basic", { timeout = 10 }).state, "completed")
end

function TestApiShapes:test_a_database_object_is_an_endpoint()
  local doc = rep:create { id = "dbobj", source = srv:db("src"), target = srv:db("t_obj"), create_target = true }
  lu.assertStrContains(doc.source.url, f.url .. "/src")
  lu.assertEquals(rep:wait("dbobj", { timeout = 10 }).state, "completed")
end

function TestApiShapes:test_an_existing_id_is_a_409_that_points_to_replace()
  rep:create { id = "again", source = "src", target = "t_a", create_target = true }
  local ok, err = pcall(rep.create, rep, { id = "again", source = "src", target = "t_b" })
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "http")
  lu.assertEquals(err.status, 409)
  lu.assertStrContains(tostring(err), "rep:replace")
  local doc = rep:replace { id = "again", source = "src", target = "t_b", create_target = true }
  lu.assertStrContains(doc.target.url, "/t_b")
  lu.assertStrContains(srv:db("_replicator"):get("again").target.url, "/t_b")
  -- replace also creates when there is nothing to replace
  rep:replace { id = "fresh", source = "src", target = "t_c", create_target = true }
  lu.assertEquals(rep:wait("fresh", { timeout = 10 }).state, "completed")
end

function TestApiShapes:test_a_misspelt_or_mistyped_option_is_a_usage_error()
  local err = usage_error(function() rep:create { source = "src", target = "t", create_targe = true } end)
  lu.assertStrContains(tostring(err), "bad argument 'create_targe'")
  lu.assertStrContains(tostring(err), "did you mean 'create_target'?")
  err = usage_error(function() rep:create { source = "src", target = "t", continuous = "yes" } end)
  lu.assertStrContains(tostring(err), "bad argument 'continuous': expected a boolean, got string")
  err = usage_error(function() srv:replicate { source = "src", target = "t", contineous = true } end)
  lu.assertStrContains(tostring(err), "did you mean 'continuous'?")
  usage_error(function() rep:create_many { { source = "src", target = "t", doc_id = { "a" } } } end)
  -- nothing was created by the refused calls
  lu.assertEquals(#srv:db("_replicator"):all_docs().rows, 0)
  -- and connect's options too
  err = usage_error(function() couch.connect(f.url, { timout = 5 }) end)
  lu.assertStrContains(tostring(err), "did you mean 'timeout'?")
end

os.exit(lu.LuaUnit.run())
