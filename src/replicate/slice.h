#ifndef COUCH_SLICE_H
#define COUCH_SLICE_H
#include <lua.h>
/* internal.slice_docs(text) -> list of sliced entries, or nil, message (slice.c). */
int couch_slice_docs(lua_State *L);
/* Add internal.slice_docs to the table on top of the stack. */
void couch_slice_open(lua_State *L);
/* Add internal.md5_hex. */
void couch_repid_open(lua_State *L);
#endif
