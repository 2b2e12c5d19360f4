/* luaopen_couch: registers every type and function of the `couch` module, nothing else. */
#include "couchlua.h"
#include "abort.h"
#include "budget.h"
#include "log.h"
#include "output.h"
#include "cond.h"
#include "couch/options.h"
#include "couch/server.h"
#include "http/url.h"
#include "replicate/batch.h"
#include "replicate/job.h"
#include "replicate/checkpoint.h"
#include "replicate/reader.h"
#include "replicate/worker.h"
#include "replicate/slice.h"
#include "error.h"
#include "task.h"
#include "json/json.h"

#include <lauxlib.h>

/* Registry key of the private table: the functions the Lua files and the tests share with
 * the C core, kept off the public module (tab completion, printing, users' scripts). */
#define INTERNAL_KEY "couch.internal"

void couch_embedded_preload(lua_State *L); /* generated from the files of lua/couch */

static int l_is_error(lua_State *L) {
  lua_pushboolean(L, couch_error_is(L, 1));
  return 1;
}

/* couch.error(kind, message [, fields]) -> a new error object (the value form). */
static int l_error(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  couch_error_push(L, kind, "%s", luaL_optstring(L, 2, ""));
  if (lua_type(L, 3) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
  }
  return 1;
}

/* internal.raise(kind, message [, fields]): the raising form, for the Lua half. */
static int l_raise(lua_State *L) {
  l_error(L);
  return lua_error(L);
}

/* internal.usage(argument, why): a `usage` error naming the bad argument (one home for
 * the Lua files' argument checks, as couch_error_usage is the C code's). */
static int l_usage(lua_State *L) {
  const char *arg = luaL_checkstring(L, 1);
  return couch_error_usage(L, arg, "%s", luaL_checkstring(L, 2));
}

/* require "couch.internal": the module's private channel (see luaopen_couch). */
static int open_internal(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, INTERNAL_KEY) == LUA_TTABLE) return 1; /* also while couch loads */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "couch");
  lua_call(L, 1, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, INTERNAL_KEY);
  return 1;
}

void couchlua_openlibs(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_couch);
  lua_setfield(L, -2, "couch");
  lua_pushcfunction(L, luaopen_couch_json);
  lua_setfield(L, -2, "couch.json");
  lua_pushcfunction(L, luaopen_couch_url);
  lua_setfield(L, -2, "couch.url");
  lua_pushcfunction(L, open_internal);
  lua_setfield(L, -2, INTERNAL_KEY);
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
  lua_pushcfunction(L, l_error);
  lua_setfield(L, -2, "error");
  luaL_requiref(L, "couch.json", luaopen_couch_json, 0);
  lua_setfield(L, -2, "json");
  couch_task_open(L);
  couch_cond_open(L);
  couch_log_open(L);
  couch_url_open(L);
  couch_server_open(L);
  int module = lua_gettop(L);
  /* The private table: what only the Lua half and the tests use. */
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, INTERNAL_KEY);
  lua_pushcfunction(L, l_raise);
  lua_setfield(L, -2, "raise");
  lua_pushcfunction(L, l_usage);
  lua_setfield(L, -2, "usage");
  couch_abort_open(L);
  couch_budget_open(L);
  couch_options_open(L);
  couch_output_open(L);
  couch_slice_open(L);
  couch_repl_open(L); /* the job metatable, before the steps add their methods */
  couch_batch_open(L);
  couch_checkpoint_open(L);
  couch_reader_open(L);
  couch_worker_open(L);
  couch_repid_open(L);
  luaL_getmetatable(L, SERVER_MT);
  lua_getfield(L, -1, "methods");
  lua_remove(L, -2);
  lua_setfield(L, -2, "server_methods");
  /* The Lua half: server and database methods, task helpers, replication. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "couch.init");
  lua_call(L, 1, 1);
  lua_pushvalue(L, module);
  lua_pushvalue(L, module + 1);
  lua_call(L, 2, 0);
  lua_settop(L, module);
  return 1;
}
