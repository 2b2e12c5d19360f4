/* Metatables from a description (meta.h). */
#include "meta.h"

static void set(lua_State *L, const char *field, lua_CFunction f) {
  if (!f) return;
  lua_pushcfunction(L, f);
  lua_setfield(L, -2, field);
}

int couch_meta_new(lua_State *L, const char *name, const couch_meta *m) {
  if (!luaL_newmetatable(L, name)) return 0;
  if (m->index) {
    set(L, "__index", m->index);
  } else if (m->methods) {
    lua_newtable(L);
    luaL_setfuncs(L, m->methods, 0);
    lua_setfield(L, -2, "__index");
  }
  set(L, "__gc", m->gc);
  set(L, "__close", m->close);
  set(L, "__tostring", m->tostring);
  return 1;
}
