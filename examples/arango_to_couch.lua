-- Copy an ArangoDB collection into a CouchDB database, through a dump batch and `dump`
-- chunks (couch.arango), with progress.
--
--   couchlua examples/arango_to_couch.lua ARANGO_URL COLLECTION COUCH_URL [COUCH_DB]
--            [--database NAME] [--chunk-size BYTES] [--ttl SECONDS] [--jwt]
--
--   ARANGO_URL  e.g. http://root:pw@127.0.0.1:8529 (credentials in the URL: basic auth,
--               or a JWT from /_open/auth with --jwt)
--   COUCH_URL   e.g. http://admin:pw@127.0.0.1:5984; COUCH_DB defaults to COLLECTION
--   --database  the ArangoDB database (default _system)
--
-- How it works: a dump batch pins a snapshot of the ArangoDB database; the collection is
-- read chunk after chunk (one chunk in memory, plus one being written) while a second task
-- writes the previous chunk to CouchDB with _bulk_docs -- both run on couch's one event
-- loop. The batch's TTL is extended as the copy goes on and the batch is deleted at the
-- end, also when the copy fails. Running it again updates the documents in place (their
-- current CouchDB revisions are looked up first), so it can be re-run after a failure.
--
-- Each ArangoDB document becomes a CouchDB document with _id = its _key; the attributes
-- ArangoDB reserves (_id, _rev, _from, _to) move under "arango" = {id, rev, from, to},
-- since CouchDB refuses other top-level names that start with "_".
local couch = require "couch"
local arango = require "couch.arango"

local function die(msg, code)
  io.stderr:write("arango_to_couch: ", msg, "\n")
  os.exit(code or 2)
end

