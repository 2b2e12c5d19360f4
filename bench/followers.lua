-- Benchmark: N followers watching N server-side replications to completion.
-- couchlua's followers share one _changes feed and one /_scheduler/docs poll per interval;
-- python-cloudant's seed examples poll replication_state (a GET of the document) every
-- 2 s per replication. Both run here against the same FAKE CouchDB 3 (tests/fakes), whose
-- recorded timeline is slowed to time_scale so a replication takes a few seconds.
-- Usage: couchlua bench/followers.lua [N=500] [time_scale=0.5]
package.path = (os.getenv("COUCHLUA_SOURCE_DIR") or ".") .. "/tests/support/?.lua;" .. package.path
local couch = require "couch"
local fake = require "fake_couchdb3"

local N = tonumber(arg[1]) or 500
local scale = tonumber(arg[2]) or 0.5

local function rss_kb(field)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. field .. ":%s+(%d+)")
    if v then return tonumber(v) end
  end
end

local f = fake.start { time_scale = scale }
local srv = couch.connect(f.admin_url, { max_concurrency = 64 })
local rep = srv:replicator()
local src = srv:db("bench_src")
src:create()
local docs = {}
for i = 1, 10 do docs[i] = { _id = "d" .. i } end
src:bulk_docs(docs)

local function start_replications(prefix)
  local list, ids = {}, {}
  for i = 1, N do
    ids[i] = ("%s_%04d"):format(prefix, i)
    list[i] = { id = ids[i], source = "bench_src", target = ("%s_t%04d"):format(prefix, i), create_target = true }
  end
  f:freeze()
  for i = 1, N, 250 do rep:create_many({ table.unpack(list, i, math.min(i + 249, N)) }) end
  return ids
end

print(("followers: %d replications, fake CouchDB 3 timeline x%g"):format(N, scale))

-- couchlua: rep:wait in N tasks
local ids = start_replications("cl")
local before, t0 = srv:stats().requests, couch.now()
local tasks = {}
for i = 1, N do tasks[i] = couch.spawn(function() return rep:wait(ids[i], { interval = 1 }).state end) end
couch.sleep(0.2)
f:thaw()
local done = 0
for _, st in ipairs(couch.all(tasks)) do if st == "completed" then done = done + 1 end end
local ours, ours_time = srv:stats().requests - before, couch.now() - t0

-- the seed's way: each follower GETs its document every 2 s until it says completed
ids = start_replications("seed")
before, t0 = srv:stats().requests, couch.now()
tasks = {}
local db = srv:db("_replicator")
for i = 1, N do
  tasks[i] = couch.spawn(function()
    while true do
      local doc = db:get(ids[i])
      if doc._replication_state == "completed" or doc._replication_state == "failed" then return doc._replication_state end
      couch.sleep(2)
    end
  end)
end
couch.sleep(0.2)
f:thaw()
local seed_done = 0
for _, st in ipairs(couch.all(tasks)) do if st == "completed" then seed_done = seed_done + 1 end end
local theirs, theirs_time = srv:stats().requests - before, couch.now() - t0

print(("  couchlua shared watcher : %6d requests, %d/%d completed, %.1f s"):format(ours, done, N, ours_time))
print(("  seed-style polling (2 s): %6d requests, %d/%d completed, %.1f s"):format(theirs, seed_done, N, theirs_time))
print(("  requests ratio seed/couchlua: %.1fx   (couchlua: %.2f requests per follower)"):format(theirs / ours, ours / N))
print(("  peak RSS of this process: %.1f MB"):format(rss_kb("VmHWM") / 1024))
f:stop()
