-- Seed section "Error Handling" (python-cloudant Replicator, seeds/000):
--
--     try:
--         replicator.create_replication(source_db='', target_db='target')   # Empty source
--     except CloudantReplicatorException as e:
--         print(f"Replication creation failed: {e}")
--     try:
--         replicator.replication_state('non_existent_repl_id')
--     except CloudantReplicatorException as e:
--         print(f"Replication not found: {e}")
--     try:
--         replicator.stop_replication('non_existent_repl_id')
--     except CloudantReplicatorException as e:
--         print(f"Stop replication failed: {e}")
--
-- couchlua raises error values, not exceptions of a class: tables with `kind` (usage,
-- not_found, http, network, timeout, ...), `status`, `error`, `reason`; tostring(err) is
-- one line, and never shows credentials. pcall catches them; couch.is_error tells them
-- from plain Lua errors. An empty source is refused before anything is sent (`usage`).
--
-- Run: couchlua examples/seed/12_errors.lua [URL]
local couch = require "couch"

local url = (arg[1] and arg[1]:match("^https?://")) and arg[1] or os.getenv("COUCH_URL") or "http://127.0.0.1:5984"
local srv = couch.connect(url)
pcall(srv.create_db, srv, "_replicator")
local rep = srv:replicator()

local function show(what, ok, err)
  if ok then
    print(("%s: no error?"):format(what))
    return false
  end
  print(("%s: %s"):format(what, tostring(err)))
  print(("  kind=%s status=%s error=%s is_error=%s"):format(tostring(err.kind), tostring(err.status),
    tostring(err.error), tostring(couch.is_error(err))))
  return true
end

local all = true
-- Invalid replication configuration: an empty source
all = show("Replication creation failed", pcall(rep.create, rep, { source = "", target = "target" })) and all
-- Check a replication that does not exist
all = show("Replication not found", pcall(rep.state, rep, "non_existent_repl_id")) and all
-- Stop a replication that does not exist
all = show("Stop replication failed", pcall(rep.stop, rep, "non_existent_repl_id")) and all

-- Telling the kinds apart:
local ok, err = pcall(rep.state, rep, "non_existent_repl_id")
if not ok and couch.is_error(err) and err.kind == "not_found" then
  print("not_found is an ordinary outcome here: nothing to stop")
end
os.exit(all and 0 or 1)
