-- bench/replicate.lua: docs/s of couchlua's native replication (couch.replicate) next to
-- what the server itself can do with the same data, in one run:
--   * the ceiling: the target's raw _bulk_docs ingest rate (batches of 500, one client,
--     new_edits=false, the source's own documents with their _revisions) and the source's
--     raw read rate (_changes style=all_docs + _bulk_get of every document, nothing
--     written); with both on one server a copy costs both, so the combined ceiling is
--     1 / (1/ingest + 1/read);
--   * couch.replicate at a few batch_size / concurrency settings, each in a child
--     couchlua process so its peak RSS (VmHWM) is its own, with the time each protocol
--     step took, the requests sent and the server's CPU while it ran;
--   * the server's own replicator (/_replicate with full http:// URLs) on the same data;
--   * PouchDB 9's client-side PouchDB.replicate between the same two server databases
--     (batch_size 500, batches_limit 4: the tool users would pick instead; bench/peer.lua,
--     pinned in tests/support/pouchdb-peer), with its own peak RSS and CPU;
--   * couch.compare(source, copy) after every copy: a benchmark of a broken copy is
--     worthless, so an unequal copy is reported and makes the run fail.
-- The issue's goals are printed next to the figures; nothing about timings is asserted.
--
--   couchlua bench/replicate.lua        (BENCH_URL or COUCH_URL: the server; or bench/run replicate)
-- Environment: BENCH_BIG=1 adds a 100,000-document round (pouchdb-server grows to ~1 GB;
--   kept out of CI), BENCH_REPL_DOCS (10000: the first size), BENCH_REPL_CONFIGS
--   ("500x4,250x4,1000x4,500x2,500x8": batch_size x concurrency; the goals use the first;
--   only the first runs at 100,000), BENCH_REPL_ROUNDS (2 at the first size: best of, in
--   alternating order; 1 at 100,000), BENCH_ENCODING (an Accept-Encoding header for our
--   requests, e.g. identity; default: libcurl's, so the server gzips), BENCH_SERVER_PID (pouchdb-server's pid, set by bench/run: its
--   CPU figures). Every database it creates is deleted at the end, also on failure.
local dir = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "bench"
package.path = dir .. "/?.lua;" .. package.path
local couch = require "couch"
local internal = require "couch.internal"
local B = require "common"
local peer = require "peer"
local json = couch.json
local out = B.out

-- BENCH_ENCODING: an Accept-Encoding header for every request of ours (e.g. "identity");
-- by default libcurl offers gzip/deflate/br and pouchdb-server gzips every answer over 1 KB
local ENCODING = os.getenv("BENCH_ENCODING")
if ENCODING == "" then ENCODING = nil end
local CONN_OPTS = { headers = ENCODING and { ["Accept-Encoding"] = ENCODING } or nil }

-- The server's CPU seconds so far, all threads and its main thread (node's JavaScript
-- runs there): {all =, main =}, or nil without BENCH_SERVER_PID.
local SERVER_PID = os.getenv("BENCH_SERVER_PID")
local function server_cpu()
  if not SERVER_PID then return nil end
  local _, _, all = B.cpu_seconds(SERVER_PID)
  local _, _, main = B.cpu_seconds(SERVER_PID .. "/task/" .. SERVER_PID)
  return all and { all = all, main = main }
end
local function cpu_since(c0)
  local c1 = server_cpu()
  if not (c0 and c1) then return nil end
  return { all = c1.all - c0.all, main = c0.main and c1.main and (c1.main - c0.main) }
end

