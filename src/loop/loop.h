/* The event loop: one curl_multi handle, a timer heap and a ready queue of tasks, one per
 * main lua_State. The loop is the one place that resumes task coroutines (resume.c);
 * everything else only marks a wait as complete, and the loop does the rest. */
#ifndef COUCH_LOOP_H
#define COUCH_LOOP_H

#include <curl/curl.h>
#include <lua.h>
#include <stdatomic.h>

#include "loop/timer.h"

typedef struct couch_loop couch_loop;
typedef struct couch_task couch_task;
typedef struct couch_wait couch_wait;
typedef struct couch_transfer couch_transfer;

/* Something a task (or a blocking caller) waits for. Lives in a userdata on the waiting
 * coroutine's stack, so it survives a yield and is collected with the coroutine. */
struct couch_wait {
  int done;                      /* set by couch_wait_complete */
  int cancelled;                 /* set when the waiter was cancelled / interrupted */
  int aborted;                   /* ...by an abort handle (abort.c) */
  int owner;                     /* stack index of the only object that can complete it
                                    (a cond, a joined task: no timeout), or 0; a task waiting
                                    on it is parked: kept alive by that object alone */
  couch_task *task;              /* the task to wake, or NULL for a blocking caller */
  void (*cancel)(couch_wait *w); /* abort what is pending (may be NULL) */
  void (*finalize)(couch_wait *w); /* free the owner's C resources, from __gc (may be NULL) */
  void *data;                    /* owner of the pending operation */
  lua_KFunction k;               /* continuation, called once the wait is over */
  lua_KContext ctx;
  couch_wait *next, *prev;       /* membership in a couch_wait_list */
  struct couch_wait_list *list;
};

/* Waiters parked on one thing (a task's end, a condition). */
typedef struct couch_wait_list {
  couch_wait *head, *tail;
} couch_wait_list;

/* A transfer on the multi handle: CURLINFO_PRIVATE points at it. */
struct couch_transfer {
  CURL *easy;
  void (*done)(couch_transfer *tr, CURLcode result); /* C only: never resumes Lua */
};

struct couch_loop {
  lua_State *L;                 /* the main thread */
  CURLM *multi;
  couch_timer_heap timers;
  couch_task **ready;           /* FIFO ring of tasks to resume */
  size_t ready_head, ready_len, ready_cap;
  int transfers;                /* easy handles on the multi */
  int epfd, wake_fd;            /* see io.c */
  int64_t curl_due_ms;          /* libcurl's next timeout, -1 for none */
  int tasks_alive;              /* spawned and not finished */
  unsigned next_task_id;
  int closing;
  /* Written from a signal handler or another thread (couch_loop_interrupt): lock-free
   * atomics, which are async-signal-safe. */
  atomic_int interrupted;
  _Atomic(lua_State *) running_task; /* the task coroutine being resumed, if any */
  lua_Hook host_stop_hook;      /* the embedding program's own Ctrl-C hook, if any */
  int log_level;                /* COUCH_LOG_* (log.h) */
};

/* The loop of L's main state, created on first use. */
couch_loop *couch_loop_get(lua_State *L);

int couch_loop_add_transfer(couch_loop *loop, couch_transfer *tr);
void couch_loop_remove_transfer(couch_loop *loop, couch_transfer *tr);
void couch_loop_make_ready(couch_loop *loop, couch_task *t);
void couch_loop_unready(couch_loop *loop, couch_task *t);

/* One turn: resume ready tasks, fire due timers, wait for I/O (at most until the next
 * deadline, not at all when tasks are ready), hand finished transfers to their owners. */
void couch_loop_step(couch_loop *loop, lua_State *from);
/* The same turn without ever sleeping (a host's own loop drives this one). */
void couch_loop_poll(couch_loop *loop, lua_State *from);
/* Milliseconds until the next timed work (timer, libcurl timeout); 0 when tasks are ready
 * or an interrupt is pending; -1 when nothing is scheduled. */
