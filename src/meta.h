/* One metatable per Lua-visible type (as luv does): __index (a function, or a table of
 * methods), __gc, __close and __tostring from one description, instead of the same ten
 * lines in every file that defines a type. */
#ifndef COUCH_META_H
#define COUCH_META_H

#include <lauxlib.h>

typedef struct {
  lua_CFunction index;     /* __index as a function, or NULL */
  const luaL_Reg *methods; /* __index as a table of these (when index is NULL), or NULL */
  lua_CFunction gc, close, tostring; /* each may be NULL */
} couch_meta;

/* Push the metatable `name`, filled from m when it is created now (returns 1) and left as
 * it is when it exists already (returns 0). */
int couch_meta_new(lua_State *L, const char *name, const couch_meta *m);

#endif
