/* couch.cond(): a condition for tasks, the one primitive under couch.queue and friends.
 * cond:wait([timeout]) parks the caller (yielding inside a task, turning the loop
 * outside one) until cond:signal() / cond:broadcast(); it returns false on timeout. */
#include "cond.h"

#include "error.h"
#include "loop/loop.h"
#include "meta.h"

#include <lauxlib.h>

#define COND_MT "couch.cond"

typedef struct {
  couch_wait_list waiters;
  couch_loop *loop;
} cond_t;

static int l_new(lua_State *L) {
  cond_t *c = lua_newuserdatauv(L, sizeof *c, 0);
  c->waiters = (couch_wait_list){0};
  c->loop = couch_loop_get(L);
  luaL_setmetatable(L, COND_MT);
  return 1;
}

static int after_wait(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lua_pushboolean(L, !couch_timed_wait_end(lua_touserdata(L, (int)ctx)));
  return 1;
}

static int l_wait(lua_State *L) {
  cond_t *c = luaL_checkudata(L, 1, COND_MT);
  lua_Number timeout = luaL_optnumber(L, 2, -1);
  lua_settop(L, 1);
  couch_timed_wait *tw = couch_timed_wait_push(L, &c->waiters, timeout, 1 /* the cond */);
  return couch_await(L, &tw->w, 2, after_wait);
}

static int l_signal(lua_State *L) {
  cond_t *c = luaL_checkudata(L, 1, COND_MT);
  lua_pushboolean(L, couch_wait_list_wake_one(c->loop, &c->waiters));
  return 1;
}

static int l_broadcast(lua_State *L) {
  cond_t *c = luaL_checkudata(L, 1, COND_MT);
  lua_pushinteger(L, couch_wait_list_wake_all(c->loop, &c->waiters));
  return 1;
}

static int l_gc(lua_State *L) {
  cond_t *c = luaL_checkudata(L, 1, COND_MT);
  while (c->waiters.head) couch_wait_list_remove(c->waiters.head);
  return 0;
}

static int l_tostring(lua_State *L) {
  luaL_checkudata(L, 1, COND_MT);
  lua_pushfstring(L, "couch.cond (%p)", lua_topointer(L, 1));
  return 1;
}

void couch_cond_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"wait", l_wait}, {"signal", l_signal}, {"broadcast", l_broadcast}, {NULL, NULL}};
  static const couch_meta meta = {.methods = methods, .gc = l_gc, .tostring = l_tostring};
  couch_meta_new(L, COND_MT, &meta);
  lua_pop(L, 1);
  lua_pushcfunction(L, l_new);
  lua_setfield(L, -2, "cond");
}
