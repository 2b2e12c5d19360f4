/* Embedding couchlua in a C program: create a host, give Lua a function of the application
 * (app_log), run Lua that uses the couch module and calls back into C, read a result back
 * in C, handle an error, clean up.
 *
 * Build:  cc embed.c $(pkg-config --cflags --libs couchlua) -o embed
 * Exit status 0 only when every step worked (the test suite runs it). */
#include <couchlua.h>

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

/* The application's own state, which its Lua-visible functions reach through an upvalue. */
struct app {
  int messages;
  char last[512];
};

/* app_log(message): the application's logger, callable from Lua. */
static int app_log(lua_State *L) {
  struct app *app = lua_touserdata(L, lua_upvalueindex(1));
  const char *msg = luaL_checkstring(L, 1); /* a wrong argument raises a Lua error */
  printf("[app] %s\n", msg);
  snprintf(app->last, sizeof app->last, "%s", msg);
  app->messages++;
  return 0;
}

static const char script[] =
    "local couch = require 'couch'\n"
    "local doc = { _id = 'orders-backup', source = 'orders', target = 'orders_backup',\n"
    "              create_target = true, continuous = true }\n"
    "local text = couch.json.encode(doc)\n"
    "app_log('replication document: ' .. text)\n"
    "result = { json = text, version = couch.version }\n";

static int fail(const char *what, couchlua_host *h) {
  fprintf(stderr, "embed: %s: %s\n", what, h ? couchlua_last_error(h) : "no host");
  couchlua_close(h);
  return 1;
}

int main(void) {
  struct app app = {0};

  couchlua_host *h = couchlua_new();
  if (!h) return fail("couchlua_new", NULL);
  lua_State *L = couchlua_state(h);

  /* Register app_log as a global, with the app as its upvalue. */
  lua_pushlightuserdata(L, &app);
  lua_pushcclosure(L, app_log, 1);
  lua_setglobal(L, "app_log");

  if (couchlua_dostring(h, script, "=embed") != 0) return fail("script", h);

  /* Read the script's result back: result.json and result.version. */
  if (lua_getglobal(L, "result") != LUA_TTABLE) return fail("no result table", h);
  lua_getfield(L, -1, "json");
  lua_getfield(L, -2, "version");
  const char *json = lua_tostring(L, -2);
  const char *version = lua_tostring(L, -1);
  int ok = json && strstr(json, "\"source\":\"orders\"") && strstr(json, "\"continuous\":true") &&
           version && strcmp(version, couchlua_version()) == 0 && app.messages == 1 &&
           strstr(app.last, json) != NULL;
  printf("json from Lua: %s\ncouch version: %s\n", json ? json : "(none)",
         version ? version : "(none)");
  lua_pop(L, 3);
  if (!ok) return fail("unexpected result", h);

  /* Errors come back as a message with a traceback, never as a crash. */
  if (couchlua_dostring(h, "app_log()", "=bad call") == 0) return fail("no error", h);
  const char *err = couchlua_last_error(h);
  printf("expected error: %.*s\n", (int)strcspn(err, "\n"), err);
  if (!strstr(err, "bad argument #1 to 'app_log'")) return fail("wrong error", h);

  /* Let any tasks the scripts spawned finish, then close. */
  if (couchlua_run_pending(h) != 0) return fail("pending tasks", h);
  couchlua_close(h);
  puts("embed: ok");
  return 0;
}
