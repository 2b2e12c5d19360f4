/* Structured error objects: a table with the "couch.error" metatable and the fields
 * kind, status, error, reason, method, url (already redacted), retries, message.
 * tostring(err) is one readable line; couch.is_error(x) recognises them. */
#ifndef COUCH_ERROR_H
#define COUCH_ERROR_H

#include <lua.h>

/* Push a new error object of this kind with a formatted message (no other fields). */
void couch_error_push(lua_State *L, const char *kind, const char *fmt, ...);

/* Push and raise it. Never returns. */
int couch_error_raise(lua_State *L, const char *kind, const char *fmt, ...);

/* Raise a `usage` error naming a bad argument: "bad argument 'name': <why>". */
int couch_error_usage(lua_State *L, const char *argname, const char *fmt, ...);

/* Set field `key` of the error object at idx to a string / integer (NULL / skip allowed). */
void couch_error_setstr(lua_State *L, int idx, const char *key, const char *value);
void couch_error_setint(lua_State *L, int idx, const char *key, lua_Integer value);

/* True when the value at idx is an error object. */
int couch_error_is(lua_State *L, int idx);

/* Register the metatable; called once by luaopen_couch. */
void couch_error_init(lua_State *L);

#endif
