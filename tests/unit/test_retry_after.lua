-- Retry-After against the FAKE CouchDB (tests/fakes/fake_couch.js): obeyed up to
-- max_retry_after (default 60 s), read safely (seconds, an HTTP date, or nonsense such as
-- 1e300 that once overflowed a float->long cast), and the error says when the cap cut it.
local src = os.getenv("COUCHLUA_SOURCE_DIR") or (arg and arg[0] or ""):match("^(.*)/tests/unit/[^/]*$") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path .. ";/usr/share/lua/5.4/?.lua"
local lu = require "luaunit"
local couch = require "couch"
local fake = require "fake"

local f = fake.start()
local busy = { error = "too_many_requests", reason = "slow down" }
local unavailable = { error = "service_unavailable", reason = "Service unavailable" }

local function timed(fn)
  local t0 = couch.now()
  local ok, res = pcall(couch.timeout, 30, fn)
  return ok, res, couch.now() - t0
end

TestRetryAfter = {}

function TestRetryAfter:setUp() f:reset() end

function TestRetryAfter:test_an_hour_is_cut_to_max_retry_after()
  f:script("/db", { { status = 503, retry_after = 3600, body = unavailable }, { status = 200, body = { db_name = "db" } } })
  local srv = couch.connect(f.url, { max_retry_after = 0.3 })
  local ok, res, dt = timed(function() return srv:db("db"):info() end)
  lu.assertTrue(ok, tostring(res))
  lu.assertEquals(res.db_name, "db")
  lu.assertTrue(dt >= 0.25, "waited " .. dt)
  lu.assertTrue(dt < 3, "waited " .. dt)
end

function TestRetryAfter:test_1e300_is_read_safely_and_the_error_says_the_cap_was_hit()
  f:script("/db", { { status = 503, retry_after = "1e300", body = unavailable, times = -1 } })
  local srv = couch.connect(f.url, { retries = 2, max_retry_after = 0.2 })
  local ok, err, dt = timed(function() return srv:db("db"):info() end)
  lu.assertFalse(ok)
  lu.assertTrue(couch.is_error(err), tostring(err))
  lu.assertEquals(err.kind, "http")
  lu.assertEquals(err.status, 503)
  lu.assertEquals(err.retries, 2)
  lu.assertStrContains(tostring(err), "Retry-After asked for 1e+300 s; waited at most max_retry_after = 0.2 s")
  lu.assertTrue(dt >= 0.35 and dt < 5, "took " .. dt)
end

function TestRetryAfter:test_an_http_date_is_obeyed()
  local at = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 2)
  f:script("/db", { { status = 429, retry_after = at, body = busy }, { status = 200, body = { db_name = "db" } } })
  local ok, res, dt = timed(function() return couch.connect(f.url):db("db"):info() end)
  lu.assertTrue(ok, tostring(res))
  lu.assertTrue(dt >= 0.9, "an HTTP date 2 s ahead was not waited for: " .. dt)
  lu.assertTrue(dt < 5, "took " .. dt)
end

function TestRetryAfter:test_garbage_is_ignored()
  f:script("/db", { { status = 503, retry_after = "soon-ish", body = unavailable }, { status = 200, body = { db_name = "db" } } })
  local ok, res, dt = timed(function() return couch.connect(f.url, { backoff = 0.01 }):db("db"):info() end)
  lu.assertTrue(ok, tostring(res))
  lu.assertTrue(dt < 2, "took " .. dt)
end

-- The default cap is 60 s: an hour asked for with max_rate_limit_wait = 1 cannot be waited
-- out, and the error says both limits.
function TestRetryAfter:test_default_cap_is_a_minute()
  f:script("/db", { { status = 429, retry_after = 3600, body = busy, times = -1 } })
  local srv = couch.connect(f.url, { max_rate_limit_wait = 1 })
  local ok, err, dt = timed(function() return srv:db("db"):info() end)
  lu.assertFalse(ok)
  lu.assertEquals(err.status, 429)
  lu.assertEquals(err.limit, "max_rate_limit_wait")
  lu.assertStrContains(tostring(err), "Retry-After asked for 3600 s; waited at most max_retry_after = 60 s")
  lu.assertTrue(dt < 3, "took " .. dt)
end

os.exit(lu.LuaUnit.run())
