-- A backup or a restore as a job, with the native engine's surface (replicate.lua,
-- src/replicate/job.c): couch.backup_job / couch.restore_job start one in a task of its
-- own and return it; couch.backup / couch.restore start one and wait for it.
--   job:wait([timeout])  the stats once it ends; raises its error (a `timeout` error after
--                        `timeout` seconds: the job goes on)
--   job:stats()          the live stats table (the same table each time)
--   job:errors()         the documents the target refused (restore), each with its line
--   job:cancel()         stops reading; the batches in flight finish and are marked in the
--                        log, so the file and the log resume; the job ends `cancelled` and
--                        wait() returns its stats (a restore's with complete = false)
--   job.state            starting, running, completed, cancelled, failed
--   job.name, job.task, job.kind ("backup" / "restore")
-- A to-be-closed job is cancelled when its block ends. Ctrl-C (or cancelling job.task)
-- cancels its requests: the job ends `cancelled` and wait() raises the `cancelled` error.
-- Progress is the engine's: a line on a terminal (progress output, refreshed), one every
-- 5 s and a last one otherwise; `progress = function(stats)` replaces it; `progress =
-- false` or `quiet = true` silences it.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  local json = couch.json
  local private = setmetatable({}, { __mode = "k" })
  local M = {}

  local progress_reporter = require("couch.progress")(couch)

  local function reporter(opts, label, stats, started)
    return progress_reporter(opts, function() opts.progress(stats) end, function(final)
      local rate = stats.docs / math.max(couch.now() - started, 1e-6)
      return ("%s: %d docs, %d batches, %d/s%s"):format(label, stats.docs, stats.batches, math.floor(rate),
        final and (" " .. final) or "")
    end)
  end

  local function finished(task)
    local s = task:status()
    return s == "done" or s == "failed" or s == "cancelled"
  end

  local methods = {}
  function methods:wait(timeout) return private[self].task:wait(timeout) end
  function methods:stats() return private[self].stats end
  function methods:errors() return private[self].ctl.errors end
  function methods:cancel()
    local p = private[self]
    if p.state ~= "starting" and p.state ~= "running" then return end
    p.ctl.stopping = true
    if p.state == "starting" then return end   -- its task sees it as it starts
    -- within the batches: stop the reader, the workers finish; before them (the database
    -- check, spooling the log): nothing is half-written, the task itself stops
    if p.ctl.reader then p.ctl.reader:cancel() else p.task:cancel() end
  end

  -- job.wait() without the colon is a usage error that says so
  require("couch.methods").guard(couch, methods, "job", function(x) return private[x] ~= nil end)

  local MT = {
    __name = "couch.backup_job",
    __index = function(job, k)
      if methods[k] then return methods[k] end
      local p = private[job]
      if k == "state" or k == "name" or k == "task" or k == "kind" then return p[k] end
    end,
    __tostring = function(job)
      local p = private[job]
      return ("couch.%s_job %s (%s, %d docs)"):format(p.kind, p.label, p.state, p.stats.docs)
    end,
    __close = function(job)
      local p = private[job]
      if p.state == "starting" or p.state == "running" then methods.cancel(job) end
    end,
  }

  -- start(kind, run, o, opts, stats, label) -> job: run(o, ctl, stats) in a task
  function M.start(kind, run, o, opts, stats, label)
    local job = setmetatable({}, MT)
    local ctl = { stopping = false, reader = nil, errors = json.array {} }
    local p = { kind = kind, state = "starting", stats = stats, ctl = ctl, label = label,
                name = opts.name or (kind .. " " .. label) }
    private[job] = p
    local report = reporter(opts, kind .. " " .. label, stats, couch.now())
    ctl.report = report
    p.task = couch.spawn(p.name, function()
      if ctl.stopping then p.state = "cancelled"; return stats end
      p.state = "running"
      local ok, err = pcall(run, o, ctl, stats)
      local cancelled = couch.is_error(err) and err.kind == "cancelled"
      if ok or (ctl.stopping and cancelled) then
        p.state = ctl.stopping and "cancelled" or "completed"
        pcall(report, ctl.stopping and "cancelled" or "done")
        return stats
      end
      p.state = cancelled and "cancelled" or "failed"
      pcall(report, cancelled and "cancelled" or "stopped by an error")
      error(err, 0)
    end)
    return job
  end

  -- the job's stats once it ends; if the wait itself is stopped (Ctrl-C, a cancelled
  -- task), the job is cancelled with it rather than left running behind the caller's back
  function M.wait(job)
    local task = private[job].task
    local ok, res = pcall(task.wait, task)
    if ok then return res end
    if not finished(task) then
      task:cancel()
      pcall(task.wait, task)
    end
    error(res, 0)
  end

  return M
end
