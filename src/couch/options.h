/* Reading option tables with clear usage errors: every reader names the option, and
 * couch_options_check_known rejects misspelt ones before anything is sent. */
#ifndef COUCH_OPTIONS_H
#define COUCH_OPTIONS_H

#include <lua.h>

/* Each returns the default when opts (a table or nil at idx) lacks the field. */
const char *couch_opt_string(lua_State *L, int idx, const char *name, const char *def);
lua_Number couch_opt_number(lua_State *L, int idx, const char *name, lua_Number def);
int couch_opt_bool(lua_State *L, int idx, const char *name, int def);
/* Raise a usage error for any key of the table at idx not in known (NULL-terminated). */
void couch_options_check_known(lua_State *L, int idx, const char *what, const char *const known[]);

#endif
