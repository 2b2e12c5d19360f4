-- bench/feeds.lua: many tasks, each in a long-poll _changes loop on one database.
-- For each follower count: this process's RSS once all are waiting, its CPU use while
-- they idle, and the time from one write until every follower has seen it (and, when the
-- server's pid is known, the server's CPU and RSS, since the server is usually the limit).
-- Prints figures; asserts nothing about timings.
--
--   couchlua bench/feeds.lua          (BENCH_URL or COUCH_URL: the server)
-- Environment:
--   BENCH_FEEDS        "100,250,500,1000": the follower counts, one round each
--   BENCH_IDLE         6: seconds of the idle CPU measurement (pouchdb-server writes a
--                      heartbeat newline on each long-poll every 6 s)
--   BENCH_SETTLE_MAX   12: at most this many seconds waiting for the server to go quiet
--                      after the long-polls connect (needs BENCH_SERVER_PID)
--   BENCH_SEE_TIMEOUT  30: seconds (after the write returns) to wait for every follower
--   BENCH_SERVER_PID   the server's pid; bench/run sets it when it started the server
--   BENCH_ENCODING     an Accept-Encoding header for every request (e.g. "identity");
--                      unset: the library's default (libcurl offers gzip/deflate/br/zstd).
--                      pouchdb-server's compression holds back the heartbeats of a
--                      compressed long-poll; with "identity" they reach the client, so
--                      the idle figures show what each wake-up of the loop costs.
package.path = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "bench") .. "/?.lua;" .. package.path
local couch = require "couch"
local B = require "common"
local out = B.out

