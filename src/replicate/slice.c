/* Slicing documents out of a _bulk_get (or open_revs) answer as the exact bytes the source
 * sent, so a replication without hooks never decodes and re-encodes a document: every
 * value arrives as it left. yajl walks the answer; at the '{' and '}' of each "ok" object
 * the parser's byte offset marks the slice.
 *
 * The walk knows the answers' shape, because every entry must be accounted for (issue 11):
 *   _bulk_get  {"results": [{"id": ID, "docs": [ENTRY, ...]}, ...]}
 *   open_revs  [ENTRY, ...]
 *   ENTRY      {"ok": DOC} | {"error": {...}} | {"error": "...", "reason": "..."}
 *              | {"missing": REV}
 * An entry is an object element of the top-level array or of an array under a "docs"
 * key; anything that is not an "ok" document is handed back decoded (entries are small),
 * with the id of its _bulk_get result as `group`. */
#include "replicate/slice.h"

#include "json/json.h"

#include <lauxlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#define MAX_SHAPE_DEPTH 64 /* outside documents the answers are 5 levels deep */

typedef struct {
  lua_State *L;
  yajl_handle h;
  const char *text;
  int out;            /* stack index of the result list */
  int group_idx;      /* stack slot: the id of the _bulk_get result being walked */
  int depth;          /* current nesting */
  unsigned char entries[MAX_SHAPE_DEPTH + 1]; /* the array at this depth holds entries */
  int docs_key;       /* the last key outside entries was "docs" */
  int group_key;      /* the last key outside entries was "id" */
  int entry_depth;    /* depth of the entry being walked, 0 when none */
  size_t entry_start;
  int entry_had_ok;
  int ok_depth;       /* depth of the "ok" document being sliced, 0 when none */
  size_t ok_start;
  int want_ok;        /* the last key of the entry was "ok" */
  int key_is_id, key_is_rev, key_is_deleted;
  int id_idx, rev_idx;  /* stack slots holding the sliced doc's _id and _rev */
  const char *raw;      /* the text, when yajl parses a masked copy of it (strings from here) */
  int deleted;
  lua_Integer n;
} slicer;

static size_t here(slicer *s) { return yajl_get_bytes_consumed(s->h); }

static void clear_keys(slicer *s) {
  s->key_is_id = s->key_is_rev = s->key_is_deleted = s->want_ok = s->docs_key = s->group_key = 0;
}

static int on_null(void *ctx) {
  clear_keys(ctx);
  return 1;
}

static int on_bool(void *ctx, int b) {
  slicer *s = ctx;
  if (s->ok_depth && s->depth == s->ok_depth && s->key_is_deleted) s->deleted = b;
  return on_null(ctx);
}

static int on_number(void *ctx, const char *v, size_t len) {
  (void)v, (void)len;
  return on_null(ctx);
}

/* A string yajl handed over: as is, or decoded from the original bytes when yajl parsed
 * the masked copy (lone surrogates: see couch_json_push_token). */
static void push_string(slicer *s, const unsigned char *v, size_t len) {
  if (s->raw) couch_json_push_token(s->L, s->raw, yajl_get_bytes_consumed(s->h));
  else lua_pushlstring(s->L, (const char *)v, len);
}

static int on_string(void *ctx, const unsigned char *v, size_t len) {
  slicer *s = ctx;
  if (s->ok_depth && s->depth == s->ok_depth && (s->key_is_id || s->key_is_rev)) {
    push_string(s, v, len);
    lua_replace(s->L, s->key_is_id ? s->id_idx : s->rev_idx);
  } else if (s->group_key) {
    push_string(s, v, len);
    lua_replace(s->L, s->group_idx);
  }
  return on_null(ctx);
}

static int in_entry(const slicer *s) { return s->entry_depth != 0; }

static int on_start_map(void *ctx) {
  slicer *s = ctx;
  s->depth++;
  if (!in_entry(s)) {
    if (s->depth - 1 <= MAX_SHAPE_DEPTH && s->entries[s->depth - 1]) {
      s->entry_depth = s->depth;
      s->entry_start = here(s) - 1;
      s->entry_had_ok = 0;
    } else { /* a _bulk_get result (or the answer itself): a new group */
      lua_pushnil(s->L);
      lua_replace(s->L, s->group_idx);
    }
  } else if (s->want_ok && !s->ok_depth && s->depth == s->entry_depth + 1) {
    s->ok_depth = s->depth;
    s->ok_start = here(s) - 1;
    lua_pushnil(s->L);
    lua_pushnil(s->L);
    s->id_idx = lua_gettop(s->L) - 1;
    s->rev_idx = s->id_idx + 1;
    s->deleted = 0;
  }
  clear_keys(s);
  return 1;
}

static int is(const unsigned char *k, size_t len, const char *word) {
  return len == strlen(word) && memcmp(k, word, len) == 0;
}

