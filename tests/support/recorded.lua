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

return M
