/* couch.connect and the request primitive srv:_send(method, path, opts): Lua arguments
 * become one couch_request, the caller awaits it, and the continuation turns the response
 * into a Lua value or a structured error. Everything else a server can do is written in
 * Lua on top of this (lua/couch/server.lua). */
#include "couch/server.h"

#include "abort.h"
#include "couchlua.h"
#include "output.h"

#include "couch/options.h"
#include "error.h"
#include "http/request.h"
#include "http/url.h"
#include "json/json.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_opt(const char *s) { return s ? strdup(s) : NULL; }

void couch_conn_free(couch_conn *c) {
  free(c->base_url);
  if (c->password) memset(c->password, 0, strlen(c->password));
  free(c->username);
  free(c->password);
  free(c->cookie);
  free(c->bearer);
  if (c->api_key) memset(c->api_key, 0, strlen(c->api_key));
  free(c->api_key);
  free(c->proxy);
  free(c->ca_file);
  curl_slist_free_all(c->headers);
  memset(c, 0, sizeof *c);
}

couch_conn *couch_server_check(lua_State *L, int idx) { return luaL_checkudata(L, idx, SERVER_MT); }

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
  if (lua_type(L, opts) != LUA_TTABLE || lua_getfield(L, opts, "headers") == LUA_TNIL) {
    if (lua_type(L, opts) == LUA_TTABLE) lua_pop(L, 1);
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

/* Measured on pouchdb-server: gzip on loopback costs ~30 % of the read rate for nothing. */
static int is_loopback(const char *url) {
  const char *host = strstr(url, "://");
  host = host ? host + 3 : url;
  return strncmp(host, "127.", 4) == 0 || strncmp(host, "localhost", 9) == 0 ||
         strncmp(host, "[::1]", 5) == 0;
}

static const char *const connect_options[] = {
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

/* couch.connect(url [, opts]) -> server */
static int l_connect(lua_State *L) {
  const char *url = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : NULL;
  if (!url) return couch_error_usage(L, "url", "couch.connect expects a URL string, got %s",
                                     luaL_typename(L, 1));
  couch_options_check_known(L, 2, "couch.connect", connect_options);
  couch_conn *c = lua_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, SERVER_MT);
  int srv = lua_gettop(L);
  take_url(L, c, url);
  const char *user = couch_opt_string(L, 2, "user", couch_opt_string(L, 2, "username", NULL));
  const char *pass = couch_opt_string(L, 2, "password", NULL);
  if (user) {
    free(c->username);
    c->username = strdup(user);
  }
  if (pass) {
    free(c->password);
    c->password = strdup(pass);
  }
  c->api_key = dup_opt(couch_opt_string(L, 2, "api_key", NULL));
  const char *auth = couch_opt_string(L, 2, "auth", c->api_key ? "iam" : c->username ? "basic" : "none");
  if (strcmp(auth, "basic") && strcmp(auth, "cookie") && strcmp(auth, "iam") && strcmp(auth, "none"))
    return couch_error_usage(L, "auth", "expected \"basic\", \"cookie\", \"iam\" or \"none\", got \"%s\"", auth);
  if (strcmp(auth, "iam") == 0 && !c->api_key)
    return couch_error_usage(L, "api_key", "IAM authentication needs an api_key");
  if ((strcmp(auth, "basic") == 0 || strcmp(auth, "cookie") == 0) && !c->username)
    return couch_error_usage(L, "user", "%s authentication needs a user (in the URL or options)", auth);
  c->basic_auth = strcmp(auth, "basic") == 0;
  take_headers(L, c, 2);
  c->timeout_ms = (long)(couch_opt_number(L, 2, "timeout", 60) * 1000);
  c->connect_timeout_ms = (long)(couch_opt_number(L, 2, "connect_timeout", 10) * 1000);
  c->retries = (int)couch_opt_number(L, 2, "retries", 3);
  c->backoff_ms = (long)(couch_opt_number(L, 2, "backoff", 0.1) * 1000);
  c->max_backoff_ms = (long)(couch_opt_number(L, 2, "max_backoff", 10) * 1000);
  c->max_in_flight = (int)couch_opt_number(L, 2, "max_concurrency", 64);
  lua_Number max_bytes = couch_opt_number(L, 2, "max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES);
  c->max_response_bytes = max_bytes >= (lua_Number)SIZE_MAX ? SIZE_MAX : (size_t)max_bytes;
  if (c->max_response_bytes == 0) return couch_error_usage(L, "max_response_bytes", "must be at least 1");
  c->max_ratio = couch_opt_number(L, 2, "max_compression_ratio", DEFAULT_MAX_COMPRESSION_RATIO);
  /* bounded here so that the waits fit a long of milliseconds */
  lua_Number max_ra = couch_opt_number(L, 2, "max_retry_after", 60);
  c->max_retry_after_ms = (long)((max_ra > 1e9 ? 1e9 : max_ra) * 1000);
  lua_Number max_rl = couch_opt_number(L, 2, "max_rate_limit_wait", 300);
  c->max_rate_limit_wait_ms = (long)((max_rl > 1e9 ? 1e9 : max_rl) * 1000);
  lua_Number max_rps = couch_opt_number(L, 2, "max_rps", 0);
  c->min_interval_ms = max_rps > 0 ? 1000.0 / max_rps : 0;
  c->proxy = dup_opt(couch_opt_string(L, 2, "proxy", NULL));
  c->ca_file = dup_opt(couch_opt_string(L, 2, "ca_file", NULL));
  c->insecure = couch_opt_bool(L, 2, "insecure", 0);
  c->compress = couch_opt_bool(L, 2, "compression", !is_loopback(c->base_url));
  if (c->insecure && !couch_opt_bool(L, 2, "quiet", 0)) { /* through couch's output: a host sees it */
    lua_pushfstring(L, "couchlua: WARNING: TLS certificate verification is OFF for %s (insecure = true)\n",
                    c->base_url);
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    couch_output_write(L, COUCHLUA_WARNING, text, len);
    lua_pop(L, 1);
  }
  /* Lua-side state of this server (auth mode, token expiry, ...). */
  lua_createtable(L, 0, 4);
  lua_pushstring(L, auth);
  lua_setfield(L, -2, "auth");
  lua_pushstring(L, couch_opt_string(L, 2, "token_url", "https://iam.cloud.ibm.com/identity/token"));
  lua_setfield(L, -2, "token_url");
  lua_setiuservalue(L, srv, 1);
  lua_settop(L, srv);
  return 1;
}

/* ---- the request primitive ---- */

static const char *const send_options[] = {
    "query", "body", "content_type", "headers", "raw", "timeout", "retries", "idempotent",
    "allow", "credentials", "unlimited", "abort", NULL};

/* Put the login body where a credential body was asked for: the password never becomes
 * a Lua string. */
static void push_credentials_body(lua_State *L, couch_conn *c, const char *which) {
  if (strcmp(which, "session") == 0) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, c->username ? c->username : "");
    lua_setfield(L, -2, "name");
    lua_pushstring(L, c->password ? c->password : "");
    lua_setfield(L, -2, "password");
    size_t n;
    couch_json_encode(L, -1, &n);
    lua_remove(L, -2);
  } else if (strcmp(which, "iam") == 0) {
    lua_pushliteral(L, "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey=");
    couch_url_push_escaped(L, c->api_key ? c->api_key : "", c->api_key ? strlen(c->api_key) : 0);
    lua_concat(L, 2);
  } else {
    couch_error_usage(L, "credentials", "expected \"session\" or \"iam\"");
  }
}

