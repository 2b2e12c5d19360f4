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
  local src = source(6, "stub_attachments", function(doc, i)
    if i % 2 == 0 then
      doc._attachments = { ["a.txt"] = { content_type = "text/plain", data = "YWJj" } }
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

-- Bytes in flight are bounded, not only documents: 12 documents of ~4 MB (a 2 MB field and
-- a 2 MB attachment) in one batch are fetched and written in pieces of about
-- max_batch_bytes (the job's first request, before any estimate of a revision's size, asks
-- for two), and the replicating process's peak RSS stays well under the data's size
-- times the copies a batch makes (measured in a child process: the seeding is not counted).
function TestEngineFaults:test_bytes_in_flight_are_bounded()
  local src = fresh("big")
  src:create()
  local field = ("x"):rep(2 * 1024 * 1024)
  local att = ("eXl5"):rep(699050) -- base64 of 2 MB of "y"
  for i = 1, 12 do
    src:bulk_docs { { _id = ("big%02d"):format(i), field = field,
                      _attachments = { ["a.bin"] = { content_type = "application/octet-stream", data = att } } } }
  end
  field, att = nil, nil
  collectgarbage()
  local tgt = fresh("bigtgt")
  local script = os.tmpname()
  local f = io.open(script, "w")
  f:write(([[
    local couch = require "couch"
    local srv = couch.connect(%q)
    local stats = couch.replicate { source = srv:db(%q), target = srv:db(%q), create_target = true, quiet = true,
                                    max_batch_bytes = 4 * 1024 * 1024 }
    local hwm = io.open("/proc/self/status"):read("a"):match("VmHWM:%%s*(%%d+)")
    print("RESULT", stats.docs_written, stats.doc_write_failures, hwm)
  ]]):format("http://127.0.0.1:" .. port, src.name, tgt.name))
  f:close()
  local before = P:request("GET", "/_faults/stats").bulk_get_bytes_max
  local p = io.popen(("%s %s 2>&1"):format(os.getenv("COUCHLUA") or "couchlua", script))
  local out = p:read("a")
  p:close()
  os.remove(script)
  local written, failures, hwm = out:match("RESULT%s+(%d+)%s+(%d+)%s+(%d+)")
  lu.assertNotNil(written, out)
  lu.assertEquals(tonumber(written), 12)
  lu.assertEquals(tonumber(failures), 0)
  local biggest = P:request("GET", "/_faults/stats").bulk_get_bytes_max
  lu.assertTrue(before < 4 * 1024 * 1024)
  print(("note: peak RSS %d kB for 12 x 4.7 MB documents; biggest _bulk_get answer %d bytes"):format(hwm, biggest))
  lu.assertTrue(biggest <= 2 * 5 * 1024 * 1024, ("a _bulk_get answer of %d bytes"):format(biggest))
  if not os.getenv("COUCHLUA_SANITIZE") then -- ASan's shadow memory and quarantine inflate RSS
    lu.assertTrue(tonumber(hwm) < 100 * 1024, ("peak RSS %s kB"):format(hwm))
  end
  lu.assertEquals(H:count(tgt.name), 12)
end

local rc = lu.LuaUnit.run()
pipe:close()
os.remove(out)
H:stop()
os.exit(rc)
