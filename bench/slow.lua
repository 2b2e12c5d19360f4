-- bench/slow.lua: the native engine against a slow target. Each _bulk_docs answer is held
-- BENCH_SLOW_MS (300) milliseconds by tests/fakes/fault_proxy.js (fault slow_bulk_docs),
-- as a loaded CouchDB answered it (377 ms against 60 ms on a quiet one). The question:
-- do the reader and the workers keep the target busy, i.e. are `concurrency` writes in
-- flight all the time? With B batches of writes, each held D seconds, and concurrency C,
-- the writes alone take at least B * D / C seconds: the copy's time against that bound says
-- how much of the pipeline's time the slow side was kept busy, and the proxy counts the
-- _bulk_docs in flight (at most, and on average while any is) and how long any was (target
-- busy: the share of the copy's time). Prints; asserts nothing.
--
--   couchlua bench/slow.lua     (BENCH_URL or COUCH_URL: the server; or bench/run slow)
-- Environment: BENCH_SLOW_DOCS (10000), BENCH_SLOW_MS (300), BENCH_SLOW_CONCURRENCY
--   ("1,2,4,8"), BENCH_SLOW_BATCH (500).
local dir = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "bench"
package.path = dir .. "/?.lua;" .. dir .. "/../tests/support/?.lua;" .. package.path
local couch = require "couch"
local B = require "common"
local node = require "node_process"
local out = B.out

local N = tonumber(os.getenv("BENCH_SLOW_DOCS") or "10000")
local DELAY = tonumber(os.getenv("BENCH_SLOW_MS") or "300")
local BATCH = tonumber(os.getenv("BENCH_SLOW_BATCH") or "500")
local CONCURRENCY = {}
for c in (os.getenv("BENCH_SLOW_CONCURRENCY") or "1,2,4,8"):gmatch("%d+") do CONCURRENCY[#CONCURRENCY + 1] = tonumber(c) end

local url = B.url()
local srv = couch.connect(url)
local src = srv:create_db(B.dbname("slow_src"))
local created = { src }
PROXY_PIPE = nil -- bench/slow.lua holds the fault proxy's pipe here (the proxy exits when it closes)
local ok, err = pcall(function()
  local pad = ("x"):rep(1000)
  local docs = {}
  for i = 1, N do
    docs[#docs + 1] = { _id = ("d%07d"):format(i), pad = pad }
    if #docs == 1000 or i == N then src:bulk_docs(docs); docs = {} end
  end

  -- the proxy lives as long as its pipe: keep it until the end
  local port, pipe = node.start("fault_proxy.js", node.shell_quote(url), "the fault proxy")
  PROXY_PIPE = pipe
  local proxy = couch.connect((url:gsub("^(%a+://[^/]-):%d+", "%1:" .. port)))
  out("native replication, %d docs of ~1 KB, batch_size %d, each _bulk_docs answer held %d ms:", N, BATCH, DELAY)
  out("  %-12s %10s %10s %22s %22s %14s", "concurrency", "seconds", "docs/s", "writes-alone bound", "_bulk_docs in flight",
      "target busy")
  for _, c in ipairs(CONCURRENCY) do
    local target = proxy:db(B.dbname("slow_tgt"))
    created[#created + 1] = srv:db(target.name)
    proxy:request("PUT", "/_faults/" .. couch.escape(target.name), { body = { faults = "slow_bulk_docs=" .. DELAY } })
    proxy:request("DELETE", "/_faults/stats")
    local t0 = couch.now()
    local st = couch.replicate { source = src, target = target, create_target = true, quiet = true,
                                 batch_size = BATCH, concurrency = c }
    local dt = couch.now() - t0
    local stats = proxy:request("GET", "/_faults/stats")
    local bound = math.ceil(st.docs_written / BATCH) * DELAY / 1000 / c
    out("  %-12d %10.2f %10d %14.2f s (%3d%%) %8d max %5.2f avg %13d%%", c, dt, math.floor(st.docs_written / dt), bound,
        math.floor(100 * bound / dt + 0.5), stats.bulk_docs_in_flight_max, stats.bulk_docs_in_flight_avg,
        math.floor(100 * stats.bulk_docs_busy_ms / 1000 / dt + 0.5))
    assert(st.docs_written == N, "the copy is incomplete: " .. st.docs_written)
  end
  out("  (100%% of the bound: the slow side never waited for the rest of the pipeline; target busy: the share of")
  out("   the copy's time with a _bulk_docs in flight, each held %d ms plus the server's own time)", DELAY)
end)
for _, db in ipairs(created) do pcall(db.delete, db) end
if not ok then error(err, 0) end
