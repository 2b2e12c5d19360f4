/* The couch.json Lua table and the shared metatables couch.json.array / couch.json.object.
 *
 *   encode(v [, {pretty=, indent=, sort_keys=}])  -> JSON text (raises a `json` error)
 *   decode(text)            -> value (raises a `json` error naming offset and found text)
 *   null                    -> NULL lightuserdata, the same value as cjson.null
 *   array([t]) / object([t]) -> t (or a new table) marked as a JSON array / object
 *   is_array(v) / is_object(v) -> how encode would write v
 *   number(x) / tonumber(x) / is_number(x)  -> number objects (see number.c)
 */
#include "json/json.h"
#include "error.h"

#include <lauxlib.h>

void couch_json_init(lua_State *L) {
  luaL_newmetatable(L, COUCH_JSON_ARRAY_MT);
  luaL_newmetatable(L, COUCH_JSON_OBJECT_MT);
  lua_pop(L, 2);
  couch_json_number_init(L);
}

void couch_json_pushmeta(lua_State *L, const char *name) {
  if (luaL_getmetatable(L, name) != LUA_TNIL) return;
  lua_pop(L, 1);
  couch_json_init(L);
  luaL_getmetatable(L, name);
}

void couch_json_newarray(lua_State *L) {
  lua_newtable(L);
  couch_json_pushmeta(L, COUCH_JSON_ARRAY_MT);
  lua_setmetatable(L, -2);
}

void couch_json_newobject(lua_State *L) {
  lua_newtable(L);
  couch_json_pushmeta(L, COUCH_JSON_OBJECT_MT);
  lua_setmetatable(L, -2);
}

static int opt_flag(lua_State *L, int opts, const char *name, int flag) {
  int t = lua_getfield(L, opts, name), on = lua_toboolean(L, -1);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN)
    couch_error_usage(L, name, "expected a boolean, got %s", luaL_typename(L, -1));
  lua_pop(L, 1);
  return on ? flag : 0;
}

static int l_encode(lua_State *L) {
  int flags = 0, indent = 2;
  lua_settop(L, 2);
  if (!lua_isnil(L, 2)) {
    if (!lua_istable(L, 2))
      return couch_error_usage(L, "options", "expected a table, got %s", luaL_typename(L, 2));
    flags |= opt_flag(L, 2, "pretty", COUCH_JSON_PRETTY);
    flags |= opt_flag(L, 2, "sort_keys", COUCH_JSON_SORT_KEYS);
    if (lua_getfield(L, 2, "indent") != LUA_TNIL) {
      lua_Integer n = lua_tointeger(L, -1);
      if (!lua_isinteger(L, -1) || n < 1 || n > 16)
        return couch_error_usage(L, "indent", "expected an integer from 1 to 16");
      indent = (int)n;
    }
    lua_pop(L, 1);
  }
  size_t len;
  couch_json_encode_opts(L, 1, &len, flags, indent);
  return 1;
}

static int l_decode(lua_State *L) {
  size_t len, offset = 0;
  if (lua_type(L, 1) != LUA_TSTRING)
    return couch_error_usage(L, "text", "expected a JSON string, got %s", luaL_typename(L, 1));
  const char *text = lua_tolstring(L, 1, &len);
  if (couch_json_decode_at(L, text, len, &offset)) return 1;
  couch_error_push(L, "json", "%s", lua_tostring(L, -1));
  couch_error_setint(L, -1, "offset", (lua_Integer)offset);
  return lua_error(L);
}

static int mark(lua_State *L, const char *mt, const char *argname) {
  lua_settop(L, 1);
  if (lua_isnil(L, 1)) {
    lua_newtable(L);
    lua_replace(L, 1);
  }
  if (!lua_istable(L, 1))
    return couch_error_usage(L, argname, "expected a table, got %s", luaL_typename(L, 1));
  if (lua_getmetatable(L, 1)) {
    couch_json_pushmeta(L, COUCH_JSON_ARRAY_MT);
    couch_json_pushmeta(L, COUCH_JSON_OBJECT_MT);
    if (!lua_rawequal(L, -3, -2) && !lua_rawequal(L, -3, -1))
      return couch_error_usage(L, argname, "the table already has a metatable");
  }
  couch_json_pushmeta(L, mt);
  lua_setmetatable(L, 1);
  lua_settop(L, 1);
  return 1;
}

static int l_array(lua_State *L) { return mark(L, COUCH_JSON_ARRAY_MT, "t"); }
static int l_object(lua_State *L) { return mark(L, COUCH_JSON_OBJECT_MT, "t"); }

static int l_is_array(lua_State *L) {
  lua_pushboolean(L, couch_json_table_kind(L, 1) == 1);
  return 1;
}

static int l_is_object(lua_State *L) {
  lua_pushboolean(L, couch_json_table_kind(L, 1) == 0);
  return 1;
}

int luaopen_couch_json(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"encode", l_encode},     {"decode", l_decode},       {"array", l_array},
      {"object", l_object},     {"is_array", l_is_array},   {"is_object", l_is_object},
      {NULL, NULL}};
  couch_error_init(L);
  couch_json_init(L);
  luaL_newlib(L, funcs);
  couch_json_number_register(L);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 1;
}
