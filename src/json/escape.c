/* JSON string escapes decoded the way couch.json keeps strings: a surrogate pair becomes
 * its code point, a lone surrogate its WTF-8 bytes (yajl would give "?" or glue it to
 * the next escape, and an unpatched yajl 2.1.0 overruns its buffer on one). Used only for
 * strings that hold a lone surrogate escape; yajl decodes all others. */
#include "json/json.h"

#include <lauxlib.h>

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int couch_json_hex4(const char *s, size_t n, unsigned *out) {
  unsigned v = 0;
  if (n < 4) return 0;
  for (int k = 0; k < 4; k++) {
    int h = hexval((unsigned char)s[k]);
    if (h < 0) return 0;
    v = v << 4 | (unsigned)h;
  }
  *out = v;
  return 1;
}

int couch_json_low_surrogate_follows(const char *s, size_t n, unsigned *lo) {
  return n >= 6 && s[0] == '\\' && s[1] == 'u' && couch_json_hex4(s + 2, n - 2, lo) &&
         *lo >= 0xDC00 && *lo <= 0xDFFF;
}

size_t couch_json_unescape(const char *s, size_t n, char *out) {
  size_t i = 0, k = 0;
  while (i < n) {
    if (s[i] != '\\' || i + 1 >= n) {
      out[k++] = s[i++];
      continue;
    }
    char c = s[i + 1];
    unsigned u, lo;
    i += 2;
    switch (c) {
    case 'b': out[k++] = '\b'; break;
    case 'f': out[k++] = '\f'; break;
    case 'n': out[k++] = '\n'; break;
    case 'r': out[k++] = '\r'; break;
    case 't': out[k++] = '\t'; break;
    case 'u':
      if (!couch_json_hex4(s + i, n - i, &u)) { /* yajl's lexer lets none through */
        out[k++] = '\\';
        out[k++] = 'u';
        break;
      }
      i += 4;
      if (u >= 0xD800 && u <= 0xDBFF && couch_json_low_surrogate_follows(s + i, n - i, &lo)) {
        u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
        i += 6;
      }
      k += couch_json_wtf8_put(u, out + k);
      break;
    default: out[k++] = c; /* " \ / */
    }
  }
  return k;
}

/* The string token that ends at `end` (just past its closing quote): its opening quote is
 * the last '"' before the closing one that is not escaped (an even run of backslashes). */
static size_t token_open_quote(const char *t, size_t end) {
  for (size_t i = end - 1; i-- > 0;) {
    if (t[i] != '"') continue;
    size_t k = i;
    while (k > 0 && t[k - 1] == '\\') k--;
    if ((i - k) % 2 == 0) return i;
  }
  return 0;
}

void couch_json_push_token(lua_State *L, const char *raw, size_t end) {
  size_t start = token_open_quote(raw, end) + 1, n = end - 1 - start;
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, n);
  luaL_pushresultsize(&b, couch_json_unescape(raw + start, n, out));
}
