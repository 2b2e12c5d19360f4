'use strict';
// Databases and documents: revision trees, _local docs, sequences.
const crypto = require('crypto');
const { enc, has, isNum, isObj, md5, toNum } = require('./json');
const { unixSec } = require('./clock');
const { HttpError, badRequest, conflict, notFound } = require('./errors');
const { computeWinner, leavesSorted, parseRev, revStr } = require('./revs');
const { runVdus } = require('./ddoc');
const { RepError, parseRep } = require('./repparams');
const hooks = require('./hooks');
const { prepare: prepareAtts, toJSON: attsJSON, sincePos } = require('./attachments');

const dbs = new Map();
const SPECIAL_OK = new Set(['_id', '_rev', '_deleted', '_attachments', '_revisions', '_revs_info', '_conflicts',
  '_deleted_conflicts', '_local_seq', '_replication_state', '_replication_state_time', '_replication_state_reason',
  '_replication_id', '_replication_stats']);
const STRIP_ON_WRITE = new Set(['_id', '_rev', '_deleted', '_revisions', '_revs_info', '_conflicts',
  '_deleted_conflicts', '_local_seq', '_attachments']); // _attachments: kept in leaf.atts
const SYSTEM_DBS = new Set(['_users', '_replicator', '_global_changes']);
function validDbName(name) {
  if (SYSTEM_DBS.has(name)) return true;
  if (/^[a-z][a-z0-9_$()+/-]*$/.test(name)) return true;
  return /^[a-z][a-z0-9_$()+/-]*\/_replicator$/.test(name) || /^[a-z][a-z0-9_$()+/-]*\/_users$/.test(name);
}

function illegalDbName(name) {
  return new HttpError(400, 'illegal_database_name', `Name: '${name}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.`);
}

const isReplicatorDb = (name) => name === '_replicator' || name.endsWith('/_replicator');

class Db {
  constructor(name) {
    this.name = name;
    this.docs = new Map(); // id -> {id, leaves: [...], revs: Set, seq, winner}
    this.local = new Map(); // "_local/x" -> {n, body}
    this.ddocs = new Set(); // ids of the design docs (for validate_doc_update)
    this.seq = 0;
    this.created = Date.now();
    this.waiters = new Set(); // fn(), called after every change
    this.deleted = false;
    // CouchDB 3's [couchdb] default_security = admin_only (documented; not recorded)
    this.security = { members: { roles: ['_admin'] }, admins: { roles: ['_admin'] } };
  }
}

function createDb(name) {
  const db = new Db(name);
  dbs.set(name, db);
  return db;
}

function deleteDb(db) {
  db.deleted = true;
  dbs.delete(db.name);
  for (const w of [...db.waiters]) w();
  hooks.dbDeleted(db);
}

function seqOpaque(db, n) {
  const h = crypto.createHash('sha256').update(`${db.name}\0${db.created}\0${n}`).digest('base64url');
  return `g1AAAACbeJzLYWBgYMpgTmEQTM4vTc5ISXIwNDLXMwBCwxyQ${h.slice(0, 44)}`;
}
const seqStr = (db, n) => `${n}-${seqOpaque(db, n)}`;

// since: "now", 0, "0", an integer, "N-opaque" (CouchDB 3 style), or "N"
function parseSince(db, v) {
  if (v === undefined || v === null || v === '') return 0;
  if (v === 'now') return db.seq;
  if (isNum(v)) return Math.max(0, Math.floor(toNum(v)));
  const m = /^(\d+)(?:-[A-Za-z0-9_-]*)?$/.exec(String(v));
  if (!m) throw badRequest("Malformed sequence supplied in 'since' parameter.");
  return parseInt(m[1], 10);
}

function docBody(body) { // the stored body: user fields without the special members we keep apart
  const out = Object.create(null);
  for (const k of Object.keys(body)) {
    if (STRIP_ON_WRITE.has(k)) continue;
    out[k] = body[k];
  }
  return out;
}

function checkSpecial(body) {
  for (const k of Object.keys(body)) {
    if (k.startsWith('_') && !SPECIAL_OK.has(k)) throw new HttpError(400, 'doc_validation', `Bad special document member: ${k}`);
  }
}

function checkDocId(id) {
  if (typeof id !== 'string' || id === '') throw badRequest('Document id must be a string');
  if (id.startsWith('_') && !id.startsWith('_design/') && !id.startsWith('_local/')) {
    throw badRequest('Only reserved document ids may start with underscore.');
  }
}

