-- Starts a node script of tests/fakes that prints "PORT <n>" when it listens. node's stdin
-- is the write end of a pipe this process holds (io.popen(..., "w")), so the fake exits
-- when the test process does, however it ends; its output goes to a temporary file.
local couch = require "couch"

local M = {}

function M.source_dir()
  local dir = os.getenv("COUCHLUA_SOURCE_DIR")
  if dir then return dir end
  local here = debug.getinfo(1, "S").source:match("^@(.*)/tests/support/[^/]*$")
  return here or "."
end

function M.shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function M.read_file(path)
  local fh = io.open(path, "r")
  if not fh then return "" end
  local s = fh:read("a")
  fh:close()
  return s
end

--- start(script, args, what) -> port, pipe, output_file. `script` is relative to
-- tests/fakes; `args` are already-quoted command line words; `what` names it in errors.
function M.start(script, args, what)
  local out = os.tmpname()
  local cmd = ("exec %s %s %s >%s 2>&1"):format(os.getenv("NODE") or "node",
    M.shell_quote(M.source_dir() .. "/tests/fakes/" .. script), args or "", M.shell_quote(out))
  local pipe = assert(io.popen(cmd, "w"))
  local deadline = couch.now() + 15
  while true do
    local port = M.read_file(out):match("PORT (%d+)")
    if port then return tonumber(port), pipe, out end
    if couch.now() > deadline then
      local text = M.read_file(out)
      pipe:close()
      os.remove(out)
      error(("%s did not start: %s"):format(what or script, text), 3)
    end
    couch.sleep(0.02)
  end
end

-- A started fake as an object: the base of the fakes' classes (fake.lua, fake_arango.lua,
-- fake_couchdb3.lua, hostile.lua): port, url, its output, a control connection, stop.
local Base = {}
Base.__index = Base
M.Base = Base

--- M.class() -> a class for one fake, its methods looked up in Base after its own
function M.class()
  local C = setmetatable({}, { __index = Base })
  C.__index = C
  C.__gc = function(self) return self:stop() end
  C.__close = C.__gc
  return C
end

--- M.spawn(Class, script, args, what [, fields]) -> an instance of Class for a running
-- fake (see start): port, url ("http://127.0.0.1:<port>"), control (a couch connection
-- without retries for the fake's control calls), and the fields given.
function M.spawn(Class, script, args, what, fields)
  local port, pipe, out = M.start(script, args, what)
  local self = fields or {}
  self.port, self.url = tonumber(port), "http://127.0.0.1:" .. port
  self._pipe, self._out = pipe, out
  self.control = couch.connect(self.url, { retries = 0, timeout = 10 })
  return setmetatable(self, Class)
end

--- f:call(method, path [, body]) -> the fake's answer to a control call
function Base:call(method, path, body)
  return (self.control:request(method, path, { body = body }))
end

--- f:requests([path [, method]]) -> the logged requests (for that path / method), for the
-- fakes whose log() is {requests = {...}}
function Base:requests(path, method)
  local out = {}
  for _, r in ipairs(self:log().requests) do
    if (not path or r.path == path) and (not method or r.method == method) then out[#out + 1] = r end
  end
  return out
end

--- the fake's own output (stdout/stderr) so far
function Base:output() return M.read_file(self._out) end

function Base:stop()
  if not self._pipe then return end
  self._pipe:close() -- node sees end of stdin and exits; close waits for it
  self._pipe = nil
  os.remove(self._out)
end

return M
