-- Leveled logging: quiet by default, COUCHLUA_LOG or couch.log{level=} turns it up, lines go
-- to a writer when one is set.
local lu = require "luaunit"
local couch = require "couch"

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

os.exit(lu.LuaUnit.run())
