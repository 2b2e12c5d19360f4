-- The native engine's options from issue 12: hook budgets (a hook that loops forever ends
-- the job with a clear error), the names CouchDB's replicator uses (since_seq,
-- winning_revs_only, create_target_params, use_bulk_get) and PouchDB's (checkpoint,
-- batches_limit). Each is checked as a user would: what ends up on the target, what the
-- job reports, what error it raises.
local lu = require "luaunit"
local couch = require "couch"
local ts = require "testserver"

local srv = ts.connect()

local function seed(db, n, first)
  first = first or 1
  local docs = {}
  for i = first, first + n - 1 do docs[#docs + 1] = { _id = ("doc%06d"):format(i), n = i } end
  for i = 1, #docs, 1000 do db:bulk_docs({ table.unpack(docs, i, math.min(i + 999, #docs)) }) end
end

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

os.exit(lu.LuaUnit.run())
