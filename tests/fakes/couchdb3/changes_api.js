'use strict';
// GET/POST /db/_changes: normal, longpoll and continuous feeds, filters.
const { enc, isObj, md5 } = require('./json');
const { HttpError, badRequest, methodNotAllowed } = require('./errors');
const { mangoMatch } = require('./mango');
const { leavesSorted, revStr } = require('./revs');
const { loadFilter } = require('./ddoc');
const { changesSince, docJSON, parseSince, seqStr } = require('./store');
const { baseHeaders, boolParam, intParam, jsonBody, jsonParam, send } = require('./http');

function changeRow(db, doc, p) {
  const leaves = p.allDocs ? leavesSorted(doc) : [doc.winner];
  const row = { seq: seqStr(db, doc.seq), id: doc.id, changes: leaves.map((l) => ({ rev: revStr(l) })) };
  if (doc.winner.deleted) row.deleted = true;
  if (p.includeDocs) row.doc = docJSON(doc, doc.winner, { conflicts: p.conflicts });
  return row;
}

function changesFilter(db, q, body) {
  const filter = q.get('filter');
  let docIds = null;
  let selector = null;
  if (filter === '_doc_ids') {
    docIds = body && Array.isArray(body.doc_ids) ? body.doc_ids : q.has('doc_ids') ? jsonParam(q, 'doc_ids') : null;
    if (!Array.isArray(docIds)) throw badRequest('`doc_ids` filter parameter is not a list of doc ids.');
    docIds = new Set(docIds);
    return (doc) => docIds.has(doc.id);
  }
  if (filter === '_selector') {
    selector = body && body.selector;
    if (!isObj(selector)) throw badRequest('Selector must be specified in POST payload');
    return (doc) => mangoMatch(docJSON(doc, doc.winner), selector);
  }
  if (filter === '_design') return (doc) => doc.id.startsWith('_design/');
  if (filter) {
    const f = loadFilter(db, filter);
    if (typeof f === 'string') throw new HttpError(404, 'not_found', f);
    const req = { query: Object.fromEntries(q.entries()) };
    return (doc) => f(docJSON(doc, doc.winner), req);
  }
  return null;
}
function changesFeed(req, res, db, q, bodyText) {
  if (!['GET', 'HEAD', 'POST'].includes(req.method)) throw methodNotAllowed('GET,HEAD,POST');
  const body = req.method === 'POST' ? jsonBody(bodyText, { optional: true }) : undefined;
  const filter = changesFilter(db, q, body);
  const feed = q.get('feed') || 'normal';
  const p = {
    includeDocs: boolParam(q, 'include_docs'),
    conflicts: boolParam(q, 'conflicts'),
    allDocs: q.get('style') === 'all_docs',
  };
  const descending = boolParam(q, 'descending');
  const limit = q.has('limit') ? intParam(q, 'limit', 0) : Infinity;
  const since = descending ? 0 : parseSince(db, q.has('since') ? q.get('since') : 0);
  const collect = (from) => {
    let list = changesSince(db, from);
    if (filter) list = list.filter(filter);
    if (descending) list.reverse();
    const page = list.slice(0, limit);
    return { page, pending: list.length - page.length };
  };
  const finish = (page, pending) => {
    const last = page.length ? page[page.length - 1].seq : db.seq;
    return { results: page.map((d) => changeRow(db, d, p)), last_seq: seqStr(db, last), pending };
  };
  if (feed === 'normal' || descending) {
    const { page, pending } = collect(since);
    const out = finish(page, pending);
    const etag = `"${BigInt(`0x${md5(`${db.name}${db.created}${db.seq}${req.url}`).slice(0, 26)}`).toString(36).toUpperCase().slice(0, 25)}"`;
    return send(req, res, 200, out, { ETag: etag });
  }
  if (feed !== 'longpoll' && feed !== 'continuous' && feed !== 'eventsource') throw badRequest(`Supported \`feed\` types: normal, continuous, live, longpoll, eventsource`);
  let hb = null;
  if (q.has('heartbeat')) {
    const v = q.get('heartbeat');
    hb = v === 'true' ? 60000 : parseInt(v, 10);
    if (!(hb > 0)) throw new HttpError(400, 'bad_request', 'Invalid heartbeat value. Expecting a positive integer value (or `true`).');
  }
  const timeout = hb ? null : (q.has('timeout') ? Math.max(0, parseInt(q.get('timeout'), 10) || 0) : 60000);
  let headersSent = false;
  const startStream = () => {
    if (headersSent) return;
    headersSent = true;
    const h = baseHeaders();
    res.writeHead(200, h);
  };
  let done = false;
  let hbTimer = null;
  let toTimer = null;
  const cleanup = () => {
    done = true;
    db.waiters.delete(waiter);
    if (hbTimer) clearInterval(hbTimer);
    if (toTimer) clearTimeout(toTimer);
  };
  let cursor = since;
  let sent = 0;
  const waiter = () => {
    if (done) return;
    if (db.deleted) {
      cleanup();
      if (feed === 'longpoll') {
        const out = finish([], 0);
        if (headersSent) res.end(`${enc(out)}\n`);
        else send(req, res, 200, out);
      } else {
        startStream();
        res.end();
      }
      return;
    }
    const { page, pending } = collect(cursor);
    if (!page.length) return;
    if (feed === 'longpoll') {
      cleanup();
      const out = finish(page, pending);
      if (headersSent) res.end(`${enc(out)}\n`);
      else send(req, res, 200, out);
      return;
    }
    startStream();
    for (const d of page) {
      res.write(`${enc(changeRow(db, d, p))}\n`);
      cursor = d.seq;
      sent++;
      if (sent >= limit) {
        cleanup();
        res.end(`${enc({ last_seq: seqStr(db, cursor), pending: collect(cursor).pending })}\n`);
        return;
      }
    }
  };
  const onTimeout = () => {
    if (done) return;
    cleanup();
    if (feed === 'longpoll') {
      const out = { results: [], last_seq: seqStr(db, db.seq), pending: 0 };
      if (headersSent) res.end(`${enc(out)}\n`);
      else send(req, res, 200, out);
    } else {
      startStream();
      res.end(`${enc({ last_seq: seqStr(db, cursor), pending: 0 })}\n`);
    }
  };
  res.on('close', cleanup);
  if (feed === 'continuous' || feed === 'eventsource') startStream();
  db.waiters.add(waiter);
  waiter();
  if (done) return undefined;
  if (hb) {
    startStream();
    hbTimer = setInterval(() => { if (!done) res.write('\n'); }, hb);
  }
  if (timeout !== null) toTimer = setTimeout(onTimeout, timeout);
  return undefined;
}

module.exports = { changeRow, changesFeed, changesFilter };
