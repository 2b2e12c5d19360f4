-- The FAKE CouchDB 3 (tests/fakes/fake_couchdb3.js) answers the database API as a real
-- CouchDB 3.4.3 answered the project's own tests/server suites: the recorded requests of
-- tests/fixtures/couchdb-3.4.3-suite are sent to the fake, after the state they need is set
-- up, and each answer must have the recorded status, Content-Type, Cache-Control, ETag and
-- Location (present exactly when recorded) and body shape (same keys, same JSON types, keys
-- in the recorded order).
-- Values that necessarily differ (revs, seqs, timestamps, uuids) are not compared; the ones
-- that must not (errors, reasons, counts, offsets, ids) are.
-- Only srv:request is used, with recorded bodies sent as the JSON text they were, so this
-- tests the fake, not the library (which would turn an empty `{}` list into `[]`).
if not pcall(require, "luaunit") then package.path = package.path .. ";/usr/share/lua/5.4/?.lua" end
local here = debug.getinfo(1, "S").source:match("^@(.*)/tests/unit/[^/]*$") or "."
package.path = package.path .. ";" .. here .. "/tests/support/?.lua"
local lu = require "luaunit"
local couch = require "couch"
local fake = require "fake_couchdb3"
local recorded = require "recorded"
local json = couch.json
local NULL = json.null

local SET = recorded.open("couchdb-3.4.3-suite")
local F

-- query parameters the library JSON-encodes itself (src/http/url.c)
local JSON_PARAMS = { key = true, keys = true, startkey = true, start_key = true, endkey = true, end_key = true }

-- the recording's server addresses (5984: CouchDB, 5990: the recording proxy), user and
-- password become the fake's
local function subst(v)
  if type(v) == "string" then
    return (v:gsub("127%.0%.0%.1:59[89][04]", "127.0.0.1:" .. F.port):gsub("REDACTED", F.password)
             :gsub("recorder", "admin"))
  elseif type(v) == "table" and v ~= NULL then
    local out = {}
    for k, x in pairs(v) do out[k] = subst(x) end
    return setmetatable(out, getmetatable(v))
  end
  return v
end

local function rec(no)
  if not SET then lu.skip("tests/fixtures/couchdb-3.4.3-suite not found") end
  return SET:get(no)
end

--- send(no[, over]) -> raw body, status, headers: the recorded request (over.path,
-- over.query, over.body replace parts of it)
local function send(no, over)
  over = over or {}
  local r = rec(no).request
  local body = over.body
  if body == nil and r.body ~= nil and r.body ~= NULL then
    -- the recorded text, keys in their order (what the answers echo comes back in it)
    body = type(r.body) == "string" and subst(r.body) or subst(SET:text(no, "request", "body"))
  end
  local query = {}
  for k, v in pairs(over.query or r.query or {}) do
    query[k] = JSON_PARAMS[k] and json.decode(v) or subst(v)
  end
  local client = F.srv
  if r.auth == "none" then client = F.anon elseif r.auth:match("^cookie") then client = F.cookie end
  return client:request(r.method, over.path or r.path,
    { body = body, query = query, content_type = r.content_type, allow = true, retries = 0, raw = true })
end

--- expect(no[, over]) -> body: send and hold the answer to the recording
local function expect(no, over)
  over = over or {}
  local r = rec(no)
  local text, status, headers = send(no, over)
  local got = text
  if (headers["content-type"] or ""):match("^application/json") and text and text ~= "" then got = json.decode(text) end
  local what = r.file
  lu.assertEquals(status, r.status, what .. ": " .. tostring(type(got) == "table" and json.encode(got) or got))
  for _, h in ipairs { "content-type", "cache-control" } do
    lu.assertEquals(headers[h], r.headers[h], what .. ": " .. h)
  end
  for _, h in ipairs { "etag", "location" } do
    lu.assertEquals(headers[h] ~= nil, r.headers[h] ~= nil, what .. ": " .. h .. " present as recorded")
  end
  if r.headers.location and not over.path then
    local want = subst(r.headers.location)
    if over.new_id then want = want:gsub("[^/]*$", "") .. couch.escape(got.id) end -- the server picked it
    lu.assertEquals(headers.location, want, what)
  end
  local body = r.body
  if type(body) == "table" and body.__truncated__ then return got end
  if r.request.method == "HEAD" then return got end
  if r.headers["content-type"] ~= "application/json" then
    lu.assertEquals(got, over.bytes or subst(body), what .. ": the bytes") -- attachments
    return got
  end
  local ok, why = recorded.same_shape(body, got, "$", over.loose)
  lu.assertTrue(ok, what .. ": " .. tostring(why))
  ok, why = recorded.same_key_order(SET:text(no, "body"), text, recorded.id_keyed(r))
  lu.assertTrue(ok, what .. ": " .. tostring(why))
  return got
