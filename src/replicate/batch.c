/* couch._move_batch(job, batch): one batch of the native replication's protocol loop,
 *   revs_diff -> _bulk_get (or one open_revs GET per document where the server has no
 *   _bulk_get) -> exact-byte slices -> every revision asked accounted for (account.c;
 *   what a short answer left out is asked again with open_revs, what is still not read
 *   is a failure that holds the batch's checkpoint) -> hooks -> _bulk_docs (413 splits
 *   in halves; an answer that is not one result per document fails the batch).
 * An answer of the wrong shape is a structured error (answer.c), never a Lua one.
 * Every HTTP call goes through the database's Lua `request` method with lua_callk, so auth
 * and retries stay in one place and the call yields inside a task like a cosocket call.
 * The user's hooks and the failure bookkeeping stay in Lua: job:_apply_hooks(docs),
 * job:_failed(d, err), job:_new_revisions(docs).
 *
 * One continuation drives the steps: its context packs the step and a loop index, and
 * the batch's state lives in fixed stack slots, which a C function keeps across a yield. */
#include "replicate/batch.h"

#include "json/json.h"
#include "replicate/account.h"
#include "replicate/answer.h"

#include <lauxlib.h>
#include <string.h>

enum {
  S_JOB = 1, S_BATCH, S_COUCH, S_INFO,
  S_REVS,     /* id -> [rev]: what the batch's changes name */
  S_MISSING,  /* id -> [rev]: what the target lacks */
  S_DOCS,     /* sliced documents, then the hooks' output */
  S_READABLE, /* the sliced documents that carry a body */
  S_KEY,      /* the open_revs walk's position in S_MISSING */
  S_WORK,     /* stack of {docs, new_edits} still to post; 413 pushes halves */
  S_CUR,      /* the item being posted */
  S_BYREV, S_BYID,
  S_BYPOS,    /* the _bulk_docs answer when it holds one result per document, else nil */
  S_CONFIRM,  /* nil, or id -> {rev = true} the target lacks, for ids refused without a rev */
  S_PASS,     /* nil, or where in S_DOCS the answers of the second try begin */
  S_PENDING,  /* id -> [rev]: missing revisions not yet fetched (the batch goes in chunks) */
  S_RESTUB,   /* documents refused one by one for attachment stubs, to send again */
  S_TOP = S_RESTUB
};

enum {
  ST_START, ST_DIFFED, ST_FETCH, ST_BULK_GOT, ST_OPEN_NEXT, ST_OPEN_GOT, ST_READ, ST_HOOKED,
  ST_NEWREV_DONE, ST_POST_NEXT, ST_POSTED, ST_MATCH, ST_CHECK, ST_CONFIRMED, ST_REFETCHED, ST_CHUNK
};

#define CTX(st, i) ((lua_KContext)(((lua_KContext)(i) << 4) | (st)))

static int step_k(lua_State *L, int status, lua_KContext ctx);

/* info[name] = info[name] + n, with Lua's arithmetic (errors as the Lua code did). */
static void add_stat(lua_State *L, const char *name, lua_Integer n) {
  lua_getfield(L, S_INFO, name);
  lua_pushinteger(L, n);
  lua_arith(L, LUA_OPADD);
  lua_setfield(L, S_INFO, name);
}

static int job_flag(lua_State *L, const char *name) {
  lua_getfield(L, S_JOB, name);
  int b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

static void set_true(lua_State *L, const char *name) {
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, name);
}

static void append(lua_State *L, int list, int value) {
  lua_pushvalue(L, value);
  lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
}

/* Push job[side].request, job[side] (function and self, ready for two more args + opts). */
static void push_request(lua_State *L, const char *side, const char *method, const char *path) {
  lua_getfield(L, S_JOB, side);
  lua_getfield(L, -1, "request");
  lua_insert(L, -2);
  lua_pushstring(L, method);
  lua_pushstring(L, path);
}

/* Push job[name], job: a method call on the job, for the Lua half. */
static void push_job_method(lua_State *L, const char *name) {
  lua_getfield(L, S_JOB, name);
  lua_pushvalue(L, S_JOB);
}

/* Replace the answer text on top (to method path on the source) with the list
 * couch._slice_docs cuts out of it; an empty or unparsable answer is a structured error. */
static void slice_top(lua_State *L, const char *method, const char *path, lua_Integer status) {
  if (lua_type(L, -1) != LUA_TSTRING)
    couch_answer_raise(L, S_JOB, "source", method, path, status, "http", "empty_response",
                       "the source answered %s with an empty body", method);
  lua_getfield(L, S_COUCH, "_slice_docs");
  lua_insert(L, -2);
  lua_call(L, 1, 2);
  if (lua_isnil(L, -2))
    couch_answer_raise(L, S_JOB, "source", method, path, status, "json", NULL, "the source's answer to %s %s is %s",
                       method, path, lua_tostring(L, -1));
  lua_pop(L, 1);
}

/* Push "/" .. couch.doc_path(id) for the id at idx. */
static void push_doc_path(lua_State *L, int id) {
  lua_pushliteral(L, "/");
  lua_getfield(L, S_COUCH, "doc_path");
  lua_pushvalue(L, id);
  lua_call(L, 1, 1);
  lua_concat(L, 2);
}

