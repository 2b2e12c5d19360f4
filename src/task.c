/* Tasks for Lua: couch.spawn / sleep / run / yield / current and the task object
 * (wait, cancel, status, result). Resuming is the loop's business (loop/resume.c). */
#include "task.h"

#include "meta.h"

#include "error.h"
#include "loop/task.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define TASK_MT "couch.task"
#define THREADS_KEY "couch.threads" /* weak table: thread -> task (lightuserdata) */
#define UNSEEN_KEY "couch.unseen"   /* failed tasks whose error no one has looked at */

static const char *const state_names[] = {"ready", "running", "waiting", "done", "failed",
                                          "cancelled"};

static int finished(const couch_task *t) { return t->state >= TASK_DONE; }

couch_task *couch_task_of(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, THREADS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    return NULL;
  }
  lua_pushthread(L);
  lua_rawget(L, -2);
  couch_task *t = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return (t && t->co == L) ? t : NULL;
}

static couch_task *check_task(lua_State *L, int idx) { return luaL_checkudata(L, idx, TASK_MT); }

/* couch.spawn([name,] fn, ...) -> task; it starts at the loop's next turn. */
static int l_spawn(lua_State *L) {
  int base = 1;
  const char *name = NULL;
  if (lua_type(L, 1) == LUA_TSTRING) {
    name = lua_tostring(L, 1);
    base = 2;
  }
  if (lua_type(L, base) != LUA_TFUNCTION)
    return couch_error_usage(L, "fn", "couch.spawn expects a function, got %s", luaL_typename(L, base));
  int nargs = lua_gettop(L) - base;
  couch_loop *loop = couch_loop_get(L);

  couch_task *t = lua_newuserdatauv(L, sizeof *t, 1); /* user value: the coroutine */
  memset(t, 0, sizeof *t);
  t->loop = loop;
  t->self_ref = t->result_ref = LUA_NOREF;
  t->id = loop->next_task_id++;
  if (name) snprintf(t->name, sizeof t->name, "%s", name);
  else snprintf(t->name, sizeof t->name, "task %u", t->id);
  luaL_setmetatable(L, TASK_MT);
  int tidx = lua_gettop(L);

  t->co = lua_newthread(L);
  lua_pushvalue(L, base);
  for (int i = 1; i <= nargs; i++) lua_pushvalue(L, base + i);
  lua_xmove(L, t->co, nargs + 1);
  t->nargs = nargs;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, THREADS_KEY);
  if (!lua_getmetatable(L, -1)) {
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
  } else {
    lua_pop(L, 1);
  }
  lua_pushvalue(L, -2);
  lua_pushlightuserdata(L, t);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_setiuservalue(L, tidx, 1); /* pops the thread: reachable only through the task */
  lua_pushvalue(L, tidx);
  t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  loop->tasks_alive++;
  couch_loop_make_ready(loop, t);
  return 1;
}

/* ---- waiting for a task, with an optional timeout ---- */

/* Push the task's results (or raise its error). */
static int push_outcome(lua_State *L, couch_task *t) {
  t->error_seen = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->result_ref);
  if (t->state != TASK_DONE) return lua_error(L);
  int n = (int)lua_rawlen(L, -1);
  lua_getfield(L, -1, "n");
  n = (int)luaL_optinteger(L, -1, n);
  lua_pop(L, 1);
  luaL_checkstack(L, n, "too many results");
  int results = lua_gettop(L);
  for (int i = 1; i <= n; i++) lua_rawgeti(L, results, i);
  lua_remove(L, results); /* the n results are then the top n values */
  return n;
}

static int after_join(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int timed_out = couch_timed_wait_end(lua_touserdata(L, (int)ctx));
  couch_task *t = check_task(L, 1);
  if (timed_out && !finished(t)) {
    couch_error_push(L, "timeout", "%s did not finish in time", t->name);
    couch_error_setstr(L, -1, "task", t->name);
    return lua_error(L);
  }
  return push_outcome(L, t);
}

