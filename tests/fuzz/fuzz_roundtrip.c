/* encode -> decode keeps every value exactly. The input bytes drive a generator of Lua
 * values: integers, floats by bit pattern (both zeros, subnormals), number objects with
 * valid number text, strings of raw bytes or of UTF-16 code units (lone surrogates in
 * WTF-8 too), marked and plain arrays and objects, empty ones, chains nested past the
 * encoder's path growth (16, 64, 256). Whatever encodes must decode to the same value:
 * integer vs float, the double's bits (so -0.0), number text by exact decimal value,
 * string bytes, array vs object; and encoding that again (keys sorted) is a fixed point.
 * Encode may refuse only strings: bytes that are neither UTF-8 nor WTF-8. */
#include "fuzz.h"

#include <math.h>
#include <string.h>

typedef struct {
  const uint8_t *p;
  size_t n;
  int raw_strings; /* a string of arbitrary bytes was made: encode may refuse it */
} source;

static unsigned take(source *s) {
  if (!s->n) return 0;
  s->n--;
  return *s->p++;
}

static uint64_t take64(source *s) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | take(s);
  return v;
}

/* A valid JSON number text: -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)? */
static void push_number_text(lua_State *L, source *s) {
  char t[80];
  size_t k = 0;
  unsigned shape = take(s);
  if (shape & 1) t[k++] = '-';
  unsigned digits = 1 + take(s) % 30;
  t[k++] = (char)((shape & 2) ? '0' : '1' + take(s) % 9);
  if (!(shape & 2))
    for (unsigned i = 1; i < digits; i++) t[k++] = (char)('0' + take(s) % 10);
  if (shape & 4) {
    t[k++] = '.';
    unsigned frac = 1 + take(s) % 20;
    for (unsigned i = 0; i < frac; i++) t[k++] = (char)('0' + take(s) % 10);
  }
  if (shape & 8) {
    t[k++] = (shape & 16) ? 'e' : 'E';
    if (shape & 32) t[k++] = (shape & 64) ? '-' : '+';
    unsigned ed = 1 + take(s) % 4;
    for (unsigned i = 0; i < ed; i++) t[k++] = (char)('0' + take(s) % 10);
  }
  FUZZ_CHECK(couch_json_numtext_valid(t, k), "generator made bad number text %.*s", (int)k, t);
  couch_json_pushnumobj(L, t, k);
}

/* A string of UTF-16 code units written as WTF-8: surrogates in pairs become the code
 * point, a lone one its own 3 bytes; never a high one's bytes right before a low one's. */
static void push_units(lua_State *L, source *s) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  unsigned n = take(s) % 16, prev_high = 0;
  for (unsigned i = 0; i < n; i++) {
    unsigned kind = take(s) % 6, u;
    switch (kind) {
    case 0: u = 0xD800 + (take(s) << 2 | (take(s) & 3)) % 0x400; break; /* high */
    case 1: u = 0xDC00 + (take(s) << 2 | (take(s) & 3)) % 0x400; break; /* low */
    case 2: u = take(s) % 0x80; break;
    case 3: u = (take(s) << 8 | take(s)); break; /* any BMP unit */
    case 4: u = 0x10000 + (take(s) << 12 | take(s) << 4 | (take(s) & 15)) % 0x100000; break;
    default: u = 0x80 + take(s) * 7; break;
    }
    if (u >= 0xDC00 && u <= 0xDFFF && prev_high) u = 'x'; /* that would be a pair */
    char out[4];
    luaL_addlstring(&b, out, couch_json_wtf8_put(u, out));
    prev_high = u >= 0xD800 && u <= 0xDBFF;
  }
  luaL_pushresult(&b);
}

static void push_raw_string(lua_State *L, source *s) {
  char buf[64];
  size_t n = take(s) % sizeof buf;
  for (size_t i = 0; i < n; i++) buf[i] = (char)take(s);
  lua_pushlstring(L, buf, n);
  s->raw_strings = 1;
}

static void push_key(lua_State *L, source *s) {
  if (take(s) & 1) push_units(L, s);
  else lua_pushfstring(L, "k%d", (int)take(s));
}

static void gen(lua_State *L, source *s, int depth);

static void gen_children(lua_State *L, source *s, int depth, int kind) {
  unsigned n = take(s) % 6;
  int t = lua_gettop(L);
  for (unsigned i = 1; i <= n; i++) {
    if (kind == 1) { /* array */
      gen(L, s, depth + 1);
      lua_rawseti(L, t, i);
    } else {
      push_key(L, s);
      gen(L, s, depth + 1);
      lua_rawset(L, t);
    }
  }
}

