-- fleet.lua: back up every database whose name matches a Lua pattern, with server-side
-- replications (the _replicator database), and watch them all at once.
--
--   couchlua examples/fleet.lua URL PATTERN [--continuous] [--seconds N] [--keep]
--     PATTERN      a Lua pattern searched in each database name ("^orders", "%-2024$", ".")
--                  system databases (_users, ...) and *_backup databases are left out
--     --continuous continuous replications (default: one-shot)
--     --seconds N  stop everything after N seconds
--     --keep       leave the replication documents in place at the end (default: one-shot
--                  ones are removed once done; continuous ones are always stopped)
--
-- Each database NAME replicates to NAME_backup (created when missing) under the document id
-- fleet-NAME. One task per replication follows it; all of them share one long-poll of the
-- _replicator database (plus, on CouchDB 2+, one /_scheduler/docs request per second).
-- On a cluster each line names the node the job runs on.
-- The status is one line per replication on stderr: redrawn in place when stderr is a
-- terminal, printed as plain lines (one per change) otherwise. Ctrl-C stops every
-- replication (rep:stop deletes its document) before the script ends.
-- Exit status: 0 when nothing failed, 1 otherwise, 2 on bad arguments.
--
-- pouchdb-server caveat: after a continuous replication is stopped, it treats a new one
-- with the same source, target and options as a duplicate of the stopped one and never
-- starts it (the line stays "initializing"). Real CouchDB does not do this.
local couch = require "couch"

local function usage(msg)
  io.stderr:write(("fleet: %s\nusage: couchlua fleet.lua URL PATTERN [--continuous] [--seconds N] [--keep]\n"):format(msg))
  os.exit(2)
end

