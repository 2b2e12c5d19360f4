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

local node = require "node_process"

local M = {}
local Fake = node.class()

--- fake.start([config]) -> a running fake
function M.start(config)
  return node.spawn(Fake, "fake_couch.js", config and node.shell_quote(json.encode(config)) or "",
    "the fake CouchDB")
end

--- f:script(path, responses [, method]): scripted answers for a path (query ignored)
function Fake:script(path, responses, method)
  local list = json.array {}
  for i, r in ipairs(responses) do list[i] = r end
  return self:call("POST", "/_fake/script", { path = path, responses = list, method = method })
end

function Fake:log() return self:call("GET", "/_fake/log") end

function Fake:reset() return self:call("POST", "/_fake/reset", json.object {}) end
function Fake:config(c) return self:call("POST", "/_fake/config", c) end
function Fake:expire_sessions() return self:call("POST", "/_fake/expire_sessions", json.object {}) end
function Fake:expire_tokens() return self:call("POST", "/_fake/expire_tokens", json.object {}) end
function Fake:closed_port() return self:call("GET", "/_fake/closed_port").port end

return M
