-- The backup file: couchbackup's format (@cloudant/couchbackup) and couchlua's lossless
-- superset of it, and the plain io every part of backup and restore writes through.
--
-- The file: a first line of metadata {"name","version","mode","attachments"}, then one JSON
-- array of documents per line (one batch). A resumed backup appends a resume marker line
-- ({"marker":...}), which ends any line the interruption cut short, and restore skips it,
-- as couchrestore does. revisions = "all" writes the same lines, holding every leaf
-- revision; its header has "format":"couchlua-all-revisions" and "format_version" and no
-- "mode" (couchrestore refuses it at line 1 instead of restoring it with numbers rounded by
-- JavaScript), and its last line is {"end":"couchlua-all-revisions"}: a file without it is
-- incomplete, and restore says so.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  local json = couch.json
  local F = {}

  F.RESUME_MARKER = "@cloudant/couchbackup:resume"
  F.RESUME_LINE = '{"marker":"' .. F.RESUME_MARKER .. '"}'
  F.FORMAT = "couchlua-all-revisions"
  F.FORMAT_VERSION = 1
  -- the last line of a finished all-revisions backup: a file without it is incomplete
  F.END_LINE = '{"end":"' .. F.FORMAT .. '"}'

  -- code: couchbackup's error name (its CLI's exit code follows from it)
  function F.fail(code, msg, fields)
    fields = fields or {}
    fields.code = code
    I.raise("backup", msg, fields)
  end
  local fail = F.fail

  -- an io handle, or a path opened with `how`; returns handle, close-needed
  function F.open(file, how, arg)
    if io.type(file) == "file" then return file, false end
    if type(file) ~= "string" or file == "" then I.usage(arg or "file", "expected a path or an open io file") end
    local f, err = io.open(file, how)
    if not f then fail("FileError", ("cannot open %s: %s"):format(file, err), { file = file }) end
    return f, true
  end

  function F.write(f, s, what)
    local ok, err = f:write(s)
    if not ok then fail("FileError", ("cannot write %s: %s"):format(what, err)) end
  end
  function F.flush(f, what)
    local ok, err = f:flush()
    if not ok then fail("FileError", ("cannot write %s: %s"):format(what, err)) end
  end

  -- A slice holds no raw line break (JSON has them only as whitespace), so one batch
  -- is one line whatever the server's spacing.
  function F.one_line(s)
    if s:find("[\r\n]") then s = s:gsub("[\r\n]", " ") end
    return s
  end

  -- couchbackup's files name an attachment's type "contentType" (the Cloudant SDK's name),
  -- and couchrestore reads only that: couchbackup-format files with attachments carry it
  -- beside CouchDB's "content_type" (couch.restore drops it again)
  function F.add_sdk_content_types(doc)
    if type(doc) ~= "table" or type(doc._attachments) ~= "table" then return end
    for _, a in pairs(doc._attachments) do
      if type(a) == "table" and a.content_type ~= nil and a.contentType == nil then a.contentType = a.content_type end
    end
  end
  function F.with_sdk_content_types(text)
    local d = json.decode(text)
    if type(d._attachments) ~= "table" then return text end
    F.add_sdk_content_types(d)
    return json.encode(d)
  end

  -- ... and couch.restore writes it back as "content_type", which CouchDB reads
  function F.fix_content_types(docs)
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

  function F.header(mode, attachments, lossless)
    if lossless then
      return json.encode({ name = "couchlua", version = couch.version, format = F.FORMAT, format_version = F.FORMAT_VERSION,
                           revisions = "all", attachments = true }, { sort_keys = true }) .. "\n"
    end
    return json.encode({ name = "couchlua", version = couch.version, mode = mode,
                         attachments = attachments and true or false }, { sort_keys = true }) .. "\n"
  end

  -- What the first line of a backup file says: "all" (couchlua's lossless format), a
  -- couchbackup mode, or nil (no header); raises for a format this version cannot read.
  function F.check_header(v, what)
    if type(v) ~= "table" or json.is_array(v) then return nil end
    if v.format ~= nil or v.format_version ~= nil then
      if v.format ~= F.FORMAT then
        fail("BackupFormatUnknown", ("line 1 of %s: unknown backup format %s"):format(what, json.encode(v.format)),
          { line = 1 })
      end
      local fv = v.format_version
      if math.type(fv) ~= "integer" or fv < 1 then
        fail("BackupFileJsonError", ("line 1 of %s: format_version must be a positive whole number"):format(what), { line = 1 })
      end
      if fv > F.FORMAT_VERSION then
        fail("BackupFormatTooNew", ("line 1 of %s: %s format version %d is newer than this couchlua (%s) reads "
          .. "(up to %d): restore it with a newer couchlua"):format(what, F.FORMAT, fv, tostring(couch.version), F.FORMAT_VERSION),
          { line = 1, format_version = fv })
      end
      return "all"
    end
    if v.name and v.version and v.mode then return v.mode end
    return nil
  end

  return F
end
