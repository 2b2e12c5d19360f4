-- couch.backup / couch.restore: couchbackup's file format both ways (with the real
-- couchbackup/couchrestore from tests/support/couchbackup on pouchdb-server), full and
-- shallow modes, streams, tasks, resume after kill -9, bad files.
local lu = require "luaunit"
local couch = require "couch"
local ts = require "testserver"
local json = couch.json

local srv = ts.connect()
local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/tests/server/[^/]*$") or "."
local COUCHLUA = arg[-1] or "couchlua"
local CB = ROOT .. "/.deps/couchbackup/node_modules/@cloudant/couchbackup/bin/"

local function tmpname()
  local p = os.tmpname()
  return p
end
local sh_quote = require("node_process").shell_quote
local function read_lines(path)
  local t = {}
  for l in io.lines(path) do t[#t + 1] = l end
  return t
end

-- every document's winning revision, by id, from _all_docs. pouchdb-server gives a
-- restored attachment (new_edits=false) the revpos of the revision written, where CouchDB
-- keeps the one sent: there revpos is not compared.
local function snapshot(db)
  local out = {}
  for _, r in ipairs(db:all_docs { include_docs = true }.rows) do
    out[r.id] = r.doc
    for _, a in pairs(ts.is_pouchdb and r.doc._attachments or {}) do a.revpos = nil end
  end
  return out
end

local function fill(db, n, extra)
  local docs = {}
  for i = 1, n do
    docs[i] = { _id = ("doc%04d"):format(i), n = i, big = 9007199254740993, f = 0.1 + 0.2,
                empty_a = json.array {}, empty_o = json.object {}, s = "é😀" }
  end
  db:bulk_docs(docs)
  if extra then
    -- an edited document (history of 2) and a deleted one
    local d = db:get("doc0001"); d.edited = true; db:put(d)
    local g = db:get("doc0002"); db:delete_doc("doc0002", g._rev)
  end
end

TestBackup = {}
function TestBackup:setUp() self.files = {} end
function TestBackup:tearDown()
  ts.cleanup()
  for _, f in ipairs(self.files) do os.remove(f) end
end
function TestBackup:tmp() local p = tmpname(); self.files[#self.files + 1] = p; return p end

function TestBackup:test_full_round_trip_keeps_revisions_and_values()
  local src, dst = ts.fresh_db(srv, "bk_src"), ts.fresh_db(srv, "bk_dst")
  fill(src, 25, true)
  local file = self:tmp()
  local st = couch.backup { source = src, file = file, buffer_size = 10 }
  -- 24 live documents; the deleted one's tombstone too where _bulk_get without a rev
  -- returns it (CouchDB 3), not where it answers not_found (pouchdb-server)
  lu.assertTrue(st.docs == 24 or st.docs == 25, st.docs)
  lu.assertEquals(st.batches, 3)
  local lines = read_lines(file)
  local meta = json.decode(lines[1])
  lu.assertEquals(meta.mode, "full")
  lu.assertEquals(meta.attachments, false)
  lu.assertTrue(json.is_array(json.decode(lines[2])))
  lu.assertNotNil(json.decode(lines[2])[1]._revisions)
  local rst = couch.restore { file = file, target = dst }
  lu.assertEquals(rst.docs, st.docs)
  lu.assertEquals(snapshot(dst), snapshot(src))
  lu.assertEquals(dst:get("doc0001")._rev, src:get("doc0001")._rev)
end

function TestBackup:test_shallow_round_trip()
  local src, dst = ts.fresh_db(srv, "bk_src"), ts.fresh_db(srv, "bk_dst")
  fill(src, 12)
  local file = self:tmp()
  local st = couch.backup { source = src, file = file, mode = "shallow", buffer_size = 5 }
  lu.assertEquals(st.docs, 12)
  lu.assertEquals(st.batches, 3)
  lu.assertEquals(json.decode(read_lines(file)[1]).mode, "shallow")
  lu.assertNil(json.decode(read_lines(file)[2])[1]._revisions)
  couch.restore { file = file, target = dst }
  lu.assertEquals(snapshot(dst), snapshot(src))
end

function TestBackup:test_io_handles_and_tasks()
  local src, dst = ts.fresh_db(srv, "bk_src"), ts.fresh_db(srv, "bk_dst")
  fill(src, 7)
  local f = io.tmpfile()
  local st
  couch.spawn(function() st = couch.backup { source = src, file = f, buffer_size = 3 } end)
  couch.run()
  lu.assertEquals(st.docs, 7)
  f:seek("set")
  local rst
  couch.spawn(function() rst = couch.restore { file = f, target = dst } end)
  couch.run()
  f:close()
  lu.assertEquals(rst.docs, 7)
  lu.assertEquals(snapshot(dst), snapshot(src))
end

function TestBackup:test_bad_input_is_a_structured_error()
  local dst = ts.fresh_db(srv, "bk_dst")
  local file = self:tmp()
  local f = assert(io.open(file, "w"))
  f:write('{"name":"x","version":"1","mode":"full","attachments":false}\n[{"_id":"a","x":1}]\n[{"_id":"b",\n')
  f:close()
  local ok, err = pcall(couch.restore, { file = file, target = dst })
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "backup")
  lu.assertEquals(err.code, "BackupFileJsonError")
  lu.assertEquals(err.line, 3)
  lu.assertStrContains(tostring(err), "line 3")
  ok, err = pcall(couch.backup, { source = srv:db("couchlua_no_such_db_bk"), file = self:tmp() })
  lu.assertFalse(ok)
  lu.assertEquals(err.status, 404)
  ok, err = pcall(couch.backup, { source = dst, file = "/dev/full" })
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "backup")
  ok, err = pcall(couch.backup, { source = dst, file = self:tmp(), mode = "deep" })
  lu.assertEquals(err.kind, "usage")
  ok, err = pcall(couch.backup, { source = dst, file = self:tmp(), resume = true })
  lu.assertEquals(err.kind, "usage")
