/* Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, parsed without trusting
 * the server: no float→integer overflow, no negative waits. */
#ifndef COUCH_RETRY_AFTER_H
#define COUCH_RETRY_AFTER_H

#include <time.h>

/* Seconds the value asks to wait (>= 0, possibly huge or infinite: cap it), or -1 when it is neither a number
 * nor a date. `now` is the current time, for dates. */
double couch_retry_after_parse(const char *value, time_t now);

#endif
