/* Lua values -> JSON text, written into one growing buffer owned by a userdata (so an
 * error half-way frees it through __gc). Numbers are formatted here, not by yajl_gen:
 * integers exactly, floats with the shortest text that reads back the same. */
#include "json/json.h"
#include "error.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SEG_INDEX, SEG_KEY, SEG_NUMKEY };

typedef struct { /* one open table and the step from it to the value being written */
  const void *table;
  int kind;
  lua_Integer i; /* SEG_INDEX */
  const char *s; /* SEG_KEY, SEG_NUMKEY: the key's text (alive while the table is open) */
  size_t n;
} seg;

typedef struct {
  lua_State *L;
  char *p;
  size_t n, cap;
  lua_Alloc alloc;
  void *aud;
  int flags, indent, depth;
  int mt_array, mt_object, mt_number; /* stack indexes */
  int open;     /* stack index of the set of open tables past SCAN_DEPTH (nil until needed) */
  seg *path; /* [0..depth): the open tables, outermost first */
  size_t path_cap;
} encoder;

#define ENCODER_MT "couch.json.encoder"

static void encoder_free(encoder *e) {
  if (e->p) e->alloc(e->aud, e->p, e->cap, 0);
  if (e->path) e->alloc(e->aud, e->path, e->path_cap * sizeof(seg), 0);
  e->p = NULL;
  e->path = NULL;
}

static int encoder_gc(lua_State *L) {
  encoder_free(lua_touserdata(L, 1));
  return 0;
}

/* ---- output buffer ---- */

static void grow(encoder *e, size_t need) {
  size_t cap = e->cap ? e->cap : 256;
  while (cap - e->n < need) {
    if (cap > ((size_t)-1) / 2) luaL_error(e->L, "json encode: output too large");
    cap *= 2;
  }
  char *p = e->alloc(e->aud, e->p, e->cap, cap);
  if (!p) luaL_error(e->L, "json encode: not enough memory");
  e->p = p;
  e->cap = cap;
}

static inline void reserve(encoder *e, size_t need) {
  if (e->cap - e->n < need) grow(e, need);
}

static inline void put(encoder *e, const char *s, size_t n) {
  reserve(e, n);
  memcpy(e->p + e->n, s, n);
  e->n += n;
}

static inline void putch(encoder *e, char c) {
  reserve(e, 1);
  e->p[e->n++] = c;
}

static void newline(encoder *e) {
  size_t n = (size_t)e->indent * (size_t)e->depth;
  reserve(e, n + 1);
  e->p[e->n++] = '\n';
  memset(e->p + e->n, ' ', n);
  e->n += n;
}

/* ---- errors: "cannot encode a function at .docs[3].f" ---- */

static int is_ident(const char *s, size_t n) {
  if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
      return 0;
  }
  return 1;
}

static void push_path(lua_State *L, const encoder *e, int len) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int k = 0; k < len; k++) {
    const seg *sg = &e->path[k];
    char num[32];
    if (sg->kind == SEG_INDEX) {
      couch_json_fmt_integer(sg->i, num);
      luaL_addchar(&b, '[');
      luaL_addstring(&b, num);
      luaL_addchar(&b, ']');
    } else if (sg->kind == SEG_NUMKEY) {
      luaL_addchar(&b, '[');
      luaL_addlstring(&b, sg->s, sg->n);
      luaL_addchar(&b, ']');
    } else if (is_ident(sg->s, sg->n)) {
      luaL_addchar(&b, '.');
      luaL_addlstring(&b, sg->s, sg->n);
    } else {
      luaL_addstring(&b, "[\"");
      for (size_t i = 0; i < sg->n && i < 200; i++) {
        unsigned char c = (unsigned char)sg->s[i];
        if (c == '"' || c == '\\') luaL_addchar(&b, '\\'), luaL_addchar(&b, (char)c);
        else if (c < 0x20 || c == 0x7f) {
          snprintf(num, sizeof num, "\\x%02x", c);
          luaL_addstring(&b, num);
        } else luaL_addchar(&b, (char)c);
      }
      luaL_addstring(&b, "\"]");
    }
  }
  luaL_pushresult(&b);
}

/* Raise a json error about the value at the first plen steps of the path. */
static int fail(encoder *e, int plen, const char *fmt, ...) {
  lua_State *L = e->L;
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  lua_checkstack(L, 4);
  push_path(L, e, plen);
  size_t n;
  const char *path = lua_tolstring(L, -1, &n);
  char shown[200]; /* the message keeps both ends of a very deep path; err.path has it all */
  if (n > 190) snprintf(shown, sizeof shown, "%.80s...%s", path, path + n - 100);
  else snprintf(shown, sizeof shown, "%s", *path ? path : "the top level");
  couch_error_push(L, "json", "cannot encode %s at %s", what, shown);
  couch_error_setstr(L, -1, "path", path);
  return lua_error(L);
}

