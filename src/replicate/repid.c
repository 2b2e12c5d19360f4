/* internal.md5_hex(s): the hash behind replication ids (CouchDB's are md5 hex too), from
 * libcrypto rather than a hand-written copy. */
#include "replicate/slice.h"

#include "hex.h"

#include <lauxlib.h>
#include <openssl/evp.h>
#include <sys/random.h>

static int l_md5_hex(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!EVP_Digest(s, len, md, &n, EVP_md5(), NULL)) return luaL_error(L, "md5 failed");
  char hex[2 * EVP_MAX_MD_SIZE];
  couch_hex_encode(hex, md, n);
  lua_pushlstring(L, hex, 2 * n);
  return 1;
}

/* internal.random_hex(nbytes) -> hex of that many bytes from the kernel: ids must not collide
 * between processes started together (math.random's seed can be the same in both). */
static int l_random_hex(lua_State *L) {
  lua_Integer n = luaL_optinteger(L, 1, 16);
  unsigned char buf[64];
  if (n < 1 || n > (lua_Integer)sizeof buf) return luaL_argerror(L, 1, "1..64 bytes");
  if (getrandom(buf, (size_t)n, 0) != (ssize_t)n) return luaL_error(L, "getrandom failed");
  char hex[2 * sizeof buf];
  couch_hex_encode(hex, buf, (size_t)n);
  lua_pushlstring(L, hex, (size_t)(2 * n));
  return 1;
}

void couch_repid_open(lua_State *L) {
  lua_pushcfunction(L, l_random_hex);
  lua_setfield(L, -2, "random_hex");
  lua_pushcfunction(L, l_md5_hex);
  lua_setfield(L, -2, "md5_hex");
}
