/* The run of finished batches: batches finish out of order, and a checkpoint must never
 * claim a batch that is still in flight, so through_seq only moves to the last seq of the
 * longest run of finished batches from the first one. A batch holding revisions it could
 * not read (hold) is never passed: through_seq stops before it for the rest of the run, so
 * the next run reads them again, and what finishes after it is not kept at all.
 * The finished batches past the first unfinished one are a window of seq refs indexed
 * from `next` (the first index not yet finished); it holds only batches overtaken by a
 * slower one, and shrinks as soon as that one lands: memory stays flat with the database. */
#include "replicate/done.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

struct couch_repl_done {
  lua_Integer next;    /* the first batch index not yet finished */
  lua_Integer held_at; /* the first batch that held revisions, or LUA_MAXINTEGER */
  int *seq;            /* seq[i]: ref of batch next + i's last seq, LUA_NOREF if not done */
  size_t cap;
};

static couch_repl_done *get(couch_repl *r) {
  if (!r->done) {
    r->done = calloc(1, sizeof *r->done);
    if (!r->done) return NULL;
    r->done->next = 1;
    r->done->held_at = LUA_MAXINTEGER;
  }
  return r->done;
}

static int grow(couch_repl_done *d, size_t need) {
  if (need <= d->cap) return 0;
  size_t cap = d->cap ? d->cap : 8;
  while (cap < need) cap *= 2;
  int *seq = realloc(d->seq, cap * sizeof *seq);
  if (!seq) return -1;
  for (size_t i = d->cap; i < cap; i++) seq[i] = LUA_NOREF;
  d->seq = seq;
  d->cap = cap;
  return 0;
}

int couch_repl_done_finish(lua_State *L, couch_repl *r, lua_Integer index, int seq_idx, int hold) {
  seq_idx = lua_absindex(L, seq_idx);
  couch_repl_done *d = get(r);
  if (!d) return -1;
  if (hold && index < d->held_at) d->held_at = index;
  if (index < d->held_at && index >= d->next) {
    size_t at = (size_t)(index - d->next);
    if (grow(d, at + 1)) return -1;
    lua_pushvalue(L, seq_idx);
    d->seq[at] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  size_t moved = 0;
  while (d->next < d->held_at && moved < d->cap && d->seq[moved] != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->seq[moved]);
    couch_repl_set(L, &r->ref.through_seq, -1);
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, d->seq[moved]);
    d->seq[moved++] = LUA_NOREF;
    d->next++;
  }
  if (moved) {
    memmove(d->seq, d->seq + moved, (d->cap - moved) * sizeof *d->seq);
    for (size_t i = d->cap - moved; i < d->cap; i++) d->seq[i] = LUA_NOREF;
  }
  return 0;
}

void couch_repl_done_free(lua_State *L, couch_repl *r) {
  couch_repl_done *d = r->done;
  if (!d) return;
  for (size_t i = 0; i < d->cap; i++) luaL_unref(L, LUA_REGISTRYINDEX, d->seq[i]);
  free(d->seq);
  free(d);
  r->done = NULL;
}
