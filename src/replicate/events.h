#ifndef COUCH_REPL_EVENTS_H
#define COUCH_REPL_EVENTS_H
#include "replicate/batch.h"

/* Whether ev has handlers (a caller may skip building the event's arguments). */
int couch_repl_listening(couch_repl *r, couch_repl_event ev);

/* Call ev's handlers with the nargs values on top (consumed), then go on with
 * k(L, status, ctx). protect = 0: a handler's failure raises (in a task, the job's failure);
 * protect = 1: under lua_pcallk, k sees it (status, the error on top). Ends as k does. */
int couch_repl_emit(lua_State *L, couch_repl *r, couch_repl_event ev, int nargs, int protect, lua_KContext ctx,
                    lua_KFunction k);

/* Push the argument of `change`: a new table of the job's stats, the batch's own counts
 * (read, written, failed) and last_seq (the value at last_seq). */
void couch_repl_push_change(lua_State *L, couch_repl *r, const couch_repl_batch *b, int last_seq);

/* A continuous job that has read everything and finished every batch it read says so, once
 * (`paused` without an error); else nothing. Then k(L, status, ctx), as couch_repl_emit. */
int couch_repl_maybe_caught_up(lua_State *L, couch_repl *r, lua_KContext ctx, lua_KFunction k);
/* Whether the job has just caught up (couch_repl_maybe_caught_up would say `paused`). */
int couch_repl_is_caught_up(couch_repl *r);
/* New changes after `paused`: `active`, once; else nothing. Then k, as couch_repl_emit. */
int couch_repl_resumed(lua_State *L, couch_repl *r, lua_KContext ctx, lua_KFunction k);

/* The job has ended and said so: drop the handlers (a handler holding the job then makes
 * no cycle through the registry). */
void couch_repl_events_release(lua_State *L, couch_repl *r);

/* Add job:on and job:_handlers to the job's metatable. */
void couch_events_open(lua_State *L);
#endif
