-- reshape.lua: copy a database while changing its documents, with couchlua's native
-- replication and two Lua hooks:
--   filter    = function(doc) -> boolean      skip drafts
--   transform = function(doc) -> doc | nil | {doc, ...}
--               drop a field (internal_notes), rename one (title -> headline), and split
--               one document into two (the post, and its body as "<id>:body")
-- The replicated revisions keep their _rev and _revisions history (they are written with
-- new_edits=false), so later edits and deletions of a post flow on the next run, and the
-- split-off body document follows its post because it carries the same revision history.
-- Deleted documents (tombstones) reach the hooks too: let them through.
--
--   couchlua examples/reshape.lua [URL] [SOURCE] [TARGET]
--     URL defaults to $COUCH_URL; SOURCE to reshape_posts (filled with sample posts when
--     it is missing or empty), TARGET to SOURCE_v2.
-- Prints one document before and after, and the counts.
local couch = require "couch"
local json = couch.json

local a = { table.unpack(arg) }
local url = (a[1] and a[1]:match("^https?://")) and table.remove(a, 1)
  or os.getenv("COUCH_URL") or "http://127.0.0.1:5984"
local source_name = a[1] or "reshape_posts"
local target_name = a[2] or source_name .. "_v2"

local srv = couch.connect(url)
local source, target = srv:db(source_name), srv:db(target_name)

-- Sample data, so the example runs on an empty server.
if not source:exists() or source:info().doc_count == 0 then
  source:create { exist_ok = true }
  local docs = {}
  for i = 1, 20 do
    docs[i] = {
      _id = ("post:%04d"):format(i), type = "post",
      title = ("Post number %d"):format(i),
      status = (i % 5 == 0) and "draft" or "published",
      author = ("author%d"):format(i % 3),
      tags = json.array { "couchdb", i % 2 == 0 and "lua" or "replication" },
      body = ("Body of post %d. "):format(i):rep(5),
      internal_notes = "reviewed by the editor",
    }
  end
  source:bulk_docs(docs)
  local gone = source:get("post:0019")
  source:delete_doc("post:0019", gone._rev)   -- a deletion, to show tombstones pass through
  print(("seeded %s with 20 sample posts (4 drafts, 1 deleted)"):format(source_name))
end

local function keep(doc)
  return doc.status ~= "draft"       -- tombstones have no status: they pass
end

local function reshape(doc)
  if doc._id:match("^_design/") then return doc end            -- design docs unchanged
  local body_id = doc._id .. ":body"
  if doc._deleted then
    -- the post is gone: its body goes too (same revision, deleted)
    return { doc, { _id = body_id, _rev = doc._rev, _revisions = doc._revisions, _deleted = true } }
  end
  doc.internal_notes = nil                                      -- drop a field
  doc.headline, doc.title = doc.title, nil                      -- rename a field
  local body = doc.body                                          -- split into two documents
  doc.body = nil
  if body == nil then return doc end
  doc.body_id = body_id
  return { doc, { _id = body_id, _rev = doc._rev, _revisions = doc._revisions,
                  type = "post_body", post_id = doc._id, text = body } }
end

local stats = couch.replicate {
  source = source, target = target, create_target = true,
  filter = keep, transform = reshape,
  -- The checkpoint belongs to these hooks: bump the version when you change them, or
  -- the next run resumes after the documents the old hooks already handled.
  replication_id = "reshape-posts-v1",
  on_error = function(doc, err) io.stderr:write(("not written: %s\n"):format(tostring(err))) end,
  quiet = true,
}
print(("read %d, written %d, skipped %d (drafts), failed %d"):format(stats.docs_read, stats.docs_written,
  stats.docs_skipped or 0, stats.doc_write_failures))

-- Before and after, one document.
local function show(label, doc)
  doc._revisions = nil
  print(("%-7s %s"):format(label, json.encode(doc, { sort_keys = true })))
end
local id = "post:0002"
local ok, before = pcall(source.get, source, id)
if ok then
  show("before", before)
  show("after", target:get(id))
  show("", target:get(id .. ":body"))
end
local ok_draft = pcall(target.get, target, "post:0005")
print(("draft post:0005 in the target: %s"):format(ok_draft and "yes" or "no (skipped)"))
print(("%s: %d documents, %s: %d documents"):format(source_name, source:info().doc_count, target_name,
  target:info().doc_count))
os.exit(stats.doc_write_failures == 0 and 0 or 1)