int64_t couch_loop_timeout(const couch_loop *loop);
/* The two halves of a non-blocking turn, for a caller that must know before Lua runs (the
 * REPL moves its prompt out of the way): service handles due timers and ready sockets
 * without running any Lua and returns how many tasks are now ready; run_ready resumes
 * them. */
int couch_loop_service(couch_loop *loop);
void couch_loop_run_ready(couch_loop *loop, lua_State *from);

/* Turn the loop until *flag becomes non-zero. 0 when it did; COUCH_LOOP_INTERRUPTED after
 * Ctrl-C; COUCH_LOOP_STUCK when nothing pending could ever set it. */
enum { COUCH_LOOP_INTERRUPTED = -1, COUCH_LOOP_STUCK = -2 };
int couch_loop_run_until(couch_loop *loop, lua_State *from, const int *flag);
/* The same, until every spawned task has finished. */
int couch_loop_run_tasks(couch_loop *loop, lua_State *from);

/* Async-signal-safe and thread-safe: called from a SIGINT handler or another thread. The
 * running blocking call (if any) ends with a `cancelled` error, a task stuck in Lua code
 * is stopped at its next instruction, and the loop stays usable. */
void couch_loop_interrupt(couch_loop *loop);
/* The task coroutine being resumed now (NULL between resumes), so an interrupt can stop a
 * task stuck in Lua code that never waits. */
void couch_loop_set_running(couch_loop *loop, lua_State *co);
/* A host that stops Lua code on Ctrl-C with a hook of its own (as lua.c does) names it
 * here; once the loop has turned an interrupt into a `cancelled` error, it removes that hook
 * so one Ctrl-C is one error, which a single pcall catches. */
void couch_loop_set_host_stop_hook(couch_loop *loop, lua_Hook hook);
void couch_loop_interrupt_consumed(lua_State *L);
/* Forget an interrupt that arrived while nothing ran: called where a host starts running
 * code (couchlua_dostring..., the command's each chunk). */
void couch_loop_clear_interrupt(couch_loop *loop);

/* ---- waiting ---- */

/* A new wait object pushed on L's stack: a userdata of `size` bytes that starts with a
 * couch_wait (owners embed it first in a struct of their own), zeroed, with two user
 * value slots for anchoring Lua values. Collected unfinished, it calls its cancel; then
 * its finalize. */
couch_wait *couch_wait_new(lua_State *L, size_t size);

/* Wait for w: inside a task's own coroutine this yields to the loop; anywhere else it
 * turns the loop until w is done. Either way k(L, status, ctx) then runs with w still on
 * the stack; it raises a `cancelled` error instead if the wait was cancelled/interrupted. */
int couch_await(lua_State *L, couch_wait *w, lua_KContext ctx, lua_KFunction k);

/* Mark w done and wake its task. */
void couch_wait_complete(couch_loop *loop, couch_wait *w);

/* A wait that ends when completed or after a timeout: cond:wait, task:wait, couch.sleep. */
typedef struct {
  couch_wait w;
  couch_timer timer;
  couch_loop *loop;
  int timed_out;
} couch_timed_wait;
/* Push a new one on L's stack, in list (or none), timing out after seconds; with seconds < 0
 * it never times out and only the object at stack index `owner` can complete it (see
 * couch_wait.owner). */
couch_timed_wait *couch_timed_wait_push(lua_State *L, couch_wait_list *list, lua_Number seconds,
                                        int owner);
/* In the continuation: stop its timer; whether it timed out. */
int couch_timed_wait_end(couch_timed_wait *tw);

void couch_wait_list_add(couch_wait_list *l, couch_wait *w);
void couch_wait_list_remove(couch_wait *w);
/* Complete the first waiter / every waiter. Returns how many were woken. */
int couch_wait_list_wake_one(couch_loop *loop, couch_wait_list *l);
int couch_wait_list_wake_all(couch_loop *loop, couch_wait_list *l);

#endif
