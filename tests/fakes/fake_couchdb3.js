#!/usr/bin/env node
// FAKE Apache CouchDB 3 replicator -- NOT a real CouchDB.
//
// It plays the replication surface of Apache CouchDB 3.4.3 as recorded in
// fixtures/couchdb-3.4.3/ (beside DESIGN.md) for the endpoints pouchdb-server lacks:
// the _replicator database and its states, /_scheduler/docs, /_scheduler/jobs,
// /_active_tasks, POST /_replicate, /_node/_local/_config/replicator/*. Around that it
// keeps just enough of a CouchDB (in memory) to replicate between its own databases:
// databases, documents with revision trees, _all_docs, _bulk_docs, _changes (normal,
// longpoll, continuous), _revs_diff, _bulk_get, _local docs, basic and cookie auth.
// Response shapes, status codes, headers and key order follow the recordings.
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
//
// What it cannot do (not CouchDB): it replicates only between its own databases (an
// endpoint on any other host/port is probed with a TCP connect and then treated as
// unreachable); no attachments, views, _find or _security checks beyond "admin only";
// filter and validate_doc_update functions run in node's vm, not QuickJS.
'use strict';

const http = require('http');
const crypto = require('crypto');
const net = require('net');
const vm = require('vm');

// ---------------------------------------------------------------------------------------
// options

const opts = { timeScale: 0.01, password: 'pass', maxJobs: null, interval: 60000, port: 0, verbose: false };
{
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const k = a[i];
    const v = () => {
      if (i + 1 >= a.length) die(`${k} needs a value`);
      return a[++i];
    };
    if (k === '--time-scale') opts.timeScale = Number(v());
    else if (k === '--password') opts.password = v();
    else if (k === '--max-jobs') opts.maxJobs = parseInt(v(), 10);
    else if (k === '--interval') opts.interval = Number(v());
    else if (k === '--port') opts.port = parseInt(v(), 10);
    else if (k === '--verbose') opts.verbose = true;
    else if (k === '--help' || k === '-h') {
      process.stdout.write('usage: fake_couchdb3.js [--time-scale F] [--password P] [--max-jobs N] [--interval MS] [--port N] [--verbose]\n');
      process.exit(0);
    } else die(`unknown option ${k}`);
  }
  if (!(opts.timeScale > 0)) die('--time-scale must be a number > 0');
  if (opts.maxJobs !== null && !(opts.maxJobs >= 0)) die('--max-jobs must be an integer >= 0');
  if (!(opts.interval > 0)) die('--interval must be > 0');
}

function die(msg) {
  process.stderr.write(`fake_couchdb3: ${msg}\n`);
  process.exit(2);
}

const NODE = 'couchdb@127.0.0.1';
const ADMIN = 'admin';
const SERVER_UUID = crypto.randomBytes(16).toString('hex');
let PORT = 0;

// ---------------------------------------------------------------------------------------
// lossless JSON: numbers keep their text unless a JS number prints back identically

class RawNum {
  constructor(text) { this.text = text; }
  valueOf() { return Number(this.text); }
  toString() { return this.text; }
}

function parseJSON(text) {
  let i = 0;
  const n = text.length;
  const numRe = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  const fail = () => { throw new SyntaxError(`invalid JSON at offset ${i}`); };
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else break;
    }
  };
  const str = () => {
    const start = i;
    let esc = false;
    i++;
    for (;;) {
      if (i >= n) fail();
      const c = text.charCodeAt(i);
      if (c === 34) break;
      if (c === 92) { esc = true; i += 2; continue; }
      if (c < 32) fail();
      i++;
    }
    i++;
    const raw = text.slice(start, i);
    return esc ? JSON.parse(raw) : raw.slice(1, -1);
  };
  const val = () => {
    ws();
    if (i >= n) fail();
    const c = text[i];
    if (c === '{') {
      i++;
      const o = Object.create(null);
      ws();
      if (text[i] === '}') { i++; return o; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail();
        const k = str();
        ws();
        if (text[i] !== ':') fail();
        i++;
        o[k] = val();
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return o; }
        fail();
      }
    }
    if (c === '[') {
      i++;
      const arr = [];
      ws();
      if (text[i] === ']') { i++; return arr; }
      for (;;) {
        arr.push(val());
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return arr; }
        fail();
      }
    }
    if (c === '"') return str();
    if (text.startsWith('true', i)) { i += 4; return true; }
    if (text.startsWith('false', i)) { i += 5; return false; }
    if (text.startsWith('null', i)) { i += 4; return null; }
    numRe.lastIndex = i;
    const m = numRe.exec(text);
    if (!m) fail();
    i = numRe.lastIndex;
    const num = Number(m[0]);
    return String(num) === m[0] ? num : new RawNum(m[0]);
  };
  const v = val();
  ws();
  if (i !== n) fail();
  return v;
}

function enc(v) {
  if (v === null || v === undefined) return 'null';
  switch (typeof v) {
    case 'boolean': return v ? 'true' : 'false';
    case 'number': return Number.isFinite(v) ? String(v) : 'null';
    case 'string': return JSON.stringify(v);
    default: break;
  }
  if (v instanceof RawNum) return v.text;
  if (Array.isArray(v)) return '[' + v.map(enc).join(',') + ']';
  const parts = [];
  for (const k of Object.keys(v)) {
    if (v[k] === undefined) continue;
    parts.push(JSON.stringify(k) + ':' + enc(v[k]));
  }
  return '{' + parts.join(',') + '}';
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof RawNum);
const isNum = (v) => typeof v === 'number' || v instanceof RawNum;
const toNum = (v) => (v instanceof RawNum ? Number(v.text) : v);
const isInt = (v) => (typeof v === 'number' ? Number.isInteger(v) : v instanceof RawNum && /^-?\d+$/.test(v.text));
const has = (o, k) => o !== null && o !== undefined && Object.prototype.hasOwnProperty.call(o, k);
const clone = (v) => (v === undefined ? undefined : parseJSON(enc(v)));
const md5 = (s) => crypto.createHash('md5').update(s).digest('hex');

