/* The native replication's `_local/<rep_id>` checkpoints, kept on both sides as CouchDB's
 * replicator keeps them (or on one, r->ckpt_side: PouchDB's checkpoint = "source" /
 * "target", e.g. for a read-only source; it is then resumed from that side alone):
 *   job:_start()         where to resume: the newest session both checkpoints share
 *                        (CouchDB's rule); sets the start, through and checkpointed seqs
 *   job:_checkpoint([final]) record the through seq on the target, then on the source,
 *                        with a history of at most 50 sessions, newest first
 *   job:_verify_sides()  raise target_recreated / source_recreated when a side lost the
 *                        first revision this run saw there
 * Steps, each its own continuation, their state in a `ckpt` struct (a userdata at stack
 * slot 2, the checkpoint document its user value; the continuation context is its
 * address): start: GET source -> GET target. checkpoint: verify each side (one
 * _revs_diff for its anchor) -> PUT target -> PUT source; a 409 / 404 re-reads the side
 * (GET) and tries again, at most 10 times. Every call goes to the request layer through
 * couch_repl_call (call.c), so auth and retries stay in one place. */
#include "replicate/checkpoint.h"

#include "error.h"
#include "json/json.h"
#include "replicate/call.h"
#include "replicate/job.h"

#include <lauxlib.h>

#define MAX_ATTEMPTS 10

enum { S_JOB = 1, S_CKPT, S_TOP = S_CKPT };

typedef struct {
  couch_repl *r;
  int side;        /* REPL_TARGET first, then REPL_SOURCE: a source-only one is no session */
  int attempt;     /* PUTs refused in a row on this side */
  int verify_only; /* job:_verify_sides(): nothing to write */
} ckpt;

static const char *const SIDE_NAME[] = {"source", "target"};

static ckpt *push_ckpt(lua_State *L, couch_repl *r) {
  ckpt *c = lua_newuserdatauv(L, sizeof *c, 1);
  *c = (ckpt){.r = r, .side = REPL_TARGET};
  return c;
}

static void push_doc(lua_State *L) { lua_getiuservalue(L, S_CKPT, 1); }

/* The statuses that are answers, not errors (0-terminated). */
static const int ALLOW_404[] = {404, 0}, ALLOW_409_404[] = {409, 404, 0};

/* The GET of side's checkpoint, a missing one being an answer: k gets body, status. */
static int get_local(lua_State *L, ckpt *c, int side, lua_KFunction k) {
  int keep = lua_gettop(L);
  couch_repl_push(L, c->r->ref.local_path);
  return couch_repl_call(L, c->r,
                         &(couch_repl_req){.side = side, .method = "GET", .path = lua_tostring(L, -1), .keep = keep,
                                           .nresults = 2, .allow = ALLOW_404},
                         (lua_KContext)c, k);
}

/* body, status on top -> body, or nil for a 404 */
static void local_or_nil(lua_State *L) {
  if (lua_tointeger(L, -1) == 404) {
    lua_pop(L, 2);
    lua_pushnil(L);
  } else {
    lua_pop(L, 1);
  }
}

static void push_rev_of(lua_State *L, int idx) {
  if (lua_istable(L, idx)) lua_getfield(L, idx, "_rev");
  else lua_pushnil(L);
}

static int raise_recreated(lua_State *L, couch_repl *r, int side) {
  couch_repl_push(L, side == REPL_SOURCE ? r->ref.source_url : r->ref.target_url);
  couch_error_push(L, "replication",
                   "the %s %s was deleted or re-created during the replication; nothing of this run was "
                   "checkpointed: start again",
                   SIDE_NAME[side], luaL_tolstring(L, -1, NULL));
  lua_pushfstring(L, "%s_recreated", SIDE_NAME[side]);
  lua_setfield(L, -2, "reason");
  couch_error_setstr(L, lua_gettop(L), "database", SIDE_NAME[side]);
  return lua_error(L);
}

/* --- where to start ---------------------------------------------------------------- */

/* Set the seqs a run starts from: the start, the through and the checkpointed ones. */
static int started(lua_State *L, couch_repl *r, int start) {
  couch_repl_set(L, &r->ref.start_seq, start);
  couch_repl_set(L, &r->ref.through_seq, start);
  couch_repl_set(L, &r->ref.checkpointed_seq, start);
  lua_pushvalue(L, start);
  return 1;
}

