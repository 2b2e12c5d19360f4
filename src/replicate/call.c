/* couch_repl_call (call.h): one request of a protocol step, from the job's endpoint to the
 * step's continuation without a Lua function in between. The request is prepared as
 * srv:_send prepares one (couch_prepare_request: the same headers, retries, idempotence and
 * auth), awaited on the loop, and its answer turned into values by couch_response_results
 * (the same limits, JSON decoding and error objects). What the continuation needs back
 * (its k and ctx, the stack to return to, the allowed statuses) rides in a small frame
 * userdata under the request, since a lua_KContext is one value. */
#include "replicate/call.h"

#include "couch/server.h"
#include "http/prepare.h"
#include "http/response.h"
#include "http/url.h"

#include <lauxlib.h>
#include <string.h>

typedef struct {
  lua_KFunction k;
  lua_KContext ctx;
  const int *allow;
  int keep, nresults;
  unsigned raw : 1;
} call_frame;

static int allowed(const int *allow, long status) {
  for (int i = 0; allow && allow[i]; i++)
    if (allow[i] == status) return 1;
  return 0;
}

/* The request is done: its answer (or its raised error) as db:request gives it. */
static int answered_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int fi = (int)ctx;
  call_frame f = *(call_frame *)lua_touserdata(L, fi);
  couch_request *req = lua_touserdata(L, fi + 1);
  couch_response_results(L, req, allowed(f.allow, req->status), f.raw); /* status, body, headers */
  /* the answer is Lua values now: the transfer's buffers and handle go at once, not when
   * the collector (which does not see them) gets to the request */
  couch_request_clear(req);
  lua_pop(L, 1);
  if (f.nresults == 2) lua_rotate(L, -2, 1); /* body, status */
  else lua_remove(L, -2);
  int n = f.nresults == 2 ? 2 : 1;
  int from = lua_gettop(L) - n + 1;
  for (int i = 0; i < n; i++) lua_copy(L, from + i, f.keep + 1 + i);
  lua_settop(L, f.keep + n);
  return f.k(L, LUA_OK, f.ctx);
}

int couch_repl_call(lua_State *L, couch_repl *r, const couch_repl_req *q, lua_KContext ctx, lua_KFunction k) {
  luaL_checkstack(L, 12, "sending a request");
  int body = q->body ? lua_absindex(L, q->body) : 0;
  int query_table = q->query_table ? lua_absindex(L, q->query_table) : 0;
  couch_repl_push(L, r->ref.server[q->side]); /* anchored by the request */
  int srv = lua_gettop(L);
  couch_conn *c = r->conn[q->side];
  /* base URL + the database's path (escaped once, by couch.database) + path + query */
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, c->base_url);
  couch_repl_push(L, r->ref.path[q->side]);
  luaL_addvalue(&b);
  luaL_addstring(&b, q->path);
  if (q->query && q->query[0]) {
    luaL_addchar(&b, '?');
    luaL_addstring(&b, q->query);
  }
  luaL_pushresult(&b);
  if (query_table) couch_url_append_query(L, query_table);
  int url = lua_gettop(L);
  if (body) {
    couch_prepare_push_body(L, body);
    body = lua_gettop(L);
  }
  call_frame *f = lua_newuserdatauv(L, sizeof *f, 0);
  *f = (call_frame){.k = k, .ctx = ctx, .allow = q->allow, .keep = q->keep, .nresults = q->nresults, .raw = q->raw};
  int fi = lua_gettop(L);
  couch_request *req = couch_prepare_request(L, srv, c, q->method, lua_tostring(L, url), body, NULL);
  if (q->idempotent) req->idempotent = 1;
  if (q->timeout > 0) req->timeout_ms = (long)(q->timeout * 1000);
  req->unlimited = q->unlimited;
  req->keep_401 = allowed(q->allow, 401);
  couch_request_start(req);
  return couch_await(L, &req->w, fi, answered_k);
}

const char *couch_repl_push_read_query(lua_State *L, int attachments, const char *open_revs, size_t len) {
  if (!open_revs) {
    lua_pushstring(L, attachments ? "attachments=true&latest=true&revs=true" : "attachments=false&latest=true&revs=true");
    return lua_tostring(L, -1);
  }
  lua_pushstring(L, attachments ? "attachments=true&latest=true&open_revs=" : "attachments=false&latest=true&open_revs=");
  couch_url_push_escaped(L, open_revs, len);
  lua_pushliteral(L, "&revs=true");
  lua_concat(L, 3);
  return lua_tostring(L, -1);
}
