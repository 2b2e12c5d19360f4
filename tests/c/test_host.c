/* The embedding API (include/couchlua.h), from C: hosts, running code, errors, openlibs
 * into a state of one's own. Kept free of leaks: valgrind --leak-check=full must be quiet. */
#include "couchlua.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* The error's first line (the message proper) equals / contains want. */
static int first_line_has(const char *err, const char *want) {
  if (!err) return 0;
  size_t n = strcspn(err, "\n");
  char *line = strndup(err, n);
  int found = line && strstr(line, want) != NULL;
  free(line);
  return found;
}

static void test_version(void) {
  CHECK(strcmp(couchlua_version(), COUCHLUA_VERSION) == 0);
  /* _NUM agrees with the string (the version itself is CMake's: tests/cli/test_version.sh) */
  int major = -1, minor = -1, patch = -1;
  CHECK(sscanf(COUCHLUA_VERSION, "%d.%d.%d", &major, &minor, &patch) == 3);
  CHECK(COUCHLUA_VERSION_NUM == major * 10000 + minor * 100 + patch);
}

static void test_dostring(void) {
  couchlua_host *h = couchlua_new();
  CHECK(h != NULL);
  lua_State *L = couchlua_state(h);
  CHECK(L != NULL);
  CHECK(couchlua_last_error(h) == NULL);

  CHECK(couchlua_dostring(h, "x = 40 + 2", "=t") == 0);
  CHECK(couchlua_last_error(h) == NULL);
  CHECK(lua_getglobal(L, "x") == LUA_TNUMBER && lua_tointeger(L, -1) == 42);
  lua_pop(L, 1);

  /* Standard libraries are open; couch is preloaded but no global is set. */
  CHECK(couchlua_dostring(h, "assert(string.format and io.write and os.time)", NULL) == 0);
  CHECK(couchlua_dostring(h, "assert(couch == nil)", NULL) == 0);
  CHECK(couchlua_dostring(h, "local c = require 'couch'; assert(c.version == '" COUCHLUA_VERSION
                             "'); assert(require 'couch.json'); assert(require 'couch.pretty')",
                          "=require") == 0);
  CHECK(lua_gettop(L) == 0); /* nothing left behind */
  couchlua_close(h);
}

static void test_errors(void) {
  couchlua_host *h = couchlua_new();
  CHECK(h != NULL);

  /* Syntax error: the chunk name and line, no traceback. */
  CHECK(couchlua_dostring(h, "x = = 1", "=bad.lua") == LUA_ERRSYNTAX);
  CHECK(first_line_has(couchlua_last_error(h), "bad.lua:1:"));

  /* Runtime error with a string: message, then a traceback. */
  CHECK(couchlua_dostring(h, "local function f() error('boom') end f()", "=rt") == LUA_ERRRUN);
  const char *e = couchlua_last_error(h);
  CHECK(first_line_has(e, "rt:1: boom"));
  CHECK(strstr(e, "\nstack traceback:") != NULL);
  CHECK(strstr(e, "in local 'f'") != NULL || strstr(e, "in function") != NULL);

  /* An error object prints through its __tostring. */
  CHECK(couchlua_dostring(h,
                          "error(setmetatable({kind='usage'}, {__tostring = function(e)"
                          " return 'couch: ' .. e.kind .. ': bad argument' end}))",
                          "=obj") == LUA_ERRRUN);
  CHECK(first_line_has(couchlua_last_error(h), "couch: usage: bad argument"));
  CHECK(strstr(couchlua_last_error(h), "stack traceback:") != NULL);

  /* Other values say what they are. */
  CHECK(couchlua_dostring(h, "error({})", "=tbl") == LUA_ERRRUN);
  CHECK(first_line_has(couchlua_last_error(h), "(error object is a table value)"));
  CHECK(couchlua_dostring(h, "error()", "=nil") == LUA_ERRRUN);
  CHECK(first_line_has(couchlua_last_error(h), "(error object is a nil value)"));

  /* The module's own error objects (couch.is_error recognises what couch raises). */
  CHECK(couchlua_dostring(h, "assert(require('couch').is_error(1) == false)", "=is") == 0);

  /* A success clears the last error. */
  CHECK(couchlua_last_error(h) == NULL);
  CHECK(lua_gettop(couchlua_state(h)) == 0);
  couchlua_close(h);
}

