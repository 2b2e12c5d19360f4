#ifndef COUCH_WORKER_H
#define COUCH_WORKER_H
#include <lua.h>
/* Add job:_work(queue) to the job's metatable. */
void couch_worker_open(lua_State *L);
#endif
