/* job:_run(create_target) -> stats: the job's lifecycle, run by the job's own task
 * (replicate.lua spawns it and keeps couch.jobs()'s list).
 *   a run: [create the target] -> where to start (checkpoint.c) -> a bounded queue -> a
 *   reader task and 2 × `concurrency` worker tasks (fetch ahead: `concurrency` read and
 *   `concurrency` write at once, slots.c), each under a guard -> join them -> the final
 *   checkpoint (waiting for one in flight) -> completed / cancelled, the last progress line,
 *   `complete`.
 * The first real failure of any task ends the run at once: the guard records it and
 * cancels the others (a reader blocked on a full queue, workers in a request). A job that
 * retries (retry.c) waits a transient failure out and starts a new run from the last
 * checkpoint; otherwise the job fails with it, first asking both sides whether a database
 * was re-created under the job (checkpoint.c), so such a failure says so; `error` says it.
 * If the job's own task is cancelled (Ctrl-C, couch.timeout) while joining or waiting, its
 * tasks are cancelled too. The events the run itself emits (active after a restart,
 * complete, error) are under a pcall: a handler's failure ends the job (events.c).
 * Steps, each its own continuation; their state is a `run` struct (a userdata at stack
 * slot 2; its user values: the queue, the tasks, the first failure), the context its
 * address. The guards are C closures over the job and that userdata. */
#include "replicate/batch.h"

#include "error.h"
#include "loop/task.h"
#include "replicate/done.h"
#include "replicate/events.h"
#include "replicate/retry.h"
#include "replicate/slots.h"

#include <lauxlib.h>
#include <string.h>

enum { R_JOB = 1, R_RUN, R_TOP = R_RUN };
enum { UV_QUEUE = 1, UV_TASKS, UV_FAILURE, UV_N = UV_FAILURE };

typedef struct {
  couch_repl *r;
  lua_Integer joined; /* tasks joined so far */
  lua_Integer ntasks;
  int create_target;
} run_state;

#define RUN(ctx) ((run_state *)(ctx))

/* Push the job's method `name` (the steps' C functions, registered on its metatable). */
static void push_method(lua_State *L, const char *name) {
  luaL_getmetafield(L, R_JOB, "methods");
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

static int is_kind(lua_State *L, int idx, const char *kind) {
  if (!couch_error_is(L, idx)) return 0;
  lua_getfield(L, idx, "kind");
  int is = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), kind) == 0;
  lua_pop(L, 1);
  return is;
}

/* --- the guard of each task -------------------------------------------------------- */

/* The task's error on top, unless it ran out fine: the first real one is the job's. */
static int guarded_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  if (status == LUA_OK || status == LUA_YIELD) return 0;
  int err = lua_gettop(L);
  int run = lua_upvalueindex(2);
  couch_repl *r = couch_repl_check(L, lua_upvalueindex(1));
  if (lua_getiuservalue(L, run, UV_FAILURE) != LUA_TNIL) return 0; /* not the first */
  if (is_kind(L, err, "cancelled") && r->stopping) return 0;    /* stopped, as asked */
  lua_pushvalue(L, err);
  lua_setiuservalue(L, run, UV_FAILURE);
  r->stopping = 1;
  couch_task *me = couch_task_of(L);
  lua_getiuservalue(L, run, UV_TASKS);
  int tasks = lua_gettop(L);
  for (lua_Integer i = 1; lua_rawgeti(L, tasks, i) != LUA_TNIL; i++) {
    if (lua_touserdata(L, -1) != (void *)me) {
      lua_getfield(L, -1, "cancel");
      lua_insert(L, -2);
      lua_call(L, 1, 0);
    } else {
      lua_pop(L, 1);
    }
  }
  return 0;
}

/* A task's body: job:_read(queue) or job:_work(queue) (upvalue 3), under a pcall. */
static int guarded(lua_State *L) {
  lua_settop(L, 0);
  luaL_checkstack(L, 8, "guarding a task");
  lua_pushvalue(L, lua_upvalueindex(1));
  luaL_getmetafield(L, 1, "methods");
  lua_getfield(L, -1, lua_tostring(L, lua_upvalueindex(3)));
  lua_remove(L, -2);
  lua_insert(L, 1);
  lua_getiuservalue(L, lua_upvalueindex(2), UV_QUEUE);
  return guarded_k(L, lua_pcallk(L, 2, 0, 0, 0, guarded_k), 0);
}

