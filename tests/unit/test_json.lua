-- couch.json: the lossless codec. Round trips of awkward JSON, the number rules, the
-- plain-table rule, errors with their paths and offsets, cjson.null interop, and the data
-- lua-cjson would have lost where we keep it.
-- tests/CMakeLists.txt's LUA_PATH ("...;;" in a CMake list) loses the default path; until
-- that is fixed, fall back to Debian's lua-unit location.
if not pcall(require, "luaunit") then package.path = package.path .. ";/usr/share/lua/5.4/?.lua" end
local lu = require "luaunit"
local json = require "couch.json"

local has_cjson, cjson = pcall(require, "cjson")

-- Deep equality that also compares what JSON cares about and Lua could blur: integer vs
-- float, the sign of zero, array vs object kind, number objects by their text.
local function same(a, b, path)
  path = path or "$"
  if type(a) ~= type(b) then return false, path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) then return false, path .. ": " .. math.type(a) .. " vs " .. math.type(b) end
    if a ~= b then return false, path .. ": " .. tostring(a) .. " vs " .. tostring(b) end
    if a == 0 and math.type(a) == "float" and 1 / a ~= 1 / b then return false, path .. ": sign of zero" end
    return true
  elseif type(a) == "table" then
    if getmetatable(a) ~= getmetatable(b) then return false, path .. ": kind" end
    for k, v in pairs(a) do
      local ok, where = same(v, b[k], path .. "." .. tostring(k))
      if not ok then return false, where end
    end
    for k in pairs(b) do
      if a[k] == nil then return false, path .. "." .. tostring(k) .. ": extra" end
    end
    return true
  elseif type(a) == "userdata" then
    if json.is_number(a) ~= json.is_number(b) then return false, path .. ": number object" end
    if json.is_number(a) then
      return tostring(a) == tostring(b), path .. ": " .. tostring(a) .. " vs " .. tostring(b)
    end
    return a == b, path
  end
  return a == b, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
end

local function assert_same(a, b)
  local ok, where = same(a, b)
  lu.assertTrue(ok, where)
end

local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  lu.assertFalse(ok, "expected an error")
  return e
end

local function json_error(f, ...)
  local e = err_of(f, ...)
  if type(e) ~= "table" then lu.fail("not an error object: " .. tostring(e)) end
  lu.assertEquals(e.kind, "json")
  return e
end

-- Awkward JSON whose encoding is canonical: decode then encode (keys sorted) gives the
-- same bytes.
local CANONICAL = {
  "[]", "{}", "[[]]", "[{}]", '{"a":[]}', '{"a":{}}', "[[],{},[{}],[[[]]]]",
  '{"a":{"b":{"c":[]}}}', "null", "true", "false", "0", "-1", '""',
  "9007199254740993",             -- 2^53 + 1: doubles cannot hold it
  "-9007199254740993",
  "9223372036854775807",          -- 2^63 - 1
  "-9223372036854775808",         -- -2^63
  "9223372036854775808",          -- 2^63: number object
  "18446744073709551616",         -- 2^64: number object
  "-18446744073709551617",
  "123456789012345678901234567890",
  "0.30000000000000004", "0.1", "1.0", "-0.0", "1.5", "-2.5e-05",
  "0.12345678901234568",          -- 17 significant digits
  "1.7976931348623157e+308",      -- largest double
  "2.2250738585072014e-308",      -- smallest normal
  "1.5e-310", "5e-324",           -- subnormals
  "1e+300", "1e+400",             -- 1e+400 is no double: number object
  "0.10000000000000000001",       -- more digits than a double: number object
  "3.141592653589793238462643383279", -- likewise
  '"\\u0000"', '"a\\"b\\\\c"', '"\\b\\f\\n\\r\\t\\u0001\\u001f"', '"/"', '"\127"',
  '"héllo wörld ✓ 😀"', '[null,null]', '[1,null,3]', '[1.0,2,3.5]',
  '{"_id":"doc","_rev":"1-abc","e":[],"f":0.30000000000000004,"n":18446744073709551616,"o":{}}',
}

