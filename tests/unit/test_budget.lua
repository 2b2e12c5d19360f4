-- Instruction budgets for user code (internal.budget_call, src/budget.c): what the engine
-- runs replication hooks under, so that a hook looping forever ends in a clear error.
local lu = require "luaunit"
local couch = require "couch"
local internal = require "couch.internal"

local call = internal.budget_call

local function spin() while true do end end

local function expect_budget(limit, fn, ...)
  local ok, err = pcall(call, limit, fn, ...)
  lu.assertFalse(ok)
  lu.assertTrue(couch.is_error(err), tostring(err))
  lu.assertEquals(err.kind, "budget")
  lu.assertEquals(err.limit, limit)
  lu.assertStrContains(tostring(err), ("%d"):format(limit))
  return err
end

TestBudget = {}

function TestBudget:test_results_and_errors_pass_through()
  lu.assertEquals({ call(1e6, function(a, b) return a + b, "x" end, 2, 3) }, { 5, "x" })
  local ok, err = pcall(call, 1e6, function() error({ mine = true }) end)
  lu.assertFalse(ok)
  lu.assertTrue(err.mine)
  ok, err = pcall(call, 1e6, function() error("plain", 0) end)
  lu.assertEquals(err, "plain")
end

function TestBudget:test_a_loop_that_never_ends_stops_at_its_budget()
  local t0 = os.clock()
  expect_budget(2e6, spin)
  lu.assertTrue(os.clock() - t0 < 2, "a 2M-instruction budget took " .. (os.clock() - t0) .. " s")
end

function TestBudget:test_work_within_the_budget_is_untouched()
  local function work(n) local s = 0; for i = 1, n do s = s + i end; return s end
  lu.assertEquals(call(1e6, work, 1000), 500500)
  -- the same work over a smaller budget fails
  expect_budget(1000, work, 100000)
end

function TestBudget:test_pcall_inside_the_code_cannot_keep_it_running()
  local caught = 0
  expect_budget(1e5, function()
    while true do
      pcall(spin)
      caught = caught + 1
    end
  end)
  lu.assertTrue(caught <= 1, "the code went on " .. caught .. " times after its budget ran out")
end

function TestBudget:test_after_the_call_no_hook_is_left_behind()
  expect_budget(1e4, spin)
  local s = 0
  for i = 1, 3e6 do s = s + i end -- far past the budget, outside it
  lu.assertEquals(s, 3e6 * (3e6 + 1) // 2)
  lu.assertNil(debug.gethook())
end

function TestBudget:test_budgets_nest_and_the_outer_one_counts_the_inner_work()
  -- the inner call's overrun is its own error, caught by the outer code
  local inner_err
  local v = call(1e7, function()
    local ok, e = pcall(call, 1e4, spin)
    inner_err = e
    return ok
  end)
  lu.assertFalse(v)
  lu.assertEquals(inner_err.limit, 1e4)
  -- an inner budget larger than what the outer one has left: the outer one stops it
  local err = expect_budget(1e5, function() return call(1e9, spin) end)
  lu.assertEquals(err.limit, 1e5)
end

function TestBudget:test_the_budget_counts_across_waits_in_a_task()
  local phases = 0
  local t = couch.spawn(function()
    return call(3e6, function()
      while true do
        for _ = 1, 2e5 do end -- some work, then a wait, again and again
        phases = phases + 1
        couch.sleep(0)
      end
    end)
  end)
  local ok, err = pcall(t.wait, t)
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "budget")
  lu.assertTrue(phases >= 2, "it waited " .. phases .. " times")
  lu.assertTrue(phases < 100, "the budget was not counted across waits: " .. phases .. " phases")
end

function TestBudget:test_other_tasks_run_free_while_a_budgeted_one_waits()
  local done = false
  local free = couch.spawn(function()
    couch.sleep(0.01)
    local s = 0
    for i = 1, 2e6 do s = s + i end -- more than the budgeted task's whole budget
    done = true
  end)
  local limited = couch.spawn(function() return call(1e6, function() couch.sleep(0.05); return "ok" end) end)
  lu.assertEquals(limited:wait(), "ok")
  free:wait()
  lu.assertTrue(done)
end

function TestBudget:test_a_bad_limit_is_a_usage_error()
  local ok, err = pcall(call, 0, spin)
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "usage")
end

os.exit(lu.LuaUnit.run())
