/* couch._read_changes_loop(job, queue): the native replication's reader. It reads the
 * source's _changes (style=all_docs) a page of job.batch_size at a time from
 * job.start_seq and pushes {index =, changes =, last_seq =} into the bounded queue, which
 * is what paces it against the workers. Continuous jobs checkpoint when caught up, then
 * wait for more with a longpoll. The queue is closed at the end and on error, so the
 * workers finish what was read and stop.
 * Every HTTP call goes through the database's Lua `request` method and queue:push is
 * called with lua_callk (both may yield); the state lives in fixed stack slots. */
#include "replicate/reader.h"

#include "json/json.h"
#include "replicate/answer.h"

#include <lauxlib.h>
#include <math.h>

enum { S_JOB = 1, S_QUEUE, S_COUCH, S_SINCE, S_INDEX, S_TOP = S_INDEX };
enum { ST_READ = 1, ST_GOT, ST_CKPT_DONE, ST_PUSHED };

#define CTX(st, i) ((lua_KContext)(((lua_KContext)(i) << 4) | (st)))

static int job_flag(lua_State *L, const char *name) {
  lua_getfield(L, S_JOB, name);
  int b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

/* Whether the seqs at a and b are the same: opaque values, compared as sent (a structured
 * seq by its JSON text). Leaves a printable form of a on top. */
static int same_seq(lua_State *L, int a, int b) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  if (lua_istable(L, a)) couch_json_encode(L, a, NULL);
  else luaL_tolstring(L, a, NULL);
  if (lua_isnil(L, b)) return 0;
  if (lua_istable(L, b)) couch_json_encode(L, b, NULL);
  else luaL_tolstring(L, b, NULL);
  int same = lua_type(L, a) == lua_type(L, b) || lua_istable(L, a) || lua_istable(L, b) ? lua_rawequal(L, -1, -2) : 0;
  lua_pop(L, 1);
  return same;
}

/* Call job.source:request for one _changes page from S_SINCE (feed: NULL or "longpoll")
 * with lua_callk; its answer arrives at ST_GOT. */
