/* The life of one request: configure an easy handle, wait for a login when the
 * connection needs one (auth.c), wait for a free slot on its connection, run on the multi
 * handle, and on completion either schedule a retry (exponential backoff with jitter,
 * Retry-After honoured), log in again after a 401 (auth.c), or complete. */
#include "http/request.h"

#include "http/auth.h"
#include "http/retry_after.h"
#include "http/url.h"
#include "log.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int couch_request_grow(char **buf, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t cap2 = *cap ? *cap : 4096;
  while (cap2 < need) cap2 *= 2;
  char *p = realloc(*buf, cap2);
  if (!p) return -1;
  *buf = p;
  *cap = cap2;
  return 0;
}

/* Past this many inflated bytes an answer may be judged by its compression ratio: a small
 * answer of repeated text may compress very well and be no threat. */
#define RATIO_FLOOR ((size_t)1 << 20)

/* Whether the answer so far breaks one of the connection's limits (names the option). */
static const char *over_limit(couch_request *r, size_t total) {
  couch_conn *c = r->conn;
  if (c->max_response_bytes && total > c->max_response_bytes) return "max_response_bytes";
  if (c->max_ratio > 0 && total > RATIO_FLOOR) {
    curl_off_t wire = 0; /* body bytes as received, before decoding */
    curl_easy_getinfo(r->tr.easy, CURLINFO_SIZE_DOWNLOAD_T, &wire);
    if (wire > 0 && (double)total > c->max_ratio * (double)wire) return "max_compression_ratio";
  }
  return NULL;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  couch_request *r = ud;
  size_t len = size * n;
  if ((r->limit_hit = over_limit(r, r->resp_len + len))) return 0; /* aborts the transfer */
  if (couch_request_grow(&r->resp, &r->resp_cap, r->resp_len + len + 1)) return 0; /* aborts: out of memory */
  memcpy(r->resp + r->resp_len, data, len);
  r->resp_len += len;
  r->resp[r->resp_len] = '\0';
  return len;
}

static void reset_response(couch_request *r) {
  r->resp_len = r->hdr_len = 0;
  if (r->resp) r->resp[0] = '\0';
  r->status = 0;
  r->errbuf[0] = '\0';
  r->limit_hit = NULL;
}

static void add_to_multi(couch_request *r) {
  reset_response(r);
  couch_auth_apply(r); /* a login may have changed them since the last attempt */
  r->attempt++;
  r->conn->requests++;
  if (couch_loop_add_transfer(r->loop, &r->tr) == 0) {
    r->in_multi = 1;
  } else {
    r->result = CURLE_FAILED_INIT;
    couch_request_finish(r);
  }
}

static void on_pace_timer(couch_timer *t) { add_to_multi(t->owner); }

/* Start now, or at the next start time the connection's pacing allows. */
static void launch(couch_request *r) {
  couch_conn *c = r->conn;
  double gap = c->min_interval_ms > c->rate_interval_ms ? c->min_interval_ms : c->rate_interval_ms;
  if (gap <= 0) {
    add_to_multi(r);
    return;
  }
  int64_t now = couch_now_ms();
  int64_t at = c->next_start_ms > now ? c->next_start_ms : now;
  c->next_start_ms = at + (int64_t)gap;
  if (at <= now) {
    add_to_multi(r);
    return;
  }
  couch_timer_init(&r->retry_timer, on_pace_timer, r);
  couch_timer_start(&r->loop->timers, &r->retry_timer, at - now);
}

/* AIMD on 429: the interval grows by 20 % (from 20 ms, capped at 25 s) with each one and
 * shrinks by 10 % with each other answer. */
static void adapt_rate(couch_conn *c, long status) {
  if (status == 429) {
    c->throttled++;
    c->rate_interval_ms = c->rate_interval_ms < 20 ? 20 : c->rate_interval_ms * 1.2;
    if (c->rate_interval_ms > 25000) c->rate_interval_ms = 25000;
  } else if (c->rate_interval_ms > 0) {
    c->rate_interval_ms *= 0.9;
    if (c->rate_interval_ms < 5) c->rate_interval_ms = 0;
  }
}

static void release_slot(couch_request *r) {
  if (!r->holds_slot) return;
  r->holds_slot = 0;
  couch_conn *c = r->conn;
  c->in_flight--;
  couch_request *next = c->queue_head;
  if (next) { /* hand the slot to the longest waiter */
    c->queue_head = next->queue_next;
    if (!c->queue_head) c->queue_tail = NULL;
    next->queued = 0;
    next->holds_slot = 1;
    c->in_flight++;
    launch(next);
  }
}

static void unqueue(couch_request *r) {
  couch_conn *c = r->conn;
  couch_request **pp = &c->queue_head, *prev = NULL;
  while (*pp && *pp != r) {
    prev = *pp;
    pp = &(*pp)->queue_next;
  }
  if (!*pp) return;
  *pp = r->queue_next;
  if (c->queue_tail == r) c->queue_tail = prev;
  r->queued = 0;
}

