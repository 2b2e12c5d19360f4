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
  int query_table;          /* or the stack index of a table of parameters, as db:request's
                               query (couch_url_append_query: sorted, JSON where CouchDB wants it) */
  int body;                 /* stack index of the body (a string as is, else JSON), or 0 */
  double timeout;           /* seconds for the whole request; 0: the connection's */
  int keep;                 /* the continuation gets the stack cut to this top, then the results */
  int nresults;             /* 1: body; 2: body, status (as db:request returns them) */
  unsigned raw : 1;         /* the body as a string, not decoded */
  unsigned idempotent : 1;  /* safe to send again after a failure mid-way */
  unsigned unlimited : 1;   /* past the connection's in-flight limit (a longpoll that idles) */
  const int *allow;         /* the statuses >= 300 that are answers, 0-terminated, or NULL */
} couch_repl_req;

/* Send q to the job's q->side and continue in k(L, LUA_OK, ctx) with its results (a
 * status not allowed raises the request layer's error). Use as `return couch_repl_call(...)`. */
int couch_repl_call(lua_State *L, couch_repl *r, const couch_repl_req *q, lua_KContext ctx, lua_KFunction k);

/* Push "attachments=<a>&latest=true[&open_revs=<the JSON text open_revs>]&revs=true", the
 * query of every document read (keys in couch_url_append_query's order, so the URLs are
 * the ones db:request made); open_revs: NULL for none. */
const char *couch_repl_push_read_query(lua_State *L, int attachments, const char *open_revs, size_t len);

#endif