/* task:wait([timeout_s]) -> the task's results; raises its error, or `timeout`. */
static int l_task_wait(lua_State *L) {
  couch_task *t = check_task(L, 1);
  lua_Number timeout = luaL_optnumber(L, 2, -1);
  if (finished(t)) return push_outcome(L, t);
  if (couch_task_of(L) == t) return couch_error_raise(L, "usage", "a task cannot wait for itself");
  lua_settop(L, 1);
  couch_timed_wait *j = couch_timed_wait_push(L, &t->joiners, timeout, 1 /* the joined task */);
  return couch_await(L, &j->w, 2, after_join);
}

/* Cancel t: a waiting task is woken with a `cancelled` error at its wait; a task that has
 * not started ends at once; a running one at its next wait. */
int couch_task_cancel(lua_State *L, couch_task *t) {
  if (finished(t)) return 0;
  t->cancel_pending = 1; /* sticky: every later wait of the task fails too, so a pcall that
                            caught the first `cancelled` cannot keep the task going */
  if (t->state == TASK_WAITING && t->waiting_on) {
    couch_wait *w = t->waiting_on;
    if (t->parked) couch_task_unpark(t);
    if (w->cancel) w->cancel(w);
    w->cancel = NULL;
    w->cancelled = 1;
    t->waiting_on = NULL;
    couch_loop_make_ready(t->loop, t);
  } else if (t->state == TASK_READY && lua_status(t->co) == LUA_OK) { /* not started */
    couch_error_push(L, "cancelled", "%s cancelled before it started", t->name);
    couch_loop_unready(t->loop, t);
    couch_task_finish_unstarted(t, L);
  } else {
    t->cancel_pending = 1;
  }
  return 1;
}

int couch_task_cancel_all(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, THREADS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  /* collect first: cancelling changes what the tasks hold */
  int threads = lua_gettop(L);
  lua_newtable(L);
  int list = lua_gettop(L), n = 0;
  lua_pushnil(L);
  while (lua_next(L, threads)) {
    couch_task *t = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (t && t->parked && !couch_task_unpark(t)) continue; /* being collected */
    if (t && !finished(t) && t->self_ref != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
      lua_rawseti(L, list, ++n);
    }
  }
  int cancelled = 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    cancelled += couch_task_cancel(L, lua_touserdata(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return cancelled;
}

static int l_task_cancel(lua_State *L) {
  lua_pushboolean(L, couch_task_cancel(L, check_task(L, 1)));
  return 1;
}

static int l_task_status(lua_State *L) {
  lua_pushstring(L, state_names[check_task(L, 1)->state]);
  return 1;
}

/* task:result() -> nil while running; true, ... when done; false, err when it failed. */
static int l_task_result(lua_State *L) {
  couch_task *t = check_task(L, 1);
  if (!finished(t)) return 0;
  t->error_seen = 1;
  lua_pushboolean(L, t->state == TASK_DONE);
  if (t->state != TASK_DONE) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->result_ref);
    return 2;
  }
  return 1 + push_outcome(L, t);
}

static int l_task_index(lua_State *L) {
  couch_task *t = check_task(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "name") == 0) lua_pushstring(L, t->name);
  else if (strcmp(k, "id") == 0) lua_pushinteger(L, t->id);
  else {
    luaL_getmetatable(L, TASK_MT);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
  }
  return 1;
}

static int l_task_tostring(lua_State *L) {
  couch_task *t = check_task(L, 1);
  lua_pushfstring(L, "couch.task #%d '%s' (%s)", (int)t->id, t->name, state_names[t->state]);
  return 1;
}

/* A task is only collected unfinished when it was parked on a wait no one can complete
 * any more: cancel it cleanly (detach the wait, drop the coroutine, count it out). */
static int l_task_gc(lua_State *L) {
  couch_task *t = check_task(L, 1);
  if (!finished(t)) {
    couch_wait *w = t->waiting_on;
    if (w) {
      couch_wait_list_remove(w);
      w->task = NULL;
      w->cancel = NULL;
    }
    t->waiting_on = NULL;
    t->state = TASK_CANCELLED;
    t->co = NULL; /* collected with this userdata */
    t->loop->tasks_alive--;
  }
  luaL_unref(L, LUA_REGISTRYINDEX, t->result_ref);
  t->result_ref = LUA_NOREF;
  return 0;
}

/* ---- sleeping ---- */

static int after_sleep(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_timed_wait_end(lua_touserdata(L, (int)ctx));
  return 0;
}