static void push_headers_table(lua_State *L, const couch_request *r) {
  lua_newtable(L);
  const char *p = r->resp_headers;
  while (p && *p) {
    const char *eol = strchr(p, '\n');
    size_t ll = eol ? (size_t)(eol - p) : strlen(p);
    const char *colon = memchr(p, ':', ll);
    if (colon) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (const char *q = p; q < colon; q++) luaL_addchar(&b, (char)tolower((unsigned char)*q));
      luaL_pushresult(&b);
      const char *v = colon + 1;
      while (v < p + ll && *v == ' ') v++;
      if (strcmp(lua_tostring(L, -1), "set-cookie") == 0) lua_pop(L, 1); /* stays in the connection */
      else {
        lua_pushlstring(L, v, (size_t)(p + ll - v));
        lua_rawset(L, -3);
      }
    }
    p = eol ? eol + 1 : NULL;
  }
}

static int looks_like_json(const couch_request *r) {
  char ct[128];
  if (couch_request_header(r, "content-type", ct, sizeof ct)) return strstr(ct, "json") != NULL;
  size_t i = 0;
  while (i < r->resp_len && (r->resp[i] == ' ' || r->resp[i] == '\n' || r->resp[i] == '\r')) i++;
  return i < r->resp_len && (r->resp[i] == '{' || r->resp[i] == '[');
}