static void test_dofile(void) {
  char path[] = "/tmp/couchlua_test_host_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  const char body[] = "#!/usr/bin/env couchlua\nfile_ran = (file_ran or 0) + 1\n";
  CHECK(write(fd, body, sizeof body - 1) == (ssize_t)(sizeof body - 1));
  close(fd);

  couchlua_host *h = couchlua_new();
  CHECK(h != NULL);
  CHECK(couchlua_dofile(h, path) == 0); /* the #! line is skipped */
  CHECK(couchlua_dofile(h, path) == 0);
  lua_State *L = couchlua_state(h);
  CHECK(lua_getglobal(L, "file_ran") == LUA_TNUMBER && lua_tointeger(L, -1) == 2);
  lua_pop(L, 1);
  unlink(path);

  CHECK(couchlua_dofile(h, "/nonexistent/nosuch.lua") == LUA_ERRFILE);
  CHECK(first_line_has(couchlua_last_error(h), "cannot open /nonexistent/nosuch.lua"));
  couchlua_close(h);
}

static void test_run_pending(void) {
  couchlua_host *h = couchlua_new();
  CHECK(h != NULL);
  /* Nothing required: nothing to do. */
  CHECK(couchlua_run_pending(h) == 0);
  /* The hook the async core provides is called when present... */
  CHECK(couchlua_dostring(h, "require 'couch'; require('couch.internal').at_exit = function()"
                             " at_exit_ran = true end", "=hook") == 0);
  CHECK(couchlua_run_pending(h) == 0);
  CHECK(couchlua_dostring(h, "assert(at_exit_ran)", "=check") == 0);
  /* ...and its errors are reported like a script's. */
  CHECK(couchlua_dostring(h, "require('couch.internal').at_exit = function()"
                             " error('task failed') end", "=hook2") == 0);
  CHECK(couchlua_run_pending(h) != 0);
  CHECK(first_line_has(couchlua_last_error(h), "task failed"));
  couchlua_close(h);
}

static void test_noenv(void) {
  setenv("LUA_PATH_5_4", "/from/env/?.lua", 1);
  couchlua_host *h = couchlua_new_ex(COUCHLUA_NOENV);
  CHECK(h != NULL);
  CHECK(couchlua_dostring(h, "assert(not package.path:find('/from/env/', 1, true))", "=e") == 0);
  couchlua_close(h);
  h = couchlua_new();
  CHECK(h != NULL);
  CHECK(couchlua_dostring(h, "assert(package.path:find('/from/env/', 1, true))", "=e") == 0);
  couchlua_close(h);
  unsetenv("LUA_PATH_5_4");
}

/* couchlua_openlibs into a plain state, and couchlua_msghandler with lua_pcall. */
static void test_openlibs(void) {
  lua_State *L = luaL_newstate();
  CHECK(L != NULL);
  luaL_openlibs(L);
  couchlua_openlibs(L);
  CHECK(luaL_dostring(L, "local c = require 'couch'; return c.version") == LUA_OK);
  CHECK(strcmp(lua_tostring(L, -1), COUCHLUA_VERSION) == 0);
  lua_pop(L, 1);
  CHECK(luaL_dostring(L, "return require('couch.json') == require('couch').json") == LUA_OK);
  CHECK(lua_toboolean(L, -1));
  lua_pop(L, 1);

  lua_pushcfunction(L, couchlua_msghandler);
  CHECK(luaL_loadstring(L, "error(setmetatable({}, {__tostring = function() return 'E1' end}))")
        == LUA_OK);
  CHECK(lua_pcall(L, 0, 0, 1) == LUA_ERRRUN);
  const char *msg = lua_tostring(L, -1);
  CHECK(msg && strncmp(msg, "E1\nstack traceback:", 19) == 0);
  lua_settop(L, 0);
  lua_close(L);
}

