-- migrate.lua: copy a database to another one (another server, usually) with couchlua's
-- native replication: couchlua itself reads the source's changes, asks the target what it
-- lacks (_revs_diff), fetches those revisions (_bulk_get) and writes them unchanged
-- (_bulk_docs new_edits=false), checkpointing on both sides. Every revision, conflict,
-- deletion and attachment arrives as it was; a second run resumes from the checkpoint.
-- At the end couch.compare checks every leaf revision on both sides.
--
--   couchlua examples/migrate.lua SOURCE_URL TARGET_URL [options]
--     SOURCE_URL, TARGET_URL   http(s)://[user:password@]host:port/dbname
--     --continuous             keep following the source after catching up, until Ctrl-C
--                              (or --seconds); then finish the batches in flight and compare
--     --seconds N              with --continuous: stop after N seconds
--     --batch-size N           changes per batch (500)
--     --concurrency N          batches in flight (4)
--     --quiet                  no progress line
-- Exit status: 0 when the target holds exactly the source's revisions, 1 when not, 2 on
-- bad arguments. Credentials in the URLs are used, never printed.
local couch = require "couch"

local function usage(msg)
  io.stderr:write(("migrate: %s\nusage: couchlua migrate.lua SOURCE_URL TARGET_URL [--continuous] [--seconds N] [--batch-size N] [--concurrency N] [--quiet]\n"):format(msg))
  os.exit(2)
end

local pos, opt = {}, {}
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--continuous" or a == "--quiet" then
      opt[a:sub(3)] = true
    elseif a == "--seconds" or a == "--batch-size" or a == "--concurrency" then
      local n = tonumber(arg[i + 1])
      if not n or n <= 0 then usage(a .. " needs a positive number") end
      opt[a:sub(3):gsub("-", "_")] = n
      i = i + 1
    elseif a:match("^%-%-") then
      usage("unknown option " .. a)
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
end
if #pos ~= 2 then usage("expected SOURCE_URL and TARGET_URL") end

-- URL -> database object (the server part is one connection; credentials stay in it).
local function open_db(u, what)
  local base, name = u:match("^(https?://.-)/([^/?#]+)/?$")
  if not base then usage(what .. " must be a URL ending with the database name") end
  name = name:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  return couch.connect(base):db(name)
end
local source, target = open_db(pos[1], "SOURCE_URL"), open_db(pos[2], "TARGET_URL")
local function show(db) return db.server.url .. "/" .. db.name end  -- server.url holds no credentials
print(("migrate %s -> %s%s"):format(show(source), show(target), opt.continuous and " (continuous)" or ""))

local t0 = couch.now()
local job = couch.replication {
  source = source, target = target, create_target = true,
  continuous = opt.continuous or false,
  batch_size = opt.batch_size and math.floor(opt.batch_size),
  concurrency = opt.concurrency and math.floor(opt.concurrency),
  quiet = opt.quiet or false,   -- the engine's own progress line on stderr
}

if opt.continuous and opt.seconds then
  couch.spawn("stop after " .. opt.seconds .. " s", function()
    couch.sleep(opt.seconds)
    job:cancel()
  end)
end

-- Wait for the job. Ctrl-C raises a `cancelled` error at the wait (and the couchlua
-- command then raises "interrupted!" at the return of the inner pcall, hence two).
-- Either way the job is told to stop: it finishes the batches in flight and checkpoints,
-- so the next run resumes from there.
local ok, inner_ok, res = pcall(pcall, job.wait, job)
local stats
if ok and inner_ok then
  stats = res
else
  local err = ok and res or inner_ok
  if couch.is_error(err) and err.kind ~= "cancelled" then
    io.stderr:write(("migrate: failed: %s\n"):format(tostring(err)))
    os.exit(1)
  end
  print("interrupted: finishing the batches in flight...")
  job:cancel()
  local ok2, res2 = pcall(job.wait, job)
  if not ok2 then
    io.stderr:write(("migrate: failed: %s\n"):format(tostring(res2)))
    os.exit(1)
  end
  stats = res2
end

local secs = couch.now() - t0
print(("read %d, written %d, failed %d in %.2f s (%d docs/s)"):format(stats.docs_read, stats.docs_written,
  stats.doc_write_failures, secs, math.floor(stats.docs_written / math.max(secs, 1e-3))))
for i, e in ipairs(job:errors()) do
  if i > 10 then print("  ...") break end
  print("  " .. tostring(e))
end

local report = couch.compare(source, target)
print(tostring(report))
os.exit(report.equal and 0 or 1)
