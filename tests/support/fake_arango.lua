-- Starts and drives tests/fakes/fake_arango.js, the FAKE ArangoDB replication endpoint
-- (no ArangoDB can be installed where the tests run).
--
--   local fake_arango = require "fake_arango"
--   local f = fake_arango.start{ generate = { _system = { products = 100 } } }  -- config optional
--   f.url, f.port                  -- "http://127.0.0.1:<port>"
--   f.endpoint                     -- "tcp://127.0.0.1:<port>": this fake as a replication leader
--   f:reset()  f:config{ ... }  f:log()  f:requests([path [, method]])  f:state()
--   f:insert(db, collection, docs)  f:remove(db, collection, key)  f:create_collection(db, name)
--   f:expire_tokens()  f:advance_time(seconds)  f:prune_wal(before_tick)
--   f:stop()
--
-- node's stdin is the read end of a pipe this process holds open (io.popen(..., "w")), so
-- the fake exits when the test process does, however it ends. Its stdout (the "PORT <n>"
-- line) goes to a temporary file. Control and data calls go through couch itself, as the
-- fake's user "root" (password "secret" unless the config says otherwise).
local couch = require "couch"
local json = couch.json

local node = require "node_process"

local M = {}
local Fake = node.class()

function Fake:__tostring() return ("fake_arango <%s>"):format(self.url) end

--- fake_arango.start([config]) -> a running fake
function M.start(config)
  local self = node.spawn(Fake, "fake_arango.js", config and node.shell_quote(json.encode(config)) or "",
    "the fake ArangoDB")
  self.endpoint = "tcp://127.0.0.1:" .. self.port
  local users = config and config.users or { root = "secret" }
  local user = next(users)
  self.data = couch.connect(self.url, { user = user, password = users[user], retries = 0, timeout = 10 })
  return self
end

function Fake:reset() return self:call("POST", "/_fake/reset", json.object {}) end
function Fake:config(c) return self:call("POST", "/_fake/config", c) end
function Fake:log() return self:call("GET", "/_fake/log") end
function Fake:state() return self:call("GET", "/_fake/state") end
function Fake:expire_tokens() return self:call("POST", "/_fake/expire_tokens", json.object {}) end
function Fake:advance_time(seconds) return self:call("POST", "/_fake/advance_time", { seconds = seconds }) end
function Fake:prune_wal(before) return self:call("POST", "/_fake/prune_wal", { before = tostring(before) }) end

local function db_path(db) return "/_db/" .. couch.escape(db or "_system") end

--- Data through the fake's ArangoDB document API (each write advances the tick).
function Fake:create_collection(db, name, type_)
  return (self.data:request("POST", db_path(db) .. "/_api/collection", { body = { name = name, type = type_ or 2 } }))
end

function Fake:create_database(name)
  return (self.data:request("POST", "/_api/database", { body = { name = name } }))
end

function Fake:insert(db, collection, docs)
  if docs[1] == nil then docs = { docs } end
  return (self.data:request("POST", db_path(db) .. "/_api/document/" .. couch.escape(collection),
    { body = json.array(docs) }))
end

function Fake:remove(db, collection, key)
  return (self.data:request("DELETE", db_path(db) .. "/_api/document/" .. couch.escape(collection) .. "/"
    .. couch.escape(key)))
end

return M
