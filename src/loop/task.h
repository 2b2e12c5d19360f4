/* A task: a Lua coroutine run by the loop. The Lua side (couch.spawn, task:wait, ...) is
 * in src/task.c; the loop only needs the fields below. */
#ifndef COUCH_TASK_H
#define COUCH_TASK_H

#include "loop/loop.h"

typedef enum {
  TASK_READY,     /* in the ready queue */
  TASK_RUNNING,   /* being resumed right now */
  TASK_WAITING,   /* yielded inside couch_await */
  TASK_DONE,      /* returned */
  TASK_FAILED,    /* raised an error */
  TASK_CANCELLED  /* ended by cancel() */
} couch_task_state;

struct couch_task {
  couch_loop *loop;
  lua_State *co;        /* the task userdata's user value until the task finishes */
  int self_ref;         /* registry ref anchoring the task userdata while it has not
                           finished, except while parked (see loop/park.c) */
  int parked;           /* anchored by the owner of its wait instead (loop/park.c) */
  const void *parked_on; /* that owner */
  int result_ref;       /* table of results, or the error value */
  couch_task_state state;
  int nargs;            /* values on co's stack to pass at the next resume */
  int cancel_pending;   /* cancel() was called: this and every later wait fails */
  int error_seen;       /* someone waited on it: run() need not re-raise its error */
  couch_wait *waiting_on;
  couch_wait_list joiners;
  couch_timer timer;    /* for sleep() */
  unsigned id;
  char name[48];
};

/* The task whose own coroutine is L, or NULL (main thread, nested user coroutine...). */
couch_task *couch_task_of(lua_State *L);

/* Resume t (the one resume routine). Handles yield / finish / error. */
void couch_task_resume(couch_task *t, lua_State *from);

/* Park a task that blocks on a wait only the object at stack index `owner` can complete:
 * the owner anchors it instead of the registry (loop/park.c). Unparking anchors it in the
 * registry again; it returns 0 when the task is already being collected. */
void couch_task_park(couch_task *t, lua_State *L, int owner);
int couch_task_unpark(couch_task *t);

/* Finish t with an error value on top of from's stack without running it (not started). */
void couch_task_finish_unstarted(couch_task *t, lua_State *L);

#endif
