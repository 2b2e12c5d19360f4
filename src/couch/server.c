/* The server object: couch.connect (a connection profile, src/http/conn.c, in a userdata)
 * and the request primitive srv:_send(method, path, opts) every other call is built on —
 * one request (src/http/prepare.c) started and awaited, its answer turned into Lua values
 * (src/http/response.c) by the continuation. Auth happens inside the request layer. */
#include "couch/server.h"

#include "couchlua.h"
#include "meta.h"
#include "output.h"

#include "couch/options.h"
#include "error.h"
#include "http/auth.h"
#include "http/prepare.h"
#include "http/response.h"

#include <lauxlib.h>
#include <string.h>

couch_conn *couch_server_check(lua_State *L, int idx) { return luaL_checkudata(L, idx, SERVER_MT); }

/* couch.connect(url [, opts]) -> server */
static int l_connect(lua_State *L) {
  const char *url = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : NULL;
  if (!url) return couch_error_usage(L, "url", "couch.connect expects a URL string, got %s",
                                     luaL_typename(L, 1));
  couch_options_check_known(L, 2, "couch.connect", couch_conn_options);
  couch_conn *c = lua_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, SERVER_MT); /* from here a raise frees what init took */
  int srv = lua_gettop(L);
  couch_conn_init(L, c, url, 2);
  if (c->insecure && !couch_opt_bool(L, 2, "quiet", 0)) { /* through couch's output: a host sees it */
    lua_pushfstring(L, "couchlua: WARNING: TLS certificate verification is OFF for %s (insecure = true)\n",
                    c->base_url);
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    couch_output_write(L, COUCHLUA_WARNING, text, len);
    lua_pop(L, 1);
  }
  lua_newtable(L); /* Lua-side state of this server (srv:_state()) */
  lua_setiuservalue(L, srv, 1);
  lua_settop(L, srv);
  return 1;
}

/* Continuation: stack is 1 server, 2 method, 3 path, 4 opts, 5 request. */
static int after_send(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_request *r = lua_touserdata(L, (int)ctx);
  return couch_response_results(L, r, couch_prepare_allows(L, 4, r->status), couch_opt_bool(L, 4, "raw", 0));
}

/* srv:_send(method, path_or_url, opts) -> status, body, headers */
static int l_send(lua_State *L) {
  couch_conn *c = couch_server_check(L, 1);
  const char *method = luaL_checkstring(L, 2);
  luaL_checkstring(L, 3);
  lua_settop(L, 4);
  couch_options_check_known(L, 4, "request", couch_prepare_options);
  couch_request *r = couch_prepare(L, 1, c, method, 3, 4);
  couch_request_start(r);
  return couch_await(L, &r->w, lua_gettop(L), after_send);
}

/* ---- small methods ---- */

static int l_gc(lua_State *L) {
  couch_conn_free(couch_server_check(L, 1));
  return 0;
}

static int l_tostring(lua_State *L) {
  couch_conn *c = couch_server_check(L, 1);
  lua_pushfstring(L, "couch.server <%s> (auth: %s)", c->base_url ? c->base_url : "?", couch_conn_auth_name(c));
  return 1;
}

static int l_index(lua_State *L) {
  couch_conn *c = couch_server_check(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "url") == 0) {
    lua_pushstring(L, c->base_url);
    return 1;
  }
  luaL_getmetatable(L, SERVER_MT);
  lua_getfield(L, -1, "methods");
  lua_getfield(L, -1, k);
  return 1;
}

/* srv:_state() -> a table the Lua half keeps per server (scheduler probe, watchers). */
static int l_state(lua_State *L) {
  couch_server_check(L, 1);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

/* srv:_forget_auth(): the next request logs in anew (a new session or token). */
static int l_forget_auth(lua_State *L) {
  couch_auth_forget(couch_server_check(L, 1));
  return 0;
}

/* srv:_endpoint_auth() -> the auth object a replication endpoint on this server needs
 * ({basic = {username, password}} or {iam = {api_key}}), or nil. The one place a
 * credential becomes a Lua value: it goes into a replication document, and everything
 * that returns or prints such documents redacts it. */
static int l_endpoint_auth(lua_State *L) {
  couch_conn *c = couch_server_check(L, 1);
  if (c->api_key) {
    lua_createtable(L, 0, 1);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, c->api_key);
    lua_setfield(L, -2, "api_key");
    lua_setfield(L, -2, "iam");
    return 1;
  }
  if (!c->username) return 0;
  lua_createtable(L, 0, 1);
  lua_createtable(L, 0, 2);
  lua_pushstring(L, c->username);
  lua_setfield(L, -2, "username");
  lua_pushstring(L, c->password ? c->password : "");
  lua_setfield(L, -2, "password");
  lua_setfield(L, -2, "basic");
  return 1;
}

/* srv:stats() -> {requests = attempts sent, in_flight = n, queued = n} */
static int l_stats(lua_State *L) {
  couch_conn *c = couch_server_check(L, 1);
  int queued = 0;
  for (couch_request *r = c->queue_head; r; r = r->queue_next) queued++;
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)c->requests);
  lua_setfield(L, -2, "requests");
  lua_pushinteger(L, (lua_Integer)c->throttled);
  lua_setfield(L, -2, "throttled");
  lua_pushnumber(L, c->rate_interval_ms > c->min_interval_ms ? c->rate_interval_ms : c->min_interval_ms);
  lua_setfield(L, -2, "interval_ms");
  lua_pushinteger(L, c->in_flight);
  lua_setfield(L, -2, "in_flight");
  lua_pushinteger(L, queued);
  lua_setfield(L, -2, "queued");
  return 1;
}

void couch_server_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"_send", l_send},
                                     {"_state", l_state},
                                     {"_forget_auth", l_forget_auth},
                                     {"_endpoint_auth", l_endpoint_auth},
                                     {"stats", l_stats},
                                     {NULL, NULL}};
  static const couch_meta meta = {.index = l_index, .gc = l_gc, .tostring = l_tostring};
  if (couch_meta_new(L, SERVER_MT, &meta)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_connect);
  lua_setfield(L, -2, "connect");
}
