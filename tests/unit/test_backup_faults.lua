-- couch.backup / couch.restore against tests/fakes/hostile.js (a tiny CouchDB that
-- misbehaves per database): a server without _bulk_get is read with open_revs, every leaf
-- still in the file; a leaf the server cannot give fails the all-revisions backup naming
-- the document (nothing left out silently); a target that answers _bulk_docs wrongly
-- fails the restore, and its log never says complete.
if not pcall(require, "luaunit") then package.path = package.path .. ";/usr/share/lua/5.4/?.lua" end
local here = debug.getinfo(1, "S").source:match("^@(.*)/tests/unit/[^/]*$") or "."
package.path = package.path .. ";" .. here .. "/tests/support/?.lua"
local lu = require "luaunit"
local couch = require "couch"
local json = couch.json
local hostile = require "hostile"
local H = hostile.start()
local srv = couch.connect(H.url, { retries = 1, backoff = 0.05, max_backoff = 0.1, timeout = 10 })

local counter = 0
local function fresh(label)
  counter = counter + 1
  local db = srv:db(("%s_%d"):format(label, counter))
  db:create()
  return db
end

-- 12 documents, one of them with two conflicting leaves
local function source()
  local db = fresh("src")
  local docs = {}
  for i = 1, 12 do docs[i] = { _id = ("doc%02d"):format(i), n = i, big = 9007199254740993 } end
  db:bulk_docs(docs)
  db:bulk_docs({ { _id = "doc03", _rev = "5-zzzz", n = "branch", _revisions = { start = 5, ids = { "zzzz", "yyyy" } } } },
    { new_edits = false })
  return db
end

local function leaves_in(file)
  local seen, n = {}, 0
  local first = true
  for line in io.lines(file) do
    if not first and line:sub(1, 1) == "[" then
      for _, d in ipairs(json.decode(line)) do
        seen[d._id .. " " .. d._rev] = true
        n = n + 1
      end
    end
    first = false
  end
  return seen, n
end

TestBackupFaults = {}
function TestBackupFaults:setUp() self.files = {} end
function TestBackupFaults:tearDown() for _, f in ipairs(self.files) do os.remove(f) end end
function TestBackupFaults:tmp() local p = os.tmpname(); self.files[#self.files + 1] = p; return p end

function TestBackupFaults:test_without_bulk_get_every_leaf_is_read_with_open_revs()
  local src = source()
  H:mode(src.name, "no_bulk_get")
  local file = self:tmp()
  local st = couch.backup { source = src, file = file, revisions = "all", buffer_size = 5 }
  lu.assertEquals(st.docs, 13)
  local seen, n = leaves_in(file)
  lu.assertEquals(n, 13)
  for id, revs in pairs(H:docs(src.name)) do
    for _, rev in ipairs(revs) do lu.assertTrue(seen[id .. " " .. rev], id .. " " .. rev .. " is not in the file") end
  end
  local gets = 0
  for _, r in ipairs(H:log()) do
    if r.db == src.name and r.method == "GET" and r.path:match("/doc%d%d$") then gets = gets + 1 end
  end
  lu.assertEquals(gets, 12)   -- one per document
  -- and it restores into a server that behaves, with both leaves of doc03
  local dst = fresh("dst")
  lu.assertEquals(couch.restore { file = file, target = dst }.docs, 13)
  local want, got = H:docs(src.name), H:docs(dst.name)
  for _, t in pairs { want, got } do for _, revs in pairs(t) do table.sort(revs) end end
  lu.assertEquals(got, want)
end

function TestBackupFaults:test_a_leaf_that_cannot_be_read_fails_the_all_revisions_backup()
  local src = source()
  H:mode(src.name, "missing")   -- {"missing": rev} for ids ending in an odd character code
  local ok, err = pcall(couch.backup, { source = src, file = self:tmp(), revisions = "all", buffer_size = 5 })
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "backup", tostring(err))
  lu.assertEquals(err.code, "FetchError")
  lu.assertStrContains(tostring(err), "could not be read")
  lu.assertNotNil(err.id)
  -- pouchdb-server's flat error shape too
  H:mode(src.name, "flat_errors")
  ok, err = pcall(couch.backup, { source = src, file = self:tmp(), revisions = "all", buffer_size = 5 })
  lu.assertFalse(ok)
  lu.assertEquals(err.code, "FetchError")
end

function TestBackupFaults:test_a_bulk_get_answer_that_is_not_json_is_a_structured_error()
  local src = source()
  H:mode(src.name, "bulk_get_truncated")
  local ok, err = pcall(couch.backup, { source = src, file = self:tmp(), revisions = "all" })
  lu.assertFalse(ok)
  lu.assertTrue(couch.is_error(err), tostring(err))
  lu.assertEquals(err.code, "FetchError")
end

function TestBackupFaults:test_a_target_that_fails_writes_is_never_reported_complete()
  local src = source()
  local file, log = self:tmp(), self:tmp()
  couch.backup { source = src, file = file, revisions = "all", buffer_size = 5 }
  local dst = fresh("dst")
  H:mode(dst.name, "bulk_docs_500")
  local ok, err = pcall(couch.restore, { file = file, target = dst, log = log })
  lu.assertFalse(ok)
  lu.assertEquals(err.status, 500, tostring(err))
  local text = table.concat((function() local t = {} for l in io.lines(log) do t[#t + 1] = l end return t end)(), "\n")
  lu.assertNotStrContains(text, ":restore_complete")
  -- the server behaves again: the resume finishes it
  H:mode(dst.name, "normal")
  local st = couch.restore { file = file, target = dst, log = log, resume = true }
  lu.assertTrue(st.complete)
  lu.assertEquals(st.docs + st.skipped, 13)
  lu.assertEquals(H:count(dst.name), 12)
end

-- job:cancel() ends a job whose request hangs (a body that never ends): nothing was
-- written yet, the job is cancelled and wait() gives its stats
function TestBackupFaults:test_cancel_ends_a_job_stuck_in_a_request()
  local src = source()
  H:mode(src.name, "endless_body")
  local job = couch.backup_job { source = src, file = self:tmp(), quiet = true }
  couch.sleep(0.2)
  lu.assertEquals(job.state, "running")
  job:cancel()
  local st = job:wait(30)   -- a guard against a hang, not a timing
  lu.assertEquals(job.state, "cancelled")
  lu.assertEquals(st.docs, 0)
  H:mode(src.name, "normal")
end

local rc = lu.LuaUnit.run()
H:stop()
os.exit(rc)
