-- The Lua half of the `couch` module, attached by luaopen_couch: the server's methods
-- beyond the request primitive, databases, and the task helpers. Every network call here
-- goes through srv:_send (C), which yields inside a task and blocks outside one.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  require("couch.server")(couch)
  require("couch.database")(couch)
  require("couch.tasks")(couch)
  require("couch.replicator")(couch)
  require("couch.replicate")(couch)
  require("couch.sync")(couch)
  require("couch.compare")(couch)
  require("couch.backup")(couch)

  -- every server method, wherever it was defined, checks it was called with a colon
  local S = I.server_methods
  require("couch.methods").guard(couch, S, "srv", function(x)
    local mt = type(x) == "userdata" and getmetatable(x)
    return mt and mt.methods == S
  end)

  -- Called by the couchlua command (and couchlua_run_pending) when the main chunk ends:
  -- tasks spawned but never waited for still run to completion, as a user expects.
  function I.at_exit()
    couch.run()
  end
end
