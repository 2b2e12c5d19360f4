#ifndef COUCH_BATCH_H
#define COUCH_BATCH_H
#include "replicate/job.h"
#include "replicate/refusals.h"
#include "replicate/revmap.h"

/* One batch of changes, as the reader hands it to the workers (a userdata: the struct
 * below; its user values are the batch's _changes rows, its last seq and its C state). */
#define COUCH_REPL_BATCH_MT "couch.replication_batch"
enum { BATCH_CHANGES = 1, BATCH_LAST_SEQ, BATCH_STATE, BATCH_NUV = BATCH_STATE };

/* One _bulk_docs post still to send: a run of a list of documents (the S_LISTS slot of
 * batch.c's frame holds those lists, Lua values because the user's hooks made or saw them). */
typedef struct {
  lua_Integer list;          /* its documents: lists[list][from .. from + n - 1] */
  lua_Integer from, n;
  unsigned new_edits : 1;    /* new edits (a transform's new documents, new_revisions) */
  unsigned refetched : 1;    /* fetched again with attachments already: no second refetch */
} couch_repl_post;

/* The C state of a batch being moved (batch.c): a userdata of its own (the batch's user
 * value BATCH_STATE) that the batch points to, so its finalizer (which frees what a move
 * left when it raised) keeps only itself for the collector's extra cycle, not the batch's
 * _changes rows. A move that completes frees its memory at once. */
typedef struct couch_repl_batch_state {
  /* the posts of the chunk being written: a stack (413 pushes two halves), and the one in
   * flight */
  couch_repl_post *work, cur;
  size_t nwork, capwork;
  /* the answer to the post in flight: its refusals indexed, and whether it holds one
   * result per document (then matched by position first) */
  couch_repl_refusals refusals;
  unsigned by_pos : 1;
  /* id -> [rev]: what the changes name, what the target lacks (fetched in chunks from
   * `cursor`), what a first read left unanswered (asked again one GET per id), what the
   * second left */
  couch_repl_revmap revs, missing, again, left;
  /* ids refused with no rev but sent with several (pouchdb-server's errors): the revs sent,
   * asked of the target again (_revs_diff); and which of them it lacks (`confirm`: known) */
  couch_repl_revmap amb, lacks;
  unsigned confirm : 1;
  size_t cursor;
  const couch_repl_revmap *asked; /* the revisions being read: its live entries in */
  size_t asked_from, asked_to;    /* [asked_from, asked_to) */
  size_t key;                     /* the open_revs walk: the next entry of asked */
  lua_Integer bulk_get_revs;      /* the revisions the _bulk_get in flight asks */
} couch_repl_batch_state;

typedef struct couch_repl_batch {
  couch_repl *r;
  lua_Integer index; /* 1, 2, ... in reading order (done.c) */
  lua_Integer walk;  /* where a walk that may yield (reading, matching) stands */
  lua_Integer pass;  /* 0, or where in the docs the answers of the second try begin */
  unsigned hold : 1;  /* revisions it could not read: the checkpoint must stop before it */
  unsigned probe : 1; /* it asks the job's first two revisions (the size estimate) */
  lua_Integer read, written, failed; /* its own counts: what its `change` event says */
  int slot;          /* the slots it holds (slots.h): taken in batch.c, let go in worker.c */
  couch_repl_batch_state *s; /* its C state (user value BATCH_STATE) */
} couch_repl_batch;

/* Push a new batch of the rows at changes (last seq at last_seq). */
couch_repl_batch *couch_repl_batch_push(lua_State *L, couch_repl *r, lua_Integer index, int changes, int last_seq);

/* (job, batch): move one batch from the source to the target (may yield). */
int couch_repl_move_batch(lua_State *L);

/* (job, docs) -> docs: the revisions refused for attachment stubs, fetched again with
 * their attachments (restub.c; may yield). */
int couch_repl_with_attachments(lua_State *L);

/* Register the batch's metatable. */
void couch_batch_open(lua_State *L);
#endif
