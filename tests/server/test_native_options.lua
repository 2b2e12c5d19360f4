-- The native engine's options from issue 12: hook budgets (a hook that loops forever ends
-- the job with a clear error), the names CouchDB's replicator uses (since_seq,
-- winning_revs_only, create_target_params, use_bulk_get) and PouchDB's (checkpoint,
-- batches_limit). Each is checked as a user would: what ends up on the target, what the
-- job reports, what error it raises.
local lu = require "luaunit"
local couch = require "couch"
local ts = require "testserver"

local srv = ts.connect()

local seed = ts.seed

local function ids(db)
  local out = {}
  for _, row in ipairs(db:all_docs().rows) do out[#out + 1] = row.id end
  return out
end

local function usage_error(opts, argument)
  for _, f in ipairs { couch.replicate, couch.replication } do
    local ok, err = pcall(f, opts)
    lu.assertFalse(ok)
    lu.assertTrue(couch.is_error(err), tostring(err))
    lu.assertEquals(err.kind, "usage", tostring(err))
    lu.assertEquals(err.argument, argument, tostring(err))
  end
end

TestNativeOptions = {}

function TestNativeOptions:setUp()
  self.src = ts.fresh_db(srv, "osrc")
  self.tgt = srv:db(self.src.name .. "_target")
end

function TestNativeOptions:tearDown()
  pcall(self.tgt.delete, self.tgt)
  ts.cleanup()
end

--- hook_budget ---------------------------------------------------------------------

local function spin_on(id)
  return function(doc)
    if doc._id == id then while true do end end
    return doc
  end
end

-- A transform that never returns ends the job, under the default budget, with an error
-- naming the document and the hook; what earlier batches wrote stays on the target.
function TestNativeOptions:test_a_looping_transform_ends_the_job()
  seed(self.src, 200)
  local t0 = couch.now()
  local ok, err = pcall(couch.replicate, { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                           batch_size = 50, concurrency = 1, transform = spin_on("doc000120") })
  lu.assertFalse(ok, "the job must not succeed")
  lu.assertTrue(couch.now() - t0 < 60, "a looping hook held the job for " .. (couch.now() - t0) .. " s")
  lu.assertTrue(couch.is_error(err), tostring(err))
  lu.assertEquals(err.kind, "replication", tostring(err))
  lu.assertEquals(err.reason, "hook_budget", tostring(err))
  lu.assertEquals(err.id, "doc000120")
  lu.assertStrMatches(err.rev, "1%-.*")
  lu.assertEquals(err.hook, "transform")
  lu.assertStrContains(tostring(err), "doc000120")
  lu.assertStrContains(tostring(err), "transform")
  -- the two batches before the one that looped are there, nothing of it or after it
  local got = ids(self.tgt)
  lu.assertEquals(#got, 100)
  lu.assertEquals(got[1], "doc000001")
  lu.assertEquals(got[100], "doc000100")
end

-- The same for a filter and for on_error, with a budget of one's own.
function TestNativeOptions:test_filter_and_on_error_run_under_the_budget()
  seed(self.src, 20)
  local ok, err = pcall(couch.replicate, { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                           hook_budget = 100000, filter = spin_on("doc000005") })
  lu.assertFalse(ok)
  lu.assertEquals(err.reason, "hook_budget", tostring(err))
  lu.assertEquals(err.hook, "filter")
  lu.assertEquals(err.id, "doc000005")
  lu.assertEquals(err.limit, 100000)
  -- a document JSON cannot hold is a failure: on_error runs for it, and loops
  local fresh = srv:db(self.src.name .. "_e")
  ok, err = pcall(couch.replicate, { source = self.src, target = fresh, create_target = true, quiet = true,
    hook_budget = 100000,
    transform = function(doc) if doc._id == "doc000003" then doc.f = print end return doc end,
    on_error = function() while true do end end })
  pcall(fresh.delete, fresh)
  lu.assertFalse(ok)
  lu.assertEquals(err.reason, "hook_budget", tostring(err))
  lu.assertEquals(err.hook, "on_error")
  lu.assertEquals(err.id, "doc000003")
end

-- A budget that is big enough changes nothing; false turns it off; bad values are usage
-- errors.
function TestNativeOptions:test_a_budget_big_enough_changes_nothing()
  seed(self.src, 30)
  local function work(doc)
    local s = 0
    for i = 1, 1000 do s = s + i end
    doc.sum = s
    return doc
  end
  local stats = couch.replicate { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                  hook_budget = 1000000, transform = work }
  lu.assertEquals(stats.docs_written, 30)
  lu.assertEquals(stats.doc_write_failures, 0)
  lu.assertEquals(self.tgt:get("doc000017").sum, 500500)
  local off = srv:db(self.src.name .. "_off")
  stats = couch.replicate { source = self.src, target = off, create_target = true, quiet = true,
                            hook_budget = false, transform = work }
  pcall(off.delete, off)
  lu.assertEquals(stats.docs_written, 30)
  -- the same work over a budget too small for it fails
  local small = srv:db(self.src.name .. "_small")
  local ok, err = pcall(couch.replicate, { source = self.src, target = small, create_target = true, quiet = true,
                                           hook_budget = 1000, transform = work })
  pcall(small.delete, small)
  lu.assertFalse(ok)
  lu.assertEquals(err.reason, "hook_budget", tostring(err))
  usage_error({ source = self.src, target = self.tgt, hook_budget = true }, "hook_budget")
  usage_error({ source = self.src, target = self.tgt, hook_budget = 0 }, "hook_budget")
  usage_error({ source = self.src, target = self.tgt, hook_budget = "1e6" }, "hook_budget")
  usage_error({ source = self.src, target = self.tgt, hook_bugdet = 10 }, "hook_bugdet")
end

--- CouchDB's replicator's names ---------------------------------------------------------

-- The request lines of fn's run (couch.log at debug: one line per request).
local function requests(fn)
  local lines = {}
  couch.log { level = "debug", writer = function(_, line) lines[#lines + 1] = line end }
  local ok, err = pcall(fn)
  couch.log { level = "off", writer = false }
  if not ok then error(err, 0) end
  return lines
end

local function count(lines, pattern)
  local n = 0
  for _, l in ipairs(lines) do if l:find(pattern) then n = n + 1 end end
  return n
end

-- since_seq is CouchDB's name of since: the same start; both at once is a usage error.
function TestNativeOptions:test_since_seq_is_since()
  seed(self.src, 10)
  local seq = self.src:changes().last_seq
  seed(self.src, 5, 11)
  local stats = couch.replicate { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                  since_seq = seq }
  lu.assertEquals(stats.docs_written, 5)
  lu.assertEquals(ids(self.tgt)[1], "doc000011")
  usage_error({ source = self.src, target = self.tgt, since = 0, since_seq = seq }, "since_seq")
  usage_error({ source = self.src, target = self.tgt, sinceseq = seq }, "sinceseq")
end

-- winning_revs_only: a conflicted document arrives as its winner alone; it is another
-- replication (its own replication id), as in CouchDB.
function TestNativeOptions:test_winning_revs_only_copies_the_winner_alone()
  self.src:bulk_docs({ { _id = "c", _rev = "1-aaa", v = 1 }, { _id = "c", _rev = "1-bbb", v = 2 } },
                     { new_edits = false })
  seed(self.src, 3)
  local job = couch.replication { source = self.src, target = self.tgt, create_target = true, quiet = true,
                                  winning_revs_only = true }
  local stats = job:wait()
  lu.assertEquals(stats.docs_written, 4)
  local doc = self.tgt:get("c", { conflicts = true })
  lu.assertEquals(doc._rev, "1-bbb")
  lu.assertNil(doc._conflicts)
  local all = couch.replication { source = self.src, target = srv:db(self.tgt.name .. "_all"), create_target = true,
                                  quiet = true }
  all:wait()
  lu.assertEquals(#srv:db(self.tgt.name .. "_all"):get("c", { conflicts = true })._conflicts, 1)
  srv:db(self.tgt.name .. "_all"):delete()
  lu.assertNotEquals(job.rep_id, all.rep_id)
  usage_error({ source = self.src, target = self.tgt, winning_revs_only = "yes" }, "winning_revs_only")
end

-- create_target_params go with the target's creation (PUT /db?q=&n=&partitioned=).
function TestNativeOptions:test_create_target_params_are_sent_when_creating()
  seed(self.src, 3)
  local stats
  local lines = requests(function()
    stats = couch.replicate { source = self.src, target = self.tgt, create_target = true, quiet = true,
                              create_target_params = { q = 2, n = 1 } }
  end)
  lu.assertEquals(stats.docs_written, 3)
  local put
  for _, l in ipairs(lines) do if l:find("PUT", 1, true) and l:find(self.tgt.name .. "?", 1, true) then put = l end end
  lu.assertNotNil(put, "no PUT creating the target: " .. table.concat(lines, "\n"))
  lu.assertStrContains(put, "q=2")
  lu.assertStrContains(put, "n=1")
  usage_error({ source = self.src, target = self.tgt, create_target = true, create_target_params = { q = "2" } }, "q")
  usage_error({ source = self.src, target = self.tgt, create_target = true, create_target_params = { shards = 2 } },
              "shards")
  usage_error({ source = self.src, target = self.tgt, create_target_params = { q = 2 } }, "create_target_params")
end

-- use_bulk_get = false: one open_revs GET per document, even where the server has _bulk_get.
function TestNativeOptions:test_use_bulk_get_false_reads_with_open_revs()
  seed(self.src, 6)
  local stats
  local lines = requests(function()
    stats = couch.replicate { source = self.src, target = self.tgt, create_target = true, quiet = true,
                              use_bulk_get = false }
  end)
  lu.assertEquals(stats.docs_written, 6)
  lu.assertEquals(count(lines, "_bulk_get"), 0)
  lu.assertEquals(count(lines, "open_revs"), 6)
  lu.assertTrue(couch.compare(self.src, self.tgt).equal)
  -- the default asks _bulk_get (both servers under test have it)
  local fresh = srv:db(self.tgt.name .. "_b")
  lines = requests(function()
    couch.replicate { source = self.src, target = fresh, create_target = true, quiet = true }
  end)
  fresh:delete()
  lu.assertTrue(count(lines, "_bulk_get") >= 1)
  usage_error({ source = self.src, target = self.tgt, use_bulk_get = 0 }, "use_bulk_get")
end

--- PouchDB's names --------------------------------------------------------------------

-- The checkpoint document of a job on db, or nil.
local function local_doc(db, rep_id)
  local ok, doc = pcall(db.get, db, "_local/" .. rep_id)
  if ok then return doc end
  lu.assertEquals(doc.status, 404, tostring(doc))
  return nil
end

-- Run a job; returns its stats and replication id.
local function run(opts)
  local job = couch.replication(opts)
  return job:wait(), job.rep_id
end

-- checkpoint = "target" / "source": written on that side only, and a second run resumes
-- from it; false: none written, a second run reads everything again.
function TestNativeOptions:test_checkpoint_on_one_side_or_none()
  seed(self.src, 20)
  local total = 20
  for _, case in ipairs { { "target", self.tgt, self.src }, { "source", self.src, self.tgt } } do
    local mode, written, other = case[1], case[2], case[3]
    pcall(self.tgt.delete, self.tgt)
    local opts = { source = self.src, target = self.tgt, create_target = true, quiet = true, checkpoint = mode }
    local stats, id = run(opts)
    lu.assertEquals(stats.docs_written, total, mode)
    lu.assertNotNil(local_doc(written, id), mode .. ": no checkpoint on the " .. mode)
    lu.assertNil(local_doc(other, id), mode .. ": a checkpoint on the other side")
    seed(self.src, 5, mode == "target" and 101 or 201)
    total = total + 5
    stats = run(opts)
    lu.assertEquals(stats.docs_written, 5, mode)
    lu.assertEquals(stats.revisions_checked, 5, mode .. ": the second run did not resume from the checkpoint")
    lu.assertNil(local_doc(other, id), mode)
  end
  pcall(self.tgt.delete, self.tgt)
  local src = ts.fresh_db(srv, "osrc") -- one where no job of this pair checkpointed
  seed(src, 30)
  local opts = { source = src, target = self.tgt, create_target = true, quiet = true, checkpoint = false }
  local stats, id = run(opts)
  lu.assertEquals(stats.docs_written, 30)
  lu.assertNil(local_doc(src, id))
  lu.assertNil(local_doc(self.tgt, id))
  stats = run(opts)
  lu.assertEquals(stats.revisions_checked, 30, "without checkpoints a run starts from the beginning")
  lu.assertEquals(stats.docs_written, 0)
  -- true is the default: both sides
  stats, id = run { source = src, target = self.tgt, quiet = true, checkpoint = true }
  lu.assertNotNil(local_doc(src, id))
  lu.assertNotNil(local_doc(self.tgt, id))
  usage_error({ source = self.src, target = self.tgt, checkpoint = "both" }, "checkpoint")
  usage_error({ source = self.src, target = self.tgt, checkpoint = 1 }, "checkpoint")
  usage_error({ source = self.src, target = self.tgt, checkpoint = "target", use_checkpoints = false }, "checkpoint")
end

-- batches_limit: how many batches the reader reads ahead of busy workers.
function TestNativeOptions:test_batches_limit_bounds_the_read_ahead()
  seed(self.src, 200)
  local function read_ahead(limit)
    local target = srv:db(self.src.name .. "_q" .. limit)
    local changes, lines = nil, {}
    couch.log { level = "debug", writer = function(_, line) lines[#lines + 1] = line end }
    local ok, err = pcall(couch.replicate, { source = self.src, target = target, create_target = true, quiet = true,
      batch_size = 10, concurrency = 1, batches_limit = limit,
      transform = function(doc)
        if not changes then
          couch.sleep(0.5) -- the only worker is busy: the reader runs ahead meanwhile
          changes = count(lines, "_changes")
        end
        return doc
      end })
    couch.log { level = "off", writer = false }
    pcall(target.delete, target)
    lu.assertTrue(ok, tostring(err))
    return changes
  end
  local one, six = read_ahead(1), read_ahead(6)
  lu.assertTrue(one <= 3, "batches_limit = 1 read " .. one .. " pages ahead")
  lu.assertTrue(six >= 7, "batches_limit = 6 read only " .. six .. " pages ahead")
  usage_error({ source = self.src, target = self.tgt, batches_limit = 0 }, "batches_limit")
  usage_error({ source = self.src, target = self.tgt, batches_limit = "4" }, "batches_limit")
end

os.exit(lu.LuaUnit.run())