/* Raise the structured error for a _changes answer the protocol does not allow. */
static int bad_changes(lua_State *L, const char *what) {
  lua_getfield(L, S_JOB, "doc_ids");
  lua_getfield(L, S_JOB, "selector");
  const char *method = lua_toboolean(L, -1) || lua_toboolean(L, -2) ? "POST" : "GET";
  return couch_answer_raise(L, S_JOB, "source", method, "/_changes", 200, "http", "bad_response",
                            "the source's _changes answer has %s", what);
}

/* The first revision of the run known to be on `side` (read from the source's changes; on
 * the target: said present by _revs_diff or written) becomes job._anchors[side]: each
 * checkpoint first asks that side whether it still has it (checkpoint.c), because a
 * database deleted and re-created under the job has lost it. */
static int has_anchor(lua_State *L, const char *side) {
  int has = 0;
  if (lua_getfield(L, S_JOB, "_anchors") == LUA_TTABLE) has = lua_getfield(L, -1, side) != LUA_TNIL, lua_pop(L, 1);
  lua_pop(L, 1);
  return has;
}

static void set_anchor(lua_State *L, const char *side, int id, int rev) {
  id = lua_absindex(L, id);
  rev = lua_absindex(L, rev);
  if (lua_type(L, id) != LUA_TSTRING || lua_type(L, rev) != LUA_TSTRING || has_anchor(L, side)) return;
  if (lua_getfield(L, S_JOB, "_anchors") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, S_JOB, "_anchors");
  }
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, id);
  lua_setfield(L, -2, "id");
  lua_pushvalue(L, rev);
  lua_setfield(L, -2, "rev");
  lua_setfield(L, -2, side);
  lua_pop(L, 1);
}

/* Push {docs = list, new_edits = b, refetched} onto the work stack. */
static void push_work_r(lua_State *L, int list, int new_edits, int refetched) {
  list = lua_absindex(L, list);
  lua_createtable(L, 3, 0);
  lua_pushvalue(L, list);
  lua_rawseti(L, -2, 1);
  lua_pushboolean(L, new_edits);
  lua_rawseti(L, -2, 2);
  lua_pushboolean(L, refetched);
  lua_rawseti(L, -2, 3);
  lua_rawseti(L, S_WORK, (lua_Integer)lua_rawlen(L, S_WORK) + 1);
}

static void push_work(lua_State *L, int list, int new_edits) { push_work_r(L, list, new_edits, 0); }

/* A new list of list[from..to] */
static void push_range(lua_State *L, int list, lua_Integer from, lua_Integer to) {
  lua_createtable(L, (int)(to - from + 1), 0);
  for (lua_Integer i = from; i <= to; i++) {
    lua_rawgeti(L, list, i);
    lua_rawseti(L, -2, i - from + 1);
  }
}

/* revs from the batch's changes; counts revisions_checked. Returns 0 when empty. */
static int collect_revs(lua_State *L) {
  lua_getfield(L, S_BATCH, "changes");
  int changes = lua_gettop(L);
  for (lua_Integer i = 1; lua_geti(L, changes, i) != LUA_TNIL; i++) {
    int ch = lua_gettop(L);
    if (!lua_istable(L, ch)) bad_changes(L, "a row that is not an object");
    if (lua_getfield(L, ch, "id") != LUA_TSTRING) bad_changes(L, "a row without an id");
    couch_json_newarray(L);
    int list = lua_gettop(L);
    if (lua_getfield(L, ch, "changes") != LUA_TTABLE) bad_changes(L, "a row without \"changes\"");
    int cl = lua_gettop(L);
    lua_Integer n = 0;
    for (lua_Integer j = 1; lua_geti(L, cl, j) != LUA_TNIL; j++) {
      if (!lua_istable(L, -1) || lua_getfield(L, -1, "rev") != LUA_TSTRING) bad_changes(L, "a change without a rev");
      set_anchor(L, "source", ch + 1, -1);
      lua_rawseti(L, list, ++n);
      lua_pop(L, 1);
    }
    lua_pop(L, 2); /* the nil, cl */
    lua_settable(L, S_REVS);
    add_stat(L, "revisions_checked", n);
    lua_pop(L, 1);
  }
  lua_settop(L, S_TOP);
  lua_pushnil(L);
  if (!lua_next(L, S_REVS)) return 0;
  lua_settop(L, S_TOP);
  return 1;
}

/* While nearly everything turns out missing (copying into an empty target) the _revs_diff
 * round trip buys nothing: skip it, as CouchDB's replicator does, and look again every
 * 8th batch. Writing a revision the target has is a no-op with new_edits=false, so a skip
 * can cost work but never correctness. */
static int skip_revs_diff(lua_State *L) {
  lua_getfield(L, S_JOB, "batches");
  lua_Integer batches = lua_tointeger(L, -1) + 1;
  lua_pop(L, 1);
  lua_pushinteger(L, batches);
  lua_setfield(L, S_JOB, "batches");
  lua_getfield(L, S_JOB, "missing_ratio");
  double ratio = lua_isnil(L, -1) ? 0 : lua_tonumber(L, -1);
  lua_pop(L, 1);
  return ratio >= 0.95 && batches % 8 != 0 && !job_flag(L, "new_revisions");
}