// The replicator db's before_doc_update (validation + owner), as CouchDB 3.4.3 answers.
function replicatorBeforeUpdate(db, id, body, deleted, ctx) {
  if (!isReplicatorDb(db.name) || deleted || id.startsWith('_design/')) return body;
  try {
    parseRep(body, { transient: false });
  } catch (e) {
    if (e instanceof RepError) throw new HttpError(403, 'forbidden', e.docReason);
    throw e;
  }
  const name = ctx && ctx.name;
  if (has(body, 'owner') && body.owner !== name && !(ctx && ctx.admin)) {
    throw new HttpError(403, 'forbidden', "Can't update replication documents from other users.");
  }
  if (!has(body, 'owner') && name) {
    const out = Object.create(null);
    for (const k of Object.keys(body)) out[k] = body[k];
    out.owner = name;
    return out;
  }
  return body;
}

// A normal (new_edits=true) update. body: the user's JSON; rev: the _rev being replaced.
function updateDoc(db, id, body, rev, ctx, { deleted = false } = {}) {
  checkDocId(id);
  if (id.startsWith('_local/')) return updateLocal(db, id, body, rev, deleted);
  checkSpecial(body);
  const stored = docBody(body);
  let doc = db.docs.get(id);
  let parent = null;
  if (doc) {
    if (rev === undefined || rev === null) {
      if (!doc.winner.deleted) throw conflict();
      parent = doc.winner; // recreate on top of the tombstone
    } else {
      parent = doc.leaves.find((l) => revStr(l) === rev);
      if (!parent || (parent.deleted && !deleted && parent !== doc.winner)) throw conflict();
      if (parent.deleted && deleted) throw conflict();
    }
  } else if (rev !== undefined && rev !== null) {
    throw conflict();
  } else if (deleted) {
    throw notFound('missing');
  }
  const finalBody = replicatorBeforeUpdate(db, id, stored, deleted, ctx);
  const atts = deleted ? null : prepareAtts(body._attachments, { id, pos: parent ? parent.pos + 1 : 1, keepRevpos: false,
    stubFrom: (name) => (parent && parent.atts && parent.atts[name]) || null });
  const hashed = [deleted, parent ? revStr(parent) : 0, stored];
  if (atts) hashed.push(Object.keys(atts).map((k) => [k, atts[k].digest]));
  const hash = md5(enc(hashed));
  runVdus(db, { _id: id, _rev: `${parent ? parent.pos + 1 : 1}-${hash}`, ...finalBody, ...(deleted ? { _deleted: true } : {}) },
    doc && !doc.winner.deleted ? docJSON(doc, doc.winner) : null, ctx);
  const leaf = {
    pos: parent ? parent.pos + 1 : 1,
    hash,
    body: finalBody,
    atts,
    deleted,
    history: parent ? [hash, ...parent.history].slice(0, 1000) : [hash],
  };
  if (!doc) {
    doc = { id, leaves: [], revs: new Set(), seq: 0, winner: null };
    db.docs.set(id, doc);
  }
  if (parent) doc.leaves = doc.leaves.filter((l) => l !== parent);
  doc.leaves.push(leaf);
  doc.revs.add(revStr(leaf));
  commit(db, doc);
  return revStr(leaf);
}

// new_edits=false: graft the given revision (with its _revisions history) into the tree.
function graftDoc(db, body, ctx) {
  const id = body._id;
  checkDocId(id);
  if (id.startsWith('_local/')) {
    updateLocal(db, id, body, undefined, body._deleted === true, true);
    return;
  }
  checkSpecial(body);
  const r = parseRev(body._rev);
  if (!r) throw badRequest('Invalid rev format');
  let history = [r.hash];
  if (isObj(body._revisions) && Array.isArray(body._revisions.ids) && body._revisions.ids.length) {
    history = body._revisions.ids.map(String);
    if (toNum(body._revisions.start) !== r.pos || history[0] !== r.hash) throw badRequest('_revisions do not match _rev');
  }
  const deleted = body._deleted === true;
  let doc = db.docs.get(id);
  if (doc && doc.revs.has(body._rev)) return; // already there
  const stored = replicatorBeforeUpdate(db, id, docBody(body), deleted, ctx);
  const atts = deleted ? null : prepareAtts(body._attachments, { id, pos: r.pos, keepRevpos: true,
    stubFrom: (name, a) => storedAtt(doc, name, a.revpos) });
  runVdus(db, { _id: id, _rev: body._rev, ...stored, ...(deleted ? { _deleted: true } : {}) },
    doc && !doc.winner.deleted ? docJSON(doc, doc.winner) : null, ctx);
  if (!doc) {
    doc = { id, leaves: [], revs: new Set(), seq: 0, winner: null };
    db.docs.set(id, doc);
  }
  // a leaf that appears in the new history is no longer a leaf
  doc.leaves = doc.leaves.filter((l) => !(l.pos < r.pos && history[r.pos - l.pos] === l.hash));
  const leaf = { pos: r.pos, hash: r.hash, body: stored, atts, deleted, history: history.slice(0, 1000) };
  doc.leaves.push(leaf);
  history.forEach((h, k) => { if (r.pos - k >= 1) doc.revs.add(`${r.pos - k}-${h}`); });
  commit(db, doc);
}

