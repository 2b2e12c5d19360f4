-- repair.lua: the cron-style operator script for server-side replications. It finds the
-- replications that are crashing, failed or in error, says why, and recreates the ones it
-- knows how to fix, backing off between attempts across runs.
--
--   couchlua examples/repair.lua [URL] [--db _replicator] [--dry-run] [--settle S]
--                                [--backoff S] [--max-backoff S]
--     URL            the server (default $COUCH_URL); credentials in it are never printed
--     --db NAME      the replicator database (default _replicator)
--     --dry-run      say what would be done, change nothing
--     --settle S     after recreating, watch for up to S seconds (default 15) whether they
--                    now run or complete
--     --backoff S    wait at least S seconds (default 300) before touching the same
--                    replication again; doubled after each attempt, up to --max-backoff
--                    (default 86400). The attempts live in _local/couchlua-repair in the
--                    replicator database, so separate cron runs share them.
--   New credentials for replications failing with 401/403: REPAIR_USER / REPAIR_PASSWORD
--   in the environment (never on the command line, where `ps` shows them).
-- Exit status: 0 when nothing is left needing attention, 1 when something is, 2 on bad
-- arguments.
--
-- Where the problems come from: /_scheduler/docs?states=crashing,failed,error on CouchDB
-- 2.1+; servers without a scheduler (pouchdb-server, CouchDB 1.x) raise an `unsupported`
-- error there, and the script falls back to the states written in the documents.
--
-- What it does with each (the reasons as CouchDB 3.4 words them):
--   "db_not_found: could not open <target>"  recreate with create_target = true
--   "db_not_found: could not open <source>"  report: the source database is missing
--   "... already started, triggered by document X" (a duplicate)  delete this document
--   unauthorized / forbidden / "Name or password is incorrect"    recreate with
--                                            REPAIR_USER / REPAIR_PASSWORD, else report
--   "Couldn't open document `_design/...`"   report: the filter's design doc is missing
--   connection failures while "crashing"     report: the server retries these itself
--   anything else                             recreate unchanged (a fresh start)
-- Without the diagnoses, rep:repair{ states = {"crashing", "failed", "error"} } restarts
-- them all (delete + re-create with the same options) in chunks of one _bulk_docs, and
-- rep:repair{ target = "pattern" } those whose target matches (docs/replication.md).
local couch = require "couch"
local json = couch.json

local function usage(msg)
  io.stderr:write(("repair: %s\nusage: couchlua repair.lua [URL] [--db NAME] [--dry-run] [--settle S] [--backoff S] [--max-backoff S]\n"):format(msg))
  os.exit(2)
end

local opt = { db = "_replicator", settle = 15, backoff = 300, max_backoff = 86400 }
local url
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--dry-run" then opt.dry_run = true
    elseif a == "--db" then opt.db = arg[i + 1] or usage("--db needs a name"); i = i + 1
    elseif a == "--settle" or a == "--backoff" or a == "--max-backoff" then
      local key = a:sub(3):gsub("-", "_")
      opt[key] = tonumber(arg[i + 1]) or usage(a .. " needs a number of seconds")
      i = i + 1
    elseif a:match("^%-%-") then usage("unknown option " .. a)
    elseif not url and a:match("^https?://") then url = a
    else usage("unexpected argument " .. a) end
    i = i + 1
  end
end
url = url or os.getenv("COUCH_URL") or usage("give the server URL (or set COUCH_URL)")

local srv = couch.connect(url)
local rep = srv:replicator(opt.db)
local BAD = { crashing = true, failed = true, error = true }

local function one_line(s) return (tostring(s or "no reason given"):gsub("%s+", " ")) end
-- info is {error = "..."}, stats, or JSON null (couch.json.null, which is not nil)
local function info_error(info) return type(info) == "table" and info.error or nil end

---------------------------------------------------------------------------
-- 1. Which replications need attention

