-- Fetch ahead (issue 12): `concurrency` is the requests in flight on each side, and the
-- engine keeps the slow side busy. Behind tests/fakes/fault_proxy.js (in front of
-- tests/fakes/hostile.js), whose counters say what a user watching the servers would see:
-- against a target holding each _bulk_docs answer, the source is read while the target
-- writes (before: each worker read, then wrote, and the target idled meanwhile); the
-- _bulk_docs in flight reach `concurrency` and never exceed it, nor do the _bulk_get.
if not pcall(require, "luaunit") then package.path = package.path .. ";/usr/share/lua/5.4/?.lua" end
local here = debug.getinfo(1, "S").source:match("^@(.*)/tests/unit/[^/]*$") or "."
package.path = package.path .. ";" .. here .. "/tests/support/?.lua"
local lu = require "luaunit"
local couch = require "couch"
local hostile = require "hostile"
local node = require "node_process"

local H = hostile.start()
local port, pipe = node.start("fault_proxy.js", node.shell_quote(H.url), "the fault proxy")
local P = couch.connect("http://127.0.0.1:" .. port, { timeout = 30 })

local function faults(db, f) P:request("PUT", "/_faults/" .. couch.escape(db), { body = { faults = f } }) end

local counter = 0
local function fresh(label)
  counter = counter + 1
  return P:db(("fetch_ahead_%s_%d"):format(label, counter))
end

local function source(n)
  local db = fresh("src")
  db:create()
  local docs = {}
  for i = 1, n do docs[i] = { _id = ("doc%03d"):format(i), n = i, pad = ("x"):rep(200) } end
  db:bulk_docs(docs)
  return db
end

-- Copy n documents in batches of 10 into a target whose _bulk_docs answers are held
-- write_ms (and the source's _bulk_get read_ms); the proxy's counters of that copy.
local function copy(n, concurrency, write_ms, read_ms)
  local src, tgt = source(n), fresh("tgt")
  tgt:create()
  faults(tgt.name, "slow_bulk_docs=" .. write_ms)
  if read_ms then faults(src.name, "slow_bulk_get=" .. read_ms) end
  P:request("DELETE", "/_faults/stats")
  local stats = couch.replicate { source = src, target = tgt, quiet = true, batch_size = 10,
                                  concurrency = concurrency }
  local seen = P:request("GET", "/_faults/stats")
  print(("note: concurrency %d: _bulk_docs in flight at most %d, _bulk_get at most %d, %d _bulk_get while writing")
    :format(concurrency, seen.bulk_docs_in_flight_max, seen.bulk_get_in_flight_max, seen.bulk_get_while_writing))
  lu.assertEquals(stats.docs_written, n)
  lu.assertEquals(stats.doc_write_failures, 0)
  lu.assertEquals(H:count(tgt.name), n)
  return seen
end

TestFetchAhead = {}

-- One write at a time (concurrency 1), and the next batches are read meanwhile: of the 8
-- batches' reads, most are answered while a write is held (300 ms each; 7 here); before,
-- the lone worker read only between its writes (0 of them).
function TestFetchAhead:test_the_source_is_read_while_the_target_writes()
  local seen = copy(80, 1, 300)
  lu.assertEquals(seen.bulk_docs_in_flight_max, 1, "one write at a time")
  lu.assertEquals(seen.bulk_get_in_flight_max, 1, "one read at a time")
  lu.assertTrue(seen.bulk_get_while_writing >= 4,
    seen.bulk_get_while_writing .. " _bulk_get answered while a _bulk_docs was held")
end

-- Both sides slow (reads held 100 ms, writes 300 ms): concurrency 2 keeps 2 writes in
-- flight and never 3, and reads stay at 2 as well (the 4 workers do not read at once).
function TestFetchAhead:test_concurrency_bounds_each_side()
  local seen = copy(120, 2, 300, 100)
  lu.assertEquals(seen.bulk_docs_in_flight_max, 2, "_bulk_docs in flight")
  lu.assertTrue(seen.bulk_get_in_flight_max >= 1 and seen.bulk_get_in_flight_max <= 2,
    seen.bulk_get_in_flight_max .. " _bulk_get in flight")
  lu.assertTrue(seen.bulk_get_while_writing >= 1, "reads overlap the writes")
end

local rc = lu.LuaUnit.run()
pipe:close()
os.exit(rc)
