/* What every harness shares (see fuzz.h). */
#include "fuzz.h"

#include <lualib.h>
#include <string.h>

/* One state for the run, emptied and fully collected after each input, so that what one
 * input made cannot change how the next one runs; a fresh state per input would do the
 * same at a third of the speed. Lua's caches (string table, API string cache) still keep
 * a few blocks from one input to the next: scripts/fuzz checks leaks at exit and on a
 * replay of the corpus, not after every input (see there). */
static lua_State *state;

lua_State *fuzz_lua(void) {
  if (!state) {
    state = luaL_newstate();
    if (!state) abort();
    luaL_requiref(state, "couch.json", luaopen_couch_json, 0);
    lua_setglobal(state, "json");
    lua_gc(state, LUA_GCCOLLECT);
  }
  lua_settop(state, 0);
  return state;
}

void fuzz_done(void) {
  lua_settop(state, 0);
  lua_gc(state, LUA_GCCOLLECT);
}

static int encode(lua_State *L) {
  size_t n;
  couch_json_encode_opts(L, 1, &n, lua_toboolean(L, 2) ? COUCH_JSON_SORT_KEYS : 0, 2);
  return 1;
}

int fuzz_encode(lua_State *L, int idx, int sort) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, encode);
  lua_pushvalue(L, idx);
  lua_pushboolean(L, sort);
  return lua_pcall(L, 2, 1, 0) == LUA_OK;
}

void fuzz_dump(const char *label, const char *s, size_t len) {
  fprintf(stderr, "%s (%zu bytes): \"", label, len);
  for (size_t i = 0; i < len && i < 400; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') fputc(c, stderr);
    else fprintf(stderr, "\\x%02x", c);
  }
  fprintf(stderr, "%s\"\n", len > 400 ? "..." : "");
}
