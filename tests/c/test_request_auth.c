/* The request layer's C entry point carries auth by itself: a caller in C (as the native
 * engine will be) does couch_request_new + couch_request_start + couch_await with its own
 * continuation and nothing else, and gets the cookie login, one shared login for requests
 * started together, the login again after a 401, and a failed login as an `auth` error.
 * Against the FAKE CouchDB (tests/fakes/fake_couch.js, started through tests/support). */
#include "couchlua.h"

#include "couch/server.h"
#include "http/request.h"
#include "http/response.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

static int after_get(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return couch_response_results(L, lua_touserdata(L, (int)ctx), 0, 0);
}

/* c_get(srv, path) -> status, body, headers: one request, straight from C. */
static int c_get(lua_State *L) {
  couch_conn *c = couch_server_check(L, 1);
  lua_pushfstring(L, "%s%s", c->base_url, luaL_checkstring(L, 2));
  couch_request *r = couch_request_new(L, 1, c, "GET", lua_tostring(L, -1), 0);
  couch_request_add_header(r, "Accept: application/json");
  couch_request_start(r);
  return couch_await(L, &r->w, lua_gettop(L), after_get);
}

static void run(couchlua_host *h, const char *code) {
  if (couchlua_dostring(h, code, "=test") != 0) {
    fprintf(stderr, "%s\n", couchlua_last_error(h));
    CHECK(0);
  }
}

int main(void) {
  couchlua_host *h = couchlua_new();
  CHECK(h != NULL);
  lua_State *L = couchlua_state(h);
  lua_pushcfunction(L, c_get);
  lua_setglobal(L, "c_get");
  run(h, "couch = require 'couch'\n"
         "f = require('fake').start { users = { admin = 'Pw-C-9921' }, require_auth = true }\n"
         "srv = couch.connect(f.url, { user = 'admin', password = 'Pw-C-9921', auth = 'cookie' })");
  /* first request: the login is chained before it */
  run(h, "local status, body = c_get(srv, '/db/doc1')\n"
         "assert(status == 200 and body._id == 'doc1')\n"
         "assert(#f:requests('/_session', 'POST') == 1)");
  /* requests started together after the session expired: one new login, each retried */
  run(h, "f:expire_sessions()\n"
         "local tasks = {}\n"
         "for i = 1, 5 do tasks[i] = couch.spawn(function() return (select(2, c_get(srv, '/db/doc2')))._id end) end\n"
         "for i = 1, 5 do assert(tasks[i]:wait() == 'doc2') end\n"
         "assert(#f:requests('/_session', 'POST') == 2, #f:requests('/_session', 'POST'))");
  /* a failed login is the request's error: kind auth, the server named, no password */
  run(h, "local bad = couch.connect(f.url, { user = 'admin', password = 'Wrong-C-1', auth = 'cookie' })\n"
         "local ok, e = pcall(c_get, bad, '/db/doc1')\n"
         "assert(not ok and couch.is_error(e) and e.kind == 'auth' and e.status == 401, tostring(e))\n"
         "assert(tostring(e):find(f.url, 1, true) and not tostring(e):find('Wrong-C-1', 1, true))\n"
         "f:stop()");
  couchlua_close(h);
  printf("test_request_auth: %d checks\n", checks);
  return 0;
}
