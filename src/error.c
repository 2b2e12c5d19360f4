/* Structured error objects (see error.h). The raising form and the value form are one
 * mechanism: couch_error_push builds the table, couch_error_raise throws it. */
#include "error.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
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

/* "couch: http 404 not_found: Database does not exist. (GET http://127.0.0.1:5984/x)" */
static int error_tostring(lua_State *L) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "couch: ");
  lua_getfield(L, 1, "kind");
  luaL_addstring(&b, luaL_optstring(L, -1, "error"));
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "status") == LUA_TNUMBER) {
    luaL_addchar(&b, ' ');
    luaL_addstring(&b, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "error") == LUA_TSTRING) {
    luaL_addchar(&b, ' ');
    luaL_addstring(&b, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "message") == LUA_TSTRING && lua_rawlen(L, -1) > 0) {
    luaL_addstring(&b, ": ");
    luaL_addstring(&b, lua_tostring(L, -1));
  } else if (lua_getfield(L, 1, "reason") == LUA_TSTRING) {
    luaL_addstring(&b, ": ");
    luaL_addstring(&b, lua_tostring(L, -1));
  }
  lua_settop(L, 1);
  if (lua_getfield(L, 1, "method") == LUA_TSTRING) {
    luaL_addstring(&b, " (");
    luaL_addstring(&b, lua_tostring(L, -1));
    if (lua_getfield(L, 1, "url") == LUA_TSTRING) {
      luaL_addchar(&b, ' ');
      luaL_addstring(&b, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "retries") == LUA_TNUMBER && lua_tointeger(L, -1) > 0) {
      luaL_addstring(&b, ", after ");
      luaL_addstring(&b, lua_tostring(L, -1));
      luaL_addstring(&b, lua_tointeger(L, -1) == 1 ? " retry" : " retries");
    }
    lua_pop(L, 1);
    luaL_addchar(&b, ')');
  }
  lua_pop(L, 1);
  luaL_pushresult(&b);
  return 1;
}

void couch_error_init(lua_State *L) {
  if (luaL_newmetatable(L, ERROR_MT)) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, ERROR_MT);
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
}
