/* Hex digits both ways (hex.h). */
#include "hex.h"

void couch_hex_encode(char *out, const unsigned char *in, size_t n) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
}

size_t couch_hex_percent(char *out, unsigned char b) {
  static const char digits[] = "0123456789ABCDEF";
  out[0] = '%';
  out[1] = digits[b >> 4];
  out[2] = digits[b & 15];
  return 3;
}

int couch_hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
