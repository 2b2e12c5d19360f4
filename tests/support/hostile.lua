-- Starts and drives tests/fakes/hostile.js, the HOSTILE CouchDB (a tiny in-memory CouchDB
-- that misbehaves per database on demand; see the top of the .js for the modes).
--
--   local hostile = require "hostile"
--   local h = hostile.start()
--   h.url                    "http://127.0.0.1:<port>"
--   h:mode("db", "bulk_get_short")     ("normal" to behave again; "_root" for GET /)
--   h:mode("db", "throttle:4,huge_header")   several at once; some take an argument
--   h:docs("db")             { id = {leaf revs} } as stored: the truth about a target
--   h:count("db")            how many documents the database holds
--   h:log()                  { {method, path, db}, ... }
--   h:stop()
local couch = require "couch"
local node = require "node_process"

local M = {}
local Hostile = node.class()

function M.start() return node.spawn(Hostile, "hostile.js", "", "the hostile CouchDB") end

function Hostile:mode(db, mode)
  return (self.control:request("PUT", "/_hostile/mode/" .. couch.escape(db), { body = { mode = mode } }))
end

function Hostile:docs(db) return (self.control:request("GET", "/_hostile/db/" .. couch.escape(db))).docs end

function Hostile:count(db)
  local n = 0
  for _ in pairs(self:docs(db)) do n = n + 1 end
  return n
end

function Hostile:log() return (self.control:request("GET", "/_hostile/log")).requests end
function Hostile:reset() return (self.control:request("POST", "/_hostile/reset", { body = {} })) end

return M
