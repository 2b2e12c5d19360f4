/* A request from Lua arguments: (method, path or URL, opts) become one couch_request with
 * its URL (base URL + path + query string), body (a string as is, a table as JSON),
 * headers and per-request options. The pieces a C caller builds a request from (the native
 * replication's calls, src/replicate/call.c) are here too, so a request is made one way. */
#ifndef COUCH_PREPARE_H
#define COUCH_PREPARE_H

#include "http/request.h"

#include <lua.h>

/* The option names a request takes (for its unknown-option check). */
extern const char *const couch_prepare_options[];

/* Push a new request for the server at stack index srv (its profile c), the path or full
 * URL at index path and the options at index opts (nil or a table). Not started. */
couch_request *couch_prepare(lua_State *L, int srv, couch_conn *c, const char *method, int path, int opts);

/* Push a new request (not started) for url, with the body string at index body (0: none)
 * and the headers CouchDB wants: Accept JSON; Content-Type (content_type, NULL: JSON) on a
 * body, a POST or a PUT. Retries, timeout and idempotence start as the connection's. */
couch_request *couch_prepare_request(lua_State *L, int srv, couch_conn *c, const char *method, const char *url,
                                     int body, const char *content_type);

/* Push the bytes to send for the body value at idx: a string as is, anything else as JSON. */
void couch_prepare_push_body(lua_State *L, int idx);

/* Whether opts.allow takes `status` as an answer (allow = true, or allow[status]). */
int couch_prepare_allows(lua_State *L, int opts, long status);

#endif
