/* One batch of the native replication's protocol loop (couch_repl_move_batch):
 *   revs_diff (skipped while nearly everything is missing) -> _bulk_get in chunks of about
 *   max_batch_bytes (or one open_revs GET per document where the server has no _bulk_get)
 *   -> exact-byte slices (slice.c) -> every revision asked accounted for (account.c; what a
 *   short answer left out is asked again with open_revs, what is still not read is a
 *   failure that holds the batch's checkpoint) -> the user's hooks -> _bulk_docs
 *   new_edits=false (413 splits in halves; 412 missing_stub refetches with attachments;
 *   an answer that is not one result per document fails the batch) -> refused revisions
 *   matched by position, id+rev, else id.
 * Who owns what: the job's counters, flags and estimates are the couch_repl struct
 * (job.h); the batch's own C state is its couch_repl_batch (batch.h: index, hold, probe,
 * where a walk stands), which is each continuation's context, and its
 * couch_repl_batch_state: the id -> [rev] maps (revmap.c: what the changes name, what the
 * target lacks and the cursor of the chunks fetched, what a read left unanswered, the ids
 * asked again after rev-less refusals and what the target said it lacks of them); the
 * stack of _bulk_docs posts (runs of a document list: a 413 split is two runs, no copy);
 * the index of an answer's refusals (refusals.c). That state is a userdata of its own and
 * its C memory is freed in one place (release): once the batch is moved, or by the
 * state's __gc. The request bodies are written from it (the maps' JSON, the _bulk_docs
 * join of the documents' exact bytes). What stays Lua are values: the slots of this frame
 * (S_* below, kept across a yield) hold the sliced documents and the lists the user's
 * hooks see or make, and the decoded answers. Each protocol step is its own continuation
 * (*_k). The user's hooks run in replicate.lua (the job's runners: apply, failed,
 * new_revisions); the missing_stub refetch is restub.c; every HTTP call goes straight to
 * the request layer through couch_repl_call (call.c), so auth and retries stay in one
 * place and the call yields inside a task like a cosocket call. An answer of the wrong
 * shape is a structured error (couch_repl_answer_raise), never a Lua one.
 * Fetch ahead (slots.c): the reading of each chunk (revs_diff, the reads) holds one of the
 * job's `concurrency` read slots; its hooks and writing one of its write slots, kept
 * from then to the batch's end (worker.c lets it go). */
#include "replicate/batch.h"

#include "json/json.h"
#include "replicate/account.h"
#include "replicate/call.h"
#include "replicate/slice.h"
#include "replicate/slots.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

enum {
  S_JOB = 1, S_BATCH,
  S_DOCS,     /* sliced documents, then the hooks' output */
  S_READABLE, /* the sliced documents that carry a body */
  S_LISTS,    /* the lists of documents the posts (b->s->work, b->s->cur) are runs of */
  S_ANSWER,   /* the _bulk_docs answer being matched (its refusals: b->s->refusals) */
  S_RESTUB,   /* documents refused one by one for attachment stubs, to send again */
  S_TOP = S_RESTUB
};

#define CTX(b) ((lua_KContext)(b))
#define BATCH_STATE_MT "couch.replication_batch_state"
#define BATCH(ctx) ((couch_repl_batch *)(ctx))

static void append(lua_State *L, int list, int value) {
  lua_pushvalue(L, value);
  lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
}

/* Push a runner of replicate.lua and the job: ready for its other arguments. */
static void push_runner(lua_State *L, couch_repl *r, couch_repl_runner which) {
  couch_repl_push_runner(L, r, which);
  lua_pushvalue(L, S_JOB);
}

/* Replace the answer text on top (to method path on the source) with the list
 * couch_slice_docs cuts out of it; an empty or unparsable answer is a structured error. */
static void slice_top(lua_State *L, couch_repl *r, const char *method, const char *path, lua_Integer status) {
  if (lua_type(L, -1) != LUA_TSTRING)
    couch_repl_answer_raise(L, r, REPL_SOURCE, method, path, status, "http", "empty_response",
                            "the source answered %s with an empty body", method);
  lua_pushcfunction(L, couch_slice_docs);
  lua_insert(L, -2);
  lua_call(L, 1, 2);
  if (lua_isnil(L, -2))
    couch_repl_answer_raise(L, r, REPL_SOURCE, method, path, status, "json", NULL, "the source's answer to %s %s is %s",
                            method, path, lua_tostring(L, -1));
  lua_pop(L, 1);
}

/* Raise the structured error for a _changes answer the protocol does not allow. */
static int bad_changes(lua_State *L, couch_repl *r, const char *what) {
  const char *method = r->changes_post ? "POST" : "GET";
  return couch_repl_answer_raise(L, r, REPL_SOURCE, method, "/_changes", 200, "http", "bad_response",
                                 "the source's _changes answer has %s", what);
}

/* The first revision of the run known to be on `side` (read from the source's changes; on
 * the target: said present by _revs_diff or written) becomes that side's anchor: each
 * checkpoint first asks that side whether it still has it (checkpoint.c), because a
 * database deleted and re-created under the job has lost it. */
static void set_anchor(lua_State *L, couch_repl *r, int side, int id, int rev) {
  if (r->ref.anchor_id[side] != LUA_NOREF || lua_type(L, id) != LUA_TSTRING || lua_type(L, rev) != LUA_TSTRING) return;
  couch_repl_set(L, &r->ref.anchor_id[side], id);
  couch_repl_set(L, &r->ref.anchor_rev[side], rev);
}

/* Keep the list of documents at idx for posts; returns its number in S_LISTS. */
static lua_Integer add_list(lua_State *L, int idx) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, S_LISTS) + 1;
  lua_pushvalue(L, idx);
  lua_rawseti(L, S_LISTS, n);
  return n;
}

/* Push a post of list[from .. from + n - 1] onto the batch's work stack. */
static void push_post(lua_State *L, couch_repl_batch *b, lua_Integer list, lua_Integer from, lua_Integer n,
                      int new_edits, int refetched) {
  if (b->s->nwork == b->s->capwork) {
    size_t cap = b->s->capwork ? 2 * b->s->capwork : 8;
    couch_repl_post *w = realloc(b->s->work, cap * sizeof *w);
    if (!w) luaL_error(L, "out of memory queueing a _bulk_docs post");
    b->s->work = w, b->s->capwork = cap;
  }
  b->s->work[b->s->nwork++] = (couch_repl_post){.list = list, .from = from, .n = n, .new_edits = new_edits != 0,
                                          .refetched = refetched != 0};
}

