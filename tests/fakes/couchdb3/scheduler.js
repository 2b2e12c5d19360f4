'use strict';
// The replication scheduler: jobs on the recorded timeline, max_jobs, rotation.
const crypto = require('crypto');
const net = require('net');
const { ADMIN, opts } = require('./state');
const cluster = require('./cluster');
const { enc, isObj, md5, parseJSON } = require('./json');
const { after, httpDate, isoSec, unixSec, vnow } = require('./clock');
const { mangoMatch } = require('./mango');
const { leavesSorted, revStr } = require('./revs');
const { loadFilter } = require('./ddoc');
const hooks = require('./hooks');
const { changesSince, createDb, dbs, docJSON, graftDoc, parseSince, seqStr, validDbName } = require('./store');

const sched = { maxJobs: opts.maxJobs !== null ? opts.maxJobs : 500, interval: opts.interval, maxChurn: 20 };
const jobs = new Map(); // job id -> Job
let pidCounter = 2000;
const newPid = () => `<0.${(pidCounter += 37 + Math.floor(Math.random() * 50))}.0>`;

const T_ADD = 0.036; // doc written -> job added and started
const T_TASK = 1.0; // start -> task initialised (/_active_tasks entry, stats)
const T_CRASH_UNREACHABLE = 8;
const T_CRASH_OPEN = 3;
const T_CRASH_UNREACHABLE_TRANSIENT = 12;
const T_COPY_LATENCY = 0.1;
const T_CHECKPOINT = 30;
const oneShotDuration = (n) => 3 + n * 0.000175;
const crashBackoff = (k) => Math.min(8 * 3600, 32 * Math.pow(3.5, k - 1));
const errorBackoff = (k) => (k <= 1 ? 14 : Math.min(8 * 3600, 200 * Math.pow(4, k - 2)));

function emptyStats() {
  return { revisions_checked: 0, missing_revisions_found: 0, docs_read: 0, docs_written: 0, doc_write_failures: 0, bulk_get_docs: 0, bulk_get_attempts: 0 };
}

class Job {
  constructor(rep, { doc = null, user = null } = {}) {
    this.rep = rep;
    this.id = rep.jobId;
    this.doc = doc; // {db, docId} for _replicator jobs
    this.user = user; // the requesting user for transient jobs
    this.state = 'pending';
    this.pid = null;
    this.history = [];
    this.addedAt = Date.now();
    this.lastUpdated = Date.now();
    this.startedAtV = 0; // recorded-clock time of the last start (for rotation)
    this.errorCount = 0;
    this.lastError = null;
    this.stats = emptyStats();
    this.taskReady = false;
    this.startedOn = 0;
    this.updatedOn = 0;
    this.timers = new Set();
    this.through = 0; // source seq (number) replicated through
    this.sourceSeqN = 0;
    this.checkpointed = null; // seq string of the last checkpoint, null = none
    this.checkpointedN = 0;
    this.sessionId = null;
    this.sessionStart = null;
    this.sessionStartSeq = 0;
    this.sessionStats = emptyStats();
    this.unsub = null;
    this.copyPending = null;
    this.retryAt = null;
    this.onDone = null; // transient one-shot: fn(status, body)
    this.removed = false;
  }

  later(sec, fn) {
    const t = after(sec, () => { this.timers.delete(t); if (!this.removed) fn(); });
    this.timers.add(t);
    return t;
  }

  clearRun() {
    for (const t of this.timers) t.cancel();
    this.timers.clear();
    if (this.unsub) { this.unsub(); this.unsub = null; }
    this.copyPending = null;
    this.taskReady = false;
    this.pid = null;
  }

  event(type, extra) {
    const e = { timestamp: isoSec(), type };
    if (extra) Object.assign(e, extra);
    this.history.unshift(e);
    if (this.history.length > 20) this.history.length = 20;
    this.lastUpdated = Date.now();
  }

  infoStats() {
    const src = this.rep.source.local ? dbs.get(this.rep.source.dbName) : null;
    return {
      ...this.stats,
      changes_pending: this.rep.continuous ? 0 : null,
      checkpointed_source_seq: this.checkpoint(),
      source_seq: src ? seqStr(src, this.sourceSeqN) : '0',
      through_seq: src ? seqStr(src, this.through) : '0',
    };
  }

  checkpoint() { return this.checkpointed === null ? '0' : this.checkpointed; }

