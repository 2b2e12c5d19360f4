/* TEMPORARY minimal host (the CLI helper owns and completes this file). */
#include "couchlua.h"
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

struct couchlua_host { lua_State *L; char *err; };

couchlua_host *couchlua_new(void) {
  couchlua_host *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->L = luaL_newstate();
  luaL_openlibs(h->L);
  couchlua_openlibs(h->L);
  return h;
}
static int finish(couchlua_host *h, int rc) {
  free(h->err); h->err = NULL;
  if (rc != LUA_OK) {
    const char *m = luaL_tolstring(h->L, -1, NULL);
    h->err = strdup(m ? m : "?");
    lua_pop(h->L, 2);
    return 1;
  }
  return 0;
}
int couchlua_dofile(couchlua_host *h, const char *path) {
  int rc = luaL_loadfile(h->L, path);
  if (rc == LUA_OK) rc = lua_pcall(h->L, 0, 0, 0);
  return finish(h, rc);
}
int couchlua_dostring(couchlua_host *h, const char *chunk, const char *name) {
  int rc = luaL_loadbuffer(h->L, chunk, strlen(chunk), name);
  if (rc == LUA_OK) rc = lua_pcall(h->L, 0, 0, 0);
  return finish(h, rc);
}
const char *couchlua_last_error(const couchlua_host *h) { return h->err; }
lua_State *couchlua_state(couchlua_host *h) { return h->L; }
void couchlua_close(couchlua_host *h) { if (!h) return; lua_close(h->L); free(h->err); free(h); }