end

local function call(method, path, o)
  o = o or {}
  o.retries = 0
  return F.srv:request(method, path, o)
end

-- docs: a list, or the JSON text of one (to keep the keys in a given order)
local function make_db(name, docs)
  call("PUT", "/" .. couch.escape(name), { allow = { [412] = true } })
  if type(docs) == "string" then docs = '{"docs":' .. docs .. "}" elseif docs then docs = { docs = docs } end
  if docs then call("POST", "/" .. couch.escape(name) .. "/_bulk_docs", { body = docs }) end
end

local function numbered(fmt, n, first)
  local docs = {}
  for i = first or 1, (first or 1) + n - 1 do docs[#docs + 1] = { _id = fmt:format(i), n = i } end
  return docs
end

local function wait_for(cond, what)
  local deadline = couch.now() + 10
  repeat
    local v = cond()
    if v then return v end
    couch.sleep(0.02)
  until couch.now() > deadline
  lu.fail("timed out waiting for " .. what)
end

-- one fake for the file: the recordings use distinct database names
F = fake.start()
F.srv = couch.connect(F.admin_url)
F.anon = couch.connect(F.url)
F.cookie = couch.connect(F.url, { user = "admin", password = F.password, auth = "cookie" })

TestSuiteRecordings = {}

function TestSuiteRecordings:test_databases()
  expect(1) -- PUT /_replicator: 412 file_exists
  expect(2) -- PUT a new db: 201 with a Location
  expect(9) -- DELETE a missing db: 404
  expect(11) -- DELETE it: 200
  expect(201)
  expect(255)
  expect(258) -- with a trailing slash, as the cookie client
  expect(261)
  expect(960)
  make_db("couchlua_test_twice_c0a63104_15")
  expect(225)
  expect(226)
  make_db("couchlua_test_docs_c0a63104_4", numbered("d%02d", 50))
  local info = expect(89)
  lu.assertEquals(info.doc_count, 50)
  lu.assertIsString(info.update_seq)
  make_db("couchlua_test_alldbs_c0a63104_14")
  lu.assertTrue(#expect(221) >= 4)
end

function TestSuiteRecordings:test_names_that_need_escaping_and_head()
  make_db("couchlua_test_esc_a/b_1796181005")
  expect(229)
  call("DELETE", "/couchlua_test_esc_a%2Fb_1796181005")
  expect(232)
  expect(238)
  expect(243)
end

function TestSuiteRecordings:test_server_endpoints()
  expect(259) -- /_up
  lu.assertEquals(#expect(222).uuids, 3) -- Cache-Control: no-cache
  expect(103) -- POST /_session, a form
  expect(7) -- /_active_tasks
end

function TestSuiteRecordings:test_all_docs_paging_and_keys()
  make_db("couchlua_test_docs_c0a63104_1")
  expect(4) -- _bulk_docs k001..k025
  local page = expect(6)
  lu.assertEquals(page.offset, 9)
  lu.assertEquals(page.rows[1].id, "k010")
  lu.assertEquals(#page.rows, 5)
  local keyed = expect(8)
  lu.assertEquals(keyed.offset, NULL) -- null with keys, as recorded
  lu.assertEquals(keyed.rows[2].doc._id, "k020")
  lu.assertEquals(expect(10).offset, 0)
  lu.assertEquals(expect(12).offset, 7)
end

function TestSuiteRecordings:test_documents()
  make_db("couchlua_test_docs_c0a63104_7")
  lu.assertEquals(expect(153), rec(153).body)
  make_db("couchlua_test_docs_c0a63104_9")
  lu.assertEquals(expect(184, { new_id = true }).ok, true) -- POST: a Location, no ETag
  make_db("couchlua_test_docs_c0a63104_10")
  local r1 = call("PUT", "/couchlua_test_docs_c0a63104_10/doc1", { body = { n = 1 } })
  local r2 = call("PUT", "/couchlua_test_docs_c0a63104_10/doc1", { body = { n = 2, _rev = r1.rev } })
  lu.assertEquals(expect(198, { body = json.encode { _id = "doc1", n = 3, _rev = r1.rev } }), rec(198).body)
  expect(200, { query = { rev = r2.rev } })
  lu.assertEquals(expect(202), rec(202).body)
  make_db("couchlua_test_docs_c0a63104_6")
  expect(127) -- _design/app: Location .../_design%2Fapp
  expect(129)
  lu.assertEquals(expect(132).rev, "0-1") -- _local/mark
  lu.assertEquals(expect(135).seq, 5)
end

function TestSuiteRecordings:test_security_object_with_an_empty_object_for_a_list()
  make_db("couchlua_test_docs_c0a63104_11")
  lu.assertEquals(expect(208), { error = "error", reason = "no_majority" })
  -- nothing was stored: a new database has CouchDB 3's default (admin_only)
  lu.assertEquals(call("GET", "/couchlua_test_docs_c0a63104_11/_security"),
    { members = { roles = { "_admin" } }, admins = { roles = { "_admin" } } })
  local ok = call("PUT", "/couchlua_test_docs_c0a63104_11/_security",
    { body = '{"members":{"names":[],"roles":["readers"]},"admins":{"names":[],"roles":[]}}' })
  lu.assertTrue(ok.ok)
end

function TestSuiteRecordings:test_find()
  make_db("couchlua_test_docs_c0a63104_5",
    '[{"_id":"p1","kind":"x","n":1},{"_id":"p2","kind":"y","n":2},{"_id":"p3","kind":"x","n":3}]')
  local res = expect(93)
  lu.assertEquals(#res.docs, 2)
  lu.assertEquals(res.warning, rec(93).body.warning)
end

function TestSuiteRecordings:test_attachments()
  make_db("couchlua_test_docs_c0a63104_2")
  local doc = expect(23)
  -- the recorder read the bytes as UTF-8: \255 became U+FFFD; these are the bytes sent
  local bytes = "\0\1binary\255data"
  expect(25, { query = { rev = doc.rev }, body = bytes }) -- 201, a Location, no ETag
  expect(27, { bytes = bytes }) -- the bytes, ETag "<md5>"
  local got = expect(29)
  lu.assertEquals(got._attachments["file.bin"].length, 13)
  lu.assertEquals(got._attachments["file.bin"].digest, rec(29).body._attachments["file.bin"].digest)
  make_db("couchlua_test_nsrc_25e2ae9e_5")
  local with = call("PUT", "/couchlua_test_nsrc_25e2ae9e_5/with-attachment", { body = json.object {} })
  expect(349, { query = { rev = with.rev } })
  make_db("couchlua_test_nsrc_25e2ae9e_5_target")
  local t = call("PUT", "/couchlua_test_nsrc_25e2ae9e_5_target/with-attachment", { body = json.object {} })
  call("PUT", "/couchlua_test_nsrc_25e2ae9e_5_target/with-attachment/blob.bin",
    { body = "\0\1\2binary", content_type = "application/octet-stream", query = { rev = t.rev } })
  expect(372)
end

function TestSuiteRecordings:test_replication_protocol()
  make_db("couchlua_test_rsrc_d77904fe_2", numbered("doc%04d", 20))
  make_db("couchlua_test_rtgt_d77904fe_2")
  expect(115) -- missing _local checkpoints, as the cookie client
  expect(117)
  expect(119)
  expect(131) -- _changes style=all_docs (the recorded body is cut: status and headers)
  local diff = expect(133)
  lu.assertEquals(diff, rec(133).body) -- the target has none of them
  local d6 = call("GET", "/couchlua_test_rsrc_d77904fe_2/doc0006")
  local body = rec(138).request.body
  body.docs[1].rev = d6._rev
  local got = expect(138, { body = json.encode(body) })
  lu.assertEquals(got.results[1].docs[1].ok._revisions.start, 1)
  expect(163) -- _ensure_full_commit: 201
end

function TestSuiteRecordings:test_conflicts_bulk_get_and_open_revs()
  make_db("couchlua_test_docs_c0a63104_8")
  call("POST", "/couchlua_test_docs_c0a63104_8/_bulk_docs",
    { body = '{"new_edits":false,"docs":[{"_id":"r1","_rev":"1-aaa","v":1},{"_id":"r1","_rev":"1-bbb","v":2}]}' })
  lu.assertEquals(expect(175), rec(175).body)
  lu.assertEquals(expect(177), rec(177).body)
  lu.assertEquals(expect(179), rec(179).body)
end

function TestSuiteRecordings:test_changes()
  make_db("couchlua_test_changes_20de0fab_1", { { _id = "b" }, { _id = "c" }, { _id = "a" } })
  local res = expect(1172) -- POST filter=_doc_ids
  lu.assertEquals(#res.results, 2)
  make_db("couchlua_test_changes_20de0fab_5", { { _id = "b" }, { _id = "c" }, { _id = "a" } })
  lu.assertEquals(#expect(1227).results, 3)
  make_db("couchlua_test_changes_20de0fab_6", { { _id = "b", kind = "y" }, { _id = "a", kind = "x" }, { _id = "c", kind = "x" } })
  expect(1259)
  local first = expect(1262)
  lu.assertEquals(first.pending, 2)
  local rest = expect(1266, { query = { since = first.last_seq } })
  lu.assertEquals(#rest.results, 2)
  make_db("couchlua_test_changes_20de0fab_7", { { _id = "b" }, { _id = "c" } })
  call("POST", "/couchlua_test_changes_20de0fab_7/_bulk_docs",
    { body = '{"new_edits":false,"docs":[{"_id":"conf","_rev":"1-aaa"},{"_id":"conf","_rev":"1-bbb"}]}' })
  local a = call("PUT", "/couchlua_test_changes_20de0fab_7/a", { body = json.object {} })
  call("DELETE", "/couchlua_test_changes_20de0fab_7/a", { query = { rev = a.rev } })
  local all = expect(1296)
  lu.assertEquals(#all.results[3].changes, 2)
  lu.assertTrue(all.results[4].deleted)
  -- a long-poll answers the write that wakes it
  make_db("couchlua_test_changes_20de0fab_3", { { _id = "x" }, { _id = "y" }, { _id = "z" } })
  -- since = the current seq rather than the recorded "now": the write may not win the race
  local now = call("GET", "/couchlua_test_changes_20de0fab_3").update_seq
  couch.spawn(function() couch.sleep(0.1); call("PUT", "/couchlua_test_changes_20de0fab_3/from_task", { body = json.object {} }) end)
  lu.assertEquals(expect(1190, { query = { feed = "longpoll", since = now, timeout = "5000" } }).results[1].id, "from_task")
  -- the native engine's reads
  make_db("couchlua_test_nsrc_25e2ae9e_2", { { _id = "awkward" } })
  expect(270)
  make_db("couchlua_test_nsrc_25e2ae9e_3", numbered("doc%06d", 23))
  lu.assertEquals(#expect(295).results, 3) -- since 20-...
  make_db("couchlua_test_nsrc_25e2ae9e_4", numbered("doc%06d", 40))
  lu.assertEquals(#expect(314).results, 2)
end

function TestSuiteRecordings:test_replicator_documents()
  make_db("couchlua_test_rsrc_d77904fe_2", numbered("doc%04d", 20))
  local loose = { changes_pending = true }
  F:freeze() -- the replication waits until the feed below has its starting seq
  expect(17) -- PUT: 201, ETag, Location
  local doc = expect(19)
  lu.assertEquals(doc.owner, "admin")
  expect(20) -- /_scheduler/jobs?limit=0
  local since = expect(24).last_seq -- since=now, limit=0
  expect(26) -- POST _all_docs keys include_docs
  F:thaw()
  local woke = expect(172, { query = { feed = "longpoll", include_docs = "true", since = since, timeout = "30000" }, loose = loose })
  local done = woke.results[1].doc
  lu.assertEquals(done._replication_state, "completed")
  expect(176, { query = { rev = done._rev } })
  lu.assertEquals(expect(178), rec(178).body) -- deleted
  lu.assertEquals(expect(1056), rec(1056).body) -- missing
  make_db("couchlua_test_rsrc_d77904fe_5", numbered("doc%04d", 5))
  expect(459) -- POST _replicator/_bulk_docs
  -- a continuous one deleted: GET is 404 deleted
  local cont = call("PUT", "/_replicator/couchlua_test_cont_1796181018_689621",
    { body = { source = F.admin_url .. "/couchlua_test_rsrc_d77904fe_5", target = F.admin_url .. "/couchlua_test_cont_t", continuous = true } })
  call("DELETE", "/_replicator/couchlua_test_cont_1796181018_689621", { query = { rev = cont.rev } })
  expect(904)
  -- every listed doc completed, as in the recording
  for _, id in ipairs { "couchlua_test_bulk_a_1796181013_145592", "couchlua_test_bulk_b_1796181013_206049" } do
    wait_for(function() return call("GET", "/_replicator/" .. id)._replication_state == "completed" end, id .. " completed")
  end
  local list = expect(1039, { loose = loose })
  lu.assertEquals(#list.rows, 2)
end

function TestSuiteRecordings:test_replicate()
  make_db("couchlua_test_rsrc_d77904fe_9", numbered("doc%04d", 120))
  local res = expect(1166, { loose = { changes_pending = true } })
  lu.assertEquals(res.history[1].docs_written, 120)
  local jobs = expect(1177)
  lu.assertEquals(jobs.total_rows, 0)
end

local rc = lu.LuaUnit.run()
F:stop()
os.exit(rc)
