/* The loop proper: the multi handle, the ready queue and the turn of the crank. Modelled on
 * curl's multi-* examples: drive the sockets that are ready (io.c), drain
 * curl_multi_info_read, hand each finished transfer to its owner through CURLINFO_PRIVATE,
 * and resume Lua only from here, never from a libcurl callback. */
#include "error.h"
#include "log.h"
#include "loop/loop.h"
#include "loop/io.h"
#include "loop/task.h"

#include <lauxlib.h>
#include <pthread.h>
#include <stdlib.h>

#define LOOP_KEY "couch.loop"     /* registry slot holding the loop */
#define LOOP_MT "couch.loop.mt"   /* its metatable */

/* As lua.c's lstop: a hook set from the signal handler stops Lua code that never waits. In
 * the main thread the error it raises is the interrupt (spent); in a task, the call that
 * runs the loop still ends with the interrupt too. */
static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  couch_loop *loop = couch_loop_get(L);
  if (L == loop->L) atomic_store(&loop->interrupted, 0);
  couch_error_raise(L, "cancelled", "interrupted");
}

void couch_loop_set_running(couch_loop *loop, lua_State *co) { atomic_store(&loop->running_task, co); }

void couch_loop_set_host_stop_hook(couch_loop *loop, lua_Hook hook) { loop->host_stop_hook = hook; }

void couch_loop_interrupt_consumed(lua_State *L) {
  /* The interrupt has become one `cancelled` error; the host's hook (set by the same
   * Ctrl-C) must not raise a second one after a pcall has caught the first. */
  couch_loop *loop = couch_loop_get(L);
  lua_Hook hooks[2] = {loop->host_stop_hook, stop_hook};
  for (int i = 0; i < 2; i++) {
    if (hooks[i] && lua_gethook(loop->L) == hooks[i]) lua_sethook(loop->L, NULL, 0, 0);
    if (hooks[i] && lua_gethook(L) == hooks[i]) lua_sethook(L, NULL, 0, 0);
  }
}

void couch_loop_interrupt(couch_loop *loop) {
  atomic_store(&loop->interrupted, 1);
  /* Stop Lua code that never waits: the task running now, else the main thread (unless the
   * host stops that with a hook of its own). lua_sethook is signal-safe. */
  lua_State *co = atomic_load(&loop->running_task);
  if (!co && !loop->host_stop_hook) co = loop->L;
  if (co) lua_sethook(co, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  couch_io_wake(loop); /* write() on an eventfd: signal-safe */
}

void couch_loop_clear_interrupt(couch_loop *loop) { atomic_store(&loop->interrupted, 0); }

static void cancel_everything(couch_loop *loop) {
  /* Tasks are collected by Lua itself; here only C resources are released. */
  loop->closing = 1;
  couch_timer_heap_free(&loop->timers);
}

static int loop_gc(lua_State *L) {
  couch_loop *loop = luaL_checkudata(L, 1, LOOP_MT);
  if (!loop->multi) return 0;
  cancel_everything(loop);
  curl_multi_cleanup(loop->multi);
  couch_io_close(loop);
  loop->multi = NULL;
  free(loop->ready);
  loop->ready = NULL;
  return 0;
}

/* libcurl's global start is not thread-safe: once per process, whichever host comes first. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_status;
static void init_curl(void) { curl_status = curl_global_init(CURL_GLOBAL_DEFAULT); }

couch_loop *couch_loop_get(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, LOOP_KEY) == LUA_TUSERDATA) {
    couch_loop *loop = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return loop;
  }
  lua_pop(L, 1);
  pthread_once(&curl_once, init_curl);
  if (curl_status != CURLE_OK) luaL_error(L, "libcurl failed to start");
  couch_loop *loop = lua_newuserdatauv(L, sizeof *loop, 0);
  *loop = (couch_loop){0};
  atomic_init(&loop->interrupted, 0);
  atomic_init(&loop->running_task, NULL);
  loop->next_task_id = 1;
  loop->log_level = couch_log_level_from_env();
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  loop->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  loop->multi = curl_multi_init();
  loop->epfd = loop->wake_fd = -1;
  if (!loop->multi) luaL_error(L, "libcurl: cannot create a multi handle");
  if (couch_io_init(loop) != 0) luaL_error(L, "cannot create the loop's epoll / eventfd");
  if (luaL_newmetatable(L, LOOP_MT)) {
    lua_pushcfunction(L, loop_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, LOOP_KEY);
  return loop;
}

int couch_loop_add_transfer(couch_loop *loop, couch_transfer *tr) {
  curl_easy_setopt(tr->easy, CURLOPT_PRIVATE, tr);
  if (curl_multi_add_handle(loop->multi, tr->easy) != CURLM_OK) return -1;
  loop->transfers++;
  return 0;
}

void couch_loop_remove_transfer(couch_loop *loop, couch_transfer *tr) {
  if (loop->multi && curl_multi_remove_handle(loop->multi, tr->easy) == CURLM_OK)
    loop->transfers--;
}

void couch_loop_make_ready(couch_loop *loop, couch_task *t) {
  if (loop->ready_len == loop->ready_cap) {
    size_t cap = loop->ready_cap ? loop->ready_cap * 2 : 64;
    couch_task **r = malloc(cap * sizeof *r);
    if (!r) abort(); /* cannot queue a wake-up: continuing would hang the task forever */
    for (size_t i = 0; i < loop->ready_len; i++)
      r[i] = loop->ready[(loop->ready_head + i) % loop->ready_cap];
    free(loop->ready);
    loop->ready = r;
    loop->ready_cap = cap;
    loop->ready_head = 0;
  }
  t->state = TASK_READY;
  loop->ready[(loop->ready_head + loop->ready_len++) % loop->ready_cap] = t;
}

