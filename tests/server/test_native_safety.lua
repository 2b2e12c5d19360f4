-- The native engine against a real server, where the ground moves under it (issue 11):
-- a target or source deleted and re-created mid-run, two jobs on the same pair, hooks
-- that change between runs; and the options as users write them (issue 10, section 3).
-- Each: nothing claimed that is not on the target, nothing reported done that is not.
local lu = require "luaunit"
local couch = require "couch"
local internal = require "couch.internal"
local ts = require "testserver"

local srv = ts.connect()

local seed = ts.seed

local function ids(db)
  local out = {}
  for _, row in ipairs(db:all_docs().rows) do out[row.id] = true end
  return out
end

TestNativeSafety = {}

function TestNativeSafety:setUp()
  self.src = ts.fresh_db(srv, "ssrc")
  self.tgt = srv:db(self.src.name .. "_target")
end

function TestNativeSafety:tearDown()
  pcall(self.tgt.delete, self.tgt)
  ts.cleanup()
end

-- The target is deleted and re-created before the run's first checkpoint: the first
-- checkpoint PUT (no _rev) would simply succeed. The run fails with target_recreated and
-- claims nothing, so the next run copies everything.
function TestNativeSafety:test_target_recreated_before_the_first_checkpoint()
  seed(self.src, 300)
  local done = false
  local ok, err = pcall(couch.replicate, {
    source = self.src, target = self.tgt, create_target = true, quiet = true, batch_size = 50, concurrency = 1,
    checkpoint_interval = 600000,
    progress = function(s)
      if not done and s.docs_written >= 100 then
        done = true
        self.tgt:delete()
        self.tgt:create()
      end
    end })
  lu.assertTrue(done)
  lu.assertFalse(ok, "the run must not report success")
  lu.assertTrue(couch.is_error(err), tostring(err))
  lu.assertEquals(err.kind, "replication", tostring(err))
  lu.assertEquals(err.reason, "target_recreated", tostring(err))
  local again = couch.replicate { source = self.src, target = self.tgt, quiet = true }
  lu.assertEquals(again.doc_write_failures, 0)
  lu.assertTrue(couch.compare(self.src, self.tgt).equal)
end

-- The same after an earlier checkpoint of this run: the next checkpoint notices.
function TestNativeSafety:test_target_recreated_between_checkpoints()
  seed(self.src, 300)
  local done, batches = false, 0
  local ok, err = pcall(couch.replicate, {
    source = self.src, target = self.tgt, create_target = true, quiet = true, batch_size = 50, concurrency = 1,
    checkpoint_interval = 100,
    progress = function(s)
      batches = batches + 1
      if not done and s.docs_written >= 150 and s.checkpointed_source_seq ~= 0 then
        done = true
        self.tgt:delete()
        self.tgt:create()
      end
      couch.sleep(0.11) -- every batch is due for a checkpoint
    end })
  lu.assertTrue(done)
  lu.assertFalse(ok, "the run must not report success")
  lu.assertEquals(err.reason, "target_recreated", tostring(err))
  couch.replicate { source = self.src, target = self.tgt, quiet = true }
  lu.assertTrue(couch.compare(self.src, self.tgt).equal)
end

-- The source is deleted and re-created mid-run with other documents: its old sequence
-- must not be written as the new source's checkpoint; the next run copies the new source.
function TestNativeSafety:test_source_recreated_mid_run()
  seed(self.src, 300)
  local done = false
  local ok, err = pcall(couch.replicate, {
    source = self.src, target = self.tgt, create_target = true, quiet = true, batch_size = 50, concurrency = 1,
    checkpoint_interval = 600000,
    progress = function(s)
      if not done and s.docs_written >= 100 then
        done = true
        self.src:delete()
        self.src:create()
        seed(self.src, 30, 1, "new")
      end
    end })
  lu.assertTrue(done)
  lu.assertFalse(ok, "the run must not report success")
  lu.assertEquals(err.kind, "replication", tostring(err))
  lu.assertEquals(err.reason, "source_recreated", tostring(err))
  -- the job may have ended while the hook was half-way (its tasks are cancelled)
  if not self.src:exists() then self.src:create() end
  if self.src:info().doc_count < 30 then seed(self.src, 30, 1, "new") end
  local again = couch.replicate { source = self.src, target = self.tgt, quiet = true }
  lu.assertEquals(again.docs_written, 30)
  local have = ids(self.tgt)
  for i = 1, 30 do lu.assertTrue(have[("new%06d"):format(i)]) end