/* ---- strings ---- */

/* 0: copy as is; 1: escape; 2: start of a multi-byte UTF-8 sequence (or invalid) */
static const unsigned char char_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};

/* s[i..] is not UTF-8: write it as the \uXXXX escape of a lone surrogate in WTF-8 (what
 * decode makes of one), or fail. Everything before i is written by the caller first. */
static void put_surrogate(encoder *e, const unsigned char *s, size_t n, size_t i, int plen,
                          const char *what) {
  static const char hex[] = "0123456789abcdef";
  unsigned u = couch_json_wtf8_surrogate(s + i, n - i);
  if (!u) fail(e, plen, "%s with invalid UTF-8 (byte %d of %d)", what, (int)i + 1, (int)n);
  if (u <= 0xDBFF && couch_json_wtf8_surrogate(s + i + 3, n - i - 3) >= 0xDC00)
    fail(e, plen, "%s with a surrogate pair in WTF-8 (byte %d of %d): write the character "
         "as UTF-8", what, (int)i + 1, (int)n);
  char esc[6] = {'\\', 'u', hex[u >> 12], hex[(u >> 8) & 15], hex[(u >> 4) & 15], hex[u & 15]};
  put(e, esc, 6);
}

static void put_string(encoder *e, const char *str, size_t n, int plen, const char *what) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, start = 0;
  reserve(e, n + 2);
  e->p[e->n++] = '"';
  while (i < n) {
    unsigned char cls = char_class[s[i]];
    if (cls == 0) {
      i++;
      continue;
    }
    if (cls == 2) {
      size_t k = couch_json_utf8_len(s + i, n - i);
      if (k) {
        i += k;
        continue;
      }
      put(e, str + start, i - start);
      put_surrogate(e, s, n, i, plen, what);
      start = i += 3;
      continue;
    }
    put(e, str + start, i - start);
    char esc[6] = {'\\', 0, '0', '0', 0, 0};
    size_t m = 2;
    switch (s[i]) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\b': esc[1] = 'b'; break;
    case '\f': esc[1] = 'f'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    default:
      esc[1] = 'u';
      esc[4] = hex[s[i] >> 4];
      esc[5] = hex[s[i] & 15];
      m = 6;
    }
    put(e, esc, m);
    start = ++i;
  }
  put(e, str + start, n - start);
  putch(e, '"');
}

/* ---- values ---- */

static void put_value(encoder *e, int idx);

/* A table without our metatables: keys exactly 1..n (n >= 1) make an array. */
static int plain_is_array(lua_State *L, int idx, lua_Integer *len) {
  lua_Integer count = 0, max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1)) {
      lua_pop(L, 1);
      return 0;
    }
    lua_Integer k = lua_tointeger(L, -1);
    if (k < 1) {
      lua_pop(L, 1);
      return 0;
    }
    if (k > max) max = k;
    count++;
  }
  *len = count;
  return count > 0 && count == max;
}

/* 1 array (n set), 0 object; idx absolute; mt_array / mt_object stack indexes or 0. */
static int table_kind(lua_State *L, int idx, int mt_array, int mt_object, lua_Integer *n) {
  if (lua_getmetatable(L, idx)) {
    int is_arr = lua_rawequal(L, -1, mt_array), is_obj = lua_rawequal(L, -1, mt_object);
    lua_pop(L, 1);
    if (is_arr) {
      *n = (lua_Integer)lua_rawlen(L, idx);
      return 1;
    }
    if (is_obj) return 0;
  }
  return plain_is_array(L, idx, n);
}

int couch_json_table_kind(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE) return -1;
  idx = lua_absindex(L, idx);
  lua_Integer n;
  couch_json_pushmeta(L, COUCH_JSON_ARRAY_MT);
  couch_json_pushmeta(L, COUCH_JSON_OBJECT_MT);
  int kind = table_kind(L, idx, lua_gettop(L) - 1, lua_gettop(L), &n);
  lua_pop(L, 2);
  return kind;
}

/* The path stack may move while a child is written (put_table grows it): never keep a
 * seg pointer across put_value, take it afresh for each element. */
static seg *top_seg(encoder *e) { return &e->path[e->depth - 1]; }

static void put_array(encoder *e, int idx, lua_Integer n) {
  lua_State *L = e->L;
  putch(e, '[');
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) putch(e, ',');
    if (e->flags & COUCH_JSON_PRETTY) newline(e);
    seg *sg = top_seg(e);
    sg->kind = SEG_INDEX;
    sg->i = i;
    lua_rawgeti(L, idx, i);
    put_value(e, lua_gettop(L));
    lua_pop(L, 1);
  }
  e->depth--;
  if (n > 0 && (e->flags & COUCH_JSON_PRETTY)) newline(e);
  e->depth++;
  putch(e, ']');
}

