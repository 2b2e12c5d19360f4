/* The native engine's one door for "the server answered, but not what the protocol says"
 * (issue 11): a short or wrong-shaped answer must end as a structured error naming the
 * request, like every failure the request layer raises, never as a Lua error about a nil
 * value. The url is rebuilt from the database (its server's url has no userinfo by
 * construction) and still goes through the redactor. */
#include "replicate/answer.h"

#include "error.h"
#include "http/url.h"

#include <lauxlib.h>
#include <stdarg.h>

int couch_answer_raise(lua_State *L, int job, const char *side, const char *method, const char *path,
                       lua_Integer status, const char *kind, const char *code, const char *fmt, ...) {
  job = lua_absindex(L, job);
  luaL_checkstack(L, 8, "raising");
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  couch_error_push(L, kind, "%s", lua_tostring(L, -1));
  lua_remove(L, -2);
  int err = lua_gettop(L);
  couch_error_setint(L, err, "status", status);
  couch_error_setstr(L, err, "method", method);
  couch_error_setstr(L, err, "error", code);
  lua_getfield(L, job, side);
  lua_getfield(L, -1, "server");
  lua_getfield(L, -1, "url");
  lua_getfield(L, -3, "path");
  lua_pushstring(L, path);
  lua_concat(L, 3);
  couch_url_push_redacted(L, lua_tostring(L, -1));
  lua_setfield(L, err, "url");
  lua_settop(L, err);
  return lua_error(L);
}
