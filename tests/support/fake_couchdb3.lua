-- Starts and stops tests/fakes/fake_couchdb3.js, the FAKE Apache CouchDB 3 (the
-- _replicator states, /_scheduler/*, /_active_tasks and /_replicate as recorded from
-- CouchDB 3.4.3 in fixtures/couchdb-3.4.3, which pouchdb-server has none of, and the
-- database API with CouchDB's strictness; tests/support/with-server couchdb3fake runs the
-- server suites on it).
--
--   local fake = require "fake_couchdb3"
--   local f = fake.start{ time_scale = 0.01, max_jobs = nil }  -- options all optional
--   f.url        "http://127.0.0.1:<port>"
--   f.admin_url  "http://admin:<password>@127.0.0.1:<port>"
--   f.port, f.password, f.time_scale
--   f:endpoint(db)   "http://admin:<password>@127.0.0.1:<port>/<db>" (a replication endpoint)
--   f:freeze()  f:advance(seconds)  f:thaw()   drive the recorded timeline by hand
--   f:restart(node | "all")                      a cluster's node boots again
--   f:stop()
--
-- Options: time_scale (0.01: the recorded timeline runs 100 times faster), max_jobs,
-- interval (the scheduler tick in recorded ms, 60000), password ("pass"), verbose, nodes
-- (a cluster of that many nodes, n1@127.0.0.1 ...: see tests/fakes/couchdb3/cluster.js).
--
-- node's stdin is the write end of a pipe this process holds (io.popen(..., "w")), so the
-- fake exits when the test process does, however it ends. Its stdout (the "PORT <n>"
-- line) and stderr go to a temporary file.
local couch = require "couch"

local node = require "node_process"

local M = {}
local Fake = node.class()

--- fake.start([opts]) -> a running fake
function M.start(o)
  o = o or {}
  local args = { "--time-scale", tostring(o.time_scale or 0.01) }
  if o.max_jobs then args[#args + 1] = "--max-jobs"; args[#args + 1] = tostring(o.max_jobs) end
  if o.interval then args[#args + 1] = "--interval"; args[#args + 1] = tostring(o.interval) end
  if o.password then args[#args + 1] = "--password"; args[#args + 1] = o.password end
  if o.nodes then args[#args + 1] = "--nodes"; args[#args + 1] = tostring(o.nodes) end
  if o.verbose then args[#args + 1] = "--verbose" end
  for i, a in ipairs(args) do args[i] = node.shell_quote(a) end
  local password = o.password or "pass"
  local f = node.spawn(Fake, "fake_couchdb3.js", table.concat(args, " "), "the fake CouchDB 3",
    { password = password, time_scale = o.time_scale or 0.01 })
  f.admin_url = ("http://admin:%s@127.0.0.1:%s"):format(password, f.port)
  return f
end

function Fake:endpoint(db)
  return self.admin_url .. "/" .. db
end

function Fake:_control(body, what)
  local srv = self._srv or couch.connect(self.admin_url)
  self._srv = srv
  return (srv:request("POST", "/_fake/" .. (what or "clock"), { body = body }))
end

--- f:restart(node | "all"): the node(s) of a cluster boot again (jobs start T_BOOT later)
function Fake:restart(node) return self:_control({ restart = node or "all" }, "cluster") end

function Fake:freeze() return self:_control({ freeze = true }) end
function Fake:thaw() return self:_control({ freeze = false }) end
function Fake:advance(seconds) return self:_control({ advance = seconds }) end
Fake.__tostring = function(self) return "fake CouchDB 3 at " .. self.url end

return M
