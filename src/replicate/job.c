/* The native replication job object (couch_repl, job.h): construction from the options
 * replicate.lua parsed, the fields and methods users see (job.state, job.name,
 * job:stats(), job:errors(), job:wait(), job:cancel()), the one cleanup, and the small
 * services every step shares (the clock, document paths, request calls, failures).
 * The engine's steps live beside it:
 *   checkpoint.c  job:_start() (where to resume), job:_checkpoint(), job:_verify_sides()
 *   reader.c      job:_read(queue): _changes pages into the bounded queue
 *   worker.c      job:_work(queue): pop a batch, move it (batch.c), advance (done.c)
 *   batch.c       one batch: revs_diff -> _bulk_get -> slices -> hooks -> _bulk_docs
 *   restub.c      the missing_stub refetch (attachments = false)
 *   run.c         job:_run(): the lifecycle, the reader and worker tasks, their join, the
 *                 runs again after a failure waited out
 *   events.c      job:on(): the handler lists and couch_repl_emit, which the steps call
 *   retry.c       job:_wait_out(err): which failures are transient, paused(err), back_off,
 *                 a wait that job:cancel() ends
 * The job is a userdata; its own task (spawned by replicate.lua) runs job:_run(), and the
 * job keeps that task and the reader's as refs so job:wait() and job:cancel() reach them. */
#include "replicate/job.h"

#include "couch/server.h"

#include "error.h"
#include "http/url.h"
#include "json/json.h"
#include "meta.h"
#include "replicate/done.h"
#include "replicate/events.h"
#include "replicate/retry.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

/* Refs a job keeps beyond job.h's (the tasks: released when the job ends, see l_end). */
typedef struct {
  couch_repl r;
  int task, reader;
} repl_ud;

#define NREFS ((int)(sizeof(((couch_repl *)0)->ref) / sizeof(int)))

couch_repl *couch_repl_check(lua_State *L, int idx) { return luaL_checkudata(L, idx, COUCH_REPL_MT); }

void couch_repl_push(lua_State *L, int ref) {
  if (ref == LUA_NOREF || ref == LUA_REFNIL) lua_pushnil(L);
  else lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
}