// the attachment `name` some revision of doc stores (with that revpos when one is given)
function storedAtt(doc, name, revpos) {
  for (const l of doc ? doc.leaves : []) {
    const a = l.atts && l.atts[name];
    if (a && (revpos === undefined || toNum(revpos) === a.revpos)) return a;
  }
  return null;
}

function commit(db, doc) {
  computeWinner(doc);
  if (doc.id.startsWith('_design/')) db.ddocs.add(doc.id);
  db.seq += 1;
  doc.seq = db.seq;
  for (const w of [...db.waiters]) w();
  if (isReplicatorDb(db.name)) hooks.replicatorDocChanged(db, doc.id);
}

function updateLocal(db, id, body, rev, deleted, force) {
  const cur = db.local.get(id);
  const given = rev !== undefined && rev !== null ? rev : body && body._rev;
  if (!force) {
    if (cur && given !== `0-${cur.n}`) throw conflict();
    if (!cur && given !== undefined && given !== null && !/^0-0?$/.test(String(given))) {
      if (deleted) throw notFound('missing');
      throw conflict();
    }
  }
  if (deleted) {
    if (!cur) throw notFound('missing');
    db.local.delete(id);
    return '0-0';
  }
  const n = cur ? cur.n + 1 : 1;
  db.local.set(id, { n, body: docBody(body || {}) });
  return `0-${n}`;
}

// A revision as CouchDB shows it: _id, _rev, the body, _deleted, _revisions, conflicts,
// then _attachments (stubs; data with attachments=true, newer than atts_since).
function docJSON(doc, leaf, { revs = false, conflicts = false, deletedConflicts = false, attachments = false, attsSince = null } = {}) {
  const out = Object.create(null);
  out._id = doc.id;
  out._rev = revStr(leaf);
  for (const k of Object.keys(leaf.body)) out[k] = leaf.body[k];
  if (leaf.deleted) out._deleted = true;
  if (revs) out._revisions = { start: leaf.pos, ids: leaf.history.slice() };
  if (conflicts && leaf === doc.winner) {
    const c = leavesSorted(doc).slice(1).filter((l) => !l.deleted).map(revStr);
    if (c.length) out._conflicts = c;
  }
  if (deletedConflicts && leaf === doc.winner) {
    const c = leavesSorted(doc).slice(1).filter((l) => l.deleted).map(revStr);
    if (c.length) out._deleted_conflicts = c;
  }
  if (leaf.atts) out._attachments = attsJSON(leaf.atts, { data: attachments, sincePos: sincePos(leaf, attsSince) });
  return out;
}

function localJSON(id, rec) {
  const out = Object.create(null);
  out._id = id;
  out._rev = `0-${rec.n}`;
  for (const k of Object.keys(rec.body)) out[k] = rec.body[k];
  return out;
}

// the winning, non-deleted body of a doc (or null)
function liveDoc(db, id) {
  const doc = db && db.docs.get(id);
  if (!doc || doc.winner.deleted) return null;
  return doc;
}

function dbInfo(db) {
  let live = 0;
  let del = 0;
  for (const d of db.docs.values()) { if (d.winner.deleted) del++; else live++; }
  const active = 300 + live * 120;
  return {
    instance_start_time: String(unixSec(db.created)),
    db_name: db.name,
    purge_seq: `0-${seqOpaque(db, 0)}`,
    update_seq: seqStr(db, db.seq),
    sizes: { file: 28000 + active * 2, external: live * 20, active },
    props: {},
    doc_del_count: del,
    doc_count: live,
    disk_format_version: 8,
    compact_running: false,
    cluster: { q: 2, n: 1, w: 1, r: 1 },
  };
}

function changesSince(db, since) {
  const out = [];
  for (const d of db.docs.values()) if (d.seq > since) out.push(d);
  out.sort((a, b) => a.seq - b.seq);
  return out;
}

module.exports = { Db, SPECIAL_OK, STRIP_ON_WRITE, SYSTEM_DBS, changesSince, checkDocId, checkSpecial, commit, createDb, dbInfo, dbs, deleteDb, docBody, docJSON, graftDoc, illegalDbName, isReplicatorDb, liveDoc, localJSON, parseSince, replicatorBeforeUpdate, seqOpaque, seqStr, updateDoc, updateLocal, validDbName };
