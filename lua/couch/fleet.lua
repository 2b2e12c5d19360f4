-- Fleet operations on a replicator database: thousands of replication documents created,
-- stopped and repaired in chunks of one _bulk_docs each, with a result per document.
--   rep:create_many(list [, { chunk =, resume =, on_chunk = }])
--   rep:stop_many(ids | { states =, source =, target = } [, { chunk = }])
--   rep:repair{ states =, source =, target =, ids =, dry_run =, chunk = }
-- A repair restarts a replication the way CouchDB's documentation prescribes: the
-- document is deleted and created again with the same id and options (a job does not
-- re-read a document updated in place).
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch, Replicator, h)
  local json = couch.json
  local scheduler = h.scheduler
  local usage = h.usage

  local CHUNK = 500
  local RESULTS_MT = { __tostring = function(r)
    return ("%d ok, %d failed"):format(r.ok_count, r.failed_count)
  end }

  local function chunk_of(opts)
    local n = opts and opts.chunk or CHUNK
    if math.type(n) ~= "integer" or n < 1 then usage("chunk", "expected an integer >= 1") end
    return n
  end

  local function error_result(id, err)
    return { id = id, error = couch.is_error(err) and (err.error or err.kind) or "error",
             reason = couch.is_error(err) and (err.reason or err.message) or tostring(err) }
  end

  local function tally(results)
    local ok, failed = 0, {}
    for i, r in ipairs(results) do
      if r.ok then ok = ok + 1 else failed[#failed + 1] = i end
    end
    results.ok_count, results.failed_count, results.failed = ok, #failed, failed
    return setmetatable(results, RESULTS_MT)
  end

  -- The server's answer for one chunk, or an error result for each of its documents when
  -- the request itself failed (nothing is lost: every document gets a result).
  local function bulk(self, docs)
    local ok, res = pcall(self.db.bulk_docs, self.db, docs)
    if ok then return res end
    local out = {}
    for i, d in ipairs(docs) do out[i] = error_result(d._id, res) end
    return out
  end

  --- rep:create_many(list [, opts]) -> results: results[i] = { ok = true, id =, rev = } or
  -- { id =, error =, reason = } for list[i]; results.ok_count, .failed_count, .failed (the
  -- indices that failed). Every entry is checked before the first request. opts.chunk
  -- (500): documents per _bulk_docs; opts.on_chunk(done, total) after each; opts.resume:
  -- the documents that exist already are left alone and count as created (one _all_docs
  -- per chunk finds them): run the same list again after a partial failure (give every
  -- entry an `id` for that).
  function Replicator:create_many(list, opts)
    if type(list) ~= "table" then usage("list", "expected a list of replication options") end
    I.check_options(opts, "rep:create_many", { chunk = "integer", resume = "boolean", on_chunk = "function" })
    local size = chunk_of(opts)
    local resume = opts and opts.resume
    local docs = {}
    for i, o in ipairs(list) do
      local doc = h.build(self.server, o, "rep:create_many")
      if resume and not doc.id then usage("list", ("entry %d has no id: resume needs the ids of the first run"):format(i)) end
      doc._id = doc.id or h.new_id()
      doc.id = nil
      docs[i] = doc
    end
    local results = {}
    for first = 1, #docs, size do
      local last = math.min(first + size - 1, #docs)
      local todo = {} -- indices into docs
      if resume then -- what the first run created is left alone (one _all_docs per chunk)
        local keys = {}
        for k = first, last do keys[#keys + 1] = docs[k]._id end
        local ok, res = pcall(self.db.all_docs, self.db, { keys = keys })
        for k = first, last do
          local row = ok and res.rows[k - first + 1]
          local v = row and row.value
          if type(v) == "table" and v.rev and not v.deleted then
            results[k] = { ok = true, id = docs[k]._id, rev = v.rev, existing = true }
          else
            todo[#todo + 1] = k
          end
        end
      else
        for k = first, last do todo[#todo + 1] = k end
      end
      local batch = {}
      for i, k in ipairs(todo) do batch[i] = docs[k] end
      local res = #batch > 0 and bulk(self, batch) or {}
      for i, k in ipairs(todo) do
        local r = res[i] or error_result(docs[k]._id, "no answer for this document")
        if r.error == "conflict" and resume then r = { ok = true, id = r.id, existing = true } end
        results[k] = r
      end
      if opts and opts.on_chunk then opts.on_chunk(last, #docs) end
    end
    return tally(results)
  end

  -- The current documents of these ids (one POST _all_docs per chunk): id -> doc or false
  local function read_docs(self, ids, size)
    local out = {}
    for first = 1, #ids, size do
      local keys = { table.unpack(ids, first, math.min(first + size - 1, #ids)) }
      local rows = self.db:all_docs { keys = keys, include_docs = true }.rows
      for i, row in ipairs(rows) do
        local doc = row.doc
        out[keys[i]] = (doc and doc ~= json.null) and doc or false
      end
    end
    return out
  end

  -- Replications matching a selection: { ids = {...} } and/or states and source/target
  -- patterns (Lua patterns, matched against the endpoint URL without credentials).
  local function select_ids(self, sel, default_states)
    I.check_options(sel, "selection", { ids = "table", states = "table|string", source = "string",
                                             target = "string", dry_run = "boolean", chunk = "integer" })
    if sel.ids then return sel.ids, nil end
    local states = sel.states
    if states == nil and not (sel.source or sel.target) then states = default_states end
    if type(states) == "string" then
      local t = {}
      for s in states:gmatch("[^,%s]+") do t[#t + 1] = s end
      states = t
    end
    local ids, state_of = {}, {}
    if states then
      local wanted = {}
      for _, s in ipairs(states) do wanted[s] = true end
      local by_id = scheduler.docs_by_id(self.server, self.db_name, table.concat(states, ","))
      if by_id then
        for id, d in pairs(by_id) do
          if wanted[d.state] then ids[#ids + 1] = id; state_of[id] = d.state end
        end
      else -- no scheduler (pouchdb-server): the documents' own states
        for _, st in ipairs(self:list()) do
          if wanted[st.state] then ids[#ids + 1] = st.id; state_of[st.id] = st.state end
        end
      end
      table.sort(ids)
    else
      for row in self.db:all_docs_iter { page_size = 1000 } do
        if not row.id:match("^_design/") then ids[#ids + 1] = row.id end
      end
    end
    return ids, state_of
  end

  local function url_of(ep)
    if type(ep) == "table" then ep = ep.url end
    return type(ep) == "string" and require("couch.redact").url(ep) or ""
  end

  local function matches(doc, sel)
    if sel.source and not url_of(doc.source):find(sel.source) then return false end
    if sel.target and not url_of(doc.target):find(sel.target) then return false end
    return true
  end

  -- Deletes docs (id -> doc); a document rewritten meanwhile (409) is read again and
  -- retried. -> id -> result
  local function delete_docs(self, docs, size)
    local out, todo = {}, {}
    for id, doc in pairs(docs) do todo[#todo + 1] = id end
    table.sort(todo)
    for attempt = 1, 5 do
      local again = {}
      for first = 1, #todo, size do
        local batch = {}
        for k = first, math.min(first + size - 1, #todo) do
          local d = docs[todo[k]]
          batch[#batch + 1] = { _id = d._id, _rev = d._rev, _deleted = true }
        end
        for i, r in ipairs(bulk(self, batch)) do
          local id = batch[i]._id
          if r.error == "conflict" and attempt < 5 then again[#again + 1] = id else out[id] = r end
        end
      end
      if #again == 0 then break end
      local fresh = read_docs(self, again, size)
      todo = {}
      for _, id in ipairs(again) do
        if fresh[id] then docs[id] = fresh[id]; todo[#todo + 1] = id
        else out[id] = { id = id, error = "not_found", reason = "deleted meanwhile" } end
      end
      couch.sleep(0.05 * attempt)
    end
    return out
  end

  --- rep:stop_many(ids | selection [, { chunk = 500 }]) -> results (as create_many's, one
  -- per replication stopped): deletes the replication documents. A selection is
  -- { states = {...} } and/or { source = pattern, target = pattern } (Lua patterns on the
  -- endpoint URLs).
  function Replicator:stop_many(sel, opts)
    if type(sel) ~= "table" then usage("ids", "expected a list of ids or a selection table") end
    I.check_options(opts, "rep:stop_many", { chunk = "integer" })
    local size = chunk_of(opts)
    if sel[1] ~= nil then sel = { ids = sel } end
    local ids = select_ids(self, sel, nil)
    local docs = read_docs(self, ids, 1000)
    local live, results = {}, {}
    for _, id in ipairs(ids) do
      if docs[id] and matches(docs[id], sel) then live[id] = docs[id] end
    end
    local done = delete_docs(self, live, size)
    for _, id in ipairs(ids) do
      if done[id] then results[#results + 1] = done[id]
      elseif sel.ids and not docs[id] then
        results[#results + 1] = { id = id, error = "not_found", reason = "no such replication" }
      end
    end
    return tally(results)
  end

  -- what a replication document was created with: the server's own fields left out
  local function options_of(doc)
    local body = {}
    for k, v in pairs(doc) do
      if k ~= "_rev" and k ~= "owner" and not k:match("^_replication_") then body[k] = v end
    end
    return body
  end

  --- rep:repair{ states = {"crashing", "failed", "error"}, source =, target =, ids =,
  -- dry_run = false, chunk = 500 } -> report: restarts the replications selected (by
  -- default those in the states above; source / target are Lua patterns on the endpoint
  -- URLs) by deleting each document and creating it again with the same id and options.
  -- report = { matched = n, restarted = { {id =, state =, rev =}, ... },
  --            failed = { {id =, error =, reason =}, ... }, dry_run = bool }
  function Replicator:repair(sel)
    sel = sel or {}
    if type(sel) ~= "table" then usage("selection", "expected a table") end
    local size = chunk_of(sel)
    local ids, state_of = select_ids(self, sel, { "crashing", "failed", "error" })
    local docs = read_docs(self, ids, 1000)
    local chosen, order = {}, {}
    for _, id in ipairs(ids) do
      local d = docs[id]
      if d and matches(d, sel) then chosen[id] = d; order[#order + 1] = id end
    end
    local report = { matched = #order, restarted = {}, failed = {}, dry_run = sel.dry_run == true }
    local function state_for(id)
      return state_of and state_of[id] or h.make_state(chosen[id], nil).state
    end
    if report.dry_run then
      for _, id in ipairs(order) do report.restarted[#report.restarted + 1] = { id = id, state = state_for(id) } end
      return report
    end
    local bodies = {}
    for _, id in ipairs(order) do bodies[id] = options_of(chosen[id]); state_of = state_of or {}; state_of[id] = state_for(id) end
    local deleted = delete_docs(self, chosen, size)
    local again = {}
    for _, id in ipairs(order) do
      local r = deleted[id]
      if r and r.ok then again[#again + 1] = bodies[id]
      else report.failed[#report.failed + 1] = { id = id, error = r and r.error or "error", reason = r and r.reason } end
    end
    for first = 1, #again, size do
      local batch = { table.unpack(again, first, math.min(first + size - 1, #again)) }
      for i, r in ipairs(bulk(self, batch)) do
        local id = batch[i]._id
        if r.ok then
          report.restarted[#report.restarted + 1] = { id = id, state = state_of[id], rev = r.rev }
        else
          report.failed[#report.failed + 1] = { id = id, error = r.error, reason = r.reason }
        end
      end
    end
    return report
  end
end