  orderedStats(extra) {
    const s = this.stats;
    return {
      revisions_checked: s.revisions_checked,
      missing_revisions_found: s.missing_revisions_found,
      docs_read: s.docs_read,
      docs_written: s.docs_written,
      changes_pending: extra.changes_pending,
      doc_write_failures: s.doc_write_failures,
      bulk_get_docs: s.bulk_get_docs,
      bulk_get_attempts: s.bulk_get_attempts,
      checkpointed_source_seq: extra.checkpointed_source_seq,
      ...(extra.source_seq !== undefined ? { source_seq: extra.source_seq, through_seq: extra.through_seq } : {}),
    };
  }

  info() {
    if (this.state === 'running') return this.taskReady ? this.orderedStats(this.infoStats()) : null;
    return null;
  }

  endpointDbDeleted(name) {
    if (this.state !== 'running') return;
    const s = this.rep.source;
    const t = this.rep.target;
    if (s.local && s.dbName === name) this.crash(`db_not_found: could not open ${s.url}`);
    else if (t.local && t.dbName === name) this.crash(`db_not_found: could not open ${t.url}`);
  }

  // ---- a run

  start() {
    this.clearRun();
    this.state = 'running';
    this.pid = newPid();
    this.retryAt = null;
    this.startedAtV = vnow();
    this.event('started');
    this.sessionId = crypto.randomBytes(16).toString('hex');
    this.sessionStart = Date.now();
    this.sessionStats = emptyStats();
    const failure = this.checkEndpoints(true);
    if (failure) {
      const oneShotTransient = this.rep.transient && !this.rep.continuous;
      if (oneShotTransient && failure.immediate) {
        this.finishTransientError(failure.status, failure.error, failure.reason);
        return;
      }
      // the error term is the one seen when the (scaled) connection retries give up
      const wait = oneShotTransient && !failure.immediate ? T_CRASH_UNREACHABLE_TRANSIENT : failure.after;
      this.later(wait, () => {
        const f = this.checkEndpoints(true);
        if (f) this.crash(f.crash, f);
        else this.taskInit();
      });
      return;
    }
    this.later(T_TASK, () => this.taskInit());
  }

  // null when both endpoints can be used; else how and when the job fails.
  checkEndpoints(atStart) {
    for (const [side, ep] of [['source', this.rep.source], ['target', this.rep.target]]) {
      if (!ep.local) {
        const why = probeResult(ep);
        const term = `{http_request_failed,"GET","${ep.url}",\n                     {error,{error,{conn_failed,{error,${why}}}}}}`;
        return { after: T_CRASH_UNREACHABLE, crash: term, status: 500, error: 'error', reason: term, immediate: false };
      }
      if (ep.user !== ADMIN || ep.pass !== opts.password) {
        const reason = `unauthorized to access or create database ${ep.url}`;
        return { after: T_CRASH_OPEN, crash: `unauthorized: ${reason}`, status: 401, error: 'unauthorized', reason, immediate: true };
      }
      const exists = dbs.has(ep.dbName);
      if (!exists && side === 'target' && this.rep.createTarget) {
        if (atStart) {
          if (!validDbName(ep.dbName)) return { after: T_CRASH_OPEN, crash: `db_not_found: could not open ${ep.url}`, status: 500, error: 'db_not_found', reason: `could not open ${ep.url}`, immediate: true };
          createDb(ep.dbName);
        }
        continue;
      }
      if (!exists) {
        return { after: T_CRASH_OPEN, crash: `db_not_found: could not open ${ep.url}`, status: 500, error: 'db_not_found', reason: `could not open ${ep.url}`, immediate: true };
      }
    }
    return null;
  }

  taskInit() {
    const failure = this.checkEndpoints(false);
    if (failure) { this.crash(failure.crash, failure); return; }
    const src = dbs.get(this.rep.source.dbName);
    const tgt = dbs.get(this.rep.target.dbName);
    // find a checkpoint both sides agree on
    const cpId = `_local/${this.rep.baseId}`;
    const a = src.local.get(cpId);
    const b = tgt.local.get(cpId);
    let start = 0;
    this.prevHistory = [];
    this.prevSessionId = null;
    this.checkpointed = null;
    this.checkpointedN = 0;
    let cpSeq = null;
    try { cpSeq = a ? parseSince(src, a.body.source_last_seq) : null; } catch (_) { cpSeq = null; }
    if (this.rep.useCheckpoints && a && b && a.body.session_id === b.body.session_id && cpSeq !== null) {
      start = cpSeq;
      this.checkpointed = String(a.body.source_last_seq);
      this.checkpointedN = start;
      this.prevHistory = Array.isArray(b.body.history) ? b.body.history : [];
      this.prevSessionId = b.body.session_id;
    } else if (this.rep.sinceSeq !== undefined) {
      try { start = parseSince(src, this.rep.sinceSeq); } catch (_) { start = 0; }
    }
    // every (re)start replicates from the checkpoint both sides agree on, as CouchDB does
    this.through = start;
    this.sessionStartSeq = start;
    this.startedOn = unixSec();
    this.taskReady = true;
    const hadChanges = this.copy();
    this.updatedOn = unixSec();
    if (this.rep.continuous) {
      const w = () => this.scheduleCopy();
      src.waiters.add(w);
      this.unsub = () => src.waiters.delete(w);
      this.scheduleCheckpoint();
      return;
    }
    const n = this.sessionStats.docs_written + this.sessionStats.doc_write_failures;
    this.later(Math.max(0.05, oneShotDuration(n) - T_TASK - T_ADD), () => this.complete(hadChanges));
  }

