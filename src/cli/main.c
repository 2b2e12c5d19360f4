/* TEMPORARY minimal runner: couchlua script.lua args (the CLI helper replaces this). */
#include "couchlua.h"
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>

int main(int argc, char **argv) {
  couchlua_host *h = couchlua_new();
  lua_State *L = couchlua_state(h);
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  int rc = couchlua_dofile(h, argc > 1 ? argv[1] : NULL);
  if (rc) fprintf(stderr, "couchlua: %s\n", couchlua_last_error(h));
  couchlua_close(h);
  return rc ? 1 : 0;
}
