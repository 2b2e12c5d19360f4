/* The revisions a target refused in one _bulk_docs answer, indexed in C for matching the
 * documents sent to them (refusals.c): by id and rev (CouchDB names the rev it refused), and
 * by id alone for the errors that name no rev (pouchdb-server's). The ids and revs are
 * copied into the index's own bytes, so it does not depend on the answer's Lua strings. */
#ifndef COUCH_REPL_REFUSALS_H
#define COUCH_REPL_REFUSALS_H

#include <lua.h>
#include <stddef.h>

typedef struct {
  size_t id, id_len;    /* offsets into the index's bytes */
  size_t rev, rev_len;
  int has_rev;          /* the error names a rev (any true value) */
  int rev_is_string;    /* ...as a string (only those are matched by rev) */
  lua_Integer pos;      /* its place in the answer, from 1 */
  const char *bytes;    /* the index's bytes once they stop growing (for sorting) */
} couch_repl_refusal;

typedef struct {
  couch_repl_refusal *v;
  size_t n, cap;
  char *bytes;          /* the ids and revs, back to back */
  size_t len, bytes_cap;
} couch_repl_refusals;

/* Index the refusals (results with a true `error`) of the answer at res, a list whose
 * results all name an id string (batch.c checks that first). Raises when out of memory. */
void couch_refusals_index(lua_State *L, couch_repl_refusals *x, int res);

/* The place in the answer of the refusal of (id, rev), the last one when several; 0: none. */
lua_Integer couch_refusals_by_rev(const couch_repl_refusals *x, const char *id, size_t id_len, const char *rev,
                                  size_t rev_len);

/* The place of the first refusal of id that names no rev; 0: none. */
lua_Integer couch_refusals_by_id(const couch_repl_refusals *x, const char *id, size_t id_len);

/* Release the index's memory (the batch's __gc). */
void couch_refusals_free(couch_repl_refusals *x);

#endif
