-- couch.arango against the FAKE ArangoDB replication endpoint (tests/fakes/fake_arango.js):
-- every method of python-arango's Replication group with every parameter (what went over
-- the wire is read back from the fake's request log), the return shapes, the dump and
-- WAL-tail iterators, JWT and basic auth, usage errors (raised before any request),
-- ArangoDB's errors as `arango` errors, endpoints a server no longer has as
-- `unsupported` errors, and an async script that starts the applier and follows
-- applier_state until it has caught up.
local src = os.getenv("COUCHLUA_SOURCE_DIR") or (arg and arg[0] or ""):match("^(.*)/tests/unit/[^/]*$") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path .. ";/usr/share/lua/5.4/?.lua"
local lu = require "luaunit"
local couch = require "couch"
local json = couch.json
local arango = require "couch.arango"
local fake_arango = require "fake_arango"

local f = fake_arango.start()
local host = f.url:match("^http://(.*)$")
local PRODUCTS = 25

local DEFAULTS = { version = "3.11.7", removed = json.null, removed_style = "invalid_command", role = "single",
                   dump_format = "rocksdb", require_auth = true, users = { root = "secret" }, apply_rate = 5,
                   apply_interval_ms = 20, seed = json.null, generate = { _system = { products = PRODUCTS } } }

local function fresh()
  f:config(DEFAULTS)
  f:reset()
end

