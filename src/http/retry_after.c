#include "http/retry_after.h"

#include <curl/curl.h>
#include <math.h>
#include <stdlib.h>

double couch_retry_after_parse(const char *value, time_t now) {
  while (*value == ' ' || *value == '\t') value++;
  if (*value >= '0' && *value <= '9') {
    /* RFC 9110 says digits; "1.5" and "1e300" are read as numbers too (the caller caps) */
    char *end;
    double s = strtod(value, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (*end || isnan(s)) return -1;
    return s; /* may be huge or inf: the caller caps it before any conversion */
  }
  time_t at = curl_getdate(value, NULL);
  if (at == (time_t)-1) return -1;
  double s = difftime(at, now);
  return s < 0 ? 0 : s;
}
