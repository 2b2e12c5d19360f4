-- couchlua demo: what the couch module does today, against COUCH_URL (scripts/demo starts
-- a local pouchdb-server and sets it). Run: couchlua examples/demo.lua
local couch = require "couch"
local json = couch.json

local url = os.getenv("COUCH_URL") or "http://127.0.0.1:5984"
local srv = couch.connect(url)
local tty = os.execute("test -t 2") -- live progress line only on a terminal

local function step(title) print(("\n== %s"):format(title)) end

step("connect")
local info = srv:info()
print(("server   %s"):format(tostring(srv)))      -- credentials are never printed
print(("welcome  %s"):format(info.couchdb or info["express-pouchdb"] or "?"))
print(("version  %s%s"):format(info.version, info.vendor and ("  (" .. (info.vendor.name or "") .. ")") or ""))

step("create a database")
local name = ("couchlua_demo_%d"):format(os.time())
local db = srv:create_db(name)
print(("created  %s"):format(db.name))

step("write 2,000 documents from 8 concurrent tasks, 50 per _bulk_docs")
local total, per_batch, workers = 2000, 50, 8
local written, t0 = 0, couch.now()
local function progress(final)
  local line = ("written  %5d / %d  %3d%%"):format(written, total, written * 100 // total)
  if tty then io.stderr:write("\r" .. line .. (final and "\n" or "")) io.stderr:flush()
  elseif (final and written % 500 ~= 0) or (not final and written % 500 == 0) then print(line) end
end
local queue = couch.queue()
for first = 1, total, per_batch do queue:push(first) end
queue:close()
local tasks = {}
for w = 1, workers do
  tasks[w] = couch.spawn("writer " .. w, function()
    local mine = 0
    while true do
      local first = queue:pop()
      if not first then return mine end
      local docs = {}
      for i = first, first + per_batch - 1 do
        docs[#docs + 1] = { _id = ("order:%05d"):format(i), n = i, total = i * 1.25,
                            tags = json.array {}, big = 9007199254740993 }
      end
      for _, r in ipairs(db:bulk_docs(docs)) do
        if r.ok then written = written + 1; mine = mine + 1 end
      end
      progress()
    end
  end)
end
local counts = couch.all(tasks)
progress(true)
local secs = couch.now() - t0
print(("by task  %s   (%.2f s, %d docs/s)"):format(table.concat(counts, " "), secs, math.floor(total / secs)))

step("read them back")
print(("doc_count %d"):format(db:info().doc_count))
local doc = db:get("order:00042")
print(("order:00042  %s"):format(json.encode(doc)))
local seen = 0
for _ in db:all_docs_iter { page_size = 500 } do seen = seen + 1 end
print(("paged through all_docs: %d rows, 500 at a time"):format(seen))

step("follow the changes feed while a task writes")
local since = db:changes({ limit = 0, since = "now" }).last_seq
couch.spawn(function()
  for i = 1, 3 do couch.sleep(0.2); db:put { _id = "live:" .. i } end
end)
local n = 0
for change in db:changes_feed { since = since, poll = 5 } do
  n = n + 1
  print(("change   %s  seq %s"):format(change.id, json.encode(change.seq)))
  if n == 3 then break end
end

step("errors are values with fields")
local ok, err = pcall(db.get, db, "no-such-doc")
print(("caught   %s"):format(tostring(err)))
print(("fields   kind=%s status=%s error=%s"):format(err.kind, err.status, err.error))

step("native migration with a transform and live progress (couchlua moves the documents)")
local target = srv:db(name .. "_reshaped")
local stats = couch.replicate {
  source = db, target = target, create_target = true,
  filter = function(doc) return doc.n == nil or doc.n % 4 ~= 0 end,      -- drop every 4th order
  transform = function(doc) doc.total_cents = doc.total and math.floor(doc.total * 100); return doc end,
}
print(("migrated read=%d written=%d failed=%d skipped=%d"):format(stats.docs_read, stats.docs_written,
  stats.doc_write_failures, stats.docs_skipped or 0))
print(("reshaped %s"):format(json.encode(target:get("order:00042"))))

step("native copy without hooks: exact bytes, revisions and history, then compare")
local copy = srv:db(name .. "_copy")
couch.replicate { source = db, target = copy, create_target = true, quiet = true }
print(tostring(couch.compare(db, copy)))
print(("again:   a second run resumes from its checkpoint and reads %d documents"):format(
  couch.replicate { source = db, target = copy, quiet = true }.docs_read))

step("server-side replication through the _replicator database, followed to the end")
pcall(srv.create_db, srv, "_replicator")
local rep = srv:replicator()
local rid = name .. "_backup"
rep:create { id = rid, source = db.name, target = rid, create_target = true }
for state in rep:follow(rid) do
  local st = state._replication_stats or state.info or {}
  print(("state    %-12s docs_written=%s"):format(state.state, tostring(st.docs_written or "-")))
end
print(tostring(couch.compare(db, srv:db(rid))))
rep:stop(rid)

for _, extra in ipairs { target, copy, srv:db(rid) } do pcall(extra.delete, extra) end
db:delete()
print(("\ndeleted  %s and its copies — done."):format(name))