/* Say on an http error object (top of the stack) which wait limits shaped its retries:
 * "... (still rate limited after max_rate_limit_wait = 300 s; Retry-After asked for
 * 3600 s; waited at most max_retry_after = 60 s)". */
static void explain_waits(lua_State *L, const couch_request *r) {
  couch_conn *c = r->conn;
  char note[256] = "";
  size_t n = 0;
  if (r->limit_hit && strcmp(r->limit_hit, "max_rate_limit_wait") == 0) {
    n += (size_t)snprintf(note + n, sizeof note - n, "still rate limited after max_rate_limit_wait = %g s",
                          (double)c->max_rate_limit_wait_ms / 1000);
    couch_error_setstr(L, -1, "limit", "max_rate_limit_wait");
  }
  if (r->retry_after_asked_s > 0 && n < sizeof note)
    snprintf(note + n, sizeof note - n, "%sRetry-After asked for %g s; waited at most max_retry_after = %g s",
             n ? "; " : "", r->retry_after_asked_s, (double)c->max_retry_after_ms / 1000);
  if (!note[0]) return;
  lua_getfield(L, -1, "message");
  const char *m = lua_tostring(L, -1);
  lua_pushfstring(L, "%s%s(%s)", m ? m : "", m && *m ? " " : "", note);
  lua_setfield(L, -3, "message");
  lua_pop(L, 1);
}

/* Push the error object for a failed attempt (fields filled, not raised). */
/* A transfer aborted by one of the connection's limits on an answer's size. */
static void push_too_large(lua_State *L, couch_request *r) {
  couch_conn *c = r->conn;
  if (strcmp(r->limit_hit, "max_response_bytes") == 0)
    couch_error_push(L, "http", "the answer is larger than max_response_bytes (%I bytes): raise it in "
                     "couch.connect if such answers are expected", (lua_Integer)c->max_response_bytes);
  else
    couch_error_push(L, "http", "the answer inflates more than max_compression_ratio (%f) times its "
                     "compressed size: a compression bomb?", (lua_Number)c->max_ratio);
  couch_error_setstr(L, -1, "error", "response_too_large");
  couch_error_setstr(L, -1, "limit", r->limit_hit);
  if (r->status) couch_error_setint(L, -1, "status", r->status);
}

/* libcurl refuses a header line over 100 KB (300 KB of headers in all) with a bare
 * CURLE_OUT_OF_MEMORY before any byte of the body: say what it means. */
static int header_too_large(const couch_request *r) {
  return r->result == CURLE_OUT_OF_MEMORY && r->resp_len == 0 &&
         (!r->errbuf[0] || strncmp(r->errbuf, "Too large response headers", 26) == 0);
}

