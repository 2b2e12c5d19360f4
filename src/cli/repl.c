/* The read-eval-print loop, shaped like lua.c's: a line is first tried as `return <line>`
 * (so a bare expression prints its value), then as a statement; a chunk whose syntax error
 * ends at <eof> is incomplete and continues on the next line with the `>> ` prompt.
 * Results are printed by couch.pretty (nested tables indented, error objects and couch
 * objects through __tostring), tab-separated. Errors are printed and the loop goes on. */
#include "cli/cli.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop/loop.h"
#include "task.h"

#define PROMPT "couch> "
#define PROMPT2 ">> "
#define EOFMARK "<eof>"
#define PRINTER_KEY "couchlua.repl.printer" /* registry: the function printing results */

/* loadline's answers besides a Lua status. */
enum { LOAD_EOF = -1, LOAD_NOTHING = -2 };

void cli_print_version(void) {
  printf("couchlua %s -- %s\n", couchlua_version(), LUA_COPYRIGHT);
  fflush(stdout);
}

/* _PROMPT / _PROMPT2 override the prompts, as in lua.c. Leaves the prompt on the stack. */
static const char *get_prompt(lua_State *L, int firstline) {
  if (lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushstring(L, firstline ? PROMPT : PROMPT2);
  } else {
    luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
  }
  return lua_tostring(L, -1);
}

/* A syntax error at the end of the input means the chunk is not finished yet. */
static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    size_t marklen = sizeof EOFMARK - 1;
    if (lmsg >= marklen && strcmp(msg + lmsg - marklen, EOFMARK) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* Read a line and push it; `=expr` becomes `return expr`. Returns a CLI_READ_* value and
 * pushes only on CLI_READ_LINE. */
static int pushline(lua_State *L, int firstline) {
  char *line;
  get_prompt(L, firstline);
  int r = cli_input_read(lua_tostring(L, -1), &line);
  lua_pop(L, 1);
  if (r != CLI_READ_LINE) return r;
  if (firstline && line[0] == '=')
    lua_pushfstring(L, "return %s", line + 1);
  else
    lua_pushstring(L, line);
  free(line);
  return CLI_READ_LINE;
}

/* require(module)[fn](the argument): for the REPL's helpers written in Lua. Upvalues:
 * the module's and the function's names. Call it protected. */
static int call_lua_helper(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_call(L, 1, 1);
  lua_getfield(L, -1, lua_tostring(L, lua_upvalueindex(2)));
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

static void push_lua_helper(lua_State *L, const char *module, const char *fn) {
  lua_pushstring(L, module);
  lua_pushstring(L, fn);
  lua_pushcclosure(L, call_lua_helper, 2);
}

/* Into the history, with credentials taken out (couch.redact.source); a line that cannot
 * be redacted is not kept at all. */
static void remember(lua_State *L, const char *text) {
  push_lua_helper(L, "couch.redact", "source");
  lua_pushstring(L, text);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
    cli_input_remember(lua_tostring(L, -1));
  lua_pop(L, 1);
}

/* Try the line on top as `return <line>;`. On success the function replaces nothing: it
 * is pushed above the line. */
static int addreturn(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *retline = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK) {
    lua_remove(L, -2); /* the modified line */
    remember(L, line);
  } else {
    lua_pop(L, 2); /* the error and the modified line */
  }
  return status;
}

/* Compile the line at index 1 as a statement, reading continuation lines while the chunk
 * is incomplete. Returns a Lua status, or LOAD_NOTHING when Ctrl-C abandoned the chunk. */
static int multiline(lua_State *L) {
  for (;;) {
    size_t len;
    const char *chunk = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, chunk, len, "=stdin");
    if (!incomplete(L, status)) {
      remember(L, chunk);
      return status;
    }
    int r = pushline(L, 0);
    if (r == CLI_READ_INTERRUPTED) return LOAD_NOTHING;
    if (r == CLI_READ_EOF) { /* report the chunk as it stands: "... near <eof>" */
      remember(L, chunk);
      return luaL_loadbuffer(L, chunk, len, "=stdin");
    }
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3); /* chunk .. "\n" .. line, at index 1 */
  }
}

/* Leave a compiled chunk (or an error message) alone on the stack. */
static int loadline(lua_State *L) {
  lua_settop(L, 0);
  int r = pushline(L, 1);
  if (r == CLI_READ_EOF) return LOAD_EOF;
  if (r == CLI_READ_INTERRUPTED) return LOAD_NOTHING;
  int status = addreturn(L);
  if (status != LUA_OK) status = multiline(L);
  if (status == LOAD_NOTHING) {
    lua_settop(L, 0);
    return status;
  }
  lua_remove(L, 1); /* the line */
  return status;
}

/* Print the values on the stack with the printer (couch.pretty.print, or plain print). */
static void print_results(lua_State *L) {
  int n = lua_gettop(L);
  if (n == 0) return;
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  if (lua_getfield(L, LUA_REGISTRYINDEX, PRINTER_KEY) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    lua_getglobal(L, "print");
  }
  lua_insert(L, 1);
  int status = cli_docall(L, n, 0);
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    cli_message(cli_progname,
                lua_pushfstring(L, "error printing the result (%s)", msg ? msg : "?"));
    lua_pop(L, 2);
  }
}

