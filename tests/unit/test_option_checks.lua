-- Every database, server and feed call checks its options' names and types before any
-- request: a typo is a `usage` error naming the option and the nearest known one, never
-- silently dropped (issue 10, section 3). No server is needed: nothing may be sent.
local src = os.getenv("COUCHLUA_SOURCE_DIR") or (arg and arg[0] or ""):match("^(.*)/tests/unit/[^/]*$") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path .. ";/usr/share/lua/5.4/?.lua"
local lu = require "luaunit"
local couch = require "couch"

-- port 9 (discard) on loopback: nothing listens, so a call that got past its checks fails
-- with a network error instead of the usage error these tests expect
local srv = couch.connect("http://127.0.0.1:9", { retries = 0, connect_timeout = 1 })
local db = srv:db("db")

local function usage(fn, argument, text)
  local ok, err = pcall(fn)
  lu.assertFalse(ok)
  lu.assertTrue(couch.is_error(err), tostring(err))
  lu.assertEquals(err.kind, "usage", tostring(err))
  lu.assertEquals(err.argument, argument, tostring(err))
  if text then lu.assertStrContains(err.message, text) end
  return err
end

TestOptionChecks = {}

function TestOptionChecks:test_typos_name_the_nearest_option()
  usage(function() return db:all_docs { include_doc = true } end, "include_doc",
    "unknown option of db:all_docs (did you mean 'include_docs'?)")
  usage(function() return db:all_docs_iter { page_sise = 10 } end, "page_sise", "did you mean 'page_size'?")
  usage(function() return db:get("a", { conflict = true }) end, "conflict", "did you mean 'conflicts'?")
  usage(function() return db:put({ _id = "a" }, { new_edit = false }) end, "new_edit", "did you mean 'new_edits'?")
  usage(function() return db:post({}, { bacth = "ok" }) end, "bacth", "db:post")
  usage(function() return db:bulk_docs({}, { newedits = false }) end, "newedits", "did you mean 'new_edits'?")
  usage(function() return db:bulk_get({}, { rev = true }) end, "rev", "did you mean 'revs'?")
  usage(function() return db:find({}, { feilds = { "_id" } }) end, "feilds", "did you mean 'fields'?")
  usage(function() return db:get_attachment("a", "f", { revs = "1-a" }) end, "revs", "did you mean 'rev'?")
  usage(function() return db:create { exists_ok = true } end, "exists_ok", "did you mean 'exist_ok'?")
  usage(function() return db:changes { include_doc = true } end, "include_doc", "db:changes")
  usage(function() return db:changes_feed { pol = 5 } end, "pol", "did you mean 'poll'?")
  usage(function() return srv:all_dbs { limt = 1 } end, "limt", "did you mean 'limit'?")
  usage(function() return srv:active_tasks { typ = "replication" } end, "typ", "did you mean 'type'?")
  usage(function() return srv:create_db("x", { partitoned = true }) end, "partitoned", "did you mean 'partitioned'?")
end

function TestOptionChecks:test_wrong_types_are_refused()
  usage(function() return db:changes { limit = "x" } end, "limit", "expected an integer, got string")
  usage(function() return db:all_docs { include_docs = "yes" } end, "include_docs", "expected a boolean")
  usage(function() return db:all_docs { keys = "a" } end, "keys", "expected a table")
  usage(function() return db:get("a", { rev = 2 }) end, "rev", "expected a string")
  usage(function() return db:changes_feed { poll = "long" } end, "poll", "expected a number")
  usage(function() return db:changes { doc_ids = "a" } end, "doc_ids", "expected a table")
  usage(function() return srv:all_dbs { descending = 1 } end, "descending", "expected a boolean")
end

-- Positional arguments of server calls are checked as well.
function TestOptionChecks:test_positional_arguments_are_checked()
  usage(function() return srv:uuids("3") end, "n", "expected an integer")
  usage(function() return srv:dbs_info("a") end, "keys", "expected a list of database names")
end

-- Options a feed takes and a one-shot read does not, and the other way round.
function TestOptionChecks:test_feed_and_read_options_differ()
  usage(function() return db:changes { poll = 5 } end, "poll", "db:changes")
  usage(function() return db:changes_feed { limit = 5 } end, "limit", "db:changes_feed")
end

-- Known options with the right types get past the checks (to the network, here).
function TestOptionChecks:test_correct_options_reach_the_network()
  for _, fn in ipairs {
    function() return db:all_docs { include_docs = true, limit = 2, startkey = "a", keys = { "a" } } end,
    function() return db:changes { since = "now", limit = 1, include_docs = true, request_timeout = 1 } end,
    function() return db:get("a", { open_revs = "all", revs = true }) end,
    function() return db:find({ a = 1 }, { fields = { "_id" }, limit = 1, use_index = "i" }) end,
    function() return srv:all_dbs { limit = 1 } end,
  } do
    local ok, err = pcall(fn)
    lu.assertFalse(ok)
    lu.assertEquals(err.kind, "network", tostring(err))
  end
end

os.exit(lu.LuaUnit.run())