/* A post of the whole list at idx. */
static void post_list(lua_State *L, couch_repl_batch *b, int idx, int new_edits, int refetched) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  push_post(L, b, add_list(L, idx), 1, n, new_edits, refetched);
}

/* Push the list the post in flight is a run of. */
static void push_cur_list(lua_State *L, couch_repl_batch *b) { lua_rawgeti(L, S_LISTS, b->s->cur.list); }

/* A new list of list[from..to] */
static void push_range(lua_State *L, int list, lua_Integer from, lua_Integer to) {
  lua_createtable(L, (int)(to - from + 1), 0);
  for (lua_Integer i = from; i <= to; i++) {
    lua_rawgeti(L, list, i);
    lua_rawseti(L, -2, i - from + 1);
  }
}

/* b->s->revs from the batch's changes; counts revisions_checked. Returns 0 when empty. */
static int collect_revs(lua_State *L, couch_repl_batch *b) {
  couch_repl *r = b->r;
  lua_getiuservalue(L, S_BATCH, BATCH_CHANGES);
  int changes = lua_gettop(L);
  for (lua_Integer i = 1; lua_geti(L, changes, i) != LUA_TNIL; i++) {
    int ch = lua_gettop(L);
    if (!lua_istable(L, ch)) bad_changes(L, r, "a row that is not an object");
    if (lua_getfield(L, ch, "id") != LUA_TSTRING) bad_changes(L, r, "a row without an id");
    size_t len;
    const char *id = lua_tolstring(L, ch + 1, &len);
    couch_revmap_add_id(L, &b->s->revs, id, len);
    if (lua_getfield(L, ch, "changes") != LUA_TTABLE) bad_changes(L, r, "a row without \"changes\"");
    int cl = lua_gettop(L);
    lua_Integer n = 0;
    for (lua_Integer j = 1; lua_geti(L, cl, j) != LUA_TNIL; j++) {
      if (!lua_istable(L, -1) || lua_getfield(L, -1, "rev") != LUA_TSTRING) bad_changes(L, r, "a change without a rev");
      set_anchor(L, r, REPL_SOURCE, ch + 1, lua_gettop(L));
      const char *rev = lua_tolstring(L, -1, &len);
      couch_revmap_add_rev(L, &b->s->revs, rev, len);
      n++;
      lua_pop(L, 2);
    }
    r->revisions_checked += n;
    lua_settop(L, ch - 1);
  }
  lua_settop(L, S_TOP);
  return b->s->revs.n > 0;
}

/* While nearly everything turns out missing (copying into an empty target) the _revs_diff
 * round trip buys nothing: skip it, as CouchDB's replicator does, and look again every
 * 8th batch. Writing a revision the target has is a no-op with new_edits=false, so a skip
 * can cost work but never correctness (it does count such a revision as written: a sync's
 * directions, whose targets are written by each other, never skip: always_diff). */
static int skip_revs_diff(couch_repl *r) {
  r->batches++;
  return r->missing_ratio >= 0.95 && r->batches % 8 != 0 && !r->new_revisions && !r->always_diff;
}

/* Everything the changes name is missing (no _revs_diff asked): the map changes hands. */
static void all_missing(couch_repl_batch *b) {
  couch_repl_revmap m = b->s->missing;
  b->s->missing = b->s->revs;
  b->s->revs = m;
  for (size_t e = 0; e < b->s->missing.n; e++)
    if (b->s->missing.v[e].live) b->r->missing_revisions_found += (lua_Integer)b->s->missing.v[e].n;
}

