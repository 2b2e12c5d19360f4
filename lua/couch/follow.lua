-- Following server-side replications: rep:follow, rep:follow_many and rep:wait. One
-- long-poll _changes feed on the replicator database per server wakes every follower whose
-- document changed, and one /_scheduler/docs poll per interval (the active jobs only, a
-- request per 1000) feeds every follower's transient state; no follower polls on its own.
-- A follower's last state is consistent: the document's own end wins, and when the
-- scheduler says a job ended before its document does (a cluster), the follower waits for
-- the document (at most `settle` seconds, then reads it once).
-- At 10,000 followers the costs that matter are memory and garbage per follower, and the
-- CPU of the poll: the feed brings ids and the followed documents are read 500 at a time;
-- the poll splits each page into its rows' texts without decoding it and decodes a row
-- only when its text's digest changed; a follower keeps only the fields of its row a
-- state is made of; it is woken only when its inputs changed, and yields only when its
-- state did (compared field by field, nothing encoded). bench/fleet.lua measures it.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch, Replicator, h)
  local json = couch.json
  local redact = require("couch.redact")
  local scheduler, make_state, terminal = h.scheduler, h.make_state, h.terminal
  local FROM_DOC, ACTIVE, get_doc = h.FROM_DOC, h.ACTIVE, h.get_doc

  local FETCH_CHUNK = 500
  local SETTLE = 10 -- s a follower waits for a document to say how its job ended
  -- What a follower keeps of its scheduler row's text to compare the next poll's with: its
  -- md5 (32 bytes instead of the row's ~800; 2 µs a row), or the text itself
  local digest = I.md5_hex or function(text) return text end
  local watchers = setmetatable({}, { __mode = "k" }) -- server state table -> watcher

  -- A follower's inputs changed. f.g is the cond its rep:follow waits on, or the queue
  -- (of the ones to look at, with the cond) that the followers of one rep:follow_many share.
  local function notify(f)
    local g = f.g
    if type(g) == "table" then
      if not f.dirty then
        g.tail = g.tail + 1
        g[g.tail] = f
      end
      f.dirty = true
      g.cond:signal()
    else
      f.dirty = true
      g:signal()
    end
  end

  -- The part of a scheduler row a state is made of (a row carries twice as much: database,
  -- doc_id, source, target, proxies), kept per follower until the row changes.
  local function compact(s)
    return { state = s.state, info = s.info, error_count = s.error_count, start_time = s.start_time,
             last_updated = s.last_updated, node = s.node, id = s.id }
  end

  local function same_table(a, b)
    if a == b then return true end
    if type(a) ~= "table" or type(b) ~= "table" then return false end
    for k, v in pairs(b) do if a[k] ~= v then return false end end
    for k in pairs(a) do if b[k] == nil then return false end end
    return true
  end

  -- Whether a follower would see anything new in row s (old: what it has)
  local function row_changed(old, s)
    return not old or old.state ~= s.state or old.error_count ~= s.error_count or old.last_updated ~= s.last_updated
      or old.node ~= s.node or old.id ~= s.id or not same_table(old.info, s.info)
  end

  -- Whether state st says anything the last one yielded (prev) did not
  local function state_changed(prev, st)
    return not prev or prev.state ~= st.state or prev._replication_state ~= st._replication_state
      or prev.error_count ~= st.error_count or prev.last_updated ~= st.last_updated or prev.node ~= st.node
      or not same_table(prev.info, st.info)
  end

  -- One watcher per server and replicator database: a changes feed for all the documents
  -- and one scheduler poll per interval.
  local function watcher_for(rep, interval)
    -- first (it may wait for the probe): nothing between the lookup and the registration
    -- below may yield, or followers starting together would make a watcher each
    local has_sched = scheduler.supported(rep.server)
    local key = rep.server:_state()
    watchers[key] = watchers[key] or {}
    local w = watchers[key][rep.db_name]
    if w then return w end
    -- interval nil: 1 s, stretched by 1 s per 2000 active jobs (a poll of 10,000 rows every
    -- second would cost a tenth of a core in JSON alone)
    w = { followers = {}, count = 0, rep = rep, interval = interval or 1, adaptive = interval == nil,
          has_sched = has_sched }
    watchers[key][rep.db_name] = w
    local since = rep.db:changes({ limit = 0, since = "now" }).last_seq
    -- The feed brings ids only; a fetcher reads the documents of the followed ones, 500 per
    -- POST _all_docs, each answer used and dropped before the next: 10,000 replications
    -- finishing together never sit in memory at once (a feed with include_docs would
    -- decode all of them from one answer).
    local queue, queued, wake = { head = 1, tail = 0 }, {}, couch.cond()
    w.feed_task = couch.spawn("replicator feed " .. rep.db_name, function()
      -- a short pause between rounds lets a burst of updates (many replications finishing
      -- together) arrive in one answer instead of one request each
      for change in rep.db:changes_feed { since = since, poll = 30, coalesce = math.min(0.25, w.interval / 4) } do
        local id = change.id
        if w.followers[id] and not queued[id] then
          queued[id] = true
          queue.tail = queue.tail + 1
          queue[queue.tail] = id
          wake:signal()
        end
      end
    end)
    w.fetch_task = couch.spawn("replicator documents " .. rep.db_name, function()
      while true do
        if queue.head > queue.tail then wake:wait() end
        local ids = {}
        while queue.head <= queue.tail and #ids < FETCH_CHUNK do
          local id = queue[queue.head]
          queue[queue.head], queued[id] = nil, nil -- a change from now on fetches it again
          queue.head = queue.head + 1
          ids[#ids + 1] = id
        end
        local ok, res = pcall(rep.db.all_docs, rep.db, { keys = ids, include_docs = true })
        if not ok then
          if couch.is_error(res) and res.kind == "cancelled" then return end -- the last follower left
          -- read again after a pause that keeps a server that is down from being hammered
          couch.sleep(1)
          for _, id in ipairs(ids) do
            if not queued[id] then
              queued[id] = true
              queue.tail = queue.tail + 1
              queue[queue.tail] = id
            end
          end
        else
          for _, row in ipairs(res.rows) do
            local list = w.followers[row.key]
            -- a document read as missing (a cluster node that just restarted can lag) is
            -- not taken for a deletion: only a deleted revision is one
            local doc = row.doc
            if doc and doc ~= json.null then doc = redact.mask(doc)
            elseif type(row.value) == "table" and row.value.deleted then doc = false
            else doc = nil end
            if list and doc ~= nil then
              -- masked once, in place, shared by its followers and the states they yield
              for f in pairs(list) do
                f.doc = doc
                notify(f)
              end
            end
          end
        end
      end
    end)
    if scheduler.supported(rep.server) then
      w.poll_task = couch.spawn("scheduler poll " .. rep.db_name, function()
        local gen = 0
        -- a row of an active job, as its text: a row whose text is the one a follower saw
        -- is not even decoded; one that changed wakes its followers, with its compact copy
        -- (which keeps the text's digest to compare the next poll's with)
        local function prepare(id, text)
          local list = w.followers[id]
          if not list then return nil, false end
          local key = digest(text)
          for f in pairs(list) do
            if not f.sched or f.sched.key ~= key then return key, true end
          end
          return key, false
        end
        local function seen(id, text, row, key)
          local list = w.followers[id]
          if not list then return end
          local c
          for f in pairs(list) do
            f.gen, f.gone_since = gen, nil
            local old = f.sched
            if key == nil or not old or old.key ~= key then
              row = row or scheduler.decode_row(text)
              if row and row_changed(old, row) then
                c = c or compact(row)
                c.key = key
                f.sched = c
                notify(f)
              elseif row and old then
                old.key = key
              end
            end
          end
        end
        while true do
          couch.sleep(w.interval)
          if w.sched_read and couch.now() - w.sched_read.at > w.interval then w.sched_read = nil end
          -- Only the jobs that can still change (a page of 1000 at a time): a job's end
          -- comes with its document through the feed. A row that is missing (a cluster
          -- drops a finishing job's row for a second, or the job ended) keeps the last one.
          gen = gen + 1
          local ok, n = pcall(scheduler.each_row, rep.server, rep.db_name, scheduler.ACTIVE, seen, prepare)
          if ok and n and w.adaptive then w.interval = math.max(1, n / 2000) end
          if ok and n then
            local now = couch.now()
            for _, list in pairs(w.followers) do
              for f in pairs(list) do
                if f.gen ~= gen and f.ready and f.sched and ACTIVE[f.sched.state] then
                  -- gone from the active jobs: its document should say how it ended; if
                  -- it has not after `settle` seconds, the follower reads both once
                  f.gone_since = f.gone_since or now
                  if now - f.gone_since >= (f.settle or SETTLE) then
                    f.gone_since, f.recheck = nil, true
                    notify(f)
                  end
                end
              end
            end
          end
        end
      end)
    end
    return w
  end

  -- Followers that start in the same turn of the loop share one read of their documents
  -- (POST _all_docs with the keys) and one of the scheduler, instead of two requests each.
  -- A small fleet's scheduler read (up to CACHE_ROWS rows) also serves the batches that
  -- start within the next interval.
  local CACHE_ROWS = 2000
  local function read_initial(w, f)
    w.pending_init = w.pending_init or {}
    w.pending_init[#w.pending_init + 1] = f
    if w.init_task then return end
    w.init_task = couch.spawn("replicator initial read", function()
      couch.yield() -- every follower starting now joins this batch
      local batch = w.pending_init
      w.pending_init, w.init_task = nil, nil
      local ok, err = pcall(function()
        local c = w.sched_read
        if c and couch.now() - c.at <= w.interval then
          for _, x in ipairs(batch) do
            if x.sched == nil then x.sched = c.by_id[x.id] end
          end
        else
          -- a page at a time: only the rows of this batch's followers (and of a small
          -- fleet, for the cache) are decoded, and kept compact with their text's digest
          local cache, rows = {}, 0
          local function waiting(list)
            if list then for x in pairs(list) do if not x.ready and x.sched == nil then return true end end end
            return false
          end
          local function prepare(id, text)
            rows = rows + 1
            if cache and rows > CACHE_ROWS then cache = nil end
            if cache or waiting(w.followers[id]) then return digest(text), true end
            return nil, false
          end
          local n = scheduler.each_row(w.rep.server, w.rep.db_name, nil, function(id, text, s, key)
            if not s then return end
            local cs = compact(s)
            cs.key = key
            if cache then cache[id] = cs end
            local list = w.followers[id]
            if list then
              for x in pairs(list) do
                if not x.ready and x.sched == nil then x.sched = cs end
              end
            end
          end, prepare)
          if n and cache then w.sched_read = { by_id = cache, at = couch.now() } end
        end
        -- 1000 documents per request, each answer used and dropped before the next: a
        -- fleet's first read stays a few MB at a time
        for first = 1, #batch, 1000 do
          local keys = {}
          for i = first, math.min(first + 999, #batch) do keys[#keys + 1] = batch[i].id end
          local rows = w.rep.db:all_docs { keys = keys, include_docs = true }.rows
          for k = 1, #keys do
            local x, row = batch[first + k - 1], rows[k]
            if x.doc ~= nil then -- the feed already brought something newer
            elseif row and row.doc and row.doc ~= json.null then x.doc = redact.mask(row.doc)
            elseif row and row.value and row.value.deleted then x.doc = false
            else x.missing = true end
          end
        end
      end)
      for _, x in ipairs(batch) do
        if not ok then x.error = err end
        x.ready = true
        notify(x)
      end
    end)
  end

  local function leave(w, f)
    local list = w.followers[f.id]
    if not (list and list[f]) then return end
    list[f] = nil
    if next(list) == nil then w.followers[f.id] = nil end
    w.count = w.count - 1
    if w.count == 0 then
      w.feed_task:cancel()
      w.fetch_task:cancel()
      if w.poll_task then w.poll_task:cancel() end
      watchers[w.rep.server:_state()][w.rep.db_name] = nil
    end
  end

  local function timed_out(what, seconds, state, n, id)
    local msg
    if state == "initializing" then
      msg = ("%s: no job started within %gs (still initializing). A CouchDB node starts replication jobs only ~5 s after it boots, and a cluster only once its membership is stable: see srv:membership() and sch:docs()"):format(what, seconds)
    else
      msg = ("%s still %s after %gs"):format(what, state, seconds)
    end
    I.raise("timeout", msg, { seconds = seconds, state = state, unfinished = n, id = id })
  end

  local function deleted(id)
    return setmetatable({ id = id, state = "deleted" }, { __tostring = function() return ("replication %s: deleted"):format(id) end })
  end

  -- The document did not catch up within `settle` seconds: read it once, take what it says.
  local function reread(self, f)
    local ok, doc = pcall(get_doc, self, f.id)
    if ok then f.doc = redact.mask(doc) elseif couch.is_error(doc) and doc.kind == "not_found" then f.doc = false end
    return ok
  end

  -- One look at a follower whose inputs changed: the state to yield, or nil (nothing new,
  -- or waiting for its document). Sets f.finished (and leaves) after the last state.
  local function step(self, w, f, has_sched, many)
    if f.recheck then
      f.recheck = false
      reread(self, f)
      if f.doc then
        local ok, s = pcall(scheduler.doc_or_nil, self.server, self.db_name, f.id)
        if ok and s then f.sched = compact(s) end
      end
    end
    if f.error or f.missing then
      f.finished = true
      leave(w, f)
      if f.error then error(f.error, 0) end
      if many then return setmetatable({ id = f.id, state = "not_found" }, { __tostring = function() return ("replication %s: not found"):format(f.id) end }) end
      I.raise("not_found", ("no replication %q in %s"):format(f.id, self.db_name),
        { status = 404, id = f.id, error = "not_found" })
    end
    if f.doc == false then
      f.finished = true
      leave(w, f)
      return deleted(f.id)
    end
    local st = make_state(f.doc, f.sched, true)
    -- the scheduler says the job ended, its document not yet: wait for the document
    if terminal(st.state, has_sched) and st.state ~= FROM_DOC[f.doc._replication_state] then
      if f.hold_until == nil then f.hold_until = couch.now() + (f.settle or SETTLE) end
      if f.hold_until then return nil end
    end
    if not state_changed(f.last, st) then return nil end
    f.last = st
    if terminal(st.state, has_sched) then
      f.finished = true
      leave(w, f)
    end
    return st
  end

  -- a follow loop left early (break, error) leaves the watcher: one metatable for all
  local CLOSE_ONE = { __close = function(c) leave(c[1], c[2]) end }
  local CLOSE_MANY = { __close = function(c) for _, f in ipairs(c[2]) do leave(c[1], f) end end }

  local FOLLOW_SPEC = { interval = "number", timeout = "number", settle = "number" }

  -- A follower is a small table (id, g, doc, sched, last, gen, ready, dirty: a table of up
  -- to 8 fields takes half the memory of one of 9; the rest only while it applies): at
  -- 10,000 of them every field counts.
  local function join(self, id, opts, g)
    local w = watcher_for(self, opts.interval)
    local f = { id = id, g = g, settle = opts.settle }
    w.followers[id] = w.followers[id] or {}
    w.followers[id][f] = true
    w.count = w.count + 1
    read_initial(w, f)
    return w, f
  end

  -- rep:follow's iterator: one function for every follower (its state is the closer
  -- { w, f }, no closure)
  local function follow_next(c)
    local w, f = c[1], c[2]
    local deadline = f.deadline
    while not f.finished do
      if not f.dirty then
        local wake = f.hold_until or nil
        if deadline and (not wake or deadline < wake) then wake = deadline end
        local now = couch.now()
        if not wake then
          f.g:wait()
        elseif now >= wake or not f.g:wait(wake - now) then
          if f.hold_until and couch.now() >= f.hold_until then
            f.hold_until = false
            reread(w.rep, f)
            f.dirty = true
          elseif deadline and couch.now() >= deadline then
            f.finished = true
            leave(w, f)
            timed_out(("replication %q"):format(f.id), f.timeout, f.last and f.last.state or "initializing", 1, f.id)
          end
        end
      end
      if f.dirty then
        f.dirty = false
        if f.ready then
          local st = step(w.rep, w, f, w.has_sched, false)
          if st then return st end
        end
      end
    end
    return nil
  end

  --- for state in rep:follow(id, { interval = 1, timeout = s, settle = 10 }) do ... end
  -- Yields the state table each time it changes, ending after a terminal state (completed,
  -- failed), or when the document is deleted (a final state "deleted"). `timeout`: a
  -- `timeout` error if it has not ended by then, saying so when no job even started.
  function Replicator:follow(id, opts)
    opts = opts or {}
    I.check_options(opts, "rep:follow", FOLLOW_SPEC)
    if type(id) ~= "string" or id == "" then I.raise("usage", "bad argument 'id': expected a replication document id", { argument = "id" }) end
    local w, f = join(self, id, opts, couch.cond())
    if opts.timeout then f.deadline, f.timeout = couch.now() + opts.timeout, opts.timeout end
    local c = setmetatable({ w, f }, CLOSE_ONE)
    return follow_next, c, nil, c
  end
  Replicator.follow_replication = Replicator.follow

  --- for state in rep:follow_many(ids [, { interval, timeout, settle }]) do ... end
  -- One loop for many replications, without a task each: yields each state change of any
  -- of them (state.id says which), until every one has ended ("completed", "failed",
  -- "deleted", or "not_found" for an id with no document). The cheap way to watch a fleet
  -- of thousands from one script.
  function Replicator:follow_many(ids, opts)
    if type(ids) ~= "table" then I.raise("usage", "bad argument 'ids': expected a list of replication ids", { argument = "ids" }) end
    opts = opts or {}
    I.check_options(opts, "rep:follow_many", FOLLOW_SPEC)
    local deadline = opts.timeout and couch.now() + opts.timeout
    local has_sched = scheduler.supported(self.server)
    local cond, all, w = couch.cond(), {}, nil
    local queue = { head = 1, tail = 0, cond = cond }
    for i, id in ipairs(ids) do
      if type(id) ~= "string" then I.raise("usage", ("bad argument 'ids': entry %d is not a string"):format(i), { argument = "ids" }) end
      local f
      w, f = join(self, id, opts, queue)
      all[i] = f
    end
    local left = #all
    local closer = setmetatable({ w, all }, CLOSE_MANY)
    local holding = {}
    local function iter()
      while left > 0 do
        local f = queue.head <= queue.tail and queue[queue.head]
        if f then
          queue[queue.head] = nil
          queue.head = queue.head + 1
          if not f.finished then
            f.dirty = false
            if f.ready then
              local st = step(self, w, f, has_sched, true)
              if f.hold_until then holding[f] = true else holding[f] = nil end
              if f.finished then left = left - 1 end
              if st then return st end
            end
          end
        else
          local wake = deadline
          for x in pairs(holding) do if not wake or x.hold_until < wake then wake = x.hold_until end end
          local now = couch.now()
          if not wake then
            cond:wait()
          elseif now >= wake or not cond:wait(wake - now) then
            now = couch.now()
            for x in pairs(holding) do
              if x.hold_until <= now then
                holding[x] = nil
                x.hold_until = false
                reread(self, x)
                x.dirty = false
                notify(x)
              end
            end
            if deadline and now >= deadline and queue.head > queue.tail then
              local state = "initializing"
              for _, x in ipairs(all) do
                if not x.finished then
                  if x.last and x.last.state ~= "initializing" then state = x.last.state end
                  leave(w, x)
                end
              end
              local n = left
              left = 0
              timed_out(("%d of %d replications"):format(n, #all), opts.timeout, state, n)
            end
          end
        end
      end
      return nil
    end
    return iter, nil, nil, closer
  end

  --- rep:wait(id [, { timeout = s, interval =, settle = }]) -> the final state
  -- (a `timeout` error past opts.timeout, saying when no job has started at all)
  function Replicator:wait(id, opts)
    local last
    for st in self:follow(id, opts) do last = st end
    return last
  end
end
