-- couch.pretty: readable text for any Lua value, as the REPL prints results.
--
--   local pretty = require "couch.pretty"
--   pretty.format(v [, opts])  --> string
--   pretty.print(...)          -- each value formatted, tab-separated, then a newline
--
-- Tables: the array part first (1..n in order), then the other keys sorted (strings, then
-- numbers, then booleans, then anything else); on one line when that fits in opts.width,
-- else one entry per line, indented. Nesting deeper than opts.depth shows as {...}; a
-- table met again inside itself shows as <cycle: table: 0x...>. Strings are quoted with
-- escapes ("a\tb"). Values with a __tostring metamethod (error objects, couch objects)
-- print through it, also inside tables. couch.json.null (cjson.null) prints as null.
--
-- opts (all optional): depth (4), indent ("  "), width (80), max_items (100: at most this
-- many entries per table, then "... (N more)"), private (false: functions stored under
-- "_"-prefixed keys, an object's internals like srv:_send, are left out; data such as a
-- document's _id and _rev is always shown).

local M = {}

local type, tostring, pairs, rawget, select = type, tostring, pairs, rawget, select
local concat, sort = table.concat, table.sort
local mathtype, huge = math.type, math.huge
local print = print -- captured: pretty.print works even if a user sets print = pretty.print
-- debug.getmetatable sees through a __metatable field, which could hide __tostring.
local getmetatable = debug and debug.getmetatable or getmetatable

M.defaults = { depth = 4, indent = "  ", width = 80, max_items = 100, private = false }

local keywords = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
            repeat return then true until while]]):gmatch("%a+") do
  keywords[w] = true
end

-- couch.json.null is a NULL light userdata (the same value as cjson.null). Looked up on
-- first need: couch.json may not be loadable where this file is used on its own.
local null
local function is_null(v)
  if null == nil then
    local ok, json = pcall(require, "couch.json")
    null = ok and type(json) == "table" and json.null or false
  end
  if null then return v == null end
  return tostring(v) == "userdata: (nil)"
end

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["\v"] = "\\v",
}

-- Quoted like %q but on one line: \n rather than a backslash-newline, \ddd for other
-- control bytes (three digits, so a following digit cannot join them); bytes >= 0x80 are
-- left alone so UTF-8 text stays readable.
local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or ("\\%03d"):format(c:byte())
  end) .. '"'
end
M.quote = quote

-- The shortest of %.14g..%.17g that reads back as the same float (lossless, yet 0.1
-- prints as 0.1); integral floats keep a ".0" so they do not look like integers.
local function float_text(x)
  if x ~= x or x == huge or x == -huge then return tostring(x) end
  local s
  for p = 14, 17 do
    s = ("%." .. p .. "g"):format(x)
    if tonumber(s) == x then break end
  end
  if s:match("^%-?%d+$") then s = s .. ".0" end
  return s
end

-- A value through its __tostring, or nil when it has none.
local function via_tostring(v)
  local mt = getmetatable(v)
  if type(mt) ~= "table" or rawget(mt, "__tostring") == nil then return nil end
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return ("<%s: __tostring failed: %s>"):format(type(v), tostring(s))
end

local function scalar(v)
  local t = type(v)
  if t == "string" then return quote(v) end
  if t == "number" then
    if mathtype(v) == "float" then return float_text(v) end
    return tostring(v)
  end
  if t == "userdata" and is_null(v) then return "null" end
  return via_tostring(v) or tostring(v)
end

local function key_text(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") and not keywords[k] then return k end
  if type(k) == "table" then return "[" .. (via_tostring(k) or tostring(k)) .. "]" end
  return "[" .. scalar(k) .. "]"
end

local rank = { string = 1, number = 2, boolean = 3 }
local function key_less(a, b)
  local ta, tb = type(a), type(b)
  local ra, rb = rank[ta] or 4, rank[tb] or 4
  if ra ~= rb then return ra < rb end
  if ra == 1 or ra == 2 then return a < b end
  if ra == 3 then return (not a) and b end
  return tostring(a) < tostring(b)
end

local format_value

local function format_table(t, opts, level, open)
  if next(t) == nil then return "{}" end
  if level >= opts.depth then return "{...}" end
  -- t has no __tostring here, so tostring gives its address
  if open[t] then return "<cycle: " .. tostring(t) .. ">" end
  open[t] = true

  -- The array part, 1..n without holes, then every other key, sorted.
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  local keys = {}
  for k, v in pairs(t) do
    local internal = not opts.private and type(v) == "function" and type(k) == "string" and k:sub(1, 1) == "_"
    if not internal and not (mathtype(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  sort(keys, key_less)

  local items, total, multiline = {}, 0, false
  local limit = opts.max_items or huge
  local count = n + #keys
  if count == 0 then open[t] = nil return "{}" end
  local function add(s)
    items[#items + 1] = s
    total = total + #s + 2
    if s:find("\n", 1, true) then multiline = true end
  end
  for i = 1, n do
    if #items >= limit then break end
    add(format_value(rawget(t, i), opts, level + 1, open))
  end
  for _, k in ipairs(keys) do
    if #items >= limit then break end
    add(key_text(k) .. " = " .. format_value(rawget(t, k), opts, level + 1, open))
  end
  if count > #items then add(("... (%d more)"):format(count - #items)) end
  open[t] = nil

  if not multiline and #opts.indent * level + total + 2 <= opts.width then
    return "{ " .. concat(items, ", ") .. " }"
  end
  local pad = opts.indent:rep(level + 1)
  return "{\n" .. pad .. concat(items, ",\n" .. pad) .. "\n" .. opts.indent:rep(level) .. "}"
end

function format_value(v, opts, level, open)
  if type(v) == "table" then
    return via_tostring(v) or format_table(v, opts, level, open)
  end
  return scalar(v)
end

local function options(opts)
  if opts == nil then return M.defaults end
  if type(opts) ~= "table" then
    error("bad argument #2 to 'format' (table expected, got " .. type(opts) .. ")", 3)
  end
  local o = {}
  for k, d in pairs(M.defaults) do
    if opts[k] == nil then o[k] = d else o[k] = opts[k] end
  end
  return o
end

--- The text of v. opts: see the top of this file.
function M.format(v, opts)
  return format_value(v, options(opts), 0, {})
end

--- Print each argument formatted, separated by tabs (as the REPL prints results).
function M.print(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = format_value((select(i, ...)), M.defaults, 0, {}) end
  print(concat(parts, "\t"))
end

return M
