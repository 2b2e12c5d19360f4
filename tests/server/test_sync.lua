-- couch.sync(a, b, opts): both directions of a replication as one job (PouchDB's sync).
-- Checked as a user would: both databases hold every revision of the other afterwards
-- (couch.compare: every leaf, conflicts included), with writers busy on both sides while
-- it runs; one set of events; one cancel; a failing direction ends the whole sync.
local lu = require "luaunit"
local couch = require "couch"
local ts = require "testserver"

local srv = ts.connect()
local COUCHLUA = arg[-1] or "couchlua"

local function seed(db, prefix, n)
  local docs = {}
  for i = 1, n do docs[i] = { _id = ("%s%04d"):format(prefix, i), n = i } end
  db:bulk_docs(docs)
end

local function count(db) return db:info().doc_count end

-- The conflict-aware picture of a document: its winning rev and its sorted conflicts.
local function tree(db, id)
  local d = db:get(id, { conflicts = true })
  local c = d._conflicts or {}
  table.sort(c)
  return d._rev .. " | " .. table.concat(c, ",")
end

TestSync = {}

function TestSync:setUp()
  self.a = ts.fresh_db(srv, "sync_a")
  self.b = ts.fresh_db(srv, "sync_b")
end

function TestSync:tearDown() ts.cleanup() end

-- One-shot: each side gets the other's documents; wait() gives both directions' stats.
function TestSync:test_one_shot_sync_copies_both_ways()
  seed(self.a, "a", 30)
  seed(self.b, "b", 20)
  local job = couch.sync(self.a, self.b, { quiet = true })
  local stats = job:wait()
  lu.assertEquals(stats.push.docs_written, 30)
  lu.assertEquals(stats.pull.docs_written, 20)
  lu.assertEquals(job.state, "completed")
  lu.assertEquals(count(self.a), 50)
  lu.assertEquals(count(self.b), 50)
  lu.assertTrue(couch.compare(self.a, self.b).equal)
  -- again: both checkpoints say everything is there
  local again = couch.sync(self.a, self.b, { quiet = true }):wait()
  lu.assertEquals(again.push.docs_written + again.pull.docs_written, 0)
end

-- What one side already got from the other is not written back and counted again: b holds
-- its own 20 documents, then a's 30 (an earlier one-way copy). The pull reads all 50 from
-- b's changes; a already has 30 of them. (The engine skips _revs_diff while nearly
-- everything is missing, as into an empty target; in a sync it must not: b's first 20 were
-- all missing, and the 30 echoes after them were written again and counted: 35 or more.)
function TestSync:test_echoes_are_not_written_again()
  seed(self.b, "b", 20)
  seed(self.a, "a", 30)
  couch.replicate { source = self.a, target = self.b, quiet = true, checkpoint = false }
  local stats = couch.sync(self.a, self.b, { quiet = true, batch_size = 5, concurrency = 1 }):wait()
  lu.assertEquals(stats.pull.docs_written, 20)
  lu.assertEquals(stats.push.docs_written, 0)
  lu.assertEquals(stats.pull.missing_revisions_found, 20)
  lu.assertTrue(couch.compare(self.a, self.b).equal)
end