static void gen(lua_State *L, source *s, int depth) {
  luaL_checkstack(L, 8, "generator");
  unsigned c = s->n ? take(s) % 14 : 13;
  if (depth > 12 && c >= 7 && c <= 11) c = 0;
  switch (c) {
  case 0: lua_pushinteger(L, (lua_Integer)take64(s)); break;
  case 1: lua_pushinteger(L, (lua_Integer)(int8_t)take(s)); break;
  case 2: {
    uint64_t bits = take64(s);
    double d;
    memcpy(&d, &bits, sizeof d);
    lua_pushnumber(L, isfinite(d) ? d : -0.0);
    break;
  }
  case 3: {
    static const double special[] = {0.0, -0.0, 1.0, -1.0, 0.1, 1e300, 5e-324, 2.5e-308, 1e15,
                                     1e16, 9007199254740993.0, 0.30000000000000004};
    lua_pushnumber(L, special[take(s) % (sizeof special / sizeof *special)]);
    break;
  }
  case 4: push_number_text(L, s); break;
  case 5: push_units(L, s); break;
  case 6: push_raw_string(L, s); break;
  case 7: couch_json_newarray(L); gen_children(L, s, depth, 1); break;
  case 8: couch_json_newobject(L); gen_children(L, s, depth, 0); break;
  case 9: /* a plain table: a sequence 1..n is an array, anything else an object */
    lua_newtable(L);
    gen_children(L, s, depth, take(s) & 1);
    break;
  case 10: { /* a chain past the path's growth points, with a sibling after it */
    /* where the path stack grows; 256 seldom: the encoder's cycle check is linear in
     * the depth, and traced comparisons make deep chains the fuzzer's slowest inputs */
    static const unsigned around[] = {16, 64, 16, 64, 16, 64, 16, 256};
    unsigned pick = take(s), n = around[pick % 8] - 4 + (pick >> 3) % 8;
    couch_json_newarray(L);
    for (unsigned i = 0; i < n; i++) {
      couch_json_newarray(L);
      lua_insert(L, -2);
      lua_rawseti(L, -2, 1);
    }
    couch_json_newarray(L);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    gen(L, s, depth + 1);
    lua_rawseti(L, -2, 2);
    break;
  }
  case 11: lua_pushboolean(L, take(s) & 1); break;
  case 12: lua_pushlightuserdata(L, NULL); break;
  default: lua_pushinteger(L, 0);
  }
}

/* The exact decimal value of number text equals the decoded value's. */
static void check_number(lua_State *L, int orig, int got, const char *path) {
  size_t tn, gn;
  const char *t = couch_json_tonumobj(L, orig, &tn), *g;
  char buf[40];
  if ((g = couch_json_tonumobj(L, got, &gn))) {
    FUZZ_CHECK(tn == gn && memcmp(t, g, tn) == 0, "%s: number text %.*s came back as %.*s", path,
               (int)tn, t, (int)gn, g);
    return;
  }
  FUZZ_CHECK(lua_type(L, got) == LUA_TNUMBER, "%s: number text %.*s came back as a %s", path,
             (int)tn, t, luaL_typename(L, got));
  if (lua_isinteger(L, got)) gn = couch_json_fmt_integer(lua_tointeger(L, got), buf);
  else {
    double d = lua_tonumber(L, got);
    gn = couch_json_fmt_double(d, buf);
    if (d == 0) FUZZ_CHECK(!signbit(d) == (t[0] != '-'), "%s: %.*s lost its sign", path, (int)tn, t);
  }
  FUZZ_CHECK(couch_json_numtext_cmp(t, tn, buf, gn) == 0, "%s: number text %.*s came back as %s",
             path, (int)tn, t, buf);
}

