/* couchlua: a Lua 5.4 host with the `couch` module for scripting CouchDB replication.
 *
 * Embedding in three lines:
 *     couchlua_host *h = couchlua_new();
 *     if (couchlua_dostring(h, "print(require'couch'.version)", "=init") != 0)
 *         fprintf(stderr, "%s\n", couchlua_last_error(h));
 *     couchlua_close(h);
 *
 * Or add `couch` to a lua_State of your own with couchlua_openlibs(L).
 *
 * Build against it with `pkg-config --cflags --libs couchlua`. examples/embed.c is a
 * complete program that registers a C function of its own and calls it from Lua.
 *
 * Threads: a host (like a lua_State) belongs to one thread at a time, except for
 * couchlua_interrupt, which any thread or signal handler may call. Distinct hosts are
 * independent and may run in different threads at once.
 */
#ifndef COUCHLUA_H
#define COUCHLUA_H

#include <lua.h>
#include <stddef.h>

/* COUCHLUA_VERSION ("0.1.0"), COUCHLUA_VERSION_MAJOR/_MINOR/_PATCH and COUCHLUA_VERSION_NUM
 * (0.1.0 -> 100, 1.2.3 -> 10203): the version of these headers, generated from the build's
 * version number and installed beside this file. */
#include "couchlua_version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The version string of the library actually linked (may differ from the header's when
 * linking the shared library). */
const char *couchlua_version(void);

typedef struct couchlua_host couchlua_host;

/* ---- creating and destroying a host ---- */

/* A new host: a lua_State with Lua's standard libraries, `couch` preloaded (require "couch"
 * works, as do require "couch.json", "couch.pretty", ...: the Lua parts are embedded, so
 * no LUA_PATH is needed). The global `couch` is not set: scripts require it.
 * Returns NULL when out of memory. Same as couchlua_new_ex(0). */
couchlua_host *couchlua_new(void);

/* Flags for couchlua_new_ex. */
#define COUCHLUA_NOENV 0x1u /* package.path / cpath ignore LUA_PATH, LUA_CPATH (lua -E) */

/* couchlua_new with flags (an OR of COUCHLUA_* above, or 0). */
couchlua_host *couchlua_new_ex(unsigned flags);

/* Close the state and free the host. Pending tasks are not run: they are dropped with the
 * state (call couchlua_run_pending first to let them finish). h may be NULL. */
void couchlua_close(couchlua_host *h);

/* ---- running code ---- */

/* Run a chunk of Lua source. chunkname is Lua's (`=name` shows as `name` in messages,
 * `@file` as a file name); NULL means "=(string)". Returns 0 on success; otherwise non-zero
 * (a Lua status: LUA_ERRSYNTAX, LUA_ERRRUN, LUA_ERRMEM, ...) and couchlua_last_error()
 * says why. The chunk's results are discarded. */
int couchlua_dostring(couchlua_host *h, const char *chunk, const char *chunkname);

/* Like couchlua_dostring, but the chunk's results stay on the host's stack
 * (couchlua_state(h)): returns how many there are (>= 0; the caller pops them), or -1 on
 * failure, with couchlua_last_error*() set. */
int couchlua_eval(couchlua_host *h, const char *chunk, const char *chunkname);

/* Run a file; NULL runs stdin. A first line starting with '#' is skipped (#! scripts).
 * Returns as couchlua_dostring; a missing file fails with "cannot open <path>: ...". */
int couchlua_dofile(couchlua_host *h, const char *path);

/* Let the `couch` tasks a script left behind finish: if the script has required "couch" and
 * the module has an `_at_exit` function, call it (it runs the event loop until no task is
 * left). The couchlua command does this after the main script. Returns 0 when there was
 * nothing to do or it ended well; otherwise non-zero with couchlua_last_error() set. */
int couchlua_run_pending(couchlua_host *h);

/* The message of the last failed call above, or NULL after a success. It is one line
 * saying what went wrong (an error object is shown through its __tostring, e.g.
 * "couch: usage: bad argument 'id': ..."), followed for run-time errors by "\n" and Lua's
 * "stack traceback:". Owned by the host; valid until the next call on it. */
const char *couchlua_last_error(const couchlua_host *h);

