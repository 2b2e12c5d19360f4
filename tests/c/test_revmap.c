/* The native engine's id -> [rev] maps (src/replicate/revmap.c): entries keep their order,
 * an id added again replaces its earlier entry (as t[id] = revs would), lookups find the
 * live entry, clear keeps nothing, the hash grows, and the request bodies written from a
 * map are JSON that reads back to the same ids and revs (ids needing escapes included). */
#include "replicate/revmap.h"

#include "json/json.h"

#include <lualib.h>
#include <string.h>

#include "check.h"

static void add(lua_State *L, couch_repl_revmap *m, const char *id, const char *revs[]) {
  couch_revmap_add_id(L, m, id, strlen(id));
  for (int i = 0; revs[i]; i++) couch_revmap_add_rev(L, m, revs[i], strlen(revs[i]));
}

static long find(const couch_repl_revmap *m, const char *id) { return couch_revmap_find(m, id, strlen(id)); }

int main(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  couch_repl_revmap m = {0};

  add(L, &m, "a", (const char *[]){"1-a", "2-a", NULL});
  add(L, &m, "b", (const char *[]){"1-b", NULL});
  add(L, &m, "a", (const char *[]){"3-a", NULL}); /* replaces the first a */
  add(L, &m, "empty", (const char *[]){NULL});
  CHECK(m.n == 4);
  CHECK(!m.v[0].live && m.v[1].live && m.v[2].live && m.v[3].live);
  CHECK(find(&m, "a") == 2);
  CHECK(find(&m, "b") == 1);
  CHECK(find(&m, "empty") == 3);
  CHECK(find(&m, "zz") == -1);
  CHECK(m.v[2].n == 1 && m.v[3].n == 0);

  couch_revmap_push_revs_diff(L, &m, 0, m.n);
  CHECK(strcmp(lua_tostring(L, -1), "{\"b\":[\"1-b\"],\"a\":[\"3-a\"],\"empty\":[]}") == 0);
  lua_pop(L, 1);
  size_t count;
  couch_revmap_push_bulk_get(L, &m, 1, 3, &count);
  CHECK(count == 2);
  CHECK(strcmp(lua_tostring(L, -1), "{\"docs\":[{\"id\":\"b\",\"rev\":\"1-b\"},{\"id\":\"a\",\"rev\":\"3-a\"}]}") == 0);
  lua_pop(L, 1);
  couch_revmap_push_revs_json(L, &m, 2);
  CHECK(strcmp(lua_tostring(L, -1), "[\"3-a\"]") == 0);
  lua_pop(L, 1);
  couch_revmap_push_id(L, &m, 1);
  couch_revmap_push_rev(L, &m, 1, 0);
  CHECK(strcmp(lua_tostring(L, -2), "b") == 0 && strcmp(lua_tostring(L, -1), "1-b") == 0);
  lua_pop(L, 2);

  /* ids that need escapes go through the one encoder: the same text couch.json writes */
  couch_revmap_clear(&m);
  CHECK(m.n == 0 && find(&m, "a") == -1);
  add(L, &m, "quote\"back\\slash", (const char *[]){"1-x", NULL});
  add(L, &m, "tab\tnl\n\x01", (const char *[]){"1-y", NULL});
  add(L, &m, "caf\xc3\xa9 \xe2\x82\xac", (const char *[]){"1-z", NULL});
  couch_revmap_push_revs_diff(L, &m, 0, m.n);
  size_t len;
  const char *text = lua_tolstring(L, -1, &len);
  const char *head = "{\"quote\\\"back\\\\slash\":[\"1-x\"],";
  CHECK(strncmp(text, head, strlen(head)) == 0);
  CHECK(couch_json_decode(L, text, len)); /* valid JSON, and each id reads back as itself */
  static const char *const ids[] = {"quote\"back\\slash", "tab\tnl\n\x01", "caf\xc3\xa9 \xe2\x82\xac"};
  for (int i = 0; i < 3; i++) {
    lua_getfield(L, -1, ids[i]);
    CHECK(lua_istable(L, -1) && lua_rawlen(L, -1) == 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 2);

  /* many ids: the hash grows; every id is found at its place */
  couch_revmap_clear(&m);
  char id[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(id, sizeof id, "doc-%d", i);
    add(L, &m, id, (const char *[]){"1-r", NULL});
  }
  for (int i = 0; i < 5000; i += 7) {
    snprintf(id, sizeof id, "doc-%d", i);
    CHECK(find(&m, id) == i);
  }
  CHECK(find(&m, "doc-5000") == -1);

  couch_revmap_free(&m);
  CHECK(m.v == NULL && m.slots == NULL && m.bytes == NULL);
  lua_close(L);
  printf("test_revmap: %d checks\n", checks);
  return 0;
}
