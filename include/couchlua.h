/* couchlua: a Lua 5.4 host with the `couch` module for scripting CouchDB replication.
 *
 * Embedding in three lines:
 *     couchlua_host *h = couchlua_new();
 *     if (couchlua_dostring(h, "print(require'couch'.version)", "=init") != 0)
 *         fprintf(stderr, "%s\n", couchlua_last_error(h));
 *     couchlua_close(h);
 *
 * Or add `couch` to a lua_State of your own with couchlua_openlibs(L).
 */
#ifndef COUCHLUA_H
#define COUCHLUA_H

#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COUCHLUA_VERSION_MAJOR 0
#define COUCHLUA_VERSION_MINOR 1
#define COUCHLUA_VERSION_PATCH 0
#define COUCHLUA_VERSION "0.1.0"

typedef struct couchlua_host couchlua_host;

/* A new host: a lua_State with Lua's standard libraries, `couch` preloaded (require "couch"
 * works) and the Lua parts of the module embedded. NULL when out of memory. */
couchlua_host *couchlua_new(void);

/* Run a chunk of Lua source / a file (NULL = stdin). 0 on success; otherwise non-zero and
 * couchlua_last_error() says why (an error object is shown through its __tostring). */
int couchlua_dostring(couchlua_host *h, const char *chunk, const char *chunkname);
int couchlua_dofile(couchlua_host *h, const char *path);

/* The message of the last failed couchlua_do* call, or NULL. Owned by the host. */
const char *couchlua_last_error(const couchlua_host *h);

/* The host's lua_State, for registering your own functions. Owned by the host. */
lua_State *couchlua_state(couchlua_host *h);

/* Close the state (finishing nothing: pending tasks are cancelled) and free the host. */
void couchlua_close(couchlua_host *h);

/* Make `require "couch"` (and couch.json, couch.pretty, ...) work in a state of yours. */
void couchlua_openlibs(lua_State *L);

/* The module's entry point, as `require` calls it. */
int luaopen_couch(lua_State *L);

#ifdef __cplusplus
}
#endif
#endif
