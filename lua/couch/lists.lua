-- CouchDB's list-valued request fields, per endpoint, and the one place that applies them.
--
-- Lua has one table type: an empty `{}` encodes as the JSON object `{}`. Users write `{}`
-- for an empty list all the time, and CouchDB refuses an object where its API says
-- "array" (an empty `names` in _security is `500 no_majority` on 3.4.3). Every request
-- body goes through srv:request, which asks shape() to turn the fields named here into
-- arrays; a table there that is not a list (string keys) is a usage error naming the field.
-- Sources: the request-body tables of CouchDB 3's API reference (docs.couchdb.org/en/stable/api).
--
-- A path: "a.b" a member of a member; "docs[].x" member x of every element of list docs;
-- "*" every member of the object. `selectors` are Mango selectors, whose $and/$or/$nor/
-- $in/$nin/$all/$mod arguments are lists wherever they are nested.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  local json = couch.json

  local RULES = {
    security = { lists = { "admins.names", "admins.roles", "members.names", "members.roles",
                           "readers.names", "readers.roles" } },  -- readers: CouchDB 1's members
    keys = { lists = { "keys" } },                       -- _all_docs, views, /_dbs_info
    queries = { lists = { "queries", "queries[].keys" } }, -- .../queries
    bulk_docs = { lists = { "docs" } },
    bulk_get = { lists = { "docs", "docs[].atts_since" } },
    revs = { lists = { "*" } },                           -- _revs_diff, _missing_revs, _purge
    changes = { lists = { "doc_ids" }, selectors = { "selector" } },
    find = { lists = { "fields", "sort", "use_index" }, selectors = { "selector" } },
    index = { lists = { "index.fields" }, selectors = { "index.partial_filter_selector" } },
    replication = { lists = { "doc_ids", "user_ctx.roles" }, selectors = { "selector" } },
    replication_docs = { lists = { "docs", "docs[].doc_ids", "docs[].user_ctx.roles" },
                         selectors = { "docs[].selector" } },
    user = { lists = { "roles" } },                       -- _users documents
    user_docs = { lists = { "docs", "docs[].roles" } },
  }

  -- query parameters whose JSON value is a list (a table in `query` is sent as JSON)
  local QUERY_LISTS = { "keys", "doc_ids", "open_revs", "atts_since" }

  local SELECTOR_LISTS = { ["$and"] = "selectors", ["$or"] = "selectors", ["$nor"] = "selectors",
                           ["$in"] = "values", ["$nin"] = "values", ["$all"] = "values", ["$mod"] = "values" }

  local usage = I.usage -- usage(argument, why): a `usage` error naming it

  -- v as a list: an empty table becomes a (new) JSON array; a list stays as it is.
  local function as_list(v, where)
    if type(v) ~= "table" then return v end
    if next(v) == nil then return json.is_array(v) and v or json.array {} end
    if not json.is_array(v) then usage(where, "expected a list (CouchDB wants a JSON array here)") end
    return v
  end

  -- A shallow copy that keeps the JSON marking (array/object) of t.
  local function copy(t)
    local c = {}
    for k, v in pairs(t) do c[k] = v end
    local mt = getmetatable(t)
    if mt == getmetatable(json.array {}) or mt == getmetatable(json.object {}) then setmetatable(c, mt) end
    return c
  end

  -- node with the list / selector rule `parts[i..]` applied; tables are copied where they
  -- change, never modified (they are the caller's).
  local apply
  local selector

  local function set(node, k, v)
    if node[k] == v then return node end
    local c = copy(node)
    c[k] = v
    return c
  end

  function selector(node, where)
    if type(node) ~= "table" then return node end
    local out = node
    for k, v in pairs(node) do
      local kind = type(k) == "string" and SELECTOR_LISTS[k]
      local nv = v
      if kind then
        nv = as_list(v, where .. "." .. k)
        if kind == "selectors" and type(nv) == "table" then
          for i, s in ipairs(nv) do
            local ns = selector(s, ("%s.%s[%d]"):format(where, k, i))
            if ns ~= s then
              if nv == v then nv = copy(v) end
              nv[i] = ns
            end
          end
        end
      elseif type(v) == "table" then
        nv = selector(v, where .. "." .. tostring(k))
      end
      if nv ~= v then
        if out == node then out = copy(node) end
        out[k] = nv
      end
    end
    return out
  end

  function apply(node, parts, i, where, leaf)
    if i > #parts then return leaf(node, where) end
    if type(node) ~= "table" then return node end
    local p = parts[i]
    if p == "*" then
      local out = node
      for k, v in pairs(node) do
        local nv = apply(v, parts, i + 1, (where ~= "" and where .. "." or "") .. tostring(k), leaf)
        if nv ~= v then
          if out == node then out = copy(node) end
          out[k] = nv
        end
      end
      return out
    end
    local name, each = p:match("^(.-)(%[%])$")
    name = name or p
    local v = node[name]
    if v == nil then return node end
    local here = (where ~= "" and where .. "." or "") .. name
    if not each then return set(node, name, apply(v, parts, i + 1, here, leaf)) end
    local list = as_list(v, here)
    if type(list) ~= "table" then return node end
    local out = list
    for k, elem in ipairs(list) do
      local ne = apply(elem, parts, i + 1, ("%s[%d]"):format(here, k), leaf)
      if ne ~= elem then
        if out == list then out = copy(list) end
        out[k] = ne
      end
    end
    return set(node, name, out)
  end

  local function split(path)
    local parts = {}
    for p in path:gmatch("[^.]+") do parts[#parts + 1] = p end
    return parts
  end

  -- compile the rules once
  for _, r in pairs(RULES) do
    r.lists_parts, r.selector_parts = {}, {}
    for _, p in ipairs(r.lists or {}) do r.lists_parts[#r.lists_parts + 1] = split(p) end
    for _, p in ipairs(r.selectors or {}) do r.selector_parts[#r.selector_parts + 1] = split(p) end
  end

  -- "_replicator" or "<prefix>/_replicator" (escaped in a path)
  local function is_replicator(db) return db == "_replicator" or db:sub(-14) == "%2F_replicator" end

  --- The endpoint of a request (a key of RULES), or nil when its body has no list fields.
  local function endpoint(method, path)
    path = path:gsub("[?#].*$", "")
    local s = {}
    for seg in path:gmatch("[^/]+") do s[#s + 1] = seg end
    local db, sub, n = s[1], s[2], #s
    if not db or (method ~= "POST" and method ~= "PUT") then return nil end
    if n == 1 then
      if db == "_dbs_info" then return "keys" end
      if db == "_replicate" then return "replication" end
      if method == "POST" and is_replicator(db) then return "replication" end
      if method == "POST" and db == "_users" then return "user" end
      return nil
    end
    if sub == "_security" then return "security" end
    if sub == "_all_docs" or sub == "_design_docs" or sub == "_local_docs" then
      return s[3] == "queries" and "queries" or "keys"
    end
    if sub == "_design" and s[4] == "_view" then return s[6] == "queries" and "queries" or "keys" end
    if sub == "_find" or sub == "_explain" then return "find" end
    if sub == "_index" then return "index" end
    if sub == "_changes" then return "changes" end
    if sub == "_bulk_get" then return "bulk_get" end
    if sub == "_revs_diff" or sub == "_missing_revs" or sub == "_purge" then return "revs" end
    if sub == "_bulk_docs" then
      if is_replicator(db) then return "replication_docs" end
      return db == "_users" and "user_docs" or "bulk_docs"
    end
    if n == 2 and sub:sub(1, 1) ~= "_" then
      if is_replicator(db) then return "replication" end
      if db == "_users" then return "user" end
    end
    return nil
  end

  local M = { RULES = RULES, endpoint = endpoint }

  --- shape(method, path, body) -> body with the endpoint's list fields as JSON arrays
  -- (a copy where something changed; the caller's tables are left alone).
  function M.shape(method, path, body)
    if type(body) ~= "table" then return body end
    local rule = RULES[endpoint(method, path) or ""]
    if not rule then return body end
    for _, parts in ipairs(rule.lists_parts) do body = apply(body, parts, 1, "", as_list) end
    for _, parts in ipairs(rule.selector_parts) do body = apply(body, parts, 1, "", selector) end
    return body
  end

  --- shape_query(query) -> query with its list-valued parameters as JSON arrays (a copy
  -- where something changed)
  function M.shape_query(query)
    if type(query) ~= "table" then return query end
    local out = query
    for _, name in ipairs(QUERY_LISTS) do
      local v = query[name]
      local nv = as_list(v, name)
      if nv ~= v then
        if out == query then out = copy(query) end
        out[name] = nv
      end
    end
    return out
  end

  return M
end
