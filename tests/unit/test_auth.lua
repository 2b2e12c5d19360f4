-- Authentication against the FAKE CouchDB (tests/fakes/fake_couch.js): HTTP basic
-- (credentials in the URL or in options), cookie sessions (one login, a new login when
-- the session expires, no loop on a wrong password), IAM bearer tokens (the API key
-- exchange, refresh before expiry and after a 401) and custom headers. What is checked is
-- what went over the wire, from the fake's request log.
local src = os.getenv("COUCHLUA_SOURCE_DIR") or (arg and arg[0] or ""):match("^(.*)/tests/unit/[^/]*$") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path .. ";/usr/share/lua/5.4/?.lua"
local lu = require "luaunit"
local couch = require "couch"
local fake = require "fake"

local f = fake.start()

local b64 = require "b64"

local function fails(fn, ...)
  local ok, err = pcall(fn, ...)
  lu.assertFalse(ok, "expected an error")
  lu.assertTrue(couch.is_error(err), "not a couch error object: " .. tostring(err))
  return err
end

local host = f.url:match("^http://(.*)$")
local TOKEN_URL = f.url .. "/identity/token"
local IAM_FORM_PREFIX = "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey="

-- n tasks that each GET path at the same time (the id of what they read is their result)
local function spawn_gets(srv, n, path)
  local tasks = {}
  for i = 1, n do tasks[i] = couch.spawn(function() return (srv:request("GET", path))._id end) end
  return tasks
end

-- e is the error of a failed login: kind auth, naming the server and saying `why`, with no
-- trace of the secret in any field
local function assert_login_error(e, why, secret)
  lu.assertTrue(couch.is_error(e), tostring(e))
  lu.assertEquals(e.kind, "auth")
  lu.assertStrContains(tostring(e), f.url)
  lu.assertStrContains(tostring(e), why)
  if secret then
    for k, v in pairs(e) do lu.assertNotStrContains(tostring(k) .. "=" .. tostring(v), secret) end
  end
end

TestAuth = {}

function TestAuth:setUp()
  f:reset()
  f:config { users = { admin = "secret", ["some one"] = "p@ss:w/rd%" }, require_auth = true,
             api_keys = { "key-1", "k+y/2=" }, token_expires_in = 3600 }
end

-- ---- basic ----

