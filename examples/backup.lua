-- backup.lua: a database to a JSON-lines file and back, every revision that matters kept.
--
--   couchlua examples/backup.lua backup  DB_URL FILE [--page N]
--   couchlua examples/backup.lua restore DB_URL FILE [--page N] [--compare-with DB_URL]
--
-- backup: the first line describes the backup; then one line per document:
--     {"id": "...", "docs": [ leaf revision, ... ]}
-- holding every leaf revision (the winner, conflicts, and deleted leaves), each with its
-- _revisions history (revs=true) and attachments inline (attachments=true). It reads one
-- page of _changes?style=all_docs at a time and fetches that page's leaves with one
-- _bulk_get, so memory stays flat however large the database.
-- restore: writes the lines back in pages with _bulk_docs new_edits=false, which
-- recreates the same revisions (same _rev, same history, conflicts included) instead of
-- new edits; then checks with _revs_diff that every revision in the file is in the
-- database. When it restored into a database that did not exist before, it also runs
-- couch.compare against the original (the database named in the file, on the same
-- server, or --compare-with).
-- _local documents (replication checkpoints) are not part of _changes, and not backed up.
-- Credentials in DB_URL are used, never printed or written to the file.
local couch = require "couch"
local json = couch.json

local function usage(msg)
  io.stderr:write(("backup: %s\nusage: couchlua backup.lua backup|restore DB_URL FILE [--page N] [--compare-with DB_URL]\n"):format(msg))
  os.exit(2)
end

local pos, page, compare_with = {}, 200, nil
do
  local i = 1
  while arg[i] do
    if arg[i] == "--page" then
      page = math.tointeger(tonumber(arg[i + 1])) or usage("--page needs a whole number")
      i = i + 1
    elseif arg[i] == "--compare-with" then
      compare_with = arg[i + 1] or usage("--compare-with needs a database URL")
      i = i + 1
    elseif arg[i]:match("^%-%-") then
      usage("unknown option " .. arg[i])
    else
      pos[#pos + 1] = arg[i]
    end
    i = i + 1
  end
end
local mode, db_url, file = pos[1], pos[2], pos[3]
if (mode ~= "backup" and mode ~= "restore") or not db_url or not file or pos[4] then
  usage("expected backup|restore DB_URL FILE")
end

local function open_db(u)
  local base, name = u:match("^(https?://.-)/([^/?#]+)/?$")
  if not base then usage("a database URL must end with the database name: http://host:port/db") end
  name = name:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  return couch.connect(base):db(name)
end
local db = open_db(db_url)
local where = db.server.url .. "/" .. db.name   -- server.url holds no credentials

local function now_iso() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

---------------------------------------------------------------------------
local function backup()
  local info = db:info()
  local out = assert(io.open(file, "w"))
  out:write(json.encode({ couchlua_backup = 1, db = db.name, server = db.server.url, created = now_iso(),
                          update_seq = info.update_seq, doc_count = info.doc_count }, { sort_keys = true }), "\n")
  local since, lines, revs, failures = 0, 0, 0, 0
  while true do
    local res = db:changes { style = "all_docs", since = since, limit = page }
    if #res.results == 0 then break end
    local reqs, order = {}, {}
    for _, ch in ipairs(res.results) do
      order[#order + 1] = ch.id
      for _, c in ipairs(ch.changes) do reqs[#reqs + 1] = { id = ch.id, rev = c.rev } end
    end
    local leaves = {}
    for _, r in ipairs(db:bulk_get(reqs, { revs = true, attachments = true })) do
      for _, d in ipairs(r.docs) do
        if d.ok then
          leaves[r.id] = leaves[r.id] or json.array {}
          table.insert(leaves[r.id], d.ok)
          revs = revs + 1
        else
          failures = failures + 1
          io.stderr:write(("backup: could not read %s %s: %s\n"):format(r.id, tostring(d.error and d.error.rev),
            tostring(d.error and (d.error.reason or d.error.error))))
        end
      end
    end
    for _, id in ipairs(order) do
      if leaves[id] then
        out:write(json.encode { id = id, docs = leaves[id] }, "\n")
        lines = lines + 1
      end
    end
    since = res.results[#res.results].seq
    if #res.results < page then break end
  end
  out:close()
  print(("backed up %s: %d documents, %d leaf revisions -> %s"):format(where, lines, revs, file))
  if failures > 0 then
    print(("%d revisions could not be read"):format(failures))
    os.exit(1)
  end
end

---------------------------------------------------------------------------
local function restore()
  local input = assert(io.open(file, "r"))
  local header = json.decode(input:read("l") or "null")
  if type(header) ~= "table" or header.couchlua_backup ~= 1 then
    usage(file .. " is not a couchlua backup (no header line)")
  end
  local existed = db:exists()
  if not existed then db:create() end

  local batch, docs_in_batch = {}, 0
  local written, failed, missing, lines = 0, 0, 0, 0
  local function flush()
    if #batch == 0 then return end
    local res = db:bulk_docs(batch, { new_edits = false })
    for _, r in ipairs(res) do      -- CouchDB answers [] when all went well
      if r.error then
        failed = failed + 1
        io.stderr:write(("restore: %s: %s %s\n"):format(tostring(r.id), tostring(r.error), tostring(r.reason)))
      end
    end
    -- every revision of this page must now be in the database
    local want = json.object {}
    for _, d in ipairs(batch) do
      want[d._id] = want[d._id] or json.array {}
      table.insert(want[d._id], d._rev)
    end
    for id, d in pairs(db:revs_diff(want)) do
      if d.missing then
        missing = missing + #d.missing
        io.stderr:write(("restore: %s %s is missing after the write\n"):format(id, table.concat(d.missing, ",")))
      end
    end
    written = written + #batch
    batch = {}
  end
  for line in input:lines() do
    if line ~= "" then
      local entry = json.decode(line)
      for _, d in ipairs(entry.docs) do batch[#batch + 1] = d end
      lines = lines + 1
      if #batch >= page then flush() end
    end
  end
  flush()
  input:close()
  print(("restored %d documents, %d leaf revisions into %s%s"):format(lines, written, where,
    existed and "" or " (new database)"))
  print(("check: %s"):format((missing == 0 and failed == 0) and "every revision in the file is in the database"
    or ("%d revisions failed, %d missing"):format(failed, missing)))
  if missing > 0 or failed > 0 then os.exit(1) end

  -- A fresh copy must equal the original, revision for revision.
  if not existed then
    local original
    if compare_with then
      original = open_db(compare_with)
    elseif header.server == db.server.url and header.db ~= db.name then
      original = db.server:db(header.db)
    end
    if original and original:exists() then
      local report = couch.compare(original, db)
      print(tostring(report))
      if not report.equal then os.exit(1) end
    else
      print("(no original to compare with: pass --compare-with DB_URL)")
    end
  end
end

if mode == "backup" then backup() else restore() end