/* Spawn a task running `method` under a guard; append it to the tasks. */
static void spawn(lua_State *L, couch_repl *r, const char *name, const char *method) {
  couch_repl_push(L, r->ref.spawn);
  lua_pushstring(L, name);
  lua_pushvalue(L, R_JOB);
  lua_pushvalue(L, R_RUN);
  lua_pushstring(L, method);
  lua_pushcclosure(L, guarded, 3);
  lua_call(L, 2, 1);
  lua_getiuservalue(L, R_RUN, UV_TASKS);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

/* --- the end ---------------------------------------------------------------------- */

/* The job has ended: `complete` or `error` said so (or their handler failed: the job fails
 * with that, which keeps the job's own error as `cause`). */
static int ended_k(lua_State *L, int status, lua_KContext ctx) {
  couch_repl *r = RUN(ctx)->r;
  couch_repl_events_release(L, r);
  if (status != LUA_OK && status != LUA_YIELD) {
    int herr = lua_gettop(L);
    if (lua_getiuservalue(L, R_RUN, UV_FAILURE) != LUA_TNIL && lua_istable(L, herr)) lua_setfield(L, herr, "cause");
    lua_settop(L, herr);
    couch_repl_set_state(L, r, REPL_FAILED);
    return lua_error(L);
  }
  lua_settop(L, R_TOP);
  if (r->state == REPL_COMPLETED || (r->state == REPL_CANCELLED && lua_getiuservalue(L, R_RUN, UV_FAILURE) == LUA_TNIL)) {
    push_method(L, "stats");
    lua_pushvalue(L, R_JOB);
    lua_call(L, 1, 1);
    return 1;
  }
  lua_settop(L, R_TOP);
  lua_getiuservalue(L, R_RUN, UV_FAILURE);
  return lua_error(L);
}

/* The last progress line is out: say how the job ended. */
static int reported_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl *r = RUN(ctx)->r;
  lua_settop(L, R_TOP);
  if (r->state == REPL_FAILED) {
    lua_getiuservalue(L, R_RUN, UV_FAILURE);
    return couch_repl_emit(L, r, EV_ERROR, 1, 1, ctx, ended_k);
  }
  push_method(L, "stats");
  lua_pushvalue(L, R_JOB);
  lua_call(L, 1, 1);
  return couch_repl_emit(L, r, EV_COMPLETE, 1, 1, ctx, ended_k);
}

/* The job ends (state): the last progress line (whose own failure is ignored when the job
 * failed anyway), then its event; a failure recorded raises at the end. */
static int end_job(lua_State *L, run_state *rs, couch_repl_state state, const char *line) {
  lua_settop(L, R_TOP);
  couch_repl_set_state(L, rs->r, state);
  couch_repl_push_runner(L, rs->r, RUN_REPORT);
  lua_pushvalue(L, R_JOB);
  lua_pushstring(L, line);
  if (state == REPL_COMPLETED || lua_getiuservalue(L, R_RUN, UV_FAILURE) == LUA_TNIL) {
    lua_settop(L, R_TOP + 3);
    lua_callk(L, 2, 0, (lua_KContext)rs, reported_k);
    return reported_k(L, LUA_OK, (lua_KContext)rs);
  }
  lua_pop(L, 1);
  return reported_k(L, lua_pcallk(L, 2, 0, 0, (lua_KContext)rs, reported_k), (lua_KContext)rs);
}

/* The final checkpoint is written: completed, or cancelled as asked. */
static int checkpointed_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl *r = RUN(ctx)->r;
  int cancelled = r->stopping;
  return end_job(L, RUN(ctx), cancelled ? REPL_CANCELLED : REPL_COMPLETED, cancelled ? "cancelled" : "done");
}

/* --- a run ------------------------------------------------------------------------- */

static int begin(lua_State *L, run_state *rs);

/* A new run from the last checkpoint: what the failed one held is let go. */
static int restart(lua_State *L, run_state *rs) {
  couch_repl *r = rs->r;
  lua_settop(L, R_TOP);
  r->stopping = r->reader_idle = r->caught_up = 0;
  r->pushed = r->moved = 0;
  if (r->bytes_per_rev <= 0) r->probing = 0; /* the batch asking the estimate is gone */
  couch_repl_done_free(L, r);
  for (int uv = 1; uv <= UV_N; uv++) {
    lua_pushnil(L);
    lua_setiuservalue(L, R_RUN, uv);
  }
  rs->joined = rs->ntasks = 0;
  return begin(L, rs);
}

/* job:_wait_out answered: run again, or cancelled meanwhile (nothing to checkpoint: the
 * server is away). Its own failure (a hook's, or this task cancelled) ends the job. */
static int waited_out_k(lua_State *L, int status, lua_KContext ctx) {
  run_state *rs = RUN(ctx);
  if (status != LUA_OK && status != LUA_YIELD) {
    int cancelled = is_kind(L, -1, "cancelled");
    lua_setiuservalue(L, R_RUN, UV_FAILURE);
    if (cancelled) rs->r->stopping = 1;
    return end_job(L, rs, cancelled ? REPL_CANCELLED : REPL_FAILED, cancelled ? "cancelled" : "stopped by an error");
  }
  if (lua_toboolean(L, -1)) return restart(L, rs);
  lua_pushnil(L); /* cancelled as asked: the failure waited out is not the job's end */
  lua_setiuservalue(L, R_RUN, UV_FAILURE);
  return checkpointed_k(L, LUA_OK, ctx);
}