end

-- The window kill -9 can hit between writing a batch and logging it: the file has the
-- batch and half of the next, the log has neither ":d". Resume writes each batch once.
function TestBackup:test_resume_after_interruption_between_file_and_log()
  local src, dst = ts.fresh_db(srv, "bk_src"), ts.fresh_db(srv, "bk_dst")
  fill(src, 30)
  local file, log = self:tmp(), self:tmp()
  couch.backup { source = src, file = file, log = log, buffer_size = 10 }
  local lines, loglines = read_lines(file), read_lines(log)
  lu.assertEquals(#lines, 4)
  lu.assertStrContains(loglines[#loglines], ":d batch2")
  -- keep batches 0 and 1 in the file and a cut-off start of batch 2; log :d batch0 only
  local f = assert(io.open(file, "w"))
  f:write(lines[1], "\n", lines[2], "\n", lines[3], "\n", lines[4]:sub(1, 40))
  f:close()
  f = assert(io.open(log, "w"))
  for _, l in ipairs(loglines) do if l ~= ":d batch1" and l ~= ":d batch2" then f:write(l, "\n") end end
  f:close()
  local st = couch.backup { source = src, file = file, log = log, resume = true, buffer_size = 10 }
  lu.assertTrue(st.resumed)
  lu.assertEquals(st.docs, 10)   -- only batch 2
  local rst = couch.restore { file = file, target = dst }
  lu.assertEquals(rst.docs, 30)  -- nothing twice
  lu.assertEquals(snapshot(dst), snapshot(src))
end

local function have_node()
  return os.execute("command -v node >/dev/null 2>&1") == true
end

function TestBackup:test_resume_after_kill_9()
  local src, dst = ts.fresh_db(srv, "bk_src"), ts.fresh_db(srv, "bk_dst")
  fill(src, 60)
  for _, at in ipairs { 1, 2 + math.random(0, 2) } do
    local file, log, script = self:tmp(), self:tmp(), self:tmp()
    local f = assert(io.open(script, "w"))
    -- the child kills itself with SIGKILL after batch `at`
    f:write(([[
local couch = require "couch"
local db = couch.connect(os.getenv("COUCHLUA_TEST_URL")):db(%q)
couch.backup { source = db, file = %q, log = %q, buffer_size = 10, progress = function(s)
  if s.batches == %d then os.execute("kill -9 $PPID") end
end }
]]):format(src.name, file, log, at))
    f:close()
    local ok, how, code = os.execute(sh_quote(COUCHLUA) .. " " .. sh_quote(script) .. " 2>/dev/null")
    lu.assertNotEquals(ok, true)
    lu.assertEquals(code, 137, how)   -- the shell reports 128 + SIGKILL
    local st = couch.backup { source = src, file = file, log = log, resume = true, buffer_size = 10 }
    lu.assertTrue(st.resumed)
    lu.assertEquals(st.docs, 60 - 10 * at)
    local target = ts.fresh_db(srv, "bk_dst")
    lu.assertEquals(couch.restore { file = file, target = target }.docs, 60)
    lu.assertEquals(snapshot(target), snapshot(src))
  end
end

-- interop with IBM's couchbackup / couchrestore (node, pinned in tests/support/couchbackup)
local function couchbackup_ready()
  if not have_node() then lu.skip("node is not installed: couchbackup interop not tested") end
  if ts.kind == "couchdb3fake" or ts.kind == "couchdb3cluster" then lu.skip("the fake CouchDB 3 does not answer couchbackup's requests; interop runs on pouchdb-server and CouchDB") end
  local f = io.open(CB .. "couchbackup.bin.js")
  if not f then error("couchbackup is not installed in .deps/couchbackup: run scripts/setup") end
  f:close()
end

-- pouchdb-server lacks _changes' "pending" and doc_del_count, which couchbackup and
-- couchrestore need: they talk to it through tests/support/couchbackup/shim.js.
local shim_url, shim_keep
local function couch_url()
  if not ts.is_pouchdb then return ts.url end
  if not shim_url then
    local np = require "node_process"
    local port, pipe = np.start("../support/couchbackup/shim.js", sh_quote(ts.url), "the couchbackup shim")
    shim_keep = pipe   -- held open until this process ends
    shim_url = "http://127.0.0.1:" .. port
  end
  return shim_url
end

local function node_tool(tool, db, redirect)
  local cmd = ("COUCH_URL=%s timeout 20 node %s --db %s %s"):format(sh_quote(couch_url()), sh_quote(CB .. tool .. ".bin.js"),
    sh_quote(db.name), redirect)
  local ok, _, code = os.execute(cmd)
  if not ok then
    local errfile = redirect:match("2>'([^']*)'")
    local f = errfile and io.open(errfile)
    local text = f and f:read("a") or ""
    if f then f:close() end
    text = text:gsub("//[^/@%s]*@", "//***@")   -- never a credential in a test's output
    lu.fail(("%s failed (exit %s): %s"):format(tool, tostring(code), text:sub(-600)))
  end
end

function TestBackup:test_couchbackup_file_restores_with_couch_restore()
  couchbackup_ready()
  local src, dst = ts.fresh_db(srv, "bk_src"), ts.fresh_db(srv, "bk_dst")
  fill(src, 20, true)
  local file, err = self:tmp(), self:tmp()
  node_tool("couchbackup", src, "--buffer-size 7 > " .. sh_quote(file) .. " 2>" .. sh_quote(err))
  local st = couch.restore { file = file, target = dst }
  lu.assertEquals(st.docs, 19)   -- the deleted document is not in a couchbackup file
  lu.assertEquals(st.mode, "full")
  lu.assertEquals(snapshot(dst), snapshot(src))
end

-- couchbackup's log resumes with couch.backup: its batches written but not marked done are
-- found in the file, the one never written is fetched, and nothing is there twice.
function TestBackup:test_couchbackup_log_resumes_with_couch_backup()
  couchbackup_ready()
  local src, dst = ts.fresh_db(srv, "bk_src"), ts.fresh_db(srv, "bk_dst")
  fill(src, 20)
  local file, log, err = self:tmp(), self:tmp(), self:tmp()
  os.remove(log)
  node_tool("couchbackup", src, "--buffer-size 7 --parallelism 1 --log " .. sh_quote(log) .. " > " .. sh_quote(file) ..
    " 2>" .. sh_quote(err))
  local lines = read_lines(file)
  lu.assertEquals(#lines, 4)   -- header + 3 batches
  -- as if killed after writing two batches, before marking any done
  local f = assert(io.open(file, "w"))
  f:write(lines[1], "\n", lines[2], "\n", lines[3], "\n")
  f:close()
  local loglines = read_lines(log)
  lu.assertStrContains(loglines[#loglines], ":d batch")
  f = assert(io.open(log, "w"))
  for _, l in ipairs(loglines) do if not l:match("^:d ") then f:write(l, "\n") end end
  f:close()
  local st = couch.backup { source = src, file = file, log = log, resume = true, buffer_size = 7 }
  lu.assertTrue(st.resumed)
  lu.assertEquals(st.batches, 1)
  lu.assertEquals(st.docs, 6)   -- the third batch only
  local rst = couch.restore { file = file, target = dst }
  lu.assertEquals(rst.docs, 20)
  lu.assertEquals(snapshot(dst), snapshot(src))
end

function TestBackup:test_couch_backup_file_restores_with_couchrestore()
  couchbackup_ready()
  local src, dst = ts.fresh_db(srv, "bk_src"), ts.fresh_db(srv, "bk_dst")
  fill(src, 20, true)
  local file, err = self:tmp(), self:tmp()
  couch.backup { source = src, file = file, buffer_size = 7 }
  node_tool("couchrestore", dst, "< " .. sh_quote(file) .. " 2>" .. sh_quote(err))
  lu.assertEquals(snapshot(dst), snapshot(src))
end

-- couchbackup's --attachments (experimental there): its file restores with couch.restore,
-- and couch.backup{ attachments = true } restores with couchrestore --attachments; the
-- attachments' bytes (binary and zero-length) and digests are the same afterwards.
local function fill_attachments(db)
  local bin = {}
  for i = 0, 255 do bin[#bin + 1] = string.char(i) end
  bin = table.concat(bin)
  for i = 1, 6 do
    local r = db:put { _id = ("att%d"):format(i), n = i }
    r = db:put_attachment(("att%d"):format(i), "bin.dat", bin .. tostring(i), "application/octet-stream", r.rev)
    db:put_attachment(("att%d"):format(i), "note.txt", ("note %d\n"):format(i), "text/plain", r.rev)
  end
  db:put { _id = "empty_att", _attachments = { ["e.txt"] = { content_type = "text/plain", data = "" } } }
  db:put { _id = "plain" }
  return bin
end
local function attachment_stubs(db)
  local out = {}
  for _, r in ipairs(db:all_docs { include_docs = true }.rows) do
    for name, a in pairs(r.doc._attachments or {}) do
      out[r.id .. "/" .. name] = { a.digest, a.length, a.content_type }
    end
  end
  return out
end

function TestBackup:test_couchbackup_attachments_restore_with_couch_restore()
  couchbackup_ready()
  local src, dst = ts.fresh_db(srv, "bk_src"), ts.fresh_db(srv, "bk_dst")
  local bin = fill_attachments(src)
  local file, err = self:tmp(), self:tmp()
  node_tool("couchbackup", src, "--attachments --buffer-size 3 > " .. sh_quote(file) .. " 2>" .. sh_quote(err))
  lu.assertEquals(json.decode(read_lines(file)[1]).attachments, true)
  local st = couch.restore { file = file, target = dst }
  lu.assertEquals(st.docs, 8)
  lu.assertEquals(attachment_stubs(dst), attachment_stubs(src))
  lu.assertEquals(dst:get_attachment("att3", "bin.dat"), bin .. "3")
  lu.assertEquals(dst:get_attachment("att5", "note.txt"), "note 5\n")
  lu.assertEquals(dst:get("empty_att")._attachments["e.txt"].length, 0)
  lu.assertEquals(snapshot(dst), snapshot(src))
end

function TestBackup:test_couch_backup_attachments_restore_with_couchrestore()
  couchbackup_ready()
  local src = ts.fresh_db(srv, "bk_src")
  local bin = fill_attachments(src)
  for _, mode in ipairs { "full", "shallow" } do
    local dst = ts.fresh_db(srv, "bk_dst")
    local file, err = self:tmp(), self:tmp()
    couch.backup { source = src, file = file, attachments = true, buffer_size = 3, mode = mode }
    node_tool("couchrestore", dst, "--attachments < " .. sh_quote(file) .. " 2>" .. sh_quote(err))
    lu.assertEquals(attachment_stubs(dst), attachment_stubs(src), mode)
    lu.assertEquals(dst:get_attachment("att2", "bin.dat"), bin .. "2", mode)
    lu.assertEquals(snapshot(dst), snapshot(src), mode)
  end
end

-- A batch whose line reached the file but whose ":d" did not is found by its line's first
-- and last ids, never by one id alone: a document that _changes listed in two batches
-- (edited while the ids were spooled) does not make the other batch look written.
function TestBackup:test_resume_tells_batches_apart_by_their_lines()
  local src, dst = ts.fresh_db(srv, "bk_src"), ts.fresh_db(srv, "bk_dst")
  fill(src, 30)
  local file, log = self:tmp(), self:tmp()
  couch.backup { source = src, file = file, log = log, buffer_size = 10, parallelism = 1, quiet = true }
  local lines, loglines = read_lines(file), read_lines(log)
  -- interrupted after batch 0: batch 2 also lists doc0001 (already in batch 0's line)
  local f = assert(io.open(file, "w"))
  f:write(lines[1], "\n", lines[2], "\n")
  f:close()
  f = assert(io.open(log, "w"))
  for _, l in ipairs(loglines) do
    if l:match("^:t batch2 ") then l = l:gsub("%]$", ',{"id":"doc0001"}]') end
    if l ~= ":d batch1" and l ~= ":d batch2" then f:write(l, "\n") end
  end
  f:close()
  local st = couch.backup { source = src, file = file, log = log, resume = true, quiet = true }
  lu.assertEquals(st.docs, 21)   -- batches 1 and 2 (doc0001 again, as a fresh backup would)
  lu.assertEquals(couch.restore { file = file, target = dst, quiet = true }.docs, 31)
  lu.assertEquals(snapshot(dst), snapshot(src))
end

-- A last line cut right after its "]" (no line break: its resume marker joins it, and
-- restore skips that line) is not counted as written: its batch is fetched again.
function TestBackup:test_resume_refetches_a_line_without_its_line_break()
  local src, dst = ts.fresh_db(srv, "bk_src"), ts.fresh_db(srv, "bk_dst")
  fill(src, 30)
  local file, log = self:tmp(), self:tmp()
  couch.backup { source = src, file = file, log = log, buffer_size = 10, parallelism = 1, quiet = true }
  local lines, loglines = read_lines(file), read_lines(log)
  local f = assert(io.open(file, "w"))
  f:write(lines[1], "\n", lines[2], "\n", lines[3], "\n", lines[4])   -- batch 2 without its "\n"
  f:close()
  f = assert(io.open(log, "w"))
  for _, l in ipairs(loglines) do if l ~= ":d batch2" then f:write(l, "\n") end end
  f:close()
  local st = couch.backup { source = src, file = file, log = log, resume = true, quiet = true }
  lu.assertEquals(st.docs, 10)
  lu.assertEquals(couch.restore { file = file, target = dst, quiet = true }.docs, 30)
  lu.assertEquals(snapshot(dst), snapshot(src))
end

-- Shallow mode reads `parallelism` ranges of _all_docs at once, and still writes its
-- lines in id order: the file is the one a one-at-a-time read writes.
function TestBackup:test_shallow_mode_reads_in_parallel_in_order()
  local src = ts.fresh_db(srv, "bk_src")
  fill(src, 60)
  local one, four = self:tmp(), self:tmp()
  couch.backup { source = src, file = one, mode = "shallow", buffer_size = 5, parallelism = 1, quiet = true }
  local in_flight, most = 0, 0
  local all_docs = src.all_docs
  src.all_docs = function(db, q)   -- counts the documents' reads in flight
    if not (q and q.include_docs) then return all_docs(db, q) end
    in_flight = in_flight + 1
    most = math.max(most, in_flight)
    local ok, res = pcall(all_docs, db, q)
    in_flight = in_flight - 1
    if not ok then error(res, 0) end
    return res
  end
  local st = couch.backup { source = src, file = four, mode = "shallow", buffer_size = 5, parallelism = 4, quiet = true }
  src.all_docs = nil
  lu.assertEquals(st.docs, 60)
  lu.assertEquals(st.batches, 12)
  lu.assertTrue(most > 1, "at most " .. most .. " read at once")
  lu.assertEquals(read_lines(four), read_lines(one))
end

-- A file whose header says attachments were included must hold their data: a stub there
-- is a corrupt file, named by its line, and the restore is never reported complete.
function TestBackup:test_restore_checks_attachments_against_the_header()
  local dst = ts.fresh_db(srv, "bk_dst")
  local file, log = self:tmp(), self:tmp()
  local f = assert(io.open(file, "w"))
  f:write('{"attachments":true,"mode":"full","name":"couchlua","version":"0"}\n',
          '[{"_id":"a","_rev":"1-a","_attachments":{"x.txt":{"content_type":"text/plain","data":"aGk="}}}]\n',
          '[{"_id":"b","_rev":"1-b","_attachments":{"y.txt":{"content_type":"text/plain","stub":true,"length":2,',
          '"digest":"md5-xxx","revpos":1}}}]\n')
  f:close()
  local ok, err = pcall(couch.restore, { file = file, target = dst, log = log, quiet = true })
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "backup")
  lu.assertEquals(err.code, "BackupFileAttachmentsMismatch")
  lu.assertEquals(err.line, 3)
  lu.assertStrContains(tostring(err), "line 3")
  lu.assertStrContains(tostring(err), "y.txt")
  for _, l in ipairs(read_lines(log)) do lu.assertNil(l:match("^:restore_complete"), l) end
  -- and one that says they were not included holds none
  f = assert(io.open(file, "w"))
  f:write('{"attachments":false,"mode":"shallow","name":"couchlua","version":"0"}\n',
          '[{"_id":"c","_rev":"1-c","_attachments":{"z.txt":{"content_type":"text/plain","data":"aGk="}}}]\n')
  f:close()
  ok, err = pcall(couch.restore, { file = file, target = ts.fresh_db(srv, "bk_dst"), quiet = true })
  lu.assertEquals(err.code, "BackupFileAttachmentsMismatch")
  lu.assertEquals(err.line, 2)
  lu.assertStrContains(tostring(err), "not included")
end

os.exit(lu.LuaUnit.run())