void couch_repl_set(lua_State *L, int *ref, int idx) {
  idx = lua_absindex(L, idx);
  luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
  if (lua_isnil(L, idx)) return;
  lua_pushvalue(L, idx);
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

double couch_repl_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void couch_repl_iso_now(char *buf) {
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(buf, 24, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* As couch.doc_path: a design or local document keeps its prefix's slash. */
void couch_repl_push_doc_path(lua_State *L, const char *id, size_t len) {
  static const char *const prefixes[] = {"_design/", "_local/"};
  size_t keep = 0;
  for (int i = 0; i < 2; i++) {
    size_t n = strlen(prefixes[i]);
    if (len > n && memcmp(id, prefixes[i], n) == 0) keep = n;
  }
  lua_pushliteral(L, "/");
  lua_pushlstring(L, id, keep);
  couch_url_push_escaped(L, id + keep, len - keep);
  lua_concat(L, 3);
}

void couch_repl_push_runner(lua_State *L, couch_repl *r, couch_repl_runner which) {
  couch_repl_push(L, r->ref.runner[which]);
}

/* tostring(v) or def when v is nil */
static const char *str_of(lua_State *L, int idx, const char *def) {
  if (lua_isnil(L, idx)) {
    lua_pushstring(L, def);
    return lua_tostring(L, -1);
  }
  return luaL_tolstring(L, idx, NULL);
}

void couch_repl_push_failure(lua_State *L, couch_repl *r, int d, int err) {
  d = lua_absindex(L, d);
  err = lua_absindex(L, err);
  luaL_checkstack(L, 12, "recording a failure");
  int top = lua_gettop(L);
  r->doc_write_failures++;
  lua_getfield(L, d, "id");
  lua_getfield(L, d, "rev");
  int id = top + 1, rev = top + 2;
  lua_pushnil(L), lua_pushnil(L), lua_pushnil(L);
  int code = top + 3, reason = top + 4, status = top + 5;
  if (lua_istable(L, err)) {
    lua_getfield(L, err, "error"), lua_replace(L, code);
    lua_getfield(L, err, "reason"), lua_replace(L, reason);
    lua_getfield(L, err, "status"), lua_replace(L, status);
  }
  int why = !lua_isnil(L, reason) ? reason : !lua_isnil(L, code) ? code : err;
  const char *ids = str_of(L, id, "?");
  const char *revs = str_of(L, rev, "");
  const char *whys = luaL_tolstring(L, why, NULL);
  couch_error_push(L, "replication", "%s %s was not written: %s", ids, revs, whys);
  int e = lua_gettop(L);
  static const char *const names[] = {"id", "rev", "error", "reason", "status"};
  for (int i = 0; i < 5; i++) {
    lua_pushvalue(L, top + 1 + i);
    lua_setfield(L, e, names[i]);
  }
  if (r->failures_kept < 1000) {
    couch_repl_push(L, r->ref.failures);
    lua_pushvalue(L, e);
    lua_rawseti(L, -2, ++r->failures_kept);
    lua_pop(L, 1);
  }
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
}

static void push_url(lua_State *L, couch_repl *r, int side) {
  lua_pushstring(L, r->conn[side]->base_url);
  couch_repl_push(L, r->ref.path[side]);
  lua_concat(L, 2);
}

int couch_repl_answer_raise(lua_State *L, couch_repl *r, int side, const char *method, const char *path,
                            lua_Integer status, const char *kind, const char *code, const char *fmt, ...) {
  luaL_checkstack(L, 8, "raising");
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  couch_error_push(L, kind, "%s", lua_tostring(L, -1));
  lua_remove(L, -2);
  int err = lua_gettop(L);
  couch_error_setint(L, err, "status", status);
  couch_error_setstr(L, err, "method", method);
  couch_error_setstr(L, err, "error", code);
  /* the server's url has no userinfo by construction; it still goes through the redactor */
  push_url(L, r, side);
  lua_pushstring(L, path);
  lua_concat(L, 2);
  couch_url_push_redacted(L, lua_tostring(L, -1));
  lua_setfield(L, err, "url");
  lua_settop(L, err);
  return lua_error(L);
}

void couch_repl_cleanup(lua_State *L, couch_repl *r) {
  int *refs = (int *)&r->ref;
  for (int i = 0; i < NREFS; i++) {
    luaL_unref(L, LUA_REGISTRYINDEX, refs[i]);
    refs[i] = LUA_NOREF;
  }
  r->conn[0] = r->conn[1] = NULL;
  couch_repl_done_free(L, r);
  repl_ud *u = (repl_ud *)r;
  luaL_unref(L, LUA_REGISTRYINDEX, u->task);
  luaL_unref(L, LUA_REGISTRYINDEX, u->reader);
  u->task = u->reader = LUA_NOREF;
}

/* --- construction ------------------------------------------------------------------ */

static lua_Integer opt_int(lua_State *L, int spec, const char *k, lua_Integer def) {
  lua_getfield(L, spec, k);
  lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

static double opt_num(lua_State *L, int spec, const char *k, double def) {
  lua_getfield(L, spec, k);
  double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int spec, const char *k) {
  lua_getfield(L, spec, k);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static void opt_ref(lua_State *L, int spec, const char *k, int *ref) {
  lua_getfield(L, spec, k);
  couch_repl_set(L, ref, -1);
  lua_pop(L, 1);
}

/* internal.repl_new(spec) -> job. spec: the options replicate.lua checked and completed
 * (defaults applied, endpoints as database objects, rep_id computed). Read once, here. */
static int l_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  repl_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  memset(u, 0, sizeof *u);
  couch_repl *r = &u->r;
  int *refs = (int *)&r->ref;
  for (int i = 0; i < NREFS; i++) refs[i] = LUA_NOREF;
  u->task = u->reader = LUA_NOREF;
  luaL_setmetatable(L, COUCH_REPL_MT);
  r->batch_size = opt_int(L, 1, "batch_size", 500);
  r->concurrency = opt_int(L, 1, "concurrency", 4);
  r->max_batch_bytes = opt_int(L, 1, "max_batch_bytes", 8 * 1024 * 1024);
  r->checkpoint_interval = opt_num(L, 1, "checkpoint_interval", 5000) / 1000;
  r->poll = opt_num(L, 1, "poll", 30);
  r->continuous = opt_bool(L, 1, "continuous");
  r->ckpt_side[REPL_SOURCE] = opt_bool(L, 1, "checkpoint_source");
  r->ckpt_side[REPL_TARGET] = opt_bool(L, 1, "checkpoint_target");
  r->use_checkpoints = r->ckpt_side[REPL_SOURCE] || r->ckpt_side[REPL_TARGET];
  r->batches_limit = opt_int(L, 1, "batches_limit", r->concurrency);
  r->attachments = opt_bool(L, 1, "attachments");
  r->new_revisions = opt_bool(L, 1, "new_revisions");
  r->hooks = opt_bool(L, 1, "hooks");
  r->no_bulk_get = !opt_bool(L, 1, "use_bulk_get"); /* use_bulk_get = false: open_revs GETs */
  r->retry = opt_bool(L, 1, "retry");
  r->always_diff = opt_bool(L, 1, "always_diff");
  r->missing_ratio = -1;
  static const char *const sides[] = {"source", "target"};
  for (int s = 0; s < 2; s++) {
    lua_getfield(L, 1, sides[s]);
    couch_repl_set(L, &r->ref.db[s], -1);
    lua_getfield(L, -1, "server");
    r->conn[s] = couch_server_check(L, -1);
    couch_repl_set(L, &r->ref.server[s], -1);
    if (lua_getfield(L, -2, "path") != LUA_TSTRING)
      return luaL_error(L, "internal.repl_new: the %s database has no path", sides[s]);
    couch_repl_set(L, &r->ref.path[s], -1);
    lua_pop(L, 3);
  }
  opt_ref(L, 1, "since", &r->ref.since);
  opt_ref(L, 1, "rep_id", &r->ref.rep_id);
  opt_ref(L, 1, "create_target_params", &r->ref.create_params);
  static const char *const runners[RUN_N] = {"apply",           "failed", "new_revisions", "report",
                                             "changes_request", "emit",   "back_off"};
  if (lua_getfield(L, 1, "runners") != LUA_TTABLE) return luaL_error(L, "internal.repl_new: 'runners' must be a table");
  for (int i = 0; i < RUN_N; i++) opt_ref(L, lua_gettop(L), runners[i], &r->ref.runner[i]);
  lua_pop(L, 1);
  opt_ref(L, 1, "name", &r->ref.name);
  opt_ref(L, 1, "idle", &r->ref.idle);
  opt_ref(L, 1, "spawn", &r->ref.spawn);
  opt_ref(L, 1, "queue", &r->ref.queue_new);
  if (r->ref.idle == LUA_NOREF) return luaL_error(L, "internal.repl_new: 'idle' (a couch.cond) is required");
  opt_ref(L, 1, "source_name", &r->ref.source_name);
  opt_ref(L, 1, "target_name", &r->ref.target_name);
  opt_ref(L, 1, "source_url", &r->ref.source_url);
  opt_ref(L, 1, "target_url", &r->ref.target_url);
  lua_getfield(L, 1, "session_id");
  snprintf(r->session_id, sizeof r->session_id, "%s", luaL_optstring(L, -1, ""));
  lua_pop(L, 1);
  /* "/_local/" .. the escaped id: the checkpoint document's path on both sides */
  couch_repl_push(L, r->ref.rep_id);
  size_t len;
  const char *id = luaL_checklstring(L, -1, &len);
  lua_pushliteral(L, "/_local/");
  couch_url_push_escaped(L, id, len);
  lua_concat(L, 2);
  couch_repl_set(L, &r->ref.local_path, -1);
  lua_pop(L, 2);
  couch_json_newarray(L);
  couch_repl_set(L, &r->ref.failures, -1);
  lua_pop(L, 1);
  couch_repl_iso_now(r->start_time);
  r->started = r->last_checkpoint = couch_repl_now();
  return 1;
}

/* --- what users see ---------------------------------------------------------------- */

static const char *const STATES[] = {"starting", "running", "completed", "cancelled", "failed"};

static void set_int(lua_State *L, int t, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, t, k);
}

static void set_ref(lua_State *L, int t, const char *k, int ref, int zero) {
  if (ref == LUA_NOREF && zero) lua_pushinteger(L, 0);
  else if (ref == LUA_NOREF) lua_pushlightuserdata(L, NULL); /* couch.json.null */
  else couch_repl_push(L, ref);
  lua_setfield(L, t, k);
}

/* The stats table (CouchDB's _active_tasks names), refreshed from the counters: the same
 * table each time, so one held by the caller stays live across job:stats() calls. */
void couch_repl_push_stats(lua_State *L, couch_repl *r) {
  couch_repl_push(L, r->ref.stats);
  int t = lua_gettop(L);
  if (lua_isnil(L, t)) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 16);
    couch_repl_set(L, &r->ref.stats, t);
    couch_repl_push(L, r->ref.source_url);
    lua_setfield(L, t, "source");
    couch_repl_push(L, r->ref.target_url);
    lua_setfield(L, t, "target");
    lua_pushstring(L, r->start_time);
    lua_setfield(L, t, "start_time");
    couch_repl_push(L, r->ref.rep_id);
    lua_setfield(L, t, "replication_id");
    lua_pushboolean(L, r->continuous);
    lua_setfield(L, t, "continuous");
  }
  set_int(L, t, "docs_read", r->docs_read);
  set_int(L, t, "docs_written", r->docs_written);
  set_int(L, t, "doc_write_failures", r->doc_write_failures);
  set_int(L, t, "missing_revisions_found", r->missing_revisions_found);
  set_int(L, t, "docs_skipped", r->docs_skipped);
  set_int(L, t, "revisions_checked", r->revisions_checked);
  set_ref(L, t, "changes_pending", r->ref.changes_pending, 0);
  set_ref(L, t, "checkpointed_source_seq", r->ref.checkpointed_seq, 1);
  set_ref(L, t, "through_seq", r->ref.through_seq, 1);
  if (r->end_time[0]) {
    lua_pushstring(L, r->end_time);
    lua_setfield(L, t, "end_time");
  }
}

static int l_stats(lua_State *L) {
  couch_repl_push_stats(L, couch_repl_check(L, 1));
  return 1;
}

static int l_errors(lua_State *L) {
  couch_repl *r = couch_repl_check(L, 1);
  couch_repl_push(L, r->ref.failures);
  if (lua_isnil(L, -1)) couch_json_newarray(L);
  return 1;
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  return lua_gettop(L) - 2;
}

/* job:wait([timeout]) -> stats: joins the job's task (raises the replication's error, or
 * task:wait's `timeout` error after timeout seconds while the job goes on). */
static int l_wait(lua_State *L) {
  repl_ud *u = (repl_ud *)couch_repl_check(L, 1);
  lua_settop(L, 2);
  couch_repl_push(L, u->task);
  if (lua_isnil(L, -1)) return luaL_error(L, "the replication job has no task");
  lua_getfield(L, -1, "wait");
  lua_insert(L, -2);
  lua_pushvalue(L, 2);
  lua_callk(L, 2, LUA_MULTRET, 0, wait_k);
  return wait_k(L, LUA_OK, 0);
}

/* job:cancel(): stop reading; the workers finish the batches in flight, then the job
 * checkpoints and ends as cancelled. A job waiting out a failure (retry.c) wakes and ends
 * at once. */
static int l_cancel(lua_State *L) {
  repl_ud *u = (repl_ud *)couch_repl_check(L, 1);
  lua_settop(L, 1);
  u->r.stopping = u->r.cancelled = 1;
  couch_repl_push(L, u->r.ref.idle); /* its waiters re-check: the backoff's ends */
  if (!lua_isnil(L, -1)) {
    lua_getfield(L, -1, "broadcast");
    lua_insert(L, -2);
    lua_call(L, 1, 0);
  }
  lua_settop(L, 1);
  couch_repl_push(L, u->reader);
  if (lua_isnil(L, -1)) return 0;
  lua_getfield(L, -1, "cancel");
  lua_insert(L, -2);
  lua_call(L, 1, 0);
  return 0;
}

/* --- for replicate.lua's run() ----------------------------------------------------- */

/* job:_tasks(task): the job's own task (job:wait() joins it). */
static int l_tasks(lua_State *L) {
  repl_ud *u = (repl_ud *)couch_repl_check(L, 1);
  couch_repl_set(L, &u->task, 2);
  return 0;
}

void couch_repl_set_state(lua_State *L, couch_repl *r, couch_repl_state state) {
  r->state = state;
  if (state >= REPL_COMPLETED) {
    couch_repl_iso_now(r->end_time);
    repl_ud *u = (repl_ud *)r; /* the reader task is over: no ref keeps it */
    luaL_unref(L, LUA_REGISTRYINDEX, u->reader);
    u->reader = LUA_NOREF;
  }
}

void couch_repl_set_reader(lua_State *L, couch_repl *r, int idx) { couch_repl_set(L, &((repl_ud *)r)->reader, idx); }

/* job:_failure(d, err) -> the error object (counted, kept for job:errors()). */
static int l_failure(lua_State *L) {
  couch_repl *r = couch_repl_check(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  couch_repl_push_failure(L, r, 2, 3);
  return 1;
}

/* job:_skipped(n): documents a filter, transform or new_revisions left out. */
static int l_skipped(lua_State *L) {
  couch_repl_check(L, 1)->docs_skipped += luaL_checkinteger(L, 2);
  return 0;
}

/* job:_elapsed() -> seconds since the job started (the progress line's rate). */
static int l_elapsed(lua_State *L) {
  couch_repl *r = couch_repl_check(L, 1);
  lua_pushnumber(L, couch_repl_now() - r->started);
  return 1;
}

static int l_index(lua_State *L) {
  couch_repl *r = couch_repl_check(L, 1);
  luaL_getmetatable(L, COUCH_REPL_MT);
  lua_getfield(L, -1, "methods");
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) != LUA_TNIL) return 1; /* a method */
  lua_pop(L, 3);
  const char *k = lua_tostring(L, 2);
  if (!k) return 0;
  if (strcmp(k, "state") == 0) lua_pushstring(L, STATES[r->state]);
  else if (strcmp(k, "name") == 0) couch_repl_push(L, r->ref.name);
  else if (strcmp(k, "task") == 0) couch_repl_push(L, ((repl_ud *)r)->task);
  else if (strcmp(k, "rep_id") == 0) couch_repl_push(L, r->ref.rep_id);
  else if (strcmp(k, "continuous") == 0) lua_pushboolean(L, r->continuous);
  else if (strcmp(k, "source") == 0) couch_repl_push(L, r->ref.db[REPL_SOURCE]);
  else if (strcmp(k, "target") == 0) couch_repl_push(L, r->ref.db[REPL_TARGET]);
  else if (strcmp(k, "info") == 0) couch_repl_push_stats(L, r);
  else lua_pushnil(L);
  return 1;
}

