/* couch._find_start(job) and couch._checkpoint(job): the native replication's
 * `_local/<rep_id>` checkpoints, kept on both sides as CouchDB's replicator keeps them.
 *   find_start: where to start, the newest session both checkpoints share (CouchDB's rule).
 *   checkpoint: record job.through_seq on the target, then on the source, with a history
 *   of at most 50 sessions, newest first.
 * Every HTTP call goes through the database's Lua `request` method with lua_callk (as in
 * batch.c), so auth and retries stay in one place and the call yields inside a task.
 * State lives in fixed stack slots; the continuation context packs the step and a side. */
#include "replicate/checkpoint.h"

#include "json/json.h"

#include <lauxlib.h>
#include <time.h>

#define CTX(st, i) ((lua_KContext)(((lua_KContext)(i) << 4) | (st)))

/* Slots shared by both functions (after the job at 1 and the couch table at 2). */
enum { S_JOB = 1, S_COUCH };

static void push_iso_now(lua_State *L) {
  char buf[32];
  time_t now = time(NULL);
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  lua_pushstring(L, buf);
}

/* Push "/_local/" .. couch.escape(job.rep_id). */
static void push_local_path(lua_State *L) {
  lua_pushliteral(L, "/_local/");
  lua_getfield(L, S_COUCH, "escape");
  lua_getfield(L, S_JOB, "rep_id");
  lua_call(L, 1, 1);
  lua_concat(L, 2);
}

/* Push job[side].request, job[side], method, path: ready for opts and a lua_callk. */
static void push_request(lua_State *L, const char *side, const char *method) {
  lua_getfield(L, S_JOB, side);
  lua_getfield(L, -1, "request");
  lua_insert(L, -2);
  lua_pushstring(L, method);
  push_local_path(L);
}

/* Push an allow table {[a] = true, [b] = true} (b = 0: only a). */
static void push_allow(lua_State *L, int a, int b) {
  lua_createtable(L, 0, 2);
  lua_pushboolean(L, 1);
  lua_rawseti(L, -2, a);
  if (b) {
    lua_pushboolean(L, 1);
    lua_rawseti(L, -2, b);
  }
}

/* Push the options of a GET of the checkpoint: a missing one is an answer, not an error. */
static void push_get_opts(lua_State *L) {
  lua_createtable(L, 0, 1);
  push_allow(L, 404, 0);
  lua_setfield(L, -2, "allow");
}

