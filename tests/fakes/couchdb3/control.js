'use strict';
// /_fake/*: the fake's own state and clock controls (not CouchDB).
const { opts } = require('./state');
const { isNum, toNum } = require('./json');
const { clock, clockAdvance, clockFreeze, clockThaw, vnow } = require('./clock');
const { notFound } = require('./errors');
const { dbs } = require('./store');
const { jobs, nextTickAt, runningCount, sched } = require('./scheduler');
const { entries } = require('./docprocessor');
const { jsonBody, send } = require('./http');
const { config } = require('./node_api');
const cluster = require('./cluster');

function handleFake(req, res, segs, bodyText) {
  if (segs[1] === 'state') {
    const out = {
      clock: { frozen: clock.frozen, now: vnow(), time_scale: opts.timeScale, timers: clock.queue.filter((t) => !t.cancelled).length },
      scheduler: { max_jobs: sched.maxJobs, interval: sched.interval, max_churn: sched.maxChurn, running: runningCount(), next_tick: nextTickAt() },
      config: Object.fromEntries(config),
      databases: [...dbs.values()].map((db) => ({ name: db.name, update_seq: db.seq, doc_count: [...db.docs.values()].filter((d) => !d.winner.deleted).length, local_docs: [...db.local.keys()] })),
      entries: [...entries.values()].map((e) => ({ db: e.db, doc_id: e.docId, state: e.state, job_id: e.jobId, error_count: e.errorCount, last_error: e.lastError })),
      cluster: cluster.describe(),
      jobs: [...jobs.values()].map((j) => ({ id: j.id, state: j.state, pid: j.pid, doc: j.doc, user: j.user, error_count: j.errorCount, last_error: j.lastError, task_ready: j.taskReady, through: j.through, stats: j.stats, retry_at: j.retryAt })),
    };
    return send(req, res, 200, out);
  }
  if (segs[1] === 'clock' && req.method === 'POST') {
    const b = jsonBody(bodyText, { optional: true }) || {};
    if (b.freeze === true) clockFreeze();
    if (isNum(b.advance)) clockAdvance(toNum(b.advance));
    if (b.freeze === false) clockThaw();
    return send(req, res, 200, { ok: true, frozen: clock.frozen, now: vnow() });
  }
  if (segs[1] === 'cluster' && req.method === 'POST') {
    // {"restart": "n2@127.0.0.1"} or {"restart": "all"}: the node(s) boot again
    const b = jsonBody(bodyText, { optional: true }) || {};
    const which = b.restart === 'all' ? cluster.NODES : [b.restart];
    if (!which.every((n) => cluster.NODES.includes(n))) throw notFound(`no node ${b.restart}`);
    for (const n of which) cluster.restartNode(n);
    return send(req, res, 200, { ok: true, restarted: which, now: vnow() });
  }
  throw notFound('missing');
}

module.exports = { handleFake };
