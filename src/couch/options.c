#include "couch/options.h"

#include "error.h"

#include <lauxlib.h>
#include <string.h>

static int field(lua_State *L, int idx, const char *name) {
  if (lua_type(L, idx) != LUA_TTABLE) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  return lua_getfield(L, idx, name);
}

const char *couch_opt_string(lua_State *L, int idx, const char *name, const char *def) {
  idx = lua_absindex(L, idx);
  int t = field(L, idx, name);
  lua_pop(L, 1);
  if (t == LUA_TNIL) return def;
  if (t != LUA_TSTRING) couch_error_usage(L, name, "expected a string, got %s", lua_typename(L, t));
  lua_getfield(L, idx, name); /* the string stays alive in the table */
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

lua_Number couch_opt_number(lua_State *L, int idx, const char *name, lua_Number def) {
  idx = lua_absindex(L, idx);
  int t = field(L, idx, name);
  lua_Number v = def;
  if (t == LUA_TNUMBER) {
    v = lua_tonumber(L, -1);
    if (v < 0 || v != v) couch_error_usage(L, name, "must be a number >= 0");
  } else if (t != LUA_TNIL) {
    couch_error_usage(L, name, "expected a number, got %s", lua_typename(L, t));
  }
  lua_pop(L, 1);
  return v;
}

int couch_opt_bool(lua_State *L, int idx, const char *name, int def) {
  idx = lua_absindex(L, idx);
  int t = field(L, idx, name);
  int v = def;
  if (t == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL) couch_error_usage(L, name, "expected a boolean, got %s", lua_typename(L, t));
  lua_pop(L, 1);
  return v;
}

void couch_options_check_known(lua_State *L, int idx, const char *what, const char *const known[]) {
  idx = lua_absindex(L, idx);
  if (lua_isnoneornil(L, idx)) return;
  if (lua_type(L, idx) != LUA_TTABLE)
    couch_error_usage(L, what, "expected a table of options, got %s", luaL_typename(L, idx));
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    int ok = 0;
    for (int i = 0; k && known[i]; i++)
      if (strcmp(k, known[i]) == 0) ok = 1;
    if (!ok) couch_error_usage(L, k ? k : "?", "unknown option of %s", what);
  }
}