local function parse_args(argv)
  local o = { positional = {}, chunk_size = 256 * 1024, ttl = 120, database = "_system" }
  local i = 1
  while i <= #argv do
    local a = argv[i]
    local function value()
      i = i + 1
      if argv[i] == nil then die(a .. " needs a value") end
      return argv[i]
    end
    if a == "--database" then o.database = value()
    elseif a == "--chunk-size" then o.chunk_size = math.tointeger(tonumber(value())) or die("--chunk-size: a number of bytes")
    elseif a == "--ttl" then o.ttl = tonumber(value()) or die("--ttl: a number of seconds")
    elseif a == "--jwt" then o.jwt = true
    elseif a == "-h" or a == "--help" then
      print("usage: couchlua examples/arango_to_couch.lua ARANGO_URL COLLECTION COUCH_URL [COUCH_DB] "
        .. "[--database NAME] [--chunk-size BYTES] [--ttl SECONDS] [--jwt]")
      os.exit(0)
    elseif a:sub(1, 2) == "--" then die("unknown option " .. a)
    else o.positional[#o.positional + 1] = a end
    i = i + 1
  end
  local p = o.positional
  if #p < 3 or #p > 4 then die("usage: arango_to_couch.lua ARANGO_URL COLLECTION COUCH_URL [COUCH_DB] [options]") end
  o.arango_url, o.collection, o.couch_url, o.couch_db = p[1], p[2], p[3], p[4] or p[2]
  return o
end

local opts = parse_args(arg or {})

local function log(fmt, ...) io.stdout:write(fmt:format(...), "\n"); io.stdout:flush() end

-- An ArangoDB document as a CouchDB document.
local RESERVED = { _id = "id", _rev = "rev", _from = "from", _to = "to" }
local function to_couch(data)
  local doc, meta = couch.json.object {}, couch.json.object {}
  for k, v in pairs(data) do
    if k == "_key" then
      doc._id = v
    elseif RESERVED[k] then
      meta[RESERVED[k]] = v
    elseif type(k) == "string" and k:sub(1, 1) == "_" then
      meta[k:sub(2)] = v
    else
      doc[k] = v
    end
  end
  doc.arango = meta
  return doc
end

-- Write one dump chunk: documents (2300 / 2301) are put, deletions (2302) deleted.
local function write_chunk(cdb, chunk)
  local docs, ids, deleted = {}, {}, {}
  for _, e in ipairs(chunk.content) do
    if e.type == 2300 or e.type == 2301 then
      local doc = to_couch(e.data)
      docs[#docs + 1] = doc
      ids[#ids + 1] = doc._id
    elseif e.type == 2302 then -- only MMFiles-era dumps carry deletions
      local key = e.key or (e.data and e.data._key)
      if key then deleted[#deleted + 1] = key; ids[#ids + 1] = key end
    end
  end
  if #ids == 0 then return 0, 0 end
  local revs = {}
  for _, row in ipairs(cdb:all_docs { keys = ids }.rows) do
    if row.value and row.value.rev then revs[row.id] = row.value.rev end
  end
  for _, doc in ipairs(docs) do doc._rev = revs[doc._id] end
  for _, key in ipairs(deleted) do
    if revs[key] then docs[#docs + 1] = { _id = key, _rev = revs[key], _deleted = true } end
  end
  local errors = 0
  for _, r in ipairs(cdb:bulk_docs(docs)) do
    if r.error then
      errors = errors + 1
      if errors <= 5 then io.stderr:write(("  %s: %s %s\n"):format(tostring(r.id), tostring(r.error), tostring(r.reason))) end
    end
  end
  return #docs - errors, errors
end

local function copy()
  local adb = arango.connect(opts.arango_url, { database = opts.database, auth = opts.jwt and "jwt" or nil })
  local rep = adb:replication()
  local srv = couch.connect(opts.couch_url)
  local cdb = srv:db(opts.couch_db)
  cdb:create { exist_ok = true }

  local batch = rep:create_dump_batch(opts.ttl)
  log("%s: dump batch %s at tick %s (ttl %gs)", tostring(adb), batch.id, batch.last_tick, opts.ttl)
  local started = couch.now()
  local ok, res = pcall(function()
    local inv = rep:inventory(batch.id, false)
    local found
    for _, c in ipairs(inv.collections) do
      if c.parameters.name == opts.collection then found = c.parameters end
    end
    if not found then
      error(couch.error("usage", ("ArangoDB database '%s' has no collection '%s'"):format(opts.database, opts.collection)), 0)
    end
    log("copying %s collection '%s' into %s", found.edge and "edge" or "document", opts.collection, tostring(cdb))

    -- the reader (this task) and the writer (another task) overlap through a small queue
    local q = couch.queue(2)
    local totals = { docs = 0, errors = 0, chunks = 0 }
    local writer = couch.spawn(function()
      while true do
        local chunk = q:pop()
        if not chunk then return end
        local n, errors = write_chunk(cdb, chunk)
        totals.docs, totals.errors, totals.chunks = totals.docs + n, totals.errors + errors, totals.chunks + 1
        local secs = couch.now() - started
        log("chunk %d: %d docs written (%d in all, %.0f docs/s), last tick %s%s", chunk.n, n, totals.docs,
            totals.docs / math.max(secs, 1e-6), tostring(chunk.last_included),
            errors > 0 and (", %d errors"):format(errors) or "")
      end
    end)
    local extended = couch.now()
    local reader_ok, reader_err = pcall(function()
      for chunk in rep:dump_chunks(opts.collection, batch.id, opts.chunk_size) do
        q:push(chunk)
        if couch.now() - extended > opts.ttl / 3 then -- keep the snapshot alive
          rep:extend_dump_batch(batch.id, opts.ttl)
          extended = couch.now()
        end
      end
    end)
    q:close()
    writer:wait()
    if not reader_ok then error(reader_err, 0) end
    log("copied %d documents from ArangoDB %s/%s to CouchDB %s in %.2fs (%d chunks, %d errors)", totals.docs,
        opts.database, opts.collection, opts.couch_db, couch.now() - started, totals.chunks, totals.errors)
    return totals
  end)
  local dok, derr = pcall(rep.delete_dump_batch, rep, batch.id)
  if not dok then io.stderr:write("arango_to_couch: could not delete the dump batch: ", tostring(derr), "\n") end
  if not ok then error(res, 0) end
  return res
end

local task = couch.spawn(copy)
local ok, res = pcall(task.wait, task)
if not ok then die(tostring(res), 1) end
if res.errors > 0 then os.exit(1) end
