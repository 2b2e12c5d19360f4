/* URL pieces: percent-escaping of path segments, query strings from Lua tables (JSON
 * where CouchDB expects JSON), and credential redaction for anything we print. */
#ifndef COUCH_URL_H
#define COUCH_URL_H

#include <lua.h>
#include <stddef.h>

/* Push s with every byte but ALPHA / DIGIT / - . _ ~ percent-encoded. */
void couch_url_push_escaped(lua_State *L, const char *s, size_t len);

/* Append "?k=v&..." for the table at idx (nothing for nil / an empty table) to the string
 * on top of the stack, replacing it. Keys are sorted so URLs are stable. */
void couch_url_append_query(lua_State *L, int idx);

/* Push url with any user:password@ removed (and token-like query values masked). */
void couch_url_push_redacted(lua_State *L, const char *url);

/* Lua: couch.escape(s), couch.redact(url). Adds them to the table on top. */
void couch_url_open(lua_State *L);

#endif
