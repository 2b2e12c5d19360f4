-- couch.backup / couch.restore: a database to a file and back, in the file format of IBM's
-- couchbackup (@cloudant/couchbackup), so files cross between the two tools both ways.
--
-- The file: a first line of metadata {"name","version","mode","attachments"}, then one JSON
-- array of documents per line (one batch). Mode "full" (default) holds each document's
-- winning revision with its _revisions history (from _changes + _bulk_get?revs=true);
-- mode "shallow" holds the winning revision from _all_docs?include_docs=true, without
-- history. A resumed backup appends a resume marker line ({"marker":...}), which ends any
-- line the interruption cut short, and restore skips it, as couchrestore does.
--
-- The log (full mode, `log = path`) is couchbackup's too: ":t batchN [{"id":..},..]" for
-- each batch of ids spooled from _changes, ":changes_complete SEQ" once they are all
-- spooled, ":d batchN" once a batch is in the backup file. `resume = true` fetches only the
-- batches without ":d", after checking the backup file for batches written just before
-- an interruption (so none is written twice).
--
-- Every request goes through the database object, so both run on the loop: they yield
-- inside a task and block at the top level. File I/O is plain Lua io.
return function(couch)
  local json = couch.json

  local RESUME_MARKER = "@cloudant/couchbackup:resume"
  local RESUME_LINE = '{"marker":"' .. RESUME_MARKER .. '"}'

  local function usage(arg, msg)
    couch._raise("usage", ("bad argument '%s': %s"):format(arg, msg), { argument = arg })
  end
  -- code: couchbackup's error name (its CLI's exit code follows from it)
  local function fail(code, msg, fields)
    fields = fields or {}
    fields.code = code
    couch._raise("backup", msg, fields)
  end

  local function is_db(x)
    return type(x) == "table" and getmetatable(x) == couch._Database
  end

  local function check_int(opts, k, default)
    local v = opts[k]
    if v == nil then return default end
    if math.type(v) ~= "integer" or v < 1 then usage(k, "expected a positive whole number") end
    return v
  end

  local BACKUP_OPTS = { source = true, file = true, mode = true, buffer_size = true, log = true,
                        resume = true, attachments = true, parallelism = true, progress = true }
  local RESTORE_OPTS = { target = true, file = true, buffer_size = true, parallelism = true,
                         progress = true }
  local function check_opts(opts, known, fn)
    if type(opts) ~= "table" then usage("opts", fn .. " expects a table of options") end
    for k in pairs(opts) do
      if not known[k] then usage(tostring(k), "unknown option of " .. fn) end
    end
  end

  -- an io handle, or a path opened with `how`; returns handle, close-needed
  local function open_file(file, how, arg)
    if io.type(file) == "file" then return file, false end
    if type(file) ~= "string" or file == "" then usage(arg or "file", "expected a path or an open io file") end
    local f, err = io.open(file, how)
    if not f then fail("FileError", ("cannot open %s: %s"):format(file, err), { file = file }) end
    return f, true
  end

  local function write(f, s, what)
    local ok, err = f:write(s)
    if not ok then fail("FileError", ("cannot write %s: %s"):format(what, err)) end
  end
  local function flush(f, what)
    local ok, err = f:flush()
    if not ok then fail("FileError", ("cannot write %s: %s"):format(what, err)) end
  end

  -- The winning revisions of `ids` with their history, in the order given.
  local function fetch(db, ids, attachments)
    local reqs = {}
    for i, id in ipairs(ids) do reqs[i] = { id = id } end
    local docs = json.array {}
    for _, r in ipairs(db:bulk_get(reqs, { revs = true, attachments = attachments or nil })) do
      for _, d in ipairs(r.docs or {}) do
        if d.ok then docs[#docs + 1] = d.ok end
      end
    end
    return docs
  end

  local function header(mode, attachments)
    return json.encode({ name = "couchlua", version = couch.version, mode = mode,
                         attachments = attachments and true or false }, { sort_keys = true }) .. "\n"
  end

  ---------------------------------------------------------------------------
  -- the log

  -- Reads a couchbackup log: {batches = {[n] = {ids}}, done = {[n] = true}, complete = seq|nil}
  local function read_log(path)
    local f = io.open(path, "r")
    if not f then fail("LogDoesNotExist", ("the log file %s does not exist"):format(path), { file = path }) end
    local st = { batches = {}, done = {}, complete = nil, count = 0 }
    for line in f:lines() do
      local n, ids = line:match("^:t%s+batch(%d+)%s+(.*)$")
      if n then
        local ok, list = pcall(json.decode, ids)
        if ok and type(list) == "table" then   -- a line cut short is ignored, like couchbackup
          local t = {}
          for i, e in ipairs(list) do t[i] = e.id end
          st.batches[tonumber(n)] = t
          st.count = math.max(st.count, tonumber(n) + 1)
        end
      else
        n = line:match("^:d%s+batch(%d+)")
        if n then st.done[tonumber(n)] = true
        else
          local seq = line:match("^:changes_complete%s*(.*)$")
          if seq then st.complete = seq end
        end
      end
    end
    f:close()
    return st
  end

  -- Spools every id of _changes into the log, buffer_size per batch.
  local function spool(db, logf, logpath, size)
    local since, batch, lines = 0, 0, {}
    local last
    while true do
      local res = db:changes { since = since, limit = size }
      local ids = json.array {}
      for _, ch in ipairs(res.results) do ids[#ids + 1] = json.object { id = ch.id } end
      if #ids > 0 then
        write(logf, (":t batch%d %s\n"):format(batch, json.encode(ids)), logpath)
        lines[batch] = true
        batch = batch + 1
      end
      last = res.last_seq
      if #res.results < size then break end
      since = res.results[#res.results].seq
    end
    write(logf, (":changes_complete %s\n"):format(type(last) == "string" and last or json.encode(last)), logpath)
    flush(logf, logpath)
  end

  -- Ids already in the backup file (complete lines only): a batch written just before
  -- an interruption, whose ":d" never reached the log, is found here.
  local function ids_in_file(path)
    local seen = {}
    local f = io.open(path, "r")
    if not f then return seen end
    for line in f:lines() do
      if line:sub(1, 1) == "[" then
        local ok, docs = pcall(json.decode, line)
        if ok and type(docs) == "table" then
          for _, d in ipairs(docs) do if type(d) == "table" and d._id then seen[d._id] = true end end
        end
      end
    end
    f:close()
    return seen
  end

  ---------------------------------------------------------------------------
  --- couch.backup{ source = db, file = path|io, mode = "full"|"shallow", buffer_size = 500,
  ---              log = path, resume = bool, attachments = bool } -> stats
  function couch.backup(opts)
    check_opts(opts, BACKUP_OPTS, "couch.backup")
    local db = opts.source
    if not is_db(db) then usage("source", "expected a database (srv:db(name))") end
    local mode = opts.mode or "full"
    if mode ~= "full" and mode ~= "shallow" then usage("mode", 'expected "full" or "shallow"') end
    local size = check_int(opts, "buffer_size", 500)
    check_int(opts, "parallelism", 1)
    local attachments = opts.attachments and true or false
    if opts.resume and not opts.log then usage("resume", "resume needs the log of the interrupted backup (log = path)") end
    if opts.resume and mode ~= "full" then usage("resume", "only a full backup can resume") end
    if opts.resume and type(opts.file) ~= "string" then usage("file", "resume appends to the backup file: give its path") end
    if opts.log ~= nil and (type(opts.log) ~= "string" or opts.log == "") then usage("log", "expected a path") end
    if opts.log and mode ~= "full" then usage("log", "a log is kept in full mode only") end
    local progress = opts.progress
    if progress ~= nil and type(progress) ~= "function" then usage("progress", "expected a function(stats)") end

    db:info()   -- a missing database fails here (http 404), before the file is touched

    local stats = { docs = 0, batches = 0, mode = mode, resumed = false }
    local what = type(opts.file) == "string" and opts.file or "the backup file"

    if mode == "shallow" then
      local f, close = open_file(opts.file, "w")
      write(f, header(mode, attachments), what)
      local q = { include_docs = true, limit = size, attachments = attachments or nil }
      while true do
        local rows = db:all_docs(q).rows
        if #rows == 0 then break end
        local docs = json.array {}
        for i, r in ipairs(rows) do docs[i] = r.doc end
        write(f, json.encode(docs) .. "\n", what)
        stats.docs, stats.batches = stats.docs + #docs, stats.batches + 1
        if progress then progress(stats) end
        if #rows < size then break end
        q.startkey = rows[#rows].id .. "\0"
      end
      flush(f, what)
      if close then f:close() end
      return stats
    end

    -- full mode without a log: _changes one page at a time, straight into the file
    if not opts.log then
      local f, close = open_file(opts.file, "w")
      write(f, header(mode, attachments), what)
      local since = 0
      while true do
        local res = db:changes { since = since, limit = size }
        if #res.results == 0 then break end
        local ids = {}
        for i, ch in ipairs(res.results) do ids[i] = ch.id end
        local docs = fetch(db, ids, attachments)
        write(f, json.encode(docs) .. "\n", what)
        stats.docs, stats.batches = stats.docs + #docs, stats.batches + 1
        if progress then progress(stats) end
        if #res.results < size then break end
        since = res.results[#res.results].seq
      end
      flush(f, what)
      if close then f:close() end
      return stats
    end

    -- full mode with a log: spool the ids first, then fetch the batches not yet done
    local logpath = opts.log
    local st, f
    if opts.resume then
      st = read_log(logpath)
    end
    if st and st.complete then
      stats.resumed = true
      local seen = ids_in_file(opts.file)
      local logf = open_file(logpath, "a", "log")
      for n = 0, st.count - 1 do
        local ids = st.batches[n]
        if ids and not st.done[n] then
          for _, id in ipairs(ids) do
            if seen[id] then st.done[n] = true; write(logf, (":d batch%d\n"):format(n), logpath); break end
          end
        end
      end
      flush(logf, logpath)
      logf:close()
      f = open_file(opts.file, "a")
      write(f, RESUME_LINE .. "\n", what)   -- ends a line cut short; restore skips it
    else
      -- a fresh backup (also a resume whose spooling never finished: nothing was fetched)
      if opts.resume then stats.resumed = true end
      f = open_file(opts.file, "w")
      write(f, header(mode, attachments), what)
      flush(f, what)
      local logf = open_file(logpath, "w", "log")
      spool(db, logf, logpath, size)
      logf:close()
      st = read_log(logpath)
    end
    local logf = open_file(logpath, "a", "log")
    for n = 0, st.count - 1 do
      local ids = st.batches[n]
      if ids and not st.done[n] then
        local docs = fetch(db, ids, attachments)
        write(f, json.encode(docs) .. "\n", what)
        flush(f, what)
        write(logf, (":d batch%d\n"):format(n), logpath)
        flush(logf, logpath)
        stats.docs, stats.batches = stats.docs + #docs, stats.batches + 1
        if progress then progress(stats) end
      end
    end
    logf:close()
    if type(opts.file) == "string" then f:close() else flush(f, what) end
    return stats
  end

  ---------------------------------------------------------------------------
  --- couch.restore{ file = path|io, target = db, buffer_size = 500 } -> stats
  function couch.restore(opts)
    check_opts(opts, RESTORE_OPTS, "couch.restore")
    local db = opts.target
    if not is_db(db) then usage("target", "expected a database (srv:db(name))") end
    local size = check_int(opts, "buffer_size", 500)
    check_int(opts, "parallelism", 1)
    local progress = opts.progress
    if progress ~= nil and type(progress) ~= "function" then usage("progress", "expected a function(stats)") end
    local what = type(opts.file) == "string" and opts.file or "the backup file"

    db:info()   -- a missing database fails here (http 404)

    local f, close = open_file(opts.file, "r")
    local stats = { docs = 0, batches = 0, lines = 0, mode = nil }
    local lenient = true   -- files before couchbackup 2.10 have no metadata; their broken lines are skipped

    local function write_docs(docs, lineno)
      for i = 1, #docs, size do
        local chunk = json.array {}
        for j = i, math.min(i + size - 1, #docs) do chunk[#chunk + 1] = docs[j] end
        local new_edits = nil
        if chunk[1]._rev then new_edits = false end
        local res = db:bulk_docs(chunk, { new_edits = new_edits })
        for _, r in ipairs(res) do
          if r.error then
            fail("RestoreError", ("line %d: document %s: %s (%s)"):format(lineno, tostring(r.id), tostring(r.error),
              tostring(r.reason)), { line = lineno, id = r.id })
          end
        end
        stats.docs, stats.batches = stats.docs + #chunk, stats.batches + 1
        if progress then progress(stats) end
      end
    end

    local lineno = 0
    for line in f:lines() do
      lineno = lineno + 1
      stats.lines = lineno
      if line ~= "" and line ~= RESUME_LINE then
        local ok, v = pcall(json.decode, line)
        if not ok then
          if not lenient then
            if not (stats.mode == "full" and line:sub(-#RESUME_LINE) == RESUME_LINE) then
              if close then f:close() end
              fail("BackupFileJsonError", ("line %d of %s: cannot parse as JSON"):format(lineno, what), { line = lineno })
            end
          end
        elseif type(v) == "table" and json.is_array(v) then
          if #v > 0 then write_docs(v, lineno) end
        elseif lineno == 1 and type(v) == "table" and v.name and v.version and v.mode then
          stats.mode = v.mode
          lenient = false
        elseif type(v) == "table" and v.marker == RESUME_MARKER then
          -- a resume marker with something else on the line: nothing to restore
        else
          if close then f:close() end
          fail("BackupFileJsonError", ("line %d of %s: not an array of documents or the expected metadata"):format(lineno, what),
            { line = lineno })
        end
      end
    end
    if close then f:close() end
    return stats
  end
end
