/* Waiting, the cosocket way: yield when the caller is a task's own coroutine and may yield,
 * otherwise turn the loop right here until the awaited thing is done. */
#include "error.h"
#include "loop/loop.h"
#include "loop/task.h"

#include <lauxlib.h>
#include <string.h>

#define WAIT_MT "couch.wait"

/* A wait collected before it completed (its coroutine was dropped): abort what it waited
 * for, so no transfer or timer is left pointing at freed memory. */
static int wait_gc(lua_State *L) {
  couch_wait *w = lua_touserdata(L, 1);
  if (!w->done && w->cancel) w->cancel(w);
  w->cancel = NULL;
  if (w->list) couch_wait_list_remove(w);
  if (w->finalize) w->finalize(w);
  w->finalize = NULL;
  return 0;
}

couch_wait *couch_wait_new(lua_State *L, size_t size) {
  couch_wait *w = lua_newuserdatauv(L, size, 2);
  memset(w, 0, size);
  if (luaL_newmetatable(L, WAIT_MT)) {
    lua_pushcfunction(L, wait_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return w;
}

void couch_wait_complete(couch_loop *loop, couch_wait *w) {
  if (w->done) return;
  w->done = 1;
  if (w->list) couch_wait_list_remove(w);
  couch_task *t = w->task;
  if (t && t->state == TASK_WAITING && t->waiting_on == w) {
    if (t->parked && !couch_task_unpark(t)) return; /* being collected: its __gc cancels it */
    t->waiting_on = NULL;
    couch_loop_make_ready(loop, t);
  }
}

static int after_wait(lua_State *L, int status, lua_KContext ctx) {
  couch_wait *w = lua_touserdata(L, (int)ctx);
  couch_task *t = w->task;
  w->task = NULL;
  if (w->cancelled || (t && t->cancel_pending)) {
    if (!w->done && w->cancel) w->cancel(w);
    w->cancel = NULL;
    return couch_error_raise(L, "cancelled", w->aborted ? "aborted" : t ? "task cancelled" : "interrupted");
  }
  return w->k(L, status, w->ctx);
}

int couch_await(lua_State *L, couch_wait *w, lua_KContext ctx, lua_KFunction k) {
  int widx = lua_absindex(L, -1);
  luaL_checkudata(L, widx, WAIT_MT); /* the wait must be on top of the stack */
  w->k = k;
  w->ctx = ctx;
  couch_loop *loop = couch_loop_get(L);
  couch_task *t = couch_task_of(L);
  if (t && t->cancel_pending) { /* a cancelled task's waits all fail, at once */
    w->task = t;
    return after_wait(L, LUA_OK, widx);
  }
  if (t && lua_isyieldable(L)) {
    if (w->done) return after_wait(L, LUA_OK, widx);
    w->task = t;
    t->waiting_on = w;
    t->state = TASK_WAITING;
    if (w->owner) couch_task_park(t, L, w->owner);
    return lua_yieldk(L, 0, widx, after_wait);
  }
  /* Blocking: the task (if any) stays RUNNING, so the loop never resumes it meanwhile. */
  int rc = couch_loop_run_until(loop, L, &w->done);
  if (rc == COUCH_LOOP_INTERRUPTED) {
    w->cancelled = 1;
    couch_loop_interrupt_consumed(L);
  }
  if (rc == COUCH_LOOP_STUCK) {
    if (w->cancel) w->cancel(w);
    return couch_error_raise(L, "deadlock",
                             "waiting forever: no task, transfer or timer can complete this wait");
  }
  w->task = t; /* a task cancelled meanwhile gets its `cancelled` now (the loop is done with w) */
  return after_wait(L, LUA_OK, widx);
}

void couch_wait_list_add(couch_wait_list *l, couch_wait *w) {
  w->list = l;
  w->next = NULL;
  w->prev = l->tail;
  if (l->tail) l->tail->next = w;
  else l->head = w;
  l->tail = w;
}

void couch_wait_list_remove(couch_wait *w) {
  couch_wait_list *l = w->list;
  if (!l) return;
  if (w->prev) w->prev->next = w->next;
  else l->head = w->next;
  if (w->next) w->next->prev = w->prev;
  else l->tail = w->prev;
  w->next = w->prev = NULL;
  w->list = NULL;
}

int couch_wait_list_wake_one(couch_loop *loop, couch_wait_list *l) {
  if (!l->head) return 0;
  couch_wait_complete(loop, l->head);
  return 1;
}

int couch_wait_list_wake_all(couch_loop *loop, couch_wait_list *l) {
  int n = 0;
  while (l->head) {
    couch_wait_complete(loop, l->head);
    n++;
  }
  return n;
}

/* ---- a wait with a timeout: cond:wait, task:wait and couch.sleep are this ---- */

static void timed_out(couch_timer *tm) {
  couch_timed_wait *tw = tm->owner;
  tw->timed_out = 1;
  couch_wait_complete(tw->loop, &tw->w);
}

static void timed_cancel(couch_wait *w) {
  couch_timed_wait *tw = (couch_timed_wait *)w;
  couch_timer_stop(&tw->loop->timers, &tw->timer);
  couch_wait_list_remove(w);
}

/* Collected: whatever ended the wait, its timer leaves the heap. A wait woken and then
 * cancelled before its task ran again never reached couch_timed_wait_end (the cancel
 * raises instead of calling the continuation), and its timer fired into freed memory. */
static void timed_finalize(couch_wait *w) { timed_cancel(w); }

couch_timed_wait *couch_timed_wait_push(lua_State *L, couch_wait_list *list, lua_Number seconds,
                                        int owner) {
  couch_timed_wait *tw = (couch_timed_wait *)couch_wait_new(L, sizeof *tw);
  tw->loop = couch_loop_get(L);
  tw->w.cancel = timed_cancel;
  tw->w.finalize = timed_finalize;
  couch_timer_init(&tw->timer, timed_out, tw);
  if (list) couch_wait_list_add(list, &tw->w);
  if (seconds >= 0) couch_timer_start(&tw->loop->timers, &tw->timer, (int64_t)(seconds * 1000));
  else tw->w.owner = owner;
  return tw;
}

int couch_timed_wait_end(couch_timed_wait *tw) {
  couch_timer_stop(&tw->loop->timers, &tw->timer);
  return tw->timed_out;
}
