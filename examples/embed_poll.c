/* couchlua inside a program that has its own event loop: here a plain poll() loop that does
 * its own work (a tick every 25 ms) while couch tasks run beside it. The same three calls fit
 * libuv (uv_poll_t on couchlua_fd + a uv_timer_t), glib (g_unix_fd_add + a timeout source)
 * or epoll:
 *   couchlua_fd(h)       watch it for reading
 *   couchlua_timeout(h)  wake up at the latest after this many milliseconds
 *   couchlua_step(h)     then run couch's loop one turn; it never blocks
 *
 * Build:  cc embed_poll.c $(pkg-config --cflags --libs couchlua) -o embed_poll
 * Exit status 0 when the tasks and the host's own work ran interleaved. */
#include <couchlua.h>

#include <lauxlib.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>

static const char script[] =
    "local couch = require 'couch'\n"
    "events = {}\n"
    "for i = 1, 2 do\n"
    "  couch.spawn(function()\n"
    "    for n = 1, 4 do couch.sleep(0.05 * i); events[#events + 1] = ('task %d tick %d'):format(i, n) end\n"
    "  end)\n"
    "end\n";

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(void) {
  couchlua_host *h = couchlua_new();
  if (!h) return 1;
  if (couchlua_dostring(h, script, "=tasks") != 0) {
    fprintf(stderr, "embed_poll: %s\n", couchlua_last_error(h));
    couchlua_close(h);
    return 1;
  }
  int host_ticks = 0, alive = 1;
  double next_tick = now_ms() + 25;
  while (alive > 0) {
    /* wait for whichever comes first: couch's descriptor, couch's timeout, our own tick */
    int wait = (int)(next_tick - now_ms());
    int couch_wait = couchlua_timeout(h);
    if (couch_wait >= 0 && couch_wait < wait) wait = couch_wait;
    struct pollfd pfd = {.fd = couchlua_fd(h), .events = POLLIN};
    poll(&pfd, 1, wait > 0 ? wait : 0);
    if (now_ms() >= next_tick) { /* the host's own work */
      host_ticks++;
      next_tick += 25;
    }
    alive = couchlua_step(h);
    if (alive < 0) {
      fprintf(stderr, "embed_poll: a task failed: %s\n", couchlua_last_error(h));
      couchlua_close(h);
      return 1;
    }
  }
  lua_State *L = couchlua_state(h);
  lua_getglobal(L, "events");
  int events = (int)luaL_len(L, -1);
  lua_pop(L, 1);
  printf("embed_poll: %d task events while the host ticked %d times\n", events, host_ticks);
  couchlua_close(h);
  /* 8 task events over ~0.4 s, and the host kept ticking meanwhile */
  return events == 8 && host_ticks >= 8 ? 0 : 1;
}