/* The _revs_diff answer on top: fill b->s->missing, update the stats and the missing ratio. */
static void diffed(lua_State *L, couch_repl_batch *b) {
  couch_repl *r = b->r;
  int res = lua_gettop(L);
  lua_Integer found = 0, checked = 0;
  if (lua_istable(L, res)) {
    lua_pushnil(L);
    while (lua_next(L, res)) {
      if (lua_istable(L, -1) && lua_type(L, -2) == LUA_TSTRING) {
        lua_getfield(L, -1, "missing");
        lua_Integer n = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
        if (n > 0) {
          size_t len;
          const char *id = lua_tolstring(L, -3, &len); /* a string key: no conversion under lua_next */
          couch_revmap_add_id(L, &b->s->missing, id, len);
          for (lua_Integer j = 1; j <= n; j++) {
            lua_rawgeti(L, -1, j);
            const char *rev = luaL_tolstring(L, -1, &len); /* a hostile answer's number, too */
            couch_revmap_add_rev(L, &b->s->missing, rev, len);
            lua_pop(L, 2);
          }
          found += n;
        }
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
  }
  for (size_t e = 0; e < b->s->revs.n; e++) {
    if (!b->s->revs.v[e].live) continue;
    checked += (lua_Integer)b->s->revs.v[e].n;
    couch_repl_str id = b->s->revs.v[e].id;
    if (r->ref.anchor_id[REPL_TARGET] == LUA_NOREF && b->s->revs.v[e].n > 0 && /* none of it missing: the target has it */
        couch_revmap_find(&b->s->missing, couch_revmap_str(&b->s->revs, id), id.len) < 0) {
      couch_revmap_push_id(L, &b->s->revs, e);
      couch_revmap_push_rev(L, &b->s->revs, e, 0);
      set_anchor(L, r, REPL_TARGET, lua_gettop(L) - 1, lua_gettop(L));
      lua_pop(L, 2);
    }
  }
  r->missing_revisions_found += found;
  double ratio = (double)found / (double)checked;
  r->missing_ratio = r->missing_ratio < 0 ? ratio : 0.5 * r->missing_ratio + 0.5 * ratio;
  lua_settop(L, S_TOP);
}

/* Bytes in flight are bounded, not only documents (issue 11: 20 documents of 15 MB in one
 * batch peaked at 724 MB). The batch's missing revisions are fetched, hooked and written
 * in chunks of about max_batch_bytes of _bulk_get answer, the size of a revision
 * estimated from the answers so far (bytes_per_rev; a job's first chunks, before any
 * estimate, ask for two revisions). Small documents still go in one request per batch.
 * Whole ids go together, so accounting stays per id. */
static int has_pending(couch_repl_batch *b) {
  while (b->s->cursor < b->s->missing.n && !b->s->missing.v[b->s->cursor].live) b->s->cursor++;
  return b->s->cursor < b->s->missing.n;
}

static lua_Integer chunk_revs(couch_repl *r) {
  if (r->bytes_per_rev <= 0) return 2;
  double k = (double)r->max_batch_bytes / r->bytes_per_rev;
  return k < 1 ? 1 : k > 1e9 ? 1000000000 : (lua_Integer)k;
}

/* Whether this batch must wait for the job's first estimate (another batch's chunk of two
 * revisions is on its way: the other workers' first batches would each send one more
 * _bulk_get and _bulk_docs). The first batch to get here sends that chunk. Servers
 * without _bulk_get (one GET per document anyway) make no estimate: nobody waits. */
static int must_wait_for_estimate(couch_repl_batch *b) {
  couch_repl *r = b->r;
  if (r->bytes_per_rev > 0 || r->no_bulk_get || !has_pending(b)) return 0;
  if (!r->probing) {
    r->probing = 1;
    b->probe = 1;
    return 0;
  }
  return !b->probe;
}

/* Wake the batches waiting for the estimate (and a final checkpoint: both re-check). */
static void wake_waiters(lua_State *L, couch_repl *r) {
  couch_repl_push(L, r->ref.idle);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_getfield(L, -1, "broadcast");
  lua_insert(L, -2);
  lua_call(L, 1, 0);
}

/* An answer of `bytes` for `n` revisions: update the estimate, leaning to the larger. */
static void note_answer_size(lua_State *L, couch_repl *r, size_t bytes, lua_Integer n) {
  if (n <= 0) return;
  double now = (double)bytes / (double)n, old = r->bytes_per_rev;
  r->bytes_per_rev = old <= 0 || now > old ? now : 0.75 * old + 0.25 * now;
  if (old <= 0) wake_waiters(L, r);
}

/* The next up to chunk_revs() revisions (whole ids, at least one) of b->s->missing become the
 * revisions asked, and the chunk's slots are reset. Returns 0 when nothing is left. */
static int next_chunk(lua_State *L, couch_repl_batch *b) {
  lua_Integer budget = chunk_revs(b->r), taken = 0;
  size_t from = b->s->cursor;
  for (; b->s->cursor < b->s->missing.n; b->s->cursor++) {
    if (!b->s->missing.v[b->s->cursor].live) continue;
    lua_Integer n = (lua_Integer)b->s->missing.v[b->s->cursor].n;
    if (taken > 0 && taken + n > budget) break;
    taken += n;
  }
  if (taken == 0) return 0;
  b->s->asked = &b->s->missing, b->s->asked_from = from, b->s->asked_to = b->s->cursor;
  static const int fresh[] = {S_DOCS, S_READABLE, S_LISTS};
  for (int i = 0; i < 3; i++) {
    lua_newtable(L);
    lua_replace(L, fresh[i]);
  }
  lua_pushnil(L);
  lua_replace(L, S_ANSWER);
  b->s->key = from;
  b->s->nwork = 0;
  b->pass = 0;
  return 1;
}

/* The revisions asked, and whether there are any. */
static size_t asked_revs(const couch_repl_batch *b) {
  size_t n = 0;
  for (size_t e = b->s->asked_from; e < b->s->asked_to; e++)
    if (b->s->asked->v[e].live) n += b->s->asked->v[e].n;
  return n;
}

/* The statuses that are answers, not errors (0-terminated): a server without _bulk_get
 * (one GET per document then); a batch too large (split) or refused for stubs (refetch). */
static const int BULK_GET_ALLOW[] = {400, 404, 405, 501, 0}, BULK_DOCS_ALLOW[] = {413, 412, 0};

/* Push the _bulk_docs body of docs[from .. from + n - 1]: the documents' JSON texts as they are, joined in one buffer
 * of the final size (growing it by doubling left as much garbage as the body itself). */
static void push_bulk_docs_body(lua_State *L, int docs, lua_Integer from, lua_Integer n, int new_edits) {
  static const char head_t[] = "{\"new_edits\":true,\"docs\":[", head_f[] = "{\"new_edits\":false,\"docs\":[";
  size_t total = sizeof head_f + 2 + (size_t)n;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, docs, from + i - 1);
    if (lua_getfield(L, -1, "json") != LUA_TSTRING) luaL_error(L, "document %d of the batch has no JSON text", (int)i);
    total += lua_rawlen(L, -1);
    lua_pop(L, 2);
  }
  luaL_Buffer b;
  luaL_buffinitsize(L, &b, total);
  luaL_addstring(&b, new_edits ? head_t : head_f);
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, ',');
    lua_rawgeti(L, docs, from + i - 1);
    lua_getfield(L, -1, "json");
    lua_remove(L, -2);
    luaL_addvalue(&b); /* the one buffer call that takes its value from the stack */
  }
  luaL_addstring(&b, "]}");
  luaL_pushresult(&b);
}

/* The _bulk_docs answer at res to n documents must be a list of one result per document,
 * or (CouchDB with new_edits=false, fixture 112) of the failures only; anything else (an
 * object, a short list of successes) says nothing true about what was written: the batch
 * fails as a whole and nothing is counted written. */
