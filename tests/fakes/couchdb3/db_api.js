'use strict';
// /db and /db/doc: databases, documents, _all_docs, _bulk_docs, _revs_diff, _bulk_get.
const crypto = require('crypto');
const { state } = require('./state');
const { unixSec } = require('./clock');
const { has, isObj, md5 } = require('./json');
const { HttpError, badRequest, conflict, methodNotAllowed, notFound } = require('./errors');
const { parseRev, revStr } = require('./revs');
const { createDb, dbInfo, dbs, deleteDb, docJSON, graftDoc, illegalDbName, isReplicatorDb, localJSON, seqStr, updateDoc, updateLocal, validDbName } = require('./store');
const { deleteStatus } = require('./cluster');
const { boolParam, jsonBody, jsonParam, paging, send, sendBytes } = require('./http');
const { handleAttachment } = require('./attachments');
const { changesFeed } = require('./changes_api');
const { handleSecurity } = require('./security');
const { handleFind } = require('./find');

function handleDb(req, res, segs, q, ctx, bodyText) {
  const name = segs[0];
  const m = req.method;
  if (!validDbName(name)) throw illegalDbName(name);
  if (segs.length === 1) {
    if (m === 'PUT') {
      if (dbs.has(name)) throw new HttpError(412, 'file_exists', 'The database could not be created, the file already exists.');
      createDb(name);
      return send(req, res, 201, { ok: true }, { Location: `http://127.0.0.1:${state.port}/${encodeURIComponent(name)}` });
    }
    const db = dbs.get(name);
    if (!db) throw notFound('Database does not exist.');
    if (m === 'GET' || m === 'HEAD') return send(req, res, 200, dbInfo(db));
    if (m === 'DELETE') {
      if (q.has('rev')) throw badRequest('You tried to DELETE a database with a ?=rev parameter. Did you mean to DELETE a document instead?');
      deleteDb(db);
      return send(req, res, 200, { ok: true });
    }
    if (m === 'POST') {
      const body = jsonBody(bodyText);
      if (!isObj(body)) throw badRequest('Document must be a JSON object');
      const id = typeof body._id === 'string' ? body._id : crypto.randomBytes(16).toString('hex');
      const rev = updateDoc(db, id, body, body._rev, ctx, { deleted: body._deleted === true });
      return send(req, res, q.get('batch') === 'ok' ? 202 : 201, { ok: true, id, rev },
        { Location: `http://127.0.0.1:${state.port}/${encodeURIComponent(name)}/${docPath(id)}` }); // no ETag (recorded)
    }
    throw methodNotAllowed('DELETE,GET,HEAD,POST,PUT');
  }
  const db = dbs.get(name);
  if (!db) throw notFound('Database does not exist.');
  const s1 = segs[1];
  switch (s1) {
    case '_all_docs': return allDocs(req, res, db, q, bodyText);
    case '_bulk_docs': return bulkDocs(req, res, db, ctx, bodyText);
    case '_changes': return changesFeed(req, res, db, q, bodyText);
    case '_revs_diff': return revsDiff(req, res, db, bodyText);
    case '_bulk_get': return bulkGet(req, res, db, q, bodyText);
    case '_ensure_full_commit':
      return send(req, res, 201, { ok: true, instance_start_time: String(unixSec(db.created)) });
    case '_compact':
    case '_view_cleanup':
      return send(req, res, 202, { ok: true });
    case '_security': return handleSecurity(req, res, db, bodyText);
    case '_find': return handleFind(req, res, db, bodyText);
    case '_revs_limit':
      if (m === 'PUT') return send(req, res, 200, { ok: true });
      return send(req, res, 200, 1000);
    default:
      break;
  }
  let id;
  let rest;
  if (s1 === '_design' || s1 === '_local') {
    if (segs.length < 3) throw notFound('missing');
    id = `${s1}/${segs[2]}`;
    rest = segs.slice(3);
  } else {
    id = s1;
    rest = segs.slice(2);
  }
  if (rest.length) {
    const store = {
      bodyOf: (doc, leaf) => docJSON(doc, leaf),
      update: (docId, body, rev) => updateDoc(db, docId, body, rev, ctx),
    };
    const location = `http://127.0.0.1:${state.port}/${encodeURIComponent(db.name)}/${docPath(id)}/${rest.map(encodeURIComponent).join('/')}`;
    return handleAttachment(req, res, { db, id, name: rest.join('/'), q, store, send, sendBytes, location });
  }
  return docRequest(req, res, db, id, q, ctx, bodyText);
}

