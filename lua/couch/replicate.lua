-- The native replication engine: the CouchDB replication protocol run by couchlua itself.
--   changes (style=all_docs) -> revs_diff -> _bulk_get (revs, latest, attachments)
--   -> _bulk_docs new_edits=false -> _local checkpoint on both sides
-- The engine is C (src/replicate/, see job.h): a reader task fills a bounded queue of
-- batches; `concurrency` workers move them; the checkpoint only ever moves to the end of
-- the longest run of finished batches, so a crash or kill at any point resumes without
-- losing or rewriting anything. Without hooks, each document travels as the exact bytes
-- the source sent. This file checks the options into the job's struct and runs the
-- user's functions: the hooks, progress, back_off and the event handlers (job:on,
-- src/replicate/events.c), each under the hook budget.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  local json = couch.json
  local redact = require("couch.redact")

  local usage = I.usage -- usage(argument, why): a `usage` error naming it

  local unescape = require("couch.url").unescape
  local lists = require("couch.lists")(couch) -- list fields as JSON arrays, as srv:request sends them

  -- A database object, or a URL whose last path segment is the database. A bare name is a
  -- database on the other endpoint's server (as in a replication document); `other` is
  -- that endpoint as given.
  local function as_db(x, arg, conn_opts, other)
    if getmetatable(x) == I.Database then return x end
    if type(x) == "string" and x:match("^https?://") then
      local base, name = x:match("^(https?://.-)/([^/]+)/?$")
      if not name then usage(arg, "a URL must end with the database name") end
      return couch.connect(base, conn_opts):db(unescape(name))
    end
    if type(x) == "string" and x:match("^[a-z][a-z0-9_$()+/-]*$") then -- CouchDB's rule for names
      local peer = getmetatable(other) == I.Database and other
        or (type(other) == "string" and other:match("^https?://") and as_db(other, arg == "source" and "target" or "source", nil))
      if peer then return peer.server:db(x) end
      usage(arg, "a bare database name needs the other endpoint to be a database object or URL (its server is used)")
    end
    usage(arg, "expected a database object (srv:db(name)), a database URL, or a name on the other endpoint's server")
  end

  -- The identity of an endpoint: no scheme, no credentials, so a password change or a
  -- switch to https does not start over from zero.
  local function identity(db)
    return redact.url(db.server.url):gsub("^%a[%w+.-]*://", "") .. "/" .. db.name
  end

  -- The identity of a client-side hook, for the replication id, as CouchDB puts a filter's
  -- source there: the function's own source text (debug.getinfo: the lines it spans in its
  -- file, or its part of a string chunk) and the values of its upvalues (numbers, strings,
  -- booleans, tables as sorted JSON, functions by their own identity). string.dump is not
  -- the identity: its bytes change with the Lua build (a job would start over after an
  -- upgrade) and are the same for a closure whatever its upvalues hold. Only where the source
  -- cannot be read (a function typed at the REPL, stripped bytecode) the stripped dump stands
  -- in for it; a C function needs an explicit `replication_id`.
  local function source_text(info)
    local src = info.source or ""
    local lines
    if src:sub(1, 1) == "@" then
      local f = io.open(src:sub(2), "r") -- read each time: the file may have been edited
      if not f then return nil end
      lines = {}
      for line in f:lines() do lines[#lines + 1] = line end
      f:close()
    elseif src:sub(1, 1) == "=" then
      return nil
    else
      lines = {}
      for line in (src .. "\n"):gmatch("(.-)\r?\n") do lines[#lines + 1] = line end
    end
    if info.linedefined <= 0 or info.lastlinedefined > #lines then return nil end
    return table.concat(lines, "\n", info.linedefined, info.lastlinedefined)
  end

  local JSON_ARRAY_MT, JSON_OBJECT_MT = getmetatable(json.array {}), getmetatable(json.object {})
  local function hook_identity(f, arg, depth, seen)
    local info = debug.getinfo(f, "S")
    if info.what == "C" then usage(arg, "a C function has no source to identify it by: give a 'replication_id'") end
    -- without readable source (the REPL's "=stdin", stripped bytecode) the stripped dump:
    -- stable for a given Lua build, so a Lua upgrade copies again, never resumes wrongly
    local text = source_text(info) or ("dump:" .. string.dump(f, true))
    local parts = { text }
    for i = 1, 255 do
      local name, v = debug.getupvalue(f, i)
      if not name then break end
      local t = type(v)
      local val
      if t == "number" or t == "boolean" or t == "string" then val = t .. ":" .. tostring(v)
      elseif t == "nil" then val = "nil"
      elseif t == "function" then
        if seen[v] or depth > 4 then val = "function"
        else seen[v] = true; val = "function:" .. hook_identity(v, arg, depth + 1, seen) end
      elseif t == "table" and v ~= couch and v ~= json and v ~= _G
          and (not getmetatable(v) or getmetatable(v) == JSON_ARRAY_MT or getmetatable(v) == JSON_OBJECT_MT) then
        local ok, text = pcall(json.encode, v, { sort_keys = true })
        val = ok and #text <= 65536 and ("table:" .. text) or "table"
      else
        val = t -- modules, objects, userdata: what they are, not where they live
      end
      parts[#parts + 1] = name .. "=" .. val
    end
    return I.md5_hex(table.concat(parts, "\0"))
  end

  local SPEC = {
    source = "string|table", target = "string|table", source_options = "table", target_options = "table",
    doc_ids = "table", selector = "table", filter = "string|function", query_params = "table", since = "any",
    continuous = "boolean", create_target = "boolean", batch_size = "integer", concurrency = "integer",
    checkpoint_interval = "number", use_checkpoints = "boolean", attachments = "boolean",
    transform = "function", on_error = "function", progress = "function|boolean", quiet = "boolean",
    new_revisions = "boolean", replication_id = "string", poll = "number", name = "string",
    max_batch_bytes = "integer", hook_budget = "integer|boolean",
    -- CouchDB's replicator's names
    since_seq = "any", winning_revs_only = "boolean", create_target_params = "table", use_bulk_get = "boolean",
    -- PouchDB's
    checkpoint = "boolean|string", batches_limit = "integer", retry = "boolean", back_off = "function",
  }
  local CREATE_TARGET_SPEC = { q = "integer", n = "integer", partitioned = "boolean" }

  local function check(opts, what)
    if type(opts) ~= "table" then usage("opts", "expected a table of options") end
    I.check_options(opts, what, SPEC)
    if opts.source == nil then usage("source", "is required") end
    if opts.target == nil then usage("target", "is required") end
    if opts.doc_ids and (opts.selector or opts.filter) then
      usage("doc_ids", "cannot be combined with " .. (opts.selector and "'selector'" or "'filter'"))
    end
    if opts.selector and type(opts.filter) == "string" then usage("selector", "cannot be combined with a server-side 'filter'") end
    local cp = opts.checkpoint
    if type(cp) == "string" and cp ~= "source" and cp ~= "target" then
      usage("checkpoint", ("expected true, false, \"source\" or \"target\", got %q"):format(cp))
    end
    if opts.use_checkpoints == false and cp ~= nil and cp ~= false then
      usage("checkpoint", "contradicts use_checkpoints = false (checkpoint = false is the same)")
    end
    for _, k in ipairs { "batch_size", "concurrency", "batches_limit" } do
      if opts[k] and opts[k] < 1 then usage(k, "expected a whole number >= 1") end
    end
    local ci = opts.checkpoint_interval
    if ci and ci < 100 then
      usage("checkpoint_interval", ("is in milliseconds, as in replication documents: %s ms is almost surely "
        .. "seconds by mistake (use %d for %s s)"):format(ci, math.floor(ci * 1000), ci))
    end
    if opts.max_batch_bytes and opts.max_batch_bytes < 1024 then usage("max_batch_bytes", "expected at least 1024") end
    if opts.since ~= nil and opts.since_seq ~= nil then
      usage("since_seq", "is CouchDB's name of 'since': give one of them")
    end
    if opts.create_target_params then
      if not opts.create_target then usage("create_target_params", "needs create_target = true") end
      I.check_options(opts.create_target_params, "create_target_params", CREATE_TARGET_SPEC)
    end
    local hb = opts.hook_budget
    if hb == true or (type(hb) == "number" and hb < 1) then
      usage("hook_budget", "expected a number of instructions >= 1, or false for none")
    end
    if opts.back_off and opts.retry == false then usage("back_off", "has no use with retry = false") end
    if opts.back_off and opts.retry == nil and not opts.continuous then
      usage("back_off", "needs retry: a one-shot job fails at its first error unless retry = true")
    end
  end

  -- Instructions a hook call may run (I.budget_call): a hook that loops forever ends
  -- the job instead of hanging it. false: no budget.
  local DEFAULT_HOOK_BUDGET = 100000000
  local function hook_budget(opts)
    local hb = opts.hook_budget
    if hb == false then return nil end
    if hb == nil then return DEFAULT_HOOK_BUDGET end
    return math.tointeger(hb) or math.maxinteger
  end

  ---------------------------------------------------------------------------
  -- The job is a C object (src/replicate/job.c): its options, counters, seqs, pipeline
  -- and checkpoint state live in a struct; its run and the protocol steps are C (run.c,
  -- reader.c, worker.c, batch.c, checkpoint.c, restub.c). What stays here is what is the
  -- user's: the option checks above, and the runners below, which run the user's hooks
  -- (filter, transform, on_error, new_revisions, progress, back_off, the event handlers)
  -- when the C steps call them. The runners never
  -- hold the job (it is their first argument), so the job's refs make no cycle.

  local running = setmetatable({}, { __mode = "k" })

  --- The user's hooks ----------------------------------------------------------

  -- CouchDB's winner among leaves: not deleted first, then the longer history, then the
  -- greater rev.
  local function beats(a, b)
    if a.deleted ~= b.deleted then return not a.deleted end
    local pa, pb = tonumber(a.rev:match("^(%d+)-")) or 0, tonumber(b.rev:match("^(%d+)-")) or 0
    if pa ~= pb then return pa > pb end
    return a.rev > b.rev
  end

  -- new_revisions writes one new edit per document, from its winning revision: posting
  -- every leaf let a losing branch win on the target and reported the others as failed.
  local function winners_only(job, docs)
    local best = {}
    for _, d in ipairs(docs) do
      if d.json and type(d.rev) == "string" then
        local b = best[d.id]
        if not b or beats(d, b) then best[d.id] = d end
      end
    end
    local out, skipped = {}, 0
    for _, d in ipairs(docs) do
      if not d.json or type(d.rev) ~= "string" or best[d.id] == d then out[#out + 1] = d
      else skipped = skipped + 1 end
    end
    if skipped > 0 then job:_skipped(skipped) end
    return out
  end

  -- Every function of the user's the job calls (hooks, progress, back_off, event handlers)
  -- runs here, under the hook budget: its error is a `replication` error saying what failed
  -- (`what`, and `where`: " on document ..." or ""), with `fields` (a cancel passes through
  -- as it is); one that ran past its instruction budget says so (reason hook_budget).
  local function run_hook(what, where, fields, fn, budget, ...)
    local ok, res
    if budget then ok, res = pcall(I.budget_call, budget, fn, ...)
    else ok, res = pcall(fn, ...) end
    if ok then return res end
    if couch.is_error(res) and res.kind == "cancelled" then error(res, 0) end
    if couch.is_error(res) and res.kind == "budget" then
      fields.limit, fields.reason = budget, "hook_budget"
      error(couch.error("replication", ("%s ran past its budget of %d instructions%s "
        .. "(a loop that never ends? raise 'hook_budget', or false for none)"):format(what, budget, where), fields), 0)
    end
    fields.reason = "hook_failed"
    error(couch.error("replication", ("%s failed%s: %s"):format(what, where, tostring(res)), fields), 0)
  end

  -- A document hook's error names the document it failed on.
  local function call_hook(name, fn, budget, d, ...)
    return run_hook(("the %s hook"):format(name), (" on document '%s' (%s)"):format(tostring(d.id), tostring(d.rev)),
      { id = d.id, rev = d.rev, hook = name }, fn, budget, ...)
  end

  -- retry's delays (PouchDB's back_off_function, in seconds as couch.sleep): 1 s, then
  -- doubling, at most a minute (PouchDB goes to 10 minutes; a server that is back should
  -- not wait that long for its clients, and one attempt a minute costs it nothing).
  local function default_back_off(previous)
    if previous <= 0 then return 1 end
    return math.min(previous * 2, 60)
  end

  --- Progress ---------------------------------------------------------------

  local progress_reporter = require("couch.progress")(couch)

  local function reporter(opts, source_name, target_name, budget)
    local report = progress_reporter(opts, function(job)
      run_hook("the progress hook", "", { hook = "progress" }, opts.progress, budget, job:stats())
    end, function(final, job)
      local s = job:stats()
      local rate = s.docs_written / math.max(job:_elapsed(), 1e-6)
      local pending = tonumber(s.changes_pending)
      local eta = pending and rate > 0 and (" ETA %ds"):format(math.ceil(pending / rate)) or ""
      return ("replicate %s -> %s: %d written, %d failed, %d/s%s"):format(
        source_name, target_name, s.docs_written, s.doc_write_failures, math.floor(rate),
        final and (" " .. final) or eta)
    end)
    return function(job, final) return report(final, job) end
  end

  -- The runners the C steps call (job.h: the job's `hooks` ref), over the options only.
  local function runners(opts, hooks, source, target)
    local R = {}
    local filter = type(opts.filter) == "function" and opts.filter or nil
    local transform, on_error, new_revisions = opts.transform, opts.on_error, opts.new_revisions
    local budget = hook_budget(opts)

    -- A refused revision: counted and kept by the job; on_error gets the document (a
    -- revision that could not be read has no body: the hook gets what names it).
    -- A document the target refused as forbidden / unauthorized (validate_doc_update) is
    -- also `denied` (PouchDB's event).
    function R.failed(job, d, err)
      local e = job:_failure(d, err)
      local denied = (e.error == "forbidden" or e.error == "unauthorized") and job:_handlers("denied")
      if not (on_error or denied) then return end
      local doc = d.doc or (d.json and json.decode(d.json)) or { _id = d.id, _rev = d.rev }
      if on_error then call_hook("on_error", on_error, budget, d, doc, e) end
      if denied then R.emit("denied", denied, e, doc) end
    end

    -- An event's handlers (events.c), in the order they were registered.
    function R.emit(event, handlers, ...)
      for i = 1, #handlers do
        run_hook(("the '%s' event handler"):format(event), "", { event = event, hook = "on" }, handlers[i], budget, ...)
      end
    end

    -- The delay before a retry (retry.c), from the previous one (0 the first time).
    local back_off = opts.back_off or default_back_off
    function R.back_off(previous)
      local delay = run_hook("the back_off hook", "", { hook = "back_off" }, back_off, budget, previous)
      if math.type(delay) == nil or delay ~= delay or delay < 0 or delay == math.huge then
        error(couch.error("replication", ("the back_off hook returned %s: expected a number of seconds >= 0 (the "
          .. "delay before the job retries)"):format(type(delay) == "number" and tostring(delay)
          or delay == nil and "nothing" or ("a " .. type(delay))),
          { hook = "back_off", reason = "hook_failed" }), 0)
      end
      return delay
    end

    -- Run the user's hooks; returns the JSON texts to write, and how many documents failed
    -- here: one the hook made that JSON cannot hold (a function in it, bytes that are not
    -- UTF-8) is that document's failure (errors, on_error), not the job's.
    function R.apply(job, docs)
      if not hooks then return docs, 0 end
      local out, skipped, failed = {}, 0, 0
      if new_revisions then docs = winners_only(job, docs) end
      for _, d in ipairs(docs) do
        if d.json then
          local doc = json.decode(d.json)
          local keep = true
          if filter then keep = call_hook("filter", filter, budget, d, doc) end
          if keep then
            local res = doc
            if transform then res = call_hook("transform", transform, budget, d, doc) end
            if res ~= nil then
              local list = (type(res) == "table" and res._id == nil and #res > 0) and res or { res }
              for _, r in ipairs(list) do
                if new_revisions then r._revisions = nil end
                local ok, text = pcall(json.encode, r)
                if ok then
                  out[#out + 1] = { id = r._id, rev = r._rev, json = text, doc = r }
                else
                  failed = failed + 1
                  R.failed(job, { id = r._id or d.id, rev = r._rev or d.rev, doc = r },
                    { error = "bad_document", reason = couch.is_error(text) and text.message or tostring(text) })
                end
              end
            else
              skipped = skipped + 1
            end
          else
            skipped = skipped + 1
          end
        end
      end
      if skipped > 0 then job:_skipped(skipped) end
      return out, failed -- the failures counted here: the batch's own (its `change` event)
    end

    -- new_revisions: each document becomes a new edit on top of the target's current rev.
    function R.new_revisions(_, docs)
      local keys = {}
      for _, d in ipairs(docs) do keys[#keys + 1] = d.id end
      local revs = {}
      for _, row in ipairs(target:all_docs { keys = keys }.rows) do
        if row.value and not row.value.deleted then revs[row.id] = row.value.rev end
      end
      for _, d in ipairs(docs) do
        d.doc._rev = revs[d.id]
        d.json = json.encode(d.doc)
      end
    end

    -- The query and body of the reader's _changes reads (changes.lua builds them): the
    -- reader adds since, limit and the longpoll to each page.
    function R.changes_request()
      local filter = type(opts.filter) == "string" and opts.filter or nil
      local doc_ids = opts.doc_ids and json.array {}
      for i, id in ipairs(opts.doc_ids or {}) do doc_ids[i] = id end -- a JSON array, even empty
      -- winning_revs_only: the winner of each document only, as CouchDB's replicator asks
      local style = opts.winning_revs_only and "main_only" or "all_docs"
      local q, body = I.changes_request(source, { style = style, doc_ids = doc_ids, selector = opts.selector,
                                                  filter = filter, query_params = filter and opts.query_params })
      -- the reader sends them itself (src/replicate/call.c): shaped as srv:request shapes them
      return lists.shape_query(q), lists.shape("POST", source.path .. "/_changes", body)
    end

    R.report = reporter(opts, source.name, target.name, budget)
    return R
  end

  --- couch.replication{ source =, target =, ... } -> a running job (see couch.replicate)
  -- `echoed`: the target is also written by a replication from it (couch.sync's other
  -- direction), so what the source's changes bring may well be there: _revs_diff always.
  local function replication(opts, what, echoed)
    check(opts, what or "couch.replication")
    local source = as_db(opts.source, "source", opts.source_options, opts.target)
    local target = as_db(opts.target, "target", opts.target_options, opts.source)
    local hooks = type(opts.filter) == "function" or opts.transform ~= nil or opts.new_revisions or false
    local base = {
      identity(source), identity(target), opts.doc_ids or json.null, opts.selector or json.null,
      type(opts.filter) == "string" and opts.filter or json.null, opts.query_params or json.null,
      hooks and "client-hooks" or json.null, opts.new_revisions and "new_revisions" or json.null,
      type(opts.filter) == "function" and hook_identity(opts.filter, "filter", 0, {}) or json.null,
      opts.transform and hook_identity(opts.transform, "transform", 0, {}) or json.null,
    }
    -- appended only when set, so the ids of jobs without them stay what they were; since as
    -- CouchDB appends since_seq: a job from elsewhere is another job, not a resumed one
    if opts.winning_revs_only then base[#base + 1] = "winning_revs_only" end
    local since = opts.since; if since == nil then since = opts.since_seq end
    if since ~= nil then base[#base + 1] = since end
    local rep_id = opts.replication_id or I.md5_hex(json.encode(base, { sort_keys = true }))
    local R = runners(opts, hooks, source, target)
    local job = I.repl_new {
      source = source, target = target, batch_size = opts.batch_size, concurrency = opts.concurrency,
      max_batch_bytes = opts.max_batch_bytes, checkpoint_interval = opts.checkpoint_interval, poll = opts.poll,
      continuous = opts.continuous, batches_limit = opts.batches_limit, always_diff = echoed or false,
      -- checkpoint (PouchDB's): true both sides, "source" / "target" one, false none
      checkpoint_source = opts.use_checkpoints ~= false and opts.checkpoint ~= false and opts.checkpoint ~= "target",
      checkpoint_target = opts.use_checkpoints ~= false and opts.checkpoint ~= false and opts.checkpoint ~= "source",
      attachments = opts.attachments ~= false, new_revisions = opts.new_revisions, hooks = hooks,
      since = since or 0, use_bulk_get = opts.use_bulk_get ~= false,
      -- retry (PouchDB's): transient failures waited out; continuous jobs' default
      retry = opts.retry == nil and opts.continuous or opts.retry or false,
      create_target_params = opts.create_target_params, rep_id = rep_id, session_id = I.random_hex(16), name = opts.name,
      runners = R, idle = couch.cond(), spawn = couch.spawn, queue = couch.queue,
      source_url = redact.url(source.server.url) .. "/" .. source.name,
      target_url = redact.url(target.server.url) .. "/" .. target.name,
    }
    running[job] = true
    local task = couch.spawn("replication " .. source.name .. " -> " .. target.name, function()
      -- the run is C (src/replicate/run.c): reader and worker tasks, joined, checkpointed
      local ok, res = pcall(job._run, job, opts.create_target)
      running[job] = nil
      if not ok then error(res, 0) end
      return res
    end)
    job:_tasks(task)
    return job
  end

  --- couch.replicate{ source =, target =, ... } -> stats, when it is done (or yields in a task)
  function couch.replication(opts) return replication(opts, "couch.replication") end
  I.replication = replication -- couch.sync's two directions (sync.lua), its name in errors

  function couch.replicate(opts)
    local job = replication(opts, "couch.replicate")
    local stats = job:wait()
    stats.errors = job:errors()
    return stats
  end

  --- couch.jobs() -> the running native replications, shaped like /_scheduler/jobs
  function couch.jobs()
    local jobs = json.array {}
    for job in pairs(running) do
      local s = job:stats()
      jobs[#jobs + 1] = { id = job.rep_id, source = s.source, target = s.target,
                          start_time = s.start_time, info = s, state = job.state }
    end
    return { total_rows = #jobs, offset = 0, jobs = jobs }
  end
end
