-- The restore log (`couch.restore{ log = path }`): ":restore FIRST-LINE" (the start of the
-- file's first line, to know the file again), then ":l N COUNT" once line N of the file is
-- entirely in the database, and ":restore_complete TOTAL" at the end. `resume = true`
-- skips the lines marked and re-sends the others, which is idempotent because they are
-- written with new_edits = false (the revision is already there: nothing changes, nothing
-- is duplicated).
return function(couch, F)
  local json = couch.json
  local fail, write, flush = F.fail, F.write, F.flush
  local M = {}

  function M.read(path)
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
  function M.first_line_key(line) return line:sub(1, 400) end

  function M.start(logf, path, line)
    write(logf, ":restore " .. json.encode({ first_line = M.first_line_key(line) }) .. "\n", path)
    flush(logf, path)
  end

  function M.line_done(logf, path, n, count)
    write(logf, (":l %d %d\n"):format(n, count), path)
    flush(logf, path)
  end

  function M.complete(logf, path, total)
    write(logf, (":restore_complete %d\n"):format(total), path)
    flush(logf, path)
  end

  return M
end
