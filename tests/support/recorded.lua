-- Recorded exchanges with a real CouchDB 3.4.3 (tests/fixtures/<set>/NNN-*.json, format in
-- tests/fixtures/couchdb-3.4.3/README.md) and the shape comparison the fakes are held to.
--
--   local recorded = require "recorded"
--   local set = recorded.open("couchdb-3.4.3-suite")   -- nil when the folder is missing
--   local rec = set:get(208)                            -- rec.request, rec.status, rec.body, rec.file
--   local ok, why = recorded.same_shape(rec.body, got [, "$", loose])
local couch = require "couch"
local json = couch.json
local NULL = json.null

local M = {}

local function source_dir()
  return os.getenv("COUCHLUA_SOURCE_DIR")
    or debug.getinfo(1, "S").source:match("^@(.*)/tests/support/[^/]*$") or "."
end

local Set = {}
Set.__index = Set

--- open(name) -> the set in $COUCHLUA_FIXTURES (for couchdb-3.4.3), tests/fixtures/<name>,
-- fixtures/<name> or ../shared/fixtures/<name>; nil when none has it
function M.open(name)
  local src = source_dir()
  local dirs = { src .. "/tests/fixtures/" .. name, src .. "/fixtures/" .. name, src .. "/../shared/fixtures/" .. name }
  if name == "couchdb-3.4.3" and os.getenv("COUCHLUA_FIXTURES") then table.insert(dirs, 1, os.getenv("COUCHLUA_FIXTURES")) end
  for _, dir in ipairs(dirs) do
    local p = io.popen("ls '" .. dir .. "' 2>/dev/null")
    local names = {}
    for file in p:lines() do
      local n = file:match("^(%d+)%-.*%.json$")
      if n then names[tonumber(n)] = file end
    end
    p:close()
    if next(names) then return setmetatable({ dir = dir, names = names, cache = {} }, Set) end
  end
  return nil
end

--- set:get(no) -> the recording numbered `no` (with .file, its file name)
function Set:get(no)
  if self.cache[no] then return self.cache[no] end
  local name = assert(self.names[no], "no recording " .. no .. " in " .. self.dir)
  local fh = assert(io.open(self.dir .. "/" .. name, "r"))
  local rec = json.decode(fh:read("a"))
  fh:close()
  rec.file = name
  self.cache[no] = rec
  return rec
end

local function kind(v)
  if v == NULL then return "null" end
  local t = type(v)
  if t == "table" then return json.is_array(v) and "array" or "object" end
  if t == "userdata" and json.is_number(v) then return "number" end
  return t
end
M.kind = kind

--- same_shape(recorded, got) -> true | false, where
-- Objects must have the same key set, values the same JSON type (recursively); every
-- element of a got array must have the shape of at least one recorded element (an empty
-- recorded array accepts anything). `loose` names keys whose value may be null or not.
function M.same_shape(rec, got, path, loose)
  path = path or "$"
  local kr, kg = kind(rec), kind(got)
  if kr ~= kg then
    local key = path:match("([^.%[]+)$")
    if loose and loose[key] and (kr == "null" or kg == "null") then return true end
    return false, ("%s: recorded %s, got %s"):format(path, kr, kg)
  end
  if kr == "object" then
    for k, v in pairs(rec) do
      if got[k] == nil then return false, ("%s.%s: missing"):format(path, k) end
      local ok, why = M.same_shape(v, got[k], path .. "." .. k, loose)
      if not ok then return false, why end
    end
    for k in pairs(got) do
      if rec[k] == nil then return false, ("%s.%s: not in the recording"):format(path, k) end
    end
  elseif kr == "array" and #rec > 0 then
    for i, g in ipairs(got) do
      local matched, first = false, nil
      for _, r in ipairs(rec) do
        local ok, why = M.same_shape(r, g, ("%s[%d]"):format(path, i), loose)
        if ok then matched = true; break end
        first = first or why
      end
      if not matched then return false, first end
    end
  end
  return true
end

-- ---------------------------------------------------------------------------------------
-- key order (a decoded table forgets it; the text keeps it)

