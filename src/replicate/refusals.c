/* couch_repl_refusals (refusals.h): the refusals of a _bulk_docs answer as one array sorted
 * by (id, names a rev, rev, place), so each lookup is a binary search to the first entry of
 * its key and a walk over the entries of that key. Rebuilt for each answer into the same
 * arrays (their capacity kept), which the batch frees once. */
#include "replicate/refusals.h"

#include "grow.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

/* A key to look up or compare: bytes in place. */
typedef struct {
  const char *id, *rev;
  size_t id_len, rev_len;
  int has_rev, rev_is_string;
} key;

static key key_of(const couch_repl_refusal *e) {
  return (key){.id = e->bytes + e->id, .id_len = e->id_len, .rev = e->bytes + e->rev, .rev_len = e->rev_len,
               .has_rev = e->has_rev, .rev_is_string = e->rev_is_string};
}

static int bytes_cmp(const char *a, size_t an, const char *b, size_t bn) {
  int c = an && bn ? memcmp(a, b, an < bn ? an : bn) : 0;
  return c ? c : (an > bn) - (an < bn);
}

static int key_cmp(const key *x, const key *y) {
  int c = bytes_cmp(x->id, x->id_len, y->id, y->id_len);
  if (c) return c;
  if (x->has_rev != y->has_rev) return x->has_rev - y->has_rev;
  if (!x->has_rev) return 0;
  if (x->rev_is_string != y->rev_is_string) return x->rev_is_string - y->rev_is_string;
  return x->rev_is_string ? bytes_cmp(x->rev, x->rev_len, y->rev, y->rev_len) : 0;
}

static int entry_cmp(const void *a, const void *b) {
  const couch_repl_refusal *x = a, *y = b;
  key kx = key_of(x), ky = key_of(y);
  int c = key_cmp(&kx, &ky);
  return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

static void *grow(lua_State *L, void *p, size_t *cap, size_t need, size_t size) {
  if (couch_grow(&p, cap, need, size) != 0) luaL_error(L, "out of memory indexing a _bulk_docs answer");
  return p;
}

/* Copy s[0..n) to the index's bytes; returns its offset. */
static size_t keep_bytes(lua_State *L, couch_repl_refusals *x, const char *s, size_t n) {
  x->bytes = grow(L, x->bytes, &x->bytes_cap, x->len + n + 1, 1);
  size_t at = x->len;
  if (n) memcpy(x->bytes + at, s, n);
  x->len += n;
  return at;
}

void couch_refusals_index(lua_State *L, couch_repl_refusals *x, int res) {
  res = lua_absindex(L, res);
  x->n = x->len = 0;
  for (lua_Integer i = 1; lua_rawgeti(L, res, i) != LUA_TNIL; i++) {
    int e = lua_gettop(L);
    lua_getfield(L, e, "error");
    int refused = lua_toboolean(L, -1);
    lua_settop(L, e);
    if (refused) {
      couch_repl_refusal r = {.pos = i};
      size_t n;
      lua_getfield(L, e, "id");
      const char *id = lua_tolstring(L, -1, &n);
      r.id = keep_bytes(L, x, id ? id : "", id ? n : 0), r.id_len = id ? n : 0;
      lua_getfield(L, e, "rev");
      r.has_rev = lua_toboolean(L, -1);
      if (lua_type(L, -1) == LUA_TSTRING) {
        const char *rev = lua_tolstring(L, -1, &n);
        r.rev_is_string = 1, r.rev = keep_bytes(L, x, rev, n), r.rev_len = n;
      }
      x->v = grow(L, x->v, &x->cap, x->n + 1, sizeof *x->v);
      x->v[x->n++] = r;
    }
    lua_settop(L, e - 1);
  }
  lua_pop(L, 1);
  for (size_t i = 0; i < x->n; i++) x->v[i].bytes = x->bytes; /* qsort has no context argument */
  if (x->n > 1) qsort(x->v, x->n, sizeof *x->v, entry_cmp);
}

/* The first entry whose key is not below k, or x->n. */
static size_t lower_bound(const couch_repl_refusals *x, const key *k) {
  size_t lo = 0, hi = x->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    key m = key_of(&x->v[mid]);
    if (key_cmp(&m, k) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static int has_key(const couch_repl_refusals *x, size_t i, const key *k) {
  if (i >= x->n) return 0;
  key m = key_of(&x->v[i]);
  return key_cmp(&m, k) == 0;
}

lua_Integer couch_refusals_by_rev(const couch_repl_refusals *x, const char *id, size_t id_len, const char *rev,
                                  size_t rev_len) {
  key k = {.id = id, .id_len = id_len, .rev = rev, .rev_len = rev_len, .has_rev = 1, .rev_is_string = 1};
  lua_Integer pos = 0;
  for (size_t i = lower_bound(x, &k); has_key(x, i, &k); i++) pos = x->v[i].pos;
  return pos;
}

lua_Integer couch_refusals_by_id(const couch_repl_refusals *x, const char *id, size_t id_len) {
  key k = {.id = id, .id_len = id_len};
  size_t i = lower_bound(x, &k);
  return has_key(x, i, &k) ? x->v[i].pos : 0;
}

void couch_refusals_free(couch_repl_refusals *x) {
  free(x->v);
  free(x->bytes);
  *x = (couch_repl_refusals){0};
}