static int job_flag(lua_State *L, const char *name) {
  lua_getfield(L, S_JOB, name);
  int b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

/* --- find_start ------------------------------------------------------------------- */

enum { F_S = 3, F_T, F_TOP = F_T };
enum { FS_GOT_SOURCE = 1, FS_GOT_TARGET };

/* body, status on top -> body, or nil for a 404; replaces both with one value. */
static void local_or_nil(lua_State *L) {
  if (lua_tointeger(L, -1) == 404) {
    lua_pop(L, 2);
    lua_pushnil(L);
  } else {
    lua_pop(L, 1);
  }
}

/* Push x._rev of the value at idx, or nil when it is nil. */
static void push_rev_of(lua_State *L, int idx) {
  if (lua_isnil(L, idx)) lua_pushnil(L);
  else lua_getfield(L, idx, "_rev");
}

static int find_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  switch ((int)(ctx & 15)) {
  case FS_GOT_SOURCE:
    local_or_nil(L);
    lua_replace(L, F_S);
    lua_settop(L, F_TOP);
    push_request(L, "target", "GET");
    push_get_opts(L);
    lua_callk(L, 4, 2, CTX(FS_GOT_TARGET, 0), find_k);
    /* fall through */
  case FS_GOT_TARGET:
    local_or_nil(L);
    lua_replace(L, F_T);
    lua_settop(L, F_TOP);
    break;
  default:
    return luaL_error(L, "find_start: bad step");
  }
  /* job.ckpt_rev = {source = s and s._rev, target = t and t._rev} */
  lua_createtable(L, 0, 2);
  push_rev_of(L, F_S);
  lua_setfield(L, -2, "source");
  push_rev_of(L, F_T);
  lua_setfield(L, -2, "target");
  lua_setfield(L, S_JOB, "ckpt_rev");
  /* job.history = s and s.history or {} */
  if (!lua_isnil(L, F_S)) lua_getfield(L, F_S, "history");
  else lua_pushnil(L);
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  lua_setfield(L, S_JOB, "history");
  if (lua_isnil(L, F_S) || lua_isnil(L, F_T)) {
    lua_getfield(L, S_JOB, "since");
    return 1;
  }
  /* the same session on both sides: its seq */
  lua_getfield(L, F_S, "session_id");
  lua_getfield(L, F_T, "session_id");
  int same = lua_compare(L, -2, -1, LUA_OPEQ);
  lua_pop(L, 2);
  if (same) {
    lua_getfield(L, F_S, "source_last_seq");
    if (!lua_isnil(L, -1)) return 1;
    lua_pop(L, 1);
  }
  /* else the newest session of the source's history that the target's history holds */
  lua_newtable(L);
  int in_target = lua_gettop(L);
  lua_getfield(L, F_T, "history");
  if (lua_istable(L, -1)) {
    int th = lua_gettop(L);
    for (lua_Integer i = 1; lua_geti(L, th, i) != LUA_TNIL; i++) {
      lua_getfield(L, -1, "session_id");
      lua_insert(L, -2);
      lua_settable(L, in_target);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_getfield(L, F_S, "history");
  if (lua_istable(L, -1)) {
    int sh = lua_gettop(L);
    for (lua_Integer i = 1; lua_geti(L, sh, i) != LUA_TNIL; i++) {
      lua_getfield(L, -1, "session_id");
      int found = lua_gettable(L, in_target) != LUA_TNIL;
      lua_pop(L, 1);
      if (found) {
        lua_getfield(L, -1, "recorded_seq");
        return 1;
      }
      lua_pop(L, 1);
    }
  }
  lua_getfield(L, S_JOB, "since");
  return 1;
}

/* couch._find_start(job) -> the seq to start from; sets job.ckpt_rev and job.history. */
static int l_find_start(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  luaL_checkstack(L, 24, "finding the start");
  lua_pushvalue(L, lua_upvalueindex(1)); /* S_COUCH */
  if (!job_flag(L, "use_checkpoints")) {
    lua_getfield(L, S_JOB, "since");
    return 1;
  }
  lua_pushnil(L); /* F_S */
  lua_pushnil(L); /* F_T */
  push_request(L, "source", "GET");
  push_get_opts(L);
  lua_callk(L, 4, 2, CTX(FS_GOT_SOURCE, 0), find_k);
  return find_k(L, LUA_OK, CTX(FS_GOT_SOURCE, 0));
}

/* --- checkpoint ------------------------------------------------------------------- */

enum { C_DOC = 3, C_TOP = C_DOC };
enum { CS_VERIFY = 1, CS_VERIFIED, CS_PUT, CS_PUT_DONE, CS_GOT_NOW, CS_SET_REV };

/* The context packs the step (4 bits), the side (4 bits) and the attempt. */
#define CCTX(st, side, attempt) ((lua_KContext)(((lua_KContext)(attempt) << 8) | ((side) << 4) | (st)))
#define MAX_ATTEMPTS 10

/* Side 0 writes the target, side 1 the source: target first, because a checkpoint on
 * the source alone would not be a shared session. */
static const char *const SIDES[] = {"target", "source"};

static void push_ckpt_rev(lua_State *L, const char *side) {
  lua_getfield(L, S_JOB, "ckpt_rev");
  lua_getfield(L, -1, side);
  lua_remove(L, -2);
}

/* Push the PUT of the checkpoint document to `side`: a 409 or 404 is an answer (another
 * job on the same pair wrote in between, our checkpoint vanished, or a retry after a
 * timeout had landed), re-read and tried again. Idempotent, so a timeout is retried. */
static void push_put(lua_State *L, const char *side) {
  push_request(L, side, "PUT");
  lua_createtable(L, 0, 3);
  lua_pushvalue(L, C_DOC);
  lua_setfield(L, -2, "body");
  push_allow(L, 409, 404);
  lua_setfield(L, -2, "allow");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "idempotent");
}

/* Raise the replication error of a database deleted and re-created during the run. */
static int raise_recreated(lua_State *L, const char *side) {
  lua_getfield(L, S_COUCH, "_raise");
  lua_pushliteral(L, "replication");
  lua_pushfstring(L, "the %s ", side);
  lua_getfield(L, S_JOB, "info");
  lua_getfield(L, -1, side);
  lua_remove(L, -2);
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
  lua_pushliteral(L, " was deleted or re-created during the replication; nothing of this run was "
                     "checkpointed: start again");
  lua_concat(L, 3);
  lua_createtable(L, 0, 2);
  lua_pushfstring(L, "%s_recreated", side);
  lua_setfield(L, -2, "reason");
  lua_pushstring(L, side);
  lua_setfield(L, -2, "database");
  lua_call(L, 3, 0);
  return luaL_error(L, "unreachable");
}

/* Push job._anchors[side] ({id, rev}: the first revision of this run known to be on that
 * side), or nil. */
static void push_anchor(lua_State *L, const char *side) {
  if (lua_getfield(L, S_JOB, "_anchors") != LUA_TTABLE) return;
  lua_getfield(L, -1, side);
  lua_remove(L, -2);
}

/* Build the checkpoint document into C_DOC. */
static void build_doc(lua_State *L) {
  lua_getfield(L, S_JOB, "info");
  int s = lua_gettop(L);
  lua_createtable(L, 0, 11);
  int entry = lua_gettop(L);
  lua_getfield(L, S_JOB, "session_id");
  lua_setfield(L, entry, "session_id");
  lua_getfield(L, s, "start_time");
  lua_setfield(L, entry, "start_time");
  push_iso_now(L);
  lua_setfield(L, entry, "end_time");
  lua_getfield(L, S_JOB, "start_seq");
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    lua_pushinteger(L, 0);
  }
  lua_setfield(L, entry, "start_last_seq");
  lua_getfield(L, S_JOB, "through_seq");
  lua_setfield(L, entry, "end_last_seq");
  lua_getfield(L, S_JOB, "through_seq");
  lua_setfield(L, entry, "recorded_seq");
  static const char *const stats[][2] = {
    {"missing_checked", "revisions_checked"}, {"missing_found", "missing_revisions_found"},
    {"docs_read", "docs_read"}, {"docs_written", "docs_written"},
    {"doc_write_failures", "doc_write_failures"}};
  for (size_t i = 0; i < sizeof stats / sizeof stats[0]; i++) {
    lua_getfield(L, s, stats[i][1]);
    lua_setfield(L, entry, stats[i][0]);
  }
  /* this session first, then up to 49 earlier ones */
  couch_json_newarray(L);
  int history = lua_gettop(L);
  lua_pushvalue(L, entry);
  lua_rawseti(L, history, 1);
  lua_Integer n = 1;
  lua_getfield(L, S_JOB, "history");
  int old = lua_gettop(L);
  lua_getfield(L, S_JOB, "session_id");
  int sid = lua_gettop(L);
  for (lua_Integer i = 1; lua_geti(L, old, i) != LUA_TNIL; i++) {
    lua_getfield(L, -1, "session_id");
    int same = lua_compare(L, -1, sid, LUA_OPEQ);
    lua_pop(L, 1);
    if (!same && n < 50) lua_rawseti(L, history, ++n);
    else lua_pop(L, 1);
  }
  lua_pop(L, 3); /* the nil, sid, old */
  lua_createtable(L, 0, 7);
  lua_getfield(L, S_JOB, "session_id");
  lua_setfield(L, -2, "session_id");
  lua_getfield(L, S_JOB, "through_seq");
  lua_setfield(L, -2, "source_last_seq");
  lua_pushinteger(L, 4);
  lua_setfield(L, -2, "replication_id_version");
  lua_pushvalue(L, history);
  lua_setfield(L, -2, "history");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "couchlua");
  lua_replace(L, C_DOC);
  lua_settop(L, C_TOP);
}

