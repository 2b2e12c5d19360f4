/* Who keeps a waiting task alive.
 *
 * A running task, or one waiting for a transfer or a timer, is anchored in the registry
 * (task->self_ref): the loop will wake it. A task blocked on a wait that only other Lua
 * code can complete (cond:wait() or task:wait() without a timeout) is instead anchored by
 * the object that can complete it, its "owner": the cond, or the task being joined. It is
 * then alive exactly as long as someone can still reach that owner to signal it. When no
 * one can, the collector takes the owner, the parked task and its coroutine together (the
 * coroutine hangs off the task userdata, see task.c), and the task's __gc cancels it: that
 * is how couch.run() tells a deadlock from a task that is merely waiting.
 *
 * Three registry tables:
 *   PARKED_BY  ephemeron, owner -> { [task lightuserdata] = task }: the anchor itself
 *   OWNERS     weak values, owner lightuserdata -> owner: to find the owner again from C
 *   PARKED     weak values, task lightuserdata -> task: to re-anchor the task from C; its
 *              entry is gone exactly when the task is being collected */
#include "loop/task.h"

#include <lauxlib.h>

static const char PARKED_BY = 'b', OWNERS = 'o', PARKED = 'p';

/* Push the registry table at key, creating it with the given __mode. */
static void push_table(lua_State *L, const char *key, const char *mode) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

void couch_task_park(couch_task *t, lua_State *L, int owner) {
  if (t->parked || t->self_ref == LUA_NOREF) return;
  owner = lua_absindex(L, owner);
  luaL_checkstack(L, 6, "parking a task");
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
  int task = lua_gettop(L);

  push_table(L, &PARKED_BY, "k");
  lua_pushvalue(L, owner);
  if (lua_rawget(L, -2) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, owner);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  lua_pushvalue(L, task);
  lua_rawsetp(L, -2, t);
  lua_pop(L, 2);

  push_table(L, &OWNERS, "v");
  lua_pushvalue(L, owner);
  lua_rawsetp(L, -2, lua_topointer(L, owner));
  lua_pop(L, 1);

  push_table(L, &PARKED, "v");
  lua_pushvalue(L, task);
  lua_rawsetp(L, -2, t);
  lua_pop(L, 2); /* PARKED, task */

  t->parked_on = lua_topointer(L, owner);
  luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
  t->self_ref = LUA_NOREF;
  t->parked = 1;
}

int couch_task_unpark(couch_task *t) {
  /* Called from C with no Lua state at hand: the main thread's stack is used, balanced. */
  lua_State *L = t->loop->L;
  if (!t->parked) return 1;
  if (!lua_checkstack(L, 4)) return 0;
  push_table(L, &PARKED, "v");
  if (lua_rawgetp(L, -1, t) == LUA_TNIL) { /* cleared: the task is being collected */
    lua_pop(L, 2);
    return 0;
  }
  t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushnil(L);
  lua_rawsetp(L, -2, t);
  lua_pop(L, 1);

  /* Drop the owner's anchor (the owner may be gone already: then so is the anchor). */
  push_table(L, &OWNERS, "v");
  if (lua_rawgetp(L, -1, t->parked_on) != LUA_TNIL) {
    push_table(L, &PARKED_BY, "k");
    lua_pushvalue(L, -2);
    if (lua_rawget(L, -2) == LUA_TTABLE) {
      lua_pushnil(L);
      lua_rawsetp(L, -2, t);
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 2);
  t->parked_on = NULL;
  t->parked = 0;
  return 1;
}
