/* couch.json: a lossless JSON codec on yajl. Documents pass through couchlua, so nothing
 * may change on the way: 64-bit integers stay integers, floats that would not print back
 * to the same text stay exact number objects, arrays and objects keep their kind (empty
 * ones too) through metatables, and couch.json.null is cjson.null (a NULL lightuserdata).
 *
 * Rules (the module's documentation, see also module.c):
 *  decode  integer text in [-2^63, 2^63-1] -> Lua integer ("-0" -> float -0.0);
 *          other number text -> Lua float when the float's shortest round-trip text is
 *          the same decimal value, else a number object (metatable couch.json.number)
 *          holding the exact text; arrays / objects get the shared metatables
 *          couch.json.array / couch.json.object; null -> couch.json.null; a duplicate
 *          key: the last one wins; nesting deeper than COUCH_JSON_MAX_DEPTH is an error;
 *          the text must be what CouchDB's parser takes: strict UTF-8, whitespace only
 *          space, tab, LF, CR, nothing after the value; a surrogate pair escape becomes its
 *          code point. Unlike CouchDB 3, a lone surrogate escape ("\ud800") is accepted
 *          (documents from elsewhere hold them) and kept as its WTF-8 bytes (ED A0 80).
 *  encode  a table with the array metatable -> array of t[1..rawlen(t)] (nil -> null,
 *          other keys ignored); with the object metatable -> object; any other table:
 *          keys exactly 1..n (n >= 1) -> array, anything else (empty too) -> object with
 *          integer / float keys written as strings. Floats keep a '.' or an exponent
 *          (1.0 -> "1.0", -0.0 -> "-0.0"); number objects write their text. Strings must
 *          be valid UTF-8 or WTF-8 (a lone surrogate's bytes are written as its escape,
 *          "\ud800", so decoded strings come back as they came; a high surrogate's bytes
 *          right before a low one's are refused: they would read back as one character);
 *          control characters, '"' and '\' are escaped, '/' is not.
 *          Errors name the Lua path of the bad value: .docs[3].f (indices 1-based).
 *          Keys come out in table order unless COUCH_JSON_SORT_KEYS; an object holding
 *          both 1 and "1" as keys writes "1" twice. */
#ifndef COUCH_JSON_H
#define COUCH_JSON_H

#include <lua.h>
#include <stddef.h>

#define COUCH_JSON_MAX_DEPTH 1000

#define COUCH_JSON_ARRAY_MT "couch.json.array"
#define COUCH_JSON_OBJECT_MT "couch.json.object"
#define COUCH_JSON_NUMBER_MT "couch.json.number"

/* Decode text[0..len) and push the value: returns 1. On invalid JSON pushes a message
 * (naming the offset and what was found) and returns 0. */
int couch_json_decode(lua_State *L, const char *text, size_t len);

/* The same; on failure also stores the byte offset of the error in *offset (if not NULL). */
int couch_json_decode_at(lua_State *L, const char *text, size_t len, size_t *offset);

/* Encode the value at idx, push the JSON string and return a pointer to it (len set).
 * Raises a `json` error object for values JSON cannot hold (functions, cycles, NaN...). */
const char *couch_json_encode(lua_State *L, int idx, size_t *len);

/* The same with options: flags are COUCH_JSON_PRETTY / COUCH_JSON_SORT_KEYS; indent is
 * the number of spaces per level when pretty (0 -> 2). */
#define COUCH_JSON_PRETTY 1
#define COUCH_JSON_SORT_KEYS 2
const char *couch_json_encode_opts(lua_State *L, int idx, size_t *len, int flags, int indent);

/* Push couch.json.array / couch.json.object metatable-marked new empty tables. */
void couch_json_newarray(lua_State *L);
void couch_json_newobject(lua_State *L);

/* Register the three metatables (idempotent; done by luaopen_couch_json and on demand). */
void couch_json_init(lua_State *L);

/* Push the named metatable (one of the COUCH_JSON_*_MT), registering them if needed. */
void couch_json_pushmeta(lua_State *L, const char *name);

