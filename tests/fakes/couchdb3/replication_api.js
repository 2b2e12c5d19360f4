'use strict';
// /_scheduler/*, /_replicate and /_active_tasks.
const { isObj } = require('./json');
const { HttpError, badRequest, methodNotAllowed, notFound } = require('./errors');
const { RepError, parseRep } = require('./repparams');
const { dbs, isReplicatorDb } = require('./store');
const { Job, addJob, jobs, removeJob, schedulerJob } = require('./scheduler');
const { schedulerDoc, schedulerDocState } = require('./docprocessor');
const { jsonBody, paging, send } = require('./http');

const STATES = ['initializing', 'error', 'running', 'pending', 'crashing', 'completed', 'failed'];

function handleScheduler(req, res, segs, q) {
  if (req.method !== 'GET' && req.method !== 'HEAD') throw methodNotAllowed('GET,HEAD');
  const what = segs[1];
  if (what === 'jobs') {
    if (segs.length > 2) {
      const id = segs.slice(2).join('/');
      const j = jobs.get(id);
      if (!j) throw notFound('missing');
      return send(req, res, 200, schedulerJob(j));
    }
    const all = [...jobs.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const { limit, skip } = paging(q);
    return send(req, res, 200, { total_rows: all.length, offset: skip, jobs: all.slice(skip, skip + limit).map(schedulerJob) });
  }
  if (what === 'docs') {
    let filter = null;
    if (q.has('states')) {
      const states = q.get('states').split(',').map((x) => x.trim()).filter((x) => x);
      if (!states.length || states.some((x) => !STATES.includes(x))) {
        throw new HttpError(400, 'query_parse_error', `States must be one or more of [${STATES.join(',')}]`);
      }
      filter = new Set(states);
    }
    const rest = segs.slice(2);
    let dbName = null;
    let docId = null;
    if (rest.length) {
      // the db name may itself contain "/" (e.g. "other/_replicator"): it ends at "_replicator"
      const i = rest.findIndex((x) => x === '_replicator' || x.endsWith('/_replicator'));
      if (i < 0) throw badRequest('Invalid path');
      dbName = rest.slice(0, i + 1).join('/');
      if (rest.length > i + 1) docId = rest.slice(i + 1).join('/');
    }
    if (docId !== null) {
      const d = schedulerDoc(dbName, docId);
      if (!d) throw notFound('missing');
      return send(req, res, 200, d);
    }
    const names = [...dbs.keys()].filter((n) => isReplicatorDb(n) && (dbName === null || n === dbName)).sort();
    let total = 0; // a cluster's rows missing for a while are still counted (recorded)
    const shown = []; // [db, id] of the rows the filter keeps
    for (const n of names) {
      const db = dbs.get(n);
      const ids = [...db.docs.keys()].filter((id) => !id.startsWith('_design/')).sort();
      for (const id of ids) {
        const st = schedulerDocState(n, id);
        if (st === null) continue;
        total += 1;
        if (st !== 'hidden' && (!filter || filter.has(st))) shown.push([n, id]);
      }
    }
    const { limit, skip } = paging(q);
    const docs = shown.slice(skip, skip + limit).map(([n, id]) => schedulerDoc(n, id)).filter((d) => d);
    return send(req, res, 200, { total_rows: total, offset: skip, docs });
  }
  throw notFound('missing');
}

function handleReplicate(req, res, ctx, bodyText) {
  if (req.method !== 'POST') throw methodNotAllowed('POST');
  const body = jsonBody(bodyText);
  if (!isObj(body)) throw badRequest('Request body must be a JSON object');
  if (body.cancel === true && typeof body.replication_id === 'string') {
    const rid = body.replication_id;
    const j = jobs.get(rid) || [...jobs.values()].find((x) => !x.doc && x.rep.baseId === rid);
    if (!j || j.doc) throw notFound('missing');
    cancelTransient(j);
    return send(req, res, 200, { ok: true, _local_id: j.id });
  }
  let rep;
  try {
    rep = parseRep(body, { transient: true });
  } catch (e) {
    if (e instanceof RepError) throw new HttpError(e.status, e.error, e.reason);
    throw e;
  }
  if (body.cancel === true) {
    const j = jobs.get(rep.jobId);
    if (!j || j.doc) throw notFound('missing');
    cancelTransient(j);
    return send(req, res, 200, { ok: true, _local_id: j.id });
  }
  const existing = jobs.get(rep.jobId);
  if (existing && existing.doc) { // the same replication runs from a _replicator doc
    throw new HttpError(500, 'error', `Replication \`${rep.jobId}\` already started, triggered by document \`${existing.doc.docId}\` from db \`${existing.doc.db}\``);
  }
  if (rep.continuous) {
    if (!existing) addJob(new Job(rep, { user: ctx.name }));
    return send(req, res, 202, { ok: true, _local_id: rep.jobId });
  }
  // a one-shot answers when it is done; the same one-shot asked twice shares the job
  const job = existing || new Job(rep, { user: ctx.name });
  const prev = job.onDone;
  job.onDone = (status, out) => {
    if (prev) prev(status, out);
    send(req, res, status, out);
  };
  if (!existing) addJob(job);
  return undefined;
}

function cancelTransient(j) {
  const cb = j.onDone;
  j.onDone = null;
  removeJob(j);
  if (cb) cb(500, { error: 'error', reason: 'canceled' });
}

module.exports = { STATES, cancelTransient, handleReplicate, handleScheduler };