static void check_bulk_docs(lua_State *L, couch_repl *r, int res, lua_Integer n, int new_edits, lua_Integer status) {
  if (!lua_istable(L, res) || couch_json_table_kind(L, res) != 1)
    couch_repl_answer_raise(L, r, REPL_TARGET, "POST", "/_bulk_docs", status, "http", "bad_response",
                            "the target answered _bulk_docs with %s instead of a list of results",
                            lua_istable(L, res) ? "an object" : luaL_typename(L, res));
  lua_Integer count = (lua_Integer)lua_rawlen(L, res), errors = 0;
  int top = lua_gettop(L);
  for (lua_Integer i = 1; i <= count; i++) {
    lua_rawgeti(L, res, i);
    int named = 0;
    if (lua_istable(L, -1)) {
      named = lua_getfield(L, -1, "id") == LUA_TSTRING;
      lua_getfield(L, -2, "error");
      errors += lua_toboolean(L, -1);
    }
    lua_settop(L, top);
    if (!named)
      couch_repl_answer_raise(L, r, REPL_TARGET, "POST", "/_bulk_docs", status, "http", "bad_response",
                              "result %d of the target's _bulk_docs answer names no document", (int)i);
  }
  if (count == n || (!new_edits && count < n && errors == count)) return;
  couch_repl_answer_raise(L, r, REPL_TARGET, "POST", "/_bulk_docs", status, "http", "bad_response",
                          "the target answered _bulk_docs with %d results (%d errors) for %d documents", (int)count,
                          (int)errors, (int)n);
}

/* Whether entry e of m lists the value at idx (a string) among its revs. */
static int has_rev(lua_State *L, const couch_repl_revmap *m, size_t e, int idx) {
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  size_t len;
  const char *rev = lua_tolstring(L, idx, &len);
  for (size_t j = 0; j < m->v[e].n; j++) {
    couch_repl_str t = m->revs[m->v[e].first + j];
    if (t.len == len && memcmp(couch_revmap_str(m, t), rev, len) == 0) return 1;
  }
  return 0;
}

/* Push the error the target reported for document d, the i-th sent, or nil. With one
 * result per document the i-th result is d's when it names d's id: pouchdb-server's
 * errors name no rev, and blaming by id alone fails the siblings of a refused revision.
 * Else by id and rev, else by id. */
static void push_doc_error(lua_State *L, couch_repl_batch *b, int d, lua_Integer i) {
  if (b->s->by_pos) {
    lua_rawgeti(L, S_ANSWER, i);
    lua_getfield(L, -1, "id");
    lua_getfield(L, d, "id");
    if (lua_rawequal(L, -1, -2)) {
      lua_pop(L, 2);
      lua_getfield(L, -1, "error");
      if (lua_toboolean(L, -1)) lua_pop(L, 1);
      else lua_remove(L, -2); /* no error: leave the nil (false) */
      return;
    }
    lua_pop(L, 3);
  }
  lua_getfield(L, d, "id");
  lua_getfield(L, d, "rev");
  if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
    size_t id_len, rev_len;
    const char *id = lua_tolstring(L, -2, &id_len), *rev = lua_tolstring(L, -1, &rev_len);
    lua_Integer pos = couch_refusals_by_rev(&b->s->refusals, id, id_len, rev, rev_len);
    if (pos) {
      lua_rawgeti(L, S_ANSWER, pos);
      lua_replace(L, -3);
      lua_pop(L, 1);
      return;
    }
  }
  if (b->s->confirm && lua_type(L, -2) == LUA_TSTRING) { /* refused without a rev: the target said what it lacks */
    size_t id_len;
    const char *id = lua_tolstring(L, -2, &id_len);
    long e = couch_revmap_find(&b->s->lacks, id, id_len);
    if (e >= 0 && !has_rev(L, &b->s->lacks, (size_t)e, -1)) {
      lua_pop(L, 2);
      lua_pushnil(L);
      return;
    }
  }
  lua_pop(L, 1);
  size_t id_len;
  const char *id = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &id_len) : NULL;
  lua_Integer pos = id ? couch_refusals_by_id(&b->s->refusals, id, id_len) : 0;
  lua_pop(L, 1);
  if (pos) lua_rawgeti(L, S_ANSWER, pos);
  else lua_pushnil(L);
}

/* The error at e for the document at d is a missing_stub one (a server that refuses stubs
 * one document at a time) that fetching the document with its attachments can cure: keep d
 * in S_RESTUB and return 1; else 0. */
static int restub(lua_State *L, couch_repl_batch *b, int e, int d) {
  if (!lua_istable(L, e) || b->r->attachments) return 0;
  lua_getfield(L, e, "error");
  int stub = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "missing_stub") == 0;
  lua_pop(L, 1);
  if (!stub || b->s->cur.refetched) return 0;
  append(L, S_RESTUB, d);
  return 1;
}

/* Errors that name an id but no rev (pouchdb-server's) for an id sent with several revs
 * cannot say which one was refused: list those ids with the revs sent in b->s->amb, to ask
 * the target (_revs_diff) which it lacks; returns whether there are any. Costs a request
 * only in that case. */
typedef struct {
  const char *id, *rev; /* the documents' strings: no user code runs while they are used */
  size_t id_len, rev_len;
  lua_Integer pos;
} sent_rev;

static int sent_cmp(const void *a, const void *b) {
  const sent_rev *x = a, *y = b;
  int c = memcmp(x->id, y->id, x->id_len < y->id_len ? x->id_len : y->id_len);
  if (c == 0) c = (x->id_len > y->id_len) - (x->id_len < y->id_len);
  return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

static int find_ambiguous(lua_State *L, couch_repl_batch *b, int docs, lua_Integer from, lua_Integer n) {
  couch_revmap_clear(&b->s->amb);
  int top = lua_gettop(L);
  sent_rev *sent = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *sent, 0);
  size_t ns = 0;
  for (lua_Integer i = from; i < from + n; i++) {
    lua_rawgeti(L, docs, i);
    lua_getfield(L, -1, "id");
    lua_getfield(L, -2, "rev");
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
      sent_rev *s = &sent[ns++];
      s->id = lua_tolstring(L, -2, &s->id_len);
      s->rev = lua_tolstring(L, -1, &s->rev_len);
      s->pos = i;
    }
    lua_pop(L, 3);
  }
  if (ns > 1) qsort(sent, ns, sizeof *sent, sent_cmp); /* each id's revs together, in the order sent */
  for (size_t k = 0; k < ns;) {
    size_t end = k + 1;
    while (end < ns && sent[end].id_len == sent[k].id_len && memcmp(sent[end].id, sent[k].id, sent[k].id_len) == 0)
      end++;
    lua_Integer pos = end - k > 1 ? couch_refusals_by_id(&b->s->refusals, sent[k].id, sent[k].id_len) : 0;
    if (pos && lua_rawgeti(L, S_ANSWER, pos) == LUA_TTABLE && lua_getfield(L, -1, "rev") == LUA_TNIL) {
      couch_revmap_add_id(L, &b->s->amb, sent[k].id, sent[k].id_len);
      for (size_t j = k; j < end; j++) couch_revmap_add_rev(L, &b->s->amb, sent[j].rev, sent[j].rev_len);
    }
    lua_settop(L, top + 1);
    k = end;
  }
  lua_settop(L, top);
  return b->s->amb.n > 0;
}

