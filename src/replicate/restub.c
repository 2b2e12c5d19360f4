/* (job, docs) -> docs: the refetch behind attachments = false. Such a replication leaves
 * attachment stubs in the documents, which a target without those attachments refuses
 * (412 missing_stub, for the batch or one document at a time): the refused revisions are
 * fetched again with their attachments inlined, and sent again (batch.c). A document a hook
 * made keeps what the hook made of it; only its stubs are filled in, by attachment name.
 * Steps, each its own continuation (the context is the job's struct; the stack: the job,
 * the documents, the requests, the answers by "id rev", and where the GET walk stands):
 *   one _bulk_get of every revision (attachments=true) -> merge
 *   or, on a server without _bulk_get, one open_revs GET per revision -> merge.
 * Both go to the request layer through couch_repl_call (call.c). */
#include "replicate/batch.h"

#include "replicate/call.h"
#include "error.h"
#include "json/json.h"
#include "replicate/slice.h"

#include <lauxlib.h>

enum { A_JOB = 1, A_DOCS, A_REQS, A_BY, A_WALK, A_TOP = A_WALK };

/* The answer text on top (body, status): every document it holds, by "id rev". */
static void take(lua_State *L) {
  lua_pop(L, 1);
  if (lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    return;
  }
  lua_pushcfunction(L, couch_slice_docs);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  int list = lua_gettop(L);
  for (lua_Integer i = 1; lua_istable(L, list) && lua_rawgeti(L, list, i) != LUA_TNIL; i++) {
    int e = lua_gettop(L);
    lua_getfield(L, e, "json");
    lua_getfield(L, e, "id");
    lua_getfield(L, e, "rev");
    if (lua_toboolean(L, e + 1) && lua_type(L, e + 2) == LUA_TSTRING && lua_type(L, e + 3) == LUA_TSTRING) {
      lua_pushliteral(L, " ");
      lua_insert(L, -2);
      lua_concat(L, 3);
      lua_pushvalue(L, e);
      lua_rawset(L, A_BY);
    }
    lua_settop(L, e - 1);
  }
  lua_settop(L, list - 1);
}

/* Fill the stubs of the hooked document d (its `doc`) from the fetched one f. */
static void fill_stubs(lua_State *L, int d, int f) {
  lua_getfield(L, f, "json");
  size_t len;
  const char *text = lua_tolstring(L, -1, &len);
  if (!couch_json_decode(L, text, len)) {
    couch_error_push(L, "json", "a document fetched again is not JSON: %s", lua_tostring(L, -1));
    lua_error(L);
  }
  int full = lua_gettop(L);
  if (lua_istable(L, full)) lua_getfield(L, full, "_attachments");
  else lua_pushnil(L);
  int atts = lua_gettop(L);
  lua_getfield(L, d, "doc");
  int doc = lua_gettop(L);
  lua_getfield(L, doc, "_attachments");
  int mine = lua_gettop(L);
  if (lua_istable(L, mine) && lua_istable(L, atts)) {
    lua_pushnil(L);
    while (lua_next(L, mine)) {
      int k = lua_gettop(L) - 1, stub = 0;
      if (lua_istable(L, k + 1)) {
        lua_getfield(L, k + 1, "stub");
        stub = lua_toboolean(L, -1);
      }
      lua_settop(L, k);
      if (stub) {
        lua_pushvalue(L, k);
        if (lua_rawget(L, atts) != LUA_TNIL) {
          lua_pushvalue(L, k);
          lua_insert(L, -2);
          lua_rawset(L, mine); /* the key visited: replacing its value is allowed */
        } else {
          lua_pop(L, 1);
        }
      }
    }
  }
  couch_json_encode(L, doc, NULL);
  lua_setfield(L, d, "json");
  lua_settop(L, full - 2);
}

