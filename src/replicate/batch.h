#ifndef COUCH_BATCH_H
#define COUCH_BATCH_H
#include <lua.h>
/* Add couch._move_batch to the `couch` table on top of the stack. */
void couch_batch_open(lua_State *L);
#endif