/* The start of s (source's checkpoint) and t (target's), both tables. */
static void push_common_seq(lua_State *L, couch_repl *r, int s, int t) {
  lua_getfield(L, s, "session_id");
  lua_getfield(L, t, "session_id");
  int same = lua_compare(L, -2, -1, LUA_OPEQ);
  lua_pop(L, 2);
  if (same) { /* the same session on both sides: its seq */
    if (lua_getfield(L, s, "source_last_seq") != LUA_TNIL) return;
    lua_pop(L, 1);
  }
  /* else the newest session of the source's history that the target's history holds */
  lua_newtable(L);
  int in_target = lua_gettop(L);
  if (lua_getfield(L, t, "history") == LUA_TTABLE) {
    for (lua_Integer i = 1; lua_geti(L, -1, i) != LUA_TNIL; i++) {
      lua_getfield(L, -1, "session_id");
      lua_insert(L, -2);
      if (!lua_isnil(L, -2)) lua_settable(L, in_target);
      else lua_pop(L, 2);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (lua_getfield(L, s, "history") == LUA_TTABLE) {
    int sh = lua_gettop(L);
    for (lua_Integer i = 1; lua_geti(L, sh, i) != LUA_TNIL; i++) {
      lua_getfield(L, -1, "session_id");
      int found = !lua_isnil(L, -1) && lua_gettable(L, in_target) != LUA_TNIL;
      lua_pop(L, 1);
      if (found) {
        lua_getfield(L, -1, "recorded_seq");
        lua_replace(L, in_target);
        lua_settop(L, in_target);
        return;
      }
      lua_pop(L, 1);
    }
  }
  lua_settop(L, in_target - 1);
  couch_repl_push(L, r->ref.since);
}

/* The history of the checkpoint document at doc (a table, or nil: none yet), kept for the
 * next checkpoint to extend. */
static void keep_history(lua_State *L, couch_repl *r, int doc) {
  if (lua_istable(L, doc)) lua_getfield(L, doc, "history");
  else lua_pushnil(L);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  couch_repl_set(L, &r->ref.history, -1);
  lua_pop(L, 1);
}

static int got_target_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  ckpt *c = (ckpt *)ctx;
  couch_repl *r = c->r;
  local_or_nil(L);
  int t = lua_gettop(L);
  push_doc(L); /* the source's checkpoint, kept while the target's was read */
  int s = t + 1;
  push_rev_of(L, s);
  couch_repl_set(L, &r->ref.ckpt_rev[REPL_SOURCE], -1);
  push_rev_of(L, t);
  couch_repl_set(L, &r->ref.ckpt_rev[REPL_TARGET], -1);
  lua_settop(L, s);
  keep_history(L, r, s);
  if (!lua_istable(L, s) || !lua_istable(L, t)) couch_repl_push(L, r->ref.since);
  else push_common_seq(L, r, s, t);
  return started(L, r, lua_gettop(L));
}

/* One side's checkpoint only (checkpoint = "source" / "target", as PouchDB's): the seq it
 * recorded, else since. No session to match: nothing is written on the other side. */
static int got_one_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  ckpt *c = (ckpt *)ctx;
  couch_repl *r = c->r;
  local_or_nil(L);
  int doc = lua_gettop(L);
  push_rev_of(L, doc);
  couch_repl_set(L, &r->ref.ckpt_rev[c->side], -1);
  lua_pop(L, 1);
  keep_history(L, r, doc);
  if (!lua_istable(L, doc) || lua_getfield(L, doc, "source_last_seq") == LUA_TNIL) couch_repl_push(L, r->ref.since);
  return started(L, r, lua_gettop(L));
}

static int got_source_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  ckpt *c = (ckpt *)ctx;
  local_or_nil(L);
  lua_setiuservalue(L, S_CKPT, 1);
  lua_settop(L, S_TOP);
  return get_local(L, c, REPL_TARGET, got_target_k);
}

