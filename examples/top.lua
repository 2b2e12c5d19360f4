-- top.lua: a live view of a server's (or a cluster's) replications.
--
--   couchlua examples/top.lua [URL] [--interval S] [--seconds N] [--db NAME]
--     URL           the server (default $COUCH_URL); credentials in it are never shown
--     --interval S  refresh every S seconds (default 2)
--     --seconds N   end after N seconds (default: until `q`, or Ctrl-C)
--     --db NAME     the replicator database (default _replicator)
--
-- On a terminal the screen is redrawn in place: replications by state and by node, the
-- busiest jobs (docs/s from /_active_tasks), the crashing ones with their reason, and the
-- errors seen since start. Keys: q quits; s cycles a filter of the jobs shown by state
-- (all, running, pending, crashing, error, failed, completed). When stdout is not a
-- terminal it prints one plain summary line per refresh instead.
-- Every request is one /_scheduler/docs page per 1000 replications plus one
-- /_active_tasks; nothing is polled per replication.
local couch = require "couch"

local function usage(msg)
  io.stderr:write(("top: %s\nusage: couchlua top.lua [URL] [--interval S] [--seconds N] [--db NAME]\n"):format(msg))
  os.exit(2)
end

local url, interval, seconds, dbname = nil, 2, nil, "_replicator"
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--interval" then interval = tonumber(arg[i + 1]) or usage("--interval needs a number"); i = i + 1
    elseif a == "--seconds" then seconds = tonumber(arg[i + 1]) or usage("--seconds needs a number"); i = i + 1
    elseif a == "--db" then dbname = arg[i + 1] or usage("--db needs a name"); i = i + 1
    elseif a:match("^%-%-") then usage("unknown option " .. a)
    elseif not url then url = a
    else usage("one URL only") end
    i = i + 1
  end
end
url = url or os.getenv("COUCH_URL") or usage("no URL (argument or $COUCH_URL)")

local srv = couch.connect(url)
local sched = srv:scheduler()
local redact = require "couch.redact"
local tty = os.execute("test -t 1") == true and os.execute("test -t 0") == true

---------------------------------------------------------------------------
-- The terminal: keys without Enter, no echo; restored however the script ends

local saved
local function raw_mode()
  local p = io.popen("stty -g 2>/dev/null")
  saved = p:read("l")
  p:close()
  os.execute("stty -icanon -echo min 0 time 0 2>/dev/null")
  io.write("\27[?25l") -- hide the cursor
end
local function restore()
  if saved then os.execute("stty " .. saved .. " 2>/dev/null"); saved = nil end
  if tty then io.write("\27[?25h\n"); io.flush() end
end

-- credentials inside a text (an error message naming a URL) are cut out
local function scrub(s) return (s:gsub("(%a[%w+.-]*://)[^/%s\"'@]+@", "%1")) end

-- a key pressed since the last call, or nil (stdin returns at once: min 0 time 0)
local function key() return io.stdin:read(1) end

---------------------------------------------------------------------------
-- One look at the server

local FILTERS = { false, "running", "pending", "crashing", "error", "failed", "completed" }
local filter_at = 1
local started = couch.now()
local errors_seen, last_errors = 0, {}  -- error_count increases since start, by doc id
local last_written, last_at = {}, nil   -- docs_written by replication id, for docs/s

