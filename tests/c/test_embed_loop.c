/* The embedding API for hosts with an event loop of their own and more than one thread:
 * couchlua_fd / couchlua_timeout / couchlua_step driving real HTTP from a poll() loop,
 * couchlua_interrupt from another thread, and two hosts running at once in two threads.
 * A tiny HTTP server thread on 127.0.0.1 answers every request after a delay. */
#include "couchlua.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- a server that answers every request with a small JSON body after 100 ms ---- */

static int listener;
static int port;
static atomic_int in_flight, most_in_flight; /* requests being answered at once */

static void *serve_one(void *arg) {
  int c = (int)(intptr_t)arg;
  int now = atomic_fetch_add(&in_flight, 1) + 1;
  for (int m = atomic_load(&most_in_flight); now > m && !atomic_compare_exchange_weak(&most_in_flight, &m, now);) {
  }
  char buf[4096];
  size_t got = 0;
  while (got < sizeof buf - 1) { /* read the request head */
    ssize_t n = read(c, buf + got, sizeof buf - 1 - got);
    if (n <= 0) break;
    got += (size_t)n;
    buf[got] = 0;
    if (strstr(buf, "\r\n\r\n")) break;
  }
  usleep(100 * 1000);
  static const char body[] = "{\"couchdb\":\"Welcome\",\"version\":\"3.4.3\"}";
  char answer[256];
  int n = snprintf(answer, sizeof answer,
                   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", sizeof body - 1, body);
  if (write(c, answer, (size_t)n) < 0) { /* the client went away */
  }
  close(c);
  atomic_fetch_sub(&in_flight, 1);
  return NULL;
}

static void *server(void *arg) {
  (void)arg;
  for (;;) {
    int c = accept(listener, NULL, NULL);
    if (c < 0) return NULL;
    pthread_t t;
    pthread_create(&t, NULL, serve_one, (void *)(intptr_t)c);
    pthread_detach(t);
  }
}

static void start_server(void) {
  listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  CHECK(bind(listener, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(listen(listener, 64) == 0);
  CHECK(getsockname(listener, (struct sockaddr *)&a, &len) == 0);
  port = ntohs(a.sin_port);
  pthread_t t;
  pthread_create(&t, NULL, server, NULL);
  pthread_detach(t);
}

/* ---- the host's own poll() loop ---- */

/* Runs h's tasks to the end from a poll() loop; returns how many times the loop woke up
 * (the host's own turns), or -1 on a task failure. */
static int drive(couchlua_host *h) {
  int turns = 0, alive;
  do {
    struct pollfd p = {.fd = couchlua_fd(h), .events = POLLIN};
    int t = couchlua_timeout(h);
    poll(&p, 1, t < 0 || t > 50 ? 50 : t); /* the host also has work every 50 ms */
    turns++;
    alive = couchlua_step(h);
  } while (alive > 0);
  if (alive < 0) fprintf(stderr, "(a task failed: %s)\n", couchlua_last_error(h));
  return alive < 0 ? -1 : turns;
}

static void test_http_from_a_poll_loop(void) {
  couchlua_host *h = couchlua_new();
  char script[512];
  snprintf(script, sizeof script,
           "local couch = require 'couch'\n"
           "local srv = couch.connect('http://127.0.0.1:%d')\n"
           "answers = {}\n"
           "for i = 1, 5 do couch.spawn(function() answers[i] = srv:info().couchdb end) end\n",
           port);
  CHECK(couchlua_dostring(h, script, "=spawn") == 0);
  CHECK(couchlua_timeout(h) == 0); /* the tasks are ready to start */
  atomic_store(&most_in_flight, 0);
  int turns = drive(h);
  CHECK(turns > 0);
  CHECK(atomic_load(&most_in_flight) >= 2); /* the requests ran at once, not in a row */
  CHECK(couchlua_dostring(h, "for i = 1, 5 do assert(answers[i] == 'Welcome', i) end", "=check") == 0);
  CHECK(couchlua_timeout(h) == -1); /* nothing left to do */
  CHECK(couchlua_step(h) == 0);
  couchlua_close(h);
}

static void test_a_task_error_reaches_step(void) {
  couchlua_host *h = couchlua_new();
  CHECK(couchlua_dostring(h, "local couch = require 'couch'\n"
                             "couch.spawn('bad', function() couch.sleep(0.01); error('boom') end)\n"
                             "couch.spawn('good', function() couch.sleep(0.05); done = true end)",
                          "=spawn") == 0);
  CHECK(drive(h) == -1);
  CHECK(strstr(couchlua_last_error(h), "boom") != NULL);
  CHECK(drive(h) > 0); /* the other task goes on */
  CHECK(couchlua_dostring(h, "assert(done)", "=check") == 0);
  couchlua_close(h);
}

/* ---- interrupting from another thread ---- */

struct interrupter {
  couchlua_host *h;
  int delay_ms;
};

static void *interrupt_later(void *arg) {
  struct interrupter *i = arg;
  usleep((useconds_t)i->delay_ms * 1000);
  couchlua_interrupt(i->h);
  return NULL;
}

static void interrupt_case(const char *chunk) {
  couchlua_host *h = couchlua_new();
  struct interrupter i = {h, 100};
  pthread_t t;
  pthread_create(&t, NULL, interrupt_later, &i);
  double t0 = now_ms();
  fprintf(stderr, "interrupting: %s\n", chunk);
  CHECK(couchlua_dostring(h, chunk, "=blocking") != 0);
  double took = now_ms() - t0;
  pthread_join(t, NULL);
  CHECK(took < 25000); /* not the 30 s sleep, nor the 100 requests of 100 ms */
  CHECK(couchlua_error_kind(couchlua_state(h)) != NULL);
  CHECK(strcmp(couchlua_error_kind(couchlua_state(h)), "cancelled") == 0);
  /* the host is still usable, and the interrupt is spent */
  CHECK(couchlua_dostring(h, "require('couch').sleep(0.01); ok = true", "=after") == 0);
  couchlua_close(h);
}

static void test_interrupt_from_another_thread(void) {
  interrupt_case("require('couch').sleep(30)");                                   /* blocked in the loop */
  interrupt_case("local c = require('couch'); c.spawn(function() while true do end end); c.run()"); /* spinning */
  char chunk[256]; /* in the middle of a request */
  snprintf(chunk, sizeof chunk,
           "local c = require('couch'); local s = c.connect('http://127.0.0.1:%d')\n"
           "for i = 1, 100 do s:info() end", port);
  interrupt_case(chunk);
}

/* ---- two hosts, two threads, at once ---- */

static void *run_host(void *arg) {
  int *ok = arg;
  couchlua_host *h = couchlua_new();
  char script[512];
  snprintf(script, sizeof script,
           "local couch = require 'couch'\n"
           "local srv = couch.connect('http://127.0.0.1:%d')\n"
           "local n = 0\n"
           "for i = 1, 4 do couch.spawn(function() for _ = 1, 3 do srv:info(); couch.sleep(0.01); n = n + 1 end end) end\n"
           "couch.run()\n"
           "assert(n == 12, n)\n"
           "assert(couch.spawn(function() end).id == 5)\n", /* task ids count per host */
           port);
  *ok = couchlua_dostring(h, script, "=thread") == 0;
  if (!*ok) fprintf(stderr, "thread host: %s\n", couchlua_last_error(h));
  couchlua_close(h);
  return NULL;
}

static void test_two_hosts_in_two_threads(void) {
  pthread_t a, b;
  int ok_a = 0, ok_b = 0;
  pthread_create(&a, NULL, run_host, &ok_a);
  pthread_create(&b, NULL, run_host, &ok_b);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  CHECK(ok_a && ok_b);
}

int main(void) {
  start_server();
  test_http_from_a_poll_loop();
  test_a_task_error_reaches_step();
  test_interrupt_from_another_thread();
  test_two_hosts_in_two_threads();
  printf("%d checks passed\n", checks);
  return 0;
}
