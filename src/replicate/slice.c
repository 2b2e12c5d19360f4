/* Slicing documents out of a _bulk_get (or open_revs) answer as the exact bytes the source
 * sent, so a replication without hooks never decodes and re-encodes a document: every
 * value arrives as it left. yajl walks the answer; at the '{' and '}' of each "ok" object
 * the parser's byte offset marks the slice. */
#include "replicate/slice.h"

#include "json/json.h"

#include <lauxlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

typedef struct {
  lua_State *L;
  yajl_handle h;
  const char *text;
  int out;            /* stack index of the result list */
  int depth;          /* current nesting */
  int ok_depth;       /* depth of the "ok" object being sliced, 0 when none */
  size_t ok_start;
  int want_ok;        /* the last key at this level was "ok" */
  int error_depth;    /* depth of an "error" / "missing" object, 0 when none */
  size_t error_start;
  int want_error;
  int key_is_id, key_is_rev, key_is_deleted;
  int id_idx, rev_idx;  /* stack slots holding the sliced doc's _id and _rev */
  int deleted;
  lua_Integer n;
} slicer;

static size_t here(slicer *s) { return yajl_get_bytes_consumed(s->h); }

static int on_null(void *ctx) {
  slicer *s = ctx;
  s->key_is_id = s->key_is_rev = s->key_is_deleted = s->want_ok = s->want_error = 0;
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

static int on_string(void *ctx, const unsigned char *v, size_t len) {
  slicer *s = ctx;
  if (s->ok_depth && s->depth == s->ok_depth && (s->key_is_id || s->key_is_rev)) {
    lua_pushlstring(s->L, (const char *)v, len);
    lua_replace(s->L, s->key_is_id ? s->id_idx : s->rev_idx);
  }
  return on_null(ctx);
}

static int on_start_map(void *ctx) {
  slicer *s = ctx;
  s->depth++;
  if (s->want_ok && !s->ok_depth && !s->error_depth) {
    s->ok_depth = s->depth;
    s->ok_start = here(s) - 1;
    lua_pushnil(s->L);
    lua_pushnil(s->L);
    s->id_idx = lua_gettop(s->L) - 1;
    s->rev_idx = s->id_idx + 1;
    s->deleted = 0;
  } else if (s->want_error && !s->ok_depth && !s->error_depth) {
    s->error_depth = s->depth;
    s->error_start = here(s) - 1;
  }
  s->want_ok = s->want_error = 0;
  s->key_is_id = s->key_is_rev = s->key_is_deleted = 0;
  return 1;
}

static int on_map_key(void *ctx, const unsigned char *k, size_t len) {
  slicer *s = ctx;
  s->want_ok = !s->ok_depth && !s->error_depth && len == 2 && memcmp(k, "ok", 2) == 0;
  s->want_error = !s->ok_depth && !s->error_depth && len == 5 && memcmp(k, "error", 5) == 0;
  int top = s->ok_depth && s->depth == s->ok_depth;
  s->key_is_id = top && len == 3 && memcmp(k, "_id", 3) == 0;
  s->key_is_rev = top && len == 4 && memcmp(k, "_rev", 4) == 0;
  s->key_is_deleted = top && len == 8 && memcmp(k, "_deleted", 8) == 0;
  return 1;
}

/* Push {id =, rev =, json = <exact bytes>, deleted = bool} or {error = <decoded>} */
static int on_end_map(void *ctx) {
  slicer *s = ctx;
  lua_State *L = s->L;
  if (s->ok_depth && s->depth == s->ok_depth) {
    size_t end = here(s);
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, s->text + s->ok_start, end - s->ok_start);
    lua_setfield(L, -2, "json");
    lua_pushvalue(L, s->id_idx);
    lua_setfield(L, -2, "id");
    lua_pushvalue(L, s->rev_idx);
    lua_setfield(L, -2, "rev");
    lua_pushboolean(L, s->deleted);
    lua_setfield(L, -2, "deleted");
    lua_rawseti(L, s->out, ++s->n);
    lua_pop(L, 2); /* the id / rev slots */
    s->ok_depth = 0;
  } else if (s->error_depth && s->depth == s->error_depth) {
    size_t end = here(s);
    lua_createtable(L, 0, 1);
    if (couch_json_decode(L, s->text + s->error_start, end - s->error_start)) lua_setfield(L, -2, "error");
    else lua_pop(L, 1);
    lua_rawseti(L, s->out, ++s->n);
    s->error_depth = 0;
  }
  s->depth--;
  return 1;
}

static int on_start_array(void *ctx) {
  slicer *s = ctx;
  s->depth++;
  s->want_ok = s->want_error = 0;
  return 1;
}

static int on_end_array(void *ctx) {
  ((slicer *)ctx)->depth--;
  return 1;
}

static const yajl_callbacks callbacks = {on_null,      on_bool,    NULL,           NULL,
                                         on_number,    on_string,  on_start_map,   on_map_key,
                                         on_end_map,   on_start_array, on_end_array};

/* couch._slice_docs(json_text) -> list of {id, rev, json, deleted} / {error = {...}} */
static int l_slice_docs(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  lua_settop(L, 1);
  lua_newtable(L);
  luaL_checkstack(L, 8, "slicing documents");
  slicer s = {0};
  s.L = L;
  s.text = text;
  s.out = 2;
  s.h = yajl_alloc(&callbacks, NULL, &s);
  if (!s.h) return luaL_error(L, "out of memory");
  yajl_status st = yajl_parse(s.h, (const unsigned char *)text, len);
  if (st == yajl_status_ok) st = yajl_complete_parse(s.h);
  if (st != yajl_status_ok) {
    unsigned char *msg = yajl_get_error(s.h, 0, (const unsigned char *)text, len);
    lua_pushfstring(L, "%s", (const char *)msg);
    yajl_free_error(s.h, msg);
    yajl_free(s.h);
    return luaL_error(L, "invalid _bulk_get answer: %s", lua_tostring(L, -1));
  }
  yajl_free(s.h);
  return 1;
}

void couch_slice_open(lua_State *L) {
  lua_pushcfunction(L, l_slice_docs);
  lua_setfield(L, -2, "_slice_docs");
}