static void push_failure(lua_State *L, couch_request *r) {
  if (r->result == CURLE_WRITE_ERROR && r->limit_hit) {
    push_too_large(L, r);
  } else if (header_too_large(r)) {
    couch_error_push(L, "http", "the server's response headers are too large (libcurl takes a header "
                     "line of up to 100 KB, 300 KB in all)");
    couch_error_setstr(L, -1, "error", "header_too_large");
    if (r->status) couch_error_setint(L, -1, "status", r->status);
  } else if (r->result != CURLE_OK) {
    const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result);
    couch_error_push(L, r->result == CURLE_OPERATION_TIMEDOUT ? "timeout" : "network", "%s", why);
    couch_error_setint(L, -1, "curl_code", r->result);
  } else {
    couch_error_push(L, "http", "");
    int err = lua_gettop(L);
    couch_error_setint(L, err, "status", r->status);
    if (looks_like_json(r) && couch_json_decode(L, r->resp, r->resp_len) && lua_istable(L, -1)) {
      if (lua_getfield(L, -1, "error") == LUA_TSTRING) lua_setfield(L, err, "error");
      if (lua_getfield(L, err + 1, "reason") == LUA_TSTRING) {
        lua_pushvalue(L, -1);
        lua_setfield(L, err, "reason");
        lua_setfield(L, err, "message");
      } else if (lua_getfield(L, err + 1, "errorMessage") == LUA_TSTRING) { /* IAM, ArangoDB */
        lua_setfield(L, err, "message");
      }
    } else if (r->resp_len > 0) { /* not JSON: the start of the body says what happened */
      luaL_Buffer b; /* one line: runs of white space become one space */
      luaL_buffinit(L, &b);
      int space = 0;
      for (size_t i = 0; i < r->resp_len && i < 300; i++) {
        char ch = r->resp[i];
        int ws = ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t';
        if (ws && !space) luaL_addchar(&b, ' ');
        else if (!ws) luaL_addchar(&b, ch);
        space = ws;
      }
      luaL_pushresult(&b);
      lua_setfield(L, err, "message");
    }
    lua_settop(L, err);
    explain_waits(L, r);
  }
  couch_error_setstr(L, -1, "method", r->method);
  couch_url_push_redacted(L, r->url);
  lua_setfield(L, -2, "url");
  couch_error_setint(L, -1, "retries", r->attempt > 0 ? r->attempt - 1 : 0);
}