/* _verify_sides answered: a re-created database is the better explanation. */
static int verified_k(lua_State *L, int status, lua_KContext ctx) {
  if (status != LUA_OK && status != LUA_YIELD && is_kind(L, -1, "replication")) {
    lua_setiuservalue(L, R_RUN, UV_FAILURE);
  }
  return end_job(L, RUN(ctx), REPL_FAILED, "stopped by an error");
}

/* The run failed (its failure recorded): wait it out and run again, or the job fails. */
static int run_failed(lua_State *L, run_state *rs) {
  couch_repl *r = rs->r;
  lua_settop(L, R_TOP);
  lua_getiuservalue(L, R_RUN, UV_FAILURE);
  int err = lua_gettop(L);
  if (r->retry && !r->cancelled && couch_repl_transient(L, err)) {
    push_method(L, "_wait_out");
    lua_pushvalue(L, R_JOB);
    lua_pushvalue(L, err);
    return waited_out_k(L, lua_pcallk(L, 2, 1, 0, (lua_KContext)rs, waited_out_k), (lua_KContext)rs);
  }
  int recreated = 0;
  if (couch_error_is(L, err)) {
    lua_getfield(L, err, "reason");
    const char *reason = lua_tostring(L, -1);
    recreated = reason && (strcmp(reason, "target_recreated") == 0 || strcmp(reason, "source_recreated") == 0);
  }
  if (recreated) return end_job(L, rs, REPL_FAILED, "stopped by an error");
  lua_settop(L, R_TOP);
  push_method(L, "_verify_sides");
  lua_pushvalue(L, R_JOB);
  return verified_k(L, lua_pcallk(L, 1, 0, 0, (lua_KContext)rs, verified_k), (lua_KContext)rs);
}

static int join_next(lua_State *L, run_state *rs);

/* The final checkpoint: written, or its failure is the run's (a target re-created under
 * the job is found there too). */
static int final_k(lua_State *L, int status, lua_KContext ctx) {
  if (status == LUA_OK || status == LUA_YIELD) return checkpointed_k(L, status, ctx);
  lua_setiuservalue(L, R_RUN, UV_FAILURE);
  return run_failed(L, RUN(ctx));
}

static int joined_k(lua_State *L, int status, lua_KContext ctx) {
  run_state *rs = RUN(ctx);
  if (status == LUA_OK || status == LUA_YIELD) return join_next(L, rs);
  /* the job's own task was cancelled (couch.timeout, Ctrl-C): so are its tasks */
  int err = lua_gettop(L);
  rs->r->stopping = 1;
  lua_getiuservalue(L, R_RUN, UV_TASKS);
  for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
    lua_getfield(L, -1, "cancel");
    lua_insert(L, -2);
    lua_call(L, 1, 0);
  }
  int cancelled = is_kind(L, err, "cancelled");
  lua_pushvalue(L, err);
  lua_setiuservalue(L, R_RUN, UV_FAILURE);
  return end_job(L, rs, cancelled ? REPL_CANCELLED : REPL_FAILED, cancelled ? "cancelled" : "stopped by an error");
}

/* Join the tasks one by one; then the run failed, or checkpoint and end. */
static int join_next(lua_State *L, run_state *rs) {
  lua_settop(L, R_TOP);
  if (rs->joined < rs->ntasks) {
    lua_getiuservalue(L, R_RUN, UV_TASKS);
    lua_rawgeti(L, -1, ++rs->joined);
    lua_getfield(L, -1, "wait");
    lua_insert(L, -2);
    return joined_k(L, lua_pcallk(L, 1, 0, 0, (lua_KContext)rs, joined_k), (lua_KContext)rs);
  }
  if (lua_getiuservalue(L, R_RUN, UV_FAILURE) != LUA_TNIL) return run_failed(L, rs);
  lua_settop(L, R_TOP);
  push_method(L, "_checkpoint"); /* the final one waits for one in flight (no polling) */
  lua_pushvalue(L, R_JOB);
  lua_pushboolean(L, 1);
  return final_k(L, lua_pcallk(L, 2, 0, 0, (lua_KContext)rs, final_k), (lua_KContext)rs);
}

