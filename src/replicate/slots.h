/* Fetch ahead (issue 12): the job's read and write slots (slots.c). */
#ifndef COUCH_REPL_SLOTS_H
#define COUCH_REPL_SLOTS_H

#include "replicate/job.h"

/* What a batch (couch_repl_batch.slot) or a worker holds: a set of these bits. */
enum { SLOT_READ = 1, SLOT_WRITE = 2, SLOT_POP = 4, SLOT_HOOK = 8, SLOT_ALL = 15 };

/* Take a slot of `kind` into *held, waiting while none is free; then k(L, LUA_OK, ctx)
 * with the stack cut to `keep`. Taking the write slot lets the read slot go first; a read
 * slot is taken on top of a write slot (a batch's next chunk). Use as
 * `return couch_repl_slot_take(...)`. */
int couch_repl_slot_take(lua_State *L, couch_repl *r, int *held, int kind, int keep, lua_KContext ctx,
                         lua_KFunction k);

/* Let go of the slots in `kinds` that *held holds, and wake the tasks waiting for one. */
void couch_repl_slot_drop(lua_State *L, couch_repl *r, int *held, int kinds);

/* A new run: no slot is taken (the tasks of a failed run are gone, whatever they held). */
void couch_repl_slots_reset(lua_State *L, couch_repl *r);

#endif