function TestAuth:test_basic_auth_from_the_url_is_sent_on_the_first_request()
  local srv = couch.connect("http://admin:secret@" .. host)
  lu.assertEquals(srv.url, f.url) -- taken out of the URL
  lu.assertNotStrContains(tostring(srv), "secret")
  lu.assertEquals((srv:request("GET", "/db/doc1"))._id, "doc1")
  local reqs = f:requests()
  lu.assertEquals(#reqs, 1) -- sent up front, not after a 401 challenge
  lu.assertEquals(reqs[1].headers.authorization, "Basic " .. b64("admin:secret"))
  lu.assertNil(reqs[1].headers.cookie)
end

function TestAuth:test_basic_auth_from_a_percent_encoded_url()
  local srv = couch.connect("http://some%20one:p%40ss%3Aw%2Frd%25@" .. host .. "/")
  lu.assertEquals((srv:request("GET", "/db/doc1"))._id, "doc1")
  lu.assertEquals(f:requests()[1].headers.authorization, "Basic " .. b64("some one:p@ss:w/rd%"))
end

function TestAuth:test_basic_auth_from_options()
  for _, opts in ipairs { { user = "admin", password = "secret" }, { username = "admin", password = "secret" },
                          { user = "admin", password = "secret", auth = "basic" } } do
    f:reset()
    local srv = couch.connect(f.url, opts)
    lu.assertEquals((srv:request("GET", "/db/doc2"))._id, "doc2")
    lu.assertEquals(f:requests()[1].headers.authorization, "Basic " .. b64("admin:secret"))
  end
end

function TestAuth:test_options_override_the_url_credentials()
  local srv = couch.connect("http://admin:wrong@" .. host, { password = "secret" })
  lu.assertEquals((srv:request("GET", "/db/doc1"))._id, "doc1")
  lu.assertEquals(f:requests()[1].headers.authorization, "Basic " .. b64("admin:secret"))
end

function TestAuth:test_session_shows_the_basic_user()
  local s = couch.connect(f.url, { user = "admin", password = "secret" }):session()
  lu.assertEquals(s.userCtx.name, "admin")
  lu.assertEquals(s.userCtx.roles, { "_admin" })
  lu.assertEquals(s.info.authenticated, "default")
end

function TestAuth:test_wrong_basic_password_is_an_http_401_without_retries()
  local srv = couch.connect(f.url, { user = "admin", password = "wrong" })
  local e = fails(srv.request, srv, "GET", "/_all_dbs")
  lu.assertEquals(e.kind, "http")
  lu.assertEquals(e.status, 401)
  lu.assertEquals(e.error, "unauthorized")
  lu.assertEquals(e.reason, "Name or password is incorrect.")
  lu.assertEquals(#f:requests(), 1)
end

function TestAuth:test_no_credentials_on_a_server_that_needs_them()
  local srv = couch.connect(f.url)
  local e = fails(srv.request, srv, "GET", "/db/doc1")
  lu.assertEquals(e.status, 401)
  lu.assertEquals(e.reason, "You are not authorized to access this db.")
  lu.assertNil(f:requests()[1].headers.authorization)
end

function TestAuth:test_auth_none_sends_no_credentials()
  local srv = couch.connect(f.url, { user = "admin", password = "secret", auth = "none" })
  fails(srv.request, srv, "GET", "/db/doc1")
  lu.assertNil(f:requests()[1].headers.authorization)
end

-- ---- cookie sessions ----

local function cookie_server(password)
  return couch.connect(f.url, { user = "admin", password = password or "secret", auth = "cookie" })
end

function TestAuth:test_cookie_auth_logs_in_once_for_many_requests()
  local srv = cookie_server()
  for _ = 1, 5 do lu.assertEquals((srv:request("GET", "/db/doc1"))._id, "doc1") end
  local logins = f:requests("/_session", "POST")
  lu.assertEquals(#logins, 1)
  lu.assertEquals(couch.json.decode(logins[1].body), { name = "admin", password = "secret" })
  lu.assertStrContains(logins[1].headers["content-type"], "application/json")
  local gets = f:requests("/db/doc1")
  lu.assertEquals(#gets, 5)
  for _, r in ipairs(gets) do
    lu.assertStrMatches(r.headers.cookie or "", "AuthSession=[%w_%-]+")
    lu.assertNil(r.headers.authorization) -- the password is not sent again
  end
  -- the session cookie is the connection's business: not handed to the caller
  local _, _, headers = srv:request("GET", "/db/doc1")
  lu.assertNil(headers["set-cookie"])
  local s = srv:session()
  lu.assertEquals(s.userCtx.name, "admin")
  lu.assertEquals(s.info.authenticated, "cookie")
end

function TestAuth:test_cookie_auth_logs_in_once_when_many_tasks_start_together()
  local srv = cookie_server()
  local tasks = spawn_gets(srv, 8, "/db/doc1")
  for i = 1, 8 do lu.assertEquals(tasks[i]:wait(), "doc1") end
  local n = #f:requests("/_session", "POST")
  lu.assertEquals(n, 1)
end

function TestAuth:test_cookie_auth_logs_in_again_once_when_the_session_expires()
  local srv = cookie_server()
  lu.assertEquals((srv:request("GET", "/db/doc1"))._id, "doc1")
  local first_cookie = f:requests("/db/doc1")[1].headers.cookie
  f:expire_sessions()
  lu.assertEquals((srv:request("GET", "/db/doc2"))._id, "doc2")
  lu.assertEquals(#f:requests("/_session", "POST"), 2)
  local tries = f:requests("/db/doc2")
  lu.assertEquals(#tries, 2) -- 401 with the stale cookie, then success with the new one
  lu.assertEquals(tries[1].headers.cookie, first_cookie)
  lu.assertNotEquals(tries[2].headers.cookie, first_cookie)
  -- and then it goes on without logging in again
  srv:request("GET", "/db/doc1")
  lu.assertEquals(#f:requests("/_session", "POST"), 2)
end

function TestAuth:test_a_write_after_the_session_expired_is_done_once()
  local srv = cookie_server()
  srv:request("GET", "/db/doc1")
  f:expire_sessions()
  local res = srv:request("PUT", "/db/newdoc", { body = { a = 1 } })
  lu.assertTrue(res.ok)
  lu.assertEquals(#f:requests("/db/newdoc", "PUT"), 2) -- refused (401), then done once
  lu.assertEquals((srv:request("GET", "/db/newdoc")).a, 1)
end

function TestAuth:test_cookie_auth_with_a_wrong_password_fails_without_looping()
  local srv = cookie_server("wrong")
  local e = fails(srv.request, srv, "GET", "/db/doc1")
  lu.assertEquals(e.status, 401)
  lu.assertEquals(e.error, "unauthorized")
  lu.assertEquals(e.reason, "Name or password is incorrect.")
  lu.assertEquals(#f:requests("/_session", "POST"), 1)
  lu.assertEquals(#f:requests("/db/doc1"), 0)
  -- a second call tries once more, no more
  fails(srv.request, srv, "GET", "/db/doc1")
  lu.assertEquals(#f:requests("/_session", "POST"), 2)
  lu.assertEquals(#f:requests(), 2)
end

function TestAuth:test_a_401_that_persists_after_a_new_login_is_raised()
  f:script("/db/doc1", { { status = 401, body = { error = "unauthorized", reason = "You are not authorized to access this db." }, times = -1 } })
  local srv = cookie_server()
  local e = fails(srv.request, srv, "GET", "/db/doc1")
  lu.assertEquals(e.status, 401)
  lu.assertEquals(e.reason, "You are not authorized to access this db.")
  lu.assertEquals(#f:requests("/db/doc1"), 2)
  lu.assertEquals(#f:requests("/_session", "POST"), 2)
end

function TestAuth:test_allow_401_is_returned_not_retried()
  f:script("/db/doc1", { { status = 401, body = { error = "unauthorized", reason = "You are not authorized to access this db." } } })
  local srv = cookie_server()
  local body, status = srv:request("GET", "/db/doc1", { allow = { [401] = true } })
  lu.assertEquals(status, 401)
  lu.assertEquals(body.error, "unauthorized")
  lu.assertEquals(#f:requests("/_session", "POST"), 1)
end

function TestAuth:test_explicit_login_returns_the_session()
  local s = cookie_server():login()
  lu.assertEquals(s.userCtx.name, "admin")
  lu.assertEquals(#f:requests("/_session", "POST"), 1)
end

function TestAuth:test_a_failed_login_is_an_auth_error_naming_the_server_without_the_password()
  local srv = cookie_server("Wrong-Pw-4471")
  local e = fails(srv.request, srv, "GET", "/db/doc1")
  assert_login_error(e, "Name or password is incorrect.", "Wrong-Pw-4471")
  lu.assertEquals(e.status, 401)
  lu.assertEquals(e.url, f.url .. "/_session") -- what failed: the login
  lu.assertEquals(e.method, "POST")
end

function TestAuth:test_a_login_answered_without_a_session_cookie_is_an_auth_error()
  f:script("/_session", { { status = 200, body = { ok = true, name = "admin", roles = {} } } }, "POST")
  local srv = cookie_server()
  assert_login_error(fails(srv.request, srv, "GET", "/db/doc1"), "without a session cookie")
  lu.assertEquals(#f:requests("/db/doc1"), 0)
end

function TestAuth:test_requests_waiting_for_a_failed_login_all_fail_with_it()
  local srv = cookie_server("wrong")
  local tasks = spawn_gets(srv, 6, "/db/doc1")
  for i = 1, 6 do
    assert_login_error(fails(tasks[i].wait, tasks[i]), "Name or password is incorrect.")
  end
  lu.assertEquals(#f:requests("/_session", "POST"), 1) -- one shared login, failed once
  lu.assertEquals(#f:requests("/db/doc1"), 0)
end

function TestAuth:test_requests_that_meet_an_expired_session_together_share_one_new_login()
  local srv = cookie_server()
  srv:request("GET", "/db/doc1")
  f:expire_sessions()
  local tasks = spawn_gets(srv, 8, "/db/doc1")
  for i = 1, 8 do lu.assertEquals(tasks[i]:wait(), "doc1") end
  lu.assertEquals(#f:requests("/_session", "POST"), 2)
  lu.assertEquals(#f:requests("/db/doc1"), 17) -- 1 + 8 refused + 8 retried
end

function TestAuth:test_a_401_to_an_old_session_after_a_new_login_retries_without_logging_in_again()
  local srv = cookie_server()
  srv:request("GET", "/db/doc1")
  -- the first GET /db/doc2 answers 401 late: by then another request has logged in again
  f:script("/db/doc2", { { status = 401, delay = 400,
                           body = { error = "unauthorized", reason = "You are not authorized to access this db." } } }, "GET")
  local slow = couch.spawn(function() return (srv:request("GET", "/db/doc2"))._id end)
  couch.sleep(0.1)
  f:expire_sessions()
  lu.assertEquals((srv:request("GET", "/db/doc1"))._id, "doc1") -- 401, login, retried
  lu.assertEquals(slow:wait(), "doc2")
  lu.assertEquals(#f:requests("/_session", "POST"), 2) -- not a third: the new session is kept
  lu.assertEquals(#f:requests("/db/doc2"), 2)
end

function TestAuth:test_a_request_cancelled_while_it_waits_for_the_login_leaves_the_others_waiting()
  f:script("/_session", { { delay = 300 } }, "POST")
  local srv = cookie_server()
  local t1 = couch.spawn(function() return (srv:request("GET", "/db/doc1"))._id end)
  local t2 = couch.spawn(function() return (srv:request("GET", "/db/doc2"))._id end)
  couch.sleep(0.05)
  t1:cancel()
  lu.assertEquals(t2:wait(), "doc2")
  lu.assertEquals(#f:requests("/_session", "POST"), 1)
  lu.assertEquals(#f:requests("/db/doc1"), 0)
end

function TestAuth:test_a_login_nobody_waits_for_any_more_is_dropped_with_its_server()
  f:script("/_session", { { delay = 300 } }, "POST")
  local t = couch.spawn(function() return cookie_server():request("GET", "/db/doc1") end)
  couch.sleep(0.05)
  t:cancel()
  t = nil
  collectgarbage()
  collectgarbage() -- the server, the waiting request and the login under way all go
  couch.sleep(0.4) -- the fake's late answer finds no one
  local srv = cookie_server() -- and the next server logs in as usual
  lu.assertEquals((srv:request("GET", "/db/doc1"))._id, "doc1")
  lu.assertEquals(#f:requests("/db/doc1"), 1)
end

function TestAuth:test_a_failed_login_outlives_its_server_in_the_errors_it_gave()
  local errs = {}
  do
    local srv = cookie_server("wrong")
    local tasks = spawn_gets(srv, 3, "/db/doc1")
    for i = 1, 3 do errs[i] = select(2, pcall(tasks[i].wait, tasks[i])) end
  end
  collectgarbage()
  collectgarbage()
  for i = 1, 3 do assert_login_error(errs[i], "Name or password is incorrect.") end
end

function TestAuth:test_the_request_primitive_logs_in_by_itself()
  -- auth is the request layer's: the C primitive under srv:request needs no Lua around it
  local srv = cookie_server()
  local status, body = srv:_send("GET", "/db/doc1")
  lu.assertEquals(status, 200)
  lu.assertEquals(body._id, "doc1")
  lu.assertEquals(#f:requests("/_session", "POST"), 1)
end

-- ---- IAM ----

local function iam_server(key, opts)
  opts = opts or {}
  opts.api_key = key or "key-1"
  opts.token_url = opts.token_url or TOKEN_URL
  return couch.connect(f.url, opts)
end

function TestAuth:test_iam_exchanges_the_api_key_for_a_bearer_token()
  local srv = iam_server()
  lu.assertStrContains(tostring(srv), "iam")
  for _ = 1, 3 do lu.assertEquals((srv:request("GET", "/db/doc1"))._id, "doc1") end
  local toks = f:requests("/identity/token")
  lu.assertEquals(#toks, 1)
  lu.assertEquals(toks[1].method, "POST")
  lu.assertEquals(toks[1].body, IAM_FORM_PREFIX .. "key-1")
  lu.assertStrContains(toks[1].headers["content-type"], "application/x-www-form-urlencoded")
  lu.assertStrContains(toks[1].headers.accept, "application/json")
  lu.assertNil(toks[1].headers.authorization)
  local gets = f:requests("/db/doc1")
  lu.assertEquals(#gets, 3)
  for _, r in ipairs(gets) do lu.assertStrMatches(r.headers.authorization or "", "Bearer fake%-iam%-[%w_%-]+") end
end

function TestAuth:test_iam_fetches_one_token_when_many_tasks_start_together()
  local srv = iam_server()
  local tasks = spawn_gets(srv, 8, "/db/doc1")
  for i = 1, 8 do lu.assertEquals(tasks[i]:wait(), "doc1") end
  local n = #f:requests("/identity/token")
  lu.assertEquals(n, 1)
end

function TestAuth:test_iam_api_key_is_form_encoded()
  local srv = iam_server("k+y/2=")
  lu.assertEquals((srv:request("GET", "/db/doc1"))._id, "doc1")
  lu.assertEquals(f:requests("/identity/token")[1].body, IAM_FORM_PREFIX .. "k%2By%2F2%3D")
end

function TestAuth:test_iam_token_is_refreshed_when_it_is_about_to_expire()
  f:config { token_expires_in = 30 } -- inside the 60 s refresh margin: every call refreshes
  local srv = iam_server()
  srv:request("GET", "/db/doc1")
  srv:request("GET", "/db/doc1")
  lu.assertEquals(#f:requests("/identity/token"), 2)
end

function TestAuth:test_iam_token_is_refreshed_60_s_before_expiry()
  f:config { token_expires_in = 61 }
  local srv = iam_server()
  srv:request("GET", "/db/doc1")
  couch.sleep(2.1) -- now less than 60 s before the token expires
  srv:request("GET", "/db/doc1")
  lu.assertEquals(#f:requests("/identity/token"), 2)
  local gets = f:requests("/db/doc1")
  lu.assertNotEquals(gets[1].headers.authorization, gets[2].headers.authorization)
end

function TestAuth:test_iam_token_is_refreshed_after_a_401()
  local srv = iam_server()
  srv:request("GET", "/db/doc1")
  f:expire_tokens()
  lu.assertEquals((srv:request("GET", "/db/doc2"))._id, "doc2")
  lu.assertEquals(#f:requests("/identity/token"), 2)
  lu.assertEquals(#f:requests("/db/doc2"), 2)
  -- and the new token is kept
  srv:request("GET", "/db/doc1")
  lu.assertEquals(#f:requests("/identity/token"), 2)
end

function TestAuth:test_iam_with_an_unknown_api_key_fails_once_and_sends_nothing_else()
  local srv = iam_server("no-such-key")
  local e = fails(srv.request, srv, "GET", "/db/doc1")
  lu.assertEquals(e.status, 400)
  lu.assertEquals(e.url, TOKEN_URL)
  lu.assertEquals(#f:requests("/identity/token"), 1)
  lu.assertEquals(#f:requests("/db/doc1"), 0)
end

function TestAuth:test_a_failed_token_fetch_is_an_auth_error_naming_the_server_without_the_key()
  local srv = iam_server("Bad-Key-8812")
  local e = fails(srv.request, srv, "GET", "/db/doc1")
  assert_login_error(e, "Provided API key could not be found.", "Bad-Key-8812")
  lu.assertEquals(e.status, 400)
end

function TestAuth:test_a_token_answer_without_an_access_token_is_an_auth_error()
  f:script("/identity/token", { { status = 200, body = { token_type = "Bearer" } } }, "POST")
  local srv = iam_server()
  assert_login_error(fails(srv.request, srv, "GET", "/db/doc1"), "access_token")
  lu.assertEquals(#f:requests("/db/doc1"), 0)
end

function TestAuth:test_iam_allow_401_is_returned_not_retried()
  local srv = iam_server()
  srv:request("GET", "/db/doc1")
  f:expire_tokens()
  local _, status = srv:request("GET", "/db/doc1", { allow = { [401] = true } })
  lu.assertEquals(status, 401)
  lu.assertEquals(#f:requests("/identity/token"), 1)
end

function TestAuth:test_explicit_login_with_iam_fetches_a_new_token()
  local srv = iam_server()
  srv:request("GET", "/db/doc1")
  srv:login()
  lu.assertEquals(#f:requests("/identity/token"), 2)
  local gets = f:requests("/db/doc1")
  srv:request("GET", "/db/doc1")
  gets = f:requests("/db/doc1")
  lu.assertNotEquals(gets[1].headers.authorization, gets[2].headers.authorization)
end

function TestAuth:test_iam_needs_an_api_key()
  local e = fails(couch.connect, f.url, { auth = "iam" })
  lu.assertEquals(e.kind, "usage")
  lu.assertStrContains(tostring(e), "api_key")
end

-- ---- custom headers ----

function TestAuth:test_custom_headers_from_options_and_per_request()
  local srv = couch.connect(f.url, { user = "admin", password = "secret",
                                     headers = { ["X-Couch-Test"] = "yes", ["X-Cloudant-User"] = "ops" } })
  srv:request("GET", "/db/doc1")
  srv:request("GET", "/db/doc2", { headers = { ["X-Request-Id"] = "r-42" } })
  local reqs = f:requests()
  for _, r in ipairs(reqs) do
    lu.assertEquals(r.headers["x-couch-test"], "yes")
    lu.assertEquals(r.headers["x-cloudant-user"], "ops")
    lu.assertStrContains(r.headers.accept, "application/json")
  end
  lu.assertNil(reqs[1].headers["x-request-id"])
  lu.assertEquals(reqs[2].headers["x-request-id"], "r-42")
end

function TestAuth:test_custom_headers_are_sent_with_cookie_auth_too()
  local srv = couch.connect(f.url, { user = "admin", password = "secret", auth = "cookie",
                                     headers = { ["X-Couch-Test"] = "yes" } })
  srv:request("GET", "/db/doc1")
  for _, r in ipairs(f:requests()) do lu.assertEquals(r.headers["x-couch-test"], "yes") end
end

function TestAuth:test_bad_headers_option_is_a_usage_error()
  local e = fails(couch.connect, f.url, { headers = "X-A: b" })
  lu.assertEquals(e.kind, "usage")
  lu.assertStrContains(tostring(e), "headers")
end

local rc = lu.LuaUnit.run()
f:stop()
os.exit(rc)
