-- The native job's events (issue 12, PouchDB's replicate): job:on(event, fn) for change,
-- paused, active, denied, complete and error; handlers under the hook budget; a failing
-- handler ends the job with a clear error. And two small items of the same issue: `since`
-- is part of the replication id (as CouchDB appends since_seq), and a `progress` function
-- runs under the hook budget like the other hooks.
local lu = require "luaunit"
local couch = require "couch"
local ts = require "testserver"

local srv = ts.connect()

local seed = ts.seed

local wait_for = ts.wait_for

local function failure(fn)
  local ok, err = pcall(fn)
  lu.assertFalse(ok, "expected an error")
  lu.assertTrue(couch.is_error(err), tostring(err))
  return err
end

TestNativeEvents = {}

function TestNativeEvents:setUp()
  self.src = ts.fresh_db(srv, "esrc")
  self.tgt = srv:db(self.src.name .. "_target")
end

function TestNativeEvents:tearDown()
  if self.job then -- a continuous job of a test that failed: stopped before its databases go
    self.job:cancel()
    pcall(self.job.wait, self.job)
  end
  pcall(self.tgt.delete, self.tgt)
  ts.cleanup()
end

-- One `change` per batch written, carrying the job's counters, the counts since the
-- previous change and the batch's last seq; no document bodies. `complete` once, at the
-- end, with the stats job:wait() returns. Handlers chain and run in registration order.
function TestNativeEvents:test_change_and_complete()
  seed(self.src, 35)
  local changes, order, completed = {}, {}, nil
  local job = couch.replication { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                  batch_size = 10, concurrency = 1 }
  local same = job:on("change", function(info) changes[#changes + 1] = info end)
    :on("complete", function(stats) order[#order + 1] = "first"; completed = stats end)
    :on("complete", function() order[#order + 1] = "second" end)
  lu.assertIs(same, job)
  local stats = job:wait()
  lu.assertEquals(#changes, 4)
  local written, last = 0, nil
  for i, info in ipairs(changes) do
    lu.assertNil(info.docs, "no document bodies in a change")
    lu.assertEquals(info.written, i < 4 and 10 or 5)
    lu.assertEquals(info.read, info.written)
    lu.assertEquals(info.failed, 0)
    written = written + info.written
    lu.assertEquals(info.docs_written, written, "the job's counter so far")
    lu.assertNotNil(info.last_seq)
    lu.assertNotEquals(info.last_seq, last)
    last = info.last_seq
  end
  lu.assertEquals(last, stats.through_seq, "the last batch's seq is where the job ended")
  lu.assertEquals(order, { "first", "second" })
  lu.assertEquals(completed.docs_written, 35)
  lu.assertEquals(stats.docs_written, 35)
end

-- With several workers batches finish out of order; the counts still add up to the total.
function TestNativeEvents:test_change_counts_add_up_with_concurrency()
  seed(self.src, 230)
  local written, read, n = 0, 0, 0
  local job = couch.replication { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                  batch_size = 20, concurrency = 4 }
  job:on("change", function(info) n, written, read = n + 1, written + info.written, read + info.read end)
  local stats = job:wait()
  lu.assertEquals(n, 12)
  lu.assertEquals(written, 230)
  lu.assertEquals(read, stats.docs_read)
end

-- Each change says what its own batch did, whatever else finished around it: 230 documents
-- in batches of 20 read and written by 4 workers are 11 changes of exactly 20 and one of
-- 10, and a filter's refusals and a transform's unencodable document are counted in the
-- batch that met them.
function TestNativeEvents:test_change_counts_are_the_batchs_own()
  seed(self.src, 230)
  local sizes = {}
  local job = couch.replication { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                  batch_size = 20, concurrency = 4 }
  job:on("change", function(info)
    lu.assertEquals(info.written, info.read)
    sizes[#sizes + 1] = info.read
  end)
  job:wait()
  table.sort(sizes)
  lu.assertEquals(sizes, { 10, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20 })

  local tgt2 = srv:db(self.tgt.name .. "_2")
  local failed, written = 0, 0
  job = couch.replication { source = self.src, target = tgt2, create_target = true, quiet = true,
                            batch_size = 20, concurrency = 4,
                            transform = function(doc)
                              if doc.n % 50 == 0 then doc.bad = print end -- JSON cannot hold it
                              return doc
                            end }
  job:on("change", function(info)
    lu.assertTrue(info.read == 20 or info.read == 10, info.read)
    lu.assertEquals(info.written + info.failed, info.read)
    failed, written = failed + info.failed, written + info.written
  end)
  local stats = job:wait()
  pcall(tgt2.delete, tgt2)
  lu.assertEquals(failed, 4)
  lu.assertEquals(written, 226)
  lu.assertEquals(stats.doc_write_failures, 4)
end

-- job:wait(timeout) gives up waiting after timeout seconds with a `timeout` error; the job
-- goes on (as task:wait does, and as the backup jobs' wait does).
function TestNativeEvents:test_wait_with_a_timeout()
  seed(self.src, 5)
  local job = couch.replication { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                  continuous = true, poll = 1 }
  local ok, err = pcall(job.wait, job, 0.3) -- (it used to wait for ever: the timeout was dropped)
  lu.assertFalse(ok)
  lu.assertTrue(couch.is_error(err), tostring(err))
  lu.assertEquals(err.kind, "timeout")
  lu.assertEquals(job.state, "running")
  job:cancel()
  lu.assertEquals(job:wait(10).docs_written, 5)
end

-- A misspelt event is a usage error naming the nearest one, like a misspelt option.
function TestNativeEvents:test_unknown_event_is_a_usage_error()
  local job = couch.replication { source = self.src, target = self.tgt, create_target = true, quiet = true }
  local err = failure(function() job:on("chnage", print) end)
  lu.assertEquals(err.kind, "usage")
  lu.assertStrContains(tostring(err), "did you mean 'change'?")
  err = failure(function() job:on("change", "print") end)
  lu.assertEquals(err.kind, "usage")
  lu.assertEquals(err.argument, "handler")
  err = failure(function() job:on(nil, print) end)
  lu.assertEquals(err.argument, "event")
  job:wait()
  err = failure(function() job:on("complete", print) end)
  lu.assertStrContains(tostring(err), "has ended")
end

-- A continuous job says when it has caught up (paused, no error), once each time: polling
-- again while nothing happens says nothing more. New documents: active, change, paused.
function TestNativeEvents:test_continuous_paused_when_caught_up_then_active()
  seed(self.src, 30)
  local log = {}
  local job = couch.replication { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                  continuous = true, batch_size = 10, poll = 0.2 }
  self.job = job
  job:on("paused", function(err) log[#log + 1] = err == nil and "paused" or "paused(err)" end)
     :on("active", function() log[#log + 1] = "active" end)
     :on("change", function() log[#log + 1] = "change" end)
  local function count(what)
    local n = 0
    for _, e in ipairs(log) do if e == what then n = n + 1 end end
    return n
  end
  wait_for(function() return count("paused") == 1 end, "paused when caught up")
  lu.assertEquals(self.tgt:info().doc_count, 30, "caught up: everything is on the target")
  lu.assertEquals(log[#log], "paused")
  lu.assertEquals(count("change"), 3)
  couch.sleep(1) -- a few of the job's empty longpolls (poll = 0.2) later: still one paused
  lu.assertEquals(count("paused"), 1)
  seed(self.src, 5, 31)
  wait_for(function() return count("paused") == 2 end, "paused again after the new documents")
  lu.assertEquals(self.tgt:info().doc_count, 35)
  -- the new documents may come as one batch or more (a longpoll answers the first change)
  lu.assertEquals(log[5], "active")
  lu.assertEquals(log[6], "change")
  lu.assertEquals(log[#log], "paused")
  lu.assertEquals(count("active"), 1)
  job:cancel()
  local stats = job:wait()
  lu.assertEquals(job.state, "cancelled")
  lu.assertEquals(stats.docs_written, 35)
end

-- A one-shot job never says paused.
function TestNativeEvents:test_one_shot_never_paused()
  seed(self.src, 12)
  local paused = 0
  local job = couch.replication { source = self.src, target = self.tgt, create_target = true, quiet = true }
  job:on("paused", function() paused = paused + 1 end)
  job:wait()
  lu.assertEquals(paused, 0)
end

-- Cancelling ends the job with `complete` (PouchDB's: completed or cancelled).
function TestNativeEvents:test_cancel_completes()
  seed(self.src, 5)
  local completed
  local job = couch.replication { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                  continuous = true }
  self.job = job
  job:on("complete", function(stats) completed = stats end)
  local paused = false
  job:on("paused", function() paused = true end)
  wait_for(function() return paused end, "caught up")
  job:cancel()
  job:wait()
  lu.assertNotNil(completed)
  lu.assertEquals(completed.docs_written, 5)
end

-- The target refuses documents (validate_doc_update): `denied(err, doc)` for each, besides
-- on_error; the job goes on.
function TestNativeEvents:test_denied()
  seed(self.src, 9)
  self.tgt:create()
  self.tgt:put { _id = "_design/guard", validate_doc_update =
    "function(newDoc){ if (newDoc.n && newDoc.n % 3 == 0) throw({forbidden: 'no multiples of three'}); }" }
  local denied, on_error = {}, 0
  local job = couch.replication { source = self.src, target = self.tgt, quiet = true,
                                  on_error = function() on_error = on_error + 1 end }
  job:on("denied", function(err, doc)
    lu.assertEquals(err.error, "forbidden")
    lu.assertEquals(err.id, doc._id)
    denied[#denied + 1] = doc._id .. ":" .. doc.n
  end)
  local stats = job:wait()
  table.sort(denied)
  lu.assertEquals(denied, { "doc000003:3", "doc000006:6", "doc000009:9" })
  lu.assertEquals(on_error, 3)
  lu.assertEquals(stats.doc_write_failures, 3)
  lu.assertEquals(stats.docs_written, 6)
end

-- A job that fails says so with `error(err)`, the error job:wait() raises; no `complete`.
function TestNativeEvents:test_error()
  local missing = srv:db(self.src.name .. "_missing")
  local seen, completed = nil, false
  local job = couch.replication { source = missing, target = self.tgt, create_target = true, quiet = true }
  job:on("error", function(err) seen = err end):on("complete", function() completed = true end)
  local err = failure(function() job:wait() end)
  lu.assertEquals(err.status, 404, tostring(err))
  lu.assertIs(seen, err)
  lu.assertFalse(completed)
  lu.assertEquals(job.state, "failed")
end

-- A target re-created under a job and found only at its final checkpoint: the job fails
-- with target_recreated, and says so (`error`, state failed) like any other failure.
function TestNativeEvents:test_error_at_the_final_checkpoint()
  seed(self.src, 40)
  local seen, done = nil, false
  local job = couch.replication { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                  batch_size = 10, concurrency = 1, checkpoint_interval = 600000 }
  job:on("change", function()
    if not done then
      done = true
      self.tgt:delete()
      self.tgt:create()
    end
  end):on("error", function(err) seen = err end)
  local err = failure(function() job:wait() end)
  lu.assertEquals(err.reason, "target_recreated", tostring(err))
  lu.assertIs(seen, err)
  lu.assertEquals(job.state, "failed")
end

-- A handler that fails ends the job with a replication error naming the event (reason
-- hook_failed), which `error` gets; one that loops ends it under the hook budget.
function TestNativeEvents:test_a_failing_handler_ends_the_job()
  seed(self.src, 30)
  local errors = {}
  local job = couch.replication { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                  batch_size = 10, concurrency = 1 }
  job:on("change", function(info) if info.docs_written >= 20 then error("no more") end end)
     :on("error", function(e) errors[#errors + 1] = e end)
  local err = failure(function() job:wait() end)
  lu.assertEquals(err.kind, "replication", tostring(err))
  lu.assertEquals(err.reason, "hook_failed")
  lu.assertEquals(err.event, "change")
  lu.assertStrContains(tostring(err), "no more")
  lu.assertEquals(#errors, 1)
  lu.assertIs(errors[1], err)
  lu.assertEquals(job.state, "failed")

  local looping = couch.replication { source = self.src, target = srv:db(self.src.name .. "_t2"),
                                      create_target = true, quiet = true, hook_budget = 100000 }
  looping:on("change", function() while true do end end)
  err = failure(function() looping:wait() end)
  pcall(srv:db(self.src.name .. "_t2").delete, srv:db(self.src.name .. "_t2"))
  lu.assertEquals(err.reason, "hook_budget", tostring(err))
  lu.assertEquals(err.event, "change")
  lu.assertStrContains(tostring(err), "budget of 100000 instructions")
end

-- A failing complete handler: the job fails with its error (no `error` event, no loop).
-- A failing error handler: the job fails with the handler's error, the job's own as cause.
function TestNativeEvents:test_failing_complete_and_error_handlers()
  seed(self.src, 3)
  local error_events = 0
  local job = couch.replication { source = self.src, target = self.tgt, create_target = true, quiet = true }
  job:on("complete", function() error("complete broke") end)
     :on("error", function() error_events = error_events + 1 end)
  local err = failure(function() job:wait() end)
  lu.assertEquals(err.reason, "hook_failed", tostring(err))
  lu.assertEquals(err.event, "complete")
  lu.assertEquals(error_events, 0)
  lu.assertEquals(job.state, "failed")

  local bad = couch.replication { source = srv:db(self.src.name .. "_missing"), target = self.tgt, quiet = true }
  bad:on("error", function() error("error broke") end)
  err = failure(function() bad:wait() end)
  lu.assertEquals(err.reason, "hook_failed", tostring(err))
  lu.assertEquals(err.event, "error")
  lu.assertTrue(couch.is_error(err.cause))
  lu.assertEquals(err.cause.status, 404)
end

-- Handlers are called from the job's tasks: a script that spawns the job and lets the script
-- end (couch.run) sees them as well.
function TestNativeEvents:test_events_when_the_script_just_runs()
  seed(self.src, 10)
  local seen = {}
  couch.spawn(function()
    local job = couch.replication { source = self.src, target = self.tgt, create_target = true, quiet = true }
    job:on("change", function() seen[#seen + 1] = "change" end)
       :on("complete", function() seen[#seen + 1] = "complete" end)
  end)
  couch.run()
  lu.assertEquals(seen, { "change", "complete" })
end

--- since in the replication id ------------------------------------------------------

-- CouchDB appends since_seq to the replication id: a job from another start is another job,
-- not a resumed one. Without it, a second run from an earlier seq resumed from the first
-- run's checkpoint and silently skipped what lay between.
function TestNativeEvents:test_since_is_part_of_the_replication_id()
  seed(self.src, 10)
  local rows = self.src:changes().results
  local seq2, seq5 = rows[2].seq, rows[5].seq
  local a = couch.replicate { source = self.src, target = self.tgt, create_target = true, quiet = true, since = seq5 }
  lu.assertEquals(a.docs_written, 5)
  local b = couch.replicate { source = self.src, target = self.tgt, quiet = true, since = seq2 }
  lu.assertEquals(b.docs_written, 3, "documents 3 to 5 are copied")
  lu.assertNotNil(self.tgt:get("doc000003"))
  lu.assertNotEquals(a.replication_id, b.replication_id)
  local c = couch.replication { source = self.src, target = self.tgt, quiet = true, since_seq = seq2 }
  lu.assertEquals(c.rep_id, b.replication_id, "since_seq is since")
  c:wait()
  local none = couch.replication { source = self.src, target = self.tgt, quiet = true }
  lu.assertNotEquals(none.rep_id, b.replication_id)
  none:wait()
end

--- progress under the hook budget ---------------------------------------------------

-- A progress function that never returns ends the job with the hook_budget error, like a
-- transform that never returns.
function TestNativeEvents:test_a_looping_progress_function_ends_the_job()
  seed(self.src, 20)
  local err = failure(function()
    couch.replicate { source = self.src, target = self.tgt, create_target = true, batch_size = 10,
                      hook_budget = 100000, progress = function() while true do end end }
  end)
  lu.assertEquals(err.kind, "replication", tostring(err))
  lu.assertEquals(err.reason, "hook_budget")
  lu.assertEquals(err.hook, "progress")
  lu.assertStrContains(tostring(err), "progress hook ran past its budget")
end

os.exit(lu.LuaUnit.run())
