/* couch._md5_hex(s): the hash behind replication ids (CouchDB's are md5 hex too), from
 * libcrypto rather than a hand-written copy. */
#include "replicate/slice.h"

#include <lauxlib.h>
#include <openssl/evp.h>

static int l_md5_hex(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!EVP_Digest(s, len, md, &n, EVP_md5(), NULL)) return luaL_error(L, "md5 failed");
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  static const char digits[] = "0123456789abcdef";
  for (unsigned int i = 0; i < n; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  lua_pushlstring(L, hex, 2 * n);
  return 1;
}

void couch_repid_open(lua_State *L) {
  lua_pushcfunction(L, l_md5_hex);
  lua_setfield(L, -2, "_md5_hex");
}