static void all_missing(lua_State *L) {
  lua_Integer found = 0;
  lua_pushnil(L);
  while (lua_next(L, S_REVS)) {
    found += (lua_Integer)lua_rawlen(L, -1);
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, S_MISSING);
  }
  add_stat(L, "missing_revisions_found", found);
}

/* The _revs_diff answer on top: fill S_MISSING, update the stats and the missing ratio. */
static void diffed(lua_State *L) {
  int res = lua_gettop(L);
  lua_Integer found = 0, checked = 0;
  if (lua_istable(L, res)) {
    lua_pushnil(L);
    while (lua_next(L, res)) {
      if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "missing");
        lua_Integer n = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
        if (n > 0) {
          lua_pushvalue(L, -3);
          lua_insert(L, -2);
          lua_rawset(L, S_MISSING);
          found += n;
        } else {
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
    }
  }
  lua_pushnil(L);
  while (lua_next(L, S_REVS)) {
    checked += (lua_Integer)lua_rawlen(L, -1);
    if (!has_anchor(L, "target")) { /* nothing of it missing: the target has it */
      lua_pushvalue(L, -2);
      if (lua_rawget(L, S_MISSING) == LUA_TNIL) {
        lua_rawgeti(L, -2, 1);
        set_anchor(L, "target", -4, -1);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  add_stat(L, "missing_revisions_found", found);
  double ratio = (double)found / (double)checked;
  lua_getfield(L, S_JOB, "missing_ratio");
  if (!lua_isnil(L, -1)) ratio = 0.5 * lua_tonumber(L, -1) + 0.5 * ratio;
  lua_pushnumber(L, ratio);
  lua_setfield(L, S_JOB, "missing_ratio");
  lua_settop(L, S_TOP);
}

/* Bytes in flight are bounded, not only documents (issue 11: 20 documents of 15 MB in one
 * batch peaked at 724 MB). The batch's missing revisions are fetched, hooked and written
 * in chunks of about job.max_batch_bytes of _bulk_get answer, the size of a revision
 * estimated from the answers so far (job._bytes_per_rev; a job's first chunks, before
 * any estimate, ask for two revisions). Small documents still go in one request
 * per batch. Whole ids go together, so accounting stays per id. */
static int has_pending(lua_State *L) {
  lua_pushnil(L);
  if (!lua_next(L, S_PENDING)) return 0;
  lua_pop(L, 2);
  return 1;
}

static lua_Integer chunk_revs(lua_State *L) {
  lua_getfield(L, S_JOB, "max_batch_bytes");
  double limit = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 8.0 * 1024 * 1024;
  lua_getfield(L, S_JOB, "_bytes_per_rev");
  double per = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0;
  lua_pop(L, 2);
  if (per <= 0) return 2;
  double k = limit / per;
  return k < 1 ? 1 : k > 1e9 ? 1000000000 : (lua_Integer)k;
}

/* Whether this batch must wait for the job's first estimate (another batch's chunk of two
 * revisions is on its way: the other workers' first batches would each send one more
 * _bulk_get and _bulk_docs). The first batch to get here sends that chunk. Servers
 * without _bulk_get (one GET per document anyway) make no estimate: nobody waits. */
static int must_wait_for_estimate(lua_State *L) {
  lua_getfield(L, S_JOB, "_bytes_per_rev");
  int known = lua_isnumber(L, -1);
  lua_pop(L, 1);
  if (known || job_flag(L, "no_bulk_get") || !has_pending(L)) return 0;
  if (!job_flag(L, "_probing")) {
    lua_pushboolean(L, 1);
    lua_setfield(L, S_JOB, "_probing");
    lua_pushboolean(L, 1);
    lua_setfield(L, S_BATCH, "_probe");
    return 0;
  }
  lua_getfield(L, S_BATCH, "_probe");
  int mine = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return !mine;
}

/* An answer of `bytes` for `n` revisions: update the estimate, leaning to the larger. */
static void note_answer_size(lua_State *L, size_t bytes, lua_Integer n) {
  if (n <= 0) return;
  double now = (double)bytes / (double)n;
  lua_getfield(L, S_JOB, "_bytes_per_rev");
  double old = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0;
  lua_pop(L, 1);
  double est = old <= 0 || now > old ? now : 0.75 * old + 0.25 * now;
  lua_pushnumber(L, est);
  lua_setfield(L, S_JOB, "_bytes_per_rev");
}

/* Move up to chunk_revs() revisions (whole ids, at least one) from S_PENDING into a fresh
 * S_MISSING and reset the chunk's slots. Returns 0 when nothing is left. */
static int next_chunk(lua_State *L) {
  lua_Integer budget = chunk_revs(L), taken = 0;
  lua_newtable(L);
  lua_replace(L, S_MISSING);
  for (;;) {
    lua_pushnil(L);
    if (!lua_next(L, S_PENDING)) break;
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    if (taken > 0 && taken + n > budget) {
      lua_pop(L, 2);
      break;
    }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, S_MISSING);
    lua_pushnil(L);
    lua_rawset(L, S_PENDING); /* removing the key just visited, then starting again */
    taken += n;
  }
  if (taken == 0) return 0;
  lua_newtable(L);
  lua_replace(L, S_DOCS);
  lua_newtable(L);
  lua_replace(L, S_READABLE);
  lua_newtable(L);
  lua_replace(L, S_WORK);
  lua_pushnil(L);
  lua_replace(L, S_KEY);
  lua_pushnil(L);
  lua_replace(L, S_PASS);
  lua_pushnil(L);
  lua_replace(L, S_CUR);
  return 1;
}

/* Push [{id =, rev =}, ...] for every missing revision; returns how many. */
static lua_Integer push_bulk_get_reqs(lua_State *L) {
  couch_json_newarray(L);
  int reqs = lua_gettop(L);
  lua_Integer n = 0;
  lua_pushnil(L);
  while (lua_next(L, S_MISSING)) {
    for (lua_Integer j = 1; lua_geti(L, -1, j) != LUA_TNIL; j++) {
      lua_createtable(L, 0, 2);
      lua_pushvalue(L, -4);
      lua_setfield(L, -2, "id");
      lua_insert(L, -2);
      lua_setfield(L, -2, "rev");
      lua_rawseti(L, reqs, ++n);
    }
    lua_pop(L, 2); /* the nil, the list */
  }
  return n;
}

/* Push the query every document read shares: revs, latest, attachments. */
static void push_read_query(lua_State *L) {
  lua_createtable(L, 0, 4);
  set_true(L, "revs");
  set_true(L, "latest");
  lua_getfield(L, S_JOB, "attachments");
  lua_setfield(L, -2, "attachments");
}

static void push_allow(lua_State *L, const int *codes, int n) {
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    lua_pushboolean(L, 1);
    lua_rawseti(L, -2, codes[i]);
  }
}

/* Push the _bulk_docs body: the documents' JSON texts as they are. */
static void push_bulk_docs_body(lua_State *L, int docs, int new_edits) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, new_edits ? "{\"new_edits\":true,\"docs\":[" : "{\"new_edits\":false,\"docs\":[");
  lua_Integer n = (lua_Integer)lua_rawlen(L, docs);
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, ',');
    lua_rawgeti(L, docs, i);
    lua_getfield(L, -1, "json");
    lua_remove(L, -2);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "document %d of the batch has no JSON text", (int)i);
    luaL_addvalue(&b);
  }
  luaL_addstring(&b, "]}");
  luaL_pushresult(&b);
}

