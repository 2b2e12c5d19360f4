-- Tasks without a server: spawn, wait, sleep, cancel, run, gather/all, timeout, queue, cond,
-- and the places a yield must survive (pcall, iterators, nested coroutines).
local lu = require "luaunit"
local couch = require "couch"
local internal = require "couch.internal"


TestTasks = {}

function TestTasks:test_spawn_runs_only_when_the_loop_turns_and_returns_results()
  local ran = false
  local t = couch.spawn(function(a, b) ran = true; return a + b, "x" end, 2, 3)
  lu.assertFalse(ran)
  lu.assertEquals(t:status(), "ready")
  local s, x = t:wait()
  lu.assertTrue(ran)
  lu.assertEquals(s, 5)
  lu.assertEquals(x, "x")
  lu.assertEquals(t:status(), "done")
end

function TestTasks:test_sleeping_tasks_interleave()
  local log = {}
  local function worker(name, d)
    return function()
      for i = 1, 3 do log[#log + 1] = name .. i; couch.sleep(d) end
    end
  end
  couch.spawn(worker("a", 0.02))
  couch.spawn(worker("b", 0.03))
  couch.run()
  lu.assertEquals(log[1], "a1")
  lu.assertEquals(log[2], "b1")
  lu.assertEquals(#log, 6)
  -- a (every 20 ms) finishes its 3 steps before b's third
  lu.assertEquals(log[#log], "b3")
end

function TestTasks:test_a_failing_task_is_reported_by_run_with_its_name()
  couch.spawn("exploder", function() error("boom") end)
  local ok, err = pcall(couch.run)
  lu.assertFalse(ok)
  lu.assertStrContains(tostring(err), "exploder")
  lu.assertStrContains(tostring(err), "boom")
end

function TestTasks:test_error_objects_keep_their_shape_and_get_the_task_name()
  local t = couch.spawn("named", function() internal.raise("usage", "bad thing") end)
  local ok, err = pcall(t.wait, t)
  lu.assertFalse(ok)
  lu.assertTrue(couch.is_error(err))
  lu.assertEquals(err.kind, "usage")
  lu.assertEquals(t:status(), "failed")
  -- seen through wait: couch.run has nothing left to raise
  couch.run()
end

function TestTasks:test_cancel_a_sleeping_task()
  local after = false
  local t = couch.spawn(function() couch.sleep(30); after = true end)
  couch.sleep(0.01)
  lu.assertEquals(t:status(), "waiting")
  lu.assertTrue(t:cancel())
  couch.run()
  lu.assertEquals(t:status(), "cancelled")
  lu.assertFalse(after)
  local ok, err = pcall(t.wait, t)
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "cancelled")
  lu.assertFalse(t:cancel(), "cancelling a finished task does nothing")
end

function TestTasks:test_cancel_before_start()
  local ran = false
  local t = couch.spawn(function() ran = true end)
  t:cancel()
  couch.run()
  lu.assertFalse(ran)
  lu.assertEquals(t:status(), "cancelled")
end

function TestTasks:test_wait_with_timeout()
  local t = couch.spawn(function() couch.sleep(5) end)
  local ok, err = pcall(t.wait, t, 0.05)
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "timeout")
  t:cancel()
  couch.run()
end

function TestTasks:test_yield_survives_pcall_iterators_and_nested_coroutines()
  local t = couch.spawn(function()
    local out = {}
    -- inside pcall
    local ok = pcall(couch.sleep, 0.01)
    out[#out + 1] = ok
    -- inside a generic for iterator
    local function iter(_, i)
      if i < 3 then couch.sleep(0.001); return i + 1 end
    end
    local n = 0
    for i in iter, nil, 0 do n = i end
    out[#out + 1] = n
    -- inside a user's own coroutine: blocks there instead of yielding to the loop
    local co = coroutine.wrap(function() couch.sleep(0.01); coroutine.yield("inner"); return "done" end)
    out[#out + 1] = co()
    out[#out + 1] = co()
    -- inside a table.sort comparator (not yieldable): blocks
    local t = { 3, 1, 2 }
    table.sort(t, function(a, b) couch.sleep(0); return a < b end)
    out[#out + 1] = table.concat(t)
    return out
  end)
  local other_ran = 0
  couch.spawn(function() for _ = 1, 5 do other_ran = other_ran + 1; couch.sleep(0.002) end end)
  local out = t:wait()
  lu.assertEquals(out, { true, 3, "inner", "done", "123" })
  couch.run()
  lu.assertEquals(other_ran, 5)
end

function TestTasks:test_gather_and_all()
  local a, b = couch.gather(
    couch.spawn(function() couch.sleep(0.02); return "a" end),
    function() return "b" end)
  lu.assertEquals({ a, b }, { "a", "b" })
  local r = couch.all { function() return 1 end, function() couch.sleep(0.01); return 2 end }
  lu.assertEquals(r, { 1, 2 })
end

function TestTasks:test_timeout()
  local ok, err = pcall(couch.timeout, 0.05, function() couch.sleep(10) end)
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "timeout")
  lu.assertEquals(couch.timeout(1, function(x) return x * 2 end, 21), 42)
  couch.run()
end

function TestTasks:test_queue_producer_consumer()
  local q = couch.queue(2)
  local got = {}
  local consumer = couch.spawn(function()
    while true do
      local v = q:pop()
      if v == nil then break end
      got[#got + 1] = v
    end
    return #got
  end)
  couch.spawn(function()
    for i = 1, 10 do q:push(i) end
    q:close()
  end)
  lu.assertEquals(consumer:wait(), 10)
  lu.assertEquals(got, { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 })
  local empty = couch.queue()
  local v, why = empty:pop(0.02)
  lu.assertNil(v)
  lu.assertEquals(why, "timeout")
end

function TestTasks:test_cond_wait_outside_a_task_lets_tasks_run()
  local c = couch.cond()
  couch.spawn(function() couch.sleep(0.02); c:signal() end)
  lu.assertTrue(c:wait(2))
  lu.assertFalse(c:wait(0.01))
end

function TestTasks:test_deadlock_is_an_error_not_a_hang()
  local ok, err = pcall(function() couch.cond():wait() end)
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "deadlock")
end

function TestTasks:test_a_blocked_task_no_one_can_wake_is_collected_and_cancelled()
  local collected = setmetatable({}, { __mode = "v" })
  do
    local q = couch.queue()          -- a consumer whose producer forgot to close the queue
    collected[1] = couch.spawn(function() return q:pop() end)
    collected[2] = couch.spawn(function() couch.cond():wait() end)
    couch.sleep(0.01)
  end
  couch.run()                        -- no deadlock: nothing can ever wake them, so they go
  collectgarbage(); collectgarbage()
  lu.assertNil(collected[1])
  lu.assertNil(collected[2])
end

function TestTasks:test_a_parked_task_that_is_still_held_wakes_normally()
  local q = couch.queue()
  local consumer = couch.spawn(function() return q:pop() end)
  couch.sleep(0.01)
  collectgarbage(); collectgarbage()
  q:push("hello")
  lu.assertEquals(consumer:wait(), "hello")
  local c = couch.cond()
  local waiter = couch.spawn(function() return c:wait() end)
  couch.sleep(0.01)
  collectgarbage()
  lu.assertTrue(waiter:cancel())
  local ok, err = pcall(waiter.wait, waiter)
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "cancelled")
end

function TestTasks:test_result_gives_true_and_the_results()
  local t = couch.spawn(function() return 3, nil, "x" end)
  lu.assertNil(t:result())
  couch.run()
  local r = table.pack(t:result())
  lu.assertEquals(r.n, 4)
  lu.assertEquals(r[1], true)
  lu.assertEquals(r[2], 3)
  lu.assertNil(r[3])
  lu.assertEquals(r[4], "x")
  local failed = couch.spawn(function() internal.raise("http", "boom") end)
  pcall(couch.run)
  local ok, err = failed:result()
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "http")
end

-- A task cancelled after it was woken (ready, not yet resumed) fails at its next wait; and
-- cancelling is for good: a pcall that caught the first `cancelled` cannot keep the task
-- waiting (a scheduler poll loop did, and polled forever: couch.run() never returned).
function TestTasks:test_a_cancelled_task_fails_at_every_later_wait()
  local c = couch.cond()
  local reached = false
  local t = couch.spawn(function()
    c:wait()
    couch.sleep(0.01)
    reached = true
  end)
  couch.sleep(0.01) -- t now waits on c
  c:signal()        -- t is ready, not yet resumed
  lu.assertTrue(t:cancel())
  local ok, err = pcall(t.wait, t)
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "cancelled")
  lu.assertFalse(reached)

  local rounds = 0
  local poller = couch.spawn(function()
    while true do
      pcall(couch.sleep, 10) -- the first cancel lands here and is caught
      rounds = rounds + 1
      couch.sleep(0.01)      -- ...but the task is cancelled for good
    end
  end)
  couch.sleep(0.01)
  poller:cancel()
  ok, err = pcall(poller.wait, poller, 2)
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "cancelled")
  lu.assertEquals(rounds, 1)
end

-- The shape of a follower: nobody keeps the task object, it blocks on a cond that only
-- another live task can reach. It must wake, whatever the collector did meanwhile.
function TestTasks:test_a_task_parked_on_a_cond_another_task_can_signal_is_not_collected()
  local woke, joined = 0, 0
  for _ = 1, 20 do
    local c = couch.cond()
    couch.spawn(function() c:wait(); woke = woke + 1 end)
    couch.spawn(function() couch.sleep(0.02); collectgarbage(); collectgarbage(); c:signal() end)
  end
  couch.run()
  lu.assertEquals(woke, 20)
  -- the same for a task joining another one that is still running
  for _ = 1, 20 do
    local worker = couch.spawn(function() couch.sleep(0.02); collectgarbage(); return 1 end)
    couch.spawn(function() local n = worker:wait(); joined = joined + n end)
  end
  couch.run()
  lu.assertEquals(joined, 20)
end

-- ...while a task parked on a cond that only other parked tasks could signal is a true
-- deadlock: all of them go, and couch.run() returns.
function TestTasks:test_tasks_that_can_only_wake_each_other_are_collected_together()
  local alive = setmetatable({}, { __mode = "v" })
  do
    local a, b = couch.cond(), couch.cond()
    alive[1] = couch.spawn(function() a:wait(); b:signal() end)
    alive[2] = couch.spawn(function() b:wait(); a:signal() end)
    couch.sleep(0.01)
  end
  couch.run()
  collectgarbage(); collectgarbage()
  lu.assertNil(alive[1])
  lu.assertNil(alive[2])
end

function TestTasks:test_failed_and_cancelled_tasks_close_their_to_be_closed_variables()
  local closed = {}
  local function closer(name)
    return setmetatable({}, { __close = function() closed[#closed + 1] = name end })
  end
  local a = couch.spawn(function() local _ <close> = closer("failed"); error("boom") end)
  local b = couch.spawn(function() local _ <close> = closer("cancelled"); couch.sleep(10) end)
  couch.sleep(0.01)
  b:cancel()
  pcall(couch.run)
  table.sort(closed)
  lu.assertEquals(closed, { "cancelled", "failed" })
  lu.assertFalse((a:result()))
end

function TestTasks:test_many_tasks()
  local n = 0
  for _ = 1, 2000 do couch.spawn(function() couch.sleep(0.01); n = n + 1 end) end
  couch.run()
  lu.assertEquals(n, 2000)
end

function TestTasks:test_usage_errors()
  local ok, err = pcall(couch.spawn, 42)
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "usage")
  lu.assertStrContains(tostring(err), "fn")
  ok, err = pcall(couch.sleep, -1)
  lu.assertEquals(err.kind, "usage")
end

-- A timed wait woken (cond:broadcast) and then cancelled before its task runs again never
-- reaches the step that stops its timer; the wait was collected with the timer still in
-- the loop's heap, which then fired into freed memory (a heap use-after-free under ASan,
-- found by the engine's fetch-ahead slots). Many such waits, collected, then their
-- timeouts passed: the loop must go on as if nothing happened.
function TestTasks:test_a_woken_then_cancelled_timed_wait_leaves_no_timer_behind()
  for _ = 1, 20 do
    local c = couch.cond()
    local t = couch.spawn(function() c:wait(0.05) end)
    couch.sleep(0.001)           -- t waits on c
    c:broadcast()                -- t is woken...
    t:cancel()                   -- ...and cancelled before it runs
    local ok, err = pcall(t.wait, t)
    lu.assertFalse(ok)
    lu.assertEquals(err.kind, "cancelled")
  end
  collectgarbage()
  collectgarbage()
  local filler = {}
  for i = 1, 2000 do filler[i] = couch.cond() end -- reuse the freed memory
  couch.sleep(0.1)               -- past every timeout
  lu.assertEquals(#filler, 2000)
end

os.exit(lu.LuaUnit.run())
