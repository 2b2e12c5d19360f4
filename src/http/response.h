/* A finished request's answer as Lua values: the decoded body, the headers table (from
 * the headers request.c parsed as they came), and the structured error objects for every
 * way a request fails (http, network, timeout, json, auth for a failed login). */
#ifndef COUCH_RESPONSE_H
#define COUCH_RESPONSE_H

#include "http/request.h"

#include <lua.h>

/* Push status, body, headers (returns 3), or raise the error object. `allowed`: the
 * status is one the caller takes as an answer (a 404 it expects); `raw`: the body as a
 * string instead of decoded JSON. */
int couch_response_results(lua_State *L, couch_request *r, int allowed, int raw);

/* Push the error object for r's failure (not raised). */
void couch_response_push_error(lua_State *L, couch_request *r);

/* Push {name = value} of the final response's headers, names lowercased. */
void couch_response_push_headers(lua_State *L, const couch_request *r);

#endif