  scheduleCopy() {
    if (this.copyPending || this.state !== 'running' || !this.taskReady) return;
    this.copyPending = this.later(T_COPY_LATENCY, () => {
      this.copyPending = null;
      const s = this.rep.source;
      const t = this.rep.target;
      if (!dbs.has(s.dbName)) { this.crash(`db_not_found: could not open ${s.url}`); return; }
      if (!dbs.has(t.dbName)) { this.crash(`db_not_found: could not open ${t.url}`); return; }
      this.copy();
      this.updatedOn = unixSec();
    });
  }

  scheduleCheckpoint() {
    this.later(T_CHECKPOINT, () => {
      if (this.through > this.checkpointedN) this.writeCheckpoint();
      this.scheduleCheckpoint();
    });
  }

  // Copy every change after this.through from source to target; true when there was any.
  copy() {
    const src = dbs.get(this.rep.source.dbName);
    const tgt = dbs.get(this.rep.target.dbName);
    if (!src || !tgt) return false;
    const pass = this.passFn(src);
    const changes = changesSince(src, this.through);
    for (const doc of changes) {
      this.through = doc.seq;
      if (!pass(doc)) continue;
      const leaves = leavesSorted(doc);
      const target = tgt.docs.get(doc.id);
      const missing = leaves.filter((l) => !(target && target.revs.has(revStr(l))));
      this.bump('revisions_checked', leaves.length);
      this.bump('missing_revisions_found', missing.length);
      for (const leaf of missing) {
        this.bump('docs_read', 1);
        this.bump('bulk_get_docs', 1);
        this.bump('bulk_get_attempts', 1);
        const body = docJSON(doc, leaf, { revs: true, attachments: true });
        try {
          graftDoc(tgt, body, { name: ADMIN, admin: true });
          this.bump('docs_written', 1);
        } catch (_) {
          this.bump('doc_write_failures', 1);
        }
      }
    }
    this.sourceSeqN = src.seq;
    if (this.through < src.seq) this.through = src.seq;
    return changes.length > 0;
  }

  bump(k, n) {
    this.stats[k] += n;
    this.sessionStats[k] += n;
  }

  passFn(src) {
    const rep = this.rep;
    if (rep.docIds) {
      const ids = new Set(rep.docIds);
      return (doc) => ids.has(doc.id);
    }
    if (rep.selector) return (doc) => mangoMatch(docJSON(doc, doc.winner), rep.selector);
    if (rep.filter) {
      const f = loadFilter(src, rep.filter);
      if (typeof f === 'string') return () => false;
      const req = { query: rep.queryParams };
      return (doc) => f(docJSON(doc, doc.winner), req);
    }
    return () => true;
  }

  historyEntry() {
    const src = dbs.get(this.rep.source.dbName);
    const s = this.sessionStats;
    const endSeq = src ? seqStr(src, this.through) : String(this.through);
    return {
      session_id: this.sessionId,
      start_time: httpDate(this.sessionStart),
      end_time: httpDate(),
      start_last_seq: this.sessionStartSeq === 0 ? 0 : (src ? seqStr(src, this.sessionStartSeq) : this.sessionStartSeq),
      end_last_seq: endSeq,
      recorded_seq: endSeq,
      missing_checked: s.revisions_checked,
      missing_found: s.missing_revisions_found,
      docs_read: s.docs_read,
      docs_written: s.docs_written,
      doc_write_failures: s.doc_write_failures,
      bulk_get_docs: s.bulk_get_docs,
      bulk_get_attempts: s.bulk_get_attempts,
    };
  }

