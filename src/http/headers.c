/* The final response's headers, parsed once as libcurl hands over each line (the answer
 * to Lua, retries and redirects all read them from here), and the session cookie, which
 * goes to the connection instead. */
#include "http/request.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A session cookie is the connection's business, not the caller's: kept there, never
 * among the response's headers. */
static void take_cookie(couch_request *r, const char *v, size_t len) {
  if (len < 12 || strncmp(v, "AuthSession=", 12) != 0) return;
  char *cookie = strndup(v, strcspn(v, ";"));
  if (!cookie) return;
  if (r->conn->cookie) memset(r->conn->cookie, 0, strlen(r->conn->cookie));
  free(r->conn->cookie);
  r->conn->cookie = cookie;
}

/* Parse each header line once, as it arrives, into "name\0value\0" with the name
 * lowercased; keep the last response's only (a redirect or 100-continue starts anew). */
size_t couch_request_on_header(char *data, size_t size, size_t n, void *ud) {
  couch_request *r = ud;
  size_t len = size * n;
  if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
    r->hdr_len = 0;
    return len;
  }
  const char *colon = memchr(data, ':', len);
  if (!colon) return len; /* the blank line after the headers, or junk */
  size_t nl = (size_t)(colon - data);
  const char *v = colon + 1, *end = data + len;
  while (v < end && (*v == ' ' || *v == '\t')) v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t')) end--;
  size_t vl = (size_t)(end - v);
  if (nl == 10 && strncasecmp(data, "set-cookie", 10) == 0) {
    char value[4096];
    if (vl < sizeof value) {
      memcpy(value, v, vl);
      value[vl] = '\0';
      take_cookie(r, value, vl);
    }
    return len;
  }
  if (couch_request_grow(&r->resp_headers, &r->hdr_cap, r->hdr_len + nl + vl + 2)) return 0;
  char *out = r->resp_headers + r->hdr_len;
  for (size_t i = 0; i < nl; i++) out[i] = (char)tolower((unsigned char)data[i]);
  out[nl] = '\0';
  memcpy(out + nl + 1, v, vl);
  out[nl + 1 + vl] = '\0';
  r->hdr_len += nl + vl + 2;
  return len;
}

int couch_request_next_header(const couch_request *r, size_t *pos, const char **name, const char **value) {
  if (*pos >= r->hdr_len) return 0;
  *name = r->resp_headers + *pos;
  *value = *name + strlen(*name) + 1;
  *pos = (size_t)(*value - r->resp_headers) + strlen(*value) + 1;
  return 1;
}

const char *couch_request_header(const couch_request *r, const char *name, char *buf, size_t size) {
  size_t pos = 0;
  const char *k, *v;
  while (couch_request_next_header(r, &pos, &k, &v)) {
    if (strcmp(k, name) != 0) continue;
    snprintf(buf, size, "%s", v);
    return buf;
  }
  return NULL;
}

