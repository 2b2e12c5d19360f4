-- bench/requests.lua: requests/s of GET /db/doc for one small document, from couchlua
-- (sequential at the top level, and N tasks at once) side by side with curl doing the same
-- work in one process on one reused connection (and curl --parallel as the concurrent
-- reference). Prints figures; asserts nothing about timings.
--
-- The server (one node.js thread for pouchdb-server) is usually the bottleneck, so the
-- client's own CPU per request is printed too. To keep the server's drift (JIT warm-up,
-- heap growth) from favouring whichever mode runs last, each mode's requests are split
-- into rounds run in alternating order (a c b d, then d b c a, ...).
--
--   couchlua bench/requests.lua       (BENCH_URL or COUCH_URL: the server)
-- Environment: BENCH_REQUESTS (10000 per mode), BENCH_CONCURRENCY (64),
--   BENCH_WARMUP (300 GETs first), BENCH_ROUNDS (4)
package.path = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "bench") .. "/?.lua;" .. package.path
local couch = require "couch"
local B = require "common"
local out = B.out

local N = tonumber(os.getenv("BENCH_REQUESTS")) or 10000
local CONC = tonumber(os.getenv("BENCH_CONCURRENCY")) or 64
local WARMUP = tonumber(os.getenv("BENCH_WARMUP")) or 300
local ROUNDS = math.max(1, tonumber(os.getenv("BENCH_ROUNDS")) or 4)
local url = B.url()

local srv = couch.connect(url, { max_concurrency = CONC })
local db = srv:db(B.dbname("req"))
db:create()
local DOC_ID = "small-doc"
db:put { _id = DOC_ID, type = "bench", n = 1, name = "a small document", tags = { "a", "b" } }
local doc_url = url .. "/" .. db.name .. "/" .. DOC_ID
local have_time = os.execute("test -x /usr/bin/time") == true

local function check(d)
  if type(d) ~= "table" or d._id ~= DOC_ID then
    error("GET answered something else than the document: " .. tostring(d), 0)
  end
end

-- Time fn; returns wall seconds and this process's CPU seconds.
local function timed(fn)
  local _, _, c0 = B.cpu_seconds()
  local t0 = couch.now()
  fn()
  local t1 = couch.now()
  local _, _, c1 = B.cpu_seconds()
  return { secs = t1 - t0, cpu = c1 - c0, n = 0 }
end

-- (a) sequential, from the top level (each call runs the loop until its answer)
local function couch_sequential(n)
  return timed(function()
    for _ = 1, n do check(db:get(DOC_ID)) end
  end)
end

-- (b) CONC tasks sharing the work, max_concurrency = CONC
local function couch_tasks(n)
  local left = n
  return timed(function()
    local tasks = {}
    for i = 1, CONC do
      tasks[i] = couch.spawn(function()
        while left > 0 do
          left = left - 1
          check(db:get(DOC_ID))
        end
      end)
    end
    couch.all(tasks)
  end)
end

-- (c) curl, the same GETs in one process; (d) curl --parallel --parallel-max CONC.
-- Each URL's body goes to /dev/null (an `output` line per `url` line in the -K config);
-- -w writes "status connects" per transfer, so we check that every GET answered 200 and
-- count the connections curl opened. CPU and peak RSS come from /usr/bin/time.
local function curl(parallel, n)
  local cfg, codes, timef = os.tmpname(), os.tmpname(), os.tmpname()
  local f = assert(io.open(cfg, "w"))
  local line = ('url = "%s"\noutput = "/dev/null"\n'):format((doc_url:gsub('"', '\\"')))
  for _ = 1, n do f:write(line) end
  f:close()
  local cmd = ("%s curl -s -K %s -H 'Accept: application/json' -w '%%{http_code} %%{num_connects}\\n' %s >%s 2>/dev/null")
    :format(have_time and ("/usr/bin/time -f '%U %S %M' -o " .. timef) or "", cfg,
      parallel and ("--parallel --parallel-max " .. CONC) or "", codes)
  local t0 = couch.now()
  local ok = os.execute(cmd)
  local r = { secs = couch.now() - t0, ok200 = 0, connects = 0, exit_ok = ok }
  for l in io.lines(codes) do
    local code, nc = l:match("^(%d+) (%d+)")
    if code == "200" then r.ok200 = r.ok200 + 1 end
    r.connects = r.connects + (tonumber(nc) or 0)
  end
  if have_time then
    local u, s, m = (B.read_file(timef) or ""):match("([%d.]+) ([%d.]+) (%d+)%s*$")
    if u then r.cpu, r.rss = tonumber(u) + tonumber(s), tonumber(m) end
  end
  os.remove(cfg); os.remove(codes); os.remove(timef)
  if not ok or r.ok200 ~= n then
    out("  warning: curl%s: %d of %d GETs answered 200 (exit %s)", parallel and " --parallel" or "",
      r.ok200, n, tostring(ok))
  end
  return r
