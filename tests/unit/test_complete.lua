-- The REPL's tab completion (couch.complete): globals, fields, methods after a colon, and
-- never running user code while looking.
local lu = require "luaunit"
local couch = require "couch"
local complete = require("couch.complete").complete

TestComplete = {}

function TestComplete:test_globals_and_fields()
  lu.assertEquals(complete("string.for"), { "string.format" })
  _G.couch_test_global = { alpha = 1, beta = { gamma = 2 } }
  lu.assertEquals(complete("couch_test_g"), { "couch_test_global" })
  lu.assertEquals(complete("couch_test_global."), { "couch_test_global.alpha", "couch_test_global.beta" })
  lu.assertEquals(complete("couch_test_global.beta.g"), { "couch_test_global.beta.gamma" })
  lu.assertEquals(complete("couch_test_global.nope.x"), {})
  _G.couch_test_global = nil
end

function TestComplete:test_methods_of_couch_objects_after_a_colon()
  _G.couch, _G.srv = couch, couch.connect("http://127.0.0.1:9")
  _G.db = srv:db("x")
  lu.assertEquals(complete("srv:sch"), { "srv:scheduler" })
  lu.assertEquals(complete("srv:rep"), { "srv:replicate", "srv:replicator" })
  local db_methods = complete("db:")
  lu.assertTrue(#db_methods > 10)
  for _, m in ipairs(db_methods) do lu.assertStrMatches(m, "db:[%w_]+") end
  lu.assertEquals(complete("db:all_d"), { "db:all_docs", "db:all_docs_iter" })
  -- private names only when asked for
  for _, m in ipairs(complete("couch.")) do lu.assertFalse(m:match("^couch%._") ~= nil, m) end
  lu.assertEquals(complete("couch._r"), {}) -- the private functions are off the module
  _G.couch, _G.srv, _G.db = nil, nil, nil
end

function TestComplete:test_never_runs_user_code()
  local called = false
  _G.trap = setmetatable({}, { __index = function() called = true end })
  lu.assertEquals(complete("trap.x"), {})
  lu.assertEquals(complete("trap:"), {})
  lu.assertFalse(called)
  _G.trap = nil
end

os.exit(lu.LuaUnit.run())
