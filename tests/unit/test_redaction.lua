-- Credentials never show: scripts run through the real `couchlua` command (env COUCHLUA)
-- print servers, databases, responses and every kind of error, pretty-print them, let
-- errors escape to the command's own report (message + traceback), and use the REPL,
-- with a canary password and a canary API key that do reach the FAKE CouchDB
-- (tests/fakes/fake_couch.js). The canaries -- and the session cookie, the bearer token
-- and the basic-auth header made from them -- must appear nowhere in stdout or stderr.
local src = os.getenv("COUCHLUA_SOURCE_DIR") or (arg and arg[0] or ""):match("^(.*)/tests/unit/[^/]*$") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path .. ";/usr/share/lua/5.4/?.lua"
local lu = require "luaunit"
local couch = require "couch"
local fake = require "fake"

local COUCHLUA = os.getenv("COUCHLUA") or (os.getenv("COUCHLUA_BUILD_DIR") or src .. "/build") .. "/couchlua"
local PW = "Canary-Pw-7731"
local KEY = "Canary-Key-5519"

local f = fake.start { users = { admin = PW }, api_keys = { KEY }, require_auth = true }
local CLOSED_PORT = f:closed_port()

local b64 = require "b64"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local tmpfiles = {}
local function tmpfile(text)
  local name = os.tmpname()
  tmpfiles[#tmpfiles + 1] = name
  local fh = assert(io.open(name, "w"))
  fh:write(text)
  fh:close()
  return name
end

local PRELUDE = [[
local couch = require "couch"
local has_pretty, pretty = pcall(require, "couch.pretty")
local URL, PW, KEY = os.getenv("FAKE_URL"), os.getenv("CANARY_PW"), os.getenv("CANARY_KEY")
local HOSTPORT = URL:match("^http://(.*)$")
local DEAD = "127.0.0.1:" .. os.getenv("CLOSED_PORT")
local function show(label, ...)
  print(label, ...)
  if has_pretty then
    print(label .. " (pretty)", pretty.format((...)))
    pretty.print(...)
  end
end
local function show_error(label, fn, ...)
  local ok, e = pcall(fn, ...)
  assert(not ok, label .. ": expected an error")
  show(label, e)
  if type(e) == "table" then
    local keys = {}
    for k in pairs(e) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do print(label .. "." .. k, e[k]) end
  end
  return e
end
]]

-- Run lua code through the couchlua command (or its REPL with how = "repl"); returns the
-- combined stdout + stderr and whether it exited with 0.
local function run(code, how)
  local env = ("FAKE_URL=%s CANARY_PW=%s CANARY_KEY=%s CLOSED_PORT=%d"):format(q(f.url), q(PW), q(KEY), CLOSED_PORT)
  local cmd
  if how == "repl" then
    cmd = ("%s %s -i < %s 2>&1"):format(env, q(COUCHLUA), q(tmpfile(code)))
  else
    cmd = ("%s %s %s 2>&1"):format(env, q(COUCHLUA), q(tmpfile(PRELUDE .. code)))
  end
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok = p:close() == true
  -- Under the sanitizer build a leak report at exit makes the status 1 whatever the script
  -- did; leaks have their own test (test_http_faults.lua), so the report is cut out of the
  -- output and the status is unknown (nil): the callers then go by the output alone.
  local report = out:find("=+\n==%d+==ERROR: LeakSanitizer")
  if report then
    out = out:sub(1, report - 1)
    ok = nil
  end
  return out, ok
end

-- everything a leak could look like
local SECRETS = { PW, KEY, b64("admin:" .. PW), "fake-iam-", "AuthSession=" }

local function assert_clean(out)
  for _, s in ipairs(SECRETS) do
    local at = out:find(s, 1, true)
    if at then
      local line_start = out:sub(1, at):match(".*\n()") or 1
      local line = out:sub(line_start):match("^[^\n]*")
      lu.fail(("a credential (%s...) leaked into the output:\n%s"):format(s:sub(1, 6), line))
    end
  end
end

TestRedaction = {}

function TestRedaction:setUp() f:reset() end

function TestRedaction:test_basic_auth_in_the_url_servers_responses_and_errors()
  local out, ok = run [[
local srv = couch.connect("http://admin:" .. PW .. "@" .. HOSTPORT)
show("server", srv)
print("url", srv.url, tostring(srv))
show("db", srv:db("db"))
show("state", srv:_state())
show("response", srv:request("GET", "/db/doc1"))
show("session", srv:session())
show_error("e404", srv.request, srv, "GET", "/db/nodoc")
show_error("e404db", srv:db("nodb").info, srv:db("nodb"))
show_error("e409", srv.request, srv, "PUT", "/db/doc1", { body = { a = 1 } })
local bad = couch.connect("http://admin:" .. PW .. "-wrong@" .. HOSTPORT)
show("bad", bad)
show_error("e401", bad.request, bad, "GET", "/db/doc1")
local dead = couch.connect("http://admin:" .. PW .. "@" .. DEAD, { backoff = 0.01 })
show("dead", dead)
show_error("enet", dead.request, dead, "GET", "/db")
show_error("eusage", couch.connect, "http://admin:" .. PW .. "@" .. HOSTPORT, { bogus = true })
show_error("eurl", couch.connect, "ftp://admin:" .. PW .. "@" .. HOSTPORT)
show("redact", couch.redact("http://admin:" .. PW .. "@example.com:5984/db?x=1"))
show("redact2", couch.redact("https://admin:" .. PW .. "@example.com"))
print("done")
]]
  lu.assertNotEquals(ok, false, out)
  if os.getenv("COUCHLUA_TEST_SHOW") then print(out) end
  -- the output says what happened (so the test is not vacuous) ...
  for _, want in ipairs { "couch.server <" .. f.url .. ">", "doc1", "404", "not_found", "409", "401",
                          "unauthorized", "network", "127.0.0.1", "bogus", "http://example.com:5984/db?x=1", "done" } do
    lu.assertStrContains(out, want)
  end
  assert_clean(out)
  -- ... and the canary password was really used
  local reqs = f:requests("/db/doc1")
  lu.assertEquals(reqs[1].headers.authorization, "Basic " .. b64("admin:" .. PW))
end

function TestRedaction:test_credentials_in_options()
  local out, ok = run [[
local srv = couch.connect(URL, { user = "admin", password = PW })
show("server", srv)
show("response", srv:request("GET", "/db/doc1"))
local bad = couch.connect(URL, { user = "admin", password = PW .. "-wrong" })
show_error("e401", bad.request, bad, "GET", "/db/doc1")
local dead = couch.connect("http://" .. DEAD, { user = "admin", password = PW, timeout = 1, backoff = 0.01 })
show_error("enet", dead.request, dead, "POST", "/db", { body = { a = 1 } })
show_error("eauth", couch.connect, URL, { password = PW, auth = "basic" })
show_error("eauth2", couch.connect, URL, { user = "admin", password = PW, auth = "kerberos" })
print("done")
]]
  lu.assertNotEquals(ok, false, out)
  if os.getenv("COUCHLUA_TEST_SHOW") then print(out) end
  lu.assertStrContains(out, "401")
  lu.assertStrContains(out, "kerberos")
  lu.assertStrContains(out, "done")
  assert_clean(out)
end

function TestRedaction:test_cookie_sessions()
  local out, ok = run [[
local srv = couch.connect(URL, { user = "admin", password = PW, auth = "cookie" })
show("server", srv)
show("response", srv:request("GET", "/db/doc1"))
show("login", srv:login())
show("session", srv:session())
local _, _, headers = srv:request("POST", "/_session", { body = { name = "admin", password = PW } })
show("headers", headers)
local bad = couch.connect("http://admin:" .. PW .. "-wrong@" .. HOSTPORT, { auth = "cookie" })
show_error("elogin", bad.request, bad, "GET", "/db/doc1")
show_error("elogin2", bad.login, bad)
print("done")
]]
  lu.assertNotEquals(ok, false, out)
  if os.getenv("COUCHLUA_TEST_SHOW") then print(out) end
  lu.assertStrContains(out, "Name or password is incorrect.")
  lu.assertStrContains(out, "done")
  assert_clean(out)
  local logins = f:requests("/_session", "POST")
  lu.assertStrContains(logins[1].body, PW)
end

function TestRedaction:test_iam_api_key_and_token()
  local out, ok = run [[
local srv = couch.connect(URL, { api_key = KEY, token_url = URL .. "/identity/token" })
show("server", srv)
show("state", srv:_state())
show("response", srv:request("GET", "/db/doc1"))
show("token response", srv:request("POST", "/identity/token",
  { body = "grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=nope", content_type = "application/x-www-form-urlencoded", allow = { [400] = true } }))
local bad = couch.connect(URL, { api_key = KEY .. "-wrong", token_url = URL .. "/identity/token" })
show_error("etoken", bad.request, bad, "GET", "/db/doc1")
local dead = couch.connect(URL, { api_key = KEY, token_url = "http://" .. DEAD .. "/identity/token", backoff = 0.01 })
show_error("etokennet", dead.request, dead, "GET", "/db/doc1")
print("done")
]]
  lu.assertNotEquals(ok, false, out)
  if os.getenv("COUCHLUA_TEST_SHOW") then print(out) end
  lu.assertStrContains(out, "doc1")
  lu.assertStrContains(out, "/identity/token")
  lu.assertStrContains(out, "done")
  assert_clean(out)
  lu.assertStrContains(f:requests("/identity/token")[1].body, "apikey=" .. KEY)
end

function TestRedaction:test_logins_renewals_and_failed_logins_logged_at_debug()
  local out, ok = run [[
couch.log { level = "debug" }
local control = couch.connect(URL)
local srv = couch.connect(URL, { user = "admin", password = PW, auth = "cookie" })
show("response", srv:request("GET", "/db/doc1"))
control:request("POST", "/_fake/expire_sessions", { body = {} })
show("renewed", srv:request("GET", "/db/doc1"))
local iam = couch.connect(URL, { api_key = KEY, token_url = URL .. "/identity/token" })
show("iam", iam:request("GET", "/db/doc1"))
control:request("POST", "/_fake/expire_tokens", { body = {} })
show("iam renewed", iam:request("GET", "/db/doc1"))
local bad = couch.connect(URL, { user = "admin", password = PW .. "-wrong", auth = "cookie" })
show_error("elogin", bad.request, bad, "GET", "/db/doc1")
local badkey = couch.connect(URL, { api_key = KEY .. "-wrong", token_url = URL .. "/identity/token" })
show_error("etoken", badkey.request, badkey, "GET", "/db/doc1")
print("done")
]]
  lu.assertNotEquals(ok, false, out)
  if os.getenv("COUCHLUA_TEST_SHOW") then print(out) end
  for _, want in ipairs { "logging in to " .. f.url, "expired, sending it again", "POST " .. f.url .. "/_session",
                          "/identity/token", "Name or password is incorrect.", "done" } do
    lu.assertStrContains(out, want)
  end
  assert_clean(out)
end

function TestRedaction:test_errors_inside_tasks()
  local out, ok = run [[
local bad = couch.connect("http://admin:" .. PW .. "-wrong@" .. HOSTPORT)
local t = couch.spawn("fetcher", function() return bad:request("GET", "/db/doc1") end)
show_error("ewait", t.wait, t)
show("task", t)
couch.spawn("fetcher2", function() return bad:request("GET", "/db/doc2") end)
show_error("erun", couch.run)
print("done")
]]
  lu.assertNotEquals(ok, false, out)
  if os.getenv("COUCHLUA_TEST_SHOW") then print(out) end
  lu.assertStrContains(out, "fetcher2")
  lu.assertStrContains(out, "401")
  lu.assertStrContains(out, "done")
  assert_clean(out)
end

function TestRedaction:test_an_uncaught_http_error_through_the_command()
  local out, ok = run [[
local bad = couch.connect("http://admin:" .. PW .. "-wrong@" .. HOSTPORT)
bad:request("GET", "/db/doc1")
]]
  lu.assertNotEquals(ok, true)
  lu.assertStrContains(out, "401")
  lu.assertStrContains(out, "traceback")
  assert_clean(out)
end

function TestRedaction:test_an_uncaught_network_error_through_the_command()
  local out, ok = run [[
local srv = couch.connect("http://admin:" .. PW .. "@" .. DEAD, { backoff = 0.01 })
srv:db("db"):get("doc1")
]]
  lu.assertNotEquals(ok, true)
  lu.assertStrContains(out, "network")
  lu.assertStrContains(out, "127.0.0.1:" .. CLOSED_PORT)
  assert_clean(out)
end

function TestRedaction:test_an_uncaught_error_in_a_task_through_the_command()
  local out, ok = run [[
local srv = couch.connect(URL, { user = "admin", password = PW })
couch.spawn("worker", function() srv:db("db"):get("missing-doc") end)
]]
  lu.assertNotEquals(ok, true)
  lu.assertStrContains(out, "404")
  lu.assertStrContains(out, "missing-doc")
  assert_clean(out)
end

function TestRedaction:test_the_repl_printout()
  local out = run([[
PW = os.getenv("CANARY_PW")
URL = os.getenv("FAKE_URL")
srv = couch.connect(URL:gsub("//", "//admin:" .. PW .. "@"), { retries = 0 })
srv
srv:db("db")
srv:request("GET", "/db/doc1")
ok, e = pcall(srv.request, srv, "GET", "/db/nodoc")
e
bad = couch.connect(URL:gsub("//", "//admin:" .. PW .. "x@"), { retries = 0 })
bad
bad:request("GET", "/db/doc1")
{ bad, srv, e }
"still here"
]], "repl")
  if os.getenv("COUCHLUA_TEST_SHOW") then print(out) end
  lu.assertStrContains(out, "couch.server <" .. f.url .. ">")
  lu.assertStrContains(out, "not_found")
  lu.assertStrContains(out, "401")
  lu.assertStrContains(out, "still here")
  assert_clean(out)
end

function TestRedaction:test_an_unparsable_url_is_not_echoed_with_its_password()
  -- passwords with a raw '/', '?' or '#' make URLs that do not parse; the error must
  -- still not show them
  for _, pw in ipairs { PW .. "/x", PW .. "?x", PW .. "#x", "x/" .. PW } do
    local out = run(([[
local ok, e = pcall(couch.connect, "http://admin:%s@127.0.0.1:5984/db")
print(ok, e)
couch.connect("http://admin:%s@127.0.0.1:5984/db")
]]):format(pw, pw))
    assert_clean(out)
  end
end

-- The REPL's history gets lines through couch.redact.source: no credential is saved.
TestRedactSource = {}

function TestRedactSource:test_urls_and_secret_fields_in_source_text()
  local source = require("couch.redact").source
  local cases = {
    { [[srv = couch.connect("http://admin:TopSecret@127.0.0.1:5984")]], [[srv = couch.connect("http://127.0.0.1:5984")]] },
    { [[couch.connect(u, { user = "a", password = "TopSecret" })]], [[couch.connect(u, { user = "a", password = "***" })]] },
    { [[couch.connect(u, { password = "x" })]], [[couch.connect(u, { password = "***" })]] },
    { [[t = { ["api_key"] = 'TopSecret', Password = [==[TopSecret]==] }]], [[t = { ["api_key"] = '***', Password = "***" }]] },
    { [[{token="TopSecret"} print(1)]], [[{token="***"} print(1)]] },
    { [[rep:create{ source = "https://u:TopSecret@a.example/db", target = "b" }]], [[rep:create{ source = "https://a.example/db", target = "b" }]] },
    { [[print("no secrets here", passwords_seen)]], [[print("no secrets here", passwords_seen)]] },
  }
  for _, c in ipairs(cases) do
    lu.assertEquals(source(c[1]), c[2])
    lu.assertNotStrContains(source(c[1]), "TopSecret")
  end
end

local rc = lu.LuaUnit.run()
f:stop()
for _, name in ipairs(tmpfiles) do os.remove(name) end
os.exit(rc)
