/* The couchlua command: lua5.4's options, in lua.c's order (collect the options, create
 * the state, `arg`, LUA_INIT, -e/-l/-W in order, the script, then the REPL), plus --help,
 * `-l g=mod` (Lua 5.4.6) and, after a good run, the `couch` tasks left pending. */
#include "cli/cli.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What collectargs found. */
enum {
  HAS_ERROR = 1,  /* bad option */
  HAS_I = 2,      /* -i */
  HAS_V = 4,      /* -v */
  HAS_E = 8,      /* -e */
  HAS_BIG_E = 16, /* -E */
  HAS_HELP = 32   /* --help */
};

static const char usage_text[] =
    "usage: %s [options] [script [args]]\n"
    "Available options are:\n"
    "  -e stat   execute string 'stat'\n"
    "  -i        enter interactive mode after executing 'script'\n"
    "  -l mod    require library 'mod' into global 'mod'\n"
    "  -l g=mod  require library 'mod' into global 'g'\n"
    "  -v        show version information\n"
    "  -E        ignore environment variables\n"
    "  -W        turn warnings on\n"
    "  --        stop handling options\n"
    "  -         stop handling options and execute stdin\n"
    "  --help    show this help and exit\n"
    "With no script and stdin a terminal, couchlua starts a REPL with global `couch`.\n"
    "Exit status: 0 success (or the script's os.exit), 1 an error, 2 a usage error (bad\n"
    "option, or a couch `usage` error: wrong arguments to the API), 130 interrupted (Ctrl-C).\n";

static void print_usage(const char *badoption) {
  fprintf(stderr, "%s: ", cli_progname);
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "'%s' needs argument\n", badoption);
  else
    fprintf(stderr, "unrecognized option '%s'\n", badoption);
  fprintf(stderr, usage_text, cli_progname);
}

/* Scan the options (they end at the first non-option: the script). *first becomes the
 * index of the script, of the bad option on HAS_ERROR, or argc when there is no script. */
static int collectargs(char **argv, int *first) {
  int args = 0;
  int i;
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-') return args; /* the script */
    switch (argv[i][1]) {
    case '-': /* "--", or "--help" */
      if (strcmp(argv[i], "--help") == 0) return args | HAS_HELP;
      if (argv[i][2] != '\0') return HAS_ERROR;
      *first = i + 1;
      return args;
    case '\0': /* "-": the script is stdin */
      return args;
    case 'E':
      if (argv[i][2] != '\0') return HAS_ERROR;
      args |= HAS_BIG_E;
      break;
    case 'W':
      if (argv[i][2] != '\0') return HAS_ERROR;
      break;
    case 'i':
      args |= HAS_I; /* -i implies -v */
      /* FALLTHROUGH */
    case 'v':
      if (argv[i][2] != '\0') return HAS_ERROR;
      args |= HAS_V;
      break;
    case 'e':
      args |= HAS_E;
      /* FALLTHROUGH */
    case 'l': /* both need an argument, attached or next */
      if (argv[i][2] == '\0') {
        i++;
        if (argv[i] == NULL || argv[i][0] == '-') return HAS_ERROR;
      }
      break;
    default:
      return HAS_ERROR;
    }
  }
  *first = i;
  return args;
}

/* arg[0] = the script (or the program when there is none), arg[1..] its arguments, and
 * the interpreter and its options at negative indices. */
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  if (script == argc) script = 0;
  int narg = argc - (script + 1);
  lua_createtable(L, narg > 0 ? narg : 0, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* -e, -l and -W, in the order given. 0 when one failed (already reported). */
static int runargs(lua_State *L, char **argv, int n) {
  for (int i = 1; i < n; i++) {
    int option = argv[i][1];
    switch (option) {
    case 'e':
    case 'l': {
      char *extra = argv[i] + 2;
      if (*extra == '\0') extra = argv[++i];
      int status = option == 'e' ? cli_dostring(L, extra, "=(command line)")
                                 : cli_dolibrary(L, extra);
      if (status != LUA_OK) return 0;
      break;
    }
    case 'W':
      lua_warning(L, "@on", 0);
      break;
    }
  }
  return 1;
}

struct run {
  int argc;
  char **argv;
  int args, script;
  couchlua_host *host;
};

/* Everything that touches Lua, protected. Pushes true when all went well. */
static int pmain(lua_State *L) {
  struct run *r = lua_touserdata(L, 1);
  luaL_checkversion(L);
  if (r->args & HAS_V) cli_print_version();
  createargtable(L, r->argv, r->argc, r->script);
  lua_gc(L, LUA_GCGEN, 0, 0); /* as lua.c: most objects die young */
  if (!(r->args & HAS_BIG_E) && cli_handle_luainit(L) != LUA_OK) return 0;
  if (!runargs(L, r->argv, r->script)) return 0;
  if (r->script < r->argc && cli_handle_script(L, r->argv + r->script) != LUA_OK) return 0;
  if (r->args & HAS_I) {
    cli_repl(L, 0);
  } else if (r->script == r->argc && !(r->args & (HAS_E | HAS_V))) {
    if (isatty(STDIN_FILENO)) {
      cli_print_version();
      cli_repl(L, 1);
    } else if (cli_dofile(L, NULL) != LUA_OK) { /* stdin is the script */
      return 0;
    }
  }
  if (cli_run_pending(r->host) != LUA_OK) return 0;
  lua_pushboolean(L, 1);
  return 1;
}

int main(int argc, char **argv) {
  struct run r = {.argc = argc, .argv = argv, .host = NULL};
  if (argv[0] == NULL) { /* no program name: treat as no arguments at all */
    static char *none[] = {"couchlua", NULL};
    r.argc = 1;
    r.argv = none;
  }
  r.args = collectargs(r.argv, &r.script);
  if (r.args & HAS_HELP) {
    printf(usage_text, cli_progname);
    return EXIT_SUCCESS;
  }
  if (r.args == HAS_ERROR) {
    print_usage(r.argv[r.script]);
    return CLI_EXIT_USAGE;
  }
  r.host = couchlua_new_ex((r.args & HAS_BIG_E) ? COUCHLUA_NOENV : 0);
  if (r.host == NULL) {
    cli_message(cli_progname, "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_State *L = couchlua_state(r.host);
  lua_pushcfunction(L, pmain);
  lua_pushlightuserdata(L, &r);
  int status = lua_pcall(L, 1, 1, 0);
  int ok = lua_toboolean(L, -1);
  cli_report(L, status);
  couchlua_close(r.host);
  if (ok && status == LUA_OK) return EXIT_SUCCESS;
  return cli_exit_code != EXIT_SUCCESS ? cli_exit_code : EXIT_FAILURE;
}
