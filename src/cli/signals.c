/* SIGINT for the couchlua command. While a call runs, Ctrl-C does what lua.c's laction
 * does (a hook that raises "interrupted!" at the next Lua instruction: the only safe way to
 * stop Lua from a signal) and also tells the event loop, because a call blocked in the loop
 * runs no Lua instruction until the loop gives up waiting. While the REPL reads a line,
 * Ctrl-C only sets a flag: the read returns early and the REPL starts a new prompt. */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "loop/loop.h"

#define STOP_MASK (LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT)

static lua_State *volatile eval_state;        /* the state whose call Ctrl-C stops */
static couch_loop *volatile eval_loop;        /* ...and its event loop */
static volatile sig_atomic_t read_interrupted; /* Ctrl-C arrived while reading a line */
static int wake_pipe[2] = {-1, -1};            /* written on Ctrl-C: wakes a poll() */
static struct sigaction before_eval;           /* restored when the call ends */
static struct sigaction before_repl;

/* No SA_RESTART: a read() blocked in libedit or stdio must return with EINTR. */
static void set_handler(void (*fn)(int), struct sigaction *old) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, old);
}

static void stop_hook(lua_State *L, lua_Debug *ar) {
  if (ar->event == LUA_HOOKCALL) {
    /* The call being entered is the message handler: an error is already on its way
     * (the loop's "cancelled: interrupted" after Ctrl-C stopped a blocking call). Let it
     * through rather than replace it, and stay out of the handler's own calls. */
    lua_getinfo(L, "f", ar);
    int in_handler = lua_tocfunction(L, -1) == couchlua_msghandler;
    lua_pop(L, 1);
    if (in_handler) {
      lua_sethook(L, NULL, 0, 0);
      return;
    }
  }
  lua_sethook(L, NULL, 0, 0);
  couch_loop_clear_interrupt(eval_loop); /* this error is the interrupt */
  couch_error_init(L); /* the error objects' metatable, even before `require "couch"` */
  couch_error_raise(L, "cancelled", "interrupted");
}

static void on_sigint_eval(int sig) {
  (void)sig;
  set_handler(SIG_DFL, NULL); /* a second Ctrl-C ends a program that does not stop */
  lua_sethook(eval_state, stop_hook, STOP_MASK, 1); /* lua_sethook is signal-safe */
  couch_loop_interrupt(eval_loop);
}

void cli_signals_eval_begin(lua_State *L) {
  eval_state = L;
  eval_loop = couch_loop_get(L);
  couch_loop_clear_interrupt(eval_loop); /* a Ctrl-C before this call is not for it */
  couch_loop_set_host_stop_hook(eval_loop, stop_hook);
  set_handler(on_sigint_eval, &before_eval);
}

void cli_signals_eval_end(lua_State *L) {
  sigaction(SIGINT, &before_eval, NULL);
  /* A Ctrl-C that came just as the call ended must not stop the next one. A hook the
   * script set itself (debug.sethook) is left alone. */
  if (lua_gethook(L) == stop_hook) lua_sethook(L, NULL, 0, 0);
}

/* Besides the flag, a byte down the pipe: a Ctrl-C that lands after the reader checked the
 * flag but before it blocked would otherwise be lost until the next key. */
static void on_sigint_read(int sig) {
  (void)sig;
  int saved = errno;
  read_interrupted = 1;
  if (wake_pipe[1] >= 0 && write(wake_pipe[1], "", 1) < 0) { /* full: already awake */ }
  errno = saved;
}

void cli_signals_repl_begin(void) {
  if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) wake_pipe[0] = wake_pipe[1] = -1;
  set_handler(on_sigint_read, &before_repl);
}

void cli_signals_repl_end(void) {
  sigaction(SIGINT, &before_repl, NULL);
  for (int i = 0; i < 2; i++) {
    if (wake_pipe[i] >= 0) close(wake_pipe[i]);
    wake_pipe[i] = -1;
  }
}

void cli_signals_read_reset(void) {
  char buf[64];
  if (wake_pipe[0] >= 0)
    while (read(wake_pipe[0], buf, sizeof buf) > 0) {
    }
  read_interrupted = 0;
}

int cli_signals_read_interrupted(void) { return read_interrupted != 0; }
int cli_signals_read_fd(void) { return wake_pipe[0]; }
