/* Running code for the couchlua command, as lua.c does: every call goes through
 * cli_docall (traceback handler + Ctrl-C handler) and every failure through cli_report,
 * so an error prints as one line saying what went wrong, then Lua's traceback. */
#include "cli/cli.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* As in lua.c, which defines these itself. */
#define INIT_VAR "LUA_INIT"
#define IGNORE_MARK '-' /* LUA_IGMARK: `-l mod-v2` sets global `mod` */

const char *cli_progname = "couchlua";

void cli_message(const char *pname, const char *msg) {
  fflush(stdout);
  if (pname) fprintf(stderr, "%s: ", pname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

int cli_exit_code = EXIT_SUCCESS;

/* Remember how the run failed: a runtime error by its couch kind (usage 2, cancelled 130),
 * anything else (syntax, file, memory) 1. */
static void note_failure(lua_State *L, int status) {
  const char *kind = status == LUA_ERRRUN ? couchlua_error_kind(L) : NULL;
  if (kind && strcmp(kind, "usage") == 0) cli_exit_code = CLI_EXIT_USAGE;
  else if (kind && strcmp(kind, "cancelled") == 0) cli_exit_code = CLI_EXIT_INTERRUPTED;
  else cli_exit_code = EXIT_FAILURE;
}

int cli_report(lua_State *L, int status) {
  if (status != LUA_OK) {
    note_failure(L, status);
    const char *msg = lua_tostring(L, -1); /* a string: see couchlua_msghandler */
    cli_message(cli_progname, msg ? msg : "(error object is not a string)");
    lua_pop(L, 1);
  }
  return status;
}

int cli_docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg; /* the function's index */
  lua_pushcfunction(L, couchlua_msghandler);
  lua_insert(L, base);
  cli_signals_eval_begin(L);
  int status = lua_pcall(L, narg, nres, base);
  cli_signals_eval_end(L);
  lua_remove(L, base);
  return status;
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = cli_docall(L, 0, 0);
  return cli_report(L, status);
}

int cli_dofile(lua_State *L, const char *name) { return dochunk(L, luaL_loadfile(L, name)); }

int cli_dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* `-l g=mod` (Lua 5.4.6) or `-l mod`; in the latter a "-suffix" is dropped from the
 * global's name, so `-l mod-v2` sets global mod. */
int cli_dolibrary(lua_State *L, char *globname) {
  char *suffix = NULL;
  char *modname = strchr(globname, '=');
  if (modname == NULL) {
    modname = globname;
    suffix = strchr(modname, IGNORE_MARK);
  } else {
    *modname = '\0';
    modname++;
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, modname);
  int status = cli_docall(L, 1, 1);
  if (status == LUA_OK) {
    if (suffix != NULL) *suffix = '\0';
    lua_setglobal(L, globname);
  }
  return cli_report(L, status);
}

/* Push arg[1..#arg]: the script's `...`. */
static int pushargs(lua_State *L) {
  if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
  int n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  int i;
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -i); /* the table */
  return n;
}

int cli_handle_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL; /* stdin */
  int status = luaL_loadfile(L, fname); /* skips a first line starting with '#' */
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = cli_docall(L, n, LUA_MULTRET);
  }
  return cli_report(L, status);
}

int cli_handle_luainit(lua_State *L) {
  const char *name = "=" INIT_VAR LUA_VERSUFFIX; /* LUA_INIT_5_4 first */
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=" INIT_VAR;
    init = getenv(name + 1);
  }
  if (init == NULL) return LUA_OK;
  if (init[0] == '@') return cli_dofile(L, init + 1);
  return cli_dostring(L, init, name);
}

int cli_run_pending(couchlua_host *h) {
  lua_State *L = couchlua_state(h);
  cli_signals_eval_begin(L);
  int status = couchlua_run_pending(h);
  cli_signals_eval_end(L);
  if (status != LUA_OK) {
    note_failure(L, status);
    cli_message(cli_progname, couchlua_last_error(h));
  }
  return status;
}
