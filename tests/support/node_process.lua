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

return M
