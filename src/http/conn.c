/* The connection profile from couch.connect(url, opts): credentials split out of the URL
 * (a URL we keep or print never holds them), the auth mode, timeouts, retry and pacing
 * policy, limits. Freeing wipes the secrets before the memory goes back. */
#include "http/conn.h"

#include "couch/options.h"
#include "error.h"
#include "http/auth.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static char *dup_opt(const char *s) { return s ? strdup(s) : NULL; }

static void wipe_free(char *s) {
  if (s) memset(s, 0, strlen(s));
  free(s);
}

void couch_conn_free(couch_conn *c) {
  couch_auth_conn_free(c);
  free(c->base_url);
  free(c->username);
  wipe_free(c->password);
  wipe_free(c->cookie);
  wipe_free(c->bearer);
  wipe_free(c->api_key);
  free(c->token_url);
  free(c->proxy);
  free(c->ca_file);
  curl_slist_free_all(c->headers);
  memset(c, 0, sizeof *c);
}

const char *couch_conn_auth_name(const couch_conn *c) {
  static const char *const names[] = {"none", "basic", "cookie", "iam", "jwt"};
  return names[c->auth];
}

/* Split userinfo out of the URL: credentials live in the connection, never in a URL. */
static void take_url(lua_State *L, couch_conn *c, const char *url) {
  if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
    couch_error_usage(L, "url", "expected an http:// or https:// URL");
  CURLU *u = curl_url();
  if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
    curl_url_cleanup(u);
    /* not echoed: a password with a raw '/', '?' or '#' would defeat any redaction */
    couch_error_usage(L, "url", "not a valid URL (check its host, port and the escaping of "
                                "user and password: %%-encode '/', '?', '#' and '@' in them)");
  }
  char *user = NULL, *pass = NULL, *clean = NULL;
  curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE);
  curl_url_get(u, CURLUPART_PASSWORD, &pass, CURLU_URLDECODE);
  curl_url_set(u, CURLUPART_USER, NULL, 0);
  curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
  curl_url_get(u, CURLUPART_URL, &clean, 0);
  curl_url_cleanup(u);
  if (user && *user) c->username = strdup(user);
  if (pass) {
    c->password = strdup(pass);
    memset(pass, 0, strlen(pass));
  }
  c->base_url = strdup(clean ? clean : url);
  curl_free(user);
  curl_free(pass);
  curl_free(clean);
  size_t n = strlen(c->base_url);
  while (n > 0 && c->base_url[n - 1] == '/') c->base_url[--n] = '\0';
}