/* The batch's C memory: its one release, when the batch is moved (the garbage collector,
 * which does not see this memory, may take its time) and from the state's __gc. */
static void release(couch_repl_batch_state *s) {
  free(s->work);
  s->work = NULL;
  s->nwork = s->capwork = 0;
  couch_refusals_free(&s->refusals);
  couch_repl_revmap *maps[] = {&s->revs, &s->missing, &s->again, &s->left, &s->amb, &s->lacks};
  for (int i = 0; i < 6; i++) couch_revmap_free(maps[i]);
  s->asked = NULL;
}

/* --- the steps ---------------------------------------------------------------------- */

static int chunk(lua_State *L, couch_repl_batch *b);
static int fetch(lua_State *L, couch_repl_batch *b);
static int fetch_k(lua_State *L, int status, lua_KContext ctx);
static int read_k(lua_State *L, int status, lua_KContext ctx);
static int open_next(lua_State *L, couch_repl_batch *b);
static int check(lua_State *L, couch_repl_batch *b);
static int read_from(lua_State *L, couch_repl_batch *b);
static int post_next(lua_State *L, couch_repl_batch *b);
static int match_from(lua_State *L, couch_repl_batch *b);

/* revs_diff answered: what the target lacks is what the batch moves, in chunks. */
static int diffed_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl_batch *b = BATCH(ctx);
  diffed(L, b);
  b->s->cursor = 0;
  return chunk(L, b);
}

static int waited_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return chunk(L, BATCH(ctx));
}

/* The next chunk of the batch's missing revisions, or the batch is done. */
static int chunk(lua_State *L, couch_repl_batch *b) {
  lua_settop(L, S_TOP);
  if (must_wait_for_estimate(b)) { /* another batch is asking its two revisions */
    couch_repl_slot_drop(L, b->r, &b->slot, SLOT_ALL); /* which needs a read slot */
    couch_repl_push(L, b->r->ref.idle);
    lua_getfield(L, -1, "wait");
    lua_insert(L, -2);
    lua_pushnumber(L, 0.05); /* woken by the estimate; the timeout re-checks the rest */
    lua_callk(L, 2, 0, CTX(b), waited_k);
    return waited_k(L, LUA_OK, CTX(b));
  }
  if (!next_chunk(L, b)) { /* the batch is moved (worker.c lets its write slot go) */
    couch_repl_slot_drop(L, b->r, &b->slot, SLOT_READ);
    release(b->s);
    return 0;
  }
  return couch_repl_slot_take(L, b->r, &b->slot, SLOT_READ, S_TOP, CTX(b), fetch_k);
}

static int bulk_got_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl_batch *b = BATCH(ctx);
  couch_repl *r = b->r;
  lua_Integer code = lua_tointeger(L, -1);
  if (code < 300) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING)
      note_answer_size(L, r, lua_rawlen(L, -1), b->s->bulk_get_revs);
    slice_top(L, r, "POST", "/_bulk_get", code);
    lua_replace(L, S_DOCS);
    lua_settop(L, S_TOP);
    return check(L, b);
  }
  lua_settop(L, S_TOP);
  r->no_bulk_get = 1; /* an old server: one GET per document from now on */
  wake_waiters(L, r);
  return open_next(L, b);
}

/* The chunk's revisions from the source: one _bulk_get. */
static int fetch(lua_State *L, couch_repl_batch *b) {
  couch_repl *r = b->r;
  lua_settop(L, S_TOP);
  if (asked_revs(b) == 0) {
    b->walk = 0;
    return couch_repl_slot_take(L, r, &b->slot, SLOT_WRITE, S_TOP, CTX(b), read_k);
  }
  if (r->no_bulk_get) return open_next(L, b);
  size_t count;
  couch_revmap_push_bulk_get(L, b->s->asked, b->s->asked_from, b->s->asked_to, &count);
  b->s->bulk_get_revs = (lua_Integer)count;
  int body = lua_gettop(L);
  const char *query = couch_repl_push_read_query(L, r->attachments, NULL, 0);
  return couch_repl_call(L, r,
                         &(couch_repl_req){.side = REPL_SOURCE, .method = "POST", .path = "/_bulk_get", .query = query,
                                           .body = body, .keep = S_TOP, .nresults = 2, .raw = 1, .idempotent = 1,
                                           .allow = BULK_GET_ALLOW},
                         CTX(b), bulk_got_k);
}

static int fetch_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return fetch(L, BATCH(ctx));
}

/* Push "/" .. the path of entry e's id in b->s->asked. */
static void push_entry_path(lua_State *L, couch_repl_batch *b, size_t e) {
  couch_repl_str id = b->s->asked->v[e].id;
  couch_repl_push_doc_path(L, couch_revmap_str(b->s->asked, id), id.len);
}

static int open_got_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl_batch *b = BATCH(ctx);
  push_entry_path(L, b, b->s->key - 1);
  lua_insert(L, -2);
  slice_top(L, b->r, "GET", lua_tostring(L, -2), 200); /* any other status raised already */
  int list = lua_gettop(L);
  couch_revmap_push_id(L, b->s->asked, b->s->key - 1); /* what it answers: the id asked */
  int id = lua_gettop(L);
  for (lua_Integer i = 1; lua_rawgeti(L, list, i) != LUA_TNIL; i++) {
    lua_pushvalue(L, id);
    lua_setfield(L, -2, "group");
    append(L, S_DOCS, lua_gettop(L));
    lua_pop(L, 1);
  }
  return open_next(L, b);
}

