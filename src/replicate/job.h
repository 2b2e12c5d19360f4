/* The native replication job as a C object (couch_repl), the one owner of a job's state.
 *
 * What the struct holds:
 *   options   typed, parsed and checked once by lua/couch/replicate.lua (internal.repl_new)
 *   counters  the stats (CouchDB's _active_tasks names), plain integers
 *   seqs      since / start / through / checkpointed: opaque Lua values (numbers, strings,
 *             tables), kept as registry refs and sent back exactly as received
 *   pipeline  the finished-batch run (done.c), the read and write slots (slots.c) and the
 *             flags the workers share
 *   checkpoint the _local revs of both sides, the history read at the start, the anchors
 * Every Lua value it keeps is a registry ref that starts as LUA_NOREF and is released in
 * one place, couch_repl_cleanup, from __gc (__close cancels a running job; the refs stay
 * until the object goes, so job:stats() and job:errors() still answer after the end).
 * The task refs that would make a cycle (job -> reader task -> its closure -> job) are
 * dropped as soon as the job ends (job:_state with a final state).
 * Who owns what: the userdata is the job object users hold (job:wait(), job:stats()...);
 * replicate.lua's closure runs the user's hooks; the reader, the workers and the
 * checkpoint steps are C continuations (reader.c, worker.c, batch.c, checkpoint.c) that
 * take the job as their first argument and read the struct, never a table by name. */
#ifndef COUCH_REPL_JOB_H
#define COUCH_REPL_JOB_H

#include <lauxlib.h>
#include <lua.h>

#include "loop/loop.h" /* couch_wait_list */

#define COUCH_REPL_MT "couch.replication_job"

enum { REPL_SOURCE = 0, REPL_TARGET = 1 };

typedef enum {
  REPL_STARTING, REPL_RUNNING, REPL_COMPLETED, REPL_CANCELLED, REPL_FAILED
} couch_repl_state;

typedef struct couch_repl_done couch_repl_done; /* done.c */

/* replicate.lua's runners: the Lua the C steps call (the user's hooks, progress, the
 * _changes query), each held as its own ref, looked up once at construction. */
typedef enum {
  RUN_APPLY, RUN_FAILED, RUN_NEW_REVISIONS, RUN_REPORT, RUN_CHANGES_REQUEST,
  RUN_EMIT,     /* (event, handlers, ...): the event's handlers, under the hook budget */
  RUN_BACK_OFF, /* (previous delay) -> the next one, in seconds (retry.c) */
  RUN_N
} couch_repl_runner;

/* The job's events (events.h), PouchDB's names. */
typedef enum { EV_CHANGE, EV_PAUSED, EV_ACTIVE, EV_DENIED, EV_COMPLETE, EV_ERROR, EV_N } couch_repl_event;

