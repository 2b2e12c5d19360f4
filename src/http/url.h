/* URL pieces: percent-escaping of path segments, query strings from Lua tables (JSON
 * where CouchDB expects JSON), and credential redaction for anything we print. */
#ifndef COUCH_URL_H
#define COUCH_URL_H

#include <lua.h>
#include <stddef.h>

/* Write s with every byte but ALPHA / DIGIT / - . _ ~ percent-encoded into out (3 * len
 * bytes are enough); returns the length written. No Lua: credentials pass through it. */
size_t couch_url_escape(char *out, const char *s, size_t len);
/* Push the same as a Lua string. */
void couch_url_push_escaped(lua_State *L, const char *s, size_t len);
/* Decode every %XX (two hex digits) of s into out (len bytes are enough); other bytes,
 * a lone '%' too, are copied. Returns the length written. */
size_t couch_url_unescape(char *out, const char *s, size_t len);

/* Append "?k=v&..." for the table at idx (nothing for nil / an empty table) to the string
 * on top of the stack, replacing it. Keys are sorted so URLs are stable. */
void couch_url_append_query(lua_State *L, int idx);

/* Push url with any user:password@ removed: the one redactor, used by the Lua half too
 * (couch.url.redact). */
void couch_url_push_redacted(lua_State *L, const char *url);

/* Lua: couch.escape(s), couch.redact(url). Adds them to the table on top. */
void couch_url_open(lua_State *L);
/* require "couch.url" -> {escape, unescape, redact, redact_value (a string that may not
 * be a URL: only one starting with scheme:// loses its userinfo)}: the same functions for the Lua half
 * (lua/couch/), which must not depend on the module table being built. */
int luaopen_couch_url(lua_State *L);

#endif
