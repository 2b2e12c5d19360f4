-- Server methods: the server-level CouchDB API on the C request primitive srv:_send, which
-- does auth (basic, cookie session, IAM token), retries and errors itself.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  local S = I.server_methods
  local json = couch.json
  local lists = require("couch.lists")(couch)

  --- srv:request(method, path, opts) -> body, status, headers
  -- The escape hatch: any endpoint, with auth, retries and errors handled (all of it in the
  -- request layer, src/http/: this only shapes the options).
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
    I.check_options(opts, "srv:all_dbs", ALL_DBS_SPEC)
    return (self:request("GET", "/_all_dbs", { query = opts }))
  end

  local usage = I.usage -- usage(argument, why): a `usage` error naming it

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

  --- srv:login() -> the session: a new cookie session or IAM token now (done
  -- automatically on first use and when one expires)
  function S:login() self:_forget_auth(); return self:session() end

  function S:active_tasks(opts)
    I.check_options(opts, "srv:active_tasks", { type = "string" })
    local tasks = self:request("GET", "/_active_tasks")
    if opts and opts.type then
      local out = json.array {}
      for _, t in ipairs(tasks) do if t.type == opts.type then out[#out + 1] = t end end
      return out
    end
    return tasks
  end

  function S:db(name) return I.new_database(self, name) end

  function S:create_db(name, opts)
    local db = self:db(name)
    db:create(opts)
    return db
  end

  function S:delete_db(name) return self:db(name):delete() end
end