/* job:_start() -> the seq to start from */
static int l_start(lua_State *L) {
  couch_repl *r = couch_repl_check(L, 1);
  lua_settop(L, 1);
  luaL_checkstack(L, 24, "finding the start");
  if (!r->use_checkpoints) {
    couch_repl_push(L, r->ref.since);
    return started(L, r, 2);
  }
  ckpt *c = push_ckpt(L, r);
  if (!r->ckpt_side[REPL_SOURCE] || !r->ckpt_side[REPL_TARGET]) {
    c->side = r->ckpt_side[REPL_SOURCE] ? REPL_SOURCE : REPL_TARGET;
    return get_local(L, c, c->side, got_one_k);
  }
  return get_local(L, c, REPL_SOURCE, got_source_k);
}

/* --- writing a checkpoint ---------------------------------------------------------- */

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* The checkpoint document, as CouchDB's replicator writes it, into the ckpt's user value. */
static void build_doc(lua_State *L, couch_repl *r) {
  char now[24];
  couch_repl_iso_now(now);
  lua_createtable(L, 0, 11);
  int entry = lua_gettop(L);
  lua_pushstring(L, r->session_id);
  lua_setfield(L, entry, "session_id");
  lua_pushstring(L, r->start_time);
  lua_setfield(L, entry, "start_time");
  lua_pushstring(L, now);
  lua_setfield(L, entry, "end_time");
  couch_repl_push(L, r->ref.start_seq);
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    lua_pushinteger(L, 0);
  }
  lua_setfield(L, entry, "start_last_seq");
  couch_repl_push(L, r->ref.through_seq);
  lua_setfield(L, entry, "end_last_seq");
  couch_repl_push(L, r->ref.through_seq);
  lua_setfield(L, entry, "recorded_seq");
  set_int(L, "missing_checked", r->revisions_checked);
  set_int(L, "missing_found", r->missing_revisions_found);
  set_int(L, "docs_read", r->docs_read);
  set_int(L, "docs_written", r->docs_written);
  set_int(L, "doc_write_failures", r->doc_write_failures);
  /* this session first, then up to 49 earlier ones */
  couch_json_newarray(L);
  int history = lua_gettop(L);
  lua_pushvalue(L, entry);
  lua_rawseti(L, history, 1);
  lua_Integer n = 1;
  couch_repl_push(L, r->ref.history);
  int old = lua_gettop(L);
  lua_pushstring(L, r->session_id);
  int sid = lua_gettop(L);
  for (lua_Integer i = 1; lua_istable(L, old) && lua_geti(L, old, i) != LUA_TNIL; i++) {
    lua_getfield(L, -1, "session_id");
    int same = lua_compare(L, -1, sid, LUA_OPEQ);
    lua_pop(L, 1);
    if (!same && n < 50) lua_rawseti(L, history, ++n);
    else lua_pop(L, 1);
  }
  lua_settop(L, history);
  lua_createtable(L, 0, 7);
  lua_pushstring(L, r->session_id);
  lua_setfield(L, -2, "session_id");
  couch_repl_push(L, r->ref.through_seq);
  lua_setfield(L, -2, "source_last_seq");
  set_int(L, "replication_id_version", 4);
  lua_pushvalue(L, history);
  lua_setfield(L, -2, "history");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "couchlua");
  lua_pushliteral(L, "_local/");
  couch_repl_push(L, r->ref.rep_id);
  lua_concat(L, 2);
  lua_setfield(L, -2, "_id");
  lua_setiuservalue(L, S_CKPT, 1);
  lua_settop(L, S_TOP);
}

static int put_side(lua_State *L, ckpt *c);

/* Every side to write is written: what was recorded (through may have moved on). */
static int recorded(lua_State *L, ckpt *c) {
  push_doc(L);
  lua_getfield(L, -1, "source_last_seq");
  couch_repl_set(L, &c->r->ref.checkpointed_seq, -1);
  c->r->last_checkpoint = couch_repl_now();
  lua_settop(L, S_TOP);
  return 0;
}

/* The PUT of the checkpoint to c->side: a 409 or 404 is an answer (another job on the same
 * pair wrote in between, ours vanished, or a retry after a timeout had landed). */
static int put_k(lua_State *L, int status, lua_KContext ctx);

