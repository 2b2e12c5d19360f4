/* The server object: couch.connect(url, opts) — a connection profile (http/conn.h) in a
 * userdata — and the request primitive every other call is built on,
 * srv:_send(method, path, opts). */
#ifndef COUCH_SERVER_H
#define COUCH_SERVER_H

#include <lua.h>

#include "http/conn.h"

#define SERVER_MT "couch.server"

couch_conn *couch_server_check(lua_State *L, int idx);
/* Add couch.connect to the table on top; register the metatable. */
void couch_server_open(lua_State *L);

#endif
