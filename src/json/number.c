/* Number objects (metatable couch.json.number): JSON numbers that neither a Lua integer
 * nor a Lua float can hold exactly keep their original text here, and encode back to it.
 * Also the decoding rule that picks integer, float or number object for a number text. */
#include "json/json.h"
#include "error.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  size_t len;
  char text[]; /* NUL-terminated */
} numobj;

void couch_json_pushnumobj(lua_State *L, const char *text, size_t len) {
  numobj *n = lua_newuserdatauv(L, sizeof *n + len + 1, 0);
  n->len = len;
  memcpy(n->text, text, len);
  n->text[len] = '\0';
  couch_json_pushmeta(L, COUCH_JSON_NUMBER_MT);
  lua_setmetatable(L, -2);
}

const char *couch_json_tonumobj(lua_State *L, int idx, size_t *len) {
  numobj *n = luaL_testudata(L, idx, COUCH_JSON_NUMBER_MT);
  if (!n) return NULL;
  if (len) *len = n->len;
  return n->text;
}

/* Integer text (no '.', no exponent) that fits a lua_Integer: 1 and *out set. */
static int text_to_integer(const char *s, size_t len, lua_Integer *out, int *negzero) {
  size_t i = 0;
  int neg = 0;
  unsigned long long u = 0;
  *negzero = 0;
  if (i < len && s[i] == '-') neg = 1, i++;
  if (i == len) return 0;
  for (; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    unsigned d = (unsigned)(s[i] - '0');
    if (u > (UINT64_MAX - d) / 10) return 0;
    u = u * 10 + d;
  }
  if (!neg && u > (unsigned long long)INT64_MAX) return 0;
  if (neg && u > (unsigned long long)INT64_MAX + 1) return 0;
  if (neg && u == 0) *negzero = 1;
  *out = neg ? (lua_Integer)(0 - u) : (lua_Integer)u;
  return 1;
}

static int is_integer_text(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (s[i] == '.' || s[i] == 'e' || s[i] == 'E') return 0;
  return 1;
}

void couch_json_pushnumtext(lua_State *L, const char *text, size_t len) {
  if (is_integer_text(text, len)) {
    lua_Integer i;
    int negzero;
    if (!text_to_integer(text, len, &i, &negzero)) couch_json_pushnumobj(L, text, len);
    else if (negzero) lua_pushnumber(L, -0.0);
    else lua_pushinteger(L, i);
    return;
  }
  double d;
  if (couch_json_numtext_float(text, len, &d)) lua_pushnumber(L, d);
  else couch_json_pushnumobj(L, text, len);
}

/* A Lua number as exact decimal text (floats are written out in full). */
static const char *exact_text(lua_State *L, int idx, char *buf, size_t size, size_t *len) {
  if (lua_isinteger(L, idx)) {
    *len = couch_json_fmt_integer(lua_tointeger(L, idx), buf);
    return buf;
  }
  double d = lua_tonumber(L, idx);
  if (!isfinite(d)) return NULL;
  int n = snprintf(buf, size, "%.*e", 800, d); /* glibc prints the exact binary value */
  for (int i = 0; i < n; i++)
    if (buf[i] != '-' && buf[i] != '+' && buf[i] != 'e' && (buf[i] < '0' || buf[i] > '9'))
      buf[i] = '.';
  *len = (size_t)n;
  return buf;
}

/* An operand of a comparison as a double (number object or Lua number). */
static double as_double(lua_State *L, int idx) {
  size_t n;
  const char *t = couch_json_tonumobj(L, idx, &n);
  return t ? couch_json_numtext_tod(t, n) : lua_tonumber(L, idx);
}

/* Compare operands 1 and 2 (at least one is a number object): -1, 0, 1, or 2 (unordered). */
static int compare(lua_State *L) {
  char buf[2][840];
  const char *t[2];
  size_t n[2];
  for (int k = 0; k < 2; k++) {
    if ((t[k] = couch_json_tonumobj(L, k + 1, &n[k]))) continue;
    if (lua_type(L, k + 1) != LUA_TNUMBER)
      return luaL_error(L, "attempt to compare %s with %s", luaL_typename(L, 1),
                        luaL_typename(L, 2));
    if (!(t[k] = exact_text(L, k + 1, buf[k], sizeof buf[k], &n[k]))) { /* inf, nan */
      double a = as_double(L, 1), b = as_double(L, 2);
      return a < b ? -1 : a > b ? 1 : a == b ? 0 : 2;
    }
  }
  return couch_json_numtext_cmp(t[0], n[0], t[1], n[1]);
}

