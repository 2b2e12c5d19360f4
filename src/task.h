/* The Lua face of tasks: couch.spawn, sleep, run, yield, current and the task object. */
#ifndef COUCH_TASK_API_H
#define COUCH_TASK_API_H

#include <lua.h>

#include "loop/task.h"

/* Add spawn/sleep/run/yield/current to the table on top of the stack. */
void couch_task_open(lua_State *L);
int couch_task_cancel(lua_State *L, couch_task *t);
/* Cancel every task still alive (the REPL's second Ctrl-D); returns how many. */
int couch_task_cancel_all(lua_State *L);
/* Raise the first unobserved task error (named); returns 0 when there is none. */
int couch_task_raise_unseen(lua_State *L);

#endif
