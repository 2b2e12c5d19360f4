-- Task helpers written on the C primitives (spawn, task:wait, cond): gather, all, timeout,
-- and a queue for producer-consumer scripts.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  local function as_task(x)
    if type(x) == "function" then return couch.spawn(x) end
    return x
  end

  --- couch.gather(t1, t2, ...) -> first result of each (raises the first error met)
  function couch.gather(...)
    local tasks = table.pack(...)
    local out = {}
    for i = 1, tasks.n do tasks[i] = as_task(tasks[i]) end
    for i = 1, tasks.n do out[i] = tasks[i]:wait() end
    return table.unpack(out, 1, tasks.n)
  end

  --- couch.all{ t1, fn2, ... } -> { results... } in order; functions are spawned first
  function couch.all(list)
    local tasks = {}
    for i, x in ipairs(list) do tasks[i] = as_task(x) end
    local out = {}
    for i, t in ipairs(tasks) do out[i] = t:wait() end
    return out
  end

  --- couch.timeout(seconds, fn, ...) -> fn's results, or a `timeout` error after seconds
  -- (fn then runs in a task of its own, which is cancelled).
  function couch.timeout(seconds, fn, ...)
    local t = couch.spawn("timeout", fn, ...)
    local res = table.pack(pcall(t.wait, t, seconds))
    if not res[1] then
      if couch.is_error(res[2]) and res[2].kind == "timeout" and t:status() ~= "done" then
        t:cancel()
        I.raise("timeout", ("gave up after %gs"):format(seconds), { seconds = seconds })
      end
      error(res[2], 0)
    end
    return table.unpack(res, 2, res.n)
  end

  local Queue = {}
  Queue.__index = Queue
  Queue.__name = "couch.queue"

  --- couch.queue(maxsize) -> q with q:push(v) (waits while full), q:pop([timeout]) (waits
  -- while empty; nil, "timeout" on timeout; nil, "closed" once closed and drained),
  -- q:close(), #q
  function couch.queue(maxsize)
    return setmetatable({ items = {}, head = 1, tail = 0, maxsize = maxsize,
      not_empty = couch.cond(), not_full = couch.cond() }, Queue)
  end

  function Queue:__len() return self.tail - self.head + 1 end
  function Queue:__tostring() return ("couch.queue (%d items%s)"):format(#self, self.closed and ", closed" or "") end

  function Queue:push(v)
    if self.closed then I.raise("usage", "push on a closed queue") end
    while self.maxsize and #self >= self.maxsize do self.not_full:wait() end
    self.tail = self.tail + 1
    self.items[self.tail] = v
    self.not_empty:signal()
  end

  function Queue:pop(timeout)
    while #self == 0 do
      if self.closed then return nil, "closed" end
      if not self.not_empty:wait(timeout) then return nil, "timeout" end
    end
    local v = self.items[self.head]
    self.items[self.head] = nil
    self.head = self.head + 1
    self.not_full:signal()
    return v
  end

  function Queue:close()
    self.closed = true
    self.not_empty:broadcast()
  end
end