/* The _bulk_docs answer at res to n documents must be a list of one result per document,
 * or (CouchDB with new_edits=false, fixture 112) of the failures only; anything else (an
 * object, a short list of successes) says nothing true about what was written: the batch
 * fails as a whole and nothing is counted written. */
static void check_bulk_docs(lua_State *L, int res, lua_Integer n, int new_edits, lua_Integer status) {
  if (!lua_istable(L, res) || couch_json_table_kind(L, res) != 1)
    couch_answer_raise(L, S_JOB, "target", "POST", "/_bulk_docs", status, "http", "bad_response",
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
      couch_answer_raise(L, S_JOB, "target", "POST", "/_bulk_docs", status, "http", "bad_response",
                         "result %d of the target's _bulk_docs answer names no document", (int)i);
  }
  if (count == n || (!new_edits && count < n && errors == count)) return;
  couch_answer_raise(L, S_JOB, "target", "POST", "/_bulk_docs", status, "http", "bad_response",
                     "the target answered _bulk_docs with %d results (%d errors) for %d documents", (int)count,
                     (int)errors, (int)n);
}

/* The _bulk_docs answer at res: index its errors by "id rev", and those naming no rev by
 * id (first one wins). */
static void index_errors(lua_State *L, int res) {
  lua_newtable(L);
  lua_replace(L, S_BYREV);
  lua_newtable(L);
  lua_replace(L, S_BYID);
  for (lua_Integer i = 1; lua_geti(L, res, i) != LUA_TNIL; i++) {
    int r = lua_gettop(L);
    lua_getfield(L, r, "error");
    int is_error = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (is_error) {
      lua_getfield(L, r, "id");
      int id = lua_gettop(L);
      lua_getfield(L, r, "rev");
      int has_rev = lua_toboolean(L, -1);
      if (has_rev) {
        lua_pushvalue(L, id);
        lua_pushliteral(L, " ");
        lua_pushvalue(L, -3);
        lua_concat(L, 3);
        lua_pushvalue(L, r);
        lua_settable(L, S_BYREV);
      }
      lua_pop(L, 1);
      lua_pushvalue(L, id);
      /* by id only the errors that name no rev: one that names a rev is that rev's alone
       * (CouchDB's), and must not blame its siblings */
      if (has_rev) {
        lua_pushnil(L);
      } else if (lua_gettable(L, S_BYID) == LUA_TNIL) {
        lua_pushvalue(L, id);
        lua_pushvalue(L, r);
        lua_settable(L, S_BYID);
      }
      lua_pop(L, 2);
    }
    lua_settop(L, r - 1);
  }
}

/* Push the error the target reported for document d, the i-th sent, or nil. With one
 * result per document the i-th result is d's when it names d's id: pouchdb-server's
 * errors name no rev, and blaming by id alone fails the siblings of a refused revision.
 * Else by id and rev, else by id. */
