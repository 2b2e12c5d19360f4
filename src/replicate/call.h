/* The native engine's one way to the network (call.c): a protocol step names its request
 * in a couch_repl_req and gets its answer in its continuation. The data path reads
 * straight down the layers: the step -> couch_prepare_request (src/http/prepare.c) ->
 * couch_request_start -> couch_await (the loop; yields inside a task) -> the answer as Lua
 * values (couch_response_results, src/http/response.c) -> the step's continuation. Auth,
 * retries, the connection's limits and the error objects (redacted URLs) are the request
 * layer's, exactly as for db:request(). */
#ifndef COUCH_REPL_CALL_H
#define COUCH_REPL_CALL_H

#include "replicate/job.h"

typedef struct {
  int side;                 /* REPL_SOURCE / REPL_TARGET */
  const char *method;
  const char *path;         /* below the database, e.g. "/_bulk_get" (already escaped) */
  const char *query;        /* "k=v&..." already escaped, or NULL */
  int body;                 /* stack index of the body (a string as is, else JSON), or 0 */
  int keep;                 /* the continuation gets the stack cut to this top, then the results */
  int nresults;             /* 1: body; 2: body, status (as db:request returns them) */
  unsigned raw : 1;         /* the body as a string, not decoded */
  unsigned idempotent : 1;  /* safe to send again after a failure mid-way */
  const int *allow;         /* the statuses >= 300 that are answers, 0-terminated, or NULL */
} couch_repl_req;

/* Send q to the job's q->side and continue in k(L, LUA_OK, ctx) with its results (a
 * status not allowed raises the request layer's error). Use as `return couch_repl_call(...)`. */
int couch_repl_call(lua_State *L, couch_repl *r, const couch_repl_req *q, lua_KContext ctx, lua_KFunction k);

/* Push "attachments=<a>&latest=true[&open_revs=<JSON of the list at revs>]&revs=true",
 * the query of every document read (keys in couch_url_append_query's order, so the URLs
 * are the ones db:request made); revs: a stack index, or 0. */
const char *couch_repl_push_read_query(lua_State *L, int attachments, int revs);

#endif
