#ifndef COUCH_WORKER_H
#define COUCH_WORKER_H
#include <lua.h>
/* Add couch._work_loop to the `couch` table on top of the stack. */
void couch_worker_open(lua_State *L);
#endif
