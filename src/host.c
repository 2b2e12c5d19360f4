/* The embedding API behind couchlua.h: a host is a lua_State plus the last error message.
 * Every call into Lua is protected, so a host never panics on a script's error; the
 * message handler turns any error value into "message\nstack traceback: ..." while the
 * stack that raised it is still there. */
#include "couchlua.h"

#include "error.h"
#include "loop/loop.h"
#include "output.h"
#include "task.h"
#include "traceback.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct couchlua_host {
  lua_State *L;
  couch_loop *loop; /* created with the host: couchlua_interrupt may not touch Lua */
  char *err;        /* malloc'd copy of the last error, or NULL */
  int err_nomem;    /* the last error could not even be copied */
  char err_kind[32]; /* its couch kind ("" for a plain Lua error) */
  int err_status;    /* its HTTP status, 0 when it has none */
  size_t err_line;   /* length of its first line (the message without the traceback) */
  char *err_first;   /* malloc'd copy of that line, or NULL */
};

static const char nomem_message[] = "not enough memory";

const char *couchlua_version(void) { return COUCHLUA_VERSION; }

#define ERROR_KEY "couchlua.error" /* registry: the last error object the handler saw */

/* A string field of the last error object, or NULL (the string stays in the registry). */
static const char *last_error_field(lua_State *L, const char *name, lua_Integer *num) {
  const char *s = NULL;
  if (lua_getfield(L, LUA_REGISTRYINDEX, ERROR_KEY) == LUA_TTABLE) {
    int t = lua_getfield(L, -1, name);
    if (t == LUA_TSTRING) s = lua_tostring(L, -1);
    else if (t == LUA_TNUMBER && num) *num = lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return s;
}

const char *couchlua_error_kind(lua_State *L) { return last_error_field(L, "kind", NULL); }

int couchlua_msghandler(lua_State *L) {
  if (couch_error_is(L, 1)) lua_pushvalue(L, 1);
  else lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, ERROR_KEY);
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) { /* not a string: an error object with __tostring, or something odd */
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    /* an error a task left unseen (couch.run at the end names it: task.c), said as a
     * string error of a task is said: "NAME failed: ..." */
    if (couch_error_is(L, 1)) {
      if (lua_getfield(L, 1, "task") == LUA_TSTRING) msg = lua_pushfstring(L, "%s failed: %s", lua_tostring(L, -1), msg);
      /* (msg stays anchored on the stack either way: the handler's results are its top) */
    }
  }
  /* a task's error arrives with the task's own traceback: the frames that re-raised it
   * (couch.run at the end of the script) say nothing more */
  if (strstr(msg, "\nstack traceback:")) lua_pushstring(L, msg);
  else couch_traceback(L, L, msg, 1);
  return 1;
}

