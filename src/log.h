/* Leveled logging: quiet by default; COUCHLUA_LOG=warn|info|debug (or couch.log{level=})
 * turns it up. At info: retries, pacing, replication progress; at debug: one line per
 * request. Lines go through couch's output (a host's writer receives them as
 * COUCHLUA_LOG) or to a Lua writer set with couch.log{writer=}. Callers pass text already
 * free of credentials (URLs through the request layer's redaction). */
#ifndef COUCH_LOG_H
#define COUCH_LOG_H
#include <lua.h>

enum { COUCH_LOG_OFF, COUCH_LOG_WARN, COUCH_LOG_INFO, COUCH_LOG_DEBUG };

/* Whether a line of this level would be written in L's state (cheap: check before
 * formatting). */
int couch_log_enabled(lua_State *L, int level);
/* Write one line ("couchlua: info: ..."); L may be any thread of the state. */
void couch_log(lua_State *L, int level, const char *fmt, ...);
/* The level COUCHLUA_LOG names (COUCH_LOG_OFF when unset or unknown). */
int couch_log_level_from_env(void);
/* Add couch.log to the table on top of the stack. */
void couch_log_open(lua_State *L);
#endif
