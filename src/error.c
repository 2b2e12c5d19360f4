/* Structured error objects (see error.h). The raising form and the value form are one
 * mechanism: couch_error_push builds the table, couch_error_raise throws it. */
#include "error.h"

#include "meta.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <string.h>

#define ERROR_MT "couch.error"

static void push_new(lua_State *L, const char *kind, const char *fmt, va_list ap) {
  lua_createtable(L, 0, 8);
  luaL_setmetatable(L, ERROR_MT);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushvfstring(L, fmt, ap);
  lua_setfield(L, -2, "message");
}

void couch_error_push(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_new(L, kind, fmt, ap);
  va_end(ap);
}

int couch_error_raise(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_new(L, kind, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

int couch_error_usage(lua_State *L, const char *argname, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  couch_error_push(L, "usage", "bad argument '%s': %s", argname, lua_tostring(L, -1));
  couch_error_setstr(L, -1, "argument", argname);
  return lua_error(L);
}

void couch_error_setstr(lua_State *L, int idx, const char *key, const char *value) {
  if (!value) return;
  idx = lua_absindex(L, idx);
  lua_pushstring(L, value);
  lua_setfield(L, idx, key);
}

void couch_error_setint(lua_State *L, int idx, const char *key, lua_Integer value) {
  idx = lua_absindex(L, idx);
  lua_pushinteger(L, value);
  lua_setfield(L, idx, key);
}

int couch_error_is(lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, ERROR_MT);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

/* A field as a string, or NULL; the value stays on the stack (popped by the caller). */
static const char *field(lua_State *L, const char *key, int type) {
  return lua_getfield(L, 1, key) == type ? lua_tostring(L, -1) : NULL;
}

/* "couch: http 404 not_found: Database does not exist. (GET http://127.0.0.1:5984/x)".
 * Pieces are pushed and concatenated at the end (no luaL_Buffer: reading fields between
 * buffer operations would move the stack under it). */
static int error_tostring(lua_State *L) {
  lua_settop(L, 1);
  const char *kind = field(L, "kind", LUA_TSTRING);
  const char *status = field(L, "status", LUA_TNUMBER);
  const char *err = field(L, "error", LUA_TSTRING);
  const char *message = field(L, "message", LUA_TSTRING);
  const char *reason = field(L, "reason", LUA_TSTRING);
  const char *method = field(L, "method", LUA_TSTRING);
  const char *url = field(L, "url", LUA_TSTRING);
  lua_Integer retries = lua_getfield(L, 1, "retries") == LUA_TNUMBER ? lua_tointeger(L, -1) : 0;
  int top = lua_gettop(L);
  lua_pushfstring(L, "couch: %s", kind ? kind : "error");
  if (status) lua_pushfstring(L, " %s", status);
  if (err) lua_pushfstring(L, " %s", err);
  const char *text = (message && *message) ? message : reason;
  if (text) lua_pushfstring(L, ": %s", text);
  if (method) {
    lua_pushfstring(L, " (%s%s%s", method, url ? " " : "", url ? url : "");
    if (retries > 0) lua_pushfstring(L, ", after %I %s", retries, retries == 1 ? "retry" : "retries");
    lua_pushliteral(L, ")");
  }
  lua_concat(L, lua_gettop(L) - top);
  return 1;
}

void couch_error_init(lua_State *L) {
  static const couch_meta meta = {.tostring = error_tostring}; /* __name: luaL_newmetatable's */
  couch_meta_new(L, ERROR_MT, &meta);
  lua_pop(L, 1);
}