-- The same document edited on both sides becomes the same conflicted document on both,
-- with the same winner: CouchDB's deterministic choice, made from the same leaves.
function TestSync:test_edits_on_both_sides_become_the_same_conflict()
  local rev = self.a:put { _id = "shared", v = 0 }.rev
  couch.sync(self.a, self.b, { quiet = true }):wait()
  self.a:put { _id = "shared", _rev = rev, v = "from a" }
  self.b:put { _id = "shared", _rev = rev, v = "from b" }
  couch.sync(self.a, self.b, { quiet = true }):wait()
  lu.assertEquals(tree(self.a, "shared"), tree(self.b, "shared"))
  lu.assertEquals(#self.a:get("shared", { conflicts = true })._conflicts, 1)
  lu.assertEquals(self.a:get("shared").v, self.b:get("shared").v)
end

-- Continuous, with writers on both sides creating, updating (conflicts) and deleting while
-- it runs: once the writers stop and the sync says it is caught up, both hold the same
-- revisions of everything.
function TestSync:test_continuous_sync_converges_under_concurrent_writes()
  for _, db in ipairs { self.a, self.b } do
    local docs = {}
    for i = 1, 10 do docs[i] = { _id = ("shared%02d"):format(i), v = 0 } end
    db:bulk_docs(docs)
  end
  local paused_now, events = false, { change = 0, paused = 0, active = 0 }
  local idle = couch.cond()
  local job = couch.sync(self.a, self.b, { continuous = true, poll = 1, quiet = true, batch_size = 20 })
  job:on("change", function(info, direction)
    lu.assertTrue(direction == "push" or direction == "pull")
    lu.assertEquals(type(info.docs_written), "number")
    events.change = events.change + 1
  end)
  job:on("paused", function(err)
    lu.assertNil(err)
    events.paused = events.paused + 1
    paused_now = true
    idle:broadcast()
  end)
  job:on("active", function()
    events.active = events.active + 1
    paused_now = false
  end)

  local function writer(db, side)
    return couch.spawn("writer " .. side, function()
      for round = 1, 15 do
        local docs = {}
        for i = 1, 8 do docs[i] = { _id = ("%s_r%02d_%d"):format(side, round, i), round = round } end
        db:bulk_docs(docs)
        -- an edit of a shared document on this side: a conflict once the other side's
        -- edit of the same revision arrives
        -- (a 409 when the sync just wrote a child of the revision read: read it again)
        local id = ("shared%02d"):format(round % 10 + 1)
        repeat
          local ok, err = pcall(db.put, db, { _id = id, _rev = db:get(id)._rev, v = side .. round })
          if not ok and not (couch.is_error(err) and err.status == 409) then error(err, 0) end
        until ok
        if round % 5 == 0 then
          local d = db:get(("%s_r%02d_1"):format(side, round))
          db:delete_doc(d._id, d._rev)
        end
        couch.sleep(0.02)
      end
    end)
  end
  couch.gather(writer(self.a, "a"), writer(self.b, "b"))

  -- caught up after the last write, and equal: a pause can come between a pull that
  -- wrote to a and the push that then has something to send, so look again until equal
  local deadline, report = couch.now() + 60, nil
  repeat
    while not paused_now do
      lu.assertTrue(couch.now() < deadline, "the sync never said it was caught up")
      idle:wait(1)
    end
    report = couch.compare(self.a, self.b)
    if not report.equal then idle:wait(1) end
  until report.equal or couch.now() > deadline
  lu.assertTrue(report.equal, tostring(report))
  job:cancel()
  local stats = job:wait()
  lu.assertEquals(job.state, "cancelled")
  lu.assertEquals(count(self.a), count(self.b))
  lu.assertEquals(count(self.a), 10 + 2 * (15 * 8 - 3))
  for i = 1, 10 do
    local id = ("shared%02d"):format(i)
    lu.assertEquals(tree(self.a, id), tree(self.b, id), id)
  end
  lu.assertTrue(stats.push.docs_written > 0 and stats.pull.docs_written > 0)
  lu.assertTrue(events.change > 0 and events.paused > 0)
end

-- A failing direction (pulling from a database that does not exist) ends the sync: the
-- error event says which direction, the other direction is cancelled, wait() raises.
function TestSync:test_a_failing_direction_ends_the_sync()
  seed(self.a, "a", 5)
  local missing = srv:db(self.a.name .. "_missing")
  local job = couch.sync(self.a, missing, { quiet = true, continuous = true, retry = false })
  local seen = {}
  job:on("error", function(err, direction) seen[#seen + 1] = direction .. ":" .. err.kind end)
  local ok, err = pcall(job.wait, job)
  lu.assertFalse(ok)
  lu.assertTrue(couch.is_error(err), tostring(err))
  lu.assertEquals(#seen, 1, table.concat(seen, " "))
  lu.assertEquals(job.state, "failed")
  lu.assertTrue(job.push.state ~= "running" and job.pull.state ~= "running")
end

-- cancel() stops both directions; complete fires once with both stats.
function TestSync:test_cancel_stops_both_and_completes_once()
  seed(self.a, "a", 5)
  local completes = {}
  local job = couch.sync(self.a, self.b, { continuous = true, poll = 1, quiet = true })
  job:on("complete", function(info) completes[#completes + 1] = info end)
  while job:stats().push.docs_written < 5 do couch.sleep(0.05) end
  job:cancel()
  job:wait()
  lu.assertEquals(job.state, "cancelled")
  lu.assertEquals(#completes, 1)
  lu.assertEquals(completes[1].push.docs_written, 5)
  lu.assertEquals(count(self.b), 5)
end

-- Options for one direction only: a filter on the push.
function TestSync:test_push_and_pull_options()
  seed(self.a, "a", 10)
  seed(self.b, "b", 4)
  local stats = couch.sync(self.a, self.b, { quiet = true,
    push = { filter = function(doc) return doc.n % 2 == 0 end } }):wait()
  lu.assertEquals(stats.push.docs_written, 5)
  lu.assertEquals(stats.pull.docs_written, 4)
  lu.assertEquals(count(self.b), 9)
  lu.assertEquals(count(self.a), 14)
end

function TestSync:test_bad_arguments_are_usage_errors()
  local function usage(argument, ...)
    local ok, err = pcall(couch.sync, ...)
    lu.assertFalse(ok)
    lu.assertTrue(couch.is_error(err), tostring(err))
    lu.assertEquals(err.kind, "usage", tostring(err))
    lu.assertEquals(err.argument, argument, tostring(err))
    return err
  end
  usage("b", self.a)
  usage("source", self.a, self.b, { source = self.a })
  local err = usage("continous", self.a, self.b, { continous = true })
  lu.assertStrContains(err.message, "did you mean 'continuous'")
  lu.assertStrContains(err.message, "couch.sync")
  usage("push", self.a, self.b, { push = true })
  local job = couch.sync(self.a, self.b, { quiet = true })
  local ok, e = pcall(job.on, job, "chnage", function() end)
  lu.assertFalse(ok)
  lu.assertEquals(e.kind, "usage")
  lu.assertStrContains(e.message, "did you mean 'change'")
  job:wait()
end

-- A script that starts a sync in a task and ends: the command runs the loop, the sync
-- completes, and the script's handlers ran.
function TestSync:test_a_script_that_ends_lets_the_sync_finish()
  seed(self.a, "a", 12)
  seed(self.b, "b", 3)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(([[
local couch = require "couch"
local srv = couch.connect(%q)
couch.spawn(function()
  couch.sync(srv:db(%q), srv:db(%q), { quiet = true })
    :on("complete", function(s) print("complete", s.push.docs_written, s.pull.docs_written) end)
end)
]]):format(ts.url, self.a.name, self.b.name))
  f:close()
  local p = io.popen(("%q %q 2>&1"):format(COUCHLUA, script))
  local out = p:read("a")
  local ok = p:close()
  os.remove(script)
  lu.assertTrue(ok, out)
  lu.assertStrContains(out, "complete\t12\t3")
  lu.assertEquals(count(self.a), 15)
  lu.assertEquals(count(self.b), 15)
end

os.exit(lu.LuaUnit.run())