/* How encode writes the table at idx: 1 array, 0 object (-1 when not a table). */
int couch_json_table_kind(lua_State *L, int idx);

/* Number objects: exact JSON number text in a userdata with metatable couch.json.number. */
void couch_json_pushnumobj(lua_State *L, const char *text, size_t len);
/* The text of the number object at idx, or NULL when it is not one. */
const char *couch_json_tonumobj(lua_State *L, int idx, size_t *len);
/* Push the decoded value of JSON number text (integer, float or number object). */
void couch_json_pushnumtext(lua_State *L, const char *text, size_t len);
void couch_json_number_init(lua_State *L);
/* Set number, tonumber, is_number (the functions about number objects) in the table on top. */
void couch_json_number_register(lua_State *L);

/* Number text helpers (pure C, no Lua). */
/* 1 when text[0..len) is a JSON number (-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?). */
int couch_json_numtext_valid(const char *text, size_t len);
/* Exact decimal comparison of two valid number texts: -1, 0, 1 (-0 equals 0). */
int couch_json_numtext_cmp(const char *a, size_t alen, const char *b, size_t blen);
/* strtod of a valid number text, independent of the C locale. */
double couch_json_numtext_tod(const char *text, size_t len);
/* Number text with a fraction or exponent: 1 when the float d it reads as (*d set) has a
 * shortest round-trip text of the same decimal value, so d stands for it losslessly. */
int couch_json_numtext_float(const char *text, size_t len, double *d);
/* Write the shortest text (%.15g/%.16g/%.17g) that reads back as finite d, with ".0"
 * appended when it would otherwise look like an integer. out needs 32 bytes. */
size_t couch_json_fmt_double(double d, char *out);
/* Write integer i in decimal. out needs 24 bytes. */
size_t couch_json_fmt_integer(lua_Integer i, char *out);

/* Text checks and string decoding around yajl (scan.c, escape.c, utf8.c). */
typedef struct {
  size_t bad;      /* offset of the first byte no JSON text may hold; len when none */
  const char *why; /* what is wrong there (NULL when bad == len) */
  size_t lone;     /* \u escapes of lone surrogates before bad */
} couch_json_scan_result;
/* Scan text[0..len) (see scan.c). With out (len bytes), also copy the text there with
 * every lone surrogate escape replaced by \ufffd, for yajl to parse instead. */
void couch_json_scan(const char *text, size_t len, char *out, couch_json_scan_result *r);
/* Decode the body of a string token (between its quotes, as yajl's lexer accepted it)
 * into out (n bytes are enough); returns the length. Lone surrogates become WTF-8. */
size_t couch_json_unescape(const char *s, size_t n, char *out);
/* Push the string token of raw that ends at `end` (just past its closing quote, where yajl
 * stands in its string callback), decoded from those original bytes: for a parse of the
 * masked copy, whose strings yajl would hand over with U+FFFD for lone surrogates. */
void couch_json_push_token(lua_State *L, const char *raw, size_t end);
/* 1 and *out set when s[0..4) are 4 hex digits. */
int couch_json_hex4(const char *s, size_t n, unsigned *out);
/* 1 and *lo set when s starts with a \uXXXX escape of a low surrogate (DC00-DFFF). */
int couch_json_low_surrogate_follows(const char *s, size_t n, unsigned *lo);
/* Length of the valid UTF-8 sequence at s[0..n) (n >= 1), 0 when invalid. */
size_t couch_json_utf8_len(const unsigned char *s, size_t n);
/* The surrogate (D800-DFFF) whose WTF-8 bytes start s[0..n), or 0. */
unsigned couch_json_wtf8_surrogate(const unsigned char *s, size_t n);
/* Write code point cp (<= 0x10FFFF, surrogates as WTF-8) to out (4 bytes); the length. */
size_t couch_json_wtf8_put(unsigned cp, char *out);

/* The module table {encode, decode, null, array, object, number, is_array, ...}. */
int luaopen_couch_json(lua_State *L);

#endif
