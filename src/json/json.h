/* couch.json: a lossless JSON codec on yajl. Documents pass through couchlua, so nothing
 * may change on the way: 64-bit integers stay integers, floats that would not print back
 * to the same text stay exact number objects, arrays and objects keep their kind (empty
 * ones too) through metatables, and couch.json.null is cjson.null (a NULL lightuserdata). */
#ifndef COUCH_JSON_H
#define COUCH_JSON_H

#include <lua.h>
#include <stddef.h>

/* Decode text[0..len) and push the value: returns 1. On invalid JSON pushes a message
 * (naming the offset and what was found) and returns 0. */
int couch_json_decode(lua_State *L, const char *text, size_t len);

/* Encode the value at idx, push the JSON string and return a pointer to it (len set).
 * Raises a `json` error object for values JSON cannot hold (functions, cycles, NaN...). */
const char *couch_json_encode(lua_State *L, int idx, size_t *len);

/* Push couch.json.array / couch.json.object metatable-marked new empty tables. */
void couch_json_newarray(lua_State *L);
void couch_json_newobject(lua_State *L);

/* The module table {encode, decode, null, array, object, number, is_array, ...}. */
int luaopen_couch_json(lua_State *L);

#endif
