/* id -> [rev] in C (revmap.c): what a batch's changes name, what the target lacks, what a
 * read left unanswered. Entries keep the order they were added in; an id added again
 * replaces its earlier entry (as a Lua table keyed by id would); lookups by id go through a
 * hash of the live entries. The ids and revs are copies in the map's own bytes. The JSON a
 * request needs of a map (_revs_diff's body, _bulk_get's, open_revs) is written straight
 * from those bytes. */
#ifndef COUCH_REPL_REVMAP_H
#define COUCH_REPL_REVMAP_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>

typedef struct {
  size_t off, len; /* in the map's bytes */
} couch_repl_str;

typedef struct {
  couch_repl_str id;
  size_t first, n; /* its revs: revs[first .. first + n) */
  int live;        /* 0: an entry of the same id added later replaced it */
} couch_repl_revs_entry;

typedef struct {
  couch_repl_revs_entry *v;
  size_t n, cap;
  couch_repl_str *revs;
  size_t nrevs, revs_cap;
  char *bytes;
  size_t len, bytes_cap;
  size_t *slots; /* open addressing: entry index + 1, 0 free */
  size_t nslots;
} couch_repl_revmap;

/* Forget every entry (the memory is kept for the next use). */
void couch_revmap_clear(couch_repl_revmap *m);
/* Release the memory (the batch's __gc). */
void couch_revmap_free(couch_repl_revmap *m);

/* Add an entry for id (replacing an earlier one of it); its revs follow with add_rev. Raise
 * when out of memory. */
void couch_revmap_add_id(lua_State *L, couch_repl_revmap *m, const char *id, size_t len);
/* Add a rev to the entry added last. */
void couch_revmap_add_rev(lua_State *L, couch_repl_revmap *m, const char *rev, size_t len);

/* The index of the live entry of id, or -1. */
long couch_revmap_find(const couch_repl_revmap *m, const char *id, size_t len);

/* The bytes of a string of the map (not NUL-terminated). */
static inline const char *couch_revmap_str(const couch_repl_revmap *m, couch_repl_str s) { return m->bytes + s.off; }

/* Push an entry's id, or its j-th rev (0-based), as a Lua string. */
void couch_revmap_push_id(lua_State *L, const couch_repl_revmap *m, size_t e);
void couch_revmap_push_rev(lua_State *L, const couch_repl_revmap *m, size_t e, size_t j);

/* Add s as a JSON string to b (the one encoder, couch_json_encode, for anything but plain
 * printable ASCII). */
void couch_revmap_add_json_string(lua_State *L, luaL_Buffer *b, const char *s, size_t len);

/* Push the JSON texts of the live entries e in [from, to):
 *   revs_diff  {"id":["rev",...],...}
 *   bulk_get   {"docs":[{"id":"id","rev":"rev"},...]}  (*count: the revisions asked)
 *   revs of one entry  ["rev",...] */
void couch_revmap_push_revs_diff(lua_State *L, const couch_repl_revmap *m, size_t from, size_t to);
void couch_revmap_push_bulk_get(lua_State *L, const couch_repl_revmap *m, size_t from, size_t to, size_t *count);
void couch_revmap_push_revs_json(lua_State *L, const couch_repl_revmap *m, size_t e);

#endif
