'use strict';
// The document processor: _replicator documents become jobs; /_scheduler/docs entries.
const { ADMIN } = require('./state');
const { enc, isObj } = require('./json');
const { after, isoSec } = require('./clock');
const { revStr } = require('./revs');
const { loadFilter } = require('./ddoc');
const { parseEndpoint, parseRep } = require('./repparams');
const { dbs, isReplicatorDb, liveDoc, updateDoc } = require('./store');
const { Job, T_ADD, addJob, errorBackoff, jobs, probeResult, removeJob } = require('./scheduler');
const hooks = require('./hooks');
const cluster = require('./cluster');

const entries = new Map(); // db + "\0" + docId -> {db, docId, state, jobId, errorCount, lastError, startTime, lastUpdated, timer, rep}
const entryKey = (db, id) => `${db}\0${id}`;

function removeEntry(key) {
  const e = entries.get(key);
  if (!e) return;
  entries.delete(key);
  if (e.timer) e.timer.cancel();
  if (e.jobId) {
    const j = jobs.get(e.jobId);
    if (j && j.doc && j.doc.db === e.db && j.doc.docId === e.docId) removeJob(j);
  }
}

function replicatorDocChanged(db, docId) {
  const key = entryKey(db.name, docId);
  if (docId.startsWith('_design/')) return;
  const doc = liveDoc(db, docId);
  if (!doc) { removeEntry(key); return; }
  const body = doc.winner.body;
  const st = body._replication_state;
  if (st === 'completed' || st === 'failed') { removeEntry(key); return; }
  let rep;
  try { rep = parseRep(body, { transient: false }); } catch (_) { removeEntry(key); return; }
  const cur = entries.get(key);
  if (cur && cur.rep && cur.rep.jobId === rep.jobId && enc(cur.rep) === enc(rep)) return; // same replication
  removeEntry(key);
  const e = { db: db.name, docId, state: 'initializing', jobId: null, errorCount: 0, lastError: null, startTime: Date.now(), lastUpdated: Date.now(), timer: null, rep };
  entries.set(key, e);
  // a node that booted less than T_BOOT s ago has not read the document yet: no row
  const boot = cluster.bootWait(cluster.ownerNode(db.name, docId));
  if (boot > 0) {
    e.state = 'booting';
    bootQueue(cluster.bootedAt(cluster.ownerNode(db.name, docId)), boot).push([key, e]);
    return;
  }
  e.timer = after(T_ADD, () => processEntry(key, e));
}

// The documents booting nodes will read, in the order they were written: one timer per
// boot moment (nodes booted together share it) reads them all in that order (a timer each
// could swap two written together, their times differing in the last bit).
const booting = new Map(); // boot moment -> {timer, list: [[key, entry]]}
function bootQueue(moment, wait) {
  let b = booting.get(moment);
  if (!b) {
    b = { list: [] };
    b.timer = after(wait, () => {
      booting.delete(moment);
      for (const [key, e] of b.list) {
        if (entries.get(key) !== e || e.state !== 'booting') continue;
        e.state = 'initializing';
        e.startTime = Date.now();
        e.lastUpdated = Date.now();
        e.timer = after(T_ADD, () => processEntry(key, e));
      }
    });
    booting.set(moment, b);
  }
  return b.list;
}

// A restarted node drops its jobs and reads its documents again once it has booted.
cluster.restartListeners.push((node) => {
  for (const [key, e] of [...entries]) {
    if (cluster.ownerNode(e.db, e.docId) !== node || e.state === 'finishing' || e.state === 'finished') continue;
    removeEntry(key);
    const db = dbs.get(e.db);
    if (db) replicatorDocChanged(db, e.docId);
  }
});

