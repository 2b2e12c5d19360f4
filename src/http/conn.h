/* A connection profile: everything one server's requests share — base URL (never with
 * credentials in it), credentials and the login state built on them, TLS, proxy, timeouts,
 * retry policy and the limit on requests in flight. Built from couch.connect's URL and
 * options (conn.c), embedded in the server userdata (src/couch/server.c). */
#ifndef COUCH_CONN_H
#define COUCH_CONN_H

#include <curl/curl.h>
#include <lua.h>
#include <stdint.h>

typedef struct couch_request couch_request;

/* COUCH_AUTH_JWT: ArangoDB's login (POST /_open/auth -> {"jwt"}), then a bearer token. */
typedef enum { COUCH_AUTH_NONE, COUCH_AUTH_BASIC, COUCH_AUTH_COOKIE, COUCH_AUTH_IAM, COUCH_AUTH_JWT } couch_auth_mode;

typedef struct couch_conn {
  char *base_url;        /* scheme://host[:port][/prefix], no userinfo, no trailing slash */
  couch_auth_mode auth;
  char *username;        /* basic auth / session login; never printed */
  char *password;
  char *cookie;          /* "AuthSession=..." once a session login succeeded */
  char *bearer;          /* IAM access token */
  char *api_key;         /* IAM API key */
  char *token_url;       /* where the API key is exchanged for a bearer token */
  int64_t token_expires_ms; /* monotonic (couch_now_ms) */
  unsigned auth_gen;     /* counts logins: a 401 to credentials older than the last one
                            needs no new login, only a retry */
  couch_request *login;  /* the login under way, shared by every request that needs it */
  couch_request *auth_head, *auth_tail; /* the requests waiting for it (auth.c) */
  struct curl_slist *headers; /* custom headers from the options */
  char *proxy;
  char *ca_file;
  int insecure;          /* TLS verification off: asked for explicitly */
  int compress;          /* offer gzip (off for loopback: compression there is pure cost) */
  long connect_timeout_ms, timeout_ms;
  int retries;           /* extra attempts after the first */
  long backoff_ms, max_backoff_ms;
  int max_in_flight;
  /* Limits on what one answer may cost (issue 11: an endless body, a gzip bomb). */
  size_t max_response_bytes;   /* body bytes kept, after decompression */
  double max_ratio;            /* inflated / wire bytes past the first MiB; 0: off */
  long max_retry_after_ms;     /* the longest Retry-After obeyed */
  long max_rate_limit_wait_ms; /* how long one request waits out 429s */
  int in_flight;
  long long requests;    /* attempts sent, retries included (srv:stats()) */
  /* Pacing: at most one request start per `gap`, where gap is the larger of the user's
   * max_rps limit and an adaptive interval that grows while the server answers 429 and
   * shrinks again once it stops (as CouchDB's own replicator does). */
  double min_interval_ms;   /* 1000 / max_rps, 0 for no limit */
  double rate_interval_ms;  /* adaptive, 0 while no 429 has been seen */
  int64_t next_start_ms;    /* the earliest start of the next request */
  long long throttled;      /* 429 answers seen */
  couch_request *queue_head, *queue_tail; /* requests waiting for a free slot */
} couch_conn;

/* The option names couch.connect takes (for its unknown-option check). */
extern const char *const couch_conn_options[];

/* Fill the zeroed c from couch.connect(url, opts) (opts at stack index `opts`, nil or a
 * table). Raises `usage` errors; c must already be owned by something whose __gc calls
 * couch_conn_free, so a raise leaks nothing. */
void couch_conn_init(lua_State *L, couch_conn *c, const char *url, int opts);

/* Wipe the credentials, stop a login under way, free everything. */
void couch_conn_free(couch_conn *c);

/* "basic", "cookie", "iam" or "none". */
const char *couch_conn_auth_name(const couch_conn *c);

#endif