/* Sets the path step of the key at idx and returns its JSON text (raises for bad keys). */
static const char *key_text(encoder *e, int idx, size_t *n, char *num) {
  lua_State *L = e->L;
  seg *sg = top_seg(e);
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    sg->kind = SEG_KEY;
    sg->s = lua_tolstring(L, idx, &sg->n);
    break;
  case LUA_TNUMBER:
    sg->kind = SEG_NUMKEY;
    if (lua_isinteger(L, idx)) sg->n = couch_json_fmt_integer(lua_tointeger(L, idx), num);
    else if (isfinite(lua_tonumber(L, idx))) sg->n = couch_json_fmt_double(lua_tonumber(L, idx), num);
    else fail(e, e->depth - 1, "a table key that is %s", lua_tonumber(L, idx) > 0 ? "inf" : "-inf");
    sg->s = num;
    break;
  default:
    fail(e, e->depth - 1, "a table key of type %s", luaL_typename(L, idx));
  }
  *n = sg->n;
  return sg->s;
}

static void put_member(encoder *e, int first, const char *k, size_t kn, int value) {
  if (!first) putch(e, ',');
  if (e->flags & COUCH_JSON_PRETTY) newline(e);
  put_string(e, k, kn, e->depth, "a key");
  if (e->flags & COUCH_JSON_PRETTY) put(e, ": ", 2);
  else putch(e, ':');
  put_value(e, value);
}

typedef struct {
  const char *s;
  size_t n;
  int numeric;
  lua_Integer slot;
} sortkey;

static int sortkey_cmp(const void *a, const void *b) {
  const sortkey *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

static int put_sorted_members(encoder *e, int idx) {
  lua_State *L = e->L;
  lua_Integer count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) lua_pop(L, 1), count++;
  if (count == 0) return 0;
  if ((size_t)count > ((size_t)-1) / sizeof(sortkey)) luaL_error(L, "json encode: too many keys");
  lua_createtable(L, (int)(count * 2), 0); /* anchors keys and the text of number keys */
  int anchor = lua_gettop(L);
  sortkey *keys = lua_newuserdatauv(L, (size_t)count * sizeof *keys, 0);
  lua_Integer i = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    size_t n;
    char num[32];
    const char *k = key_text(e, -1, &n, num);
    keys[i].numeric = e->path[e->depth - 1].kind == SEG_NUMKEY;
    if (keys[i].numeric) {
      lua_pushlstring(L, k, n);
      k = lua_tostring(L, -1);
      lua_rawseti(L, anchor, 2 * i + 2);
    }
    keys[i].s = k;
    keys[i].n = n;
    keys[i].slot = 2 * i + 1;
    lua_pushvalue(L, -1);
    lua_rawseti(L, anchor, 2 * i + 1);
    i++;
  }
  qsort(keys, (size_t)count, sizeof *keys, sortkey_cmp);
  for (i = 0; i < count; i++) {
    seg *sg = top_seg(e);
    sg->kind = keys[i].numeric ? SEG_NUMKEY : SEG_KEY;
    sg->s = keys[i].s;
    sg->n = keys[i].n;
    lua_rawgeti(L, anchor, keys[i].slot);
    lua_rawget(L, idx);
    put_member(e, i == 0, keys[i].s, keys[i].n, lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return 1;
}

static void put_object(encoder *e, int idx) {
  lua_State *L = e->L;
  int any = 0;
  putch(e, '{');
  if (e->flags & COUCH_JSON_SORT_KEYS) {
    any = put_sorted_members(e, idx);
  } else {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      size_t n;
      char num[32];
      const char *k = key_text(e, -2, &n, num);
      put_member(e, !any, k, n, lua_gettop(L));
      any = 1;
      lua_pop(L, 1);
    }
  }
  e->depth--;
  if (any && (e->flags & COUCH_JSON_PRETTY)) newline(e);
  e->depth++;
  putch(e, '}');
}

/* Cycle check: the open tables are the path. Scanning it is cheapest for the shallow
 * documents of everyday use, but quadratic for deep ones (a hostile document of many
 * tables 1000 levels down): past SCAN_DEPTH the open tables also go into a Lua set. */
#define SCAN_DEPTH 16

static int is_open(encoder *e, const void *t) {
  lua_State *L = e->L;
  for (int k = 0; k < e->depth && k < SCAN_DEPTH; k++)
    if (e->path[k].table == t) return 1;
  if (e->depth <= SCAN_DEPTH) return 0;
  int found = lua_rawgetp(L, e->open, t) != LUA_TNIL;
  lua_pop(L, 1);
  return found;
}