local function look()
  local view = { states = {}, nodes = {}, total = 0, crashing = {}, rows = {} }
  for d in sched:docs_iter { db = dbname, page_size = 1000 } do
    view.total = view.total + 1
    view.states[d.state] = (view.states[d.state] or 0) + 1
    local node = type(d.node) == "string" and d.node or nil
    if node then
      view.nodes[node] = view.nodes[node] or {}
      view.nodes[node][d.state] = (view.nodes[node][d.state] or 0) + 1
    end
    local n = type(d.error_count) == "number" and d.error_count or 0
    local before = last_errors[d.doc_id]
    if before and n > before then errors_seen = errors_seen + (n - before)
    elseif not before and n > 0 and last_at then errors_seen = errors_seen + n end
    last_errors[d.doc_id] = n
    if d.state == "crashing" or d.state == "error" or d.state == "failed" then
      local why = type(d.info) == "table" and d.info.error or "?"
      view.crashing[#view.crashing + 1] = { id = d.doc_id, state = d.state, count = n,
        why = scrub(tostring(why)):gsub("%s+", " ") }
    end
    view.rows[d.doc_id] = d
  end
  local now = couch.now()
  local busy = {}
  local ok, tasks = pcall(srv.active_tasks, srv, { type = "replication" })
  for _, t in ipairs(ok and tasks or {}) do
    local key_ = t.replication_id or t.doc_id or "?"
    local w = tonumber(t.docs_written) or 0
    local rate = 0
    if last_at and last_written[key_] then rate = (w - last_written[key_]) / math.max(0.001, now - last_at) end
    last_written[key_] = w
    busy[#busy + 1] = { id = t.doc_id ~= couch.json.null and t.doc_id or key_, node = t.node, rate = rate, written = w }
  end
  last_at = now
  table.sort(busy, function(a, b) return a.rate > b.rate or (a.rate == b.rate and a.written > b.written) end)
  view.busy = busy
  table.sort(view.crashing, function(a, b) return a.id < b.id end)
  return view
end

---------------------------------------------------------------------------
-- Drawing

local ORDER = { "running", "pending", "crashing", "error", "initializing", "completed", "failed" }

local function counts_line(t)
  local parts = {}
  for _, s in ipairs(ORDER) do if t[s] then parts[#parts + 1] = ("%s %d"):format(s, t[s]) end end
  return #parts > 0 and table.concat(parts, "  ") or "none"
end

local function screen(view)
  local w = math.max(60, tonumber(os.getenv("COLUMNS") or "") or 100)
  local out = {}
  local function line(s) out[#out + 1] = "\27[2K" .. s:sub(1, w - 1) end
  local filter = FILTERS[filter_at]
  line(("couchlua top  %s  %s  up %ds  (q quit, s filter: %s)"):format(redact.url(url), dbname,
    math.floor(couch.now() - started), filter or "all"))
  line("")
  line(("replications %d: %s"):format(view.total, counts_line(view.states)))
  local nodes = {}
  for n in pairs(view.nodes) do nodes[#nodes + 1] = n end
  table.sort(nodes)
  for _, n in ipairs(nodes) do line(("  %-24s %s"):format(n, counts_line(view.nodes[n]))) end
  line(("errors since start: %d"):format(errors_seen))
  line("")
  line("busiest jobs                       docs/s   written  node")
  local shown = 0
  for _, b in ipairs(view.busy) do
    local row = view.rows[b.id]
    if not filter or (row and row.state == filter) then
      line(("  %-32s %7.1f %9d  %s"):format(b.id, b.rate, b.written, b.node or ""))
      shown = shown + 1
      if shown >= 8 then break end
    end
  end
  if shown == 0 then line("  (none)") end
  line("")
  line("crashing / in error")
  shown = 0
  for _, c in ipairs(view.crashing) do
    if not filter or c.state == filter then
      line(("  %-24s %-8s x%-3d %s"):format(c.id, c.state, c.count, c.why))
      shown = shown + 1
      if shown >= 8 then break end
    end
  end
  if shown == 0 then line("  (none)") end
  if filter then
    line("")
    line(("jobs %s:"):format(filter))
    local ids = {}
    for id, d in pairs(view.rows) do if d.state == filter then ids[#ids + 1] = id end end
    table.sort(ids)
    for i = 1, math.min(#ids, 10) do line("  " .. ids[i]) end
    if #ids > 10 then line(("  ... %d more"):format(#ids - 10)) end
  end
  io.write("\27[H", table.concat(out, "\n"), "\n\27[J")
  io.flush()
end

local function plain(view)
  local nodes = {}
  for n, t in pairs(view.nodes) do nodes[#nodes + 1] = ("%s[%s]"):format(n, counts_line(t)) end
  table.sort(nodes)
  print(("top: %d replications: %s; errors since start %d%s"):format(view.total, counts_line(view.states),
    errors_seen, #nodes > 0 and ("; " .. table.concat(nodes, " ")) or ""))
  io.flush()
end

---------------------------------------------------------------------------
-- The loop

if tty then raw_mode(); io.write("\27[2J") end
local ok, err = pcall(function()
  while true do
    local view = look()
    if tty then screen(view) else plain(view) end
    local until_ = couch.now() + interval
    while couch.now() < until_ do
      if seconds and couch.now() - started >= seconds then return end
      if tty then
        local k = key()
        if k == "q" then return end
        if k == "s" then filter_at = filter_at % #FILTERS + 1; screen(view) end
      end
      couch.sleep(0.1)
    end
  end
end)
restore()
if not ok then
  if couch.is_error(err) and err.kind == "cancelled" then os.exit(0) end
  io.stderr:write("top: ", tostring(err), "\n")
  os.exit(1)
end
