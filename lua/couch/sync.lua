-- couch.sync(a, b [, opts]) -> a job: both directions of a replication as one object, as
-- PouchDB's sync. A push (a -> b) and a pull (b -> a) native replication (couch.replication)
-- run side by side with the same options; `opts.push` / `opts.pull` add to them for one
-- direction. One set of events, one cancel, one wait:
--   change(info, direction)  a batch of one direction was written (`info` as the job's)
--   paused(err)              both directions are caught up (continuous) or waiting out a
--                            failure; emitted when the second one pauses
--   active()                 one direction resumed after the sync was paused
--   denied(err, doc, direction)
--   complete({push =, pull =})  both ended (completed or cancelled)
--   error(err, direction)    one direction failed: the other is cancelled, and wait() raises
-- A revision written by one direction comes back in the other's _changes; _revs_diff finds
-- it present, so nothing loops. The two directions share nothing but the events' state.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  local usage = I.usage

  local EVENTS = { change = "any", paused = "any", active = "any", denied = "any", complete = "any", error = "any" }
  local SPEC = { push = "table", pull = "table" } -- the rest is checked by couch.replication

  local Sync = {}
  Sync.__index = function(self, k)
    if k == "state" then return Sync.state_of(self) end
    return Sync[k]
  end
  Sync.__name = "couch.sync_job"

  -- The sync's state from its two jobs: failed if either failed, running while either runs.
  function Sync.state_of(self)
    local a, b = self.push.state, self.pull.state
    if a == "failed" or b == "failed" then return "failed" end
    if a == "starting" and b == "starting" then return "starting" end
    if a == "starting" or a == "running" or b == "starting" or b == "running" then return "running" end
    if a == "cancelled" or b == "cancelled" then return "cancelled" end
    return "completed"
  end

  local function emit(self, event, ...)
    for _, fn in ipairs(self.handlers[event]) do fn(...) end
  end

  --- sync:on(event, fn) -> sync
  function Sync:on(event, fn)
    if type(event) ~= "string" then
      usage("event", "expected an event name (change, paused, active, denied, complete or error), got " .. type(event))
    end
    I.check_options({ [event] = true }, "sync:on", EVENTS) -- names the nearest event
    if type(fn) ~= "function" then usage("handler", "expected a function, got " .. type(fn)) end
    local list = self.handlers[event]
    list[#list + 1] = fn
    return self
  end

  function Sync:stats() return { push = self.push:stats(), pull = self.pull:stats() } end

  -- The refused documents of both directions, push first.
  function Sync:errors()
    local out = {}
    for _, job in ipairs { self.push, self.pull } do
      for _, e in ipairs(job:errors()) do out[#out + 1] = e end
    end
    return out
  end

  function Sync:cancel()
    self.push:cancel()
    self.pull:cancel()
  end

  -- Both directions' stats; raises the first failure (the other direction was cancelled).
  function Sync:wait()
    local ok_push, push = pcall(self.push.wait, self.push)
    local ok_pull, pull = pcall(self.pull.wait, self.pull)
    if not ok_push then error(push, 0) end
    if not ok_pull then error(pull, 0) end
    return { push = push, pull = pull }
  end

  function Sync:__tostring()
    return ("couch.sync_job %s <-> %s: %s"):format(self.a_name, self.b_name, self.state)
  end

  function Sync:__close()
    local s = self.state
    if s == "starting" or s == "running" then self:cancel() end
  end

  -- Wire one direction's events into the sync's.
  local function follow(self, job, direction, other)
    job:on("change", function(info) emit(self, "change", info, direction) end)
    job:on("denied", function(err, doc) emit(self, "denied", err, doc, direction) end)
    job:on("paused", function(err)
      self.paused[direction] = true
      if self.paused.push and self.paused.pull and not self.is_paused then
        self.is_paused = true
        emit(self, "paused", err)
      end
    end)
    job:on("active", function()
      self.paused[direction] = false
      if self.is_paused then
        self.is_paused = false
        emit(self, "active")
      end
    end)
    job:on("error", function(err)
      other():cancel()
      if not self.failed then
        self.failed = true
        emit(self, "error", err, direction)
      end
    end)
    job:on("complete", function()
      self.ended = self.ended + 1
      if self.ended == 2 and not self.failed then
        emit(self, "complete", { push = self.push:stats(), pull = self.pull:stats() })
      end
    end)
  end

  local function merged(opts, side, source, target)
    local o = {}
    for k, v in pairs(opts) do if k ~= "push" and k ~= "pull" then o[k] = v end end
    for k, v in pairs(opts[side] or {}) do o[k] = v end
    if o.source ~= nil or o.target ~= nil then
      usage(o.source ~= nil and "source" or "target", "couch.sync takes the two databases as its first arguments")
    end
    o.source, o.target = source, target
    return o
  end

  --- couch.sync(a, b [, opts]) -> a running sync job
  function couch.sync(a, b, opts)
    if a == nil then usage("a", "is required: a database object, a database URL or a name") end
    if b == nil then usage("b", "is required: a database object, a database URL or a name") end
    opts = opts or {}
    if type(opts) ~= "table" then usage("opts", "expected a table of options") end
    local spec = {}
    for k in pairs(opts) do spec[k] = "any" end
    spec.push, spec.pull = SPEC.push, SPEC.pull
    I.check_options(opts, "couch.sync", spec) -- push/pull types; names by couch.replication
    local self = { handlers = {}, paused = { push = false, pull = false }, is_paused = false,
                   ended = 0, failed = false }
    for event in pairs(EVENTS) do self.handlers[event] = {} end
    -- each target is the other direction's source: its changes bring back what this
    -- direction wrote, so neither skips _revs_diff (the copies would count as written)
    self.push = I.replication(merged(opts, "push", a, b), "couch.sync", true)
    local ok, pull = pcall(I.replication, merged(opts, "pull", b, a), "couch.sync", true)
    if not ok then -- the push already runs: a sync is both directions or nothing
      self.push:cancel()
      error(pull, 0)
    end
    self.pull = pull
    self.a_name, self.b_name = self.push:stats().source, self.push:stats().target
    setmetatable(self, Sync)
    follow(self, self.push, "push", function() return self.pull end)
    follow(self, self.pull, "pull", function() return self.push end)
    return self
  end
end