static int transient_network_failure(CURLcode rc, int idempotent) {
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return 1; /* nothing reached the server: any method may go again */
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
      return idempotent;
    default:
      return 0;
  }
}

static long jittered_backoff(couch_conn *c, int n) {
  double d = (double)c->backoff_ms;
  for (int i = 1; i < n && d < (double)c->max_backoff_ms; i++) d *= 2;
  if (d > (double)c->max_backoff_ms) d = (double)c->max_backoff_ms;
  return (long)(d * (0.5 + 0.5 * ((double)rand() / RAND_MAX))); /* herds of clients spread out */
}

/* The wait before the next attempt, in ms, or -1 for "no more attempts". A 429 was
 * rejected before any work was done and says "slow down", not "broken": it does not use
 * up `retries` (the connection's pacing slows down meanwhile) but is waited out for at
 * most max_rate_limit_wait. retries = 0 still means no second attempt at all. */
static long next_wait_ms(couch_request *r) {
  if (r->retries <= 0) return -1;
  long ra = (long)(r->retry_after_s * 1000); /* capped at max_retry_after: fits */
  if (r->result == CURLE_OK && r->status == 429) {
    long d = jittered_backoff(r->conn, r->throttles);
    if (ra > d) d = ra;
    if (couch_now_ms() - r->throttled_since_ms + d > r->conn->max_rate_limit_wait_ms) {
      r->limit_hit = "max_rate_limit_wait";
      return -1;
    }
    return d;
  }
  if (r->attempt - r->throttles > r->retries) return -1;
  int again = r->result != CURLE_OK ? transient_network_failure(r->result, r->idempotent)
              : r->status == 500 || r->status == 502 || r->status == 503 || r->status == 504 ? r->idempotent
              : 0;
  if (!again) return -1;
  long d = jittered_backoff(r->conn, r->attempt - r->throttles);
  return ra > d ? ra : d;
}

/* Retry-After of the final response, bounded by max_retry_after (remembered when cut). */
static void read_retry_after(couch_request *r) {
  char ra[64];
  r->retry_after_s = r->retry_after_asked_s = 0;
  if (!couch_request_header(r, "retry-after", ra, sizeof ra)) return;
  double s = couch_retry_after_parse(ra, time(NULL));
  if (s < 0) return;
  double cap = (double)r->conn->max_retry_after_ms / 1000;
  if (s > cap) {
    r->retry_after_asked_s = s;
    s = cap;
  }
  r->retry_after_s = s;
}

static void on_retry_timer(couch_timer *t) { launch(t->owner); }

/* The log lines of one attempt: at debug every attempt (method, URL without credentials,
 * status or failure, time, bytes, attempt number, pacing); at info a retry and why. */
static void log_attempt(couch_request *r, long wait_ms) {
  lua_State *L = r->loop->L;
  int retrying = wait_ms >= 0;
  if (!couch_log_enabled(L, COUCH_LOG_DEBUG) && !(retrying && couch_log_enabled(L, COUCH_LOG_INFO)))
    return;
  if (!lua_checkstack(L, 2)) return;
  couch_url_push_redacted(L, r->url);
  const char *url = lua_tostring(L, -1);
  char outcome[96];
  if (r->result == CURLE_OK) snprintf(outcome, sizeof outcome, "%ld", r->status);
  else snprintf(outcome, sizeof outcome, "failed (%s)", curl_easy_strerror(r->result));
  curl_off_t us = 0;
  curl_easy_getinfo(r->tr.easy, CURLINFO_TOTAL_TIME_T, &us);
  couch_log(L, COUCH_LOG_DEBUG, "%s %s %s %lld ms %zu bytes (attempt %d, pacing %.0f ms)", r->method, url,
            outcome, (long long)(us / 1000), r->resp_len, r->attempt, r->conn->rate_interval_ms);
  if (retrying)
    couch_log(L, COUCH_LOG_INFO, "retrying %s %s in %ld ms: %s (attempt %d of %d)", r->method, url,
              wait_ms, outcome, r->attempt + 1, r->retries + 1);
  lua_pop(L, 1);
}

static void on_done(couch_transfer *tr, CURLcode result) {
  couch_request *r = (couch_request *)((char *)tr - offsetof(couch_request, tr));
  r->in_multi = 0;
  r->result = result;
  curl_easy_getinfo(tr->easy, CURLINFO_RESPONSE_CODE, &r->status);
  read_retry_after(r);
  if (result == CURLE_OK) adapt_rate(r->conn, r->status);
  if (result == CURLE_OK && r->status == 429 && r->throttles++ == 0) r->throttled_since_ms = couch_now_ms();
  long wait = next_wait_ms(r);
  log_attempt(r, wait);
  if (wait >= 0) {
    couch_timer_init(&r->retry_timer, on_retry_timer, r);
    couch_timer_start(&r->loop->timers, &r->retry_timer, wait);
    return;
  }
  release_slot(r);
  if (couch_auth_renew(r)) return; /* a 401 to an expired session or token: log in, retry */
  couch_request_finish(r);
}

