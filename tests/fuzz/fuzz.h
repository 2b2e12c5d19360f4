/* Shared by the harnesses in tests/fuzz/: one Lua state per process with couch.json
 * loaded, and FUZZ_CHECK, which reports a broken invariant and aborts so that libFuzzer
 * (or the replay driver, under ctest) stops on it like on a crash. */
#ifndef COUCH_FUZZ_H
#define COUCH_FUZZ_H

#include "json/json.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                              \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      fprintf(stderr, "%s:%d: invariant broken: %s\n  ", __FILE__, __LINE__, #cond);      \
      fprintf(stderr, __VA_ARGS__);                                                        \
      fputc('\n', stderr);                                                                 \
      abort();                                                                             \
    }                                                                                      \
  } while (0)

/* The Lua state (couch.json loaded as the global `json`), its stack empty. fuzz_done()
 * frees what the input made; each harness calls it before returning. */
lua_State *fuzz_lua(void);
void fuzz_done(void);

/* json.encode(value at idx, {sort_keys = sort}) in protected mode: 1 and the text pushed,
 * or 0 and the error value pushed. */
int fuzz_encode(lua_State *L, int idx, int sort);

/* Print len bytes of s escaped, for messages. */
void fuzz_dump(const char *label, const char *s, size_t len);

#endif
