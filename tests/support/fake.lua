-- Starts and drives tests/fakes/fake_couch.js, the FAKE CouchDB for fault, auth and
-- redaction tests (what pouchdb-server cannot be made to do on demand).
--
--   local fake = require "fake"
--   local f = fake.start{ users = { admin = "pw" }, require_auth = true }  -- config optional
--   f.url                          -- "http://127.0.0.1:<port>"
--   f:script("/db/doc", { { status = 503 }, { status = 200, body = { ok = true } } }, "GET")
--   f:log()                        -- { requests = {...}, max_in_flight = n, in_flight = n }
--   f:requests(path [, method])    -- the logged requests for one path
--   f:config{ ... }  f:reset()  f:expire_sessions()  f:expire_tokens()  f:closed_port()
--   f:stop()
--
-- node's stdin is the write end of a pipe this process holds (io.popen(..., "w")), so the
-- fake exits when the test process does, however it ends. Its stdout (the "PORT <n>"
-- line) goes to a temporary file. Control calls go through couch itself.
local couch = require "couch"
local json = couch.json

local M = {}
local Fake = {}
Fake.__index = Fake

local node = require "node_process"

--- fake.start([config]) -> a running fake
function M.start(config)
  local port, pipe, out = node.start("fake_couch.js", config and node.shell_quote(json.encode(config)) or "",
    "the fake CouchDB")
  local self = setmetatable({ port = tonumber(port), url = "http://127.0.0.1:" .. port,
                              pipe = pipe, out = out }, Fake)
  self.control = couch.connect(self.url, { retries = 0, timeout = 10 })
  return self
end

function Fake:call(method, path, body)
  return (self.control:request(method, path, { body = body }))
end

--- f:script(path, responses [, method]): scripted answers for a path (query ignored)
function Fake:script(path, responses, method)
  local list = json.array {}
  for i, r in ipairs(responses) do list[i] = r end
  return self:call("POST", "/_fake/script", { path = path, responses = list, method = method })
end

function Fake:log() return self:call("GET", "/_fake/log") end

--- f:requests([path [, method]]) -> the logged requests (for that path / method)
function Fake:requests(path, method)
  local out = {}
  for _, r in ipairs(self:log().requests) do
    if (not path or r.path == path) and (not method or r.method == method) then out[#out + 1] = r end
  end
  return out
end

function Fake:reset() return self:call("POST", "/_fake/reset", json.object {}) end
function Fake:config(c) return self:call("POST", "/_fake/config", c) end
function Fake:expire_sessions() return self:call("POST", "/_fake/expire_sessions", json.object {}) end
function Fake:expire_tokens() return self:call("POST", "/_fake/expire_tokens", json.object {}) end
function Fake:closed_port() return self:call("GET", "/_fake/closed_port").port end

function Fake:stop()
  if not self.pipe then return end
  self.pipe:close() -- node sees end of stdin and exits; pclose waits for it
  self.pipe = nil
  os.remove(self.out)
end

return M
