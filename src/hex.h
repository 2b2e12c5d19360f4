/* Hex digits both ways: percent-encoding and -decoding (src/http/url.c), digests and
 * random ids (src/replicate/repid.c). */
#ifndef COUCH_HEX_H
#define COUCH_HEX_H

#include <stddef.h>

/* Write the 2 * n lowercase hex digits of in[0..n) to out (no terminator). */
void couch_hex_encode(char *out, const unsigned char *in, size_t n);
/* Write "%XX" (uppercase, as RFC 3986 recommends) for byte b; returns 3. */
size_t couch_hex_percent(char *out, unsigned char b);
/* The value of one hex digit, or -1. */
int couch_hex_value(char c);

#endif
