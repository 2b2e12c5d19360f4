-- The HTTP layer when things go wrong, against the FAKE CouchDB (tests/fakes/fake_couch.js):
-- retries and backoff (5xx, 429 + Retry-After, refused connections), which methods are
-- retried, timeouts on stalled answers, truncated / closed / non-JSON answers, the shape
-- of error objects, the per-server concurrency limit, cancelling requests mid-flight.
-- Wall-clock assertions are lower bounds only (plus generous "did not hang" ceilings).
local src = os.getenv("COUCHLUA_SOURCE_DIR") or (arg and arg[0] or ""):match("^(.*)/tests/unit/[^/]*$") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path .. ";/usr/share/lua/5.4/?.lua"
local lu = require "luaunit"
local couch = require "couch"
local fake = require "fake"

local f = fake.start()

local function connect(opts) return couch.connect(f.url, opts) end

-- pcall a function that must fail; returns the error object and the time it took
local function fails(fn, ...)
  local t0 = couch.now()
  local ok, err = pcall(fn, ...)
  local dt = couch.now() - t0
  lu.assertFalse(ok, "expected an error")
  lu.assertTrue(couch.is_error(err), "not a couch error object: " .. tostring(err))
  return err, dt
end

local function one_line(e)
  local s = tostring(e)
  lu.assertNotStrContains(s, "\n")
  return s
end

local unavailable = { error = "service_unavailable", reason = "Service unavailable" }

TestHttpFaults = {}

function TestHttpFaults:setUp() f:reset() end

-- ---- retries ----

