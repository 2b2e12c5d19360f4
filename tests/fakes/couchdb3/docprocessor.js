'use strict';
// The document processor: _replicator documents become jobs; /_scheduler/docs entries.
const { ADMIN, NODE } = require('./state');
const { enc, isObj } = require('./json');
const { after, isoSec } = require('./clock');
const { revStr } = require('./revs');
const { loadFilter } = require('./ddoc');
const { parseEndpoint, parseRep } = require('./repparams');
const { dbs, isReplicatorDb, liveDoc, updateDoc } = require('./store');
const { Job, T_ADD, addJob, errorBackoff, jobs, probeResult, removeJob } = require('./scheduler');
const hooks = require('./hooks');

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
  e.timer = after(T_ADD, () => processEntry(key, e));
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
    updateDoc(db, docId, body, revStr(doc.winner), { name: ADMIN, admin: true });
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
  if (e) {
    if (e.state === 'initializing' || e.state === 'error') {
      return {
        database: dbName, doc_id: docId, id: null, state: e.state,
        info: e.state === 'error' ? { error: e.lastError } : null,
        error_count: e.errorCount, node: NODE, last_updated: isoSec(e.lastUpdated), start_time: isoSec(e.startTime),
      };
    }
    const j = jobs.get(e.jobId);
    if (!j) return null;
    return {
      database: dbName, doc_id: docId, id: j.id, node: NODE,
      source: j.rep.source.url, target: j.rep.target.url, state: j.state,
      info: j.state === 'crashing' ? { error: j.lastError } : j.info(),
      error_count: j.errorCount, last_updated: isoSec(j.lastUpdated), start_time: isoSec(j.addedAt),
      source_proxy: null, target_proxy: null,
    };
  }
  const db = dbs.get(dbName);
  const doc = liveDoc(db, docId);
  if (!doc || docId.startsWith('_design/')) return null;
  const b = doc.winner.body;
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
hooks.dbDeleted = (db) => {
  if (isReplicatorDb(db.name)) {
    for (const [key, e] of [...entries]) if (e.db === db.name) removeEntry(key);
  }
  for (const j of [...jobs.values()]) j.endpointDbDeleted(db.name);
};

module.exports = { entries, entryKey, processEntry, removeEntry, replicatorDocChanged, schedulerDoc, stripEndpoint, writeReplicationState };
