/* couch_repl_revmap (revmap.h): three growing arrays (entries, revs, bytes) and a hash of
 * the live entries by id (FNV-1a, open addressing with linear probing, at most half full),
 * all kept across couch_revmap_clear so a batch's maps stop allocating after the first
 * chunk. */
#include "replicate/revmap.h"

#include "grow.h"
#include "json/json.h"

#include <stdlib.h>
#include <string.h>

static void *grow(lua_State *L, void *p, size_t *cap, size_t need, size_t size) {
  if (couch_grow(&p, cap, need, size) != 0) luaL_error(L, "out of memory listing a batch's revisions");
  return p;
}

static couch_repl_str keep(lua_State *L, couch_repl_revmap *m, const char *s, size_t n) {
  m->bytes = grow(L, m->bytes, &m->bytes_cap, m->len + n + 1, 1);
  couch_repl_str r = {m->len, n};
  if (n) memcpy(m->bytes + m->len, s, n);
  m->len += n;
  return r;
}

static size_t hash(const char *s, size_t n) {
  size_t h = (size_t)14695981039346656037ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * (size_t)1099511628211ull;
  return h;
}

static int same_id(const couch_repl_revmap *m, size_t e, const char *id, size_t len) {
  couch_repl_str s = m->v[e].id;
  return s.len == len && (len == 0 || memcmp(m->bytes + s.off, id, len) == 0);
}

/* The slot of id: its entry's, or the free one where it would go. */
static size_t slot_of(const couch_repl_revmap *m, const char *id, size_t len) {
  size_t mask = m->nslots - 1, i = hash(id, len) & mask;
  while (m->slots[i] && !same_id(m, m->slots[i] - 1, id, len)) i = (i + 1) & mask;
  return i;
}

/* Room for one more live entry: at most half the slots used. */
static void reserve_slots(lua_State *L, couch_repl_revmap *m) {
  if (m->nslots >= 2 * (m->n + 1)) return;
  size_t n = m->nslots ? 2 * m->nslots : 64;
  while (n < 2 * (m->n + 1)) n *= 2;
  size_t *slots = calloc(n, sizeof *slots);
  if (!slots) luaL_error(L, "out of memory listing a batch's revisions");
  free(m->slots);
  m->slots = slots, m->nslots = n;
  for (size_t e = 0; e < m->n; e++) {
    if (!m->v[e].live) continue;
    couch_repl_str s = m->v[e].id;
    m->slots[slot_of(m, m->bytes + s.off, s.len)] = e + 1;
  }
}

void couch_revmap_clear(couch_repl_revmap *m) {
  m->n = m->nrevs = m->len = 0;
  if (m->slots) memset(m->slots, 0, m->nslots * sizeof *m->slots);
}

void couch_revmap_free(couch_repl_revmap *m) {
  free(m->v);
  free(m->revs);
  free(m->bytes);
  free(m->slots);
  *m = (couch_repl_revmap){0};
}

void couch_revmap_add_id(lua_State *L, couch_repl_revmap *m, const char *id, size_t len) {
  reserve_slots(L, m);
  m->v = grow(L, m->v, &m->cap, m->n + 1, sizeof *m->v);
  couch_repl_str s = keep(L, m, id, len);
  size_t i = slot_of(m, m->bytes + s.off, len);
  if (m->slots[i]) m->v[m->slots[i] - 1].live = 0; /* replaced, as t[id] = revs would */
  m->v[m->n] = (couch_repl_revs_entry){.id = s, .first = m->nrevs, .n = 0, .live = 1};
  m->slots[i] = ++m->n;
}

void couch_revmap_add_rev(lua_State *L, couch_repl_revmap *m, const char *rev, size_t len) {
  m->revs = grow(L, m->revs, &m->revs_cap, m->nrevs + 1, sizeof *m->revs);
  m->revs[m->nrevs++] = keep(L, m, rev, len);
  m->v[m->n - 1].n++;
}

long couch_revmap_find(const couch_repl_revmap *m, const char *id, size_t len) {
  if (!m->nslots) return -1;
  size_t i = slot_of(m, id, len);
  return m->slots[i] ? (long)(m->slots[i] - 1) : -1;
}

void couch_revmap_push_id(lua_State *L, const couch_repl_revmap *m, size_t e) {
  lua_pushlstring(L, m->bytes + m->v[e].id.off, m->v[e].id.len);
}

void couch_revmap_push_rev(lua_State *L, const couch_repl_revmap *m, size_t e, size_t j) {
  couch_repl_str s = m->revs[m->v[e].first + j];
  lua_pushlstring(L, m->bytes + s.off, s.len);
}

void couch_revmap_add_json_string(lua_State *L, luaL_Buffer *b, const char *s, size_t len) {
  size_t i = 0;
  while (i < len && (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f && s[i] != '"' && s[i] != '\\') i++;
  if (i == len) { /* nothing to escape */
    luaL_addchar(b, '"');
    luaL_addlstring(b, s, len);
    luaL_addchar(b, '"');
    return;
  }
  lua_pushlstring(L, s, len);
  couch_json_encode(L, -1, NULL);
  lua_remove(L, -2);
  luaL_addvalue(b);
}

static void add_str(lua_State *L, luaL_Buffer *b, const couch_repl_revmap *m, couch_repl_str s) {
  couch_revmap_add_json_string(L, b, m->bytes + s.off, s.len);
}

static void add_revs(lua_State *L, luaL_Buffer *b, const couch_repl_revmap *m, size_t e) {
  luaL_addchar(b, '[');
  for (size_t j = 0; j < m->v[e].n; j++) {
    if (j) luaL_addchar(b, ',');
    add_str(L, b, m, m->revs[m->v[e].first + j]);
  }
  luaL_addchar(b, ']');
}

void couch_revmap_push_revs_diff(lua_State *L, const couch_repl_revmap *m, size_t from, size_t to) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '{');
  int first = 1;
  for (size_t e = from; e < to; e++) {
    if (!m->v[e].live) continue;
    if (!first) luaL_addchar(&b, ',');
    first = 0;
    add_str(L, &b, m, m->v[e].id);
    luaL_addchar(&b, ':');
    add_revs(L, &b, m, e);
  }
  luaL_addchar(&b, '}');
  luaL_pushresult(&b);
}

void couch_revmap_push_bulk_get(lua_State *L, const couch_repl_revmap *m, size_t from, size_t to, size_t *count) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "{\"docs\":[");
  size_t n = 0;
  for (size_t e = from; e < to; e++) {
    if (!m->v[e].live) continue;
    for (size_t j = 0; j < m->v[e].n; j++) {
      luaL_addstring(&b, n++ ? ",{\"id\":" : "{\"id\":");
      add_str(L, &b, m, m->v[e].id);
      luaL_addstring(&b, ",\"rev\":");
      add_str(L, &b, m, m->revs[m->v[e].first + j]);
      luaL_addchar(&b, '}');
    }
  }
  luaL_addstring(&b, "]}");
  luaL_pushresult(&b);
  *count = n;
}

void couch_revmap_push_revs_json(lua_State *L, const couch_repl_revmap *m, size_t e) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  add_revs(L, &b, m, e);
  luaL_pushresult(&b);
}
