-- The request layer against tests/fakes/hostile.js, a CouchDB that misbehaves on purpose:
-- answers that never end, gzip bombs, a 1 MB header line, rate limits, and a _changes
-- that answers every long-poll at once. Each ends in a structured error (kind, url without
-- credentials, the limit named) or a correct result, within a bounded time and with the
-- process's peak memory (VmHWM) bounded.
local src = os.getenv("COUCHLUA_SOURCE_DIR") or (arg and arg[0] or ""):match("^(.*)/tests/unit/[^/]*$") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path .. ";/usr/share/lua/5.4/?.lua"
local lu = require "luaunit"
local couch = require "couch"
local hostile = require "hostile"

local H = hostile.start()
local SECRET = "s3cret-pw"
local URL = ("http://admin:%s@127.0.0.1:%d"):format(SECRET, H.port)

local counter = 0
local function fresh_db(srv, mode, empty)
  counter = counter + 1
  local db = srv:db("net_" .. counter)
  db:create()
  if not empty then db:bulk_docs { { _id = "a" }, { _id = "b" } } end
  if mode then H:mode(db.name, mode) end
  return db
end

-- The process's peak resident set so far, in MiB (Linux).
local function peak_mib()
  local f = assert(io.open("/proc/self/status"))
  local kb = f:read("a"):match("VmHWM:%s*(%d+)")
  f:close()
  return tonumber(kb) / 1024
end

-- fn must fail: the error object and the seconds it took.
local function fails(fn)
  local t0 = couch.now()
  local ok, err = pcall(couch.timeout, 60, fn)
  lu.assertFalse(ok, "expected an error")
  lu.assertTrue(couch.is_error(err), "not a structured error: " .. tostring(err))
  lu.assertNotStrContains(tostring(err), SECRET)
  lu.assertNotStrContains(tostring(err), "attempt to")
  lu.assertNotStrContains(tostring(err), "Out of memory")
  return err, couch.now() - t0
end

TestResponseLimits = {}

-- An endless chunked body stops at max_response_bytes, not at the machine's memory.
function TestResponseLimits:test_endless_body_stops_at_max_response_bytes()
  local srv = couch.connect(URL, { max_response_bytes = 8 * 1024 * 1024, retries = 0 })
  local db = fresh_db(srv, "endless_body")
  local before = peak_mib()
  local err, took = fails(function() return db:all_docs() end)
  lu.assertEquals(err.kind, "http")
  lu.assertEquals(err.error, "response_too_large")
  lu.assertEquals(err.limit, "max_response_bytes")
  lu.assertEquals(err.status, 200)
  lu.assertStrContains(err.url, "/" .. db.name .. "/_all_docs")
  lu.assertStrContains(tostring(err), "max_response_bytes")
  lu.assertTrue(took < 20, ("took %.1fs"):format(took))
  lu.assertTrue(peak_mib() - before < 64, ("peak grew by %.0f MiB"):format(peak_mib() - before))
end

-- A gzip bomb (1 MB on the wire, 1 GiB inflated) stops at the compression ratio cap,
-- long before max_response_bytes.
function TestResponseLimits:test_gzip_bomb_stops_at_the_compression_ratio_cap()
  local srv = couch.connect(URL, { compression = true, retries = 0 })
  local db = fresh_db(srv, "gzip_bomb")
  local before = peak_mib()
  local err, took = fails(function() return db:info() end)
  lu.assertEquals(err.kind, "http")
  lu.assertEquals(err.error, "response_too_large")
  lu.assertEquals(err.limit, "max_compression_ratio")
  lu.assertStrContains(tostring(err), "max_compression_ratio")
  lu.assertTrue(took < 20, ("took %.1fs"):format(took))
  lu.assertTrue(peak_mib() - before < 64, ("peak grew by %.0f MiB"):format(peak_mib() - before))
end

-- With the ratio cap off, max_response_bytes still holds an inflated body.
function TestResponseLimits:test_gzip_bomb_without_ratio_cap_stops_at_max_response_bytes()
  local srv = couch.connect(URL, { compression = true, retries = 0, max_compression_ratio = 0,
                                   max_response_bytes = 16 * 1024 * 1024 })
  local db = fresh_db(srv, "gzip_bomb")
  local before = peak_mib()
  local err = fails(function() return db:info() end)
  lu.assertEquals(err.limit, "max_response_bytes")
  lu.assertTrue(peak_mib() - before < 96, ("peak grew by %.0f MiB"):format(peak_mib() - before))
end