static int ckpt_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int st = (int)(ctx & 15);
  int side = (int)((ctx >> 4) & 15);
  int attempt = (int)(ctx >> 8);
  luaL_checkstack(L, 24, "checkpointing");
  for (;;) {
    switch (st) {
    case CS_VERIFY:
      /* Before claiming anything: is the first revision this run saw on each side still
       * there? A database deleted and re-created under the job (CouchDB 3's
       * instance_start_time is always "0") has lost it. One _revs_diff per side, per
       * checkpoint. */
      lua_settop(L, C_TOP);
      if (side > 1) {
        if (attempt) return 0; /* couch._verify_sides: nothing to write */
        st = CS_PUT, side = 0;
        continue;
      }
      push_anchor(L, SIDES[side]);
      if (!lua_istable(L, -1)) {
        side++;
        continue;
      }
      {
        int anchor = lua_gettop(L);
        lua_getfield(L, S_JOB, SIDES[side]);
        lua_getfield(L, -1, "request");
        lua_insert(L, -2);
        lua_pushliteral(L, "POST");
        lua_pushliteral(L, "/_revs_diff");
        lua_createtable(L, 0, 3);
        couch_json_newobject(L);
        lua_getfield(L, anchor, "id");
        couch_json_newarray(L);
        lua_getfield(L, anchor, "rev");
        lua_rawseti(L, -2, 1);
        lua_settable(L, -3);
        lua_setfield(L, -2, "body");
        push_allow(L, 404, 0);
        lua_setfield(L, -2, "allow");
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "idempotent");
        lua_callk(L, 4, 2, CCTX(CS_VERIFIED, side, attempt), ckpt_k);
      }
      st = CS_VERIFIED;
      continue;

    case CS_VERIFIED: {
      int lost = lua_tointeger(L, -1) == 404; /* the database itself is gone */
      lua_pop(L, 1);
      int res = lua_gettop(L);
      push_anchor(L, SIDES[side]);
      if (!lost && lua_istable(L, res)) {
        lua_getfield(L, -1, "id");
        lost = lua_gettable(L, res) == LUA_TTABLE;
      }
      if (lost) return raise_recreated(L, SIDES[side]);
      side++;
      st = CS_VERIFY;
      continue;
    }

    case CS_PUT:
      lua_settop(L, C_TOP);
      if (side > 1) {
        /* both written: what was recorded (through_seq may have moved on meanwhile) */
        lua_getfield(L, C_DOC, "source_last_seq");
        lua_pushvalue(L, -1);
        lua_setfield(L, S_JOB, "checkpointed_seq");
        lua_getfield(L, S_JOB, "info");
        lua_insert(L, -2);
        lua_setfield(L, -2, "checkpointed_source_seq");
        lua_getfield(L, S_COUCH, "now");
        lua_call(L, 0, 1);
        lua_setfield(L, S_JOB, "last_checkpoint");
        return 0;
      }
      lua_pushliteral(L, "_local/");
      lua_getfield(L, S_JOB, "rep_id");
      lua_concat(L, 2);
      lua_setfield(L, C_DOC, "_id");
      push_ckpt_rev(L, SIDES[side]);
      lua_setfield(L, C_DOC, "_rev");
      attempt = 0;
      push_put(L, SIDES[side]);
      lua_callk(L, 4, 2, CCTX(CS_PUT_DONE, side, attempt), ckpt_k);
      st = CS_PUT_DONE;
      continue;

    case CS_PUT_DONE: {
      lua_Integer code = lua_tointeger(L, -1);
      lua_pop(L, 1);
      if (code != 409 && code != 404) {
        st = CS_SET_REV;
        continue;
      }
      if (++attempt > MAX_ATTEMPTS) {
        lua_getfield(L, S_COUCH, "_raise");
        lua_pushliteral(L, "replication");
        lua_pushfstring(L, "the checkpoint on the %s kept changing under this job (%d conflicts in a row): "
                           "is another job writing it?", SIDES[side], attempt - 1);
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "checkpoint_conflict");
        lua_setfield(L, -2, "reason");
        lua_pushinteger(L, code);
        lua_setfield(L, -2, "status");
        lua_call(L, 3, 0);
        return luaL_error(L, "unreachable");
      }
      /* another job on the same pair wrote it, or it vanished: look at what is there now */
      lua_settop(L, C_TOP);
      push_request(L, SIDES[side], "GET");
      push_get_opts(L);
      lua_callk(L, 4, 2, CCTX(CS_GOT_NOW, side, attempt), ckpt_k);
      st = CS_GOT_NOW;
      continue;
    }

    case CS_GOT_NOW: {
      local_or_nil(L);
      int now = lua_gettop(L);
      /* gone although we had one: the database was deleted and re-created under us;
       * never write a checkpoint that would claim its old content */
      if (lua_isnil(L, now)) {
        push_ckpt_rev(L, SIDES[side]);
        int had = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (had) return raise_recreated(L, SIDES[side]);
      }
      /* another job's checkpoint: ours replaces it. It never claims more than this job
       * moved, so the checkpoint never runs ahead; the next run finds the newest common
       * session of both sides. */
      push_rev_of(L, now);
      lua_setfield(L, C_DOC, "_rev");
      lua_settop(L, C_TOP);
      push_put(L, SIDES[side]);
      lua_callk(L, 4, 2, CCTX(CS_PUT_DONE, side, attempt), ckpt_k);
      st = CS_PUT_DONE;
      continue;
    }

    case CS_SET_REV:
      /* the PUT's answer on top: job.ckpt_rev[side] = res.rev */
      lua_getfield(L, -1, "rev");
      lua_getfield(L, S_JOB, "ckpt_rev");
      lua_insert(L, -2);
      lua_setfield(L, -2, SIDES[side]);
      side++;
      st = CS_PUT;
      continue;

    default:
      return luaL_error(L, "checkpoint: bad step %d", st);
    }
  }
}