-------------------------------------------------------------------------------------------
-- Child mode: one native replication in a process of its own.
--   couchlua bench/replicate.lua --child SOURCE TARGET BATCH_SIZE CONCURRENCY
-- Prints one JSON line: the stats, wall and CPU seconds, VmHWM, requests sent, and per
-- request kind (method + path without the database) the count, bytes and seconds spent
-- waiting for answers (summed over concurrent requests, so the sum can exceed the wall).
-------------------------------------------------------------------------------------------
if arg[1] == "--child" then
  local src_name, tgt_name = arg[2], arg[3]
  local batch_size, concurrency = tonumber(arg[4]), tonumber(arg[5])
  local srv = couch.connect(B.url(), CONN_OPTS)
  local phases = {}
  -- every request's debug line ("GET <url> 200 12 ms 3456 bytes (attempt 1, ...)"): the
  -- engine sends from C (src/replicate/call.c), so the log, not a Lua wrapper, sees them all
  couch.log { level = "debug", writer = function(_, line)
    local method, url, ms, bytes = line:match("debug: (%u+) (%S+) .- (%d+) ms (%d+) bytes")
    if not method then return end
    local path = url:gsub("^%a+://[^/]+", ""):gsub("%?.*$", "")
    local sub = path:gsub("^/[^/]+", "", 1):gsub("^/_local/.*$", "/_local/<id>")
    local key = method .. " " .. (sub == "" and "/<db>" or sub)
    local p = phases[key]
    if not p then p = { n = 0, secs = 0, bytes_in = 0, bytes_out = 0 }; phases[key] = p end
    local t1 = couch.now()
    local t0 = t1 - tonumber(ms) / 1000
    p.n, p.secs = p.n + 1, p.secs + (t1 - t0)
    p.first = p.first or t0
    p.last = t1
    p.bytes_in = p.bytes_in + tonumber(bytes)
  end }
  -- the engine's batch queue: time its reader spends waiting for room (the workers are
  -- behind) and its workers spend waiting for a batch (the reader is behind), summed
  local queue_wait = { push = 0, pop = 0 }
  local make_queue = couch.queue
  couch.queue = function(...)
    local q = make_queue(...)
    local push, pop = q.push, q.pop
    function q.push(self, ...)
      local t = couch.now()
      push(self, ...)
      queue_wait.push = queue_wait.push + couch.now() - t
    end
    function q.pop(self, ...)
      local t = couch.now()
      local v, why = pop(self, ...)
      if v ~= nil then queue_wait.pop = queue_wait.pop + couch.now() - t end
      return v, why
    end
    return q
  end
  local _, _, cpu0 = B.cpu_seconds()
  local scpu0 = server_cpu()
  local t0 = couch.now()
  local ok, stats = pcall(couch.replicate, {
    source = srv:db(src_name), target = srv:db(tgt_name), create_target = true, quiet = true,
    batch_size = batch_size, concurrency = concurrency,
  })
  local secs = couch.now() - t0
  for _, p in pairs(phases) do p.first, p.last = p.first - t0, p.last - t0 end
  local _, _, cpu1 = B.cpu_seconds()
  local res = { ok = ok, secs = secs, cpu = cpu1 - cpu0, server_cpu = cpu_since(scpu0), hwm_kb = B.status_kb("VmHWM"),
                requests = srv:stats().requests, phases = phases, queue_wait = queue_wait }
  if ok then
    res.stats = {}
    for _, k in ipairs { "docs_read", "docs_written", "doc_write_failures", "missing_revisions_found",
                         "revisions_checked" } do res.stats[k] = stats[k] end
  else
    res.error = tostring(stats)
  end
  io.stdout:write(json.encode(res), "\n")
  os.exit(ok and 0 or 1)
end

-------------------------------------------------------------------------------------------
-- The benchmark
-------------------------------------------------------------------------------------------
local url = B.url()
local srv = couch.connect(url, CONN_OPTS)
local COUCHLUA = os.getenv("BENCH_COUCHLUA") or arg[-1] or "build/couchlua"
local BATCH = 500 -- the ceiling's batches

