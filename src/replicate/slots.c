/* Fetch ahead (issue 12): `concurrency` means requests in flight on each side.
 * A worker that alternated reading (revs_diff, _bulk_get / open_revs on the source, the
 * user's hooks) and writing (_bulk_docs) left the slow side idle while it read: against a
 * target answering each _bulk_docs in 300 ms, 4 workers kept 3.3 writes in flight on
 * average and 8 workers only 4.3. Now run.c starts 2 × concurrency workers and a batch
 * takes a slot for each phase, at most `concurrency` of each kind at once:
 *   read   revs_diff, a chunk's _bulk_get (or open_revs GETs) (batch.c)
 *   write  from its first chunk's hooks to its end: the user's hooks, the posts (413
 *          halves, the 412 refetch, the _revs_diff that settles a refusal without a rev),
 *          the refusals' hooks, and in worker.c recording it finished, `change`, the
 *          checkpoint due. Kept to the end, so the batches sharing a write slot are hooked
 *          and written one after another (reading order at concurrency 1: each `change`
 *          counts exactly the batches before it, and a hook that fails ends the job with
 *          every batch before its own written, as before fetch ahead)
 *   hook   a batch running the user's hooks (under its write slot): counted, not waited for
 *   pop    a worker taking a batch off the queue: reading + hooking + popping < concurrency,
 *          so workers beyond the ones that can read leave the batches in the queue (the
 *          reader's read-ahead stays batches_limit while the hooks run) and hold no documents
 * A worker that has read its chunk lets the read slot go and waits for a write slot while
 * another reads the next chunk: the slow side always has work waiting.
 * Why it cannot deadlock: a read-slot holder never waits for a slot (taking the write slot
 * lets the read slot go first); a write-slot holder may wait for a read slot (a batch's
 * next chunk), which read-slot holders always give back; pop-slot holders wait only for
 * the queue, and a batch's read slot does not count them. A move or a pop that raises lets
 * its slots go (worker.c) and wakes the others; a failed run cancels all its tasks, and the
 * next run starts from zero (couch_repl_slots_reset).
 * Memory: each worker holds at most one chunk (about max_batch_bytes of documents), so
 * 2 × concurrency chunks at most (docs/replication.md). */
#include "replicate/slots.h"

#include "loop/loop.h"

#include <lauxlib.h>

static int ix(int kind) { return kind == SLOT_READ ? 0 : kind == SLOT_WRITE ? 1 : kind == SLOT_POP ? 2 : 3; }

static int is_free(const couch_repl *r, int kind) {
  const lua_Integer *busy = r->slots_busy;
  if (kind == SLOT_HOOK) return 1; /* counted, never waited for: its holder has a write slot */
  if (kind == SLOT_POP) return busy[ix(SLOT_READ)] + busy[ix(SLOT_POP)] + busy[ix(SLOT_HOOK)] < r->concurrency;
  return busy[ix(kind)] < r->concurrency;
}

/* What a wait must remember across its yield (a lua_KContext is one value). */
typedef struct {
  couch_repl *r;
  int *held;
  int kind, keep;
  lua_KContext ctx;
  lua_KFunction k;
} slot_frame;

static int woken_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int fi = (int)ctx;
  slot_frame f = *(slot_frame *)lua_touserdata(L, fi);
  couch_timed_wait_end(lua_touserdata(L, fi + 1));
  lua_settop(L, f.keep);
  return couch_repl_slot_take(L, f.r, f.held, f.kind, f.keep, f.ctx, f.k);
}

int couch_repl_slot_take(lua_State *L, couch_repl *r, int *held, int kind, int keep, lua_KContext ctx,
                         lua_KFunction k) {
  lua_settop(L, keep);
  if (kind == SLOT_WRITE) couch_repl_slot_drop(L, r, held, SLOT_READ); /* never wait holding it */
  if (*held & kind) return k(L, LUA_OK, ctx);
  if (is_free(r, kind)) {
    r->slots_busy[ix(kind)]++;
    *held |= kind;
    return k(L, LUA_OK, ctx);
  }
  luaL_checkstack(L, 4, "waiting for a slot");
  slot_frame *f = lua_newuserdatauv(L, sizeof *f, 0);
  *f = (slot_frame){.r = r, .held = held, .kind = kind, .keep = keep, .ctx = ctx, .k = k};
  /* no timeout: a wait woken and then cancelled before it ran would leave its timer
   * armed (src/loop/wait.c stops it only in the continuation) */
  couch_timed_wait *tw = couch_timed_wait_push(L, &r->slot_waiters, -1, 0);
  return couch_await(L, &tw->w, (lua_KContext)(keep + 1), woken_k);
}

void couch_repl_slot_drop(lua_State *L, couch_repl *r, int *held, int kinds) {
  int let_go = *held & kinds;
  if (!let_go) return;
  for (int kind = SLOT_READ; kind <= SLOT_HOOK; kind <<= 1)
    if ((let_go & kind) && r->slots_busy[ix(kind)] > 0) r->slots_busy[ix(kind)]--;
  *held &= ~kinds;
  couch_wait_list_wake_all(couch_loop_get(L), &r->slot_waiters);
}

void couch_repl_slots_reset(lua_State *L, couch_repl *r) {
  for (int i = 0; i < 4; i++) r->slots_busy[i] = 0;
  couch_wait_list_wake_all(couch_loop_get(L), &r->slot_waiters);
}
