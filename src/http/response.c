/* A finished request's answer as Lua values (response.h): what went wrong is said in one
 * structured error object — the server's own error and reason, which limit cut a transfer
 * short, where a redirect pointed — with the URL redacted. */
#include "http/response.h"

#include "error.h"
#include "http/url.h"
#include "json/json.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

void couch_response_push_headers(lua_State *L, const couch_request *r) {
  lua_newtable(L);
  size_t pos = 0;
  const char *name, *value;
  while (couch_request_next_header(r, &pos, &name, &value)) {
    lua_pushstring(L, value);
    lua_setfield(L, -2, name);
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

/* A transfer aborted by one of the connection's limits on an answer's size. */
static void push_too_large(lua_State *L, const couch_request *r) {
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

/* The server's answer as an `http` error: its error and reason when it sent JSON, else
 * the start of the body on one line. */
static void push_http_error(lua_State *L, const couch_request *r) {
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
  } else if (r->resp_len > 0) {
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

/* The failure of r's own transfer or answer. */
static void push_failure(lua_State *L, const couch_request *r) {
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
  } else if (r->auth_why) {
    couch_error_push(L, "auth", "%s", r->auth_why);
    couch_error_setint(L, -1, "status", r->status);
  } else {
    push_http_error(L, r);
  }
  couch_error_setstr(L, -1, "method", r->method);
  couch_url_push_redacted(L, r->url);
  lua_setfield(L, -2, "url");
  couch_error_setint(L, -1, "retries", r->attempt > 0 ? r->attempt - 1 : 0);
}

/* A request that never went out because its login failed reports the login: kind `auth`
 * (the login's own kind kept as `cause`), naming the server, never the credentials. */
static void push_login_failure(lua_State *L, const couch_request *r) {
  push_failure(L, r->login);
  lua_getfield(L, -1, "kind");
  lua_setfield(L, -2, "cause");
  couch_error_setstr(L, -1, "kind", "auth");
  couch_error_setstr(L, -1, "server", r->conn->base_url);
  lua_getfield(L, -1, "message");
  const char *m = lua_tostring(L, -1);
  const char *user = r->conn->username;
  lua_pushfstring(L, "logging in to %s%s%s failed%s%s", r->conn->base_url, user ? " as " : "", user ? user : "",
                  m && *m ? ": " : "", m && *m ? m : "");
  lua_setfield(L, -3, "message");
  lua_pop(L, 1);
}

void couch_response_push_error(lua_State *L, couch_request *r) {
  if (r->login) {
    push_login_failure(L, r);
    return;
  }
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
}

/* Raise a `json` error about the answer to r. */
static int raise_json_error(lua_State *L, const couch_request *r, const char *why) {
  couch_error_push(L, "json", "%s", why);
  couch_error_setint(L, -1, "status", r->status);
  couch_error_setstr(L, -1, "method", r->method);
  couch_url_push_redacted(L, r->url);
  lua_setfield(L, -2, "url");
  return lua_error(L);
}

int couch_response_results(lua_State *L, couch_request *r, int allowed, int raw) {
  /* a 3xx is a failure too: libcurl does not follow redirects here (credentials must not
   * travel to another host), so the caller would get the redirect's body as its answer */
  if (r->login || r->result != CURLE_OK || (r->status >= 300 && !allowed)) {
    couch_response_push_error(L, r);
    return lua_error(L);
  }
  int head = strcmp(r->method, "HEAD") == 0;
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
  couch_response_push_headers(L, r);
  return 3;
}
