-- URLs: escaping of database names and document ids, query strings (which values CouchDB
-- reads as JSON, sorted keys), and credential redaction. What reaches the server is read
-- from the FAKE CouchDB's request log (tests/fakes/fake_couch.js), as raw bytes.
local src = os.getenv("COUCHLUA_SOURCE_DIR") or (arg and arg[0] or ""):match("^(.*)/tests/unit/[^/]*$") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path .. ";/usr/share/lua/5.4/?.lua"
local lu = require "luaunit"
local couch = require "couch"
local json = couch.json
local fake = require "fake"

local f = fake.start()
local srv = couch.connect(f.url)

-- the raw URL (path + query) of the last request the fake saw
local function last_url()
  local reqs = f:log().requests
  return reqs[#reqs].url
end

-- the query string the server received for a request with opts.query = q
local function sent_query(q)
  f:script("/db/_all_docs", { { status = 200, body = { total_rows = 0, offset = 0, rows = json.array {} } } })
  srv:request("GET", "/db/_all_docs", { query = q })
  return (last_url():match("^/db/_all_docs%??(.*)$"))
end

TestUrl = {}

function TestUrl:setUp() f:reset() end

-- ---- escaping ----

function TestUrl:test_escape_database_names()
  lu.assertEquals(couch.escape("a/b"), "a%2Fb")
  lu.assertEquals(couch.escape("+"), "%2B")
  lu.assertEquals(couch.escape("$"), "%24")
  lu.assertEquals(couch.escape("()"), "%28%29")
  lu.assertEquals(couch.escape("données"), "donn%C3%A9es")
  lu.assertEquals(couch.escape("a-b_c.d~e"), "a-b_c.d~e")
  lu.assertEquals(couch.escape("a b?c#d&e=f%g"), "a%20b%3Fc%23d%26e%3Df%25g")
  lu.assertEquals(couch.escape(""), "")
  lu.assertEquals(couch.escape("a\0b"), "a%00b")
end

function TestUrl:test_database_names_on_the_wire()
  for name, wire in pairs { ["a/b"] = "/a%2Fb", ["a+b"] = "/a%2Bb", ["a$b"] = "/a%24b",
                            ["a(b)"] = "/a%28b%29", ["données"] = "/donn%C3%A9es" } do
    f:reset()
    local db = srv:create_db(name)
    lu.assertEquals(f:requests()[1].url, wire)
    lu.assertEquals(f:requests()[1].method, "PUT")
    lu.assertEquals(db:info().db_name, name) -- the server decoded the same name
  end
end

function TestUrl:test_doc_path()
  lu.assertEquals(couch.doc_path("plain"), "plain")
  lu.assertEquals(couch.doc_path("_design/x"), "_design/x")
  lu.assertEquals(couch.doc_path("_local/x"), "_local/x")
  lu.assertEquals(couch.doc_path("a/b"), "a%2Fb")
  lu.assertEquals(couch.doc_path("_design/a/b"), "_design/a%2Fb")
  lu.assertEquals(couch.doc_path("_local/a/b"), "_local/a%2Fb")
  lu.assertEquals(couch.doc_path("_design/é x"), "_design/%C3%A9%20x")
  lu.assertEquals(couch.doc_path("_designer/x"), "_designer%2Fx")
  lu.assertEquals(couch.doc_path("x/_design/y"), "x%2F_design%2Fy")
  lu.assertEquals(couch.doc_path("a+b?c#d"), "a%2Bb%3Fc%23d")
end

function TestUrl:test_document_ids_on_the_wire()
  local db = srv:db("db")
  local cases = { { "a/b", "/db/a%2Fb" }, { "_design/x", "/db/_design/x" }, { "_local/x", "/db/_local/x" },
                  { "_design/a/b", "/db/_design/a%2Fb" }, { "é?#", "/db/%C3%A9%3F%23" } }
  for _, c in ipairs(cases) do
    f:reset()
    local res = db:put { _id = c[1], v = 1 }
    lu.assertEquals(res.id, c[1])
    lu.assertEquals(f:requests()[1].url, c[2])
    lu.assertEquals(db:get(c[1])._id, c[1])
    lu.assertEquals(f:requests()[2].url, c[2])
  end
end

-- ---- query strings ----

-- A JSON parameter that cannot be encoded (invalid UTF-8) is a json error before anything
-- is sent, and leaks nothing (the ASan build's leak check; found by tests/fuzz/fuzz_url).
function TestUrl:test_a_query_value_that_cannot_be_encoded_is_an_error()
  for _ = 1, 3 do
    local ok, err = pcall(sent_query, { key = "\255", limit = 1, skip = 0 })
    lu.assertFalse(ok)
    lu.assertEquals(err.kind, "json")
  end
end

-- a key is its bytes, a NUL included: it was cut at the NUL, so "key\0x" went out as the
-- JSON parameter "key" (found by tests/fuzz/fuzz_url.c)
function TestUrl:test_a_query_key_with_a_nul_is_sent_whole()
  lu.assertEquals(sent_query { ["key\0x"] = "v", key = "k" }, "key=%22k%22&key%00x=v")
end

function TestUrl:test_json_parameters_are_json_encoded()
  lu.assertEquals(sent_query { key = "abc" }, "key=%22abc%22")
  lu.assertEquals(sent_query { startkey = "a", endkey = "z" }, "endkey=%22z%22&startkey=%22a%22")
  lu.assertEquals(sent_query { start_key = "a", end_key = "z" }, "end_key=%22z%22&start_key=%22a%22")
  lu.assertEquals(sent_query { keys = { "a", "b" } }, "keys=%5B%22a%22%2C%22b%22%5D")
  lu.assertEquals(sent_query { key = { "a", 1 } }, "key=%5B%22a%22%2C1%5D")
  lu.assertEquals(sent_query { key = 5 }, "key=5")
  lu.assertEquals(sent_query { key = true }, "key=true")
  lu.assertEquals(sent_query { key = json.null }, "key=null")
  lu.assertEquals(sent_query { key = "" }, "key=%22%22")
  lu.assertEquals(sent_query { key = "a b&c=d\"e" }, "key=%22a%20b%26c%3Dd%5C%22e%22")
  lu.assertEquals(sent_query { key = "é" }, "key=%22%C3%A9%22")
  -- what the server decodes is the JSON text
  local reqs = f:log().requests
  lu.assertEquals(json.decode(reqs[#reqs].query.key), "é")
end

function TestUrl:test_other_parameters_are_sent_raw()
  lu.assertEquals(sent_query { include_docs = true }, "include_docs=true")
  lu.assertEquals(sent_query { descending = false }, "descending=false")
  lu.assertEquals(sent_query { limit = 10 }, "limit=10")
  lu.assertEquals(sent_query { skip = 0 }, "skip=0")
  lu.assertEquals(sent_query { heartbeat = 1.5 }, "heartbeat=1.5")
  lu.assertEquals(sent_query { stale = "ok" }, "stale=ok")
  lu.assertEquals(sent_query { rev = "1-abc" }, "rev=1-abc")
  lu.assertEquals(sent_query { since = "12-g1AAA_x" }, "since=12-g1AAA_x")
  lu.assertEquals(sent_query { filter = "ddoc/f" }, "filter=ddoc%2Ff")
  lu.assertEquals(sent_query { startkey_docid = "a/b", start_key_doc_id = "c" },
    "start_key_doc_id=c&startkey_docid=a%2Fb")
  lu.assertEquals(sent_query { ["odd key"] = "x y" }, "odd%20key=x%20y")
end

function TestUrl:test_keys_are_sorted()
  local q = sent_query { startkey = "a", limit = 10, include_docs = true, descending = false,
                         key = "k", endkey = "z", skip = 0, stale = "ok", keys = { "a", "b" }, rev = "1-abc" }
  lu.assertEquals(q, "descending=false&endkey=%22z%22&include_docs=true&key=%22k%22"
    .. "&keys=%5B%22a%22%2C%22b%22%5D&limit=10&rev=1-abc&skip=0&stale=ok&startkey=%22a%22")
end

function TestUrl:test_no_query_and_an_empty_query_add_nothing()
  lu.assertEquals(sent_query(nil), "")
  lu.assertEquals(last_url(), "/db/_all_docs")
  srv:request("GET", "/db/doc1", { query = {} })
  lu.assertEquals(last_url(), "/db/doc1")
end

function TestUrl:test_a_query_is_appended_to_a_path_that_has_one()
  srv:request("GET", "/db/doc1?revs=true", { query = { conflicts = true } })
  lu.assertEquals(last_url(), "/db/doc1?revs=true&conflicts=true")
end

function TestUrl:test_database_api_queries()
  local db = srv:db("db")
  db:get("doc1", { revs = true, conflicts = true })
  lu.assertEquals(last_url(), "/db/doc1?conflicts=true&revs=true")
  -- an unknown option is refused, not dropped (issue 10; test_option_checks.lua)
  local ok, err = pcall(db.get, db, "doc1", { bogus = "dropped" })
  lu.assertFalse(ok)
  lu.assertEquals(err.argument, "bogus")
  db:get("doc1", { open_revs = { "1-a", "2-b" } })
  lu.assertEquals(last_url(), "/db/doc1?open_revs=%5B%221-a%22%2C%222-b%22%5D")
end

-- ---- redaction ----

function TestUrl:test_redact_strips_userinfo()
  lu.assertEquals(couch.redact("http://user:pass@host:5984/db"), "http://host:5984/db")
  lu.assertEquals(couch.redact("https://user:pass@example.com/"), "https://example.com/")
  lu.assertEquals(couch.redact("https://user@host/x"), "https://host/x")
  lu.assertEquals(couch.redact("http://u:p%40ss@host/db?x=1"), "http://host/db?x=1")
  lu.assertEquals(couch.redact("http://u:p@ss@host/"), "http://host/") -- a raw @ in the password
  lu.assertEquals(couch.redact("http://user:pass@host"), "http://host")
  lu.assertEquals(couch.redact("http://user:pass@[::1]:5984/db"), "http://[::1]:5984/db")
  lu.assertEquals(couch.redact("user:pass@host:5984"), "host:5984")
end

function TestUrl:test_redact_leaves_urls_without_credentials_alone()
  lu.assertEquals(couch.redact("http://host:5984/db"), "http://host:5984/db")
  lu.assertEquals(couch.redact("http://host/db/a@b"), "http://host/db/a@b")
  lu.assertEquals(couch.redact("http://host/db?user=a@b"), "http://host/db?user=a@b")
  lu.assertEquals(couch.redact("http://host/#a@b"), "http://host/#a@b")
  lu.assertEquals(couch.redact(""), "")
end

function TestUrl:test_the_lua_half_gets_the_same_url_functions()
  local url = require "couch.url"
  lu.assertEquals(url.unescape("some%20one:p%40ss%3aw%2Frd%25"), "some one:p@ss:w/rd%")
  lu.assertEquals(url.unescape("100%"), "100%") -- a lone or broken escape stays as it is
  lu.assertEquals(url.unescape("%4"), "%4")
  lu.assertEquals(url.unescape("%zz%41"), "%zzA")
  lu.assertEquals(url.unescape(url.escape("a b/ü%")), "a b/ü%")
  lu.assertEquals(url.redact("user:pass@host:5984"), "host:5984") -- known to be a URL
  lu.assertEquals(url.redact_value("n1@127.0.0.1"), "n1@127.0.0.1") -- any string: not a URL
  lu.assertEquals(url.redact_value("http://u:p@host/db"), "http://host/db")
end

function TestUrl:test_a_server_url_never_keeps_credentials()
  local s = couch.connect("http://user:pass@127.0.0.1:5984/prefix/")
  lu.assertEquals(s.url, "http://127.0.0.1:5984/prefix")
  lu.assertEquals(srv:db("a/b").path, "/a%2Fb")
end

local rc = lu.LuaUnit.run()
f:stop()
os.exit(rc)