-- Inputs whose output is a different text of the same JSON value.
local EQUIVALENT = {
  { "1e300", "1e+300" }, { "1E2", "100.0" }, { "1.50", "1.5" }, { "-0", "-0.0" },
  { "0.1e1", "1.0" }, { "1e-7", "1e-07" }, { ' [ 1 , 2 ] ', "[1,2]" },
  { '"\\/"', '"/"' }, { '"\\u00e9"', '"é"' }, { '"\\ud83d\\ude00"', '"😀"' },
  { '"\\u2028"', '"\226\128\168"' }, { '{"a":1,"a":2}', '{"a":2}' },
}

TestRoundTrip = {}

function TestRoundTrip.test_canonical_bytes()
  for _, text in ipairs(CANONICAL) do
    local v = json.decode(text)
    lu.assertEquals(json.encode(v, { sort_keys = true }), text, "round trip of " .. text)
    assert_same(json.decode(json.encode(v)), v)
  end
end

function TestRoundTrip.test_equivalent_texts()
  for _, case in ipairs(EQUIVALENT) do
    local v = json.decode(case[1])
    lu.assertEquals(json.encode(v), case[2], "encoding of " .. case[1])
    assert_same(json.decode(case[2]), v)
  end
end

function TestRoundTrip.test_deep_nesting_500()
  local text = string.rep("[", 500) .. string.rep("]", 500)
  lu.assertEquals(json.encode(json.decode(text)), text)
  text = string.rep('{"a":', 500) .. "1" .. string.rep("}", 500)
  lu.assertEquals(json.encode(json.decode(text)), text)
end