static void read_page(lua_State *L, const char *feed, lua_KFunction k) {
  lua_getfield(L, S_JOB, "source");
  lua_getfield(L, -1, "request");
  lua_insert(L, -2);
  int self = lua_gettop(L);
  lua_pushnil(L); /* the method, once we know whether there is a body */
  lua_pushliteral(L, "/_changes");
  lua_createtable(L, 0, 5); /* the request's options */
  int o = lua_gettop(L);
  lua_createtable(L, 0, 8); /* the query */
  int q = lua_gettop(L);
  lua_pushliteral(L, "all_docs");
  lua_setfield(L, q, "style");
  lua_pushvalue(L, S_SINCE);
  if (lua_istable(L, -1)) { /* a structured seq travels as its JSON text */
    couch_json_encode(L, lua_gettop(L), NULL);
    lua_remove(L, -2);
  }
  lua_setfield(L, q, "since");
  lua_getfield(L, S_JOB, "batch_size");
  lua_setfield(L, q, "limit");
  if (feed) {
    lua_pushstring(L, feed);
    lua_setfield(L, q, "feed");
  }
  int has_body = 1;
  lua_getfield(L, S_JOB, "doc_ids");
  lua_getfield(L, S_JOB, "selector");
  lua_getfield(L, S_JOB, "filter");
  if (lua_toboolean(L, -3)) {
    lua_pushliteral(L, "_doc_ids");
    lua_setfield(L, q, "filter");
    lua_createtable(L, 0, 1);
    couch_json_newarray(L);
    for (lua_Integer i = 1; lua_geti(L, -5, i) != LUA_TNIL; i++) lua_rawseti(L, -2, i);
    lua_pop(L, 1);
    lua_setfield(L, -2, "doc_ids");
  } else if (lua_toboolean(L, -2)) {
    lua_pushliteral(L, "_selector");
    lua_setfield(L, q, "filter");
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "selector");
  } else {
    has_body = 0;
    if (lua_type(L, -1) == LUA_TSTRING) { /* a server-side filter and its parameters */
      lua_pushvalue(L, -1);
      lua_setfield(L, q, "filter");
      lua_getfield(L, S_JOB, "query_params");
      if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
          lua_pushvalue(L, -2);
          lua_insert(L, -2);
          lua_settable(L, q);
        }
      }
      lua_pop(L, 1);
    }
  }
  if (has_body) lua_setfield(L, o, "body");
  lua_settop(L, q);
  if (feed) { /* the server holds the request up to job.poll seconds */
    lua_getfield(L, S_JOB, "poll");
    lua_Number poll = lua_tonumber(L, -1);
    lua_pop(L, 1);
    lua_pushinteger(L, (lua_Integer)floor(poll * 1000));
    lua_setfield(L, q, "timeout");
    lua_pushnumber(L, poll + 5);
    lua_setfield(L, o, "timeout");
    lua_pushboolean(L, 1);
    lua_setfield(L, o, "unlimited");
  }
  lua_setfield(L, o, "query");
  lua_pushboolean(L, 1);
  lua_setfield(L, o, "idempotent");
  lua_pushstring(L, has_body ? "POST" : "GET");
  lua_replace(L, self + 1);
  lua_callk(L, 4, 1, CTX(ST_GOT, feed ? 1 : 0), k);
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int st = (int)(ctx & 15);
  int longpoll = (int)(ctx >> 4);
  luaL_checkstack(L, 24, "reading changes");
  for (;;) {
    switch (st) {
    case ST_READ:
      lua_settop(L, S_TOP);
      if (job_flag(L, "stopping")) return 0;
      longpoll = 0;
      read_page(L, NULL, read_k);
      st = ST_GOT;
      continue;

    case ST_GOT: {
      int res = lua_gettop(L);
      if (!lua_istable(L, res) || lua_getfield(L, res, "results") != LUA_TTABLE) {
        int post = job_flag(L, "doc_ids") || job_flag(L, "selector");
        return couch_answer_raise(L, S_JOB, "source", post ? "POST" : "GET", "/_changes", 200, "http",
                                  "bad_response", "the source's _changes answer has no list of results");
      }
      int results = lua_gettop(L);
      lua_Integer n = (lua_Integer)lua_rawlen(L, results);
      if (n == 0 && !longpoll) {
        if (!job_flag(L, "continuous")) return 0;
        /* caught up: record it, then wait for more */
        lua_settop(L, S_TOP);
        lua_getfield(L, S_COUCH, "_checkpoint");
        lua_pushvalue(L, S_JOB);
        lua_callk(L, 1, 0, CTX(ST_CKPT_DONE, 0), read_k);
        st = ST_CKPT_DONE;
        continue;
      }
      if (n > 0) {
        lua_rawgeti(L, results, n);
        if (!lua_istable(L, -1) || lua_getfield(L, -1, "seq") == LUA_TNIL) {
          int post = job_flag(L, "doc_ids") || job_flag(L, "selector");
          return couch_answer_raise(L, S_JOB, "source", post ? "POST" : "GET", "/_changes", 200, "http",
                                    "bad_response", "the source's _changes answer has a row without a seq");
        }
        int last = lua_gettop(L);
        if (same_seq(L, last, S_SINCE)) {
          /* rows, yet no progress: a server that ignores `since` would be read forever */
          int post = job_flag(L, "doc_ids") || job_flag(L, "selector");
          return couch_answer_raise(L, S_JOB, "source", post ? "POST" : "GET", "/_changes", 200, "replication",
                                    "no_progress", "the source's _changes answer made no progress: asked for "
                                    "changes since %s, it answered rows up to that same seq again (a server or "
                                    "proxy ignoring 'since'?)", lua_tostring(L, -1));
        }
        lua_pop(L, 1);
        lua_getfield(L, res, "pending");
        if (!lua_isnil(L, -1)) {
          lua_getfield(L, S_JOB, "info");
          lua_insert(L, -2);
          lua_setfield(L, -2, "changes_pending");
        }
        lua_pop(L, 1);
        lua_pushvalue(L, last);
        lua_replace(L, S_SINCE);
        /* queue:push{index =, changes =, last_seq =}: waits while the queue is full */
        lua_getfield(L, S_QUEUE, "push");
        lua_pushvalue(L, S_QUEUE);
        lua_createtable(L, 0, 3);
        lua_pushvalue(L, S_INDEX);
        lua_setfield(L, -2, "index");
        lua_pushvalue(L, results);
        lua_setfield(L, -2, "changes");
        lua_pushvalue(L, last);
        lua_setfield(L, -2, "last_seq");
        lua_pushinteger(L, lua_tointeger(L, S_INDEX) + 1);
        lua_replace(L, S_INDEX);
        lua_callk(L, 2, 0, CTX(ST_PUSHED, 0), read_k);
        st = ST_PUSHED;
        continue;
      }
      lua_getfield(L, res, "last_seq");
      if (!lua_isnil(L, -1)) lua_replace(L, S_SINCE);
      st = ST_READ;
      continue;
    }

    case ST_CKPT_DONE:
      longpoll = 1;
      read_page(L, "longpoll", read_k);
      st = ST_GOT;
      continue;

    case ST_PUSHED:
      st = ST_READ;
      continue;

    default:
      return luaL_error(L, "read_changes_loop: bad step %d", st);
    }
  }
}

/* The loop itself, run under lua_pcallk so the queue is closed whatever happens. */
static int read_loop(lua_State *L) {
  lua_settop(L, 2);
  luaL_checkstack(L, 32, "reading changes");
  lua_pushvalue(L, lua_upvalueindex(1)); /* S_COUCH */
  lua_getfield(L, S_JOB, "start_seq");   /* S_SINCE */
  lua_pushinteger(L, 1);                 /* S_INDEX */
  return read_k(L, LUA_OK, CTX(ST_READ, 0));
}

static int closed_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  if (ctx) return lua_error(L); /* the reader's error, kept below queue:close() */
  return 0;
}

static int finish_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  int failed = status != LUA_OK && status != LUA_YIELD;
  /* always: the workers finish what was read, then stop */
  lua_getfield(L, 2, "close");
  lua_pushvalue(L, 2);
  lua_callk(L, 1, 0, failed, closed_k);
  return closed_k(L, LUA_OK, failed);
}

/* couch._read_changes_loop(job, queue): read job.source's changes into the queue. */
static int l_read_changes_loop(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, read_loop, 1);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  return finish_k(L, lua_pcallk(L, 2, 0, 0, 0, finish_k), 0);
}

void couch_reader_open(lua_State *L) {
  lua_pushvalue(L, -1); /* the couch table: _checkpoint is looked up there */
  lua_pushcclosure(L, l_read_changes_loop, 1);
  lua_setfield(L, -2, "_read_changes_loop");
}
