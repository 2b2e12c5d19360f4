-- couch.arango: python-arango's Replication API group for ArangoDB, on couch's async core.
--
--   local arango = require "couch.arango"
--   local db  = arango.connect("http://127.0.0.1:8529", { user = "root", password = pw,
--                                                       auth = "jwt", database = "shop" })
--   local rep = db:replication()
--   local batch = rep:create_dump_batch(600)
--   for chunk in rep:dump_chunks("products", batch.id) do ... end
--
-- Every method of python-arango's `Replication` class is here with the same parameters
-- (positionally in the seed's order, or as one table of named parameters) and the same
-- return shapes (python-arango's formatters: snake_case keys, the same keys kept). Every
-- call goes through srv:request, so it yields inside a task and blocks outside one.
-- docs/arango.md is the reference, with the server versions that have each endpoint.
local couch = require "couch"
local I = require "couch.internal" -- the module's private channel (src/module.c)
local json = couch.json
local escape = couch.escape

local M = {}

-- ---- errors ------------------------------------------------------------------------

local usage = I.usage -- usage(argument, why): a `usage` error naming it

-- Names of the ArangoDB error numbers this group meets (lib/Basics/errors.dat).
local ERROR_NAMES = {
  [4] = "ERROR_INTERNAL", [9] = "ERROR_NOT_IMPLEMENTED", [10] = "ERROR_BAD_PARAMETER",
  [11] = "ERROR_FORBIDDEN", [400] = "ERROR_HTTP_BAD_PARAMETER", [401] = "ERROR_HTTP_UNAUTHORIZED",
  [403] = "ERROR_HTTP_FORBIDDEN", [404] = "ERROR_HTTP_NOT_FOUND", [405] = "ERROR_HTTP_METHOD_NOT_ALLOWED",
  [503] = "ERROR_HTTP_SERVICE_UNAVAILABLE", [600] = "ERROR_HTTP_CORRUPTED_JSON",
  [601] = "ERROR_HTTP_SUPERFLUOUS_SUFFICES", [1202] = "ERROR_ARANGO_DOCUMENT_NOT_FOUND",
  [1203] = "ERROR_ARANGO_DATA_SOURCE_NOT_FOUND", [1207] = "ERROR_ARANGO_DUPLICATE_NAME",
  [1210] = "ERROR_ARANGO_UNIQUE_CONSTRAINT_VIOLATED", [1228] = "ERROR_ARANGO_DATABASE_NOT_FOUND",
  [1230] = "ERROR_ARANGO_USE_SYSTEM_DATABASE", [1400] = "ERROR_REPLICATION_NO_RESPONSE",
  [1401] = "ERROR_REPLICATION_INVALID_RESPONSE", [1402] = "ERROR_REPLICATION_LEADER_ERROR",
  [1407] = "ERROR_REPLICATION_INVALID_APPLIER_STATE",
  [1410] = "ERROR_REPLICATION_INVALID_APPLIER_CONFIGURATION", [1411] = "ERROR_REPLICATION_RUNNING",
  [1412] = "ERROR_REPLICATION_APPLIER_STOPPED", [1413] = "ERROR_REPLICATION_NO_START_TICK",
  [1414] = "ERROR_REPLICATION_START_TICK_NOT_PRESENT", [1470] = "ERROR_CLUSTER_UNSUPPORTED",
  [1471] = "ERROR_CLUSTER_ONLY_ON_COORDINATOR", [1477] = "ERROR_CLUSTER_ONLY_ON_DBSERVER",
  [1600] = "ERROR_CURSOR_NOT_FOUND",
}
M.ERROR_NAMES = ERROR_NAMES

-- ---- endpoints and the server versions that have them ------------------------------

-- since: the first 3.x release line with the endpoint as used here; removed: the release
-- line that no longer has it; instead: what to use there. docs/arango.md says the same.
local ENDPOINTS = {
  inventory = { path = "/_api/replication/inventory", since = "3.0 (batchId required with RocksDB)" },
  batch = { path = "/_api/replication/batch", since = "3.0" },
  dump = { path = "/_api/replication/dump", since = "3.0" },
  sync = { path = "/_api/replication/sync", since = "3.0", removed = "3.12", last = "3.11",
           instead = "dump the collections (create_dump_batch / dump) and follow wal_tail" },
  cluster_inventory = { path = "/_api/replication/clusterInventory", since = "3.0 (coordinators only)" },
  logger_state = { path = "/_api/replication/logger-state", since = "3.0" },
  logger_first_tick = { path = "/_api/replication/logger-first-tick", since = "3.0", removed = "3.12", last = "3.11",
                        instead = "wal_range().tick_min" },
  applier_config = { path = "/_api/replication/applier-config", since = "3.0", removed = "3.12", last = "3.11",
                     instead = "follow the leader yourself with wal_tail" },
  applier_state = { path = "/_api/replication/applier-state", since = "3.0", removed = "3.12", last = "3.11",
                    instead = "follow the leader yourself with wal_tail" },
  applier_start = { path = "/_api/replication/applier-start", since = "3.0", removed = "3.12", last = "3.11",
                    instead = "follow the leader yourself with wal_tail" },
  applier_stop = { path = "/_api/replication/applier-stop", since = "3.0", removed = "3.12", last = "3.11",
                   instead = "follow the leader yourself with wal_tail" },
  make_follower = { path = "/_api/replication/make-follower", since = "3.8", removed = "3.12", last = "3.11",
                    instead = "dump the collections and follow wal_tail" },
  make_slave = { path = "/_api/replication/make-slave", since = "3.0 (renamed make-follower in 3.8)",
                 removed = "3.12", last = "3.11", instead = "dump the collections and follow wal_tail" },
  server_id = { path = "/_api/replication/server-id", since = "3.0", removed = "3.12", last = "3.11",
                instead = "logger_state().server.server_id" },
  wal_tail = { path = "/_api/wal/tail", since = "3.3" },
  wal_range = { path = "/_api/wal/range", since = "3.3" },
  wal_last_tick = { path = "/_api/wal/lastTick", since = "3.3" },
}
M.ENDPOINTS = ENDPOINTS

-- Does this answer mean "the server has no such endpoint"? ArangoDB says so three ways:
-- an unknown path (404 / errorNum 404), RestReplicationHandler's "invalid command 'x'"
-- (400 / errorNum 400) for a command it no longer knows, or 501 not implemented.
local function missing_endpoint(status, body)
  local num = type(body) == "table" and body.errorNum or nil
  local msg = type(body) == "table" and type(body.errorMessage) == "string" and body.errorMessage or ""
  if status == 404 then return num == nil or num == 404 end
  if status == 501 then return true end
  if status == 400 and num == 400 and msg:match("^invalid command") then return true end
  return false
end

local function error_for(method, url, status, body, ep)
  if type(body) == "string" and body:match("^%s*{") then -- a raw = true request: decode the error
    local ok, v = pcall(json.decode, body)
    if ok then body = v end
  end
  local num = type(body) == "table" and body.error == true and body.errorNum or nil
  num = num and (math.tointeger(num) or num)
  local msg = type(body) == "table" and type(body.errorMessage) == "string" and body.errorMessage or nil
  if ep and missing_endpoint(status, body) then
    local what = ("%s %s"):format(method, ep.path)
    local text, fields
    if status == 501 and num == 1470 then
      text = ("%s is not supported on a cluster coordinator: %s"):format(what, msg or "not implemented")
      fields = { reason = "coordinator" }
    elseif ep.removed then
      text = ("%s is not available on this server (HTTP %d%s): ArangoDB %s removed it (leader/follower "
              .. "replication is deprecated; %s and earlier have it). Instead: %s"):format(
              what, status, msg and (": " .. msg) or "", ep.removed, ep.last, ep.instead)
      fields = { removed_in = ep.removed }
    else
      text = ("%s is not available on this server (HTTP %d%s); ArangoDB has it since %s"):format(
        what, status, msg and (": " .. msg) or "", ep.since)
      fields = {}
    end
    fields.endpoint = ep.path
    fields.status = status
    fields.error_num = num
    fields.method = method
    fields.url = url
    fields.server_message = msg
    return couch.error("unsupported", text, fields)
  end
  if num then
    return couch.error("arango", msg or ERROR_NAMES[num] or "", {
      status = status, error_num = num, error = ERROR_NAMES[num] or ("errorNum " .. tostring(num)),
      method = method, url = url })
  end
  local text = type(body) == "string" and body:sub(1, 300):gsub("%s+", " ") or ("HTTP " .. tostring(status))
  return couch.error("http", text, { status = status, method = method, url = url })
end

-- ---- connecting ----------------------------------------------------------------------

local Database = {}
Database.__index = Database
Database.__name = "couch.arango.database"

local Replication = {}
Replication.__index = Replication
Replication.__name = "couch.arango.replication"
M._Database, M._Replication = Database, Replication

local PASS_THROUGH = { "headers", "timeout", "connect_timeout", "retries", "backoff", "max_backoff",
                       "proxy", "insecure", "ca_file", "max_concurrency", "quiet" }
local KNOWN_OPTIONS = { user = true, username = true, password = true, auth = true, database = true }
for _, k in ipairs(PASS_THROUGH) do KNOWN_OPTIONS[k] = true end

--- arango.connect(url [, opts]) -> a database handle
-- opts: user / username, password (or in the URL), auth = "basic" | "jwt" | "none"
-- (default "basic" when there is a user), database (default "_system"), and couch.connect's
-- headers, timeout, connect_timeout, retries, backoff, max_backoff, proxy, insecure,
-- ca_file, max_concurrency, quiet.
function M.connect(url, opts)
  if type(url) ~= "string" then usage("url", "expected an http:// or https:// URL string, got " .. type(url)) end
  if opts ~= nil and type(opts) ~= "table" then usage("opts", "expected a table of options") end
  opts = opts or {}
  for k in pairs(opts) do
    if not KNOWN_OPTIONS[k] then
      usage(tostring(k), "unknown option of couch.arango.connect (known: user, password, auth, database, "
        .. table.concat(PASS_THROUGH, ", ") .. ")")
    end
  end
  local database = opts.database
  if database == nil then database = "_system" end
  if type(database) ~= "string" or database == "" then usage("database", "expected a non-empty database name") end
  local user = opts.user or opts.username
  if user ~= nil and type(user) ~= "string" then usage("user", "expected a string") end
  if opts.password ~= nil and type(opts.password) ~= "string" then usage("password", "expected a string") end
  local has_url_user = url:match("^https?://[^/?#]*@") ~= nil
  local auth = opts.auth or ((user or has_url_user) and "basic" or "none")
  if auth ~= "basic" and auth ~= "jwt" and auth ~= "none" then
    usage("auth", ('expected "basic", "jwt" or "none", got %s'):format(tostring(auth)))
  end

  -- The request layer logs in (JWT: POST /_open/auth, then a bearer token, one new login
  -- after a 401) and keeps the credentials in C: none in this handle.
  local copts = {}
  for _, k in ipairs(PASS_THROUGH) do copts[k] = opts[k] end
  copts.user, copts.password = user, opts.password
  if auth == "none" then copts.auth = "none" elseif auth == "jwt" or user or has_url_user then copts.auth = auth end
  local srv = couch.connect(url, copts)
  return setmetatable({ server = srv, name = database, path = "/_db/" .. escape(database), auth = auth }, Database)
end

function Database:__tostring()
  return ("couch.arango.database <%s/_db/%s> (auth: %s)"):format(self.server.url, self.name, self.auth)
end

-- One request under /_db/{name}, ArangoDB's error body turned into an `arango` (or
-- `unsupported`) error.
local function call(self, method, path, opts, ep)
  opts = opts or {}
  opts.allow = true
  local full = self.path .. path
  local body, status, headers = self.server:request(method, full, opts)
  if status >= 400 then error(error_for(method, self.server.url .. full, status, body, ep)) end
  return body, status, headers
end

--- db:request(method, path, opts) -> body, status, headers: any ArangoDB endpoint of this
-- database (path relative to /_db/{name}), with ArangoDB errors raised as `arango` errors.
function Database:request(method, path, opts)
  if type(method) ~= "string" then usage("method", "expected an HTTP method string") end
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    usage("path", "expected a path string such as /_api/version")
  end
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  return call(self, method, path, o)
end

--- db:version() -> {server, version, license}
function Database:version() return (call(self, "GET", "/_api/version")) end

--- db:replication() -> the replication API group of this database
function Database:replication()
  if not self._replication then
    self._replication = setmetatable({ db = self }, Replication)
  end
  return self._replication
end

function Replication:__tostring()
  return ("couch.arango.replication <%s/_db/%s>"):format(self.db.server.url, self.db.name)
end

-- ---- arguments -------------------------------------------------------------------------

local function is_integral(v)
  return math.type(v) == "integer" or (math.type(v) == "float" and v == math.floor(v) and v == v)
end

local CHECK = {}
function CHECK.string(name, v)
  if type(v) ~= "string" then usage(name, "expected a string, got " .. type(v)) end
  return v
end
function CHECK.name(name, v)
  if type(v) ~= "string" or v == "" then usage(name, "expected a non-empty name, got " .. type(v)) end
  return v
end
-- Ticks and batch ids are unsigned 64-bit numbers, sent as decimal strings.
function CHECK.tick(name, v)
  if math.type(v) == "integer" and v >= 0 then return tostring(v) end
  if type(v) ~= "string" or not v:match("^%d+$") then
    usage(name, "expected a tick / id: a string of digits (or a non-negative integer), got "
      .. (type(v) == "string" and ("%q"):format(v) or type(v)))
  end
  return v
end
function CHECK.boolean(name, v)
  if type(v) ~= "boolean" then usage(name, "expected true or false, got " .. type(v)) end
  return v
end
function CHECK.count(name, v) -- a non-negative integer
  if type(v) ~= "number" or not is_integral(v) or v < 0 then
    usage(name, "expected a non-negative integer, got " .. tostring(v))
  end
  return math.tointeger(v)
end
function CHECK.positive(name, v) -- a positive integer (sizes)
  if type(v) ~= "number" or not is_integral(v) or v <= 0 then
    usage(name, "expected a positive integer, got " .. tostring(v))
  end
  return math.tointeger(v)
end
function CHECK.seconds(name, v) -- a non-negative number of seconds
  if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then
    usage(name, "expected a non-negative number of seconds, got " .. tostring(v))
  end
  return v
end
function CHECK.ttl(name, v)
  if type(v) ~= "number" or v ~= v or v <= 0 or v == math.huge then
    usage(name, "expected a positive number of seconds, got " .. tostring(v))
  end
  return v
end
function CHECK.restrict_type(name, v)
  if v ~= "include" and v ~= "exclude" then usage(name, 'expected "include" or "exclude", got ' .. tostring(v)) end
  return v
end
function CHECK.strings(name, v)
  if type(v) ~= "table" then usage(name, "expected a list of strings, got " .. type(v)) end
  local out = json.array {}
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  if n ~= #v then usage(name, "expected a list (a table with keys 1..n)") end
  for i, s in ipairs(v) do
    if type(s) ~= "string" or s == "" then usage(name, ("item %d: expected a non-empty string"):format(i)) end
    out[i] = s
  end
  return out
end

-- args(fname, spec, ...) -> table of checked values by parameter name.
-- spec: list of { name, check, required = bool, alias = {...} }. Called either positionally
-- (the seed's order) or with one table of named parameters.
local function args(fname, spec, ...)
  local n = select("#", ...)
  local first = ...
  local a = {}
  if n == 1 and type(first) == "table" and getmetatable(first) == nil then
    local known = {}
    for _, p in ipairs(spec) do
      known[p[1]] = p[1]
      for _, al in ipairs(p.alias or {}) do known[al] = p[1] end
    end
    for k, v in pairs(first) do
      local to = known[k]
      if not to then
        local names = {}
        for _, p in ipairs(spec) do names[#names + 1] = p[1] end
        usage(tostring(k), ("%s has no parameter '%s' (it takes %s)"):format(fname, tostring(k),
          #names > 0 and table.concat(names, ", ") or "none"))
      end
      if a[to] ~= nil then usage(tostring(k), ("given twice (as '%s' and an alias of it)"):format(to)) end
      a[to] = v
    end
  else
    if n > #spec then
      usage(tostring(#spec + 1), ("%s takes at most %d argument%s, got %d"):format(fname, #spec,
        #spec == 1 and "" or "s", n))
    end
    for i, p in ipairs(spec) do a[p[1]] = (select(i, ...)) end
  end
  for _, p in ipairs(spec) do
    local v = a[p[1]]
    if v == nil then
      if p.required then usage(p[1], ("%s needs %s"):format(fname, p[1])) end
    else
      a[p[1]] = CHECK[p[2]](p[1], v)
    end
  end
  return a
end
M._args = args

-- Copy the named parameters that were given into a body / query under their wire names.
local function wire(a, names, into)
  into = into or {}
  for _, pair in ipairs(names) do
    local v = a[pair[1]]
    if v ~= nil then into[pair[2]] = v end
  end
  return into
end

-- ---- python-arango's formatters (arango/formatter.py) ---------------------------------

local obj, arr = json.object, json.array
local F = {}
M.format = F

local function pick(body, pairs_, r)
  r = r or obj {}
  for _, p in ipairs(pairs_) do
    local v = body[p[1]]
    if v ~= nil then
      if p[3] then v = p[3](v) end
      r[p[2]] = v
    end
  end
  return r
end

local function map_list(list, fn)
  local out = arr {}
  if type(list) ~= "table" then return list end
  for i, v in ipairs(list) do out[i] = fn(v) end
  return out
end

local function same(...)
  local t = {}
  for i, k in ipairs { ... } do t[i] = { k, k } end
  return t
end

local function concat(...)
  local out = {}
  for _, list in ipairs { ... } do for _, v in ipairs(list) do out[#out + 1] = v end end
  return out
end

local function tostr(v) return type(v) == "string" and v or tostring(v) end

function F.server_info(b)
  if type(b) ~= "table" then return b end
  return pick(b, { { "version", "version" }, { "serverId", "server_id" } })
end

local INDEX_KEYS = concat(same("type", "name", "deduplicate", "sparse", "unique"), {
  { "minLength", "min_length" }, { "geoJson", "geo_json" }, { "ignoreNull", "ignore_none" },
  { "selectivityEstimate", "selectivity" }, { "isNewlyCreated", "new" }, { "expireAfter", "expiry_time" },
  { "inBackground", "in_background" }, { "bestIndexedLevel", "best_indexed_level" },
  { "worstIndexedLevel", "worst_indexed_level" }, { "maxNumCoverCells", "max_num_cover_cells" },
}, same("storedValues", "cacheEnabled", "legacyPolygons"))

function F.index(b)
  local r = obj {}
  if b.id ~= nil then r.id = type(b.id) == "string" and b.id:match("^[^/]*/(.*)$") or b.id end
  r.fields = b.fields
  return pick(b, INDEX_KEYS, r)
end

function F.key_options(b)
  return pick(b, { { "type", "key_generator" }, { "increment", "key_increment" }, { "offset", "key_offset" },
                   { "allowUserKeys", "user_keys" }, { "lastValue", "key_last_value" } })
end

local COLLECTION_KEYS = {
  { "id", "id" }, { "objectId", "object_id" }, { "name", "name" }, { "isSystem", "system" },
  { "isSmart", "smart" }, { "waitForSync", "sync" }, { "status", "status" },
  { "statusString", "status_string" }, { "globallyUniqueId", "global_id" }, { "cacheEnabled", "cache" },
  { "replicationFactor", "replication_factor" }, { "minReplicationFactor", "min_replication_factor" },
  { "writeConcern", "write_concern" }, { "shards", "shards" }, { "numberOfShards", "shard_count" },
  { "shardKeys", "shard_fields" }, { "distributeShardsLike", "shard_like" },
  { "shardingStrategy", "sharding_strategy" }, { "smartJoinAttribute", "smart_join_attribute" },
  { "keyOptions", "key_options", F.key_options }, { "cid", "cid" }, { "version", "version" },
  { "allowUserKeys", "user_keys" }, { "planId", "plan_id" }, { "deleted", "deleted" },
  { "syncByRevision", "sync_by_revision" }, { "tempObjectId", "temp_object_id" },
  { "usesRevisionsAsDocumentIds", "rev_as_id" }, { "isDisjoint", "disjoint" },
  { "isSmartChild", "smart_child" }, { "minRevision", "min_revision" }, { "schema", "schema" },
}

function F.collection(b)
  local r = pick(b, COLLECTION_KEYS)
  if b.type ~= nil then
    r.type = b.type
    r.edge = b.type == 3
  end
  if b.computedValues ~= nil and b.computedValues ~= json.null then
    r.computedValues = map_list(b.computedValues, function(cv)
      return pick(cv, same("name", "expression", "overwrite", "computedOn", "keepNull", "failOnWarning"))
    end)
  end
  return r
end

function F.database(b)
  local r = pick(b, { { "id", "id" }, { "name", "name" }, { "path", "path" }, { "system", "system" },
                      { "isSystem", "system" }, { "sharding", "sharding" },
                      { "replicationFactor", "replication_factor" }, { "writeConcern", "write_concern" } })
  return r
end

function F.view_consolidation_policy(b)
  return pick(b, { { "type", "type" }, { "threshold", "threshold" }, { "segmentsMin", "segments_min" },
                   { "segmentsMax", "segments_max" }, { "segmentsBytesMax", "segments_bytes_max" },
                   { "segmentsBytesFloor", "segments_bytes_floor" }, { "minScore", "min_score" } })
end

function F.view(b)
  return pick(b, {
    { "globallyUniqueId", "global_id" }, { "id", "id" }, { "name", "name" }, { "type", "type" },
    { "cleanupIntervalStep", "cleanup_interval_step" }, { "commitIntervalMsec", "commit_interval_msec" },
    { "consolidationIntervalMsec", "consolidation_interval_msec" },
    { "consolidationPolicy", "consolidation_policy", F.view_consolidation_policy },
    { "primarySort", "primary_sort" }, { "primarySortCompression", "primary_sort_compression" },
    { "storedValues", "stored_values" }, { "writebufferIdle", "writebuffer_idle" },
    { "writebufferActive", "writebuffer_active" }, { "writebufferSizeMax", "writebuffer_max_size" },
    { "links", "links" }, { "indexes", "indexes" } })
end

function F.replication_state(b)
  if type(b) ~= "table" then return b end -- clusterInventory says "unused"
  return pick(b, { { "running", "running" }, { "time", "time" }, { "lastLogTick", "last_log_tick" },
                   { "totalEvents", "total_events" }, { "lastUncommittedLogTick", "last_uncommitted_log_tick" } })
end

function F.replication_logger_state(b)
  return pick(b, { { "state", "state", F.replication_state }, { "server", "server", F.server_info },
                   { "clients", "clients" } })
end

function F.replication_collection(b)
  return pick(b, { { "planVersion", "plan_version" }, { "isReady", "is_ready" }, { "allInSync", "all_in_sync" },
                   { "indexes", "indexes", function(l) return map_list(l, F.index) end },
                   { "parameters", "parameters", F.collection } })
end

local function collections_list(l) return map_list(l, F.replication_collection) end
local function views_list(l) return map_list(l, F.view) end

function F.replication_database(b)
  local r = obj { id = b.id, name = b.name, collections = collections_list(b.collections), views = views_list(b.views) }
  if b.properties ~= nil then r.properties = F.database(b.properties) end
  return r
end

function F.replication_inventory(b)
  local r = pick(b, { { "tick", "tick" }, { "state", "state", F.replication_state } })
  if b.databases ~= nil then
    local dbs = obj {}
    for k, v in pairs(b.databases) do dbs[k] = F.replication_database(v) end
    r.databases = dbs
  end
  return pick(b, { { "collections", "collections", collections_list }, { "views", "views", views_list },
                   { "properties", "properties", F.database } }, r)
end

function F.replication_sync(b)
  return pick(b, { { "collections", "collections" }, { "lastLogTick", "last_log_tick" } })
end

function F.replication_applier_config(b)
  return pick(b, {
    { "endpoint", "endpoint" }, { "database", "database" }, { "username", "username" }, { "verbose", "verbose" },
    { "incremental", "incremental" }, { "requestTimeout", "request_timeout" },
    { "connectTimeout", "connect_timeout" }, { "ignoreErrors", "ignore_errors" },
    { "maxConnectRetries", "max_connect_retries" }, { "lockTimeoutRetries", "lock_timeout_retries" },
    { "sslProtocol", "ssl_protocol" }, { "chunkSize", "chunk_size" }, { "skipCreateDrop", "skip_create_drop" },
    { "autoStart", "auto_start" }, { "adaptivePolling", "adaptive_polling" }, { "autoResync", "auto_resync" },
    { "autoResyncRetries", "auto_resync_retries" }, { "maxPacketSize", "max_packet_size" },
    { "includeSystem", "include_system" }, { "includeFoxxQueues", "include_foxx_queues" },
    { "requireFromPresent", "require_from_present" }, { "restrictType", "restrict_type" },
    { "restrictCollections", "restrict_collections" }, { "connectionRetryWaitTime", "connection_retry_wait_time" },
    { "initialSyncMaxWaitTime", "initial_sync_max_wait_time" }, { "idleMinWaitTime", "idle_min_wait_time" },
    { "idleMaxWaitTime", "idle_max_wait_time" } })
end

function F.applier_progress(b)
  return pick(b, { { "time", "time" }, { "message", "message" }, { "failedConnects", "failed_connects" } })
end

function F.applier_error(b)
  return pick(b, { { "errorNum", "error_num" }, { "errorMessage", "error_message" }, { "time", "time" } })
end

function F.applier_state_details(b)
  return pick(b, {
    { "started", "started" }, { "running", "running" }, { "phase", "phase" }, { "time", "time" },
    { "safeResumeTick", "safe_resume_tick" }, { "ticksBehind", "ticks_behind" },
    { "lastAppliedContinuousTick", "last_applied_continuous_tick" },
    { "lastProcessedContinuousTick", "last_processed_continuous_tick" },
    { "lastAvailableContinuousTick", "last_available_continuous_tick" },
    { "progress", "progress", F.applier_progress }, { "totalRequests", "total_requests" },
    { "totalFailedConnects", "total_failed_connects" }, { "totalEvents", "total_events" },
    { "totalDocuments", "total_documents" }, { "totalRemovals", "total_removals" },
    { "totalResyncs", "total_resyncs" }, { "totalOperationsExcluded", "total_operations_excluded" },
    { "totalApplyTime", "total_apply_time" }, { "averageApplyTime", "average_apply_time" },
    { "totalFetchTime", "total_fetch_time" }, { "averageFetchTime", "average_fetch_time" },
    { "lastError", "last_error", F.applier_error } })
end

function F.replication_applier_state(b)
  return pick(b, { { "endpoint", "endpoint" }, { "database", "database" }, { "username", "username" },
                   { "state", "state", F.applier_state_details }, { "server", "server", F.server_info } })
end

-- Response headers (names lowercased by the core) -> python-arango's header dict.
function F.replication_header(h)
  local r = obj {}
  local function flag(name) local v = h[name]; if v ~= nil then return v == "true" end end
  r.from_present = flag("x-arango-replication-frompresent")
  r.last_included = h["x-arango-replication-lastincluded"]
  r.last_scanned = h["x-arango-replication-lastscanned"]
  r.last_tick = h["x-arango-replication-lasttick"]
  r.active = flag("x-arango-replication-active")
  r.check_more = flag("x-arango-replication-checkmore")
  return r
end

function F.tick_values(b)
  return pick(b, { { "tickMin", "tick_min" }, { "tickMax", "tick_max" }, { "tick", "tick" }, { "time", "time" },
                   { "server", "server", F.server_info } })
end

-- The body of /dump and /wal/tail: one JSON value per line (application/x-arango-dump).
local function parse_lines(text)
  local out = arr {}
  if not text or text == "" then return out end
  local n = 0
  for line in text:gmatch("[^\n]+") do
    if line:match("%S") then
      local ok, v = pcall(json.decode, line)
      if not ok then
        I.raise("json", ("line %d of the dump is not valid JSON: %s"):format(n + 1, tostring(v)), { line = n + 1 })
      end
      n = n + 1
      out[n] = v
    end
  end
  return out
end
M.parse_lines = parse_lines

-- ---- the Replication group -----------------------------------------------------------

local function rcall(self, method, key, suffix, opts)
  local ep = ENDPOINTS[key]
  return call(self.db, method, ep.path .. (suffix or ""), opts, ep)
end

--- rep:inventory(batch_id, include_system, all_databases) -> overview of collections and indexes
function Replication:inventory(...)
  local a = args("inventory", { { "batch_id", "tick", required = true }, { "include_system", "boolean" },
                                { "all_databases", "boolean" } }, ...)
  local q = wire(a, { { "batch_id", "batchId" }, { "include_system", "includeSystem" }, { "all_databases", "global" } })
  return F.replication_inventory((rcall(self, "GET", "inventory", nil, { query = q })))
end

--- rep:create_dump_batch(ttl) -> {id, last_tick}
function Replication:create_dump_batch(...)
  local a = args("create_dump_batch", { { "ttl", "ttl" } }, ...)
  -- python-arango sends {"ttl": null} when no ttl is given; the server then uses its
  -- default. An empty object says the same without a null the documentation does not allow.
  local body = rcall(self, "POST", "batch", nil, { body = a.ttl and { ttl = a.ttl } or obj {} })
  return obj { id = tostr(body.id), last_tick = body.lastTick }
end

--- rep:delete_dump_batch(batch_id) -> true
function Replication:delete_dump_batch(...)
  local a = args("delete_dump_batch", { { "batch_id", "tick", required = true } }, ...)
  rcall(self, "DELETE", "batch", "/" .. a.batch_id, { raw = true })
  return true
end

--- rep:extend_dump_batch(batch_id, ttl) -> true
function Replication:extend_dump_batch(...)
  local a = args("extend_dump_batch", { { "batch_id", "tick", required = true }, { "ttl", "ttl", required = true } }, ...)
  rcall(self, "PUT", "batch", "/" .. a.batch_id, { body = { ttl = a.ttl }, raw = true })
  return true
end

local DUMP_SPEC = { { "collection", "name", required = true }, { "batch_id", "tick" }, { "chunk_size", "positive" },
                    { "deserialize", "boolean" } }

local function dump_once(self, a)
  local q = wire(a, { { "collection", "collection" }, { "chunk_size", "chunkSize" }, { "batch_id", "batchId" } })
  local body, _, headers = rcall(self, "GET", "dump", nil, { query = q, raw = true })
  local r = F.replication_header(headers)
  if a.deserialize == false then r.content = body or "" else r.content = parse_lines(body) end
  return r
end

--- rep:dump(collection, batch_id, chunk_size, deserialize) -> {check_more, last_included,
-- content}: one chunk of a collection's data. content is the list of parsed entries
-- ({type = 2300, data = doc} per document), or with deserialize = false the raw
-- newline-delimited body. Call again with the same batch for the next chunk while
-- check_more is true (or use rep:dump_chunks).
function Replication:dump(...)
  return dump_once(self, args("dump", DUMP_SPEC, ...))
end

--- for chunk in rep:dump_chunks(collection, batch_id, chunk_size) do ... end
-- Fetches chunk after chunk, one in memory at a time; each chunk is what rep:dump returns
-- plus `n` (1, 2, ...). Ends after the chunk whose check_more is false (an empty
-- collection gives no chunk).
function Replication:dump_chunks(...)
  local a = args("dump_chunks", DUMP_SPEC, ...)
  local n, done = 0, false
  return function()
    while not done do
      local chunk = dump_once(self, a)
      if not chunk.check_more then done = true end
      local has = a.deserialize == false and chunk.content ~= "" or (type(chunk.content) == "table" and #chunk.content > 0)
      if has then
        n = n + 1
        chunk.n = n
        return chunk
      end
    end
    return nil
  end
end

--- for entry, chunk in rep:dump_entries(collection, batch_id, chunk_size) do ... end
-- The entries of dump_chunks one by one (chunk: the chunk they came in, for progress).
function Replication:dump_entries(...)
  local a = args("dump_entries", { DUMP_SPEC[1], DUMP_SPEC[2], DUMP_SPEC[3] }, ...)
  local chunks = self:dump_chunks(a)
  local chunk, i = nil, 0
  return function()
    while true do
      if chunk and i < #chunk.content then
        i = i + 1
        return chunk.content[i], chunk
      end
      chunk, i = chunks(), 0
      if not chunk then return nil end
    end
  end
end

--- rep:synchronize(endpoint, database, username, password, include_system, incremental,
--   restrict_type, restrict_collections, initial_sync_wait_time) -> {collections, last_log_tick}
function Replication:synchronize(...)
  local a = args("synchronize", {
    { "endpoint", "name", required = true }, { "database", "name" }, { "username", "string" },
    { "password", "string" }, { "include_system", "boolean" }, { "incremental", "boolean" },
    { "restrict_type", "restrict_type" }, { "restrict_collections", "strings" },
    { "initial_sync_wait_time", "seconds" } }, ...)
  local body = wire(a, { { "endpoint", "endpoint" }, { "database", "database" }, { "username", "username" },
                         { "password", "password" }, { "include_system", "includeSystem" },
                         { "incremental", "incremental" }, { "restrict_type", "restrictType" },
                         { "restrict_collections", "restrictCollections" },
                         { "initial_sync_wait_time", "initialSyncMaxWaitTime" } })
  return F.replication_sync((rcall(self, "PUT", "sync", nil, { body = body })))
end

--- rep:cluster_inventory(include_system) -> overview of the cluster's collections and indexes
function Replication:cluster_inventory(...)
  local a = args("cluster_inventory", { { "include_system", "boolean" } }, ...)
  local q = wire(a, { { "include_system", "includeSystem" } })
  return F.replication_inventory((rcall(self, "GET", "cluster_inventory", nil, { query = q })))
end

--- rep:logger_state() -> {state, server, clients}
function Replication:logger_state(...)
  args("logger_state", {}, ...)
  return F.replication_logger_state((rcall(self, "GET", "logger_state")))
end

--- rep:logger_first_tick() -> the first tick the server still has, as a string
function Replication:logger_first_tick(...)
  args("logger_first_tick", {}, ...)
  return tostr((rcall(self, "GET", "logger_first_tick")).firstTick)
end

--- rep:applier_config() -> the replication applier's configuration
function Replication:applier_config(...)
  args("applier_config", {}, ...)
  return F.replication_applier_config((rcall(self, "GET", "applier_config")))
end

-- The applier settings set_applier_config and make_slave share: Lua name, check, wire name.
local APPLIER = {
  endpoint = { "name", "endpoint" }, database = { "name", "database" }, username = { "string", "username" },
  password = { "string", "password" }, max_connect_retries = { "count", "maxConnectRetries" },
  connect_timeout = { "seconds", "connectTimeout" }, request_timeout = { "seconds", "requestTimeout" },
  chunk_size = { "count", "chunkSize" }, auto_start = { "boolean", "autoStart" },
  adaptive_polling = { "boolean", "adaptivePolling" }, include_system = { "boolean", "includeSystem" },
  auto_resync = { "boolean", "autoResync" }, auto_resync_retries = { "count", "autoResyncRetries" },
  initial_sync_max_wait_time = { "seconds", "initialSyncMaxWaitTime" },
  connection_retry_wait_time = { "seconds", "connectionRetryWaitTime" },
  idle_min_wait_time = { "seconds", "idleMinWaitTime" }, idle_max_wait_time = { "seconds", "idleMaxWaitTime" },
  require_from_present = { "boolean", "requireFromPresent" }, verbose = { "boolean", "verbose" },
  restrict_type = { "restrict_type", "restrictType" }, restrict_collections = { "strings", "restrictCollections" },
}

local function applier_spec(order)
  local spec, names = {}, {}
  for i, name in ipairs(order) do
    spec[i] = { name, APPLIER[name][1], required = name == "endpoint" }
    names[i] = { name, APPLIER[name][2] }
  end
  return spec, names
end

local function check_restrict(a)
  if a.restrict_type and not a.restrict_collections then
    usage("restrict_collections", "restrict_type needs a list of restrict_collections")
  end
  if a.restrict_collections and not a.restrict_type then
    usage("restrict_type", 'restrict_collections needs restrict_type = "include" or "exclude"')
  end
end

-- The seed's parameter order of set_applier_config.
local SET_CONFIG_SPEC, SET_CONFIG_WIRE = applier_spec {
  "endpoint", "database", "username", "password", "max_connect_retries", "connect_timeout", "request_timeout",
  "chunk_size", "auto_start", "adaptive_polling", "include_system", "auto_resync", "auto_resync_retries",
  "initial_sync_max_wait_time", "connection_retry_wait_time", "idle_min_wait_time", "idle_max_wait_time",
  "require_from_present", "verbose", "restrict_type", "restrict_collections" }

--- rep:set_applier_config(endpoint, database, username, password, max_connect_retries,
--   connect_timeout, request_timeout, chunk_size, auto_start, adaptive_polling,
--   include_system, auto_resync, auto_resync_retries, initial_sync_max_wait_time,
--   connection_retry_wait_time, idle_min_wait_time, idle_max_wait_time,
--   require_from_present, verbose, restrict_type, restrict_collections) -> updated config
function Replication:set_applier_config(...)
  local a = args("set_applier_config", SET_CONFIG_SPEC, ...)
  check_restrict(a)
  local body = wire(a, SET_CONFIG_WIRE)
  return F.replication_applier_config((rcall(self, "PUT", "applier_config", nil, { body = body })))
end

--- rep:applier_state() -> {endpoint, database, username, state, server}
function Replication:applier_state(...)
  args("applier_state", {}, ...)
  return F.replication_applier_state((rcall(self, "GET", "applier_state")))
end

--- rep:start_applier(last_tick) -> applier state
function Replication:start_applier(...)
  local a = args("start_applier", { { "last_tick", "tick", alias = { "from" } } }, ...)
  local q = wire(a, { { "last_tick", "from" } })
  return F.replication_applier_state((rcall(self, "PUT", "applier_start", nil, { query = q })))
end

--- rep:stop_applier() -> applier state
function Replication:stop_applier(...)
  args("stop_applier", {}, ...)
  return F.replication_applier_state((rcall(self, "PUT", "applier_stop")))
end

-- The seed's parameter order of make_slave.
local MAKE_SLAVE_SPEC, MAKE_SLAVE_WIRE = applier_spec {
  "endpoint", "database", "username", "password", "restrict_type", "restrict_collections", "include_system",
  "max_connect_retries", "connect_timeout", "request_timeout", "chunk_size", "adaptive_polling", "auto_resync",
  "auto_resync_retries", "initial_sync_max_wait_time", "connection_retry_wait_time", "idle_min_wait_time",
  "idle_max_wait_time", "require_from_present", "verbose" }

--- rep:make_slave(endpoint, database, username, password, restrict_type,
--   restrict_collections, include_system, max_connect_retries, connect_timeout,
--   request_timeout, chunk_size, adaptive_polling, auto_resync, auto_resync_retries,
--   initial_sync_max_wait_time, connection_retry_wait_time, idle_min_wait_time,
--   idle_max_wait_time, require_from_present, verbose) -> applier state
-- Sent to make-follower (the name since 3.8); a server that does not know it (before
-- 3.8) gets make-slave, python-arango's path. rep:make_follower is the same method.
function Replication:make_slave(...)
  local a = args("make_slave", MAKE_SLAVE_SPEC, ...)
  check_restrict(a)
  local body = wire(a, MAKE_SLAVE_WIRE)
  local ok, res = pcall(rcall, self, "PUT", "make_follower", nil, { body = body })
  if not ok then
    if not (couch.is_error(res) and res.kind == "unsupported" and res.reason ~= "coordinator") then error(res, 0) end
    local ok2, res2 = pcall(rcall, self, "PUT", "make_slave", nil, { body = body })
    if not ok2 then
      if couch.is_error(res2) and res2.kind == "unsupported" then
        res2.message = res2.message .. " (make-follower was tried first: " .. tostring(res.server_message) .. ")"
      end
      error(res2, 0)
    end
    res = res2
  end
  return F.replication_applier_state(res)
end
Replication.make_follower = Replication.make_slave

--- rep:server_id() -> this server's id, as a string
function Replication:server_id(...)
  args("server_id", {}, ...)
  return tostr((rcall(self, "GET", "server_id")).serverId)
end

-- ---- WAL access: the current way to follow a server's changes ------------------------

local WAL_TAIL_SPEC = {
  { "from", "tick", alias = { "lower" } }, { "to", "tick", alias = { "upper" } }, { "last_scanned", "tick" },
  { "all_databases", "boolean", alias = { "global" } }, { "chunk_size", "positive" }, { "syncer_id", "tick" },
  { "server_id", "tick" }, { "client_info", "string" }, { "deserialize", "boolean" } }
local WAL_TAIL_WIRE = { { "from", "from" }, { "to", "to" }, { "last_scanned", "lastScanned" },
                        { "all_databases", "global" }, { "chunk_size", "chunkSize" }, { "syncer_id", "syncerId" },
                        { "server_id", "serverId" }, { "client_info", "clientInfo" } }

local function wal_tail_once(self, a)
  if a.from and a.to and tonumber(a.from) > tonumber(a.to) then usage("to", "is below from") end
  local body, _, headers = rcall(self, "GET", "wal_tail", nil, { query = wire(a, WAL_TAIL_WIRE), raw = true })
  local r = F.replication_header(headers)
  if a.deserialize == false then r.content = body or "" else r.content = parse_lines(body) end
  return r
end

--- rep:wal_tail_chunk(from, to, last_scanned, all_databases, chunk_size, syncer_id,
--   server_id, client_info, deserialize) -> {check_more, from_present, last_included,
--   last_scanned, last_tick, active, content}: one GET /_api/wal/tail (python-arango's
--   WAL.tail shape; `lower` / `upper` are accepted for from / to).
function Replication:wal_tail_chunk(...)
  return wal_tail_once(self, args("wal_tail_chunk", WAL_TAIL_SPEC, ...))
end

local WAL_ITER_SPEC = {}
for i, p in ipairs(WAL_TAIL_SPEC) do if p[1] ~= "deserialize" then WAL_ITER_SPEC[i] = p end end
WAL_ITER_SPEC[#WAL_ITER_SPEC + 1] = { "follow", "boolean" }
WAL_ITER_SPEC[#WAL_ITER_SPEC + 1] = { "poll", "seconds" }
WAL_ITER_SPEC[#WAL_ITER_SPEC + 1] = { "require_from_present", "boolean" }

--- for marker, pos in rep:wal_tail{ from = tick, follow = true, poll = 1, ... } do ... end
-- Follows the server's write-ahead log: yields every marker ({tick, type, db, cuid, tid,
-- data}) after `from`, one response in memory at a time, moving `from` to the last
-- included tick and passing lastScanned on as the server asks. pos = the response's
-- headers {last_included, last_scanned, last_tick, check_more, from_present, active}.
-- follow = true (default): when the log is drained, sleep `poll` seconds (1) and ask again
-- -- couch.sleep, so other tasks run meanwhile; follow = false: end once drained, or once
-- `to` is reached. A from_present = false answer (the server no longer has the log from
-- `from`: changes were missed) raises a `replication` error unless
-- require_from_present = false.
function Replication:wal_tail(...)
  local a = args("wal_tail", WAL_ITER_SPEC, ...)
  local follow = a.follow ~= false
  local poll = a.poll or 1
  local cur = { from = a.from, to = a.to, last_scanned = a.last_scanned, all_databases = a.all_databases,
                chunk_size = a.chunk_size, syncer_id = a.syncer_id, server_id = a.server_id,
                client_info = a.client_info }
  local buf, i, pos, done = nil, 0, nil, false
  local function reached_to()
    return cur.to and cur.from and tonumber(cur.from) >= tonumber(cur.to)
  end
  return function()
    while true do
      if buf and i < #buf then
        i = i + 1
        return buf[i], pos
      end
      if done then return nil end
      local res = wal_tail_once(self, cur)
      if res.from_present == false and a.require_from_present ~= false then
        I.raise("replication", ("the server no longer has its write-ahead log from tick %s on: changes "
          .. "after it were missed (start again from a fresh dump)"):format(tostring(cur.from or 0)),
          { reason = "from_not_present", from = cur.from })
      end
      if res.last_included and res.last_included ~= "0" then cur.from = res.last_included end
      if res.last_scanned and res.last_scanned ~= "0" then cur.last_scanned = res.last_scanned end
      buf, i = res.content, 0
      res.content = nil
      pos = res
      if not res.check_more then
        if reached_to() or not follow then
          done = true
        elseif #buf == 0 then
          couch.sleep(poll)
        end
      end
    end
  end
end

--- rep:wal_range() -> {time, tick_min, tick_max, server}
function Replication:wal_range(...)
  args("wal_range", {}, ...)
  return F.tick_values((rcall(self, "GET", "wal_range")))
end

--- rep:wal_last_tick() -> {time, tick, server}
function Replication:wal_last_tick(...)
  args("wal_last_tick", {}, ...)
  return F.tick_values((rcall(self, "GET", "wal_last_tick")))
end

return M
