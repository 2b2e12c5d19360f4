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

local function source_dir()
  local dir = os.getenv("COUCHLUA_SOURCE_DIR")
  if dir then return dir end
  local here = debug.getinfo(1, "S").source:match("^@(.*)/tests/support/[^/]*$")
  return here or "."
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local fh = io.open(path, "r")
  if not fh then return "" end
  local s = fh:read("a")
  fh:close()
  return s
end

--- fake.start([config]) -> a running fake
function M.start(config)
  local script = source_dir() .. "/tests/fakes/fake_couch.js"
  local out = os.tmpname()
  local cmd = ("exec node %s %s >%s 2>&1"):format(shell_quote(script),
    config and shell_quote(json.encode(config)) or "", shell_quote(out))
  local pipe = assert(io.popen(cmd, "w"))
  local port
  local deadline = couch.now() + 15
  repeat
    port = read_file(out):match("PORT (%d+)")
    if not port then
      if couch.now() > deadline then
        local text = read_file(out)
        pipe:close()
        os.remove(out)
        error("the fake CouchDB did not start: " .. text, 2)
      end
      couch.sleep(0.02)
    end
  until port
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