static int send_put(lua_State *L, ckpt *c) {
  int keep = lua_gettop(L);
  couch_repl_push(L, c->r->ref.local_path);
  push_doc(L);
  return couch_repl_call(L, c->r,
                         &(couch_repl_req){.side = c->side, .method = "PUT", .path = lua_tostring(L, -2),
                                           .body = lua_gettop(L), .keep = keep, .nresults = 2, .idempotent = 1,
                                           .allow = ALLOW_409_404},
                         (lua_KContext)c, put_k);
}

static int reread_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  ckpt *c = (ckpt *)ctx;
  local_or_nil(L);
  int now = lua_gettop(L);
  /* gone although we had one: the database was deleted and re-created under us; never
   * write a checkpoint that would claim its old content */
  if (lua_isnil(L, now) && c->r->ref.ckpt_rev[c->side] != LUA_NOREF) return raise_recreated(L, c->r, c->side);
  /* another job's checkpoint: ours replaces it. It never claims more than this job moved;
   * the next run finds the newest common session of both sides. */
  push_doc(L);
  push_rev_of(L, now);
  lua_setfield(L, -2, "_rev");
  lua_settop(L, S_TOP);
  return send_put(L, c);
}

static int put_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  ckpt *c = (ckpt *)ctx;
  lua_Integer code = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (code == 409 || code == 404) {
    if (++c->attempt > MAX_ATTEMPTS) {
      couch_error_push(L, "replication",
                       "the checkpoint on the %s kept changing under this job (%d conflicts in a row): is "
                       "another job writing it?",
                       SIDE_NAME[c->side], c->attempt - 1);
      couch_error_setstr(L, lua_gettop(L), "reason", "checkpoint_conflict");
      couch_error_setint(L, lua_gettop(L), "status", code);
      return lua_error(L);
    }
    lua_settop(L, S_TOP); /* look at what is there now */
    return get_local(L, c, c->side, reread_k);
  }
  if (lua_istable(L, -1)) lua_getfield(L, -1, "rev");
  else lua_pushnil(L);
  couch_repl_set(L, &c->r->ref.ckpt_rev[c->side], -1);
  lua_settop(L, S_TOP);
  if (c->side == REPL_SOURCE) return recorded(L, c);
  c->side = REPL_SOURCE;
  return put_side(L, c);
}

static int put_side(lua_State *L, ckpt *c) {
  if (!c->r->ckpt_side[c->side]) { /* checkpoint = "source" / "target": not this side */
    if (c->side == REPL_SOURCE) return recorded(L, c);
    c->side = REPL_SOURCE;
    return put_side(L, c);
  }
  c->attempt = 0;
  push_doc(L);
  couch_repl_push(L, c->r->ref.ckpt_rev[c->side]);
  lua_setfield(L, -2, "_rev");
  lua_pop(L, 1);
  return send_put(L, c);
}

/* Before claiming anything: is the first revision this run saw on each side still there?
 * A database deleted and re-created under the job (CouchDB 3's instance_start_time is
 * always "0") has lost it. One _revs_diff per side that has an anchor. */
static int verify_side(lua_State *L, ckpt *c);

static int verified_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  ckpt *c = (ckpt *)ctx;
  couch_repl *r = c->r;
  int lost = lua_tointeger(L, -1) == 404; /* the database itself is gone */
  lua_pop(L, 1);
  if (!lost && lua_istable(L, -1)) {
    couch_repl_push(L, r->ref.anchor_id[c->side]);
    lost = lua_gettable(L, -2) == LUA_TTABLE;
  }
  if (lost) return raise_recreated(L, r, c->side);
  lua_settop(L, S_TOP);
  if (c->side == REPL_SOURCE) {
    if (c->verify_only) return 0;
    c->side = REPL_TARGET;
    return put_side(L, c);
  }
  c->side = REPL_SOURCE;
  return verify_side(L, c);
}

