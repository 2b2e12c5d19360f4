-- Server-side replication: the _replicator database (python-cloudant's Replicator, in Lua),
-- /_replicate, and follow-loops that scale. One long-poll _changes feed on the replicator
-- database per server wakes every follower whose document changed, and one
-- /_scheduler/docs request per interval feeds every follower's transient state; no
-- follower ever polls on its own.
return function(couch)
  local json = couch.json
  local S = couch._server_methods
  local redact = require("couch.redact")
  local scheduler = require("couch.scheduler")(couch)

  local function usage(arg, msg)
    couch._raise("usage", ("bad argument '%s': %s"):format(arg, msg), { argument = arg })
  end

  ---------------------------------------------------------------------------
  -- Building replication documents / _replicate bodies

  local endpoint_auth
  local ALIASES = { repl_id = "id", batch_size = "worker_batch_size", source_db = "source", target_db = "target" }

  local TYPES = {
    continuous = "boolean", create_target = "boolean", use_checkpoints = "boolean",
    winning_revs_only = "boolean", cancel = "boolean", use_bulk_get = "boolean",
    doc_ids = "table", selector = "table", query_params = "table", user_ctx = "table",
    filter = "string", source_proxy = "string", target_proxy = "string", socket_options = "string",
    id = "string",
    checkpoint_interval = "integer", worker_processes = "integer", worker_batch_size = "integer",
    batch_timeout = "integer", http_connections = "integer", connection_timeout = "integer",
    retries_per_request = "integer",
  }

  -- Every option a replication document or /_replicate body may carry (CouchDB 3's and
  -- Cloudant's), by type, so a misspelt one is an error and not a field CouchDB ignores.
  -- Fields couchlua does not know go in `extra = {...}`, copied into the body as given.
  local SPEC = {
    source = "string|table", target = "string|table", since_seq = "any", owner = "string",
    create_target_params = "table", extra = "table",
  }
  for k, t in pairs(TYPES) do SPEC[k] = t end
  for alias, name in pairs(ALIASES) do SPEC[alias] = SPEC[name] end
  local REPLICATE_SPEC = { timeout = "number" } -- srv:replicate's own: the request's timeout
  for k, t in pairs(SPEC) do REPLICATE_SPEC[k] = t end

  -- An endpoint's auth object as CouchDB reads it. python-cloudant's shapes are converted:
  -- { username =, password = } -> { basic = {...} }, { api_key = } -> { iam = {...} };
  -- CouchDB's own { basic = } / { iam = } / { session = } pass as they are. Anything else
  -- would be stored verbatim and crash the job as unauthorized, so it is a usage error.
  function endpoint_auth(auth, arg)
    if auth == nil then return nil end
    arg = arg .. ".auth"
    if type(auth) ~= "table" then usage(arg, ("expected a table, got %s"):format(type(auth))) end
    if auth.username ~= nil or auth.password ~= nil then
      if type(auth.username) ~= "string" or type(auth.password) ~= "string" then
        usage(arg, "username and password must both be strings")
      end
      local keys = 0
      for _ in pairs(auth) do keys = keys + 1 end
      if keys ~= 2 then
        usage(arg, "give either { username =, password = } or CouchDB's { basic = {...} }")
      end
      return { basic = { username = auth.username, password = auth.password } }
    end
    if auth.api_key ~= nil then
      if type(auth.api_key) ~= "string" then usage(arg .. ".api_key", "expected a string") end
      return { iam = { api_key = auth.api_key } }
    end
    for k in pairs(auth) do
      if k ~= "basic" and k ~= "iam" and k ~= "session" then
        usage(arg .. "." .. tostring(k), "unknown auth kind (expected basic, iam, or username/password)")
      end
    end
    if auth.basic ~= nil and (type(auth.basic) ~= "table" or type(auth.basic.username) ~= "string"
        or type(auth.basic.password) ~= "string") then
      usage(arg .. ".basic", "expected { username = '...', password = '...' }")
    end
    if auth.iam ~= nil and (type(auth.iam) ~= "table" or type(auth.iam.api_key) ~= "string") then
      usage(arg .. ".iam", "expected { api_key = '...' }")
    end
    return auth
  end

  -- A database name on this server, a URL, or an endpoint table -> an endpoint table with
  -- credentials in an auth object, never in the URL.
  local function endpoint(srv, v, arg)
    if type(v) == "string" then
      if v == "" then usage(arg, "must not be empty") end
      if v:match("^https?://") then
        local clean = redact.url(v)
        if clean == v then return v end
        -- credentials in a URL move into an auth object
        local user, pass = v:match("^%a[%w+.-]*://([^:/@]*):?([^/@]*)@")
        local function unescape(s) return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end
        return { url = clean, headers = json.object {},
                 auth = { basic = { username = unescape(user), password = unescape(pass) } } }
      end
      local url = srv.url .. "/" .. couch.escape(v)
      local auth = srv:_endpoint_auth()
      -- without credentials a plain URL is what every server accepts (pouchdb-server's
      -- /_replicate takes nothing else)
      if not auth then return url end
      return { url = url, headers = json.object {}, auth = auth }
    elseif type(v) == "table" and v.server and v.path and type(v.request) == "function" then
      -- a database object: its own server's URL and credentials
      local url = v.server.url .. v.path
      local auth = v.server:_endpoint_auth()
      if not auth then return url end
      return { url = url, headers = json.object {}, auth = auth }
    elseif type(v) == "table" then
      if type(v.url) ~= "string" or v.url == "" then usage(arg .. ".url", "an endpoint table needs a url") end
      local ep = {}
      for k, x in pairs(v) do ep[k] = x end
      ep.headers = ep.headers or json.object {}
      ep.auth = endpoint_auth(ep.auth, arg)
      return ep
    elseif v == nil then
      usage(arg, "is required (a database name, a URL or an endpoint table)")
    end
    usage(arg, ("expected a database name, URL or endpoint table, got %s"):format(type(v)))
  end

  local function normalise(opts, what)
    if type(opts) ~= "table" then usage("opts", "expected a table of replication options") end
    couch._check_options(opts, what, what == "srv:replicate" and REPLICATE_SPEC or SPEC)
    local o = {}
    for alias, name in pairs(ALIASES) do
      if opts[alias] ~= nil and opts[name] ~= nil then
        usage(alias, ("is an alias of '%s'; give only one"):format(name))
      end
    end
    for k, v in pairs(opts) do o[ALIASES[k] or k] = v end
    if o.doc_ids and (o.filter or o.selector) then
      usage("doc_ids", "cannot be combined with " .. (o.filter and "'filter'" or "'selector'"))
    end
    if o.filter and o.selector then usage("selector", "cannot be combined with 'filter'") end
    if o.query_params and not o.filter then usage("query_params", "only makes sense with a 'filter'") end
    if o.doc_ids then
      for i, id in ipairs(o.doc_ids) do
        if type(id) ~= "string" then usage("doc_ids", ("entry %d is not a string"):format(i)) end
      end
    end
    return o
  end

  -- The body shared by a _replicator document and a /_replicate request.
  local function build(srv, opts, what)
    local o = normalise(opts, what)
    local body = {}
    for k, v in pairs(o.extra or {}) do body[k] = v end
    o.extra = nil
    for k, v in pairs(o) do body[k] = v end
    body.source = endpoint(srv, o.source, "source")
    body.target = endpoint(srv, o.target, "target")
    if o.since_seq ~= nil then body.since_seq = o.since_seq end
    return body
  end

  local function new_id() return couch._random_hex(16) end

  ---------------------------------------------------------------------------
  -- States

  local SEVEN = { initializing = true, running = true, completed = true, pending = true,
                  crashing = true, error = true, failed = true }

  -- pouchdb-server / CouchDB 1.x write these into the document itself.
  local FROM_DOC = { triggered = "running", completed = "completed", error = "error", failed = "failed" }

  local ACTIVE = { initializing = true, error = true, running = true, pending = true, crashing = true }

  local function terminal(state, has_scheduler)
    return state == "completed" or state == "failed" or (state == "error" and not has_scheduler)
  end

  -- The state table: the document's own fields merged with the scheduler's view.
  -- (`redacted`: doc is a masked copy already, which the state then shares)
  local function make_state(doc, sched, redacted)
    local st = {
      id = doc._id, doc = redacted and doc or redact.value(doc),
      _replication_state = doc._replication_state,
      _replication_state_time = doc._replication_state_time,
      _replication_state_reason = doc._replication_state_reason,
      _replication_stats = doc._replication_stats,
      _replication_id = doc._replication_id,
      continuous = doc.continuous == true,
      source = redact.value(type(doc.source) == "table" and doc.source.url or doc.source),
      target = redact.value(type(doc.target) == "table" and doc.target.url or doc.target),
    }
    if sched then
      st.state = sched.state
      if sched.info ~= json.null then st.info = redact.value(sched.info) end
      -- JSON nulls (initializing / pending) become nil, so `st.info and st.info.x` works
      local function value(x) if x ~= json.null then return x end end
      st.error_count = value(sched.error_count)
      st.start_time = value(sched.start_time)
      st.last_updated = value(sched.last_updated)
      st.node = value(sched.node)
      st.job_id = value(sched.id)
    end
    if not st.state or not SEVEN[st.state] then
      st.state = FROM_DOC[doc._replication_state] or "initializing"
    end
    -- The document's own end (completed / failed, written by the server) is final: a
    -- scheduler row older than it (a follower's last poll, a cluster row still missing)
    -- does not override it, and a job that ended runs on no node.
    local ended = FROM_DOC[doc._replication_state]
    if (ended == "completed" or ended == "failed") and st.state ~= ended then
      st.state, st.node, st.job_id = ended, nil, nil
      if ended == "completed" then st.info = redact.value(doc._replication_stats) else st.info = nil end
    end
    if not st.info and st.state ~= "completed" and doc._replication_state_reason then
      st.info = { error = doc._replication_state_reason }
    end
    return setmetatable(st, { __tostring = function(s)
      return ("replication %s: %s%s"):format(s.id, s.state,
        s.info and s.info.error and (" (" .. tostring(s.info.error):gsub("%s+", " ") .. ")") or "")
    end })
  end

  ---------------------------------------------------------------------------
  -- The Replicator object

  local Replicator = {}
  Replicator.__index = Replicator
  Replicator.__name = "couch.replicator"

  function Replicator:__tostring() return ("couch.replicator <%s/%s>"):format(self.server.url, self.db.name) end

  --- srv:replicator([db_name]) -> the replicator for that database (default _replicator)
  function S:replicator(db_name)
    db_name = db_name or "_replicator"
    return setmetatable({ server = self, db = self:db(db_name), db_name = db_name }, Replicator)
  end

  --- rep:create{ source =, target =, id =, continuous =, ... } -> the created document
  -- (credentials masked in what is returned)
  function Replicator:create(opts)
    local doc = build(self.server, opts, "rep:create")
    doc._id = doc.id or new_id()
    doc.id = nil
    local ok, res = pcall(self.db.put, self.db, doc)
    if not ok then
      if couch.is_error(res) and res.status == 409 then
        res.message = ("replication %q exists already in %s: rep:replace(opts) deletes and re-creates it"):format(doc._id, self.db_name)
      end
      error(res, 0)
    end
    doc._rev = res.rev
    return redact.value(doc)
  end

  --- rep:replace{ id =, ... } -> the created document: deletes the replication `id` if it
  -- exists, then creates it with these options. CouchDB's way to change a replication: a
  -- document updated in place is not re-read by a running job.
  function Replicator:replace(opts)
    if type(opts) ~= "table" then usage("opts", "expected a table of replication options") end
    local id = opts.id or opts.repl_id
    if type(id) ~= "string" or id == "" then usage("id", "replace needs the id of the replication to replace") end
    local ok, err = pcall(self.stop, self, id)
    if not ok and not (couch.is_error(err) and err.kind == "not_found") then error(err, 0) end
    return self:create(opts)
  end
  -- python-cloudant's create_replication(source_db, target_db, repl_id, **kwargs), positionally
  -- too: rep:create_replication("a", "b", "id", { continuous = true })
  function Replicator:create_replication(source, target, id, opts)
    if type(source) == "table" and getmetatable(source) == nil and target == nil then return self:create(source) end
    if opts ~= nil and type(opts) ~= "table" then usage("opts", "expected a table of replication options") end
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    local function put(name, v)
      if v == nil then return end
      if o[name] ~= nil then usage(name, "given both positionally and in the options") end
      o[name] = v
    end
    put("source", source); put("target", target); put("id", id)
    return self:create(o)
  end

  local function get_doc(self, id)
    if type(id) ~= "string" or id == "" then usage("id", "expected a replication document id") end
    local doc, status = self.db:request("GET", "/" .. couch.doc_path(id), { allow = { [404] = true } })
    if status == 404 then
      couch._raise("not_found", ("no replication %q in %s"):format(id, self.db_name),
        { status = 404, id = id, error = "not_found" })
    end
    return doc
  end

  --- rep:state(id) -> state table (see make_state); `not_found` error when missing
  function Replicator:state(id)
    local doc = get_doc(self, id)
    return make_state(doc, scheduler.doc_or_nil(self.server, self.db_name, id))
  end
  Replicator.replication_state = Replicator.state

  --- rep:list([{ by = "node" | "state" }]) -> every replication (design documents left
  -- out), each with its state; with `by`, grouped: { [node or state] = { states... } }
  -- (by node: replications that run on no node -- completed, failed, not started -- are
  -- under "none").
  function Replicator:list(opts)
    couch._check_options(opts or {}, "rep:list", { by = "string" })
    local by = opts and opts.by
    if by ~= nil and by ~= "node" and by ~= "state" then usage("by", "expected \"node\" or \"state\"") end
    local by_id = scheduler.docs_by_id(self.server, self.db_name)
    local out = {}
    for row in self.db:all_docs_iter { include_docs = true, page_size = 500 } do
      if not row.id:match("^_design/") and row.doc then
        out[#out + 1] = make_state(row.doc, by_id and by_id[row.id])
      end
    end
    if not by then return out end
    local groups = {}
    for _, st in ipairs(out) do
      local key = st[by] or "none"
      groups[key] = groups[key] or {}
      table.insert(groups[key], st)
    end
    return groups
  end

  --- rep:counts() -> { total =, states = { running = n, ... }, nodes = { [node] = { running
  -- = n, pending = n, ... } } }: the fleet at a glance, from /_scheduler/docs alone (one
  -- request per 1000 replications); without a scheduler, from the documents' own states.
  function Replicator:counts()
    local out = { total = 0, states = {}, nodes = {} }
    local function add(state, node)
      out.total = out.total + 1
      out.states[state] = (out.states[state] or 0) + 1
      if node then
        local n = out.nodes[node] or {}
        out.nodes[node] = n
        n[state] = (n[state] or 0) + 1
      end
    end
    local by_id = scheduler.docs_by_id(self.server, self.db_name)
    if by_id then
      for _, d in pairs(by_id) do add(d.state, d.node ~= json.null and d.node or nil) end
    else
      for _, st in ipairs(self:list()) do add(st.state) end
    end
    return out
  end
  Replicator.list_replications = Replicator.list

  --- rep:stop(id) -> {ok, id, rev}: re-reads and deletes, retrying when the server
  -- rewrote the document in between (409)
  function Replicator:stop(id)
    for attempt = 1, 10 do
      local doc = get_doc(self, id)
      local res, status = self.db:request("DELETE", "/" .. couch.doc_path(id),
        { query = { rev = doc._rev }, allow = { [409] = true } })
      if status ~= 409 then return res end
      couch.sleep(0.05 * attempt)
    end
    couch._raise("http", ("could not delete replication %q: it kept changing (409)"):format(id),
      { status = 409, error = "conflict" })
  end
  Replicator.stop_replication = Replicator.stop

  ---------------------------------------------------------------------------
  -- Following

  local watchers = setmetatable({}, { __mode = "k" }) -- server state table -> watcher

  local function notify(follower)
    follower.dirty = true
    follower.cond:signal()
  end

  -- What a follower would see change in a scheduler row, as one string (cheap: a poll of
  -- 10,000 rows builds 10,000 of them)
  local function sched_mark(s)
    local info = s.info
    local i = type(info) == "table" and info or {}
    return table.concat({ tostring(s.state), tostring(s.error_count), tostring(s.last_updated), tostring(s.node),
      tostring(i.error), tostring(i.docs_read), tostring(i.docs_written), tostring(i.doc_write_failures),
      tostring(i.changes_pending), tostring(i.checkpointed_source_seq), tostring(i.through_seq) }, "\0")
  end

  -- One watcher per server and replicator database: a changes feed for all the documents
  -- and one scheduler poll per interval.
  local function watcher_for(rep, interval)
    local key = rep.server:_state()
    watchers[key] = watchers[key] or {}
    local w = watchers[key][rep.db_name]
    if w then return w end
    w = { followers = {}, count = 0, rep = rep, interval = interval }
    watchers[key][rep.db_name] = w
    local since = rep.db:changes({ limit = 0, since = "now" }).last_seq
    w.feed_task = couch.spawn("replicator feed " .. rep.db_name, function()
      -- a short pause between rounds lets a burst of updates (many replications finishing
      -- together) arrive in one answer instead of one request each
      for change in rep.db:changes_feed { since = since, include_docs = true, poll = 30,
                                          coalesce = math.min(0.25, interval / 4) } do
        local list = w.followers[change.id]
        if list then
          -- one masked copy per change, shared by its followers and the states they yield
          local doc = not change.deleted and redact.value(change.doc)
          for f in pairs(list) do
            f.doc = doc
            notify(f)
          end
        end
      end
    end)
    if scheduler.supported(rep.server) then
      w.poll_task = couch.spawn("scheduler poll " .. rep.db_name, function()
        while true do
          couch.sleep(w.interval)
          -- Only the jobs that can still change (one page per 1000 of them): a job's end
          -- comes with its document through the feed. A row that is missing (a cluster
          -- drops a finishing job's row for a second, or the job ended) keeps the last one.
          local ok, by_id = pcall(scheduler.docs_by_id, rep.server, rep.db_name, scheduler.ACTIVE)
          if ok and by_id then
            for id, list in pairs(w.followers) do
              local s = by_id[id]
              local mark = s and sched_mark(s)
              for f in pairs(list) do
                if not s and f.sched and ACTIVE[f.sched.state] then
                  -- gone from the active jobs: its document should say how it ended; if
                  -- it has not after `settle` seconds, the follower reads both once
                  f.gone_since = f.gone_since or couch.now()
                  if couch.now() - f.gone_since >= f.settle then
                    f.gone_since, f.recheck = nil, true
                    notify(f)
                  end
                elseif s then
                  f.gone_since = nil
                end
                if mark and mark ~= f.sched_mark then
                  f.sched_mark, f.sched = mark, s
                  notify(f)
                end
              end
            end
          end
        end
      end)
    end
    return w
  end

  -- Followers that start in the same turn of the loop share one read of their documents
  -- (POST _all_docs with the keys) and one of the scheduler, instead of two requests each.
  local function read_initial(w, f)
    w.pending_init = w.pending_init or {}
    w.pending_init[#w.pending_init + 1] = f
    if w.init_task then return end
    w.init_task = couch.spawn("replicator initial read", function()
      couch.yield() -- every follower starting now joins this batch
      local batch = w.pending_init
      w.pending_init, w.init_task = nil, nil
      local ok, err = pcall(function()
        -- 1000 documents per request: a fleet's first read stays a few MB at a time
        local rows = {}
        for first = 1, #batch, 1000 do
          local keys = {}
          for i = first, math.min(first + 999, #batch) do keys[#keys + 1] = batch[i].id end
          for _, row in ipairs(w.rep.db:all_docs { keys = keys, include_docs = true }.rows) do rows[#rows + 1] = row end
        end
        -- one read of the scheduler serves every batch that starts within an interval
        local c = w.sched_read
        if not c or couch.now() - c.at > w.interval then
          c = { by_id = scheduler.docs_by_id(w.rep.server, w.rep.db_name) }
          c.at = couch.now()
          w.sched_read = c
        end
        local by_id = c.by_id
        for i, x in ipairs(batch) do
          local row = rows[i]
          if x.doc ~= nil then -- the feed already brought something newer
          elseif row and row.doc and row.doc ~= json.null then x.doc = redact.value(row.doc)
          elseif row and row.value and row.value.deleted then x.doc = false
          else x.missing = true end
          if x.sched == nil then x.sched = by_id and by_id[x.id] or nil end
        end
      end)
      for _, x in ipairs(batch) do
        if not ok then x.error = err end
        x.ready = true
        notify(x)
      end
    end)
  end

  local function leave(w, f)
    local list = w.followers[f.id]
    if not (list and list[f]) then return end
    list[f] = nil
    if next(list) == nil then w.followers[f.id] = nil end
    w.count = w.count - 1
    if w.count == 0 then
      w.feed_task:cancel()
      if w.poll_task then w.poll_task:cancel() end
      watchers[w.rep.server:_state()][w.rep.db_name] = nil
    end
  end

  local function timed_out(id, seconds, last)
    local state = last and last.state or "initializing"
    local msg
    if state == "initializing" then
      msg = ("replication %q: no job started within %gs (still initializing). A CouchDB node starts replication jobs only ~5 s after it boots, and a cluster only once its membership is stable: see srv:membership() and sch:docs()"):format(id, seconds)
    else
      msg = ("replication %q still %s after %gs"):format(id, state, seconds)
    end
    couch._raise("timeout", msg, { seconds = seconds, id = id, state = state })
  end

  --- for state in rep:follow(id, { interval = 1, timeout = s, settle = 10 }) do ... end
  -- Yields the state table each time it changes, ending after a terminal state (completed,
  -- failed), or when the document is deleted (a final state "deleted"). The last state is
  -- consistent: when the scheduler says a job ended before its document does (a cluster),
  -- the follower waits for the document (at most `settle` seconds, then reads it once).
  -- `timeout`: a `timeout` error if it has not ended by then, saying when no job started.
  function Replicator:follow(id, opts)
    opts = opts or {}
    local deadline = opts.timeout and couch.now() + opts.timeout
    local settle = opts.settle or 10
    local has_sched = scheduler.supported(self.server)
    local w = watcher_for(self, opts.interval or 1)
    local f = { id = id, cond = couch.cond(), dirty = true, settle = settle }
    w.followers[id] = w.followers[id] or {}
    w.followers[id][f] = true
    w.count = w.count + 1
    local closer = setmetatable({}, { __close = function() leave(w, f) end })
    f.dirty = false
    read_initial(w, f)
    local last_mark, finished, last_st, hold_until = nil, false, nil, nil
    local function iter()
      if finished then return nil end
      while true do
        if not f.dirty then
          local now = couch.now()
          local wake = hold_until
          if deadline and (not wake or deadline < wake) then wake = deadline end
          if wake then
            if now >= wake or not f.cond:wait(wake - now) then
              if hold_until and couch.now() >= hold_until then
                -- the document did not catch up in time: read it once, take what it says
                hold_until = false
                local ok, doc = pcall(get_doc, self, id)
                if ok then f.doc = redact.value(doc) elseif couch.is_error(doc) and doc.kind == "not_found" then f.doc = false end
                f.dirty = true
              elseif deadline and couch.now() >= deadline then
                finished = true
                leave(w, f)
                timed_out(id, opts.timeout, last_st)
              end
            end
          else
            f.cond:wait()
          end
          if not f.dirty then goto continue end
        end
        f.dirty = false
        if not f.ready then goto continue end
        if f.recheck then
          f.recheck = false
          local ok, doc = pcall(get_doc, self, id)
          if ok then f.doc = redact.value(doc) elseif couch.is_error(doc) and doc.kind == "not_found" then f.doc = false end
          if f.doc then
            local sok, s = pcall(scheduler.doc_or_nil, self.server, self.db_name, id)
            if sok and s then f.sched = s end
          end
        end
        if f.error or f.missing then
          finished = true
          leave(w, f)
          if f.error then error(f.error, 0) end
          couch._raise("not_found", ("no replication %q in %s"):format(id, self.db_name),
            { status = 404, id = id, error = "not_found" })
        end
        if f.doc == false then
          finished = true
          leave(w, f)
          return setmetatable({ id = id, state = "deleted" }, { __tostring = function() return ("replication %s: deleted"):format(id) end })
        end
        local st = make_state(f.doc, f.sched, true)
        -- the scheduler says the job ended, its document not yet: wait for the document
        if terminal(st.state, has_sched) and st.state ~= FROM_DOC[f.doc._replication_state] then
          if hold_until == nil then hold_until = couch.now() + settle end
          if hold_until then goto continue end
        end
        last_st = st
        local mark = json.encode { st.state, st._replication_state or json.null, st.info or json.null,
                                   st.error_count or 0, st.last_updated or json.null }
        if mark ~= last_mark then
          last_mark = mark
          if terminal(st.state, has_sched) then
            finished = true
            leave(w, f)
          end
          return st
        end
        ::continue::
      end
    end
    return iter, nil, nil, closer
  end
  Replicator.follow_replication = Replicator.follow

  --- rep:wait(id, { timeout = s }) -> the final state
  -- (a `timeout` error past opts.timeout, saying when no job has started at all)
  function Replicator:wait(id, opts)
    local last
    for st in self:follow(id, opts) do last = st end
    return last
  end


  ---------------------------------------------------------------------------
  -- /_replicate and _active_tasks

  --- srv:replicate{ source =, target =, continuous =, ... } -> the server's answer
  -- (one-shot: history and stats; continuous: includes the replication id)
  function S:replicate(opts)
    local body = build(self, opts, "srv:replicate")
    body.timeout = nil
    body.id = nil
    local res = self:request("POST", "/_replicate", { body = body, timeout = opts.timeout or 3600 })
    if type(res) == "table" then
      res.id = res._local_id or res.id
      return redact.value(res)
    end
    return res
  end

  --- srv:cancel_replication(id | opts) -> {ok, _local_id}
  function S:cancel_replication(what)
    local body
    if type(what) == "string" then
      body = { replication_id = what, cancel = true }
    elseif type(what) == "table" then
      body = build(self, what, "srv:cancel_replication")
      body.id = nil
      body.cancel = true
    else
      usage("id", "expected a replication id or the options it was started with")
    end
    return redact.value((self:request("POST", "/_replicate", { body = body })))
  end

  local active_tasks = S.active_tasks
  function S:active_tasks(opts)
    return redact.value(active_tasks(self, opts))
  end

  -- create_many, stop_many, repair: lua/couch/fleet.lua
  require("couch.fleet")(couch, Replicator, { build = build, new_id = new_id, usage = usage,
                                              scheduler = scheduler, make_state = make_state })

  local methods = require("couch.methods")
  methods.guard(couch, Replicator, "rep", methods.is_a(Replicator))
end