// ---------------------------------------------------------------------------------------
// time: wall clock for timestamps; a scalable, freezable "recorded" clock for the timeline

const isoSec = (ms = Date.now()) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const unixSec = (ms = Date.now()) => Math.floor(ms / 1000);
const httpDate = (ms = Date.now()) => new Date(ms).toUTCString();

const clock = { frozen: false, vbase: 0, rbase: performance.now(), queue: [], real: null, seq: 0 };

function vnow() {
  if (clock.frozen) return clock.vbase;
  return clock.vbase + (performance.now() - clock.rbase) / 1000 / opts.timeScale;
}

// after(seconds of the recorded timeline, fn) -> handle with .cancel()
function after(sec, fn) {
  const t = { at: vnow() + Math.max(0, sec), fn, n: clock.seq++, cancelled: false };
  t.cancel = () => { t.cancelled = true; };
  let lo = 0;
  let hi = clock.queue.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const q = clock.queue[mid];
    if (q.at < t.at || (q.at === t.at && q.n < t.n)) lo = mid + 1;
    else hi = mid;
  }
  clock.queue.splice(lo, 0, t);
  arm();
  return t;
}

function arm() {
  if (clock.real) { clearTimeout(clock.real); clock.real = null; }
  while (clock.queue.length && clock.queue[0].cancelled) clock.queue.shift();
  if (clock.frozen || !clock.queue.length) return;
  const ms = (clock.queue[0].at - vnow()) * opts.timeScale * 1000;
  clock.real = setTimeout(fire, Math.max(0, Math.ceil(ms)));
}

function runTimer(t) {
  try { t.fn(); } catch (e) { process.stderr.write(`fake_couchdb3: timer failed: ${e.stack}\n`); }
}

function fire() {
  clock.real = null;
  const now = vnow();
  while (clock.queue.length && clock.queue[0].at <= now + 1e-9) {
    const t = clock.queue.shift();
    if (!t.cancelled) runTimer(t);
  }
  arm();
}

function clockFreeze() {
  if (clock.frozen) return;
  clock.vbase = vnow();
  clock.frozen = true;
  arm();
}

function clockThaw() {
  if (!clock.frozen) return;
  clock.rbase = performance.now();
  clock.frozen = false;
  arm();
}

function clockAdvance(sec) {
  const wasFrozen = clock.frozen;
  clockFreeze();
  const target = clock.vbase + Math.max(0, sec);
  while (clock.queue.length && clock.queue[0].at <= target) {
    const t = clock.queue.shift();
    if (t.cancelled) continue;
    clock.vbase = Math.max(clock.vbase, t.at);
    runTimer(t);
  }
  clock.vbase = target;
  if (!wasFrozen) clockThaw();
  else arm();
}

// ---------------------------------------------------------------------------------------
// config (only the [replicator] keys change behaviour)

const config = new Map(); // "section/key" -> string
if (opts.maxJobs !== null) config.set('replicator/max_jobs', String(opts.maxJobs));
const sched = { maxJobs: opts.maxJobs !== null ? opts.maxJobs : 500, interval: opts.interval, maxChurn: 20 };

function configChanged(section, key, value, deleted) {
  if (section !== 'replicator') return;
  // CouchDB 3.4.3: DELETE of replicator/max_jobs crashes the scheduler's config listener
  // (badarg list_to_integer(deleted)); the old value stays in effect (see fixture 086).
  if (deleted) return;
  const n = parseInt(value, 10);
  if (key === 'max_jobs' && n >= 0) sched.maxJobs = n;
  else if (key === 'interval' && n > 0) { sched.interval = n; restartTick(); }
  else if (key === 'max_churn' && n >= 0) sched.maxChurn = n;
}

// ---------------------------------------------------------------------------------------
// databases and documents

const dbs = new Map();
const SPECIAL_OK = new Set(['_id', '_rev', '_deleted', '_attachments', '_revisions', '_revs_info', '_conflicts',
  '_deleted_conflicts', '_local_seq', '_replication_state', '_replication_state_time', '_replication_state_reason',
  '_replication_id', '_replication_stats']);
const STRIP_ON_WRITE = new Set(['_id', '_rev', '_deleted', '_revisions', '_revs_info', '_conflicts',
  '_deleted_conflicts', '_local_seq']);
const SYSTEM_DBS = new Set(['_users', '_replicator', '_global_changes']);

class HttpError extends Error {
  constructor(status, error, reason, headers) {
    super(`${status} ${error}: ${reason}`);
    this.status = status;
    this.error = error;
    this.reason = reason;
    this.headers = headers;
  }
}
const notFound = (reason = 'missing') => new HttpError(404, 'not_found', reason);
const conflict = () => new HttpError(409, 'conflict', 'Document update conflict.');
const badRequest = (reason) => new HttpError(400, 'bad_request', reason);

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
    this.security = {};
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
  if (isReplicatorDb(db.name)) {
    for (const [key, e] of [...entries]) if (e.db === db.name) removeEntry(key);
  }
  for (const j of [...jobs.values()]) j.endpointDbDeleted(db.name);
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

const revStr = (leaf) => `${leaf.pos}-${leaf.hash}`;
function parseRev(rev) {
  const m = typeof rev === 'string' && /^(\d+)-([0-9a-zA-Z]+)$/.exec(rev);
  if (!m) return null;
  return { pos: parseInt(m[1], 10), hash: m[2] };
}