  writeCheckpoint() {
    const src = dbs.get(this.rep.source.dbName);
    const tgt = dbs.get(this.rep.target.dbName);
    if (!src || !tgt || !this.rep.useCheckpoints) return;
    const entry = this.historyEntry();
    const history = [entry, ...(this.prevHistory || []).filter((h) => !(isObj(h) && h.session_id === this.sessionId))].slice(0, 50);
    const body = { session_id: this.sessionId, source_last_seq: entry.recorded_seq, replication_id_version: 4, history };
    const id = `_local/${this.rep.baseId}`;
    for (const db of [src, tgt]) {
      const cur = db.local.get(id);
      db.local.set(id, { n: cur ? cur.n + 1 : 1, body: parseJSON(enc(body)) });
    }
    this.prevHistory = history;
    this.checkpointed = entry.recorded_seq;
    this.checkpointedN = this.through;
  }

  complete(hadChanges) {
    const src = dbs.get(this.rep.source.dbName);
    if (!src || !dbs.has(this.rep.target.dbName)) {
      this.crash(`db_not_found: could not open ${(src ? this.rep.target : this.rep.source).url}`);
      return;
    }
    this.copy(); // a one-shot reads the changes feed to its end
    const noChanges = !hadChanges && this.sessionStats.revisions_checked === 0 && this.checkpointed !== null;
    if (!noChanges) this.writeCheckpoint();
    const stats = this.orderedStats({ changes_pending: null, checkpointed_source_seq: this.checkpoint() });
    const startTime = this.addedAt;
    removeJob(this);
    if (this.doc) {
      const body = { ...stats, start_time: isoSec(startTime) };
      hooks.jobFinished(this.doc.db, this.doc.docId, this.id, { _replication_state: 'completed', _replication_state_time: isoSec(), _replication_stats: body });
      return;
    }
    if (this.onDone) {
      const srcSeq = seqStr(src, this.through);
      let out;
      if (noChanges) {
        out = { ok: true, no_changes: true, session_id: this.prevSessionId || this.sessionId, source_last_seq: this.checkpoint(), replication_id_version: 4, history: this.prevHistory || [] };
      } else {
        out = { ok: true, session_id: this.sessionId, source_last_seq: srcSeq, replication_id_version: 4 };
        if (this.rep.docIds) {
          out.start_time = httpDate(this.sessionStart);
          out.end_time = httpDate();
          out.docs_read = this.sessionStats.docs_read;
          out.docs_written = this.sessionStats.docs_written;
          out.doc_write_failures = this.sessionStats.doc_write_failures;
        }
        out.history = this.prevHistory;
      }
      const cb = this.onDone;
      this.onDone = null;
      cb(200, out);
    }
  }

  crash(reason, failure) {
    if (this.removed) return;
    if (this.rep.transient && !this.rep.continuous) {
      const f = failure || { status: 500, error: 'error', reason };
      this.finishTransientError(f.status, f.error, f.reason);
      return;
    }
    this.clearRun();
    this.state = 'crashing';
    this.errorCount += 1;
    this.lastError = reason;
    this.event('crashed', { reason });
    const delay = crashBackoff(this.errorCount);
    this.retryAt = vnow() + delay;
    this.later(delay, () => {
      this.retryAt = null;
      if (runningCount() < sched.maxJobs) this.start();
      // else: waits (still "crashing") for a scheduler tick
    });
    startPending();
  }

  finishTransientError(status, error, reason) {
    const cb = this.onDone;
    this.onDone = null;
    removeJob(this);
    if (cb) cb(status, { error, reason });
  }

  stop() { // rotated out by the scheduler
    this.clearRun();
    this.state = 'pending';
    this.event('stopped');
  }
}

// unreachable endpoints: the error atom a TCP connect gave (probed once per host:port)
const probes = new Map();
function probeResult(ep) {
  const key = `${ep.host}:${ep.port}`;
  const p = probes.get(key);
  if (p && p.result) return p.result;
  if (!p) {
    const rec = { result: null };
    probes.set(key, rec);
    const sock = net.connect({ host: ep.host, port: ep.port });
    const done = (r) => { if (!rec.result) rec.result = r; sock.destroy(); setTimeout(() => probes.delete(key), 5000).unref(); };
    sock.setTimeout(5000, () => done('timeout'));
    sock.on('connect', () => done('closed'));
    sock.on('error', (e) => {
      const code = String(e.code || 'econnrefused').toLowerCase();
      done(code === 'enotfound' || code === 'eai_again' ? 'nxdomain' : code);
    });
  }
  return 'econnrefused';
}

function runningCount() {
  let n = 0;
  for (const j of jobs.values()) if (j.state === 'running') n++;
  return n;
}