/* Every document: the fetched one, the hooked one with its stubs filled, or as it was. */
static int merge(lua_State *L) {
  lua_settop(L, A_TOP);
  lua_Integer n = (lua_Integer)lua_rawlen(L, A_DOCS);
  lua_createtable(L, (int)n, 0);
  int out = lua_gettop(L);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, A_DOCS, i);
    int d = lua_gettop(L);
    lua_getfield(L, d, "id");
    lua_getfield(L, d, "rev");
    lua_pushnil(L);
    int f = d + 3;
    if (lua_type(L, d + 1) == LUA_TSTRING && lua_type(L, d + 2) == LUA_TSTRING) {
      lua_pushvalue(L, d + 1);
      lua_pushliteral(L, " ");
      lua_pushvalue(L, d + 2);
      lua_concat(L, 3);
      lua_rawget(L, A_BY);
      lua_replace(L, f);
    }
    lua_getfield(L, d, "doc");
    int hooked = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!lua_isnil(L, f) && !hooked) {
      lua_pushvalue(L, f);
    } else {
      if (!lua_isnil(L, f)) fill_stubs(L, d, f);
      lua_pushvalue(L, d);
    }
    lua_rawseti(L, out, i);
    lua_settop(L, out);
  }
  return 1;
}

static int got_one_k(lua_State *L, int status, lua_KContext ctx);

/* The next open_revs GET of the walk (a server without _bulk_get), or the merge. */
static int get_next(lua_State *L, couch_repl *r) {
  lua_settop(L, A_TOP);
  lua_Integer i = lua_tointeger(L, A_WALK) + 1;
  lua_pushinteger(L, i);
  lua_replace(L, A_WALK);
  if (lua_rawgeti(L, A_REQS, i) == LUA_TNIL) return merge(L);
  int req = lua_gettop(L);
  lua_getfield(L, req, "id");
  size_t len;
  const char *id = lua_tolstring(L, -1, &len);
  couch_repl_push_doc_path(L, id, len);
  int path = lua_gettop(L);
  couch_json_newarray(L); /* open_revs = [rev] */
  lua_getfield(L, req, "rev");
  lua_rawseti(L, -2, 1);
  size_t revs_len;
  const char *revs = couch_json_encode(L, lua_gettop(L), &revs_len);
  const char *query = couch_repl_push_read_query(L, 1, revs, revs_len);
  return couch_repl_call(L, r,
                         &(couch_repl_req){.side = REPL_SOURCE, .method = "GET", .path = lua_tostring(L, path),
                                           .query = query, .keep = path, .nresults = 2, .raw = 1},
                         (lua_KContext)r, got_one_k);
}

static int got_one_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  take(L);
  return get_next(L, (couch_repl *)ctx);
}

static int got_bulk_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  take(L);
  return merge(L);
}

int couch_repl_with_attachments(lua_State *L) {
  couch_repl *r = couch_repl_check(L, A_JOB);
  luaL_checktype(L, A_DOCS, LUA_TTABLE);
  lua_settop(L, A_DOCS);
  luaL_checkstack(L, 24, "fetching attachments");
  couch_json_newarray(L); /* A_REQS: {id, rev} of every revision that names both */
  lua_Integer n = 0;
  for (lua_Integer i = 1; lua_rawgeti(L, A_DOCS, i) != LUA_TNIL; i++) {
    lua_getfield(L, -1, "id");
    lua_getfield(L, -2, "rev");
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
      lua_createtable(L, 0, 2);
      lua_insert(L, -2);
      lua_setfield(L, -2, "rev");
      lua_insert(L, -2);
      lua_setfield(L, -2, "id");
      lua_rawseti(L, A_REQS, ++n);
    }
    lua_settop(L, A_REQS);
  }
  lua_settop(L, A_REQS);
  lua_newtable(L);        /* A_BY */
  lua_pushinteger(L, 0);  /* A_WALK */
  if (r->no_bulk_get) return get_next(L, r);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, A_REQS);
  lua_setfield(L, -2, "docs");
  int body = lua_gettop(L);
  const char *query = couch_repl_push_read_query(L, 1, NULL, 0);
  return couch_repl_call(L, r,
                         &(couch_repl_req){.side = REPL_SOURCE, .method = "POST", .path = "/_bulk_get", .query = query,
                                           .body = body, .keep = A_TOP, .nresults = 2, .raw = 1, .idempotent = 1},
                         (lua_KContext)r, got_bulk_k);
}
