/* One HTTP request as one object: an easy handle on the loop's multi handle, the
 * response collected in memory, retried with exponential backoff and jitter when that is
 * safe, and a couch_wait that completes when the final answer (or failure) is in.
 *
 * Auth is the request's own business: couch_request_start chains a login (cookie session
 * or IAM token, one shared per connection) before the request when the connection has no
 * valid credentials, and a 401 to an expired session or token renews them and retries
 * once. A caller (Lua binding or the native engine) only does
 *     r = couch_request_new(...); couch_request_start(r); return couch_await(L, &r->w, ...)
 * and turns the answer into Lua values with response.h. */
#ifndef COUCH_REQUEST_H
#define COUCH_REQUEST_H

#include "http/conn.h"
#include "loop/loop.h"

#include <lua.h>

struct couch_request {
  couch_wait w;            /* first: the request is what its caller awaits */
  couch_transfer tr;
  couch_loop *loop;
  couch_conn *conn;        /* anchored: the server userdata is user value 1 */
  char method[12];
  char *url;               /* redacted by construction: conn->base_url has no userinfo */
  struct curl_slist *headers;
  const char *body;        /* anchored: the body string is user value 2 (or owned_body) */
  size_t body_len;
  char *owned_body;        /* a body the request frees, wiped first (a login's credentials) */
  int idempotent;          /* safe to repeat after a failure mid-way */
  int unlimited;           /* bypasses the in-flight limit (idle long-polls) */
  int keep_401;            /* the caller takes a 401 itself: no new login and retry */
  int retries;             /* allowed extra attempts */
  int attempt;             /* attempts made so far */
  long timeout_ms;
  couch_timer retry_timer;
  int queued, in_multi, holds_slot;
  couch_request *queue_next;
  /* auth (auth.c) */
  int is_login;            /* sends no credentials: it is how they are obtained */
  int renewed;             /* its one new login and retry after a 401 is used */
  unsigned auth_gen;       /* the login its credentials came from */
  int auth_waiting;        /* in conn's list of requests waiting for the login */
  couch_request *auth_next;
  couch_request *login;    /* the failed login this request reports (it holds a ref) */
  int refs;                /* a failed login: requests still reporting it */
  const char *auth_why;    /* a login: why a 2xx answer is still a failure, or NULL */
  void (*then)(couch_request *r); /* a C continuation instead of waking a waiter (a login) */
  /* the answer */
  CURLcode result;
  long status;
  char *resp;
  size_t resp_len, resp_cap;
  char *resp_headers;      /* the final response's headers, parsed once as they arrive:
                              "name\0value\0" pairs, names lowercased (Set-Cookie is kept
                              in the connection, not here) */
  size_t hdr_len, hdr_cap;
  double retry_after_s;     /* the wait this answer asked for, capped */
  double retry_after_asked_s; /* what the server asked when the cap cut it, else 0 */
  int throttles;           /* 429 answers so far (they do not use up `retries`) */
  int64_t throttled_since_ms; /* when the first of them came */
  const char *limit_hit;   /* the option whose limit aborted the transfer, or NULL */
  char errbuf[CURL_ERROR_SIZE];
};

/* Create a request object on L's stack (anchoring the server at conn_idx and the body
 * string at body_idx, 0 for none). method and url are copied. */
couch_request *couch_request_new(lua_State *L, int conn_idx, couch_conn *conn, const char *method,
                                 const char *url, int body_idx);

void couch_request_add_header(couch_request *r, const char *header);

/* Send it: after a login if one is needed, then on the loop (or behind the connection's
 * in-flight limit). Its wait completes with the final answer. */
void couch_request_start(couch_request *r);

/* The value of header `name` (lowercase) of the final response, copied into buf, or
 * NULL. Pushes nothing. */
const char *couch_request_header(const couch_request *r, const char *name, char *buf, size_t size);

/* Walk the final response's headers: start with *pos = 0; 0 at the end. */
int couch_request_next_header(const couch_request *r, size_t *pos, const char **name, const char **value);

/* ---- for the request layer's own files (auth.c, headers.c) ---- */

/* libcurl's header callback (headers.c). */
size_t couch_request_on_header(char *data, size_t size, size_t n, void *ud);
/* Make *buf hold at least need bytes: 0, or -1 when out of memory. */
int couch_request_grow(char **buf, size_t *cap, size_t need);

/* A request owned by C alone (no userdata, no waiter): r zeroed by the caller. 0 on
 * success, -1 when out of memory. Freed with couch_request_clear + free. */
int couch_request_init(couch_request *r, couch_loop *loop, couch_conn *conn, const char *method,
                       const char *url);
void couch_request_clear(couch_request *r);
/* Past auth: take a slot on the connection (or queue for one) and launch. */
void couch_request_admit(couch_request *r);
/* The answer is final: run `then` or wake the waiter. */
void couch_request_finish(couch_request *r);
/* Stop whatever is pending (transfer, timer, queue place, slot). */
void couch_request_stop(couch_request *r);

#endif