static int is_marked(lua_State *L, int idx, const char *mt) {
  if (!lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, mt);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

static void check_same(lua_State *L, int orig, int got, const char *path);

static void check_table(lua_State *L, int orig, int got, const char *path) {
  int is_array = couch_json_table_kind(L, orig) == 1;
  FUZZ_CHECK(lua_type(L, got) == LUA_TTABLE, "%s: a table came back as a %s", path,
             luaL_typename(L, got));
  FUZZ_CHECK(is_marked(L, got, is_array ? COUCH_JSON_ARRAY_MT : COUCH_JSON_OBJECT_MT),
             "%s: an %s came back as the other kind", path, is_array ? "array" : "object");
  lua_Integer count = 0, got_count = 0;
  lua_pushnil(L);
  while (lua_next(L, orig)) {
    char sub[64];
    count++;
    lua_pushvalue(L, -2);
    lua_rawget(L, got);
    snprintf(sub, sizeof sub, "%.40s/%lld", path, (long long)count);
    FUZZ_CHECK(!lua_isnil(L, -1), "%s: member %lld is missing", path, (long long)count);
    check_same(L, lua_absindex(L, -2), lua_absindex(L, -1), sub);
    lua_pop(L, 2);
  }
  lua_pushnil(L);
  while (lua_next(L, got)) lua_pop(L, 1), got_count++;
  FUZZ_CHECK(count == got_count, "%s: %lld members became %lld", path, (long long)count,
             (long long)got_count);
}

static void check_same(lua_State *L, int orig, int got, const char *path) {
  luaL_checkstack(L, 8, "check");
  switch (lua_type(L, orig)) {
  case LUA_TNUMBER:
    FUZZ_CHECK(lua_type(L, got) == LUA_TNUMBER && lua_isinteger(L, orig) == lua_isinteger(L, got),
               "%s: %s came back as %s", path, luaL_tolstring(L, orig, NULL),
               luaL_tolstring(L, got, NULL));
    if (lua_isinteger(L, orig)) {
      FUZZ_CHECK(lua_tointeger(L, orig) == lua_tointeger(L, got), "%s: integer changed", path);
    } else {
      double a = lua_tonumber(L, orig), b = lua_tonumber(L, got);
      FUZZ_CHECK(memcmp(&a, &b, sizeof a) == 0, "%s: float %.17g came back as %.17g", path, a, b);
    }
    break;
  case LUA_TSTRING: {
    size_t an, bn;
    const char *a = lua_tolstring(L, orig, &an), *b;
    FUZZ_CHECK(lua_type(L, got) == LUA_TSTRING, "%s: a string came back as a %s", path,
               luaL_typename(L, got));
    b = lua_tolstring(L, got, &bn);
    if (an != bn || memcmp(a, b, an) != 0) {
      fuzz_dump("string", a, an);
      fuzz_dump("came back as", b, bn);
      FUZZ_CHECK(0, "%s: a string changed", path);
    }
    break;
  }
  case LUA_TUSERDATA: check_number(L, orig, got, path); break;
  case LUA_TTABLE: check_table(L, orig, got, path); break;
  default: /* booleans, null */
    FUZZ_CHECK(lua_rawequal(L, orig, got), "%s: %s came back as %s", path,
               luaL_tolstring(L, orig, NULL), luaL_tolstring(L, got, NULL));
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_lua();
  source s = {data, size, 0};
  int sort = take(&s) & 1;
  gen(L, &s, 0); /* 1 */
  if (!fuzz_encode(L, 1, sort)) { /* 2 */
    FUZZ_CHECK(s.raw_strings, "encode refused a value it must take: %s",
               luaL_tolstring(L, -1, NULL));
    FUZZ_CHECK(lua_istable(L, 2), "encode raised a plain error: %s", luaL_tolstring(L, -1, NULL));
    lua_getfield(L, 2, "message");
    const char *m = lua_tostring(L, -1);
    FUZZ_CHECK(m && (strstr(m, "invalid UTF-8") || strstr(m, "surrogate pair")),
               "encode refused for another reason: %s", m ? m : "?");
    fuzz_done();
    return 0;
  }
  size_t n1, n2;
  const char *once = lua_tolstring(L, 2, &n1);
  if (!couch_json_decode(L, once, n1)) { /* 3 */
    fuzz_dump("encoded", once, n1);
    FUZZ_CHECK(0, "decode refused what encode wrote: %s", lua_tostring(L, -1));
  }
  check_same(L, 1, 3, "$");
  FUZZ_CHECK(fuzz_encode(L, 3, 1), "the decoded value does not encode"); /* 4 */
  const char *twice = lua_tolstring(L, 4, &n1);
  FUZZ_CHECK(couch_json_decode(L, twice, n1), "decode refused the second text"); /* 5 */
  FUZZ_CHECK(fuzz_encode(L, 5, 1), "the third encode failed"); /* 6 */
  const char *thrice = lua_tolstring(L, 6, &n2);
  FUZZ_CHECK(n1 == n2 && memcmp(twice, thrice, n1) == 0, "encoding is not a fixed point");
  fuzz_done();
  return 0;
}
