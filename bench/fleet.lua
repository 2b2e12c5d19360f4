-- Benchmark: a fleet of N replication documents (10,000 by default) on the FAKE CouchDB 3
-- as a 3-node cluster (tests/fakes, --nodes 3; its recorded timeline compressed by
-- time_scale), created with rep:create_many in chunks and followed to completion by N
-- followers in one thread. Prints requests (per state change seen, per poll interval),
-- seconds, peak RSS and CPU of this process; asserts nothing.
-- Usage: couchlua bench/fleet.lua [N=10000] [time_scale=0.5] [tasks|many|steady]
--   tasks: N tasks, each in a rep:follow loop; many: one rep:follow_many loop for all N
--   steady: N continuous replications, all running, followed by one rep:follow_many loop
--   for BENCH_FLEET_STEADY seconds (20): the cost of following when little changes (the
--   scheduler poll per interval)
-- (separate processes, so that each peak RSS is its own). The load average is printed:
-- on a machine busier than its cores, CPU figures are noisy.
package.path = (os.getenv("COUCHLUA_SOURCE_DIR") or ".") .. "/tests/support/?.lua;"
  .. (os.getenv("COUCHLUA_SOURCE_DIR") or ".") .. "/bench/?.lua;" .. package.path
local couch = require "couch"
local fake = require "fake_couchdb3"
local common = require "common"

local N = tonumber(arg[1]) or 10000
local scale = tonumber(arg[2]) or 0.5
local MODE = arg[3] or "tasks"
assert(MODE == "tasks" or MODE == "many" or MODE == "steady", "mode: tasks, many or steady")
local INTERVAL = tonumber(os.getenv("BENCH_FLEET_INTERVAL")) -- nil: the default (adaptive)

-- every job may run at once (3 nodes x CouchDB's 500 would queue most of them for minutes
-- of scheduler ticks: that is CouchDB's pacing, not the client's cost being measured)
local f = fake.start { nodes = 3, time_scale = scale, max_jobs = N }
local srv = couch.connect(f.admin_url, { max_concurrency = 16 })
local rep = srv:replicator()
srv:db("fleet_src"):create()
srv:db("fleet_src"):bulk_docs { { _id = "a" }, { _id = "b" } }
couch.sleep(6 * scale) -- the nodes boot

print(("fleet (%s): %s replications on a fake 3-node CouchDB 3 cluster, timeline x%g, poll %s; followed by %s")
  :format(MODE, common.int(N), scale, INTERVAL and ("every %gs"):format(INTERVAL) or "interval adaptive (1 s per 2000 active jobs)", MODE == "tasks" and "a task each (rep:follow)" or "one rep:follow_many loop"))

local function loadavg() return (common.read_file("/proc/loadavg") or "?"):match("^(%S+ %S+ %S+)") or "?" end
print(("  machine       : load average %s (1, 5, 15 min) on %s CPUs"):format(loadavg(), io.popen("nproc"):read("l") or "?"))

local list = {}
for i = 1, N do
  list[i] = { id = ("fleet-%05d"):format(i), source = "fleet_src", target = ("fleet_t%05d"):format(i), create_target = true,
              continuous = MODE == "steady" or nil }
end
f:freeze() -- nothing starts while they are created: the followers see every state
local r0, t0 = srv:stats().requests, couch.now()
local res = rep:create_many(list, { chunk = 500 })
local create_req, create_s = srv:stats().requests - r0, couch.now() - t0
print(("  create_many   : %s created, %d failed, %d requests (chunks of 500), %.1f s")
  :format(common.int(res.ok_count), res.failed_count, create_req, create_s))

local rss_created = common.status_kb("VmRSS")
collectgarbage()
local rss_base = common.status_kb("VmRSS")
local changes, completed, last_seen, started = 0, 0, 0, 0
local _, _, cpu0 = common.cpu_seconds()
r0, t0 = srv:stats().requests, couch.now()
local function seen(last, st)
  if not last then started = started + 1 end
  changes = changes + 1
  return st
end
local function ended(last)
  if last and last.state == "completed" then completed = completed + 1 end
  last_seen = couch.now()