// A _replicator job ended (completed): on one node the document is rewritten at once; on a
// cluster the row is gone for T_ROW_GONE s, then says what the job ended with, and the
// document says so only T_DOC_LAG s after the end (as recorded).
function jobFinished(dbName, docId, jobId, fields) {
  const key = entryKey(dbName, docId);
  const e = entries.get(key);
  if (!cluster.CLUSTER || !e) { writeReplicationState(dbName, docId, jobId, fields); return; }
  e.state = 'finishing';
  e.jobId = null;
  e.final = fields;
  e.timer = after(cluster.lag(cluster.T_ROW_GONE), () => {
    e.state = 'finished';
    e.timer = after(cluster.lag(cluster.T_DOC_LAG - cluster.T_ROW_GONE), () => {
      e.timer = null;
      if (entries.get(key) === e) entries.delete(key);
      writeReplicationState(dbName, docId, jobId, fields);
    });
  });
}

// The state /_scheduler/docs shows for a document without building its row (a listing
// of 10,000 builds only the rows of its page): a state, 'hidden' (counted, not shown) or
// null (no row).
function schedulerDocState(dbName, docId) {
  const e = entries.get(entryKey(dbName, docId));
  if (e) {
    if (e.state === 'booting' || e.state === 'finishing') return 'hidden';
    if (e.state === 'finished') return e.final._replication_state;
    if (e.state === 'initializing' || e.state === 'error') return e.state;
    const j = jobs.get(e.jobId);
    return j ? j.state : null;
  }
  const doc = liveDoc(dbs.get(dbName), docId);
  if (!doc || docId.startsWith('_design/')) return null;
  const st = doc.winner.body._replication_state;
  return st === 'completed' || st === 'failed' ? st : null;
}

// rows the cluster has but does not show right now (counted in total_rows)
function hiddenRow(dbName, docId) {
  const e = entries.get(entryKey(dbName, docId));
  return Boolean(e && (e.state === 'booting' || e.state === 'finishing'));
}

function processEntry(key, e) {
  e.timer = null;
  if (entries.get(key) !== e) return;
  const rep = e.rep;
  // filters are fetched from the source while the replication id is computed
  if (rep.filter) {
    const ep = rep.source;
    let err = null;
    if (!ep.local) {
      err = `Couldn't open document \`_design/${rep.filter.split('/')[0]}\` from source database \`${ep.url}\`: {error,{conn_failed,{error,${probeResult(ep)}}}}`;
    } else {
      const src = dbs.get(ep.dbName);
      const f = src && loadFilter(src, rep.filter);
      if (!src || typeof f === 'string') {
        const ddoc = rep.filter.split('/')[0];
        err = !src || f === `_design/${ddoc}` || !/\//.test(rep.filter)
          ? `Couldn't open document \`_design/${ddoc}\` from source database \`${ep.url}\`: {error,<<"not_found">>}`
          : `Couldn't find filter \`${rep.filter.split('/').slice(1).join('/')}\` in design document \`_design/${ddoc}\` from source database \`${ep.url}\``;
      }
    }
    if (err) {
      e.state = 'error';
      e.errorCount += 1;
      e.lastError = err;
      e.lastUpdated = Date.now();
      e.timer = after(errorBackoff(e.errorCount), () => processEntry(key, e));
      return;
    }
  }
  const other = jobs.get(rep.jobId);
  if (other) {
    const by = other.doc ? `triggered by document \`${other.doc.docId}\` from db \`${other.doc.db}\`` : 'triggered by a /_replicate request';
    const reason = `Replication \`${rep.jobId}\` specified by document \`${e.docId}\` already started, ${by}`;
    entries.delete(key);
    writeReplicationState(e.db, e.docId, null, { _replication_state: 'failed', _replication_state_time: isoSec(), _replication_state_reason: reason });
    return;
  }
  e.state = 'job';
  e.jobId = rep.jobId;
  addJob(new Job(rep, { doc: { db: e.db, docId: e.docId } }));
}

