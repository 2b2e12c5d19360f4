-- Server methods: authentication flows (cookie session, IAM token) around the C request
-- primitive, and the server-level CouchDB API.
return function(couch)
  local S = couch._server_methods
  local json = couch.json
  local lists = require("couch.lists")(couch)

  local function login(self)
    self:_forget_session()
    self:_send("POST", "/_session", { credentials = "session" })
    if not self:_has_session() then
      couch._raise("auth", "POST /_session answered without a session cookie")
    end
  end

  -- IAM: exchange the API key for a bearer token; refresh a minute before it expires.
  local function refresh_token(self, st)
    self:_set_token(nil)
    local _, body = self:_send("POST", st.token_url, { credentials = "iam", headers = { Accept = "application/json" } })
    if type(body) ~= "table" or type(body.access_token) ~= "string" then
      couch._raise("auth", "the IAM token endpoint answered without an access_token")
    end
    self:_set_token(body.access_token)
    local ttl = tonumber(body.expires_in) or 3600
    st.token_expires = os.time() + ttl
  end

  local function needs_auth(self, st)
    if st.auth == "cookie" then return not self:_has_session() end
    return not st.token_expires or os.time() > st.token_expires - 60
  end

  -- One login at a time: tasks that start together wait for the first one's session
  -- or token instead of each logging in.
  local function renew(self, st)
    if st.renewing then
      while st.renewing do st.renewed:wait() end
      return
    end
    st.renewing = true
    st.renewed = st.renewed or couch.cond()
    local ok, err = pcall(function()
      if st.auth == "cookie" then login(self) else refresh_token(self, st) end
    end)
    st.renewing = false
    st.renewed:broadcast()
    if not ok then error(err, 0) end
  end

  local function ensure_auth(self, st)
    if needs_auth(self, st) then renew(self, st) end
  end

  --- srv:request(method, path, opts) -> body, status, headers
  -- The escape hatch: any endpoint, with auth, retries and errors handled.
  function S:request(method, path, opts)
    -- CouchDB's list-valued fields go out as arrays, even when a user wrote {} (lists.lua)
    if opts and type(path) == "string" then
      local body, query = lists.shape(method, path, opts.body), lists.shape_query(opts.query)
      if body ~= opts.body or query ~= opts.query then
        local o = {}
        for k, v in pairs(opts) do o[k] = v end
        o.body, o.query = body, query
        opts = o
      end
    end
    local st = self:_state()
    if st.auth == "cookie" or st.auth == "iam" then
      ensure_auth(self, st)
      local o = {}
      for k, v in pairs(opts or {}) do o[k] = v end
      local allow = o.allow
      if allow ~= true then
        o.allow = { [401] = true }
        if type(allow) == "table" then for k, v in pairs(allow) do o.allow[k] = v end end
      end
      local status, body, headers = self:_send(method, path, o)
      local caller_takes_401 = allow == true or (type(allow) == "table" and allow[401])
      if status ~= 401 or caller_takes_401 then return body, status, headers end
      -- the session or token expired: log in again, once
      if st.auth == "cookie" then self:_forget_session() else st.token_expires = nil end
      renew(self, st)
      o.allow = allow
      status, body, headers = self:_send(method, path, o)
      return body, status, headers
    end
    local status, body, headers = self:_send(method, path, opts)
    return body, status, headers
  end

  function S:info() return (self:request("GET", "/")) end

  --- srv:up() -> true when the server answers /_up (or / where /_up is missing)
  function S:up()
    local ok, body, status = pcall(self.request, self, "GET", "/_up", { allow = { [404] = true } })
    if not ok then return false, body end
    if status == 404 then
      ok = pcall(self.request, self, "GET", "/")
      return ok
    end
    return type(body) == "table" and (body.status == "ok" or body.status == nil)
  end

  local ALL_DBS_SPEC = { limit = "integer", skip = "integer", startkey = "any", start_key = "any",
                         endkey = "any", end_key = "any", descending = "boolean", inclusive_end = "boolean" }

  function S:all_dbs(opts)
    couch._check_options(opts, "srv:all_dbs", ALL_DBS_SPEC)
    return (self:request("GET", "/_all_dbs", { query = opts }))
  end

  local function usage(arg, msg)
    couch._raise("usage", ("bad argument '%s': %s"):format(arg, msg), { argument = arg })
  end

  function S:dbs_info(keys)
    if type(keys) ~= "table" then usage("keys", "expected a list of database names") end
    return (self:request("POST", "/_dbs_info", { body = { keys = keys }, idempotent = true }))
  end

  function S:uuids(n)
    if n ~= nil and math.type(n) ~= "integer" and not (type(n) == "number" and n == math.floor(n) and n >= 1) then
      usage("n", "expected an integer count, got " .. type(n))
    end
    local body = self:request("GET", "/_uuids", { query = { count = n or 1 } })
    return body.uuids
  end

  function S:session() return (self:request("GET", "/_session")) end

  --- srv:login() for cookie auth (done automatically on first use)
  function S:login() login(self); return self:session() end

  function S:active_tasks(opts)
    couch._check_options(opts, "srv:active_tasks", { type = "string" })
    local tasks = self:request("GET", "/_active_tasks")
    if opts and opts.type then
      local out = json.array {}
      for _, t in ipairs(tasks) do if t.type == opts.type then out[#out + 1] = t end end
      return out
    end
    return tasks
  end

  function S:db(name) return couch._new_database(self, name) end

  function S:create_db(name, opts)
    local db = self:db(name)
    db:create(opts)
    return db
  end

  function S:delete_db(name) return self:db(name):delete() end
end
