/* internal.abort(): an abort handle for requests in flight (a changes feed closed from
 * another task must not wait for its long-poll to end). */
#ifndef COUCH_ABORT_H
#define COUCH_ABORT_H
#include "loop/loop.h"

#include <lua.h>

/* Add internal.abort to the table on top of the stack. */
void couch_abort_open(lua_State *L);
/* If the value at idx is an abort handle, make w abortable by it (it stops watching w when
 * w completes); raises a usage error naming `what` if idx holds something else, and a
 * `cancelled` error if the handle was aborted already. */
void couch_abort_watch(lua_State *L, int idx, couch_wait *w, const char *what);
#endif
