-- couch.backup / couch.restore (and couch.backup_job / couch.restore_job): a database to a
-- file and back, in the file format of IBM's couchbackup (@cloudant/couchbackup), so files
-- cross between the two tools both ways, and in a lossless superset of it (revisions =
-- "all"). This file checks the options and starts the job; the parts, one concern each:
--   backup_file.lua      the file format and its io
--   backup_writer.lua    a backup's run (full, shallow, with a log), backup_fetch.lua
--                        reading documents, backup_log.lua couchbackup's log,
--                        backup_resume.lua what a resume still has to fetch
--   restore_reader.lua   a restore's run, restore_log.lua its log
--   backup_pipeline.lua  `parallelism` batches in flight, stoppable
--   backup_job.lua       the job object, progress, cancel
-- Every request goes through the database object, so both run on the loop: they yield
-- inside a task and block at the top level. File I/O is plain Lua io.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  local F = require("couch.backup_file")(couch)
  local pipeline = require("couch.backup_pipeline")(couch)
  local write_backup = require("couch.backup_writer")(couch, F, pipeline)
  local read_restore = require("couch.restore_reader")(couch, F, pipeline)
  local Job = require("couch.backup_job")(couch)

  local usage = I.usage -- usage(argument, why): a `usage` error naming it

  local function is_db(x)
    return type(x) == "table" and getmetatable(x) == I.Database
  end

  local function check_int(opts, k, default)
    local v = opts[k]
    if v == nil then return default end
    if math.type(v) ~= "integer" or v < 1 then usage(k, "expected a positive whole number") end
    return v
  end

  local BACKUP_OPTS = { source = true, file = true, mode = true, buffer_size = true, log = true, resume = true,
                        attachments = true, parallelism = true, progress = true, quiet = true, name = true,
                        revisions = true }
  local RESTORE_OPTS = { target = true, file = true, buffer_size = true, parallelism = true, progress = true,
                         quiet = true, name = true, log = true, resume = true }
  local function check_opts(opts, known, fn)
    if type(opts) ~= "table" then usage("opts", fn .. " expects a table of options") end
    for k in pairs(opts) do
      if not known[k] then usage(tostring(k), "unknown option of " .. fn) end
    end
  end

  local function check_common(opts)
    local progress = opts.progress
    if progress ~= nil and type(progress) ~= "function" and type(progress) ~= "boolean" then
      usage("progress", "expected a function(stats), or false for no progress line")
    end
    if opts.quiet ~= nil and type(opts.quiet) ~= "boolean" then usage("quiet", "expected a boolean") end
    if opts.name ~= nil and type(opts.name) ~= "string" then usage("name", "expected a string") end
    if opts.log ~= nil and (type(opts.log) ~= "string" or opts.log == "") then usage("log", "expected a path") end
  end

  -- the file as a progress line names it: a path, or what stream it is
  local function file_label(file)
    if file == io.stdout then return "stdout" elseif file == io.stdin then return "stdin" end
    return type(file) == "string" and file or "(stream)"
  end

  local function backup_job(opts, fn)
    check_opts(opts, BACKUP_OPTS, fn)
    local db = opts.source
    if not is_db(db) then usage("source", "expected a database (srv:db(name))") end
    local mode = opts.mode or "full"
    if mode ~= "full" and mode ~= "shallow" then usage("mode", 'expected "full" or "shallow"') end
    local revisions = opts.revisions or "winning"
    if revisions ~= "winning" and revisions ~= "all" then usage("revisions", 'expected "winning" or "all"') end
    local lossless = revisions == "all"
    if lossless and mode ~= "full" then usage("revisions", 'revisions = "all" reads every leaf: not with mode = "shallow"') end
    if lossless and opts.attachments == false then
      usage("attachments", 'revisions = "all" keeps attachments inline: attachments = false does not apply')
    end
    local size = check_int(opts, "buffer_size", 500)
    -- shallow: one page at a time unless asked (as couchbackup's shallow mode reads); its
    -- parallel ranges cost an extra pass over the ids, a loss on a one-thread server
    local par = check_int(opts, "parallelism", mode == "shallow" and 1 or 5)
    if opts.resume and not opts.log then usage("resume", "resume needs the log of the interrupted backup (log = path)") end
    if opts.resume and mode ~= "full" then usage("resume", "only a full backup can resume") end
    if opts.resume and type(opts.file) ~= "string" then usage("file", "resume appends to the backup file: give its path") end
    check_common(opts)
    if opts.log and mode ~= "full" then usage("log", "a log is kept in full mode only") end
    local o = { db = db, file = opts.file, mode = mode, revisions = revisions, lossless = lossless, size = size, par = par,
                attachments = lossless or (opts.attachments and true or false), log = opts.log, resume = opts.resume,
                what = type(opts.file) == "string" and opts.file or "the backup file" }
    local stats = { docs = 0, batches = 0, mode = mode, revisions = revisions, resumed = false }
    return Job.start("backup", write_backup, o, opts, stats, db.name .. " -> " .. file_label(opts.file))
  end

  local function restore_job(opts, fn)
    check_opts(opts, RESTORE_OPTS, fn)
    local db = opts.target
    if not is_db(db) then usage("target", "expected a database (srv:db(name))") end
    local size = check_int(opts, "buffer_size", 500)
    local par = check_int(opts, "parallelism", 5)
    check_common(opts)
    if opts.resume and not opts.log then usage("resume", "resume needs the log of the interrupted restore (log = path)") end
    local o = { db = db, file = opts.file, size = size, par = par, log = opts.log, resume = opts.resume,
                what = type(opts.file) == "string" and opts.file or "the backup file" }
    local stats = { docs = 0, batches = 0, lines = 0, mode = nil, revisions = nil, resumed = false, skipped = 0,
                    complete = false }
    return Job.start("restore", read_restore, o, opts, stats, file_label(opts.file) .. " -> " .. db.name)
  end

  --- couch.backup_job{ source = db, file = path|io, mode = "full"|"shallow", revisions = "winning"|"all",
  ---                  buffer_size = 500, parallelism = 5, log = path, resume = bool, attachments = bool,
  ---                  progress = fn|false, quiet = bool, name = str } -> a running job (backup_job.lua)
  function couch.backup_job(opts) return backup_job(opts, "couch.backup_job") end
  --- couch.backup{ ... } -> stats {docs, batches, mode, revisions, resumed}, once done
  function couch.backup(opts) return Job.wait(backup_job(opts, "couch.backup")) end

  --- couch.restore_job{ file = path|io, target = db, buffer_size = 500, parallelism = 5,
  ---                   log = path, resume = bool, progress = fn|false, quiet = bool, name = str } -> a running job
  function couch.restore_job(opts) return restore_job(opts, "couch.restore_job") end
  --- couch.restore{ ... } -> stats {docs, batches, lines, mode, revisions, resumed, skipped, complete}, once done
  function couch.restore(opts) return Job.wait(restore_job(opts, "couch.restore")) end
end