static int l_tostring(lua_State *L) {
  couch_repl *r = couch_repl_check(L, 1);
  couch_repl_push(L, r->ref.source_url);
  couch_repl_push(L, r->ref.target_url);
  lua_pushfstring(L, "couch.replication_job %s -> %s (%s, %I written)", luaL_optstring(L, -2, "?"),
                  luaL_optstring(L, -1, "?"), STATES[r->state], (LUAI_UACINT)r->docs_written);
  return 1;
}

/* __close: a job left in a to-be-closed variable stops when the block ends. */
static int l_close(lua_State *L) {
  couch_repl *r = couch_repl_check(L, 1);
  if (r->state <= REPL_RUNNING) return l_cancel(L);
  return 0;
}

static int l_gc(lua_State *L) {
  couch_repl_cleanup(L, couch_repl_check(L, 1));
  return 0;
}

void couch_repl_add_methods(lua_State *L, const luaL_Reg *methods) {
  luaL_getmetatable(L, COUCH_REPL_MT);
  lua_getfield(L, -1, "methods");
  luaL_setfuncs(L, methods, 0);
  lua_pop(L, 2);
}

void couch_repl_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"stats", l_stats},       {"errors", l_errors},       {"wait", l_wait},
      {"cancel", l_cancel},     {"_tasks", l_tasks},        {"_failure", l_failure},
      {"_skipped", l_skipped},
      {"_elapsed", l_elapsed},  {NULL, NULL}};
  static const couch_meta meta = {.index = l_index, .gc = l_gc, .close = l_close, .tostring = l_tostring};
  if (couch_meta_new(L, COUCH_REPL_MT, &meta)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
  }
  lua_pop(L, 1);
  couch_run_open(L);
  couch_events_open(L);
  couch_retry_open(L);
  lua_pushcfunction(L, l_new);
  lua_setfield(L, -2, "repl_new");
}
