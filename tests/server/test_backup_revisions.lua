-- couch.backup{ revisions = "all" } / couch.restore: a lossless round trip (conflicts,
-- deletions, binary and zero-length attachments, awkward values) gives the same revision
-- trees; the format's header (couchrestore refuses it, a newer version is refused); an
-- interrupted restore (kill -9 at random points, SIGINT) resumes without losing or
-- duplicating anything and is never reported complete before it is.
local lu = require "luaunit"
local couch = require "couch"
local ts = require "testserver"
local json = couch.json

local srv = ts.connect()
local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/tests/server/[^/]*$") or "."
local COUCHLUA = arg[-1] or "couchlua"
local CB = ROOT .. "/.deps/couchbackup/node_modules/@cloudant/couchbackup/bin/"

local sh_quote = require("node_process").shell_quote
local function read_lines(path)
  local t = {}
  for l in io.lines(path) do t[#t + 1] = l end
  return t
end

local base64 = require "b64" -- tests/support/b64.lua

local BINARY = {}
for i = 0, 255 do BINARY[#BINARY + 1] = string.char(i) end
BINARY = table.concat(BINARY) .. "\0\r\n\xff"

-- Every id the database has ever had (deleted ones too), and for each its leaves with
-- their history and attachment stubs (open_revs=all&revs=true), sorted by revision.
local function trees(db)
  local out, since = {}, 0
  while true do
    local res = db:changes { since = since, style = "all_docs", limit = 100 }
    for _, ch in ipairs(res.results) do
      local leaves = db:request("GET", "/" .. couch.doc_path(ch.id), { query = { open_revs = "all", revs = true },
        headers = { Accept = "application/json" } })
      local list = {}
      for _, e in ipairs(leaves) do
        local leaf = assert(e.ok, "a leaf that cannot be read")
        -- pouchdb-server gives an attachment written with new_edits=false the revpos of
        -- the revision written; CouchDB (and the fake) keep the one sent
        for _, a in pairs(ts.is_pouchdb and leaf._attachments or {}) do a.revpos = nil end
        list[#list + 1] = leaf
      end
      table.sort(list, function(a, b) return a._rev < b._rev end)
      out[ch.id] = list
    end
    if #res.results < 100 then break end
    since = res.results[#res.results].seq
  end
  return out
end

local function count_leaves(t)
  local n, deleted, conflicted = 0, 0, 0
  for _, leaves in pairs(t) do
    n = n + #leaves
    local live = 0
    for _, l in ipairs(leaves) do if l._deleted then deleted = deleted + 1 else live = live + 1 end end
    if live > 1 then conflicted = conflicted + 1 end
  end
  return n, deleted, conflicted
end

local SURROGATE = json.decode([["lone \ud800 and \udc00 halves"]])

-- n plain documents, plus every shape a revision tree can take
local function fill(db, n)
  local docs = {}
  for i = 1, n do
    docs[#docs + 1] = { _id = ("doc%04d"):format(i), n = i, big = 9007199254740993, f = 0.30000000000000004,
                        tiny = 1.2345678901234567e-300, empty_a = json.array {}, empty_o = json.object {},
                        nested = { json.array {}, json.object {}, { json.array { json.object {} } } },
                        s = SURROGATE, u = "é😀\u{2028}" }
  end
  db:bulk_docs(docs)
  -- an edited document (history of 3) and a deleted one
  local d = db:get("doc0001"); d.edited = 1; db:put(d); d.edited = 2; db:put(d)
  local g = db:get("doc0002"); db:delete_doc("doc0002", g._rev)
  -- a conflict with three branches, one of them deleted, as replication writes them
  db:bulk_docs({
    { _id = "conflicted", _rev = "2-bbbb", v = "b", _revisions = { start = 2, ids = { "bbbb", "aaaa" } } },
    { _id = "conflicted", _rev = "3-cccc", v = "c", _revisions = { start = 3, ids = { "cccc", "c2c2", "aaaa" } } },
    { _id = "conflicted", _rev = "2-dddd", _deleted = true, _revisions = { start = 2, ids = { "dddd", "aaaa" } } },
  }, { new_edits = false })
  -- attachments: binary, zero-length, text; one on a conflicting branch
  db:put { _id = "files", _attachments = {
    ["bin.dat"] = { content_type = "application/octet-stream", data = base64(BINARY) },
    ["empty.txt"] = { content_type = "text/plain", data = "" },
    ["hello.txt"] = { content_type = "text/plain", data = base64("hello\n") } } }
  db:bulk_docs({
    { _id = "files_conflict", _rev = "1-eeee", _attachments = { ["a.bin"] = { content_type = "application/octet-stream",
      data = base64("\0\1\2") } } },
    { _id = "files_conflict", _rev = "1-ffff", _attachments = { ["b.txt"] = { content_type = "text/plain",
      data = base64("other branch") } } },
  }, { new_edits = false })
  -- an attachment added by a later revision (revpos 2)
  local r = db:put { _id = "later_att", v = 1 }
  db:put_attachment("later_att", "x.bin", "\1\2\0", "application/octet-stream", r.rev)
  -- a design document and a deleted document that had a conflict
  db:put { _id = "_design/app", views = { by_n = { map = "function (doc) { emit(doc.n) }" } } }
  db:bulk_docs({ { _id = "gone", _rev = "1-1111", x = 1 }, { _id = "gone", _rev = "2-2222", _deleted = true,
    _revisions = { start = 2, ids = { "2222", "1111" } } } }, { new_edits = false })
end

TestRevisions = {}
function TestRevisions:setUp() self.files = {} end
function TestRevisions:tearDown()
  ts.cleanup()
  for _, f in ipairs(self.files) do os.remove(f) end
end
function TestRevisions:tmp() local p = os.tmpname(); self.files[#self.files + 1] = p; return p end

function TestRevisions:test_round_trip_reproduces_revision_trees()
  local src, dst = ts.fresh_db(srv, "rv_src"), ts.fresh_db(srv, "rv_dst")
  fill(src, 40)
  local before = trees(src)
  local leaves, deleted, conflicted = count_leaves(before)
  lu.assertTrue(deleted >= 3 and conflicted >= 2, ("the fixture lacks shapes: %d deleted, %d conflicted"):format(deleted, conflicted))
  local file = self:tmp()
  local st = couch.backup { source = src, file = file, revisions = "all", buffer_size = 7, parallelism = 3 }
  lu.assertEquals(st.docs, leaves)          -- one document in the file per leaf
  lu.assertEquals(st.revisions, "all")
  local lines = read_lines(file)
  local head = json.decode(lines[1])
  lu.assertEquals(head.format, "couchlua-all-revisions")
  lu.assertEquals(head.format_version, 1)
  lu.assertNil(head.mode)                   -- so that couchrestore refuses the file
  for i = 2, #lines - 1 do lu.assertTrue(json.is_array(json.decode(lines[i])), "line " .. i) end
  lu.assertEquals(lines[#lines], '{"end":"couchlua-all-revisions"}')

  local rs = couch.restore { file = file, target = dst, buffer_size = 5, parallelism = 4 }
  lu.assertEquals(rs.docs, leaves)
  lu.assertEquals(rs.revisions, "all")
  lu.assertTrue(rs.complete)
  local after = trees(dst)
  lu.assertEquals(after, before)
  -- the values a user would look at, read back from the restored database
  local d = dst:get("doc0007")
  lu.assertEquals(math.type(d.big), "integer")
  lu.assertEquals(json.encode(d.big), json.encode(src:get("doc0007").big))
  lu.assertEquals(d.f, 0.30000000000000004)
  lu.assertEquals(d.tiny, 1.2345678901234567e-300)
  lu.assertEquals(json.encode(d.empty_a) .. json.encode(d.empty_o), "[]{}")
  lu.assertEquals(json.encode(d.nested), "[[],{},[[{}]]]")
  lu.assertEquals(d.s, src:get("doc0007").s)
  lu.assertEquals(dst:get_attachment("files", "bin.dat"), BINARY)
  local empty = dst:get("files")._attachments["empty.txt"]
  lu.assertEquals(empty.length, 0)
  lu.assertEquals(empty.digest, src:get("files")._attachments["empty.txt"].digest)
  lu.assertEquals(#dst:get("conflicted", { conflicts = true })._conflicts, 1)
  lu.assertEquals(dst:get("conflicted")._rev, "3-cccc")
  local ok, err = pcall(dst.get, dst, "gone")
  lu.assertFalse(ok); lu.assertEquals(err.status, 404)
  lu.assertEquals(dst:info().doc_count, src:info().doc_count)
  lu.assertEquals(dst:info().doc_del_count, src:info().doc_del_count)

  -- restoring the same file again changes nothing (new_edits = false is idempotent)
  couch.restore { file = file, target = dst }
  lu.assertEquals(trees(dst), before)
end

function TestRevisions:test_resumed_all_revisions_backup_with_log()
  local src, dst = ts.fresh_db(srv, "rv_src"), ts.fresh_db(srv, "rv_dst")
  fill(src, 25)
  local before = trees(src)
  local file, log = self:tmp(), self:tmp()
  couch.backup { source = src, file = file, log = log, revisions = "all", buffer_size = 10, parallelism = 1 }
  local lines, loglines = read_lines(file), read_lines(log)
  lu.assertStrContains(loglines[1], '"revs":[')
  -- as if killed in the middle of the third line, with two batches marked done
  local f = assert(io.open(file, "w"))
  f:write(lines[1], "\n", lines[2], "\n", lines[3], "\n", lines[4]:sub(1, 30))
  f:close()
  f = assert(io.open(log, "w"))
  local kept = 0
  for _, l in ipairs(loglines) do
    if l:match("^:d ") then kept = kept + 1 end
    if not l:match("^:d ") or kept <= 2 then f:write(l, "\n") end
  end
  f:close()
  -- resuming it as a winning-revisions backup is refused: the file is the other format
  local ok, err = pcall(couch.backup, { source = src, file = file, log = log, resume = true, buffer_size = 10 })
  lu.assertFalse(ok); lu.assertEquals(err.kind, "usage"); lu.assertEquals(err.argument, "revisions")
  local st = couch.backup { source = src, file = file, log = log, resume = true, revisions = "all", buffer_size = 10 }
  lu.assertTrue(st.resumed)
  lu.assertTrue(st.batches >= 1)
  couch.restore { file = file, target = dst }
  lu.assertEquals(trees(dst), before)
end

function TestRevisions:test_newer_or_unknown_format_is_refused()
  local dst = ts.fresh_db(srv, "rv_dst")
  local file = self:tmp()
  local function try(head)
    local f = assert(io.open(file, "w"))
    f:write(head, '\n[{"_id":"a","_rev":"1-aaaa"}]\n')
    f:close()
    return pcall(couch.restore, { file = file, target = dst })
  end
  local ok, err = try('{"attachments":true,"format":"couchlua-all-revisions","format_version":2,"name":"couchlua","revisions":"all","version":"9.0.0"}')
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "backup")
  lu.assertEquals(err.code, "BackupFormatTooNew")
  lu.assertEquals(err.line, 1)
  lu.assertStrContains(tostring(err), "format version 2 is newer")
  ok, err = try('{"format":"something-else","format_version":1,"name":"x","version":"1"}')
  lu.assertFalse(ok)
  lu.assertEquals(err.code, "BackupFormatUnknown")
  lu.assertEquals(dst:info().doc_count, 0)   -- nothing was written
  -- a document without _rev in an all-revisions file is corrupt, not a new edit
  local f = assert(io.open(file, "w"))
  f:write('{"attachments":true,"format":"couchlua-all-revisions","format_version":1,"name":"couchlua","revisions":"all","version":"0"}\n',
    '[{"_id":"a"}]\n')
  f:close()
  ok, err = pcall(couch.restore, { file = file, target = dst })
  lu.assertFalse(ok); lu.assertEquals(err.code, "BackupFileJsonError"); lu.assertEquals(err.line, 2)
  lu.assertEquals(dst:info().doc_count, 0)
end

-- An all-revisions file ends with its end line: one cut at a line boundary (a backup
-- killed without a log, a partial copy) is refused at its end, the restore not complete.
function TestRevisions:test_a_file_cut_at_a_line_boundary_is_incomplete()
  local src, dst = ts.fresh_db(srv, "rv_src"), ts.fresh_db(srv, "rv_dst")
  fill(src, 30)
  local file, cut, log = self:tmp(), self:tmp(), self:tmp()
  couch.backup { source = src, file = file, revisions = "all", buffer_size = 10 }
  local lines = read_lines(file)
  lu.assertEquals(lines[#lines], '{"end":"couchlua-all-revisions"}')
  local f = assert(io.open(cut, "w"))
  for i = 1, #lines - 2 do f:write(lines[i], "\n") end
  f:close()
  local ok, err = pcall(couch.restore, { file = cut, target = dst, log = log })
  lu.assertFalse(ok)
  lu.assertEquals(err.code, "BackupFileIncomplete")
  lu.assertEquals(err.line, #lines - 2)
  lu.assertStrContains(tostring(err), "without the end line")
  lu.assertNotStrContains(table.concat(read_lines(log), "\n"), ":restore_complete")
end

-- Restore killed with SIGKILL at random points (while other batches are in flight), then
-- resumed from its log: the same trees, nothing twice, and never "complete" until it is.
function TestRevisions:test_restore_resumes_after_kill_9_at_random_points()
  local src = ts.fresh_db(srv, "rv_src")
  fill(src, 120)
  local before = trees(src)
  local leaves = count_leaves(before)
  local file = self:tmp()
  couch.backup { source = src, file = file, revisions = "all", buffer_size = 10 }
  local nbatches = math.ceil(leaves / 10)
  local seed = os.time()
  math.randomseed(seed)
  for _, at in ipairs { 1, math.random(2, nbatches // 2), math.random(nbatches // 2 + 1, nbatches - 1) } do
    local dst = ts.fresh_db(srv, "rv_dst")
    local log, script = self:tmp(), self:tmp()
    local f = assert(io.open(script, "w"))
    f:write(([[
local couch = require "couch"
local db = couch.connect(os.getenv("COUCHLUA_TEST_URL")):db(%q)
couch.restore { target = db, file = %q, log = %q, buffer_size = 10, parallelism = 4, progress = function(s)
  if s.batches == %d then os.execute("kill -9 $PPID") end
end }
]]):format(dst.name, file, log, at))
    f:close()
    local ok, _, code = os.execute(sh_quote(COUCHLUA) .. " " .. sh_quote(script) .. " 2>/dev/null")
    lu.assertNotEquals(ok, true)
    lu.assertEquals(code, 137, ("seed %d, killed at batch %d"):format(seed, at))
    local text = table.concat(read_lines(log), "\n")
    lu.assertNotStrContains(text, ":restore_complete")
    local st = couch.restore { target = dst, file = file, log = log, resume = true, buffer_size = 10 }
    lu.assertTrue(st.resumed)
    lu.assertTrue(st.complete)
    -- it continued: what the killed run finished (at most `at` batches of 10) is not sent again
    lu.assertTrue(st.skipped <= 10 * at, ("skipped %d at %d"):format(st.skipped, at))
    if at >= 3 then lu.assertTrue(st.skipped > 0, ("nothing skipped after %d batches"):format(at)) end
    lu.assertEquals(st.docs + st.skipped, leaves)   -- each leaf counted once
    lu.assertStrContains(read_lines(log)[#read_lines(log)], ":restore_complete " .. leaves)
    lu.assertEquals(trees(dst), before, ("seed %d, killed at batch %d"):format(seed, at))
    lu.assertEquals(dst:info().doc_count, src:info().doc_count)
    -- resuming a finished restore writes nothing
    local again = couch.restore { target = dst, file = file, log = log, resume = true }
    lu.assertTrue(again.complete)
    lu.assertEquals(again.docs, 0)
  end
end

-- Ctrl-C (SIGINT) in the middle: exit 130, the log not complete, the resume finishes it.
function TestRevisions:test_restore_interrupted_by_sigint_resumes()
  local src, dst = ts.fresh_db(srv, "rv_src"), ts.fresh_db(srv, "rv_dst")
  fill(src, 60)
  local before = trees(src)
  local file, log, script = self:tmp(), self:tmp(), self:tmp()
  couch.backup { source = src, file = file, revisions = "all", buffer_size = 10 }
  local f = assert(io.open(script, "w"))
  f:write(([[
local couch = require "couch"
local db = couch.connect(os.getenv("COUCHLUA_TEST_URL")):db(%q)
couch.restore { target = db, file = %q, log = %q, buffer_size = 10, parallelism = 2, progress = function(s)
  if s.batches == 2 then
    -- as Ctrl-C at a terminal: not from os.execute itself (system() ignores SIGINT)
    os.execute("(sleep 0.2; kill -INT $PPID) &")
    local t = os.clock()
    while os.clock() - t < 20 do end   -- a busy batch: Ctrl-C stops it (long before 20 s)
  end
end }
print("reported done")
]]):format(dst.name, file, log))
  f:close()
  local out = io.popen(sh_quote(COUCHLUA) .. " " .. sh_quote(script) .. " 2>/dev/null; echo \"exit $?\"")
  local text = out:read("a")
  out:close()
  lu.assertStrContains(text, "exit 130")
  lu.assertNotStrContains(text, "reported done")
  lu.assertNotStrContains(table.concat(read_lines(log), "\n"), ":restore_complete")
  local st = couch.restore { target = dst, file = file, log = log, resume = true }
  lu.assertTrue(st.complete)
  lu.assertEquals(trees(dst), before)
end

-- couchrestore (the real one) does not restore an all-revisions file: it stops at line 1
-- with its BackupFileJsonError, having written nothing.
function TestRevisions:test_couchrestore_refuses_the_all_revisions_format()
  if os.execute("command -v node >/dev/null 2>&1") ~= true then lu.skip("node is not installed: couchrestore not tested") end
  if not ts.is_pouchdb then lu.skip("couchrestore runs on pouchdb-server here (the fake does not answer its requests)") end
  local src, dst = ts.fresh_db(srv, "rv_src"), ts.fresh_db(srv, "rv_dst")
  fill(src, 5)
  local file, err = self:tmp(), self:tmp()
  couch.backup { source = src, file = file, revisions = "all" }
  local np = require "node_process"
  local port, pipe = np.start("../support/couchbackup/shim.js", sh_quote(ts.url), "the couchbackup shim")
  local cmd = ("COUCH_URL=%s timeout 20 node %s --db %s --attachments < %s 2>%s"):format(
    sh_quote("http://127.0.0.1:" .. port), sh_quote(CB .. "couchrestore.bin.js"), sh_quote(dst.name), sh_quote(file), sh_quote(err))
  local ok, _, code = os.execute(cmd)
  pipe:close()
  lu.assertNotEquals(ok, true)
  lu.assertNotEquals(code, 0)
  local msg = table.concat(read_lines(err), "\n")
  lu.assertStrContains(msg, "line 1")
  lu.assertEquals(dst:info().doc_count, 0)
end

os.exit(lu.LuaUnit.run())
