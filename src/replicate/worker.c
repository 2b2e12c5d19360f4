/* job:_work(queue): one of the native replication's 2 × `concurrency` workers (fetch ahead:
 * at most `concurrency` of them read and `concurrency` write at once, slots.c).
 * Steps, each its own continuation (the context is the job's struct; the stack holds
 * the job, the queue and the batch being moved):
 *   a pop slot (slots.c: no more workers popping than read slots free) -> pop a batch
 *   (queue:pop, waits while the queue is empty) -> move it (batch.c: it takes a read slot,
 *   then a write slot; a move that raises lets its slots go before its error goes on)
 *   -> record it finished (done.c: through seq over the longest finished run) -> `change`
 *   -> checkpoint when checkpoint_interval has passed, or when this was the last batch of a
 *   caught-up continuous job (then `paused`: events.c) -> progress (replicate.lua's report
 *   runner) -> pop again, until the queue is closed and drained. */
#include "replicate/worker.h"

#include "replicate/batch.h"
#include "replicate/done.h"
#include "replicate/events.h"
#include "replicate/job.h"
#include "replicate/slots.h"

#include <lauxlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

enum { S_JOB = 1, S_QUEUE, S_BATCH, S_HELD, S_TOP = S_HELD }; /* S_HELD: the worker's pop slot */

static int pop(lua_State *L, couch_repl *r);

/* Peak RSS flat with the database (issue 12). What a batch allocates (its _bulk_get answer,
 * the slices, the _bulk_docs body: about a MB each at 500 documents of 1 KB) is garbage as
 * soon as it is written, but Lua's collector lets the heap grow to twice what is live
 * before it finishes a cycle, and glibc raises its mmap threshold to the largest block
 * freed, after which such blocks come from the heap and its freed middle is not given
 * back: the peak crept up with the number of batches (+16 % from 10k to 100k documents).
 * Every 8th batch a full collection and a malloc_trim put it back to what is live; a few
 * milliseconds per 4,000 documents. */
static void give_back(lua_State *L, couch_repl *r) {
  if (++r->finished % 8 != 0) return;
  lua_gc(L, LUA_GCCOLLECT);
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

static int reported_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return pop(L, (couch_repl *)ctx);
}

static int paused_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl *r = (couch_repl *)ctx;
  lua_settop(L, S_TOP);
  couch_repl_push_runner(L, r, RUN_REPORT);
  if (lua_isnil(L, -1)) return pop(L, r);
  lua_pushvalue(L, S_JOB);
  lua_callk(L, 1, 0, ctx, reported_k);
  return reported_k(L, LUA_OK, ctx);
}

static int checkpointed_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lua_settop(L, S_TOP);
  return couch_repl_maybe_caught_up(L, (couch_repl *)ctx, ctx, paused_k);
}

/* `change` said: checkpoint when it is time, or when the job has just caught up (so that
 * `paused` means "everything so far is on the target and recorded"). */
static int changed_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl *r = (couch_repl *)ctx;
  lua_settop(L, S_TOP);
  int caught_up = couch_repl_is_caught_up(r);
  if (!caught_up && couch_repl_now() - r->last_checkpoint < r->checkpoint_interval)
    return checkpointed_k(L, LUA_OK, ctx);
  luaL_getmetafield(L, S_JOB, "methods");
  lua_getfield(L, -1, "_checkpoint");
  lua_remove(L, -2);
  lua_pushvalue(L, S_JOB);
  lua_pushboolean(L, caught_up); /* then it waits for one in flight, and records it all */
  lua_callk(L, 2, 0, ctx, checkpointed_k);
  return checkpointed_k(L, LUA_OK, ctx);
}

static int moved_k(lua_State *L, int status, lua_KContext ctx) {
  couch_repl *r = (couch_repl *)ctx;
  couch_repl_batch *b = luaL_checkudata(L, S_BATCH, COUCH_REPL_BATCH_MT);
  if (status != LUA_OK && status != LUA_YIELD) { /* the others must not wait for its slots */
    couch_repl_slot_drop(L, r, &b->slot, SLOT_ALL);
    return lua_error(L);
  }
  lua_settop(L, S_TOP);
  lua_getiuservalue(L, S_BATCH, BATCH_LAST_SEQ);
  if (couch_repl_done_finish(L, r, b->index, -1, b->hold)) return luaL_error(L, "out of memory");
  r->moved++;
  r->progressed = 1;
  if (couch_repl_listening(r, EV_CHANGE)) {
    couch_repl_push_change(L, r, b, -1);
    lua_replace(L, -2);
    give_back(L, r);
    return couch_repl_emit(L, r, EV_CHANGE, 1, 0, ctx, changed_k);
  }
  lua_settop(L, S_TOP);
  give_back(L, r);
  return changed_k(L, LUA_OK, ctx);
}

static int popped_k(lua_State *L, int status, lua_KContext ctx) {
  couch_repl_slot_drop(L, (couch_repl *)ctx, lua_touserdata(L, S_HELD), SLOT_POP);
  if (status != LUA_OK && status != LUA_YIELD) return lua_error(L);
  if (!lua_toboolean(L, -1)) return 0; /* closed and drained */
  lua_replace(L, S_BATCH);
  lua_settop(L, S_TOP);
  lua_pushcfunction(L, couch_repl_move_batch);
  lua_pushvalue(L, S_JOB);
  lua_pushvalue(L, S_BATCH);
  return moved_k(L, lua_pcallk(L, 2, 0, 0, ctx, moved_k), ctx);
}

/* A pop slot is the worker's: take the next batch (then batch.c waits for a read slot). */
static int may_pop_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lua_getfield(L, S_QUEUE, "pop");
  lua_pushvalue(L, S_QUEUE);
  return popped_k(L, lua_pcallk(L, 1, 1, 0, ctx, popped_k), ctx);
}

/* The batch moved lets its write slot go (held through its `change` and checkpoint, so
 * the batches sharing a slot finish in order); then a pop slot, and pop. */
static int pop(lua_State *L, couch_repl *r) {
  lua_settop(L, S_TOP);
  couch_repl_batch *moved = luaL_testudata(L, S_BATCH, COUCH_REPL_BATCH_MT);
  if (moved) couch_repl_slot_drop(L, r, &moved->slot, SLOT_ALL);
  lua_pushnil(L);
  lua_replace(L, S_BATCH); /* a batch moved is not kept while waiting for the next */
  return couch_repl_slot_take(L, r, lua_touserdata(L, S_HELD), SLOT_POP, S_TOP, (lua_KContext)r, may_pop_k);
}

/* job:_work(queue): move batches until the queue is closed and empty. */
static int l_work(lua_State *L) {
  couch_repl *r = couch_repl_check(L, 1);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  luaL_checkstack(L, 16, "moving batches");
  lua_pushnil(L); /* S_BATCH */
  *(int *)lua_newuserdatauv(L, sizeof(int), 0) = 0; /* S_HELD */
  return pop(L, r);
}

void couch_worker_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"_work", l_work}, {NULL, NULL}};
  couch_repl_add_methods(L, methods);
}
