/* Where couch's own output goes: print from a host's scripts, progress lines, warnings. By
 * default stdout / stderr; a host may route all of it through its own writer
 * (couchlua_set_writer). One home, so no part of couch writes to a stream of its own. */
#ifndef COUCH_OUTPUT_H
#define COUCH_OUTPUT_H
#include <lua.h>
#include <stddef.h>

typedef void (*couch_writer)(void *ud, int kind, const char *text, size_t len);

/* Write text of this kind (COUCHLUA_PRINT, COUCHLUA_PROGRESS, COUCHLUA_WARNING). */
void couch_output_write(lua_State *L, int kind, const char *text, size_t len);
/* Route L's output through fn (NULL: back to stdout / stderr). Also replaces the global
 * `print` and Lua's warning function (warnings are then on), so a script's output reaches
 * fn too. */
void couch_output_set_writer(lua_State *L, couch_writer fn, void *ud);
/* Whether the given kind goes to a terminal (progress lines redraw themselves there). */
int couch_output_is_tty(lua_State *L, int kind);
/* Add internal.write(kind, text) and internal.is_tty(kind) to the table on top of the stack;
 * kind is "print", "progress" or "warning". */
void couch_output_open(lua_State *L);
#endif
