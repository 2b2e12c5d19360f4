/* The one resume routine (as lua-nginx-module's run_thread): resume a task's coroutine and
 * handle the three outcomes in one place. */
#include "budget.h"
#include "error.h"
#include "loop/task.h"
#include "traceback.h"

#include <lauxlib.h>
#include <string.h>

static void release(lua_State *L, int *ref) {
  luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

/* Keep the results (or the error) in the registry, wake whoever waits, drop the anchors. */
static int is_cancelled_error(lua_State *L, int idx) {
  if (!couch_error_is(L, idx)) return 0;
  lua_getfield(L, idx, "kind");
  int yes = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "cancelled") == 0;
  lua_pop(L, 1);
  return yes;
}

/* Keep the results (or the error) in the registry, wake whoever waits, drop the anchors.
 * L is the running thread, used as scratch stack (balanced). */
static void finish(couch_task *t, lua_State *L, int failed, int nres) {
  lua_State *co = t->co;
  if (failed) {
    lua_xmove(co, L, 1);
    t->state = is_cancelled_error(L, -1) ? TASK_CANCELLED : TASK_FAILED;
    if (t->state == TASK_FAILED) { /* remembered for couch.run() to report */
      luaL_getsubtable(L, LUA_REGISTRYINDEX, "couch.unseen");
      lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
      lua_pop(L, 1);
    }
  } else {
    lua_createtable(L, nres, 1);
    int results = lua_gettop(L);
    lua_xmove(co, L, nres);
    for (int i = nres; i >= 1; i--) lua_rawseti(L, results, i);
    lua_pushinteger(L, nres);
    lua_setfield(L, results, "n");
    t->state = TASK_DONE;
  }
  t->result_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  t->loop->tasks_alive--;
  couch_wait_list_wake_all(t->loop, &t->joiners);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref); /* drop the coroutine */
  lua_pushnil(L);
  lua_setiuservalue(L, -2, 1);
  lua_pop(L, 1);
  t->co = NULL;
  release(L, &t->self_ref); /* last: may make the task itself collectable */
}

void couch_task_resume(couch_task *t, lua_State *from) {
  lua_State *L = from;
  int nres = 0;
  t->state = TASK_RUNNING;
  couch_loop_set_running(t->loop, t->co);
  couch_budget_rearm(t->co); /* a hook with a budget that waited: count on */
  int rc = lua_resume(t->co, from, t->nargs, &nres);
  couch_loop_set_running(t->loop, NULL);
  lua_sethook(t->co, NULL, 0, 0); /* an interrupt's hook must not outlive this resume */
  t->nargs = 0;
  if (rc == LUA_YIELD) {
    if (t->state == TASK_RUNNING) {
      /* A plain coroutine.yield() in the task body: let the others run, then go on. */
      lua_pop(t->co, nres);
      couch_loop_make_ready(t->loop, t);
    }
    return;
  }
  if (rc == LUA_OK) {
    finish(t, L, 0, nres);
  } else {
    lua_State *co = t->co;
    /* Add the traceback to plain string errors; error objects keep their shape. */
    if (lua_type(co, -1) == LUA_TSTRING) couch_traceback(co, co, lua_tostring(co, -1), 0);
    else lua_pushvalue(co, -1);
    lua_pushvalue(co, -2);
    lua_xmove(co, L, 2); /* L: reported error, original error; co keeps the original on top */
    /* Close the dead coroutine: its pending to-be-closed variables run (a follower leaves
     * its watcher, a feed closes). An error raised by a __close replaces the task's. */
    if (lua_resetthread(co) != LUA_OK && lua_gettop(co) > 0) {
      lua_xmove(co, L, 1);
      if (!lua_rawequal(L, -1, -2)) lua_replace(L, -3);
      else lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_settop(co, 0);
    lua_xmove(L, co, 1);
    finish(t, L, 1, 1);
  }
}

void couch_task_finish_unstarted(couch_task *t, lua_State *L) {
  /* The error value is on top of L; put it where finish expects it. */
  lua_settop(t->co, 0);
  lua_xmove(L, t->co, 1);
  finish(t, L, 1, 1);
}