void couch_request_finish(couch_request *r) {
  if (r->then) r->then(r);
  else couch_wait_complete(r->loop, &r->w);
}

void couch_request_stop(couch_request *r) {
  if (r->in_multi) couch_loop_remove_transfer(r->loop, &r->tr);
  r->in_multi = 0;
  couch_timer_stop(&r->loop->timers, &r->retry_timer);
  if (r->queued) unqueue(r);
  release_slot(r);
  couch_auth_unhold(r);
}

static void cancel(couch_wait *w) {
  couch_request *r = (couch_request *)w;
  couch_request_stop(r);
  r->result = CURLE_ABORTED_BY_CALLBACK;
}

void couch_request_clear(couch_request *r) {
  couch_request_stop(r);
  couch_auth_release(r);
  curl_easy_cleanup(r->tr.easy);
  curl_slist_free_all(r->headers);
  free(r->url);
  if (r->is_login && r->resp) memset(r->resp, 0, r->resp_cap); /* a token answer */
  free(r->resp);
  free(r->resp_headers);
  if (r->owned_body) memset(r->owned_body, 0, r->body_len);
  free(r->owned_body);
  r->tr.easy = NULL;
  r->headers = NULL;
  r->url = r->resp = r->resp_headers = r->owned_body = NULL;
}

static void finalize(couch_wait *w) { couch_request_clear((couch_request *)w); }

int couch_request_init(couch_request *r, couch_loop *loop, couch_conn *conn, const char *method,
                       const char *url) {
  r->loop = loop;
  r->conn = conn;
  couch_timer_init(&r->retry_timer, on_retry_timer, r);
  snprintf(r->method, sizeof r->method, "%s", method);
  r->url = strdup(url);
  r->retries = conn->retries;
  r->timeout_ms = conn->timeout_ms;
  r->idempotent = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
  r->tr.easy = curl_easy_init();
  r->tr.done = on_done;
  if (!r->url || !r->tr.easy) return -1;
  for (struct curl_slist *h = conn->headers; h; h = h->next) couch_request_add_header(r, h->data);
  return 0;
}

couch_request *couch_request_new(lua_State *L, int conn_idx, couch_conn *conn, const char *method,
                                 const char *url, int body_idx) {
  conn_idx = lua_absindex(L, conn_idx);
  if (body_idx) body_idx = lua_absindex(L, body_idx);
  couch_request *r = (couch_request *)couch_wait_new(L, sizeof *r);
  lua_pushvalue(L, conn_idx);
  lua_setiuservalue(L, -2, 1);
  r->w.cancel = cancel;
  r->w.finalize = finalize;
  if (couch_request_init(r, couch_loop_get(L), conn, method, url) != 0)
    luaL_error(L, "out of memory creating a request");
  if (body_idx) {
    r->body = lua_tolstring(L, body_idx, &r->body_len);
    lua_pushvalue(L, body_idx);
    lua_setiuservalue(L, -2, 2);
  }
  return r;
}

void couch_request_add_header(couch_request *r, const char *header) {
  struct curl_slist *h = curl_slist_append(r->headers, header);
  if (h) r->headers = h;
}

static void configure(couch_request *r) {
  CURL *e = r->tr.easy;
  couch_conn *c = r->conn;
  curl_easy_setopt(e, CURLOPT_URL, r->url);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, couch_request_on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  /* gzip where the server offers it, but not on long-polls: a server then holds the
   * heartbeats and the wake-up in its compressor's buffer */
  if (!r->unlimited && c->compress) curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "couchlua/" COUCHLUA_VERSION_STRING);
  if (c->proxy) curl_easy_setopt(e, CURLOPT_PROXY, c->proxy);
  if (c->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
  if (c->insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (strcmp(r->method, "HEAD") == 0) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  else if (strcmp(r->method, "GET") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
  /* libcurl re-sends a request whose reused connection died before any answer; for a
   * POST that may create a document, a fresh connection rules out a duplicate. */
  if (strcmp(r->method, "POST") == 0 && !r->idempotent) curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
  if (r->body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
  }
  couch_request_add_header(r, "Expect:"); /* no 100-continue round trip */
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
}

void couch_request_start(couch_request *r) {
  configure(r);
  if (!couch_auth_hold(r)) couch_request_admit(r);
}

void couch_request_admit(couch_request *r) {
  couch_conn *c = r->conn;
  if (r->unlimited) {
    add_to_multi(r);
    return;
  }
  if (c->max_in_flight > 0 && c->in_flight >= c->max_in_flight) {
    r->queued = 1;
    r->queue_next = NULL;
    if (c->queue_tail) c->queue_tail->queue_next = r;
    else c->queue_head = r;
    c->queue_tail = r;
    return;
  }
  c->in_flight++;
  r->holds_slot = 1;
  launch(r);
}
