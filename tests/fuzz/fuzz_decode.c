/* couch.json.decode on any bytes: no crash, no leak, no undefined behaviour; a failure
 * names an offset inside the text; whatever decodes must encode (decode never makes a
 * value encode refuses, e.g. a string that is not UTF-8 or WTF-8), and decoding that
 * text gives a value that encodes to the very same bytes. */
#include "fuzz.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_lua();
  const char *text = (const char *)data;
  size_t off = (size_t)-1;
  if (!couch_json_decode_at(L, text, size, &off)) {
    FUZZ_CHECK(off <= size, "error offset %zu past the end (%zu bytes)", off, size);
    FUZZ_CHECK(lua_type(L, -1) == LUA_TSTRING, "the failure is not a message");
    fuzz_done();
    return 0;
  }
  FUZZ_CHECK(lua_gettop(L) == 1, "decode left %d values", lua_gettop(L));
  for (int sort = 0; sort <= 1; sort++) {
    lua_settop(L, 1);
    if (!fuzz_encode(L, 1, sort)) {
      fuzz_dump("input", text, size);
      FUZZ_CHECK(0, "a decoded value does not encode: %s", luaL_tolstring(L, -1, NULL));
    }
    size_t n1, n2;
    const char *once = lua_tolstring(L, 2, &n1);
    FUZZ_CHECK(couch_json_decode(L, once, n1), "encode wrote what decode refuses: %s",
               lua_tostring(L, -1));
    FUZZ_CHECK(fuzz_encode(L, 3, 1), "the second encode failed");
    const char *twice = lua_tolstring(L, 4, &n2);
    if (sort && (n1 != n2 || memcmp(once, twice, n1) != 0)) {
      fuzz_dump("input", text, size);
      fuzz_dump("encoded", once, n1);
      fuzz_dump("re-encoded", twice, n2);
      FUZZ_CHECK(0, "encode(decode(encode(v))) differs from encode(v)");
    }
  }
  fuzz_done();
  return 0;
}