static void push_doc_error(lua_State *L, int d, lua_Integer i) {
  if (!lua_isnil(L, S_BYPOS)) {
    lua_rawgeti(L, S_BYPOS, i);
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
  if (lua_toboolean(L, -1)) {
    lua_pushvalue(L, -2);
    lua_pushliteral(L, " ");
    lua_pushvalue(L, -3);
    lua_concat(L, 3);
    if (lua_rawget(L, S_BYREV) != LUA_TNIL) {
      lua_replace(L, -3);
      lua_pop(L, 1);
      return;
    }
    lua_pop(L, 1);
  }
  if (!lua_isnil(L, S_CONFIRM)) { /* refused without a rev: the target said what it lacks */
    lua_pushvalue(L, -2);
    if (lua_rawget(L, S_CONFIRM) == LUA_TTABLE) {
      lua_pushvalue(L, -2);
      int lacks = lua_rawget(L, -2) != LUA_TNIL;
      lua_pop(L, 2);
      if (!lacks) {
        lua_pop(L, 2);
        lua_pushnil(L);
        return;
      }
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_rawget(L, S_BYID);
}

/* The error at e for the document at d is a missing_stub one (a server that refuses stubs
 * one document at a time) that fetching the document with its attachments can cure: keep d
 * in S_RESTUB and return 1; else 0. */
static int restub(lua_State *L, int e, int d) {
  if (!lua_istable(L, e) || job_flag(L, "attachments")) return 0;
  lua_getfield(L, e, "error");
  int stub = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "missing_stub") == 0;
  lua_pop(L, 1);
  lua_rawgeti(L, S_CUR, 3);
  int again = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!stub || again) return 0;
  append(L, S_RESTUB, d);
  return 1;
}

/* Errors that name an id but no rev (pouchdb-server's) for an id sent with several revs
 * cannot say which one was refused: push id -> [revs sent] of those ids and return 1, to
 * ask the target (_revs_diff) which it lacks; else push nothing and return 0. Costs a
 * request only in that case. */
static int push_ambiguous(lua_State *L, int docs) {
  lua_newtable(L);
  int sent = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, docs);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, docs, i);
    lua_getfield(L, -1, "id");
    lua_getfield(L, -2, "rev");
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
      lua_pushvalue(L, -2);
      if (lua_rawget(L, sent) == LUA_TNIL) {
        lua_pop(L, 1);
        couch_json_newarray(L);
        lua_pushvalue(L, -3);
        lua_pushvalue(L, -2);
        lua_rawset(L, sent);
      }
      lua_pushvalue(L, -2);
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    }
    lua_settop(L, sent);
  }
  couch_json_newobject(L);
  int amb = lua_gettop(L), any = 0;
  lua_pushnil(L);
  while (lua_next(L, sent)) {
    if (lua_rawlen(L, -1) > 1) {
      lua_pushvalue(L, -2);
      if (lua_rawget(L, S_BYID) == LUA_TTABLE && lua_getfield(L, -1, "rev") == LUA_TNIL) {
        lua_pushvalue(L, -4);
        lua_pushvalue(L, -4);
        lua_rawset(L, amb);
        any = 1;
      }
    }
    lua_settop(L, amb + 1);
  }
  lua_remove(L, sent);
  if (!any) lua_pop(L, 1);
  return any;
}