function TestRoundTrip.test_big_strings()
  local s = string.rep("abc\"\\\n\0é😀", 100000)
  local text = json.encode(s)
  lu.assertEquals(json.decode(text), s)
  local doc = { big = s, list = {} }
  for i = 1, 10000 do doc.list[i] = { i = i, f = i + 0.5, s = tostring(i) } end
  assert_same(json.decode(json.encode(doc)), json.decode(json.encode(json.decode(json.encode(doc)))))
  lu.assertEquals(#json.decode(json.encode(doc)).list, 10000)
end

function TestRoundTrip.test_pretty()
  local v = json.decode('{"b":[1,2,{}],"a":[],"c":{"d":null}}')
  lu.assertEquals(json.encode(v, { pretty = true, sort_keys = true }),
    '{\n  "a": [],\n  "b": [\n    1,\n    2,\n    {}\n  ],\n  "c": {\n    "d": null\n  }\n}')
  lu.assertEquals(json.encode(v, { sort_keys = true }), '{"a":[],"b":[1,2,{}],"c":{"d":null}}')
  lu.assertEquals(json.encode({ 1, { x = 1 } }, { pretty = true, indent = 4 }),
    '[\n    1,\n    {\n        "x": 1\n    }\n]')
  lu.assertEquals(json.encode({ [2] = "b", [10] = "c", x = 1 }, { sort_keys = true }),
    '{"10":"c","2":"b","x":1}')
end

-- The encoder's path stack grows at depths 16, 64 and 256: a container must not keep a
-- pointer into it across a child that grew it (heap use-after-free, issue 11).
local function nest(n, leaf)
  local v = leaf
  for _ = 1, n do v = json.array { v } end
  return v
end

function TestRoundTrip.test_siblings_after_a_child_that_grew_the_path()
  for _, n in ipairs { 17, 65, 257, 600 } do
    local deep = string.rep("[", n) .. "0" .. string.rep("]", n)
    lu.assertEquals(json.encode(json.array { nest(n, 0), "after", 2 }), "[" .. deep .. ',"after",2]')
    lu.assertEquals(json.encode({ a = nest(n, 0), b = "after", c = { 3 } }, { sort_keys = true }),
      '{"a":' .. deep .. ',"b":"after","c":[3]}')
    -- the same one level down, and pretty (newline() reads the depth)
    lu.assertEquals(json.encode({ x = { nest(n, 0), 1 }, y = 2 }, { sort_keys = true }),
      '{"x":[' .. deep .. ',1],"y":2}')
    lu.assertEquals(json.encode(json.decode(json.encode({ nest(n, 0), 1 }, { pretty = true }))),
      "[" .. deep .. ",1]")
    -- the error path is read from the (moved) path stack
    lu.assertEquals(json_error(json.encode, { nest(n, 0), print }).path, "[2]")
    lu.assertEquals(json_error(json.encode, { a = nest(n, 0), b = print }, { sort_keys = true }).path, ".b")
    lu.assertEquals(json_error(json.encode, { { nest(n, 0), 1, print } }).path, "[1][3]")
  end
end

TestNumbers = {}

function TestNumbers.test_integers_stay_integers()
  lu.assertEquals(math.type(json.decode("9007199254740993")), "integer")
  lu.assertEquals(json.decode("9007199254740993"), 9007199254740993)
  lu.assertEquals(json.decode("-9223372036854775808"), math.mininteger)
  lu.assertEquals(json.decode("9223372036854775807"), math.maxinteger)
  lu.assertEquals(json.encode(math.mininteger), "-9223372036854775808")
end

function TestNumbers.test_floats_keep_floatness()
  local one = json.decode("1.0")
  lu.assertEquals(math.type(one), "float")
  lu.assertEquals(json.encode(one), "1.0")
  lu.assertEquals(json.encode(2.0), "2.0")
  lu.assertEquals(json.encode(1e15), "1e+15")
  lu.assertEquals(json.encode(0.1 + 0.2), "0.30000000000000004")
  local z = json.decode("-0.0")
  lu.assertEquals(math.type(z), "float")
  lu.assertEquals(1 / z, -math.huge)
  lu.assertEquals(json.encode(-0.0), "-0.0")
  lu.assertEquals(json.decode("1e300"), 1e300)
  lu.assertEquals(json.decode("1.5e-310"), 1.5e-310)
end

function TestNumbers.test_number_objects()
  local n = json.decode("18446744073709551616")
  lu.assertTrue(json.is_number(n))
  lu.assertEquals(tostring(n), "18446744073709551616")
  lu.assertEquals(getmetatable(n).__name, "couch.json.number")
  lu.assertEquals(json.encode({ n }), "[18446744073709551616]")
  lu.assertEquals(json.tonumber(n), 2^64)
  lu.assertTrue(n == json.number("1.8446744073709551616e19"))  -- same value, other text
  lu.assertFalse(n == json.number("18446744073709551617"))
  lu.assertTrue(n < json.number("18446744073709551617"))
  lu.assertTrue(n > 1)
  lu.assertTrue(n > 2^64 - 4096)
  lu.assertTrue(n <= 2^64)        -- 2^64 is exactly this value
  lu.assertEquals("n=" .. n, "n=18446744073709551616")
  local small = json.decode("0.10000000000000000001")
  lu.assertTrue(json.is_number(small))
  lu.assertTrue(small < 0.1)      -- the double 0.1 is 0.1000000000000000055...
  lu.assertTrue(json.decode("0.10000000000000001") > 0.1)
  lu.assertTrue(json.is_number(json.decode("0.10000000000000001")))
  lu.assertEquals(json.tonumber(small), 0.1)
  lu.assertTrue(json.is_number(json.decode("1e400")))
  lu.assertEquals(json.tonumber(json.decode("1e400")), math.huge)
end

function TestNumbers.test_number_constructor_and_tonumber()
  lu.assertEquals(json.encode(json.number("1.10")), "1.10")
  lu.assertEquals(json.encode({ v = json.number("1e2") }), '{"v":1e2}')
  lu.assertEquals(tostring(json.number(5)), "5")
  lu.assertEquals(tostring(json.number(0.5)), "0.5")
  local n = json.number("7")
  lu.assertIs(json.number(n), n)
  lu.assertEquals(math.type(json.tonumber(n)), "integer")
  lu.assertEquals(json.tonumber("-12"), -12)
  lu.assertEquals(json.tonumber("2.5"), 2.5)
  lu.assertEquals(json.tonumber(3), 3)
  lu.assertNil(json.tonumber("abc"))
  lu.assertNil(json.tonumber({}))
  local e = err_of(json.number, "01")
  lu.assertEquals(e.kind, "usage")
  lu.assertStrContains(tostring(e), "not a JSON number")
  lu.assertEquals(err_of(json.number, 0 / 0).kind, "usage")
  lu.assertFalse(json.is_number(1))
end

TestKinds = {}

function TestKinds.test_decoded_kinds()
  local v = json.decode('{"a":[],"o":{},"l":[1,2]}')
  lu.assertEquals(getmetatable(v), getmetatable(json.decode("{}")))
  lu.assertEquals(getmetatable(v).__name, "couch.json.object")
  lu.assertEquals(getmetatable(v.a).__name, "couch.json.array")
  lu.assertIs(getmetatable(v.a), getmetatable(v.l))
  lu.assertTrue(json.is_array(v.a))
  lu.assertTrue(json.is_array(v.l))
  lu.assertFalse(json.is_array(v.o))
  lu.assertTrue(json.is_object(v.o))
  lu.assertEquals(json.encode(v.a), "[]")
  lu.assertEquals(json.encode(v.o), "{}")
end

function TestKinds.test_marking()
  lu.assertEquals(json.encode(json.array {}), "[]")
  lu.assertEquals(json.encode(json.array()), "[]")
  lu.assertEquals(json.encode(json.object {}), "{}")
  lu.assertEquals(json.encode(json.object { 1, 2 }), '{"1":1,"2":2}')
  local t = {}
  lu.assertIs(json.array(t), t)
  lu.assertTrue(json.is_array(t))
  lu.assertIs(json.object(t), t)         -- re-marking our own tables is allowed
  lu.assertFalse(json.is_array(t))
  local e = err_of(json.array, setmetatable({}, {}))
  lu.assertEquals(e.kind, "usage")
  -- a marked array writes 1..#t; holes become null
  lu.assertEquals(json.encode(json.array { 1, nil, 3 }), "[1,null,3]")
end

function TestKinds.test_plain_table_rule()
  lu.assertEquals(json.encode({}), "{}")                       -- empty plain table: object
  lu.assertEquals(json.encode({ 1, 2, 3 }), "[1,2,3]")         -- keys exactly 1..n
  lu.assertEquals(json.encode({ [1] = "a", [2] = "b" }), '["a","b"]')
  lu.assertEquals(json.encode({ [1] = 1, [3] = 3 }, { sort_keys = true }), '{"1":1,"3":3}')  -- sparse
  lu.assertEquals(json.encode({ 1, 2, x = 1 }, { sort_keys = true }), '{"1":1,"2":2,"x":1}') -- mixed
  lu.assertEquals(json.encode({ [0] = "z" }), '{"0":"z"}')
  lu.assertEquals(json.encode({ [-1] = "m" }), '{"-1":"m"}')
  lu.assertEquals(json.encode({ [1.5] = "f" }), '{"1.5":"f"}')
  lu.assertTrue(json.is_array({ 1 }))
  lu.assertFalse(json.is_array({}))
  lu.assertTrue(json.is_object({}))
  lu.assertFalse(json.is_array("x"))
  lu.assertFalse(json.is_object("x"))
  -- a table with someone else's metatable is judged by its contents
  lu.assertEquals(json.encode(setmetatable({ 1, 2 }, { __index = {} })), "[1,2]")
end

TestNull = {}

function TestNull.test_null()
  lu.assertEquals(type(json.null), "userdata")
  lu.assertEquals(json.encode(json.null), "null")
  lu.assertEquals(json.encode(nil), "null")
  lu.assertIs(json.decode("null"), json.null)
  local v = json.decode('{"a":null,"b":[null]}')
  lu.assertIs(v.a, json.null)
  lu.assertIs(v.b[1], json.null)
  lu.assertEquals(#v.b, 1)
  lu.assertEquals(json.encode(v, { sort_keys = true }), '{"a":null,"b":[null]}')
end

function TestNull.test_same_as_cjson_null()
  if not has_cjson then lu.skip("lua-cjson not installed") end
  lu.assertTrue(cjson.null == json.null)
  lu.assertTrue(rawequal(cjson.null, json.null))
  lu.assertEquals(json.encode({ cjson.null }), "[null]")
  lu.assertEquals(cjson.encode(json.decode("[null]")), "[null]")
end

function TestNull.test_cjson_would_have_lost_data()
  if not has_cjson then lu.skip("lua-cjson not installed") end
  local doc = '{"big":9007199254740993,"seq":18446744073709551616,"f":0.30000000000000004,"empty":[]}'
  -- lua-cjson (Debian 2.1.0): rounds to 14 significant digits and turns [] into {}
  local theirs = cjson.decode(cjson.encode(cjson.decode(doc)))
  local lost = cjson.encode(cjson.decode("[]")) ~= "[]"
    or cjson.encode(cjson.decode("9007199254740993")) ~= "9007199254740993"
    or theirs.f ~= 0.1 + 0.2
  lu.assertTrue(lost, "lua-cjson kept everything: this test no longer shows the point")
  lu.assertEquals(cjson.encode(cjson.decode("[]")), "{}")
  -- ours keeps it all
  local ours = json.decode(json.encode(json.decode(doc)))
  lu.assertEquals(ours.big, 9007199254740993)
  lu.assertEquals(tostring(ours.seq), "18446744073709551616")
  lu.assertEquals(ours.f, 0.1 + 0.2)
  lu.assertEquals(json.encode(ours.empty), "[]")
end

TestStrings = {}

function TestStrings.test_escapes()
  lu.assertEquals(json.encode('a"b\\c/d'), '"a\\"b\\\\c/d"')
  lu.assertEquals(json.encode("\0\1\31\b\f\n\r\t"), '"\\u0000\\u0001\\u001f\\b\\f\\n\\r\\t"')
  lu.assertEquals(json.encode("héllo ✓ 😀"), '"héllo ✓ 😀"')       -- valid UTF-8 left as is
  lu.assertEquals(json.decode('"\\u0000x"'), "\0x")
  lu.assertEquals(json.decode('"\\ud83d\\ude00"'), "😀")             -- surrogate pair
  lu.assertEquals(json.decode('"\\u00e9\\u4e2d"'), "é中")
  lu.assertEquals(json.encode({ ["k\n"] = 1 }), '{"k\\n":1}')
end

-- A lone surrogate escape has no UTF-8 form. It decodes to the surrogate's WTF-8 bytes
-- (ED A0 80 for \ud800), which encode writes back as the escape: the value passes
-- through unchanged. A real pair still decodes to its code point.
local WTF8 = {
  -- JSON text, decoded bytes, encoded text
  { '"\\ud800"', "\237\160\128", '"\\ud800"' },
  { '"\\uD800"', "\237\160\128", '"\\ud800"' },
  { '"\\udc00"', "\237\176\128", '"\\udc00"' },
  { '"\\udfff"', "\237\191\191", '"\\udfff"' },
  { '"\\ud800\\u0041"', "\237\160\128A", '"\\ud800A"' },              -- yajl: U+10041
  { '"\\ud800\\ud800"', "\237\160\128\237\160\128", '"\\ud800\\ud800"' }, -- yajl: U+10000
  { '"\\udc00\\ud800"', "\237\176\128\237\160\128", '"\\udc00\\ud800"' }, -- low, then high
  { '"\\ud800\\ud83d\\ude00"', "\237\160\128😀", '"\\ud800😀"' },
  { '"\\ud83d\\ude00\\udc00"', "😀\237\176\128", '"😀\\udc00"' },
  { '"a\\ud800"', "a\237\160\128", '"a\\ud800"' },                   -- at the end (CVE-2017-16516)
  { '"\\ud800\\n\\"\\\\\\/\\u00e9"', '\237\160\128\n"\\/é', '"\\ud800\\n\\"\\\\/é"' },
  { '"\\\\ud800"', "\\ud800", '"\\\\ud800"' },                        -- an escaped backslash
  { '"\\\\\\ud800"', "\\\237\160\128", '"\\\\\\ud800"' },
}

function TestStrings.test_lone_surrogates_round_trip()
  for _, c in ipairs(WTF8) do
    local v = json.decode(c[1])
    lu.assertEquals(v, c[2], "decoding " .. c[1])
    lu.assertEquals(json.encode(v), c[3], "encoding " .. c[1])
    lu.assertEquals(json.decode(json.encode(v)), v, "round trip of " .. c[1])
  end
  -- in keys, in containers, beside strings yajl decodes itself
  local text = '{"k\\udfff":["\\u00e9","\\ud800",{"\\t":"\\ud801x"}],"n":"\\ud83d\\ude00"}'
  local v = json.decode(text)
  lu.assertEquals(v["k\237\191\191"][1], "é")
  lu.assertEquals(v["k\237\191\191"][2], "\237\160\128")
  lu.assertEquals(v["k\237\191\191"][3]["\t"], "\237\160\129x")
  lu.assertEquals(v.n, "😀")
  lu.assertEquals(json.encode(v, { sort_keys = true }),
    '{"k\\udfff":["é","\\ud800",{"\\t":"\\ud801x"}],"n":"😀"}')
  -- a real pair is one code point, whatever the case of its hex digits
  lu.assertEquals(json.decode('"\\uD83D\\uDE00"'), "😀")
  lu.assertEquals(json.decode('"\\ud800\\udc00"'), "\240\144\128\128")
end

function TestStrings.test_encode_refuses_surrogates_that_would_pair()
  -- WTF-8 never holds a high surrogate right before a low one: as escapes the two would
  -- read back as one code point, so the value would not survive the trip.
  local e = json_error(json.encode, { s = "\237\160\128\237\176\128" })
  lu.assertStrContains(e.message, "a string with a surrogate pair in WTF-8")
  lu.assertEquals(e.path, ".s")
  lu.assertEquals(json.encode("\237\176\128\237\160\128"), '"\\udc00\\ud800"') -- low, high: fine
  lu.assertStrContains(json_error(json.encode, "\237\160").message, "invalid UTF-8") -- truncated
end

function TestStrings.test_duplicate_keys_last_wins()
  local v = json.decode('{"a":1,"b":2,"a":3}')
  lu.assertEquals(v.a, 3)
  lu.assertEquals(v.b, 2)
end

TestErrors = {}

function TestErrors.test_encode_errors_name_the_path()
  local e = json_error(json.encode, { docs = { {}, {}, { f = print } } })
  lu.assertEquals(e.message, "cannot encode a function at .docs[3].f")
  lu.assertEquals(e.path, ".docs[3].f")
  lu.assertStrContains(tostring(e), "cannot encode a function at .docs[3].f")
  lu.assertEquals(json_error(json.encode, print).message, "cannot encode a function at the top level")
  lu.assertEquals(json_error(json.encode, { x = 0 / 0 }).message, "cannot encode NaN at .x")
  lu.assertEquals(json_error(json.encode, { math.huge }).message, "cannot encode inf at [1]")
  lu.assertEquals(json_error(json.encode, { a = { -math.huge } }).message, "cannot encode -inf at .a[1]")
  lu.assertEquals(json_error(json.encode, { ["odd key"] = { coroutine.create(print) } }).message,
    'cannot encode a thread at ["odd key"][1]')
  lu.assertEquals(json_error(json.encode, { u = io.stdout }).message,
    "cannot encode a userdata (FILE*) at .u")
  lu.assertEquals(json_error(json.encode, { u = { [true] = 1 } }).message,
    "cannot encode a table key of type boolean at .u")
  lu.assertEquals(json_error(json.encode, { s = "bad \255 utf8" }).message,
    "cannot encode a string with invalid UTF-8 (byte 5 of 10) at .s")
  lu.assertStrContains(json_error(json.encode, { ["\192"] = 1 }).message, "a key with invalid UTF-8")
  lu.assertStrContains(json_error(json.encode, "\237\160\128\237\176\128").message, "surrogate pair") -- WTF-8 pair
end

function TestErrors.test_cycles()
  local t = { a = {} }
  t.a.b = t
  lu.assertEquals(json_error(json.encode, t).message,
    "cannot encode a cycle (a table that contains itself) at .a.b")
  local shared = { 1 }
  lu.assertEquals(json.encode({ shared, shared }), "[[1],[1]]")  -- shared is not a cycle
end

function TestErrors.test_cycles_deep()
  -- deep in a document the open tables are tracked in a set, not only by a scan of the
  -- path: a cycle back to any depth is found, and a table shared by two branches is not one
  local root, at = {}, {}
  local cur = root
  for i = 1, 300 do
    cur.n = {}
    cur = cur.n
    at[i] = cur
  end
  for _, back in ipairs { 0, 1, 15, 16, 17, 100, 299, 300 } do
    cur.back = back == 0 and root or at[back]
    local e = json_error(json.encode, root)
    lu.assertStrContains(e.message, "a cycle", "back to depth " .. back)
    lu.assertEquals(e.path, string.rep(".n", 300) .. ".back")
  end
  cur.back = nil
  local shared = { 1 }
  at[20].a, at[20].b, at[200].c, at[299].d = shared, shared, shared, shared
  local text = json.encode(root, { sort_keys = true })
  lu.assertEquals(select(2, text:gsub("%[1%]", "")), 4)
  lu.assertEquals(json.encode(json.decode(text), { sort_keys = true }), text)
end

function TestErrors.test_depth_limit()
  local deep = {}
  local cur = deep
  for _ = 1, 1100 do cur[1] = {} cur = cur[1] end
  local e = json_error(json.encode, deep)
  lu.assertStrContains(e.message, "cannot encode tables nested deeper than 1000 levels at [1][1]")
  lu.assertEquals(e.path, string.rep("[1]", 1000))
  lu.assertTrue(#e.message < 300, "the message shortens a long path")
  local ok = string.rep("[", 1000) .. string.rep("]", 1000)
  lu.assertEquals(json.encode(json.decode(ok)), ok)
  e = json_error(json.decode, string.rep("[", 1001) .. string.rep("]", 1001))
  lu.assertStrContains(e.message, "nesting deeper than 1000 levels")
  lu.assertEquals(e.offset, 1000)
  json_error(json.decode, string.rep("[", 1000000))
  json_error(json.decode, string.rep('{"a":', 100000))
end

function TestErrors.test_decode_errors_name_offset_and_found()
  local cases = {
    { "[1,]", 3, "found ']'" },
    { '{"a" 1}', 5, "found '1}'" },
    { "[1] x", 4, "found 'x'" },
    { "[1, @]", 4, "found '@]'" },
    { '{"a":1 "b":2}', 7, [[found '"b":2}']] },
    { "[tru]", 1, "found 'tru]'" },
    { "[1,2", 4, "found end of input" },
    { "", 0, "found end of input" },
    { "   ", 3, "found end of input" },
    { '["a\255"]', 3, "found '\\xff\"]'" },
    { "{1:2}", 1, "found '1:2}'" },
    { "[-]", 2, "found ']'" },
    { "[NaN]", 1, "found 'NaN]'" },
  }
  for _, c in ipairs(cases) do
    local e = json_error(json.decode, c[1])
    lu.assertEquals(e.offset, c[2], c[1])
    lu.assertStrContains(e.message, "invalid JSON at offset " .. c[2] .. " (" .. c[3] .. ")")
  end
  lu.assertEquals(json_error(json.decode, "[1,]").message,
    "invalid JSON at offset 3 (found ']'): parse error: unallowed token at this point in JSON text")
  lu.assertEquals(err_of(json.decode, 42).kind, "usage")
  lu.assertEquals(err_of(json.encode, 1, "pretty").kind, "usage")
  lu.assertEquals(err_of(json.encode, 1, { indent = 0 }).kind, "usage")
end

-- What CouchDB (jiffy) refuses, we refuse: a document that decodes here must be one the
-- target will take. Each case: text, offset of the error, what the message says.
local REJECTED = {
  { "\f[1]", 0, "not JSON whitespace" },
  { "[1,\v2]", 3, "not JSON whitespace" },
  { "[1]\f", 3, "not JSON whitespace" },
  { '{"a":1}"junk', 7, "trailing garbage" },
  { '[1] "', 4, "trailing garbage" },
  { '"a" "b', 4, "trailing garbage" },
  { '1 "', 2, "trailing garbage" },
  { '{"a":1}\n\t\r "x\\', 11, "trailing garbage" },
  { '"\192\128"', 1, "invalid UTF-8" },                 -- overlong NUL
  { '"\193\191"', 1, "invalid UTF-8" },                 -- overlong
  { '"\224\128\128"', 1, "invalid UTF-8" },             -- overlong 3 bytes
  { '"\240\128\128\128"', 1, "invalid UTF-8" },         -- overlong 4 bytes
  { '"\237\160\128"', 1, "invalid UTF-8" },             -- an encoded surrogate
  { '"\237\191\191"', 1, "invalid UTF-8" },
  { '"\244\144\128\128"', 1, "invalid UTF-8" },         -- above U+10FFFF
  { '"\245\128\128\128"', 1, "invalid UTF-8" },
  { '"\248\136\128\128\128"', 1, "invalid UTF-8" },     -- 5-byte form
  { '"\128"', 1, "invalid UTF-8" },                     -- a lone continuation byte
  { '"\226\130"', 1, "invalid UTF-8" },                 -- truncated
  { '"\226\130x"', 1, "invalid UTF-8" },
  { '"\240\159\152"', 1, "invalid UTF-8" },
  { '["ok","\224\128\128"]', 7, "invalid UTF-8" },
  { '{"\192\128":1}', 2, "invalid UTF-8" },             -- in a key
  { "[\192]", 1, "invalid UTF-8" },
  { '"\226\130', 1, "invalid UTF-8" },                  -- truncated at the end of input
}

function TestErrors.test_decode_rejects_what_couchdb_rejects()
  for _, c in ipairs(REJECTED) do
    local ok, e = pcall(json.decode, c[1])
    lu.assertFalse(ok, ("%q was accepted"):format(c[1]))
    lu.assertEquals(type(e), "table", ("%q: not an error object: %s"):format(c[1], tostring(e)))
    lu.assertEquals(e.kind, "json")
    lu.assertEquals(e.offset, c[2], ("%q"):format(c[1]))
    lu.assertStrContains(e.message, "invalid JSON at offset " .. c[2] .. " (found ")
    lu.assertStrContains(e.message, c[3])
  end
  -- the first error in the text is the one reported
  lu.assertEquals(json_error(json.decode, "[1,]\192").offset, 3)
  lu.assertEquals(json_error(json.decode, "[\192,]").offset, 1)
  lu.assertEquals(json_error(json.decode, '{"a":1}"\192').offset, 7)
  -- the edges of UTF-8 that are valid, and the whitespace that is
  for _, s in ipairs { "\127", "\194\128", "\223\191", "\224\160\128", "\237\159\191",
                       "\238\128\128", "\239\191\191", "\240\144\128\128", "\244\143\191\191" } do
    lu.assertEquals(json.decode('"' .. s .. '"'), s)
  end
  lu.assertEquals(json.decode(' \t\r\n[ \t\r\n1 \t\r\n] \t\r\n')[1], 1)
  lu.assertEquals(json.decode("123"), 123)
  lu.assertEquals(json.decode("123 \n"), 123)
  lu.assertEquals(json.decode('"x" '), "x")
end

function TestErrors.test_locale_does_not_leak_in()
  local old = os.setlocale(nil, "numeric")
  local set = os.setlocale("de_DE.UTF-8", "numeric") or os.setlocale("fr_FR.UTF-8", "numeric")
  if not set then lu.skip("no locale with a decimal comma installed") end
  local ok, err = pcall(function()
    lu.assertEquals(json.encode(1.5), "1.5")
    lu.assertEquals(json.decode("1.5"), 1.5)
    lu.assertEquals(json.encode(json.decode("0.30000000000000004")), "0.30000000000000004")
  end)
  os.setlocale(old, "numeric")
  if not ok then error(err, 0) end
end

TestModule = {}

function TestModule.test_reachable_from_couch()
  lu.assertIs(require("couch").json, json)
  for _, name in ipairs { "encode", "decode", "array", "object", "is_array", "is_object",
                          "number", "tonumber", "is_number" } do
    lu.assertEquals(type(json[name]), "function", name)
  end
end

os.exit(lu.LuaUnit.run(), true) -- close the state: leak checkers see everything freed
