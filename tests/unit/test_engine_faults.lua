-- The native engine behind tests/fakes/fault_proxy.js (in front of tests/fakes/hostile.js,
-- behaving): a _changes feed that makes no progress ends in a clear error within a bounded
-- time; attachment stubs a target refuses (412 missing_stub) are fetched again with their
-- attachments; the bytes in flight stay bounded by max_batch_bytes.
if not pcall(require, "luaunit") then package.path = package.path .. ";/usr/share/lua/5.4/?.lua" end
local here = debug.getinfo(1, "S").source:match("^@(.*)/tests/unit/[^/]*$") or "."
package.path = package.path .. ";" .. here .. "/tests/support/?.lua"
local lu = require "luaunit"
local couch = require "couch"
local hostile = require "hostile"
local node = require "node_process"

local H = hostile.start()
local port, pipe, out = node.start("fault_proxy.js", node.shell_quote(H.url), "the fault proxy")
local P = couch.connect("http://127.0.0.1:" .. port, { retries = 1, backoff = 0.05, max_backoff = 0.1, timeout = 10 })

local function faults(db, f) P:request("PUT", "/_faults/" .. couch.escape(db), { body = { faults = f } }) end

local counter = 0
local function fresh(label)
  counter = counter + 1
  return P:db(("%s_%d"):format(label, counter))
end

local function source(n, f, extra)
  local db = fresh("src")
  db:create()
  local docs = {}
  for i = 1, n do
    docs[i] = { _id = ("doc%02d"):format(i), n = i }
    if extra then extra(docs[i], i) end
  end
  db:bulk_docs(docs)
  if f then faults(db.name, f) end
  return db
end

local function replicate(opts, seconds)
  opts.quiet = true
  local t0 = couch.now()
  local ok, res = pcall(couch.timeout, seconds or 20, function() return couch.replicate(opts) end)
  return ok, res, couch.now() - t0
end

TestEngineFaults = {}

-- Rows without a seq would reset `since` to nil: a clear error, not an endless copy.
function TestEngineFaults:test_changes_rows_without_seq()
  local src = source(12, "changes_no_seq")
  local ok, err, took = replicate { source = src, target = fresh("tgt"), create_target = true, batch_size = 5 }
  lu.assertFalse(ok)
  lu.assertTrue(couch.is_error(err), tostring(err))
  lu.assertEquals(err.kind, "http", tostring(err))
  lu.assertEquals(err.error, "bad_response")
  lu.assertStrContains(tostring(err), "seq")
  lu.assertStrContains(err.url, "/_changes")
  lu.assertTrue(took < 10)
end

-- A server (or proxy) that ignores `since` answers the same page forever: a clear error.
function TestEngineFaults:test_changes_ignoring_since()
  for _, batch in ipairs { 5, 500 } do
    local src = source(12, "changes_ignore_since")
    local ok, err, took = replicate { source = src, target = fresh("tgt"), create_target = true, batch_size = batch }
    lu.assertFalse(ok, "batch_size " .. batch)
    lu.assertTrue(couch.is_error(err), tostring(err))
    lu.assertEquals(err.kind, "replication", tostring(err))
    lu.assertEquals(err.error, "no_progress")
    lu.assertStrContains(tostring(err), "since")
    lu.assertTrue(took < 10)
  end
end

-- attachments = false into a target without those attachments: CouchDB refuses the whole
-- _bulk_docs with 412 missing_stub; the batch is fetched again with its attachments.
function TestEngineFaults:test_missing_stub_falls_back_to_attachments()
  local data = ("attachment bytes "):rep(10)
  local b64 = couch._base64 and couch._base64(data)
  local src = source(6, "stub_attachments", function(doc, i)
    if i % 2 == 0 then
      doc._attachments = { ["a.txt"] = { content_type = "text/plain", data = b64 or "YWJj" } }
    end
  end)
  local tgt = fresh("tgt")
  tgt:create()
  faults(tgt.name, "missing_stub")
  local ok, stats = replicate { source = src, target = tgt, attachments = false }
  lu.assertTrue(ok, tostring(stats))
  lu.assertEquals(stats.docs_written, 6)
  lu.assertEquals(stats.doc_write_failures, 0)
  lu.assertEquals(H:count(tgt.name), 6)
  local doc = H.control:request("GET", "/" .. tgt.name .. "/doc02")
  lu.assertNotNil(doc._attachments["a.txt"].data, "the attachment arrived with its data")
  lu.assertNil(doc._attachments["a.txt"].stub)
end

local rc = lu.LuaUnit.run()
pipe:close()
os.remove(out)
H:stop()
os.exit(rc)