function addJob(job) {
  jobs.set(job.id, job);
  job.event('added');
  if (runningCount() < sched.maxJobs) job.start();
  else job.state = 'pending';
}

function removeJob(job) {
  if (job.removed) return;
  job.clearRun();
  job.removed = true;
  if (jobs.get(job.id) === job) jobs.delete(job.id);
  startPending();
}

function waitingJobs() {
  return [...jobs.values()]
    .filter((j) => j.state === 'pending' || (j.state === 'crashing' && j.retryAt === null))
    .sort((a, b) => a.lastUpdated - b.lastUpdated);
}

// a slot freed: start what was waiting for one (not the never-started pending jobs: those
// wait for the scheduler tick, as recorded)
function startPending() {
  setImmediate(() => {
    for (const j of waitingJobs()) {
      if (runningCount() >= sched.maxJobs) break;
      if (j.state === 'crashing' || j.history.some((h) => h.type === 'stopped')) j.start();
    }
  });
}

function schedulerTick() {
  // stop excess jobs (oldest started first)
  let running = [...jobs.values()].filter((j) => j.state === 'running').sort((a, b) => a.startedAtV - b.startedAtV);
  while (running.length > sched.maxJobs) running.shift().stop();
  let waiting = waitingJobs();
  // start waiting jobs in free slots
  while (waiting.length && runningCount() < sched.maxJobs) waiting.shift().start();
  // rotate: continuous jobs that ran longest make room for jobs that waited longest
  if (waiting.length) {
    running = [...jobs.values()].filter((j) => j.state === 'running' && j.rep.continuous).sort((a, b) => a.startedAtV - b.startedAtV);
    const n = Math.min(sched.maxChurn, waiting.length, running.length);
    for (let k = 0; k < n; k++) {
      running[k].stop();
      waiting[k].start();
    }
  }
}

let tick = null;
function restartTick() {
  if (tick) tick.cancel();
  const loop = () => { tick = after(sched.interval / 1000, () => { schedulerTick(); loop(); }); };
  loop();
}
const nextTickAt = () => (tick ? tick.at : null);
// a document's job runs on the node its id picks; a /_replicate one where it was asked
const jobNode = (j) => (j.doc ? cluster.ownerNode(j.doc.db, j.doc.docId) : cluster.LOCAL);
function schedulerJob(j) {
  return {
    database: j.doc ? j.doc.db : null, id: j.id, pid: j.pid,
    source: j.rep.source.url, target: j.rep.target.url,
    user: j.doc ? null : j.user, doc_id: j.doc ? j.doc.docId : null,
    info: j.info(), history: j.history.map((h) => ({ ...h })), node: jobNode(j), start_time: isoSec(j.addedAt),
  };
}

function activeTask(j) {
  const info = j.infoStats();
  let database = null;
  if (j.doc) {
    const db = dbs.get(j.doc.db);
    const range = parseInt(md5(j.doc.docId).slice(0, 8), 16) < 0x80000000 ? '00000000-7fffffff' : '80000000-ffffffff';
    database = `shards/${range}/${j.doc.db}.${unixSec(db ? db.created : Date.now())}`;
  }
  return {
    node: jobNode(j), pid: j.pid, process_status: 'waiting',
    bulk_get_attempts: j.stats.bulk_get_attempts, bulk_get_docs: j.stats.bulk_get_docs,
    changes_pending: info.changes_pending, checkpoint_interval: 30000,
    checkpointed_source_seq: info.checkpointed_source_seq, continuous: j.rep.continuous,
    database, doc_id: j.doc ? j.doc.docId : null,
    doc_write_failures: j.stats.doc_write_failures, docs_read: j.stats.docs_read, docs_written: j.stats.docs_written,
    missing_revisions_found: j.stats.missing_revisions_found, replication_id: j.id,
    revisions_checked: j.stats.revisions_checked, source: j.rep.source.url, source_seq: info.source_seq,
    started_on: j.startedOn, target: j.rep.target.url, through_seq: info.through_seq,
    type: 'replication', updated_on: j.updatedOn, user: j.doc ? null : j.user,
  };
}

module.exports = { Job, T_ADD, T_CHECKPOINT, T_COPY_LATENCY, T_CRASH_OPEN, T_CRASH_UNREACHABLE, T_CRASH_UNREACHABLE_TRANSIENT, T_TASK, activeTask, addJob, crashBackoff, emptyStats, errorBackoff, jobs, newPid, nextTickAt, oneShotDuration, probeResult, probes, removeJob, restartTick, runningCount, sched, schedulerJob, schedulerTick, startPending, tick, waitingJobs };
