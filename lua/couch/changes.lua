-- _changes: a one-shot read and a feed that follows the database. Sequences are opaque
-- JSON values (integers on pouchdb-server, strings on CouchDB 2+): kept and sent back as
-- received.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch, Database, pick, spec)
  local json = couch.json

  -- query parameters (name -> type, for I.check_options); since is opaque
  local CHANGES_PARAMS = { since = "any", limit = "integer", include_docs = "boolean", style = "string",
                           filter = "string", heartbeat = "integer|boolean", timeout = "integer",
                           conflicts = "boolean", descending = "boolean", seq_interval = "integer",
                           attachments = "boolean", att_encoding_info = "boolean", view = "string",
                           ["last-event-id"] = "any" }
  local FILTERS = { doc_ids = "table", selector = "table", query_params = "table" }
  local CHANGES_SPEC = spec(CHANGES_PARAMS, FILTERS, { request_timeout = "number" })
  -- a feed sets limit, timeout and feed itself; it has its own knobs instead
  local FEED_SPEC = spec(CHANGES_PARAMS, FILTERS, { poll = "number", grace = "number", max_failures = "integer",
                                                    coalesce = "number" })
  FEED_SPEC.limit, FEED_SPEC.timeout = nil, nil

  -- since is opaque: a string seq goes as is, "now" too, a number as a number.
  local function changes_request(db, opts, feed)
    opts = opts or {}
    if opts.doc_ids and opts.selector then
      I.raise("usage", "bad argument 'doc_ids': cannot be combined with 'selector'", { argument = "doc_ids" })
    end
    local q = pick(opts, CHANGES_PARAMS)
    if type(q.since) == "table" then q.since = json.encode(q.since) end
    q.feed = feed
    local body
    if opts.doc_ids then
      q.filter = "_doc_ids"
      body = { doc_ids = opts.doc_ids }
    elseif opts.selector then
      -- CouchDB wants filter=_selector; pouchdb-server answers 404 to it and ignores a
      -- bare selector body (every change comes back), so say so instead of lying.
      local st = db.server:_state()
      if st.is_pouchdb == nil then
        local ok, info = pcall(db.server.info, db.server)
        st.is_pouchdb = ok and type(info) == "table" and info["express-pouchdb"] ~= nil
      end
      if st.is_pouchdb then
        I.raise("unsupported", "this server (pouchdb-server) cannot filter _changes by selector",
          { endpoint = "_changes?filter=_selector" })
      end
      q.filter = "_selector"
      body = { selector = opts.selector }
    end
    if opts.query_params then for k, v in pairs(opts.query_params) do q[k] = v end end
    return q, body
  end
  -- The native replication's reader (src/replicate/reader.c) builds its requests here too:
  -- one home for the filters of a _changes read.
  I.changes_request = changes_request

  -- A long-poll mostly sits idle on the server: it does not take one of the connection's
  -- max_concurrency slots, or a few hundred followers would starve every other call.
  local function fetch(db, q, body, timeout, long_poll, abort)
    local o = { query = q, timeout = timeout, unlimited = long_poll, abort = abort }
    if body then
      o.body = body
      o.idempotent = true
      return db:request("POST", "/_changes", o)
    end
    return db:request("GET", "/_changes", o)
  end

  -- Whether a _changes answer has the shape every CouchDB gives: {results = {rows...}}.
  local function well_formed(res)
    if type(res) ~= "table" or type(res.results) ~= "table" then return false end
    for _, row in ipairs(res.results) do if type(row) ~= "table" then return false end end
    return true
  end

  local function bad_answer(db, status, body, what)
    return couch.error("http", what, { error = "bad_response", status = status, method = body and "POST" or "GET",
                                       url = db.server.url .. db.path .. "/_changes" })
  end

  --- db:changes(opts) -> {results, last_seq, pending}: one normal (non-feed) read
  function Database:changes(opts)
    I.check_options(opts, "db:changes", CHANGES_SPEC)
    local q, body = changes_request(self, opts, nil)
    local res, status = fetch(self, q, body, opts and opts.request_timeout)
    if not well_formed(res) then
      error(bad_answer(self, status, body, "_changes answered with something other than {results = [...]}"), 0)
    end
    return res
  end

  local Feed = {}
  Feed.__index = Feed
  Feed.__name = "couch.changes_feed"

  function Feed:__tostring()
    return ("couch.changes_feed <%s/%s> since %s%s"):format(self.db.server.url, self.db.name,
      tostring(self.since), self.closed and " (closed)" or "")
  end

  -- Closing from another task ends the long-poll in flight at once (not when it times out).
  function Feed:close()
    self.closed = true
    self.abort:abort()
    self.wake:broadcast()
  end
  Feed.__close = Feed.close

  -- The pause after an answer that came back at once with nothing in it, or a broken one:
  -- 0.1 s doubling to 5 s (or poll), so a server that never holds the long-poll is polled
  -- a few times a second at first and every few seconds after, never in a busy loop.
  function Feed:_pause()
    self.quick = self.quick + 1
    self.wake:wait(math.min(self.poll, 5, 0.05 * 2 ^ self.quick)) -- close() cuts it short
  end

  -- One long-poll round: the server answers when something changed. Our own deadline
  -- (pouchdb-server ignores `timeout`) turns a silent server into an empty round, and a
  -- network failure into a reconnect from the last seq.
  function Feed:_round()
    local q = {}
    for k, v in pairs(self.query) do q[k] = v end
    q.since = self.since
    q.timeout = math.floor(self.poll * 1000)
    local t0 = couch.now()
    local ok, res, status = pcall(fetch, self.db, q, self.body, self.poll + self.grace, true, self.abort)
    if self.closed then return {}, nil end
    if ok and not well_formed(res) then
      -- repeated bad answers are an error; a single one may be a proxy's hiccup
      self.bad = self.bad + 1
      if self.bad >= self.max_failures then
        error(bad_answer(self.db, status, self.body,
          ("_changes answered %d times with something other than {results = [...]}"):format(self.bad)), 0)
      end
      self:_pause()
      return {}, nil
    end
    if ok then
      self.failures, self.bad = 0, 0
      -- a long-poll answered at once with nothing: the server does not hold long-polls
      -- (or keeps waking them for nothing); slow down. "At once" is under 0.2 s: slower
      -- answers are no busy loop, and a server that honours a short `timeout` (the fakes
      -- scale time) is not punished for it.
      if #res.results == 0 and couch.now() - t0 < math.min(0.2, self.poll / 2) then self:_pause()
      else self.quick = 0 end
      return res.results, res.last_seq
    end
    if couch.is_error(res) and (res.kind == "timeout" or res.kind == "network") then
      self.failures = self.failures + 1
      if res.kind == "network" and self.failures > self.max_failures then error(res, 0) end
      if res.kind == "network" then couch.sleep(math.min(30, 0.2 * 2 ^ self.failures)) end
      return {}, nil
    end
    error(res, 0)
  end

  --- for change in db:changes_feed{ since = "now", include_docs = true } do ... end
  -- Follows the database until the loop breaks or feed:close(); yields inside tasks.
  -- opts.poll (s, default 30): the long-poll length; opts.coalesce (s, default 0): a pause
  -- between rounds so that changes arriving close together come in one answer.
  function Database:changes_feed(opts)
    opts = I.check_options(opts, "db:changes_feed", FEED_SPEC) or {}
    local q, body = changes_request(self, opts, "longpoll")
    q.since, q.timeout = nil, nil
    local feed = setmetatable({
      db = self, query = q, body = body, since = opts.since or 0, poll = opts.poll or 30,
      grace = opts.grace or 5, failures = 0, bad = 0, quick = 0, max_failures = opts.max_failures or 10,
      buffer = {}, pos = 1, rounds = 0, coalesce = opts.coalesce or 0, abort = I.abort(),
      wake = couch.cond(),
    }, Feed)
    return function()
      while not feed.closed do
        local row = feed.buffer[feed.pos]
        if row then
          feed.buffer[feed.pos] = nil
          feed.pos = feed.pos + 1
          if row.seq ~= nil then feed.since = row.seq end
          return row
        end
        if feed.coalesce > 0 and feed.rounds > 0 then couch.sleep(feed.coalesce) end
        feed.rounds = feed.rounds + 1
        local rows, last = feed:_round()
        feed.buffer, feed.pos = rows, 1
        if last ~= nil and #rows == 0 then feed.since = last end
        if last ~= nil and #rows > 0 then feed.last_seq = last end
      end
      return nil
    end, feed, nil, feed
  end
end
