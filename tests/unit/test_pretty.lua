-- couch.pretty: the REPL's printer, on its own.
local lu = require "luaunit"
local pretty = require "couch.pretty"
local couch = require "couch"

local f = pretty.format

TestPretty = {}

function TestPretty:test_scalars()
  lu.assertEquals(f(nil), "nil")
  lu.assertEquals(f(true), "true")
  lu.assertEquals(f(false), "false")
  lu.assertEquals(f(42), "42")
  lu.assertEquals(f(-7), "-7")
  lu.assertEquals(f(math.mininteger), tostring(math.mininteger))
  lu.assertEquals(f(1.0), "1.0")
  lu.assertEquals(f(0.1), "0.1")
  lu.assertEquals(f(1 / 3), "0.3333333333333333")
  lu.assertEquals(tonumber(f(1 / 3)), 1 / 3) -- floats print back exactly
  lu.assertEquals(f(2 ^ 63), "9.223372036854776e+18")
  lu.assertEquals(f(1e100), "1e+100")
  lu.assertEquals(f(math.huge), "inf")
  lu.assertEquals(f(-math.huge), "-inf")
  lu.assertStrContains(f(print), "function: ")
  lu.assertStrContains(f(coroutine.create(print)), "thread: ")
end

function TestPretty:test_strings_are_quoted_on_one_line()
  lu.assertEquals(f("abc"), '"abc"')
  lu.assertEquals(f(""), '""')
  lu.assertEquals(f('say "hi"\\'), [["say \"hi\"\\"]])
  lu.assertEquals(f("a\nb\tc\r"), [["a\nb\tc\r"]])
  lu.assertEquals(f("\0\1" .. "9"), [["\000\0019"]])
  lu.assertEquals(f("\127"), [["\127"]])
  lu.assertEquals(f("héllo"), '"héllo"') -- UTF-8 stays readable
  lu.assertEquals(load("return " .. f("x\0\n\"\\\1y"))(), "x\0\n\"\\\1y")
end

function TestPretty:test_json_null()
  lu.assertEquals(f(couch.json.null), "null")
  lu.assertEquals(f({ couch.json.null, a = couch.json.null }), "{ null, a = null }")
end

function TestPretty:test_tables_on_one_line()
  lu.assertEquals(f({}), "{}")
  lu.assertEquals(f({ 1, 2, 3 }), "{ 1, 2, 3 }")
  lu.assertEquals(f({ a = 1, b = "x" }), '{ a = 1, b = "x" }')
  lu.assertEquals(f({ 1, { 2, { 3 } } }), "{ 1, { 2, { 3 } } }")
  lu.assertEquals(f({ {} }), "{ {} }")
end

function TestPretty:test_key_order_array_first_then_sorted()
  local t = { "one", "two", [4] = "four", zeta = 1, alpha = 2, [10] = 3, [-1] = 4,
              [2.5] = 5, [true] = 6, [false] = 7, ["with space"] = 8, ["end"] = 9 }
  lu.assertEquals(f(t, { width = 1000 }),
    '{ "one", "two", alpha = 2, ["end"] = 9, ["with space"] = 8, zeta = 1, ' ..
    '[-1] = 4, [2.5] = 5, [4] = "four", [10] = 3, [false] = 7, [true] = 6 }')
end

function TestPretty:test_table_keys()
  local k = {}
  local s = f({ [k] = 1 })
  lu.assertStrMatches(s, "{ %[table: 0x%x+%] = 1 }")
end

function TestPretty:test_wide_tables_are_indented()
  local t = { name = ("n"):rep(30), list = { ("a"):rep(30), ("b"):rep(30) }, n = 1 }
  lu.assertEquals(f(t), table.concat({
    "{",
    "  list = { " .. '"' .. ("a"):rep(30) .. '", "' .. ("b"):rep(30) .. '" },',
    "  n = 1,",
    '  name = "' .. ("n"):rep(30) .. '"',
    "}" }, "\n"))
  lu.assertEquals(f({ 1, 2 }, { width = 5 }), "{\n  1,\n  2\n}")
  lu.assertEquals(f({ a = { 1 } }, { width = 12, indent = "    " }),
    "{\n    a = { 1 }\n}")
