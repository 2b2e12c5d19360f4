/* One pass over JSON text before yajl parses it, for what yajl lets through or gets wrong:
 *  - bytes no JSON text holds: invalid UTF-8 (yajl checks only the shape of a sequence,
 *    so overlong forms, encoded surrogates and code points past U+10FFFF pass) and raw
 *    control characters other than tab, LF and CR (yajl takes \f and \v as whitespace;
 *    inside a string none is allowed raw);
 *  - \u escapes of lone surrogates, which yajl mangles ("\ud800\u0041" -> U+10041) and an
 *    unpatched yajl 2.1.0 overruns its buffer on (CVE-2017-16516).
 * Backslashes are taken in order from the start: in valid JSON every one begins an escape
 * inside a string, and a stray one outside a string is a yajl error at that very byte,
 * before anything we might rewrite after it. */
#include "json/json.h"

#include <string.h>

static int is_surrogate(unsigned u) { return u >= 0xD800 && u <= 0xDFFF; }

void couch_json_scan(const char *text, size_t len, char *out, couch_json_scan_result *r) {
  const unsigned char *t = (const unsigned char *)text;
  size_t i = 0;
  r->lone = 0;
  r->why = NULL;
  if (out) memcpy(out, text, len);
  while (i < len) {
    unsigned char c = t[i];
    if (c >= 0x20 && c < 0x80 && c != '\\') {
      i++;
      continue;
    }
    if (c == '\\') {
      unsigned u, lo;
      if (i + 1 < len && t[i + 1] == 'u' && couch_json_hex4(text + i + 2, len - i - 2, &u) &&
          is_surrogate(u)) {
        if (u <= 0xDBFF && couch_json_low_surrogate_follows(text + i + 6, len - i - 6, &lo)) {
          i += 12; /* a pair: yajl decodes it right */
          continue;
        }
        r->lone++;
        if (out) memcpy(out + i + 2, "fffd", 4); /* same length: offsets do not move */
        i += 6;
        continue;
      }
      /* the escaped character is skipped unless it is a byte that needs checking */
      i += (i + 1 < len && t[i + 1] >= 0x20 && t[i + 1] < 0x7f) ? 2 : 1;
      continue;
    }
    if (c == '\t' || c == '\n' || c == '\r') {
      i++;
      continue;
    }
    if (c < 0x20) {
      r->why = c == '\f' || c == '\v'
                   ? "\\f and \\v are not JSON whitespace (and no control character may be "
                     "raw in a string)"
                   : "a raw control character (not allowed in JSON, escape it in a string)";
      break;
    }
    size_t k = couch_json_utf8_len(t + i, len - i);
    if (!k) {
      r->why = "invalid UTF-8 (an overlong form, a surrogate, a code point past U+10FFFF or "
               "a broken sequence)";
      break;
    }
    i += k;
  }
  r->bad = i;
}
