/* Every revision the engine asks the source for must come back as a document or as an
 * error: a server (or a proxy) that answers fewer revisions than asked, a document under
 * another id, or {"missing": rev} must never turn into "nothing to do" while the
 * checkpoint moves past it. The answers to one id are matched to the revisions asked
 * for it: exact revs first, then the rest by count, because `latest=true` may answer a
 * newer leaf than the one asked and pouchdb-server's errors name no rev. The revisions
 * asked and those left unanswered are C maps (revmap.h); the answers are the sliced
 * entries, Lua values the user's hooks and error reports see. */
#include "replicate/account.h"

#include "json/json.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

/* Push {error = {id =, rev =, error =, reason =}} (id / rev: stack values, 0 for none). */
static void push_error_entry(lua_State *L, int id, int rev, const char *code, const char *reason) {
  lua_createtable(L, 0, 1);
  lua_createtable(L, 0, 4);
  if (id) {
    lua_pushvalue(L, id);
    lua_setfield(L, -2, "id");
  }
  if (rev) {
    lua_pushvalue(L, rev);
    lua_setfield(L, -2, "rev");
  }
  lua_pushstring(L, code);
  lua_setfield(L, -2, "error");
  lua_pushstring(L, reason);
  lua_setfield(L, -2, "reason");
  lua_setfield(L, -2, "error");
}

/* The string at idx, or def: a hostile answer may put anything anywhere. */
static const char *str_or(lua_State *L, int idx, const char *def) {
  return lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : def;
}

/* The entry at e (not an "ok" document) as an error entry; pushes it. */
static void normalize_entry(lua_State *L, int e) {
  int top = lua_gettop(L);
  lua_getfield(L, e, "group");
  int group = top + 1;
  lua_getfield(L, e, "entry");
  int ent = top + 2;
  if (lua_istable(L, ent)) {
    lua_getfield(L, ent, "missing");
    if (lua_type(L, -1) == LUA_TSTRING) {
      push_error_entry(L, group, top + 3, "not_found", "the source does not have this revision (missing)");
      goto done;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, ent, "error") == LUA_TTABLE) { /* CouchDB: {id, rev, error, reason} */
      lua_getfield(L, -1, "id");
      if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushvalue(L, group);
      }
      lua_getfield(L, -2, "rev");
      lua_getfield(L, -3, "error");
      lua_getfield(L, -4, "reason");
      push_error_entry(L, top + 4, lua_type(L, top + 5) == LUA_TSTRING ? top + 5 : 0, str_or(L, top + 6, "error"),
                       str_or(L, top + 7, ""));
      goto done;
    }
    if (lua_type(L, -1) == LUA_TSTRING) { /* pouchdb-server: {error, reason}, no id, no rev */
      lua_getfield(L, ent, "reason");
      push_error_entry(L, group, 0, lua_tostring(L, top + 3), str_or(L, top + 4, ""));
      goto done;
    }
  }
  push_error_entry(L, group, 0, "bad_response", "an answer of no shape the replication protocol knows");
done:
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
}

/* Push the rev an entry answers (the document's, or the error's), or nil. */
static void push_answered_rev(lua_State *L, int e) {
  if (lua_getfield(L, e, "error") == LUA_TTABLE) {
    lua_getfield(L, -1, "rev");
    lua_remove(L, -2);
  } else {
    lua_pop(L, 1);
    lua_getfield(L, e, "rev");
  }
}

/* The first rev of entry e with the bytes of its j-th: a rev listed twice is one key, as
 * in a table keyed by rev. */
static size_t first_same(const couch_repl_revmap *m, size_t e, size_t j) {
  const couch_repl_revs_entry *en = &m->v[e];
  couch_repl_str s = m->revs[en->first + j];
  for (size_t k = 0; k < j; k++) {
    couch_repl_str t = m->revs[en->first + k];
    if (t.len == s.len && memcmp(m->bytes + t.off, m->bytes + s.off, s.len) == 0) return k;
  }
  return j;
}

