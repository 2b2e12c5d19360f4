#ifndef COUCH_REPL_RETRY_H
#define COUCH_REPL_RETRY_H
#include "replicate/job.h"

/* Whether the error at idx is one a retrying job waits out: the server went away or is
 * overloaded (network errors, timeouts, 5xx, 408, 429 past the rate-limit wait). */
int couch_repl_transient(lua_State *L, int idx);

/* Add job:_wait_out(err) to the job's metatable. */
void couch_retry_open(lua_State *L);
#endif
