/* Timers: a binary min-heap of deadlines. A timer is embedded in its owner (a sleeping
 * task, a request waiting to retry, a timeout) and knows its place in the heap, so it can
 * be removed in O(log n) when its owner goes away first. */
#ifndef COUCH_TIMER_H
#define COUCH_TIMER_H

#include <stddef.h>
#include <stdint.h>

typedef struct couch_timer couch_timer;
typedef void (*couch_timer_fn)(couch_timer *t);

struct couch_timer {
  int64_t due_ms;      /* monotonic milliseconds */
  size_t heap_index;   /* SIZE_MAX when not armed */
  couch_timer_fn fire;
  void *owner;
};

typedef struct {
  couch_timer **items;
  size_t len, cap;
} couch_timer_heap;

int64_t couch_now_ms(void);
void couch_timer_init(couch_timer *t, couch_timer_fn fire, void *owner);
int couch_timer_armed(const couch_timer *t);
/* Arm (or re-arm) t to fire after delay_ms. Returns 0, or -1 when out of memory. */
int couch_timer_start(couch_timer_heap *h, couch_timer *t, int64_t delay_ms);
void couch_timer_stop(couch_timer_heap *h, couch_timer *t);
/* Milliseconds until the earliest deadline (0 if one is due), or -1 when none is armed. */
int64_t couch_timer_next(const couch_timer_heap *h);
/* Pop one due timer, or NULL. The caller fires it (firing may arm or stop other timers). */
couch_timer *couch_timer_pop_due(couch_timer_heap *h);
void couch_timer_heap_free(couch_timer_heap *h);

#endif
