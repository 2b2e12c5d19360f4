-- couch.backup / couch.restore: a database to a file and back, in the file format of IBM's
-- couchbackup (@cloudant/couchbackup), so files cross between the two tools both ways, and
-- in a lossless superset of it (revisions = "all").
--
-- The file: a first line of metadata {"name","version","mode","attachments"}, then one JSON
-- array of documents per line (one batch). Mode "full" (default) holds each document's
-- winning revision with its _revisions history (from _changes + _bulk_get?revs=true);
-- mode "shallow" holds the winning revision from _all_docs?include_docs=true, without
-- history. A resumed backup appends a resume marker line ({"marker":...}), which ends any
-- line the interruption cut short, and restore skips it, as couchrestore does.
--
-- revisions = "all": the same lines, holding every leaf revision (winner, conflicts,
-- deleted leaves) with its _revisions and inline attachments, read from
-- _changes?style=all_docs and _bulk_get?revs=true&attachments=true&latest=true (one
-- open_revs GET per document where the server has no _bulk_get), as the native engine
-- reads a source. Its header has "format":"couchlua-all-revisions" and "format_version"
-- and no "mode": couchrestore refuses it at line 1 instead of restoring it with numbers
-- rounded by JavaScript. Its last line is {"end":"couchlua-all-revisions"}: a file
-- without it is incomplete, and restore says so. Documents are written as the exact bytes
-- the server sent.
--
-- The log (full mode, `log = path`) is couchbackup's too: ":t batchN [{"id":..},..]" for
-- each batch of ids spooled from _changes (with "revs" in all-revisions mode),
-- ":changes_complete SEQ" once they are all spooled, ":d batchN" once a batch is in the
-- backup file. `resume = true` fetches only the batches without ":d", after checking the
-- backup file for batches written just before an interruption (so none is written twice).
--
-- A restore log (`couch.restore{ log = path }`) has ":restore FIRST-LINE" then ":l N COUNT"
-- once line N of the file is entirely in the database, and ":restore_complete TOTAL" at the
-- end; `resume = true` skips the lines marked and re-sends the others, which is idempotent
-- because they are written with new_edits = false (the revision is already there: nothing
-- changes, nothing is duplicated).
--
-- Every request goes through the database object, so both run on the loop: they yield
-- inside a task and block at the top level; `parallelism` batches are in flight at once,
-- each in a task of its own. File I/O is plain Lua io.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  local json = couch.json

  local RESUME_MARKER = "@cloudant/couchbackup:resume"
  local RESUME_LINE = '{"marker":"' .. RESUME_MARKER .. '"}'
  local FORMAT = "couchlua-all-revisions"
  local FORMAT_VERSION = 1
  -- the last line of a finished all-revisions backup: a file without it is incomplete
  local END_LINE = '{"end":"' .. FORMAT .. '"}'

  local usage = I.usage -- usage(argument, why): a `usage` error naming it
  -- code: couchbackup's error name (its CLI's exit code follows from it)
  local function fail(code, msg, fields)
    fields = fields or {}
    fields.code = code
    I.raise("backup", msg, fields)
  end

  local function is_db(x)
    return type(x) == "table" and getmetatable(x) == I.Database
  end

  local function check_int(opts, k, default)
    local v = opts[k]
    if v == nil then return default end
    if math.type(v) ~= "integer" or v < 1 then usage(k, "expected a positive whole number") end
    return v
  end

  local BACKUP_OPTS = { source = true, file = true, mode = true, buffer_size = true, log = true, resume = true,
                        attachments = true, parallelism = true, progress = true, revisions = true }
  local RESTORE_OPTS = { target = true, file = true, buffer_size = true, parallelism = true, progress = true,
                         log = true, resume = true }
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

  ---------------------------------------------------------------------------
  -- `parallelism` batches in flight: produce(push) runs in the caller (a task or the top
  -- level) and pushes items; n tasks run work(item). The first error stops the producer
  -- at its next push, the other workers drop what is left, and it is raised here once
  -- every worker has ended; an error of the producer (or Ctrl-C there) cancels them.
  local function pipeline(n, produce, work)
    local q = couch.queue(n)
    local failed
    local function worker()
      while true do
        local item = q:pop()
        if item == nil then return end
        if not failed then
          local ok, err = pcall(work, item)
          if not ok and not failed then failed = err end
        end
      end
    end
    local tasks = {}
    for i = 1, n do tasks[i] = couch.spawn("backup worker", worker) end
    local ok, err = pcall(produce, function(item)
      if failed then error(failed, 0) end
      q:push(item)
      if failed then error(failed, 0) end
    end)
    q:close()
    if not ok then
      failed = failed or err
      for _, t in ipairs(tasks) do t:cancel() end
    end
    for _, t in ipairs(tasks) do pcall(t.wait, t) end
    if failed then error(failed, 0) end
  end

  ---------------------------------------------------------------------------
  -- reading documents as the exact bytes the server sent

  -- A slice holds no raw line break (JSON has them only as whitespace), so one batch
  -- is one line whatever the server's spacing.
  local function one_line(s)
    if s:find("[\r\n]") then s = s:gsub("[\r\n]", " ") end
    return s
  end

  -- couchbackup's files name an attachment's type "contentType" (the Cloudant SDK's name),
  -- and couchrestore reads only that: couchbackup-format files with attachments carry it
  -- beside CouchDB's "content_type" (couch.restore drops it again)
  local function with_sdk_content_types(text)
    local d = json.decode(text)
    if type(d._attachments) ~= "table" then return text end
    for _, a in pairs(d._attachments) do
      if type(a) == "table" and a.content_type ~= nil and a.contentType == nil then a.contentType = a.content_type end
    end
    return json.encode(d)
  end

  local function entry_error(e)
    local x = e.entry or {}
    if x.missing then return "missing", "no such revision " .. tostring(x.missing) end
    local er = type(x.error) == "table" and x.error or x
    return tostring(er.error or "error"), tostring(er.reason or ""), er.rev
  end

  -- The documents that reqs ({id =, rev =} each; rev nil: the winner) name, as JSON texts.
  -- run.lossless: every error is fatal (nothing may be missing from the file); otherwise a
  -- document that cannot be read (a deleted one read without a rev) is left out, as
  -- couchbackup does.
  local function fetch(run, reqs)
    local db = run.db
    local q = { revs = true, attachments = run.attachments or nil, latest = run.lossless or nil }
    local slices
    if not run.no_bulk_get then
      local text, status = db:request("POST", "/_bulk_get", { query = q, body = { docs = reqs }, raw = true,
        idempotent = true, allow = { [400] = true, [404] = true, [405] = true, [501] = true } })
      if status >= 400 then
        run.no_bulk_get = true   -- CouchDB before 2.3 and proxies: one GET per document, as the native engine
      else
        local why
        slices, why = I.slice_docs(text)
        if not slices then fail("FetchError", "the _bulk_get answer is " .. tostring(why)) end
      end
    end
    if run.no_bulk_get then
      slices = {}
      local order, revs = {}, {}
      for _, r in ipairs(reqs) do
        if not revs[r.id] then order[#order + 1] = r.id; revs[r.id] = json.array {} end
        if r.rev then revs[r.id][#revs[r.id] + 1] = r.rev end
      end
      for _, id in ipairs(order) do
        local oq = { revs = true, attachments = run.attachments or nil, latest = run.lossless or nil,
                     open_revs = #revs[id] > 0 and json.encode(revs[id]) or "all" }
        local text = db:request("GET", "/" .. couch.doc_path(id), { query = oq, raw = true,
          headers = { Accept = "application/json" }, idempotent = true })
        local got, why = I.slice_docs(text)
        if not got then fail("FetchError", ("the open_revs answer for %s is %s"):format(id, tostring(why)), { id = id }) end
        for _, s in ipairs(got) do
          if not s.json then s.group = id end
          slices[#slices + 1] = s
        end
      end
    end
    local out, seen = {}, {}
    for _, s in ipairs(slices) do
      if s.json then
        local key = s.id .. "\0" .. s.rev
        if not seen[key] then   -- latest=true: two old revisions can lead to one leaf
          seen[key] = true
          local text = s.json
          if run.attachments and not run.lossless and text:find('"_attachments"', 1, true) then
            text = with_sdk_content_types(text)
          end
          out[#out + 1] = one_line(text)
        end
      elseif run.lossless then
        local err, reason, rev = entry_error(s)
        fail("FetchError", ("document %s%s could not be read: %s %s"):format(tostring(s.group),
          rev and (" revision " .. tostring(rev)) or "", err, reason), { id = s.group, rev = rev })
      end
    end
    return out
  end

  -- the _bulk_get requests of one page of _changes
  local function reqs_of(results, lossless)
    local reqs = {}
    for _, ch in ipairs(results) do
      if lossless then
        for _, c in ipairs(ch.changes) do reqs[#reqs + 1] = { id = ch.id, rev = c.rev } end
      else
        reqs[#reqs + 1] = { id = ch.id }
      end
    end
    return reqs
  end

  local function header(mode, attachments, lossless)
    if lossless then
      return json.encode({ name = "couchlua", version = couch.version, format = FORMAT, format_version = FORMAT_VERSION,
                           revisions = "all", attachments = true }, { sort_keys = true }) .. "\n"
    end
    return json.encode({ name = "couchlua", version = couch.version, mode = mode,
                         attachments = attachments and true or false }, { sort_keys = true }) .. "\n"
  end

  -- What the first line of a backup file says: "all" (couchlua's lossless format), a
  -- couchbackup mode, or nil (no header); raises for a format this version cannot read.
  local function check_header(v, what)
    if type(v) ~= "table" or json.is_array(v) then return nil end
    if v.format ~= nil or v.format_version ~= nil then
      if v.format ~= FORMAT then
        fail("BackupFormatUnknown", ("line 1 of %s: unknown backup format %s"):format(what, json.encode(v.format)),
          { line = 1 })
      end
      local fv = v.format_version
      if math.type(fv) ~= "integer" or fv < 1 then
        fail("BackupFileJsonError", ("line 1 of %s: format_version must be a positive whole number"):format(what), { line = 1 })
      end
      if fv > FORMAT_VERSION then
        fail("BackupFormatTooNew", ("line 1 of %s: %s format version %d is newer than this couchlua (%s) reads "
          .. "(up to %d): restore it with a newer couchlua"):format(what, FORMAT, fv, tostring(couch.version), FORMAT_VERSION),
          { line = 1, format_version = fv })
      end
      return "all"
    end
    if v.name and v.version and v.mode then return v.mode end
    return nil
  end

  ---------------------------------------------------------------------------
  -- the log

  -- Reads a couchbackup log: {batches = {[n] = {ids}}, revs = {[n] = {[i] = {revs}}}, done = {[n] = true}, complete = seq|nil}
  local function read_log(path)
    local f = io.open(path, "r")
    if not f then fail("LogDoesNotExist", ("the log file %s does not exist"):format(path), { file = path }) end
    local st = { batches = {}, revs = {}, done = {}, complete = nil, count = 0 }
    for line in f:lines() do
      local n, ids = line:match("^:t%s+batch(%d+)%s+(.*)$")
      if n then
        local ok, list = pcall(json.decode, ids)
        if ok and type(list) == "table" then   -- a line cut short is ignored, like couchbackup
          local t, r = {}, {}
          for i, e in ipairs(list) do t[i] = e.id; r[i] = e.revs end
          n = tonumber(n)
          st.batches[n], st.revs[n] = t, r
          st.count = math.max(st.count, n + 1)
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

  -- Spools every id (and in all-revisions mode its leaves) of _changes into the log,
  -- buffer_size per batch.
  local function spool(db, logf, logpath, size, lossless)
    local since, batch = 0, 0
    local last
    while true do
      local res = db:changes { since = since, limit = size, style = lossless and "all_docs" or nil }
      local ids = json.array {}
      for _, ch in ipairs(res.results) do
        local e = json.object { id = ch.id }
        if lossless then
          e.revs = json.array {}
          for _, c in ipairs(ch.changes) do e.revs[#e.revs + 1] = c.rev end
        end
        ids[#ids + 1] = e
      end
      if #ids > 0 then
        write(logf, (":t batch%d %s\n"):format(batch, json.encode(ids)), logpath)
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
  -- an interruption, whose ":d" never reached the log, is found here. Also returns what
  -- the file's header says (see check_header).
  local function ids_in_file(path)
    local seen, kind = {}, nil
    local f = io.open(path, "r")
    if not f then return seen end
    local n = 0
    for line in f:lines() do
      n = n + 1
      if n == 1 then
        local ok, v = pcall(json.decode, line)
        if ok then kind = check_header(v, path) end
      end
      if line:sub(1, 1) == "[" then
        local ok, docs = pcall(json.decode, line)
        if ok and type(docs) == "table" then
          for _, d in ipairs(docs) do if type(d) == "table" and d._id then seen[d._id] = true end end
        end
      end
    end
    f:close()
    return seen, kind
  end

  ---------------------------------------------------------------------------
  --- couch.backup{ source = db, file = path|io, mode = "full"|"shallow", revisions = "winning"|"all",
  ---              buffer_size = 500, parallelism = 5, log = path, resume = bool, attachments = bool,
  ---              progress = fn } -> stats
  function couch.backup(opts)
    check_opts(opts, BACKUP_OPTS, "couch.backup")
    local db = opts.source
    if not is_db(db) then usage("source", "expected a database (srv:db(name))") end
    local mode = opts.mode or "full"
    if mode ~= "full" and mode ~= "shallow" then usage("mode", 'expected "full" or "shallow"') end
    local revisions = opts.revisions or "winning"
    if revisions ~= "winning" and revisions ~= "all" then usage("revisions", 'expected "winning" or "all"') end
    local lossless = revisions == "all"
    if lossless and mode ~= "full" then usage("revisions", 'revisions = "all" reads every leaf: not with mode = "shallow"') end
    if lossless and opts.attachments == false then
      usage("attachments", 'revisions = "all" keeps attachments inline: attachments = false does not apply')
    end
    local size = check_int(opts, "buffer_size", 500)
    local par = check_int(opts, "parallelism", 5)
    local attachments = lossless or (opts.attachments and true or false)
    if opts.resume and not opts.log then usage("resume", "resume needs the log of the interrupted backup (log = path)") end
    if opts.resume and mode ~= "full" then usage("resume", "only a full backup can resume") end
    if opts.resume and type(opts.file) ~= "string" then usage("file", "resume appends to the backup file: give its path") end
    if opts.log ~= nil and (type(opts.log) ~= "string" or opts.log == "") then usage("log", "expected a path") end
    if opts.log and mode ~= "full" then usage("log", "a log is kept in full mode only") end
    local progress = opts.progress
    if progress ~= nil and type(progress) ~= "function" then usage("progress", "expected a function(stats)") end

    db:info()   -- a missing database fails here (http 404), before the file is touched

    local stats = { docs = 0, batches = 0, mode = mode, revisions = revisions, resumed = false }
    local what = type(opts.file) == "string" and opts.file or "the backup file"
    local run = { db = db, lossless = lossless, attachments = attachments }

    if mode == "shallow" then
      local f, close = open_file(opts.file, "w")
      write(f, header(mode, attachments), what)
      local q = { include_docs = true, limit = size, attachments = attachments or nil }
      while true do
        local rows = db:all_docs(q).rows
        if #rows == 0 then break end
        local docs = json.array {}
        for i, r in ipairs(rows) do
          docs[i] = r.doc
          for _, a in pairs(attachments and type(r.doc) == "table" and type(r.doc._attachments) == "table"
                            and r.doc._attachments or {}) do
            if type(a) == "table" and a.content_type ~= nil then a.contentType = a.content_type end
          end
        end
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

    -- one batch into the file (and, with a log, marked done there), in one step: no
    -- other worker runs between the line and its mark
    local f, logf
    local function emit(docs, n)
      write(f, "[" .. table.concat(docs, ",") .. "]\n", what)
      if logf then
        flush(f, what)
        write(logf, (":d batch%d\n"):format(n), opts.log)
        flush(logf, opts.log)
      end
      stats.docs, stats.batches = stats.docs + #docs, stats.batches + 1
      if progress then progress(stats) end
    end

    -- full mode without a log: _changes one page at a time, `par` pages fetched at once
    if not opts.log then
      local close
      f, close = open_file(opts.file, "w")
      write(f, header(mode, attachments, lossless), what)
      local ok, err = pcall(pipeline, par, function(push)
        local since = 0
        while true do
          local res = db:changes { since = since, limit = size, style = lossless and "all_docs" or nil }
          if #res.results == 0 then break end
          push(reqs_of(res.results, lossless))
          if #res.results < size then break end
          since = res.results[#res.results].seq
        end
      end, function(reqs)
        emit(fetch(run, reqs))
      end)
      if ok and lossless then ok, err = pcall(write, f, END_LINE .. "\n", what) end
      if ok then ok, err = pcall(flush, f, what) end
      if close then f:close() end
      if not ok then error(err, 0) end
      return stats
    end

    -- full mode with a log: spool the ids first, then fetch the batches not yet done
    local logpath = opts.log
    local st
    if opts.resume then
      st = read_log(logpath)
    end
    if st and st.complete then
      stats.resumed = true
      local probe = io.open(opts.file, "r")
      if not probe then
        fail("FileError", ("cannot resume: the backup file %s is missing (the log marks batches done in it)"):format(opts.file),
          { file = opts.file })
      end
      probe:close()
      local seen, kind = ids_in_file(opts.file)
      if kind and kind ~= (lossless and "all" or "full") then
        usage("revisions", ("the backup file %s was written with %s, not revisions = %q: resume it as it was begun")
          :format(opts.file, kind == "all" and 'revisions = "all"' or "mode " .. kind, revisions))
      end
      for n = 0, st.count - 1 do
        if lossless and st.batches[n] and not st.done[n] and st.revs[n][1] == nil then
          usage("revisions", ("the log %s lists no revisions (a backup of winning revisions): resume without "
            .. 'revisions = "all"'):format(logpath))
        end
      end
      logf = open_file(logpath, "a", "log")
      for n = 0, st.count - 1 do
        local ids = st.batches[n]
        if ids and not st.done[n] then
          for _, id in ipairs(ids) do
            if seen[id] then st.done[n] = true; write(logf, (":d batch%d\n"):format(n), logpath); break end
          end
        end
      end
      flush(logf, logpath)
      f = open_file(opts.file, "a")
      write(f, RESUME_LINE .. "\n", what)   -- ends a line cut short; restore skips it
    else
      -- a fresh backup (also a resume whose spooling never finished: nothing was fetched)
      if opts.resume then stats.resumed = true end
      f = open_file(opts.file, "w")
      write(f, header(mode, attachments, lossless), what)
      flush(f, what)
      local spoolf = open_file(logpath, "w", "log")
      spool(db, spoolf, logpath, size, lossless)
      spoolf:close()
      st = read_log(logpath)
      logf = open_file(logpath, "a", "log")
    end
    local ok, err = pcall(pipeline, par, function(push)
      for n = 0, st.count - 1 do
        local ids = st.batches[n]
        if ids and not st.done[n] then
          local reqs = {}
          for i, id in ipairs(ids) do
            local revs = st.revs[n][i]
            if lossless then
              for _, rev in ipairs(revs or {}) do reqs[#reqs + 1] = { id = id, rev = rev } end
            else
              reqs[#reqs + 1] = { id = id }
            end
          end
          push { n = n, reqs = reqs }
        end
      end
    end, function(b)
      emit(fetch(run, b.reqs), b.n)
    end)
    if ok and lossless then ok, err = pcall(write, f, END_LINE .. "\n", what) end
    if ok then ok, err = pcall(flush, f, what) end
    logf:close()
    if type(opts.file) == "string" then f:close() end
    if not ok then error(err, 0) end
    return stats
  end

  ---------------------------------------------------------------------------
  -- the restore log

  local function read_restore_log(path)
    local f = io.open(path, "r")
    if not f then fail("LogDoesNotExist", ("the restore log %s does not exist"):format(path), { file = path }) end
    local st = { done = {}, docs = 0, first = nil, complete = nil }
    for line in f:lines() do
      local n, c = line:match("^:l (%d+) (%d+)$")
      if n then
        if not st.done[tonumber(n)] then st.docs = st.docs + tonumber(c) end
        st.done[tonumber(n)] = true
      elseif line:match("^:restore ") then
        local ok, v = pcall(json.decode, line:sub(10))
        if ok and type(v) == "table" then st.first = v.first_line end
      else
        local total = line:match("^:restore_complete (%d+)$")
        if total then st.complete = tonumber(total) end
      end
    end
    f:close()
    if st.first == nil then
      fail("LogDoesNotExist", ("%s is not a restore log (no :restore line)"):format(path), { file = path })
    end
    return st
  end

  -- what a restore log remembers of the file, to know it is the same one on resume
  local function first_line_key(line) return line:sub(1, 400) end

  ---------------------------------------------------------------------------
  --- couch.restore{ file = path|io, target = db, buffer_size = 500, parallelism = 5,
  ---               log = path, resume = bool, progress = fn } -> stats
  function couch.restore(opts)
    check_opts(opts, RESTORE_OPTS, "couch.restore")
    local db = opts.target
    if not is_db(db) then usage("target", "expected a database (srv:db(name))") end
    local size = check_int(opts, "buffer_size", 500)
    local par = check_int(opts, "parallelism", 5)
    local progress = opts.progress
    if progress ~= nil and type(progress) ~= "function" then usage("progress", "expected a function(stats)") end
    if opts.log ~= nil and (type(opts.log) ~= "string" or opts.log == "") then usage("log", "expected a path") end
    if opts.resume and not opts.log then usage("resume", "resume needs the log of the interrupted restore (log = path)") end
    local what = type(opts.file) == "string" and opts.file or "the backup file"

    db:info()   -- a missing database fails here (http 404)

    local stats = { docs = 0, batches = 0, lines = 0, mode = nil, revisions = nil, resumed = false, skipped = 0,
                    complete = false }
    local rlog, logf
    if opts.resume then
      rlog = read_restore_log(opts.log)
      stats.resumed = true
      if rlog.complete then
        stats.complete, stats.skipped = true, rlog.complete
        return stats
      end
      stats.skipped = rlog.docs
      logf = open_file(opts.log, "a", "log")
    elseif opts.log then
      logf = open_file(opts.log, "w", "log")
    end

    local f, close = open_file(opts.file, "r")
    local lenient = true   -- files before couchbackup 2.10 have no metadata; their broken lines are skipped
    local lossless = false
    local left, counts = {}, {}   -- per line: chunks still in flight, documents in it

    local function mark_line(n)
      if logf then
        write(logf, (":l %d %d\n"):format(n, counts[n]), opts.log)
        flush(logf, opts.log)
      end
      left[n], counts[n] = nil, nil
    end

    -- one _bulk_docs request: the line's own bytes when it fits in one, else a chunk re-encoded
    local function send(c)
      local res = db:request("POST", "/_bulk_docs", { body = c.body, idempotent = c.new_edits == false })
      local already = 0
      for _, r in ipairs(type(res) == "table" and res or {}) do
        if r.error then
          -- a resumed line without _rev (hand-made files) may be in already: its id conflicts
          if stats.resumed and c.new_edits ~= false and r.error == "conflict" then
            already = already + 1
          else
            fail("RestoreError", ("line %d of %s: document %s: %s (%s)"):format(c.line, what, tostring(r.id),
              tostring(r.error), tostring(r.reason)), { line = c.line, id = r.id })
          end
        end
      end
      stats.docs, stats.batches = stats.docs + c.count, stats.batches + 1
      left[c.line] = left[c.line] - 1
      if left[c.line] == 0 then mark_line(c.line) end
      if progress then progress(stats) end
    end

    -- couchbackup writes an attachment's type as "contentType" (the Cloudant SDK's name for
    -- it), which CouchDB ignores: it goes back as "content_type"
    local function fix_content_types(docs)
      for _, d in ipairs(docs) do
        if type(d) == "table" and type(d._attachments) == "table" then
          for _, a in pairs(d._attachments) do
            if type(a) == "table" and a.contentType ~= nil then
              if a.content_type == nil then a.content_type = a.contentType end
              a.contentType = nil
            end
          end
        end
      end
    end

    local function chunks_of(docs, text, lineno, push)
      local n = #docs
      for k = 1, n do
        if type(docs[k]) ~= "table" or json.is_array(docs[k]) then
          fail("BackupFileJsonError", ("line %d of %s: element %d is not a document"):format(lineno, what, k), { line = lineno })
        end
      end
      local raw_ok = true
      if text:find('"contentType"', 1, true) then fix_content_types(docs); raw_ok = false end
      counts[lineno] = n
      left[lineno] = (n + size - 1) // size
      for i = 1, n, size do
        local last = math.min(i + size - 1, n)
        local new_edits   -- nil: the server assigns revisions (couchrestore's rule: the chunk's first document)
        if docs[i]._rev ~= nil then new_edits = false end
        if lossless and new_edits == nil then
          fail("BackupFileJsonError", ("line %d of %s: a document without _rev in an all-revisions backup"):format(lineno, what),
            { line = lineno })
        end
        local body
        if raw_ok and i == 1 and last == n then
          body = '{"docs":' .. text .. (new_edits == false and ',"new_edits":false}' or '}')
        else
          local chunk = json.array {}
          for j = i, last do chunk[#chunk + 1] = docs[j] end
          body = json.encode({ docs = chunk, new_edits = new_edits })
        end
        push { line = lineno, body = body, count = last - i + 1, new_edits = new_edits }
      end
    end

    local ended = false   -- all-revisions files: the end line was the last one
    local since_gc = 0    -- bytes read since the last full collection
    local ok, err = pcall(pipeline, par, function(push)
      local lineno = 0
      for line in f:lines() do
        lineno = lineno + 1
        stats.lines = lineno
        if lineno == 1 then
          if rlog and rlog.first ~= first_line_key(line) then
            fail("LogMismatch", ("the restore log %s belongs to another backup file than %s"):format(opts.log, what),
              { file = opts.log })
          end
          if logf and not rlog then
            write(logf, ":restore " .. json.encode({ first_line = first_line_key(line) }) .. "\n", opts.log)
            flush(logf, opts.log)
          end
        end
        if line ~= "" and line ~= RESUME_LINE then ended = ended and line == END_LINE end
        if lossless and line == END_LINE then
          ended = true
        elseif line ~= "" and line ~= RESUME_LINE and not (rlog and rlog.done[lineno]) then
          local okd, v = pcall(json.decode, line)
          if not okd then
            if not lenient then
              if not ((stats.mode == "full" or lossless) and line:sub(-#RESUME_LINE) == RESUME_LINE) then
                fail("BackupFileJsonError", ("line %d of %s: cannot parse as JSON"):format(lineno, what), { line = lineno })
              end
            end
          elseif type(v) == "table" and json.is_array(v) then
            if #v > 0 then chunks_of(v, line, lineno, push) end
            -- the decoded lines (and the requests' answers) are garbage soon: a full
            -- collection every 8 MB read keeps memory flat however long the file (left
            -- alone, the collector lags behind the request objects' memory outside Lua and
            -- the peak grows with the file: 59 MB at 100,000 documents, 33 MB with this)
            v = nil
            since_gc = since_gc + #line
            if since_gc > 8 * 1024 * 1024 then since_gc = 0; collectgarbage() end
          elseif lineno == 1 and check_header(v, what) then
            local kind = check_header(v, what)
            if kind == "all" then
              lossless, stats.mode, stats.revisions = true, "full", "all"
            else
              stats.mode, stats.revisions = kind, "winning"
            end
            lenient = false
          elseif type(v) == "table" and v.marker == RESUME_MARKER then
            -- a resume marker with something else on the line: nothing to restore
          else
            fail("BackupFileJsonError", ("line %d of %s: not an array of documents or the expected metadata"):format(lineno, what),
              { line = lineno })
          end
        end
      end
      if lossless and not ended then
        fail("BackupFileIncomplete", ("%s ends at line %d without the end line of a finished all-revisions backup: "
          .. "the backup was interrupted (resume it with its log) or the file was cut short"):format(what, lineno),
          { line = lineno })
      end
    end, send)
    if close then f:close() end
    if not ok then
      if logf then logf:close() end
      error(err, 0)
    end
    stats.complete = true
    if logf then
      write(logf, (":restore_complete %d\n"):format(stats.docs + stats.skipped), opts.log)
      flush(logf, opts.log)
      logf:close()
    end
    return stats
  end
end
