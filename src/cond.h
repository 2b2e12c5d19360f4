#ifndef COUCH_COND_H
#define COUCH_COND_H
#include <lua.h>
/* Add couch.cond to the table on top of the stack. */
void couch_cond_open(lua_State *L);
#endif