end
if MODE == "steady" then
  local ids = {}
  for i = 1, N do ids[i] = list[i].id end
  local running = {}
  local n_running, states = 0, 0
  couch.spawn(function()
    for st in rep:follow_many(ids, { interval = INTERVAL }) do
      states = states + 1
      if st.state == "running" and not running[st.id] then running[st.id], n_running = true, n_running + 1 end
    end
  end)
  f:thaw()
  local deadline = couch.now() + 300
  while n_running < N and couch.now() < deadline do couch.sleep(0.2) end
  local up = couch.now() - t0
  couch.sleep(2)
  local seconds = tonumber(os.getenv("BENCH_FLEET_STEADY")) or 20
  local r1, s1 = srv:stats().requests, states
  local _, _, c1 = common.cpu_seconds()
  local w0 = couch.now()
  couch.sleep(seconds)
  local _, _, c2 = common.cpu_seconds()
  local dt = couch.now() - w0
  print(("  running       : all %s seen running after %.1f s (%s requests)"):format(common.int(n_running), up, common.int(r1 - r0)))
  print(("  steady        : %.0f s of following %s running jobs: %d requests (%.2f per s), %d states seen")
    :format(dt, common.int(N), srv:stats().requests - r1, (srv:stats().requests - r1) / dt, states - s1))
  print(("  CPU           : %.2f s = %.1f %% of a core while following"):format(c2 - c1, 100 * (c2 - c1) / dt))
  print(("  RSS           : peak %s (this process); %s now"):format(common.mb(common.status_kb("VmHWM")), common.mb(common.status_kb("VmRSS"))))
  f:stop()
  os.exit(0)
end
if MODE == "tasks" then
  for i = 1, N do
    couch.spawn(function()
      local last
      for st in rep:follow(list[i].id, { interval = INTERVAL }) do last = seen(last, st) end
      ended(last)
    end)
  end
else
  local ids = {}
  for i = 1, N do ids[i] = list[i].id end
  couch.spawn(function()
    local last = {}
    for st in rep:follow_many(ids, { interval = INTERVAL }) do
      last[st.id] = seen(last[st.id], st)
      if st.state == "completed" or st.state == "failed" or st.state == "deleted" then ended(st) end
    end
  end)
end
while started < N do couch.sleep(0.1) end -- every follower has its first state
local init_req, init_s = srv:stats().requests - r0, couch.now() - t0
local _, _, cpu_init = common.cpu_seconds()
r0, t0 = srv:stats().requests, couch.now()
f:thaw()
local deadline = couch.now() + 600
while completed < N and couch.now() < deadline do couch.sleep(0.5) end
couch.run()
local follow_req, follow_s = srv:stats().requests - r0, last_seen - t0
local _, _, cpu1 = common.cpu_seconds()
print(("  followed      : %s of %s seen completed; %s state changes seen; last completion seen after %.1f s")
  :format(common.int(completed), common.int(N), common.int(changes), follow_s))
print(("  requests      : %s while following (%d for the first read of all %s documents)")
  :format(common.int(follow_req + init_req), init_req, common.int(N)))
print(("  first states  : all %s followers had their first state after %.1f s (%.2f s of CPU)"):format(common.int(N), init_s, cpu_init - cpu0))
print(("  per change    : %.3f requests per state change seen; %.1f requests per second of following")
  :format((follow_req + init_req) / math.max(1, changes), follow_req / math.max(0.001, follow_s)))
print(("  RSS           : peak %s (this process); %s after create_many, %s after a GC, %s at the end")
  :format(common.mb(common.status_kb("VmHWM")), common.mb(rss_created), common.mb(rss_base), common.mb(common.status_kb("VmRSS"))))
print(("  CPU           : %.2f s while following (after the first states) = %.1f %% of a core")
  :format(cpu1 - cpu_init, 100 * (cpu1 - cpu_init) / follow_s))
print(("                  %.0f µs of CPU per state change seen (the timeline is compressed: %.0f changes/s)")
  :format(1e6 * (cpu1 - cpu_init) / math.max(1, changes), changes / math.max(0.001, follow_s)))
f:stop()
