/* Growing an array to hold `need` elements: one home for the doubling rule (from 16). */
#ifndef COUCH_GROW_H
#define COUCH_GROW_H

#include <stddef.h>

/* Make *p (of *cap elements of `size` bytes) hold at least `need`: 0, or -1 when out of
 * memory (then *p and *cap are as they were). */
int couch_grow(void **p, size_t *cap, size_t need, size_t size);

#endif
