/* couch._work_loop(job, queue): one of the native replication's `concurrency` workers.
 * It pops batches from the reader's queue, moves each one (couch._move_batch), and then
 * advances job.through_seq over the longest run of finished batches: batches finish out
 * of order, and a checkpoint must never claim a batch that is still in flight, so a crash
 * at any point resumes without losing anything; nor past a batch holding revisions it
 * could not read (batch.hold), so the next run reads them again. It checkpoints every
 * job.checkpoint_interval seconds and lets the Lua half report progress (job:_report()).
 * The bookkeeping the workers share lives in the job: job._done (index -> batch) and
 * job._next_done (the first index not yet finished).
 * Every call that may yield (pop, move, checkpoint, the user's progress hook) is made with
 * lua_callk; the state lives in fixed stack slots. */
#include "replicate/worker.h"

#include <lauxlib.h>

enum { S_JOB = 1, S_QUEUE, S_COUCH, S_BATCH, S_TOP = S_BATCH };
enum { ST_POP = 1, ST_POPPED, ST_MOVED, ST_CHECKPOINTED, ST_REPORTED };

/* The batch at S_BATCH is done: record it and move through_seq over the finished run.
 * A batch with revisions it could not read (batch.hold) is never passed: through_seq stops
 * before it for the rest of the run (job._held_at), so the next run reads them again. */
static void finished_batch(lua_State *L) {
  lua_getfield(L, S_JOB, "_done");
  int done = lua_gettop(L);
  lua_getfield(L, S_BATCH, "index");
  lua_Integer index = lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, S_JOB, "_held_at");
  lua_Integer held = lua_isnil(L, -1) ? LUA_MAXINTEGER : lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, S_BATCH, "hold");
  if (lua_toboolean(L, -1) && index < held) {
    held = index;
    lua_pushinteger(L, held);
    lua_setfield(L, S_JOB, "_held_at");
  }
  lua_pop(L, 1);
  if (index < held) { /* what lies past a held batch never counts: not kept */
    lua_pushvalue(L, S_BATCH);
    lua_rawseti(L, done, index);
  }
  lua_getfield(L, S_JOB, "info");
  int info = lua_gettop(L);
  lua_getfield(L, S_JOB, "_next_done");
  lua_Integer next = lua_tointeger(L, -1);
  lua_pop(L, 1);
  while (next < held && lua_rawgeti(L, done, next) != LUA_TNIL) {
    lua_getfield(L, -1, "last_seq");
    lua_pushvalue(L, -1);
    lua_setfield(L, S_JOB, "through_seq");
    lua_setfield(L, info, "through_seq");
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawseti(L, done, next);
    next++;
  }
  lua_settop(L, info);
  lua_pushinteger(L, next);
  lua_setfield(L, S_JOB, "_next_done");
  lua_settop(L, S_TOP);
}

/* couch.now() - job.last_checkpoint >= job.checkpoint_interval */
static int checkpoint_due(lua_State *L) {
  lua_getfield(L, S_COUCH, "now");
  lua_call(L, 0, 1);
  lua_getfield(L, S_JOB, "last_checkpoint");
  lua_arith(L, LUA_OPSUB);
  lua_getfield(L, S_JOB, "checkpoint_interval");
  int due = lua_compare(L, -1, -2, LUA_OPLE);
  lua_pop(L, 2);
  return due;
}

static int work_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int st = (int)ctx;
  luaL_checkstack(L, 16, "moving batches");
  for (;;) {
    switch (st) {
    case ST_POP:
      lua_settop(L, S_TOP);
      lua_getfield(L, S_QUEUE, "pop");
      lua_pushvalue(L, S_QUEUE);
      lua_callk(L, 1, 1, ST_POPPED, work_k);
      st = ST_POPPED;
      continue;

    case ST_POPPED:
      if (!lua_toboolean(L, -1)) return 0; /* closed and drained */
      lua_replace(L, S_BATCH);
      lua_settop(L, S_TOP);
      lua_getfield(L, S_COUCH, "_move_batch");
      lua_pushvalue(L, S_JOB);
      lua_pushvalue(L, S_BATCH);
      lua_callk(L, 2, 0, ST_MOVED, work_k);
      st = ST_MOVED;
      continue;

    case ST_MOVED:
      lua_settop(L, S_TOP);
      finished_batch(L);
      st = ST_CHECKPOINTED;
      if (checkpoint_due(L)) {
        lua_getfield(L, S_COUCH, "_checkpoint");
        lua_pushvalue(L, S_JOB);
        lua_callk(L, 1, 0, ST_CHECKPOINTED, work_k);
      }
      continue;

    case ST_CHECKPOINTED:
      lua_settop(L, S_TOP);
      lua_getfield(L, S_JOB, "_report");
      lua_pushvalue(L, S_JOB);
      lua_callk(L, 1, 0, ST_REPORTED, work_k);
      st = ST_REPORTED;
      continue;

    case ST_REPORTED:
      st = ST_POP;
      continue;

    default:
      return luaL_error(L, "work_loop: bad step %d", st);
    }
  }
}

/* couch._work_loop(job, queue): move batches until the queue is closed and empty. */
static int l_work_loop(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1)); /* S_COUCH */
  lua_pushnil(L);                        /* S_BATCH */
  return work_k(L, LUA_OK, ST_POP);
}

void couch_worker_open(lua_State *L) {
  lua_pushvalue(L, -1); /* the couch table: now, _move_batch and _checkpoint */
  lua_pushcclosure(L, l_work_loop, 1);
  lua_setfield(L, -2, "_work_loop");
}