local SIZES = {}
for n in (os.getenv("BENCH_FEEDS") or "100,250,500,1000"):gmatch("%d+") do SIZES[#SIZES + 1] = tonumber(n) end
-- 6 s: one heartbeat period of pouchdb-server's long-polls
local IDLE = tonumber(os.getenv("BENCH_IDLE")) or 6
local SETTLE_MAX = tonumber(os.getenv("BENCH_SETTLE_MAX")) or 12
local SEE_TIMEOUT = tonumber(os.getenv("BENCH_SEE_TIMEOUT")) or 30
local CONNECT_TIMEOUT = 20 -- seconds for every follower's long-poll to be connected
-- The long-poll length each follower asks for. pouchdb-server ignores it and the client's
-- own deadline is poll + 5 s: 120 keeps a first round from timing out inside a measurement
-- even when the server takes most of a minute to get through 1,000 new long-polls.
local POLL = 120
local ENCODING = os.getenv("BENCH_ENCODING")
if ENCODING == "" then ENCODING = nil end
local server_pid = os.getenv("BENCH_SERVER_PID")
if server_pid and not B.read_file("/proc/" .. server_pid .. "/stat") then server_pid = nil end

local url = B.url()
-- A busy server may take a while to answer the write: 3 minutes before a request gives up.
local srv = couch.connect(url, { max_concurrency = 16, timeout = 180,
  headers = ENCODING and { ["Accept-Encoding"] = ENCODING } or nil })

out("feeds: N tasks in db:changes_feed{since = <current seq>, poll = %d} on one database, then one write", POLL)
out("       server %s, idle window %gs, Accept-Encoding: %s", B.redact(url), IDLE,
  ENCODING or "library default")
if not ENCODING then
  out("       (compressed long-polls: the server's 6 s heartbeats stay in its gzip buffer; run with")
  out("        BENCH_ENCODING=identity to have them reach the client as CouchDB's heartbeats would)")
end
if not server_pid then out("       (server pid unknown: no server CPU/RSS figures, no waiting for it to go quiet)") end

local function count_sockets()
  local p = io.popen("ls -l /proc/" .. B.pid() .. "/fd 2>/dev/null | grep -c 'socket:'")
  local n = tonumber(p:read("a")) or 0
  p:close()
  return n
end

-- Server CPU (% of one core) over the next `secs`; nil when we do not know its pid.
local function server_cpu_over(secs)
  if not server_pid then couch.sleep(secs); return nil end
  local _, _, c0 = B.cpu_seconds(server_pid)
  local t0 = couch.now()
  couch.sleep(secs)
  local _, _, c1 = B.cpu_seconds(server_pid)
  if not c0 or not c1 then return nil end
  return (c1 - c0) / (couch.now() - t0) * 100
end

local created = {} -- databases to delete at the end, whatever happens

local function one_round(n)
  local r = { n = n }
  local db = srv:db(B.dbname("feeds" .. n))
  db:create()
  created[#created + 1] = db
  -- followers start from the current seq (opaque), so a long-poll the server registers
  -- late still reports the write: what we time is delivery, not a race at the start.
  local since = db:changes { limit = 0, since = "now" }.last_seq
  collectgarbage("collect")
  local rss0 = B.status_kb("VmRSS")

  local started, arrivals, feeds = 0, {}, {}
  local tasks = {}
  local t_spawn = couch.now()
  for i = 1, n do
    tasks[i] = couch.spawn("follower " .. i, function()
      started = started + 1
      local iter, feed, ctl, closing = db:changes_feed { since = since, poll = POLL }
      feeds[i] = feed
      for change in iter, feed, ctl, closing do
        if change.id == "ping" then
          arrivals[#arrivals + 1] = couch.now()
          return
        end
      end
    end)
  end

  -- 1. Connected: every follower has started and this process holds at least n sockets
  -- (one connection per long-poll; idle cached connections count too, so this is
  -- necessary, not sufficient) and the count has stopped growing.
  local deadline = couch.now() + CONNECT_TIMEOUT
  local socks, last, stable_since = 0, -1, couch.now()
  repeat
    couch.sleep(0.05)
    socks = count_sockets()
    if socks ~= last then last, stable_since = socks, couch.now() end
  until (started == n and socks >= n and couch.now() - stable_since >= 0.5) or couch.now() > deadline
  r.connect_secs = couch.now() - t_spawn
  r.started = started

  -- 2. Registered: the server has stopped working on the new long-polls (its CPU stays
  -- under 20% of a core for two half-second windows in a row), or SETTLE_MAX seconds
  -- have passed.
  r.settled = nil
  if server_pid then
    local t0, quiet = couch.now(), 0
    repeat
      local pct = server_cpu_over(0.5)
      quiet = (pct and pct < 20) and quiet + 1 or 0
      if quiet >= 2 then r.settled = true end
    until r.settled or couch.now() - t0 > SETTLE_MAX
    r.settled = r.settled or false
    r.settle_secs = couch.now() - t0
  else
    couch.sleep(1) -- no server pid: give it a second
  end
  collectgarbage("collect")
  r.rss = B.status_kb("VmRSS")
  r.rss_delta = r.rss - rss0
  r.sockets = count_sockets()

  -- 3. Idle: every follower is parked in its long-poll.
  local _, _, c0 = B.cpu_seconds()
  local s0 = server_pid and select(3, B.cpu_seconds(server_pid))
  local w0 = couch.now()
  couch.sleep(IDLE)
  local wall = couch.now() - w0
  local _, _, c1 = B.cpu_seconds()
  r.idle_cpu = (c1 - c0) / wall * 100
  if s0 then
    r.server_idle_cpu = (select(3, B.cpu_seconds(server_pid)) - s0) / wall * 100
    r.server_rss = B.status_kb("VmRSS", server_pid)
  end
  r.sockets_after_idle = count_sockets()
  r.refetches = 0 -- long-poll rounds that timed out or failed before the write
  for _, f in pairs(feeds) do if f.failures > 0 then r.refetches = r.refetches + 1 end end

  -- 4. One write; every follower records when its change arrives.
  local t_write = couch.now()
  db:put { _id = "ping", at = "now" }
  r.put_secs = couch.now() - t_write
  local see_deadline = couch.now() + SEE_TIMEOUT
  local errors = {}
  for _, t in ipairs(tasks) do
    local left = see_deadline - couch.now()
    if left > 0 then
      local ok, err = pcall(t.wait, t, left)
      if not ok and not (couch.is_error(err) and err.kind == "timeout") then
        errors[#errors + 1] = tostring(err)
      end
    end
  end
  r.seen = #arrivals
  local lat = {}
  for i, a in ipairs(arrivals) do lat[i] = a - t_write end
  r.lat = B.stats(lat)
  for _, t in ipairs(tasks) do
    if t:status() ~= "done" and t:status() ~= "failed" then t:cancel() end
  end
  r.errors = errors
  couch.sleep(0.2) -- let cancelled followers unwind
  local ok, err = pcall(db.delete, db)
  if not ok then r.errors[#r.errors + 1] = "deleting the database: " .. tostring(err) end
  created[#created] = nil
  return r
end

local function cleanup()
  for _, db in ipairs(created) do pcall(db.delete, db) end
  created = {}
end

local function pct(x) return x and ("%.1f%%"):format(x) or "n/a" end

local results = {}
for _, n in ipairs(SIZES) do
  local ok, r = pcall(one_round, n)
  if not ok then
    out("  N=%d: the round failed: %s", n, tostring(r))
    cleanup()
    results[#results + 1] = { n = n, failed = tostring(r) }
  else
    results[#results + 1] = r
    local settle = ""
    if r.settle_secs then
      settle = r.settled and (", server quiet %.1fs later"):format(r.settle_secs)
        or (", server still busy after %.0fs"):format(r.settle_secs)
    end
    out("  N=%-5d connected in %.2fs (%d/%d started, %d sockets)%s", n, r.connect_secs, r.started, n, r.sockets, settle)
    out("          waiting: RSS %s (+%s, %.1f kB/task); idle %gs: couchlua CPU %.2f%%, server CPU %s, server RSS %s",
      B.mb(r.rss), B.mb(r.rss_delta), r.rss_delta / n, IDLE, r.idle_cpu, pct(r.server_idle_cpu), B.mb(r.server_rss))
    out("          write: put took %s; seen by %d/%d; latency min %s, median %s, p90 %s, max %s",
      B.ms(r.put_secs), r.seen, n, B.ms(r.lat.min), B.ms(r.lat.median), B.ms(r.lat.p90), B.ms(r.lat.max))
    if r.sockets < n then
      out("          note: only %d sockets open for %d long-polls when idle began", r.sockets, n)
    end
    if r.sockets_after_idle < r.sockets then
      out("          note: %d connections closed during the idle window", r.sockets - r.sockets_after_idle)
    end
    if r.refetches > 0 then
      out("          note: %d followers had a long-poll time out or fail before the write", r.refetches)
    end
    for i, e in ipairs(r.errors) do
      if i > 5 then out("          ... %d more errors", #r.errors - 5); break end
      out("          error: %s", e)
    end
  end
end

out("")
out("  %6s %8s %9s %8s %9s %10s %10s %9s %10s %10s %10s", "tasks", "connect", "RSS", "kB/task", "idle CPU",
  "server CPU", "server RSS", "seen", "put", "median", "max")
for _, r in ipairs(results) do
  if r.failed then
    out("  %6d   round failed (see above)", r.n)
  else
    out("  %6d %7.2fs %9s %8.1f %8.2f%% %10s %10s %9s %10s %10s %10s", r.n, r.connect_secs, B.mb(r.rss),
      r.rss_delta / r.n, r.idle_cpu, pct(r.server_idle_cpu), B.mb(r.server_rss), ("%d/%d"):format(r.seen, r.n),
      B.ms(r.put_secs), B.ms(r.lat.median), B.ms(r.lat.max))
  end
end
out("  connect: from spawning until every follower had a socket (includes 0.5 s of seeing the count")
out("  hold). RSS: couchlua's VmRSS with every follower waiting; kB/task: its growth over the RSS before")
out("  spawning. idle CPU: couchlua's utime+stime over the %gs idle window, %% of one core (one", IDLE)
out("  clock tick = %.2f%%); server CPU likewise for the server (node: can exceed 100%%).", 100 / B.CLK_TCK / IDLE)
out("  put: how long db:put took. Latency: from just before db:put until a follower's loop got")
out("  the change (median and max over the followers; max = until all have seen it).")
out("  couchlua peak RSS (VmHWM): %s", B.mb(B.status_kb("VmHWM")))
