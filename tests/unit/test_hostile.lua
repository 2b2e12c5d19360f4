-- Against tests/fakes/hostile.js, a CouchDB that misbehaves on purpose (one way per
-- database): every misbehaviour ends in a structured error (kind, status, a url without
-- credentials) or a correct result, within a bounded time, and no document is ever
-- reported written that is not on the target (counted on the target itself).
if not pcall(require, "luaunit") then package.path = package.path .. ";/usr/share/lua/5.4/?.lua" end
local here = debug.getinfo(1, "S").source:match("^@(.*)/tests/unit/[^/]*$") or "."
package.path = package.path .. ";" .. here .. "/tests/support/?.lua"
local lu = require "luaunit"
local couch = require "couch"
local hostile = require "hostile"

local H = hostile.start()
local SECRET = "s3cret-pw"
-- credentials in the URL: they must never show in an error
local srv = couch.connect(("http://admin:%s@127.0.0.1:%d"):format(SECRET, H.port),
  { retries = 1, backoff = 0.05, max_backoff = 0.1, timeout = 5 })

local counter = 0
local function fresh(label)
  counter = counter + 1
  return ("%s_%d"):format(label, counter)
end

-- A source holding n documents doc01..docNN (created normally, then the mode is set).
local function source(n, mode)
  local db = srv:db(fresh("src"))
  db:create()
  local docs = {}
  for i = 1, n do docs[i] = { _id = ("doc%02d"):format(i), n = i } end
  db:bulk_docs(docs)
  if mode then H:mode(db.name, mode) end
  return db
end

local function target(mode, create)
  local db = srv:db(fresh("tgt"))
  if create then db:create() end
  if mode then H:mode(db.name, mode) end
  return db
end

-- Run a replication with a deadline: ok, stats-or-error, the job, seconds taken.
local function replicate(opts, seconds)
  opts.quiet = true
  local job
  local t0 = couch.now()
  local ok, res = pcall(couch.timeout, seconds or 20, function()
    job = couch.replication(opts)
    return job:wait()
  end)
  if ok then res.errors = job:errors() end
  return ok, res, job, couch.now() - t0
end

-- The error is structured, names the request, and carries no credentials.
local function assert_structured(err, kind, url_part)
  lu.assertTrue(couch.is_error(err), "not a structured error: " .. tostring(err))
  lu.assertEquals(err.kind, kind, tostring(err))
  lu.assertStrContains(err.url or "", url_part, false, tostring(err))
  lu.assertNotStrContains(tostring(err), SECRET)
  lu.assertNotStrContains(err.url, SECRET)
  lu.assertNotStrContains(tostring(err), "attempt to")
  lu.assertNotStrContains(tostring(err), "bad argument")
end

-- What the job says it wrote is on the target.
local function assert_written_on_target(job, tgt)
  local written = job:stats().docs_written
  lu.assertTrue(written <= H:count(tgt.name),
    ("reported %d written, the target holds %d"):format(written, H:count(tgt.name)))
end

TestHostileEngine = {}

-- _bulk_get answering half of what was asked: the rest is fetched again, nothing is lost.
function TestHostileEngine:test_bulk_get_short_answer_loses_nothing()
  local src, tgt = source(20, "bulk_get_short"), target()
  local ok, stats, job = replicate { source = src, target = tgt, create_target = true }
  lu.assertTrue(ok, tostring(stats))
  lu.assertEquals(H:count(tgt.name), 20)
  lu.assertEquals(stats.docs_written, 20)
  lu.assertEquals(stats.doc_write_failures, 0)
  assert_written_on_target(job, tgt)
end

