-- _changes: one-shot reads with their parameters, and feeds that follow a database from
-- tasks and from the top level.
local lu = require "luaunit"
local couch = require "couch"
local ts = require "testserver"

local srv = ts.connect()

TestChanges = {}

function TestChanges:setUp()
  self.db = ts.fresh_db(srv, "changes")
  self.db:bulk_docs { { _id = "a", kind = "x" }, { _id = "b", kind = "y" }, { _id = "c", kind = "x" } }
end

function TestChanges:tearDown() ts.cleanup() end

function TestChanges:test_one_shot_with_docs_and_limit()
  local res = self.db:changes { include_docs = true }
  lu.assertEquals(#res.results, 3)
  lu.assertNotNil(res.last_seq)
  lu.assertNotNil(res.results[1].doc._id)
  local limited = self.db:changes { limit = 1 }
  lu.assertEquals(#limited.results, 1)
  -- since is opaque: the seq the server gave comes back unchanged
  local rest = self.db:changes { since = limited.results[1].seq }
  lu.assertEquals(#rest.results, 2)
end

function TestChanges:test_style_all_docs_lists_conflicting_leaves_and_deletions()
  self.db:bulk_docs({ { _id = "conf", _rev = "1-aaa" }, { _id = "conf", _rev = "1-bbb" } }, { new_edits = false })
  local a = self.db:get("a")
  self.db:delete_doc("a", a._rev)
  local res = self.db:changes { style = "all_docs" }
  local by_id = {}
  for _, r in ipairs(res.results) do by_id[r.id] = r end
  lu.assertEquals(#by_id.conf.changes, 2)
  lu.assertTrue(by_id.a.deleted)
end

function TestChanges:test_doc_ids_and_selector_filters()
  local res = self.db:changes { doc_ids = { "b", "c" } }
  local ids = {}
  for _, r in ipairs(res.results) do ids[#ids + 1] = r.id end
  table.sort(ids)
  lu.assertEquals(ids, { "b", "c" })
  if ts.is_pouchdb then
    local ok, err = pcall(self.db.changes, self.db, { selector = { kind = "x" } })
    lu.assertFalse(ok)
    lu.assertEquals(err.kind, "unsupported")
    print("note: pouchdb-server cannot filter _changes by selector; checked that we say so")
    return
  end
  res = self.db:changes { selector = { kind = "x" } }
  ids = {}
  for _, r in ipairs(res.results) do ids[#ids + 1] = r.id end
  table.sort(ids)
  lu.assertEquals(ids, { "a", "c" })
end

function TestChanges:test_doc_ids_with_selector_is_a_usage_error()
  local ok, err = pcall(self.db.changes, self.db, { doc_ids = { "a" }, selector = { kind = "x" } })
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "usage")
end

function TestChanges:test_feed_in_tasks_wakes_on_writes()
  local db = self.db
  local start = db:changes().last_seq
  local seen = {}
  local followers = {}
  for i = 1, 5 do
    followers[i] = couch.spawn(function()
      local n = 0
      for ch in db:changes_feed { since = start, poll = 5 } do
        n = n + 1
        seen[#seen + 1] = ch.id
        if n == 2 then break end
      end
      return n
    end)
  end
  couch.sleep(0.2)
  db:put { _id = "new1" }
  db:put { _id = "new2" }
  for i = 1, 5 do lu.assertEquals(followers[i]:wait(10), 2) end
  lu.assertEquals(#seen, 10)
end

function TestChanges:test_feed_enforces_its_own_deadline_when_nothing_happens()
  -- pouchdb-server ignores `timeout`; our own deadline must turn a quiet feed into a new
  -- round instead of a hang, and the feed keeps following
  local db = self.db
  local t = couch.spawn(function()
    for ch in db:changes_feed { since = "now", poll = 0.5, grace = 0.5 } do return ch.id end
  end)
  couch.sleep(1.6)
  lu.assertEquals(t:status(), "waiting")
  db:put { _id = "late" }
  lu.assertEquals(t:wait(10), "late")
end

-- feed:close() from another task ends the long-poll in flight: the feed's loop ends at
-- once, not when the poll times out (30 s) or after its retries.
function TestChanges:test_close_from_another_task_ends_the_long_poll_in_flight()
  for _, coalesce in ipairs { 0, 0.25 } do
    local feed_iter, feed, rows = nil, nil, 0
    local reader = couch.spawn(function()
      local iter, state, init, closing = self.db:changes_feed { since = "now", coalesce = coalesce }
      feed_iter, feed = iter, closing
      for _ in iter, state, init, closing do rows = rows + 1 end
      return "ended"
    end)
    couch.sleep(0.3) -- the reader is now inside its long-poll on a quiet database
    local t0 = couch.now()
    feed:close()
    lu.assertEquals(reader:wait(5), "ended")
    local took = couch.now() - t0
    lu.assertTrue(took < 1, ("the feed ended %.2f s after close() (coalesce %g)"):format(took, coalesce))
    lu.assertEquals(rows, 0)
    lu.assertNil(feed_iter()) -- a closed feed stays ended
  end
end

function TestChanges:test_feed_at_top_level_lets_tasks_run()
  local db = self.db
  couch.spawn(function() couch.sleep(0.1); db:put { _id = "from_task" } end)
  local feed_iter, feed = db:changes_feed { since = "now", poll = 5 }
  local ch = feed_iter()
  lu.assertEquals(ch.id, "from_task")
  feed:close()
  lu.assertNil(feed_iter())
  lu.assertStrContains(tostring(feed), db.name)
end

os.exit(lu.LuaUnit.run())
