-- A backup's run: a database into a file (backup_file.lua's format), `parallelism`
-- batches in flight (backup_pipeline.lua).
--   * mode "full" (default): each document's winning revision with its _revisions history
--     (_changes, then _bulk_get?revs=true); lines in the order batches complete;
--   * revisions = "all": every leaf (winner, conflicts, deleted leaves) with its history
--     and inline attachments (_changes?style=all_docs, _bulk_get?latest=true), then the
--     end line;
--   * mode "shallow": winning revisions from _all_docs?include_docs=true, without history;
--     with parallelism above 1 the reader pages through the ids alone and each worker
--     reads one range of them with their documents; lines are written in id order, as a
--     one-at-a-time read (parallelism 1) writes them;
--   * `log`: couchbackup's log (backup_log.lua): the ids are spooled first, each batch is
--     marked done as its line is written, and `resume` fetches the batches not done.
-- o: the checked options (backup.lua); ctl: the job's (stopping, report); stats: updated
-- as lines are written. A run stopped by ctl ends normally, its file resumable, without
-- the end line.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch, F, pipeline)
  local json = couch.json
  local write, flush, fail = F.write, F.flush, F.fail
  local Fetch = require("couch.backup_fetch")(couch, F)
  local Log = require("couch.backup_log")(couch, F)
  local Resume = require("couch.backup_resume")(couch, F)

  local function finish(o, ctl, f, close, ok, err)
    if ok and o.lossless and not ctl.stopping then ok, err = pcall(write, f, F.END_LINE .. "\n", o.what) end
    if ok then ok, err = pcall(flush, f, o.what) end
    if close then f:close() end
    if not ok then error(err, 0) end
  end

  local function shallow(o, ctl, stats)
    local db = o.db
    local f, close = F.open(o.file, "w")
    write(f, F.header("shallow", o.attachments), o.what)
    -- pages done out of order wait here for the ones before them (at most 2 x parallelism)
    local done, next_page = {}, 1
    -- the documents of _all_docs?include_docs=true from q.startkey, before q.endkey (its
    -- row is dropped here: pouchdb-server ignores inclusive_end = false), or q.limit of them
    local function read(q)
      q.include_docs, q.attachments = true, o.attachments or nil
      if q.endkey ~= nil then q.inclusive_end = false end
      local rows = db:all_docs(q).rows
      local docs = json.array {}
      for _, r in ipairs(rows) do
        if type(r.doc) == "table" and r.id ~= q.endkey then
          docs[#docs + 1] = r.doc
          if o.attachments then F.add_sdk_content_types(r.doc) end
        end
      end
      return docs, rows
    end
    local ok, err = pcall(pipeline, ctl, o.par, function(push)
      if o.par == 1 then
        -- one page at a time, as couchbackup reads (no pass over the ids: on a server that
        -- answers one request at a time it costs as much as the documents)
        local page, startkey = 0, nil
        while true do
          local docs, rows = read { limit = o.size, startkey = startkey }
          if #rows == 0 then break end
          page = page + 1
          push { page = page, docs = docs }
          if #rows < o.size then break end
          startkey = rows[#rows].id .. "\0"
        end
        return
      end
      -- the ids only, `parallelism` ranges per request, one range ahead: a range ends where
      -- the next one starts, so a document created meanwhile between two is in one of them
      local q = { limit = o.size * o.par }
      local page, start = 0, nil
      while true do
        local rows = db:all_docs(q).rows
        for i = 1, #rows, o.size do
          if start then page = page + 1; push { page = page, startkey = start, endkey = rows[i].id } end
          start = rows[i].id
        end
        if #rows < q.limit then break end
        q.startkey = rows[#rows].id .. "\0"
      end
      if start then push { page = page + 1, startkey = start } end
    end, function(p)
      done[p.page] = p.docs or read { startkey = p.startkey, endkey = p.endkey }
      while done[next_page] do
        local d = done[next_page]
        done[next_page] = nil
        next_page = next_page + 1
        if #d > 0 then
          write(f, json.encode(d) .. "\n", o.what)
          stats.docs, stats.batches = stats.docs + #d, stats.batches + 1
          ctl.report()
        end
      end
    end)
    finish(o, ctl, f, close, ok, err)
  end

  -- one batch into the file (and, with a log, marked done there), in one step: no
  -- other worker runs between the line and its mark
  local function emitter(o, ctl, stats, f, logf)
    return function(docs, n)
      write(f, "[" .. table.concat(docs, ",") .. "]\n", o.what)
      if logf then
        flush(f, o.what)
        Log.mark_done(logf, o.log, n)
        flush(logf, o.log)
      end
      stats.docs, stats.batches = stats.docs + #docs, stats.batches + 1
      ctl.report()
    end
  end

  -- full mode without a log: _changes one page at a time, `par` pages fetched at once
  local function full(o, ctl, stats, run)
    local f, close = F.open(o.file, "w")
    write(f, F.header("full", o.attachments, o.lossless), o.what)
    local emit = emitter(o, ctl, stats, f)
    local ok, err = pcall(pipeline, ctl, o.par, function(push)
      local since = 0
      while true do
        local res = o.db:changes { since = since, limit = o.size, style = o.lossless and "all_docs" or nil }
        if #res.results == 0 then break end
        push(Fetch.reqs_of(res.results, o.lossless))
        if #res.results < o.size then break end
        since = res.results[#res.results].seq
      end
    end, function(reqs)
      emit(Fetch.fetch(run, reqs))
    end)
    finish(o, ctl, f, close, ok, err)
  end

  -- full mode with a log: spool the ids first, then fetch the batches not yet done
  local function logged(o, ctl, stats, run)
    local logpath, lossless = o.log, o.lossless
    local st = o.resume and Log.summary(logpath)
    local firsts = {}   -- resume: the lines already in the file (backup_resume.lua)
    local f, logf
    if st and st.complete then
      stats.resumed = true
      local probe = io.open(o.file, "r")
      if not probe then
        fail("FileError", ("cannot resume: the backup file %s is missing (the log marks batches done in it)"):format(o.file),
          { file = o.file })
      end
      probe:close()
      local kind
      firsts, kind = Resume.lines_in_file(o.file)
      if kind and kind ~= (lossless and "all" or "full") then
        I.usage("revisions", ("the backup file %s was written with %s, not revisions = %q: resume it as it was begun")
          :format(o.file, kind == "all" and 'revisions = "all"' or "mode " .. kind, o.revisions))
      end
      if lossless then
        for n in pairs(st.spooled) do
          if not st.done[n] and st.no_revs[n] then
            I.usage("revisions", ("the log %s lists no revisions (a backup of winning revisions): resume without "
              .. 'revisions = "all"'):format(logpath))
          end
        end
      end
      logf = F.open(logpath, "a", "log")
      f = F.open(o.file, "a")
      write(f, F.RESUME_LINE .. "\n", o.what)   -- ends a line cut short; restore skips it
    else
      -- a fresh backup (also a resume whose spooling never finished: nothing was fetched)
      if o.resume then stats.resumed = true end
      f = F.open(o.file, "w")
      write(f, F.header("full", o.attachments, lossless), o.what)
      flush(f, o.what)
      local spoolf = F.open(logpath, "w", "log")
      Log.spool(o.db, spoolf, logpath, o.size, lossless)
      spoolf:close()
      st = Log.summary(logpath)
      logf = F.open(logpath, "a", "log")
    end
    local emit = emitter(o, ctl, stats, f, logf)
    local ok, err = pcall(pipeline, ctl, o.par, function(push)
      Log.each_pending(logpath, st, function(n, entries)
        if Resume.written(firsts, entries) then
          Log.mark_done(logf, logpath, n)   -- its line is in the file: marked, not written again
          flush(logf, logpath)
          return
        end
        local reqs = {}
        for _, e in ipairs(entries) do
          if lossless then
            for _, rev in ipairs(e.revs or {}) do reqs[#reqs + 1] = { id = e.id, rev = rev } end
          else
            reqs[#reqs + 1] = { id = e.id }
          end
        end
        push { n = n, reqs = reqs }
      end)
    end, function(b)
      emit(Fetch.fetch(run, b.reqs), b.n)
    end)
    logf:close()
    finish(o, ctl, f, type(o.file) == "string", ok, err)
  end

  return function(o, ctl, stats)
    o.db:info()   -- a missing database fails here (http 404), before the file is touched
    local run = { db = o.db, lossless = o.lossless, attachments = o.attachments }
    if o.mode == "shallow" then return shallow(o, ctl, stats) end
    if o.log then return logged(o, ctl, stats, run) end
    return full(o, ctl, stats, run)
  end
end
