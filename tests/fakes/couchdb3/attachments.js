'use strict';
// Attachments: what a revision stores, how documents show them (stubs, or inline data with
// ?attachments=true and atts_since), and /db/doc/name itself.
//
// As recorded (fixtures/couchdb-3.4.3-suite 00025, 00027, 00029, 00349, 00372): a PUT
// answers 201 {ok,id,rev} with a Location and no ETag; a GET answers the bytes with the
// attachment's content type and ETag "<base64 md5>"; a document lists stubs as
// {content_type, revpos, digest, length, stub}. Inline data ({content_type, revpos,
// digest, data}) follows couch_att's JSON; it is not in the recordings.
const crypto = require('crypto');
const { isObj, isInt, toNum } = require('./json');
const { HttpError, badRequest } = require('./errors');

const digestOf = (buf) => `md5-${crypto.createHash('md5').update(buf).digest('base64')}`;
const missingStub = (id, name) => new HttpError(412, 'missing_stub', `Invalid attachment stub in ${id} for ${name}`);

// The _attachments of a write -> what the new revision stores (null: none).
//   pos        the new revision's position (revpos of new data on a normal write)
//   keepRevpos new_edits=false: data keeps the revpos it came with
//   stubFrom   (name, given) -> the stored attachment a stub points at, or null
function prepare(given, { id, pos, keepRevpos, stubFrom }) {
  if (given === undefined || given === null) return null;
  if (!isObj(given)) throw badRequest('Bad special document member: _attachments');
  const out = Object.create(null);
  for (const name of Object.keys(given)) {
    const a = given[name];
    if (!isObj(a)) throw badRequest(`Bad attachment: ${name}`);
    if (a.stub === true) {
      const old = stubFrom(name, a);
      if (!old) throw missingStub(id, name);
      out[name] = old;
    } else if (typeof a.data === 'string') {
      const data = Buffer.from(a.data, 'base64');
      const revpos = keepRevpos && isInt(a.revpos) ? toNum(a.revpos) : pos;
      out[name] = { content_type: typeof a.content_type === 'string' ? a.content_type : 'application/octet-stream', revpos, digest: digestOf(data), length: data.length, data };
    } else {
      throw badRequest(`Attachment ${name} has neither data nor stub`);
    }
  }
  return Object.keys(out).length ? out : null;
}

// What a document shows: stubs, or the data of attachments newer than sincePos.
function toJSON(atts, { data = false, sincePos = 0 } = {}) {
  const out = Object.create(null);
  for (const name of Object.keys(atts)) {
    const a = atts[name];
    out[name] = data && a.revpos > sincePos
      ? { content_type: a.content_type, revpos: a.revpos, digest: a.digest, data: a.data.toString('base64') }
      : { content_type: a.content_type, revpos: a.revpos, digest: a.digest, length: a.length, stub: true };
  }
  return out;
}

// atts_since: the newest of the given revisions that are ancestors of leaf (its position)
function sincePos(leaf, revs) {
  let best = 0;
  for (const r of revs || []) {
    const m = typeof r === 'string' && /^(\d+)-(.+)$/.exec(r);
    if (!m) continue;
    const p = parseInt(m[1], 10);
    if (p <= leaf.pos && leaf.history[leaf.pos - p] === m[2] && p > best) best = p;
  }
  return best;
}

// /db/doc/name. store: { leafOf(doc, rev), update(id, body, rev) -> new rev, bodyOf(doc, leaf) }
function handleAttachment(req, res, { db, id, name, q, store, send, sendBytes, location }) {
  const m = req.method;
  const doc = db.docs.get(id);
  if (m === 'GET' || m === 'HEAD') {
    if (!doc) throw new HttpError(404, 'not_found', 'missing');
    const leaf = q.has('rev') ? doc.leaves.find((l) => `${l.pos}-${l.hash}` === q.get('rev')) : doc.winner;
    if (!leaf) throw new HttpError(404, 'not_found', 'missing');
    if (leaf.deleted && !q.has('rev')) throw new HttpError(404, 'not_found', 'deleted');
    const a = leaf.atts && leaf.atts[name];
    if (!a) throw new HttpError(404, 'not_found', 'Document is missing attachment');
    return sendBytes(req, res, 200, a.data, { 'Content-Type': a.content_type, ETag: `"${a.digest.replace(/^md5-/, '')}"` });
  }
  if (m !== 'PUT' && m !== 'DELETE') throw new HttpError(405, 'method_not_allowed', 'Only DELETE,GET,HEAD,PUT allowed', { Allow: 'DELETE,GET,HEAD,PUT' });
  const rev = q.get('rev') || (req.headers['if-match'] || '').replace(/"/g, '') || undefined;
  const base = doc && !doc.winner.deleted ? store.bodyOf(doc, doc.winner) : Object.create(null);
  const atts = Object.create(null);
  for (const k of Object.keys(isObj(base._attachments) ? base._attachments : {})) atts[k] = { stub: true };
  if (m === 'PUT') {
    const ct = String(req.headers['content-type'] || 'application/octet-stream').split(';')[0].trim();
    atts[name] = { content_type: ct, data: (req.rawBody || Buffer.alloc(0)).toString('base64') };
  } else {
    if (!doc || doc.winner.deleted) throw new HttpError(404, 'not_found', doc ? 'deleted' : 'missing');
    if (!atts[name]) throw new HttpError(404, 'not_found', 'Document is missing attachment');
    delete atts[name];
  }
  const body = { ...base, _attachments: atts };
  delete body._rev;
  const newRev = store.update(id, body, rev);
  if (m === 'PUT') return send(req, res, 201, { ok: true, id, rev: newRev }, { Location: location });
  return send(req, res, 200, { ok: true, id, rev: newRev });
}

module.exports = { digestOf, handleAttachment, prepare, sincePos, toJSON };
