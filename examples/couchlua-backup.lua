#!/usr/bin/env couchlua
-- couchlua-backup / couchlua-restore: couchbackup's command lines on couch.backup and
-- couch.restore. Installed twice; the name it is called by picks the direction (or the
-- first argument "backup" / "restore" when run as `couchlua couchlua-backup.lua ...`).
local couch = require "couch"

local EXIT = { Error = 1, InvalidOption = 2, DatabaseNotFound = 10, Unauthorized = 11, Forbidden = 12,
               DatabaseNotEmpty = 13, NoLogFileName = 20, LogDoesNotExist = 21, LogFileExists = 23,
               HTTPFatalError = 40, BackupFileJsonError = 1, RestoreError = 1, FileError = 1,
               BackupFormatTooNew = 1, BackupFormatUnknown = 1, BackupFileIncomplete = 1, BackupFileAttachmentsMismatch = 1, LogMismatch = 1, FetchError = 1,
               Cancelled = 130 }

local args = { table.unpack(arg) }
local direction = (arg[0] or ""):match("restore[^/]*$") and "restore" or "backup"
if args[1] == "backup" or args[1] == "restore" then direction = table.remove(args, 1) end
local prog = "couchlua-" .. direction

local HELP = {
  backup = [[
usage: couchlua-backup [options...]
Backs up a CouchDB database to a file in couchbackup's format (JSON arrays of documents,
one batch per line), restorable with couchlua-restore or IBM's couchrestore.

  -u, --url URL           the server (default: $COUCH_URL, else http://localhost:5984)
  -d, --db NAME           the database (default: $COUCH_DATABASE)
  -o, --output FILE       the backup file (default: standard output)
  -m, --mode MODE         full (default: winning revisions with their history) or shallow
                          (winning revisions from _all_docs, faster, no history)
      --revisions all     lossless (couchlua's addition): every leaf revision (conflicts,
                          deletions) with its history and inline attachments, in couchlua's
                          superset format; couchlua-restore reproduces the revision trees,
                          couchrestore refuses the file
  -a, --attachments       fetch attachments inline (couchbackup's experimental option)
  -b, --buffer-size N     documents per batch and per line (default: 500)
  -p, --parallelism N     batches in flight at once (default: 5; in shallow mode 1, one
                          page at a time); shallow mode writes its lines in id order
  -l, --log FILE          keep couchbackup's log in FILE (full mode), so the backup can resume
  -r, --resume            continue the interrupted backup that --log and --output name
  -q, --quiet             no progress on standard error (else a line, refreshed on a
                          terminal, and a summary at the end)
  -h, --help              this text

Credentials belong in the URL (http://user:pass@host:5984); they are never printed.
Exit codes (couchbackup's): 0 done, 1 other error, 2 bad option, 10 database not found,
11 unauthorized, 12 forbidden, 20 --resume without --log, 21 the log does not exist,
23 the log exists but --resume was not given, 40 fatal HTTP error, 130 interrupted (Ctrl-C).
]],
  restore = [[
usage: couchlua-restore [options...] < backup-file
Restores a couchbackup-format backup (written by couchlua-backup or IBM's couchbackup) into
an existing, empty database. Documents with revisions are written with _bulk_docs
new_edits=false, keeping their revision ids.

  -u, --url URL           the server (default: $COUCH_URL, else http://localhost:5984)
  -d, --db NAME           the database (default: $COUCH_DATABASE); it must exist and be empty
  -i, --input FILE        read FILE instead of standard input (couchlua's addition)
  -b, --buffer-size N     documents per _bulk_docs request (default: 500)
  -p, --parallelism N     _bulk_docs requests in flight at once (default: 5)
  -l, --log FILE          keep a restore log in FILE, so an interrupted restore can resume
                          (couchlua's addition)
  -r, --resume            continue the interrupted restore that --log names: lines already
                          restored are skipped, the others written again (new_edits=false:
                          nothing is duplicated)
  -a, --attachments       accepted for couchrestore compatibility: attachments in the file
                          are always restored, and must agree with its header (inline data
                          where it says they were included, none where it says not)
  -q, --quiet             no progress on standard error (else a line, refreshed on a
                          terminal, and a summary at the end)
  -h, --help              this text

Reads couchbackup's files (full and shallow, with or without attachments) and couchlua's
all-revisions files (--revisions all), and refuses a newer version of the latter.

Exit codes (couchrestore's): 0 done, 1 other error (a corrupt line: the message names it;
a file of a newer format), 2 bad option, 10 database not found, 11 unauthorized,
12 forbidden, 13 database not empty, 20 --resume without --log, 21 the log does not exist,
23 the log exists but --resume was not given, 40 fatal HTTP error, 130 interrupted (Ctrl-C).
]],
}

local function die(code, msg)
  io.stderr:write(prog, ": ", msg, "\n")
  os.exit(code)
end
local function bad(msg) die(EXIT.InvalidOption, msg .. " (see --help)") end

local o = { url = os.getenv("COUCH_URL") or "http://localhost:5984", db = os.getenv("COUCH_DATABASE"),
            mode = os.getenv("COUCH_MODE") or "full", buffer_size = 500 }
local SHORT = { u = "url", d = "db", o = "output", i = "input", m = "mode", b = "buffer-size",
                p = "parallelism", l = "log", r = "resume", q = "quiet", h = "help", a = "attachments" }
local FLAGS = { resume = true, quiet = true, help = true, attachments = true }
local VALUES = { url = true, db = true, output = "backup", input = "restore", mode = "backup",
                 ["buffer-size"] = true, parallelism = true, log = true, revisions = "backup" }
local i = 1
while args[i] do
  local a = args[i]
  local name = a:match("^%-%-([%w-]+)$") or SHORT[a:match("^%-(%a)$") or ""]
  if not name then bad("unexpected argument " .. a) end
  local scope = FLAGS[name] or VALUES[name]
  if not scope or (scope ~= true and scope ~= direction) then bad("unknown option " .. a) end
  if FLAGS[name] then
    o[name] = true
  else
    local v = args[i + 1]
    if v == nil then bad(a .. " needs a value") end
    i = i + 1
    if name == "buffer-size" or name == "parallelism" then
      local n = math.tointeger(tonumber(v))
      if not n or n < 1 then bad(a .. " needs a positive whole number") end
      o[name == "buffer-size" and "buffer_size" or name] = n
    else
      o[name] = v
    end
  end
  i = i + 1
end
if o.help then io.stdout:write(HELP[direction]); os.exit(0) end
if not o.db or o.db == "" then bad("no database: give --db or set COUCH_DATABASE") end
if o.mode ~= "full" and o.mode ~= "shallow" then bad("--mode must be full or shallow") end
if o.revisions and o.revisions ~= "all" and o.revisions ~= "winning" then bad("--revisions must be all (or winning)") end
if o.revisions == "all" and o.mode ~= "full" then bad("--revisions all is a full backup: not with --mode shallow") end
if o.resume and not o.log then die(EXIT.NoLogFileName, "--resume needs --log FILE") end
if direction == "backup" and o.resume and o.mode ~= "full" then bad("--resume works in full mode only") end
if direction == "backup" and o.resume and not o.output then bad("--resume appends to the backup file: give --output FILE") end
if o.log and o.resume and not io.open(o.log) then die(EXIT.LogDoesNotExist, "the log file " .. o.log .. " does not exist") end
if o.log and not o.resume and io.open(o.log) then die(EXIT.LogFileExists, "the log file " .. o.log .. " exists: add --resume to continue that " .. direction) end

local function code_of(err)
  if type(err) ~= "table" then return EXIT.Error end
  if err.kind == "usage" then return EXIT.InvalidOption end
  if err.kind == "cancelled" then return EXIT.Cancelled end
  if err.code and EXIT[err.code] then return EXIT[err.code] end
  if err.status == 404 then return EXIT.DatabaseNotFound end
  if err.status == 401 then return EXIT.Unauthorized end
  if err.status == 403 then return EXIT.Forbidden end
  if err.kind == "http" then return EXIT.HTTPFatalError end
  return EXIT.Error
end

local ok, err = pcall(function()
  local db = couch.connect(o.url):db(o.db)
  -- progress: couch.backup's own line on standard error (the native engine's), unless -q
  if direction == "backup" then
    local st = couch.backup { source = db, file = o.output or io.stdout, mode = o.mode, buffer_size = o.buffer_size,
                              parallelism = o.parallelism, revisions = o.revisions, log = o.log, resume = o.resume,
                              attachments = o.attachments and true or nil, quiet = o.quiet }
    if not o.quiet then io.stderr:write(("%s: finished, %d documents\n"):format(prog, st.docs)) end
  else
    local info = db:info()
    if not o.resume and ((info.doc_count or 0) ~= 0 or (info.doc_del_count or 0) ~= 0) then
      die(EXIT.DatabaseNotEmpty, "the database " .. o.db .. " is not empty: restore into a new, empty database")
    end
    local st = couch.restore { target = db, file = o.input or io.stdin, buffer_size = o.buffer_size,
                               parallelism = o.parallelism, log = o.log, resume = o.resume, quiet = o.quiet }
    if not o.quiet then
      io.stderr:write(("%s: finished, %d documents%s\n"):format(prog, st.docs,
        st.skipped > 0 and (" (%d restored before)"):format(st.skipped) or ""))
    end
  end
end)
if not ok then die(code_of(err), tostring(err)) end
