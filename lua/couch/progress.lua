-- The progress line of a long job (a replication, a backup, a restore): one home for how
-- it is shown. A `progress = function(stats)` of the user's replaces it; `quiet = true` or
-- `progress = false` silence it. It goes where couchlua's output goes (the `progress` kind:
-- stderr for the command, the host's writer when embedded): on a terminal redrawn in place
-- at most five times a second, elsewhere a line every 5 seconds, and a last line when the
-- job ends (`final`: what ended it, e.g. "done", "cancelled").
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  --- reporter(opts, call_user, line) -> report(final, ...): call_user(...) runs the user's
  -- function; line(final, ...) -> the text of the built-in line.
  return function(opts, call_user, line)
    local last = 0
    return function(final, ...)
      if type(opts.progress) == "function" then return call_user(...) end
      if opts.quiet or opts.progress == false then return end
      local tty = I.is_tty("progress")
      local now = couch.now()
      if not final and now - last < (tty and 0.2 or 5) then return end
      last = now
      local text = line(final, ...)
      if tty then
        I.write("progress", "\r\27[K" .. text .. (final and "\n" or ""))
      else
        I.write("progress", text .. "\n")
      end
    end
  end
end