-- Revisions nobody answers (a short _bulk_get, then an empty open_revs) are errors, and
-- the checkpoint stays before them: the next run copies them.
function TestHostileEngine:test_unanswered_revisions_are_errors_and_hold_the_checkpoint()
  local src, tgt = source(20, "bulk_get_short,open_revs_empty"), target()
  local seen = {}
  local ok, stats, job = replicate { source = src, target = tgt, create_target = true,
    on_error = function(doc, err) seen[#seen + 1] = doc._id; lu.assertEquals(err.kind, "replication") end }
  lu.assertTrue(ok, tostring(stats))
  lu.assertEquals(H:count(tgt.name), 10)
  lu.assertEquals(stats.docs_written, 10)
  lu.assertEquals(stats.doc_write_failures, 10)
  lu.assertEquals(#stats.errors, 10)
  lu.assertEquals(#seen, 10)
  lu.assertEquals(stats.errors[1].error, "no_answer")
  assert_written_on_target(job, tgt)
  H:mode(src.name, "normal")
  local ok2, again = replicate { source = src, target = tgt }
  lu.assertTrue(ok2, tostring(again))
  lu.assertEquals(again.docs_written, 10)
  lu.assertEquals(H:count(tgt.name), 20)
end

-- A document answered under another id than asked, or without its _rev, is an error,
-- never a write.
function TestHostileEngine:test_document_under_another_id_or_without_rev_is_an_error()
  for _, mode in ipairs { "bulk_get_other_id", "bulk_get_no_rev" } do
    local src, tgt = source(6, mode), target()
    local ok, stats, job = replicate { source = src, target = tgt, create_target = true }
    lu.assertTrue(ok, tostring(stats))
    lu.assertEquals(H:count(tgt.name), 0, mode)
    lu.assertEquals(stats.docs_written, 0, mode)
    lu.assertEquals(stats.doc_write_failures, 6, mode)
    lu.assertEquals(stats.errors[1].error, "bad_response", mode)
    assert_written_on_target(job, tgt)
    H:mode(src.name, "normal")
    local ok2, again = replicate { source = src, target = tgt }
    lu.assertTrue(ok2, tostring(again))
    lu.assertEquals(again.docs_written, 6, mode)
  end
end

-- {"missing": rev} answers (pouchdb-server's _bulk_get, and open_revs) are counted and
-- reported, and the checkpoint does not pass them.
function TestHostileEngine:test_missing_answers_are_counted_via_bulk_get_and_open_revs()
  for _, mode in ipairs { "missing", "no_bulk_get,missing" } do
    local src, tgt = source(10, mode), target()
    local seen = 0
    local ok, stats, job = replicate { source = src, target = tgt, create_target = true,
      on_error = function(doc) seen = seen + 1; lu.assertStrContains(doc._id, "doc") end }
    lu.assertTrue(ok, tostring(stats))
    lu.assertEquals(stats.docs_written, 5, mode)
    lu.assertEquals(stats.doc_write_failures, 5, mode)
    lu.assertEquals(#stats.errors, 5, mode)
    lu.assertEquals(stats.errors[1].error, "not_found", mode)
    lu.assertEquals(seen, 5, mode)
    lu.assertEquals(H:count(tgt.name), 5, mode)
    assert_written_on_target(job, tgt)
    H:mode(src.name, "normal")
    local ok2, again = replicate { source = src, target = tgt }
    lu.assertTrue(ok2, tostring(again))
    lu.assertEquals(again.docs_written, 5, mode)
    lu.assertEquals(H:count(tgt.name), 10, mode)
  end
end

-- pouchdb-server's error entries name neither id nor rev: each is matched to the
-- revision it answers, which the report names.
function TestHostileEngine:test_error_entries_without_id_or_rev_are_matched_to_the_revision_asked()
  local src, tgt = source(10, "flat_errors"), target()
  local seen = {}
  local ok, stats, job = replicate { source = src, target = tgt, create_target = true,
    on_error = function(doc) seen[doc._id] = doc._rev end }
  lu.assertTrue(ok, tostring(stats))
  lu.assertEquals(stats.docs_written, 5)
  lu.assertEquals(stats.doc_write_failures, 5)
  lu.assertEquals(H:count(tgt.name), 5)
  for _, e in ipairs(stats.errors) do
    lu.assertEquals(e.error, "not_found")
    lu.assertEquals(e.rev, src:get(e.id)._rev)
    lu.assertEquals(seen[e.id], e.rev)
  end
  assert_written_on_target(job, tgt)
end

-- _bulk_get answered with HTML, truncated JSON or nothing: a structured error.
function TestHostileEngine:test_unreadable_bulk_get_answers_are_structured_errors()
  for _, case in ipairs { { "bulk_get_html", "json" }, { "bulk_get_truncated", "json" }, { "bulk_get_empty", "http" } } do
    local src, tgt = source(4, case[1]), target()
    local ok, err, job, took = replicate { source = src, target = tgt, create_target = true }
    lu.assertFalse(ok, case[1])
    assert_structured(err, case[2], "/_bulk_get")
    lu.assertEquals(err.status, 200, case[1])
    lu.assertTrue(took < 15, case[1])
    lu.assertEquals(H:count(tgt.name), 0)
    assert_written_on_target(job, tgt)
  end
end

-- _bulk_docs answered by an object, or by fewer results than documents: an error for the
-- batch, nothing counted written.
function TestHostileEngine:test_bulk_docs_answers_of_the_wrong_shape_are_errors()
  for _, mode in ipairs { "bulk_docs_object", "bulk_docs_short" } do
    local src, tgt = source(8), target(mode, true)
    local ok, err, job = replicate { source = src, target = tgt }
    lu.assertFalse(ok, mode)
    assert_structured(err, "http", "/_bulk_docs")
    lu.assertEquals(err.error, "bad_response", mode)
    lu.assertEquals(err.status, 201, mode)
    lu.assertEquals(job:stats().docs_written, 0, mode)
    assert_written_on_target(job, tgt)
  end
end

-- _changes rows without "changes": a structured error naming _changes.
function TestHostileEngine:test_changes_rows_without_changes()
  local src, tgt = source(3, "changes_no_changes"), target()
  local ok, err = replicate { source = src, target = tgt, create_target = true }
  lu.assertFalse(ok)
  assert_structured(err, "http", "/_changes")
  lu.assertEquals(err.error, "bad_response")
end

-- A replication target behind an http -> https redirect: the 301 and where it points.
function TestHostileEngine:test_replication_target_answering_301()
  local src, tgt = source(3), target("redirect")
  local ok, err = replicate { source = src, target = tgt }
  lu.assertFalse(ok)
  assert_structured(err, "http", "/" .. tgt.name)
  lu.assertEquals(err.status, 301)
  lu.assertStrContains(err.location, "https://127.0.0.1:" .. H.port .. "/" .. tgt.name)
end

-- Plain calls on a 3xx or an empty 2xx: an http error, never nil.
function TestHostileEngine:test_plain_calls_on_redirects_and_empty_answers()
  for _, mode in ipairs { "redirect", "empty" } do
    local db = srv:db(fresh("plain"))
    db:create()
    db:put { _id = "x", v = 1 }
    H:mode(db.name, mode)
    H:mode("_root", mode)
    local doc = { _id = "y", v = 2 }
    for name, call in pairs {
      put = function() return db:put(doc) end,
      get = function() return db:get("x") end,
      bulk_docs = function() return db:bulk_docs { { _id = "z" } } end,
      info = function() return db:info() end,
      server_info = function() return srv:info() end,
    } do
      local ok, err = pcall(call)
      lu.assertFalse(ok, mode .. " " .. name .. " returned " .. tostring(err))
      assert_structured(err, "http", "http://127.0.0.1:" .. H.port .. "/")
      if mode == "redirect" then
        lu.assertEquals(err.status, 301, name)
        lu.assertStrContains(err.location, "https://", false, name)
      else
        lu.assertTrue(err.status >= 200 and err.status < 300, name)
        lu.assertEquals(err.error, "empty_response", name)
      end
    end
    lu.assertNil(doc._rev)
    H:mode("_root", "normal")
  end
end

function TestHostileEngine:test_changes_feed_and_rep_create_on_empty_answers()
  local db = srv:db(fresh("feed"))
  db:create()
  H:mode(db.name, "changes_empty")
  local ok, err = pcall(function() for _ in db:changes_feed { poll = 1 } do end end)
  lu.assertFalse(ok)
  assert_structured(err, "http", "/_changes")
  lu.assertEquals(err.error, "empty_response")
  local rdb = srv:db(fresh("repl"))
  rdb:create()
  H:mode(rdb.name, "empty")
  ok, err = pcall(function()
    return srv:replicator(rdb.name):create { source = "http://127.0.0.1:1/a", target = "http://127.0.0.1:1/b" }
  end)
  lu.assertFalse(ok)
  assert_structured(err, "http", "/" .. rdb.name)
  lu.assertEquals(err.status, 201)
end

-- A failing worker request ends the job at once with the real error, also while an
-- unrelated task is alive (the job must not wait for it, nor hang).
function TestHostileEngine:test_worker_failures_end_the_job_with_the_real_error()
  local other = couch.spawn("unrelated", function() couch.sleep(60) end)
  for _, case in ipairs {
    { target("unauthorized", true), 401, false },
    { target(nil, false), 404, false },  -- missing, no create_target
    { target("bulk_docs_500", true), 500, false },
  } do
    local src = source(30)
    local ok, err, _, took = replicate { source = src, target = case[1], create_target = case[3], batch_size = 5,
                                         concurrency = 2 }
    lu.assertFalse(ok)
    assert_structured(err, "http", "/" .. case[1].name)
    lu.assertEquals(err.status, case[2])
    lu.assertTrue(took < 10, ("took %.1fs"):format(took))
  end
  lu.assertEquals(other:status(), "waiting")
  other:cancel()
end

local rc = lu.LuaUnit.run()
H:stop()
os.exit(rc)