function TestHttpFaults:test_503_then_200_on_GET_succeeds_after_one_retry()
  f:script("/db/doc", { { status = 503, body = unavailable }, { status = 200, body = { _id = "doc", v = 1 } } })
  local body, status = connect():request("GET", "/db/doc")
  lu.assertEquals(status, 200)
  lu.assertEquals(body._id, "doc")
  lu.assertEquals(#f:requests("/db/doc"), 2)
end

function TestHttpFaults:test_db_get_retries_too()
  f:script("/db/doc", { { status = 502, body = "bad gateway" }, { status = 504, body = "timeout" },
                        { status = 200, body = { _id = "doc", v = 1 } } })
  local doc = connect():db("db"):get("doc")
  lu.assertEquals(doc.v, 1)
  lu.assertEquals(#f:requests("/db/doc"), 3)
end

function TestHttpFaults:test_503_forever_gives_an_http_error_after_3_retries_and_the_backoff()
  f:script("/db/doc", { { status = 503, body = unavailable, times = -1 } })
  local srv = connect()
  local e, dt = fails(srv.request, srv, "GET", "/db/doc")
  lu.assertEquals(e.kind, "http")
  lu.assertEquals(e.status, 503)
  lu.assertEquals(e.error, "service_unavailable")
  lu.assertEquals(e.retries, 3)
  lu.assertEquals(#f:requests("/db/doc"), 4)
  -- backoff 0.1 s doubled each retry, jitter 50-100%: at least 0.05 + 0.1 + 0.2
  lu.assertTrue(dt >= 0.3, "no backoff between retries: " .. dt)
  lu.assertTrue(dt < 10, "took too long: " .. dt)
  lu.assertStrContains(one_line(e), "after 3 retries")
end

function TestHttpFaults:test_backoff_grows_between_attempts()
  f:script("/db/doc", { { status = 503, body = unavailable, times = -1 } })
  local srv = connect { backoff = 0.2 }
  fails(srv.request, srv, "GET", "/db/doc")
  local reqs = f:requests("/db/doc")
  lu.assertEquals(#reqs, 4)
  -- gaps: >= 0.1, >= 0.2, >= 0.4 s (base 0.2 s, doubled, jitter at least 50%)
  local want = { 100, 200, 400 }
  for i = 2, 4 do
    local gap = reqs[i].t - reqs[i - 1].t
    lu.assertTrue(gap >= want[i - 1] - 5, ("gap %d was %d ms"):format(i - 1, gap))
  end
end

function TestHttpFaults:test_max_backoff_caps_the_wait()
  f:script("/db/doc", { { status = 503, body = unavailable, times = -1 } })
  local srv = connect { backoff = 5, max_backoff = 0.1 }
  local _, dt = fails(srv.request, srv, "GET", "/db/doc")
  lu.assertEquals(#f:requests("/db/doc"), 4)
  lu.assertTrue(dt < 3, "max_backoff ignored: " .. dt)
end

function TestHttpFaults:test_POST_500_is_not_retried()
  f:script("/db", { { status = 500, body = { error = "unknown_error", reason = "function_clause" }, times = -1 } }, "POST")
  local srv = connect()
  local e = fails(srv.request, srv, "POST", "/db", { body = { a = 1 } })
  lu.assertEquals(e.kind, "http")
  lu.assertEquals(e.status, 500)
  lu.assertEquals(e.method, "POST")
  lu.assertEquals(e.retries, 0)
  lu.assertEquals(#f:requests("/db", "POST"), 1)
end

function TestHttpFaults:test_PUT_503_is_not_retried()
  f:script("/db/doc", { { status = 503, body = unavailable, times = -1 } }, "PUT")
  local srv = connect()
  local e = fails(srv.request, srv, "PUT", "/db/doc", { body = { a = 1 } })
  lu.assertEquals(e.status, 503)
  lu.assertEquals(#f:requests("/db/doc", "PUT"), 1)
end

function TestHttpFaults:test_POST_idempotent_is_retried()
  f:script("/db/_find", { { status = 500, body = { error = "error", reason = "boom" } },
                          { status = 200, body = { docs = {} } } }, "POST")
  local body, status = connect():request("POST", "/db/_find", { body = { selector = {} }, idempotent = true })
  lu.assertEquals(status, 200)
  lu.assertNotNil(body.docs)
  local reqs = f:requests("/db/_find", "POST")
  lu.assertEquals(#reqs, 2)
  lu.assertEquals(reqs[2].body, reqs[1].body) -- the same body sent again
end

function TestHttpFaults:test_bulk_docs_is_retried_as_idempotent()
  f:script("/db/_bulk_docs", { { status = 503, body = unavailable },
                               { status = 201, body = { { ok = true, id = "a", rev = "1-x" } } } }, "POST")
  local res = connect():db("db"):bulk_docs({ { _id = "a" } })
  lu.assertEquals(res[1].id, "a")
  lu.assertEquals(#f:requests("/db/_bulk_docs", "POST"), 2)
end

function TestHttpFaults:test_429_with_retry_after_waits_then_succeeds_for_any_method()
  f:script("/db", { { status = 429, retry_after = 1,
                      body = { error = "too_many_requests", reason = "You've exceeded your rate limit allowance." } },
                    { status = 201, body = { ok = true, id = "x", rev = "1-a" } } }, "POST")
  local t0 = couch.now()
  local body, status = connect():request("POST", "/db", { body = { a = 1 } })
  local dt = couch.now() - t0
  lu.assertEquals(status, 201)
  lu.assertEquals(body.id, "x")
  lu.assertEquals(#f:requests("/db", "POST"), 2)
  lu.assertTrue(dt >= 0.9, "Retry-After: 1 not honoured, retried after " .. dt .. " s")
end

function TestHttpFaults:test_retry_after_on_503_is_honoured()
  f:script("/db/doc", { { status = 503, retry_after = 1, body = unavailable }, { status = 200, body = { ok = true } } })
  local t0 = couch.now()
  local body = connect():request("GET", "/db/doc")
  lu.assertTrue(body.ok)
  lu.assertTrue(couch.now() - t0 >= 0.9)
end

function TestHttpFaults:test_retries_0_per_call_overrides_the_server_setting()
  f:script("/db/doc", { { status = 503, body = unavailable, times = -1 } })
  local srv = connect()
  local e = fails(srv.request, srv, "GET", "/db/doc", { retries = 0 })
  lu.assertEquals(e.status, 503)
  lu.assertEquals(e.retries, 0)
  lu.assertEquals(#f:requests("/db/doc"), 1)
  lu.assertNotStrContains(one_line(e), "retr")
end

function TestHttpFaults:test_retries_per_server_and_per_call()
  f:script("/db/doc", { { status = 503, body = unavailable, times = -1 } })
  local srv = connect { retries = 1, backoff = 0.01 }
  local e = fails(srv.request, srv, "GET", "/db/doc")
  lu.assertEquals(e.retries, 1)
  lu.assertEquals(#f:requests("/db/doc"), 2)
  lu.assertStrContains(one_line(e), "after 1 retry")
  f:reset()
  f:script("/db/doc", { { status = 503, body = unavailable, times = -1 } })
  e = fails(srv.request, srv, "GET", "/db/doc", { retries = 2 })
  lu.assertEquals(e.retries, 2)
  lu.assertEquals(#f:requests("/db/doc"), 3)
end

-- ---- the network ----

function TestHttpFaults:test_connection_refused_is_a_network_error_naming_the_url_after_retries()
  local port = f:closed_port()
  local url = "http://127.0.0.1:" .. port
  local srv = couch.connect(url, { backoff = 0.01 })
  local e = fails(srv.request, srv, "GET", "/db/doc")
  lu.assertEquals(e.kind, "network")
  lu.assertEquals(e.url, url .. "/db/doc")
  lu.assertEquals(e.method, "GET")
  lu.assertEquals(e.retries, 3)
  lu.assertNil(e.status)
  local s = one_line(e)
  lu.assertStrContains(s, url .. "/db/doc")
  lu.assertStrContains(s, "network")
  -- nothing reached the server, so a POST is retried as well
  e = fails(srv.request, srv, "POST", "/db", { body = { a = 1 } })
  lu.assertEquals(e.kind, "network")
  lu.assertEquals(e.retries, 3)
end

function TestHttpFaults:test_a_stalled_answer_times_out_instead_of_hanging()
  f:script("/db/stall", { { behaviour = "stall", times = -1 } })
  local srv = connect()
  local e, dt = fails(srv.request, srv, "GET", "/db/stall", { timeout = 0.5, retries = 1 })
  lu.assertEquals(e.kind, "timeout")
  lu.assertEquals(e.url, f.url .. "/db/stall")
  lu.assertEquals(e.retries, 1)
  lu.assertEquals(#f:requests("/db/stall"), 2)
  lu.assertTrue(dt >= 0.9, "timed out too early: " .. dt)
  lu.assertTrue(dt < 5, "timeout not enforced: " .. dt)
  one_line(e)
end

function TestHttpFaults:test_the_server_timeout_option_applies_and_POST_is_not_retried_after_a_timeout()
  f:script("/db", { { behaviour = "stall", times = -1 } }, "POST")
  local srv = connect { timeout = 0.4 }
  local e, dt = fails(srv.request, srv, "POST", "/db", { body = { a = 1 } })
  lu.assertEquals(e.kind, "timeout")
  lu.assertEquals(#f:requests("/db", "POST"), 1)
  lu.assertTrue(dt < 4, "took " .. dt)
end

function TestHttpFaults:test_a_truncated_body_is_a_network_error()
  f:script("/db/doc", { { behaviour = "truncate", times = -1 } })
  local srv = connect { backoff = 0.01 }
  local e = fails(srv.request, srv, "GET", "/db/doc")
  lu.assertEquals(e.kind, "network")
  lu.assertEquals(e.url, f.url .. "/db/doc")
  lu.assertEquals(#f:requests("/db/doc"), 4) -- a GET is safe to repeat
  one_line(e)
end

function TestHttpFaults:test_a_closed_connection_is_a_network_error_and_GET_is_retried()
  f:script("/db/doc", { { behaviour = "close", times = -1 } })
  local srv = connect { backoff = 0.01 }
  local e = fails(srv.request, srv, "GET", "/db/doc")
  lu.assertEquals(e.kind, "network")
  lu.assertEquals(e.url, f.url .. "/db/doc")
  lu.assertEquals(e.retries, 3)
  -- 4 attempts; libcurl may add one transparent re-send when the first one went out on a
  -- reused keep-alive connection
  lu.assertTrue(#f:requests("/db/doc") >= 4)
  one_line(e)
end

function TestHttpFaults:test_a_POST_whose_connection_is_closed_unanswered_is_not_sent_again()
  local srv = connect { backoff = 0.01 }
  srv:request("GET", "/") -- leaves a keep-alive connection to reuse
  f:reset()
  f:script("/db", { { behaviour = "close", times = -1 } }, "POST")
  local e = fails(srv.request, srv, "POST", "/db", { body = { a = 1 } })
  lu.assertEquals(e.kind, "network")
  lu.assertEquals(e.retries, 0)
  local sent = #f:requests("/db", "POST")
  lu.assertEquals(sent, 1)
end

function TestHttpFaults:test_a_broken_json_body_is_a_json_error_naming_the_url()
  f:script("/db/doc", { { behaviour = "bad_json" } })
  local srv = connect()
  local e = fails(srv.request, srv, "GET", "/db/doc")
  lu.assertEquals(e.kind, "json")
  lu.assertEquals(e.url, f.url .. "/db/doc")
  lu.assertStrContains(one_line(e), f.url .. "/db/doc")
end

function TestHttpFaults:test_an_html_page_instead_of_json_is_a_json_error_naming_the_url()
  -- e.g. a proxy or captive portal answering 200 text/html to an API call
  f:script("/db/doc", { { behaviour = "not_json" } })
  local srv = connect()
  local ok, res = pcall(srv.request, srv, "GET", "/db/doc")
  lu.assertFalse(ok)
  lu.assertTrue(couch.is_error(res))
  lu.assertEquals(res.kind, "json")
  lu.assertStrContains(one_line(res), f.url .. "/db/doc")
  -- raw = true is how a caller asks for the bytes of a non-JSON answer
  f:script("/db/doc", { { behaviour = "not_json" } })
  local body = srv:request("GET", "/db/doc", { raw = true })
  lu.assertStrContains(body, "<html>")
end

-- ---- error objects ----

function TestHttpFaults:test_a_404_error_has_the_couchdb_fields_and_one_line()
  local srv = connect()
  local e = fails(srv.request, srv, "GET", "/db/nodoc")
  lu.assertEquals(e.kind, "http")
  lu.assertEquals(e.status, 404)
  lu.assertEquals(e.error, "not_found")
  lu.assertEquals(e.reason, "missing")
  lu.assertEquals(e.method, "GET")
  lu.assertEquals(e.url, f.url .. "/db/nodoc")
  lu.assertEquals(e.retries, 0)
  local s = one_line(e)
  for _, part in ipairs { "404", "not_found", "missing", "GET", f.url .. "/db/nodoc" } do
    lu.assertStrContains(s, part)
  end
  -- the same through the database API, and for a missing database
  e = fails(srv:db("db").get, srv:db("db"), "nodoc")
  lu.assertEquals(e.reason, "missing")
  e = fails(srv:db("nodb").info, srv:db("nodb"))
  lu.assertEquals(e.status, 404)
  lu.assertEquals(e.reason, "Database does not exist.")
  lu.assertEquals(#f:requests("/db/nodoc"), 2) -- a 404 is not retried
end

function TestHttpFaults:test_allow_returns_the_status_instead_of_raising()
  local body, status = connect():request("GET", "/db/nodoc", { allow = { [404] = true } })
  lu.assertEquals(status, 404)
  lu.assertEquals(body.error, "not_found")
end

function TestHttpFaults:test_409_conflict_fields()
  local srv = connect()
  local e = fails(srv.request, srv, "PUT", "/db/doc1", { body = { a = 2 } })
  lu.assertEquals(e.status, 409)
  lu.assertEquals(e.error, "conflict")
  lu.assertEquals(e.reason, "Document update conflict.")
  lu.assertEquals(e.method, "PUT")
end

function TestHttpFaults:test_unknown_options_are_usage_errors_naming_the_option()
  local e = fails(couch.connect, f.url, { retry = 3 })
  lu.assertEquals(e.kind, "usage")
  lu.assertStrContains(tostring(e), "retry")
  local srv = connect()
  e = fails(srv.request, srv, "GET", "/", { tiemout = 1 })
  lu.assertEquals(e.kind, "usage")
  lu.assertStrContains(tostring(e), "tiemout")
  lu.assertEquals(#f:requests(), 0)
end

-- ---- concurrency ----

function TestHttpFaults:test_max_concurrency_limits_requests_in_flight()
  f:script("/db/slow", { { delay = 200, status = 200, body = { ok = true }, times = -1 } })
  local srv = connect { max_concurrency = 4 }
  local tasks = {}
  local t0 = couch.now()
  for i = 1, 16 do
    tasks[i] = couch.spawn(function() return (srv:request("GET", "/db/slow", { query = { n = i } })).ok end)
  end
  for i = 1, 16 do lu.assertTrue(tasks[i]:wait()) end
  local dt = couch.now() - t0
  local log = f:log()
  lu.assertEquals(#log.requests, 16)
  lu.assertTrue(log.max_in_flight <= 4, "the fake saw " .. log.max_in_flight .. " at once")
  lu.assertEquals(log.max_in_flight, 4)
  lu.assertTrue(dt >= 0.75, "16 x 200 ms, 4 at a time, took only " .. dt)
  -- FIFO: they went in waves of 4, in the order they were made (within a wave the four
  -- may arrive in any order)
  for i = 1, 16 do
    local n = tonumber(log.requests[i].query.n)
    lu.assertEquals((n - 1) // 4, (i - 1) // 4, "request " .. n .. " arrived " .. i .. "th")
  end
end

function TestHttpFaults:test_many_tasks_without_a_limit_run_at_once()
  f:script("/db/slow", { { delay = 300, status = 200, body = { ok = true }, times = -1 } })
  local srv = connect()
  local tasks = {}
  for i = 1, 16 do tasks[i] = couch.spawn(function() return (srv:request("GET", "/db/slow")).ok end) end
  for i = 1, 16 do lu.assertTrue(tasks[i]:wait()) end
  lu.assertEquals(f:log().max_in_flight, 16)
end

-- ---- cancelling ----

function TestHttpFaults:test_cancelling_a_request_mid_flight_frees_its_slot_and_the_connection()
  f:script("/db/stall", { { behaviour = "stall", times = -1 } })
  local srv = connect { max_concurrency = 1 }
  local a = couch.spawn(function() return srv:request("GET", "/db/stall") end)
  local b = couch.spawn(function() return (srv:request("GET", "/db/doc1"))._id end)
  couch.sleep(0.3)
  lu.assertEquals(b:status(), "waiting") -- queued behind the stalled one
  lu.assertEquals(#f:requests("/db/doc1"), 0)
  a:cancel()
  lu.assertEquals(b:wait(), "doc1")
  local ok, e = pcall(a.wait, a)
  lu.assertFalse(ok)
  lu.assertEquals(couch.is_error(e) and e.kind, "cancelled")
  -- the stalled transfer was really dropped: the fake sees no request in flight
  couch.sleep(0.1)
  lu.assertEquals(f:log().in_flight, 0)
  -- and later requests work
  lu.assertEquals((srv:request("GET", "/db/doc2"))._id, "doc2")
  lu.assertEquals((srv:request("GET", "/")).couchdb, "Welcome")
end

function TestHttpFaults:test_cancelling_a_queued_request_never_sends_it()
  f:script("/db/stall", { { behaviour = "stall", times = -1 } })
  local srv = connect { max_concurrency = 1 }
  local a = couch.spawn(function() return srv:request("GET", "/db/stall") end)
  local b = couch.spawn(function() return srv:request("GET", "/db/doc1") end)
  couch.sleep(0.2)
  b:cancel()
  a:cancel()
  pcall(a.wait, a)
  pcall(b.wait, b)
  lu.assertEquals((srv:request("GET", "/db/doc2"))._id, "doc2")
  lu.assertEquals(#f:requests("/db/doc1"), 0)
end

function TestHttpFaults:test_cancelling_during_the_backoff_stops_the_retries()
  f:script("/db/doc", { { status = 503, body = unavailable, times = -1 } })
  local srv = connect { backoff = 1 }
  local t = couch.spawn(function() return srv:request("GET", "/db/doc") end)
  couch.sleep(0.2) -- first attempt answered 503; now waiting ~0.5-1 s before the retry
  lu.assertEquals(#f:requests("/db/doc"), 1)
  t:cancel()
  pcall(t.wait, t)
  couch.sleep(1.2)
  lu.assertEquals(#f:requests("/db/doc"), 1)
  lu.assertEquals((srv:request("GET", "/db/doc1"))._id, "doc1")
end

function TestHttpFaults:test_couch_timeout_around_a_stalled_request()
  f:script("/db/stall", { { behaviour = "stall", times = -1 } })
  local srv = connect()
  local e, dt = fails(couch.timeout, 0.3, function() return srv:request("GET", "/db/stall") end)
  lu.assertEquals(e.kind, "timeout")
  lu.assertTrue(dt >= 0.25, "gave up too early: " .. dt)
  lu.assertTrue(dt < 5, "did not give up: " .. dt)
  -- the loop is still usable
  lu.assertEquals((srv:request("GET", "/db/doc1"))._id, "doc1")
  local t = couch.spawn(function() couch.sleep(0.05); return (srv:request("GET", "/")).version end)
  lu.assertEquals(t:wait(), "3.4.3")
  couch.run()
  couch.sleep(0.1)
  lu.assertEquals(f:log().in_flight, 0)
end

-- ---- the end of a script ----

function TestHttpFaults:test_a_script_that_used_the_network_exits_cleanly()
  -- Run through the couchlua command: under the sanitizer build (COUCHLUA_SANITIZE) a leak
  -- of the loop's C resources at lua_close shows as a LeakSanitizer report.
  local couchlua = os.getenv("COUCHLUA")
  if not couchlua then lu.skip("COUCHLUA is not set") end
  f:script("/db/doc", { { status = 503, body = unavailable }, { status = 200, body = { ok = true } } })
  local name = os.tmpname()
  local fh = assert(io.open(name, "w"))
  fh:write(([[
local couch = require "couch"
local srv = couch.connect(%q, { backoff = 0.01 })
assert(srv:request("GET", "/db/doc").ok)
local t = couch.spawn(function() couch.sleep(0.01); return srv:request("GET", "/").version end)
assert(t:wait() == "3.4.3")
print("finished")
]]):format(f.url))
  fh:close()
  local p = assert(io.popen(("'%s' '%s' 2>&1"):format(couchlua, name), "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  os.remove(name)
  lu.assertStrContains(out, "finished")
  lu.assertTrue(ok, ("exit code %s: %s"):format(tostring(code), out))
end

local rc = lu.LuaUnit.run()
f:stop()
os.exit(rc)
