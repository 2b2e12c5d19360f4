/* JSON text -> Lua values, built directly on the Lua stack from yajl's callbacks: each open
 * array or object sits on the stack (an object with its pending key above it), and each
 * finished value is stored into the container below it with lua_rawseti / lua_rawset. */
#include "json/json.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <yajl/yajl_parse.h>

enum { K_ARRAY, K_OBJECT };

#define STR_(x) #x
#define STR(x) STR_(x)

/* Lives in a userdata so that an error thrown from a callback (out of memory) still frees
 * the yajl handle through __gc. */
typedef struct {
  yajl_handle h;
  lua_State *L;
  int mt_array, mt_object; /* stack indexes of the two metatables */
  int depth;
  const char *failure; /* why a callback stopped the parse */
  const char *raw;     /* the original text when strings are decoded from it (push_string) */
  int finishing;       /* inside yajl_complete_parse: its offsets are not ours */
  int done;            /* the top-level value is complete */
  size_t len, value_end; /* where it ended */
  unsigned char kind[COUCH_JSON_MAX_DEPTH + 1];
  lua_Integer count[COUCH_JSON_MAX_DEPTH + 1];
} decoder;

#define DECODER_MT "couch.json.decoder"

static int decoder_gc(lua_State *L) {
  decoder *d = lua_touserdata(L, 1);
  if (d->h) yajl_free(d->h);
  d->h = NULL;
  return 0;
}

/* The value on top goes into the open container (or stays there as the result). */
static int add(decoder *d) {
  lua_State *L = d->L;
  if (d->depth == 0) { /* the only number yajl finishes late is a top-level one, at the end */
    d->value_end = d->finishing ? d->len : yajl_get_bytes_consumed(d->h);
    d->done = 1;
    return 1;
  }
  if (d->kind[d->depth] == K_ARRAY) lua_rawseti(L, -2, ++d->count[d->depth]);
  else lua_rawset(L, -3);
  return 1;
}

static int on_null(void *ctx) {
  decoder *d = ctx;
  lua_pushlightuserdata(d->L, NULL);
  return add(d);
}

static int on_boolean(void *ctx, int b) {
  decoder *d = ctx;
  lua_pushboolean(d->L, b);
  return add(d);
}

static int on_number(void *ctx, const char *s, size_t len) {
  decoder *d = ctx;
  couch_json_pushnumtext(d->L, s, len);
  return add(d);
}

/* yajl hands strings over decoded, and decodes lone surrogate escapes wrongly. When the
 * text has some (d->raw set), yajl parsed a copy with those escapes masked (scan.c), and
 * each string is decoded here from the original bytes of its token instead: yajl's
 * lexer still does all the checking, only the unescaping is ours. */
static void push_string(decoder *d, const unsigned char *s, size_t len) {
  if (!d->raw) {
    lua_pushlstring(d->L, (const char *)s, len);
    return;
  }
  couch_json_push_token(d->L, d->raw, yajl_get_bytes_consumed(d->h));
}

static int on_string(void *ctx, const unsigned char *s, size_t len) {
  decoder *d = ctx;
  push_string(d, s, len);
  return add(d);
}

static int on_key(void *ctx, const unsigned char *s, size_t len) {
  push_string(ctx, s, len);
  return 1;
}

static int open_container(decoder *d, int kind) {
  lua_State *L = d->L;
  if (d->depth >= COUCH_JSON_MAX_DEPTH) {
    d->failure = "nesting deeper than " STR(COUCH_JSON_MAX_DEPTH) " levels";
    return 0;
  }
  if (!lua_checkstack(L, 4)) {
    d->failure = "nesting too deep for the Lua stack";
    return 0;
  }
  lua_createtable(L, 0, 0);
  lua_pushvalue(L, kind == K_ARRAY ? d->mt_array : d->mt_object);
  lua_setmetatable(L, -2);
  d->depth++;
  d->kind[d->depth] = (unsigned char)kind;
  d->count[d->depth] = 0;
  return 1;
}

static int close_container(void *ctx) {
  decoder *d = ctx;
  d->depth--;
  return add(d);
}

static int on_start_map(void *ctx) { return open_container(ctx, K_OBJECT); }
static int on_start_array(void *ctx) { return open_container(ctx, K_ARRAY); }

static const yajl_callbacks callbacks = {
    on_null, on_boolean, NULL,         NULL,            on_number,      on_string,
    on_start_map, on_key, close_container, on_start_array, close_container};

/* yajl's message for its error, without the trailing newline. */
static void yajl_why(decoder *d, const char *text, size_t len, char *why, size_t size) {
  unsigned char *e = yajl_get_error(d->h, 0, (const unsigned char *)text, len);
  snprintf(why, size, "%s", e ? (const char *)e : "parse error");
  if (e) yajl_free_error(d->h, e);
  size_t n = strlen(why);
  while (n && (why[n - 1] == '\n' || why[n - 1] == ' ')) why[--n] = '\0';
}

/* "invalid JSON at offset 12 (found 'x]}'): lexical error: invalid char in json text" */
static void push_failure(lua_State *L, const char *text, size_t len, size_t off,
                         const char *why) {
  char found[80];
  if (off >= len) {
    snprintf(found, sizeof found, "end of input");
  } else {
    size_t k = 0;
    found[k++] = '\'';
    for (size_t i = off; i < len && i < off + 16 && k < sizeof found - 8; i++) {
      unsigned char c = (unsigned char)text[i];
      if (c >= 0x20 && c < 0x7f) found[k++] = (char)c;
      else k += (size_t)snprintf(found + k, sizeof found - k, "\\x%02x", c);
    }
    if (off + 16 < len) found[k++] = '.', found[k++] = '.', found[k++] = '.';
    found[k++] = '\'';
    found[k] = '\0';
  }
  lua_pushfstring(L, "invalid JSON at offset %I (found %s): %s", (lua_Integer)off, found, why);
}

