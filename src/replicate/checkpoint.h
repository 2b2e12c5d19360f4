#ifndef COUCH_CHECKPOINT_H
#define COUCH_CHECKPOINT_H
#include <lua.h>
/* Add couch._find_start and couch._checkpoint to the `couch` table on top of the stack. */
void couch_checkpoint_open(lua_State *L);
#endif
