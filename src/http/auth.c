/* Auth in the request layer (see auth.h). A login is a request of its own, owned by C (no
 * userdata, nobody awaits it): its `then` continuation settles the connection's
 * credentials and releases the requests that wait for it — admitted when it succeeded,
 * finished with it as their error when it failed (they hold a reference to it until they
 * are freed, so the error can be built from its answer). A login lives while someone
 * waits for it or reports it. Credentials never leave C: the login body is built here
 * and wiped when freed; the token is parsed here. */
#include "http/auth.h"

#include "http/url.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

/* Refresh a token this long before it expires (as python-cloudant does). */
#define TOKEN_MARGIN_MS 60000
#define IAM_GRANT "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey="

void couch_auth_apply(couch_request *r) {
  couch_conn *c = r->conn;
  CURL *e = r->tr.easy;
  r->auth_gen = c->auth_gen;
  if (r->is_login) return;
  if (c->auth == COUCH_AUTH_BASIC) {
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(e, CURLOPT_USERNAME, c->username);
    curl_easy_setopt(e, CURLOPT_PASSWORD, c->password ? c->password : "");
  }
  curl_easy_setopt(e, CURLOPT_COOKIE, c->cookie);
  if (c->bearer) { /* IAM's token, ArangoDB's JWT */
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
    curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, c->bearer);
  }
}

static const char *what_login(const couch_conn *c) {
  return c->auth == COUCH_AUTH_IAM ? "IAM token" : c->auth == COUCH_AUTH_JWT ? "JWT" : "cookie session";
}

static int logs_in(const couch_conn *c) {
  return c->auth == COUCH_AUTH_COOKIE || c->auth == COUCH_AUTH_IAM || c->auth == COUCH_AUTH_JWT;
}

static int needs_login(const couch_conn *c) {
  if (c->login) return 1;
  if (c->auth == COUCH_AUTH_COOKIE) return c->cookie == NULL;
  if (c->auth == COUCH_AUTH_IAM) return !c->bearer || couch_now_ms() > c->token_expires_ms - TOKEN_MARGIN_MS;
  if (c->auth == COUCH_AUTH_JWT) return !c->bearer; /* renewed on a 401: ArangoDB says no expiry */
  return 0;
}

static void drop_secret(char **s) {
  if (*s) memset(*s, 0, strlen(*s));
  free(*s);
  *s = NULL;
}

void couch_auth_forget(couch_conn *c) {
  drop_secret(&c->cookie);
  drop_secret(&c->bearer);
}

static void free_login(couch_request *login) {
  couch_request_clear(login);
  free(login);
}

/* ---- the login's body: credentials go from the connection into C memory only ---- */

/* {"name": user, "password": password} (CouchDB's _session), {"username": ...} for JWT */
static char *session_body(const couch_conn *c, size_t *len) {
  yajl_gen g = yajl_gen_alloc(NULL);
  if (!g) return NULL;
  const char *user = c->username ? c->username : "", *pass = c->password ? c->password : "";
  yajl_gen_map_open(g);
  const char *key = c->auth == COUCH_AUTH_JWT ? "username" : "name";
  yajl_gen_string(g, (const unsigned char *)key, strlen(key));
  yajl_gen_string(g, (const unsigned char *)user, strlen(user));
  yajl_gen_string(g, (const unsigned char *)"password", 8);
  yajl_gen_string(g, (const unsigned char *)pass, strlen(pass));
  yajl_gen_map_close(g);
  const unsigned char *buf;
  char *body = NULL;
  if (yajl_gen_get_buf(g, &buf, len) == yajl_gen_status_ok && (body = malloc(*len + 1))) {
    memcpy(body, buf, *len);
    body[*len] = '\0';
  }
  if (yajl_gen_get_buf(g, &buf, len) == yajl_gen_status_ok) memset((unsigned char *)buf, 0, *len);
  yajl_gen_free(g);
  *len = body ? strlen(body) : 0;
  return body;
}

/* grant_type=...&apikey=<the key, form-encoded> */
static char *iam_body(const couch_conn *c, size_t *len) {
  const char *key = c->api_key ? c->api_key : "";
  size_t kl = strlen(key), gl = sizeof IAM_GRANT - 1;
  char *body = malloc(gl + 3 * kl + 1);
  if (!body) return NULL;
  memcpy(body, IAM_GRANT, gl);
  *len = gl + couch_url_escape(body + gl, key, kl);
  body[*len] = '\0';
  return body;
}

/* A login request for c, started; NULL when out of memory. */
static couch_request *start_login(couch_request *for_r) {
  couch_conn *c = for_r->conn;
  int iam = c->auth == COUCH_AUTH_IAM;
  couch_request *login = calloc(1, sizeof *login);
  if (!login) return NULL;
  const char *path = c->auth == COUCH_AUTH_JWT ? "/_open/auth" : "/_session";
  char *url = NULL;
  if (!iam && (url = malloc(strlen(c->base_url) + strlen(path) + 1))) {
    strcpy(url, c->base_url);
    strcat(url, path);
  }
  int bad = couch_request_init(login, for_r->loop, c, "POST", iam ? c->token_url : url ? url : "") != 0;
  free(url);
  login->owned_body = iam ? iam_body(c, &login->body_len) : session_body(c, &login->body_len);
  if (bad || !login->owned_body || (!iam && !url)) {
    free_login(login);
    return NULL;
  }
  login->body = login->owned_body;
  login->is_login = 1;
  couch_request_add_header(login, "Accept: application/json");
  couch_request_add_header(login, iam ? "Content-Type: application/x-www-form-urlencoded"
                                      : "Content-Type: application/json");
  lua_State *L = for_r->loop->L;
  if (couch_log_enabled(L, COUCH_LOG_INFO))
    couch_log(L, COUCH_LOG_INFO, "logging in to %s (%s)", c->base_url, what_login(c));
  c->login = login;
  couch_auth_forget(c); /* what the login brings is the only credential from now on */
  return login;
}