static int on_map_key(void *ctx, const unsigned char *k, size_t len) {
  slicer *s = ctx;
  clear_keys(s);
  if (!in_entry(s)) {
    s->docs_key = is(k, len, "docs");
    s->group_key = is(k, len, "id");
  } else if (!s->ok_depth && s->depth == s->entry_depth) {
    s->want_ok = is(k, len, "ok");
  } else if (s->ok_depth && s->depth == s->ok_depth) {
    s->key_is_id = is(k, len, "_id");
    s->key_is_rev = is(k, len, "_rev");
    s->key_is_deleted = is(k, len, "_deleted");
  }
  return 1;
}

/* Push {id =, rev =, json = <exact bytes>, deleted = bool, group =} for an "ok" document,
 * or {entry = <decoded>, group =} for any other entry. */
static int on_end_map(void *ctx) {
  slicer *s = ctx;
  lua_State *L = s->L;
  if (s->ok_depth && s->depth == s->ok_depth) {
    size_t end = here(s);
    lua_createtable(L, 0, 5);
    lua_pushlstring(L, s->text + s->ok_start, end - s->ok_start);
    lua_setfield(L, -2, "json");
    lua_pushvalue(L, s->id_idx);
    lua_setfield(L, -2, "id");
    lua_pushvalue(L, s->rev_idx);
    lua_setfield(L, -2, "rev");
    lua_pushboolean(L, s->deleted);
    lua_setfield(L, -2, "deleted");
    lua_pushvalue(L, s->group_idx);
    lua_setfield(L, -2, "group");
    lua_rawseti(L, s->out, ++s->n);
    lua_pop(L, 2); /* the id / rev slots */
    s->ok_depth = 0;
    s->entry_had_ok = 1;
  } else if (s->entry_depth && s->depth == s->entry_depth) {
    if (!s->entry_had_ok) {
      size_t end = here(s);
      lua_createtable(L, 0, 2);
      if (couch_json_decode(L, s->text + s->entry_start, end - s->entry_start)) lua_setfield(L, -2, "entry");
      else lua_pop(L, 1);
      lua_pushvalue(L, s->group_idx);
      lua_setfield(L, -2, "group");
      lua_rawseti(L, s->out, ++s->n);
    }
    s->entry_depth = 0;
  }
  s->depth--;
  clear_keys(s);
  return 1;
}

static int on_start_array(void *ctx) {
  slicer *s = ctx;
  s->depth++;
  if (s->depth <= MAX_SHAPE_DEPTH)
    s->entries[s->depth] = !in_entry(s) && (s->depth == 1 || s->docs_key);
  clear_keys(s);
  return 1;
}

static int on_end_array(void *ctx) {
  slicer *s = ctx;
  if (s->depth <= MAX_SHAPE_DEPTH) s->entries[s->depth] = 0;
  s->depth--;
  clear_keys(s);
  return 1;
}

static const yajl_callbacks callbacks = {on_null,      on_bool,    NULL,           NULL,
                                         on_number,    on_string,  on_start_map,   on_map_key,
                                         on_end_map,   on_start_array, on_end_array};

/* internal.slice_docs(json_text) -> list of {id, rev, json, deleted, group} / {entry, group};
 * nil, message when the text is not JSON (the caller knows which request it answered). */
int couch_slice_docs(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  lua_settop(L, 1);
  lua_newtable(L);
  lua_pushnil(L); /* the group slot */
  luaL_checkstack(L, 8, "slicing documents");
  slicer s = {0};
  s.L = L;
  s.text = text;
  s.out = 2;
  s.group_idx = 3;
  /* As couch.json's decoder: yajl parses only up to the first byte no JSON may hold
   * (invalid UTF-8, raw control characters), and never sees a lone surrogate escape (an
   * unpatched yajl 2.1.0 crashes on one: CVE-2017-16516); slices are the original bytes. */
  couch_json_scan_result sc;
  couch_json_scan(text, len, NULL, &sc);
  const char *parse = text;
  if (sc.lone) {
    char *masked = lua_newuserdatauv(L, len, 0); /* stays on the stack, above the slots */
    couch_json_scan(text, len, masked, &sc);
    parse = masked;
    s.raw = text;
  }
  s.h = yajl_alloc(&callbacks, NULL, &s);
  if (!s.h) return luaL_error(L, "out of memory");
  yajl_status st = yajl_parse(s.h, (const unsigned char *)parse, sc.bad);
  if (st == yajl_status_ok) st = yajl_complete_parse(s.h);
  if (st != yajl_status_ok || len == 0 || sc.bad < len) {
    unsigned char *msg = st != yajl_status_ok ? yajl_get_error(s.h, 0, (const unsigned char *)parse, sc.bad) : NULL;
    lua_pushnil(L);
    lua_pushfstring(L, "not valid JSON: %s", len == 0 ? "empty" : msg ? (const char *)msg : sc.why);
    if (msg) yajl_free_error(s.h, msg);
    yajl_free(s.h);
    return 2;
  }
  yajl_free(s.h);
  lua_settop(L, 2);
  return 1;
}

void couch_slice_open(lua_State *L) {
  lua_pushcfunction(L, couch_slice_docs);
  lua_setfield(L, -2, "slice_docs");
}
