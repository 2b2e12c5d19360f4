/* The C tests' one assertion: CHECK(cond) counts, and on failure names the file, the line
 * and the condition, then exits 1. Each test prints `checks` at the end. */
#ifndef COUCHLUA_TEST_CHECK_H
#define COUCHLUA_TEST_CHECK_H
#include <stdio.h>
#include <stdlib.h>

static int checks;

#define CHECK(cond)                                                                  \
  do {                                                                               \
    checks++;                                                                        \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);       \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)

#endif