function computeWinner(doc) {
  let best = null;
  for (const l of doc.leaves) {
    if (!best) { best = l; continue; }
    const a = [l.deleted ? 0 : 1, l.pos, l.hash];
    const b = [best.deleted ? 0 : 1, best.pos, best.hash];
    if (a[0] > b[0] || (a[0] === b[0] && (a[1] > b[1] || (a[1] === b[1] && a[2] > b[2])))) best = l;
  }
  doc.winner = best;
}

function leavesSorted(doc) { // winner first, then the others by rev descending (as _changes style=all_docs)
  const rest = doc.leaves.filter((l) => l !== doc.winner).sort((x, y) => (y.pos - x.pos) || (y.hash < x.hash ? -1 : y.hash > x.hash ? 1 : 0));
  return [doc.winner, ...rest];
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
  const hash = md5(enc([deleted, parent ? revStr(parent) : 0, stored]));
  runVdus(db, { _id: id, _rev: `${parent ? parent.pos + 1 : 1}-${hash}`, ...finalBody, ...(deleted ? { _deleted: true } : {}) },
    doc && !doc.winner.deleted ? docJSON(doc, doc.winner) : null, ctx);
  const leaf = {
    pos: parent ? parent.pos + 1 : 1,
    hash,
    body: finalBody,
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
  runVdus(db, { _id: id, _rev: body._rev, ...stored, ...(deleted ? { _deleted: true } : {}) },
    doc && !doc.winner.deleted ? docJSON(doc, doc.winner) : null, ctx);
  if (!doc) {
    doc = { id, leaves: [], revs: new Set(), seq: 0, winner: null };
    db.docs.set(id, doc);
  }
  // a leaf that appears in the new history is no longer a leaf
  doc.leaves = doc.leaves.filter((l) => !(l.pos < r.pos && history[r.pos - l.pos] === l.hash));
  const leaf = { pos: r.pos, hash: r.hash, body: stored, deleted, history: history.slice(0, 1000) };
  doc.leaves.push(leaf);
  history.forEach((h, k) => { if (r.pos - k >= 1) doc.revs.add(`${r.pos - k}-${h}`); });
  commit(db, doc);
}

function commit(db, doc) {
  computeWinner(doc);
  if (doc.id.startsWith('_design/')) db.ddocs.add(doc.id);
  db.seq += 1;
  doc.seq = db.seq;
  for (const w of [...db.waiters]) w();
  if (isReplicatorDb(db.name)) replicatorDocChanged(db, doc.id);
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

function docJSON(doc, leaf, { revs = false, conflicts = false, deletedConflicts = false } = {}) {
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

// ---- changes

function changesSince(db, since) {
  const out = [];
  for (const d of db.docs.values()) if (d.seq > since) out.push(d);
  out.sort((a, b) => a.seq - b.seq);
  return out;
}

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

// ---------------------------------------------------------------------------------------
// Mango selectors (enough for replication selectors)

function typeRank(v) {
  if (v === null || v === undefined) return 0;
  if (v === false) return 1;
  if (v === true) return 2;
  if (isNum(v)) return 3;
  if (typeof v === 'string') return 4;
  if (Array.isArray(v)) return 5;
  return 6;
}

function collate(a, b) {
  const ra = typeRank(a);
  const rb = typeRank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 3) return toNum(a) - toNum(b);
  if (ra === 4) return a < b ? -1 : a > b ? 1 : 0;
  if (ra === 5) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = collate(a[i], b[i]);
      if (c) return c;
    }
    return a.length - b.length;
  }
  if (ra === 6) return enc(a) < enc(b) ? -1 : enc(a) > enc(b) ? 1 : 0;
  return 0;
}

const deepEq = (a, b) => collate(a, b) === 0 && enc(a) === enc(b);

function fieldValue(doc, path) {
  let v = doc;
  for (const part of path.split('.')) {
    if (!isObj(v) || !has(v, part)) return undefined;
    v = v[part];
  }
  return v;
}

function condMatch(v, cond) {
  if (!isObj(cond) || !Object.keys(cond).some((k) => k.startsWith('$'))) return v !== undefined && deepEq(v, cond);
  for (const op of Object.keys(cond)) {
    const arg = cond[op];
    let ok;
    switch (op) {
      case '$eq': ok = v !== undefined && deepEq(v, arg); break;
      case '$ne': ok = v === undefined || !deepEq(v, arg); break;
      case '$gt': ok = v !== undefined && collate(v, arg) > 0; break;
      case '$gte': ok = v !== undefined && collate(v, arg) >= 0; break;
      case '$lt': ok = v !== undefined && collate(v, arg) < 0; break;
      case '$lte': ok = v !== undefined && collate(v, arg) <= 0; break;
      case '$in': ok = v !== undefined && Array.isArray(arg) && arg.some((x) => deepEq(v, x) || (Array.isArray(v) && v.some((y) => deepEq(y, x)))); break;
      case '$nin': ok = v !== undefined && Array.isArray(arg) && !arg.some((x) => deepEq(v, x)); break;
      case '$exists': ok = (v !== undefined) === (arg === true); break;
      case '$type': ok = v !== undefined && ({ null: 0, boolean: -1, number: 3, string: 4, array: 5, object: 6 })[arg] === (typeof v === 'boolean' ? -1 : typeRank(v)); break;
      case '$size': ok = Array.isArray(v) && v.length === toNum(arg); break;
      case '$all': ok = Array.isArray(v) && Array.isArray(arg) && arg.every((x) => v.some((y) => deepEq(x, y))); break;
      case '$elemMatch': ok = Array.isArray(v) && v.some((x) => (isObj(x) && isObj(arg) && !Object.keys(arg).some((k) => k.startsWith('$')) ? mangoMatch(x, arg) : condMatch(x, arg))); break;
      case '$allMatch': ok = Array.isArray(v) && v.length > 0 && v.every((x) => condMatch(x, arg)); break;
      case '$regex': ok = typeof v === 'string' && new RegExp(arg).test(v); break;
      case '$mod': ok = isInt(v) && Array.isArray(arg) && toNum(v) % toNum(arg[0]) === toNum(arg[1]); break;
      case '$not': ok = !condMatch(v, arg); break;
      default: ok = false;
    }
    if (!ok) return false;
  }
  return true;
}