local sizes = { tonumber(os.getenv("BENCH_REPL_DOCS")) or 10000 }
if os.getenv("BENCH_BIG") == "1" then sizes[#sizes + 1] = 100000 end

local configs = {}
for b, c in (os.getenv("BENCH_REPL_CONFIGS") or "500x4,250x4,1000x4,500x2,500x8"):gmatch("(%d+)x(%d+)") do
  configs[#configs + 1] = { batch_size = tonumber(b), concurrency = tonumber(c) }
end
assert(#configs > 0, "BENCH_REPL_CONFIGS: expected e.g. 500x4,250x4")
local ROUNDS = math.max(1, tonumber(os.getenv("BENCH_REPL_ROUNDS")) or 2)
local CLIENTS = 4 -- the concurrent variant of the ceiling

local created = {} -- every database we made (or asked a child / the server to make)
local function newdb(prefix)
  local name = ("%s_%d"):format(B.dbname(prefix), #created + 1)
  created[#created + 1] = name
  return srv:db(name)
end

local function server_rss() return SERVER_PID and B.status_kb("VmRSS", SERVER_PID) end

-- Wall seconds of fn(), the server's CPU seconds meanwhile, fn's result.
local function timed(fn)
  local c0, t0 = server_cpu(), couch.now()
  local r = fn()
  local secs = couch.now() - t0
  return secs, cpu_since(c0), r
end

local function pct_cpu(cpu, secs)
  if not cpu then return "n/a" end
  return ("%.0f%% (JS thread %s)"):format(100 * cpu.all / secs, cpu.main and ("%.0f%%"):format(100 * cpu.main / secs) or "n/a")
end
local function fmt_rate(r) return ("%s docs/s"):format(B.int(r)) end

local failures = 0
-- couch.compare(src, tgt): prints the verdict, counts an unequal copy; true when equal.
local function verify(indent, label, src, tgt)
  local rep = couch.compare(src, tgt)
  if rep.equal then
    out("%scompare(source, %s): EQUAL (%s revisions on each side)", indent, label, B.int(rep.checked_a))
  else
    failures = failures + 1
    out("%scompare(source, %s): NOT EQUAL: %s", indent, label, tostring(rep):gsub("\n", "\n" .. indent .. "  "))
  end
  return rep.equal
end

--- The source: n documents of ~1 KB (deterministic, every one different).
local POOL
do
  local t, x = {}, 12345
  for i = 1, 8192 do
    x = (x * 1103515245 + 12345) % 2147483648
    t[i] = ("%08x"):format(x)
  end
  POOL = table.concat(t) -- 64 KiB of hex
end
local function make_doc(i)
  local off = (i * 7919) % (#POOL - 800) + 1
  return {
    _id = ("doc%08d"):format(i), type = "bench", n = i, group = i % 97,
    created = ("2024-%02d-%02dT%02d:%02d:00Z"):format(i % 12 + 1, i % 28 + 1, i % 24, i % 60),
    name = "document number " .. i, tags = { "t" .. (i % 7), "t" .. (i % 13), "bench" },
    address = { street = ("%d Main Street"):format(i % 1000), city = "Springfield", zip = ("%05d"):format(i % 100000) },
    body = POOL:sub(off, off + 799),
  }
end

local function fill(db, n)
  for first = 1, n, BATCH do
    local docs = {}
    for i = first, math.min(first + BATCH - 1, n) do docs[#docs + 1] = make_doc(i) end
    for _, r in ipairs(db:bulk_docs(docs)) do
      if r.error then error(("filling the source: %s %s: %s"):format(r.id, r.error, tostring(r.reason)), 0) end
    end
  end
end

--- Raw read: _changes + _bulk_get of every document, asked for as the replicator asks
-- (style=all_docs; revs, latest, attachments). Nothing is decoded but the _changes pages.
local function changes_page(db, since)
  local ch = db:changes { style = "all_docs", since = since, limit = BATCH }
  local reqs = {}
  for _, c in ipairs(ch.results) do
    for _, r in ipairs(c.changes) do reqs[#reqs + 1] = { id = c.id, rev = r.rev } end
  end
  local last = #ch.results > 0 and ch.results[#ch.results].seq or nil
  return reqs, last, #ch.results < BATCH
end

local function bulk_get(db, reqs)
  return db:request("POST", "/_bulk_get", { query = { revs = true, latest = true, attachments = true },
    body = { docs = json.array(reqs) }, raw = true, idempotent = true })
end

-- One client, one request at a time. keep: a list that gets the _bulk_get bodies.
local read_split = { changes = 0, bulk_get = 0, batches = 0 } -- the last read_seq's time per kind
local function read_seq(db, keep)
  local since, n = 0, 0
  read_split = { changes = 0, bulk_get = 0, batches = 0 }
  while true do
    local t0 = couch.now()
    local reqs, last, at_end = changes_page(db, since)
    local t1 = couch.now()
    if #reqs == 0 then break end
    local body = bulk_get(db, reqs)
    read_split.changes = read_split.changes + (t1 - t0)
    read_split.bulk_get = read_split.bulk_get + (couch.now() - t1)
    read_split.batches = read_split.batches + 1
    n = n + #reqs
    if keep then keep[#keep + 1] = body end
    if at_end then break end
    since = last
  end
  return n
end

-- A reader task pages through _changes while `clients` tasks run the _bulk_gets.
local function read_conc(db, clients)
  local q, n = couch.queue(clients), 0
  local tasks = { couch.spawn(function()
    local ok, err = pcall(function()
      local since = 0
      while true do
        local reqs, last, at_end = changes_page(db, since)
        if #reqs == 0 then break end
        q:push(reqs)
        if at_end then break end
        since = last
      end
    end)
    q:close()
    if not ok then error(err, 0) end
  end) }
  local failed -- a reader blocked on a full queue must not wait for workers that died
  for i = 1, clients do
    tasks[i + 1] = couch.spawn(function()
      local ok, err = pcall(function()
        for reqs in function() return q:pop() end do
          bulk_get(db, reqs)
          n = n + #reqs
        end
      end)
      if not ok then failed = failed or err; q:close() end
    end)
  end
  local ok, err = pcall(couch.all, tasks)
  if failed then error(failed, 0) end
  if not ok then error(err, 0) end
  return n
end

--- Raw ingest: the pre-built _bulk_docs bodies, by `clients` tasks (1: one after the other).
local function ingest(db, bodies, clients)
  local next_body = 0
  local function worker()
    while next_body < #bodies do
      next_body = next_body + 1
      local res = db:request("POST", "/_bulk_docs", { body = bodies[next_body], raw = true, idempotent = true })
      if res:find('"error"', 1, true) then error("raw ingest: the target refused documents: " .. res:sub(1, 300), 0) end
    end
  end
  if clients == 1 then return worker() end
  local tasks = {}
  for i = 1, clients do tasks[i] = couch.spawn(worker) end
  couch.all(tasks)
end

-- _bulk_get answers -> _bulk_docs bodies (new_edits=false) of the same documents, byte for byte.
local function bulk_docs_bodies(get_bodies)
  local bodies, ndocs, docbytes = {}, 0, 0
  for _, body in ipairs(get_bodies) do
    local parts = {}
    for _, d in ipairs(internal.slice_docs(body)) do
      if d.json then
        parts[#parts + 1] = d.json
        docbytes = docbytes + #d.json
      end
    end
    ndocs = ndocs + #parts
    bodies[#bodies + 1] = '{"new_edits":false,"docs":[' .. table.concat(parts, ",") .. "]}"
  end
  return bodies, ndocs, docbytes
end

--- One native replication in a child process; its JSON line, decoded.
local function native(src, tgt, cfg)
  local cmd = ("%q %q --child %q %q %d %d"):format(COUCHLUA, arg[0], src.name, tgt.name, cfg.batch_size, cfg.concurrency)
  local p = assert(io.popen(cmd, "r"))
  local text = p:read("a")
  local _, how, code = p:close()
  local okj, res = pcall(json.decode, text:match("{.*}") or text)
  if not okj or type(res) ~= "table" then
    error(("the child replication (%s) failed, %s %s: %s"):format(cmd, tostring(how), tostring(code), text:sub(1, 300)), 0)
  end
  if not res.ok then error("the child replication failed: " .. tostring(res.error), 0) end
  return res
end

local function phase_line(res)
  local keys = {}
  for k in pairs(res.phases) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return res.phases[a].secs > res.phases[b].secs end)
  local parts = {}
  for _, k in ipairs(keys) do
    local p = res.phases[k]
    if p.secs >= 0.01 then parts[#parts + 1] = ("%s %d x %.0f ms"):format(k, p.n, 1000 * p.secs / p.n) end
  end
  return table.concat(parts, ", ")
end

local function sizes_text()
  local t = {}
  for i, n in ipairs(sizes) do t[i] = B.int(n) end
  return table.concat(t, " and ")
end

out("replicate: native couch.replicate vs the server's ceiling and its own replicator, server %s", B.redact(url))
out("  %s docs of ~1 KB%s; native settings (batch_size x concurrency): %s; best of %d rounds at %s docs",
  sizes_text(), os.getenv("BENCH_BIG") == "1" and "" or " (BENCH_BIG=1 adds 100,000)",
  os.getenv("BENCH_REPL_CONFIGS") or "500x4,250x4,1000x4,500x2,500x8", ROUNDS, B.int(sizes[1]))
out("  Accept-Encoding of our requests: %s", ENCODING or "libcurl's default (all it decodes: the server gzips; BENCH_ENCODING=identity to compare)")
out("  srv CPU: the server's user+system CPU over the wall time, all threads (100%% = one core busy), and its")
out("  main thread's, where node runs all the JavaScript: near 100%% there, the server is the bottleneck")

local results = {} -- one per size

local function bench_size(n, sweep)
  local R = { n = n }
  results[#results + 1] = R
  local rounds = sweep and ROUNDS or 1
  out("")
  out("== %s documents ==", B.int(n))
  local src = newdb("rsrc")
  src:create()
  local fill_secs, fill_cpu = timed(function() fill(src, n) end)
  out("  source filled (_bulk_docs with new edits, batches of %d): %s, %.2fs, srv CPU %s", BATCH,
    fmt_rate(n / fill_secs), fill_secs, pct_cpu(fill_cpu, fill_secs))

  -- a first read pass warms the server up; its answers become the ingest's bodies
  local got = {}
  read_seq(src, got)
  local bodies, ndocs, docbytes = bulk_docs_bodies(got)
  got = nil -- luacheck: ignore
  if ndocs ~= n then error(("the source read back %d documents, expected %d"):format(ndocs, n), 0) end
  out("  a document as replicated (with _rev and _revisions): %d B on average", docbytes // ndocs)

  -- the ceiling (raw read and raw ingest, one client and CLIENTS at once), each native
  -- setting (a child process each) and the server's replicator, in alternating order round
  -- by round so that the server's drift (JIT, heap growth) favours none of them
  local items = {
    { label = "ceiling, 1 client", clients = 1, runs = {} },
    { label = ("ceiling, %d clients"):format(CLIENTS), clients = CLIENTS, runs = {} },
  }
  for i, cfg in ipairs(configs) do
    if i == 1 or sweep then
      local default = i == 1 and cfg.batch_size == 500 and cfg.concurrency == 4
      items[#items + 1] = { label = ("native %d x %d%s"):format(cfg.batch_size, cfg.concurrency, default and " (default)" or ""),
                            cfg = cfg, runs = {} }
    end
  end
  local peer_missing = peer.missing()
  if peer_missing then
    out("  PouchDB 9 not run: %s", peer_missing)
  else
    items[#items + 1] = { label = "PouchDB 9 replicate", peer = true, runs = {} }
  end
  items[#items + 1] = { label = "server's /_replicate", server = true, runs = {} }

  local function run_ceiling(it)
    local rsecs, rcpu, rn = timed(function() return it.clients == 1 and read_seq(src) or read_conc(src, it.clients) end)
    local ing = newdb("ringest")
    ing:create()
    local isecs, icpu = timed(function() ingest(ing, bodies, it.clients) end)
    local run = { read = rn / rsecs, ingest = n / isecs }
    run.rate = 1 / (1 / run.read + 1 / run.ingest)
    out("    round %d  %-26s read %s %.2fs srv CPU %s; ingest %s %.2fs srv CPU %s; combined %s", it.round, it.label,
      fmt_rate(run.read), rsecs, pct_cpu(rcpu, rsecs), fmt_rate(run.ingest), isecs, pct_cpu(icpu, isecs), fmt_rate(run.rate))
    if it.clients == 1 then
      out("              read per batch of %d: _changes %.0f ms + _bulk_get %.0f ms; ingest: _bulk_docs %.0f ms", BATCH,
        1000 * read_split.changes / read_split.batches, 1000 * read_split.bulk_get / read_split.batches, 1000 * isecs / #bodies)
    end
    verify("              ", "raw ingest", src, ing)
    ing:delete()
    return run
  end

  local function run_copy(it)
    local tgt = newdb(it.server and "rserver" or it.peer and "rpouchdb" or "rnative")
    local run
    if it.peer then
      tgt:create()
      local res, why
      local secs, cpu = timed(function()
        res, why = peer.replicate(url .. "/" .. src.name, url .. "/" .. tgt.name, { batch_size = 500, batches_limit = 4 })
      end)
      if not res then error("PouchDB.replicate failed: " .. tostring(why), 0) end
      run = { rate = res.written / secs, secs = secs, server_cpu = cpu, cpu = res.cpu_secs, written = res.written,
              failed = res.failed, hwm = res.max_rss_kb }
    elseif it.server then
      local secs, cpu, res = timed(function()
        return srv:replicate { source = url .. "/" .. src.name, target = url .. "/" .. tgt.name, create_target = true }
      end)
      local written = type(res) == "table" and tonumber(res.docs_written) or n
      run = { rate = written / secs, secs = secs, server_cpu = cpu, written = written }
    else
      local res = native(src, tgt, it.cfg)
      run = { rate = res.stats.docs_written / res.secs, secs = res.secs, server_cpu = res.server_cpu, cpu = res.cpu,
              written = res.stats.docs_written, failed = res.stats.doc_write_failures, requests = res.requests,
              hwm = res.hwm_kb, phases = phase_line(res), queue_wait = res.queue_wait }
      local w = res.phases["POST /_bulk_docs"]
      if w then run.fill, run.drain = w.first, res.secs - w.last end
    end
    out("    round %d  %-26s %14s %6.2fs  srv CPU %s%s", it.round, it.label, fmt_rate(run.rate), run.secs,
      pct_cpu(run.server_cpu, run.secs),
      run.cpu and ("  client CPU %.0f%%, %s requests, peak RSS %s"):format(100 * run.cpu / run.secs,
        run.requests and tostring(run.requests) or "n/a", B.mb(run.hwm)) or "")
    if run.phases then
      out("              waiting per request kind (count x mean): %s", run.phases)
      out("              batch queue: the reader waited %.2fs for room (workers behind), %d workers %.2fs for batches (reader behind);",
        run.queue_wait.push, it.cfg.concurrency, run.queue_wait.pop)
      if run.fill then
        out("              first _bulk_docs sent at %.2fs, last answered %.2fs before the end", run.fill, run.drain)
      end
    end
    if run.written ~= n or (run.failed or 0) > 0 then
      out("              WARNING: %d written, %d failed (expected %d written)", run.written, run.failed or 0, n)
    end
    verify("              ", it.server and "server's copy" or it.peer and "PouchDB's copy" or "native copy", src, tgt)
    tgt:delete()
    return run
  end

  out("")
  out("  %d round%s, batches of %d for the ceiling; every copy into a fresh target:", rounds, rounds > 1 and "s" or "", BATCH)
  for round = 1, rounds do
    local order = {}
    for i, it in ipairs(items) do order[i] = it end
    if round % 2 == 0 then
      for i = 1, #order // 2 do order[i], order[#order + 1 - i] = order[#order + 1 - i], order[i] end
    end
    for _, it in ipairs(order) do
      it.round = round
      it.runs[round] = it.clients and run_ceiling(it) or run_copy(it)
      collectgarbage()
    end
  end
  bodies = nil -- luacheck: ignore
  collectgarbage()

  -- a ceiling's best: the best read and the best ingest of its rounds
  for _, it in ipairs(items) do
    if it.clients then
      local read, ing = 0, 0
      for _, r in ipairs(it.runs) do read, ing = math.max(read, r.read), math.max(ing, r.ingest) end
      it.best = { read = read, ingest = ing, rate = 1 / (1 / read + 1 / ing) }
    end
  end
  R.ceiling, R.read, R.ingest = items[1].best.rate, items[1].best.read, items[1].best.ingest
  R.ceiling_conc = items[2].best.rate
  table.remove(items, 1)
  table.remove(items, 1)

  for _, it in ipairs(items) do
    it.best = it.runs[1]
    for _, r in ipairs(it.runs) do if r.rate > it.best.rate then it.best = r end end
    it.hwm = 0
    for _, r in ipairs(it.runs) do it.hwm = math.max(it.hwm, r.hwm or 0) end
  end
  local server = items[#items]
  R.server = server.best.rate
  for _, it in ipairs(items) do if it.peer then R.pouchdb = it.best.rate end end
  R.native = items[1].best.rate
  R.rss = items[1].hwm

  out("")
  out("  best of %d round%s:", rounds, rounds > 1 and "s" or "")
  out("    source raw read %s, target raw ingest %s (1 client): combined ceiling %s; with %d clients: %s",
    fmt_rate(R.read), fmt_rate(R.ingest), fmt_rate(R.ceiling), CLIENTS, fmt_rate(R.ceiling_conc))
  out("    %-26s %14s   of the ceiling (1 / %d clients)   vs the server's replicator   peak RSS", "", "rate", CLIENTS)
  local best_native = items[1]
  for _, it in ipairs(items) do
    if it.cfg and it.best.rate > best_native.best.rate then best_native = it end
    out("    %-26s %14s          %4.0f%% / %4.0f%%                   %5.2fx         %10s", it.label, fmt_rate(it.best.rate),
      100 * it.best.rate / R.ceiling, 100 * it.best.rate / R.ceiling_conc, it.best.rate / R.server,
      it.server and "" or B.mb(it.hwm))
  end
  out("")
  out("  goals at %s docs (printed, not asserted):", B.int(n))
  out("    %s >= 90%% of the combined ceiling: %.0f%% of the 1-client ceiling, %.0f%% of the %d-client one",
    items[1].label, 100 * R.native / R.ceiling, 100 * R.native / R.ceiling_conc, CLIENTS)
  out("    %s >= 2x the server's own replicator: %.2fx (best setting, %s: %.2fx)",
    items[1].label, R.native / R.server, (best_native.label:gsub("^native ", "")), best_native.best.rate / R.server)
  if R.pouchdb then
    out("    %s >= 2x PouchDB 9's replicate: %.2fx (best setting: %.2fx)", items[1].label, R.native / R.pouchdb,
      best_native.best.rate / R.pouchdb)
  end
  if SERVER_PID then out("    (pouchdb-server's RSS now: %s)", B.mb(server_rss())) end
  src:delete()
end

local ok, err = pcall(function()
  for i, n in ipairs(sizes) do bench_size(n, i == 1) end
end)

-- delete everything we created, whatever happened (deleting a missing db is harmless)
for _, name in ipairs(created) do pcall(function() srv:db(name):delete() end) end

if not ok then
  io.stderr:write("bench/replicate: ", tostring(err), "\n")
  os.exit(1)
end

out("")
if #results > 1 then
  local a, b = results[1], results[#results]
  out("  couchlua peak RSS (%dx%d): %s at %s docs, %s at %s docs: %+.1f%%   (goal: within 10%%)",
    configs[1].batch_size, configs[1].concurrency,
    B.mb(a.rss), B.int(a.n), B.mb(b.rss), B.int(b.n), 100 * (b.rss - a.rss) / a.rss)
else
  out("  couchlua peak RSS (%dx%d): %s at %s docs (BENCH_BIG=1 adds 100,000 docs for the goal: within 10%%)",
    configs[1].batch_size, configs[1].concurrency,
    B.mb(results[1].rss), B.int(results[1].n))
end
if failures > 0 then
  io.stderr:write(("bench/replicate: %d copies were not equal to their source\n"):format(failures))
  os.exit(1)
end
