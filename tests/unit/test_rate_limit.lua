-- Rate limits against the FAKE CouchDB (tests/fakes/fake_couch.js): requests slow down
-- while the server answers 429 and speed up again after; max_rps caps the request rate.
local src = os.getenv("COUCHLUA_SOURCE_DIR") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path
local lu = require "luaunit"
local couch = require "couch"
local fake = require "fake"

local f = fake.start()
local too_many = { error = "too_many_requests", reason = "You've exceeded your rate limit allowance." }

TestRateLimit = {}

function TestRateLimit:setUp() f:reset() end

function TestRateLimit:test_429s_widen_the_gap_between_requests_and_it_shrinks_back()
  f:script("/db/doc", { { status = 429, body = too_many, times = 6 } })
  local srv = couch.connect(f.url, { retries = 10, backoff = 0.01, max_backoff = 0.05 })
  local tasks = {}
  for i = 1, 4 do tasks[i] = couch.spawn(function() return srv:request("GET", "/db/doc", { allow = { [404] = true } }) end) end
  couch.all(tasks)
  local st = srv:stats()
  lu.assertEquals(st.throttled, 6)
  lu.assertTrue(st.interval_ms >= 20, "requests are paced after 429s: " .. st.interval_ms)
  local widest = st.interval_ms
  for _ = 1, 40 do srv:request("GET", "/", {}) end
  lu.assertTrue(srv:stats().interval_ms < widest, "the pace recovers once the 429s stop")
end

function TestRateLimit:test_max_rps_caps_the_rate()
  local srv = couch.connect(f.url, { max_rps = 20 })
  local t0 = couch.now()
  local tasks = {}
  for i = 1, 21 do tasks[i] = couch.spawn(function() return srv:request("GET", "/") end) end
  couch.all(tasks)
  local dt = couch.now() - t0
  lu.assertTrue(dt >= 0.95, ("21 requests at 20/s took %.2fs"):format(dt))
  lu.assertEquals(srv:stats().interval_ms, 50)
end

function TestRateLimit:test_max_rps_must_be_a_number()
  local ok, err = pcall(couch.connect, f.url, { max_rps = "fast" })
  lu.assertFalse(ok)
  lu.assertEquals(err.argument, "max_rps")
end

os.exit(lu.LuaUnit.run())
