-- Reading a batch of documents for a backup, as the exact bytes the server sent: one
-- _bulk_get (revs=true; with latest and every leaf for revisions = "all"), or one
-- open_revs GET per document where the server has no _bulk_get, as the native engine does.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch, F)
  local json = couch.json
  local fail = F.fail
  local M = {}

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
  function M.fetch(run, reqs)
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
            text = F.with_sdk_content_types(text)
          end
          out[#out + 1] = F.one_line(text)
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
  function M.reqs_of(results, lossless)
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

  return M
end
