#!/usr/bin/env node
// FAKE Apache CouchDB 3 -- NOT a real CouchDB.
//
// It plays the replication surface of Apache CouchDB 3.4.3 as recorded in
// fixtures/couchdb-3.4.3/ (beside DESIGN.md) for the endpoints pouchdb-server lacks:
// the _replicator database and its states, /_scheduler/docs, /_scheduler/jobs,
// /_active_tasks, POST /_replicate, /_node/_local/_config/replicator/*. Around that it
// keeps an in-memory CouchDB that answers the database API as CouchDB does, strictness
// included (the tests/server suites run against it as fake.*): databases, documents with
// revision trees, attachments, _all_docs, _bulk_docs, _changes (normal, longpoll,
// continuous), _revs_diff, _bulk_get, _local docs, _find, _security, basic and cookie
// auth. Response shapes, status codes, headers and key order follow the recordings.
//
// Start:  node tests/fakes/fake_couchdb3.js [options]
//   Listens on 127.0.0.1, port 0 (or --port); prints "PORT <n>" on stdout. Exits when its
//   stdin closes (so it never outlives the test that started it) or on SIGTERM/SIGINT.
//
// Options:
//   --time-scale F   the recorded timeline is multiplied by F (default 0.01: a one-shot
//                    replication that completed at +6.5 s completes at +65 ms; the first
//                    crash of an unreachable source comes at +80 ms instead of +8 s).
//                    Client timeouts (_changes timeout/heartbeat) are never scaled.
//   --password P     password of the server admin "admin" (default "pass")
//   --max-jobs N     [replicator] max_jobs (default 500, as CouchDB)
//   --interval MS    [replicator] interval: the scheduler tick in recorded ms (default 60000)
//   --port N         listen on this port instead of a free one
//   --nodes N        a cluster of N nodes (n1@127.0.0.1 ...) as fixtures/couchdb-3.4.3-cluster
//                    recorded: jobs placed by document id (crc32 rule), `node` only while
//                    a job is pending/running, a finishing job's row missing 1 s and its
//                    document rewritten 2 s after the end (the scheduler says "completed"
//                    first), 202 to a DELETE of the replicator's own revision, jobs
//                    starting 5 s after a node boots, /_membership (couchdb3/cluster.js)
//   --lag-scale F    the cluster's two lags scaled by F instead of --time-scale
//   --verbose        log every request on stderr
//
// The recorded timeline it replays (recorded seconds, multiplied by --time-scale):
//   doc written -> "initializing" (no job yet) -> +0.036 job added and started ("running",
//   info null) -> +1 task initialised (stats in info, /_active_tasks entry, documents
//   copied) -> one-shot: "completed" at +3 s + 0.000175 s per document (20 000 docs:
//   +6.5 s), the doc rewritten (rev 2) with _replication_state/_time/_stats;
//   continuous: stays "running" and copies new source changes ~0.1 s after they happen,
//   checkpointing every 30 s.
//   Unreachable endpoint: crash 8 s after each start; missing db / bad credentials: crash
//   3 s after each start; restarts 32 s, 112 s, 392 s ... after each crash (x3.5, capped
//   at 8 h): "crashing" with error_count 1, 2, 3 ... and never "failed".
//   Missing filter design doc: "error" (document processor, no job), retried 14 s, 200 s,
//   800 s ... later. Duplicate of a running replication: "failed" at once, doc rewritten.
//   max_jobs: jobs beyond it stay "pending" until a scheduler tick (every --interval)
//   rotates continuous jobs or a slot frees.
//
// Control endpoints (admin only):
//   GET  /_fake/state                 databases, doc processor entries, jobs, clock, config
//   POST /_fake/clock {"freeze":true} stop the recorded timeline (timers wait)
//   POST /_fake/clock {"advance":S}   run the timeline S recorded seconds forward at once
//   POST /_fake/clock {"freeze":false} let it run again in (scaled) real time
//   POST /_fake/cluster {"restart":"n2@127.0.0.1"|"all"}  the node(s) boot again
//
// The code is in couchdb3/, one concern per file: state (options), json, clock, errors,
// revs, store (databases, documents), ddoc (filters, VDUs), mango, repparams, scheduler
// (jobs), docprocessor (_replicator docs), http (answers, params, auth), and the APIs:
// server_api (the router), db_api, changes_api, replication_api, node_api, control,
// security (_security, validated), attachments, find (_find without indexes).
// tests/unit/test_fake_couchdb3*.lua hold it to the recordings of fixtures/couchdb-3.4.3
// and fixtures/couchdb-3.4.3-suite (what CouchDB answered the tests/server suites).
//
// What it cannot do (not CouchDB): it replicates only between its own databases (an
// endpoint on any other host/port is probed with a TCP connect and then treated as
// unreachable); no views, no Mango indexes (_find scans, sorts only by _id), no users
// or per-database access checks beyond "admin only"; filter and validate_doc_update
// functions run in node's vm, not QuickJS.
'use strict';

const http = require('http');
const { opts, state } = require('./couchdb3/state');
const { HttpError } = require('./couchdb3/errors');
const { createDb } = require('./couchdb3/store');
const { restartTick } = require('./couchdb3/scheduler');
const { send, sendError } = require('./couchdb3/http');
const { handle } = require('./couchdb3/server_api');

createDb('_users');
createDb('_replicator');

const server = http.createServer((req, res) => {
  handle(req, res).catch((e) => {
    if (e instanceof HttpError) return sendError(req, res, e);
    process.stderr.write(`fake_couchdb3: ${req.method} ${req.url}: ${e.stack}\n`);
    return send(req, res, 500, { error: 'unknown_error', reason: String(e.message) });
  });
});
server.keepAliveTimeout = 60000;

server.listen(opts.port, '127.0.0.1', () => {
  state.port = server.address().port;
  process.stdout.write(`PORT ${state.port}\n`);
  restartTick();
});

// it never outlives the test that started it: stdin closes when that ends
const quit = () => {
  server.close();
  process.exit(0);
};
process.stdin.on('end', quit);
process.stdin.on('close', quit);
process.stdin.on('error', quit);
process.stdin.resume();
process.on('SIGTERM', quit);
process.on('SIGINT', quit);
