-- Tab completion for the REPL. complete(word) -> a sorted list of what `word` (the text
-- being typed: a global, `a.b.c`, or `obj:meth`) may become: globals, the fields of a
-- table, and after a colon the methods of an object (its metatable's __index or methods
-- table). Values are only looked at with rawget, so completing never runs user code.
local M = {}

local function is_name(k) return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil end

-- The tables whose keys an object offers: itself (a table) and its __index chain, plus a
-- C type's `methods` table (couch's servers keep their methods there).
local function sources(v)
  local out, seen = {}, {}
  local function add(t)
    if type(t) == "table" and not seen[t] then
      seen[t] = true
      out[#out + 1] = t
    end
  end
  for _ = 1, 8 do
    if type(v) == "table" then add(v) end
    local mt = getmetatable(v)
    if type(mt) ~= "table" then break end
    add(rawget(mt, "methods"))
    local idx = rawget(mt, "__index")
    if type(idx) ~= "table" then break end
    v = idx
  end
  return out
end

-- The value a dotted path names, from the globals; nil when any step is not plain data.
local function resolve(path)
  local v = _G
  for name in path:gmatch("[^%.]+") do
    local found
    for _, t in ipairs(sources(v)) do
      found = rawget(t, name)
      if found ~= nil then break end
    end
    if found == nil then return nil end
    v = found
  end
  return v
end

function M.complete(word)
  local path, sep, partial = word:match("^(.-)([%.:])([%w_]*)$")
  local base
  if path then
    if path == "" or path:find(":", 1, true) then return {} end
    base = resolve(path)
    if base == nil then return {} end
  else
    base, partial, path, sep = _G, word, "", ""
  end
  local names, seen = {}, {}
  for _, t in ipairs(sources(base)) do
    for k, v in next, t do
      if is_name(k) and not seen[k] and k:sub(1, #partial) == partial
          and (sep ~= ":" or type(v) == "function")
          and (partial:sub(1, 1) == "_" or k:sub(1, 1) ~= "_" or sep == "") then
        seen[k] = true
        names[#names + 1] = path .. sep .. k
      end
    end
  end
  table.sort(names)
  return names
end

return M
