#include "grow.h"

#include <stdint.h>
#include <stdlib.h>

int couch_grow(void **p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return 0;
  size_t cap2 = *cap ? *cap : 16;
  while (cap2 < need) {
    if (cap2 > SIZE_MAX / 2) return -1;
    cap2 *= 2;
  }
  if (size && cap2 > SIZE_MAX / size) return -1;
  void *q = realloc(*p, cap2 * size);
  if (!q) return -1;
  *p = q;
  *cap = cap2;
  return 0;
}
