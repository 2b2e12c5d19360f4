-- Credential redaction for values we return or print: replication documents carry
-- passwords and API keys (CouchDB hands them back in clear to an admin), so every table the
-- replication API returns goes through here first.
local M = {}

local SECRET_KEYS = {
  password = true, api_key = true, apikey = true, token = true, access_token = true,
  refresh_token = true, authorization = true, cookie = true, secret = true,
}

-- Whether a key names a secret, whatever its case; remembered per key (documents repeat
-- the same few keys: one lookup instead of a lower-cased copy each time).
local secret_memo, memo_size = {}, 0
local function is_secret(k)
  local v = secret_memo[k]
  if v == nil then
    v = SECRET_KEYS[k:lower()] == true
    if memo_size > 4096 then secret_memo, memo_size = {}, 0 end
    secret_memo[k], memo_size = v, memo_size + 1
  end
  return v
end

-- scheme://user:pass@host -> scheme://host: the request layer's redactor (src/http/url.c),
-- one implementation for what C and Lua print.
local redact_url = require("couch.url").redact_value
M.url = redact_url

--- A deep copy of v with secrets masked as "***" and URL userinfo removed. Metatables
-- of JSON arrays/objects are kept so the copy encodes the same way.
local function copy(v, seen)
  local t = type(v)
  if t == "string" then return redact_url(v) end
  if t ~= "table" then return v end
  if seen[v] then return seen[v] end
  local out = setmetatable({}, getmetatable(v))
  seen[v] = out
  for k, x in pairs(v) do
    if type(k) == "string" and is_secret(k) and x ~= nil then
      out[k] = "***"
    else
      out[k] = copy(x, seen)
    end
  end
  return out
end

function M.value(v) return copy(v, {}) end

--- v masked in place (secret-named fields set to "***", URL userinfo removed) and
-- returned: for a value just decoded that nobody else holds, instead of a copy.
local function mask(v, depth)
  if type(v) ~= "table" or depth > 32 then return v end
  for k, x in next, v do
    if type(k) == "string" and is_secret(k) then
      v[k] = "***"
    elseif type(x) == "string" then
      if x:find("://", 1, true) then v[k] = redact_url(x) end
    elseif type(x) == "table" then
      mask(x, depth + 1)
    end
  end
  return v
end
function M.mask(v) return mask(v, 0) end

-- Whether redact.value would change anything in v (a secret-named key, a URL with userinfo).
local function dirty(v, depth)
  local t = type(v)
  if t == "string" then return v:find("://", 1, true) ~= nil and redact_url(v) ~= v end
  if t ~= "table" or depth > 32 then return t == "table" end
  for k, x in pairs(v) do
    if type(k) == "string" and is_secret(k) then return true end
    if dirty(x, depth + 1) then return true end
  end
  return false
end

--- v itself when nothing in it needs masking, else redact.value(v): for values read often
-- and rarely secret (scheduler rows, replication stats), a check instead of a copy. The
-- caller must treat the result as shared (not modify it).
function M.clean(v)
  if dirty(v, 0) then return copy(v, {}) end
  return v
end

--- Source text (a line typed at the REPL, for its history file) with credentials taken
-- out: userinfo of every URL in it, and the string value of any secret-named field
-- (`password = "..."`, `["api_key"] = '...'`, `{ token = [[...]] }`).
function M.source(text)
  text = text:gsub("%a[%w+.-]*://[^%s'\"%]%)}]*", redact_url)
  for key in pairs(SECRET_KEYS) do
    local name = key:gsub("%a", function(c) return "[" .. c:lower() .. c:upper() .. "]" end)
    text = text:gsub("(%f[%w_]" .. name .. "%s*=%s*)(['\"])(.-)%2", "%1%2***%2") -- key = "v"
    text = text:gsub("(%[%s*(['\"])" .. name .. "%2%s*%]%s*=%s*)(['\"])(.-)%3",  -- ["key"] = "v"
                     function(lead, _, q) return lead .. q .. "***" .. q end)
    text = text:gsub("(%f[%w_]" .. name .. "%s*=%s*)%[(=*)%[.-%]%2%]", "%1\"***\"")
  end
  return text
end

return M