-- key_orders(text) -> { [path] = { {key, key, ...}, ... } }: the keys of every object of
-- a JSON text in the order written, one list per object; array elements share the path
-- "<array>[]"
function M.key_orders(text)
  local pos, out = 1, {}
  local function ws() pos = text:find("[^ \t\r\n]", pos) or #text + 1 end
  local function str()
    local i = pos + 1
    while true do
      local c = text:sub(i, i)
      if c == "\\" then i = i + 2 elseif c == '"' then break elseif c == "" then error("unterminated string") else i = i + 1 end
    end
    local s = text:sub(pos + 1, i - 1)
    pos = i + 1
    return s
  end
  local value
  function value(path)
    ws()
    local c = text:sub(pos, pos)
    if c == "{" then
      pos = pos + 1
      local keys = {}
      out[path] = out[path] or {}
      table.insert(out[path], keys)
      ws()
      if text:sub(pos, pos) == "}" then pos = pos + 1; return end
      while true do
        ws()
        local k = str()
        keys[#keys + 1] = k
        ws(); pos = pos + 1 -- ':'
        value(path .. "." .. k)
        ws()
        c = text:sub(pos, pos)
        pos = pos + 1
        if c == "}" then return end
      end
    elseif c == "[" then
      pos = pos + 1
      ws()
      if text:sub(pos, pos) == "]" then pos = pos + 1; return end
      while true do
        value(path .. "[]")
        ws()
        c = text:sub(pos, pos)
        pos = pos + 1
        if c == "]" then return end
      end
    elseif c == '"' then
      str()
    else
      pos = text:find("[,}%]]", pos) or #text + 1
    end
  end
  value("$")
  return out
end

-- the order of the keys of `keys` that are also in `set`
local function common(keys, set)
  local out = {}
  for _, k in ipairs(keys) do if set[k] then out[#out + 1] = k end end
  return table.concat(out, ",")
end

local function as_set(keys)
  local set = {}
  for _, k in ipairs(keys) do set[k] = true end
  return set
end

--- same_key_order(recorded_text, got_text[, skip]) -> true | false, why: every object of
-- the answer has its keys in the order of some recorded object at the same path (one
-- path may hold objects of several shapes: scheduler docs in different states). `skip`:
-- paths whose keys are data (document ids), not names.
function M.same_key_order(rec_text, got_text, skip)
  local a, b = M.key_orders(rec_text), M.key_orders(got_text)
  for path, got_objs in pairs(b) do
    local rec_objs = a[path]
    if rec_objs and not (skip and skip[path]) then
      for _, keys in ipairs(got_objs) do
        local gset, ok, shared = as_set(keys), false, 0
        for _, rk in ipairs(rec_objs) do
          local rset = as_set(rk)
          local n = 0
          for _, k in ipairs(keys) do if rset[k] then n = n + 1 end end
          if n >= 2 then
            shared = shared + 1
            if common(rk, gset) == common(keys, rset) then ok = true; break end
          end
        end
        if shared > 0 and not ok then
          return false, ("%s: keys in the order %s; the recording has %s"):format(path, table.concat(keys, ","),
            table.concat(rec_objs[1], ","))
        end
      end
    end
  end
  return true
end

--- id_keyed(rec) -> the paths of a recorded answer whose keys are document ids, whose order
-- tells nothing (_revs_diff: the order the shards answered in)
function M.id_keyed(rec)
  local path = rec.request and rec.request.path or ""
  if path:match("/_revs_diff$") then return { ["$"] = true } end
  return nil
end

-- the JSON value that starts at (or after blanks from) position i of text: its text
local function value_at(text, i)
  i = text:find("[^ \t\r\n]", i)
  local c = text:sub(i, i)
  local j
  if c == "{" or c == "[" then
    local depth = 0
    j = i
    while true do
      local d = text:sub(j, j)
      if d == '"' then
        j = j + 1
        while text:sub(j, j) ~= '"' do j = j + (text:sub(j, j) == "\\" and 2 or 1) end
      elseif d == "{" or d == "[" then depth = depth + 1
      elseif d == "}" or d == "]" then
        depth = depth - 1
        if depth == 0 then break end
      end
      j = j + 1
    end
  elseif c == '"' then
    j = i + 1
    while text:sub(j, j) ~= '"' do j = j + (text:sub(j, j) == "\\" and 2 or 1) end
  else
    j = (text:find("[,}%]%s]", i) or #text + 1) - 1
  end
  return text:sub(i, j)
end

-- the text of the value of member `key` of the object at the start of `text`
local function member_text(text, key)
  local depth, i, n = 0, 1, #text
  while i <= n do
    local c = text:sub(i, i)
    if c == '"' then
      local j = i + 1
      while text:sub(j, j) ~= '"' do j = j + (text:sub(j, j) == "\\" and 2 or 1) end
      if depth == 1 and text:sub(i + 1, j - 1) == key and text:find("^%s*:", j + 1) then
        return value_at(text, text:find(":", j + 1, true) + 1)
      end
      i = j + 1
    else
      if c == "{" or c == "[" then depth = depth + 1 elseif c == "}" or c == "]" then depth = depth - 1 end
      i = i + 1
    end
  end
  error("no member " .. key)
end

--- set:text(no, key...) -> the recorded JSON text at that path of the file, keys in the
-- recorded order: set:text(no, "body"), set:text(no, "request", "body")
function Set:text(no, ...)
  local fh = assert(io.open(self.dir .. "/" .. self.names[no], "r"))
  local text = fh:read("a")
  fh:close()
  for _, key in ipairs { ... } do text = member_text(text, key) end
  return text
end

return M