local pos, opt = {}, {}
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--continuous" or a == "--keep" then opt[a:sub(3)] = true
    elseif a == "--seconds" then
      opt.seconds = tonumber(arg[i + 1]) or usage("--seconds needs a number")
      i = i + 1
    elseif a:match("^%-%-") then usage("unknown option " .. a)
    else pos[#pos + 1] = a end
    i = i + 1
  end
end
if #pos ~= 2 then usage("expected URL and PATTERN") end
local url, pattern = pos[1], pos[2]
if not pcall(string.find, "", pattern) then usage("bad Lua pattern: " .. pattern) end

local srv = couch.connect(url)
pcall(srv.create_db, srv, "_replicator")   -- pouchdb-server starts without it
local rep = srv:replicator()

---------------------------------------------------------------------------
-- Which databases

local names = {}
for _, name in ipairs(srv:all_dbs()) do
  if not name:match("^_") and not name:match("_backup$") and name:find(pattern) then names[#names + 1] = name end
end
if #names == 0 then
  print(("no database matches %q"):format(pattern))
  os.exit(0)
end
table.sort(names)

---------------------------------------------------------------------------
-- The status display

local tty = os.execute("test -t 2") == true
local width = math.max(40, tonumber(os.getenv("COLUMNS") or "") or 120)
local rows = {}        -- in display order: { id, name, line }
local by_id = {}
local drawn = false

-- st.info is the scheduler's view (CouchDB 2.1+): stats, {error = "..."}, or JSON null
-- (couch.json.null, not nil); pouchdb-server and CouchDB 1.x write _replication_stats and
-- _replication_state_reason into the document instead.
local function stats_of(st)
  if type(st.info) == "table" and st.info.error == nil then return st.info end
  return type(st._replication_stats) == "table" and st._replication_stats or {}
end
local function reason_of(st)
  if type(st.info) == "table" and st.info.error then return st.info.error end
  if st.state ~= "completed" then return st._replication_state_reason end
end

local function describe(row, st)
  local s = stats_of(st)
  local parts = { ("%-24s %-12s"):format(row.name .. " -> " .. row.name .. "_backup", st.state) }
  if s.docs_written then parts[#parts + 1] = ("written %s"):format(tostring(s.docs_written)) end
  if s.docs_read then parts[#parts + 1] = ("read %s"):format(tostring(s.docs_read)) end
  if type(s.changes_pending) == "number" then parts[#parts + 1] = ("pending %d"):format(s.changes_pending) end
  if st.error_count and st.error_count > 0 then parts[#parts + 1] = ("errors %d"):format(st.error_count) end
  if st.node then parts[#parts + 1] = "on " .. st.node end -- a cluster's node running it
  local why = reason_of(st)
  if why then parts[#parts + 1] = "-- " .. tostring(why):gsub("%s+", " ") end
  return (table.concat(parts, "  "):gsub("%s+$", ""))
end

local function draw()
  if tty then
    local out = {}
    if drawn then out[1] = ("\27[%dA"):format(#rows) end
    for _, row in ipairs(rows) do out[#out + 1] = "\r\27[2K" .. row.line:sub(1, width - 1) .. "\n" end
    io.stderr:write(table.concat(out))
    io.stderr:flush()
    drawn = true
  end
end

local function update(row, st)
  row.state = st.state
  if st.state ~= "deleted" then row.last = st end
  local line = describe(row, st)
  if line == row.line then return end
  row.line = line
  if tty then draw() else io.stderr:write(line, "\n") io.stderr:flush() end
end

---------------------------------------------------------------------------
-- Start them all: one _bulk_docs into _replicator per 500

local specs = {}
for _, name in ipairs(names) do
  local id = "fleet-" .. name
  pcall(rep.stop, rep, id)   -- a document left by an earlier run is replaced
  specs[#specs + 1] = { id = id, source = name, target = name .. "_backup", create_target = true,
                        continuous = opt.continuous or false }
end
local results = rep:create_many(specs, { chunk = 500 })
local failed_to_start = 0
for i, r in ipairs(results) do
  local name = names[i]
  if r.error then
    failed_to_start = failed_to_start + 1
    io.stderr:write(("fleet: could not start %s: %s %s\n"):format(name, tostring(r.error), tostring(r.reason)))
  else
    local row = { id = r.id, name = name, line = "", state = "initializing" }
    rows[#rows + 1], by_id[r.id] = row, row
  end
end
print(("fleet: %d %s replication(s) started for %q (Ctrl-C stops them)"):format(#rows,
  opt.continuous and "continuous" or "one-shot", pattern))
for _, row in ipairs(rows) do row.line = describe(row, { state = "initializing" }) end
draw()

---------------------------------------------------------------------------
-- Follow them all

local followers = {}
for i, row in ipairs(rows) do
  followers[i] = couch.spawn("follow " .. row.id, function()
    for st in rep:follow(row.id) do update(row, st) end
    return row.state
  end)
end

local stopping = false
local function stop_all(why)
  if stopping then return end
  stopping = true
  local ids = {}
  for _, row in ipairs(rows) do
    if row.state ~= "deleted" then ids[#ids + 1] = row.id end
  end
  if #ids == 0 then return 0 end
  local ok, res = pcall(rep.stop_many, rep, ids) -- one _bulk_docs per 500
  if not ok then io.stderr:write(("fleet: could not stop them: %s\n"):format(tostring(res))) return 0 end
  for _, r in ipairs(res) do
    if not r.ok then io.stderr:write(("fleet: could not stop %s: %s %s\n"):format(r.id, tostring(r.error), tostring(r.reason))) end
  end
  return res.ok_count
end

if opt.seconds then
  couch.spawn("time limit", function()
    couch.sleep(opt.seconds)
    if not stopping then
      if not tty then io.stderr:write(("fleet: %g s are up: stopping\n"):format(opt.seconds)) end
      stop_all()
    end
  end)
end

-- Wait for every follower. Ctrl-C raises a `cancelled` error at this wait; the couchlua
-- command then also raises "interrupted!" at the next Lua instruction (the return of the
-- inner pcall), hence the two pcalls. Either way: stop them all, then wait again, now for
-- the followers to see their documents go.
local ok, inner_ok, err = pcall(pcall, couch.all, followers)
local interrupted = false
if not (ok and inner_ok) then
  err = ok and err or inner_ok
  if couch.is_error(err) and err.kind ~= "cancelled" then error(err, 0) end
  interrupted = true
  if tty then io.stderr:write("\n") end
  print(("fleet: interrupted: stopping %d replication(s)"):format(#rows))
  stop_all()
  couch.all(followers)
end

---------------------------------------------------------------------------
-- Summary

local count = {}
local bad = failed_to_start
for _, row in ipairs(rows) do
  local final = row.last or { state = "initializing" }
  local state = row.state == "deleted" and (final.state == "completed" and "completed" or "stopped") or final.state
  count[state] = (count[state] or 0) + 1
  if state == "failed" or state == "error" then bad = bad + 1 end
  local s = stats_of(final)
  print((("  %-30s %-10s %s"):format(row.name .. " -> " .. row.name .. "_backup", state,
    s.docs_written and ("docs_written=" .. tostring(s.docs_written)) or ""):gsub("%s+$", "")))
end
-- one-shot replications that ended: remove their documents (unless --keep)
if not opt.keep and not stopping then stop_all() end
local parts = {}
for _, k in ipairs { "completed", "stopped", "failed", "error", "running", "crashing", "pending", "initializing" } do
  if count[k] then parts[#parts + 1] = ("%d %s"):format(count[k], k) end
end
print(("fleet: %d replication(s): %s"):format(#rows, table.concat(parts, ", ")))
os.exit(bad == 0 and 0 or 1)