static int verify_side(lua_State *L, ckpt *c) {
  couch_repl *r = c->r;
  while (r->ref.anchor_id[c->side] == LUA_NOREF) { /* nothing seen there yet */
    if (c->side == REPL_SOURCE) {
      if (c->verify_only) return 0;
      c->side = REPL_TARGET;
      return put_side(L, c);
    }
    c->side = REPL_SOURCE;
  }
  int keep = lua_gettop(L);
  couch_json_newobject(L); /* {anchor id = [anchor rev]} */
  couch_repl_push(L, r->ref.anchor_id[c->side]);
  couch_json_newarray(L);
  couch_repl_push(L, r->ref.anchor_rev[c->side]);
  lua_rawseti(L, -2, 1);
  lua_settable(L, -3);
  return couch_repl_call(L, r,
                         &(couch_repl_req){.side = c->side, .method = "POST", .path = "/_revs_diff",
                                           .body = lua_gettop(L), .keep = keep, .nresults = 2, .idempotent = 1,
                                           .allow = ALLOW_404},
                         (lua_KContext)c, verified_k);
}

/* The body of one checkpoint, under lua_pcallk so `checkpointing` is always cleared. */
static int do_checkpoint(lua_State *L) {
  couch_repl *r = lua_touserdata(L, 1);
  lua_settop(L, 1);
  luaL_checkstack(L, 32, "checkpointing");
  ckpt *c = push_ckpt(L, r);
  build_doc(L, r);
  return verify_side(L, c);
}

/* The checkpoint is over (written or failed): wake a final checkpoint waiting for it. */
static int finish_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  couch_repl *r = lua_touserdata(L, 1);
  r->checkpointing = 0;
  couch_repl_push(L, r->ref.idle);
  if (!lua_isnil(L, -1)) {
    lua_getfield(L, -1, "broadcast");
    lua_insert(L, -2);
    lua_call(L, 1, 0);
  } else {
    lua_pop(L, 1);
  }
  if (status != LUA_OK && status != LUA_YIELD) return lua_error(L);
  return 0;
}

static int start_checkpoint(lua_State *L, couch_repl *r) {
  lua_settop(L, 1);
  if (!r->use_checkpoints || r->ref.through_seq == LUA_NOREF) return 0;
  couch_repl_push(L, r->ref.through_seq);
  couch_repl_push(L, r->ref.checkpointed_seq);
  int same = lua_compare(L, -1, -2, LUA_OPEQ);
  lua_settop(L, 1);
  if (same) return 0;
  r->checkpointing = 1;
  lua_pushcfunction(L, do_checkpoint);
  lua_pushlightuserdata(L, r);
  return finish_k(L, lua_pcallk(L, 1, 0, 0, 0, finish_k), 0);
}

/* A final checkpoint waits for the one in flight (a cond, no polling), then writes. */
static int idle_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  couch_repl *r = couch_repl_check(L, 1);
  lua_settop(L, 1);
  if (r->checkpointing && r->ref.idle != LUA_NOREF) {
    couch_repl_push(L, r->ref.idle);
    lua_getfield(L, -1, "wait");
    lua_insert(L, -2);
    lua_callk(L, 1, 0, 0, idle_k);
    return idle_k(L, LUA_OK, 0);
  }
  return start_checkpoint(L, r);
}

/* job:_checkpoint([final]): record the through seq on both sides, when it moved. Only one
 * at a time: a worker finding one in flight goes on (the next batch tries again); the
 * final one waits for it. */
static int l_checkpoint(lua_State *L) {
  couch_repl *r = couch_repl_check(L, 1);
  int final = lua_toboolean(L, 2);
  lua_settop(L, 1);
  if (final) return idle_k(L, LUA_OK, 0);
  if (r->checkpointing) return 0;
  return start_checkpoint(L, r);
}

/* job:_verify_sides(): raise the replication error of a side deleted and re-created during
 * the run, else return nothing. A failing job calls it, so a failure caused by a
 * re-created database (a _changes answer that makes no sense, a revision gone) says so. */
static int l_verify_sides(lua_State *L) {
  couch_repl *r = couch_repl_check(L, 1);
  lua_settop(L, 1);
  luaL_checkstack(L, 32, "verifying");
  ckpt *c = push_ckpt(L, r);
  c->verify_only = 1;
  return verify_side(L, c);
}

void couch_checkpoint_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"_start", l_start}, {"_checkpoint", l_checkpoint}, {"_verify_sides", l_verify_sides}, {NULL, NULL}};
  couch_repl_add_methods(L, methods);
}