static void take_headers(lua_State *L, couch_conn *c, int opts) {
  if (lua_type(L, opts) != LUA_TTABLE) return;
  if (lua_getfield(L, opts, "headers") == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1)) couch_error_usage(L, "headers", "expected a table of name = value");
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      couch_error_usage(L, "headers", "names and values must be strings");
    lua_pushfstring(L, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
    c->headers = curl_slist_append(c->headers, lua_tostring(L, -1));
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

/* The auth mode: asked for, or implied by the credentials there are. */
static void take_auth(lua_State *L, couch_conn *c, int opts) {
  const char *user = couch_opt_string(L, opts, "user", couch_opt_string(L, opts, "username", NULL));
  const char *pass = couch_opt_string(L, opts, "password", NULL);
  if (user) {
    free(c->username);
    c->username = strdup(user);
  }
  if (pass) {
    wipe_free(c->password);
    c->password = strdup(pass);
  }
  c->api_key = dup_opt(couch_opt_string(L, opts, "api_key", NULL));
  const char *auth = couch_opt_string(L, opts, "auth", c->api_key ? "iam" : c->username ? "basic" : "none");
  if (strcmp(auth, "basic") == 0) c->auth = COUCH_AUTH_BASIC;
  else if (strcmp(auth, "cookie") == 0) c->auth = COUCH_AUTH_COOKIE;
  else if (strcmp(auth, "iam") == 0) c->auth = COUCH_AUTH_IAM;
  else if (strcmp(auth, "jwt") == 0) c->auth = COUCH_AUTH_JWT; /* ArangoDB's (couch.arango) */
  else if (strcmp(auth, "none") == 0) c->auth = COUCH_AUTH_NONE;
  else couch_error_usage(L, "auth", "expected \"basic\", \"cookie\", \"iam\" or \"none\", got \"%s\"", auth);
  if (c->auth == COUCH_AUTH_IAM && !c->api_key)
    couch_error_usage(L, "api_key", "IAM authentication needs an api_key");
  if ((c->auth == COUCH_AUTH_BASIC || c->auth == COUCH_AUTH_COOKIE || c->auth == COUCH_AUTH_JWT) && !c->username)
    couch_error_usage(L, "user", "%s authentication needs a user (in the URL or options)", auth);
  c->token_url = strdup(couch_opt_string(L, opts, "token_url", "https://iam.cloud.ibm.com/identity/token"));
}

/* Measured on pouchdb-server: gzip on loopback costs ~30 % of the read rate for nothing. */
static int is_loopback(const char *url) {
  const char *host = strstr(url, "://");
  host = host ? host + 3 : url;
  return strncmp(host, "127.", 4) == 0 || strncmp(host, "localhost", 9) == 0 ||
         strncmp(host, "[::1]", 5) == 0;
}

const char *const couch_conn_options[] = {
    "user", "username", "password", "auth", "api_key", "token_url", "headers", "timeout",
    "connect_timeout", "retries", "backoff", "max_backoff", "proxy", "insecure", "ca_file",
    "max_concurrency", "max_rps", "compression", "quiet", "max_response_bytes", "max_compression_ratio",
    "max_retry_after", "max_rate_limit_wait", NULL};

/* 512 MiB: a _bulk_get batch of CouchDB's largest documents (max_document_size 8 MB) times
 * a generous batch size still fits; beyond it an answer is an accident or an attack, and
 * holding it means twice that in memory (the buffer, then the Lua string). */
#define DEFAULT_MAX_RESPONSE_BYTES (512.0 * 1024 * 1024)
/* JSON as CouchDB sends it compresses 5-20 times; a bomb of zeros 1,000 times. */
#define DEFAULT_MAX_COMPRESSION_RATIO 100

/* Seconds as milliseconds, bounded so that the waits fit a long. */
static long ms_opt(lua_State *L, int opts, const char *name, lua_Number def) {
  lua_Number s = couch_opt_number(L, opts, name, def);
  return (long)((s > 1e9 ? 1e9 : s) * 1000);
}

void couch_conn_init(lua_State *L, couch_conn *c, const char *url, int opts) {
  opts = lua_absindex(L, opts);
  take_url(L, c, url);
  take_auth(L, c, opts);
  take_headers(L, c, opts);
  c->timeout_ms = ms_opt(L, opts, "timeout", 60);
  c->connect_timeout_ms = ms_opt(L, opts, "connect_timeout", 10);
  c->retries = (int)couch_opt_number(L, opts, "retries", 3);
  c->backoff_ms = ms_opt(L, opts, "backoff", 0.1);
  c->max_backoff_ms = ms_opt(L, opts, "max_backoff", 10);
  c->max_in_flight = (int)couch_opt_number(L, opts, "max_concurrency", 64);
  lua_Number max_bytes = couch_opt_number(L, opts, "max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES);
  c->max_response_bytes = max_bytes >= (lua_Number)SIZE_MAX ? SIZE_MAX : (size_t)max_bytes;
  if (c->max_response_bytes == 0) couch_error_usage(L, "max_response_bytes", "must be at least 1");
  c->max_ratio = couch_opt_number(L, opts, "max_compression_ratio", DEFAULT_MAX_COMPRESSION_RATIO);
  c->max_retry_after_ms = ms_opt(L, opts, "max_retry_after", 60);
  c->max_rate_limit_wait_ms = ms_opt(L, opts, "max_rate_limit_wait", 300);
  lua_Number max_rps = couch_opt_number(L, opts, "max_rps", 0);
  c->min_interval_ms = max_rps > 0 ? 1000.0 / max_rps : 0;
  c->proxy = dup_opt(couch_opt_string(L, opts, "proxy", NULL));
  c->ca_file = dup_opt(couch_opt_string(L, opts, "ca_file", NULL));
  c->insecure = couch_opt_bool(L, opts, "insecure", 0);
  c->compress = couch_opt_bool(L, opts, "compression", !is_loopback(c->base_url));
}