static int status_allowed(lua_State *L, int opts, long status) {
  if (lua_type(L, opts) != LUA_TTABLE) return 0;
  int t = lua_getfield(L, opts, "allow");
  int ok = 0;
  if (t == LUA_TBOOLEAN) ok = lua_toboolean(L, -1);
  else if (t == LUA_TTABLE) {
    lua_rawgeti(L, -1, status);
    ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return ok;
}

/* Raise a `json` error about the answer to r. */
static int raise_json_error(lua_State *L, couch_request *r, const char *why) {
  couch_error_push(L, "json", "%s", why);
  couch_error_setint(L, -1, "status", r->status);
  couch_error_setstr(L, -1, "method", r->method);
  couch_url_push_redacted(L, r->url);
  lua_setfield(L, -2, "url");
  return lua_error(L);
}

/* Continuation: stack is 1 server, 2 method, 3 path, 4 opts, 5 url, 6 request. */
static int after_send(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  couch_request *r = lua_touserdata(L, (int)ctx);
  /* a 3xx is a failure too: libcurl does not follow redirects here (credentials must not
   * travel to another host), so the caller would get the redirect's body as its answer */
  if (r->result != CURLE_OK || (r->status >= 300 && !status_allowed(L, 4, r->status))) {
    push_failure(L, r);
    char loc[1024];
    if (couch_request_header(r, "location", loc, sizeof loc)) {
      couch_url_push_redacted(L, loc);
      if (r->status < 400) {
        lua_pushfstring(L, "redirected to %s (not followed)", lua_tostring(L, -1));
        lua_setfield(L, -3, "message");
      }
      lua_setfield(L, -2, "location");
    }
    return lua_error(L);
  }
  int head = strcmp(r->method, "HEAD") == 0;
  int raw = couch_opt_bool(L, 4, "raw", 0);
  /* every CouchDB answer but HEAD's, 204's and a raw body's (an empty attachment) has a
   * JSON body: an empty one is a broken server or proxy, never "nil, all is well" */
  if (r->resp_len == 0 && !head && !raw && r->status != 204 && r->status < 300) {
    push_failure(L, r);
    couch_error_setstr(L, -1, "error", "empty_response");
    lua_pushfstring(L, "the server answered %d with an empty body", (int)r->status);
    lua_setfield(L, -2, "message");
    return lua_error(L);
  }
  lua_pushinteger(L, r->status);
  if (r->resp_len == 0 || head) {
    lua_pushnil(L);
  } else if (raw) {
    lua_pushlstring(L, r->resp, r->resp_len);
  } else if (!looks_like_json(r)) {
    char ct[128];
    if (!couch_request_header(r, "content-type", ct, sizeof ct)) snprintf(ct, sizeof ct, "no content type");
    lua_pushfstring(L, "expected a JSON answer, got %s (pass raw = true for other content)", ct);
    return raise_json_error(L, r, lua_tostring(L, -1));
  } else if (!couch_json_decode(L, r->resp, r->resp_len)) {
    lua_pushfstring(L, "the response is not valid JSON: %s", lua_tostring(L, -1));
    return raise_json_error(L, r, lua_tostring(L, -1));
  }
  push_headers_table(L, r);
  return 3;
}

/* srv:_send(method, path_or_url, opts) -> status, body, headers */
static int l_send(lua_State *L) {
  couch_conn *c = couch_server_check(L, 1);
  const char *method = luaL_checkstring(L, 2);
  const char *path = luaL_checkstring(L, 3);
  lua_settop(L, 4);
  couch_options_check_known(L, 4, "request", send_options);
  if (strncmp(path, "http://", 7) == 0 || strncmp(path, "https://", 8) == 0) {
    lua_pushvalue(L, 3);
  } else {
    lua_pushstring(L, c->base_url);
    if (path[0] != '/') lua_pushliteral(L, "/");
    lua_pushstring(L, path);
    lua_concat(L, path[0] != '/' ? 3 : 2);
  }
  if (lua_type(L, 4) == LUA_TTABLE) {
    lua_getfield(L, 4, "query");
    lua_insert(L, -2);
    couch_url_append_query(L, -2);
    lua_remove(L, -2);
  }
  int url = lua_gettop(L); /* 5 */
  /* the body: a string as is, a table as JSON, or credentials */
  int body = 0;
  const char *content_type = couch_opt_string(L, 4, "content_type", NULL);
  const char *creds = couch_opt_string(L, 4, "credentials", NULL);
  if (creds) {
    push_credentials_body(L, c, creds);
    body = lua_gettop(L);
    if (!content_type)
      content_type = strcmp(creds, "iam") == 0 ? "application/x-www-form-urlencoded" : "application/json";
  } else if (lua_type(L, 4) == LUA_TTABLE && lua_getfield(L, 4, "body") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING) {
      size_t n;
      couch_json_encode(L, -1, &n);
      lua_remove(L, -2);
    }
    body = lua_gettop(L);
  } else if (lua_type(L, 4) == LUA_TTABLE) {
    lua_pop(L, 1);
  }
  couch_request *r = couch_request_new(L, 1, c, method, lua_tostring(L, url), body);
  if (body) lua_remove(L, body); /* anchored by the request now */
  couch_request_add_header(r, "Accept: application/json");
  if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
    lua_pushfstring(L, "Content-Type: %s", content_type ? content_type : "application/json");
    couch_request_add_header(r, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  if (lua_type(L, 4) == LUA_TTABLE && lua_getfield(L, 4, "headers") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pushfstring(L, "%s: %s", luaL_checkstring(L, -2), luaL_checkstring(L, -1));
      couch_request_add_header(r, lua_tostring(L, -1));
      lua_pop(L, 2);
    }
  }
  if (lua_type(L, 4) == LUA_TTABLE) lua_pop(L, 1);
  lua_Number timeout = couch_opt_number(L, 4, "timeout", -1);
  if (timeout >= 0) r->timeout_ms = (long)(timeout * 1000);
  r->retries = (int)couch_opt_number(L, 4, "retries", r->retries);
  r->idempotent = couch_opt_bool(L, 4, "idempotent", r->idempotent);
  r->unlimited = couch_opt_bool(L, 4, "unlimited", 0);
  if (lua_type(L, 4) == LUA_TTABLE) {
    lua_getfield(L, 4, "abort");
    couch_abort_watch(L, -1, &r->w, "abort");
    lua_pop(L, 1);
  }
  couch_request_start(r);
  return couch_await(L, &r->w, lua_gettop(L), after_send);
}