/* yajl's offset after an error is not always the start of what it rejected; move it there.
 * Parse errors come after the offending token; some lexical errors one byte past. */
static size_t token_start(const char *t, size_t len, size_t off);

static size_t error_offset(yajl_handle h, const char *text, size_t len, size_t off) {
  unsigned char *e = yajl_get_error(h, 0, (const unsigned char *)text, len);
  const char *m = e ? (const char *)e : "";
  if (strstr(m, "premature EOF")) off = len;
  else if (strstr(m, "invalid char in json text") || strstr(m, "invalid bytes in UTF8"))
    off = off > 0 ? off - 1 : 0;
  else if (strncmp(m, "lexical", 7) != 0 || strstr(m, "invalid string in json text"))
    off = token_start(text, len, off);
  if (e) yajl_free_error(h, e);
  return off;
}

/* yajl reports a parse error after consuming the offending token: point at its start. */
static size_t token_start(const char *t, size_t len, size_t off) {
  if (off == 0) return 0;
  char c = t[off - 1];
  if (c && strchr("[]{},:", c)) return off - 1;
  if (c == '"') {
    for (size_t i = off - 1; i-- > 0;) {
      if (t[i] != '"') continue;
      size_t k = i, backslashes = 0;
      while (k > 0 && t[k - 1] == '\\') k--, backslashes++;
      if (backslashes % 2 == 0) return i;
    }
    return off - 1;
  }
  size_t i = off;
  while (i > 0 && (isalnum((unsigned char)t[i - 1]) || strchr(".+-", t[i - 1]))) i--;
  if (i > 0 && t[i - 1] == '"' && off < len && t[off] == '"') i--; /* inside a string */
  return i;
}

/* Where the value's trailing whitespace ends: yajl lets a trailing token it cannot finish
 * (`{"a":1}"junk`) go, so anything but whitespace after the value is checked here. */
static size_t after_value(const char *t, size_t len, size_t i) {
  while (i < len && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r')) i++;
  return i;
}

int couch_json_decode_at(lua_State *L, const char *text, size_t len, size_t *offset) {
  luaL_checkstack(L, 8, "json decode");
  int base = lua_gettop(L);
  decoder *d = lua_newuserdatauv(L, sizeof *d, 0);
  d->h = NULL;
  if (luaL_newmetatable(L, DECODER_MT)) {
    lua_pushcfunction(L, decoder_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  couch_json_pushmeta(L, COUCH_JSON_ARRAY_MT);
  couch_json_pushmeta(L, COUCH_JSON_OBJECT_MT);
  d->L = L;
  d->mt_array = base + 2;
  d->mt_object = base + 3;
  d->depth = 0;
  d->failure = NULL;
  d->raw = NULL;
  d->finishing = d->done = 0;
  d->len = len;
  d->value_end = len;

  /* yajl parses text[0..sc.bad): up to the first byte it would wrongly accept. So a yajl
   * error before that byte is reported first, as the first error in the text. */
  couch_json_scan_result sc;
  couch_json_scan(text, len, NULL, &sc);
  const char *parse = text;
  if (sc.lone) { /* yajl never sees a lone surrogate escape: see push_string */
    char *masked = lua_newuserdatauv(L, len, 0);
    couch_json_scan(text, len, masked, &sc);
    parse = masked;
    d->raw = text;
  }
  d->h = yajl_alloc(&callbacks, NULL, d);
  if (!d->h) luaL_error(L, "json decode: out of memory");

  char why[200];
  why[0] = '\0';
  yajl_status st = yajl_parse(d->h, (const unsigned char *)parse, sc.bad);
  size_t off = yajl_get_bytes_consumed(d->h);
  if (st == yajl_status_ok && sc.bad < len) {
    size_t garbage = d->done ? after_value(text, len, d->value_end) : sc.bad;
    off = garbage < sc.bad ? garbage : sc.bad;
    snprintf(why, sizeof why, "%s",
             garbage < sc.bad ? "trailing garbage after the JSON value" : sc.why);
  } else if (st == yajl_status_ok) {
    d->finishing = 1;
    st = yajl_complete_parse(d->h);
    off = len;
    /* yajl may also fail on that token only now, as it ends with the input */
    if ((st == yajl_status_ok || d->done) && (off = after_value(text, len, d->value_end)) < len) {
      snprintf(why, sizeof why, "trailing garbage after the JSON value");
      st = yajl_status_ok;
    }
  }
  if (st == yajl_status_client_canceled) {
    off = token_start(text, len, off);
    snprintf(why, sizeof why, "%s", d->failure ? d->failure : "parse stopped");
  } else if (st != yajl_status_ok) {
    off = error_offset(d->h, text, len, off);
    yajl_why(d, text, len, why, sizeof why);
  }
  if (why[0]) {
    if (offset) *offset = off;
    push_failure(L, text, len, off, why);
    yajl_free(d->h);
    d->h = NULL;
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
    return 0;
  }
  yajl_free(d->h);
  d->h = NULL;
  lua_replace(L, base + 1); /* the value, left on top after the metatables (and copy) */
  lua_settop(L, base + 1);
  return 1;
}

int couch_json_decode(lua_State *L, const char *text, size_t len) {
  return couch_json_decode_at(L, text, len, NULL);
}
