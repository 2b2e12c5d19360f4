/* The couchlua command's private surface, shared by its files:
 *   main.c      options (as lua5.4's), the arg table, the order things run in
 *   runner.c    running chunks, files, -l libraries, LUA_INIT; reporting errors
 *   repl.c      the read-eval-print loop (multi-line input, pretty-printed results)
 *   readline.c  reading a line: libedit on a terminal, plain stdio otherwise; history
 *   signals.c   SIGINT: interrupt the running call, or drop the line being typed
 */
#ifndef COUCHLUA_CLI_H
#define COUCHLUA_CLI_H

#include "couchlua.h"

#include <lua.h>

/* Name used in front of error messages; NULL inside the REPL (as lua.c). */
extern const char *cli_progname;

/* ---- runner.c ---- */

/* Exit statuses beyond EXIT_SUCCESS / EXIT_FAILURE (documented in --help and README.md). */
enum { CLI_EXIT_USAGE = 2, CLI_EXIT_INTERRUPTED = 130 /* 128 + SIGINT, as shells report it */ };
/* How the run failed, set by cli_report and cli_run_pending (EXIT_SUCCESS until then). */
extern int cli_exit_code;

/* "progname: msg" on stderr (stdout flushed first so a combined stream stays in order). */
void cli_message(const char *pname, const char *msg);
/* Print the error on top of the stack (if status is not LUA_OK) and pop it. */
int cli_report(lua_State *L, int status);
/* lua_pcall with the traceback handler and the Ctrl-C handler in place. */
int cli_docall(lua_State *L, int narg, int nres);
int cli_dofile(lua_State *L, const char *name);
int cli_dostring(lua_State *L, const char *s, const char *name);
/* -l [g=]mod: global g (or mod) = require "mod". Modifies the string. */
int cli_dolibrary(lua_State *L, char *globname);
/* Run argv[0] as the script with arg[1..n] as its `...`. */
int cli_handle_script(lua_State *L, char **argv);
/* LUA_INIT_5_4 or LUA_INIT: a chunk, or @file. */
int cli_handle_luainit(lua_State *L);
/* At the end of a good run: let pending `couch` tasks finish (couchlua_run_pending). */
int cli_run_pending(couchlua_host *h);

/* ---- repl.c ---- */

/* Read-eval-print until end of input. banner: print a how-to line when on a terminal. */
void cli_repl(lua_State *L, int banner);
/* The version line, as `-v` prints it. */
void cli_print_version(void);

/* ---- readline.c ---- */

enum { CLI_READ_LINE, CLI_READ_EOF, CLI_READ_INTERRUPTED };
/* Start reading lines: with libedit and the history file when stdin is a terminal. */
void cli_input_open(void);
/* Show prompt, read one line into *line (malloc'd, no trailing newline; caller frees). */
int cli_input_read(const char *prompt, char **line);
/* Remember a line (entered chunk) in the history. */
void cli_input_remember(const char *line);
/* Save the history and release what cli_input_open took. */
void cli_input_close(void);
/* Whether lines come from a terminal (and the line editor is used). */
int cli_input_is_tty(void);
/* On a terminal, while waiting for a key: call tick(ud) whenever fd is readable or
 * timeout(ud) milliseconds (-1: none) have passed. tick prints only between hide and show,
 * which move the line being edited out of the way and draw it again. */
void cli_input_set_background(int fd, int (*timeout)(void *), void (*tick)(void *), void *ud);
void cli_input_hide(void);
void cli_input_show(void);
/* Tab completion on a terminal: fn(ud, word, i) gives the i-th (0, 1, ...) completion of the
 * word before the cursor, NULL after the last. */
void cli_input_set_completion(const char *(*fn)(void *ud, const char *word, int index), void *ud);

/* ---- signals.c ---- */

/* Around a call: Ctrl-C stops Lua code with "interrupted!" and cancels a pending couch call.
 * A second Ctrl-C before the call ends kills the process (as lua.c). */
void cli_signals_eval_begin(lua_State *L);
void cli_signals_eval_end(lua_State *L);
/* For the REPL's lifetime: Ctrl-C while reading only interrupts the read. */
void cli_signals_repl_begin(void);
void cli_signals_repl_end(void);
/* Forget / test a Ctrl-C received while reading. */
void cli_signals_read_reset(void);
int cli_signals_read_interrupted(void);
/* A descriptor that becomes readable when Ctrl-C arrives during the REPL (-1 if none). */
int cli_signals_read_fd(void);

#endif
