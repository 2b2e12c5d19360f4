/* URL pieces: escaping, query strings, redaction (url.h). Pure C where credentials pass
 * (the login body), Lua bindings at the end. */
#include "http/url.h"

#include "hex.h"
#include "json/json.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '.' || c == '_' || c == '~';
}

size_t couch_url_escape(char *out, const char *s, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (unreserved(c)) out[n++] = (char)c;
    else n += couch_hex_percent(out + n, c);
  }
  return n;
}

void couch_url_push_escaped(lua_State *L, const char *s, size_t len) {
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, 3 * len);
  luaL_pushresultsize(&b, couch_url_escape(out, s, len));
}

size_t couch_url_unescape(char *out, const char *s, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < len && (hi = couch_hex_value(s[i + 1])) >= 0 &&
        (lo = couch_hex_value(s[i + 2])) >= 0) {
      out[n++] = (char)(hi << 4 | lo);
      i += 2;
    } else {
      out[n++] = s[i];
    }
  }
  return n;
}

/* A query key: its bytes and length, so that a key with a NUL in it is sorted, escaped and
 * looked up whole. */
typedef struct {
  const char *s;
  size_t n;
} query_key;

/* Query parameters whose values CouchDB parses as JSON even when they are strings. */
static int json_param(const char *k, size_t n) {
  if (strlen(k) != n) return 0; /* a key with a NUL in it */
  static const char *const names[] = {"key", "keys", "startkey", "start_key", "endkey", "end_key",
                                      NULL};
  for (int i = 0; names[i]; i++)
    if (strcmp(k, names[i]) == 0) return 1;
  return 0;
}

/* Push the text of one query value. */
static void push_query_value(lua_State *L, const query_key *key, int v) {
  switch (lua_type(L, v)) {
    case LUA_TBOOLEAN:
      lua_pushstring(L, lua_toboolean(L, v) ? "true" : "false");
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, v)) lua_pushfstring(L, "%I", lua_tointeger(L, v));
      else {
        lua_Number n = lua_tonumber(L, v);
        lua_Integer i;
        if (lua_numbertointeger(n, &i) && (lua_Number)i == n) lua_pushfstring(L, "%I", i); /* limit = n/2 */
        else {
          lua_pushvalue(L, v);
          lua_tostring(L, -1);
        }
      }
      break;
    case LUA_TSTRING:
      if (!json_param(key->s, key->n)) lua_pushvalue(L, v);
      else couch_json_encode(L, v, NULL);
      break;
    default:
      couch_json_encode(L, v, NULL);
  }
}

static int key_less(const void *a, const void *b) {
  const query_key *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

void couch_url_append_query(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) return;
  int base = lua_gettop(L);
  /* The string keys, sorted; their array is a userdata, so an error raised while encoding a
   * value (a JSON value it cannot write) leaks nothing. */
  size_t n = 0;
  for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1))
    if (lua_type(L, -2) == LUA_TSTRING) n++;
  query_key *keys = lua_newuserdatauv(L, (n ? n : 1) * sizeof *keys, 0);
  n = 0;
  for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1))
    if (lua_type(L, -2) == LUA_TSTRING) { /* anchored in the table */
      keys[n].s = lua_tolstring(L, -2, &keys[n].n);
      n++;
    }
  qsort(keys, n, sizeof *keys, key_less);
  char sep = strchr(lua_tostring(L, base), '?') ? '&' : '?';
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_pushvalue(L, base);
  luaL_addvalue(&b);
  for (size_t i = 0; i < n; i++) {
    luaL_addchar(&b, sep);
    sep = '&';
    couch_url_push_escaped(L, keys[i].s, keys[i].n);
    luaL_addvalue(&b);
    luaL_addchar(&b, '=');
    lua_pushlstring(L, keys[i].s, keys[i].n);
    lua_rawget(L, idx);
    push_query_value(L, &keys[i], lua_gettop(L));
    size_t vlen;
    const char *v = lua_tolstring(L, -1, &vlen);
    couch_url_push_escaped(L, v, vlen);
    lua_replace(L, -3);
    lua_pop(L, 1);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_replace(L, base);
  lua_pop(L, 1); /* the keys */
}

/* scheme://user:pass@host -> scheme://host. A password with a raw '/' makes the authority
 * look like "admin:pa" (a ':' not followed by a port): then the credentials run to the last
 * '@' before any query or fragment. */
/* Length of "scheme://" at the start of s (ALPHA *(ALPHA / DIGIT / + - .)), or 0. */
static size_t scheme_len(const char *s) {
  size_t i = 0;
  if (!isalpha((unsigned char)s[0])) return 0;
  while (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.') i++;
  return strncmp(s + i, "://", 3) == 0 ? i + 3 : 0;
}

void couch_url_push_redacted(lua_State *L, const char *url) {
  const char *scheme = strstr(url, "://");
  const char *start = scheme ? scheme + 3 : url;
  const char *auth_end = start + strcspn(start, "/?#");
  const char *query = start + strcspn(start, "?#");
  const char *at = NULL;
  for (const char *p = start; p < auth_end; p++)
    if (*p == '@') at = p;
  if (!at) {
    const char *colon = memchr(start, ':', (size_t)(auth_end - start));
    int port = colon != NULL;
    for (const char *p = colon ? colon + 1 : auth_end; p < auth_end; p++)
      if (*p < '0' || *p > '9') port = 0;
    if (colon && !port)
      for (const char *p = start; p < query; p++)
        if (*p == '@') at = p;
  }
  if (!at) {
    lua_pushstring(L, url);
    return;
  }
  lua_pushlstring(L, url, (size_t)(start - url));
  lua_pushstring(L, at + 1);
  lua_concat(L, 2);
}

static int l_escape(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  couch_url_push_escaped(L, s, n);
  return 1;
}

static int l_unescape(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, n);
  luaL_pushresultsize(&b, couch_url_unescape(out, s, n));
  return 1;
}

static int l_redact(lua_State *L) {
  couch_url_push_redacted(L, luaL_checkstring(L, 1));
  return 1;
}

/* Any string of a value (a replication document): only one that starts with a scheme is a
 * URL; "n1@127.0.0.1", a node name, keeps its '@'. */
static int l_redact_value(lua_State *L) {
  const char *s = luaL_checkstring(L, 1);
  if (scheme_len(s)) couch_url_push_redacted(L, s);
  else lua_settop(L, 1);
  return 1;
}

void couch_url_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"escape", l_escape}, {"redact", l_redact}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}

int luaopen_couch_url(lua_State *L) {
  static const luaL_Reg fns[] = {{"escape", l_escape}, {"unescape", l_unescape}, {"redact", l_redact},
                                 {"redact_value", l_redact_value}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