/* One open_revs GET per document (no _bulk_get, or the second try of a short answer). */
static int open_next(lua_State *L, couch_repl_batch *b) {
  couch_repl *r = b->r;
  lua_settop(L, S_TOP);
  while (b->s->key < b->s->asked_to && !b->s->asked->v[b->s->key].live) b->s->key++;
  if (b->s->key >= b->s->asked_to) return check(L, b);
  size_t e = b->s->key++;
  push_entry_path(L, b, e);
  const char *path = lua_tostring(L, -1);
  couch_revmap_push_revs_json(L, b->s->asked, e);
  size_t len;
  const char *revs = lua_tolstring(L, -1, &len);
  const char *query = couch_repl_push_read_query(L, r->attachments, revs, len);
  return couch_repl_call(L, r,
                         &(couch_repl_req){.side = REPL_SOURCE, .method = "GET", .path = path, .query = query,
                                           .keep = S_TOP, .nresults = 1, .raw = 1},
                         CTX(b), open_got_k);
}

/* Every revision asked: answered, or an error entry for the read walk to report. */
static int check(lua_State *L, couch_repl_batch *b) {
  lua_settop(L, S_TOP);
  int first_try = b->pass == 0;
  couch_repl_revmap *unanswered = first_try ? &b->s->again : &b->s->left;
  lua_Integer left = couch_account_reads(L, b->s->asked, b->s->asked_from, b->s->asked_to, S_DOCS, first_try ? 1 : b->pass,
                                         unanswered);
  if (left > 0 && first_try) {
    /* once more, one open_revs GET per document: a proxy or a struggling server may have
     * cut the answer short */
    b->s->asked = &b->s->again, b->s->asked_from = b->s->key = 0, b->s->asked_to = b->s->again.n;
    b->pass = (lua_Integer)lua_rawlen(L, S_DOCS) + 1;
    return open_next(L, b);
  }
  if (left > 0) couch_account_unanswered(L, unanswered, S_DOCS);
  lua_settop(L, S_TOP);
  b->walk = 0;
  return couch_repl_slot_take(L, b->r, &b->slot, SLOT_WRITE, S_TOP, CTX(b), read_k);
}

/* The chunk is read and a write slot is the batch's: the user's hooks, then the posts.
 * The hooks run under the write slot, not the read one, so that at concurrency 1 a
 * batch's hooks run only once the batches before it are written (a hook that fails ends
 * the job with everything before its batch on the target, as without fetch ahead). */
static int hooking_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return read_from(L, BATCH(ctx));
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl_batch *b = BATCH(ctx);
  return couch_repl_slot_take(L, b->r, &b->slot, SLOT_HOOK, S_TOP, ctx, hooking_k); /* never waits */
}

static int hooked_k(lua_State *L, int status, lua_KContext ctx);

static int read_failed_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return read_from(L, BATCH(ctx));
}

/* The walk over the sliced documents from b->walk: the readable ones go on, each revision
 * not read is a failure (a hook may yield, so the walk resumes where it stood). */
static int read_from(lua_State *L, couch_repl_batch *b) {
  couch_repl *r = b->r;
  lua_settop(L, S_TOP);
  lua_Integer n = (lua_Integer)lua_rawlen(L, S_DOCS);
  while (b->walk < n) {
    lua_Integer i = ++b->walk;
    lua_rawgeti(L, S_DOCS, i);
    int d = lua_gettop(L);
    lua_getfield(L, d, "json");
    lua_getfield(L, d, "error");
    if (lua_toboolean(L, d + 1)) {
      append(L, S_READABLE, d);
    } else if (lua_toboolean(L, d + 2)) {
      int e = d + 2;
      b->hold = 1; /* a revision not read is not on the target: the checkpoint must not pass it */
      b->failed++;
      push_runner(L, r, RUN_FAILED);
      lua_createtable(L, 0, 2);
      lua_getfield(L, e, "id");
      lua_setfield(L, -2, "id");
      lua_getfield(L, e, "rev");
      lua_setfield(L, -2, "rev");
      lua_createtable(L, 0, 2);
      lua_getfield(L, e, "error");
      lua_setfield(L, -2, "error");
      lua_getfield(L, e, "reason");
      lua_setfield(L, -2, "reason");
      lua_callk(L, 3, 0, CTX(b), read_failed_k);
    }
    lua_settop(L, S_TOP);
  }
  lua_Integer nread = (lua_Integer)lua_rawlen(L, S_READABLE); /* this chunk's */
  r->docs_read += nread;
  b->read += nread;
  if (!r->hooks) { /* nothing of the user's to run: the exact bytes go as they are */
    lua_pushvalue(L, S_READABLE);
    lua_pushinteger(L, 0);
    return hooked_k(L, LUA_OK, CTX(b));
  }
  push_runner(L, r, RUN_APPLY); /* -> the documents to write, the failures it counted */
  lua_pushvalue(L, S_READABLE);
  lua_callk(L, 2, 2, CTX(b), hooked_k);
  return hooked_k(L, LUA_OK, CTX(b));
}

static int newrev_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lua_settop(L, S_TOP);
  post_list(L, BATCH(ctx), S_DOCS, 1, 0);
  return post_next(L, BATCH(ctx));
}

/* The hooks' output: what to write, as new edits or as replicated revisions. */
static int hooked_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl_batch *b = BATCH(ctx);
  couch_repl_slot_drop(L, b->r, &b->slot, SLOT_HOOK);
  b->failed += lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_replace(L, S_DOCS);
  lua_settop(L, S_TOP);
  lua_Integer n = (lua_Integer)lua_rawlen(L, S_DOCS);
  if (n == 0) return chunk(L, b);
  if (b->r->new_revisions) { /* each document: a new edit on the target's rev */
    push_runner(L, b->r, RUN_NEW_REVISIONS);
    lua_pushvalue(L, S_DOCS);
    lua_callk(L, 2, 0, ctx, newrev_k);
    return newrev_k(L, LUA_OK, ctx);
  }
  /* documents a transform made up without a _rev are new edits; the rest keep theirs */
  lua_newtable(L);
  lua_newtable(L);
  int replicated = S_TOP + 1, fresh = S_TOP + 2;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, S_DOCS, i);
    lua_getfield(L, -1, "rev");
    append(L, lua_toboolean(L, -1) ? replicated : fresh, -2);
    lua_pop(L, 2);
  }
  /* a stack: the replicated ones go first */
  if (lua_rawlen(L, fresh) > 0) post_list(L, b, fresh, 1, 0);
  if (lua_rawlen(L, replicated) > 0) post_list(L, b, replicated, 0, 0);
  return post_next(L, b);
}

