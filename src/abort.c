/* internal.abort(): h:abort() ends every request started with { abort = h } that is still in
 * flight, at once, with a `cancelled` error ("aborted"); h.aborted says whether it was used.
 * Requests started with an aborted handle fail at once. */
#include "abort.h"

#include "error.h"
#include "meta.h"

#include <lauxlib.h>
#include <string.h>

#define ABORT_MT "couch.abort"

typedef struct {
  couch_wait_list waits; /* the requests in flight; each leaves the list when it completes */
  couch_loop *loop;
  int aborted;
} abort_t;

static int l_new(lua_State *L) {
  abort_t *a = lua_newuserdatauv(L, sizeof *a, 0);
  *a = (abort_t){.loop = couch_loop_get(L)};
  luaL_setmetatable(L, ABORT_MT);
  return 1;
}

static void abort_wait(couch_loop *loop, couch_wait *w) {
  couch_wait_list_remove(w);
  if (w->done) return;
  if (w->cancel) w->cancel(w); /* the transfer leaves the multi handle now */
  w->cancel = NULL;
  w->cancelled = w->aborted = 1;
  couch_wait_complete(loop, w);
}

void couch_abort_watch(lua_State *L, int idx, couch_wait *w, const char *what) {
  if (lua_isnoneornil(L, idx)) return;
  abort_t *a = luaL_testudata(L, idx, ABORT_MT);
  if (!a) couch_error_usage(L, what, "expected a internal.abort() handle, got %s", luaL_typename(L, idx));
  if (a->aborted) couch_error_raise(L, "cancelled", "aborted before it started");
  couch_wait_list_add(&a->waits, w);
}

static int l_abort(lua_State *L) {
  abort_t *a = luaL_checkudata(L, 1, ABORT_MT);
  a->aborted = 1;
  int n = 0;
  while (a->waits.head) {
    abort_wait(a->loop, a->waits.head);
    n++;
  }
  lua_pushinteger(L, n);
  return 1;
}

static int l_index(lua_State *L) {
  abort_t *a = luaL_checkudata(L, 1, ABORT_MT);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "aborted") == 0) lua_pushboolean(L, a->aborted);
  else if (strcmp(k, "abort") == 0) lua_pushcfunction(L, l_abort);
  else lua_pushnil(L);
  return 1;
}

static int l_gc(lua_State *L) {
  abort_t *a = luaL_checkudata(L, 1, ABORT_MT);
  while (a->waits.head) couch_wait_list_remove(a->waits.head);
  return 0;
}

static int l_tostring(lua_State *L) {
  abort_t *a = luaL_checkudata(L, 1, ABORT_MT);
  lua_pushfstring(L, "couch.abort (%s)", a->aborted ? "aborted" : "armed");
  return 1;
}

void couch_abort_open(lua_State *L) {
  static const couch_meta meta = {.index = l_index, .gc = l_gc, .tostring = l_tostring};
  couch_meta_new(L, ABORT_MT, &meta);
  lua_pop(L, 1);
  lua_pushcfunction(L, l_new);
  lua_setfield(L, -2, "abort");
}