/* The same failure, in parts (NULL / 0 after a success):
 *   _kind     the couch error kind ("usage", "http", "network", "timeout", "cancelled", ...;
 *             see docs/api.md), "syntax" for a chunk that did not compile, "" for a plain
 *             Lua error
 *   _status   the HTTP status of an `http` error, else 0
 *   _message  the first line of couchlua_last_error(): the message without the traceback */
const char *couchlua_last_error_kind(const couchlua_host *h);
int couchlua_last_error_status(const couchlua_host *h);
const char *couchlua_last_error_message(const couchlua_host *h);

/* ---- the state ---- */

/* The host's lua_State, for registering your own functions or calling Lua directly.
 * Owned by the host: never lua_close it. */
lua_State *couchlua_state(couchlua_host *h);

/* A message handler for lua_pcall in any state (host or not): turns the error value into
 * the string couchlua_last_error() would show (message line + traceback), calling
 * __tostring for error objects. Usage:
 *     lua_pushcfunction(L, couchlua_msghandler); lua_insert(L, base);
 *     status = lua_pcall(L, nargs, nresults, base); lua_remove(L, base); */
int couchlua_msghandler(lua_State *L);

/* The `kind` of the error that couchlua_msghandler last turned into a message in L's
 * state ("usage", "network", "http", "cancelled", ...; see docs/api.md), or NULL when that
 * error was not a couch error object (a plain Lua error). The couchlua command maps it to
 * its exit status: usage 2, cancelled 130, anything else 1. */
const char *couchlua_error_kind(lua_State *L);

/* ---- driving couch from your own event loop (libuv, glib, epoll, poll, select) ---- */

/* The loop's pollable descriptor (an epoll fd): it becomes readable whenever a transfer's
 * socket is ready or couchlua_interrupt was called. Watch it for reading in your loop and
 * call couchlua_step when it is. Owned by the host: never close it. */
int couchlua_fd(couchlua_host *h);

/* Milliseconds until couchlua_step has timed work to do (a couch.sleep ending, a retry, a
 * libcurl timeout): 0 when tasks are ready to run now, -1 when nothing is scheduled. Call
 * couchlua_step at the latest then, even if the descriptor stayed quiet. */
int couchlua_timeout(couchlua_host *h);

/* One turn of couch's loop that never blocks: runs the tasks that are ready, fires due
 * timers, handles ready sockets. Returns the number of tasks still alive (0: nothing left to
 * do), or -1 when a task failed and nothing waited for it (couchlua_last_error says which
 * task and why; the other tasks go on). */
int couchlua_step(couchlua_host *h);

/* Interrupt the host from a signal handler or another thread (async-signal-safe and
 * thread-safe): the blocking call running now ends with a `cancelled` error, and a task
 * stuck in Lua code is stopped at its next instruction. The host stays usable. */
void couchlua_interrupt(couchlua_host *h);

/* ---- output ---- */

/* What couch and the host's scripts write, by kind. */
#define COUCHLUA_PRINT 1    /* print(...) from a script, with its newline */
#define COUCHLUA_PROGRESS 2 /* couch's progress lines (couch.replicate), one per call */
#define COUCHLUA_WARNING 3  /* Lua warnings (warn(...)), one message per call */
#define COUCHLUA_LOG 4      /* log lines (COUCHLUA_LOG=warn|info|debug, couch.log), one per call */

/* Send all of it to fn instead of stdout / stderr (NULL: back to them). text is not
 * NUL-terminated; it is valid during the call only. The host's global `print` and Lua's
 * warning function are replaced to route through fn. */
void couchlua_set_writer(couchlua_host *h,
                         void (*fn)(void *ud, int kind, const char *text, size_t len), void *ud);

/* ---- using couch in a state of your own ---- */

/* Make `require "couch"` (and couch.json, couch.pretty, ...) work in a state of yours:
 * registers the module's loaders in package.preload; opens nothing else. The state needs
 * Lua's `package` library (luaL_openlibs). */
void couchlua_openlibs(lua_State *L);

/* The module's entry point, as `require` calls it (couch.so exports it for stock lua5.4). */
int luaopen_couch(lua_State *L);

#ifdef __cplusplus
}
#endif
#endif