-- Ordinary compressed answers are untouched by the cap.
function TestResponseLimits:test_compressed_ordinary_answers_pass()
  local srv = couch.connect(URL, { compression = true })
  local db = fresh_db(srv)
  lu.assertEquals(#db:all_docs().rows, 2)
end

function TestResponseLimits:test_limits_are_checked_options()
  for _, bad in ipairs { { max_response_bytes = "big" }, { max_compression_ratio = -1 },
                         { max_retry_after = "soon" }, { max_rate_limit_wait = false } } do
    local ok, err = pcall(couch.connect, URL, bad)
    lu.assertFalse(ok)
    lu.assertEquals(err.kind, "usage")
    lu.assertEquals(err.argument, (next(bad)))
    lu.assertNotStrContains(err.message, "unknown option") -- known, with a wrong value
  end
end

-- A 1 MB header line: a structured error that says what was wrong, not "Out of memory".
function TestResponseLimits:test_huge_header_line_is_a_clear_error()
  local srv = couch.connect(URL, { retries = 0 })
  local db = fresh_db(srv, "huge_header")
  local err, took = fails(function() return db:info() end)
  lu.assertEquals(err.kind, "http")
  lu.assertEquals(err.error, "header_too_large")
  lu.assertStrContains(err.url, "/" .. db.name)
  lu.assertStrContains(tostring(err), "header")
  lu.assertTrue(took < 20)
end

TestRateLimited = {}

-- Four 429s in a row (Retry-After: 1) do not use up retries = 3: the request waits them
-- out and succeeds.
function TestRateLimited:test_consecutive_429s_are_waited_out_not_counted_as_retries()
  local srv = couch.connect(URL, { retries = 3, backoff = 0.05 })
  local db = fresh_db(srv, "throttle:4")
  local t0 = couch.now()
  lu.assertEquals(db:info().db_name, db.name)
  lu.assertTrue(couch.now() - t0 >= 3.5, "Retry-After: 1 honoured each time")
  lu.assertEquals(srv:stats().throttled, 4)
end

-- The same in a replication: the run is paced, not ended.
function TestRateLimited:test_a_replication_waits_out_rate_limits()
  local srv = couch.connect(URL, { retries = 3, backoff = 0.05 })
  local s, t = fresh_db(srv), fresh_db(srv, "throttle:4", true)
  local stats = couch.timeout(60, function()
    return couch.replication({ source = s, target = t, quiet = true }):wait()
  end)
  lu.assertEquals(stats.docs_written, 2)
  lu.assertEquals(H:count(t.name), 2)
end

-- Waiting out 429s is bounded too: max_rate_limit_wait, then the 429 is the error.
function TestRateLimited:test_rate_limit_wait_is_bounded()
  local srv = couch.connect(URL, { retries = 3, backoff = 0.05, max_rate_limit_wait = 1.5 })
  local db = fresh_db(srv, "throttle:100")
  local err, took = fails(function() return db:info() end)
  lu.assertEquals(err.kind, "http")
  lu.assertEquals(err.status, 429)
  lu.assertStrContains(tostring(err), "max_rate_limit_wait")
  lu.assertTrue(took < 6, ("took %.1fs"):format(took))
end

TestChangesFeedBadAnswers = {}

-- A server that answers every long-poll at once with no rows: the feed backs off instead
-- of spinning (the finding: 39,055 requests in 5 s).
function TestChangesFeedBadAnswers:test_instant_empty_answers_back_off()
  local srv = couch.connect(URL)
  local db = fresh_db(srv)
  H:mode(db.name, "changes_instant")
  local before = #H:log()
  local rows = 0
  pcall(couch.timeout, 2, function()
    for _ in db:changes_feed { since = "now", poll = 30 } do rows = rows + 1 end
  end)
  local log, n = H:log(), 0
  for i = before + 1, #log do if log[i].path:match("_changes$") then n = n + 1 end end
  lu.assertEquals(rows, 0)
  lu.assertTrue(n >= 2, "it does poll: " .. n)
  lu.assertTrue(n <= 12, ("%d requests in 2 s"):format(n))
end

-- Backing off does not delay a close: feed:close() from another task ends the feed within
-- a moment, even while it pauses between quick answers.
function TestChangesFeedBadAnswers:test_close_ends_a_pausing_feed_at_once()
  local srv = couch.connect(URL)
  local db = fresh_db(srv, "changes_instant")
  local iter, feed = db:changes_feed { since = "now", poll = 30 }
  local follower = couch.spawn(function() for _ in iter, feed do end end)
  couch.sleep(3.5) -- the pauses have grown past a second by now
  local t0 = couch.now()
  feed:close()
  follower:wait(10)
  lu.assertTrue(couch.now() - t0 < 0.5, ("close took %.2fs"):format(couch.now() - t0))
end

-- An answer that is not a changes object, again and again: a structured error after
-- max_failures of them, with back-off in between.
function TestChangesFeedBadAnswers:test_repeated_non_table_answers_raise()
  local srv = couch.connect(URL)
  local db = fresh_db(srv, "changes_not_table")
  local err, took = fails(function()
    for _ in db:changes_feed { since = 0, poll = 5, max_failures = 3 } do end
  end)
  lu.assertEquals(err.kind, "http")
  lu.assertEquals(err.error, "bad_response")
  lu.assertStrContains(err.url, "/" .. db.name .. "/_changes")
  lu.assertTrue(took < 10, ("took %.1fs"):format(took))
end

-- A one-shot read gets the same check: one bad answer is the error at once.
function TestChangesFeedBadAnswers:test_one_shot_read_of_a_non_table_answer_raises()
  local srv = couch.connect(URL)
  local db = fresh_db(srv, "changes_not_table")
  local err = fails(function() return db:changes() end)
  lu.assertEquals(err.kind, "http")
  lu.assertEquals(err.error, "bad_response")
  lu.assertEquals(err.status, 200)
  lu.assertStrContains(err.url, "/" .. db.name .. "/_changes")
end

local rc = lu.LuaUnit.run()
H:stop()
os.exit(rc)
