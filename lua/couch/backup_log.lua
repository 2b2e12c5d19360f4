-- couchbackup's log (full mode, `log = path`), so either tool resumes the other's:
--   ":t batchN [{"id":..},..]"  each batch of ids spooled from _changes (with "revs", the
--                               leaves, in all-revisions mode)
--   ":changes_complete SEQ"     once they are all spooled
--   ":d batchN"                 once a batch is in the backup file
-- Reading it for a resume keeps only what is per batch (done or not, lists revs or not),
-- never the ids: those are read again, one batch at a time, as the batches are fetched.
return function(couch, F)
  local json = couch.json
  local fail, write, flush = F.fail, F.write, F.flush
  local M = {}

  -- Spools every id (and in all-revisions mode its leaves) of _changes into the log,
  -- buffer_size per batch.
  function M.spool(db, logf, logpath, size, lossless)
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

  -- a ":t" line's batch number and entries, or nil (another line, or one cut short: ignored,
  -- like couchbackup)
  local function batch_line(line)
    local n, list = line:match("^:t%s+batch(%d+)%s+(.*)$")
    if not n then return nil end
    local ok, entries = pcall(json.decode, list)
    if not ok or type(entries) ~= "table" then return nil end
    return tonumber(n), entries
  end

  -- What a log says, per batch: {spooled = {[n] = true}, done = {[n] = true},
  -- no_revs = {[n] = true} (a batch of winning revisions), complete = seq|nil}.
  function M.summary(path)
    local f = io.open(path, "r")
    if not f then fail("LogDoesNotExist", ("the log file %s does not exist"):format(path), { file = path }) end
    local st = { spooled = {}, done = {}, no_revs = {}, complete = nil }
    local since_gc = 0
    for line in f:lines() do
      local n, entries = batch_line(line)
      if n then
        st.spooled[n] = true
        if entries[1] ~= nil and entries[1].revs == nil then st.no_revs[n] = true end
        since_gc = since_gc + #line
        if since_gc > 8 * 1024 * 1024 then since_gc = 0; collectgarbage() end
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

  -- Calls each(n, entries) for every batch the summary has spooled and not done, in the
  -- log's order, reading the log again (each batch once).
  function M.each_pending(path, st, each)
    local f = io.open(path, "r")
    if not f then fail("LogDoesNotExist", ("the log file %s does not exist"):format(path), { file = path }) end
    local seen = {}
    local ok, err = pcall(function()
      for line in f:lines() do
        local n, entries = batch_line(line)
        if n and not st.done[n] and not seen[n] then
          seen[n] = true
          each(n, entries)
        end
      end
    end)
    f:close()
    if not ok then error(err, 0) end
  end

  function M.mark_done(logf, logpath, n)
    write(logf, (":d batch%d\n"):format(n), logpath)
  end

  return M
end
