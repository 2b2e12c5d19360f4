/* Reading option tables with clear usage errors: every reader names the option, and
 * couch_options_check_known rejects misspelt ones before anything is sent. */
#ifndef COUCH_OPTIONS_H
#define COUCH_OPTIONS_H

#include <lua.h>

/* Each returns the default when opts (a table or nil at idx) lacks the field. */
const char *couch_opt_string(lua_State *L, int idx, const char *name, const char *def);
lua_Number couch_opt_number(lua_State *L, int idx, const char *name, lua_Number def);
int couch_opt_bool(lua_State *L, int idx, const char *name, int def);
/* Raise a usage error for any key of the table at idx not in known (NULL-terminated),
 * naming the nearest known option ("did you mean 'timeout'?"). */
void couch_options_check_known(lua_State *L, int idx, const char *what, const char *const known[]);

/* Add internal.check_options (the same checks, with types, for the Lua half) to the table
 * on top of the stack. */
void couch_options_open(lua_State *L);

#endif