end

function TestPretty:test_depth_limit()
  local deep = { a = { b = { c = { d = { e = 1 } } } } }
  lu.assertEquals(f(deep), "{ a = { b = { c = { d = {...} } } } }")
  lu.assertEquals(f(deep, { depth = 2 }), "{ a = { b = {...} } }")
  lu.assertEquals(f(deep, { depth = 10 }), "{ a = { b = { c = { d = { e = 1 } } } } }")
  lu.assertEquals(f({ a = { b = {} } }, { depth = 1 }), "{ a = {...} }")
end

function TestPretty:test_cycles_are_marked()
  local t = { name = "t" }
  t.self = t
  lu.assertEquals(f(t), ('{ name = "t", self = <cycle: %s> }'):format(tostring(t)))
  local a, b = {}, {}
  a.b, b.a = b, a
  lu.assertStrContains(f(a), "{ b = { a = <cycle: " .. tostring(a) .. "> } }")
end

function TestPretty:test_shared_tables_are_not_cycles()
  local shared = { 1 }
  lu.assertEquals(f({ shared, shared }), "{ { 1 }, { 1 } }")
end

function TestPretty:test_tostring_metamethod()
  local E = setmetatable({ kind = "usage" }, {
    __tostring = function(e) return "couch: " .. e.kind .. ": bad argument 'id'" end })
  lu.assertEquals(f(E), "couch: usage: bad argument 'id'")
  lu.assertEquals(f({ err = E, 1 }), "{ 1, err = couch: usage: bad argument 'id' }")
  -- a __metatable field does not hide __tostring
  local hidden = setmetatable({}, { __tostring = function() return "H" end, __metatable = false })
  lu.assertEquals(f(hidden), "H")
  -- a __tostring that fails does not break the printout
  local bad = setmetatable({}, { __tostring = function() error("nope") end })
  lu.assertStrContains(f({ bad }), "__tostring failed")
end

function TestPretty:test_tables_with_a_plain_metatable_show_contents()
  lu.assertEquals(f(setmetatable({ 1, 2 }, { __index = {} })), "{ 1, 2 }")
end

function TestPretty:test_couch_error_objects()
  local ok, err = pcall(error, setmetatable({}, { __tostring = function() return "E" end }))
  lu.assertFalse(ok)
  lu.assertEquals(f(err), "E")
end

function TestPretty:test_max_items()
  local t = {}
  for i = 1, 10 do t[i] = i end
  t.x = 1
  lu.assertEquals(f(t, { max_items = 3 }), "{ 1, 2, 3, ... (8 more) }")
end

function TestPretty:test_bad_options()
  lu.assertErrorMsgContains("table expected", f, 1, "x")
end

function TestPretty:test_print()
  -- pretty.print writes through the print it captured when loaded: run it in a child.
  local exe = os.getenv("COUCHLUA") or arg[-1]
  local p = assert(io.popen(("%q -e %q"):format(exe,
    [[require("couch.pretty").print(1, "x", nil, {a = 1})]])))
  local text = p:read("a")
  p:close()
  lu.assertEquals(text, '1\t"x"\tnil\t{ a = 1 }\n')
end

-- What the REPL shows by default: a module's internals (functions under "_" keys) left out,
-- a document's _id and _rev kept, long tables cut after 100 entries.
function TestPretty:test_defaults_hide_internals_and_cut_long_tables()
  local pretty = require "couch.pretty"
  local mod = { open = function() end, _internal = function() end, _count = 3 }
  local text = pretty.format(mod)
  lu.assertNotStrContains(text, "_internal")
  lu.assertStrContains(text, "_count = 3")
  lu.assertStrContains(pretty.format(mod, { private = true }), "_internal")
  lu.assertEquals(pretty.format { _id = "a", _rev = "1-x" }, '{ _id = "a", _rev = "1-x" }')
  local long = {}
  for i = 1, 250 do long[i] = i end
  local cut = pretty.format(long)
  lu.assertStrContains(cut, "... (150 more)")
  lu.assertNotStrContains(cut, "101")
  lu.assertNotStrContains(pretty.format(long, { max_items = 1000 }), "more)")
end

os.exit(lu.LuaUnit.run())