static int num_eq(lua_State *L) {
  size_t na, nb;
  const char *a = couch_json_tonumobj(L, 1, &na), *b = couch_json_tonumobj(L, 2, &nb);
  lua_pushboolean(L, a && b && couch_json_numtext_cmp(a, na, b, nb) == 0);
  return 1;
}

static int num_lt(lua_State *L) {
  lua_pushboolean(L, compare(L) == -1);
  return 1;
}

static int num_le(lua_State *L) {
  int c = compare(L);
  lua_pushboolean(L, c == -1 || c == 0);
  return 1;
}

static int num_tostring(lua_State *L) {
  size_t n;
  const char *t = couch_json_tonumobj(L, 1, &n);
  lua_pushlstring(L, t, n);
  return 1;
}

static int num_concat(lua_State *L) {
  for (int i = 1; i <= 2; i++) {
    size_t n;
    const char *t = couch_json_tonumobj(L, i, &n);
    if (t) lua_pushlstring(L, t, n);
    else if (lua_type(L, i) == LUA_TSTRING || lua_type(L, i) == LUA_TNUMBER)
      luaL_tolstring(L, i, NULL);
    else
      return luaL_error(L, "attempt to concatenate a %s value", luaL_typename(L, i));
  }
  lua_concat(L, 2);
  return 1;
}

/* The exact value of number text as a Lua number: integer when it fits, else a float. */
static void push_approx(lua_State *L, const char *t, size_t n) {
  lua_Integer i;
  int negzero;
  if (is_integer_text(t, n) && text_to_integer(t, n, &i, &negzero)) {
    if (negzero) lua_pushnumber(L, -0.0);
    else lua_pushinteger(L, i);
  } else {
    lua_pushnumber(L, couch_json_numtext_tod(t, n));
  }
}

/* couch.json.tonumber(x): number objects and JSON number strings -> Lua number (may
 * round); numbers -> themselves; anything else -> fail (nil). */
static int l_tonumber(lua_State *L) {
  size_t n;
  const char *t = couch_json_tonumobj(L, 1, &n);
  if (t) push_approx(L, t, n);
  else if (lua_type(L, 1) == LUA_TNUMBER) lua_settop(L, 1);
  else if (lua_type(L, 1) != LUA_TSTRING) luaL_pushfail(L);
  else if (t = lua_tolstring(L, 1, &n), couch_json_numtext_valid(t, n)) push_approx(L, t, n);
  else luaL_pushfail(L);
  return 1;
}

/* couch.json.number(x): a number object from JSON number text, a Lua number, or one. */
static int l_number(lua_State *L) {
  char buf[32];
  size_t n;
  const char *t;
  switch (lua_type(L, 1)) {
  case LUA_TSTRING:
    t = lua_tolstring(L, 1, &n);
    if (!couch_json_numtext_valid(t, n))
      return couch_error_usage(L, "text", "not a JSON number: '%s'", t);
    couch_json_pushnumobj(L, t, n);
    return 1;
  case LUA_TNUMBER:
    if (lua_isinteger(L, 1)) n = couch_json_fmt_integer(lua_tointeger(L, 1), buf);
    else if (isfinite(lua_tonumber(L, 1))) n = couch_json_fmt_double(lua_tonumber(L, 1), buf);
    else return couch_error_usage(L, "text", "JSON has no NaN or infinity");
    couch_json_pushnumobj(L, buf, n);
    return 1;
  default:
    if (couch_json_tonumobj(L, 1, NULL)) {
      lua_settop(L, 1);
      return 1;
    }
    return couch_error_usage(L, "text", "expected a string or a number, got %s",
                             luaL_typename(L, 1));
  }
}

/* couch.json.is_number(x): true for a number object. */
static int l_is_number(lua_State *L) {
  lua_pushboolean(L, couch_json_tonumobj(L, 1, NULL) != NULL);
  return 1;
}

void couch_json_number_register(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"number", l_number}, {"tonumber", l_tonumber}, {"is_number", l_is_number}, {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}

void couch_json_number_init(lua_State *L) {
  static const luaL_Reg meta[] = {
      {"__tostring", num_tostring}, {"__eq", num_eq},         {"__lt", num_lt},
      {"__le", num_le},             {"__concat", num_concat}, {NULL, NULL}};
  if (luaL_newmetatable(L, COUCH_JSON_NUMBER_MT)) luaL_setfuncs(L, meta, 0);
  lua_pop(L, 1);
}
