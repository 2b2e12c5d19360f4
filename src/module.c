/* luaopen_couch: registers every type and function of the `couch` module, nothing else. */
#include "couchlua.h"
#include "cond.h"
#include "error.h"
#include "task.h"
#include "json/json.h"

#include <lauxlib.h>

void couch_embedded_preload(lua_State *L); /* generated from the files of lua/couch */

static int l_is_error(lua_State *L) {
  lua_pushboolean(L, couch_error_is(L, 1));
  return 1;
}

void couchlua_openlibs(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_couch);
  lua_setfield(L, -2, "couch");
  lua_pushcfunction(L, luaopen_couch_json);
  lua_setfield(L, -2, "couch.json");
  lua_pop(L, 1);
  couch_embedded_preload(L);
}

int luaopen_couch(lua_State *L) {
  couchlua_openlibs(L); /* so `require "couch.json"` works under stock lua5.4 too */
  couch_error_init(L);
  lua_newtable(L);
  lua_pushliteral(L, COUCHLUA_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushcfunction(L, l_is_error);
  lua_setfield(L, -2, "is_error");
  luaL_requiref(L, "couch.json", luaopen_couch_json, 0);
  lua_setfield(L, -2, "json");
  couch_task_open(L);
  couch_cond_open(L);
  return 1;
}
