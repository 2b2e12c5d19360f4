-- bench/peer.lua: PouchDB 9's client-side replicate (the tool users would pick instead of
-- couchlua), run between two server databases through tests/support/pouchdb-peer's driver
-- (installed by scripts/setup into .deps/pouchdb-peer), with its own figures.
local couch = require "couch"

local M = {}

local root = os.getenv("COUCHLUA_SOURCE_DIR") or
  (debug.getinfo(1, "S").source:match("^@(.*)/bench/[^/]*$") or ".")
M.module = root .. "/.deps/pouchdb-peer/node_modules/pouchdb"
M.driver = root .. "/tests/support/pouchdb-peer/replicate.js"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- Why PouchDB cannot run here, or nil when it can.
function M.missing()
  if os.execute("command -v node >/dev/null 2>&1") ~= true then return "node is not installed" end
  local f = io.open(M.module .. "/package.json")
  if not f then return "PouchDB is not installed in .deps/pouchdb-peer (scripts/setup installs it)" end
  f:close()
end

--- PouchDB.replicate(source_url, target_url, {batch_size, batches_limit}): returns
-- {secs, written, failed, max_rss_kb, cpu_secs}, or nil and why.
function M.replicate(source_url, target_url, opts)
  opts = opts or {}
  local cmd = ("COUCHLUA_POUCHDB_PEER=%s node %s --batch-size %d --batches-limit %d %s %s 2>&1"):format(
    quote(M.module), quote(M.driver), opts.batch_size or 500, opts.batches_limit or 4,
    quote(source_url), quote(target_url))
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  local ok, res = pcall(couch.json.decode, out:match("[^\n]*\n?$") or "")
  if not (ok and type(res) == "table" and res.ok) then return nil, couch.redact(out) end
  return { secs = res.ms / 1000, written = res.docs_written, failed = res.doc_write_failures,
           max_rss_kb = res.max_rss_kb, cpu_secs = res.cpu_ms / 1000 }
end

return M
