#ifndef COUCH_CHECKPOINT_H
#define COUCH_CHECKPOINT_H
#include <lua.h>
/* Add job:_start, job:_checkpoint and job:_verify_sides to the job's metatable. */
void couch_checkpoint_open(lua_State *L);
#endif