/* ---- small methods ---- */

static int l_gc(lua_State *L) {
  couch_conn *c = couch_server_check(L, 1);
  couch_conn_free(c);
  return 0;
}

static int l_tostring(lua_State *L) {
  couch_conn *c = couch_server_check(L, 1);
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "auth");
  lua_pushfstring(L, "couch.server <%s> (auth: %s)", c->base_url ? c->base_url : "?", lua_tostring(L, -1));
  return 1;
}

static int l_index(lua_State *L) {
  couch_conn *c = couch_server_check(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "url") == 0) {
    lua_pushstring(L, c->base_url);
    return 1;
  }
  luaL_getmetatable(L, SERVER_MT);
  lua_getfield(L, -1, "methods");
  lua_getfield(L, -1, k);
  return 1;
}

/* srv:_state() -> the table of Lua-side state (auth mode, token expiry...) */
static int l_state(lua_State *L) {
  couch_server_check(L, 1);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

/* srv:_set_token(token_or_nil): the IAM bearer token, kept on the C side only. */
static int l_set_token(lua_State *L) {
  couch_conn *c = couch_server_check(L, 1);
  free(c->bearer);
  c->bearer = dup_opt(luaL_optstring(L, 2, NULL));
  return 0;
}

/* srv:_has_session() -> whether a session cookie is held; srv:_forget_session() drops it. */
static int l_has_session(lua_State *L) {
  lua_pushboolean(L, couch_server_check(L, 1)->cookie != NULL);
  return 1;
}

static int l_forget_session(lua_State *L) {
  couch_conn *c = couch_server_check(L, 1);
  free(c->cookie);
  c->cookie = NULL;
  return 0;
}

/* srv:_endpoint_auth() -> the auth object a replication endpoint on this server needs
 * ({basic = {username, password}} or {iam = {api_key}}), or nil. The one place a
 * credential becomes a Lua value: it goes into a replication document, and everything
 * that returns or prints such documents redacts it. */
static int l_endpoint_auth(lua_State *L) {
  couch_conn *c = couch_server_check(L, 1);
  if (c->api_key) {
    lua_createtable(L, 0, 1);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, c->api_key);
    lua_setfield(L, -2, "api_key");
    lua_setfield(L, -2, "iam");
    return 1;
  }
  if (!c->username) return 0;
  lua_createtable(L, 0, 1);
  lua_createtable(L, 0, 2);
  lua_pushstring(L, c->username);
  lua_setfield(L, -2, "username");
  lua_pushstring(L, c->password ? c->password : "");
  lua_setfield(L, -2, "password");
  lua_setfield(L, -2, "basic");
  return 1;
}

/* srv:stats() -> {requests = attempts sent, in_flight = n, queued = n} */
static int l_stats(lua_State *L) {
  couch_conn *c = couch_server_check(L, 1);
  int queued = 0;
  for (couch_request *r = c->queue_head; r; r = r->queue_next) queued++;
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)c->requests);
  lua_setfield(L, -2, "requests");
  lua_pushinteger(L, (lua_Integer)c->throttled);
  lua_setfield(L, -2, "throttled");
  lua_pushnumber(L, c->rate_interval_ms > c->min_interval_ms ? c->rate_interval_ms : c->min_interval_ms);
  lua_setfield(L, -2, "interval_ms");
  lua_pushinteger(L, c->in_flight);
  lua_setfield(L, -2, "in_flight");
  lua_pushinteger(L, queued);
  lua_setfield(L, -2, "queued");
  return 1;
}

void couch_server_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"_send", l_send},
                                     {"_state", l_state},
                                     {"_set_token", l_set_token},
                                     {"_has_session", l_has_session},
                                     {"_forget_session", l_forget_session},
                                     {"_endpoint_auth", l_endpoint_auth},
                                     {"stats", l_stats},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, SERVER_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pushcfunction(L, l_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_connect);
  lua_setfield(L, -2, "connect");
}