typedef struct couch_repl {
  /* options */
  lua_Integer batch_size, concurrency, max_batch_bytes;
  double checkpoint_interval; /* seconds */
  double poll;                /* seconds a longpoll may wait */
  unsigned continuous : 1, use_checkpoints : 1, attachments : 1, new_revisions : 1, hooks : 1;
  /* the sides checkpoints are written to and resumed from (checkpoint = "source" /
   * "target": one side, e.g. a read-only source); use_checkpoints: either */
  unsigned ckpt_side[2];
  lua_Integer batches_limit; /* batches the reader may queue ahead of the workers */
  /* lifecycle */
  couch_repl_state state;
  unsigned stopping : 1, checkpointing : 1, no_bulk_get : 1, probing : 1;
  /* _revs_diff every batch, never skipped while nearly all is missing: a target that is
   * also written by others (couch.sync's other direction echoes this one's source) */
  unsigned always_diff : 1;
  unsigned changes_post : 1; /* _changes is a POST (doc_ids, selector): error messages say so */
  unsigned cancelled : 1;    /* job:cancel() asked: no retry, a backoff wait ends */
  /* events and retry (events.c, retry.c) */
  unsigned retry : 1;       /* transient failures are waited out (retry.c) */
  unsigned reader_idle : 1; /* the reader has read everything there is (continuous) */
  unsigned caught_up : 1;   /* `paused` said so: the next work says `active` */
  unsigned outage : 1;      /* `paused(err)` said so: a restart says `active` */
  unsigned progressed : 1;  /* a batch finished since the last restart: the backoff starts over */
  lua_Integer pushed, moved; /* this run's batches read and finished (caught up: equal) */
  double back_off;           /* the previous backoff delay, seconds; 0: none yet */
  /* counters */
  lua_Integer docs_read, docs_written, doc_write_failures, missing_revisions_found, docs_skipped,
      revisions_checked, batches, finished, failures_kept;
  double missing_ratio; /* < 0: no estimate yet */
  double bytes_per_rev; /* 0: no estimate yet */
  double started, last_checkpoint;
  char start_time[24], end_time[24];
  char session_id[40];
  /* the endpoints as call.c sends to them, read once from the database objects: each
   * side's connection (alive while ref.server holds its userdata; NULL after cleanup) */
  struct couch_conn *conn[2];
  /* pipeline: the run of finished batches */
  couch_repl_done *done;
  /* fetch ahead (slots.c): the read, write, pop and hook slots taken, and the workers
   * waiting for one */
  lua_Integer slots_busy[4];
  couch_wait_list slot_waiters;
  /* registry refs (LUA_NOREF when unset), released in couch_repl_cleanup */
  struct {
    int db[2];                /* the endpoints (database objects, for the user's hooks) */
    int server[2], path[2];   /* their server userdata (keeps conn[] alive) and escaped path */
    int since, start_seq, through_seq, checkpointed_seq, changes_pending;
    int rep_id, local_path;   /* the replication id and "/_local/<escaped id>" */
    int ckpt_rev[2], history; /* checkpoint docs' revs; the source's history at the start */
    int anchor_id[2], anchor_rev[2];
    int runner[RUN_N];        /* replicate.lua's functions (couch_repl_runner) */
    int failures;             /* the refused documents (job:errors()), at most 1000 */
    int stats;                /* the stats table handed out, refreshed from the counters */
    int name, source_name, target_name, source_url, target_url;
    int idle;                 /* a couch.cond: broadcast when a checkpoint ends */
    int spawn, queue_new;     /* couch.spawn and couch.queue, for the run (run.c) */
    int create_params;        /* create_target_params: {q, n, partitioned} or unset */
    int on[EV_N];             /* each event's handlers: a list, or unset (events.c) */
  } ref;
} couch_repl;

/* The job at idx (raises a usage error when it is not one). */
couch_repl *couch_repl_check(lua_State *L, int idx);

/* Push the value of a ref (nil for LUA_NOREF). */
void couch_repl_push(lua_State *L, int ref);
/* *ref = the value at idx (nil releases it). */
void couch_repl_set(lua_State *L, int *ref, int idx);

/* Seconds on the monotonic clock; an ISO-8601 UTC "now" into buf (24 bytes). */
double couch_repl_now(void);
void couch_repl_iso_now(char *buf);

/* Push "/" .. the document's path (id escaped; _design/ and _local/ kept). */
void couch_repl_push_doc_path(lua_State *L, const char *id, size_t len);

/* Push the runner (a function of replicate.lua's closure, or nil). */
void couch_repl_push_runner(lua_State *L, couch_repl *r, couch_repl_runner which);

/* Count a refused revision: doc_write_failures, the error object kept for job:errors()
 * (first 1000), and pushes that error (the caller hands it to on_error). `d` is the
 * document entry ({id, rev, ...}), err a table {error, reason, status}. */
void couch_repl_push_failure(lua_State *L, couch_repl *r, int d, int err);

/* Raise the structured error of an answer of `side` to method + path that breaks the
 * protocol: kind, status, method, error code and the redacted url. Does not return. */
int couch_repl_answer_raise(lua_State *L, couch_repl *r, int side, const char *method, const char *path,
                            lua_Integer status, const char *kind, const char *code, const char *fmt, ...);

/* The lifecycle: a final state stamps end_time and drops the reader task's ref. */
void couch_repl_set_state(lua_State *L, couch_repl *r, couch_repl_state state);
/* The reader task (at idx), which job:cancel() cancels. */
void couch_repl_set_reader(lua_State *L, couch_repl *r, int idx);

/* Push the stats table users see (job:stats()), refreshed from the counters. */
void couch_repl_push_stats(lua_State *L, couch_repl *r);

/* Add job:_run (run.c). */
void couch_run_open(lua_State *L);

/* Release every ref and the pipeline's memory: the one cleanup (idempotent). */
void couch_repl_cleanup(lua_State *L, couch_repl *r);

/* Add methods to the job's metatable (each step's file adds its own). */
void couch_repl_add_methods(lua_State *L, const luaL_Reg *methods);

/* Add internal.repl_new and the job's metatable (job.c) to the couch table on top. */
void couch_repl_open(lua_State *L);

#endif
