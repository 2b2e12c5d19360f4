-- /_scheduler (CouchDB 2.1+): docs, doc, jobs, job and iterators over every page. A server
-- without it (pouchdb-server, CouchDB 1.x) gives an `unsupported` error naming the
-- endpoint; the replicator falls back to the documents' own fields there.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  local S = I.server_methods
  local json = couch.json
  local redact = require("couch.redact")
  local M = {}

  local usage = I.usage -- usage(argument, why): a `usage` error naming it

  --- Whether the server has /_scheduler (asked once per server).
  -- Many tasks ask at once when many followers start together: one probe answers them all.
  function M.supported(srv)
    local st = srv:_state()
    while st.scheduler_probe do st.scheduler_probe:wait() end
    if st.has_scheduler == nil then
      local probe = couch.cond()
      st.scheduler_probe = probe
      local ok, _, status = pcall(srv.request, srv, "GET", "/_scheduler/jobs",
        { query = { limit = 0 }, allow = { [400] = true, [404] = true, [405] = true } })
      st.scheduler_probe = nil
      probe:broadcast()
      if not ok then error(_, 0) end
      st.has_scheduler = status == 200
    end
    return st.has_scheduler
  end

  local function unsupported(endpoint)
    I.raise("unsupported", ("this server has no %s (CouchDB 2.1+ has it; pouchdb-server and CouchDB 1.x do not)"):format(endpoint),
      { endpoint = endpoint })
  end

  local function get(srv, path, query, allow404)
    if not M.supported(srv) then unsupported("/_scheduler") end
    local body, status = srv:request("GET", path, { query = query, allow = allow404 and { [404] = true } or nil })
    if status == 404 then return nil end
    return redact.value(body)
  end

  --- The scheduler's entry for one replication document, or nil (missing, or no scheduler).
  function M.doc_or_nil(srv, db, id)
    if not M.supported(srv) then return nil end
    return get(srv, "/_scheduler/docs/" .. couch.escape(db) .. "/" .. couch.escape(id), nil, true)
  end

  -- The states a job can still leave (the others are written into the document too).
  M.ACTIVE = "initializing,error,running,pending,crashing"

  --- fn(row) for every scheduler entry of one replicator database, a page of 1000 at a
  -- time (each page decoded, used and dropped before the next: a fleet of 10,000 costs 10
  -- requests and never more than one page in memory); `states` ("running,pending" or
  -- M.ACTIVE) asks for those only. -> the number of rows, or nil without a scheduler.
  -- The rows are NOT masked (CouchDB leaves credentials out of them; whoever shows one
  -- masks what it shows, as make_state does with `info`).
  function M.each_doc(srv, db, states, fn)
    if not M.supported(srv) then return nil end
    local skip, path = 0, "/_scheduler/docs/" .. couch.escape(db)
    repeat
      local docs = srv:request("GET", path, { query = { limit = 1000, skip = skip, states = states } }).docs
      for i = 1, #docs do fn(docs[i]) end
      skip = skip + #docs
    until #docs < 1000
    return skip
  end

  -- A page of /_scheduler/docs as CouchDB writes it: {"total_rows":..,"offset":..,"docs":[
  -- {"database":"..","doc_id":"..",...},...]}. Each row starts with the same key, which
  -- cannot occur inside a JSON string (its quotes would be escaped there), so the page
  -- splits into each row's own text without decoding it. -> list of { id, text }, or nil
  -- when the page is not in that shape (the caller decodes it instead).
  local ROW, DOC_ID = '{"database":"', '"doc_id":"'
  local function split_rows(body)
    local out, s = {}, body:find(ROW, 1, true)
    if not s then
      if body:find('"docs":%s*%[%s*%]') then return out end
      return nil
    end
    local ids = 0
    local at = body:find(DOC_ID, 1, true)
    while at do ids = ids + 1; at = body:find(DOC_ID, at + #DOC_ID, true) end
    while s do
      local nxt = body:find(ROW, s + #ROW, true)
      local text = body:sub(s, (nxt or #body + 1) - 1)
      local q = text:find(DOC_ID, 1, true)
      if not q then return nil end
      q = q + #DOC_ID
      local close = text:find('"', q, true)
      -- a quote preceded by an odd number of backslashes is part of the id
      while close and #text:sub(q, close - 1):match("\\*$") % 2 == 1 do close = text:find('"', close + 1, true) end
      if not close then return nil end
      local id = text:sub(q, close - 1)
      if id:find("\\", 1, true) then
        local ok, v = pcall(json.decode, '"' .. id .. '"')
        if not ok then return nil end
        id = v
      end
      out[#out + 1] = { id, text }
      s = nxt
    end
    if #out ~= ids then return nil end -- a row not led by "database": not the shape assumed
    return out
  end

  --- The row one text of split_rows holds, decoded (nil when it is not one JSON object).
  function M.decode_row(text)
    local obj = text:gsub("%s*,%s*$", "")
    if not obj:find("}%s*$") then return nil end
    local ok, v = pcall(json.decode, obj)
    if not ok then
      -- the page's last row: the text runs on with the envelope's "]}"
      ok, v = pcall(json.decode, (obj:gsub("%s*%]%s*}%s*$", "")))
    end
    if ok and type(v) == "table" then return v end
    return nil
  end

  --- fn(doc_id, text, row, key) for every scheduler entry of one replicator database, a
  -- page of 1000 at a time, decoding only the rows that need it: `text` is the row's JSON
  -- text as the server wrote it (the same text means the same row: a cheap key to compare
  -- polls by). `prepare(doc_id, text) -> key, wanted` (optional) says which rows are
  -- wanted decoded: those come as `row` (decoded one by one, or the whole page at once
  -- when more than a quarter of it is wanted, which is cheaper then); the others as text
  -- only (decode them with M.decode_row). On a page in another shape every row is decoded
  -- (text nil). -> the number of rows, or nil without a scheduler.
  function M.each_row(srv, db, states, fn, prepare)
    if not M.supported(srv) then return nil end
    local skip, path = 0, "/_scheduler/docs/" .. couch.escape(db)
    local n
    repeat
      local body = srv:request("GET", path, { query = { limit = 1000, skip = skip, states = states }, raw = true })
      local rows = type(body) == "string" and split_rows(body)
      local docs
      if rows then
        n = #rows
        local keys, wanted, k = {}, {}, 0
        for i = 1, n do
          if prepare then keys[i], wanted[i] = prepare(rows[i][1], rows[i][2]) end
          if wanted[i] then k = k + 1 end
        end
        if k > n / 4 then
          docs = json.decode(body).docs
          if #docs ~= n then rows = nil end
          for i = 1, rows and n or 0 do
            if docs[i].doc_id ~= rows[i][1] then rows = nil; break end
          end
        end
        if rows then
          for i = 1, n do
            local row = wanted[i] and (docs and docs[i] or M.decode_row(rows[i][2])) or nil
            fn(rows[i][1], rows[i][2], row, keys[i])
          end
        end
      end
      if not rows then
        docs = docs or (type(body) == "string" and json.decode(body) or body).docs
        n = #docs
        for i = 1, n do fn(docs[i].doc_id, nil, docs[i], nil) end
      end
      skip = skip + n
    until n < 1000
    return skip
  end

  --- Every scheduler entry of one replicator database, by document id (nil: no scheduler);
  -- `states` as for each_doc. For callers that need them all at once (rep:list, counts).
  function M.docs_by_id(srv, db, states)
    local out = {}
    if not M.each_doc(srv, db, states, function(d) out[d.doc_id] = d end) then return nil end
    return out
  end

  --- srv:membership() -> { all_nodes = {...}, cluster_nodes = {...} }: the nodes of a
  -- CouchDB 2+ server (one on a single node; a cluster's jobs run on all of them)
  function S:membership()
    local body, status = self:request("GET", "/_membership", { allow = { [400] = true, [404] = true } })
    if status ~= 200 then unsupported("/_membership") end
    return body
  end

  local Scheduler = {}
  Scheduler.__index = Scheduler
  Scheduler.__name = "couch.scheduler"
  function Scheduler:__tostring() return ("couch.scheduler <%s>"):format(self.server.url) end

  --- srv:scheduler() -> the scheduler of this server
  function S:scheduler() return setmetatable({ server = self }, Scheduler) end

  local function paging(opts)
    opts = opts or {}
    local q = { limit = opts.limit, skip = opts.skip }
    if opts.states then
      if type(opts.states) == "table" then q.states = table.concat(opts.states, ",")
      elseif type(opts.states) == "string" then q.states = opts.states
      else usage("states", "expected a list of states or a comma-separated string") end
    end
    return q
  end

  --- sch:docs{ limit =, skip =, states = {...}, db = "_replicator" } -> {total_rows, offset, docs}
  function Scheduler:docs(opts)
    local path = "/_scheduler/docs"
    if opts and opts.db then path = path .. "/" .. couch.escape(opts.db) end
    return get(self.server, path, paging(opts))
  end
  -- python-cloudant's names take (limit, skip) positionally as well
  local function positional(limit, skip)
    if type(limit) == "table" or (limit == nil and skip == nil) then return limit end
    if limit ~= nil and math.type(limit) ~= "integer" then usage("limit", "expected an integer or an options table") end
    if skip ~= nil and math.type(skip) ~= "integer" then usage("skip", "expected an integer") end
    return { limit = limit, skip = skip }
  end
  function Scheduler:list_docs(limit, skip) return self:docs(positional(limit, skip)) end

  --- sch:doc(id [, db = "_replicator"]) -> one document's replication state
  function Scheduler:doc(id, db)
    if type(id) ~= "string" or id == "" then usage("id", "expected a document id") end
    local d = get(self.server, "/_scheduler/docs/" .. couch.escape(db or "_replicator") .. "/" .. couch.escape(id), nil, true)
    if not d then I.raise("not_found", ("the scheduler knows no document %q"):format(id), { status = 404, error = "not_found" }) end
    return d
  end
  Scheduler.get_doc = Scheduler.doc

  --- sch:jobs{ limit =, skip = } -> {total_rows, offset, jobs}
  function Scheduler:jobs(opts) return get(self.server, "/_scheduler/jobs", paging(opts)) end
  function Scheduler:list_jobs(limit, skip) return self:jobs(positional(limit, skip)) end

  --- sch:job(id) -> one job
  function Scheduler:job(id)
    if type(id) ~= "string" or id == "" then usage("id", "expected a job id") end
    local j = get(self.server, "/_scheduler/jobs/" .. couch.escape(id), nil, true)
    if not j then I.raise("not_found", ("no scheduler job %q"):format(id), { status = 404, error = "not_found" }) end
    return j
  end

  local function walker(fetch, field, opts)
    opts = opts or {}
    local page_size = opts.page_size or 100
    local skip, rows, i, done = opts.skip or 0, {}, 0, false
    return function()
      i = i + 1
      if rows[i] then return rows[i] end
      if done then return nil end
      local page = fetch { limit = page_size, skip = skip, states = opts.states, db = opts.db }
      rows, i = page[field], 1
      skip = skip + #rows
      if #rows < page_size then done = true end
      return rows[1]
    end
  end

  --- for d in sch:docs_iter{ states = {"crashing"} } do ... end (every page)
  function Scheduler:docs_iter(opts) return walker(function(o) return self:docs(o) end, "docs", opts) end
  --- for j in sch:jobs_iter() do ... end
  function Scheduler:jobs_iter(opts) return walker(function(o) return self:jobs(o) end, "jobs", opts) end

  local methods = require("couch.methods")
  methods.guard(couch, Scheduler, "sched", methods.is_a(Scheduler))
  return M
end