/* The parts of an error C can act on without parsing the message. */
static void test_error_parts(void) {
  couchlua_host *h = couchlua_new();
  CHECK(couchlua_dostring(h, "require('couch').connect(42)", "=usage") != 0);
  CHECK(strcmp(couchlua_last_error_kind(h), "usage") == 0);
  CHECK(couchlua_last_error_status(h) == 0);
  CHECK(strstr(couchlua_last_error_message(h), "bad argument 'url'") != NULL);
  CHECK(strchr(couchlua_last_error_message(h), '\n') == NULL); /* one line */
  CHECK(strstr(couchlua_last_error(h), "stack traceback:") != NULL); /* the full text keeps it */

  CHECK(couchlua_dostring(h, "local c = require 'couch'\n"
                             "error(c.error('http', 'no such db', { status = 404, error = 'not_found' }))",
                          "=http") != 0);
  CHECK(strcmp(couchlua_last_error_kind(h), "http") == 0);
  CHECK(couchlua_last_error_status(h) == 404);

  CHECK(couchlua_dostring(h, "error('plain')", "=plain") != 0);
  CHECK(strcmp(couchlua_last_error_kind(h), "") == 0);
  CHECK(couchlua_last_error_status(h) == 0);
  CHECK(strcmp(couchlua_last_error_message(h), "plain:1: plain") == 0);

  CHECK(couchlua_dostring(h, "x = = 1", "=syntax") != 0);
  CHECK(strcmp(couchlua_last_error_kind(h), "syntax") == 0);

  CHECK(couchlua_dostring(h, "ok = 1", "=ok") == 0);
  CHECK(couchlua_last_error_kind(h) == NULL && couchlua_last_error_message(h) == NULL);
  couchlua_close(h);
}

/* couchlua_eval keeps the chunk's results on the stack. */
static void test_eval(void) {
  couchlua_host *h = couchlua_new();
  lua_State *L = couchlua_state(h);
  CHECK(couchlua_eval(h, "return 1, 'two', nil", "=eval") == 3);
  CHECK(lua_tointeger(L, -3) == 1 && strcmp(lua_tostring(L, -2), "two") == 0 && lua_isnil(L, -1));
  lua_pop(L, 3);
  CHECK(couchlua_eval(h, "local x = 1", "=none") == 0);
  CHECK(couchlua_eval(h, "error('e')", "=err") == -1);
  CHECK(lua_gettop(L) == 0);
  couchlua_close(h);
}

/* A host's writer receives print, progress lines and warnings. */
struct captured {
  char text[3][256];
  int calls[4];
};

static void capture(void *ud, int kind, const char *text, size_t len) {
  struct captured *c = ud;
  c->calls[kind]++;
  size_t have = strlen(c->text[kind - 1]);
  snprintf(c->text[kind - 1] + have, sizeof c->text[0] - have, "%.*s", (int)len, text);
}

static void test_writer(void) {
  couchlua_host *h = couchlua_new();
  struct captured c;
  memset(&c, 0, sizeof c);
  couchlua_set_writer(h, capture, &c);
  CHECK(couchlua_dostring(h, "print('a', 1, nil)\n"
                             "local internal = require 'couch.internal'\n"
                             "internal.write('progress', 'replicate a -> b: 3 written\\n')\n"
                             "assert(internal.is_tty('progress') == false)\n"
                             "warn('careful', ' now')",
                          "=out") == 0);
  CHECK(strcmp(c.text[COUCHLUA_PRINT - 1], "a\t1\tnil\n") == 0);
  CHECK(strcmp(c.text[COUCHLUA_PROGRESS - 1], "replicate a -> b: 3 written\n") == 0);
  CHECK(strcmp(c.text[COUCHLUA_WARNING - 1], "careful now\n") == 0);
  CHECK(c.calls[COUCHLUA_WARNING] == 1); /* one message, not its pieces */
  couchlua_close(h);
}

int main(void) {
  couchlua_close(NULL); /* allowed */
  test_error_parts();
  test_eval();
  test_writer();
  test_version();
  test_dostring();
  test_errors();
  test_dofile();
  test_run_pending();
  test_noenv();
  test_openlibs();
  printf("test_host: %d checks passed\n", checks);
  return 0;
}
