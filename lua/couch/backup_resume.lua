-- What a resumed full backup still has to fetch: the batches its log does not mark done,
-- less those whose line is in the backup file already (written just before an
-- interruption, whose ":d" never reached the log: kill -9 between the two writes, or a
-- couchbackup whose streams were cut). Memory stays bounded by the number of lines, not
-- of documents: each complete line of the file is known by its first and last document
-- ids, and a batch is in the file when a line's first and last ids are both in it (one id
-- alone could be a document _changes listed in two batches, edited while spooled).
return function(couch, F)
  local json = couch.json
  local M = {}

  -- whether the file ends with a line break: a last line without one was cut short (its
  -- resume marker will be appended to it, and restore skips such a line)
  local function ends_with_newline(f)
    local size = f:seek("end")
    if not size or size == 0 then return true end
    f:seek("set", size - 1)
    local c = f:read(1)
    f:seek("set", 0)
    return c == "\n"
  end

  -- {[first id] = {last id, ...}} of the complete lines of the file, and what its header
  -- says (F.check_header)
  function M.lines_in_file(path)
    local firsts, kind = {}, nil
    local f = io.open(path, "r")
    if not f then return firsts end
    local whole_last = ends_with_newline(f)
    local n, pending = 0, nil
    local since_gc = 0
    local function take(line)
      if line:sub(1, 1) ~= "[" then return end
      local ok, docs = pcall(json.decode, line)
      if ok and type(docs) == "table" and type(docs[1]) == "table" and docs[1]._id ~= nil then
        local first, last = docs[1]._id, docs[#docs]._id
        if type(first) == "string" and type(last) == "string" then
          local lasts = firsts[first] or {}
          firsts[first] = lasts
          lasts[#lasts + 1] = last
        end
      end
      since_gc = since_gc + #line
      if since_gc > 8 * 1024 * 1024 then since_gc = 0; collectgarbage() end
    end
    for line in f:lines() do
      n = n + 1
      if n == 1 then
        local ok, v = pcall(json.decode, line)
        if ok then kind = F.check_header(v, path) end
      end
      if pending then take(pending) end   -- one line behind: the last one may be cut short
      pending = line
    end
    if pending and whole_last then take(pending) end
    f:close()
    return firsts, kind
  end

  -- whether the batch (its log entries) is a line of the file
  function M.written(firsts, entries)
    local ids
    for _, e in ipairs(entries) do
      local lasts = firsts[e.id]
      if lasts then
        if not ids then
          ids = {}
          for _, x in ipairs(entries) do ids[x.id] = true end
        end
        for _, last in ipairs(lasts) do
          if ids[last] then return true end
        end
      end
    end
    return false
  end

  return M
end