end

-- Two jobs on the same pair at once, checkpointing often: both finish (a 409 on the
-- _local PUT is re-read and retried), and the target is complete.
function TestNativeSafety:test_two_jobs_on_the_same_pair_both_finish()
  seed(self.src, 600)
  self.tgt:create()
  local jobs = {}
  for i = 1, 2 do
    jobs[i] = couch.replication { source = self.src, target = self.tgt, quiet = true, batch_size = 20,
                                  concurrency = 2, checkpoint_interval = 100 }
  end
  for i = 1, 2 do
    local ok, res = pcall(jobs[i].wait, jobs[i])
    lu.assertTrue(ok, "job " .. i .. ": " .. tostring(res))
  end
  lu.assertTrue(couch.compare(self.src, self.tgt).equal)
  local again = couch.replicate { source = self.src, target = self.tgt, quiet = true }
  lu.assertEquals(again.docs_written, 0)
end

-- A client filter or transform that changes between runs is another replication: the
-- second run does not resume from the first one's checkpoint. The same hook (the same
-- source text and upvalues), even re-created, resumes.
function TestNativeSafety:test_changed_hooks_do_not_resume_the_old_checkpoint()
  seed(self.src, 40)
  local function keep_below(limit) return function(doc) return doc.n <= limit end end
  local first = couch.replicate { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                  filter = keep_below(10) }
  lu.assertEquals(first.docs_written, 10)
  local same = couch.replicate { source = self.src, target = self.tgt, quiet = true, filter = keep_below(10) }
  lu.assertEquals(same.replication_id, first.replication_id)
  lu.assertEquals(same.docs_read, 0, "the same hook resumes")
  local wider = couch.replicate { source = self.src, target = self.tgt, quiet = true, filter = keep_below(30) }
  lu.assertNotEquals(wider.replication_id, first.replication_id)
  lu.assertEquals(wider.docs_written, 20)
  local other = couch.replicate { source = self.src, target = self.tgt, quiet = true,
                                  filter = function(doc) return doc.n > 35 end }
  lu.assertEquals(other.docs_written, 5)
  local t1 = couch.replicate { source = self.src, target = self.tgt, quiet = true,
                               transform = function(doc) doc.t = 1; return doc end }
  local t2 = couch.replicate { source = self.src, target = self.tgt, quiet = true,
                               transform = function(doc) doc.t = 2; return doc end }
  lu.assertNotEquals(t1.replication_id, t2.replication_id)
end

-- attachments = false into a target that lacks the attachments: they arrive anyway (CouchDB
-- refuses the stubs with 412 missing_stub; the batch is fetched again with attachments).
function TestNativeSafety:test_attachments_false_into_a_target_without_them()
  seed(self.src, 4)
  local r = self.src:put { _id = "with-att", v = 1 }
  self.src:put_attachment("with-att", "a.bin", "\0\1\2 bytes", "application/octet-stream", r.rev)
  local stats = couch.replicate { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                  attachments = false }
  lu.assertEquals(stats.doc_write_failures, 0, tostring(stats.errors[1]))
  lu.assertEquals(stats.docs_written, 5)
  lu.assertEquals(self.tgt:get_attachment("with-att", "a.bin"), "\0\1\2 bytes")
end

-- checkpoint_interval is in milliseconds, as in replication documents; a value that can
-- only be seconds by mistake is a usage error saying so.
function TestNativeSafety:test_checkpoint_interval_is_milliseconds()
  local ok, err = pcall(couch.replicate, { source = self.src, target = self.tgt, checkpoint_interval = 5 })
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "usage", tostring(err))
  lu.assertEquals(err.argument, "checkpoint_interval")
  lu.assertStrContains(tostring(err), "milliseconds")
  seed(self.src, 5)
  local stats = couch.replicate { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                  checkpoint_interval = 5000 }
  lu.assertEquals(stats.docs_written, 5)
end

