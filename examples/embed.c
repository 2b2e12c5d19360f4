/* TEMPORARY: the CLI helper replaces this with the real embedding example. */
#include "couchlua.h"
#include <stdio.h>
int main(void) {
  couchlua_host *h = couchlua_new();
  int rc = couchlua_dostring(h, "assert(require'couch'.version)", "=embed");
  if (rc) fprintf(stderr, "%s\n", couchlua_last_error(h));
  couchlua_close(h);
  return rc;
}