function mangoMatch(doc, sel) {
  if (!isObj(sel)) return false;
  for (const k of Object.keys(sel)) {
    const c = sel[k];
    if (k === '$and') { if (!Array.isArray(c) || !c.every((s) => mangoMatch(doc, s))) return false; } else if (k === '$or') { if (!Array.isArray(c) || !c.some((s) => mangoMatch(doc, s))) return false; } else if (k === '$nor') { if (!Array.isArray(c) || c.some((s) => mangoMatch(doc, s))) return false; } else if (k === '$not') { if (mangoMatch(doc, c)) return false; } else if (!condMatch(fieldValue(doc, k), c)) return false;
  }
  return true;
}

// A filter function "ddoc/name" of a db: a callable, or an error string.
function loadFilter(db, name) {
  const m = /^([^/]+)\/(.+)$/.exec(name);
  if (!m) return `Invalid filter name \`${name}\``;
  const ddoc = liveDoc(db, `_design/${m[1]}`);
  if (!ddoc) return `_design/${m[1]}`;
  const src = isObj(ddoc.winner.body.filters) ? ddoc.winner.body.filters[m[2]] : undefined;
  if (typeof src !== 'string') return `filter \`${m[2]}\` in _design/${m[1]}`;
  let script;
  try {
    script = new vm.Script(`(${src})(__doc, __req)`);
  } catch (e) {
    return `compilation of filter \`${m[2]}\` failed: ${e.message}`;
  }
  const ctx = vm.createContext({ __doc: null, __req: null, log: () => {} });
  return (doc, req) => {
    ctx.__doc = JSON.parse(enc(doc));
    ctx.__req = JSON.parse(enc(req));
    try { return script.runInContext(ctx, { timeout: 1000 }) === true; } catch (_) { return false; }
  };
}

// validate_doc_update functions of a db's design docs (run for every non-design write,
// replicated ones included, as CouchDB does)
const vduCache = new Map(); // "db\0ddoc id\0rev" -> vm.Script | null
function runVdus(db, newDoc, oldDoc, ctx) {
  if (newDoc._id.startsWith('_design/')) return;
  for (const ddocId of db.ddocs) {
    const d = db.docs.get(ddocId);
    if (!d || d.winner.deleted) continue;
    const src = d.winner.body.validate_doc_update;
    if (typeof src !== 'string') continue;
    const key = `${db.name}\0${d.id}\0${revStr(d.winner)}`;
    if (!vduCache.has(key)) {
      let script = null;
      try { script = new vm.Script(`(${src})(__new, __old, __ctx, __sec)`); } catch (_) { script = null; }
      vduCache.set(key, script);
    }
    const script = vduCache.get(key);
    if (!script) continue;
    const sandbox = vm.createContext({
      __new: JSON.parse(enc(newDoc)), __old: oldDoc ? JSON.parse(enc(oldDoc)) : null,
      __ctx: { db: db.name, name: ctx ? ctx.name : null, roles: ctx ? ctx.roles || [] : [] },
      __sec: JSON.parse(enc(db.security || {})), log: () => {},
    });
    try {
      script.runInContext(sandbox, { timeout: 1000 });
    } catch (e) {
      if (e && typeof e === 'object' && e.forbidden !== undefined) throw new HttpError(403, 'forbidden', String(e.forbidden));
      if (e && typeof e === 'object' && e.unauthorized !== undefined) throw new HttpError(401, 'unauthorized', String(e.unauthorized));
      throw new HttpError(500, 'error', String(e && e.message ? e.message : e));
    }
  }
}

// ---------------------------------------------------------------------------------------
// replication parameters

class RepError extends Error {
  constructor(docReason, status, error, reason) {
    super(docReason);
    this.docReason = docReason; // the 403 reason for a _replicator doc
    this.status = status; // the /_replicate answer
    this.error = error;
    this.reason = reason;
  }
}

const badRepParam = (msg) => new RepError(`{throw,{bad_request,<<"${msg}">>}}`, 400, 'bad_request', msg);

