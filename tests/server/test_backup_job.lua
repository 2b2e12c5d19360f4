-- couch.backup_job / couch.restore_job: the native engine's job surface for backup and
-- restore (wait, stats while running, errors, cancel then resume, state, tostring, close,
-- a job left to the end of the script, the progress line); and what resume, shallow mode
-- and restore's header check promise.
local lu = require "luaunit"
local couch = require "couch"
local ts = require "testserver"
local json = couch.json

local srv = ts.connect()
local COUCHLUA = arg[-1] or "couchlua"
local sh_quote = require("node_process").shell_quote

local function read_lines(path)
  local t = {}
  for l in io.lines(path) do t[#t + 1] = l end
  return t
end
local function write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function fill(db, n)
  local docs = {}
  for i = 1, n do docs[i] = { _id = ("doc%04d"):format(i), n = i } end
  db:bulk_docs(docs)
end

-- every document of the backup file's lines, by id, with how many times it is there
local function ids_in(file)
  local count, total = {}, 0
  for _, l in ipairs(read_lines(file)) do
    if l:sub(1, 1) == "[" then
      local ok, docs = pcall(json.decode, l)
      if ok then
        for _, d in ipairs(docs) do count[d._id] = (count[d._id] or 0) + 1; total = total + 1 end
      end
    end
  end
  return count, total
end

local function winners(db)
  local out = {}
  for _, r in ipairs(db:all_docs().rows) do out[r.id] = r.value.rev end
  return out
end

-- runs a couchlua script in a child; returns its exit status and its stderr
local function child(self, source)
  local script, err = self:tmp(), self:tmp()
  write_file(script, source)
  local _, _, code = os.execute(sh_quote(COUCHLUA) .. " " .. sh_quote(script) .. " 2>" .. sh_quote(err))
  local f = io.open(err)
  local text = f:read("a")
  f:close()
  return code, text
end

TestBackupJob = {}
function TestBackupJob:setUp() self.files = {} end
function TestBackupJob:tearDown()
  ts.cleanup()
  for _, f in ipairs(self.files) do os.remove(f) end
end
function TestBackupJob:tmp() local p = os.tmpname(); self.files[#self.files + 1] = p; return p end

function TestBackupJob:test_jobs_spawned_and_left_run_to_the_end_of_the_script()
  local src, dst = ts.fresh_db(srv, "bkj_src"), ts.fresh_db(srv, "bkj_dst")
  fill(src, 40)
  local file, file2 = self:tmp(), self:tmp()
  -- the script starts a backup job and ends; a second script starts a restore job and ends
  local code = child(self, ([[
local couch = require "couch"
local db = couch.connect(os.getenv("COUCHLUA_TEST_URL")):db(%q)
local job = couch.backup_job { source = db, file = %q, buffer_size = 7, quiet = true }
print(job.state)
]]):format(src.name, file))
  lu.assertEquals(code, 0)
  local count, total = ids_in(file)
  lu.assertEquals(total, 40)
  lu.assertEquals(count["doc0040"], 1)
  code = child(self, ([[
local couch = require "couch"
local db = couch.connect(os.getenv("COUCHLUA_TEST_URL")):db(%q)
couch.restore_job { target = db, file = %q, buffer_size = 7, quiet = true }
couch.backup_job { source = db, file = %q, quiet = true }  -- in the loop with it, started first
]]):format(dst.name, file, file2))
  lu.assertEquals(code, 0)
  lu.assertEquals(dst:info().doc_count, 40)
  lu.assertEquals(winners(dst), winners(src))
  -- one that fails, left alone, fails the script with its error
  local err
  code, err = child(self, [[
local couch = require "couch"
couch.backup_job { source = couch.connect(os.getenv("COUCHLUA_TEST_URL")):db("couchlua_no_such_db_bkj"),
                   file = os.tmpname(), quiet = true, name = "nightly backup" }
]])
  lu.assertNotEquals(code, 0)
  lu.assertStrContains(err, "404")
end

function TestBackupJob:test_stats_while_running_and_the_job_surface()
  local src = ts.fresh_db(srv, "bkj_src")
  fill(src, 50)
  local file = self:tmp()
  local seen = {}
  local job
  job = couch.backup_job { source = src, file = file, buffer_size = 10, parallelism = 2, name = "nightly",
    progress = function(s)
      seen[#seen + 1] = { state = job.state, docs = job:stats().docs, same = job:stats() == s }
    end }
  lu.assertEquals(job.kind, "backup")
  lu.assertEquals(job.name, "nightly")
  lu.assertEquals(job.state, "starting")
  local live = job:stats()
  local stats = job:wait()
  lu.assertIs(stats, live)              -- the live table is the one wait() returns
  lu.assertEquals(stats.docs, 50)
  lu.assertEquals(job.state, "completed")
  lu.assertTrue(#seen >= 5)
  lu.assertEquals(seen[1].state, "running")
  lu.assertTrue(seen[1].same)
  lu.assertTrue(seen[1].docs > 0 and seen[1].docs < 50)
  lu.assertEquals(#job:errors(), 0)
  lu.assertTrue(json.is_array(job:errors()))
  lu.assertStrMatches(tostring(job), "couch%.backup_job " .. src.name:gsub("%p", "%%%0") .. " %-> .* %(completed, 50 docs%)")
  lu.assertEquals(job:wait(), stats)    -- a finished job waits at once
  -- from the top level, stats while it runs
  local job2 = couch.backup_job { source = src, file = self:tmp(), buffer_size = 5, parallelism = 1, quiet = true }
  local mid
  while job2.state ~= "completed" do
    local d = job2:stats().docs
    if d > 0 and d < 50 then mid = d end
    couch.sleep(0.001)
  end
  lu.assertNotNil(mid)
  lu.assertEquals(job2:wait().docs, 50)
end

-- wait(timeout) gives up with a `timeout` error and the job goes on
function TestBackupJob:test_wait_with_a_timeout()
  local src = ts.fresh_db(srv, "bkj_src")
  fill(src, 20)
  local job = couch.backup_job { source = src, file = self:tmp(), buffer_size = 10, parallelism = 1,
    progress = function(s) if s.batches == 1 then couch.sleep(0.3) end end }
  local ok, err = pcall(job.wait, job, 0.05)
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "timeout")
  lu.assertEquals(job.state, "running")
  lu.assertEquals(job:wait().docs, 20)
  lu.assertEquals(job.state, "completed")
end

function TestBackupJob:test_wait_raises_the_job_error()
  local missing = srv:db("couchlua_no_such_db_bkj")
  local job = couch.backup_job { source = missing, file = self:tmp(), quiet = true }
  local ok, err = pcall(job.wait, job)
  lu.assertFalse(ok)
  lu.assertEquals(err.status, 404)
  lu.assertEquals(job.state, "failed")
  local dst = ts.fresh_db(srv, "bkj_dst")
  local file = self:tmp()
  write_file(file, '{"name":"x","version":"1","mode":"full","attachments":false}\n[{"_id":"a"\n')
  job = couch.restore_job { file = file, target = dst, quiet = true }
  ok, err = pcall(job.wait, job)
  lu.assertEquals(err.code, "BackupFileJsonError")
  lu.assertEquals(err.line, 2)
  lu.assertEquals(job.state, "failed")
  lu.assertFalse(job:stats().complete)
  ok, err = pcall(job.wait)              -- a dot for the colon: a usage error that says so
  lu.assertEquals(err.kind, "usage")
  lu.assertStrContains(tostring(err), "job:wait(")
  -- wrong options fail at once, before any job starts
  ok, err = pcall(couch.backup_job, { source = dst, file = self:tmp(), mode = "deep" })
  lu.assertEquals(err.kind, "usage")
  ok, err = pcall(couch.restore_job, { target = dst, file = file, progress = 3 })
  lu.assertEquals(err.kind, "usage")
end

-- The refused documents of a restore are the job's errors, each with its line.
function TestBackupJob:test_errors_lists_refused_documents()
  local dst = ts.fresh_db(srv, "bkj_dst")
  dst:put { _id = "taken", v = 1 }
  local file = self:tmp()
  write_file(file, '[{"_id":"ok1"},{"_id":"taken","v":2}]\n')   -- no header, no _rev: a conflict
  local job = couch.restore_job { file = file, target = dst, quiet = true }
  local ok, err = pcall(job.wait, job)
  lu.assertFalse(ok)
  lu.assertEquals(err.code, "RestoreError")
  lu.assertEquals(#job:errors(), 1)
  lu.assertEquals(job:errors()[1].id, "taken")
  lu.assertEquals(job:errors()[1].error, "conflict")
  lu.assertEquals(job:errors()[1].line, 1)
end

-- job:cancel() mid-backup leaves a file and a log that resume: every document once.
function TestBackupJob:test_cancel_mid_backup_then_resume_loses_and_duplicates_nothing()
  for _, revisions in ipairs { "winning", "all" } do
    local src, dst = ts.fresh_db(srv, "bkj_src"), ts.fresh_db(srv, "bkj_dst")
    fill(src, 120)
    local file, log = self:tmp(), self:tmp()
    local job
    job = couch.backup_job { source = src, file = file, log = log, buffer_size = 10, parallelism = 3,
      revisions = revisions, progress = function(s) if s.batches == 3 then job:cancel() end end }
    local stats = job:wait()   -- a cancelled job's wait gives its stats
    lu.assertEquals(job.state, "cancelled", revisions)
    lu.assertTrue(stats.docs >= 30 and stats.docs < 120, revisions .. " " .. stats.docs)
    local lines = read_lines(file)
    if revisions == "all" then lu.assertNotEquals(lines[#lines], '{"end":"couchlua-all-revisions"}') end
    -- what was written is marked in the log, no more, no less
    local marked = 0
    for _, l in ipairs(read_lines(log)) do if l:match("^:d batch") then marked = marked + 1 end end
    lu.assertEquals(marked, stats.batches, revisions)
    local rest = couch.backup { source = src, file = file, log = log, resume = true, revisions = revisions, quiet = true }
    lu.assertEquals(stats.docs + rest.docs, 120, revisions)
    local count, total = ids_in(file)
    lu.assertEquals(total, 120, revisions)
    for id, c in pairs(count) do lu.assertEquals(c, 1, id) end
    local rs = couch.restore { file = file, target = dst, quiet = true }
    lu.assertTrue(rs.complete)
    lu.assertEquals(winners(dst), winners(src))
  end
end

-- Cancelled before its batches (while spooling the log), and a to-be-closed job.
function TestBackupJob:test_cancel_early_and_close()
  local src = ts.fresh_db(srv, "bkj_src")
  fill(src, 30)
  local file, log = self:tmp(), self:tmp()
  local job = couch.backup_job { source = src, file = file, log = log, buffer_size = 10, quiet = true }
  job:cancel()                               -- before it starts
  lu.assertEquals(job:wait().docs, 0)
  lu.assertEquals(job.state, "cancelled")
  do
    local j <close> = couch.backup_job { source = src, file = file, log = log, buffer_size = 10, quiet = true }
    job = j
  end
  job:wait()
  lu.assertEquals(job.state, "cancelled")
  -- the backup starts over (its spooling never finished) or resumes: every document once
  local st = couch.backup { source = src, file = file, log = log, resume = true, buffer_size = 10, quiet = true }
  lu.assertTrue(st.resumed)
  local _, total = ids_in(file)
  lu.assertEquals(total, 30)
end

-- job:cancel() mid-restore: not complete; resumed from its log, the database is whole.
function TestBackupJob:test_cancel_mid_restore_then_resume()
  local src, dst = ts.fresh_db(srv, "bkj_src"), ts.fresh_db(srv, "bkj_dst")
  fill(src, 100)
  local file, log = self:tmp(), self:tmp()
  couch.backup { source = src, file = file, buffer_size = 10, quiet = true }
  local job
  job = couch.restore_job { file = file, target = dst, log = log, parallelism = 2,
    progress = function(s) if s.batches == 3 then job:cancel() end end }
  local st = job:wait()
  lu.assertEquals(job.state, "cancelled")
  lu.assertFalse(st.complete)
  lu.assertTrue(st.docs >= 30 and st.docs < 100, st.docs)
  for _, l in ipairs(read_lines(log)) do lu.assertNil(l:match("^:restore_complete"), l) end
  local rs = couch.restore { file = file, target = dst, log = log, resume = true, quiet = true }
  lu.assertTrue(rs.complete)
  lu.assertEquals(dst:info().doc_count, 100)
  lu.assertEquals(winners(dst), winners(src))
end

-- The progress line: the engine's (one line, a last one with "done"), replaced by a
-- progress function, silenced by quiet = true or progress = false.
function TestBackupJob:test_progress_line()
  local src = ts.fresh_db(srv, "bkj_src")
  fill(src, 20)
  local file = self:tmp()
  local function run(extra)
    return child(self, ([[
local couch = require "couch"
local db = couch.connect(os.getenv("COUCHLUA_TEST_URL")):db(%q)
couch.backup { source = db, file = %q, buffer_size = 5 %s }
]]):format(src.name, file, extra))
  end
  local code, err = run("")
  lu.assertEquals(code, 0)
  lu.assertStrContains(err, ("backup %s -> %s: 20 docs, 4 batches"):format(src.name, file))
  lu.assertStrContains(err, " done\n")
  code, err = run(", quiet = true")
  lu.assertEquals(code, 0)
  lu.assertEquals(err, "")
  code, err = run(", progress = false")
  lu.assertEquals(err, "")
  code, err = run(', progress = function(s) io.stderr:write("mine ", s.docs, "\\n") end')
  lu.assertStrContains(err, "mine 20\n")
  lu.assertNotStrContains(err, "docs,")
end

-- Ctrl-C (SIGINT) during a backup, waited for by couch.backup or by job:wait(): the
-- command ends with 130 and the backup resumes to every document once.
function TestBackupJob:test_ctrl_c_then_resume()
  local src = ts.fresh_db(srv, "bkj_src")
  fill(src, 80)
  for _, how in ipairs { "couch.backup", "job:wait()" } do
    local file, log = self:tmp(), self:tmp()
    local code = child(self, ([[
local couch = require "couch"
local db = couch.connect(os.getenv("COUCHLUA_TEST_URL")):db(%q)
local opts = { source = db, file = %q, log = %q, buffer_size = 10, parallelism = 2, progress = function(s)
  if s.batches == 2 then
    -- as Ctrl-C at a terminal (not from os.execute itself: system() ignores SIGINT), while
    -- the loop waits on the batches
    os.execute("(sleep 0.2; kill -INT $PPID) &")
    couch.sleep(5)
  end
end }
if %q == "couch.backup" then couch.backup(opts) else couch.backup_job(opts):wait() end
print("not interrupted")
]]):format(src.name, file, log, how))
    lu.assertEquals(code, 130, how)
    local st = couch.backup { source = src, file = file, log = log, resume = true, quiet = true }
    lu.assertTrue(st.docs < 80, how)
    local count, total = ids_in(file)
    lu.assertEquals(total, 80, how)
    for id, c in pairs(count) do lu.assertEquals(c, 1, id) end
  end
end

os.exit(lu.LuaUnit.run())