static int step_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int st = (int)(ctx & 15);
  lua_Integer idx = ctx >> 4;
  luaL_checkstack(L, 24, "moving a batch");
  for (;;) {
    switch (st) {
    case ST_START:
      if (!collect_revs(L)) return 0;
      if (skip_revs_diff(L)) {
        all_missing(L);
        lua_pushvalue(L, S_MISSING);
        lua_replace(L, S_PENDING);
        st = ST_CHUNK;
        continue;
      }
      lua_getfield(L, S_JOB, "target");
      lua_getfield(L, -1, "revs_diff");
      lua_insert(L, -2);
      lua_pushvalue(L, S_REVS);
      lua_callk(L, 2, 1, CTX(ST_DIFFED, 0), step_k);
      st = ST_DIFFED;
      continue;

    case ST_DIFFED:
      diffed(L);
      lua_pushvalue(L, S_MISSING);
      lua_replace(L, S_PENDING);
      st = ST_CHUNK;
      continue;

    case ST_CHUNK:
      lua_settop(L, S_TOP);
      if (must_wait_for_estimate(L)) { /* another batch is asking its two revisions */
        lua_getfield(L, S_COUCH, "sleep");
        lua_pushnumber(L, 0.005);
        lua_callk(L, 1, 0, CTX(ST_CHUNK, 0), step_k);
        continue;
      }
      if (!next_chunk(L)) return 0;
      lua_settop(L, S_TOP);
      st = ST_FETCH;
      continue;

    case ST_FETCH: {
      lua_settop(L, S_TOP);
      int reqs = S_TOP + 1;
      if (push_bulk_get_reqs(L) == 0) {
        st = ST_READ, idx = 0;
        continue;
      }
      if (job_flag(L, "no_bulk_get")) {
        st = ST_OPEN_NEXT;
        continue;
      }
      static const int allow[] = {400, 404, 405, 501};
      push_request(L, "source", "POST", "/_bulk_get");
      lua_createtable(L, 0, 5);
      push_read_query(L);
      lua_setfield(L, -2, "query");
      lua_createtable(L, 0, 1);
      lua_pushvalue(L, reqs);
      lua_setfield(L, -2, "docs");
      lua_setfield(L, -2, "body");
      set_true(L, "raw");
      set_true(L, "idempotent");
      push_allow(L, allow, 4);
      lua_setfield(L, -2, "allow");
      lua_callk(L, 4, 2, CTX(ST_BULK_GOT, 0), step_k);
      st = ST_BULK_GOT;
      continue;
    }

    case ST_BULK_GOT:
      if (lua_tointeger(L, -1) < 300) {
        lua_Integer code = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING) note_answer_size(L, lua_rawlen(L, -1), (lua_Integer)lua_rawlen(L, S_TOP + 1));
        slice_top(L, "POST", "/_bulk_get", code);
        lua_replace(L, S_DOCS);
        lua_settop(L, S_TOP);
        st = ST_CHECK;
        continue;
      }
      lua_settop(L, S_TOP);
      lua_pushboolean(L, 1); /* an old server: one GET per document from now on */
      lua_setfield(L, S_JOB, "no_bulk_get");
      st = ST_OPEN_NEXT;
      continue;

    case ST_OPEN_NEXT: {
      lua_settop(L, S_TOP);
      lua_pushvalue(L, S_KEY);
      if (!lua_next(L, S_MISSING)) {
        st = ST_CHECK;
        continue;
      }
      int id = S_TOP + 1, revs = S_TOP + 2;
      lua_pushvalue(L, id);
      lua_replace(L, S_KEY);
      push_request(L, "source", "GET", "/");
      lua_getfield(L, S_COUCH, "doc_path");
      lua_pushvalue(L, id);
      lua_call(L, 1, 1);
      lua_concat(L, 2);
      lua_createtable(L, 0, 2);
      push_read_query(L);
      lua_pushvalue(L, revs);
      couch_json_pushmeta(L, COUCH_JSON_ARRAY_MT);
      lua_setmetatable(L, -2);
      couch_json_encode(L, lua_gettop(L), NULL);
      lua_remove(L, -2);
      lua_setfield(L, -2, "open_revs");
      lua_setfield(L, -2, "query");
      set_true(L, "raw");
      lua_callk(L, 4, 1, CTX(ST_OPEN_GOT, 0), step_k);
      st = ST_OPEN_GOT;
      continue;
    }

    case ST_OPEN_GOT: {
      push_doc_path(L, S_KEY);
      lua_insert(L, -2);
      slice_top(L, "GET", lua_tostring(L, -2), 200); /* any other status raised already */
      int list = lua_gettop(L);
      for (lua_Integer i = 1; lua_rawgeti(L, list, i) != LUA_TNIL; i++) {
        lua_pushvalue(L, S_KEY); /* what it answers: the id asked */
        lua_setfield(L, -2, "group");
        append(L, S_DOCS, lua_gettop(L));
        lua_pop(L, 1);
      }
      st = ST_OPEN_NEXT;
      continue;
    }

    case ST_CHECK: {
      /* every revision asked: answered, or an error entry for ST_READ to report */
      lua_settop(L, S_TOP);
      int first_try = lua_isnil(L, S_PASS);
      lua_Integer left = couch_account_reads(L, S_MISSING, S_DOCS, first_try ? 1 : lua_tointeger(L, S_PASS));
      if (left > 0 && first_try) {
        /* once more, one open_revs GET per document: a proxy or a struggling server may
         * have cut the answer short */
        lua_replace(L, S_MISSING);
        lua_pushinteger(L, (lua_Integer)lua_rawlen(L, S_DOCS) + 1);
        lua_replace(L, S_PASS);
        lua_pushnil(L);
        lua_replace(L, S_KEY);
        st = ST_OPEN_NEXT;
        continue;
      }
      if (left > 0) couch_account_unanswered(L, -1, S_DOCS);
      lua_settop(L, S_TOP);
      st = ST_READ, idx = 0;
      continue;
    }

    case ST_READ: {
      lua_settop(L, S_TOP);
      lua_Integer n = (lua_Integer)lua_rawlen(L, S_DOCS);
      for (lua_Integer i = idx + 1; i <= n; i++) {
        lua_rawgeti(L, S_DOCS, i);
        int d = lua_gettop(L);
        lua_getfield(L, d, "json");
        lua_getfield(L, d, "error");
        if (lua_toboolean(L, d + 1)) {
          append(L, S_READABLE, d);
        } else if (lua_toboolean(L, d + 2)) {
          int e = d + 2;
          /* a revision not read is not on the target: the checkpoint must not pass it */
          lua_pushboolean(L, 1);
          lua_setfield(L, S_BATCH, "hold");
          push_job_method(L, "_failed");
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
          lua_callk(L, 3, 0, CTX(ST_READ, i), step_k);
        }
        lua_settop(L, S_TOP);
      }
      add_stat(L, "docs_read", (lua_Integer)lua_rawlen(L, S_READABLE));
      push_job_method(L, "_apply_hooks");
      lua_pushvalue(L, S_READABLE);
      lua_callk(L, 2, 1, CTX(ST_HOOKED, 0), step_k);
      st = ST_HOOKED;
      continue;
    }

    case ST_HOOKED: {
      lua_replace(L, S_DOCS);
      lua_settop(L, S_TOP);
      lua_Integer n = (lua_Integer)lua_rawlen(L, S_DOCS);
      if (n == 0) {
        st = ST_CHUNK;
        continue;
      }
      if (job_flag(L, "new_revisions")) { /* each document: a new edit on the target's rev */
        push_job_method(L, "_new_revisions");
        lua_pushvalue(L, S_DOCS);
        lua_callk(L, 2, 0, CTX(ST_NEWREV_DONE, 0), step_k);
        st = ST_NEWREV_DONE;
        continue;
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
      if (lua_rawlen(L, fresh) > 0) push_work(L, fresh, 1);
      if (lua_rawlen(L, replicated) > 0) push_work(L, replicated, 0);
      st = ST_POST_NEXT;
      continue;
    }

    case ST_REFETCHED: {
      int list = lua_gettop(L);
      lua_rawgeti(L, S_CUR, 2);
      push_work_r(L, list, lua_toboolean(L, -1), 1);
      st = ST_POST_NEXT;
      continue;
    }

    case ST_NEWREV_DONE:
      push_work(L, S_DOCS, 1);
      st = ST_POST_NEXT;
      continue;

    case ST_POST_NEXT: {
      lua_settop(L, S_TOP);
      lua_Integer n = (lua_Integer)lua_rawlen(L, S_WORK);
      if (n == 0) {
        st = ST_CHUNK;
        continue;
      }
      lua_rawgeti(L, S_WORK, n);
      lua_replace(L, S_CUR);
      lua_pushnil(L);
      lua_rawseti(L, S_WORK, n);
      lua_rawgeti(L, S_CUR, 1);
      lua_rawgeti(L, S_CUR, 2);
      int new_edits = lua_toboolean(L, -1);
      lua_pop(L, 1);
      push_bulk_docs_body(L, S_TOP + 1, new_edits);
      int body = lua_gettop(L);
      static const int allow[] = {413, 412};
      push_request(L, "target", "POST", "/_bulk_docs");
      lua_createtable(L, 0, 3);
      lua_pushvalue(L, body);
      lua_setfield(L, -2, "body");
      set_true(L, "idempotent");
      push_allow(L, allow, 2);
      lua_setfield(L, -2, "allow");
      lua_callk(L, 4, 2, CTX(ST_POSTED, 0), step_k);
      st = ST_POSTED;
      continue;
    }

    case ST_POSTED: {
      int res = lua_gettop(L) - 1;
      lua_Integer code = lua_tointeger(L, res + 1);
      lua_rawgeti(L, S_CUR, 1);
      int docs = lua_gettop(L);
      lua_Integer n = (lua_Integer)lua_rawlen(L, docs);
      if (code == 412) {
        /* 412 missing_stub: attachment stubs (attachments = false) the target lacks. Once:
         * the same documents fetched with their attachments, then sent again. */
        lua_rawgeti(L, S_CUR, 3);
        int again = lua_toboolean(L, -1);
        lua_pop(L, 1);
        const char *reason = "the target refused the batch (412)";
        if (lua_istable(L, res) && lua_getfield(L, res, "reason") == LUA_TSTRING) reason = lua_tostring(L, -1);
        if (again || job_flag(L, "attachments"))
          return couch_answer_raise(L, S_JOB, "target", "POST", "/_bulk_docs", 412, "http", "missing_stub", "%s",
                                    reason);
        push_job_method(L, "_with_attachments");
        lua_pushvalue(L, docs);
        lua_callk(L, 2, 1, CTX(ST_REFETCHED, 0), step_k);
        st = ST_REFETCHED;
        continue;
      }
      if (code == 413) {
        if (n == 1) {
          push_job_method(L, "_failed");
          lua_rawgeti(L, docs, 1);
          lua_createtable(L, 0, 3);
          lua_pushliteral(L, "too_large");
          lua_setfield(L, -2, "error");
          lua_pushliteral(L, "the document is larger than the target accepts (413)");
          lua_setfield(L, -2, "reason");
          lua_pushinteger(L, 413);
          lua_setfield(L, -2, "status");
          lua_callk(L, 3, 0, CTX(ST_POST_NEXT, 0), step_k);
        } else {
          lua_rawgeti(L, S_CUR, 2);
          int new_edits = lua_toboolean(L, -1);
          lua_pop(L, 1);
          push_range(L, docs, n / 2 + 1, n); /* a stack: the first half goes first */
          push_work(L, lua_gettop(L), new_edits);
          push_range(L, docs, 1, n / 2);
          push_work(L, lua_gettop(L), new_edits);
        }
        st = ST_POST_NEXT;
        continue;
      }
      lua_rawgeti(L, S_CUR, 2);
      check_bulk_docs(L, res, n, lua_toboolean(L, -1), code);
      lua_pop(L, 1);
      if ((lua_Integer)lua_rawlen(L, res) == n) lua_pushvalue(L, res);
      else lua_pushnil(L);
      lua_replace(L, S_BYPOS);
      index_errors(L, res);
      lua_pushnil(L);
      lua_replace(L, S_CONFIRM);
      if (push_ambiguous(L, docs)) {
        lua_pushvalue(L, -1);
        lua_replace(L, S_CONFIRM); /* id -> [revs] until the answer comes */
        int amb = lua_gettop(L);
        lua_getfield(L, S_JOB, "target");
        lua_getfield(L, -1, "revs_diff");
        lua_insert(L, -2);
        lua_pushvalue(L, amb);
        lua_callk(L, 2, 1, CTX(ST_CONFIRMED, 0), step_k);
        st = ST_CONFIRMED;
        continue;
      }
      st = ST_MATCH, idx = 0;
      continue;
    }

    case ST_CONFIRMED: {
      /* S_CONFIRM: id -> [revs] asked; the answer on top: id -> {missing = [revs]} */
      int res = lua_gettop(L);
      lua_newtable(L);
      int conf = res + 1;
      lua_pushnil(L);
      while (lua_next(L, S_CONFIRM)) {
        lua_pop(L, 1);
        lua_newtable(L); /* rev -> true: not on the target */
        int set = lua_gettop(L);
        lua_pushvalue(L, set - 1);
        if (lua_istable(L, res) && lua_rawget(L, res) == LUA_TTABLE && lua_getfield(L, -1, "missing") == LUA_TTABLE) {
          for (lua_Integer j = 1; lua_rawgeti(L, -1, j) != LUA_TNIL; j++) {
            lua_pushboolean(L, 1);
            lua_rawset(L, set);
          }
        }
        lua_settop(L, set);
        lua_pushvalue(L, set - 1);
        lua_insert(L, -2);
        lua_rawset(L, conf);
      }
      lua_pushvalue(L, conf);
      lua_replace(L, S_CONFIRM);
      st = ST_MATCH, idx = 0;
      continue;
    }

    case ST_MATCH: {
      lua_settop(L, S_TOP);
      lua_rawgeti(L, S_CUR, 1);
      int docs = S_TOP + 1;
      lua_Integer n = (lua_Integer)lua_rawlen(L, docs);
      for (lua_Integer i = idx + 1; i <= n; i++) {
        lua_rawgeti(L, docs, i);
        int d = lua_gettop(L);
        push_doc_error(L, d, i);
        if (lua_toboolean(L, -1) && restub(L, lua_gettop(L), d)) {
          lua_settop(L, docs);
          continue;
        }
        if (lua_toboolean(L, -1)) {
          int e = lua_gettop(L);
          push_job_method(L, "_failed");
          lua_pushvalue(L, d);
          lua_pushvalue(L, e);
          lua_callk(L, 3, 0, CTX(ST_MATCH, i), step_k);
        } else {
          add_stat(L, "docs_written", 1);
          if (!has_anchor(L, "target")) { /* a new edit's rev is the one the target made */
            lua_getfield(L, d, "id");
            int idi = lua_gettop(L);
            lua_pushnil(L);
            if (!lua_isnil(L, S_BYPOS) && lua_rawgeti(L, S_BYPOS, i) == LUA_TTABLE) {
              lua_getfield(L, -1, "rev");
              lua_replace(L, idi + 1);
            }
            lua_settop(L, idi + 1);
            lua_rawgeti(L, S_CUR, 2);
            int new_edits = lua_toboolean(L, -1);
            lua_pop(L, 1);
            if (lua_type(L, idi + 1) != LUA_TSTRING && !new_edits) {
              lua_getfield(L, d, "rev");
              lua_replace(L, idi + 1);
            }
            set_anchor(L, "target", idi, idi + 1);
          }
        }
        lua_settop(L, docs);
      }
      if (lua_rawlen(L, S_RESTUB) > 0) { /* fetched again with their attachments, sent again */
        lua_settop(L, S_TOP);
        push_job_method(L, "_with_attachments");
        lua_pushvalue(L, S_RESTUB);
        lua_newtable(L);
        lua_replace(L, S_RESTUB);
        lua_callk(L, 2, 1, CTX(ST_REFETCHED, 0), step_k);
        st = ST_REFETCHED;
        continue;
      }
      st = ST_POST_NEXT;
      continue;
    }

    default:
      return luaL_error(L, "move_batch: bad step %d", st);
    }
  }
}