function parseEndpoint(v) {
  if (v === undefined || v === null) throw new RepError('Missing replicator database', 400, 'bad_request', 'Missing replicator database');
  let url;
  let user = null;
  let pass = null;
  if (typeof v === 'string') url = v;
  else if (isObj(v)) {
    if (typeof v.url !== 'string') throw new RepError('{error,function_clause}', 500, 'unknown_error', 'function_clause');
    url = v.url;
    const basic = isObj(v.auth) && isObj(v.auth.basic) ? v.auth.basic : null;
    if (basic) { user = basic.username; pass = basic.password; }
    const hdrs = isObj(v.headers) ? v.headers : null;
    const authz = hdrs && Object.keys(hdrs).find((k) => k.toLowerCase() === 'authorization');
    if (!basic && authz && typeof hdrs[authz] === 'string' && /^basic /i.test(hdrs[authz])) {
      const dec = Buffer.from(hdrs[authz].slice(6).trim(), 'base64').toString('utf8');
      const c = dec.indexOf(':');
      if (c >= 0) { user = dec.slice(0, c); pass = dec.slice(c + 1); }
    }
  } else {
    throw new RepError('{error,function_clause}', 500, 'unknown_error', 'function_clause');
  }
  const m = /^(https?:\/\/)(?:([^@/?#]*)@)?([^/?#]*)([^?#]*)/i.exec(url);
  if (!m) throw new RepError('local_endpoints_not_supported', 400, 'bad_request', 'local_endpoints_not_supported');
  if (m[2] !== undefined && user === null) {
    const c = m[2].indexOf(':');
    const dec = (s) => { try { return decodeURIComponent(s); } catch (_) { return s; } };
    user = dec(c >= 0 ? m[2].slice(0, c) : m[2]);
    pass = c >= 0 ? dec(m[2].slice(c + 1)) : '';
  }
  const hostport = m[3];
  let path = m[4] || '/';
  const bare = `${m[1].toLowerCase()}${hostport}${path}`;
  const stripped = bare.endsWith('/') ? bare : `${bare}/`;
  const hp = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(hostport) || [];
  const host = (hp[1] || '').toLowerCase();
  const port = hp[2] ? parseInt(hp[2], 10) : m[1].toLowerCase() === 'https://' ? 443 : 80;
  const isLocal = m[1].toLowerCase() === 'http://' && ['127.0.0.1', 'localhost', '[::1]'].includes(host) && port === PORT;
  let dbName = null;
  if (isLocal) {
    path = path.replace(/^\/+|\/+$/g, '');
    try { dbName = decodeURIComponent(path); } catch (_) { dbName = path; }
  }
  return { url: stripped, host: host.replace(/^\[|\]$/g, ''), port, user, pass, local: isLocal, dbName };
}

const BOOL_OPTS = ['continuous', 'create_target', 'cancel', 'use_checkpoints', 'winning_revs_only', 'use_bulk_get'];
const INT_OPTS = ['worker_processes', 'worker_batch_size', 'http_connections', 'connection_timeout', 'retries_per_request', 'checkpoint_interval'];

function parseRep(body, { transient }) {
  if (!isObj(body)) throw new RepError('{error,function_clause}', 400, 'bad_request', 'Request body must be a JSON object');
  const source = parseEndpoint(body.source);
  const target = parseEndpoint(body.target);
  for (const k of BOOL_OPTS) {
    if (has(body, k) && typeof body[k] !== 'boolean') throw badRepParam(`parameter \`${k}\` must be a boolean`);
  }
  for (const k of INT_OPTS) {
    if (!has(body, k)) continue;
    const v = body[k];
    const ok = isInt(v) || (typeof v === 'string' && /^-?\d+$/.test(v));
    if (!ok) throw new RepError('{error,badarg}', 400, 'bad_request', `parameter \`${k}\` must be an integer`);
  }
  if (has(body, 'doc_ids') && !Array.isArray(body.doc_ids)) throw badRepParam('parameter `doc_ids` must be an array');
  if (has(body, 'selector') && !isObj(body.selector)) throw badRepParam('parameter `selector` must be a JSON object');
  if (has(body, 'filter') && typeof body.filter !== 'string') throw badRepParam('parameter `filter` must be a string');
  if (has(body, 'query_params') && !isObj(body.query_params)) throw badRepParam('parameter `query_params` must be an object');
  const kinds = ['doc_ids', 'filter', 'selector'].filter((k) => has(body, k) && !(k === 'filter' && (body.filter === '_doc_ids' || body.filter === '_selector')));
  if (kinds.length > 1) throw badRepParam('`doc_ids`, `filter`, `selector` are mutually exclusive');
  const rep = {
    source,
    target,
    continuous: body.continuous === true,
    createTarget: body.create_target === true,
    docIds: Array.isArray(body.doc_ids) ? body.doc_ids.filter((x) => typeof x === 'string') : null,
    selector: isObj(body.selector) ? body.selector : null,
    filter: typeof body.filter === 'string' && !['_doc_ids', '_selector'].includes(body.filter) ? body.filter : null,
    queryParams: isObj(body.query_params) ? body.query_params : {},
    sinceSeq: has(body, 'since_seq') ? body.since_seq : undefined,
    useCheckpoints: body.use_checkpoints !== false,
    transient,
  };
  rep.baseId = md5(enc([SERVER_UUID, source.url, target.url, rep.filter, rep.queryParams, rep.docIds, rep.selector, rep.sinceSeq === undefined ? null : rep.sinceSeq]));
  rep.jobId = rep.baseId + (rep.continuous ? '+continuous' : '') + (rep.createTarget ? '+create_target' : '');
  return rep;
}

// ---------------------------------------------------------------------------------------
// the scheduler: jobs

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
        const body = docJSON(doc, leaf, { revs: true });
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
      writeReplicationState(this.doc.db, this.doc.docId, this.id, { _replication_state: 'completed', _replication_state_time: isoSec(), _replication_stats: body });
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

// ---------------------------------------------------------------------------------------
// the document processor: _replicator docs

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

function schedulerJob(j) {
  return {
    database: j.doc ? j.doc.db : null, id: j.id, pid: j.pid,
    source: j.rep.source.url, target: j.rep.target.url,
    user: j.doc ? null : j.user, doc_id: j.doc ? j.doc.docId : null,
    info: j.info(), history: j.history.map((h) => ({ ...h })), node: NODE, start_time: isoSec(j.addedAt),
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
    node: NODE, pid: j.pid, process_status: 'waiting',
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

// ---------------------------------------------------------------------------------------
// HTTP

const sessions = new Map(); // AuthSession cookie -> user name
let requestCounter = 0;

function baseHeaders(extra) {
  return {
    'Content-Type': 'application/json',
    'Cache-Control': 'must-revalidate',
    Server: 'CouchDB/3.4.3 (Erlang OTP/25)',
    Date: httpDate(),
    'X-Couch-Request-ID': (++requestCounter).toString(16).padStart(10, '0'),
    'X-CouchDB-Body-Time': '0',
    ...(extra || {}),
  };
}

function send(req, res, status, body, extra) {
  if (res.writableEnded || res.destroyed) return;
  const text = body === undefined ? '' : `${enc(body)}\n`;
  const headers = baseHeaders(extra);
  headers['Content-Length'] = Buffer.byteLength(text);
  res.writeHead(status, headers);
  res.end(req.method === 'HEAD' ? undefined : text);
}

function sendError(req, res, e) {
  send(req, res, e.status, { error: e.error, reason: e.reason }, e.headers);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function jsonBody(text, { optional = false } = {}) {
  if (!text.trim()) {
    if (optional) return undefined;
    throw badRequest('Request body must be a JSON object');
  }
  try {
    return parseJSON(text);
  } catch (_) {
    throw badRequest('invalid UTF-8 JSON');
  }
}

function jsonParam(q, name) {
  const v = q.get(name);
  try { return parseJSON(v); } catch (_) { throw new HttpError(400, 'bad_request', `Invalid JSON for query parameter ${name}`); }
}

function boolParam(q, name, dflt = false) {
  if (!q.has(name)) return dflt;
  const v = q.get(name);
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new HttpError(400, 'query_parse_error', `Invalid boolean parameter: "${v}"`);
}

function intParam(q, name, dflt) {
  if (!q.has(name)) return dflt;
  const v = q.get(name);
  if (!/^\d+$/.test(v)) throw new HttpError(400, 'query_parse_error', `Invalid value for positive integer: "${v}"`);
  return parseInt(v, 10);
}

function authenticate(req) {
  const h = req.headers.authorization;
  if (h && /^basic /i.test(h)) {
    const dec = Buffer.from(h.slice(6).trim(), 'base64').toString('utf8');
    const c = dec.indexOf(':');
    const user = c >= 0 ? dec.slice(0, c) : dec;
    const pass = c >= 0 ? dec.slice(c + 1) : '';
    if (user === ADMIN && pass === opts.password) return { name: ADMIN, roles: ['_admin'], admin: true, how: 'default' };
    throw new HttpError(401, 'unauthorized', 'Name or password is incorrect.');
  }
  const cookie = req.headers.cookie || '';
  const m = /(?:^|;\s*)AuthSession=([^;]*)/.exec(cookie);
  if (m && sessions.has(m[1])) return { name: sessions.get(m[1]), roles: ['_admin'], admin: true, how: 'cookie' };
  return { name: null, roles: [], admin: false, how: null };
}

const notAdmin = () => new HttpError(401, 'unauthorized', 'You are not a server admin.');

async function handle(req, res) {
  const [rawPath, rawQuery = ''] = req.url.split(/\?(.*)/s);
  const q = new URLSearchParams(rawQuery);
  let segs;
  try {
    segs = rawPath.split('/').slice(1).map(decodeURIComponent);
  } catch (_) {
    throw badRequest('Invalid URL encoding');
  }
  if (segs.length && segs[segs.length - 1] === '' && segs.length > 1) segs.pop();
  const bodyText = await readBody(req);
  if (opts.verbose) process.stderr.write(`fake_couchdb3: ${req.method} ${req.url}\n`);
  const ctx = authenticate(req);
  const m = req.method;
  const s0 = segs[0] || '';

  // ---- public
  if (s0 === '' && segs.length <= 1) {
    if (m !== 'GET' && m !== 'HEAD') throw methodNotAllowed('GET,HEAD');
    return send(req, res, 200, {
      couchdb: 'Welcome', version: '3.4.3', git_sha: 'e12b967', uuid: SERVER_UUID,
      features: ['quickjs', 'access-ready', 'partitioned', 'pluggable-storage-engines', 'reshard', 'scheduler'],
      vendor: { name: 'The Apache Software Foundation' },
    });
  }
  if (s0 === '_up') return send(req, res, 200, { status: 'ok', seeds: {} });
  if (s0 === '_session') return handleSession(req, res, ctx, bodyText);
  if (s0 === '_uuids') {
    const n = Math.min(1000, intParam(q, 'count', 1));
    return send(req, res, 200, { uuids: Array.from({ length: n }, () => crypto.randomBytes(16).toString('hex')) });
  }

  // ---- everything else is for the admin
  if (!ctx.admin) {
    if (s0.startsWith('_') && !SYSTEM_DBS.has(s0)) throw notAdmin();
    throw new HttpError(401, 'unauthorized', 'You are not authorized to access this db.');
  }
  switch (s0) {
    case '_all_dbs': {
      let names = [...dbs.keys()].sort();
      if (boolParam(q, 'descending')) names.reverse();
      const skip = intParam(q, 'skip', 0);
      const limit = intParam(q, 'limit', names.length);
      names = names.slice(skip, skip + limit);
      return send(req, res, 200, names);
    }
    case '_dbs_info': {
      if (m !== 'POST') throw methodNotAllowed('POST');
      const body = jsonBody(bodyText);
      if (!isObj(body) || !Array.isArray(body.keys)) throw badRequest('`keys` member must exist.');
      return send(req, res, 200, body.keys.map((k) => (dbs.has(k) ? { key: k, info: dbInfo(dbs.get(k)) } : { key: k, error: 'not_found' })));
    }
    case '_membership':
      return send(req, res, 200, { all_nodes: [NODE], cluster_nodes: [NODE] });
    case '_active_tasks': {
      if (m !== 'GET' && m !== 'HEAD') throw methodNotAllowed('GET,HEAD');
      const tasks = [...jobs.values()].filter((j) => j.state === 'running' && j.taskReady).sort((a, b) => (a.id < b.id ? -1 : 1)).map(activeTask);
      return send(req, res, 200, tasks);
    }
    case '_scheduler':
      return handleScheduler(req, res, segs, q);
    case '_replicate':
      return handleReplicate(req, res, ctx, bodyText);
    case '_node':
      return handleNode(req, res, segs, bodyText);
    case '_fake':
      return handleFake(req, res, segs, bodyText);
    default:
      return handleDb(req, res, segs, q, ctx, bodyText);
  }
}

const methodNotAllowed = (allowed) => new HttpError(405, 'method_not_allowed', `Only ${allowed} allowed`, { Allow: allowed });

function handleSession(req, res, ctx, bodyText) {
  const info = { authentication_handlers: ['cookie', 'default'] };
  if (req.method === 'GET' || req.method === 'HEAD') {
    if (ctx.how) info.authenticated = ctx.how;
    return send(req, res, 200, { ok: true, userCtx: { name: ctx.name, roles: ctx.roles }, info });
  }
  if (req.method === 'POST') {
    let name;
    let password;
    const ct = String(req.headers['content-type'] || '');
    if (/application\/x-www-form-urlencoded/i.test(ct)) {
      const f = new URLSearchParams(bodyText);
      name = f.get('name');
      password = f.get('password');
    } else {
      const b = jsonBody(bodyText);
      if (isObj(b)) { name = b.name; password = b.password; }
    }
    if (name !== ADMIN || password !== opts.password) throw new HttpError(401, 'unauthorized', 'Name or password is incorrect.');
    const token = Buffer.from(`${ADMIN}:${Date.now().toString(16).toUpperCase()}:${crypto.randomBytes(12).toString('hex')}`).toString('base64url');
    sessions.set(token, ADMIN);
    return send(req, res, 200, { ok: true, name: ADMIN, roles: ['_admin'] }, { 'Set-Cookie': `AuthSession=${token}; Version=1; Path=/; HttpOnly` });
  }
  if (req.method === 'DELETE') {
    const m = /(?:^|;\s*)AuthSession=([^;]*)/.exec(req.headers.cookie || '');
    if (m) sessions.delete(m[1]);
    return send(req, res, 200, { ok: true }, { 'Set-Cookie': 'AuthSession=; Version=1; Path=/; HttpOnly' });
  }
  throw methodNotAllowed('GET,HEAD,POST,DELETE');
}

const STATES = ['initializing', 'error', 'running', 'pending', 'crashing', 'completed', 'failed'];

function paging(q) {
  const limit = q.has('limit') ? intParam(q, 'limit', 0) : Infinity;
  const skip = intParam(q, 'skip', 0);
  return { limit, skip };
}

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
    const all = [];
    for (const n of names) {
      const db = dbs.get(n);
      const ids = [...db.docs.keys()].filter((id) => !id.startsWith('_design/')).sort();
      for (const id of ids) {
        const d = schedulerDoc(n, id);
        if (d) all.push(d);
      }
    }
    const shown = filter ? all.filter((d) => filter.has(d.state)) : all;
    const { limit, skip } = paging(q);
    return send(req, res, 200, { total_rows: all.length, offset: skip, docs: shown.slice(skip, skip + limit) });
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

function handleNode(req, res, segs, bodyText) {
  const node = segs[1];
  if (node !== '_local' && node !== NODE) throw notFound(`Node ${node} does not exist`);
  if (segs[2] !== '_config') {
    if (segs.length === 2) return send(req, res, 200, { name: NODE });
    throw notFound('missing');
  }
  const section = segs[3];
  const key = segs.slice(4).join('/');
  if (!section) {
    if (req.method !== 'GET') throw methodNotAllowed('GET');
    const out = {};
    for (const [k, v] of config) {
      const [s, kk] = k.split(/\/(.*)/s);
      (out[s] = out[s] || {})[kk] = v;
    }
    return send(req, res, 200, out);
  }
  if (!key) {
    if (req.method !== 'GET') throw methodNotAllowed('GET');
    const out = {};
    for (const [k, v] of config) if (k.startsWith(`${section}/`)) out[k.slice(section.length + 1)] = v;
    return send(req, res, 200, out);
  }
  const k = `${section}/${key}`;
  if (req.method === 'GET') {
    if (!config.has(k)) throw notFound('unknown_config_value');
    return send(req, res, 200, config.get(k));
  }
  if (req.method === 'PUT') {
    let v;
    try { v = parseJSON(bodyText); } catch (_) { throw badRequest('invalid UTF-8 JSON'); }
    if (typeof v !== 'string') throw badRequest('values must be strings');
    const old = config.has(k) ? config.get(k) : '';
    config.set(k, v);
    configChanged(section, key, v, false);
    return send(req, res, 200, old);
  }
  if (req.method === 'DELETE') {
    if (!config.has(k)) throw notFound('unknown_config_value');
    const old = config.get(k);
    config.delete(k);
    configChanged(section, key, null, true);
    return send(req, res, 200, old);
  }
  throw methodNotAllowed('GET,PUT,DELETE');
}

function handleFake(req, res, segs, bodyText) {
  if (segs[1] === 'state') {
    const out = {
      clock: { frozen: clock.frozen, now: vnow(), time_scale: opts.timeScale, timers: clock.queue.filter((t) => !t.cancelled).length },
      scheduler: { max_jobs: sched.maxJobs, interval: sched.interval, max_churn: sched.maxChurn, running: runningCount(), next_tick: tick ? tick.at : null },
      config: Object.fromEntries(config),
      databases: [...dbs.values()].map((db) => ({ name: db.name, update_seq: db.seq, doc_count: [...db.docs.values()].filter((d) => !d.winner.deleted).length, local_docs: [...db.local.keys()] })),
      entries: [...entries.values()].map((e) => ({ db: e.db, doc_id: e.docId, state: e.state, job_id: e.jobId, error_count: e.errorCount, last_error: e.lastError })),
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
  throw notFound('missing');
}

// ---- databases

function handleDb(req, res, segs, q, ctx, bodyText) {
  const name = segs[0];
  const m = req.method;
  if (!validDbName(name)) throw illegalDbName(name);
  if (segs.length === 1) {
    if (m === 'PUT') {
      if (dbs.has(name)) throw new HttpError(412, 'file_exists', 'The database could not be created, the file already exists.');
      createDb(name);
      return send(req, res, 201, { ok: true }, { Location: `http://127.0.0.1:${PORT}/${encodeURIComponent(name)}` });
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
        { Location: `http://127.0.0.1:${PORT}/${encodeURIComponent(name)}/${docPath(id)}`, ETag: `"${rev}"` });
    }
    throw methodNotAllowed('DELETE,GET,HEAD,POST,PUT');
  }
  const db = dbs.get(name);
  if (!db) throw notFound('Database does not exist.');
  const s1 = segs[1];
  switch (s1) {
    case '_all_docs': return allDocs(req, res, db, q, bodyText);
    case '_bulk_docs': return bulkDocs(req, res, db, ctx, bodyText);
    case '_changes': return changes(req, res, db, q, bodyText);
    case '_revs_diff': return revsDiff(req, res, db, bodyText);
    case '_bulk_get': return bulkGet(req, res, db, q, bodyText);
    case '_ensure_full_commit':
      return send(req, res, 201, { ok: true, instance_start_time: '0' });
    case '_compact':
    case '_view_cleanup':
      return send(req, res, 202, { ok: true });
    case '_security':
      if (m === 'PUT') {
        const b = jsonBody(bodyText);
        db.security = b;
        return send(req, res, 200, { ok: true });
      }
      return send(req, res, 200, db.security);
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
    if (!liveDoc(db, id)) throw notFound(db.docs.has(id) ? 'deleted' : 'missing');
    throw notFound('Document is missing attachment');
  }
  return docRequest(req, res, db, id, q, ctx, bodyText);
}

function docPath(id) {
  if (id.startsWith('_design/')) return `_design/${encodeURIComponent(id.slice(8))}`;
  return encodeURIComponent(id);
}

function docRequest(req, res, db, id, q, ctx, bodyText) {
  const m = req.method;
  const location = `http://127.0.0.1:${PORT}/${encodeURIComponent(db.name)}/${docPath(id)}`;
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
    if (q.has('open_revs')) {
      if (!doc) throw notFound('missing');
      const spec = q.get('open_revs');
      let out;
      if (spec === 'all') {
        out = [...doc.leaves].sort((a, b) => (a.pos - b.pos) || (a.hash < b.hash ? -1 : 1)).map((l) => ({ ok: docJSON(doc, l, { revs }) }));
      } else {
        const list = jsonParam(q, 'open_revs');
        if (!Array.isArray(list)) throw badRequest('Invalid open_revs');
        out = list.map((r) => {
          const l = doc.leaves.find((x) => revStr(x) === r);
          return l ? { ok: docJSON(doc, l, { revs }) } : { missing: r };
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
    const out = docJSON(doc, leaf, { revs, conflicts: boolParam(q, 'conflicts'), deletedConflicts: boolParam(q, 'deleted_conflicts') });
    if (boolParam(q, 'local_seq')) out._local_seq = seqStr(db, doc.seq);
    return send(req, res, 200, out, { ETag: `"${revStr(leaf)}"` });
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
    const newRev = updateDoc(db, id, {}, rev, ctx, { deleted: true });
    return send(req, res, 200, { ok: true, id, rev: newRev }, { ETag: `"${newRev}"` });
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
  const out = { total_rows: live.length, offset: keys ? null : skip, rows: rows.slice(skip, skip + limit) };
  if (keys) delete out.offset;
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
  const results = b.docs.map((spec) => {
    const id = isObj(spec) ? spec.id : undefined;
    const err = (rev) => ({ error: { id, rev, error: 'not_found', reason: 'missing' } });
    const doc = typeof id === 'string' ? db.docs.get(id) : null;
    if (!doc) return { id, docs: [err(isObj(spec) && typeof spec.rev === 'string' ? spec.rev : 'undefined')] };
    if (isObj(spec) && typeof spec.rev === 'string') {
      const l = doc.leaves.find((x) => revStr(x) === spec.rev);
      return { id, docs: [l ? { ok: docJSON(doc, l, { revs }) } : err(spec.rev)] };
    }
    const leaves = [...doc.leaves].sort((a, c) => (a.pos - c.pos) || (a.hash < c.hash ? -1 : 1));
    return { id, docs: leaves.map((l) => ({ ok: docJSON(doc, l, { revs }) })) };
  });
  return send(req, res, 200, { results });
}

function changes(req, res, db, q, bodyText) {
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

// ---------------------------------------------------------------------------------------
// start

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
  PORT = server.address().port;
  process.stdout.write(`PORT ${PORT}\n`);
  restartTick();
});

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
