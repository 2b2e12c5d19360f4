/* couch.log and the C side of logging (see log.h). The level lives in the state's loop so
 * checking it costs a pointer read. */
#include "log.h"

#include "couchlua.h"
#include "error.h"
#include "loop/loop.h"
#include "output.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WRITER_KEY "couch.log.writer" /* registry: a Lua function(level, line), or nil */

static const char *const level_names[] = {"off", "warn", "info", "debug", NULL};

/* The level COUCHLUA_LOG asks for, read once when the loop is made. */
int couch_log_level_from_env(void) {
  const char *v = getenv("COUCHLUA_LOG");
  for (int i = 0; v && level_names[i]; i++)
    if (strcmp(v, level_names[i]) == 0) return i;
  return COUCH_LOG_OFF;
}

int couch_log_enabled(lua_State *L, int level) { return level <= couch_loop_get(L)->log_level; }

/* Call the Lua writer protected (a writer that fails or yields loses its line, nothing
 * else); 0 when there is none. */
static int to_lua_writer(lua_State *L, int level, const char *line, size_t len) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, WRITER_KEY) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushstring(L, level_names[level]);
  lua_pushlstring(L, line, len);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1);
  return 1;
}

void couch_log(lua_State *L, int level, const char *fmt, ...) {
  if (!couch_log_enabled(L, level)) return;
  char line[1024];
  int n = snprintf(line, sizeof line, "couchlua: %s: ", level_names[level]);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  if (!lua_checkstack(L, 4)) return;
  if (to_lua_writer(L, level, line, len)) return;
  couch_output_write(L, COUCHLUA_LOG, line, len);
}

static int level_of(lua_State *L, int idx) {
  const char *name = lua_tostring(L, idx);
  for (int i = 0; name && level_names[i]; i++)
    if (strcmp(name, level_names[i]) == 0) return i;
  return couch_error_usage(L, "level", "expected off, warn, info or debug, got %s",
                           name ? name : luaL_typename(L, idx));
}

/* couch.log{ level =, writer = } -> the level before; couch.log(level, message) writes one
 * line at that level; couch.log() -> the level. */
static int l_log(lua_State *L) {
  couch_loop *loop = couch_loop_get(L);
  if (lua_type(L, 1) == LUA_TSTRING) {
    int level = level_of(L, 1);
    couch_log(L, level, "%s", luaL_checkstring(L, 2));
    return 0;
  }
  int asked = lua_isnoneornil(L, 1);
  lua_settop(L, 1);
  lua_pushstring(L, level_names[loop->log_level]); /* the level before, returned */
  if (asked) return 1;
  if (!lua_istable(L, 1))
    return couch_error_usage(L, "opts", "couch.log expects { level =, writer = } or (level, message)");
  for (lua_pushnil(L); lua_next(L, 1); lua_pop(L, 1)) /* only level and writer */
    if (lua_type(L, -2) != LUA_TSTRING ||
        (strcmp(lua_tostring(L, -2), "level") && strcmp(lua_tostring(L, -2), "writer")))
      return couch_error_usage(L, lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?",
                               "unknown option of couch.log (level, writer)");
  if (lua_getfield(L, 1, "level") != LUA_TNIL) loop->log_level = level_of(L, -1);
  lua_pop(L, 1);
  int wt = lua_getfield(L, 1, "writer");
  if (wt == LUA_TFUNCTION || (wt == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
    if (wt == LUA_TBOOLEAN) lua_pushnil(L), lua_replace(L, -2); /* writer = false: the default */
    lua_setfield(L, LUA_REGISTRYINDEX, WRITER_KEY);
  } else if (wt != LUA_TNIL) {
    return couch_error_usage(L, "writer", "expected a function(level, line) or false, got %s",
                             luaL_typename(L, -1));
  } else {
    lua_pop(L, 1);
  }
  lua_pushvalue(L, 2);
  return 1;
}

void couch_log_open(lua_State *L) {
  lua_pushcfunction(L, l_log);
  lua_setfield(L, -2, "log");
}
