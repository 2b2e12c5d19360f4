#include "couch/options.h"

#include "error.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

static int field(lua_State *L, int idx, const char *name) {
  if (lua_type(L, idx) != LUA_TTABLE) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  return lua_getfield(L, idx, name);
}

const char *couch_opt_string(lua_State *L, int idx, const char *name, const char *def) {
  idx = lua_absindex(L, idx);
  int t = field(L, idx, name);
  lua_pop(L, 1);
  if (t == LUA_TNIL) return def;
  if (t != LUA_TSTRING) couch_error_usage(L, name, "expected a string, got %s", lua_typename(L, t));
  lua_getfield(L, idx, name); /* the string stays alive in the table */
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

lua_Number couch_opt_number(lua_State *L, int idx, const char *name, lua_Number def) {
  idx = lua_absindex(L, idx);
  int t = field(L, idx, name);
  lua_Number v = def;
  if (t == LUA_TNUMBER) {
    v = lua_tonumber(L, -1);
    if (v < 0 || v != v) couch_error_usage(L, name, "must be a number >= 0");
  } else if (t != LUA_TNIL) {
    couch_error_usage(L, name, "expected a number, got %s", lua_typename(L, t));
  }
  lua_pop(L, 1);
  return v;
}

int couch_opt_bool(lua_State *L, int idx, const char *name, int def) {
  idx = lua_absindex(L, idx);
  int t = field(L, idx, name);
  int v = def;
  if (t == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL) couch_error_usage(L, name, "expected a boolean, got %s", lua_typename(L, t));
  lua_pop(L, 1);
  return v;
}

/* Edit distance between a and b (the usual two-row Levenshtein), capped for long names. */
static size_t distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63) return (size_t)-1;
  size_t prev[64], cur[64];
  for (size_t j = 0; j <= lb; j++) prev[j] = j;
  for (size_t i = 1; i <= la; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
      size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
      cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
    }
    memcpy(prev, cur, (lb + 1) * sizeof *prev);
  }
  return prev[lb];
}

/* Raise: "bad argument 'k': unknown option of what (did you mean 'x'?)". `nearest` is the
 * closest known name or NULL. */
static void unknown(lua_State *L, const char *k, const char *what, const char *nearest) {
  if (nearest)
    couch_error_usage(L, k ? k : "?", "unknown option of %s (did you mean '%s'?)", what, nearest);
  couch_error_usage(L, k ? k : "?", "unknown option of %s", what);
}

/* A known name counts as "near" when a third of it or less would change. */
static int near_enough(const char *k, const char *known, size_t d) {
  size_t n = strlen(known) > strlen(k) ? strlen(known) : strlen(k);
  return d <= 1 || d * 3 <= n;
}

void couch_options_check_known(lua_State *L, int idx, const char *what, const char *const known[]) {
  idx = lua_absindex(L, idx);
  if (lua_isnoneornil(L, idx)) return;
  if (lua_type(L, idx) != LUA_TTABLE)
    couch_error_usage(L, what, "expected a table of options, got %s", luaL_typename(L, idx));
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    int ok = 0;
    for (int i = 0; k && known[i] && !ok; i++) {
      size_t d = distance(k, known[i]);
      if (d == 0) ok = 1;
      else if (d < best_d && near_enough(k, known[i], d)) best = known[i], best_d = d;
    }
    if (!ok) unknown(L, k, what, best);
  }
}

/* Whether value at idx has the type named `want` ("integer": a number with no fraction). */
static int has_type(lua_State *L, int idx, const char *want, size_t len) {
  int t = lua_type(L, idx);
#define IS(name) (len == sizeof name - 1 && memcmp(want, name, len) == 0)
  if (IS("any")) return 1;
  if (IS("integer")) {
    if (lua_isinteger(L, idx)) return 1;
    if (t != LUA_TNUMBER) return 0;
    lua_Number n = lua_tonumber(L, idx);
    return n == (lua_Number)(lua_Integer)n;
  }
  return len == strlen(lua_typename(L, t)) && memcmp(want, lua_typename(L, t), len) == 0;
#undef IS
}

/* internal.check_options(opts, what, spec): spec maps each known option to its type name
 * ("string", "boolean", "integer", "number", "table", "function", "any", or several joined
 * by "|"). Raises a `usage` error naming an unknown option (and the nearest known one) or
 * one of the wrong type; returns opts. nil opts are fine. */
static int l_check_options(lua_State *L) {
  const char *what = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  if (lua_isnil(L, 1)) {
    lua_pushnil(L); /* returns opts: nil (not the spec on top) */
    return 1;
  }
  if (!lua_istable(L, 1))
    return couch_error_usage(L, what, "expected a table of options, got %s", luaL_typename(L, 1));
  lua_pushnil(L);
  while (lua_next(L, 1)) { /* key -2, value -1 */
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    const char *spec = NULL;
    if (k) {
      lua_pushvalue(L, -2);
      lua_rawget(L, 3);
      spec = lua_tostring(L, -1);
      lua_pop(L, 1); /* the string stays alive in the spec table */
    }
    if (!spec) {
      const char *best = NULL;
      size_t best_d = (size_t)-1;
      lua_pushnil(L);
      while (k && lua_next(L, 3)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) continue;
        const char *name = lua_tostring(L, -1);
        size_t d = distance(k, name);
        if (d < best_d && near_enough(k, name, d)) best = name, best_d = d;
      }
      if (best) lua_pushstring(L, best); /* copied before the spec key's iteration ends */
      unknown(L, k, what, best ? lua_tostring(L, -1) : NULL);
    }
    int ok = 0;
    for (const char *p = spec; !ok;) {
      const char *bar = strchr(p, '|');
      size_t len = bar ? (size_t)(bar - p) : strlen(p);
      ok = has_type(L, -1, p, len);
      if (!bar) break;
      p = bar + 1;
    }
    if (!ok) {
      char types[64];
      snprintf(types, sizeof types, "%s", spec);
      for (char *c = types; *c; c++)
        if (*c == '|') *c = '/';
      couch_error_usage(L, k, "expected %s %s, got %s", strchr("aeiou", types[0]) ? "an" : "a",
                        types, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 1);
  return 1;
}

void couch_options_open(lua_State *L) {
  lua_pushcfunction(L, l_check_options);
  lua_setfield(L, -2, "check_options");
}