/* couch._move_batch(job, batch): move one batch of changes from job.source to job.target. */
static int l_move_batch(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  luaL_checkstack(L, S_TOP + 24, "moving a batch");
  lua_pushvalue(L, lua_upvalueindex(1)); /* S_COUCH */
  lua_getfield(L, S_JOB, "info");
  couch_json_newobject(L); /* S_REVS */
  lua_newtable(L);         /* S_MISSING */
  lua_newtable(L);         /* S_DOCS */
  lua_newtable(L);         /* S_READABLE */
  lua_pushnil(L);          /* S_KEY */
  lua_newtable(L);         /* S_WORK */
  lua_pushnil(L);          /* S_CUR */
  lua_pushnil(L);          /* S_BYREV */
  lua_pushnil(L);          /* S_BYID */
  lua_pushnil(L);          /* S_BYPOS */
  lua_pushnil(L);          /* S_CONFIRM */
  lua_pushnil(L);          /* S_PASS */
  lua_newtable(L);         /* S_PENDING */
  lua_newtable(L);         /* S_RESTUB */
  return step_k(L, LUA_OK, CTX(ST_START, 0));
}

void couch_batch_open(lua_State *L) {
  lua_pushvalue(L, -1); /* the couch table: doc_path and _slice_docs are looked up there */
  lua_pushcclosure(L, l_move_batch, 1);
  lua_setfield(L, -2, "_move_batch");
}