// the id in a Location header: CouchDB escapes the slash of _design/ and _local/ too
// (recorded: .../_design%2Fapp, .../_local%2Fmark)
const docPath = (id) => encodeURIComponent(id);

// ?attachments=true and ?atts_since=[...] of a document read
function attOpts(q) {
  const since = q.has('atts_since') ? jsonParam(q, 'atts_since') : null;
  return { attachments: boolParam(q, 'attachments'), attsSince: Array.isArray(since) ? since : null };
}

function docRequest(req, res, db, id, q, ctx, bodyText) {
  const m = req.method;
  const location = `http://127.0.0.1:${state.port}/${encodeURIComponent(db.name)}/${docPath(id)}`;
  if (id.startsWith('_local/')) {
    const rec = db.local.get(id);
    if (m === 'GET' || m === 'HEAD') {
      if (!rec) throw notFound('missing');
      return send(req, res, 200, localJSON(id, rec), { ETag: `"${md5(id + rec.n).slice(0, 25).toUpperCase()}"` });
    }
    if (m === 'PUT') {
      const body = jsonBody(bodyText);
      if (!isObj(body)) throw badRequest('Document must be a JSON object');
      const rev = updateLocal(db, id, body, q.get('rev') || body._rev, false);
      const n = db.local.get(id).n;
      return send(req, res, 201, { ok: true, id, rev }, { ETag: `"${md5(id + n).slice(0, 25).toUpperCase()}"`, Location: location });
    }
    if (m === 'DELETE') {
      const rev = updateLocal(db, id, null, q.get('rev'), true);
      return send(req, res, 200, { ok: true, id, rev });
    }
    throw methodNotAllowed('DELETE,GET,HEAD,PUT');
  }
  if (m === 'GET' || m === 'HEAD') {
    const doc = db.docs.get(id);
    const revs = boolParam(q, 'revs');
    const ao = attOpts(q);
    if (q.has('open_revs')) {
      if (!doc) throw notFound('missing');
      const spec = q.get('open_revs');
      let out;
      if (spec === 'all') {
        out = [...doc.leaves].sort((a, b) => (a.pos - b.pos) || (a.hash < b.hash ? -1 : 1)).map((l) => ({ ok: docJSON(doc, l, { revs, ...ao }) }));
      } else {
        const list = jsonParam(q, 'open_revs');
        if (!Array.isArray(list)) throw badRequest('Invalid open_revs');
        out = list.map((r) => {
          const l = doc.leaves.find((x) => revStr(x) === r);
          return l ? { ok: docJSON(doc, l, { revs, ...ao }) } : { missing: r };
        });
      }
      return send(req, res, 200, out);
    }
    if (!doc) throw notFound('missing');
    let leaf = doc.winner;
    if (q.has('rev')) {
      leaf = doc.leaves.find((l) => revStr(l) === q.get('rev'));
      if (!leaf) throw notFound('missing');
    } else if (leaf.deleted) {
      throw notFound('deleted');
    }
    const out = docJSON(doc, leaf, { revs, conflicts: boolParam(q, 'conflicts'), deletedConflicts: boolParam(q, 'deleted_conflicts'), ...ao });
    if (boolParam(q, 'local_seq')) out._local_seq = seqStr(db, doc.seq);
    // chttpd sends an ETag only for a document without meta (recorded: none with _conflicts)
    const meta = ['_conflicts', '_deleted_conflicts', '_revs_info', '_local_seq'].some((k) => has(out, k));
    return send(req, res, 200, out, meta ? {} : { ETag: `"${revStr(leaf)}"` });
  }
  if (m === 'PUT') {
    const body = jsonBody(bodyText);
    if (!isObj(body)) throw badRequest('Document must be a JSON object');
    if (q.get('new_edits') === 'false') {
      body._id = id;
      graftDoc(db, body, ctx);
      return send(req, res, 201, { ok: true, id, rev: body._rev }, { ETag: `"${body._rev}"`, Location: location });
    }
    const rev = updateDoc(db, id, body, q.get('rev') || body._rev, ctx, { deleted: body._deleted === true });
    return send(req, res, q.get('batch') === 'ok' ? 202 : 201, { ok: true, id, rev }, { ETag: `"${rev}"`, Location: location });
  }
  if (m === 'DELETE') {
    const rev = q.get('rev') || (req.headers['if-match'] || '').replace(/"/g, '') || undefined;
    if (!db.docs.has(id)) throw notFound('missing');
    if (!rev) throw conflict();
    const status = isReplicatorDb(db.name) ? deleteStatus(db.name, id, revStr(db.docs.get(id).winner)) : 200;
    const newRev = updateDoc(db, id, {}, rev, ctx, { deleted: true });
    return send(req, res, status, { ok: true, id, rev: newRev }, { ETag: `"${newRev}"` });
  }
  throw methodNotAllowed('DELETE,GET,HEAD,PUT');
}

function allDocs(req, res, db, q, bodyText) {
  let keys = null;
  if (req.method === 'POST') {
    const b = jsonBody(bodyText);
    if (isObj(b) && has(b, 'keys')) {
      if (!Array.isArray(b.keys)) throw badRequest('`keys` member must be an array.');
      keys = b.keys;
    }
  } else if (req.method !== 'GET' && req.method !== 'HEAD') {
    throw methodNotAllowed('GET,HEAD,POST');
  }
  if (q.has('keys')) keys = jsonParam(q, 'keys');
  if (q.has('key')) keys = [jsonParam(q, 'key')];
  const includeDocs = boolParam(q, 'include_docs');
  const conflicts = boolParam(q, 'conflicts');
  const descending = boolParam(q, 'descending');
  const { limit, skip } = paging(q);
  const live = [...db.docs.values()].filter((d) => !d.winner.deleted);
  const row = (d) => {
    const r = { id: d.id, key: d.id, value: { rev: revStr(d.winner) } };
    if (includeDocs) r.doc = docJSON(d, d.winner, { conflicts });
    return r;
  };
  let rows;
  let offset = null; // null with keys (recorded); else the rows before the first one returned
  if (keys) {
    rows = keys.map((k) => {
      const d = typeof k === 'string' ? db.docs.get(k) : null;
      if (!d) return { key: k, error: 'not_found' };
      if (d.winner.deleted) {
        const r = { id: d.id, key: d.id, value: { rev: revStr(d.winner), deleted: true } };
        if (includeDocs) r.doc = null;
        return r;
      }
      return row(d);
    });
  } else {
    const sk = q.has('startkey') ? jsonParam(q, 'startkey') : q.has('start_key') ? jsonParam(q, 'start_key') : undefined;
    const ek = q.has('endkey') ? jsonParam(q, 'endkey') : q.has('end_key') ? jsonParam(q, 'end_key') : undefined;
    const inclusiveEnd = boolParam(q, 'inclusive_end', true);
    let list = live.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (descending) list.reverse();
    const before = (a, b) => (descending ? a > b : a < b);
    offset = skip + (sk === undefined ? 0 : list.filter((d) => before(d.id, String(sk))).length);
    list = list.filter((d) => {
      if (sk !== undefined && before(d.id, String(sk))) return false;
      if (ek !== undefined) {
        if (before(String(ek), d.id)) return false;
        if (!inclusiveEnd && d.id === String(ek)) return false;
      }
      return true;
    });
    rows = list.map(row);
  }
  const out = { total_rows: live.length, offset, rows: rows.slice(skip, skip + limit) };
  if (boolParam(q, 'update_seq')) out.update_seq = seqStr(db, db.seq);
  return send(req, res, 200, out);
}

function bulkDocs(req, res, db, ctx, bodyText) {
  if (req.method !== 'POST') throw methodNotAllowed('POST');
  const b = jsonBody(bodyText);
  if (!isObj(b) || !Array.isArray(b.docs)) throw badRequest('POST body must include `docs` parameter.');
  const newEdits = b.new_edits !== false;
  const out = [];
  for (const d of b.docs) {
    if (!isObj(d)) { out.push({ error: 'bad_request', reason: 'Document must be a JSON object' }); continue; }
    const id = typeof d._id === 'string' ? d._id : crypto.randomBytes(16).toString('hex');
    try {
      if (newEdits) {
        const rev = updateDoc(db, id, d, d._rev, ctx, { deleted: d._deleted === true });
        out.push({ ok: true, id, rev });
      } else {
        graftDoc(db, { ...d, _id: id }, ctx);
      }
    } catch (e) {
      if (!(e instanceof HttpError)) throw e;
      const r = { id, error: e.error, reason: e.reason };
      if (!newEdits && d._rev) r.rev = d._rev;
      out.push(r);
    }
  }
  return send(req, res, 201, out);
}

function revsDiff(req, res, db, bodyText) {
  if (req.method !== 'POST') throw methodNotAllowed('POST');
  const b = jsonBody(bodyText);
  if (!isObj(b)) throw badRequest('Request body must be a JSON object');
  const out = {};
  for (const id of Object.keys(b)) {
    const revs = Array.isArray(b[id]) ? b[id] : [];
    const doc = db.docs.get(id);
    const missing = revs.filter((r) => !(doc && doc.revs.has(r)));
    if (!missing.length) continue;
    const entry = { missing };
    if (doc) {
      const maxPos = Math.max(...missing.map((r) => (parseRev(r) || { pos: 0 }).pos));
      const anc = doc.leaves.filter((l) => l.pos < maxPos).map(revStr);
      if (anc.length) entry.possible_ancestors = anc;
    }
    out[id] = entry;
  }
  return send(req, res, 200, out);
}

function bulkGet(req, res, db, q, bodyText) {
  if (req.method !== 'POST') throw methodNotAllowed('POST');
  const b = jsonBody(bodyText);
  if (!isObj(b) || !Array.isArray(b.docs)) throw badRequest('Missing JSON list of `docs`.');
  const revs = boolParam(q, 'revs');
  const latest = boolParam(q, 'latest');
  const attachments = boolParam(q, 'attachments');
  const results = b.docs.map((spec) => {
    const o = { revs, attachments, attsSince: isObj(spec) && Array.isArray(spec.atts_since) ? spec.atts_since : null };
    const id = isObj(spec) ? spec.id : undefined;
    // key order as recorded (118): rev, reason, id, error
    const err = (rev) => ({ error: { rev, reason: 'missing', id, error: 'not_found' } });
    const doc = typeof id === 'string' ? db.docs.get(id) : null;
    if (!doc) return { id, docs: [err(isObj(spec) && typeof spec.rev === 'string' ? spec.rev : 'undefined')] };
    if (isObj(spec) && typeof spec.rev === 'string') {
      let found = doc.leaves.filter((x) => revStr(x) === spec.rev);
      const r = parseRev(spec.rev);
      // latest=true: the leaves that descend from an older revision
      if (!found.length && latest && r) found = doc.leaves.filter((x) => x.pos > r.pos && x.history[x.pos - r.pos] === r.hash);
      return { id, docs: found.length ? found.map((l) => ({ ok: docJSON(doc, l, o) })) : [err(spec.rev)] };
    }
    const leaves = [...doc.leaves].sort((a, c) => (a.pos - c.pos) || (a.hash < c.hash ? -1 : 1));
    return { id, docs: leaves.map((l) => ({ ok: docJSON(doc, l, o) })) };
  });
  return send(req, res, 200, { results });
}

module.exports = { allDocs, bulkDocs, bulkGet, docPath, docRequest, handleDb, revsDiff };
