/* Instruction budgets for user code the engine calls (replication hooks), as Redis bounds
 * a script with a count hook: a hook that loops forever ends in a `budget` error instead
 * of hanging the job. The budget counts Lua VM instructions of the call, across yields
 * (a hook may call the server and wait); time spent waiting or in C functions is free.
 *
 * internal.budget_call(limit, fn, ...) -> fn's results, or raises fn's error, or a `budget`
 * error object (field `limit`) once fn has run `limit` instructions. Budgets nest: an
 * inner call counts against the outer one too. */
#ifndef COUCH_BUDGET_H
#define COUCH_BUDGET_H

#include <lua.h>

/* Re-arm the count hook of a thread with a budget running; the loop clears a task's
 * hooks after each resume (an interrupt's stop hook must not outlive it) and calls this
 * right before the next one. */
void couch_budget_rearm(lua_State *co);

void couch_budget_open(lua_State *L); /* registers internal.budget_call */

#endif
