-- Databases and documents: thin wrappers that turn CouchDB's wire names into calls on the
-- server's request primitive. Document ids and database names are escaped here, once.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  local json = couch.json
  local escape = couch.escape

  -- Each call's options, name -> type (I.check_options): a typo or a wrong type is a
  -- usage error naming the nearest known option, never an option silently dropped.
  local function spec(...)
    local out = {}
    for _, t in ipairs { ... } do for k, v in pairs(t) do out[k] = v end end
    return out
  end
  local check = I.check_options

  local CREATE_SPEC = { q = "integer", n = "integer", partitioned = "boolean", exist_ok = "boolean" }
  local GET_PARAMS = { rev = "string", revs = "boolean", revs_info = "boolean", open_revs = "string|table",
                       conflicts = "boolean", deleted_conflicts = "boolean", latest = "boolean",
                       attachments = "boolean", att_encoding_info = "boolean", local_seq = "boolean",
                       meta = "boolean", atts_since = "table" }
  local PUT_PARAMS = { batch = "string", new_edits = "boolean", rev = "string" }
  local POST_PARAMS = { batch = "string" }
  local BULK_DOCS_SPEC = { new_edits = "boolean" }
  local BULK_GET_PARAMS = { revs = "boolean", latest = "boolean", attachments = "boolean" }
  local ATTACHMENT_PARAMS = { rev = "string" }
  -- _find's body fields besides the selector
  local FIND_SPEC = { fields = "table", sort = "table", limit = "integer", skip = "integer",
                      use_index = "string|table", bookmark = "string", r = "integer", conflicts = "boolean",
                      update = "boolean", stable = "boolean", stale = "string", execution_stats = "boolean",
                      allow_fallback = "boolean" }

  local Database = {}
  Database.__index = Database
  Database.__name = "couch.database"
  I.Database = Database

  local usage = I.usage -- usage(argument, why): a `usage` error naming it

  local function check_id(id, arg)
    if type(id) ~= "string" or id == "" then usage(arg or "id", "expected a non-empty document id string") end
    return id
  end

  --- The path of a document id: _design/ and _local/ keep their slash.
  local function doc_path(id)
    local prefix, rest = id:match("^(_design/)(.+)$")
    if not prefix then prefix, rest = id:match("^(_local/)(.+)$") end
    if prefix then return prefix .. escape(rest) end
    return escape(id)
  end
  couch.doc_path = doc_path

  function I.new_database(server, name)
    if type(name) ~= "string" or name == "" then usage("name", "expected a non-empty database name") end
    return setmetatable({ server = server, name = name, path = "/" .. escape(name) }, Database)
  end

  function Database:__tostring()
    return ("couch.database <%s/%s>"):format(self.server.url, self.name)
  end

  function Database:request(method, sub, opts)
    return self.server:request(method, self.path .. (sub or ""), opts)
  end

  function Database:info() return (self:request("GET", "")) end

  function Database:exists()
    local _, status = self:request("HEAD", "", { allow = { [404] = true } })
    return status < 400
  end

  --- db:create{ q =, n =, partitioned = } ; db:create{ exist_ok = true } tolerates 412
  function Database:create(opts)
    opts = check(opts, "db:create", CREATE_SPEC) or {}
    local q = {}
    for _, k in ipairs { "q", "n", "partitioned" } do q[k] = opts[k] end
    -- with exist_ok a repeat is harmless (412 is accepted), so it may be retried
    local body, status = self:request("PUT", "", { query = q, allow = opts.exist_ok and { [412] = true } or nil,
                                                   idempotent = opts.exist_ok and true or nil })
    return status == 412 and { ok = true, existed = true } or body
  end

  -- Deletes the whole database. An argument means the caller meant a document (as other
  -- clients' remove(id, rev) reads): refused, so that slip cannot drop every document.
  function Database:delete(...)
    if select("#", ...) > 0 then
      usage("db:delete", ("deletes the whole database '%s' and takes no arguments; to delete a document "
        .. "use db:delete_doc(id, rev)"):format(self.name))
    end
    return (self:request("DELETE", ""))
  end

  -- The query parameters of opts that spec names (a spec's keys are its query names).
  local function pick(opts, params, extra)
    local q = {}
    if opts then for k in pairs(params) do if opts[k] ~= nil then q[k] = opts[k] end end end
    for k, v in pairs(extra or {}) do q[k] = v end
    return q
  end

  --- db:get(id, opts) -> document (raises http 404 not_found when missing)
  function Database:get(id, opts)
    check_id(id)
    check(opts, "db:get", GET_PARAMS)
    local q = pick(opts, GET_PARAMS)
    if type(q.open_revs) == "table" then q.open_revs = json.encode(json.array(q.open_revs)) end
    if type(q.atts_since) == "table" then q.atts_since = json.encode(json.array(q.atts_since)) end
    return (self:request("GET", "/" .. doc_path(id), { query = q }))
  end

  --- db:put(doc) -> {ok, id, rev}; doc._rev is updated to the new revision
  function Database:put(doc, opts)
    if type(doc) ~= "table" then usage("doc", "expected a document table") end
    check_id(doc._id, "doc._id")
    check(opts, "db:put", PUT_PARAMS)
    local res = self:request("PUT", "/" .. doc_path(doc._id), { body = doc, query = pick(opts, PUT_PARAMS) })
    if type(res) == "table" and res.rev then doc._rev = res.rev end
    return res
  end

  --- db:post(doc) -> {ok, id, rev}: the server picks the id when there is none
  function Database:post(doc, opts)
    if type(doc) ~= "table" then usage("doc", "expected a document table") end
    check(opts, "db:post", POST_PARAMS)
    local res = self:request("POST", "", { body = doc, query = pick(opts, POST_PARAMS) })
    if type(res) == "table" and res.rev then doc._id = doc._id or res.id; doc._rev = res.rev end
    return res
  end

  function Database:delete_doc(id, rev)
    check_id(id)
    if type(rev) ~= "string" then usage("rev", "expected the revision to delete") end
    return (self:request("DELETE", "/" .. doc_path(id), { query = { rev = rev } }))
  end

  --- db:bulk_docs(docs, {new_edits = false}) -> per-document results (errors are returned)
  function Database:bulk_docs(docs, opts)
    if type(docs) ~= "table" then usage("docs", "expected a list of documents") end
    check(opts, "db:bulk_docs", BULK_DOCS_SPEC)
    local body = { docs = docs }
    if opts and opts.new_edits ~= nil then body.new_edits = opts.new_edits end
    return (self:request("POST", "/_bulk_docs", { body = body, idempotent = true }))
  end

  --- db:bulk_get({{id=, rev=}, ...}, {revs = true}) -> results
  function Database:bulk_get(reqs, opts)
    if type(reqs) ~= "table" then usage("reqs", "expected a list of {id =, rev =}") end
    check(opts, "db:bulk_get", BULK_GET_PARAMS)
    local res = self:request("POST", "/_bulk_get",
      { body = { docs = reqs }, query = pick(opts, BULK_GET_PARAMS), idempotent = true })
    return res.results
  end

  --- db:revs_diff{ id = {rev, ...} } -> { id = { missing = {...} } }
  function Database:revs_diff(map)
    if type(map) ~= "table" then usage("map", "expected a table of id = {revs}") end
    return (self:request("POST", "/_revs_diff", { body = map, idempotent = true }))
  end

  local VIEW_PARAMS = { conflicts = "boolean", descending = "boolean", endkey = "any", end_key = "any",
                        endkey_docid = "string", end_key_doc_id = "string", include_docs = "boolean",
                        inclusive_end = "boolean", key = "any", limit = "integer", skip = "integer",
                        stale = "string", startkey = "any", start_key = "any", startkey_docid = "string",
                        start_key_doc_id = "string", update_seq = "boolean", update = "string|boolean",
                        attachments = "boolean", att_encoding_info = "boolean", sorted = "boolean",
                        stable = "boolean" }
  local ALL_DOCS_SPEC = spec(VIEW_PARAMS, { keys = "table" })
  local ALL_DOCS_ITER_SPEC = spec(VIEW_PARAMS, { page_size = "integer" })

  --- db:all_docs(opts) -> the whole answer {total_rows, offset, rows}
  function Database:all_docs(opts)
    check(opts, "db:all_docs", ALL_DOCS_SPEC)
    local q = pick(opts, VIEW_PARAMS)
    if opts and opts.keys then
      return (self:request("POST", "/_all_docs", { query = q, body = { keys = opts.keys }, idempotent = true }))
    end
    return (self:request("GET", "/_all_docs", { query = q }))
  end

  --- for row in db:all_docs_iter{ page_size = 1000, include_docs = true } do ... end
  -- Pages through the database holding one page at a time.
  function Database:all_docs_iter(opts)
    opts = check(opts, "db:all_docs_iter", ALL_DOCS_ITER_SPEC) or {}
    local page_size = opts.page_size or 1000
    local q = pick(opts, VIEW_PARAMS)
    q.limit = page_size + 1
    local rows, i, done = {}, 0, false
    return function()
      i = i + 1
      if rows[i] and i <= page_size then return rows[i] end
      if done then return nil end
      if rows[page_size + 1] then
        q.startkey = rows[page_size + 1].key
        q.startkey_docid = rows[page_size + 1].id
      elseif i > 1 then
        done = true
        return nil
      end
      rows = self:request("GET", "/_all_docs", { query = q }).rows
      i = 1
      if #rows <= page_size then done = true end
      return rows[1]
    end
  end

  --- db:find(selector, opts) -> {docs, bookmark, warning}
  function Database:find(selector, opts)
    if type(selector) ~= "table" then usage("selector", "expected a selector table") end
    check(opts, "db:find", FIND_SPEC)
    local body = { selector = selector }
    for k, v in pairs(opts or {}) do body[k] = v end
    return (self:request("POST", "/_find", { body = body, idempotent = true }))
  end

  function Database:get_attachment(id, name, opts)
    check_id(id)
    check(opts, "db:get_attachment", ATTACHMENT_PARAMS)
    local body = self:request("GET", "/" .. doc_path(id) .. "/" .. escape(name),
      { query = pick(opts, ATTACHMENT_PARAMS), raw = true })
    return body or "" -- a zero-length attachment (the request layer gives no body as nil)
  end

  function Database:put_attachment(id, name, data, content_type, rev)
    check_id(id)
    if type(data) ~= "string" then usage("data", "expected the attachment's bytes as a string") end
    return (self:request("PUT", "/" .. doc_path(id) .. "/" .. escape(name),
      { body = data, content_type = content_type or "application/octet-stream", query = { rev = rev } }))
  end

  function Database:get_local(id) return self:get("_local/" .. id) end

  function Database:put_local(id, doc)
    doc._id = "_local/" .. id
    return self:put(doc)
  end

  function Database:security() return (self:request("GET", "/_security")) end
  function Database:set_security(sec) return (self:request("PUT", "/_security", { body = sec })) end
  function Database:compact() return (self:request("POST", "/_compact", { body = {} })) end

  require("couch.changes")(couch, Database, pick, spec)
  local methods = require("couch.methods")
  methods.guard(couch, Database, "db", methods.is_a(Database))
end
