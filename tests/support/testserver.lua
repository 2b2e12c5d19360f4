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

--- seed(db, n [, first [, label]]): documents label000001.. (label "doc") with n = their
-- number, written 1000 at a time.
function M.seed(db, n, first, label)
  first = first or 1
  local docs = {}
  for i = first, first + n - 1 do docs[#docs + 1] = { _id = ("%s%06d"):format(label or "doc", i), n = i } end
  for i = 1, #docs, 1000 do db:bulk_docs({ table.unpack(docs, i, math.min(i + 999, #docs)) }) end
end

--- wait_for(pred, what): wait (yielding in a task) until pred() holds; the deadline only
-- makes a broken job fail the test instead of hanging it.
function M.wait_for(pred, what)
  local deadline = couch.now() + 60
  while not pred() do
    if couch.now() > deadline then require("luaunit").fail("never happened: " .. what) end
    couch.sleep(0.05)
  end
end

return M