static int posted_k(lua_State *L, int status, lua_KContext ctx);

/* The next item of the work stack: one _bulk_docs; when none is left, the next chunk. */
static int post_next(lua_State *L, couch_repl_batch *b) {
  lua_settop(L, S_TOP);
  if (b->s->nwork == 0) return chunk(L, b);
  b->s->cur = b->s->work[--b->s->nwork];
  push_cur_list(L, b);
  push_bulk_docs_body(L, S_TOP + 1, b->s->cur.from, b->s->cur.n, b->s->cur.new_edits);
  int body = lua_gettop(L);
  return couch_repl_call(L, b->r,
                         &(couch_repl_req){.side = REPL_TARGET, .method = "POST", .path = "/_bulk_docs", .body = body,
                                           .keep = body, .nresults = 2, .idempotent = 1, .allow = BULK_DOCS_ALLOW},
                         CTX(b), posted_k);
}

static int refetched_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl_batch *b = BATCH(ctx);
  post_list(L, b, lua_gettop(L), b->s->cur.new_edits, 1);
  return post_next(L, b);
}

static int too_large_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return post_next(L, BATCH(ctx));
}

static int confirmed_k(lua_State *L, int status, lua_KContext ctx);

/* The _bulk_docs answer: 412 refetches, 413 splits, else match every document to it. */
static int posted_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl_batch *b = BATCH(ctx);
  couch_repl *r = b->r;
  int res = lua_gettop(L) - 1;
  lua_Integer code = lua_tointeger(L, res + 1);
  push_cur_list(L, b);
  int docs = lua_gettop(L);
  lua_Integer from = b->s->cur.from, n = b->s->cur.n;
  if (code == 412) {
    /* 412 missing_stub: attachment stubs (attachments = false) the target lacks. Once:
     * the same documents fetched with their attachments, then sent again. */
    const char *reason = "the target refused the batch (412)";
    if (lua_istable(L, res) && lua_getfield(L, res, "reason") == LUA_TSTRING) reason = lua_tostring(L, -1);
    if (b->s->cur.refetched || r->attachments)
      return couch_repl_answer_raise(L, r, REPL_TARGET, "POST", "/_bulk_docs", 412, "http", "missing_stub", "%s",
                                     reason);
    lua_pushcfunction(L, couch_repl_with_attachments);
    lua_pushvalue(L, S_JOB);
    if (from == 1 && n == (lua_Integer)lua_rawlen(L, docs)) lua_pushvalue(L, docs);
    else push_range(L, docs, from, from + n - 1);
    lua_callk(L, 2, 1, ctx, refetched_k);
    return refetched_k(L, LUA_OK, ctx);
  }
  if (code == 413) {
    if (n == 1) {
      b->failed++;
      push_runner(L, r, RUN_FAILED);
      lua_rawgeti(L, docs, from);
      lua_createtable(L, 0, 3);
      lua_pushliteral(L, "too_large");
      lua_setfield(L, -2, "error");
      lua_pushliteral(L, "the document is larger than the target accepts (413)");
      lua_setfield(L, -2, "reason");
      lua_pushinteger(L, 413);
      lua_setfield(L, -2, "status");
      lua_callk(L, 3, 0, ctx, too_large_k);
      return too_large_k(L, LUA_OK, ctx);
    }
    couch_repl_post cur = b->s->cur; /* a stack: the first half goes first */
    push_post(L, b, cur.list, cur.from + n / 2, n - n / 2, cur.new_edits, 0);
    push_post(L, b, cur.list, cur.from, n / 2, cur.new_edits, 0);
    return post_next(L, b);
  }
  check_bulk_docs(L, r, res, n, b->s->cur.new_edits, code);
  b->s->by_pos = (lua_Integer)lua_rawlen(L, res) == n;
  lua_pushvalue(L, res);
  lua_replace(L, S_ANSWER);
  couch_refusals_index(L, &b->s->refusals, S_ANSWER);
  b->s->confirm = 0;
  b->walk = 0;
  if (find_ambiguous(L, b, docs, from, n)) {
    int keep = lua_gettop(L);
    couch_revmap_push_revs_diff(L, &b->s->amb, 0, b->s->amb.n);
    return couch_repl_call(L, r,
                           &(couch_repl_req){.side = REPL_TARGET, .method = "POST", .path = "/_revs_diff",
                                             .body = keep + 1, .keep = keep, .nresults = 1, .idempotent = 1},
                           ctx, confirmed_k);
  }
  return match_from(L, b);
}

/* b->s->amb asked; the _revs_diff answer on top, id -> {missing = [revs]}: b->s->lacks, for
 * every id asked, the revs the target says it lacks. */
static int confirmed_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl_batch *b = BATCH(ctx);
  int res = lua_gettop(L);
  couch_revmap_clear(&b->s->lacks);
  for (size_t e = 0; e < b->s->amb.n; e++) {
    if (!b->s->amb.v[e].live) continue;
    couch_repl_str id = b->s->amb.v[e].id;
    couch_revmap_add_id(L, &b->s->lacks, couch_revmap_str(&b->s->amb, id), id.len);
    couch_revmap_push_id(L, &b->s->amb, e);
    if (lua_istable(L, res) && lua_rawget(L, res) == LUA_TTABLE && lua_getfield(L, -1, "missing") == LUA_TTABLE) {
      for (lua_Integer j = 1; lua_rawgeti(L, -1, j) != LUA_TNIL; j++) {
        size_t len;
        if (lua_type(L, -1) == LUA_TSTRING) { /* only a string can be a document's rev */
          const char *rev = lua_tolstring(L, -1, &len);
          couch_revmap_add_rev(L, &b->s->lacks, rev, len);
        }
        lua_pop(L, 1);
      }
    }
    lua_settop(L, res);
  }
  b->s->confirm = 1;
  return match_from(L, b);
}

static int match_failed_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return match_from(L, BATCH(ctx));
}