void couch_loop_unready(couch_loop *loop, couch_task *t) {
  size_t kept = 0;
  for (size_t i = 0; i < loop->ready_len; i++) {
    couch_task *x = loop->ready[(loop->ready_head + i) % loop->ready_cap];
    if (x != t) loop->ready[(loop->ready_head + kept++) % loop->ready_cap] = x;
  }
  loop->ready_len = kept;
}

static couch_task *pop_ready(couch_loop *loop) {
  if (loop->ready_len == 0) return NULL;
  couch_task *t = loop->ready[loop->ready_head];
  loop->ready_head = (loop->ready_head + 1) % loop->ready_cap;
  loop->ready_len--;
  return t;
}

static void drain_finished(couch_loop *loop) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(loop->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    CURL *easy = m->easy_handle;
    CURLcode result = m->data.result;
    couch_transfer *tr = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&tr);
    couch_loop_remove_transfer(loop, tr);
    tr->done(tr, result);
  }
}

static void fire_due_timers(couch_loop *loop) {
  couch_timer *t;
  while ((t = couch_timer_pop_due(&loop->timers))) t->fire(t);
}

static void run_ready(couch_loop *loop, lua_State *from) {
  /* Only the tasks ready now: a task that re-queues itself waits for the next turn. */
  for (size_t n = loop->ready_len; n > 0; n--) {
    couch_task *t = pop_ready(loop);
    if (t && t->state == TASK_READY) couch_task_resume(t, from);
  }
}

int64_t couch_loop_timeout(const couch_loop *loop) {
  if (loop->ready_len > 0 || atomic_load(&loop->interrupted)) return 0;
  int64_t next = couch_timer_next(&loop->timers);
  int64_t curl_next = couch_io_next_ms(loop);
  if (curl_next >= 0 && (next < 0 || curl_next < next)) next = curl_next;
  return next;
}

/* One turn; `done` says whether the caller's wait is already over, in which case the
 * turn must not sleep in poll; nor does it when may_wait is 0. */
static void turn(couch_loop *loop, lua_State *from, int (*done)(couch_loop *, const int *),
                 const int *flag, int may_wait) {
  run_ready(loop, from);
  fire_due_timers(loop);
  couch_io_kick(loop);
  drain_finished(loop);
  int idle = loop->transfers == 0 && loop->timers.len == 0;
  if (!may_wait) {
    couch_io_wait(loop, 0);
    drain_finished(loop);
  } else if (loop->ready_len == 0 && !atomic_load(&loop->interrupted) && !idle &&
             !(done && done(loop, flag))) {
    int64_t next = couch_loop_timeout(loop);
    couch_io_wait(loop, (next < 0 || next > 1000) ? 1000 : (int)next);
    drain_finished(loop);
  }
  fire_due_timers(loop);
}

void couch_loop_step(couch_loop *loop, lua_State *from) { turn(loop, from, NULL, NULL, 1); }

void couch_loop_poll(couch_loop *loop, lua_State *from) { turn(loop, from, NULL, NULL, 0); }

int couch_loop_service(couch_loop *loop) {
  fire_due_timers(loop);
  couch_io_kick(loop);
  couch_io_wait(loop, 0);
  drain_finished(loop);
  fire_due_timers(loop);
  return (int)loop->ready_len;
}

void couch_loop_run_ready(couch_loop *loop, lua_State *from) { run_ready(loop, from); }

static int flag_set(couch_loop *loop, const int *flag) {
  (void)loop;
  return *flag;
}

static int no_tasks(couch_loop *loop, const int *flag) {
  (void)flag;
  return loop->tasks_alive == 0;
}

/* Shared by both: run while keep_going says so. */
static int run_while(couch_loop *loop, lua_State *from, const int *flag, int for_tasks) {
  while (for_tasks ? loop->tasks_alive > 0 : !*flag) {
    if (atomic_exchange(&loop->interrupted, 0)) {
      return COUCH_LOOP_INTERRUPTED;
    }
    if (loop->ready_len == 0 && loop->transfers == 0 && loop->timers.len == 0)
      return COUCH_LOOP_STUCK;
    turn(loop, from, for_tasks ? no_tasks : flag_set, flag, 1);
  }
  /* an interrupt that stopped the last task (a task spinning in Lua code) still ends the
   * call that was waiting for it */
  if (atomic_exchange(&loop->interrupted, 0)) return COUCH_LOOP_INTERRUPTED;
  return 0;
}

int couch_loop_run_until(couch_loop *loop, lua_State *from, const int *flag) {
  return run_while(loop, from, flag, 0);
}

int couch_loop_run_tasks(couch_loop *loop, lua_State *from) {
  return run_while(loop, from, NULL, 1);
}
