#ifndef COUCH_READER_H
#define COUCH_READER_H
#include <lua.h>
/* Add couch._read_changes_loop to the `couch` table on top of the stack. */
void couch_reader_open(lua_State *L);
#endif
