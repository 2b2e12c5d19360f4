/* One HTTP request as one object: an easy handle on the loop's multi handle, the
 * response collected in memory, retried with exponential backoff and jitter when that is
 * safe, and a couch_wait that completes when the final answer (or failure) is in. */
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
  const char *body;        /* anchored: the body string is user value 2 */
  size_t body_len;
  int idempotent;          /* safe to repeat after a failure mid-way */
  int unlimited;           /* bypasses the in-flight limit (idle long-polls) */
  int retries;             /* allowed extra attempts */
  int attempt;             /* attempts made so far */
  long timeout_ms;
  couch_timer retry_timer;
  int queued, in_multi, holds_slot;
  couch_request *queue_next;
  /* the answer */
  CURLcode result;
  long status;
  char *resp;
  size_t resp_len, resp_cap;
  char *resp_headers;      /* "name: value\n" lines of the final response */
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

/* Queue it on the loop (or behind the connection's in-flight limit). */
void couch_request_start(couch_request *r);

/* Lowercased header value of the final response, or NULL (pushes nothing). Copies into
 * buf. */
const char *couch_request_header(const couch_request *r, const char *name, char *buf, size_t size);

#endif
