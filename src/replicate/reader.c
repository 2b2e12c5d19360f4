/* job:_read(queue): the native replication's reader. It reads the source's _changes
 * (style=all_docs) a page of batch_size at a time from the job's start seq and pushes one
 * batch (batch.h) per page into the bounded queue, which is what paces it against the
 * workers. A continuous job checkpoints when caught up, then waits for more with a
 * longpoll. The queue is closed at the end and on error, so the workers finish what was
 * read and stop.
 * The query and body (filter=_doc_ids / _selector / a server-side filter and its
 * query_params) come from changes.lua (internal.changes_request, through the job's
 * `changes_request` runner): one home for how _changes is asked.
 * Steps, each its own continuation, their state in a `reader` struct (a userdata at stack
 * slot 3; its user values: the seq to read from, the query, the body; the continuation
 * context is its address): build the query -> read a page -> got it (checks; `active`
 * after `paused`) -> batch pushed -> read again; nothing more to read -> checkpointed ->
 * `paused` if every batch read is finished (else the worker that finishes the last one
 * says it: events.c) -> longpoll -> got it. */
#include "replicate/reader.h"

#include "json/json.h"
#include "replicate/batch.h"
#include "replicate/call.h"
#include "replicate/events.h"
#include "replicate/job.h"

#include <lauxlib.h>
#include <math.h>

enum { S_JOB = 1, S_QUEUE, S_READER, S_TOP = S_READER };

typedef struct {
  couch_repl *r;
  lua_Integer index; /* the next batch's */
  int longpoll;      /* the page in flight is a longpoll */
} reader;

static void push_since(lua_State *L) { lua_getiuservalue(L, S_READER, 1); }

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

/* Raise the structured error of a _changes answer the protocol does not allow. */
static int bad_changes(lua_State *L, couch_repl *r, const char *kind, const char *code, const char *what,
                       const char *seq) {
  return couch_repl_answer_raise(L, r, REPL_SOURCE, r->changes_post ? "POST" : "GET", "/_changes", 200, kind, code,
                                 what, seq);
}

static int got_k(lua_State *L, int status, lua_KContext ctx);

/* One _changes page from the reader's seq (a longpoll when caught up), straight to the
 * request layer (call.c): the query and body changes.lua built (user values 2 and 3),
 * plus since, limit, feed. */
static int read_page(lua_State *L, reader *rd, int longpoll) {
  couch_repl *r = rd->r;
  rd->longpoll = longpoll;
  lua_settop(L, S_TOP);
  lua_createtable(L, 0, 8); /* the query: a copy, as a request may keep its own */
  int q = lua_gettop(L);
  lua_getiuservalue(L, S_READER, 2);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_settable(L, q);
  }
  lua_pop(L, 1);
  push_since(L);
  if (lua_istable(L, -1)) { /* a structured seq travels as its JSON text */
    couch_json_encode(L, lua_gettop(L), NULL);
    lua_remove(L, -2);
  }
  lua_setfield(L, q, "since");
  lua_pushinteger(L, r->batch_size);
  lua_setfield(L, q, "limit");
  if (longpoll) { /* the server holds the request up to poll seconds */
    lua_pushliteral(L, "longpoll");
    lua_setfield(L, q, "feed");
    lua_pushinteger(L, (lua_Integer)floor(r->poll * 1000));
    lua_setfield(L, q, "timeout");
  }
  int body = 0;
  if (r->changes_post) {
    lua_getiuservalue(L, S_READER, 3);
    body = lua_gettop(L);
  }
  couch_repl_req req = {.side = REPL_SOURCE, .method = r->changes_post ? "POST" : "GET", .path = "/_changes",
                        .query_table = q, .body = body, .keep = S_TOP, .nresults = 1, .idempotent = 1};
  if (longpoll) { /* a longpoll idles: past the in-flight limit, with its own deadline */
    req.timeout = r->poll + 5;
    req.unlimited = 1;
  }
  return couch_repl_call(L, r, &req, (lua_KContext)rd, got_k);
}

static int next_page(lua_State *L, reader *rd) {
  lua_settop(L, S_TOP);
  if (rd->r->stopping) return 0;
  return read_page(L, rd, 0);
}

static int pushed_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return next_page(L, (reader *)ctx);
}

static int paused_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lua_settop(L, S_TOP);
  return read_page(L, (reader *)ctx, 1);
}

static int checkpointed_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lua_settop(L, S_TOP);
  return couch_repl_maybe_caught_up(L, ((reader *)ctx)->r, ctx, paused_k);
}

