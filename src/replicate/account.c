/* Every revision the engine asks the source for must come back as a document or as an
 * error: a server (or a proxy) that answers fewer revisions than asked, a document under
 * another id, or {"missing": rev} must never turn into "nothing to do" while the
 * checkpoint moves past it. The answers to one id are matched to the revisions asked
 * for it: exact revs first, then the rest by count, because `latest=true` may answer a
 * newer leaf than the one asked and pouchdb-server's errors name no rev. */
#include "replicate/account.h"

#include "json/json.h"

#include <lauxlib.h>

/* Push {error = {id =, rev =, error =, reason =}} (id / rev: stack values, 0 for none). */
static void push_error_entry(lua_State *L, int id, int rev, const char *code, const char *reason) {
  lua_createtable(L, 0, 1);
  lua_createtable(L, 0, 4);
  if (id) {
    lua_pushvalue(L, id);
    lua_setfield(L, -2, "id");
  }
  if (rev) {
    lua_pushvalue(L, rev);
    lua_setfield(L, -2, "rev");
  }
  lua_pushstring(L, code);
  lua_setfield(L, -2, "error");
  lua_pushstring(L, reason);
  lua_setfield(L, -2, "reason");
  lua_setfield(L, -2, "error");
}

/* The string at idx, or def: a hostile answer may put anything anywhere. */
static const char *str_or(lua_State *L, int idx, const char *def) {
  return lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : def;
}

/* The entry at e (not an "ok" document) as an error entry; pushes it. */
static void normalize_entry(lua_State *L, int e) {
  int top = lua_gettop(L);
  lua_getfield(L, e, "group");
  int group = top + 1;
  lua_getfield(L, e, "entry");
  int ent = top + 2;
  if (lua_istable(L, ent)) {
    lua_getfield(L, ent, "missing");
    if (lua_type(L, -1) == LUA_TSTRING) {
      push_error_entry(L, group, top + 3, "not_found", "the source does not have this revision (missing)");
      goto done;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, ent, "error") == LUA_TTABLE) { /* CouchDB: {id, rev, error, reason} */
      lua_getfield(L, -1, "id");
      if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushvalue(L, group);
      }
      lua_getfield(L, -2, "rev");
      lua_getfield(L, -3, "error");
      lua_getfield(L, -4, "reason");
      push_error_entry(L, top + 4, lua_type(L, top + 5) == LUA_TSTRING ? top + 5 : 0, str_or(L, top + 6, "error"),
                       str_or(L, top + 7, ""));
      goto done;
    }
    if (lua_type(L, -1) == LUA_TSTRING) { /* pouchdb-server: {error, reason}, no id, no rev */
      lua_getfield(L, ent, "reason");
      push_error_entry(L, group, 0, lua_tostring(L, top + 3), str_or(L, top + 4, ""));
      goto done;
    }
  }
  push_error_entry(L, group, 0, "bad_response", "an answer of no shape the replication protocol knows");
done:
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
}

/* Push the rev an entry answers (the document's, or the error's), or nil. */
static void push_answered_rev(lua_State *L, int e) {
  if (lua_getfield(L, e, "error") == LUA_TTABLE) {
    lua_getfield(L, -1, "rev");
    lua_remove(L, -2);
  } else {
    lua_pop(L, 1);
    lua_getfield(L, e, "rev");
  }
}

static int in_list(lua_State *L, int list, int v) {
  for (lua_Integer i = 1; lua_rawgeti(L, list, i) != LUA_TNIL; i++) {
    int eq = lua_rawequal(L, -1, v);
    lua_pop(L, 1);
    if (eq) return 1;
  }
  lua_pop(L, 1);
  return 0;
}

/* Match the answers (indexes into docs, list at idxs) to the revisions asked (list at
 * revs); append the revisions left over to unanswered[id]. */
static lua_Integer pair_id(lua_State *L, int id, int revs, int idxs, int docs, int unanswered) {
  int top = lua_gettop(L);
  lua_newtable(L); /* rev -> true: answered */
  int matched = top + 1;
  lua_newtable(L); /* answers naming no asked rev, in order */
  int rest = top + 2;
  lua_Integer nrest = 0, left = 0;
  for (lua_Integer i = 1; idxs && lua_rawgeti(L, idxs, i) != LUA_TNIL; i++) {
    lua_rawget(L, docs);
    int e = lua_gettop(L);
    push_answered_rev(L, e);
    if (lua_type(L, -1) == LUA_TSTRING && in_list(L, revs, e + 1)) {
      lua_pushvalue(L, -1);
      if (lua_rawget(L, matched) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
        lua_rawset(L, matched);
        lua_settop(L, e - 1);
        continue;
      }
      lua_pop(L, 1);
    }
    lua_settop(L, e);
    lua_rawseti(L, rest, ++nrest);
  }
  lua_Integer next_rest = 1;
  for (lua_Integer j = 1; lua_rawgeti(L, revs, j) != LUA_TNIL; j++) {
    int rev = lua_gettop(L);
    lua_pushvalue(L, rev);
    int answered = lua_rawget(L, matched) != LUA_TNIL;
    lua_pop(L, 1);
    if (!answered && next_rest <= nrest) { /* a newer leaf (latest=true) or a rev-less error */
      lua_rawgeti(L, rest, next_rest++);
      if (lua_getfield(L, -1, "error") == LUA_TTABLE) {
        lua_pushvalue(L, rev);
        lua_setfield(L, -2, "rev"); /* the report names the revision asked */
      }
      answered = 1;
    }
    if (!answered) {
      lua_pushvalue(L, id);
      if (lua_rawget(L, unanswered) == LUA_TNIL) {
        lua_pop(L, 1);
        couch_json_newarray(L);
        lua_pushvalue(L, id);
        lua_pushvalue(L, -2);
        lua_rawset(L, unanswered);
      }
      lua_pushvalue(L, rev);
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
      left++;
    }
    lua_settop(L, rev - 1);
  }
  lua_settop(L, top);
  return left;
}