local problems, checked, from = {}, 0, nil
local ok, err = pcall(function()
  local sch = srv:scheduler()
  checked = sch:docs({ db = opt.db, limit = 0 }).total_rows
  for d in sch:docs_iter { db = opt.db, states = { "crashing", "failed", "error" } } do
    problems[#problems + 1] = { id = d.doc_id, state = d.state, reason = info_error(d.info),
                                error_count = d.error_count }
  end
  from = "/_scheduler/docs"
end)
if not ok then
  if not (couch.is_error(err) and err.kind == "unsupported") then error(err, 0) end
  -- No scheduler here: the documents' own states (pouchdb-server: triggered, completed, error).
  for _, st in ipairs(rep:list()) do
    checked = checked + 1
    if BAD[st.state] then
      problems[#problems + 1] = { id = st.id, state = st.state,
                                  reason = info_error(st.info) or st._replication_state_reason }
    end
  end
  from = "the replication documents (this server has no /_scheduler)"
end
print(("repair: %d replication(s) in %s, %d need attention (read from %s)"):format(checked, opt.db, #problems, from))

---------------------------------------------------------------------------
-- 2. The backoff memory, shared by cron runs

local MEMORY_ID = "_local/couchlua-repair"
local memory
do
  local ok, doc = pcall(rep.db.get, rep.db, MEMORY_ID)
  memory = ok and doc or { _id = MEMORY_ID }
  if type(memory.replications) ~= "table" then memory.replications = {} end
end
local now = os.time()

---------------------------------------------------------------------------
-- 3. Diagnose

local function strip(u)
  if type(u) == "table" then u = u.url end
  if type(u) ~= "string" then return nil end
  u = u:gsub("^(%a[%w+.-]*://)[^/@]*@", "%1"):gsub("/+$", "")
  if not u:match("^https?://") then u = srv.url .. "/" .. couch.escape(u) end
  return u
end

local function with_credentials(ep, user, password)
  if type(ep) == "string" then
    if not ep:match("^https?://") then ep = srv.url .. "/" .. couch.escape(ep) end
    ep = { url = ep }
  end
  local out = {}
  for k, v in pairs(ep) do out[k] = v end
  out.url = strip(out.url)
  out.auth = { basic = { username = user, password = password } }
  if type(out.headers) == "table" then   -- an old Authorization header would win over auth
    local h = {}
    for k, v in pairs(out.headers) do if k:lower() ~= "authorization" then h[k] = v end end
    out.headers = json.object(h)
  end
  return out
end

-- -> action ("recreate" | "remove" | "report"), what to say, corrections {field = value}
local function diagnose(p, doc)
  local r = tostring(p.reason or "")
  local low = r:lower()
  if low:find("already started", 1, true) and low:find("triggered by document", 1, true) then
    return "remove", "a duplicate of a replication another document already runs"
  end
  local missing = r:match("db_not_found:? could not open (%S+)") or r:match("could not open (%S+)")
  if missing then
    missing = strip(missing)
    if missing == strip(doc.target) then
      if doc.create_target then return "report", "the target is missing although create_target is set" end
      return "recreate", "the target database is missing", { create_target = true }
    end
    return "report", "the source database is missing: create it or correct the source"
  end
  if low:find("unauthorized", 1, true) or low:find("forbidden", 1, true) or low:find("name or password", 1, true)
    or low:find("%f[%d]40[13]%f[%D]") then
    local user, password = os.getenv("REPAIR_USER"), os.getenv("REPAIR_PASSWORD")
    if user and password then
      return "recreate", "credentials refused: using REPAIR_USER's",
        { source = with_credentials(doc.source, user, password), target = with_credentials(doc.target, user, password) }
    end
    return "report", "credentials refused: fix them (or set REPAIR_USER and REPAIR_PASSWORD)"
  end
  if low:find("couldn't open document `_design/", 1, true) then
    return "report", "the filter's design document is missing on the source"
  end
  if p.state == "crashing" and (low:find("conn_failed", 1, true) or low:find("http_request_failed", 1, true)
    or low:find("timeout", 1, true) or low:find("econnrefused", 1, true)) then
    return "report", ("a connection problem; the server keeps retrying (error_count %s)"):format(tostring(p.error_count or "?"))
  end
  return "recreate", "no known cause: restart it"
end

---------------------------------------------------------------------------
-- 4. Act

local left_alone, acted, recreated = 0, 0, {}
local seen = {}
for _, p in ipairs(problems) do
  seen[p.id] = true
  local got, doc = pcall(rep.db.get, rep.db, p.id)   -- the raw document, credentials and all
  if not got then
    print(("  %s: %s, but its document is gone (%s)"):format(p.id, p.state, tostring(doc)))
  else
    local action, why, fix = diagnose(p, doc)
    print(("  %s: %s -- %s"):format(p.id, p.state, one_line(p.reason)))
    local mem = memory.replications[p.id]
    if action == "report" then
      left_alone = left_alone + 1
      print(("    needs a human: %s"):format(why))
    elseif action == "recreate" and mem and mem.next_try and now < mem.next_try then
      left_alone = left_alone + 1
      print(("    %s; backing off until %s (attempt %d done)"):format(why, os.date("!%Y-%m-%dT%H:%M:%SZ", mem.next_try), mem.attempts))
    elseif opt.dry_run then
      left_alone = left_alone + 1
      local changes = {}
      for k, v in pairs(fix or {}) do changes[#changes + 1] = k .. (type(v) == "table" and " (new credentials)" or (" = " .. tostring(v))) end
      print(("    would %s: %s%s"):format(action, why, #changes > 0 and (" [" .. table.concat(changes, ", ") .. "]") or ""))
    elseif action == "remove" then
      rep:stop(p.id)
      acted = acted + 1
      print(("    removed: %s"):format(why))
    else
      -- recreate: same id, same options, with the corrections
      local opts = {}
      for k, v in pairs(doc) do
        if not k:match("^_") and k ~= "owner" then opts[k] = v end
      end
      for k, v in pairs(fix or {}) do opts[k] = v end
      opts.id = p.id
      local attempts = (mem and mem.attempts or 0) + 1
      rep:stop(p.id)
      local made, cerr = pcall(rep.create, rep, opts)
      if made then
        acted = acted + 1
        recreated[#recreated + 1] = p.id
        local wait_s = math.min(opt.backoff * 2 ^ (attempts - 1), opt.max_backoff)
        memory.replications[p.id] = { attempts = attempts, next_try = now + math.floor(wait_s), reason = one_line(p.reason) }
        print(("    recreated (attempt %d): %s; next attempt not before %ds from now"):format(attempts, why, math.floor(wait_s)))
      else
        left_alone = left_alone + 1
        print(("    could not recreate it: %s"):format(tostring(cerr)))
      end
    end
  end
end

---------------------------------------------------------------------------
-- 5. Did the recreated ones come back? Watch them all at once for --settle seconds.
-- Each task follows one replication until it completes or fails; a running one counts as
-- good at the deadline. At the deadline the watchers are left behind, not cancelled (a
-- task cancelled inside a follow loop does not close it, which would keep the shared
-- _replicator feed going); the os.exit at the end does not wait for them.

local still_bad = 0
if #recreated > 0 and opt.settle > 0 then
  local verdicts = couch.queue()
  local latest, watchers = {}, {}
  for i, id in ipairs(recreated) do
    watchers[i] = couch.spawn("settle " .. id, function()
      for st in rep:follow(id) do
        latest[id] = st
        if st.state == "completed" or BAD[st.state] or st.state == "deleted" then break end
      end
      verdicts:push(id)
    end)
  end
  local deadline, decided = couch.now() + opt.settle, 0
  while decided < #recreated do
    local left = deadline - couch.now()
    if left <= 0 or not verdicts:pop(left) then break end
    decided = decided + 1
  end
  for _, id in ipairs(recreated) do
    local st = latest[id]
    local state = st and st.state or "initializing"
    local good = state == "completed" or state == "running" or state == "pending" or state == "initializing"
    if not good then still_bad = still_bad + 1 end
    print(("  %s after repair: %s%s"):format(id, state,
      (st and info_error(st.info)) and (" -- " .. one_line(info_error(st.info))) or ""))
  end
end

---------------------------------------------------------------------------
-- 6. Remember (forget the ones that are healthy now)

if not opt.dry_run then
  for id in pairs(memory.replications) do
    if not seen[id] then memory.replications[id] = nil end
  end
  memory.replications = json.object(memory.replications)
  local saved, serr = pcall(rep.db.put, rep.db, memory)
  if not saved then io.stderr:write(("repair: could not save the backoff memory: %s\n"):format(tostring(serr))) end
end

print(("repair: %d acted on, %d left alone, %d still failing after repair%s"):format(acted, left_alone, still_bad,
  opt.dry_run and " (dry run: nothing changed)" or ""))
os.exit((left_alone == 0 and still_bad == 0) and 0 or 1)
