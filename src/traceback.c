/* Tracebacks of the user's own frames (see traceback.h). luaL_traceback shows every frame,
 * and an error raised inside couch would show two or three layers of lua/couch/ files and
 * [C] frames the user did not write and cannot act on. */
#include "traceback.h"

#include <lauxlib.h>
#include <string.h>

#define MAX_FRAMES 20

static int is_users(const lua_Debug *ar) {
  if (*ar->what == 'C') return 0;
  return strncmp(ar->source, "@lua/couch/", 11) != 0;
}

void couch_traceback(lua_State *L, lua_State *L1, const char *msg, int level) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (msg) luaL_addstring(&b, msg);
  lua_Debug ar;
  int shown = 0, skipped = 0;
  for (; lua_getstack(L1, level, &ar); level++) {
    if (!lua_getinfo(L1, "Sln", &ar) || !is_users(&ar)) continue;
    if (shown == MAX_FRAMES) {
      skipped++;
      continue;
    }
    if (shown++ == 0) luaL_addstring(&b, "\nstack traceback:");
    lua_pushfstring(L, "\n\t%s:", ar.short_src);
    luaL_addvalue(&b);
    if (ar.currentline > 0) {
      lua_pushfstring(L, "%d:", ar.currentline);
      luaL_addvalue(&b);
    }
    if (*ar.namewhat) lua_pushfstring(L, " in %s '%s'", ar.namewhat, ar.name);
    else if (*ar.what == 'm') lua_pushliteral(L, " in main chunk");
    else lua_pushfstring(L, " in function <%s:%d>", ar.short_src, ar.linedefined);
    luaL_addvalue(&b);
  }
  if (skipped) {
    lua_pushfstring(L, "\n\t(%d more)", skipped);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
}
