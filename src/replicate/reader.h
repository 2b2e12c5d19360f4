#ifndef COUCH_READER_H
#define COUCH_READER_H
#include <lua.h>
/* Add job:_read(queue) to the job's metatable. */
void couch_reader_open(lua_State *L);
#endif