/* ---- the login's continuation ---- */

/* Take the token (IAM's access_token, ArangoDB's jwt) out of the answer: 0, or -1 when
 * there is none. */
static int take_token(couch_request *login) {
  couch_conn *c = login->conn;
  char err[128];
  yajl_val root = login->resp ? yajl_tree_parse(login->resp, err, sizeof err) : NULL;
  const char *tok_path[] = {c->auth == COUCH_AUTH_JWT ? "jwt" : "access_token", NULL};
  const char *ttl_path[] = {"expires_in", NULL};
  yajl_val tok = yajl_tree_get(root, tok_path, yajl_t_string);
  yajl_val ttl = yajl_tree_get(root, ttl_path, yajl_t_any);
  double seconds = 3600;
  if (YAJL_IS_NUMBER(ttl)) seconds = YAJL_GET_DOUBLE(ttl);
  else if (YAJL_IS_STRING(ttl) && ttl->u.string) seconds = strtod(ttl->u.string, NULL);
  if (tok && tok->u.string) {
    c->bearer = strdup(tok->u.string);
    memset(tok->u.string, 0, strlen(tok->u.string));
  }
  yajl_tree_free(root);
  if (!c->bearer) return -1;
  c->token_expires_ms = couch_now_ms() + (int64_t)(seconds * 1000);
  return 0;
}

/* Whether the login got its credential (sets auth_why when a 2xx answer still did not). */
static int login_ok(couch_request *login) {
  couch_conn *c = login->conn;
  if (login->result != CURLE_OK || login->status < 200 || login->status >= 300) return 0;
  if (c->auth == COUCH_AUTH_IAM || c->auth == COUCH_AUTH_JWT) {
    if (take_token(login) == 0) return 1;
    login->auth_why = c->auth == COUCH_AUTH_IAM ? "the IAM token endpoint answered without an access_token"
                                                : "POST /_open/auth answered without a jwt";
    return 0;
  }
  if (c->cookie) return 1;
  login->auth_why = "POST /_session answered without a session cookie";
  return 0;
}

static void login_done(couch_request *login) {
  couch_conn *c = login->conn;
  c->login = NULL;
  int ok = login_ok(login);
  if (ok) c->auth_gen++;
  couch_request *r = c->auth_head;
  c->auth_head = c->auth_tail = NULL;
  while (r) {
    couch_request *next = r->auth_next;
    r->auth_next = NULL;
    r->auth_waiting = 0;
    if (ok) {
      couch_request_admit(r);
    } else {
      r->login = login;
      login->refs++;
      couch_request_finish(r);
    }
    r = next;
  }
  if (login->refs == 0) free_login(login);
}

/* ---- requests waiting for it ---- */

int couch_auth_hold(couch_request *r) {
  couch_conn *c = r->conn;
  if (r->is_login || !needs_login(c)) return 0;
  if (!c->login) {
    couch_request *login = start_login(r);
    if (!login) { /* finish r with the failure rather than send it without credentials */
      r->result = CURLE_OUT_OF_MEMORY;
      snprintf(r->errbuf, sizeof r->errbuf, "out of memory preparing the login");
      couch_request_finish(r);
      return 1;
    }
    login->then = login_done;
    r->auth_next = NULL;
    r->auth_waiting = 1;
    c->auth_head = c->auth_tail = r;
    couch_request_start(login);
    return 1;
  }
  r->auth_next = NULL;
  r->auth_waiting = 1;
  if (c->auth_tail) c->auth_tail->auth_next = r;
  else c->auth_head = r;
  c->auth_tail = r;
  return 1;
}

int couch_auth_renew(couch_request *r) {
  couch_conn *c = r->conn;
  if (r->is_login || r->keep_401 || r->renewed || !logs_in(c)) return 0;
  if (r->result != CURLE_OK || r->status != 401) return 0;
  r->renewed = 1;
  /* the credentials r was sent with are the current ones: they expired */
  if (r->auth_gen == c->auth_gen && !c->login) couch_auth_forget(c);
  lua_State *L = r->loop->L;
  if (couch_log_enabled(L, COUCH_LOG_INFO))
    couch_log(L, COUCH_LOG_INFO, "%s answered 401 to %s: the %s expired, sending it again", c->base_url,
              r->method, what_login(c));
  r->attempt = r->throttles = 0; /* a new request, as far as its retries go */
  if (!couch_auth_hold(r)) couch_request_admit(r);
  return 1;
}

void couch_auth_unhold(couch_request *r) {
  if (!r->auth_waiting) return;
  couch_conn *c = r->conn;
  couch_request **pp = &c->auth_head, *prev = NULL;
  while (*pp && *pp != r) {
    prev = *pp;
    pp = &(*pp)->auth_next;
  }
  if (*pp) {
    *pp = r->auth_next;
    if (c->auth_tail == r) c->auth_tail = prev;
  }
  r->auth_waiting = 0;
  r->auth_next = NULL;
  if (!c->auth_head && c->login) { /* nobody waits for it any more */
    couch_request *login = c->login;
    c->login = NULL;
    free_login(login);
  }
}

void couch_auth_release(couch_request *r) {
  couch_request *login = r->login;
  r->login = NULL;
  if (login && --login->refs == 0) free_login(login);
}

void couch_auth_conn_free(couch_conn *c) {
  for (couch_request *r = c->auth_head; r; r = r->auth_next) r->auth_waiting = 0;
  c->auth_head = c->auth_tail = NULL;
  if (c->login) free_login(c->login);
  c->login = NULL;
}
