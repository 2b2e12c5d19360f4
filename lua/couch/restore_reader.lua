-- A restore's run: a backup file (backup_file.lua's format, couchbackup's or couchlua's
-- all-revisions one) into a database, as couchrestore does it: each line's documents to
-- _bulk_docs (the line's own bytes as the body when it fits one request), new_edits =
-- false when they carry a _rev, `parallelism` requests in flight (backup_pipeline.lua).
-- A line is checked before it is sent: JSON, documents, and attachments as the header
-- says (inline data where it says they were included, none where it says they were not).
-- With a log (restore_log.lua) each line finished is marked, so a restore resumes.
-- o: the checked options (backup.lua); ctl: the job's (stopping, report, errors); stats:
-- updated as requests finish. It is complete only once every line is in the database:
-- any failure raises, and a run stopped by ctl ends with stats.complete = false.
return function(couch, F, pipeline)
  local json = couch.json
  local fail = F.fail
  local RLog = require("couch.restore_log")(couch, F)

  -- the first attachment of the line's documents that disagrees with the header: one
  -- without data where it says attachments were included (a stub), one with data where
  -- it says they were not; nil when they agree
  local function attachment_mismatch(docs, included)
    for _, d in ipairs(docs) do
      if type(d._attachments) == "table" then
        for name, a in pairs(d._attachments) do
          local has_data = type(a) == "table" and a.data ~= nil
          if has_data ~= included then return d._id, name end
        end
      end
    end
  end

  return function(o, ctl, stats)
    local db, size, what = o.db, o.size, o.what
    db:info()   -- a missing database fails here (http 404)

    local rlog, logf
    if o.resume then
      rlog = RLog.read(o.log)
      stats.resumed = true
      if rlog.complete then
        stats.complete, stats.skipped = true, rlog.complete
        return
      end
      stats.skipped = rlog.docs
      logf = F.open(o.log, "a", "log")
    elseif o.log then
      logf = F.open(o.log, "w", "log")
    end

    local f, close = F.open(o.file, "r")
    local lenient = true   -- files before couchbackup 2.10 have no metadata; their broken lines are skipped
    local lossless = false
    local attachments      -- what the header says: true, false, or nil (no header)
    local left, counts = {}, {}   -- per line: chunks still in flight, documents in it

    -- one _bulk_docs request: the line's own bytes when it fits in one, else a chunk re-encoded
    local function send(c)
      local res = db:request("POST", "/_bulk_docs", { body = c.body, idempotent = c.new_edits == false })
      local refused
      for _, r in ipairs(type(res) == "table" and res or {}) do
        if r.error then
          -- a resumed line without _rev (hand-made files) may be in already: its id conflicts
          if not (stats.resumed and c.new_edits ~= false and r.error == "conflict") then
            ctl.errors[#ctl.errors + 1] = { id = r.id, error = r.error, reason = r.reason, line = c.line }
            refused = refused or r
          end
        end
      end
      if refused then
        fail("RestoreError", ("line %d of %s: document %s: %s (%s)"):format(c.line, what, tostring(refused.id),
          tostring(refused.error), tostring(refused.reason)), { line = c.line, id = refused.id })
      end
      stats.docs, stats.batches = stats.docs + c.count, stats.batches + 1
      left[c.line] = left[c.line] - 1
      if left[c.line] == 0 then
        if logf then RLog.line_done(logf, o.log, c.line, counts[c.line]) end
        left[c.line], counts[c.line] = nil, nil
      end
      ctl.report()
    end

    local function chunks_of(docs, text, lineno, push)
      local n = #docs
      for k = 1, n do
        if type(docs[k]) ~= "table" or json.is_array(docs[k]) then
          fail("BackupFileJsonError", ("line %d of %s: element %d is not a document"):format(lineno, what, k), { line = lineno })
        end
      end
      if attachments ~= nil and text:find('"_attachments"', 1, true) then
        local id, name = attachment_mismatch(docs, attachments)
        if id ~= nil then
          fail("BackupFileAttachmentsMismatch", ("line %d of %s: document %s: attachment %s %s, but the file's header "
            .. "says attachments were %s"):format(lineno, what, tostring(id), tostring(name),
            attachments and "is a stub without data" or "holds its data inline", attachments and "included" or "not included"),
            { line = lineno, id = id })
        end
      end
      local raw_ok = true
      if text:find('"contentType"', 1, true) then F.fix_content_types(docs); raw_ok = false end
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
    local ok, err = pcall(pipeline, ctl, o.par, function(push)
      local lineno = 0
      for line in f:lines() do
        lineno = lineno + 1
        stats.lines = lineno
        if lineno == 1 then
          if rlog and rlog.first ~= RLog.first_line_key(line) then
            fail("LogMismatch", ("the restore log %s belongs to another backup file than %s"):format(o.log, what),
              { file = o.log })
          end
          if logf and not rlog then RLog.start(logf, o.log, line) end
        end
        if line ~= "" and line ~= F.RESUME_LINE then ended = ended and line == F.END_LINE end
        if lossless and line == F.END_LINE then
          ended = true
        elseif line ~= "" and line ~= F.RESUME_LINE and not (rlog and rlog.done[lineno]) then
          local okd, v = pcall(json.decode, line)
          if not okd then
            if not lenient then
              if not ((stats.mode == "full" or lossless) and line:sub(-#F.RESUME_LINE) == F.RESUME_LINE) then
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
          elseif lineno == 1 and F.check_header(v, what) then
            local kind = F.check_header(v, what)
            if kind == "all" then
              lossless, stats.mode, stats.revisions = true, "full", "all"
            else
              stats.mode, stats.revisions = kind, "winning"
            end
            if type(v.attachments) == "boolean" then attachments = v.attachments end
            lenient = false
          elseif type(v) == "table" and v.marker == F.RESUME_MARKER then
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
    if ctl.stopping then
      if logf then logf:close() end
      return   -- stopped as asked: resumable from its log, not complete
    end
    stats.complete = true
    if logf then
      RLog.complete(logf, o.log, stats.docs + stats.skipped)
      logf:close()
    end
  end
end
