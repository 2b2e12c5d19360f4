/* UTF-8 as JSON text may hold it (RFC 3629: no overlong forms, no surrogates, nothing past
 * U+10FFFF), and the one extension couch.json keeps strings in: WTF-8, where a lone
 * surrogate code unit (from a "\ud800" escape) is written as if it were a character,
 * ED A0..BF 80..BF. Shared by the scanner (what decode accepts), the string decoder and
 * the encoder, so the three agree byte for byte. */
#include "json/json.h"

size_t couch_json_utf8_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
#define CONT(k) (n > (k) && (s[k] & 0xC0) == 0x80)
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return CONT(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!CONT(1) || !CONT(2)) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
    if (c == 0xED && s[1] > 0x9F) return 0; /* surrogate */
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!CONT(1) || !CONT(2) || !CONT(3)) return 0;
    if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
    if (c == 0xF4 && s[1] > 0x8F) return 0; /* above U+10FFFF */
    return 4;
  }
#undef CONT
  return 0;
}

unsigned couch_json_wtf8_surrogate(const unsigned char *s, size_t n) {
  if (n < 3 || s[0] != 0xED || s[1] < 0xA0 || s[1] > 0xBF || (s[2] & 0xC0) != 0x80) return 0;
  return 0xD000u | ((unsigned)(s[1] & 0x3F) << 6) | (unsigned)(s[2] & 0x3F);
}

size_t couch_json_wtf8_put(unsigned cp, char *out) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) { /* surrogates too: that is the WTF-8 part */
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}