/* The page's rows (S_TOP + 1) up to its last seq (S_TOP + 2): one more batch for the queue
 * (queue:push waits while it is full). */
static int push_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  reader *rd = (reader *)ctx;
  lua_settop(L, S_TOP + 2);
  lua_getfield(L, S_QUEUE, "push");
  lua_pushvalue(L, S_QUEUE);
  couch_repl_batch_push(L, rd->r, rd->index++, S_TOP + 1, S_TOP + 2);
  rd->r->pushed++;
  lua_callk(L, 2, 0, ctx, pushed_k);
  return pushed_k(L, LUA_OK, ctx);
}

static int got_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  reader *rd = (reader *)ctx;
  couch_repl *r = rd->r;
  int res = lua_gettop(L);
  if (!lua_istable(L, res) || lua_getfield(L, res, "results") != LUA_TTABLE)
    return bad_changes(L, r, "http", "bad_response", "the source's _changes answer has no list of results%s", "");
  int results = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, results);
  if (n == 0 && !rd->longpoll) {
    if (!r->continuous) return 0;
    /* caught up: record it, then wait for more */
    r->reader_idle = 1;
    lua_settop(L, S_TOP);
    luaL_getmetafield(L, S_JOB, "methods");
    lua_getfield(L, -1, "_checkpoint");
    lua_remove(L, -2);
    lua_pushvalue(L, S_JOB);
    lua_callk(L, 1, 0, ctx, checkpointed_k);
    return checkpointed_k(L, LUA_OK, ctx);
  }
  if (n == 0) { /* a longpoll that ended empty: from its last seq */
    lua_getfield(L, res, "last_seq");
    if (!lua_isnil(L, -1)) lua_setiuservalue(L, S_READER, 1);
    return next_page(L, rd);
  }
  lua_rawgeti(L, results, n);
  if (!lua_istable(L, -1) || lua_getfield(L, -1, "seq") == LUA_TNIL)
    return bad_changes(L, r, "http", "bad_response", "the source's _changes answer has a row without a seq%s", "");
  int last = lua_gettop(L);
  push_since(L);
  if (same_seq(L, last, -1)) /* rows, yet no progress: a server that ignores `since` */
    return bad_changes(L, r, "replication", "no_progress",
                       "the source's _changes answer made no progress: asked for changes since %s, it "
                       "answered rows up to that same seq again (a server or proxy ignoring 'since'?)",
                       lua_tostring(L, -1));
  lua_settop(L, last);
  lua_getfield(L, res, "pending");
  if (!lua_isnil(L, -1)) couch_repl_set(L, &r->ref.changes_pending, -1);
  lua_pop(L, 1);
  lua_pushvalue(L, last);
  lua_setiuservalue(L, S_READER, 1);
  lua_pushvalue(L, results);
  lua_pushvalue(L, last);
  lua_replace(L, S_TOP + 2);
  lua_replace(L, S_TOP + 1);
  lua_settop(L, S_TOP + 2);
  return couch_repl_resumed(L, r, ctx, push_k);
}

static int built_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  reader *rd = (reader *)ctx;
  rd->r->changes_post = !lua_isnil(L, -1);
  lua_setiuservalue(L, S_READER, 3); /* the body (doc_ids, selector) or nil */
  if (!lua_istable(L, -1)) return luaL_error(L, "the _changes query is not a table");
  lua_setiuservalue(L, S_READER, 2);
  return next_page(L, rd);
}

/* The loop itself, run under lua_pcallk so the queue is closed whatever happens: the
 * query first (changes.lua's, through the runner), then page after page. */
static int read_loop(lua_State *L) {
  couch_repl *r = couch_repl_check(L, 1);
  lua_settop(L, 2);
  luaL_checkstack(L, 32, "reading changes");
  reader *rd = lua_newuserdatauv(L, sizeof *rd, 3); /* S_READER */
  *rd = (reader){.r = r, .index = 1};
  couch_repl_push(L, r->ref.start_seq);
  lua_setiuservalue(L, S_READER, 1);
  couch_repl_push_runner(L, r, RUN_CHANGES_REQUEST);
  lua_callk(L, 0, 2, (lua_KContext)rd, built_k);
  return built_k(L, LUA_OK, (lua_KContext)rd);
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

/* job:_read(queue): read the source's changes into the queue. */
static int l_read(lua_State *L) {
  couch_repl_check(L, 1);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  lua_pushcfunction(L, read_loop);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  return finish_k(L, lua_pcallk(L, 2, 0, 0, 0, finish_k), 0);
}

void couch_reader_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"_read", l_read}, {NULL, NULL}};
  couch_repl_add_methods(L, methods);
}