/* The body of one checkpoint, run under lua_pcallk so the `checkpointing` flag is always
 * cleared, also when a PUT fails. */
static int do_checkpoint(lua_State *L) {
  lua_settop(L, 1);
  luaL_checkstack(L, 32, "checkpointing");
  lua_pushvalue(L, lua_upvalueindex(1)); /* S_COUCH */
  lua_pushnil(L);                        /* C_DOC */
  build_doc(L);
  return ckpt_k(L, LUA_OK, CCTX(CS_VERIFY, 0, 0));
}

/* couch._verify_sides(job): raise the replication error of a side deleted and re-created
 * during the run (reason target_recreated / source_recreated), else return nothing. The
 * job calls it when it fails, so a failure caused by a re-created database (a _changes
 * answer that makes no sense, a revision gone) says so. */
static int l_verify_sides(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  luaL_checkstack(L, 32, "verifying");
  lua_pushvalue(L, lua_upvalueindex(1)); /* S_COUCH */
  lua_pushnil(L);                        /* C_DOC */
  return ckpt_k(L, LUA_OK, CCTX(CS_VERIFY, 0, 1));
}

static int finish_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  lua_pushboolean(L, 0);
  lua_setfield(L, 1, "checkpointing");
  if (status != LUA_OK && status != LUA_YIELD) return lua_error(L);
  return 0;
}

/* couch._checkpoint(job): record job.through_seq on both sides, when it moved. */
static int l_checkpoint(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_getfield(L, 1, "use_checkpoints");
  lua_getfield(L, 1, "through_seq");
  lua_getfield(L, 1, "checkpointed_seq");
  if (!lua_toboolean(L, 2) || lua_isnil(L, 3) || lua_compare(L, 3, 4, LUA_OPEQ)) return 0;
  lua_settop(L, 1);
  if (job_flag(L, "checkpointing")) return 0; /* one at a time; the next batch tries again */
  lua_pushboolean(L, 1);
  lua_setfield(L, 1, "checkpointing");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, do_checkpoint, 1);
  lua_pushvalue(L, 1);
  return finish_k(L, lua_pcallk(L, 1, 0, 0, 0, finish_k), 0);
}

void couch_checkpoint_open(lua_State *L) {
  lua_pushvalue(L, -1); /* the couch table: escape, now and _raise are looked up there */
  lua_pushcclosure(L, l_find_start, 1);
  lua_setfield(L, -2, "_find_start");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, l_checkpoint, 1);
  lua_setfield(L, -2, "_checkpoint");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, l_verify_sides, 1);
  lua_setfield(L, -2, "_verify_sides");
}