// The scheduler's own update of a replication doc (completed / failed): a new revision.
function writeReplicationState(dbName, docId, jobId, fields) {
  const db = dbs.get(dbName);
  const doc = liveDoc(db, docId);
  if (!doc) return;
  const body = Object.create(null);
  for (const k of Object.keys(doc.winner.body)) {
    if (k.startsWith('_replication_')) continue;
    body[k] = doc.winner.body[k];
  }
  Object.assign(body, fields);
  try {
    const rev = updateDoc(db, docId, body, revStr(doc.winner), { name: ADMIN, admin: true });
    cluster.markReplicatorRev(dbName, docId, rev);
  } catch (e) {
    process.stderr.write(`fake_couchdb3: could not write the state of ${docId}: ${e.message}\n`);
  }
}

function stripEndpoint(v) {
  try { return parseEndpoint(v).url; } catch (_) { return null; }
}

// /_scheduler/docs entry for one replicator doc (null: none)
function schedulerDoc(dbName, docId) {
  const e = entries.get(entryKey(dbName, docId));
  if (e && (e.state === 'booting' || e.state === 'finishing')) return null;
  if (e && e.state === 'finished') {
    const db = dbs.get(dbName);
    const doc = liveDoc(db, docId);
    return doc ? stateRow(dbName, docId, { ...doc.winner.body, ...e.final }) : null;
  }
  const node = cluster.ownerNode(dbName, docId);
  if (e) {
    if (e.state === 'initializing' || e.state === 'error') {
      return {
        database: dbName, doc_id: docId, id: null, state: e.state,
        info: e.state === 'error' ? { error: e.lastError } : null,
        error_count: e.errorCount, node, last_updated: isoSec(e.lastUpdated), start_time: isoSec(e.startTime),
      };
    }
    const j = jobs.get(e.jobId);
    if (!j) return null;
    return {
      database: dbName, doc_id: docId, id: j.id, node,
      source: j.rep.source.url, target: j.rep.target.url, state: j.state,
      info: j.state === 'crashing' ? { error: j.lastError } : j.info(),
      error_count: j.errorCount, last_updated: isoSec(j.lastUpdated), start_time: isoSec(j.addedAt),
      source_proxy: null, target_proxy: null,
    };
  }
  const db = dbs.get(dbName);
  const doc = liveDoc(db, docId);
  if (!doc || docId.startsWith('_design/')) return null;
  return stateRow(dbName, docId, doc.winner.body);
}

// the row of a document whose job ended, from the fields the replicator wrote into it
function stateRow(dbName, docId, b) {
  if (b._replication_state === 'completed') {
    const stats = isObj(b._replication_stats) ? b._replication_stats : {};
    const info = Object.create(null);
    for (const k of Object.keys(stats)) if (k !== 'start_time') info[k] = stats[k];
    return {
      database: dbName, doc_id: docId, id: null, source: stripEndpoint(b.source), target: stripEndpoint(b.target),
      state: 'completed', error_count: 0, info,
      start_time: typeof stats.start_time === 'string' ? stats.start_time : b._replication_state_time,
      last_updated: b._replication_state_time,
    };
  }
  if (b._replication_state === 'failed') {
    return {
      database: dbName, doc_id: docId, id: null, source: stripEndpoint(b.source), target: stripEndpoint(b.target),
      state: 'failed', error_count: 1, info: { error: b._replication_state_reason },
      start_time: b._replication_state_time, last_updated: b._replication_state_time,
    };
  }
  return null;
}

hooks.replicatorDocChanged = replicatorDocChanged;
hooks.writeReplicationState = writeReplicationState;
hooks.jobFinished = jobFinished;
hooks.dbDeleted = (db) => {
  if (isReplicatorDb(db.name)) {
    for (const [key, e] of [...entries]) if (e.db === db.name) removeEntry(key);
  }
  for (const j of [...jobs.values()]) j.endpointDbDeleted(db.name);
};

module.exports = { entries, entryKey, hiddenRow, schedulerDocState, jobFinished, processEntry, removeEntry, replicatorDocChanged, schedulerDoc, stripEndpoint, writeReplicationState };