static void set_open(encoder *e, const void *t, int open) {
  lua_State *L = e->L;
  if (e->depth < SCAN_DEPTH) return;
  if (lua_isnil(L, e->open)) {
    lua_newtable(L);
    lua_replace(L, e->open);
  }
  if (open) lua_pushboolean(L, 1);
  else lua_pushnil(L);
  lua_rawsetp(L, e->open, t);
}

static void put_table(encoder *e, int idx) {
  lua_State *L = e->L;
  const void *t = lua_topointer(L, idx);
  if (is_open(e, t)) fail(e, e->depth, "a cycle (a table that contains itself)");
  if (e->depth >= COUCH_JSON_MAX_DEPTH)
    fail(e, e->depth, "tables nested deeper than %d levels", COUCH_JSON_MAX_DEPTH);
  if (!lua_checkstack(L, 8)) fail(e, e->depth, "tables nested too deep for the Lua stack");
  lua_Integer n;
  int is_array = table_kind(L, idx, e->mt_array, e->mt_object, &n);
  if ((size_t)e->depth == e->path_cap) {
    size_t cap = e->path_cap ? e->path_cap * 4 : 16;
    seg *p = e->alloc(e->aud, e->path, e->path_cap * sizeof(seg), cap * sizeof(seg));
    if (!p) luaL_error(L, "json encode: not enough memory");
    e->path = p;
    e->path_cap = cap;
  }
  set_open(e, t, 1);
  e->path[e->depth++].table = t;
  if (is_array) put_array(e, idx, n);
  else put_object(e, idx);
  e->depth--;
  set_open(e, t, 0);
}

static void put_value(encoder *e, int idx) {
  lua_State *L = e->L;
  char buf[32];
  switch (lua_type(L, idx)) {
  case LUA_TNIL: put(e, "null", 4); break;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx)) put(e, "true", 4);
    else put(e, "false", 5);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      put(e, buf, couch_json_fmt_integer(lua_tointeger(L, idx), buf));
    } else {
      double d = lua_tonumber(L, idx);
      if (!isfinite(d)) fail(e, e->depth, "%s", isnan(d) ? "NaN" : d > 0 ? "inf" : "-inf");
      put(e, buf, couch_json_fmt_double(d, buf));
    }
    break;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    put_string(e, s, n, e->depth, "a string");
    break;
  }
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) put(e, "null", 4);
    else fail(e, e->depth, "a light userdata");
    break;
  case LUA_TUSERDATA: {
    if (lua_getmetatable(L, idx)) {
      int is_num = lua_rawequal(L, -1, e->mt_number);
      lua_pop(L, 1);
      if (is_num) {
        size_t n;
        const char *t = couch_json_tonumobj(L, idx, &n);
        put(e, t, n);
        break;
      }
    }
    const char *name = luaL_getmetafield(L, idx, "__name") == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    char what[96];
    snprintf(what, sizeof what, "a userdata%s%.60s%s", name ? " (" : "", name ? name : "",
             name ? ")" : "");
    fail(e, e->depth, "%s", what);
    break;
  }
  case LUA_TTABLE: put_table(e, idx); break;
  default: fail(e, e->depth, "a %s", luaL_typename(L, idx));
  }
}

const char *couch_json_encode_opts(lua_State *L, int idx, size_t *len, int flags, int indent) {
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 10, "json encode");
  int base = lua_gettop(L);
  encoder *e = lua_newuserdatauv(L, sizeof *e, 0);
  e->p = NULL;
  e->n = e->cap = 0;
  e->path = NULL;
  e->path_cap = 0;
  e->alloc = lua_getallocf(L, &e->aud);
  if (luaL_newmetatable(L, ENCODER_MT)) {
    lua_pushcfunction(L, encoder_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, encoder_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  couch_json_pushmeta(L, COUCH_JSON_ARRAY_MT);
  couch_json_pushmeta(L, COUCH_JSON_OBJECT_MT);
  couch_json_pushmeta(L, COUCH_JSON_NUMBER_MT);
  lua_pushnil(L); /* the open set */
  e->L = L;
  e->flags = flags;
  e->indent = indent > 0 ? indent : 2;
  e->depth = 0;
  e->mt_array = base + 2;
  e->mt_object = base + 3;
  e->mt_number = base + 4;
  e->open = base + 5;
  put_value(e, idx);
  lua_pushlstring(L, e->p ? e->p : "", e->n);
  encoder_free(e);
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
  return lua_tolstring(L, -1, len);
}

const char *couch_json_encode(lua_State *L, int idx, size_t *len) {
  return couch_json_encode_opts(L, idx, len, 0, 2);
}
