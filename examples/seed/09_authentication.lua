-- Seed example "Replication with Authentication" (python-cloudant Replicator, seeds/000):
--
--     external_target = {'url': 'https://external-couchdb.example.com/target_db',
--                        'auth': {'username': 'external_user', 'password': 'external_password'}}
--     replicator.create_replication(source_db='local_database', target_db=external_target)
--     iam_target = {'url': 'https://target-account.cloudant.com/target_db',
--                   'auth': {'iam': {'api_key': 'target_iam_api_key'}}}
--     replicator.create_replication(source_db='local_database', target_db=iam_target)
--
-- CouchDB 3 wants basic credentials as auth = {basic = {username =, password =}} (a URL
-- with user:password@ works too; couchlua moves such credentials into the auth object).
-- Whatever rep:create returns, and every error and log line, has the secrets masked.
--
-- The "external" server is a second couch.connect: EXTERNAL_URL (credentials from
-- EXTERNAL_USER / EXTERNAL_PASSWORD), or, when it is unset, a second connection to the
-- same URL, which is how the test runs it (pouchdb-server's replicator ignores the auth
-- object, and needs none in admin party). The IAM target needs a real Cloudant account:
-- it is created only when IAM_TARGET_URL and IAM_API_KEY are set, otherwise the document
-- is shown, masked.
--
-- Run: couchlua examples/seed/09_authentication.lua [URL] [SOURCE] [TARGET]
local couch = require "couch"
local json = couch.json

local a = { table.unpack(arg) }
local url = (a[1] and a[1]:match("^https?://")) and table.remove(a, 1)
  or os.getenv("COUCH_URL") or "http://127.0.0.1:5984"
local source, target = a[1] or "local_database", a[2] or "target_db"

local srv = couch.connect(url)
pcall(srv.create_db, srv, "_replicator")
local rep = srv:replicator()

-- Follow `id` to its end, giving up after `secs` seconds by stopping the replication (the
-- follow then ends with the state "deleted"). Returns the last state seen before that.
-- (Not rep:wait(id, {timeout = secs}): a task cancelled inside a follow loop does not
-- close the loop, so the shared _replicator watcher would keep the script alive.)
local function follow_until_done(id, secs)
  local guard = couch.spawn("give up on " .. id, function()
    couch.sleep(secs)
    pcall(rep.stop, rep, id)
  end)
  local last
  for st in rep:follow(id) do
    if st.state ~= "deleted" then last = st end
  end
  guard:cancel()
  return last or { id = id, state = "deleted" }, guard:status() == "done"
end

local external = couch.connect(os.getenv("EXTERNAL_URL") or url)
local external_target = {
  url = external.url .. "/" .. couch.escape(target),   -- external.url holds no credentials
  auth = { basic = { username = os.getenv("EXTERNAL_USER") or "external_user",
                     password = os.getenv("EXTERNAL_PASSWORD") or "external_password" } },
}
-- The seed's target is an existing database.
external:db(target):create { exist_ok = true }

local repl_doc = rep:create { source = source, target = external_target }
print(("Replication to the external server: %s"):format(repl_doc._id))
print(("  as returned (masked): %s"):format(json.encode(repl_doc.target, { sort_keys = true })))
local final, gave_up = follow_until_done(repl_doc._id, 120)
print(("  %s%s"):format(tostring(final), gave_up and " (gave up after 120 s: stopped it)" or ""))

-- IAM (Cloudant): the replicator exchanges the API key for tokens itself.
local iam_target = {
  url = (os.getenv("IAM_TARGET_URL") or "https://target-account.cloudant.com") .. "/" .. couch.escape(target),
  auth = { iam = { api_key = os.getenv("IAM_API_KEY") or "target_iam_api_key" } },
}
if os.getenv("IAM_TARGET_URL") and os.getenv("IAM_API_KEY") then
  local doc = rep:create { source = source, target = iam_target }
  print(("Replication to the IAM target: %s"):format(doc._id))
  print(("  as returned (masked): %s"):format(json.encode(doc.target, { sort_keys = true })))
  local st = follow_until_done(doc._id, 300)
  print(("  %s"):format(tostring(st)))
else
  -- Show the document we would send, masked the same way rep:create masks its answer.
  local shown = json.decode(json.encode(iam_target))
  shown.auth.iam.api_key = "***"
  print(("IAM target skipped (set IAM_TARGET_URL and IAM_API_KEY): would send %s"):format(
    json.encode(shown, { sort_keys = true })))
end
os.exit(final and final.state == "completed" and 0 or 1)