local function connect(opts)
  local o = { user = "root", password = "secret", retries = 0 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return arango.connect(f.url, o)
end

local function fails(fn, ...)
  local ok, err = pcall(fn, ...)
  lu.assertFalse(ok, "expected an error")
  lu.assertTrue(couch.is_error(err), "not a couch error object: " .. tostring(err))
  return err
end

-- A usage error, raised before anything is sent.
local function usage_error(argname, fn, ...)
  local before = #f:log().requests
  local err = fails(fn, ...)
  lu.assertEquals(err.kind, "usage", tostring(err))
  if argname then lu.assertEquals(err.argument, argname, tostring(err)) end
  lu.assertEquals(#f:log().requests, before, "a usage error must not send a request")
  return err
end

local function last_request(path_suffix, method)
  local reqs = f:log().requests
  for i = #reqs, 1, -1 do
    local r = reqs[i]
    if (not path_suffix or r.path:sub(-#path_suffix) == path_suffix) and (not method or r.method == method) then
      return r
    end
  end
end

local function body_of(r) return r.body ~= "" and json.decode(r.body) or nil end

local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local b64 = require "b64"

-- Every method of python-arango's Replication class (the seed).
local SEED_METHODS = { "inventory", "create_dump_batch", "delete_dump_batch", "extend_dump_batch", "dump",
                       "synchronize", "cluster_inventory", "logger_state", "logger_first_tick", "applier_config",
                       "set_applier_config", "applier_state", "start_applier", "stop_applier", "make_slave",
                       "server_id" }

-- ======================================================================================
TestConnect = {}
function TestConnect:setUp() fresh() end

function TestConnect:test_every_seed_method_is_present()
  local rep = connect():replication()
  for _, m in ipairs(SEED_METHODS) do lu.assertIsFunction(rep[m], m) end
  for _, m in ipairs { "wal_tail", "wal_tail_chunk", "wal_range", "wal_last_tick", "dump_chunks", "dump_entries",
                       "make_follower" } do
    lu.assertIsFunction(rep[m], m)
  end
end

function TestConnect:test_basic_auth_and_the_database_path()
  local db = connect()
  local rep = db:replication()
  lu.assertIs(db:replication(), rep)
  lu.assertEquals(rep:server_id(), "166787134712385")
  local r = last_request("/server-id")
  lu.assertEquals(r.path, "/_db/_system/_api/replication/server-id")
  lu.assertEquals(r.headers.authorization, "Basic " .. b64("root:secret"))
  for _, s in ipairs { tostring(db), tostring(rep) } do
    lu.assertNotStrContains(s, "secret")
    lu.assertStrContains(s, f.url)
  end
  lu.assertStrContains(tostring(db), "(auth: basic)")
end

function TestConnect:test_basic_credentials_in_the_url()
  local db = arango.connect("http://root:secret@" .. host, { retries = 0 })
  lu.assertEquals(db:version().version, "3.11.7")
  lu.assertEquals(last_request("/_api/version").headers.authorization, "Basic " .. b64("root:secret"))
  lu.assertNotStrContains(tostring(db), "secret")
end

function TestConnect:test_jwt_login_then_bearer_and_one_new_login_after_a_401()
  local db = connect { auth = "jwt" }
  lu.assertStrContains(tostring(db), "(auth: jwt)")
  lu.assertNotStrContains(tostring(db), "secret")
  lu.assertEquals(db:replication():logger_first_tick(), "1000002")
  local reqs = f:log().requests
  lu.assertEquals(#reqs, 2)
  lu.assertEquals(reqs[1].method, "POST")
  lu.assertEquals(reqs[1].path, "/_open/auth")
  lu.assertEquals(body_of(reqs[1]), { username = "root", password = "secret" })
  lu.assertNil(reqs[1].headers.authorization)
  lu.assertStrMatches(reqs[2].headers.authorization, "Bearer [%w_%-]+%.[%w_%-]+%.[%w_%-]+")
  -- the token expires: one new login, then the request again
  f:expire_tokens()
  lu.assertEquals(db:replication():server_id(), "166787134712385")
  reqs = f:log().requests
  lu.assertEquals(#reqs, 5)
  lu.assertEquals(reqs[3].path, "/_db/_system/_api/replication/server-id")
  lu.assertEquals(reqs[4].path, "/_open/auth")
  lu.assertEquals(reqs[5].path, "/_db/_system/_api/replication/server-id")
  lu.assertNotEquals(reqs[5].headers.authorization, reqs[2].headers.authorization)
  -- no credentials anywhere in the handle's fields either
  for k, v in pairs(db) do
    lu.assertNotStrContains(tostring(k) .. "=" .. tostring(v), "secret")
  end
end

-- The login is the request layer's: requests started together wait for one login, and
-- after the token expires they share one new login too.
function TestConnect:test_jwt_requests_started_together_share_one_login()
  local db = connect { auth = "jwt" }
  local function five()
    local tasks = {}
    for i = 1, 5 do tasks[i] = couch.spawn(function() return db:version().version end) end
    for _, t in ipairs(tasks) do lu.assertEquals(t:wait(), "3.11.7") end
  end
  five()
  lu.assertEquals(#f:requests("/_open/auth"), 1)
  f:expire_tokens()
  five()
  lu.assertEquals(#f:requests("/_open/auth"), 2)
end

function TestConnect:test_jwt_credentials_from_the_url()
  local db = arango.connect("http://root:se%63ret@" .. host, { auth = "jwt", retries = 0 })
  lu.assertEquals(db.server.url, f.url)
  lu.assertEquals(db:replication():wal_last_tick().server.version, "3.11.7")
  lu.assertEquals(body_of(f:log().requests[1]), { username = "root", password = "secret" })
end

function TestConnect:test_jwt_wrong_password_is_an_auth_error_without_the_password()
  local db = connect { auth = "jwt", password = "wrong-pw" }
  local err = fails(db:replication().server_id, db:replication())
  lu.assertEquals(err.kind, "auth")
  lu.assertEquals(err.status, 401)
  lu.assertNotStrContains(tostring(err), "wrong-pw")
  lu.assertStrContains(tostring(err), "root")
  lu.assertEquals(#f:requests("/_open/auth"), 1) -- no retry loop
  lu.assertEquals(#f:log().requests, 1)
end

function TestConnect:test_no_credentials_gives_the_arango_401()
  local db = arango.connect(f.url, { retries = 0 })
  local err = fails(db:replication().logger_state, db:replication())
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.status, 401)
  lu.assertEquals(err.error_num, 401)
  lu.assertEquals(err.message, "not authorized to execute this request")
end

function TestConnect:test_database_option()
  f:create_database("shop")
  f:create_collection("shop", "orders")
  local rep = connect { database = "shop" }:replication()
  local batch = rep:create_dump_batch(30)
  local inv = rep:inventory(batch.id, false)
  lu.assertEquals(last_request("/inventory").path, "/_db/shop/_api/replication/inventory")
  lu.assertEquals(#inv.collections, 1)
  lu.assertEquals(inv.collections[1].parameters.name, "orders")
  lu.assertEquals(inv.properties.name, "shop")
end

function TestConnect:test_unknown_database_is_an_arango_error()
  local err = fails(function() return connect { database = "nope" }:replication():logger_state() end)
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.status, 404)
  lu.assertEquals(err.error_num, 1228)
  lu.assertEquals(err.error, "ERROR_ARANGO_DATABASE_NOT_FOUND")
  lu.assertStrContains(tostring(err), "ERROR_ARANGO_DATABASE_NOT_FOUND: database not found")
  lu.assertStrContains(tostring(err), "/_db/nope/_api/replication/logger-state")
end

function TestConnect:test_connect_usage_errors()
  usage_error("url", arango.connect, nil)
  usage_error("url", arango.connect, 42)
  usage_error("opts", arango.connect, f.url, "x")
  usage_error("bogus", arango.connect, f.url, { bogus = 1 })
  usage_error("auth", arango.connect, f.url, { user = "root", auth = "cookie" })
  usage_error("database", arango.connect, f.url, { database = "" })
  usage_error("user", arango.connect, f.url, { auth = "jwt" })
  usage_error("url", arango.connect, "ftp://x")
end

-- ======================================================================================
TestInventory = {}
function TestInventory:setUp()
  fresh()
  self.rep = connect():replication()
  self.batch = self.rep:create_dump_batch(60)
end

function TestInventory:test_inventory_sends_batch_id_only_by_default()
  local inv = self.rep:inventory(self.batch.id)
  lu.assertEquals(last_request("/inventory").query, { batchId = self.batch.id })
  lu.assertEquals(last_request("/inventory").method, "GET")
  lu.assertEquals(keys(inv), { "collections", "properties", "state", "tick", "views" })
  lu.assertIsString(inv.tick)
  lu.assertEquals(inv.views, {})
  lu.assertEquals(keys(inv.state), { "last_log_tick", "last_uncommitted_log_tick", "running", "time", "total_events" })
  lu.assertTrue(inv.state.running)
  lu.assertEquals(inv.properties.name, "_system")
  lu.assertTrue(inv.properties.system)
  local names = {}
  for _, c in ipairs(inv.collections) do names[#names + 1] = c.parameters.name end
  table.sort(names)
  lu.assertEquals(names, { "_analyzers", "_graphs", "products" })
end

function TestInventory:test_collection_parameters_use_python_arangos_names()
  local inv = self.rep:inventory { batch_id = self.batch.id, include_system = false }
  lu.assertEquals(last_request("/inventory").query, { batchId = self.batch.id, includeSystem = "false" })
  lu.assertEquals(#inv.collections, 1)
  local c = inv.collections[1]
  lu.assertEquals(keys(c), { "indexes", "parameters" })
  local p = c.parameters
  lu.assertEquals(p.name, "products")
  lu.assertFalse(p.system)
  lu.assertFalse(p.edge)
  lu.assertEquals(p.type, 2)
  lu.assertEquals(p.key_options.key_generator, "traditional")
  lu.assertTrue(p.key_options.user_keys)
  lu.assertEquals(p.status_string, "loaded")
  lu.assertEquals(p.shard_fields, { "_key" })
  lu.assertTrue(p.rev_as_id)
  lu.assertEquals(p.global_id, p.global_id:match("^h%x+/%d+$"))
  lu.assertNil(p.isSystem)        -- camelCase names do not leak through
  lu.assertNil(p.globallyUniqueId)
end

function TestInventory:test_all_databases()
  f:create_database("shop")
  local inv = self.rep:inventory(self.batch.id, true, true)
  lu.assertEquals(last_request("/inventory").query, { batchId = self.batch.id, includeSystem = "true", global = "true" })
  lu.assertEquals(keys(inv.databases), { "_system", "shop" })
  lu.assertNil(inv.collections)
  local shop = inv.databases.shop
  lu.assertEquals(keys(shop), { "collections", "id", "name", "properties", "views" })
  lu.assertEquals(shop.name, "shop")
  lu.assertFalse(shop.properties.system)
end

function TestInventory:test_all_databases_outside_system_is_refused()
  f:create_database("shop")
  local rep = connect { database = "shop" }:replication()
  local b = rep:create_dump_batch()
  local err = fails(rep.inventory, rep, b.id, nil, true)
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.status, 403)
  lu.assertEquals(err.error_num, 11)
end

function TestInventory:test_unknown_batch()
  local err = fails(self.rep.inventory, self.rep, "12345")
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.status, 404)
  lu.assertEquals(err.error_num, 1600)
end

function TestInventory:test_usage_errors()
  local rep = self.rep
  usage_error("batch_id", rep.inventory, rep)
  usage_error("batch_id", rep.inventory, rep, "abc")
  usage_error("batch_id", rep.inventory, rep, -1)
  usage_error("include_system", rep.inventory, rep, self.batch.id, "yes")
  usage_error("all_databases", rep.inventory, rep, self.batch.id, true, 1)
  usage_error("4", rep.inventory, rep, self.batch.id, true, true, true)
  usage_error("includeSystem", rep.inventory, rep, { batch_id = self.batch.id, includeSystem = true })
  usage_error("batch_id", rep.inventory, rep, {})
end

-- ======================================================================================
TestBatch = {}
function TestBatch:setUp()
  fresh()
  self.rep = connect():replication()
end

local function batch_state(id)
  for _, b in ipairs(f:state().batches) do if b.id == id then return b end end
end

function TestBatch:test_create_with_ttl()
  local b = self.rep:create_dump_batch(60)
  local r = last_request("/_api/replication/batch", "POST")
  lu.assertEquals(body_of(r), { ttl = 60 })
  lu.assertEquals(keys(b), { "id", "last_tick" })
  lu.assertStrMatches(b.id, "%d+")
  lu.assertStrMatches(b.last_tick, "%d+")
  lu.assertEquals(batch_state(b.id).ttl, 60)
end

function TestBatch:test_create_without_ttl_uses_the_server_default()
  local b = self.rep:create_dump_batch()
  lu.assertEquals(last_request("/_api/replication/batch", "POST").body, "{}")
  lu.assertEquals(batch_state(b.id).ttl, 300)
  local b2 = self.rep:create_dump_batch { ttl = 5 }
  lu.assertEquals(batch_state(b2.id).ttl, 5)
end

function TestBatch:test_extend()
  local b = self.rep:create_dump_batch(10)
  lu.assertTrue(self.rep:extend_dump_batch(b.id, 120))
  local r = last_request("/_api/replication/batch/" .. b.id, "PUT")
  lu.assertEquals(body_of(r), { ttl = 120 })
  lu.assertTrue(batch_state(b.id).expires_in > 100)
  lu.assertTrue(self.rep:extend_dump_batch { batch_id = b.id, ttl = 30 })
  lu.assertTrue(batch_state(b.id).expires_in <= 30)
end

function TestBatch:test_a_batch_expires_after_its_ttl()
  local b = self.rep:create_dump_batch(10)
  f:advance_time(5)
  self.rep:extend_dump_batch(b.id, 10) -- from now: 10 more seconds
  f:advance_time(8)
  lu.assertIsTable(self.rep:dump("products", b.id).content)
  f:advance_time(3)
  local err = fails(self.rep.dump, self.rep, "products", b.id)
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.error_num, 1600)
  err = fails(self.rep.extend_dump_batch, self.rep, b.id, 10)
  lu.assertEquals(err.error_num, 1600)
end

function TestBatch:test_delete()
  local b = self.rep:create_dump_batch(60)
  lu.assertTrue(self.rep:delete_dump_batch(b.id))
  lu.assertEquals(last_request("/_api/replication/batch/" .. b.id).method, "DELETE")
  lu.assertNil(batch_state(b.id))
  -- a second delete: the server's "cursor not found", not an unsupported endpoint
  local err = fails(self.rep.delete_dump_batch, self.rep, b.id)
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.status, 404)
  lu.assertEquals(err.error_num, 1600)
  lu.assertEquals(err.error, "ERROR_CURSOR_NOT_FOUND")
  lu.assertEquals(err.method, "DELETE")
end

function TestBatch:test_usage_errors()
  local rep = self.rep
  usage_error("ttl", rep.create_dump_batch, rep, -1)
  usage_error("ttl", rep.create_dump_batch, rep, 0)
  usage_error("ttl", rep.create_dump_batch, rep, "60")
  usage_error("batch_id", rep.delete_dump_batch, rep)
  usage_error("batch_id", rep.delete_dump_batch, rep, "1/2")
  usage_error("ttl", rep.extend_dump_batch, rep, "123")
  usage_error("batch_id", rep.extend_dump_batch, rep, nil, 10)
end

-- ======================================================================================
TestDump = {}
function TestDump:setUp()
  fresh()
  self.rep = connect():replication()
  self.batch = self.rep:create_dump_batch(60)
end

function TestDump:test_one_chunk_parsed()
  local d = self.rep:dump("products", self.batch.id)
  lu.assertEquals(last_request("/dump").query, { collection = "products", batchId = self.batch.id })
  lu.assertEquals(keys(d), { "check_more", "content", "last_included" })
  lu.assertFalse(d.check_more)
  lu.assertStrMatches(d.last_included, "%d+")
  lu.assertEquals(#d.content, PRODUCTS)
  local e = d.content[1]
  lu.assertEquals(e.type, 2300)
  lu.assertEquals(e.data._key, "k000001")
  lu.assertEquals(e.data._id, "products/k000001")
  lu.assertIsString(e.data._rev)
  lu.assertEquals(e.data.tags, { "t1" })
  -- lossless numbers: 2^53 - 1 stays an exact integer, 0.1 stays 0.1
  lu.assertEquals(math.type(e.data.nested.big), "integer")
  lu.assertEquals(e.data.nested.big, 9007199254740991)
  lu.assertEquals(e.data.nested.ratio, 0.1)
end

function TestDump:test_chunks_by_size_until_check_more_is_false()
  local seen, calls, last = {}, 0, nil
  repeat
    local d = self.rep:dump { collection = "products", batch_id = self.batch.id, chunk_size = 400 }
    calls = calls + 1
    lu.assertEquals(last_request("/dump").query.chunkSize, "400")
    for _, e in ipairs(d.content) do
      lu.assertNil(seen[e.data._key], "entry seen twice")
      seen[e.data._key] = true
    end
    if #d.content > 0 then
      lu.assertTrue(last == nil or tonumber(d.last_included) > tonumber(last))
      last = d.last_included
    end
  until not d.check_more
  lu.assertTrue(calls > 3)
  local n = 0
  for _ in pairs(seen) do n = n + 1 end
  lu.assertEquals(n, PRODUCTS)
end

function TestDump:test_raw_body_with_deserialize_false()
  local d = self.rep:dump("products", self.batch.id, 1000, false)
  lu.assertIsString(d.content)
  local lines = 0
  for line in d.content:gmatch("[^\n]+") do
    lines = lines + 1
    lu.assertStrMatches(line, '{"type":2300,"data":{.*}}')
  end
  lu.assertTrue(lines > 1)
  lu.assertTrue(d.check_more)
end

function TestDump:test_dump_chunks_iterator_fetches_lazily()
  local chunks, entries = 0, 0
  for chunk in self.rep:dump_chunks("products", self.batch.id, 500) do
    chunks = chunks + 1
    lu.assertEquals(chunk.n, chunks)
    -- one request per chunk, made when the loop asks for it
    lu.assertEquals(#f:requests("/_db/_system/_api/replication/dump"), chunks)
    entries = entries + #chunk.content
  end
  lu.assertTrue(chunks > 2)
  lu.assertEquals(entries, PRODUCTS)
end

function TestDump:test_dump_entries_iterator()
  local keys_seen = {}
  local last_chunk
  for entry, chunk in self.rep:dump_entries { collection = "products", batch_id = self.batch.id, chunk_size = 300 } do
    keys_seen[#keys_seen + 1] = entry.data._key
    last_chunk = chunk
  end
  lu.assertEquals(#keys_seen, PRODUCTS)
  lu.assertEquals(keys_seen[PRODUCTS], "k000025")
  lu.assertFalse(last_chunk.check_more)
end

function TestDump:test_the_batch_is_a_snapshot()
  f:insert("_system", "products", { { _key = "later", v = 1 } })
  local n = 0
  for _ in self.rep:dump_entries("products", self.batch.id) do n = n + 1 end
  lu.assertEquals(n, PRODUCTS)
  local b2 = self.rep:create_dump_batch(60)
  n = 0
  for _ in self.rep:dump_entries("products", b2.id) do n = n + 1 end
  lu.assertEquals(n, PRODUCTS + 1)
end

function TestDump:test_empty_collection()
  f:create_collection("_system", "empty")
  local b = self.rep:create_dump_batch(60)
  local d = self.rep:dump("empty", b.id)
  lu.assertEquals(d.content, {})
  lu.assertFalse(d.check_more)
  lu.assertEquals(d.last_included, "0")
  local chunks = 0
  for _ in self.rep:dump_chunks("empty", b.id) do chunks = chunks + 1 end
  lu.assertEquals(chunks, 0)
end

function TestDump:test_documented_line_format()
  f:config { dump_format = "documented" }
  local d = self.rep:dump("products", self.batch.id)
  local e = d.content[1]
  lu.assertEquals(keys(e), { "data", "key", "rev", "tick", "type" })
  lu.assertEquals(e.key, e.data._key)
end

function TestDump:test_errors()
  local err = fails(self.rep.dump, self.rep, "nope", self.batch.id)
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.error_num, 1203)
  -- the seed lets batch_id out; the server wants it (404 with errorNum 400)
  err = fails(self.rep.dump, self.rep, "products")
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.status, 404)
  lu.assertEquals(err.error_num, 400)
  lu.assertStrContains(err.message, "batchId")
end

function TestDump:test_usage_errors()
  local rep, id = self.rep, self.batch.id
  usage_error("collection", rep.dump, rep)
  usage_error("collection", rep.dump, rep, "")
  usage_error("chunk_size", rep.dump, rep, "products", id, 0)
  usage_error("chunk_size", rep.dump, rep, "products", id, 1.5)
  usage_error("deserialize", rep.dump, rep, "products", id, 10, "no")
  usage_error("collection", rep.dump_chunks, rep)
  usage_error("deserialize", rep.dump_entries, rep, { collection = "products", deserialize = true })
end

-- ======================================================================================
TestSynchronize = {}
function TestSynchronize:setUp()
  fresh()
  f:create_database("copy")
  self.rep = connect { database = "copy" }:replication()
end

function TestSynchronize:test_every_parameter_goes_over_the_wire()
  local res = self.rep:synchronize(f.endpoint, "_system", "root", "leader-pw", true, false, "include",
                                   { "products" }, 30)
  local r = last_request("/sync")
  lu.assertEquals(r.method, "PUT")
  lu.assertEquals(r.path, "/_db/copy/_api/replication/sync")
  lu.assertEquals(body_of(r), { endpoint = f.endpoint, database = "_system", username = "root", password = "leader-pw",
                                includeSystem = true, incremental = false, restrictType = "include",
                                restrictCollections = { "products" }, initialSyncMaxWaitTime = 30 })
  lu.assertEquals(keys(res), { "collections", "last_log_tick" })
  lu.assertEquals(#res.collections, 1)
  lu.assertEquals(res.collections[1].name, "products")
  lu.assertStrMatches(res.collections[1].id, "%d+")
  lu.assertStrMatches(res.last_log_tick, "%d+")
  lu.assertEquals(f:state().collections.copy.products, PRODUCTS) -- the data came over
  lu.assertNotStrContains(json.encode(res), "leader-pw")
end

function TestSynchronize:test_named_parameters_and_defaults()
  local res = self.rep:synchronize { endpoint = f.endpoint, database = "_system", include_system = false }
  lu.assertEquals(body_of(last_request("/sync")), { endpoint = f.endpoint, database = "_system", includeSystem = false })
  lu.assertEquals(#res.collections, 1)
end

function TestSynchronize:test_unreachable_leader()
  local err = fails(self.rep.synchronize, self.rep, "tcp://127.0.0.1:1")
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.status, 500)
  lu.assertEquals(err.error_num, 1400)
  lu.assertEquals(err.error, "ERROR_REPLICATION_NO_RESPONSE")
end

function TestSynchronize:test_usage_errors()
  local rep = self.rep
  usage_error("endpoint", rep.synchronize, rep)
  usage_error("restrict_type", rep.synchronize, rep, f.endpoint, nil, nil, nil, nil, nil, "both", { "x" })
  usage_error("restrict_collections", rep.synchronize, rep, { endpoint = f.endpoint, restrict_collections = "x" })
  usage_error("restrict_collections", rep.synchronize, rep, { endpoint = f.endpoint, restrict_collections = { 1 } })
  usage_error("initial_sync_wait_time", rep.synchronize, rep, { endpoint = f.endpoint, initial_sync_wait_time = -1 })
  usage_error("password", rep.synchronize, rep, f.endpoint, nil, "u", 1234)
  usage_error("initial_sync_max_wait_time", rep.synchronize, rep,
              { endpoint = f.endpoint, initial_sync_max_wait_time = 1 })
end

-- ======================================================================================
TestClusterInventory = {}
function TestClusterInventory:setUp() fresh() end

function TestClusterInventory:test_a_single_server_refuses()
  local rep = connect():replication()
  local err = fails(rep.cluster_inventory, rep)
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.status, 403)
  lu.assertEquals(err.error_num, 1471)
end

function TestClusterInventory:test_on_a_coordinator()
  f:config { role = "coordinator" }
  local rep = connect():replication()
  local inv = rep:cluster_inventory(false)
  lu.assertEquals(last_request("/clusterInventory").query, { includeSystem = "false" })
  lu.assertEquals(inv.state, "unused")
  lu.assertStrMatches(inv.tick, "%d+")
  lu.assertEquals(#inv.collections, 1)
  local c = inv.collections[1]
  lu.assertEquals(keys(c), { "all_in_sync", "indexes", "is_ready", "parameters", "plan_version" })
  lu.assertTrue(c.is_ready)
  inv = rep:cluster_inventory()
  lu.assertEquals(last_request("/clusterInventory").query, {})
  lu.assertEquals(#inv.collections, 3)
  usage_error("include_system", rep.cluster_inventory, rep, "false")
end

-- ======================================================================================
TestLogger = {}
function TestLogger:setUp()
  fresh()
  self.rep = connect():replication()
end

function TestLogger:test_logger_state()
  local st = self.rep:logger_state()
  lu.assertEquals(keys(st), { "clients", "server", "state" })
  lu.assertEquals(keys(st.server), { "server_id", "version" })
  lu.assertEquals(st.server.version, "3.11.7")
  lu.assertTrue(st.state.running)
  lu.assertEquals(st.state.last_log_tick, f:state().tick)
  lu.assertEquals(st.clients, {})
  local before = st.state.total_events
  f:insert("_system", "products", { { v = 1 }, { v = 2 } })
  st = self.rep:logger_state()
  lu.assertEquals(st.state.total_events, before + 2)
  -- a tailing client shows up in the list
  self.rep:wal_tail_chunk { syncer_id = "77", client_info = "test" }
  st = self.rep:logger_state()
  lu.assertEquals(#st.clients, 1)
  lu.assertEquals(st.clients[1].syncerId, "77")
  usage_error("1", self.rep.logger_state, self.rep, true)
end

function TestLogger:test_logger_first_tick_and_server_id()
  lu.assertEquals(self.rep:logger_first_tick(), "1000002")
  f:prune_wal(1000010)
  lu.assertEquals(self.rep:logger_first_tick(), "1000010")
  lu.assertEquals(self.rep:server_id(), "166787134712385")
  lu.assertEquals(last_request().method, "GET")
  usage_error("1", self.rep.server_id, self.rep, "x")
end

-- ======================================================================================
TestApplier = {}
function TestApplier:setUp()
  fresh()
  self.rep = connect():replication()
end

function TestApplier:tearDown() pcall(self.rep.stop_applier, self.rep) end

local SET_CONFIG_ARGS = { "tcp://127.0.0.1:9", "leaderdb", "repl", "applier-pw", 7, 11, 601, 4096, true, false, true,
                          true, 3, 301, 16, 2, 5, false, true, "exclude", { "skipme", "andme" } }
local SET_CONFIG_WIRE = { endpoint = "tcp://127.0.0.1:9", database = "leaderdb", username = "repl",
                          password = "applier-pw", maxConnectRetries = 7, connectTimeout = 11, requestTimeout = 601,
                          chunkSize = 4096, autoStart = true, adaptivePolling = false, includeSystem = true,
                          autoResync = true, autoResyncRetries = 3, initialSyncMaxWaitTime = 301,
                          connectionRetryWaitTime = 16, idleMinWaitTime = 2, idleMaxWaitTime = 5,
                          requireFromPresent = false, verbose = true, restrictType = "exclude",
                          restrictCollections = { "skipme", "andme" } }

function TestApplier:test_default_config()
  local c = self.rep:applier_config()
  lu.assertEquals(last_request("/applier-config").method, "GET")
  lu.assertNil(c.endpoint)
  lu.assertNil(c.password)
  lu.assertEquals(c.database, "_system")
  lu.assertEquals(c.max_connect_retries, 100)
  lu.assertTrue(c.adaptive_polling)
  lu.assertFalse(c.auto_start)
  lu.assertEquals(c.restrict_type, "")
  lu.assertEquals(c.restrict_collections, {})
  lu.assertEquals(c.idle_max_wait_time, 2.5)
  lu.assertEquals(keys(c), { "adaptive_polling", "auto_resync", "auto_resync_retries", "auto_start", "chunk_size",
    "connect_timeout", "connection_retry_wait_time", "database", "idle_max_wait_time", "idle_min_wait_time",
    "ignore_errors", "include_foxx_queues", "include_system", "incremental", "initial_sync_max_wait_time",
    "lock_timeout_retries", "max_connect_retries", "max_packet_size", "request_timeout", "require_from_present",
    "restrict_collections", "restrict_type", "skip_create_drop", "ssl_protocol", "verbose" })
end

function TestApplier:test_set_config_with_every_parameter_positionally()
  local c = self.rep:set_applier_config(table.unpack(SET_CONFIG_ARGS, 1, #SET_CONFIG_ARGS))
  local r = last_request("/applier-config", "PUT")
  lu.assertEquals(body_of(r), SET_CONFIG_WIRE)
  lu.assertEquals(c.endpoint, "tcp://127.0.0.1:9")
  lu.assertEquals(c.database, "leaderdb")
  lu.assertEquals(c.username, "repl")
  lu.assertNil(c.password)
  lu.assertEquals(c.max_connect_retries, 7)
  lu.assertEquals(c.connect_timeout, 11)
  lu.assertEquals(c.request_timeout, 601)
  lu.assertEquals(c.chunk_size, 4096)
  lu.assertTrue(c.auto_start)
  lu.assertFalse(c.adaptive_polling)
  lu.assertTrue(c.include_system)
  lu.assertTrue(c.auto_resync)
  lu.assertEquals(c.auto_resync_retries, 3)
  lu.assertEquals(c.initial_sync_max_wait_time, 301)
  lu.assertEquals(c.connection_retry_wait_time, 16)
  lu.assertEquals(c.idle_min_wait_time, 2)
  lu.assertEquals(c.idle_max_wait_time, 5)
  lu.assertFalse(c.require_from_present)
  lu.assertTrue(c.verbose)
  lu.assertEquals(c.restrict_type, "exclude")
  lu.assertEquals(c.restrict_collections, { "skipme", "andme" })
  lu.assertNotStrContains(json.encode(c), "applier-pw")
  lu.assertEquals(self.rep:applier_config(), c)
end

function TestApplier:test_set_config_with_named_parameters()
  local named = {}
  local order = { "endpoint", "database", "username", "password", "max_connect_retries", "connect_timeout",
                  "request_timeout", "chunk_size", "auto_start", "adaptive_polling", "include_system", "auto_resync",
                  "auto_resync_retries", "initial_sync_max_wait_time", "connection_retry_wait_time",
                  "idle_min_wait_time", "idle_max_wait_time", "require_from_present", "verbose", "restrict_type",
                  "restrict_collections" }
  for i, k in ipairs(order) do named[k] = SET_CONFIG_ARGS[i] end
  self.rep:set_applier_config(named)
  lu.assertEquals(body_of(last_request("/applier-config", "PUT")), SET_CONFIG_WIRE)
  -- only what is given is sent
  self.rep:set_applier_config { endpoint = f.endpoint }
  lu.assertEquals(body_of(last_request("/applier-config", "PUT")), { endpoint = f.endpoint })
end

function TestApplier:test_set_config_usage_errors()
  local rep = self.rep
  usage_error("endpoint", rep.set_applier_config, rep)
  usage_error("endpoint", rep.set_applier_config, rep, "")
  usage_error("max_connect_retries", rep.set_applier_config, rep, f.endpoint, nil, nil, nil, -1)
  usage_error("connect_timeout", rep.set_applier_config, rep, { endpoint = f.endpoint, connect_timeout = "10" })
  usage_error("chunk_size", rep.set_applier_config, rep, { endpoint = f.endpoint, chunk_size = 1.5 })
  usage_error("auto_start", rep.set_applier_config, rep, { endpoint = f.endpoint, auto_start = 1 })
  usage_error("restrict_collections", rep.set_applier_config, rep, { endpoint = f.endpoint, restrict_type = "include" })
  usage_error("restrict_type", rep.set_applier_config, rep, { endpoint = f.endpoint, restrict_collections = { "a" } })
  local too_many = { table.unpack(SET_CONFIG_ARGS, 1, 21) }
  too_many[22] = "extra"
  usage_error("22", rep.set_applier_config, rep, table.unpack(too_many, 1, 22))
  usage_error("max_connect_retry", rep.set_applier_config, rep, { endpoint = f.endpoint, max_connect_retry = 1 })
end

function TestApplier:test_start_needs_a_configured_endpoint()
  local err = fails(self.rep.start_applier, self.rep)
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.status, 400)
  lu.assertEquals(err.error_num, 1410)
end

function TestApplier:test_start_state_stop()
  self.rep:set_applier_config { endpoint = f.endpoint }
  local st = self.rep:applier_state()
  lu.assertEquals(keys(st), { "database", "endpoint", "server", "state" })
  lu.assertFalse(st.state.running)
  lu.assertEquals(st.state.phase, "inactive")
  lu.assertEquals(st.state.last_applied_continuous_tick, json.null)
  lu.assertNil(st.state.ticks_behind)
  lu.assertEquals(st.state.last_error, {})
  lu.assertEquals(st.server.server_id, "166787134712385")

  st = self.rep:start_applier("1000005")
  local r = last_request("/applier-start")
  lu.assertEquals(r.method, "PUT")
  lu.assertEquals(r.query, { from = "1000005" })
  lu.assertTrue(st.state.running)
  lu.assertEquals(st.state.phase, "running")
  lu.assertEquals(st.state.last_applied_continuous_tick, "1000005")
  lu.assertIsNumber(st.state.ticks_behind)
  lu.assertEquals(keys(st.state.progress), { "failed_connects", "message", "time" })
  for _, k in ipairs { "total_requests", "total_failed_connects", "total_events", "total_documents",
                       "total_removals", "total_resyncs", "total_operations_excluded", "total_apply_time",
                       "average_apply_time", "total_fetch_time", "average_fetch_time", "safe_resume_tick",
                       "last_processed_continuous_tick", "last_available_continuous_tick", "started", "time" } do
    lu.assertNotNil(st.state[k], k)
  end
  -- a set while running is refused by the server
  local err = fails(self.rep.set_applier_config, self.rep, f.endpoint)
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.error_num, 1411)

  st = self.rep:stop_applier()
  lu.assertEquals(last_request("/applier-stop").method, "PUT")
  lu.assertFalse(st.state.running)
  lu.assertFalse(self.rep:applier_state().state.running)
  -- named form of start, and its alias `from`
  self.rep:start_applier { last_tick = 1000003 }
  lu.assertEquals(last_request("/applier-start").query, { from = "1000003" })
  self.rep:stop_applier()
  self.rep:start_applier { from = "1000004" }
  lu.assertEquals(last_request("/applier-start").query, { from = "1000004" })
  self.rep:stop_applier()
  self.rep:start_applier()
  lu.assertEquals(last_request("/applier-start").query, {})
  usage_error("last_tick", self.rep.start_applier, self.rep, "tick-5")
  usage_error("1", self.rep.stop_applier, self.rep, true)
end

-- The issue's async script: start the applier, follow applier_state until it has caught
-- up, while another task keeps writing to the leader.
function TestApplier:test_async_start_and_follow_applier_state_until_caught_up()
  f:config { apply_rate = 4, apply_interval_ms = 15 }
  local rep = self.rep
  rep:set_applier_config { endpoint = f.endpoint, database = "_system", max_connect_retries = 10 }
  local written = 0
  local writer = couch.spawn(function()
    for i = 1, 10 do
      f:insert("_system", "products", { { _key = "w" .. i, i = i } })
      written = written + 1
      couch.sleep(0.02)
    end
  end)
  local follower = couch.spawn(function()
    local st = rep:start_applier()
    lu.assertTrue(st.state.running)
    local polls, behind_seen, interleaved = 0, false, false
    repeat
      couch.sleep(0.02)
      st = rep:applier_state()
      polls = polls + 1
      if (st.state.ticks_behind or 0) > 0 then behind_seen = true end
      if written > 0 and written < 10 then interleaved = true end
    until writer:status() == "done" and st.state.running and st.state.ticks_behind == 0
      and st.state.last_applied_continuous_tick == st.state.last_available_continuous_tick
      and st.state.last_available_continuous_tick == f:state().tick
    return st, polls, behind_seen, interleaved
  end)
  local st, polls, behind_seen, interleaved = couch.timeout(30, function() return follower:wait() end)
  lu.assertTrue(polls > 1)
  lu.assertTrue(behind_seen, "the applier should have been seen catching up")
  lu.assertTrue(interleaved, "the follower task should have run while the writer was writing")
  lu.assertEquals(st.state.total_documents, PRODUCTS + 10)
  lu.assertEquals(st.state.total_failed_connects, 0)
  lu.assertEquals(st.state.last_error, {})
  rep:stop_applier()
end

function TestApplier:test_an_unreachable_leader_shows_in_the_state_and_stops_the_applier()
  f:config { apply_interval_ms = 5 }
  self.rep:set_applier_config { endpoint = "tcp://127.0.0.1:1", max_connect_retries = 3 }
  self.rep:start_applier()
  local st
  couch.timeout(10, function()
    repeat couch.sleep(0.02); st = self.rep:applier_state() until not st.state.running
  end)
  lu.assertEquals(st.state.total_failed_connects, 3)
  lu.assertEquals(st.state.last_error.error_num, 1400)
  lu.assertStrContains(st.state.last_error.error_message, "tcp://127.0.0.1:1")
  lu.assertIsString(st.state.last_error.time)
end

local MAKE_SLAVE_ARGS = { "ENDPOINT", "_system", "repl", "follower-pw", "include", { "products" }, false, 5, 12, 602,
                          8192, true, false, 4, 302, 17, 3, 6, true, false }
local MAKE_SLAVE_WIRE = { database = "_system", username = "repl", password = "follower-pw",
                          restrictType = "include", restrictCollections = { "products" }, includeSystem = false,
                          maxConnectRetries = 5, connectTimeout = 12, requestTimeout = 602, chunkSize = 8192,
                          adaptivePolling = true, autoResync = false, autoResyncRetries = 4,
                          initialSyncMaxWaitTime = 302, connectionRetryWaitTime = 17, idleMinWaitTime = 3,
                          idleMaxWaitTime = 6, requireFromPresent = true, verbose = false }

local function make_slave_args()
  local a = { table.unpack(MAKE_SLAVE_ARGS, 1, #MAKE_SLAVE_ARGS) }
  a[1] = f.endpoint
  local w = {}
  for k, v in pairs(MAKE_SLAVE_WIRE) do w[k] = v end
  w.endpoint = f.endpoint
  return a, w
end

function TestApplier:test_make_slave_with_every_parameter_uses_make_follower()
  local a, w = make_slave_args()
  local st = self.rep:make_slave(table.unpack(a, 1, #a))
  local r = last_request("/make-follower")
  lu.assertEquals(r.method, "PUT")
  lu.assertEquals(body_of(r), w)
  lu.assertEquals(#f:requests("/_db/_system/_api/replication/make-slave"), 0)
  lu.assertEquals(keys(st), { "database", "endpoint", "server", "state" })
  lu.assertEquals(st.endpoint, f.endpoint)
  lu.assertTrue(st.state.running)
  lu.assertNotStrContains(json.encode(st), "follower-pw")
  local c = self.rep:applier_config()
  lu.assertEquals(c.restrict_type, "include")
  lu.assertEquals(c.chunk_size, 8192)
  lu.assertEquals(c.idle_max_wait_time, 6)
  self.rep:stop_applier()
  -- the alias, named form
  st = self.rep:make_follower { endpoint = f.endpoint }
  lu.assertEquals(body_of(last_request("/make-follower")), { endpoint = f.endpoint })
  lu.assertTrue(st.state.running)
end

function TestApplier:test_make_slave_falls_back_to_the_old_path()
  f:config { removed = { "make-follower" } }
  local a, w = make_slave_args()
  local st = self.rep:make_slave(table.unpack(a, 1, #a))
  lu.assertEquals(#f:requests("/_db/_system/_api/replication/make-follower"), 1)
  local r = last_request("/make-slave")
  lu.assertEquals(body_of(r), w)
  lu.assertTrue(st.state.running)
end

function TestApplier:test_make_slave_against_an_unreachable_leader()
  local st = self.rep:make_slave { endpoint = "tcp://127.0.0.1:1" }
  lu.assertFalse(st.state.running)
  lu.assertEquals(st.state.last_error.error_num, 1400)
end

function TestApplier:test_make_slave_usage_errors()
  local rep = self.rep
  usage_error("endpoint", rep.make_slave, rep)
  usage_error("restrict_type", rep.make_slave, rep, f.endpoint, nil, nil, nil, "all", { "x" })
  usage_error("include_system", rep.make_slave, rep, f.endpoint, nil, nil, nil, nil, nil, "true")
  usage_error("auto_start", rep.make_slave, rep, { endpoint = f.endpoint, auto_start = true }) -- not a make_slave parameter
  local too_many = make_slave_args()
  too_many[21] = "extra"
  usage_error("21", rep.make_slave, rep, table.unpack(too_many, 1, 21))
end

-- ======================================================================================
TestWal = {}
function TestWal:setUp()
  fresh()
  self.rep = connect():replication()
end

function TestWal:test_range_and_last_tick()
  local r = self.rep:wal_range()
  lu.assertEquals(last_request("/_api/wal/range").method, "GET")
  lu.assertEquals(keys(r), { "server", "tick_max", "tick_min", "time" })
  lu.assertEquals(r.tick_min, "1000002")
  lu.assertEquals(r.tick_max, f:state().tick)
  lu.assertEquals(r.server.version, "3.11.7")
  local t = self.rep:wal_last_tick()
  lu.assertEquals(keys(t), { "server", "tick", "time" })
  lu.assertEquals(t.tick, f:state().tick)
  f:insert("_system", "products", { { x = 1 } })
  lu.assertEquals(tonumber(self.rep:wal_last_tick().tick), tonumber(t.tick) + 1)
  usage_error("1", self.rep.wal_range, self.rep, 1)
end

function TestWal:test_tail_chunk_with_every_parameter()
  local r = self.rep:wal_tail_chunk("1000001", "1000020", "0", true, 100000, "5", "6", "couchlua test", true)
  lu.assertEquals(last_request("/_api/wal/tail").query, { from = "1000001", to = "1000020", lastScanned = "0",
    global = "true", chunkSize = "100000", syncerId = "5", serverId = "6", clientInfo = "couchlua test" })
  lu.assertEquals(keys(r), { "active", "check_more", "content", "from_present", "last_included", "last_scanned",
                             "last_tick" })
  lu.assertTrue(r.active)
  lu.assertTrue(r.from_present)
  lu.assertFalse(r.check_more)
  lu.assertEquals(r.last_included, "1000020")
  lu.assertEquals(#r.content, 19)
  lu.assertEquals(r.content[1].tick, "1000002")
  lu.assertEquals(r.content[1].type, 1100)
  lu.assertEquals(r.content[#r.content].type, 2300)
  lu.assertEquals(r.content[#r.content].data._id:match("^products/"), "products/")
  -- python-arango's names lower / upper, and the raw body
  r = self.rep:wal_tail_chunk { lower = "1000019", upper = "1000020", deserialize = false }
  lu.assertEquals(last_request("/_api/wal/tail").query, { from = "1000019", to = "1000020" })
  lu.assertStrMatches(r.content, '{"tick":"1000020".*}\n')
end

function TestWal:test_nothing_new_is_a_204()
  local last = self.rep:wal_last_tick().tick
  local r = self.rep:wal_tail_chunk { from = last }
  lu.assertEquals(r.content, {})
  lu.assertEquals(r.last_included, "0")
  lu.assertFalse(r.check_more)
end

function TestWal:test_tail_iterator_drains_the_log_chunk_by_chunk()
  local n, last = 0, nil
  for m, pos in self.rep:wal_tail { follow = false, chunk_size = 500 } do
    n = n + 1
    lu.assertTrue(last == nil or tonumber(m.tick) > tonumber(last))
    last = m.tick
    lu.assertIsString(pos.last_included)
  end
  lu.assertEquals(n, 1 + 2 + 1 + PRODUCTS) -- database, two system collections, products, its docs
  lu.assertEquals(last, f:state().tick)
  local tails = f:requests("/_db/_system/_api/wal/tail")
  lu.assertTrue(#tails > 2)
  -- each request continues from the previous one's last included tick
  for i = 2, #tails do
    lu.assertNotNil(tails[i].query.from)
    lu.assertNotNil(tails[i].query.lastScanned)
  end
end

function TestWal:test_tail_iterator_up_to_a_tick()
  local ticks = {}
  for m in self.rep:wal_tail { from = "1000005", to = "1000008", follow = true } do ticks[#ticks + 1] = m.tick end
  lu.assertEquals(ticks, { "1000006", "1000007", "1000008" })
end

function TestWal:test_tail_iterator_follows_inside_a_task()
  local start = self.rep:wal_last_tick().tick
  local got = {}
  local follower = couch.spawn(function()
    for m in self.rep:wal_tail { from = start, poll = 0.02 } do
      if m.type == 2300 then got[#got + 1] = m.data._key end
      if #got == 3 then break end
    end
  end)
  local writer = couch.spawn(function()
    for i = 1, 3 do
      couch.sleep(0.05)
      f:insert("_system", "products", { { _key = "live" .. i } })
    end
  end)
  couch.timeout(20, function() writer:wait(); follower:wait() end)
  lu.assertEquals(got, { "live1", "live2", "live3" })
  -- it polled while nothing was there: more than one empty answer
  lu.assertTrue(#f:requests("/_db/_system/_api/wal/tail") > 3)
end

function TestWal:test_missed_changes_raise()
  f:insert("_system", "products", { { v = 1 } })
  f:prune_wal(tonumber(f:state().tick))
  local err = fails(function()
    for _ in self.rep:wal_tail { from = "1000003", follow = false } do end
  end)
  lu.assertEquals(err.kind, "replication")
  lu.assertEquals(err.reason, "from_not_present")
  -- unless the caller accepts it
  local n = 0
  for _ in self.rep:wal_tail { from = "1000003", follow = false, require_from_present = false } do n = n + 1 end
  lu.assertEquals(n, 1)
  lu.assertFalse(self.rep:wal_tail_chunk { from = "1000003" }.from_present)
end

function TestWal:test_global_outside_system_is_refused()
  f:create_database("shop")
  local rep = connect { database = "shop" }:replication()
  local err = fails(rep.wal_tail_chunk, rep, { all_databases = true })
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.status, 400)
  -- a database's own tail has only its own markers
  local n = 0
  for m in rep:wal_tail { follow = false } do
    n = n + 1
    lu.assertEquals(m.db, "shop")
  end
  lu.assertEquals(n, 3)
end

function TestWal:test_usage_errors()
  local rep = self.rep
  usage_error("to", rep.wal_tail_chunk, rep, "20", "10")
  usage_error("chunk_size", rep.wal_tail_chunk, rep, { chunk_size = 0 })
  usage_error("from", rep.wal_tail_chunk, rep, { from = "abc" })
  usage_error("syncer_id", rep.wal_tail_chunk, rep, { syncer_id = -1 })
  usage_error("poll", rep.wal_tail, rep, { poll = -1 })
  usage_error("follow", rep.wal_tail, rep, { follow = "no" })
  usage_error("deserialize", rep.wal_tail, rep, { deserialize = false })
  local err = usage_error(nil, rep.wal_tail, rep, { from = "1", lower = "2" })
  lu.assertStrContains(err.message, "given twice")
end

-- ======================================================================================
-- Servers that no longer have an endpoint: ArangoDB 3.12 removed the applier family,
-- make-follower / make-slave, sync, server-id and logger-first-tick.
TestVersions = {}
function TestVersions:setUp()
  fresh()
  self.rep = connect():replication()
end

local REMOVED_CALLS = {
  { "synchronize", "/_api/replication/sync", function(rep) return rep:synchronize(f.endpoint) end },
  { "logger_first_tick", "/_api/replication/logger-first-tick", function(rep) return rep:logger_first_tick() end },
  { "applier_config", "/_api/replication/applier-config", function(rep) return rep:applier_config() end },
  { "set_applier_config", "/_api/replication/applier-config", function(rep) return rep:set_applier_config(f.endpoint) end },
  { "applier_state", "/_api/replication/applier-state", function(rep) return rep:applier_state() end },
  { "start_applier", "/_api/replication/applier-start", function(rep) return rep:start_applier() end },
  { "stop_applier", "/_api/replication/applier-stop", function(rep) return rep:stop_applier() end },
  { "make_slave", "/_api/replication/make-slave", function(rep) return rep:make_slave(f.endpoint) end },
  { "server_id", "/_api/replication/server-id", function(rep) return rep:server_id() end },
}

function TestVersions:test_removed_endpoints_are_unsupported_errors_in_every_style()
  for _, style in ipairs { "invalid_command", "not_found", "not_implemented" } do
    f:config { version = "3.12.4", removed_style = style }
    for _, c in ipairs(REMOVED_CALLS) do
      local err = fails(c[3], self.rep)
      local what = style .. " " .. c[1] .. ": " .. tostring(err)
      lu.assertEquals(err.kind, "unsupported", what)
      lu.assertEquals(err.endpoint, c[2], what)
      lu.assertEquals(err.removed_in, "3.12", what)
      lu.assertStrContains(err.message, c[2], false, what)
      lu.assertStrContains(err.message, "ArangoDB 3.12 removed it", false, what)
      lu.assertStrContains(err.message, "3.11 and earlier", false, what)
      lu.assertStrContains(err.message, "Instead:", false, what)
      lu.assertEquals(err.status, ({ invalid_command = 400, not_found = 404, not_implemented = 501 })[style], what)
    end
  end
  -- make_slave tried both names
  local err = fails(self.rep.make_slave, self.rep, f.endpoint)
  lu.assertStrContains(err.message, "make-follower was tried first")
  lu.assertEquals(#f:requests("/_db/_system/_api/replication/make-follower"), 3 + 1)
end

function TestVersions:test_what_312_keeps_still_works()
  f:config { version = "3.12.4" }
  local rep = self.rep
  local b = rep:create_dump_batch(30)
  lu.assertEquals(#rep:inventory(b.id, false).collections, 1)
  lu.assertEquals(#rep:dump("products", b.id).content, PRODUCTS)
  lu.assertTrue(rep:extend_dump_batch(b.id, 30))
  lu.assertTrue(rep:delete_dump_batch(b.id))
  lu.assertEquals(rep:logger_state().server.version, "3.12.4")
  lu.assertStrMatches(rep:wal_last_tick().tick, "%d+")
  lu.assertStrMatches(rep:wal_range().tick_min, "%d+")
  local n = 0
  for _ in rep:wal_tail { follow = false } do n = n + 1 end
  lu.assertTrue(n > PRODUCTS)
  local err = fails(rep.cluster_inventory, rep) -- still there: a single server says so itself
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.error_num, 1471)
end

function TestVersions:test_a_server_without_the_wal_api()
  f:config { removed = { "wal/tail", "wal/range", "wal/lastTick" } }
  for _, c in ipairs { { "wal_last_tick", "/_api/wal/lastTick" }, { "wal_range", "/_api/wal/range" },
                       { "wal_tail_chunk", "/_api/wal/tail" } } do
    local err = fails(self.rep[c[1]], self.rep)
    lu.assertEquals(err.kind, "unsupported", tostring(err))
    lu.assertEquals(err.endpoint, c[2])
    lu.assertEquals(err.status, 404)
    lu.assertNil(err.removed_in)
    lu.assertStrContains(err.message, "since 3.3")
  end
  -- the escape hatch does not guess: an unknown path is the server's arango error
  local err = fails(function() return self.rep.db:request("GET", "/_api/wal/nothing") end)
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.error_num, 404)
end

function TestVersions:test_a_coordinator_does_not_run_an_applier()
  f:config { role = "coordinator" }
  for _, fn in ipairs { function(r) return r:start_applier() end, function(r) return r:wal_last_tick() end,
                        function(r) return r:synchronize(f.endpoint) end } do
    local err = fails(fn, self.rep)
    lu.assertEquals(err.kind, "unsupported")
    lu.assertEquals(err.reason, "coordinator")
    lu.assertEquals(err.error_num, 1470)
    lu.assertStrContains(err.message, "cluster coordinator")
  end
end

function TestVersions:test_the_endpoint_table_names_every_seed_endpoint()
  for _, k in ipairs { "inventory", "batch", "dump", "sync", "cluster_inventory", "logger_state", "logger_first_tick",
                       "applier_config", "applier_state", "applier_start", "applier_stop", "make_follower",
                       "make_slave", "server_id", "wal_tail", "wal_range", "wal_last_tick" } do
    local ep = arango.ENDPOINTS[k]
    lu.assertNotNil(ep, k)
    lu.assertStrMatches(ep.path, "/_api/.*")
    lu.assertIsString(ep.since)
  end
end

-- ======================================================================================
TestErrors = {}
function TestErrors:setUp() fresh() end

function TestErrors:test_arango_error_fields_and_redaction()
  local db = arango.connect("http://root:secret@" .. host, { retries = 0 })
  local rep = db:replication()
  local err = fails(rep.delete_dump_batch, rep, "999")
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.status, 404)
  lu.assertEquals(err.error_num, 1600)
  lu.assertEquals(err.message, "cursor not found")
  lu.assertEquals(err.method, "DELETE")
  lu.assertEquals(err.url, f.url .. "/_db/_system/_api/replication/batch/999")
  local s = tostring(err)
  lu.assertStrContains(s, "couch: arango 404 ERROR_CURSOR_NOT_FOUND: cursor not found (DELETE ")
  lu.assertNotStrContains(s, "secret")
end

function TestErrors:test_db_request_is_the_escape_hatch()
  local db = connect()
  local body, status = db:request("GET", "/_api/version")
  lu.assertEquals(status, 200)
  lu.assertEquals(body.server, "arango")
  local err = fails(db.request, db, "GET", "/_api/nothing")
  lu.assertEquals(err.kind, "arango")
  lu.assertEquals(err.error_num, 404)
  usage_error("path", db.request, db, "GET")
  usage_error("path", db.request, db, "GET", "_api/version")
end

function TestErrors:test_calls_block_outside_a_task_and_yield_inside_one()
  local rep = connect():replication()
  -- outside: a plain call
  lu.assertEquals(rep:server_id(), "166787134712385")
  -- inside: several tasks' calls interleave on one thread
  local order = {}
  local function worker(name)
    return function()
      for _ = 1, 3 do
        rep:logger_state()
        order[#order + 1] = name
      end
    end
  end
  couch.timeout(20, function() couch.gather(couch.spawn(worker("a")), couch.spawn(worker("b"))) end)
  lu.assertEquals(#order, 6)
  local switches = 0
  for i = 2, #order do if order[i] ~= order[i - 1] then switches = switches + 1 end end
  lu.assertTrue(switches >= 2, table.concat(order, ","))
end

local rc = lu.LuaUnit.run()
f:stop()
os.exit(rc)
