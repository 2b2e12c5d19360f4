/* retry: a job that survives the server going away (PouchDB's `retry` and back_off_function).
 * Design: run.c runs the job as a series of runs. A run is what a job always was: the
 * checkpoint read (job:_start), a reader and `concurrency` workers over a bounded queue,
 * joined. When a run fails with a transient error (couch_repl_transient: the request layer
 * has already retried it a few times) and the job retries (retry = true, the default of
 * continuous jobs), run.c calls job:_wait_out(err) instead of failing:
 *   `paused(err)` (once per outage: the attempts that fail while the server is still gone
 *   say nothing more) -> the delay from the back_off runner (the user's
 *   back_off(previous delay), or the default; seconds, as couch.sleep) -> a progress line
 *   saying so (replicate.lua's report runner) -> a wait on the
 *   job's `idle` cond with that timeout, which job:cancel() broadcasts, so a cancel ends
 *   the wait at once -> true (run again) or false (cancelled meanwhile).
 * run.c then starts a new run from the last checkpoint (re-read: nothing finished after it
 * is claimed, the next run moves it again; revs_diff makes that cheap), with a new queue,
 * reader and workers; the counters keep accumulating. When that run has read its
 * checkpoint, the server answers again: `active`. The delay starts over from 0 once a run
 * has finished a batch (a flapping server that answers the checkpoint read and nothing
 * else keeps backing off). Anything that is not transient (401/403, a missing database, a
 * usage error, a hook's failure, target_recreated) ends the job with its error, as a
 * job that does not retry ends at its first failure. */
#include "replicate/retry.h"

#include "error.h"
#include "replicate/events.h"

#include <lauxlib.h>
#include <string.h>

enum { S_JOB = 1, S_ERR, S_DEADLINE, S_TOP = S_DEADLINE };

int couch_repl_transient(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (!couch_error_is(L, idx)) return 0;
  lua_getfield(L, idx, "kind");
  lua_getfield(L, idx, "status");
  const char *kind = lua_tostring(L, -2);
  lua_Integer status = lua_tointeger(L, -1);
  int yes = kind && (strcmp(kind, "network") == 0 || strcmp(kind, "timeout") == 0 ||
                     (strcmp(kind, "http") == 0 && (status >= 500 || status == 408 || status == 429)));
  lua_pop(L, 2);
  return yes;
}

static int wait_until(lua_State *L, couch_repl *r);

static int waited_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return wait_until(L, (couch_repl *)ctx);
}

/* Wait for the deadline (slot S_DEADLINE) or a cancel: true to run again, false if cancelled. */
static int wait_until(lua_State *L, couch_repl *r) {
  lua_settop(L, S_TOP);
  if (r->cancelled) {
    lua_pushboolean(L, 0);
    return 1;
  }
  double left = lua_tonumber(L, S_DEADLINE) - couch_repl_now();
  if (left <= 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  couch_repl_push(L, r->ref.idle);
  lua_getfield(L, -1, "wait");
  lua_insert(L, -2);
  lua_pushnumber(L, left);
  lua_callk(L, 2, 0, (lua_KContext)r, waited_k);
  return waited_k(L, LUA_OK, (lua_KContext)r);
}

static int reported_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return wait_until(L, (couch_repl *)ctx);
}

/* The back_off runner answered: the delay, checked by it (a number of seconds >= 0). The
 * progress line says why the job waits and for how long. */
static int delayed_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl *r = (couch_repl *)ctx;
  r->back_off = lua_tonumber(L, -1);
  lua_settop(L, S_ERR);
  lua_pushnumber(L, couch_repl_now() + r->back_off); /* S_DEADLINE */
  couch_repl_push_runner(L, r, RUN_REPORT);
  lua_pushvalue(L, S_JOB);
  lua_pushfstring(L, "waiting %f s to retry after: ", (LUAI_UACNUMBER)r->back_off);
  luaL_tolstring(L, S_ERR, NULL);
  lua_concat(L, 2);
  lua_callk(L, 2, 0, ctx, reported_k);
  return reported_k(L, LUA_OK, ctx);
}

static int paused_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_repl *r = (couch_repl *)ctx;
  lua_settop(L, S_ERR);
  if (r->progressed) r->back_off = 0; /* the last run got somewhere: start over */
  r->progressed = 0;
  couch_repl_push_runner(L, r, RUN_BACK_OFF);
  lua_pushnumber(L, r->back_off);
  lua_callk(L, 1, 1, ctx, delayed_k);
  return delayed_k(L, LUA_OK, ctx);
}

/* job:_wait_out(err) -> true (run again) or false (cancelled while waiting). */
static int l_wait_out(lua_State *L) {
  couch_repl *r = couch_repl_check(L, S_JOB);
  luaL_checkany(L, S_ERR);
  lua_settop(L, S_ERR);
  luaL_checkstack(L, 8, "waiting out a failure");
  if (r->outage) return paused_k(L, LUA_OK, (lua_KContext)r);
  r->outage = 1;
  lua_pushvalue(L, S_ERR);
  return couch_repl_emit(L, r, EV_PAUSED, 1, 0, (lua_KContext)r, paused_k);
}

void couch_retry_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"_wait_out", l_wait_out}, {NULL, NULL}};
  couch_repl_add_methods(L, methods);
}