/* The rev of entry e equal to the string at idx (its first place), or -1. */
static long rev_index(lua_State *L, const couch_repl_revmap *m, size_t e, int idx) {
  size_t len;
  const char *rev = lua_tolstring(L, idx, &len);
  const couch_repl_revs_entry *en = &m->v[e];
  for (size_t j = 0; j < en->n; j++) {
    couch_repl_str t = m->revs[en->first + j];
    if (t.len == len && memcmp(m->bytes + t.off, rev, len) == 0) return (long)j;
  }
  return -1;
}

/* Match the answers to entry e (docs[idxs[0..nidx)]) to its revisions; add the revisions
 * left over to unanswered. */
static lua_Integer pair_id(lua_State *L, const couch_repl_revmap *m, size_t e, const lua_Integer *idxs, size_t nidx,
                           int docs, couch_repl_revmap *unanswered) {
  int top = lua_gettop(L);
  size_t nrev = m->v[e].n;
  char *matched = lua_newuserdatauv(L, nrev + 1, 0); /* by first place: answered */
  memset(matched, 0, nrev + 1);
  lua_Integer *rest = lua_newuserdatauv(L, (nidx + 1) * sizeof *rest, 0); /* answers naming no asked rev */
  size_t nrest = 0, next_rest = 0;
  lua_Integer left = 0;
  for (size_t k = 0; k < nidx; k++) {
    lua_rawgeti(L, docs, idxs[k]);
    push_answered_rev(L, lua_gettop(L));
    long j = lua_type(L, -1) == LUA_TSTRING ? rev_index(L, m, e, -1) : -1;
    lua_pop(L, 2);
    if (j >= 0 && !matched[j]) matched[j] = 1;
    else rest[nrest++] = idxs[k];
  }
  int listed = 0;
  for (size_t j = 0; j < nrev; j++) {
    int answered = matched[first_same(m, e, j)];
    if (!answered && next_rest < nrest) { /* a newer leaf (latest=true) or a rev-less error */
      lua_rawgeti(L, docs, rest[next_rest++]);
      if (lua_getfield(L, -1, "error") == LUA_TTABLE) {
        couch_revmap_push_rev(L, m, e, j);
        lua_setfield(L, -2, "rev"); /* the report names the revision asked */
      }
      lua_pop(L, 2);
      answered = 1;
    }
    if (!answered) {
      if (!listed++) couch_revmap_add_id(L, unanswered, couch_revmap_str(m, m->v[e].id), m->v[e].id.len);
      couch_repl_str r = m->revs[m->v[e].first + j];
      couch_revmap_add_rev(L, unanswered, couch_revmap_str(m, r), r.len);
      left++;
    }
  }
  lua_settop(L, top);
  return left;
}

/* The entry of `asked` (live, in [from_e, to_e)) for the id string at idx, or -1. */
static long asked_entry(lua_State *L, const couch_repl_revmap *asked, size_t from_e, size_t to_e, int idx) {
  if (lua_type(L, idx) != LUA_TSTRING) return -1;
  size_t len;
  const char *id = lua_tolstring(L, idx, &len);
  long e = couch_revmap_find(asked, id, len);
  return e >= (long)from_e && e < (long)to_e ? e : -1;
}

typedef struct {
  lua_Integer entry, doc;
} answer_of;

static int answer_cmp(const void *a, const void *b) {
  const answer_of *x = a, *y = b;
  if (x->entry != y->entry) return x->entry < y->entry ? -1 : 1;
  return (x->doc > y->doc) - (x->doc < y->doc);
}

