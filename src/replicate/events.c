/* The job's events, as PouchDB's replicate emits them: job:on(event, fn) -> job.
 *   change(info)     a batch was written and counted (worker.c)
 *   paused(err)      err nil: a continuous job has caught up: it has read everything and
 *                    finished every batch it read (the reader or the worker that finished
 *                    the last one says so, once each time: a caught-up job that polls again
 *                    and again says nothing more); err set: the job waits out a failure
 *                    before it retries (retry.c)
 *   active()         work resumed after `paused`: new changes read, or a restart after
 *                    a failure has read its checkpoint
 *   denied(err, doc) the target refused a document as forbidden / unauthorized
 *                    (validate_doc_update), besides on_error (replicate.lua's failed runner)
 *   complete(stats)  the job ended, completed or cancelled (run.c)
 *   error(err)       the job failed (run.c)
 * Design: the handlers of each event are a Lua list held as one registry ref in the job's
 * struct (r->ref.on[ev]: LUA_NOREF while none), so an event nobody listens to costs one
 * comparison and builds nothing. The C step where the thing happens emits it with
 * couch_repl_emit, as its next continuation: replicate.lua's `emit` runner calls the
 * handlers in registration order, each under the hook budget like the other hooks; a
 * handler that fails (or runs past its budget) is a `replication` error naming the event
 * (reason hook_failed / hook_budget). Raised in the reader or a worker, it is the job's
 * failure like any other (the job ends, `error` says so); run.c emits complete and error
 * under a pcall instead, so their own failure ends the job without emitting again. The
 * lists are dropped when the job has ended (a handler that holds the job makes no cycle
 * through the registry) and in couch_repl_cleanup with every other ref. */
#include "replicate/events.h"

#include "couch/options.h"
#include "error.h"

#include <lauxlib.h>
#include <string.h>

static const char *const EVENTS[] = {"change", "paused", "active", "denied", "complete", "error", NULL};

int couch_repl_listening(couch_repl *r, couch_repl_event ev) { return r->ref.on[ev] != LUA_NOREF; }

int couch_repl_emit(lua_State *L, couch_repl *r, couch_repl_event ev, int nargs, int protect, lua_KContext ctx,
                    lua_KFunction k) {
  if (!couch_repl_listening(r, ev)) {
    lua_pop(L, nargs);
    return k(L, LUA_OK, ctx);
  }
  luaL_checkstack(L, 4, "emitting an event");
  couch_repl_push_runner(L, r, RUN_EMIT);
  lua_pushstring(L, EVENTS[ev]);
  couch_repl_push(L, r->ref.on[ev]);
  lua_rotate(L, -(nargs + 3), 3); /* emit(event, handlers, args...) */
  if (protect) return k(L, lua_pcallk(L, nargs + 2, 0, 0, ctx, k), ctx);
  lua_callk(L, nargs + 2, 0, ctx, k);
  return k(L, LUA_OK, ctx);
}

static void set_int(lua_State *L, int t, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, t, k);
}

void couch_repl_push_change(lua_State *L, couch_repl *r, const couch_repl_batch *b, int last_seq) {
  last_seq = lua_absindex(L, last_seq);
  luaL_checkstack(L, 6, "a change event");
  lua_createtable(L, 0, 20);
  int info = lua_gettop(L);
  couch_repl_push_stats(L, r); /* a copy: a handler may keep it */
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_settable(L, info);
  }
  lua_pop(L, 1);
  set_int(L, info, "read", b->read);
  set_int(L, info, "written", b->written);
  set_int(L, info, "failed", b->failed);
  lua_pushvalue(L, last_seq);
  lua_setfield(L, info, "last_seq");
}

int couch_repl_is_caught_up(couch_repl *r) {
  return r->continuous && r->reader_idle && !r->caught_up && r->moved == r->pushed && !r->stopping;
}

int couch_repl_maybe_caught_up(lua_State *L, couch_repl *r, lua_KContext ctx, lua_KFunction k) {
  if (!couch_repl_is_caught_up(r)) return k(L, LUA_OK, ctx);
  r->caught_up = 1;
  lua_pushnil(L);
  return couch_repl_emit(L, r, EV_PAUSED, 1, 0, ctx, k);
}

int couch_repl_resumed(lua_State *L, couch_repl *r, lua_KContext ctx, lua_KFunction k) {
  r->reader_idle = 0;
  if (!r->caught_up) return k(L, LUA_OK, ctx);
  r->caught_up = 0;
  return couch_repl_emit(L, r, EV_ACTIVE, 0, 0, ctx, k);
}

void couch_repl_events_release(lua_State *L, couch_repl *r) {
  for (int ev = 0; ev < EV_N; ev++) {
    luaL_unref(L, LUA_REGISTRYINDEX, r->ref.on[ev]);
    r->ref.on[ev] = LUA_NOREF;
  }
}

static int event_of(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TSTRING)
    return couch_error_usage(L, "event", "expected an event name (change, paused, active, denied, complete or "
                             "error), got %s", luaL_typename(L, idx));
  const char *name = lua_tostring(L, idx);
  for (int ev = 0; EVENTS[ev]; ev++)
    if (strcmp(name, EVENTS[ev]) == 0) return ev;
  lua_createtable(L, 0, 1); /* the options' own check: it names the nearest one */
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_settable(L, -3);
  couch_options_check_known(L, -1, "job:on", EVENTS); /* raises */
  return -1;
}

/* job:on(event, fn) -> job: fn runs at each `event`, after the handlers registered before. */
static int l_on(lua_State *L) {
  couch_repl *r = couch_repl_check(L, 1);
  int ev = event_of(L, 2);
  if (lua_type(L, 3) != LUA_TFUNCTION)
    return couch_error_usage(L, "handler", "expected a function, got %s", luaL_typename(L, 3));
  if (r->state >= REPL_COMPLETED)
    return couch_error_usage(L, "event", "the job has ended: its events are over (register handlers before the "
                             "script waits or yields)");
  lua_settop(L, 3);
  if (r->ref.on[ev] == LUA_NOREF) {
    lua_newtable(L);
    couch_repl_set(L, &r->ref.on[ev], -1);
    lua_pop(L, 1);
  }
  couch_repl_push(L, r->ref.on[ev]);
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_settop(L, 1);
  return 1;
}

/* job:_handlers(event) -> the event's handlers, or nil (replicate.lua's failed runner:
 * `denied`). */
static int l_handlers(lua_State *L) {
  couch_repl *r = couch_repl_check(L, 1);
  couch_repl_push(L, r->ref.on[event_of(L, 2)]);
  return 1;
}

void couch_events_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"on", l_on}, {"_handlers", l_handlers}, {NULL, NULL}};
  couch_repl_add_methods(L, methods);
}
