-- Leveled logging: quiet by default, COUCHLUA_LOG or couch.log{level=} turns it up, lines go
-- to a writer when one is set.
local lu = require "luaunit"
local couch = require "couch"
local fake = require "fake"

local f = fake.start { users = { admin = "TopSecret" } }

TestLog = {}

function TestLog:tearDown() couch.log { level = "off", writer = false } end

function TestLog:test_levels_and_writer()
  local lines = {}
  couch.log { level = "info", writer = function(level, line) lines[#lines + 1] = level .. "|" .. line end }
  lu.assertEquals(couch.log(), "info")
  couch.log("warn", "w")
  couch.log("info", "i")
  couch.log("debug", "d") -- below the level: not written
  lu.assertEquals(lines, { "warn|couchlua: warn: w\n", "info|couchlua: info: i\n" })
  lu.assertEquals(couch.log { level = "off" }, "info") -- the level before
  couch.log("warn", "nothing now")
  lu.assertEquals(#lines, 2)
end

function TestLog:test_bad_arguments_are_usage_errors()
  for _, bad in ipairs { { lvl = "info" }, { level = "loud" }, { writer = 3 }, "loud" } do
    local ok, err = pcall(couch.log, bad)
    lu.assertFalse(ok)
    lu.assertTrue(couch.is_error(err) and err.kind == "usage", tostring(err))
  end
end

function TestLog:test_quiet_by_default_and_COUCHLUA_LOG()
  local exe = os.getenv("COUCHLUA")
  local function run(env)
    local p = io.popen(("%s %s -e 'require(\"couch\").log(\"info\", \"visible\")' 2>&1"):format(env, exe))
    local out = p:read("a")
    p:close()
    return out
  end
  lu.assertEquals(run("env -u COUCHLUA_LOG"), "")
  lu.assertEquals(run("COUCHLUA_LOG=info"), "couchlua: info: visible\n")
  lu.assertEquals(run("COUCHLUA_LOG=warn"), "")
end

-- At debug one line per attempt, at info the retries; never a credential, at any level.
function TestLog:test_requests_and_retries_without_credentials()
  local url = f.url:gsub("^http://", "http://admin:TopSecret@")
  local srv = couch.connect(url, { retries = 2, backoff = 0.01 })
  f:reset()
  f:script("/flaky", { { status = 503 }, { status = 200, body = { ok = true } } }, "GET")
  for _, level in ipairs { "warn", "info", "debug" } do
    local lines = {}
    f:script("/flaky", { { status = 503 }, { status = 200, body = { ok = true } } }, "GET")
    couch.log { level = level, writer = function(_, line) lines[#lines + 1] = line end }
    srv:request("GET", "/flaky")
    pcall(srv.request, srv, "GET", "/no_such_db")
    couch.log { level = "off" }
    local text = table.concat(lines)
    lu.assertNotStrContains(text, "TopSecret")
    lu.assertNotStrContains(text, "admin:")
    if level == "warn" then lu.assertEquals(text, "") end
    if level ~= "warn" then
      lu.assertNotNil(text:find("couchlua: info: retrying GET " .. f.url .. "/flaky in %d+ ms: 503 %(attempt 2 of 3%)\n"),
        text)
    end
    if level == "debug" then
      lu.assertStrContains(text, "couchlua: debug: GET " .. f.url .. "/flaky 503 ")
      lu.assertStrContains(text, "couchlua: debug: GET " .. f.url .. "/flaky 200 ")
      lu.assertStrContains(text, "couchlua: debug: GET " .. f.url .. "/no_such_db 404 ")
      lu.assertStrMatches(text, ".* %d+ ms %d+ bytes %(attempt 1, pacing %d+ ms%)\n.*")
    else
      lu.assertNotStrContains(text, "debug:")
    end
  end
end

local rc = lu.LuaUnit.run()
f:stop()
os.exit(rc)
