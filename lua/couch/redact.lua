-- Credential redaction for values we return or print: replication documents carry
-- passwords and API keys (CouchDB hands them back in clear to an admin), so every table the
-- replication API returns goes through here first.
local M = {}

local SECRET_KEYS = {
  password = true, api_key = true, apikey = true, token = true, access_token = true,
  refresh_token = true, authorization = true, cookie = true, secret = true,
}

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
    if type(k) == "string" and SECRET_KEYS[k:lower()] and x ~= nil then
      out[k] = "***"
    else
      out[k] = copy(x, seen)
    end
  end
  return out
end

function M.value(v) return copy(v, {}) end

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
