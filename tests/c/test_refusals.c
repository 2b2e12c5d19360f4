/* The native engine's index of a _bulk_docs answer's refusals (src/replicate/refusals.c):
 * by id and rev the last refusal wins, by id alone the first one that names no rev; a
 * refusal that names a rev never answers for its id alone; results that are not errors
 * are not indexed; the index is rebuilt for each answer and owns copies of the strings. */
#include "replicate/refusals.h"

#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

#include "check.h"

/* Push the answer of the Lua expression src. */
static void push_answer(lua_State *L, const char *src) {
  lua_pushfstring(L, "return %s", src);
  CHECK(luaL_dostring(L, lua_tostring(L, -1)) == LUA_OK);
  lua_remove(L, -2);
}

static lua_Integer by_rev(couch_repl_refusals *x, const char *id, const char *rev) {
  return couch_refusals_by_rev(x, id, strlen(id), rev, strlen(rev));
}

static lua_Integer by_id(couch_repl_refusals *x, const char *id) { return couch_refusals_by_id(x, id, strlen(id)); }

int main(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  couch_repl_refusals x = {0};

  push_answer(L, "{ {id = 'a', rev = '1-a', ok = true},"
                 "  {id = 'b', rev = '1-b', error = 'forbidden', reason = 'first'},"
                 "  {id = 'b', rev = '1-b', error = 'forbidden', reason = 'second'},"
                 "  {id = 'c', error = 'conflict'},"
                 "  {id = 'c', error = 'conflict'},"
                 "  {id = 'd', rev = '2-d', error = 'forbidden'},"
                 "  {id = 'e', rev = 7, error = 'odd'},"
                 "  {id = '', error = 'empty id'} }");
  int top = lua_gettop(L);
  couch_refusals_index(L, &x, -1);
  CHECK(lua_gettop(L) == top); /* balanced */
  CHECK(x.n == 7);
  CHECK(by_rev(&x, "a", "1-a") == 0);  /* written, not refused */
  CHECK(by_id(&x, "a") == 0);
  CHECK(by_rev(&x, "b", "1-b") == 3);  /* the last one wins, as a table keyed by "id rev" */
  CHECK(by_id(&x, "b") == 0);          /* it names its rev: not its siblings' */
  CHECK(by_id(&x, "c") == 4);          /* the first rev-less one */
  CHECK(by_rev(&x, "c", "1-c") == 0);
  CHECK(by_rev(&x, "d", "2-d") == 6);
  CHECK(by_rev(&x, "d", "1-d") == 0);
  CHECK(by_id(&x, "d") == 0);
  CHECK(by_id(&x, "e") == 0);          /* a rev that is no string still names a rev */
  CHECK(by_rev(&x, "e", "7") == 0);
  CHECK(by_id(&x, "") == 8);
  CHECK(by_id(&x, "zz") == 0);

  /* the answer goes (its strings collected): the index still answers from its copies */
  lua_pop(L, 1);
  lua_gc(L, LUA_GCCOLLECT);
  CHECK(by_id(&x, "c") == 4);

  /* rebuilt for the next answer: nothing of the previous one stays */
  push_answer(L, "{ {id = 'c', rev = '3-c', ok = true}, {id = 'f', error = 'x'} }");
  couch_refusals_index(L, &x, -1);
  CHECK(x.n == 1);
  CHECK(by_id(&x, "c") == 0);
  CHECK(by_rev(&x, "b", "1-b") == 0);
  CHECK(by_id(&x, "f") == 2);

  /* many refusals of one id: still the first rev-less, the last per rev */
  lua_settop(L, 0);
  CHECK(luaL_dostring(L, "local t = {} for i = 1, 500 do t[i] = {id = 'same', rev = (i % 2 == 0) and ('1-' .. (i % 7)) or nil,"
                         " error = 'e'} end return t") == LUA_OK);
  couch_refusals_index(L, &x, -1);
  CHECK(x.n == 500);
  CHECK(by_id(&x, "same") == 1);
  CHECK(by_rev(&x, "same", "1-0") == 490); /* the last even i with i % 7 == 0 */

  couch_refusals_free(&x);
  CHECK(x.v == NULL && x.bytes == NULL && x.n == 0);
  lua_close(L);
  printf("test_refusals: %d checks\n", checks);
  return 0;
}