/* couch.sleep(seconds): yields inside a task; elsewhere turns the loop meanwhile. */
static int l_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  if (s < 0) return couch_error_usage(L, "seconds", "must not be negative");
  lua_settop(L, 0);
  couch_timed_wait *sw = couch_timed_wait_push(L, NULL, s, 0);
  return couch_await(L, &sw->w, 1, after_sleep);
}

/* couch.yield(): let every other ready task run once. */
static int l_yield(lua_State *L) {
  couch_task *t = couch_task_of(L);
  couch_loop *loop = couch_loop_get(L);
  if (t && lua_isyieldable(L)) return lua_yield(L, 0);
  couch_loop_step(loop, L);
  return 0;
}

/* couch.now() -> monotonic seconds (for measuring, not for dates) */
static int l_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

static int main_status(lua_State *L) {
  lua_pushliteral(L, "running");
  return 1;
}

static int main_tostring(lua_State *L) {
  lua_pushliteral(L, "couch.task main (the top level, not a task)");
  return 1;
}

/* couch.current() -> the running task; outside any task, a stand-in for the top level
 * (`main`: name "main", id 0, status "running"), so printing or asking it works. */
static int l_current(lua_State *L) {
  couch_task *t = couch_task_of(L);
  if (t) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
    return 1;
  }
  if (luaL_getsubtable(L, LUA_REGISTRYINDEX, "couch.main_task")) return 1;
  lua_pushliteral(L, "main");
  lua_setfield(L, -2, "name");
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "id");
  lua_createtable(L, 0, 2); /* its metatable */
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, main_status);
  lua_setfield(L, -2, "status");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, main_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_setmetatable(L, -2);
  return 1;
}

/* Raise the first task error no one has looked at (task:wait / task:result), with the
 * task's name added; forget the others' list. Returns 0 when there is none. */
int couch_task_raise_unseen(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, UNSEEN_KEY) != LUA_TTABLE) return 0;
  int list = lua_gettop(L);
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, UNSEEN_KEY);
  for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, list); i <= n; i++) {
    lua_rawgeti(L, list, i);
    couch_task *t = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (t->error_seen) continue;
    t->error_seen = 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->result_ref);
    if (couch_error_is(L, -1)) {
      couch_error_setstr(L, -1, "task", t->name);
    } else {
      lua_pushfstring(L, "%s failed: %s", t->name, luaL_tolstring(L, -1, NULL));
    }
    return lua_error(L);
  }
  return 0;
}

/* couch.run(): turn the loop until every task has finished; then raise the first error
 * that no one has looked at, naming its task. */
static int l_run(lua_State *L) {
  if (couch_task_of(L)) return couch_error_raise(L, "usage", "couch.run() cannot be called from inside a task");
  couch_loop *loop = couch_loop_get(L);
  int rc = couch_loop_run_tasks(loop, L);
  if (rc == COUCH_LOOP_STUCK) { /* tasks parked on waits no one holds any more go away */
    lua_gc(L, LUA_GCCOLLECT);
    lua_gc(L, LUA_GCCOLLECT);
    rc = couch_loop_run_tasks(loop, L);
  }
  if (rc == COUCH_LOOP_INTERRUPTED) {
    couch_loop_interrupt_consumed(L);
    return couch_error_raise(L, "cancelled", "interrupted");
  }
  if (rc == COUCH_LOOP_STUCK)
    return couch_error_raise(L, "deadlock", "%d task(s) wait for something nothing can complete",
                             loop->tasks_alive);
  couch_task_raise_unseen(L);
  return 0;
}

static const luaL_Reg task_methods[] = {
    {"wait", l_task_wait}, {"cancel", l_task_cancel}, {"status", l_task_status},
    {"result", l_task_result}, {NULL, NULL}};

static const luaL_Reg task_functions[] = {
    {"spawn", l_spawn}, {"sleep", l_sleep}, {"run", l_run},
    {"yield", l_yield}, {"current", l_current}, {"now", l_now}, {NULL, NULL}};

void couch_task_open(lua_State *L) {
  static const couch_meta meta = {.index = l_task_index, .gc = l_task_gc, .tostring = l_task_tostring};
  if (couch_meta_new(L, TASK_MT, &meta)) {
    luaL_newlib(L, task_methods);
    lua_setfield(L, -2, "methods");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, task_functions, 0);
}
