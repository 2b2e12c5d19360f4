#include "loop/timer.h"

#include <stdlib.h>
#include <time.h>

int64_t couch_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void couch_timer_init(couch_timer *t, couch_timer_fn fire, void *owner) {
  t->due_ms = 0;
  t->heap_index = SIZE_MAX;
  t->fire = fire;
  t->owner = owner;
}

int couch_timer_armed(const couch_timer *t) { return t->heap_index != SIZE_MAX; }

static int earlier(const couch_timer *a, const couch_timer *b) { return a->due_ms < b->due_ms; }

static void place(couch_timer_heap *h, size_t i, couch_timer *t) {
  h->items[i] = t;
  t->heap_index = i;
}

static void sift_up(couch_timer_heap *h, size_t i) {
  couch_timer *t = h->items[i];
  while (i > 0 && earlier(t, h->items[(i - 1) / 2])) {
    place(h, i, h->items[(i - 1) / 2]);
    i = (i - 1) / 2;
  }
  place(h, i, t);
}

static void sift_down(couch_timer_heap *h, size_t i) {
  couch_timer *t = h->items[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->len) break;
    if (c + 1 < h->len && earlier(h->items[c + 1], h->items[c])) c++;
    if (!earlier(h->items[c], t)) break;
    place(h, i, h->items[c]);
    i = c;
  }
  place(h, i, t);
}

int couch_timer_start(couch_timer_heap *h, couch_timer *t, int64_t delay_ms) {
  couch_timer_stop(h, t);
  if (h->len == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 16;
    couch_timer **items = realloc(h->items, cap * sizeof *items);
    if (!items) return -1;
    h->items = items;
    h->cap = cap;
  }
  t->due_ms = couch_now_ms() + (delay_ms > 0 ? delay_ms : 0);
  place(h, h->len++, t);
  sift_up(h, t->heap_index);
  return 0;
}

void couch_timer_stop(couch_timer_heap *h, couch_timer *t) {
  if (!couch_timer_armed(t)) return;
  size_t i = t->heap_index;
  couch_timer *last = h->items[--h->len];
  t->heap_index = SIZE_MAX;
  if (last == t) return;
  place(h, i, last);
  sift_down(h, i);
  sift_up(h, last->heap_index);
}

int64_t couch_timer_next(const couch_timer_heap *h) {
  if (h->len == 0) return -1;
  int64_t d = h->items[0]->due_ms - couch_now_ms();
  return d > 0 ? d : 0;
}

couch_timer *couch_timer_pop_due(couch_timer_heap *h) {
  if (h->len == 0 || h->items[0]->due_ms > couch_now_ms()) return NULL;
  couch_timer *t = h->items[0];
  couch_timer_stop(h, t);
  return t;
}

void couch_timer_heap_free(couch_timer_heap *h) {
  for (size_t i = 0; i < h->len; i++) h->items[i]->heap_index = SIZE_MAX;
  free(h->items);
  h->items = NULL;
  h->len = h->cap = 0;
}
