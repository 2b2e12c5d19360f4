/* Lua arguments -> one couch_request (prepare.h): the URL with its query string, the body,
 * the headers CouchDB wants (Accept, Content-Type) plus the caller's, and the per-request
 * options (timeout, retries, idempotent, unlimited, abort, allow). */
#include "http/prepare.h"

#include "abort.h"
#include "couch/options.h"
#include "http/url.h"
#include "json/json.h"

#include <lauxlib.h>
#include <string.h>

const char *const couch_prepare_options[] = {
    "query", "body", "content_type", "headers", "raw", "timeout", "retries", "idempotent",
    "allow", "unlimited", "abort", NULL};

int couch_prepare_allows(lua_State *L, int opts, long status) {
  if (lua_type(L, opts) != LUA_TTABLE) return 0;
  int t = lua_getfield(L, opts, "allow");
  int ok = 0;
  if (t == LUA_TBOOLEAN) ok = lua_toboolean(L, -1);
  else if (t == LUA_TTABLE) {
    lua_rawgeti(L, -1, status);
    ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return ok;
}

/* Push base URL + path (or the full URL given) + the query string of opts.query. */
static void push_url(lua_State *L, const couch_conn *c, int path, int opts) {
  const char *p = lua_tostring(L, path);
  if (strncmp(p, "http://", 7) == 0 || strncmp(p, "https://", 8) == 0) {
    lua_pushvalue(L, path);
  } else {
    lua_pushstring(L, c->base_url);
    if (p[0] != '/') lua_pushliteral(L, "/");
    lua_pushvalue(L, path);
    lua_concat(L, p[0] != '/' ? 3 : 2);
  }
  if (lua_type(L, opts) == LUA_TTABLE) {
    lua_getfield(L, opts, "query");
    lua_insert(L, -2);
    couch_url_append_query(L, -2);
    lua_remove(L, -2);
  }
}

void couch_prepare_push_body(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING) {
    lua_pushvalue(L, idx);
    return;
  }
  size_t n;
  couch_json_encode(L, idx, &n);
}

/* Push opts.body as the bytes to send; 0 and nothing pushed when there is none. */
static int push_body(lua_State *L, int opts) {
  if (lua_type(L, opts) != LUA_TTABLE) return 0;
  if (lua_getfield(L, opts, "body") == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  couch_prepare_push_body(L, -1);
  lua_remove(L, -2);
  return lua_gettop(L);
}

/* A body, a POST or a PUT says what it sends. */
static int sends_content(const char *method, int body) {
  return body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
}

couch_request *couch_prepare_request(lua_State *L, int srv, couch_conn *c, const char *method, const char *url,
                                     int body, const char *content_type) {
  couch_request *r = couch_request_new(L, srv, c, method, url, body);
  couch_request_add_header(r, "Accept: application/json");
  if (sends_content(method, body)) {
    lua_pushfstring(L, "Content-Type: %s", content_type ? content_type : "application/json");
    couch_request_add_header(r, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return r;
}

/* The caller's own headers (opts.headers), after the ones CouchDB wants. */
static void add_headers(lua_State *L, couch_request *r, int opts) {
  if (lua_type(L, opts) != LUA_TTABLE) return;
  if (lua_getfield(L, opts, "headers") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pushfstring(L, "%s: %s", luaL_checkstring(L, -2), luaL_checkstring(L, -1));
      couch_request_add_header(r, lua_tostring(L, -1));
      lua_pop(L, 2);
    }
  }
  lua_pop(L, 1);
}

couch_request *couch_prepare(lua_State *L, int srv, couch_conn *c, const char *method, int path, int opts) {
  srv = lua_absindex(L, srv);
  path = lua_absindex(L, path);
  opts = lua_absindex(L, opts);
  push_url(L, c, path, opts);
  int url = lua_gettop(L);
  int body = push_body(L, opts);
  const char *ct = sends_content(method, body) ? couch_opt_string(L, opts, "content_type", NULL) : NULL;
  couch_request *r = couch_prepare_request(L, srv, c, method, lua_tostring(L, url), body, ct);
  add_headers(L, r, opts);
  if (body) lua_remove(L, body); /* anchored by the request now */
  lua_remove(L, url);
  lua_Number timeout = couch_opt_number(L, opts, "timeout", -1);
  if (timeout >= 0) r->timeout_ms = (long)(timeout * 1000);
  r->retries = (int)couch_opt_number(L, opts, "retries", r->retries);
  r->idempotent = couch_opt_bool(L, opts, "idempotent", r->idempotent);
  r->unlimited = couch_opt_bool(L, opts, "unlimited", 0);
  /* a 401 on a connection that logs in is renewed and sent again, unless the caller listed
   * 401 itself (allow = {[401] = true}); allow = true is about errors, not logins */
  r->keep_401 = 0;
  if (lua_type(L, opts) == LUA_TTABLE && lua_getfield(L, opts, "allow") == LUA_TTABLE)
    r->keep_401 = couch_prepare_allows(L, opts, 401);
  if (lua_type(L, opts) == LUA_TTABLE) lua_pop(L, 1);
  if (lua_type(L, opts) == LUA_TTABLE) {
    lua_getfield(L, opts, "abort");
    couch_abort_watch(L, -1, &r->w, "abort");
    lua_pop(L, 1);
  }
  return r;
}
