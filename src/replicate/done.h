#ifndef COUCH_REPL_DONE_H
#define COUCH_REPL_DONE_H
#include "replicate/job.h"
/* Batch `index` (1, 2, ... in reading order) has been moved; its last seq is at seq_idx and
 * hold says it kept revisions it could not read. Moves r->ref.through_seq over the longest
 * run of finished batches (done.c). Returns 0, or -1 when out of memory. */
int couch_repl_done_finish(lua_State *L, couch_repl *r, lua_Integer index, int seq_idx, int hold);
/* Release what the run still holds (from couch_repl_cleanup). */
void couch_repl_done_free(lua_State *L, couch_repl *r);
#endif