/* Runs protected, so a memory error while opening the libraries is reported, not fatal. */
static int open_libraries(lua_State *L) {
  unsigned flags = (unsigned)lua_tointeger(L, 1);
  if (flags & COUCHLUA_NOENV) { /* read by luaopen_package, as lua.c's -E does */
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  couchlua_openlibs(L);
  lua_pushlightuserdata(L, couch_loop_get(L));
  return 1;
}

couchlua_host *couchlua_new_ex(unsigned flags) {
  couchlua_host *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->L = luaL_newstate();
  if (!h->L) {
    free(h);
    return NULL;
  }
  lua_pushcfunction(h->L, open_libraries);
  lua_pushinteger(h->L, (lua_Integer)flags);
  if (lua_pcall(h->L, 1, 1, 0) != LUA_OK) {
    lua_close(h->L);
    free(h);
    return NULL;
  }
  h->loop = lua_touserdata(h->L, -1);
  lua_pop(h->L, 1);
  return h;
}

couchlua_host *couchlua_new(void) { return couchlua_new_ex(0); }

void couchlua_close(couchlua_host *h) {
  if (!h) return;
  lua_close(h->L);
  free(h->err);
  free(h->err_first);
  free(h);
}

lua_State *couchlua_state(couchlua_host *h) { return h->L; }

const char *couchlua_last_error(const couchlua_host *h) {
  if (h->err_nomem) return nomem_message;
  return h->err;
}

const char *couchlua_last_error_kind(const couchlua_host *h) {
  return (h->err || h->err_nomem) ? h->err_kind : NULL;
}

int couchlua_last_error_status(const couchlua_host *h) { return h->err ? h->err_status : 0; }

const char *couchlua_last_error_message(const couchlua_host *h) {
  if (h->err_nomem) return nomem_message;
  return h->err_first;
}

static void clear_error(couchlua_host *h) {
  free(h->err);
  free(h->err_first);
  h->err = h->err_first = NULL;
  h->err_nomem = 0;
  h->err_kind[0] = '\0';
  h->err_status = 0;
}

/* Record the outcome of a load or call whose error value (if any) is on top; pop it. The
 * value is a string here: load errors are, and calls go through couchlua_msghandler. */
static int finish(couchlua_host *h, int status) {
  clear_error(h);
  if (status == LUA_OK) return 0;
  const char *msg = lua_tostring(h->L, -1);
  if (!msg) msg = "(error object is not a string)";
  h->err = strdup(msg);
  h->err_first = strndup(msg, strcspn(msg, "\n"));
  if (!h->err || !h->err_first) h->err_nomem = 1;
  lua_pop(h->L, 1);
  if (status == LUA_ERRRUN) { /* kind and status of a couch error object, via the handler */
    const char *kind = last_error_field(h->L, "kind", NULL);
    lua_Integer code = 0;
    last_error_field(h->L, "status", &code);
    snprintf(h->err_kind, sizeof h->err_kind, "%s", kind ? kind : "");
    h->err_status = (int)code;
  } else {
    snprintf(h->err_kind, sizeof h->err_kind, "%s", status == LUA_ERRSYNTAX ? "syntax" : "");
  }
  return status;
}

/* Call the function below nargs arguments on top of the stack with the message handler;
 * leaves nothing on success, the message on failure. */
static int protected_call(lua_State *L, int nargs) {
  int base = lua_gettop(L) - nargs; /* the function's index */
  lua_pushcfunction(L, couchlua_msghandler);
  lua_insert(L, base);
  int status = lua_pcall(L, nargs, 0, base);
  lua_remove(L, base);
  return status;
}

int couchlua_dostring(couchlua_host *h, const char *chunk, const char *chunkname) {
  couch_loop_clear_interrupt(h->loop);
  int status = luaL_loadbuffer(h->L, chunk, strlen(chunk), chunkname ? chunkname : "=(string)");
  if (status == LUA_OK) status = protected_call(h->L, 0);
  return finish(h, status);
}

int couchlua_eval(couchlua_host *h, const char *chunk, const char *chunkname) {
  couch_loop_clear_interrupt(h->loop);
  lua_State *L = h->L;
  int top = lua_gettop(L);
  int status = luaL_loadbuffer(L, chunk, strlen(chunk), chunkname ? chunkname : "=(string)");
  if (status == LUA_OK) {
    int base = top + 1; /* the chunk */
    lua_pushcfunction(L, couchlua_msghandler);
    lua_insert(L, base);
    status = lua_pcall(L, 0, LUA_MULTRET, base);
    lua_remove(L, base);
  }
  if (finish(h, status) != 0) return -1;
  return lua_gettop(L) - top;
}

int couchlua_dofile(couchlua_host *h, const char *path) {
  couch_loop_clear_interrupt(h->loop);
  int status = luaL_loadfile(h->L, path);
  if (status == LUA_OK) status = protected_call(h->L, 0);
  return finish(h, status);
}

/* The couch module's internal.at_exit(), if the module was loaded. */
static int call_at_exit(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, "couch.internal") != LUA_TTABLE) return 0; /* never required */
  if (lua_getfield(L, -1, "at_exit") != LUA_TFUNCTION) return 0;
  lua_call(L, 0, 0);
  return 0;
}

int couchlua_run_pending(couchlua_host *h) {
  couch_loop_clear_interrupt(h->loop);
  lua_pushcfunction(h->L, call_at_exit);
  return finish(h, protected_call(h->L, 0));
}

/* ---- driving the loop from the host's own ---- */

int couchlua_fd(couchlua_host *h) { return h->loop->epfd; }

int couchlua_timeout(couchlua_host *h) {
  int64_t ms = couch_loop_timeout(h->loop);
  return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

/* One non-blocking turn, then the first task error no one waited for; returns the number of
 * tasks still alive. */
static int step(lua_State *L) {
  couch_loop *loop = lua_touserdata(L, 1);
  couch_loop_poll(loop, L);
  couch_task_raise_unseen(L);
  lua_pushinteger(L, loop->tasks_alive);
  return 1;
}

int couchlua_step(couchlua_host *h) {
  lua_State *L = h->L;
  int base = lua_gettop(L);
  lua_pushcfunction(L, couchlua_msghandler);
  lua_pushcfunction(L, step);
  lua_pushlightuserdata(L, h->loop);
  int status = lua_pcall(L, 1, 1, base + 1);
  if (status != LUA_OK) {
    lua_remove(L, base + 1);
    finish(h, status);
    return -1;
  }
  int alive = (int)lua_tointeger(L, -1);
  lua_settop(L, base);
  clear_error(h);
  return alive;
}

void couchlua_interrupt(couchlua_host *h) { couch_loop_interrupt(h->loop); }

void couchlua_set_writer(couchlua_host *h,
                         void (*fn)(void *ud, int kind, const char *text, size_t len), void *ud) {
  couch_output_set_writer(h->L, fn, ud);
}
