-- Server-side replication: the _replicator database (python-cloudant's Replicator, in Lua),
-- /_replicate, and follow-loops that scale. One long-poll _changes feed on the replicator
-- database per server wakes every follower whose document changed, and one
-- /_scheduler/docs request per interval feeds every follower's transient state; no
-- follower ever polls on its own.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  local json = couch.json
  local S = I.server_methods
  local redact = require("couch.redact")
  local scheduler = require("couch.scheduler")(couch)

  local usage = I.usage -- usage(argument, why): a `usage` error naming it

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
        local unescape = require("couch.url").unescape
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
    I.check_options(opts, what, what == "srv:replicate" and REPLICATE_SPEC or SPEC)
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

  local function new_id() return I.random_hex(16) end

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

  -- One metatable for every state table (a closure and a metatable per state was most of a
  -- fleet follower's garbage).
  local STATE_MT = { __tostring = function(s)
    return ("replication %s: %s%s"):format(s.id, s.state,
      s.info and s.info.error and (" (" .. tostring(s.info.error):gsub("%s+", " ") .. ")") or "")
  end }

  local function endpoint_url(v)
    if type(v) == "table" then v = v.url end
    if type(v) == "string" then return redact.url(v) end
    return redact.value(v)
  end

  -- JSON nulls (initializing / pending) become nil, so `st.info and st.info.x` works
  local function value(x) if x ~= json.null then return x end end

  -- The state table: the document's own fields merged with the scheduler's view.
  -- (`redacted`: doc is a masked copy already, which the state then shares; a scheduler
  -- row's `info` is shared too unless something in it needs masking)
  local function make_state(doc, sched, redacted)
    if not redacted then doc = redact.value(doc) end
    local st = setmetatable({
      id = doc._id, doc = doc,
      _replication_state = doc._replication_state,
      _replication_state_time = doc._replication_state_time,
      _replication_state_reason = doc._replication_state_reason,
      _replication_stats = doc._replication_stats,
      _replication_id = doc._replication_id,
      continuous = doc.continuous == true,
      source = endpoint_url(doc.source),
      target = endpoint_url(doc.target),
    }, STATE_MT)
    if sched then
      st.state = sched.state
      st.info = value(sched.info)
      if st.info then st.info = redact.clean(st.info) end
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
      if ended == "completed" then st.info = doc._replication_stats else st.info = nil end
    end
    if not st.info and st.state ~= "completed" and doc._replication_state_reason then
      st.info = { error = doc._replication_state_reason }
    end
    return st
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
      I.raise("not_found", ("no replication %q in %s"):format(id, self.db_name),
        { status = 404, id = id, error = "not_found" })
    end
    return doc
  end

  -- How long rep:state looks again when the scheduler and the document disagree (the
  -- recorded cluster: a finishing job's row is gone ~1 s, then the document lags ~1 s more)
  local STATE_SETTLE, STATE_STEP = 3, 0.2

  --- rep:state(id) -> state table (see make_state); `not_found` error when missing.
  -- Never says less than it knows: with a scheduler, a document that does not say how its
  -- job ended and has no scheduler row (a cluster drops a finishing job's row for about a
  -- second; a job not picked up yet has none either), or a row that says the job ended
  -- before the document does, is read again every STATE_STEP s for up to STATE_SETTLE s; a
  -- terminal state is then the document's own. Past that, it says what it sees.
  function Replicator:state(id)
    local deadline
    while true do
      local doc = get_doc(self, id)
      local sched = scheduler.doc_or_nil(self.server, self.db_name, id)
      local ended = FROM_DOC[doc._replication_state]
      if not scheduler.supported(self.server) or ended == "completed" or ended == "failed"
          or (sched and not terminal(sched.state, true)) then
        return make_state(doc, sched)
      end
      deadline = deadline or couch.now() + STATE_SETTLE
      if couch.now() >= deadline then return make_state(doc, sched) end
      couch.sleep(STATE_STEP)
    end
  end
  Replicator.replication_state = Replicator.state

  --- rep:list([{ by = "node" | "state" }]) -> every replication (design documents left
  -- out), each with its state; with `by`, grouped: { [node or state] = { states... } }
  -- (by node: replications that run on no node -- completed, failed, not started -- are
  -- under "none").
  function Replicator:list(opts)
    I.check_options(opts or {}, "rep:list", { by = "string" })
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
    I.raise("http", ("could not delete replication %q: it kept changing (409)"):format(id),
      { status = 409, error = "conflict" })
  end
  Replicator.stop_replication = Replicator.stop

  -- Following: rep:follow, rep:follow_many, rep:wait (lua/couch/follow.lua)
  require("couch.follow")(couch, Replicator, { scheduler = scheduler, make_state = make_state,
    terminal = terminal, FROM_DOC = FROM_DOC, ACTIVE = ACTIVE, get_doc = get_doc })

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
