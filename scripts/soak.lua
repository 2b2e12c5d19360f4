-- scripts/soak.lua URL DOCS KILLS: the native engine's soak (run by scripts/soak).
-- Seeds a source of DOCS documents (conflicts, deletions, attachments), migrates it with
-- `couchlua` child processes killed with SIGKILL at KILLS random moments, resumes each
-- time, then checks the target against the source with an independent reader that uses
-- only raw requests (never couch.replicate nor couch.compare): every document's leaves,
-- each leaf's revision history, deletion flag, body and attachment digests.
local couch = require "couch"
local json = couch.json

local url, ndocs, nkills = arg[1], tonumber(arg[2] or "100000"), tonumber(arg[3] or "20")
local couchlua = os.getenv("COUCHLUA") or "couchlua"
local srv = couch.connect(url, { timeout = 120, retries = 5 })
local tag = couch._random_hex(3)
local src, tgt = srv:db("soak_src_" .. tag), srv:db("soak_tgt_" .. tag)
local function say(fmt, ...) io.stderr:write(("soak: " .. fmt .. "\n"):format(...)) end

--- Seeding ------------------------------------------------------------------------
local t0 = couch.now()
src:create()
local batch = {}
local function flush(opts)
  if #batch > 0 then src:bulk_docs(batch, opts) end
  batch = {}
end
for i = 1, ndocs do
  local doc = { _id = ("doc%07d"):format(i), n = i, text = ("payload %d "):format(i):rep(8) }
  if i % 100 == 0 then
    doc._attachments = { ["note.txt"] = { content_type = "text/plain",
      data = (couch._md5_hex(tostring(i)) .. "0000"):sub(1, 32) } } -- base64 text of 24 bytes
  end
  batch[#batch + 1] = doc
  if #batch == 1000 then flush() end
end
flush()
-- conflicts: a second branch on every 50th document; deletions: every 37th
local conflicts, deletions = 0, 0
for i = 50, ndocs, 50 do
  batch[#batch + 1] = { _id = ("doc%07d"):format(i), _rev = "1-" .. couch._md5_hex("branch" .. i), n = -i }
  conflicts = conflicts + 1
  if #batch == 1000 then flush { new_edits = false } end
end
flush { new_edits = false }
local ids = {}
for i = 37, ndocs, 37 do ids[#ids + 1] = ("doc%07d"):format(i) end
for i = 1, #ids, 500 do
  local keys = { table.unpack(ids, i, math.min(i + 499, #ids)) }
  local rows = src:all_docs { keys = keys }.rows
  for _, r in ipairs(rows) do batch[#batch + 1] = { _id = r.id, _rev = r.value.rev, _deleted = true } end
  deletions = deletions + #rows
  flush()
end
say("seeded %d documents (%d conflicted, %d deleted, %d with an attachment) in %.1f s",
  ndocs, conflicts, deletions, ndocs // 100, couch.now() - t0)

--- The migration, killed -------------------------------------------------------
local script = os.tmpname()
local f = assert(io.open(script, "w"))
f:write(([[
  local couch = require "couch"
  local srv = couch.connect(%q, { timeout = 120, retries = 5 })
  couch.replicate { source = srv:db(%q), target = srv:db(%q), create_target = true, quiet = true,
                    checkpoint_interval = 500 }
]]):format(url, src.name, tgt.name))
f:close()

-- a full run's duration, measured on a copy, spreads the kills over the whole migration
local t1 = couch.now()
local probe_tgt = srv:db("soak_probe_" .. tag)
couch.replicate { source = src, target = probe_tgt, create_target = true, quiet = true }
local full = couch.now() - t1
probe_tgt:delete()
say("one uninterrupted run: %.1f s (%.0f docs/s)", full, ndocs / full)

math.randomseed(os.time())
local kills, finished_early = 0, 0
local t2 = couch.now()
for _ = 1, nkills do
  -- each run gets about 1/KILLS of a full run's time, at random: the kills land all along
  local delay = 0.3 + math.random() * 2 * full / nkills
  local ok = os.execute(("timeout -s KILL %.2f %s %s >/dev/null 2>&1"):format(delay, couchlua, script))
  if ok then finished_early = finished_early + 1 else kills = kills + 1 end
end
local ok = os.execute(("%s %s"):format(couchlua, script))
os.remove(script)
assert(ok, "the final run failed")
say("%d runs killed with SIGKILL, %d finished before their kill, then a final run: %.1f s in all",
  kills, finished_early, couch.now() - t2)

--- The independent check ----------------------------------------------------------
local function leaves(db) -- id -> sorted list of leaf revs, from _changes style=all_docs
  local out, since = {}, 0
  while true do
    local page = db:request("GET", "/_changes", { query = { style = "all_docs", since = since, limit = 5000 } })
    if #page.results == 0 then break end
    for _, r in ipairs(page.results) do
      local revs = {}
      for _, c in ipairs(r.changes) do revs[#revs + 1] = c.rev end
      table.sort(revs)
      out[r.id] = revs
    end
    since = page.last_seq
  end
  return out
end

-- one leaf as a canonical text: body, _deleted, _revisions, attachments by digest
local function canonical(doc)
  local atts = {}
  for name, a in pairs(doc._attachments or {}) do atts[name] = { digest = a.digest, length = a.length, content_type = a.content_type } end
  doc._attachments = next(atts) and atts or nil
  return json.encode(doc, { sort_keys = true })
end

local function read_leaves(db, reqs)
  local out = {}
  local res = db:request("POST", "/_bulk_get", { query = { revs = true, attachments = false },
                                                 body = { docs = reqs } })
  for _, r in ipairs(res.results) do
    for _, d in ipairs(r.docs) do
      if d.ok then out[d.ok._id .. " " .. d.ok._rev] = canonical(d.ok)
      else out[r.id .. " ?" .. #out] = "error" end
    end
  end
  return out
end

local t3 = couch.now()
local a, b = leaves(src), leaves(tgt)
local problems, checked_ids, checked_leaves = {}, 0, 0
local function problem(fmt, ...) if #problems < 20 then problems[#problems + 1] = fmt:format(...) end end
for id, revs in pairs(a) do
  checked_ids = checked_ids + 1
  local other = b[id]
  if not other then problem("%s missing on the target", id)
  elseif table.concat(revs, ",") ~= table.concat(other, ",") then problem("%s leaves %s vs %s", id, table.concat(revs, ","), table.concat(other, ",")) end
end
for id in pairs(b) do if not a[id] then problem("%s on the target only", id) end end
local reqs = {}
local function compare_batch()
  if #reqs == 0 then return end
  local x, y = read_leaves(src, json.array(reqs)), read_leaves(tgt, json.array(reqs))
  for k, v in pairs(x) do
    checked_leaves = checked_leaves + 1
    if y[k] ~= v then problem("%s differs: %s vs %s", k, v, tostring(y[k])) end
  end
  reqs = {}
end
for id, revs in pairs(a) do
  for _, rev in ipairs(revs) do reqs[#reqs + 1] = { id = id, rev = rev } end
  if #reqs >= 500 then compare_batch() end
end
compare_batch()
say("independent check: %d ids, %d leaves (history, deletion, body, attachment digests) in %.1f s: %s",
  checked_ids, checked_leaves, couch.now() - t3, #problems == 0 and "EQUAL" or (#problems .. "+ differences"))
for _, p in ipairs(problems) do say("  %s", p) end
src:delete()
tgt:delete()
os.exit(#problems == 0 and 0 or 1)
