/* The stack as a user of couch reads it: their own frames only. */
#ifndef COUCH_TRACEBACK_H
#define COUCH_TRACEBACK_H
#include <lua.h>

/* Push msg followed by "stack traceback:" and the frames of L1 from `level` on that are
 * the user's code: frames of C functions and of couch's own Lua half (lua/couch/...) are
 * left out, so an error reads as one line plus where in the script it came from. When no
 * such frame is left, just msg. */
void couch_traceback(lua_State *L, lua_State *L1, const char *msg, int level);
#endif