/* A document written: count it; the first one becomes the target's anchor (a new edit's
 * rev is the one the target made). */
static void written(lua_State *L, couch_repl_batch *b, int d, lua_Integer i) {
  couch_repl *r = b->r;
  r->docs_written++;
  b->written++;
  if (r->ref.anchor_id[REPL_TARGET] != LUA_NOREF) return;
  lua_getfield(L, d, "id");
  int id = lua_gettop(L);
  lua_pushnil(L);
  if (b->s->by_pos && lua_rawgeti(L, S_ANSWER, i) == LUA_TTABLE) {
    lua_getfield(L, -1, "rev");
    lua_replace(L, id + 1);
  }
  lua_settop(L, id + 1);
  if (lua_type(L, id + 1) != LUA_TSTRING && !b->s->cur.new_edits) {
    lua_getfield(L, d, "rev");
    lua_replace(L, id + 1);
  }
  set_anchor(L, r, REPL_TARGET, id, id + 1);
  lua_settop(L, id - 1);
}

/* The walk over the documents posted from b->walk: written, refused (a failure, whose
 * on_error hook may yield), or refused for a stub (fetched again with attachments). */
static int match_from(lua_State *L, couch_repl_batch *b) {
  couch_repl *r = b->r;
  lua_settop(L, S_TOP);
  push_cur_list(L, b);
  int docs = S_TOP + 1;
  lua_Integer n = b->s->cur.n;
  while (b->walk < n) {
    lua_Integer i = ++b->walk;
    lua_rawgeti(L, docs, b->s->cur.from + i - 1);
    int d = lua_gettop(L);
    push_doc_error(L, b, d, i);
    int e = lua_gettop(L);
    if (lua_toboolean(L, e) && restub(L, b, e, d)) {
      lua_settop(L, docs);
      continue;
    }
    if (lua_toboolean(L, e)) {
      b->failed++;
      push_runner(L, r, RUN_FAILED);
      lua_pushvalue(L, d);
      lua_pushvalue(L, e);
      lua_callk(L, 3, 0, CTX(b), match_failed_k);
    } else {
      written(L, b, d, i);
    }
    lua_settop(L, docs);
  }
  if (lua_rawlen(L, S_RESTUB) > 0) { /* fetched again with their attachments, sent again */
    lua_settop(L, S_TOP);
    lua_pushcfunction(L, couch_repl_with_attachments);
    lua_pushvalue(L, S_JOB);
    lua_pushvalue(L, S_RESTUB);
    lua_newtable(L);
    lua_replace(L, S_RESTUB);
    lua_callk(L, 2, 1, CTX(b), refetched_k);
    return refetched_k(L, LUA_OK, CTX(b));
  }
  return post_next(L, b);
}

static int diff_k(lua_State *L, int status, lua_KContext ctx);

/* (job, batch): move one batch of changes from the job's source to its target. */
int couch_repl_move_batch(lua_State *L) {
  couch_repl *r = couch_repl_check(L, S_JOB);
  couch_repl_batch *b = luaL_checkudata(L, S_BATCH, COUCH_REPL_BATCH_MT);
  lua_settop(L, S_BATCH);
  luaL_checkstack(L, S_TOP + 24, "moving a batch");
  b->r = r;
  lua_newtable(L); /* S_DOCS */
  lua_newtable(L); /* S_READABLE */
  lua_newtable(L); /* S_LISTS */
  lua_pushnil(L);  /* S_ANSWER */
  lua_newtable(L); /* S_RESTUB */
  couch_revmap_clear(&b->s->revs);
  couch_revmap_clear(&b->s->missing);
  b->s->cursor = 0;
  if (!collect_revs(L, b)) {
    release(b->s);
    return 0;
  }
  return couch_repl_slot_take(L, r, &b->slot, SLOT_READ, S_TOP, CTX(b), diff_k);
}

/* A read slot is the batch's: ask the target what it lacks (or skip that). */
static int diff_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl_batch *b = BATCH(ctx);
  couch_repl *r = b->r;
  lua_settop(L, S_TOP);
  if (skip_revs_diff(r)) {
    all_missing(b);
    return chunk(L, b);
  }
  couch_revmap_push_revs_diff(L, &b->s->revs, 0, b->s->revs.n);
  return couch_repl_call(L, r,
                         &(couch_repl_req){.side = REPL_TARGET, .method = "POST", .path = "/_revs_diff",
                                           .body = S_TOP + 1, .keep = S_TOP, .nresults = 1, .idempotent = 1},
                         CTX(b), diffed_k);
}

couch_repl_batch *couch_repl_batch_push(lua_State *L, couch_repl *r, lua_Integer index, int changes, int last_seq) {
  changes = lua_absindex(L, changes);
  last_seq = lua_absindex(L, last_seq);
  couch_repl_batch *b = lua_newuserdatauv(L, sizeof *b, BATCH_NUV);
  *b = (couch_repl_batch){.r = r, .index = index};
  b->s = lua_newuserdatauv(L, sizeof *b->s, 0);
  memset(b->s, 0, sizeof *b->s);
  luaL_setmetatable(L, BATCH_STATE_MT);
  lua_setiuservalue(L, -2, BATCH_STATE);
  lua_pushvalue(L, changes);
  lua_setiuservalue(L, -2, BATCH_CHANGES);
  lua_pushvalue(L, last_seq);
  lua_setiuservalue(L, -2, BATCH_LAST_SEQ);
  luaL_setmetatable(L, COUCH_REPL_BATCH_MT);
  return b;
}

static int batch_tostring(lua_State *L) {
  couch_repl_batch *b = luaL_checkudata(L, 1, COUCH_REPL_BATCH_MT);
  lua_pushfstring(L, "couch.replication_batch %I%s", (LUAI_UACINT)b->index, b->hold ? " (held)" : "");
  return 1;
}

static int state_gc(lua_State *L) {
  release(luaL_checkudata(L, 1, BATCH_STATE_MT));
  return 0;
}

void couch_batch_open(lua_State *L) {
  if (luaL_newmetatable(L, COUCH_REPL_BATCH_MT)) {
    lua_pushcfunction(L, batch_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, BATCH_STATE_MT)) {
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}
