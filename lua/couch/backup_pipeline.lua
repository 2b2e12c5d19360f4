-- `parallelism` batches in flight, for backup and restore: a reader task runs
-- produce(push) and pushes items into a bounded queue; n worker tasks run work(item).
--   * the first error of a worker stops the reader (at once, even in a request) and the
--     other workers drop what is queued; it is raised once every task has ended;
--   * an error of the reader (or Ctrl-C, or the caller's own cancellation while it waits)
--     cancels the workers, their requests with them;
--   * ctl.stopping (set by a job's cancel(), which also cancels ctl.reader) is a clean
--     stop: nothing more is read, the items being worked on finish (so the file and its
--     log stay resumable), the queued ones are dropped, and it returns normally.
return function(couch)
  local function finished(t)
    local s = t:status()
    return s == "done" or s == "failed" or s == "cancelled"
  end

  return function(ctl, n, produce, work)
    local q = couch.queue(n)
    local failed
    local reader
    local function worker()
      while true do
        local item = q:pop()
        if item == nil then return end
        if not failed and not ctl.stopping then
          local ok, err = pcall(work, item)
          if not ok and not failed then
            failed = err
            if reader and not finished(reader) then reader:cancel() end
          end
        end
      end
    end
    local workers = {}
    for i = 1, n do workers[i] = couch.spawn("backup worker", worker) end
    reader = couch.spawn("backup reader", function()
      produce(function(item)
        if failed then error(failed, 0) end
        q:push(item)
        if failed then error(failed, 0) end
      end)
    end)
    ctl.reader = reader
    local function stop_all(err)
      failed = failed or err
      reader:cancel()
      for _, t in ipairs(workers) do t:cancel() end
    end

    local ok, err = pcall(reader.wait, reader)
    if not ok and not finished(reader) then
      stop_all(err)                       -- the caller was cancelled (Ctrl-C) while waiting
    elseif not ok and not (ctl.stopping and couch.is_error(err) and err.kind == "cancelled") then
      stop_all(err)                       -- the reader failed: a worker's error, or its own
    end
    q:close()
    for _, t in ipairs(workers) do
      local wok, werr = pcall(t.wait, t)
      if not wok and not finished(t) then stop_all(werr) end
    end
    ctl.reader = nil
    if failed then error(failed, 0) end
  end
end