-- A bare name is a database on the other endpoint's server.
function TestNativeSafety:test_a_bare_name_is_a_database_on_the_other_server()
  seed(self.src, 5)
  local stats = couch.replicate { source = self.src, target = self.tgt.name, create_target = true, quiet = true }
  lu.assertEquals(stats.docs_written, 5)
  lu.assertEquals(self.tgt:info().doc_count, 5)
  local back = srv:db(self.src.name .. "_back")
  local s2 = couch.replicate { source = self.tgt.name, target = back, create_target = true, quiet = true }
  lu.assertEquals(s2.docs_written, 5)
  back:delete()
  local ok, err = pcall(couch.replicate, { source = "a", target = "b" })
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "usage")
end

-- stats.docs_skipped is always there; a typo in an option says what was meant.
function TestNativeSafety:test_stats_and_option_checking()
  seed(self.src, 3)
  local stats = couch.replicate { source = self.src, target = self.tgt, create_target = true, quiet = true }
  lu.assertEquals(stats.docs_skipped, 0)
  for _, case in ipairs {
    { { source = self.src, target = self.tgt, create_taget = true }, "create_taget", "create_target" },
    { { source = self.src, target = self.tgt, batch_size = "x" }, "batch_size" },
    { { source = self.src, target = self.tgt, concurency = 2 }, "concurency", "concurrency" },
  } do
    local ok, err = pcall(couch.replicate, case[1])
    lu.assertFalse(ok)
    lu.assertEquals(err.kind, "usage", tostring(err))
    lu.assertEquals(err.argument, case[2])
    if case[3] then lu.assertStrContains(tostring(err), "did you mean '" .. case[3] .. "'") end
    ok, err = pcall(couch.replication, case[1])
    lu.assertFalse(ok)
    lu.assertEquals(err.kind, "usage", tostring(err))
  end
end

-- The progress line goes through internal.write("progress", ...); a progress function
-- replaces it; a cancelled job's last line says "cancelled"; a hook's error names the
-- document.
function TestNativeSafety:test_progress_output_and_hook_errors()
  seed(self.src, 30)
  local lines = {}
  local real_write, real_tty = internal.write, internal.is_tty
  internal.write = function(kind, text) if kind == "progress" then lines[#lines + 1] = text else real_write(kind, text) end end
  local ok, err = pcall(function()
    couch.replicate { source = self.src, target = self.tgt, create_target = true }
    lu.assertStrContains(lines[#lines], " done")
    lines = {}
    local calls = 0
    couch.replicate { source = self.src, target = self.tgt, progress = function() calls = calls + 1 end }
    lu.assertTrue(calls >= 1)
    lu.assertEquals(#lines, 0, "a progress function replaces the built-in line")
    local job = couch.replication { source = self.src, target = srv:db(self.tgt.name .. "_c"), create_target = true,
                                    continuous = true, poll = 1 }
    couch.sleep(0.3)
    job:cancel()
    job:wait()
    srv:db(self.tgt.name .. "_c"):delete()
    lu.assertStrContains(lines[#lines], "cancelled")
    lu.assertNotStrContains(lines[#lines], " done")
    -- Ctrl-C (or couch.timeout) cancels the job's own task: the line says so too
    lines = {}
    local job2 = couch.replication { source = self.src, target = srv:db(self.tgt.name .. "_d"), create_target = true,
                                     continuous = true, poll = 1 }
    couch.sleep(0.3)
    job2.task:cancel()
    local ok2, err2 = pcall(job2.wait, job2)
    srv:db(self.tgt.name .. "_d"):delete()
    lu.assertFalse(ok2)
    lu.assertEquals(err2.kind, "cancelled")
    lu.assertStrContains(lines[#lines] or "", "cancelled")
  end)
  internal.write, internal.is_tty = real_write, real_tty
  lu.assertTrue(ok, tostring(err))
  local fresh = srv:db(self.tgt.name .. "_h")
  local ok2, err2 = pcall(couch.replicate, { source = self.src, target = fresh, create_target = true, quiet = true,
    transform = function(doc) if doc._id == "doc000007" then error("boom") end return doc end })
  lu.assertFalse(ok2)
  lu.assertStrContains(tostring(err2), "doc000007")
  lu.assertStrContains(tostring(err2), "boom")
  fresh:delete()
end

os.exit(lu.LuaUnit.run())