lua_Integer couch_account_reads(lua_State *L, const couch_repl_revmap *asked, size_t from_e, size_t to_e, int docs,
                                lua_Integer from, couch_repl_revmap *unanswered) {
  docs = lua_absindex(L, docs);
  luaL_checkstack(L, 24, "accounting for revisions");
  couch_revmap_clear(unanswered);
  lua_Integer n = (lua_Integer)lua_rawlen(L, docs);
  /* which answer is for which id asked: (entry, index into docs), in a userdata */
  answer_of *by = lua_newuserdatauv(L, (size_t)(n >= from ? n - from + 1 : 1) * sizeof *by, 0);
  int by_idx = lua_gettop(L);
  size_t nby = 0;
  for (lua_Integer i = from; i <= n; i++) {
    lua_rawgeti(L, docs, i);
    int e = lua_gettop(L);
    lua_getfield(L, e, "json");
    int ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (ok) {
      lua_getfield(L, e, "id");
      lua_getfield(L, e, "group");
      int id = e + 1, group = e + 2;
      int asked_id = asked_entry(L, asked, from_e, to_e, id) >= 0;
      lua_getfield(L, e, "rev");
      int has_rev = lua_type(L, -1) == LUA_TSTRING;
      lua_pop(L, 1);
      if (!asked_id || !has_rev || (!lua_isnil(L, group) && !lua_rawequal(L, id, group))) {
        /* never written: it answers the group's revision with an error (a document
         * without a _rev would even be written as a new edit) */
        if (has_rev) lua_pushfstring(L, "the source answered with document '%s' instead", str_or(L, id, "?"));
        else lua_pushliteral(L, "the source answered with a document without a _rev");
        push_error_entry(L, lua_isnil(L, group) ? id : group, 0, "bad_response", lua_tostring(L, -1));
        lua_rawseti(L, docs, i);
        lua_settop(L, e);
        lua_getfield(L, e, "group");
      } else {
        lua_settop(L, e + 1); /* the key: the id */
      }
    } else {
      normalize_entry(L, e);
      lua_pushvalue(L, -1);
      lua_rawseti(L, docs, i);
      lua_getfield(L, -1, "error");
      lua_getfield(L, -1, "id");
      lua_replace(L, e + 1);
      lua_settop(L, e + 1);
    }
    /* the key at e + 1: list this answer under it when that id was asked */
    long entry = asked_entry(L, asked, from_e, to_e, e + 1);
    if (entry >= 0) by[nby++] = (answer_of){entry, i};
    lua_settop(L, e - 1);
  }
  if (nby > 1) qsort(by, nby, sizeof *by, answer_cmp);
  lua_Integer left = 0;
  lua_Integer *idxs = lua_newuserdatauv(L, (nby + 1) * sizeof *idxs, 0);
  size_t k = 0;
  for (size_t e = from_e; e < to_e; e++) {
    if (!asked->v[e].live) continue;
    size_t nidx = 0;
    while (k < nby && by[k].entry < (lua_Integer)e) k++;
    while (k < nby && by[k].entry == (lua_Integer)e) idxs[nidx++] = by[k++].doc;
    left += pair_id(L, asked, e, idxs, nidx, docs, unanswered);
  }
  lua_settop(L, by_idx - 1);
  return left;
}

void couch_account_unanswered(lua_State *L, const couch_repl_revmap *unanswered, int docs) {
  docs = lua_absindex(L, docs);
  luaL_checkstack(L, 8, "accounting for revisions");
  for (size_t e = 0; e < unanswered->n; e++) {
    if (!unanswered->v[e].live) continue;
    couch_revmap_push_id(L, unanswered, e);
    int id = lua_gettop(L);
    for (size_t j = 0; j < unanswered->v[e].n; j++) {
      couch_revmap_push_rev(L, unanswered, e, j);
      push_error_entry(L, id, lua_gettop(L), "no_answer", "the source's answers did not include this revision");
      lua_rawseti(L, docs, (lua_Integer)lua_rawlen(L, docs) + 1);
      lua_pop(L, 1);
    }
    lua_settop(L, id - 1);
  }
}