/* ---- tasks run while the prompt waits for a key ---- */

static couch_loop *repl_loop;

static int background_timeout(void *ud) {
  (void)ud;
  int64_t ms = couch_loop_timeout(repl_loop);
  return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

static int run_ready_tasks(lua_State *L) {
  couch_loop_run_ready(repl_loop, L);
  couch_task_raise_unseen(L); /* a task that failed with no one waiting: say so now */
  return 0;
}

static void background_tick(void *ud) {
  lua_State *L = ud;
  if (couch_loop_service(repl_loop) > 0) {
    cli_input_hide(); /* the tasks' output goes above the prompt */
    lua_pushcfunction(L, run_ready_tasks);
    cli_report(L, cli_docall(L, 0, 0));
    cli_input_show();
  }
  couch_loop_clear_interrupt(repl_loop); /* a Ctrl-C meanwhile stopped a task: it is spent */
}

static int cancel_tasks(lua_State *L) {
  lua_pushinteger(L, couch_task_cancel_all(L));
  return 1;
}

/* Ctrl-D while tasks run: the first one says so, the second cancels them and quits. Returns
 * whether to quit. */
static int quit_on_eof(lua_State *L, int *warned) {
  int alive = repl_loop ? repl_loop->tasks_alive : 0;
  if (!cli_input_is_tty() || alive == 0) return 1; /* piped: the tasks run on at the end */
  if (!*warned) {
    printf("\n%d task%s still running: Ctrl-D again cancels %s and quits\n", alive,
           alive == 1 ? " is" : "s are", alive == 1 ? "it" : "them");
    fflush(stdout);
    *warned = 1;
    return 0;
  }
  lua_pushcfunction(L, cancel_tasks);
  if (cli_report(L, cli_docall(L, 0, 1)) == LUA_OK) {
    printf("\ncancelled %d task%s\n", (int)lua_tointeger(L, -1), lua_tointeger(L, -1) == 1 ? "" : "s");
    lua_pop(L, 1);
  }
  return 1;
}

/* ---- tab completion (the candidates come from couch.complete, in Lua) ---- */

#define COMPLETIONS_KEY "couchlua.repl.completions" /* registry: the current list */

static const char *completion(void *ud, const char *word, int index) {
  lua_State *L = ud;
  if (index == 0) { /* a new word: compute the list once */
    push_lua_helper(L, "couch.complete", "complete");
    lua_pushstring(L, word);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      lua_pop(L, 1); /* no completions rather than an error in the middle of a line */
      return NULL;
    }
    lua_setfield(L, LUA_REGISTRYINDEX, COMPLETIONS_KEY);
  }
  if (lua_getfield(L, LUA_REGISTRYINDEX, COMPLETIONS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    return NULL;
  }
  lua_rawgeti(L, -1, index + 1);
  const char *c = lua_tostring(L, -1); /* stays alive in the registry's list */
  lua_pop(L, 2);
  return c;
}

/* global couch = require "couch" (unless the user set it, e.g. with -l), and the printer. */
static void repl_setup(lua_State *L) {
  if (lua_getglobal(L, "couch") == LUA_TNIL) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "couch");
    if (cli_report(L, cli_docall(L, 1, 1)) == LUA_OK) lua_setglobal(L, "couch");
  }
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "couch.pretty");
  if (cli_report(L, cli_docall(L, 1, 1)) == LUA_OK) {
    lua_getfield(L, -1, "print");
    lua_setfield(L, LUA_REGISTRYINDEX, PRINTER_KEY);
    lua_pop(L, 1);
  }
}

void cli_repl(lua_State *L, int banner) {
  const char *oldprogname = cli_progname;
  cli_progname = NULL; /* no "couchlua: " in front of errors typed at the prompt */
  cli_input_open();
  cli_signals_repl_begin();
  if (banner && cli_input_is_tty()) { /* below the version line main.c printed */
    printf("global couch = require \"couch\"; results are pretty-printed. "
           "Ctrl-C interrupts, Ctrl-D exits.\n");
  }
  repl_setup(L);
  repl_loop = couch_loop_get(L);
  cli_input_set_background(repl_loop->epfd, background_timeout, background_tick, L);
  cli_input_set_completion(completion, L);
  int status, eof_warned = 0;
  for (;;) {
    status = loadline(L);
    if (status == LOAD_EOF) {
      if (quit_on_eof(L, &eof_warned)) break;
      continue;
    }
    eof_warned = 0;
    if (status == LOAD_NOTHING) { /* Ctrl-C while typing: a fresh prompt */
      fputs("\n", stdout);
      fflush(stdout);
      continue;
    }
    if (status == LUA_OK) status = cli_docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK)
      print_results(L);
    else
      cli_report(L, status);
    fflush(stdout);
  }
  cli_input_set_background(-1, NULL, NULL, NULL);
  cli_input_set_completion(NULL, NULL);
  lua_settop(L, 0);
  fputs("\n", stdout);
  fflush(stdout);
  cli_signals_repl_end();
  cli_input_close();
  cli_progname = oldprogname;
}
