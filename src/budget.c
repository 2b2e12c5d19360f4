/* Instruction budgets (see budget.h). Each budgeted call keeps a small record in a
 * userdata on its own stack (alive for as long as the call, across yields); a weak-keyed
 * registry table maps the thread to its innermost record, which links to the one it
 * nests in. The count hook charges every record of the chain, so an inner budget cannot
 * hide an outer one's overrun. */
#include "budget.h"

#include "error.h"

#include <lauxlib.h>

#define STEP 1000 /* instructions between two hook calls: cheap, yet a fine enough grain */

typedef struct budget {
  lua_Integer left, limit;
  struct budget *outer;
  int exhausted;
} budget;

static const char BUDGETS_KEY = 0; /* registry: thread -> innermost record (lightuserdata) */

static budget *current(lua_State *L) {
  budget *b = NULL;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &BUDGETS_KEY) == LUA_TTABLE) {
    lua_pushthread(L);
    lua_rawget(L, -2);
    b = lua_touserdata(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return b;
}

static void set_current(lua_State *L, budget *b) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &BUDGETS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k"); /* a dead coroutine's entry goes with it */
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &BUDGETS_KEY);
  }
  lua_pushthread(L);
  if (b) lua_pushlightuserdata(L, b);
  else lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  budget *over = NULL;
  for (budget *b = current(L); b; b = b->outer) {
    b->left -= STEP;
    if (b->left <= 0 && !over) over = b;
  }
  if (!over) return;
  /* Once over, every instruction raises again: a pcall inside the hook that caught the
   * error cannot keep the code running. */
  over->exhausted = 1;
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
  couch_error_push(L, "budget", "ran past its budget of %I instructions", over->limit);
  couch_error_setint(L, -1, "limit", over->limit);
  lua_error(L);
}

void couch_budget_rearm(lua_State *co) {
  lua_Hook h = lua_gethook(co);
  if (h && h != budget_hook) return; /* an interrupt's stop hook: it goes first */
  budget *b = current(co);
  if (!b) return;
  int exhausted = 0;
  for (budget *o = b; o; o = o->outer) exhausted |= o->exhausted;
  lua_sethook(co, budget_hook, LUA_MASKCOUNT, exhausted ? 1 : STEP);
}

/* The call ended (results or error at the top, record at index 1): pop the record. */
static int finish(lua_State *L, int status) {
  budget *b = lua_touserdata(L, 1);
  set_current(L, b->outer);
  if (lua_gethook(L) == budget_hook) lua_sethook(L, NULL, 0, 0);
  couch_budget_rearm(L); /* the outer budget, if any, counts on */
  if (status != LUA_OK && status != LUA_YIELD) {
    /* exhausted, but the code caught that and failed some other way: still the budget */
    if (b->exhausted && !couch_error_is(L, -1)) {
      couch_error_push(L, "budget", "ran past its budget of %I instructions", b->limit);
      couch_error_setint(L, -1, "limit", b->limit);
    }
    return lua_error(L);
  }
  return lua_gettop(L) - 1;
}

static int call_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  return finish(L, status);
}

/* internal.budget_call(limit, fn, ...) */
static int l_budget_call(lua_State *L) {
  lua_Integer limit = luaL_checkinteger(L, 1);
  if (limit <= 0) return couch_error_usage(L, "limit", "must be a positive number of instructions");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  budget *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->left = b->limit = limit;
  b->outer = current(L);
  b->exhausted = 0;
  lua_replace(L, 1); /* index 1: the record, kept on this stack for the whole call */
  set_current(L, b);
  couch_budget_rearm(L);
  int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, call_k);
  return finish(L, status);
}

void couch_budget_open(lua_State *L) {
  lua_pushcfunction(L, l_budget_call);
  lua_setfield(L, -2, "budget_call");
}
