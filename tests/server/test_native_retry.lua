-- retry and back_off (issue 12, PouchDB's): a continuous job survives the server going
-- away and comes back to it. The job talks to the server under test through
-- tests/fakes/fault_proxy.js, whose `drop` mode stands for the server gone (restart,
-- network loss: every connection closed, the ones in flight too) and `unavailable` for
-- a server answering 503. What a user checks: paused(err) then active, the documents written
-- during the outage copied after it, the checkpoint never ahead of the target, a kill during
-- the outage resumed exactly, and a cancel during the backoff ending the job at once.
local lu = require "luaunit"
local couch = require "couch"
local ts = require "testserver"
local node = require "node_process"

local srv = ts.connect()

-- the proxy, in front of the server under test; its URL keeps the test URL's credentials
local port, pipe = node.start("fault_proxy.js", node.shell_quote(ts.url), "the fault proxy")
local _ = pipe -- held open: the proxy exits when this process does
local userinfo = ts.url:match("^https?://([^/@]*@)") or ""
local proxy_url = ("http://%s127.0.0.1:%d"):format(userinfo, port)
-- failures reach the job fast: the request layer retries once, briefly
local P = couch.connect(proxy_url, { retries = 1, backoff = 0.05, max_backoff = 0.1, timeout = 10 })
local control = couch.connect(proxy_url, { retries = 0, timeout = 10 })

local function faults(f, ...)
  for _, db in ipairs { ... } do
    control:request("PUT", "/_faults/" .. couch.escape(db.name), { body = { faults = f } })
  end
end

local seed = ts.seed

local wait_for = ts.wait_for

-- The events of a job as a list of names: "paused", "paused(err)", "active", "complete".
local function record(job)
  local log = { errors = {} }
  job:on("paused", function(err)
    log[#log + 1] = err == nil and "paused" or "paused(err)"
    if err then log.errors[#log.errors + 1] = err end
  end)
  job:on("active", function() log[#log + 1] = "active"; log.active_at = couch.now() end)
  job:on("complete", function() log[#log + 1] = "complete" end)
  function log.count(what)
    local n = 0
    for _, e in ipairs(log) do if e == what then n = n + 1 end end
    return n
  end
  return log
end

TestNativeRetry = {}

function TestNativeRetry:setUp()
  self.src = ts.fresh_db(srv, "rsrc")
  self.tgt = srv:db(self.src.name .. "_target")
end

function TestNativeRetry:tearDown()
  faults("", self.src, self.tgt)
  if self.job then -- stopped before its databases go, whatever the test did
    self.job:cancel()
    pcall(self.job.wait, self.job)
    self.job = nil
  end
  pcall(self.tgt.delete, self.tgt)
  ts.cleanup()
end

function TestNativeRetry:continuous(opts)
  opts.source, opts.target = P:db(self.src.name), P:db(self.tgt.name)
  opts.create_target, opts.quiet, opts.continuous = true, true, true
  opts.poll = opts.poll or 1
  self.job = couch.replication(opts)
  return self.job
end

-- The server goes away (and, in a second round, answers 503 for a while): the job says
-- paused(err), keeps trying with the backoff, and when the server is back says active,
-- copies what was written meanwhile and catches up again; the counters accumulate.
function TestNativeRetry:test_a_continuous_job_survives_the_server_going_away()
  seed(self.src, 20)
  local delays = {}
  local job = self:continuous { batch_size = 10,
                                back_off = function(d) delays[#delays + 1] = d; return 0.2 end }
  local log = record(job)
  wait_for(function() return log.count("paused") == 1 end, "caught up")
  local rounds = { { fault = "drop", kind = "network" }, { fault = "unavailable", kind = "http", status = 503 } }
  for round, r in ipairs(rounds) do
    faults(r.fault, self.src, self.tgt)
    wait_for(function() return log.count("paused(err)") == round end, "paused(err) after " .. r.fault)
    local err = log.errors[round]
    lu.assertTrue(couch.is_error(err), tostring(err))
    lu.assertEquals(err.kind, r.kind, tostring(err))
    if r.status then lu.assertEquals(err.status, r.status, tostring(err)) end
    seed(self.src, 10, 20 + round * 10 - 9) -- written while the job cannot reach the server
    local tried = #delays
    wait_for(function() return #delays >= tried + 2 end, "attempts during the outage")
    local back = couch.now()
    faults("", self.src, self.tgt)
    wait_for(function() return log.count("active") == round end, "active after " .. r.fault)
    print(("note: %s: the job resumed %.2f s after the server came back (back_off 0.2 s)"):format(
      r.fault, log.active_at - back))
    wait_for(function() return log.count("paused") == round + 1 end, "caught up after " .. r.fault)
    lu.assertEquals(self.tgt:info().doc_count, 20 + round * 10)
  end
  lu.assertEquals({ table.unpack(log) }, { "paused", "paused(err)", "active", "paused", "paused(err)", "active", "paused" })
  lu.assertEquals(delays[1], 0, "back_off gets 0 the first time")
  lu.assertEquals(delays[2], 0.2, "then the previous delay")
  job:cancel()
  local stats = job:wait()
  lu.assertEquals(stats.docs_written, 40, "the counters went on across the restarts")
  lu.assertEquals(log[#log], "complete")
  lu.assertTrue(couch.compare(self.src, self.tgt).equal)
end

-- A one-shot job does not retry unless asked: it fails at once with the real error (no
-- paused). With retry = true it waits the outage out and completes.
function TestNativeRetry:test_one_shot_fails_fast_unless_retry()
  seed(self.src, 10)
  faults("drop", self.src)
  local job = couch.replication { source = P:db(self.src.name), target = P:db(self.tgt.name), quiet = true }
  local log = record(job)
  local ok, err = pcall(job.wait, job)
  lu.assertFalse(ok)
  lu.assertEquals(err.kind, "network", tostring(err))
  lu.assertEquals(log.count("paused(err)"), 0)
  lu.assertEquals(job.state, "failed")

  faults("unavailable", self.src)
  job = couch.replication { source = P:db(self.src.name), target = P:db(self.tgt.name), quiet = true,
                            create_target = true, retry = true, back_off = function() return 0.1 end }
  self.job = job
  log = record(job)
  wait_for(function() return log.count("paused(err)") == 1 end, "paused(err)")
  faults("", self.src)
  local stats = job:wait()
  lu.assertEquals(stats.docs_written, 10)
  lu.assertEquals({ table.unpack(log) }, { "paused(err)", "active", "complete" })
end

-- A job started while the server is away waits for it, the target's creation included.
function TestNativeRetry:test_a_job_started_while_the_server_is_away()
  seed(self.src, 7)
  faults("drop", self.src, self.tgt)
  local job = self:continuous { back_off = function() return 0.1 end }
  local log = record(job)
  wait_for(function() return log.count("paused(err)") == 1 end, "paused(err)")
  faults("", self.src, self.tgt)
  wait_for(function() return log.count("paused") == 1 end, "caught up")
  lu.assertEquals({ table.unpack(log) }, { "paused(err)", "active", "paused" })
  lu.assertEquals(self.tgt:info().doc_count, 7)
end

-- The progress line says why the job waits and for how long (credentials left out).
function TestNativeRetry:test_the_progress_line_says_it_waits()
  faults("drop", self.src, self.tgt)
  local script, out = os.tmpname(), os.tmpname()
  local f = io.open(script, "w")
  f:write(([[
    local couch = require "couch"
    local P = couch.connect(%q, { retries = 0 })
    local job
    local calls = 0
    job = couch.replication { source = P:db(%q), target = P:db(%q), continuous = true,
      back_off = function() calls = calls + 1; if calls == 2 then job:cancel() end return 0.1 end }
    print(job:wait().docs_written)
  ]]):format(proxy_url, self.src.name, self.tgt.name))
  f:close()
  local ok = os.execute(("%s %s >%s 2>&1"):format(os.getenv("COUCHLUA") or "couchlua", script, out))
  local text = node.read_file(out)
  os.remove(script)
  os.remove(out)
  lu.assertTrue(ok, text)
  lu.assertStrContains(text, "waiting 0.1 s to retry after: couch: network")
  lu.assertStrContains(text, "cancelled")
  local password = ts.url:match("^https?://[^:/@]*:([^@/]*)@")
  if password then lu.assertNil(text:find(password, 1, true), "no credentials in the progress line") end
end

-- Not every failure is waited out: a missing database ends a retrying job with its error.
function TestNativeRetry:test_a_missing_database_is_not_retried()
  local job = couch.replication { source = P:db(self.src.name .. "_missing"), target = P:db(self.tgt.name),
                                  quiet = true, create_target = true, continuous = true }
  self.job = job
  local log = record(job)
  local ok, err = pcall(job.wait, job)
  lu.assertFalse(ok)
  lu.assertEquals(err.status, 404, tostring(err))
  lu.assertEquals(log.count("paused(err)"), 0)
  lu.assertEquals(job.state, "failed")
end

-- job:cancel() during a long backoff ends the job at once, as cancelled, with `complete`;
-- so does cancelling the job's task (what Ctrl-C and couch.timeout do).
function TestNativeRetry:test_cancel_during_the_backoff()
  for _, how in ipairs { "job:cancel()", "job.task:cancel()" } do
    seed(self.src, 5, _ * 10)
    local job = self:continuous { back_off = function() return 3600 end }
    local log = record(job)
    wait_for(function() return log.count("paused") == 1 end, "caught up")
    faults("drop", self.src, self.tgt)
    wait_for(function() return log.count("paused(err)") == 1 end, "paused(err)")
    if how == "job:cancel()" then job:cancel() else job.task:cancel() end
    local ok, res = pcall(couch.timeout, 30, function() return job:wait() end)
    faults("", self.src, self.tgt)
    if how == "job:cancel()" then
      lu.assertTrue(ok, tostring(res))
      lu.assertEquals(res.docs_written, 5)
    else
      lu.assertFalse(ok)
      lu.assertEquals(res.kind, "cancelled", tostring(res))
    end
    lu.assertEquals(job.state, "cancelled", how)
    lu.assertEquals(log[#log], "complete", how)
    self.job = nil
    self.tgt:delete()
  end
end

-- A back_off that raises or answers something that is not a delay ends the job clearly.
function TestNativeRetry:test_a_bad_back_off()
  local cases = {
    { fn = function() return "soon" end, says = "back_off hook returned a string" },
    { fn = function() return -1 end, says = "back_off hook returned -1" },
    { fn = function() error("no idea") end, says = "back_off hook failed: " },
  }
  for i, case in ipairs(cases) do
    seed(self.src, 1, i)
    local job = self:continuous { back_off = case.fn }
    local log = record(job)
    wait_for(function() return log.count("paused") == 1 end, "caught up")
    faults("drop", self.src, self.tgt)
    local ok, err = pcall(job.wait, job)
    faults("", self.src, self.tgt)
    lu.assertFalse(ok)
    lu.assertEquals(err.kind, "replication", tostring(err))
    lu.assertEquals(err.reason, "hook_failed", tostring(err))
    lu.assertEquals(err.hook, "back_off")
    lu.assertStrContains(tostring(err), case.says)
    self.job = nil
    self.tgt:delete()
  end
  local ok, err = pcall(couch.replication, { source = self.src, target = self.tgt, back_off = function() end })
  lu.assertFalse(ok)
  lu.assertEquals(err.argument, "back_off", tostring(err))
  ok, err = pcall(couch.replication, { source = self.src, target = self.tgt, continuous = true, retry = false,
                                       back_off = function() end })
  lu.assertFalse(ok)
  lu.assertEquals(err.argument, "back_off", tostring(err))
end

-- The target goes away in the middle of a copy: while the job waits, its checkpoint claims
-- nothing that is not on the target; killed then (kill -9, in a child process), the next
-- run resumes from that checkpoint and the copy ends equal.
function TestNativeRetry:test_checkpoint_never_ahead_and_a_kill_during_the_outage()
  local n = 3000
  seed(self.src, n)
  local marker = os.tmpname()
  local script = os.tmpname()
  local f = io.open(script, "w")
  f:write(([[
    local couch = require "couch"
    local P = couch.connect(%q, { retries = 1, backoff = 0.05, max_backoff = 0.1, timeout = 10 })
    local control = couch.connect(%q, { retries = 0 })
    local job = couch.replication { source = P:db(%q), target = P:db(%q), create_target = true, quiet = true,
      continuous = true, batch_size = 50, checkpoint_interval = 100, back_off = function() return 0.2 end }
    local cut = false
    job:on("change", function(info)
      local ckpt = info.checkpointed_source_seq -- (a fast server copies a third before the first one)
      local checkpointed = ckpt ~= nil and ckpt ~= couch.json.null and ckpt ~= 0 and ckpt ~= "0"
      if not cut and info.docs_written >= %d and checkpointed then
        cut = true -- the target goes away in the middle of the copy, after a checkpoint
        control:request("PUT", "/_faults/" .. couch.escape(%q), { body = { faults = "drop" } })
      end
    end)
    job:on("paused", function(err)
      if err then local m = io.open(%q, "w"); m:write(tostring(job:stats().docs_written)); m:close() end
    end)
    job:wait()
  ]]):format(proxy_url, proxy_url, self.src.name, self.tgt.name, n // 3, self.tgt.name, marker))
  f:close()
  local out = os.tmpname()
  local child = io.popen(("%s %s >%s 2>&1 & echo $!"):format(os.getenv("COUCHLUA") or "couchlua", script, out))
  local pid = child:read("l")
  child:close()
  wait_for(function() return node.read_file(marker) ~= "" end, "the child's job paused by the outage: "
    .. node.read_file(out))
  -- what the checkpoint claims is on the target (read straight from the server)
  local rep_id = couch.replication { source = P:db(self.src.name), target = P:db(self.tgt.name), quiet = true }
  rep_id:cancel()
  pcall(rep_id.wait, rep_id)
  local ckpt = self.src:get("_local/" .. rep_id.rep_id)
  lu.assertNotNil(ckpt, "a checkpoint was written before the outage")
  local on_target = {}
  for _, row in ipairs(self.tgt:all_docs().rows) do on_target[row.id] = true end
  local claimed = 0
  for _, row in ipairs(self.src:changes().results) do
    lu.assertTrue(on_target[row.id], ("the checkpoint claims %s, which is not on the target"):format(row.id))
    claimed = claimed + 1
    if couch.json.encode(row.seq) == couch.json.encode(ckpt.source_last_seq) then break end
  end
  lu.assertTrue(claimed < n, "the outage came before the end")
  os.execute("kill -9 " .. pid)
  faults("", self.src, self.tgt)
  local stats = couch.replicate { source = P:db(self.src.name), target = P:db(self.tgt.name), quiet = true }
  lu.assertTrue(stats.docs_read <= n - claimed, ("resumed from the checkpoint: read %d, %d were claimed"):format(
    stats.docs_read, claimed))
  lu.assertEquals(self.tgt:info().doc_count, n)
  lu.assertTrue(couch.compare(self.src, self.tgt).equal)
  print(("note: %d documents, the target dropped after %s written, killed while waiting; the checkpoint "
    .. "claimed %d, the resumed run read %d"):format(n, node.read_file(marker), claimed, stats.docs_read))
  for _, p in ipairs { script, marker, out } do os.remove(p) end
end

os.exit(lu.LuaUnit.run())
