-- Shared by the server suites: the server under test (COUCHLUA_TEST_URL, set by
-- tests/support/with-server) and throw-away databases that are deleted afterwards.
local couch = require "couch"
local internal = require "couch.internal"

local M = {}

M.url = os.getenv("COUCHLUA_TEST_URL")
M.kind = os.getenv("COUCHLUA_TEST_SERVER") or "unknown" -- "pouchdb", "couchdb3fake", "couchdb3cluster" or "couchdb"
if not M.url then
  io.stderr:write("SKIPPED: COUCHLUA_TEST_URL is not set; run through tests/support/with-server\n")
  os.exit(77)
end

function M.connect(opts) return couch.connect(M.url, opts) end

local created = {}
local counter = 0
local run_id = internal.random_hex(4) -- distinct even for suites started in the same instant

--- A new, empty database with a unique name (deleted by M.cleanup()).
function M.fresh_db(srv, label)
  counter = counter + 1
  local name = ("couchlua_test_%s_%s_%d"):format(label or "db", run_id, counter)
  local db = srv:db(name)
  db:create()
  created[#created + 1] = db
  return db
end

function M.cleanup()
  for _, db in ipairs(created) do pcall(db.delete, db) end
  created = {}
end

M.is_pouchdb = M.kind == "pouchdb"

return M
