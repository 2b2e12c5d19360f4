/* A request from Lua arguments: (method, path or URL, opts) become one couch_request with
 * its URL (base URL + path + query string), body (a string as is, a table as JSON),
 * headers and per-request options. */
#ifndef COUCH_PREPARE_H
#define COUCH_PREPARE_H

#include "http/request.h"

#include <lua.h>

/* The option names a request takes (for its unknown-option check). */
extern const char *const couch_prepare_options[];

/* Push a new request for the server at stack index srv (its profile c), the path or full
 * URL at index path and the options at index opts (nil or a table). Not started. */
couch_request *couch_prepare(lua_State *L, int srv, couch_conn *c, const char *method, int path, int opts);

/* Whether opts.allow takes `status` as an answer (allow = true, or allow[status]). */
int couch_prepare_allows(lua_State *L, int opts, long status);

#endif