/* The queue is there: spawn the reader and the workers, then join them. */
static int queued_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  run_state *rs = RUN(ctx);
  couch_repl *r = rs->r;
  lua_setiuservalue(L, R_RUN, UV_QUEUE);
  lua_settop(L, R_TOP);
  lua_Integer workers = 2 * r->concurrency;
  lua_createtable(L, (int)workers + 1, 0);
  lua_setiuservalue(L, R_RUN, UV_TASKS);
  couch_repl_slots_reset(L, r); /* what the tasks of a failed run held is gone with them */
  spawn(L, r, "replication reader", "_read");
  couch_repl_set_reader(L, r, -1); /* job:cancel() cancels it */
  lua_pop(L, 1);
  for (lua_Integer w = 1; w <= workers; w++) {
    lua_pushfstring(L, "replication worker %I", (LUAI_UACINT)w);
    spawn(L, r, lua_tostring(L, -1), "_work");
    lua_pop(L, 2);
  }
  rs->ntasks = workers + 1;
  return join_next(L, rs);
}

/* Where to start is known (and after a failure, `active` said the server answers again). */
static int resumed_k(lua_State *L, int status, lua_KContext ctx) {
  run_state *rs = RUN(ctx);
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_setiuservalue(L, R_RUN, UV_FAILURE);
    return run_failed(L, rs);
  }
  lua_settop(L, R_TOP);
  couch_repl_push(L, rs->r->ref.queue_new);
  lua_pushinteger(L, rs->r->batches_limit);
  lua_callk(L, 1, 1, ctx, queued_k);
  return queued_k(L, LUA_OK, ctx);
}

/* A step before the tasks failed (error on top): the run failed, or the job's own task
 * was cancelled. */
static int setup_failed(lua_State *L, run_state *rs) {
  int cancelled = is_kind(L, -1, "cancelled");
  lua_setiuservalue(L, R_RUN, UV_FAILURE);
  if (!cancelled) return run_failed(L, rs);
  rs->r->stopping = 1;
  return end_job(L, rs, REPL_CANCELLED, "cancelled");
}

static int started_k(lua_State *L, int status, lua_KContext ctx) {
  run_state *rs = RUN(ctx);
  couch_repl *r = rs->r;
  if (status != LUA_OK && status != LUA_YIELD) return setup_failed(L, rs);
  lua_settop(L, R_TOP);
  if (!r->outage) return resumed_k(L, LUA_OK, ctx);
  r->outage = 0;
  return couch_repl_emit(L, r, EV_ACTIVE, 0, 1, ctx, resumed_k);
}

/* The target is there: where to start (the last checkpoint). */
static int created_k(lua_State *L, int status, lua_KContext ctx) {
  run_state *rs = RUN(ctx);
  if (status != LUA_OK && status != LUA_YIELD) return setup_failed(L, rs);
  lua_settop(L, R_TOP);
  push_method(L, "_start");
  lua_pushvalue(L, R_JOB);
  return started_k(L, lua_pcallk(L, 1, 0, 0, ctx, started_k), ctx);
}

static int exists_k(lua_State *L, int status, lua_KContext ctx) {
  run_state *rs = RUN(ctx);
  couch_repl *r = rs->r;
  if (status != LUA_OK && status != LUA_YIELD) return setup_failed(L, rs);
  if (lua_toboolean(L, -1)) return created_k(L, LUA_OK, ctx);
  lua_settop(L, R_TOP);
  couch_repl_push(L, r->ref.db[REPL_TARGET]);
  lua_getfield(L, -1, "create");
  lua_insert(L, -2);
  lua_createtable(L, 0, 4); /* create_target_params (q, n, partitioned), and exist_ok */
  couch_repl_push(L, r->ref.create_params);
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, -5);
    }
  }
  lua_pop(L, 1);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "exist_ok");
  return created_k(L, lua_pcallk(L, 2, 0, 0, ctx, created_k), ctx);
}

/* A run: [create the target] -> where to start -> the tasks. Each run does it all again:
 * a job that retries may start while the server is away. */
static int begin(lua_State *L, run_state *rs) {
  lua_settop(L, R_TOP);
  if (!rs->create_target) return created_k(L, LUA_OK, (lua_KContext)rs);
  couch_repl_push(L, rs->r->ref.db[REPL_TARGET]);
  lua_getfield(L, -1, "exists");
  lua_insert(L, -2);
  return exists_k(L, lua_pcallk(L, 1, 1, 0, (lua_KContext)rs, exists_k), (lua_KContext)rs);
}

/* job:_run(create_target) -> stats */
static int l_run(lua_State *L) {
  couch_repl *r = couch_repl_check(L, R_JOB);
  int create_target = lua_toboolean(L, 2);
  lua_settop(L, R_JOB);
  luaL_checkstack(L, 24, "running a replication");
  run_state *rs = lua_newuserdatauv(L, sizeof *rs, UV_N); /* R_RUN */
  *rs = (run_state){.r = r, .create_target = create_target};
  couch_repl_set_state(L, r, REPL_RUNNING);
  return begin(L, rs);
}

void couch_run_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"_run", l_run}, {NULL, NULL}};
  couch_repl_add_methods(L, methods);
}