end

local modes = {
  { key = "a", label = "(a) couchlua, sequential, top level", run = couch_sequential, rss = true },
  { key = "c", label = "(c) curl, sequential, one process", run = function(n) return curl(false, n) end },
  { key = "b", label = ("(b) couchlua, %d tasks (max_concurrency=%d)"):format(CONC, CONC), run = couch_tasks, rss = true },
  { key = "d", label = ("(d) curl --parallel --parallel-max %d"):format(CONC), run = function(n) return curl(true, n) end },
}

out("requests: %s GETs per mode of one small document (%d B body) in %d rounds, server %s", B.int(N),
  #(srv:request("GET", "/" .. db.name .. "/" .. DOC_ID, { raw = true }) or ""), ROUNDS, B.redact(url))

-- warm-up: connections, the server's JIT
for _ = 1, WARMUP do check(db:get(DOC_ID)) end

local total = {}
for _, m in ipairs(modes) do total[m.key] = { secs = 0, cpu = 0, n = 0, connects = 0, rss = 0 } end

local function measure()
  local done = 0
  for round = 1, ROUNDS do
    local n = (round < ROUNDS) and math.floor(N / ROUNDS) or (N - done)
    done = done + n
    local order = {}
    for i, m in ipairs(modes) do order[i] = m end
    if round % 2 == 0 then -- reverse every other round
      for i = 1, #order // 2 do order[i], order[#order + 1 - i] = order[#order + 1 - i], order[i] end
    end
    for _, m in ipairs(order) do
      local r = m.run(n)
      local t = total[m.key]
      t.secs, t.n = t.secs + r.secs, t.n + n
      if r.cpu and t.cpu then t.cpu = t.cpu + r.cpu else t.cpu = nil end
      t.connects = t.connects + (r.connects or 0)
      -- couchlua: VmRSS after this mode's first run (later runs would show the other mode's
      -- peak); curl: its peak RSS over its runs
      if m.rss then
        if round == 1 then t.rss = B.status_kb("VmRSS") end
      elseif r.rss and t.rss then
        t.rss = math.max(t.rss, r.rss)
      else
        t.rss = nil
      end
    end
  end
end

local ok, err = pcall(measure)
pcall(db.delete, db)
if not ok then error(err, 0) end

local function rate(k) return total[k].n / total[k].secs end

out("")
out("  %-44s %10s %9s %12s %11s", "", "req/s", "wall", "CPU us/req", "RSS")
for _, k in ipairs { "a", "b", "c", "d" } do
  local m
  for _, x in ipairs(modes) do if x.key == k then m = x end end
  local t = total[k]
  out("  %-44s %10s %8.2fs %12s %11s", m.label, B.int(rate(k)), t.secs,
    t.cpu and ("%.0f"):format(t.cpu / t.n * 1e6) or "n/a", t.rss and B.mb(t.rss) or "n/a")
end
out("  CPU us/req: the client's own user+system CPU per GET. RSS: couchlua's VmRSS after the mode's")
out("  first run; curl's peak RSS (/usr/bin/time). curl connections opened: %d sequential, %d parallel",
  total.c.connects, total.d.connects)
out("")
out("  ratio (a)/(c) couchlua sequential / curl sequential : %.2f  (CPU per GET: %s)", rate("a") / rate("c"),
  total.a.cpu and total.c.cpu and ("%.2fx curl's"):format((total.a.cpu / total.a.n) / (total.c.cpu / total.c.n)) or "n/a")
out("  ratio (b)/(c) couchlua %d tasks  / curl sequential  : %.2f", CONC, rate("b") / rate("c"))
out("  ratio (b)/(d) couchlua %d tasks  / curl parallel    : %.2f  (CPU per GET: %s)", CONC, rate("b") / rate("d"),
  total.b.cpu and total.d.cpu and ("%.2fx curl's"):format((total.b.cpu / total.b.n) / (total.d.cpu / total.d.n)) or "n/a")
out("  couchlua peak RSS (VmHWM): %s", B.mb(B.status_kb("VmHWM")))