lua_Integer couch_account_reads(lua_State *L, int asked, int docs, lua_Integer from) {
  asked = lua_absindex(L, asked);
  docs = lua_absindex(L, docs);
  luaL_checkstack(L, 24, "accounting for revisions");
  couch_json_newobject(L); /* the result: id -> [rev] nothing answered */
  int unanswered = lua_gettop(L);
  lua_newtable(L); /* id -> [index into docs] */
  int byid = unanswered + 1;
  lua_Integer n = (lua_Integer)lua_rawlen(L, docs);
  for (lua_Integer i = from; i <= n; i++) {
    lua_rawgeti(L, docs, i);
    int e = lua_gettop(L);
    lua_getfield(L, e, "json");
    int ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (ok) {
      lua_getfield(L, e, "id");
      lua_getfield(L, e, "group");
      int id = e + 1, group = e + 2;
      lua_pushvalue(L, id);
      int asked_id = lua_type(L, id) == LUA_TSTRING && lua_rawget(L, asked) != LUA_TNIL;
      lua_pop(L, 1);
      lua_getfield(L, e, "rev");
      int has_rev = lua_type(L, -1) == LUA_TSTRING;
      lua_pop(L, 1);
      if (!asked_id || !has_rev || (!lua_isnil(L, group) && !lua_rawequal(L, id, group))) {
        /* never written: it answers the group's revision with an error (a document
         * without a _rev would even be written as a new edit) */
        if (has_rev) lua_pushfstring(L, "the source answered with document '%s' instead", str_or(L, id, "?"));
        else lua_pushliteral(L, "the source answered with a document without a _rev");
        push_error_entry(L, lua_isnil(L, group) ? id : group, 0, "bad_response", lua_tostring(L, -1));
        lua_rawseti(L, docs, i);
        lua_settop(L, e);
        lua_getfield(L, e, "group");
      } else {
        lua_settop(L, e + 1); /* the key: the id */
      }
    } else {
      normalize_entry(L, e);
      lua_pushvalue(L, -1);
      lua_rawseti(L, docs, i);
      lua_getfield(L, -1, "error");
      lua_getfield(L, -1, "id");
      lua_replace(L, e + 1);
      lua_settop(L, e + 1);
    }
    /* the key at e + 1: list this answer under it when that id was asked */
    lua_pushvalue(L, e + 1);
    if (!lua_isnil(L, e + 1) && lua_rawget(L, asked) != LUA_TNIL) {
      lua_pushvalue(L, e + 1);
      if (lua_rawget(L, byid) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, e + 1);
        lua_pushvalue(L, -2);
        lua_rawset(L, byid);
      }
      lua_pushinteger(L, i);
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    }
    lua_settop(L, e - 1);
  }
  lua_Integer left = 0;
  lua_pushnil(L);
  while (lua_next(L, asked)) {
    int id = lua_gettop(L) - 1, revs = id + 1;
    lua_pushvalue(L, id);
    lua_rawget(L, byid);
    left += pair_id(L, id, revs, lua_isnil(L, -1) ? 0 : lua_gettop(L), docs, unanswered);
    lua_settop(L, id);
  }
  lua_settop(L, unanswered);
  return left;
}

void couch_account_unanswered(lua_State *L, int unanswered, int docs) {
  unanswered = lua_absindex(L, unanswered);
  docs = lua_absindex(L, docs);
  luaL_checkstack(L, 8, "accounting for revisions");
  lua_pushnil(L);
  while (lua_next(L, unanswered)) {
    int id = lua_gettop(L) - 1;
    for (lua_Integer j = 1; lua_rawgeti(L, id + 1, j) != LUA_TNIL; j++) {
      push_error_entry(L, id, lua_gettop(L), "no_answer", "the source's answers did not include this revision");
      lua_rawseti(L, docs, (lua_Integer)lua_rawlen(L, docs) + 1);
      lua_pop(L, 1);
    }
    lua_settop(L, id);
  }
}
