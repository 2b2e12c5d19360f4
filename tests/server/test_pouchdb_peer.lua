-- Interop with PouchDB 9's client-side replicator (the peer users would pick instead,
-- pinned in tests/support/pouchdb-peer): what couchlua's engine writes PouchDB reads back
-- whole, what PouchDB writes couchlua reads whole, and both can take turns on one pair of
-- databases, each with its own checkpoints, without copying twice or losing anything.
local lu = require "luaunit"
local couch = require "couch"
local ts = require "testserver"
local np = require "node_process"

local srv = ts.connect()
local ROOT = np.source_dir()
local PEER = ROOT .. "/.deps/pouchdb-peer/node_modules/pouchdb"
local DRIVER = ROOT .. "/tests/support/pouchdb-peer/replicate.js"

local function peer_ready()
  if os.execute("command -v " .. (os.getenv("NODE") or "node") .. " >/dev/null 2>&1") ~= true then
    lu.skip("node is not installed: PouchDB interop not tested")
  end
  local f = io.open(PEER .. "/package.json")
  if not f then error("PouchDB is not installed in .deps/pouchdb-peer: run scripts/setup") end
  f:close()
end

local function db_url(db) return (ts.url:gsub("/+$", "")) .. "/" .. couch.escape(db.name) end

-- PouchDB.replicate(source, target) (or PouchDB.sync with sync = true) through the
-- driver; returns its JSON result, fails the test with its answer otherwise.
local function pouchdb_replicate(source, target, sync)
  local cmd = ("COUCHLUA_POUCHDB_PEER=%s %s %s %s %s %s 2>&1"):format(np.shell_quote(PEER),
    os.getenv("NODE") or "node", np.shell_quote(DRIVER), sync and "--sync" or "",
    np.shell_quote(db_url(source)), np.shell_quote(db_url(target)))
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  local ok, res = pcall(couch.json.decode, out:match("[^\n]*\n?$") or "")
  lu.assertTrue(ok and res.ok, "PouchDB.replicate failed: " .. couch.redact(out))
  return res
end

-- a database with what replication must carry: edits, a conflict, a deletion, an
-- attachment, unicode ids and a design document
local function fill(db, n)
  local docs = {}
  for i = 1, n do docs[i] = { _id = ("doc%04d"):format(i), n = i, s = "é😀" } end
  db:bulk_docs(docs)
  local d = db:get("doc0001"); d.edited = true; db:put(d)
  db:bulk_docs({ { _id = "conflicted", _rev = "1-aaa", v = 1 }, { _id = "conflicted", _rev = "1-bbb", v = 2 } },
               { new_edits = false })
  local gone = db:put { _id = "gone" }
  db:delete_doc("gone", gone.rev)
  local att = db:put { _id = "with-attachment" }
  db:put_attachment("with-attachment", "blob.bin", "\0\1\2binary\255", "application/octet-stream", att.rev)
  db:put { _id = "données/日本語", v = true }
  db:put { _id = "_design/app", views = { all = { map = "function(doc){emit(doc._id)}" } } }
end

local function assert_same(a, b)
  local report = couch.compare(a, b)
  lu.assertTrue(report.equal, tostring(report))
  lu.assertEquals(b:get_attachment("with-attachment", "blob.bin"), "\0\1\2binary\255")
  lu.assertEquals(#b:get("conflicted", { conflicts = true })._conflicts, 1)
  local ok, err = pcall(b.get, b, "gone")
  lu.assertFalse(ok)
  lu.assertEquals(err.status, 404)
end

TestPouchdbPeer = {}
function TestPouchdbPeer:tearDown() ts.cleanup() end

function TestPouchdbPeer:test_pouchdb_reads_back_what_couchlua_wrote()
  peer_ready()
  local src, mid, dst = ts.fresh_db(srv, "peer_a"), ts.fresh_db(srv, "peer_b"), ts.fresh_db(srv, "peer_c")
  fill(src, 120)
  local stats = couch.replicate { source = src, target = mid, quiet = true }
  lu.assertEquals(stats.doc_write_failures, 0)
  local res = pouchdb_replicate(mid, dst)
  lu.assertEquals(res.doc_write_failures, 0)
  assert_same(src, dst)
end

function TestPouchdbPeer:test_couchlua_reads_back_what_pouchdb_wrote()
  peer_ready()
  local src, mid, dst = ts.fresh_db(srv, "peer_a"), ts.fresh_db(srv, "peer_b"), ts.fresh_db(srv, "peer_c")
  fill(src, 120)
  pouchdb_replicate(src, mid)
  assert_same(src, mid)
  local stats = couch.replicate { source = mid, target = dst, quiet = true }
  lu.assertEquals(stats.doc_write_failures, 0)
  assert_same(src, dst)
end

-- Both replicators on the same pair, taking turns: each keeps its own checkpoint, and
-- couchlua, starting where PouchDB stopped, writes only what the target lacks.
function TestPouchdbPeer:test_taking_turns_on_one_pair_copies_each_revision_once()
  peer_ready()
  local src, dst = ts.fresh_db(srv, "peer_a"), ts.fresh_db(srv, "peer_b")
  fill(src, 60)
  pouchdb_replicate(src, dst)
  local docs = {}
  for i = 1, 25 do docs[i] = { _id = ("new%03d"):format(i) } end
  src:bulk_docs(docs)
  local stats = couch.replicate { source = src, target = dst, quiet = true }
  lu.assertEquals(stats.docs_written, 25)
  assert_same(src, dst)
  local d = src:get("doc0002"); d.again = true; src:put(d)
  local res = pouchdb_replicate(src, dst)
  lu.assertEquals(res.docs_written, 1)
  stats = couch.replicate { source = src, target = dst, quiet = true }
  lu.assertEquals(stats.docs_written, 0)
  assert_same(src, dst)
end

-- PouchDB.sync between two databases written on both sides, then couchlua copies the
-- result on: the converged trees are the same everywhere.
function TestPouchdbPeer:test_pouchdb_sync_result_copies_exactly()
  peer_ready()
  local a, b, c = ts.fresh_db(srv, "peer_a"), ts.fresh_db(srv, "peer_b"), ts.fresh_db(srv, "peer_c")
  fill(a, 30)
  b:bulk_docs { { _id = "from-b-1" }, { _id = "from-b-2" } }
  b:bulk_docs({ { _id = "conflicted", _rev = "1-ccc", v = 3 } }, { new_edits = false })
  local res = pouchdb_replicate(a, b, true)
  lu.assertEquals(res.push.doc_write_failures + res.pull.doc_write_failures, 0)
  lu.assertTrue(couch.compare(a, b).equal)
  couch.replicate { source = b, target = c, quiet = true }
  lu.assertTrue(couch.compare(a, c).equal)
  lu.assertEquals(#c:get("conflicted", { conflicts = true })._conflicts, 2)
end

os.exit(lu.LuaUnit.run())
