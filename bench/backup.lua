-- bench/backup.lua: couch.backup / couch.restore (the couchlua-backup / couchlua-restore
-- commands) next to IBM's couchbackup / couchrestore 2.11.12 (.deps/couchbackup, pinned
-- by scripts/setup) on the same documents, and next to the server's own ceiling:
--   * ceiling, read: _changes pages of 500 + _bulk_get?revs=true of each (answers not
--     decoded, nothing written), 5 in flight: what any backup tool can reach;
--   * ceiling, write: the backup file's lines POSTed as they are to _bulk_docs
--     (new_edits=false), 5 in flight: what any restore can reach;
--   * each tool as its own command in a child process, timed, with its peak RSS
--     (/usr/bin/time's maximum resident set); both with their defaults (buffer 500,
--     parallelism 5, full mode). couchbackup needs tests/support/couchbackup/shim.js in
--     front of pouchdb-server (it adds _changes' "pending" and doc_del_count); couchlua is
--     timed both straight to the server and through the shim, so the ratio compares like
--     with like.
--   * every restore is checked (doc_count and a sample of documents equal): a benchmark of
--     a broken copy is worthless, so a difference is reported and fails the run.
-- Figures are printed, never asserted.
--
--   couchlua bench/backup.lua            (BENCH_URL or COUCH_URL: the server; or bench/run backup)
-- Environment: BENCH_BACKUP_PARTS and BENCH_COUCHLUA_BEFORE (below), BENCH_BACKUP_DOCS (10000), BENCH_BIG=1 (adds 100,000 documents;
--   pouchdb-server grows to ~1 GB), BENCH_DOC_BYTES (about 1000 per document),
--   BENCH_BACKUP_ROUNDS (2: best of, in alternating order; 1 at 100,000).
local dir = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "bench"
package.path = dir .. "/?.lua;" .. dir .. "/../tests/support/?.lua;" .. package.path
local couch = require "couch"
local B = require "common"
local json = couch.json
local out = B.out

local ROOT = os.getenv("COUCHLUA_SOURCE_DIR") or (dir .. "/..")
local COUCHLUA = os.getenv("BENCH_COUCHLUA") or arg[-1] or "build/couchlua"
local CMD = ROOT .. "/examples/couchlua-backup.lua"
local CB = ROOT .. "/.deps/couchbackup/node_modules/@cloudant/couchbackup/bin/"
local url = B.url()
local srv = couch.connect(url)

local sizes = { tonumber(os.getenv("BENCH_BACKUP_DOCS")) or 10000 }
if os.getenv("BENCH_BIG") == "1" then sizes[#sizes + 1] = 100000 end
local DOC_BYTES = tonumber(os.getenv("BENCH_DOC_BYTES")) or 1000
local ROUNDS = math.max(1, tonumber(os.getenv("BENCH_BACKUP_ROUNDS")) or 2)

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local created = {}
local function new_db(prefix)
  local db = srv:db(B.dbname(prefix))
  db:create()
  created[#created + 1] = db
  return db
end
local tmpfiles = {}
local function tmp() local p = os.tmpname(); tmpfiles[#tmpfiles + 1] = p; return p end
local function cleanup()
  for _, db in ipairs(created) do pcall(db.delete, db) end
  for _, f in ipairs(tmpfiles) do os.remove(f) end
end

local function fill(db, n)
  local pad = ("x"):rep(math.max(0, DOC_BYTES - 200))
  local per = 1000
  local tasks = {}
  for first = 1, n, per do
    tasks[#tasks + 1] = function()
      local docs = {}
      for i = first, math.min(n, first + per - 1) do
        docs[#docs + 1] = { _id = ("doc%07d"):format(i), n = i, f = i / 7, tags = { "a", "b", i % 13 },
                            nested = { x = i, y = json.array {}, z = { s = "é😀" } }, pad = pad }
      end
      db:bulk_docs(docs)
    end
    if #tasks == 4 then couch.all(tasks); tasks = {} end
  end
  if #tasks > 0 then couch.all(tasks) end
end

-- run a shell command; returns ok, seconds, peak RSS in kB and CPU seconds (user +
-- system) of the command (from /usr/bin/time)
local function timed(cmd, env)
  local rss = tmp()
  local t0 = couch.now()
  local ok = os.execute(("%s /usr/bin/time -f '%%M %%U %%S' -o %s %s"):format(env or "", q(rss), cmd))
  local secs = couch.now() - t0
  local f = io.open(rss)
  local kb, u, s = (f and f:read("a") or ""):match("(%d+) ([%d.]+) ([%d.]+)%s*$")
  if f then f:close() end
  return ok == true, secs, tonumber(kb), u and (tonumber(u) + tonumber(s))
end

-- the raw read ceiling: _changes + _bulk_get, 5 batches in flight, answers not decoded
local function read_ceiling(db, n)
  local t0 = couch.now()
  local qd = couch.queue(5)
  local workers = {}
  for i = 1, 5 do
    workers[i] = couch.spawn(function()
      while true do
        local reqs = qd:pop()
        if not reqs then return end
        db:request("POST", "/_bulk_get", { query = { revs = true }, body = { docs = reqs }, raw = true })
      end
    end)
  end
  local since, seen = 0, 0
  while true do
    local res = db:changes { since = since, limit = 500 }
    if #res.results == 0 then break end
    local reqs = {}
    for i, ch in ipairs(res.results) do reqs[i] = { id = ch.id } end
    seen = seen + #reqs
    qd:push(reqs)
    if #res.results < 500 then break end
    since = res.results[#res.results].seq
  end
  qd:close()
  for _, w in ipairs(workers) do w:wait() end
  assert(seen == n, ("read %d of %d documents"):format(seen, n))
  return n / (couch.now() - t0)
end

-- the raw write ceiling: the file's lines as _bulk_docs bodies, 5 in flight
local function write_ceiling(file, db, n)
  local t0 = couch.now()
  local qd = couch.queue(5)
  local workers = {}
  for i = 1, 5 do
    workers[i] = couch.spawn(function()
      while true do
        local body = qd:pop()
        if not body then return end
        db:request("POST", "/_bulk_docs", { body = body })
      end
    end)
  end
  for line in io.lines(file) do
    if line:sub(1, 1) == "[" then qd:push('{"new_edits":false,"docs":' .. line .. "}") end
  end
  qd:close()
  for _, w in ipairs(workers) do w:wait() end
  local got = db:info().doc_count
  assert(got == n, ("wrote %d of %d documents"):format(got, n))
  return n / (couch.now() - t0)
end

local failures = 0
local function check_copy(what, src, dst, n)
  local count = dst:info().doc_count
  local bad
  if count ~= n then
    bad = ("%d documents, expected %d"):format(count, n)
  else
    for _, i in ipairs { 1, n // 2, n } do
      local id = ("doc%07d"):format(i)
      local a, b = src:get(id), dst:get(id)
      if json.encode(a, { sort_keys = true }) ~= json.encode(b, { sort_keys = true }) then bad = id .. " differs" end
    end
  end
  if bad then
    failures = failures + 1
    out("  !! %s: the restored copy is wrong: %s", what, bad)
  end
end

local have_cb = io.open(CB .. "couchbackup.bin.js") ~= nil and os.execute("command -v node >/dev/null 2>&1") == true
local shim_url, shim_pipe
if have_cb then
  local np = require "node_process"
  local port
  port, shim_pipe = np.start("../support/couchbackup/shim.js", q(url), "the couchbackup shim")
  shim_url = "http://127.0.0.1:" .. port
else
  out("couchbackup is not installed (.deps/couchbackup; scripts/setup installs it) or node is missing: couchlua only")
end

local function rate(n, secs) return secs and n / secs end
local function fmt_rate(r) return r and B.int(r) or "n/a" end

-- BENCH_BACKUP_PARTS: which parts run (default all): "compare" (the tools side by side,
-- above), "shallow" (couchlua-backup -m shallow at parallelism 1 and 5, docs/s), "resume"
-- (the peak RSS of resuming a full backup of BENCH_RESUME_DOCS small documents, 100,000
-- by default, whose log lacks the last batch's ":d": a resume reads the whole log and file)
local PARTS = {}
for p in (os.getenv("BENCH_BACKUP_PARTS") or "compare,shallow,resume"):gmatch("[^,%s]+") do PARTS[p] = true end

-- BENCH_COUCHLUA_BEFORE: another couchlua binary (an earlier build) timed beside this one
-- in the shallow and resume parts, alternating, so a before/after is one run on one server
-- (BENCH_CMD_BEFORE: its couchlua-backup.lua, when the command changed too)
local BUILDS = { { label = "", bin = COUCHLUA, cmd = CMD } }
if os.getenv("BENCH_COUCHLUA_BEFORE") then
  BUILDS = { { label = "before", bin = os.getenv("BENCH_COUCHLUA_BEFORE"), cmd = os.getenv("BENCH_CMD_BEFORE") or CMD },
             { label = "after ", bin = COUCHLUA, cmd = CMD } }
end

local function part_shallow(n)
  out("shallow mode, %s documents of ~%d bytes (couchlua-backup -m shallow, best of %d)", B.int(n), DOC_BYTES, ROUNDS)
  local src = new_db("bk_shallow")
  fill(src, n)
  local file = tmp()
  for _, par in ipairs { 1, 5 } do
    local best, peak = {}, {}
    for round = 1, ROUNDS do
      for k = 1, #BUILDS do
        local b = BUILDS[round % 2 == 1 and k or #BUILDS + 1 - k]
        local okb, secs, kb = timed(("%s %s backup --db %s -q -m shallow -p %d -o %s"):format(q(b.bin), q(b.cmd),
          q(src.name), par, q(file)), "COUCH_URL=" .. q(url))
        if not okb then failures = failures + 1; out("  !! couchlua-backup -m shallow failed") end
        if not best[b] or secs < best[b] then best[b] = secs end
        if kb and (not peak[b] or kb > peak[b]) then peak[b] = kb end
        local docs = 0
        for line in io.lines(file) do
          if line:sub(1, 1) == "[" then docs = docs + #json.decode(line) end
        end
        if docs ~= n then failures = failures + 1; out("  !! the shallow file holds %d documents, expected %d", docs, n) end
      end
    end
    for _, b in ipairs(BUILDS) do
      out("  %s -p %d: %10s docs/s  peak RSS %s", b.label, par, B.int(n / best[b]), peak[b] and B.mb(peak[b]) or "-")
    end
  end
  pcall(src.delete, src)
  out("")
end

local function part_resume(n)
  out("resume of a full backup of %s small documents (the log lacks the last batch's :d)", B.int(n))
  local src = new_db("bk_resume")
  local t0 = couch.now()
  local per, tasks = 2000, {}
  for first = 1, n, per do
    tasks[#tasks + 1] = function()
      local docs = {}
      for i = first, math.min(n, first + per - 1) do docs[#docs + 1] = { _id = ("doc%07d"):format(i), n = i } end
      src:bulk_docs(docs)
    end
    if #tasks == 4 then couch.all(tasks); tasks = {} end
  end
  if #tasks > 0 then couch.all(tasks) end
  out("  filled in %.1fs", couch.now() - t0)
  local file, log = tmp(), tmp()
  for _, b in ipairs(BUILDS) do
    os.remove(log)
    local okb, secs, kb = timed(("%s %s backup --db %s -q -l %s -o %s"):format(q(b.bin), q(b.cmd), q(src.name), q(log), q(file)),
      "COUCH_URL=" .. q(url))
    if not okb then failures = failures + 1; out("  !! couchlua-backup -l failed") end
    out("  %s full backup with a log: %10s docs/s  peak RSS %s", b.label, B.int(n / secs), kb and B.mb(kb) or "-")
  end
  -- as if killed before the last batch: drop its line from the file and its :d from the log
  local lines = {}
  for l in io.lines(log) do lines[#lines + 1] = l end
  local last
  for i = #lines, 1, -1 do
    if lines[i]:match("^:d ") then last = table.remove(lines, i); break end
  end
  local loglines = table.concat(lines, "\n") .. "\n"
  local keep = {}
  for l in io.lines(file) do keep[#keep + 1] = l end
  table.remove(keep)
  local filelines = table.concat(keep, "\n") .. "\n"
  keep = nil
  for _, b in ipairs(BUILDS) do
    local f = assert(io.open(log, "w"))
    f:write(loglines)
    f:close()
    f = assert(io.open(file, "w"))
    f:write(filelines)
    f:close()
    local okr, rsecs, rkb = timed(("%s %s backup --db %s -q -l %s -o %s -r"):format(q(b.bin), q(b.cmd), q(src.name), q(log),
      q(file)), "COUCH_URL=" .. q(url))
    if not okr then failures = failures + 1; out("  !! couchlua-backup --resume failed") end
    local docs = 0
    for line in io.lines(file) do
      if line:sub(1, 1) == "[" then
        local okd, v = pcall(json.decode, line)
        if okd then docs = docs + #v end
      end
    end
    if docs ~= n then failures = failures + 1; out("  !! the resumed file holds %d documents, expected %d", docs, n) end
    out("  %s resume (%s): %.1fs, peak RSS %s", b.label, last, rsecs, rkb and B.mb(rkb) or "-")
  end
  pcall(src.delete, src)
  out("")
end

local ok, err = pcall(function()
  if PARTS.shallow then part_shallow(sizes[1]) end
  if PARTS.resume then part_resume(tonumber(os.getenv("BENCH_RESUME_DOCS")) or 100000) end
  for si, n in ipairs(PARTS.compare and sizes or {}) do
    if si > 1 then ROUNDS = 1 end
    out("%s documents of ~%d bytes", B.int(n), DOC_BYTES)
    local src = new_db("bk_src")
    local t0 = couch.now()
    fill(src, n)
    out("  filled in %.1fs", couch.now() - t0)
    local rows = {}
    local function row(tool, what, docs_s, kb, note)
      rows[#rows + 1] = { tool, what, docs_s, kb, note }
    end
    -- best of ROUNDS for each (pouchdb-server warms up, and 2 shared cores are noisy),
    -- in alternating order
    local best = {}
    local function cpu_note(key)
      local b = best[key]
      return b and b.cpu and ("its CPU %.1fs = %.0f%% of the wall"):format(b.cpu, 100 * b.cpu / b.secs) or ""
    end
    local function keep(key, secs, kb, cpu)
      local b = best[key] or {}
      best[key] = b
      if secs and (not b.secs or secs < b.secs) then b.secs, b.cpu = secs, cpu end
      if kb and (not b.kb or kb > b.kb) then b.kb = kb end
    end
    local f_cl, f_cls, f_cb = tmp(), tmp(), tmp()
    local function cl_backup(via, file)
      local okb, secs, kb, cpu = timed(("%s %s backup --db %s -q -o %s"):format(q(COUCHLUA), q(CMD), q(src.name), q(file)),
        "COUCH_URL=" .. q(via))
      if not okb then failures = failures + 1; out("  !! couchlua-backup failed") end
      return secs, kb, cpu
    end
    local function cb_backup()
      local okb, secs, kb, cpu = timed(("node %s --db %s > %s 2>/dev/null"):format(q(CB .. "couchbackup.bin.js"), q(src.name), q(f_cb)),
        "COUCH_URL=" .. q(shim_url))
      if not okb then failures = failures + 1; out("  !! couchbackup failed") end
      return secs, kb, cpu
    end
    local function cl_restore(via, what)
      local dst = new_db("bk_dst")
      local okr, secs, kb, cpu = timed(("%s %s restore --db %s -q -i %s"):format(q(COUCHLUA), q(CMD), q(dst.name), q(f_cl)),
        "COUCH_URL=" .. q(via))
      if not okr then failures = failures + 1; out("  !! couchlua-restore failed") end
      check_copy(what, src, dst, n)
      pcall(dst.delete, dst)
      return secs, kb, cpu
    end
    local function cb_restore()
      local dst = new_db("bk_dst")
      local okr, secs, kb, cpu = timed(("node %s --db %s < %s 2>/dev/null"):format(q(CB .. "couchrestore.bin.js"), q(dst.name), q(f_cb)),
        "COUCH_URL=" .. q(shim_url))
      if not okr then failures = failures + 1; out("  !! couchrestore failed") end
      check_copy("couchrestore", src, dst, n)
      pcall(dst.delete, dst)
      return secs, kb, cpu
    end
    local function ceiling_write()
      local dst = new_db("bk_ceil")
      local t = n / write_ceiling(f_cl, dst, n)
      pcall(dst.delete, dst)
      return t
    end
    read_ceiling(src, n)   -- warm-up
    for round = 1, ROUNDS do
      local steps = {
        function() keep("read", n / read_ceiling(src, n)) end,
        function() keep("cl", cl_backup(url, f_cl)) end,
        function() if have_cb then keep("cls", cl_backup(shim_url, f_cls)) end end,
        function() if have_cb then keep("cb", cb_backup()) end end,
      }
      for i = 1, #steps do steps[round % 2 == 1 and i or #steps + 1 - i]() end
      steps = {
        function() keep("write", ceiling_write()) end,
        function() keep("clr", cl_restore(url, "couchlua-restore")) end,
        function() if have_cb then keep("clrs", cl_restore(shim_url, "couchlua-restore via the shim")) end end,
        function() if have_cb then keep("cr", cb_restore()) end end,
      }
      for i = 1, #steps do steps[round % 2 == 1 and i or #steps + 1 - i]() end
    end
    local function r(key) return best[key] and best[key].secs and n / best[key].secs end
    local function kb(key) return best[key] and best[key].kb end
    local read_ceil, write_ceil = r("read"), r("write")
    row("server ceiling", "read: _changes + _bulk_get", read_ceil, nil, "5 in flight, in-process")
    row("couchlua-backup", "backup (direct)", r("cl"), kb("cl"), cpu_note("cl"))
    row("couchlua-backup", "backup (via shim)", r("cls"), kb("cls"), cpu_note("cls"))
    row("couchbackup", "backup (via shim)", r("cb"), kb("cb"), cpu_note("cb"))
    row("server ceiling", "write: _bulk_docs new_edits=false", write_ceil, nil, "5 in flight, in-process")
    row("couchlua-restore", "restore (direct)", r("clr"), kb("clr"), cpu_note("clr"))
    row("couchlua-restore", "restore (via shim)", r("clrs"), kb("clrs"), cpu_note("clrs"))
    row("couchrestore", "restore (via shim)", r("cr"), kb("cr"), cpu_note("cr"))
    local cl_rate, cls_rate, cb_rate = r("cl"), r("cls"), r("cb")
    local clr_rate, clrs_rate, cr_rate = r("clr"), r("clrs"), r("cr")

    out("  %-17s %-36s %10s %10s  %s", "tool", "what", "docs/s", "peak RSS", "")
    for _, r in ipairs(rows) do
      out("  %-17s %-36s %10s %10s  %s", r[1], r[2], fmt_rate(r[3]), r[4] and B.mb(r[4]) or "-", r[5] or "")
    end
    if cb_rate then
      out("  ratio couchlua-backup / couchbackup, both via the shim: %.2fx (direct: %.2fx)   goal >= 3x",
        cls_rate / cb_rate, cl_rate / cb_rate)
      out("  ratio couchlua-restore / couchrestore, both via the shim: %.2fx (direct: %.2fx)", clrs_rate / cr_rate,
        clr_rate / cr_rate)
    end
    out("  couchlua-backup at %.0f%% of the read ceiling, couchlua-restore at %.0f%% of the write ceiling",
      100 * cl_rate / read_ceil, 100 * clr_rate / write_ceil)
    out("")
  end
end)
cleanup()
if shim_pipe then shim_pipe:close() end
if not ok then
  io.stderr:write("bench/backup.lua: ", tostring(err), "\n")
  os.exit(1)
end
os.exit(failures == 0 and 0 or 1)
